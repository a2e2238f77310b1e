"""Transport-of-intensity solvers: chromatic single-shot, two-shot and N-plane.

The axial intensity derivative is fitted over the channels (each a defocus
plane, PHYSICS.md §5.4), then the TIE is inverted with a regularised FFT
Poisson solver on a mirror-padded grid (§5.1, §5.3).
"""

from __future__ import annotations

import math

import torch

from chromaqpi.errors import ConfigError, is_number
from chromaqpi.microscope import Microscope, effective_defocus_um, effective_wavelength_um
from chromaqpi.solvers.fourier import (alpha_grid, crop, floor_frequency, k_squared, mirror_pad, resolve_padding,
                                      risk_alpha)
from chromaqpi.solvers.noise import noise_variance

# Relative spread std(ζ)/rms(ζ) below which an intercept fit is ill-conditioned
# and "auto" anchors I(0) = 1 instead: paper-rgb (0.14) is anchored, the default
# preset (0.29) is fitted -- the better choice for each on its evaluation set.
_MIN_SPREAD = 0.2


def defocus_coordinates(microscope: Microscope) -> list[float]:
    """Per-channel TIE defocus coordinate ζ_c (µm at λ_ref).

    ``ζ_c = z_eff,c`` for a non-dispersive object (``phase_model="opd"``: the
    TIE in OPD is λ-free), ``ζ_c = λ_c·z_eff,c/λ_ref`` for a λ-independent phase
    (``"constant"``: the Fresnel kernel depends on λz only). In both cases
    ``∇·(I∇φ_ref) = -(2πn/λ_ref)·∂I/∂ζ``.
    """
    z = effective_defocus_um(microscope)
    if microscope.optics.phase_model == "opd":
        return z
    lam, ref = effective_wavelength_um(microscope), microscope.optics.wavelength_ref_um
    return [zc * lc / ref for zc, lc in zip(z, lam)]


def _design(zeta: torch.Tensor, order: int, anchored: bool) -> torch.Tensor:
    powers = range(1 if anchored else 0, order + 1)
    return torch.stack([zeta**p for p in powers], dim=1)


def derivative_fit(images: torch.Tensor, zeta: list[float], *, order: int = 1, in_focus: str = "auto"):
    """Least-squares axial derivative and in-focus intensity over the channels.

    Parameters
    ----------
    images : (B, C, H, W) intensities, channel c at defocus coordinate ζ_c.
    zeta : C defocus coordinates (µm).
    order : degree of the polynomial ``I(ζ) = I0 + ∂I·ζ + ...`` fitted per pixel.
    in_focus : ``"fit"`` (I0 is a free intercept), ``"unity"`` (pure-phase,
        flat-fielded sample: I(0) = 1 is a known point) or ``"auto"`` (``"fit"``
        unless the ζ spread is too small for an intercept: std/rms < 0.2).

    Returns
    -------
    dI : (B, H, W) ∂I/∂ζ at ζ = 0 (1/µm).
    i0 : (B, H, W) in-focus intensity estimate.
    gain : ``Σ_c w_c²`` of the derivative's channel weights: white intensity
        noise of variance σ² gives ``Var(dI) = gain·σ²``.

    Notes
    -----
    For order 1 with an intercept this is the regression of §5.4,
    ``∂I = Σ(ζ_c-ζ̄)(I_c-Ī)/Σ(ζ_c-ζ̄)²``, ``I0 = Ī - ζ̄·∂I``; for ±dz it reduces
    to the central difference ``(I₊-I₋)/(2dz)`` and ``I0 = (I₊+I₋)/2``.
    """
    z = torch.tensor(zeta, dtype=torch.float64)
    anchored = _anchored(z, in_focus)
    design = _design(z, order, anchored)
    if torch.linalg.matrix_rank(design) < design.shape[1]:
        raise ConfigError(f"channels at defocus coordinates {[round(v, 3) for v in zeta]} µm cannot determine "
                          f"an order-{order} TIE fit{' with free I0' if not anchored else ''}; "
                          "use more distinct planes, a lower order or in_focus='unity'")
    rows = torch.linalg.pinv(design).to(images.dtype).to(images.device)
    data = images - 1 if anchored else images
    coef = torch.einsum("pc,bchw->bphw", rows, data)
    slope = 0 if anchored else 1
    gain = float((rows[slope] ** 2).sum())
    i0 = torch.ones_like(coef[:, 0]) if anchored else coef[:, 0]
    return coef[:, slope], i0, gain


