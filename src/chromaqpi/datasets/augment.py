"""Geometric augmentations that the physics allows: the dihedral group D4 of the pixel grid.

Transform ``t`` in 0..7 is ``rot90`` by ``t % 4`` quarter turns (``torch.rot90`` on the
last two axes) followed, for ``t >= 4``, by a flip of the last axis. Applied to the phase
*and* the image together, ``t`` is a valid augmentation when the forward model commutes
with it: ``simulate(T φ) = T simulate(φ)``. That holds when every ingredient is invariant
under the linear map ``A_t`` of the grid coordinates:

* the objective pupil and the defocus kernel depend on ``|f + u|`` only (isotropic);
* the pixel grid is square (a quarter turn also needs H == W);
* the Abbe source points, with their weights, map onto themselves under ``A_t``: our
  rings (:func:`chromaqpi.optics.pupil.source_points`) hold multiples of four equally
  spaced points, so all eight elements qualify; :func:`source_invariant` checks it
  numerically for any lattice;
* no colour-filter mosaic: a flipped RGGB mosaic is a BGGR/GRBG one, a different camera,
  so Bayer microscopes get the identity only. (Random crops of Bayer data keep even
  offsets for the same reason.)

Sensor noise is i.i.d. per pixel without a mosaic, so a transformed noisy image is a valid
noisy image of the transformed phase.

:func:`shift_colour_channels` is a different kind of augmentation: it models a defect of the
instrument (lateral colour, channel offsets of a colour camera) rather than a symmetry. Red and
blue move sideways against green, which stays registered with the phase, so a model trained
on it learns to tell a channel offset from the phase signal. The shift is a Fourier phase ramp
on a mirror-padded image: exact for band-limited images, and it leaves the spectrum of white
sensor noise unchanged (a unit-modulus factor per frequency), so the noise stays white.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from chromaqpi.microscope import Registration
from chromaqpi.registration import fourier_shift

__all__ = ["N_TRANSFORMS", "apply_transform", "invert_transform", "transform_matrix", "valid_transforms",
           "source_invariant", "draw_channel_shifts", "shift_colour_channels", "random_channel_shift"]

N_TRANSFORMS = 8
_QUARTER = np.array([[0, -1], [1, 0]])  # (y, x) -> (-x, y): torch.rot90(k=1, dims=(-2, -1))
_FLIP_X = np.array([[1, 0], [0, -1]])


def apply_transform(x, t: int):
    """Apply D4 element ``t`` to the last two axes of a tensor or array (returns a copy)."""
    k, flip = t % 4, t >= 4
    if isinstance(x, np.ndarray):
        out = np.rot90(x, k, axes=(-2, -1))
        return np.ascontiguousarray(out[..., ::-1] if flip else out)
    out = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return out.flip(-1) if flip else out.clone() if out is x else out


def invert_transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """Undo :func:`apply_transform` ``t`` on the last two axes of a tensor."""
    k, flip = t % 4, t >= 4
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


def transform_matrix(t: int) -> np.ndarray:
    """Linear map of (y, x) coordinates (and of frequencies and source directions) for ``t``."""
    a = np.linalg.matrix_power(_QUARTER, t % 4)
    return _FLIP_X @ a if t >= 4 else a


@functools.lru_cache(maxsize=256)
def source_invariant(na_condenser: float, source_points: int, t: int) -> bool:
    """Whether the Abbe source lattice (points and weights) maps onto itself under ``t``."""
    from chromaqpi.optics.pupil import source_points as lattice

    nu, w = lattice(na_condenser, source_points)
    mapped = nu @ transform_matrix(t).T
    tol = 1e-9 * max(na_condenser, 1e-12)
    dist = np.abs(mapped[:, None, :] - nu[None, :, :]).max(axis=-1)
    match = dist.argmin(axis=1)
    return bool(np.all(dist[np.arange(len(nu)), match] <= tol) and np.allclose(w, w[match], rtol=1e-9, atol=0))


def valid_transforms(microscope, shape) -> tuple[int, ...]:
    """D4 elements under which ``microscope`` commutes with the simulator on ``shape`` images.

    Parameters
    ----------
    microscope : Microscope or its ``to_dict()`` (as stored with each sample).
    shape : (H, W) of the images to transform.

    Returns
    -------
    tuple of int, always containing 0 (the identity).
    """
    d = microscope if isinstance(microscope, dict) else microscope.to_dict()
    if d["sensor"].get("bayer") or not Registration(**d.get("registration", {})).is_identity:
        return (0,)  # channel offsets have a direction a turn or flip would change
    na_c, n_src = float(d["optics"]["na_condenser"]), int(d["optics"]["source_points"])
    square = shape[0] == shape[1]
    return tuple(t for t in range(N_TRANSFORMS)
                 if (square or t % 2 == 0) and source_invariant(na_c, n_src, t))


def draw_channel_shifts(rng: np.random.Generator, max_px: float, prob: float = 0.5) -> np.ndarray | None:
    """Random lateral offsets of red and blue against green, or None (no shift, probability ``1 - prob``).

    Lateral colour displaces the channels along one (radial) direction: a direction drawn
    uniformly, then each of red and blue its own signed length, uniform in ``[-max_px, max_px]``.

    Returns
    -------
    (2, 2) float array: the (dy, dx) pixel offsets of red (row 0) and blue (row 1).
    """
    if max_px <= 0 or rng.random() >= prob:
        return None
    angle = rng.uniform(0.0, 2 * np.pi)
    lengths = rng.uniform(-max_px, max_px, size=2)
    return np.outer(lengths, [np.sin(angle), np.cos(angle)])


def shift_colour_channels(image: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move channel 0 (red) by ``shifts[0]`` and channel 2 (blue) by ``shifts[1]`` (dy, dx) pixels.

    A Fourier shift of each plane's mirrored extension (:func:`chromaqpi.registration.fourier_shift`:
    all-pass, no seam, nothing wraps around from the opposite edge; whole-pixel shifts are exact).
    Returns a float32 copy; green (channel 1) is unchanged.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"shift_colour_channels needs an RGB (3, H, W) image, got shape {image.shape}")
    h, w = image.shape[-2:]
    if np.abs(shifts).max() >= min(h, w) / 2:
        raise ValueError(f"a {np.abs(shifts).max():.1f} px shift is too large for a {h}x{w} image")
    out = image.astype(np.float32, copy=True)
    for channel, shift in zip((0, 2), shifts):
        out[channel] = fourier_shift(image[channel].astype(np.float64), shift)
    return out


def random_channel_shift(image, microscope: dict, max_px: float, rng: np.random.Generator, prob: float = 0.5):
    """:func:`shift_colour_channels` by a :func:`draw_channel_shifts` draw, or ``image`` itself.

    Bayer samples are returned as they are: their colour planes were interleaved on the sensor and
    demosaiced afterwards, so moving the demosaiced planes is not what lateral colour does to them.
    Accepts a NumPy array or a tensor and returns the same kind (a tensor on its own device).
    """
    if not max_px or microscope["sensor"].get("bayer"):
        return image
    shifts = draw_channel_shifts(rng, max_px, prob)
    if shifts is None:
        return image
    if isinstance(image, np.ndarray):
        return shift_colour_channels(image, shifts)
    return torch.from_numpy(shift_colour_channels(image.cpu().numpy(), shifts)).to(image.device)
