"""Fourier-domain helpers shared by the linear solvers (TIE, WOTF).

Mirror padding, angular-frequency grids, and generalised cross-validation
(GCV) for diagonal Tikhonov filters. Pure functions on batched tensors.
"""

from __future__ import annotations

import math

import torch

PADDING_MODES = ("auto", "mirror", "none")
# Lowest trusted frequency, in cycles per field of view, for colour stacks seen
# through a finite pupil (see floor_frequency).
FLOOR_CYCLES = 3.0
# Mean-intensity deficit (1 - mean I_c, any channel) that reveals light lost
# beyond the pupil: <= 1e-5 for weak and 2-rad smooth objects, 5e-4 to 4e-2 on
# the default-preset evaluation samples (measured).
LOSS_THRESHOLD = 1e-4


def floor_frequency(images: torch.Tensor, microscope) -> torch.Tensor:
    """Lowest spatial frequency (cycles/µm) the automatic regularisation trusts, per image; 0 = all.

    Light scattered beyond the pupil (cut-off NA/λ) leaves a low-frequency
    intensity deficit that depends on wavelength; across channels of different
    colour it mimics defocus contrast, and inverse filters amplify it like
    1/f². Noise-based rules and GCV cannot see this model error. So when the
    channel centroid wavelengths differ by more than 1 %, the objective has a
    finite NA, and the image shows the loss (mean intensity of some channel
    below 1 - 1e-4; a pure-phase object otherwise conserves energy), the
    regularisation rolls off below 3 cycles per field of view (``3/L``, L the
    longer side in µm). Otherwise 0: monochromatic stacks (the loss cancels
    between planes), pupil-free optics and weak objects.

    Parameters
    ----------
    images : (B, C, H, W) intensities, empty field = 1.
    microscope : the Microscope.

    Returns
    -------
    (B,) float64 tensor on the images' device.
    """
    from chromaqpi.microscope import effective_wavelength_um

    zero = torch.zeros(images.shape[0], dtype=torch.float64, device=images.device)
    if microscope.optics.na_objective <= 0:
        return zero
    lam = effective_wavelength_um(microscope)
    if max(lam) - min(lam) <= 0.01 * sum(lam) / len(lam):
        return zero
    deficit = (1 - images.to(torch.float64).mean(dim=(-2, -1))).amax(dim=1)
    cutoff = FLOOR_CYCLES / (max(images.shape[-2:]) * microscope.sampling.pixel_size_um)
    return torch.where(deficit > LOSS_THRESHOLD, cutoff, zero)