def _anchored(z: torch.Tensor, in_focus: str) -> bool:
    if in_focus not in ("auto", "fit", "unity"):
        raise ConfigError(f"in_focus must be 'auto', 'fit' or 'unity', got {in_focus!r}")
    if in_focus != "auto":
        return in_focus == "unity"
    return not intercept_identifiable(z.tolist())


def intercept_identifiable(zeta: list[float]) -> bool:
    """Whether channels at defocus coordinates ``zeta`` fit a free in-focus intensity: at least two,
    with a spread std/rms >= 0.2 (below it the intercept is a small difference of large numbers)."""
    z = torch.tensor(zeta, dtype=torch.float64)
    rms = float(torch.sqrt((z**2).mean())) if len(z) else 0.0
    return len(z) >= 2 and rms > 0 and float(z.std(unbiased=False)) >= _MIN_SPREAD * rms


def inverse_laplacian(rhs_hat: torch.Tensor, k2: torch.Tensor, alpha) -> torch.Tensor:
    """Tikhonov-regularised ``∇⁻²`` in Fourier space: ``-R·|k|²/(|k|⁴ + α)``, DC = 0.

    ``alpha`` is a float or a (B,) tensor (per image), in (rad/µm)⁴.
    """
    alpha = torch.as_tensor(alpha, dtype=k2.dtype, device=k2.device).reshape(-1, 1, 1)
    denom = k2**2 + alpha
    out = -rhs_hat * torch.where(denom > 0, k2 / torch.where(denom > 0, denom, 1), 0)
    out[..., 0, 0] = 0
    return out


