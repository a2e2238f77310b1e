"""Noise-level estimation from the images themselves, for automatic regularisation."""

from __future__ import annotations

import math

import torch

from chromaqpi.microscope import Microscope
from chromaqpi.optics.spectra import channel_quadrature

# Out-of-band noise estimate: frequencies beyond this factor times the optical
# intensity bandwidth (NA_det + NA_ill)/λ_min carry only noise.
_BAND_MARGIN = 1.1
# ... and it needs at least this fraction of the spectrum to be reliable.
_MIN_OUT_OF_BAND = 0.05
# Median of a chi-square(2)/2 (exponential) variable: |F|² median = ln 2 x mean.
_LN2 = math.log(2.0)
# MAD -> standard deviation for a Gaussian.
_MAD_TO_STD = 1.4826


def intensity_bandwidth(microscope: Microscope) -> float | None:
    """Highest spatial frequency (cycles/µm) in noiseless images, or None if unbounded.

    ``(NA_det + NA_ill)/λ_min`` over the wavelengths carrying weight (PHYSICS.md §1.4);
    None without an objective pupil (the paper presets).
    """
    o = microscope.optics
    if o.na_objective <= 0:
        return None
    quad = channel_quadrature(microscope)
    used = quad.weights.max(axis=0) > 1e-4 * quad.weights.max()
    lam_min = float(quad.wavelength_um[used].min())
    return (o.na_objective + min(o.na_condenser, o.na_objective)) / lam_min


def _out_of_band_mask(shape, dx_um: float, f_max: float, device) -> torch.Tensor:
    fy = torch.fft.fftfreq(shape[0], d=dx_um, device=device)
    fx = torch.fft.fftfreq(shape[1], d=dx_um, device=device)
    f = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return f > _BAND_MARGIN * f_max


def _spectral_variance(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Median of |F|²/N over noise-only frequencies, robust to the axis-aligned
    # leakage of non-periodic image borders.
    spec = torch.fft.fft2(images - images.mean(dim=(-2, -1), keepdim=True))
    power = spec.abs() ** 2 / images.shape[-1] / images.shape[-2]
    return power[..., mask].median(dim=-1).values / _LN2


def _haar_variance(images: torch.Tensor) -> torch.Tensor:
    # Finest diagonal Haar detail: unit gain for white noise, blind to
    # constant and linear trends; MAD makes it robust to sparse edges.
    h, w = (images.shape[-2] // 2) * 2, (images.shape[-1] // 2) * 2
    x = images[..., :h, :w]
    d = (x[..., 0::2, 0::2] - x[..., 1::2, 0::2] - x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 2
    d = d.flatten(-2)
    mad = (d - d.median(dim=-1, keepdim=True).values).abs().median(dim=-1).values
    return (_MAD_TO_STD * mad) ** 2


def _signal_free_combinations(images: torch.Tensor, signal: torch.Tensor | None) -> torch.Tensor:
    # Orthonormal channel combinations orthogonal to the defocus-signal
    # direction (e.g. I+ + I- for a ±dz pair): white noise keeps its variance,
    # while the first-order phase contrast cancels.
    c = images.shape[1]
    if signal is None or c < 2:
        return images
    v = signal.to(torch.float64).reshape(c, 1)
    basis = torch.linalg.qr(torch.cat([v, torch.eye(c, dtype=torch.float64)], dim=1)).Q[:, 1:c]
    return torch.einsum("cj,bchw->bjhw", basis.to(images.dtype).to(images.device), images)


def noise_variance(images: torch.Tensor, microscope: Microscope, *,
                   signal_direction: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel intensity noise variance σ² of each image (same for all channels), (B,).

    Rule: when the optics are band-limited and at least 5 % of the spectrum lies
    beyond 1.1x the intensity bandwidth, σ² is the channel-averaged median
    periodogram level there (only noise lives there). Otherwise it is the
    smallest finest-scale diagonal Haar MAD variance over the orthonormal
    channel combinations orthogonal to ``signal_direction`` (C,) -- the
    per-channel defocus of the stack, so that first-order phase contrast
    cancels. Sharp image detail still leaks in, so this is an upper bound.
    """
    f_max = intensity_bandwidth(microscope)
    if f_max is not None:
        mask = _out_of_band_mask(images.shape[-2:], microscope.sampling.pixel_size_um, f_max, images.device)
        if mask.float().mean() >= _MIN_OUT_OF_BAND:
            return _spectral_variance(images, mask).mean(dim=1)
    combos = _signal_free_combinations(images, signal_direction)
    return _haar_variance(combos).min(dim=1).values
