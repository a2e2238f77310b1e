"""Evaluation metrics for phase images: MAE, RMSE, PSNR, SSIM, MS-SSIM, dry mass.

Conventions (PHYSICS.md §7)
---------------------------
* **Shapes.** Every metric takes ``pred`` and ``true`` of shape ``(H, W)`` or
  ``(..., H, W)`` (usually ``(B, H, W)``), as torch tensors or numpy arrays.
* **Return values.** Per-sample metrics return a ``torch.float64`` tensor with the
  leading shape of the input: 0-d for ``(H, W)``, ``(B,)`` for ``(B, H, W)``.
  Use ``float(x)`` or ``x.tolist()`` for python numbers. Only :func:`evaluate_all`
  returns python floats (the batch mean of each metric).
* **Precision.** Inputs are promoted to float64 on their own device before any
  reduction, so sums over 10^5 pixels (dry mass) keep ~1e-15 relative accuracy.
* **Offset ambiguity.** Defocus-based methods lose the DC phase, so each metric
  can first shift the prediction by the best constant, ``align="median"``
  (optimal for L1, used by MAE) or ``align="mean"`` (optimal for L2, used by RMSE,
  PSNR, SSIM). ``align="none"`` reports the raw value. Report both.
* **Data range.** PSNR, SSIM and MS-SSIM use a *fixed*, caller-given data range
  (e.g. 3.5 rad, or 2 on the reference paper's [-1, 1] scale), never the
  per-image range, which would hide scale errors.
* **Masks.** ``mask`` (bool, broadcastable to the inputs) selects the pixels
  that enter pixel-wise metrics and the alignment offset. A sample with an
  empty mask yields NaN.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Align = Literal["none", "median", "mean"]

# Wang, Simoncelli & Bovik (2003), Table 1: per-scale exponents, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# The reference paper maps phase in [0, phi_max] onto [-1, 1] with phi_max = 3.5 rad.
PHI_MAX_RAD = 3.5
# Refractive increment of dry cell mass, um^3/pg (= mL/g); 0.18-0.21 in the literature.
ALPHA_UM3_PER_PG = 0.19


# ---------------------------------------------------------------------------
# Input handling and offset alignment
# ---------------------------------------------------------------------------


def _as_f64(x) -> torch.Tensor:
    """Return ``x`` as a float64 tensor on its own device (numpy goes to CPU)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).to(torch.float64)


