"""Camera response curves: code value -> light, fitted from frames of one field at several exposure times.

Every method needs intensities linear in the light; flat-fielding does not undo a tone curve (it leaves
``f(I)/f(I_empty)``, whose small contrasts, the phase signal, are scaled by the curve's local log-slope).
sRGB and a power law are decoded by :func:`chromaqpi.io.srgb_decode` and :func:`chromaqpi.io.gamma_decode`;
any other monotone curve (a camera's contrast or "film" setting, an unknown JPEG pipeline) is measured here
from a few frames of a static field (an empty field serves) whose exposure times are known, the standard
radiometric self-calibration of Debevec & Malik (SIGGRAPH 1997): in log units
``g(z_ij) = ln E_i + ln t_j`` for the light ``E_i`` of block ``i`` and exposure time ``t_j``, solved for the
curve ``g`` (piecewise linear on ``knots`` code values) and every ``E_i`` by least squares, each observation
weighted by a hat function of its code (the ends of the range are noisy or clipped), with a second-difference
penalty on ``g`` that fills the gaps between the codes the frames reach.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chromaqpi.errors import InputError

__all__ = ["CameraResponse", "fit_response", "read_response", "write_response"]

FORMAT = "chromaqpi-camera-response"
#: Knots of the piecewise-linear curve over the code range [0, 1].
DEFAULT_KNOTS = 256
#: Weight of the second-difference penalty relative to the data (see :func:`fit_response`, Notes).
DEFAULT_SMOOTHNESS = 30.0
# Frames are averaged over square blocks (noise down, the solve small) to at most this many blocks.
_MAX_BLOCKS = 4096
# Codes this close to 0 or 1 (a clipped or black pixel in the block) carry no weight.
_EDGE = 0.005


@dataclass(frozen=True)
class CameraResponse:
    """A camera's inverse response per channel: light at each of ``codes`` (piecewise linear between).

    ``codes`` (K,) rises from 0 to 1 (the file's values scaled to [0, 1]); ``linear`` (C, K) is the light,
    rising, scaled to 1 at code 1 (flat-fielding removes any per-channel scale). ``observed`` (C, 2): the
    code range the calibration frames reached; outside it the curve is the penalty's extrapolation.
    ``fit``: what the calibration reported (frames, exposures, residual, effective gamma).
    """

    codes: np.ndarray
    linear: np.ndarray
    observed: np.ndarray
    fit: dict

    def __post_init__(self):
        codes, linear, observed = (np.asarray(a, dtype=np.float64) for a in (self.codes, self.linear, self.observed))
        if codes.ndim != 1 or codes.size < 2 or codes[0] != 0 or codes[-1] != 1 or np.any(np.diff(codes) <= 0):
            raise InputError("camera response: codes must rise strictly from 0 to 1")
        if linear.ndim != 2 or linear.shape[1] != codes.size:
            raise InputError(f"camera response: linear must be (channels, {codes.size}), got {linear.shape}")
        if not np.all(np.isfinite(linear)) or np.any(linear < 0) or np.any(np.diff(linear, axis=1) < 0):
            raise InputError("camera response: light must be finite, >= 0 and never fall as the code rises")
        if observed.shape != (linear.shape[0], 2) or not np.all((0 <= observed) & (observed <= 1)):
            raise InputError("camera response: observed must be (channels, 2) code ranges in [0, 1]")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "linear", linear)
        object.__setattr__(self, "observed", observed)

    @property
    def n_channels(self) -> int:
        return self.linear.shape[0]

    def decode(self, code: np.ndarray, name: str = "image") -> np.ndarray:
        """Code values (C, H, W), or (H, W) for one channel, scaled to [0, 1] -> light, float32."""
        arr = np.asarray(code)
        channels = 1 if arr.ndim == 2 else arr.shape[0]
        if channels != self.n_channels:
            raise InputError(f"{name}: {channels} channel(s), but the camera response has {self.n_channels}")
        planes = arr[None] if arr.ndim == 2 else arr
        out = np.stack([np.interp(p, self.codes, curve) for p, curve in zip(planes, self.linear)])
        return (out[0] if arr.ndim == 2 else out).astype(np.float32)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "codes": self.codes.tolist(), "linear": self.linear.tolist(),
                "observed": self.observed.tolist(), "fit": self.fit}

    @classmethod
    def from_dict(cls, data: dict, name: str = "camera response") -> "CameraResponse":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{name}: not a camera response file (written by `chromaqpi response`)")
        if data.get("version") != 1:
            raise InputError(f"{name}: camera response version {data.get('version')!r} is not supported (need 1)")
        try:
            return cls(codes=np.asarray(data["codes"], dtype=np.float64),
                       linear=np.asarray(data["linear"], dtype=np.float64),
                       observed=np.asarray(data["observed"], dtype=np.float64), fit=dict(data.get("fit", {})))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(f"{name}: {exc}") from None
            raise InputError(f"{name}: malformed camera response ({exc.__class__.__name__}: {exc})") from None


def read_response(path) -> CameraResponse:
    """A camera response written by :func:`write_response` (JSON; one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON camera response ({exc.__class__.__name__})") from None
    return CameraResponse.from_dict(data, name=str(path))


def write_response(path, response: CameraResponse) -> None:
    """Write ``response`` as JSON, atomically."""
    from chromaqpi.io import write_json

    write_json(path, response.to_dict())


# ------------------------------------------------------------------ fit
def plural(n: int, word: str) -> str:
    """``"1 frame"``, ``"2 frames"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _series_blocks(frames, exposures) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Block means (J, C, N), their usability (J, C, N), the exposure times (J,) and the (1-based) frames
    dropped, validated; the frames (any iterable: the command line reads them one by one) are averaged
    over blocks as they come."""
    t = np.asarray(exposures, dtype=np.float64).reshape(-1)
    if t.size < 2:
        raise InputError(f"a camera response needs at least 2 frames at different exposure times, got {t.size}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InputError(f"exposure times must be finite and > 0, got {t.tolist()}")
    if np.unique(t).size < 2:
        raise InputError("the exposure times are all equal: the curve needs frames at different exposures")
    means, usable, shape = [], [], None
    for k, frame in enumerate(frames, start=1):
        a = np.asarray(frame, dtype=np.float64)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3:
            raise InputError(f"frame {k}: expected an (H, W) or (C, H, W) frame, got shape {np.shape(frame)}")
        if shape is not None and a.shape != shape:
            raise InputError(f"the frames differ in shape: frame {k} is {a.shape}, frame 1 {shape}")
        shape = a.shape
        if not np.all(np.isfinite(a)):
            raise InputError(f"frame {k} has NaN/Inf values")
        if a.min() < 0 or a.max() > 1:
            raise InputError(f"frame {k}: values outside [0, 1]; give code values scaled to [0, 1] "
                             "(chromaqpi.io.read_image scales 8/16-bit files)")
        m, u = _blocks(a)
        means.append(m)
        usable.append(u)
    if len(means) != t.size:
        raise InputError(f"{plural(len(means), 'frame')} but {plural(t.size, 'exposure time')}")
    keep = _frames_with_codes(np.stack(usable), t)
    return np.stack(means)[keep], np.stack(usable)[keep], t[keep], [int(k) + 1 for k in np.flatnonzero(~keep)]


def _frames_with_codes(usable: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which frames have a block between black and full scale (J,); the others, saturated (the longest
    exposures) or black everywhere, are dropped with a warning while 2 exposure times remain."""
    keep = usable.any(axis=(1, 2))
    empty = ", ".join(f"{k + 1} (exposure {t[k]:g})" for k in np.flatnonzero(~keep))
    if np.unique(t[keep]).size < 2:
        raise InputError("fewer than 2 exposure times have codes between black and full scale"
                         + (f" (frames {empty} are saturated or black everywhere)" if empty else "")
                         + "; take frames whose codes lie inside the range")
    if empty:
        warnings.warn(f"frames {empty} are saturated or black everywhere: dropped from the fit", UserWarning,
                      stacklevel=4)
    return keep


def _blocks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block means (C, N) of one (C, H, W) frame and their usability (C, N): no clipped or black pixel."""
    c, h, w = frame.shape
    b = max(1, math.ceil(math.sqrt(h * w / _MAX_BLOCKS)))
    cropped = frame[:, : h // b * b, : w // b * b].reshape(c, h // b, b, w // b, b)
    mean = cropped.mean(axis=(2, 4)).reshape(c, -1)
    usable = ((cropped.min(axis=(2, 4)) > _EDGE) & (cropped.max(axis=(2, 4)) < 1 - _EDGE)).reshape(c, -1)
    return mean, usable


def _hat(z: np.ndarray) -> np.ndarray:
    """Debevec-Malik weight: 1 at mid-range, 0 at the ends."""
    return np.clip(1 - np.abs(2 * z - 1), 0, 1)


def _fit_channel(z: np.ndarray, usable: np.ndarray, log_t: np.ndarray, knots: int,
                 smoothness: float) -> tuple[np.ndarray, float]:
    """Log curve g at the knots (anchored at 0 at the median code) and the weighted rms residual."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import lsqr

    frame, block = np.nonzero(usable)
    zs = z[frame, block]
    n_blocks = z.shape[1]
    u = zs * (knots - 1)
    k0 = np.clip(np.floor(u).astype(int), 0, knots - 2)
    frac = u - k0
    w = _hat(zs)
    rows_d = np.arange(zs.size)
    # data rows: w·(g(z) - ln E_i) = w·ln t_j; unknowns [g (knots), ln E (blocks)]
    r = [rows_d, rows_d, rows_d]
    cidx = [k0, k0 + 1, knots + block]
    vals = [w * (1 - frac), w * frac, -w]
    rhs = [w * log_t[frame]]
    # second-difference penalty, weight sqrt(λ) with λ = smoothness·Σw²/(knots - 2)
    k = np.arange(1, knots - 1)
    lam = math.sqrt(smoothness * float((w**2).sum()) / (knots - 2))
    rows_s = zs.size + np.arange(k.size)
    r += [rows_s] * 3
    cidx += [k - 1, k, k + 1]
    vals += [np.full(k.size, lam), np.full(k.size, -2 * lam), np.full(k.size, lam)]
    rhs.append(np.zeros(k.size))
    # anchor: g = 0 at the knot of the median code (the scale is fixed later)
    anchor = int(np.clip(round(float(np.median(zs)) * (knots - 1)), 0, knots - 1))
    row_a = zs.size + k.size
    r.append(np.array([row_a]))
    cidx.append(np.array([anchor]))
    vals.append(np.array([math.sqrt(float((w**2).sum()))]))
    rhs.append(np.zeros(1))
    a = coo_matrix((np.concatenate(vals), (np.concatenate(r), np.concatenate(cidx))),
                   shape=(row_a + 1, knots + n_blocks)).tocsr()
    x = lsqr(a, np.concatenate(rhs), atol=1e-12, btol=1e-12, iter_lim=20 * (knots + n_blocks))[0]
    g = x[:knots]
    residual = (a[:zs.size] @ x - rhs[0])
    return g, float(np.sqrt((residual**2).sum() / max((w**2).sum(), 1e-300)))


def _effective_gamma(codes: np.ndarray, g: np.ndarray, lo: float, hi: float) -> float | None:
    """Slope of ln(code) against ln(light) over the middle 80 % of the observed codes (a power law's G)."""
    span = hi - lo
    inside = (codes >= max(lo + 0.1 * span, 0.02)) & (codes <= hi - 0.1 * span)
    if inside.sum() < 3:
        return None
    slope = np.polyfit(g[inside], np.log(codes[inside]), 1)[0]
    return float(slope)


def fit_response(frames, exposures, *, knots: int = DEFAULT_KNOTS,
                 smoothness: float = DEFAULT_SMOOTHNESS) -> CameraResponse:
    """Fit a camera's inverse response per channel from frames of one static field at several exposures.

    Parameters
    ----------
    frames : iterable of (C, H, W) or (H, W) arrays
        Code values scaled to [0, 1] and not decoded (:func:`chromaqpi.io.read_image` without ``srgb``/
        ``gamma``), all of one shape: the same field (an empty one serves: vignetting adds a spread of
        light) at different exposure times, lamp and gain unchanged. Each is averaged over blocks as it
        comes, so a generator that reads them one by one keeps one frame in memory.
    exposures : sequence of float
        Each frame's exposure time, any unit (only ratios matter).
    knots : int
        Code values at which the curve is solved (piecewise linear between; 256 suits 8-bit files).
    smoothness : float
        Weight of the second-difference penalty on ln(light) relative to the data (its rows are scaled by
        the data's total weight, so it does not depend on the image size).

    Returns
    -------
    CameraResponse, with ``fit``: frames used, the (1-based) frames dropped because they are saturated or
    black everywhere (with a warning; too few left: InputError), exposure times used, blocks, the weighted
    rms residual in ln units
    per channel, and the effective gamma per channel (the slope of ln code against ln light over the middle
    of the observed codes: 1 for a linear camera, about 0.45 for sRGB, None where too few codes were seen).

    Notes
    -----
    Frames are averaged over square blocks (at most 4096 per frame) to beat down noise; a block with a
    pixel within 0.5 % of black or full scale carries no weight in that frame. What matters for phase is
    the curve's local log-slope ``d ln(light)/d ln(code)``, which scales every small contrast. Exposure
    ratios fix ``g`` only at codes the blocks reach, and a series of equal steps r leaves a ripple of
    period ln r undetermined where the field's own spread of light (an empty field's vignetting: 10-40 %)
    does not bridge the steps; the penalty decides there. Take steps of at most √2 (e.g. 13 frames over 64x).
    ``smoothness = 30`` was chosen on synthetic 8-bit series (a 256 px field with 35 % vignetting, shot
    noise, channels at 0.8-1) of four curves: sRGB, a 0.45 power law, linear, and a tanh S-curve; the worst
    error of the log-slope over codes 0.15-0.95 was 0.4-2.7 % with √2 steps (0.7-2.4 % at smoothness 10,
    1-3 % at 100) and 2-7 % with 2x steps (4-6 % at 10). ``observed`` records the codes reached.
    """
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 4:
        raise InputError(f"knots must be an integer >= 4, got {knots!r}")
    if not (isinstance(smoothness, (int, float)) and math.isfinite(smoothness) and smoothness > 0):
        raise InputError(f"smoothness must be a number > 0, got {smoothness!r}")
    mean, usable, t, dropped = _series_blocks(frames, exposures)
    codes = np.linspace(0.0, 1.0, knots)
    curves, observed, residuals, gammas = [], [], [], []
    for c in range(mean.shape[1]):
        ok = usable[:, c]
        seen = ok.sum(axis=1)
        if np.count_nonzero(seen) < 2 or np.unique(t[seen > 0]).size < 2:
            raise InputError(f"channel {c}: fewer than 2 exposure times have pixels between black and full "
                             "scale; take frames whose codes lie inside the range")
        z = mean[:, c]
        g, rms = _fit_channel(z, ok, np.log(t), knots, float(smoothness))
        lo, hi = float(z[ok].min()), float(z[ok].max())
        inside = (codes >= lo) & (codes <= hi)
        if np.any(np.diff(g[inside]) < -1e-6):
            raise InputError(f"channel {c}: the fitted curve falls between codes {lo:.3f} and {hi:.3f}: the frames "
                             "do not determine it (check the exposure times, or keep lamp and gain fixed)")
        g = np.maximum.accumulate(g)  # outside the observed codes the extrapolation may dip
        curves.append(np.exp(g - g[-1]))
        observed.append((lo, hi))
        residuals.append(rms)
        gammas.append(_effective_gamma(codes, g, lo, hi))
    fit = {"frames": int(t.size), "dropped_frames": dropped, "exposures": t.tolist(), "blocks": int(mean.shape[-1]),
           "knots": knots, "smoothness": float(smoothness), "rms_log_residual": residuals,
           "effective_gamma": gammas}
    return CameraResponse(codes=codes, linear=np.array(curves), observed=np.array(observed), fit=fit)
