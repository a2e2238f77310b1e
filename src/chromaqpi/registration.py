"""Channel registration: apply or undo a microscope's lateral colour and channel offsets.

``microscope.registration`` (:class:`chromaqpi.microscope.Registration`) says that channel ``c``
is the ideal image magnified by ``scale[c]`` about the image centre and moved by ``shift_px[c]``.
The simulator warps its ideal channels that way; :func:`chromaqpi.reconstruct` maps recorded
channels back onto the ideal grid before any method runs, so solvers and networks (trained on
registered channels) see what they expect. A model cannot learn a microscope-specific
misregistration from synthetic data, and 2 px of it costs the `default` ZMD 16 % in MAE
(``benchmarks/results/misregistration.md``): declaring and undoing it is the remedy.

A pure offset is a Fourier shift (all-pass: sensor noise stays white); a magnification is resampled
by a cubic B-spline (``scipy.ndimage.affine_transform`` with its prefilter), which interpolates smooth
images (features of 4 px or more) to ~2e-3 of their contrast. Edges mirror the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from chromaqpi.errors import InputError
from chromaqpi.microscope import Microscope, Registration


def _channel_map(scale: float, shift, shape, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """``affine_transform``'s (matrix, offset): output pixel o reads input pixel ``matrix @ o + offset``.

    Forward (recorded from ideal): recorded(o) = ideal(c + (o - c - t) / s).
    Inverse (ideal from recorded): ideal(o) = recorded(c + s (o - c) + t).
    """
    c = (np.asarray(shape, dtype=float) - 1) / 2
    t = np.asarray(shift, dtype=float)
    if inverse:
        return np.eye(2) * scale, c * (1 - scale) + t
    return np.eye(2) / scale, c - (c + t) / scale


def warp_channels(images, registration, *, inverse: bool = False):
    """Apply (``inverse=False``) or undo (``inverse=True``) ``registration`` on ``(..., C, H, W)`` images.

    Parameters
    ----------
    images : NumPy array or torch tensor with channels third from last.
    registration : :class:`~chromaqpi.microscope.Registration` with one entry per channel (or empty).
    inverse : undo it (recorded -> ideal grid) instead of applying it.

    Returns
    -------
    The same kind, shape, dtype and device; ``images`` itself when the registration is the identity.
    """
    if registration.is_identity:
        return images
    is_tensor = isinstance(images, torch.Tensor)
    array = images.detach().cpu().numpy() if is_tensor else np.asarray(images)
    n = array.shape[-3]
    scales = registration.scale or [1.0] * n
    shifts = registration.shift_px or [[0.0, 0.0]] * n
    flat = array.reshape(-1, n, *array.shape[-2:]).astype(np.float64)
    out = flat.copy()
    for c in range(n):
        if scales[c] != 1:
            matrix, offset = _channel_map(float(scales[c]), shifts[c], flat.shape[-2:], inverse)
            for b in range(flat.shape[0]):
                out[b, c] = ndimage.affine_transform(flat[b, c], matrix, offset, order=3, mode="mirror")
        elif any(shifts[c]):
            out[:, c] = fourier_shift(flat[:, c], -np.asarray(shifts[c], dtype=float) if inverse else shifts[c])
    out = out.reshape(array.shape).astype(array.dtype, copy=False)
    return torch.from_numpy(out).to(images.device) if is_tensor else out


def unregister(images, microscope: Microscope):
    """``images`` (..., C, H, W) mapped back onto the ideal grid, and ``microscope`` without its registration.

    What every entry point that takes recorded channels does first (``reconstruct``, the focus
    fit). A registration with a magnification and a recorded ``image_shape`` must be undone on
    images of that shape: its centre is theirs, and a crop elsewhere moves it (1 % about a
    centre 500 px away is a 5 px error), so other sizes are refused.
    """
    reg = microscope.registration
    if reg.is_identity:
        return images, microscope
    shape = [int(v) for v in images.shape[-2:]]
    if reg.image_shape and shape != list(reg.image_shape) and any(s != 1 for s in reg.scale):
        raise InputError(f"the microscope's registration was fitted on {reg.image_shape[0]}x{reg.image_shape[1]} "
                         f"images and magnifies about their centre, but this image is {shape[0]}x{shape[1]}: "
                         "reconstruct the full frame, refit with `chromaqpi register` at this size, or (for a "
                         "crop centred on the same point) set registration.image_shape to this size")
    return warp_channels(images, reg, inverse=True), microscope.replace(registration=Registration())


def fourier_shift(planes: np.ndarray, shift) -> np.ndarray:
    """(..., H, W) planes moved by ``shift`` = (dy, dx) px (down, right): a linear phase on their mirrored extension.

    All-pass, unlike any interpolating kernel: sensor noise stays white, which the noise-reading
    solvers (WOTF's GCV) rely on; a cubic spline moving half a pixel along both axes keeps 57 % of white
    noise's variance (measured), the loss all at high frequencies.
    Mirroring to (2H, 2W) makes the field periodic without a seam, so the wrap does not ring.
    """
    h, w = planes.shape[-2:]
    ramp_y = np.exp(-2j * np.pi * np.fft.fftfreq(2 * h) * shift[0])[:, None]
    ramp_x = np.exp(-2j * np.pi * np.fft.rfftfreq(2 * w) * shift[1])[None, :]
    flat = planes.reshape(-1, h, w)
    out = np.empty(flat.shape, dtype=np.float64)
    for i, plane in enumerate(flat):  # one plane at a time: a 2048 px frame's extension is 134 MB
        field = np.concatenate([plane, plane[::-1]], axis=0)
        spectrum = np.fft.rfft2(np.concatenate([field, field[:, ::-1]], axis=1))
        spectrum *= ramp_y
        spectrum *= ramp_x
        out[i] = np.fft.irfft2(spectrum, s=(2 * h, 2 * w))[:h, :w]
    return out.reshape(planes.shape)


# ------------------------------------------------------------------ estimation
@dataclass
class RegistrationFit:
    """Result of :func:`estimate_registration`.

    Attributes
    ----------
    registration : the fitted :class:`~chromaqpi.microscope.Registration` (reference channel: 1, [0, 0]).
    residual_px : per channel, RMS misfit of the tile displacements to the fitted magnification and
        shift (0 for the reference); large values mean the tiles disagree (a moving specimen,
        a phase-dominated scene, or too little structure).
    tiles : per channel, number of tiles the fit used.
    """

    registration: Registration
    residual_px: list[float]
    tiles: list[int]


def _tile_shift(reference: np.ndarray, moving: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(dy, dx) by which ``moving`` is displaced relative to ``reference`` (sub-pixel).

    Cross-correlation of the squared spectra: defocus transfer functions are real but change
    sign between channels focused on either side of the sample (phase contrast inverts), and
    squaring removes those signs. The peak then sits at twice the displacement. Unnormalised:
    phase normalisation gives noise-only frequencies the weight of signal (10x larger tile misfit).
    """
    a = np.fft.fft2((reference - reference.mean()) * window)
    b = np.fft.fft2((moving - moving.mean()) * window)
    shift, _, _ = phase_cross_correlation(a ** 2, b ** 2, space="fourier", upsample_factor=40, normalization=None)
    return -shift / 2  # skimage returns the shift that registers moving onto reference


def estimate_registration(images, reference: int = 1, *, tile: int = 64, min_tiles: int = 6,
                          passes: int = 3) -> RegistrationFit:
    """Fit each channel's magnification and offset against ``reference`` from one (C, H, W) image.

    Each channel is cross-correlated with the reference on overlapping tiles; the tile
    displacements ``d(p)`` are fitted by ``(scale - 1)(p - centre) + shift`` (least squares, then
    again without tiles more than 3 robust deviations off). Use a **calibration image**: an
    in-focus amplitude target (stage micrometer, stained section, dried dye) with structure across
    the field. Strong unstained phase objects bias the displacements (their channels differ by more
    than a blur): up to ~1 px was measured on thick simulated cells.

    Parameters
    ----------
    images : (C, H, W) flat-field normalised intensities (NumPy or torch).
    reference : the channel the others are registered to (green in RGB).
    tile : tile size in pixels (stride: half a tile); tiles without structure are skipped.
    min_tiles : fewest structured tiles a channel's fit accepts.
    passes : fits, each on the channel resampled by the previous ones (the tile window biases one
        pass's displacements towards 0 by a few per cent).

    Raises
    ------
    InputError : an image that is not (C, H, W), smaller than two tiles, or with too little structure.
    """
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim != 3 or not 0 <= reference < array.shape[0]:
        raise InputError(f"registration needs one (C, H, W) image and a reference channel, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError("registration needs finite intensities: the image holds NaN or Inf")
    h, w = array.shape[-2:]
    if min(h, w) < 2 * tile:
        raise InputError(f"registration needs an image of at least {2 * tile} px per side (got {h}x{w})")
    array = array.astype(np.float64)
    window = np.outer(np.hanning(tile), np.hanning(tile))
    starts = [(y, x) for y in range(0, h - tile + 1, tile // 2) for x in range(0, w - tile + 1, tile // 2)]
    # Structure: the reference's high-passed std in a tile well above the sensor noise, estimated
    # robustly from a second difference that smooth structure barely excites (Immerkaer's mask, norm 6).
    detail = array[reference] - ndimage.gaussian_filter(array[reference], 4)
    mask = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    noise = 1.4826 * np.median(np.abs(ndimage.convolve(array[reference], mask, mode="mirror"))) / 6
    structured = [(y, x) for y, x in starts if detail[y:y + tile, x:x + tile].std() > 3 * noise + 1e-6]
    centre = (np.array([h, w], dtype=float) - 1) / 2
    scale, shift, residual, used = [], [], [], []
    for c in range(array.shape[0]):
        if c == reference:
            scale.append(1.0), shift.append([0.0, 0.0]), residual.append(0.0), used.append(len(structured))
            continue
        if len(structured) < min_tiles:
            raise InputError(f"only {len(structured)} of {len(starts)} tiles have structure to register "
                             f"(need {min_tiles}): image a calibration target with detail across the field")
        points = np.array([(y + (tile - 1) / 2, x + (tile - 1) / 2) for y, x in structured]) - centre
        s, t, moving = 1.0, np.zeros(2), array[c]
        for _ in range(passes):  # the window pulls tile estimates towards 0: refit what the last pass left
            moves = np.array([_tile_shift(array[reference, y:y + tile, x:x + tile], moving[y:y + tile, x:x + tile],
                                          window) for y, x in structured])
            ds, dt, keep = _fit_similarity(points, moves)
            s, t = s * ds, s * dt + t  # the last pass's fit composed after the earlier ones
            moving = _undo(array[c], s, t)
        scale.append(s), shift.append(t.tolist()), used.append(int(keep.sum()))
        residual.append(float(np.sqrt(np.mean(np.sum((moves[keep] - ((ds - 1) * points[keep] + dt)) ** 2,
                                                     axis=1)))))
    fit = Registration(scale=[float(v) for v in scale], shift_px=shift, image_shape=[h, w])
    return RegistrationFit(fit, residual, used)


def _undo(plane: np.ndarray, scale: float, shift: np.ndarray) -> np.ndarray:
    """One channel mapped back by its magnification and shift (:func:`warp_channels`'s inverse)."""
    one = Registration(scale=[scale], shift_px=[[float(shift[0]), float(shift[1])]])
    return warp_channels(plane[None], one, inverse=True)[0]


def _fit_similarity(points: np.ndarray, moves: np.ndarray):
    """Least-squares ``moves ~ a * points + t`` (one magnification, one offset), refitted without outliers."""
    keep = np.ones(len(points), dtype=bool)
    for _ in range(2):
        p, m = points[keep], moves[keep]
        design = np.zeros((2 * len(p), 3))
        design[0::2, 0], design[1::2, 0] = p[:, 0], p[:, 1]
        design[0::2, 1], design[1::2, 2] = 1.0, 1.0
        (a, ty, tx), *_ = np.linalg.lstsq(design, m.reshape(-1), rcond=None)
        misfit = np.linalg.norm(moves - (a * points + [ty, tx]), axis=1)
        spread = 1.4826 * np.median(misfit) + 0.02  # px: below that, tiles agree as well as they can
        keep = misfit <= 3 * spread
    return 1.0 + a, np.array([ty, tx]), keep
