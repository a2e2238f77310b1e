"""Sensor model: Bayer mosaic, Poisson-Gaussian noise, quantisation, flat-field, colour matrix.

Input and output are normalised intensities (empty field = 1). Randomness
comes only from the ``generator`` argument (PHYSICS.md §3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# RGGB: channel index at (row % 2, col % 2).
_RGGB = ((0, 1), (1, 2))


def bayer_masks(shape: tuple[int, int], *, dtype=torch.float32, device=None) -> torch.Tensor:
    """(3, H, W) 0/1 masks of an RGGB colour filter array."""
    h, w = shape
    masks = torch.zeros(3, h, w, dtype=dtype, device=device)
    for dy in (0, 1):
        for dx in (0, 1):
            masks[_RGGB[dy][dx], dy::2, dx::2] = 1
    return masks


def mosaic(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) raw RGGB mosaic."""
    masks = bayer_masks(rgb.shape[-2:], dtype=rgb.dtype, device=rgb.device)
    return (rgb * masks).sum(dim=1, keepdim=True)


def demosaic_bilinear(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicing of an RGGB mosaic, (B, 1, H, W) -> (B, 3, H, W).

    Channel-independent interpolation: correlation-based demosaicers assume
    smooth colour differences, which is exactly the chromatic-defocus signal
    (PHYSICS.md §2.6), so we do not use them.
    """
    masks = bayer_masks(raw.shape[-2:], dtype=raw.dtype, device=raw.device)[None]
    # Normalised convolution: each channel's samples are kept and its gaps filled from the nearest
    # samples. R and B: edge and corner neighbours; G (a quincunx): the four edge neighbours only --
    # the R/B kernel would also average a G sample with its diagonal G neighbours.
    red_blue = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
    green = [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]]
    kernel = torch.tensor([red_blue, green, red_blue], dtype=raw.dtype, device=raw.device)[:, None]
    sampled = F.pad(raw * masks, (1, 1, 1, 1), mode="reflect")
    weight = F.pad(masks.expand(raw.shape[0], -1, -1, -1), (1, 1, 1, 1), mode="reflect")
    num = F.conv2d(sampled, kernel, groups=3)
    den = F.conv2d(weight, kernel, groups=3)
    return num / den


def camera_noise(intensity: torch.Tensor, sensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot + read noise, quantisation and flat-field normalisation.

    ``μ_e = I·N_bg`` photo-electrons with ``N_bg = fill_fraction·FWC``;
    ``N_e ~ Poisson(μ_e) + N(0, σ_r²)``; ``DN = clip(round(N_e/K), 0, 2^b-1)`` with
    gain ``K = FWC/2^b`` e-/DN; output ``DN·K/N_bg`` (background = 1 in expectation).
    """
    n_bg = sensor.fill_fraction * sensor.full_well_e
    gain = sensor.full_well_e / 2**sensor.bit_depth
    electrons = torch.poisson(torch.clamp(intensity * n_bg, min=0), generator=generator)
    if sensor.read_noise_e > 0:
        electrons = electrons + sensor.read_noise_e * _randn_like(intensity, generator)
    dn = torch.clamp(torch.round(electrons / gain), 0, 2**sensor.bit_depth - 1)
    return dn * (gain / n_bg)


def gaussian_noise(intensity: torch.Tensor, sensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The reference paper's additive ``N(mean, std)`` noise (mean is a bias)."""
    return intensity + sensor.gaussian_mean + sensor.gaussian_std * _randn_like(intensity, generator)


def adds_noise(sensor) -> bool:
    """Whether ``noise=True`` changes the images: the camera model always (shot noise, quantisation); the
    reference paper's additive model only with a non-zero std or mean (its presets have neither)."""
    return sensor.model == "camera" or sensor.gaussian_std != 0 or sensor.gaussian_mean != 0


def apply_sensor(intensity: torch.Tensor, sensor, *, noise: bool, generator: torch.Generator | None = None):
    """Full sensor chain on (B, C, H, W) normalised intensities."""
    out = intensity
    if sensor.bayer:
        out = mosaic(out)
    if noise:
        out = camera_noise(out, sensor, generator=generator) if sensor.model == "camera" else \
            gaussian_noise(out, sensor, generator=generator)
    if sensor.bayer:
        out = demosaic_bilinear(out)
    if sensor.colour_matrix:
        out = apply_colour_matrix(out, sensor, clip=noise and sensor.model == "camera")
    return out


def apply_colour_matrix(images: torch.Tensor, sensor, *, clip: bool) -> torch.Tensor:
    """The camera's colour correction on (B, C, H, W) read-out channels; ``clip``: to the camera's range,
    as it clipped the raw read-out (:func:`camera_noise`)."""
    out = mix_channels(images, sensor.colour_matrix)
    return out.clamp(0, (1 - 2.0**-sensor.bit_depth) / sensor.fill_fraction) if clip else out


def mix_channels(images, matrix):
    """``out_c = Σ_j M_cj images_j`` on (..., C, H, W) tensors or arrays (the same kind and device; the same
    dtype when floating, else float64: a matrix has negative and fractional entries)."""
    import numpy as np

    if isinstance(images, torch.Tensor):
        images = images if images.is_floating_point() else images.double()
        m = torch.as_tensor(matrix, dtype=images.dtype, device=images.device)
        return torch.einsum("cj,...jhw->...chw", m, images)
    array = np.asarray(images)
    array = array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)
    return np.einsum("cj,...jhw->...chw", np.asarray(matrix, dtype=array.dtype), array)


def undo_colour_matrix(images, microscope):
    """``images`` (..., C, H, W) back to the camera's own channels, and ``microscope`` without its colour matrix.

    The matrix mixes the channels' defocus contrast (``recorded = M · raw``), which no solver's
    transfer function or network's training data contains; its exact inverse restores them (and
    with them the raw noise). Images and microscope come back unchanged when there is no matrix.
    """
    import numpy as np

    matrix = microscope.sensor.colour_matrix
    if not matrix:
        return images, microscope
    n = len(matrix)
    if images.shape[-3] != n:
        from chromaqpi.errors import InputError

        raise InputError(f"the microscope's colour matrix is {n}x{n} but the images have {images.shape[-3]} channels")
    inverse = np.linalg.inv(np.asarray(matrix, dtype=float))
    return mix_channels(images, inverse), microscope.replace(sensor={"colour_matrix": []})


def saturated_fraction(intensity: torch.Tensor, sensor) -> float:
    """Fraction of pixels that would clip at full well for this exposure."""
    limit = 1.0 / sensor.fill_fraction
    return float((intensity >= limit).float().mean())


def _randn_like(x: torch.Tensor, generator):
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
