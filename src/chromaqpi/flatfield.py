"""Flat-field normalisation of raw camera frames (PHYSICS.md §3).

Every solver and model assumes ``I_norm = (I_raw - D)/(F - D)``: background = 1
per channel, in linear units. With a measured empty-field frame F that is
exact. Without one, :func:`estimate_background` fits a smooth surface to the
background per channel.
"""

from __future__ import annotations

import numpy as np

from chromaqpi.errors import InputError


def _design(shape: tuple[int, int], order: int, step: int = 1) -> np.ndarray:
    """Polynomial columns at every ``step``-th pixel of an (H, W) frame, in frame coordinates [-1, 1]."""
    h, w = shape
    row_pos, col_pos = np.arange(0, h, step), np.arange(0, w, step)
    y, x = np.meshgrid(2 * row_pos / max(h - 1, 1) - 1, 2 * col_pos / max(w - 1, 1) - 1, indexing="ij")
    cols = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack([c.ravel() for c in cols], axis=1)


def estimate_background(raw: np.ndarray, *, order: int = 2, clip_sigma: float = 2.5, rounds: int = 5) -> np.ndarray:
    """Smooth per-channel background of a (C, H, W) frame.

    A 2-D polynomial of total degree ``order`` (quadratic: illumination
    fall-off and vignetting) is fitted by least squares on a coarse grid, with
    iterative sigma clipping that drops pixels more than ``clip_sigma`` robust
    standard deviations (1.4826·MAD) from the fit — cells and debris are
    outliers, the medium is what remains. This assumes objects cover well under
    half of the field; supply a measured background frame otherwise.
    """
    c, h, w = raw.shape
    step = max(1, min(h, w) // 128)  # a coarse grid is plenty for a smooth surface
    small = raw[:, ::step, ::step].astype(np.float64)
    a_small = _design((h, w), order, step)  # the samples' true positions, not a stretched grid
    a_full = _design((h, w), order)
    out = np.empty((c, h, w), dtype=np.float64)
    for ch in range(c):
        values = small[ch].ravel()
        keep = np.ones_like(values, dtype=bool)
        for _ in range(rounds):
            coef, *_ = np.linalg.lstsq(a_small[keep], values[keep], rcond=None)
            resid = values - a_small @ coef
            scale = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep]))) + 1e-12
            keep = np.abs(resid) < clip_sigma * scale
            if keep.mean() < 0.2:
                raise InputError("cannot estimate the background automatically (objects fill the field); "
                                 "pass an empty-field image with --background")
        out[ch] = (a_full @ coef).reshape(h, w)
    return out


def flat_field(raw: np.ndarray, *, background: np.ndarray | None = None, dark: float | np.ndarray = 0.0) -> np.ndarray:
    """Normalise a raw (C, H, W) frame so that the empty field reads 1.

    Parameters
    ----------
    raw : linear camera values (any scale).
    background : an empty-field frame of the same shape (same illumination and
        focus; ideally the mean of several frames); if None, :func:`estimate_background` is used.
    dark : black level or dark frame, subtracted from both.
    """
    raw = np.asarray(raw, dtype=np.float64)
    _check_black_level(raw, dark)
    raw = raw - dark
    if background is None:
        bg = estimate_background(raw)
    else:
        background = np.asarray(background, dtype=np.float64)
        if background.shape != raw.shape:
            raise InputError(f"background shape {background.shape} differs from image shape {raw.shape}")
        # Used as is: average several empty-field frames to keep its noise low
        # (smoothing would bias the edges of a vignetted field).
        bg = background - dark
    if np.any(bg <= 0):
        raise InputError("background is zero or negative somewhere: check the black level / empty-field image")
    return (raw / bg).astype(np.float32)


def _check_black_level(raw: np.ndarray, dark) -> None:
    """A black level at or above most of the image leaves no light: say so, rather than blame the
    background it empties."""
    if np.median(raw - dark) <= 0:
        level = f"{dark:g}" if np.ndim(dark) == 0 else "of the dark frame"
        raise InputError(f"the black level (dark) {level} is at or above the image's median intensity "
                         f"{np.median(raw):.3g}: no light is left (it is in the image's units: [0, 1] for "
                         "8- and 16-bit files)")
