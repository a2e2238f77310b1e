"""Does a phase map explain the image it came from? The data residual of a reconstruction.

Any phase estimate, learned or classical, can be put back through the forward model and compared
with the recorded channels: the part of the image's contrast it leaves unexplained needs no ground
truth. A residual at the noise level says the estimate is consistent with the data (not that it is
unique); a residual many times the noise flags an estimate the data contradict, or a microscope
description that does not match the instrument (wrong pixel size, defocus or NA), or what the
phase-only model lacks (absorption, flat-field errors).

The other half of that check is :func:`estimate_absorption`: where a specimen attenuates the light
(stains, pigment), which every solver and network here assumes it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope

#: Largest side simulated: a central crop of larger images keeps the check at a few seconds.
DEFAULT_CROP = 512
#: Noise variance below which an image counts as noiseless (float64 round-off of a simulation).
NOISE_FLOOR = 1e-12
#: Border excluded from the comparison: the simulation of a crop treats it as periodic, the image does not.
DEFAULT_MARGIN = 16
#: Smallest in-focus intensity turned into an attenuation: a = -½ ln(0.01) = 2.3 is the largest reported.
MIN_IN_FOCUS = 0.01


@dataclass(frozen=True)
class DataFit:
    """How well one phase map explains its image (over the central crop, minus the margin).

    ``residual_over_noise``: mean squared residual over the estimated noise variance (1: explained to
    the noise; where the optics are not band-limited the noise estimate is an upper bound, so this is
    a lower bound; inf for a noiseless image). ``unexplained_contrast``: squared residual over the squared contrast of the image
    (0: all of it explained; 1: no better than a flat phase). ``noise_std``: the estimated intensity
    noise per pixel. ``region``: (y0, x0, height, width) compared.
    """

    residual_over_noise: float
    unexplained_contrast: float
    noise_std: float
    region: tuple[int, int, int, int]

    def summary(self) -> str:
        noise = ("no measurable noise" if math.isinf(self.residual_over_noise)
                 else f"{self.residual_over_noise:.3g}x the noise variance")
        return f"data residual {noise}, {100 * self.unexplained_contrast:.1f} % of the contrast unexplained"


def _over_noise(mean_square: float, noise_var: float) -> float:
    """Residual over noise; inf where the image carries no measurable noise (a noiseless simulation)."""
    return mean_square / noise_var if noise_var > NOISE_FLOOR else float("inf")


def data_fit(images, phase, microscope: Microscope | str, *, crop: int = DEFAULT_CROP,
             margin: int = DEFAULT_MARGIN) -> DataFit | list[DataFit]:
    """Compare the images a phase map predicts (noise-free, reduced quadrature) with the recorded ones.

    Parameters
    ----------
    images : (C, H, W) or (B, C, H, W) flat-field normalised intensities, as for :func:`chromaqpi.reconstruct`
        (a declared registration is undone the same way).
    phase : (H, W) or (B, H, W) radians, e.g. what ``reconstruct`` returned for them (the offset is irrelevant).
    crop, margin : the central ``crop`` px square (at most) is simulated and compared without ``margin`` px
        at its border.

    Returns
    -------
    :class:`DataFit`, or a list of them for a batch. The channels' mean residual is removed first (a
    flat-field gain error is not the phase's fault); the contrast is each channel's deviation from its mean.
    """
    from chromaqpi.registration import unregister
    from chromaqpi.solvers.base import as_image_batch
    from chromaqpi.solvers.noise import noise_variance
    from chromaqpi.tiling import central_crop, central_origin

    microscope = Microscope.resolve(microscope)
    batch, batched = as_image_batch(images, microscope.n_channels)
    phases = _phase_batch(phase, batch)
    for name, value, least in (("crop", crop, 2 * margin + 9), ("margin", margin, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{name} must be an integer >= {least} (crop > 2 x margin + 8), got {value!r}")
    batch, microscope = unregister(batch.double(), microscope)
    bayer = microscope.sensor.bayer  # the crop must keep the mosaic's colour layout
    batch, phases = (central_crop(t, crop, even=bayer) for t in (batch, phases))
    if min(batch.shape[-2:]) < 2 * margin + 9:
        raise InputError(f"image too small to compare without a {margin} px margin: {tuple(batch.shape[-2:])}")
    predicted = _predicted_images(phases, microscope)
    noise = noise_variance(batch, microscope)
    inner = (..., slice(margin, batch.shape[-2] - margin), slice(margin, batch.shape[-1] - margin))
    residual = (batch - predicted)[inner]
    residual = residual - residual.mean(dim=(-2, -1), keepdim=True)
    contrast = batch[inner] - batch[inner].mean(dim=(-2, -1), keepdim=True)
    top, left = central_origin(images.shape, crop, even=bayer)
    region = (top + margin, left + margin, residual.shape[-2], residual.shape[-1])
    fits = [DataFit(residual_over_noise=_over_noise(float(r.pow(2).mean()), float(v)),
                    unexplained_contrast=float(r.pow(2).sum() / max(float(c.pow(2).sum()), 1e-30)),
                    noise_std=float(v) ** 0.5, region=region)
            for r, c, v in zip(residual, contrast, noise)]
    return fits if batched else fits[0]


def estimate_absorption(images, microscope: Microscope | str, *, phase=None, order: int = 1) -> torch.Tensor:
    """Amplitude attenuation ``a = -½ ln I0`` (``|t|² = e^{-2a}``) of the specimen, per pixel.

    ``I0`` is the in-focus intensity: the intercept of the per-pixel fit of the channels' intensities
    against their defocus (the TIE's channel regression, :func:`chromaqpi.solvers.tie.derivative_fit`).
    A transparent specimen has ``I0 ≈ 1`` (a = 0) to first order; an absorber shows as it would in
    focus. Light that a strong phase object scatters past the objective pupil also darkens ``I0``, so
    steep phase edges read as a little attenuation too (``benchmarks/results/absorption.md`` measures
    both). Values are clipped at ``-½ ln 0.01 = 2.3`` where the fit leaves no light. Given a phase map,
    the attenuation that phase itself predicts (its images simulated noise-free with the reduced
    quadrature, then fitted the same way) is subtracted: what remains is the attenuation the phase
    does not explain. With the true phase that removes the pupil loss (transparent training-mix samples
    then read at most 0.03 at the 99th percentile); with a reconstruction, as much of it as the map has
    the steep edges that cause it (``benchmarks/results/absorption-estimate.md``). Not with a map refined
    to the data by a pure-phase fit: that phase also explains the absorbers away (README).

    Parameters
    ----------
    images : (C, H, W) or (B, C, H, W) flat-field normalised intensities (a declared registration is
        undone, as for :func:`chromaqpi.reconstruct`).
    microscope : its channels must sit at defocus values spread enough to fit an intercept (the
        two-plane ±dz stack and the chromatic ``default`` optics are; ``paper-rgb``, whose three
        channels are all defocused alike, is not: ConfigError).
    order : degree of the per-pixel polynomial in defocus (1 or 2; 2 needs 3 distinct planes).
    phase : optional (H, W) or (B, H, W) radians for the same images (e.g. what ``reconstruct``
        returned); costs one simulation of the whole image (``default`` optics, 2 threads: 4 s and
        1.9 GB peak at 512 px, 21 s and 3.1 GB at 1024 px, 101 s and 7.6 GB at 2048 px).

    Returns
    -------
    (H, W) or (B, H, W) float64 attenuation a (dimensionless; 0 = transparent).
    """
    from chromaqpi.registration import unregister
    from chromaqpi.solvers.base import as_image_batch
    from chromaqpi.solvers.tie import defocus_coordinates, derivative_fit

    microscope = Microscope.resolve(microscope)
    check_absorption_identifiable(microscope)
    if order not in (1, 2):
        raise ConfigError(f"order must be 1 or 2, got {order!r}")
    batch, batched = as_image_batch(images, microscope.n_channels)
    batch, microscope = unregister(batch.double(), microscope)
    zeta = defocus_coordinates(microscope)

    def attenuation(stack):
        _, i0, _ = derivative_fit(stack, zeta, order=order, in_focus="fit")
        return -0.5 * torch.log(i0.clamp(min=MIN_IN_FOCUS))

    a = attenuation(batch)
    if phase is not None:
        a = a - attenuation(_predicted_images(_phase_batch(phase, batch), microscope))
    return a if batched else a[0]


def _phase_batch(phase, batch: torch.Tensor) -> torch.Tensor:
    """(B, H, W) float64 phase on the images' device, or InputError when it does not match them."""
    from chromaqpi.optics.simulator import as_phase_batch

    phases = as_phase_batch(phase).to(device=batch.device, dtype=torch.float64)
    if phases.shape != (batch.shape[0], *batch.shape[-2:]):
        raise InputError(f"phase shape {tuple(phases.shape)} does not match the images' {tuple(batch.shape)}")
    return phases


def _predicted_images(phases: torch.Tensor, microscope: Microscope) -> torch.Tensor:
    """Noise-free images of ``phases`` (B, H, W) through the reduced quadrature, float64."""
    from chromaqpi.optics.simulator import get_simulator
    from chromaqpi.solvers.iterative import fast_microscope

    simulator = get_simulator(fast_microscope(microscope), tuple(phases.shape[-2:]), dtype=torch.float64,
                              device=phases.device)
    with torch.no_grad():
        return simulator(phases, noise=False)


def check_absorption_identifiable(microscope: Microscope) -> None:
    """ConfigError when the microscope's channels cannot tell an absorber from defocus contrast."""
    from chromaqpi.solvers.tie import defocus_coordinates, intercept_identifiable

    zeta = defocus_coordinates(microscope)
    if not intercept_identifiable(zeta):
        raise ConfigError(f"microscope {microscope.name!r}: its channels' defocus values "
                          f"{[round(z, 3) for z in zeta]} µm are too alike to tell absorption from defocus contrast "
                          "(needs planes on both sides of focus or a wider chromatic spread)")
