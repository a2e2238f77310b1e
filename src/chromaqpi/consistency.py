"""Does a phase map explain the image it came from? The data residual of a reconstruction.

Any phase estimate, learned or classical, can be put back through the forward model and compared
with the recorded channels: the part of the image's contrast it leaves unexplained needs no ground
truth. A residual at the noise level says the estimate is consistent with the data (not that it is
unique); a residual many times the noise flags an estimate the data contradict, or a microscope
description that does not match the instrument (wrong pixel size, defocus or NA), or what the
phase-only model lacks (absorption, flat-field errors).

The other half of that check is :func:`estimate_absorption`: where a specimen attenuates the light
(stains, pigment), which every solver and network here assumes it does not; and
:func:`specimen_colour`: whether it attenuates some colours more than others (a stain), which the
chromatic methods read as defocus contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chromaqpi.errors import ConfigError, InputError, is_number
from chromaqpi.microscope import Microscope

#: Largest side simulated: a central crop of larger images keeps the check at a few seconds.
DEFAULT_CROP = 512
#: Noise variance below which an image counts as noiseless (float64 round-off of a simulation).
NOISE_FLOOR = 1e-12
#: Border excluded from the comparison: the simulation of a crop treats it as periodic, the image does not.
DEFAULT_MARGIN = 16
#: Smallest in-focus intensity turned into an attenuation: a = -½ ln(0.01) = 2.3 is the largest reported.
MIN_IN_FOCUS = 0.01


#: Scale (µm, Gaussian σ) of the colour check: beyond the defocus blur and a cell's size, where a transparent
#: or grey specimen leaves the channels alike (a phase object's defocus contrast integrates to 0 over it).
COLOUR_SCALE_UM = 10.0
#: Chromatic optical density (RMS over the field) above which a specimen counts as coloured: 1.25x the
#: largest reading of 48 transparent and grey validation scenes (0.0041, a transparent one on a 22 µm
#: field, now below :data:`COLOUR_MIN_FIELD`; ``benchmarks/results/colour.md``, whose test scenes were
#: not used for it). Kept there: a false flag steers a transparent specimen away from the networks.
COLOURED_OD = 0.005
#: Smallest field side, in blur widths, judged against :data:`COLOURED_OD`: on smaller fields the objects'
#: defocus contrast does not average out under the blur (the two validation scenes under 25 µm, 15 and
#: 22 µm, gave the two highest transparent readings, 0.0018 and 0.0041; the others at most 0.0015).
COLOUR_MIN_FIELD = 2.5
#: Smallest field side, in blur widths, judged at all; fields between it and :data:`COLOUR_MIN_FIELD`
#: are judged against :data:`COLOURED_OD_SMALL`.
COLOUR_SMALL_FIELD = 1.0
#: Threshold for fields of 1 to 2.5 blur widths (10-25 µm): 1.25x the largest reading of 360 transparent
#: and grey validation scenes of such sizes (0.0164); on 64 test scenes it flagged 1 of 192 transparent or
#: grey ones and sent enough stained ones to ``default-stained`` to cut the routed mean net's nMAE from
#: 0.905 to 0.766 (``benchmarks/results/colour-small-fields.md``, its rule written before the measurement).
COLOURED_OD_SMALL = 0.0205


@dataclass(frozen=True)
class SpecimenColour:
    """The colour of a specimen's attenuation, measured at :data:`COLOUR_SCALE_UM`.

    ``chromatic_od``: RMS over the field of the channels' optical density (``-½ ln I``, the units of the
    attenuation ``a``) minus its mean over the channels; near 0 for transparent and grey specimens.
    ``extinction``: per channel, the specimen's relative attenuation (mean 1; all 1 for a grey one),
    estimated where it absorbs; None where the colour is not ``judged`` (the ratios there are
    defocus contrast over a near-zero mean, e.g. 12.6 and -10.6 on a paper-2shot pair). ``nearest_stain``: the named stain (``chromaqpi.optics.spectra.STAINS``)
    whose channel extinction points the same way (cosine >= 0.8 of the deviation from grey); None when
    none does or the specimen is not ``coloured``. ``judged``: False where the colour cannot be told
    (channels all at one wavelength, or a field under :data:`COLOUR_SMALL_FIELD` blur widths); such a
    specimen is never ``coloured``. ``threshold``: the chromatic OD above which it is ``coloured``,
    :data:`COLOURED_OD`, or :data:`COLOURED_OD_SMALL` on a field under :data:`COLOUR_MIN_FIELD` blur widths.
    """

    chromatic_od: float
    extinction: tuple[float, ...] | None
    nearest_stain: str | None
    judged: bool = True
    threshold: float = COLOURED_OD

    @property
    def coloured(self) -> bool:
        return self.judged and self.chromatic_od > self.threshold

    def summary(self) -> str:
        like = f", like {self.nearest_stain}" if self.nearest_stain else ""
        ratios = ("/".join(f"{v:.2f}" for v in self.extinction) if self.extinction is not None
                  else "not judged (one colour, or too small a field)")
        return (f"chromatic optical density {self.chromatic_od:.4f} at {COLOUR_SCALE_UM:g} µm, channel "
                f"extinction {ratios}{like}")


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


def estimate_absorption(images, microscope: Microscope | str, *, phase=None, order: int = 1,
                        stain=None) -> torch.Tensor:
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
    stain : the stain colouring the specimen (a name in ``chromaqpi.optics.spectra.STAINS`` or a
        ``Stain``; None: grey). Each pixel's optical densities ``-½ ln I_c`` are then fitted as
        ``D_c(a) + ζ_c·g`` (``D_c(a) = -½ ln Σ_k W_ck exp(-2a·s_k/s̄)``, the channel's Beer-Lambert
        quadrature; ζ_c the defocus, g free; ``order`` 1; a few Gauss-Newton steps from the linearised
        fit), which reads a coloured absorber's mean attenuation where the grey intercept misreads it.
    phase : optional (H, W) or (B, H, W) radians for the same images (e.g. what ``reconstruct``
        returned); costs one simulation of the whole image (``default`` optics, 2 threads: 4 s and
        1.9 GB peak at 512 px, 21 s and 3.1 GB at 1024 px, 101 s and 7.6 GB at 2048 px).

    Returns
    -------
    (H, W) or (B, H, W) float64 attenuation a (dimensionless; 0 = transparent): a NumPy array for NumPy
    images, as :func:`chromaqpi.reconstruct` returns, else a tensor on their device.
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

    if stain is not None:
        attenuation = _stained_attenuation(microscope, zeta, stain, order)
    else:
        def attenuation(stack):
            _, i0, _ = derivative_fit(stack, zeta, order=order, in_focus="fit")
            return -0.5 * torch.log(i0.clamp(min=MIN_IN_FOCUS))

    a = attenuation(batch)
    if phase is not None:
        a = a - attenuation(_predicted_images(_phase_batch(phase, batch), microscope))
    a = a if batched else a[0]
    return a.cpu().numpy() if _is_numpy(images) else a


def _is_numpy(array) -> bool:
    import numpy as np

    return isinstance(array, np.ndarray)


_STAIN_GAUSS_NEWTON_STEPS = 6
#: Bound on one row block's (pixels x spectral nodes) float64 array in the stained fit.
_STAIN_BLOCK_BYTES = 64 * 2**20


def _stained_attenuation(microscope: Microscope, zeta: list[float], stain, order: int):
    """a per pixel from ``-½ ln I_c = D_c(a) + ζ_c·g`` over the channels, for a stain (see
    :func:`estimate_absorption`)."""
    from chromaqpi.optics.spectra import channel_quadrature, get_stain

    if order != 1:
        raise ConfigError("a stained absorption is fitted with order 1")
    quad = channel_quadrature(microscope)
    weights = torch.as_tensor(quad.weights, dtype=torch.float64)  # (C, K)
    scales = torch.as_tensor(get_stain(stain).node_scales(quad), dtype=torch.float64)  # (K,)
    z = torch.tensor(zeta, dtype=torch.float64)
    design = torch.stack([torch.as_tensor(get_stain(stain).channel_extinction(quad)), z], dim=1)  # D_c'(0) = σ_c
    if torch.linalg.matrix_rank(design) < 2:
        raise ConfigError(f"microscope {microscope.name!r}: its channels cannot tell this stain's colour from "
                          "defocus contrast")
    linear = torch.linalg.pinv(design)[0]  # the linearised fit's row for a

    def attenuation(stack):
        rows = max(1, _STAIN_BLOCK_BYTES // (stack.shape[0] * stack.shape[-1] * len(scales) * 8))
        return torch.cat([block_attenuation(stack[..., i:i + rows, :]) for i in range(0, stack.shape[-2], rows)],
                         dim=-2)

    def block_attenuation(stack):
        od = -0.5 * torch.log(stack.clamp(min=MIN_IN_FOCUS))
        a = torch.einsum("c,bchw->bhw", linear.to(stack), od)
        for _ in range(_STAIN_GAUSS_NEWTON_STEPS):  # per pixel, unknowns (a, g)
            e = torch.exp(-2 * a[..., None] * scales.to(stack))  # (B, H, W, K)
            total = torch.einsum("ck,bhwk->bchw", weights.to(stack), e)
            slope = torch.einsum("ck,bhwk->bchw", weights.to(stack), e * scales.to(stack)) / total
            residual = od + 0.5 * torch.log(total)  # od - D_c(a), g profiled out below
            zz = z.to(stack)[None, :, None, None]
            # Normal equations of [slope_c, ζ_c]·(δa, g) = residual_c, per pixel.
            saa, sag, sgg = (slope**2).sum(1), (slope * zz).sum(1), (zz**2).sum(1)
            ra, rg = (slope * residual).sum(1), (zz * residual).sum(1)
            a = a + (sgg * ra - sag * rg) / (saa * sgg - sag**2)
        return a

    return attenuation


def specimen_colour(images, microscope: Microscope | str, *,
                    scale_um: float = COLOUR_SCALE_UM) -> SpecimenColour | list[SpecimenColour]:
    """Does the specimen absorb some colours more than others? A stain the phase methods cannot see.

    A transparent or grey specimen changes the channels alike once blurred beyond the defocus blur and
    the objects (defocus contrast integrates to zero over each object); a stain leaves its colour:
    a coarse optical density that differs between channels. Every phase method here reads that colour
    as defocus contrast, the networks most (``benchmarks/results/absorption-independent-*.md``); the
    iterative fit can model a named stain (``refine_with_absorption(..., stain=...)``).

    Parameters
    ----------
    images : (C, H, W) or (B, C, H, W) flat-field normalised intensities (empty field = 1). Normalised by
        the image's own background instead, a field that is mostly stained reads paler. A declared
        registration is ignored: lateral colour (a few pixels) is far below the blur.
    scale_um : Gaussian σ of the blur, in µm at the sample.

    Returns
    -------
    :class:`SpecimenColour`, or a list of them for a batch. ``coloured`` is True above its
    ``threshold`` (:data:`COLOURED_OD`; :data:`COLOURED_OD_SMALL` on fields of 10-25 µm).
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from chromaqpi.optics.sensor import undo_colour_matrix
    from chromaqpi.optics.spectra import STAINS, channel_quadrature
    from chromaqpi.solvers.base import as_image_batch

    microscope = Microscope.resolve(microscope)
    if not (is_number(scale_um) and scale_um > 0):
        raise ConfigError(f"scale_um must be a number > 0, got {scale_um!r}")
    batch, batched = as_image_batch(images, microscope.n_channels)
    batch, microscope = undo_colour_matrix(batch, microscope)  # a stain's colour is in the camera's own channels
    sigma = scale_um / microscope.sampling.pixel_size_um
    # Block means first (a quarter of σ per block): the blur then costs ~f² times less at full size.
    f = max(1, min(int(sigma / 4), *batch.shape[-2:]))
    quad = channel_quadrature(microscope)
    stains = {name: stain.channel_extinction(quad) - 1 for name, stain in STAINS.items() if name != "grey"}
    # Channels that see one colour (planes at one wavelength) cannot show a stain; a small field cannot
    # average the defocus contrast out, so it needs a stronger colour, and under one blur width none is told.
    field = min(batch.shape[-2:]) * microscope.sampling.pixel_size_um
    judged = (max(float(np.abs(ref).max()) for ref in stains.values()) > 0.05
              and field >= COLOUR_SMALL_FIELD * scale_um)
    threshold = COLOURED_OD if field >= COLOUR_MIN_FIELD * scale_um else COLOURED_OD_SMALL
    out = []
    for stack in batch.double().cpu().numpy():
        c, h, w = stack.shape
        blocks = stack[:, :h - h % f, :w - w % f].reshape(c, h // f, f, w // f, f).mean(axis=(2, 4))
        coarse = np.stack([gaussian_filter(plane, sigma / f, mode="reflect") for plane in blocks])
        od = -0.5 * np.log(np.clip(coarse, MIN_IN_FOCUS, None))
        chroma = od - od.mean(axis=0)
        total = float(od.mean(axis=0).clip(min=0).sum())
        tint = chroma.reshape(len(chroma), -1).sum(axis=1) / total if total > 0 else np.zeros(len(chroma))
        level = float(np.sqrt((chroma**2).sum(axis=0).mean()))
        out.append(SpecimenColour(chromatic_od=level,
                                  extinction=tuple(float(v) for v in 1 + tint) if judged else None,
                                  nearest_stain=_nearest(tint, stains) if judged and level > threshold else None,
                                  judged=judged, threshold=threshold))
    return out if batched else out[0]


def _nearest(tint, stains: dict, least_cosine: float = 0.8) -> str | None:
    """The stain whose channel deviation from grey points most nearly along ``tint``, if close enough."""
    import numpy as np

    best, best_cos = None, least_cosine
    for name, ref in stains.items():
        norm = float(np.linalg.norm(tint) * np.linalg.norm(ref))
        cos = float(tint @ ref) / norm if norm > 0 else 0.0
        if cos >= best_cos:
            best, best_cos = name, cos
    return best


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