def _pair(pred, true) -> tuple[torch.Tensor, torch.Tensor]:
    """Promote a prediction/truth pair to float64 and check shapes agree."""
    p, t = _as_f64(pred), _as_f64(true)
    if p.shape != t.shape:
        raise ValueError(f"pred and true shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if p.ndim < 2:
        raise ValueError(f"images must be (H, W) or (..., H, W), got shape {tuple(p.shape)}")
    return p, t.to(p.device)


def _mask_like(mask, ref: torch.Tensor) -> torch.Tensor | None:
    """Broadcast an optional boolean mask to ``ref``'s shape and device."""
    if mask is None:
        return None
    return torch.as_tensor(mask).to(device=ref.device, dtype=torch.bool).expand_as(ref)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last two axes, restricted to ``mask`` when given."""
    if mask is None:
        return x.mean(dim=(-2, -1))
    total = torch.where(mask, x, torch.zeros_like(x)).sum(dim=(-2, -1))
    return total / mask.sum(dim=(-2, -1))


def _masked_median(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Median over the last two axes (lower median for even counts; any value
    between the two middle ones minimises the L1 error, so this is optimal)."""
    if mask is not None:
        x = torch.where(mask, x, torch.full_like(x, float("nan")))
    return torch.nanmedian(x.flatten(-2), dim=-1).values


def best_offset(pred, true, *, align: Align, mask=None) -> torch.Tensor:
    """Constant ``c`` per sample such that ``pred + c`` best matches ``true``.

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase (any unit, e.g. rad).
    align : {"none", "median", "mean"}
        ``"median"``: ``c = median(true - pred)``, minimises the L1 error;
        ``"mean"``: ``c = mean(true - pred)``, minimises the L2 error;
        ``"none"``: ``c = 0``.
    mask : array_like of bool, optional
        Pixels used to estimate ``c``.

    Returns
    -------
    torch.Tensor, float64, shape (...)
        The offset, in the unit of the inputs.
    """
    p, t = _pair(pred, true)
    m = _mask_like(mask, p)
    if align == "none":
        return torch.zeros(p.shape[:-2], dtype=p.dtype, device=p.device)
    if align == "median":
        return _masked_median(t - p, m)
    if align == "mean":
        return _masked_mean(t - p, m)
    raise ValueError(f"align must be 'none', 'median' or 'mean', got {align!r}")


def align_offset(pred, true, *, align: Align, mask=None) -> torch.Tensor:
    """Return ``pred + best_offset(pred, true)`` as float64, shape of ``pred``."""
    p, _ = _pair(pred, true)
    c = best_offset(pred, true, align=align, mask=mask)
    return p + c[..., None, None]


def _aligned_error(pred, true, align: Align, mask) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pixel-wise error ``aligned(pred) - true`` and the broadcast mask."""
    p, t = _pair(pred, true)
    m = _mask_like(mask, p)
    return align_offset(p, t, align=align, mask=m) - t, m


# ---------------------------------------------------------------------------
# Pixel-wise metrics
# ---------------------------------------------------------------------------


def mae(pred, true, *, align: Align = "none", mask=None) -> torch.Tensor:
    """Mean absolute error per sample.

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase (rad, or any common unit).
    align : {"none", "median", "mean"}, default "none"
        Constant offset removed from ``pred`` first; ``"median"`` is the
        L1-optimal choice (PHYSICS.md §7).
    mask : array_like of bool, optional
        Pixels to include.

    Returns
    -------
    torch.Tensor, float64, shape (...)
        ``mean |pred + c - true|`` in the unit of the inputs.
    """
    err, m = _aligned_error(pred, true, align, mask)
    return _masked_mean(err.abs(), m)


def rmse(pred, true, *, align: Align = "none", mask=None) -> torch.Tensor:
    """Root-mean-square error per sample, ``sqrt(mean((pred + c - true)^2))``.

    Same parameters as :func:`mae`; ``align="mean"`` is the L2-optimal offset.
    Returns float64 of shape (...), in the unit of the inputs.
    """
    err, m = _aligned_error(pred, true, align, mask)
    return _masked_mean(err.square(), m).sqrt()


def psnr(pred, true, *, data_range: float, align: Align = "none", mask=None) -> torch.Tensor:
    """Peak signal-to-noise ratio per sample, in dB.

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase.
    data_range : float
        Fixed peak-to-peak range L in the unit of the inputs (e.g. 3.5 rad, or 2
        on the [-1, 1] scale). Never the per-image range.
    align, mask
        As in :func:`rmse` (use ``align="mean"``).

    Returns
    -------
    torch.Tensor, float64, shape (...)
        ``10 log10(L^2 / MSE)``; ``inf`` when the error is exactly zero.
    """
    _check_range(data_range)
    err, m = _aligned_error(pred, true, align, mask)
    mse = _masked_mean(err.square(), m)
    return 10.0 * torch.log10(data_range**2 / mse)


def normalised_mae(
    pred, true, *, phi_max: float = PHI_MAX_RAD, align: Align = "none", mask=None
) -> torch.Tensor:
    """MAE on the reference paper's [-1, 1] scale, ``phase / phi_max * 2 - 1``.

    The affine map's offset cancels in a difference, so this equals
    ``MAE_rad * 2 / phi_max``; ``pred`` and ``true`` are in radians.

    Parameters
    ----------
    phi_max : float, default 3.5
        Phase (rad) mapped to +1.
    align, mask
        As in :func:`mae`.

    Returns
    -------
    torch.Tensor, float64, shape (...)
        Dimensionless normalised MAE.
    """
    return mae(pred, true, align=align, mask=mask) * (2.0 / phi_max)


def _check_range(data_range: float) -> None:
    """Reject a missing, non-positive or non-finite data range."""
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")


# ---------------------------------------------------------------------------
# Structural similarity (pytorch_msssim does the filtering)
# ---------------------------------------------------------------------------


def _largest_odd_window(limit: int, wanted: int) -> int:
    """Largest odd window <= ``wanted`` that is <= ``limit`` (may be < 3)."""
    w = min(wanted, limit)
    return w if w % 2 == 1 else w - 1


def ms_ssim_window(min_side: int, *, win_size: int = 11) -> int:
    """Gaussian window (odd, px) that lets 5-scale MS-SSIM run on ``min_side`` px.

    pytorch_msssim filters without padding and asserts
    ``min_side > (win - 1) * 2**4`` (4 downsamplings, even when fewer weights
    are given). The standard window of 11 therefore needs > 160 px, so 256x256
    images use the standard setting. Smaller images get the largest odd window
    that fits, down to 3 px (images > 32 px); smaller ones raise ``ValueError``.
    """
    # (win - 1) * 16 < min_side  <=>  win <= (min_side - 1) // 16 + 1
    win = _largest_odd_window((min_side - 1) // 16 + 1, win_size)
    if win < 3:
        raise ValueError(f"MS-SSIM needs images > 32 px per side, got {min_side} px; use ssim")
    return win


def _gauss_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian, shape (1, 1, 1, size), in ``like``'s dtype.

    Built here because pytorch_msssim builds its own in float32: a sum that is
    1 only to ~1e-7 makes the local variance of a flat region nonzero and
    biases SSIM by ~1e-5 even in float64.
    """
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=like.dtype, device=like.device).reshape(1, 1, 1, size)