def tie_alpha(rhs_hat: torch.Tensor, k2: torch.Tensor, regularization, noise_var: torch.Tensor,
              floor: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Regularisation weight α (B,) in (rad/µm)⁴ for :func:`inverse_laplacian`.

    Parameters
    ----------
    rhs_hat : (B, H, W) spectrum of the TIE data ``g = ∇²φ``.
    k2 : (H, W) ``|k|²``.
    regularization : ``"auto"`` (minimum estimated risk, see :func:`tie`) or a
        cut-off frequency ``f_c`` in cycles/µm (``α = (2πf_c)⁴``; 0 disables it).
    noise_var : (B,) per-pixel noise variance of ``g``.
    floor : lower bound of the automatic α, (rad/µm)⁴, scalar or (B,).
    """
    batch = rhs_hat.shape[0]
    if regularization == "auto":
        s = k2**2
        noise_power = noise_var * k2.numel()
        alpha = risk_alpha(s, rhs_hat.abs() ** 2 * s, noise_power, alpha_grid(s.max(), decades=16))
        alpha = torch.maximum(alpha, torch.as_tensor(floor, dtype=alpha.dtype, device=alpha.device))
        return alpha.to(device=k2.device, dtype=k2.dtype)
    if is_number(regularization) and regularization >= 0:
        value = (2 * math.pi * float(regularization)) ** 4
        return torch.full((batch,), value, dtype=k2.dtype, device=k2.device)
    raise ConfigError(f"regularization must be 'auto' or a cut-off frequency >= 0 in cycles/µm, "
                      f"got {regularization!r}")


def _gradient(field_hat: torch.Tensor, dx_um: float) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = field_hat.shape[-2:]
    ky = 2 * math.pi * torch.fft.fftfreq(h, d=dx_um, dtype=field_hat.real.dtype, device=field_hat.device)
    kx = 2 * math.pi * torch.fft.fftfreq(w, d=dx_um, dtype=field_hat.real.dtype, device=field_hat.device)
    return 1j * ky[:, None] * field_hat, 1j * kx[None, :] * field_hat


def _poisson_spectrum(rhs, i0, dx_um, regularization, noise_var, alpha_floor, teague):
    """``|k|²``, the spectrum of ``rhs`` (over mean I0 in the uniform-intensity form) and its α (B,)."""
    k2 = k_squared(rhs.shape[-2:], dx_um, dtype=rhs.dtype, device=rhs.device)
    mean_i0 = i0.mean(dim=(-2, -1), keepdim=True)
    scale = torch.ones_like(mean_i0) if teague else mean_i0
    rhs_hat = torch.fft.fft2(rhs / scale)
    if noise_var is None:
        noise_var = torch.zeros(rhs.shape[0], dtype=rhs.dtype, device=rhs.device)
    return k2, rhs_hat, tie_alpha(rhs_hat, k2, regularization, noise_var / scale.flatten() ** 2, alpha_floor)


def solve_poisson(rhs: torch.Tensor, i0: torch.Tensor, dx_um: float, *, regularization="auto",
                  noise_var: torch.Tensor | None = None, alpha_floor: torch.Tensor | float = 0.0,
                  teague: bool = False,
                  i0_floor: float = 0.1) -> torch.Tensor:
    """Solve ``∇·(I0∇φ) = rhs`` on a periodic (already padded) grid.

    Parameters
    ----------
    rhs : (B, H, W) right-hand side (rad/µm²).
    i0 : (B, H, W) in-focus intensity.
    dx_um : pixel size (µm).
    regularization : see :func:`tie_alpha`.
    noise_var : (B,) per-pixel noise variance of ``rhs`` (needed for ``"auto"``).
    alpha_floor : lower bound of the automatic α, (rad/µm)⁴, scalar or (B,).
    teague : False: uniform-intensity form ``∇²φ = rhs/mean(I0)``; True:
        Teague's two Poisson solves ``ψ = ∇⁻²rhs``, ``φ = ∇⁻²∇·(∇ψ/I0)``
        (I0 floored at ``i0_floor·mean``; regularisation on the first solve).

    Returns
    -------
    (B, H, W) phase (rad), zero mean.
    """
    k2, rhs_hat, alpha = _poisson_spectrum(rhs, i0, dx_um, regularization, noise_var, alpha_floor, teague)
    psi_hat = inverse_laplacian(rhs_hat, k2, alpha)
    if not teague:
        return torch.fft.ifft2(psi_hat).real
    floor = torch.clamp(i0, min=0).maximum(i0_floor * i0.mean(dim=(-2, -1), keepdim=True))
    gy, gx = (torch.fft.ifft2(g).real / floor for g in _gradient(psi_hat, dx_um))
    dy, _ = _gradient(torch.fft.fft2(gy), dx_um)
    _, dxx = _gradient(torch.fft.fft2(gx), dx_um)
    return torch.fft.ifft2(inverse_laplacian(dy + dxx, k2, 0.0)).real


def tie(images: torch.Tensor, microscope: Microscope, *, regularization="auto", noise_std: float | None = None,
        teague: bool = False, order: int = 1, in_focus: str = "auto", padding: str = "auto",
        i0_floor: float = 0.1) -> torch.Tensor:
    """Transport-of-intensity phase retrieval from the channel defocus stack.

    Works for the chromatic single shot (RGB mode, Waller et al. 2010), the
    two-shot ±dz TIE (``paper-2shot``) and any N-plane stack.

    Parameters
    ----------
    images : (B, C, H, W) intensities, empty field = 1.
    microscope : resolved Microscope (defocus, wavelengths, n, pixel size).
    regularization : ``"auto"`` (default, rule in Notes) or a Tikhonov cut-off
        frequency f_c (cycles/µm, ``α = (2πf_c)⁴``; ``0`` = plain inverse Laplacian).
    noise_std : intensity noise σ (units of the empty field) for ``"auto"``;
        estimated from the images when None (:func:`~chromaqpi.solvers.noise.noise_variance`).
    teague : use the non-uniform-intensity (Teague) form.
    order : degree of the per-pixel polynomial fit in ζ (1 or 2).
    in_focus : in-focus intensity model, see :func:`derivative_fit`.
    padding : ``"mirror"`` (even extension, Neumann-like boundaries), ``"none"``
        (periodic) or ``"auto"``: see :func:`~chromaqpi.solvers.fourier.resolve_padding`.
    i0_floor : Teague only, floor of I0 as a fraction of its mean.

    Returns
    -------
    (B, H, W) phase (rad) at ``optics.wavelength_ref_um``.

    Notes
    -----
    With ζ_c from :func:`defocus_coordinates`, the paraxial TIE reads
    ``∇·(I0∇φ) = -(2πn/λ_ref)·∂I/∂ζ``; the uniform-intensity estimator is

    ``φ = F⁻¹{ (2πn/λ_ref)·F{∂I/∂ζ}/Ī0 · |k|²/(|k|⁴ + α) }``, ``k = 2πf``, DC = 0.

    **Automatic regularisation** (``"auto"``): the intensity noise σ is
    estimated from the images (out-of-band periodogram when the optics are
    band-limited, else finest-scale Haar MAD), propagated to the TIE data
    ``g`` through the fit weights, and α minimises the unbiased estimate of
    the phase mean-square error of the filter ``|k|⁴/(|k|⁴+α)``
    (:func:`~chromaqpi.solvers.fourier.risk_alpha`) over a log grid of 16
    decades plus α = 0. Exact data give α = 0; noise raises the low-frequency
    cut-off, which suppresses the 1/f² "cloud" artefact. When the channels
    differ in wavelength and the objective has a finite NA, the cut-off is
    at least 3 cycles per field of view when light scattered beyond the pupil
    (cut-off NA/λ) leaves a wavelength-dependent, low-frequency intensity
    deficit that the channel regression reads as defocus signal and the
    Poisson solver amplifies as 1/f² -- a model error the noise-based rule
    cannot see; it shows as a mean intensity below 1, which switches the floor
    on per image (:func:`~chromaqpi.solvers.fourier.floor_frequency`). On 4
    samples each of ``phantoms-test`` and ``natural-test`` (default preset)
    the floor cut the offset-aligned MAE from 1.22 to 0.64 rad and from 6.7 to
    0.52 rad; 2-6 cycles all performed alike.
    (GCV, on the TIE data or on the channel data, was tried and rejected:
    it selected α → ∞ or erratic cut-offs.)

    References
    ----------
    Teague, JOSA 73:1434 (1983); Waller, Kou, Sheppard, Barbastathis,
    Opt. Express 18:22817 (2010); Zuo et al., Opt. Lasers Eng. 135:106187 (2020).
    """
    padding = resolve_padding(padding, microscope)
    rhs, i0, noise_var = _tie_problem(images, microscope, noise_std, order, in_focus, padding)
    phase = solve_poisson(rhs, i0, microscope.sampling.pixel_size_um,
                          regularization=regularization, noise_var=noise_var,
                          alpha_floor=chromatic_alpha_floor(images, microscope), teague=teague, i0_floor=i0_floor)
    return crop(phase, images.shape[-2:])


def _tie_problem(images, microscope, noise_std, order, in_focus, padding):
    """The padded Poisson right-hand side ``-(2πn/λ)∂I/∂ζ``, in-focus intensity, and the noise variance of
    the right-hand side (B,)."""
    if order not in (1, 2):
        raise ConfigError(f"order must be 1 or 2, got {order!r}")
    zeta = defocus_coordinates(microscope)
    d_i, i0, gain = derivative_fit(images, zeta, order=order, in_focus=in_focus)
    o = microscope.optics
    factor = 2 * math.pi * o.n_medium / o.wavelength_ref_um
    noise_var = _intensity_noise(images, microscope, noise_std, zeta) * gain * factor**2
    return mirror_pad(-factor * d_i, padding), mirror_pad(i0, padding), noise_var


def tie_regularization(images: torch.Tensor, microscope: Microscope) -> torch.Tensor:
    """The α (B,), in (rad/µm)⁴, that :func:`tie`'s automatic rule picks for ``images`` (default options):
    its low-frequency roll-off ``|k|⁴/(|k|⁴ + α)``, chosen for the phase error under the estimated noise."""
    rhs, i0, noise_var = _tie_problem(images, microscope, None, 1, "auto", resolve_padding("auto", microscope))
    return _poisson_spectrum(rhs, i0, microscope.sampling.pixel_size_um, "auto", noise_var,
                             chromatic_alpha_floor(images, microscope), False)[2]


def chromatic_alpha_floor(images: torch.Tensor, microscope: Microscope) -> torch.Tensor:
    """Per-image floor ``(2π·f_floor)⁴`` of the automatic α, (B,)
    (see :func:`~chromaqpi.solvers.fourier.floor_frequency`)."""
    return (2 * math.pi * floor_frequency(images, microscope)) ** 4


def _intensity_noise(images: torch.Tensor, microscope: Microscope, noise_std, zeta) -> torch.Tensor:
    if noise_std is None:
        return noise_variance(images, microscope, signal_direction=torch.tensor(zeta))
    if not is_number(noise_std) or noise_std < 0:
        raise ConfigError(f"noise_std must be a number >= 0 (units of the empty-field intensity), got {noise_std!r}")
    return torch.full((images.shape[0],), float(noise_std) ** 2, dtype=images.dtype, device=images.device)
