"""Channel registration: apply or undo a microscope's lateral colour and channel offsets.

``microscope.registration`` (:class:`chromaqpi.microscope.Registration`) says that channel ``c``
is the ideal image magnified by ``scale[c]`` about the image centre and moved by ``shift_px[c]``.
The simulator warps its ideal channels that way; :func:`chromaqpi.reconstruct` maps recorded
channels back onto the ideal grid before any method runs, so solvers and networks (trained on
registered channels) see what they expect. A model cannot learn a microscope-specific
misregistration from synthetic data, and 2 px of it costs the `default` ZMD 16 % in MAE
(``benchmarks/results/misregistration.md``): declaring and undoing it is the remedy.

Both offsets and magnifications are band-limited resamplings (:func:`cosine_resample`): each plane is
read as the cosine series of its mirrored extension and that series is evaluated at the mapped
positions, so nothing is smoothed and sensor noise stays white (a cubic spline would low-pass it, and
WOTF's GCV reads the noise). Positions beyond the frame read the mirrored extension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.fft import dct, fft, ifft, next_fast_len
from skimage.registration import phase_cross_correlation

from chromaqpi.errors import InputError
from chromaqpi.microscope import Microscope, Registration
from chromaqpi.optics.sensor import undo_colour_matrix


def _channel_map(scale: float, shift, shape, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """(step, start) per axis: output pixel o reads the input at ``start + step * o``.

    Forward (recorded from ideal): recorded(o) = ideal(c + (o - c - t) / s).
    Inverse (ideal from recorded): ideal(o) = recorded(c + s (o - c) + t).
    c = (shape - 1) / 2 is the image centre, t the shift, s the scale.
    """
    c = (np.asarray(shape, dtype=float) - 1) / 2
    t = np.asarray(shift, dtype=float)
    if inverse:
        return np.full(2, float(scale)), c * (1 - scale) + t
    return np.full(2, 1 / scale), c - (c + t) / scale


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
        if scales[c] != 1 or any(shifts[c]):
            step, start = _channel_map(float(scales[c]), shifts[c], flat.shape[-2:], inverse)
            out[:, c] = cosine_resample(flat[:, c], step, start)
    out = out.reshape(array.shape).astype(array.dtype, copy=False)
    return torch.from_numpy(out).to(images.device) if is_tensor else out


def unregister(images, microscope: Microscope):
    """``images`` (..., C, H, W) mapped back onto the ideal grid, and ``microscope`` without its registration.

    What every entry point that takes recorded channels does first (``reconstruct``, the focus
    fit). A declared camera colour matrix is undone before (the camera mixed the channels after the
    optics moved them): :func:`chromaqpi.optics.sensor.undo_colour_matrix`; :func:`redeclare` puts
    both back on a microscope fitted afterwards. A registration with a magnification and a recorded
    ``image_shape`` must be undone on images of that shape: its centre is theirs, and a crop elsewhere
    moves it (1 % about a centre 500 px away is a 5 px error), so other sizes are refused.
    """
    images, microscope = undo_colour_matrix(images, microscope)
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


def redeclare(microscope: Microscope, declared: Microscope) -> Microscope:
    """``microscope`` (e.g. fitted on :func:`unregister`'s output) with ``declared``'s registration and colour
    matrix back: the description recorded images need."""
    return microscope.replace(registration=declared.registration,
                              sensor={"colour_matrix": declared.sensor.colour_matrix})


def fourier_shift(planes: np.ndarray, shift) -> np.ndarray:
    """(..., H, W) planes moved by ``shift`` = (dy, dx) px (down, right): a linear phase on their mirrored extension.

    All-pass, unlike any interpolating kernel: sensor noise stays white, which the noise-reading
    solvers (WOTF's GCV) rely on; a cubic spline moving half a pixel along both axes keeps 57 % of white
    noise's variance (measured), the loss all at high frequencies. The mirrored (2H, 2W) extension is
    periodic without a seam, so nothing wraps around from the opposite edge and the wrap does not ring;
    whole-pixel shifts are exact. :func:`cosine_resample` with step 1.
    """
    return cosine_resample(planes, 1.0, -np.asarray(shift, dtype=float))


_BLOCK = 1 << 20  # complex values per FFT block (16 MB): a 2048 px frame resamples 256 rows at a time


def cosine_resample(planes: np.ndarray, step, start) -> np.ndarray:
    """(..., H, W) planes' band-limited interpolant sampled at y = start[0] + step[0] i, x = start[1] + step[1] j.

    The interpolant is the cosine series (the DCT-II basis) of each plane, which is the Fourier series
    of its mirrored (2H, 2W) extension without the Nyquist terms (they vanish on a mirrored field):
    ``f(x) = (X_0 / 2 + sum_k X_k cos(pi k (2x + 1) / 2N)) / N`` along an axis of N samples. It
    passes through every sample, so step 1 and start 0 is the identity, step 1 is
    :func:`fourier_shift` (all-pass), and no frequency is damped: white noise keeps its variance (to
    ~1 % at a step of 1.01) and a flat spectrum (a step below 1 leaves the top ``1 - step`` of the band
    empty; above 1 folds the excess back). Positions outside the frame (``x < -1/2`` or
    ``x > N - 1/2``) read the even, 2N-periodic continuation, the mirrored field (half-sample
    symmetric, ``numpy.pad``'s "symmetric"). A field that does not fall smoothly to its mirror image
    rings a little near the edges (a kink there; a 1 % round trip leaves 7e-4 of a texture's std 8 px in).

    Parameters
    ----------
    planes : (..., H, W) real array.
    step, start : one value for both axes or (y, x) pairs, in pixels.

    Returns
    -------
    (..., H, W) float64 array. Separable: rows then columns, each a DCT and a chirp-z transform
    (O(N log N), one plane at a time, in blocks of rows).
    """
    step = np.broadcast_to(np.asarray(step, dtype=float), (2,))
    start = np.broadcast_to(np.asarray(start, dtype=float), (2,))
    h, w = planes.shape[-2:]
    flat = planes.reshape(-1, h, w)
    out = np.empty(flat.shape, dtype=np.float64)
    for i, plane in enumerate(flat):
        rows = _cosine_rows(np.asarray(plane, dtype=np.float64), start[1], step[1])
        out[i] = _cosine_rows(np.ascontiguousarray(rows.T), start[0], step[0]).T
    return out.reshape(planes.shape)


def _cosine_rows(rows: np.ndarray, start: float, step: float) -> np.ndarray:
    """(R, N) rows' cosine series at x_j = start + step j (j < N): Re sum_k c_k e^(i pi k (2 x_j + 1) / 2N).

    A chirp-z transform (Bluestein: ``jk = (j^2 + k^2 - (j - k)^2) / 2`` turns the sum into a
    convolution). Its own rather than ``scipy.signal.CZT``, which computes the chirp as ``w ** (k^2 / 2)``
    and so multiplies the rounding of ``w`` by k^2 (6e-10 of the signal at 2048 px against 2e-12 here).
    """
    n = rows.shape[-1]
    k = np.arange(n, dtype=float)
    half = np.pi * step / (2 * n)  # the chirp's phase per squared index
    weight = np.full(n, 1 / n)
    weight[0] /= 2
    pre = weight * np.exp(1j * (np.pi * (2 * start + 1) / (2 * n) * k + half * k * k))
    size = next_fast_len(2 * n - 1)  # the circular convolution's wrap only reaches outputs left unused
    m = np.arange(1 - n, n, dtype=float)
    kernel = fft(np.exp(-1j * half * m * m), size)
    post = np.exp(1j * half * k * k)
    out = np.empty(rows.shape, dtype=np.float64)
    block = max(1, _BLOCK // size)
    for i in range(0, rows.shape[0], block):
        spectrum = fft(dct(rows[i:i + block], type=2, axis=-1) * pre, size, axis=-1)
        spectrum *= kernel
        out[i:i + block] = (ifft(spectrum, axis=-1, overwrite_x=True)[:, n - 1:2 * n - 1] * post).real
    return out


# ------------------------------------------------------------------ estimation
# A fitted magnification that moves the frame's edges by less than this against each other (px) is taken
# as none: its whole effect (<= 0.05 px at the corners) is 40x under the 2 px misregistration that cost
# the default ZMD 16 %, and at the fit's own noise (no true magnification: up to 0.036 px across 128 px
# calibration images, 3 seeds). Kept, it would bind the registration to the calibration image's size.
UNRESOLVED_EDGE_PX = 0.1


def snap_unit_scale(scale: float, shape) -> float:
    """``scale``, or exactly 1 where it moves the edges of an ``shape`` (H, W) frame by under
    :data:`UNRESOLVED_EDGE_PX` against each other."""
    return 1.0 if abs(scale - 1) * max(shape) < UNRESOLVED_EDGE_PX else float(scale)


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

    A magnification moving the frame's edges by under a tenth of a pixel against each other is
    returned as exactly 1 (:func:`snap_unit_scale`): below what matters and what the fit resolves,
    and a registration without one applies to any image size.

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
        scale.append(snap_unit_scale(s, (h, w))), shift.append(t.tolist()), used.append(int(keep.sum()))
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