def resolve_padding(padding: str, microscope) -> str:
    """``"mirror"`` or ``"none"`` for a requested mode.

    ``"auto"`` follows the imaging model the microscope declares: with
    ``sampling.pad_px = 0`` (the reference paper's presets) propagation is
    circular, so the images are periodic and must be inverted without
    padding -- mirroring them would split the wrapped border contrast and
    inject a large low-frequency error. Otherwise (real, non-periodic fields)
    the even mirror extension is used.
    """
    from chromaqpi.errors import ConfigError

    if padding not in PADDING_MODES:
        raise ConfigError(f"padding must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    if padding == "auto":
        return "none" if microscope.sampling.pad_px == 0 else "mirror"
    return padding


def mirror_pad(x: torch.Tensor, padding: str) -> torch.Tensor:
    """Even (whole-sample symmetric) extension ``(..., H, W) -> (..., 2H, 2W)``.

    The periodic continuation of the extended image is continuous, so FFT
    solvers on it behave like DCT solvers with Neumann boundaries instead of
    wrapping the left edge onto the right one (PHYSICS.md §5.3). Even weak-object
    transfer functions map the mirrored object to the mirrored image, so the
    extension is exact for the linear model as well.
    """
    if padding == "none":
        return x
    x = torch.cat([x, x.flip(-1)], dim=-1)
    return torch.cat([x, x.flip(-2)], dim=-2)


def crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Top-left ``shape`` block of the last two axes (undoes :func:`mirror_pad`)."""
    return x[..., : shape[0], : shape[1]]


def padded_shape(shape: tuple[int, int], padding: str) -> tuple[int, int]:
    """Grid size the solvers work on for an image of ``shape``."""
    return (2 * shape[0], 2 * shape[1]) if padding == "mirror" else (shape[0], shape[1])


def k_squared(shape: tuple[int, int], dx_um: float, *, dtype, device) -> torch.Tensor:
    """``|k|² = (2π|f|)²`` in (rad/µm)² on an FFT-ordered grid, (H, W)."""
    fy = torch.fft.fftfreq(shape[0], d=dx_um, dtype=dtype, device=device)
    fx = torch.fft.fftfreq(shape[1], d=dx_um, dtype=dtype, device=device)
    return (2 * math.pi) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2)


def alpha_grid(scale: torch.Tensor, *, decades: float = 14.0, per_decade: int = 4) -> torch.Tensor:
    """Candidate regularisation weights: 0 and ``scale·10^[-decades, 0]`` (log-spaced)."""
    exps = torch.linspace(-decades, 0.0, int(decades * per_decade) + 1, dtype=torch.float64)
    grid = scale.to(torch.float64).cpu() * 10.0**exps
    return torch.cat([torch.zeros(1, dtype=torch.float64), grid])


def gcv_alpha(energy: torch.Tensor, power: torch.Tensor, residual0: torch.Tensor, n_data: int,
              alphas: torch.Tensor) -> torch.Tensor:
    """GCV choice of α for the rank-one per-frequency filter ``s/(s+α)``.

    Each frequency has data ``D_c`` (C channels) and operator column ``h_c``;
    with ``s = Σ|h_c|²`` and projection ``p = Σ conj(h_c)D_c`` the Tikhonov
    residual is ``r0 + Σ_g (|p|²/s)·(α/(s+α))²`` (``r0``: the part of the data
    orthogonal to h, independent of α) and the hat-matrix trace is
    ``Σ_g s/(s+α)``. GCV minimises ``residual / (n_data - trace)²``.

    Parameters
    ----------
    energy : (H, W) ``s``, shared by the batch.
    power : (B, H, W) ``|p|²/s`` (zero where ``s = 0``).
    residual0 : (B,) α-independent residual.
    n_data : number of real data values ``C·H·W``.
    alphas : (A,) candidate weights, float64.

    Returns
    -------
    (B,) the GCV-optimal α per image (float64).
    """
    best = torch.full(power.shape[:1], float("nan"), dtype=torch.float64, device=power.device)
    best_score = torch.full_like(best, float("inf"))
    s = energy.to(torch.float64)
    pw = power.to(torch.float64)
    valid = s > 0
    safe = torch.where(valid, s, torch.ones_like(s))
    for alpha in alphas.tolist():
        damp = torch.where(valid, alpha / (safe + alpha), torch.ones_like(s))
        residual = residual0 + (pw * damp**2).sum(dim=(-2, -1))
        trace = (1 - damp).sum()
        score = residual / (n_data - trace) ** 2
        better = score < best_score
        best = torch.where(better, torch.full_like(best, alpha), best)
        best_score = torch.where(better, score, best_score)
    return best


def risk_alpha(energy: torch.Tensor, proj_power: torch.Tensor, noise_power: torch.Tensor,
               alphas: torch.Tensor) -> torch.Tensor:
    """α minimising an estimate of the solution-domain mean-square error.

    Per frequency the data give the unregularised estimate ``Φ_ML = p/s`` with
    noise variance ``N/s`` (``s = Σ|h_c|²``, ``p = Σ conj(h_c)D_c``, ``N`` the
    noise power per Fourier coefficient of each channel). The Tikhonov
    estimate is ``r·Φ_ML`` with ``r = s/(s+α)``, whose expected error is
    ``(1-r)²|Φ|² + r²N/s``. With the signal power estimated by
    ``S = max(|Φ_ML|² - N/s, 0)`` (positive part: unbiased where the signal
    dominates, low-variance where the noise does) the risk, up to the
    α-independent ``ΣS``, is

    ``R(α) = Σ_g r²(S + N/s) - 2rS = Σ_g max(|p|², sN)/(s+α)² - 2max(|p|² - sN, 0)/(s(s+α))``,

    written so that frequencies with ``s → 0`` add no huge constants.

    Parameters
    ----------
    energy : ``s``, broadcastable to (B, H, W), >= 0.
    proj_power : (B, H, W) ``|p|²``.
    noise_power : (B,) ``N``; zero gives α = 0.
    alphas : (A,) candidates, float64.

    Returns
    -------
    (B,) float64 α per image.
    """
    s = energy.to(torch.float64).expand_as(proj_power)
    valid = s > 0
    safe = torch.where(valid, s, torch.ones_like(s))
    p2 = proj_power.to(torch.float64)
    noise = noise_power.to(torch.float64).reshape(-1, 1, 1) * safe
    total = torch.where(valid, torch.maximum(p2, noise), torch.zeros_like(s))
    signal = torch.where(valid, torch.clamp(p2 - noise, min=0) / safe, torch.zeros_like(s))
    best = torch.full(proj_power.shape[:1], float("nan"), dtype=torch.float64, device=proj_power.device)
    best_risk = torch.full_like(best, float("inf"))
    for alpha in alphas.tolist():
        risk = (total / (safe + alpha) ** 2 - 2 * signal / (safe + alpha)).sum(dim=(-2, -1))
        better = risk < best_risk
        best = torch.where(better, torch.full_like(best, alpha), best)
        best_risk = torch.where(better, risk, best_risk)
    return best