def _as_nchw(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (N, 1, H, W), the layout pytorch_msssim expects."""
    return x.reshape(-1, 1, *x.shape[-2:])


def ssim(
    pred,
    true,
    *,
    data_range: float,
    align: Align = "none",
    mask=None,
    win_size: int = 11,
    win_sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity index per sample (Wang et al. 2004).

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase.
    data_range : float
        Fixed data range L (unit of the inputs) in ``C1 = (0.01 L)^2``,
        ``C2 = (0.03 L)^2``.
    align : {"none", "median", "mean"}, default "none"
        Offset removed before comparing; use ``"mean"``. The luminance term is
        *not* offset invariant, so raw and aligned SSIM differ.
    mask : array_like of bool, optional
        Only used to estimate the alignment offset; SSIM itself averages the
        local index over the whole (valid-filtered) image.
    win_size, win_sigma : int, float
        Gaussian window (odd size, px) and its standard deviation (px); the
        window is shrunk for images smaller than it (sigma scaled alike).

    Returns
    -------
    torch.Tensor, float64, shape (...)
        Mean SSIM in [-1, 1] (can be negative for signed data).
    """
    from pytorch_msssim import ssim as _ssim

    _check_range(data_range)
    p, t = _pair(pred, true)
    p = align_offset(p, t, align=align, mask=mask)
    win = _largest_odd_window(min(p.shape[-2:]), win_size)
    if win < 3:
        raise ValueError(f"image {tuple(p.shape[-2:])} is too small for SSIM")
    sigma = win_sigma * win / win_size
    val = _ssim(_as_nchw(p), _as_nchw(t), data_range=data_range, size_average=False,
                win=_gauss_window(win, sigma, p))
    return val.reshape(p.shape[:-2])


def ms_ssim(
    pred,
    true,
    *,
    data_range: float,
    align: Align = "none",
    mask=None,
    win_size: int = 11,
    win_sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale SSIM per sample (Wang, Simoncelli & Bovik 2003).

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase.
    data_range : float
        Fixed data range L, in the unit of the inputs.
    align, mask
        As in :func:`ssim` (use ``align="mean"``).
    win_size, win_sigma : int, float
        Standard Gaussian window 11 px, sigma 1.5 px.
    weights : tuple of float
        Per-scale exponents, finest first (the 5 standard ones by default).

    Returns
    -------
    torch.Tensor, float64, shape (...)
        MS-SSIM in [0, 1].

    Notes
    -----
    Images of at least 161 px per side use the standard 11-px window. Smaller
    ones keep the 5 standard scales and weights but shrink the window
    (:func:`ms_ssim_window`; sigma scaled by ``win / win_size``), so their values
    are comparable only among images of the same size class; images of 32 px
    or less raise ``ValueError``. Dropping coarse scales instead is not possible
    through pytorch_msssim's public API, which asserts the 5-scale image size
    whatever the weights. pytorch_msssim clamps
    negative contrast-structure terms to 0 (relu), which can occur on signed
    phase data.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_range(data_range)
    p, t = _pair(pred, true)
    p = align_offset(p, t, align=align, mask=mask)
    win = ms_ssim_window(min(p.shape[-2:]), win_size=win_size)
    sigma = win_sigma * win / win_size
    val = _ms_ssim(_as_nchw(p), _as_nchw(t), data_range=data_range, size_average=False,
                   win=_gauss_window(win, sigma, p), weights=list(weights))
    return val.reshape(p.shape[:-2])


# ---------------------------------------------------------------------------
# Dry mass
# ---------------------------------------------------------------------------


def _mass_factor(wavelength_um: float, pixel_size_um: float, alpha_um3_per_pg: float) -> float:
    """pg per (rad * pixel): lambda / (2 pi alpha) * dx^2."""
    for name, v in (("wavelength_um", wavelength_um), ("pixel_size_um", pixel_size_um),
                    ("alpha_um3_per_pg", alpha_um3_per_pg)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive and finite, got {v!r}")
    return wavelength_um / (2.0 * math.pi * alpha_um3_per_pg) * pixel_size_um**2


def dry_mass_pg(
    phase_rad,
    wavelength_um: float,
    pixel_size_um: float,
    *,
    mask=None,
    alpha_um3_per_pg: float = ALPHA_UM3_PER_PG,
) -> torch.Tensor:
    """Dry mass (pg) in a phase image, per sample.

    Parameters
    ----------
    phase_rad : array_like, shape (..., H, W)
        Unwrapped phase (rad) at ``wavelength_um``, with the background
        (medium) at 0: an offset d_phi over area A adds
        ``lambda d_phi A / (2 pi alpha)``.
    wavelength_um : float
        Wavelength (µm) the phase refers to.
    pixel_size_um : float
        Pixel size in the sample plane (µm); pixels are square.
    mask : array_like of bool, optional
        Pixels to integrate over (default: all).
    alpha_um3_per_pg : float, default 0.19
        Refractive increment (µm³/pg = mL/g).

    Returns
    -------
    torch.Tensor, float64, shape (...)
        Dry mass in pg.

    Notes
    -----
    ``m = lambda / (2 pi alpha) * sum(phi) * dx^2`` (PHYSICS.md §7), the
    discrete form of ``(1/alpha) * integral(OPD dA)``.

    Examples
    --------
    A uniform 1 rad over one 1-µm² pixel at 0.55 µm, alpha = 0.2:

    >>> round(float(dry_mass_pg(torch.tensor([[1.0]]), 0.55, 1.0, alpha_um3_per_pg=0.2)), 4)
    0.4377
    """
    phi = _as_f64(phase_rad)
    m = _mask_like(mask, phi)
    if m is not None:
        phi = torch.where(m, phi, torch.zeros_like(phi))
    return phi.sum(dim=(-2, -1)) * _mass_factor(wavelength_um, pixel_size_um, alpha_um3_per_pg)


def _as_labels(labels, like: torch.Tensor) -> torch.Tensor:
    """Integer labels as a long tensor broadcast to ``like``'s shape and device."""
    lab = torch.as_tensor(labels)
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise ValueError(f"labels must be an integer array, got {lab.dtype}")
    return lab.to(device=like.device, dtype=torch.long).expand_as(like)


def _label_sums(values: torch.Tensor, labels, num_labels: int | None) -> torch.Tensor:
    """Sum of ``values`` per label 1..K over the last two axes -> (..., K)."""
    lab = _as_labels(labels, values)
    top = int(lab.max()) if lab.numel() else 0
    if lab.numel() and int(lab.min()) < 0:
        raise ValueError("labels must be >= 0 (0 is background)")
    k = top if num_labels is None else num_labels
    if top > k:
        raise ValueError(f"labels go up to {top} but num_labels is {k}")
    npix = values.shape[-2] * values.shape[-1]
    sums = values.new_zeros(values[..., 0, 0].numel(), k + 1)
    sums.scatter_add_(1, lab.reshape(-1, npix), values.reshape(-1, npix))
    return sums[:, 1:].reshape(*values.shape[:-2], k)  # column 0 is the background


def per_object_dry_mass(
    phase_rad,
    labels,
    wavelength_um: float,
    pixel_size_um: float,
    *,
    alpha_um3_per_pg: float = ALPHA_UM3_PER_PG,
    num_labels: int | None = None,
) -> torch.Tensor:
    """Dry mass (pg) of each labelled object.

    Parameters
    ----------
    phase_rad : array_like, shape (..., H, W)
        Phase (rad) with background 0 (see :func:`dry_mass_pg`).
    labels : array_like of int, shape (H, W) or (..., H, W)
        0 = background, 1..K = objects (broadcast over the batch).
    wavelength_um, pixel_size_um, alpha_um3_per_pg
        As in :func:`dry_mass_pg`.
    num_labels : int, optional
        K; defaults to ``labels.max()``. Fix it to get equal widths per batch.

    Returns
    -------
    torch.Tensor, float64, shape (..., K)
        Column ``j`` is the mass of label ``j + 1`` (0 for absent labels).
    """
    phi = _as_f64(phase_rad)
    return _label_sums(phi, labels, num_labels) * _mass_factor(
        wavelength_um, pixel_size_um, alpha_um3_per_pg)


def _background_referenced(phi: torch.Tensor, labels) -> torch.Tensor:
    """Subtract the median of the label-0 pixels, setting the medium to 0."""
    bg = _as_labels(labels, phi) == 0
    return phi - _masked_median(phi, bg)[..., None, None]


def dry_mass_error(
    pred_rad,
    true_rad,
    labels,
    *,
    reference_background: bool = True,
    num_labels: int | None = None,
) -> torch.Tensor:
    """Signed relative dry-mass error of each object, ``(m_pred - m_true) / m_true``.

    The factor ``lambda dx^2 / (2 pi alpha)`` cancels in the ratio, so no optical
    parameters are needed.

    Parameters
    ----------
    pred_rad, true_rad : array_like, shape (..., H, W)
        Predicted and reference phase (rad).
    labels : array_like of int, shape (H, W) or (..., H, W)
        0 = background, 1..K = objects.
    reference_background : bool, default True
        Subtract each image's median over the background (label 0) first. A
        defocus-based prediction has an arbitrary offset, which would otherwise
        add ``offset * area`` to every mass.
    num_labels : int, optional
        K, as in :func:`per_object_dry_mass`.

    Returns
    -------
    torch.Tensor, float64, shape (..., K)
        Dimensionless; NaN for labels absent from a sample (0/0).
    """
    p, t = _pair(pred_rad, true_rad)
    if reference_background:
        p, t = _background_referenced(p, labels), _background_referenced(t, labels)
    m_pred = _label_sums(p, labels, num_labels)
    m_true = _label_sums(t, labels, num_labels)
    return (m_pred - m_true) / m_true


# ---------------------------------------------------------------------------
# Everything at once, for the evaluation harness
# ---------------------------------------------------------------------------


def _ms_ssim_or_nan(p: torch.Tensor, t: torch.Tensor, kw: dict) -> torch.Tensor:
    """MS-SSIM, or NaN for images too small for it (<= 32 px), so that tables
    keep the same columns whatever the image size."""
    if min(p.shape[-2:]) <= 32:
        return torch.full(p.shape[:-2], float("nan"), dtype=torch.float64, device=p.device)
    return ms_ssim(p, t, **kw)


def evaluate_per_sample(
    pred,
    true,
    *,
    data_range: float,
    mask=None,
    phi_max: float = PHI_MAX_RAD,
    labels=None,
    win_size: int = 11,
) -> dict[str, torch.Tensor]:
    """All metrics per sample, raw and offset-aligned.

    Parameters
    ----------
    pred, true : array_like, shape (..., H, W)
        Predicted and reference phase (rad).
    data_range : float
        Fixed data range (rad) for PSNR, SSIM and MS-SSIM.
    mask : array_like of bool, optional
        Pixels for the pixel-wise metrics and the alignment offsets.
    phi_max : float, default 3.5
        Scale of the normalised MAE (rad).
    labels : array_like of int, optional
        Object labels; adds ``dry_mass_rel_error``, the mean |relative error|
        over the objects present (background-referenced, see
        :func:`dry_mass_error`).
    win_size : int, default 11
        SSIM/MS-SSIM window before adaptation to small images.

    Returns
    -------
    dict of str to torch.Tensor (float64, shape (...))
        Keys ``mae_rad``, ``mae_rad_aligned`` (median offset), ``nmae``,
        ``nmae_aligned``, ``rmse_rad``, ``rmse_rad_aligned`` (mean offset),
        ``psnr_db``, ``psnr_db_aligned``, ``ssim``, ``ssim_aligned``, ``ms_ssim``,
        ``ms_ssim_aligned`` (NaN for images of 32 px or less) and optionally
        ``dry_mass_rel_error``.
    """
    p, t = _pair(pred, true)
    out: dict[str, torch.Tensor] = {}
    for suffix, l1, l2 in (("", "none", "none"), ("_aligned", "median", "mean")):
        out["mae_rad" + suffix] = mae(p, t, align=l1, mask=mask)
        out["nmae" + suffix] = out["mae_rad" + suffix] * (2.0 / phi_max)
        out["rmse_rad" + suffix] = rmse(p, t, align=l2, mask=mask)
        out["psnr_db" + suffix] = psnr(p, t, data_range=data_range, align=l2, mask=mask)
        kw = dict(data_range=data_range, align=l2, mask=mask, win_size=win_size)
        out["ssim" + suffix] = ssim(p, t, **kw)
        out["ms_ssim" + suffix] = _ms_ssim_or_nan(p, t, kw)
    if labels is not None:
        err = dry_mass_error(p, t, labels).abs()
        out["dry_mass_rel_error"] = err.nanmean(dim=-1)
    return out


def evaluate_all(
    pred,
    true,
    *,
    data_range: float,
    mask=None,
    phi_max: float = PHI_MAX_RAD,
    labels=None,
    win_size: int = 11,
) -> dict[str, float]:
    """Batch means of :func:`evaluate_per_sample`, as python floats.

    PSNR is averaged per image (not computed from the pooled MSE), the usual
    convention in the QPI literature. Parameters are those of
    :func:`evaluate_per_sample`.

    Examples
    --------
    >>> y = torch.rand(2, 32, 32)
    >>> r = evaluate_all(y + 0.25, y, data_range=3.5)
    >>> round(r["mae_rad"], 6), round(r["mae_rad_aligned"], 6)
    (0.25, 0.0)
    """
    per = evaluate_per_sample(pred, true, data_range=data_range, mask=mask,
                              phi_max=phi_max, labels=labels, win_size=win_size)
    return {k: float(v.mean()) for k, v in per.items()}
