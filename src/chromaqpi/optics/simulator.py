"""Polychromatic, partially coherent brightfield forward model (PHYSICS.md §1-3).

For each spectral node ``(λ_k, z_k)`` the monochromatic image of the thin object
``t_λ = exp(-a + iφ_λ)`` under Köhler illumination is the Abbe sum over source
points in the shifted-pupil form

``I_k = Σ_s w_s |F⁻¹{F{t_λ}·K_s}|² / Σ_s w_s |K_s(0)|²``,  ``K_s(f) = P(f+u_s)·D_z(f+u_s)``,

and channel ``c`` is ``Σ_k W_ck I_k``. One forward FFT of the object per
distinct object spectrum (per wavelength for a dispersive OPD object, one in
all for the ``"constant"`` phase model) serves every defocus and source point;
the kernels ``K_s`` are cached per configuration and size. Coherent paraxial
optics (one on-axis source point, Fresnel kernel) take a fast path: the
kernel ``P(f)·exp(-iπλz|f|²/n)`` is the outer product of two 1-D factors, built
for all nodes at construction and applied to many nodes per batched FFT; in
float32 without a pupil, the nodes of a channel that share an object spectrum
are replaced by its few coherent modes when that needs fewer FFTs
(:mod:`chromaqpi.optics.modes`, error per pixel bounded by ``_MODE_TOLERANCE``).
The object is simulated on a grid ``oversample`` times finer than the camera,
reflect-padded, and the intensity is box-binned back (pixel integration).
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.modes import coherent_modes, separable_gram
from chromaqpi.optics.pupil import (frequency_grid, fresnel_factors, pupil, pupil_band, shifted_kernels,
                                    source_points)
from chromaqpi.optics.sensor import apply_sensor
from chromaqpi.optics.spectra import channel_quadrature, get_stain
from chromaqpi.registration import warp_channels

# Kernels are cached node by node while they fit this budget; the nodes beyond it are
# rebuilt per call (so a large grid still keeps most of its kernels).
_KERNEL_CACHE_BYTES = 1024 * 2**20
# Bound on the (batch x source points x fine pixels) complex block per FFT
# (and on a chunk of stacked node images). Blocks that fit in cache are faster:
# the default preset at 128 px took 3.7 s with 16 MiB and 6.7 s with 256 MiB.
_BLOCK_BYTES = 16 * 2**20
# Bound on the (batch x nodes x fine pixels) complex block of the coherent
# paraxial path: a few nodes per FFT amortise the Python overhead, while larger
# blocks fall out of cache (measured on a loaded 2-core machine at 256²: 2 MiB,
# i.e. 4 nodes, ~2x faster than 16 MiB; 0.5-1 MiB slightly slower).
_FRESNEL_BLOCK_BYTES = 2 * 2**20
# Bound on the intensity error per pixel (|t| <= 1) from dropping weak coherent
# modes: a tenth of a float32 ulp at 1, so float32 output is unchanged by it.
_MODE_TOLERANCE = 1e-8


class Simulator(torch.nn.Module):
    """Forward model ``phase (B,H,W) -> intensities (B,C,H,W)`` for one microscope and size.

    Parameters
    ----------
    microscope : Microscope
    shape : (H, W) camera-grid size of the phase maps to simulate.
    dtype : torch.float32 or torch.float64; complex arithmetic follows it.
    device : where transfer functions live; inputs must be on the same device.

    Attributes
    ----------
    coherent_paraxial : bool
        True when the optics are coherent (one on-axis source point) and
        paraxial, so that :meth:`forward` uses the separable Fresnel fast path;
        setting it to False forces the general Abbe kernels (the tests check
        that both agree).
    modes : dict
        Per object-spectrum group (key of ``groups``) that uses coherent modes,
        a list of ``(channel, node indices, (r, K) coefficients)``; empty when
        every node gets its own FFT.
    """

    def __init__(self, microscope: Microscope, shape: tuple[int, int], *, dtype=torch.float32, device=None):
        super().__init__()
        self.microscope = microscope
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        s = microscope.sampling
        self.factor = s.oversample
        self.pad = s.pad_px * s.oversample
        self.fine_shape = tuple(n * self.factor + 2 * self.pad for n in self.shape)
        self.dx_fine = s.pixel_size_um / self.factor

        quad = self.quadrature = channel_quadrature(microscope)
        self.wavelengths = [float(v) for v in quad.wavelength_um]
        self.defocus = [float(v) for v in quad.defocus_um]
        self.register_buffer("channel_weights", torch.as_tensor(quad.weights, dtype=dtype, device=device))
        nu, w_src = source_points(microscope.optics.na_condenser, microscope.optics.source_points)
        self.source_nu = nu
        self.register_buffer("source_weights", torch.as_tensor(w_src, dtype=dtype, device=device))
        self.groups = _spectrum_groups(self.wavelengths, microscope.optics)
        # One on-axis source point and the Fresnel kernel: no Abbe sum, no cache.
        self.coherent_paraxial = coherent_paraxial(microscope.optics)
        self.modes: dict = {}
        if self.coherent_paraxial:
            self._init_fresnel(device)
        per_node = len(nu) * self.fine_shape[0] * self.fine_shape[1] * (8 if dtype == torch.float32 else 16)
        self._cached_nodes = min(len(self.wavelengths), _KERNEL_CACHE_BYTES // per_node)
        self._kernels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._device = device
        self.recompute = False  # see _recomputed

    def _init_fresnel(self, device) -> None:
        o = self.microscope.optics
        ky, kx = fresnel_factors(self.fine_shape, self.dx_fine, self.wavelengths, self.defocus, o.n_medium,
                                 dtype=torch.float64, device=device)
        # The inverse FFT's 1/(H·W) is folded into the factors (saves a pass over every field).
        self.register_buffer("fresnel_y", (ky / self.fine_shape[0]).to(self.cdtype), persistent=False)
        self.register_buffer("fresnel_x", (kx / self.fine_shape[1]).to(self.cdtype), persistent=False)
        # Modes only in float32: in float64 the eigen-decomposition cannot certify
        # a truncation below its own rounding (~1e-16·pixels).
        use_modes = self.dtype == torch.float32 and o.na_objective <= 0
        self.modes = self._plan_modes(ky, kx) if use_modes else {}
        # The same grid and pupil test as the general kernels, so both paths clip the same pixels.
        self._has_pupil = o.na_objective > 0
        if self._has_pupil:
            fy, fx = frequency_grid(self.fine_shape, self.dx_fine, dtype=self.dtype, device=device)
            self.register_buffer("pupil_fy", fy, persistent=False)
            self.register_buffer("pupil_fx", fx, persistent=False)

    def _plan_modes(self, ky: torch.Tensor, kx: torch.Tensor) -> dict:
        """Coherent modes per (group, channel) for the groups where they save FFTs."""
        weights = self.channel_weights.to(torch.float64)
        support = weights.cpu().numpy() > 0
        plans = {}
        for scale, ks in self.groups.items():
            plan = []
            for c in range(weights.shape[0]):
                nodes = np.asarray(ks)[support[c, ks]]
                if len(nodes):
                    index = torch.as_tensor(nodes, device=ky.device)
                    gram = separable_gram(ky[index], kx[index])
                    coeffs = coherent_modes(gram, weights[c, index], _MODE_TOLERANCE)
                    plan.append((c, index, coeffs.to(self.cdtype)))
            if sum(len(coeffs) for _, _, coeffs in plan) < len(ks):
                plans[scale] = plan
        return plans

    # ----------------------------------------------------------------- kernels
    def kernels(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source-weighted kernels ``sqrt(w_s/I_bg)·K_s`` (S,H,W) for node k, and I_bg."""
        if k in self._kernels:
            return self._kernels[k]
        out = self._scaled_kernels(k)
        if len(self._kernels) < self._cached_nodes:
            self._kernels[k] = out
        return out

    def band_kernels(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`kernels` on the rows and columns the shifted pupils reach (elsewhere they are 0).

        Returns (S, h, w) kernels and the (h,) row and (w,) column indices; not cached.
        """
        rows, cols = pupil_band(self.fine_shape, self.dx_fine, self.wavelengths[k],
                                self.microscope.optics.na_objective, self.source_nu, device=self._device)
        return self._scaled_kernels(k, rows, cols)[0], rows, cols

    def _scaled_kernels(self, k: int, rows=None, cols=None) -> tuple[torch.Tensor, torch.Tensor]:
        ker = shifted_kernels(self.fine_shape, self.dx_fine, self.wavelengths[k], self.defocus[k],
                              self.microscope.optics, self.source_nu, dtype=self.dtype, device=self._device,
                              rows=rows, cols=cols)
        w = self.source_weights
        background = (w * ker[:, 0, 0].abs() ** 2).sum()  # index 0 is f = 0 on the whole grid and in a band
        if background <= 0:
            raise InputError("no illumination reaches the camera (condenser outside the objective pupil)")
        # Folding sqrt(w_s / I_bg) into the kernel makes the Abbe sum a plain sum of |E|².
        return ker.mul_(torch.sqrt(w / background)[:, None, None]).to(self.cdtype), background

    # ------------------------------------------------------------------ forward
    def forward(self, phase: torch.Tensor, *, absorption: torch.Tensor | None = None, stain=None,
                noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Simulate normalised channel intensities.

        Parameters
        ----------
        phase : (B, H, W) phase in radians at ``optics.wavelength_ref_um``.
        absorption : optional (B, H, W) amplitude attenuation ``a`` (``|t|² = e^{-2a}``), or a list of
            such maps, one per stain of a list ``stain`` (several dyes, e.g. H&E: their attenuations add
            at each wavelength, ``Σ_i a_i·s_i(λ)/s̄_i``).
        stain : how the attenuation depends on wavelength: None (grey, ``a`` at every λ), a
            :class:`~chromaqpi.optics.spectra.Stain` or its name (``a·s(λ)/s̄``); a list of them
            (None for grey) with a list of maps.
        noise : apply the sensor noise model.
        generator : the only source of randomness.

        Returns
        -------
        (B, C, H, W) intensities, empty field = 1.
        """
        fine_phase = self._to_fine(phase)
        maps, stains = _absorbers(absorption, stain)
        fine_abs = [self._to_fine(a) for a in maps]
        scales = self._stain_scales(stains) if fine_abs else None
        channels = self._to_camera(self._channel_images(fine_phase, fine_abs, scales))
        return apply_sensor(channels, self.microscope.sensor, noise=noise, generator=generator)

    def _to_fine(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        if self.factor > 1:
            x = F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False)
        if self.pad:
            mode = "reflect" if self.pad < min(x.shape[-2:]) else "replicate"
            x = F.pad(x, (self.pad,) * 4, mode=mode)
        return x[:, 0]

    def _stain_scales(self, stains: list) -> list[tuple[float, ...]] | None:
        """Per node, the factors on the attenuation maps, one per stain (None when all are grey: the
        wavelength does not matter then)."""
        stains = [get_stain(stain) for stain in stains]
        if all(stain is None for stain in stains):
            return None
        per_stain = [np.ones(len(self.quadrature.wavelength_um)) if stain is None
                     else stain.node_scales(self.quadrature)
                     for stain in stains]
        return [tuple(float(v) for v in node) for node in zip(*per_stain)]

    def _object_groups(self, stain_scales: list[tuple[float, ...]] | None):
        """((phase scale, attenuation scales), node indices) per distinct transmittance."""
        for scale, ks in self.groups.items():
            if stain_scales is None:
                yield (scale, None), ks
                continue
            split: OrderedDict[tuple, list[int]] = OrderedDict()
            for k in ks:
                split.setdefault(stain_scales[k], []).append(k)
            yield from (((scale, a_scales), nodes) for a_scales, nodes in split.items())

    def _channel_images(self, phase: torch.Tensor, absorption: list[torch.Tensor],
                        stain_scales: list[tuple[float, ...]] | None = None) -> torch.Tensor:
        """(B, C, Hf, Wf) channel intensities on the fine grid, one object spectrum per group."""
        total = None
        for (scale, a_scales), ks in self._object_groups(stain_scales):
            spectrum = torch.fft.fft2(_transmittance(phase, _attenuation(absorption, a_scales), scale))
            if not self.coherent_paraxial:
                part = self._abbe_group(spectrum, ks)
            elif scale in self.modes and stain_scales is None:  # a stain splits the modes' groups
                part = self._fresnel_group(spectrum, self._mode_kernels(self.modes[scale], spectrum))
            else:
                part = self._fresnel_group(spectrum, self._node_kernels(ks, spectrum))
            total = part if total is None else total + part
        return total

    def _abbe_group(self, spectrum: torch.Tensor, ks: list[int]) -> torch.Tensor:
        total = None
        for chunk in _chunks(ks, spectrum, _BLOCK_BYTES):
            nodes = torch.stack([self._recomputed(self._abbe, spectrum, k) for k in chunk], dim=1)
            part = torch.einsum("ck,bkhw->bchw", self.channel_weights[:, chunk], nodes)
            total = part if total is None else total + part
        return total

    def _recomputed(self, fn, spectrum: torch.Tensor, *args):
        """``fn(spectrum, *args)``; with ``recompute`` set and under autograd, its fields are
        recomputed in the backward pass instead of kept. Same result; an iterative fit on the
        ``default`` optics then peaks at 0.67-0.82x the memory, for 1.1-1.35x the time
        (measured at 256-768 px on CPU, ``benchmarks/results/fit-memory.md``)."""
        if self.recompute and torch.is_grad_enabled() and spectrum.requires_grad:
            return checkpoint(fn, spectrum, *args, use_reentrant=False)
        return fn(spectrum, *args)

    def _node_kernels(self, ks: list[int], spectrum: torch.Tensor):
        """Yield ((n, H, W) kernels, (C, n) channel weights) for chunks of nodes."""
        for chunk in _chunks(ks, spectrum, _FRESNEL_BLOCK_BYTES):
            index = torch.as_tensor(chunk, device=spectrum.device)
            kernel = self.fresnel_y[index, :, None] * self.fresnel_x[index, None, :]
            if self._has_pupil:
                na = self.microscope.optics.na_objective
                kernel = kernel * torch.stack([pupil(self.pupil_fy, self.pupil_fx, self.wavelengths[k], na)
                                               for k in chunk])
            yield kernel, self.channel_weights[:, chunk]

    def _mode_kernels(self, plan: list, spectrum: torch.Tensor):
        """Yield ((n, H, W) mode kernels, (C, n) one-hot channel weights) for chunks of modes."""
        for c, index, coeffs in plan:
            ky, kx = self.fresnel_y[index], self.fresnel_x[index]
            for rows in _chunks(list(range(len(coeffs))), spectrum, _FRESNEL_BLOCK_BYTES):
                # φ_j = Σ_k C_jk ky_k ⊗ kx_k = (ky.T · diag(C_j)) @ kx, batched over the chunk's modes.
                kernel = torch.matmul(ky.T[None] * coeffs[rows, None, :], kx)
                weights = torch.zeros(len(self.channel_weights), len(rows), dtype=self.dtype, device=kernel.device)
                weights[c] = 1
                yield kernel, weights

    def _fresnel_group(self, spectrum: torch.Tensor, kernels) -> torch.Tensor:
        """Coherent paraxial ``Σ_j W_cj |F⁻¹{T·K_j}|²`` over chunks of (node or mode) kernels.

        ``|E|²`` is kept as separate ``(Re E)², (Im E)²`` through the channel
        contraction and summed at the end: one square pass and one matmul per
        chunk, no strided reductions.
        """
        total = None
        for kernel, weights in kernels:
            field = torch.fft.ifft2(spectrum[:, None] * kernel, norm="forward")  # 1/(H·W) is in the factors
            squares = torch.view_as_real(field).square().flatten(2)  # (B, n, 2·H·W)
            weights = weights.expand(squares.shape[0], -1, -1)
            total = torch.bmm(weights, squares) if total is None else total.baddbmm_(weights, squares)
        total = total.unflatten(-1, (*spectrum.shape[-2:], 2))
        return total[..., 0] + total[..., 1]

    def _abbe(self, spectrum: torch.Tensor, k: int) -> torch.Tensor:
        """(B, H, W) Abbe sum of node k: the source weights are folded into the kernels."""
        kernels, _ = self.kernels(k)
        batch, (h, w) = spectrum.shape[0], spectrum.shape[-2:]
        chunk = max(1, _BLOCK_BYTES // (batch * h * w * spectrum.element_size()))
        total = None
        for start in range(0, kernels.shape[0], chunk):
            field = torch.fft.ifft2(spectrum[:, None] * kernels[None, start:start + chunk])
            # (Re E)², (Im E)² in one contiguous pass, summed over sources, then re + im once.
            part = torch.view_as_real(field).square().sum(dim=1)
            total = part if total is None else total + part
        return total[..., 0] + total[..., 1]

    def _to_camera(self, fine: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:  # the pad is a whole number of camera pixels, so binning first changes nothing
            fine = F.avg_pool2d(fine, self.factor)
        # Lateral colour on the padded field: pixels moved in across the edge come from simulated intensities.
        camera = warp_channels(fine, self.microscope.registration)
        pad = self.pad // self.factor
        return camera[..., pad:-pad, pad:-pad] if pad else camera


def coherent_paraxial(optics) -> bool:
    """One on-axis source point and the paraxial kernel: the separable Fresnel path, no Abbe sum
    (nothing that ``Simulator.recompute`` recomputes)."""
    return optics.paraxial and len(source_points(optics.na_condenser, optics.source_points)[0]) == 1


def _chunks(ks: list[int], spectrum: torch.Tensor, budget: int) -> list[list[int]]:
    """Split node indices so that one chunk's (B, n, H, W) complex block fits ``budget`` bytes."""
    size = max(1, budget // (spectrum.numel() * spectrum.element_size()))
    return [ks[i:i + size] for i in range(0, len(ks), size)]


def _spectrum_groups(wavelengths: list[float], optics) -> "OrderedDict[float, list[int]]":
    """Node indices grouped by the phase scale of their object, ``λ_ref/λ`` or 1.

    Nodes in one group see the same transmittance, hence share one forward FFT.
    """
    groups: OrderedDict[float, list[int]] = OrderedDict()
    for k, lam in enumerate(wavelengths):
        scale = optics.wavelength_ref_um / lam if optics.phase_model == "opd" else 1.0
        groups.setdefault(scale, []).append(k)
    return groups


def _absorbers(absorption, stain) -> tuple[list, list]:
    """(attenuation maps, their stains): one map with one stain (None: grey), or lists of equal length."""
    if absorption is None:
        return [], []
    if isinstance(absorption, (list, tuple)):
        stains = list(stain) if isinstance(stain, (list, tuple)) else None
        if stains is None or len(stains) != len(absorption):
            raise InputError(f"{len(absorption)} absorption maps need a list of as many stains (None for grey), "
                             f"got {stain!r}")
        return list(absorption), stains
    if isinstance(stain, (list, tuple)):
        raise InputError("a list of stains needs a list of absorption maps, one per stain")
    return [absorption], [stain]


def _attenuation(maps: list[torch.Tensor], scales: tuple[float, ...] | None) -> torch.Tensor | None:
    """``Σ_i scales_i·a_i`` (scales None: every map at 1), None without maps."""
    total = None
    for i, a in enumerate(maps):
        part = a if scales is None or scales[i] == 1.0 else a * scales[i]
        total = part if total is None else total + part
    return total


def _transmittance(phase: torch.Tensor, absorption: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``t = exp(-a + i·scale·φ)``, built from cos and sin (a complex exp is ~10x slower on CPU)."""
    angle = phase * scale if scale != 1.0 else phase
    real, imag = torch.cos(angle), torch.sin(angle)
    if absorption is not None:
        amplitude = torch.exp(-absorption)
        real, imag = amplitude * real, amplitude * imag
    return torch.complex(real, imag)


# ------------------------------------------------------------ functional twin
_SIMULATORS: "OrderedDict[tuple, Simulator]" = OrderedDict()
_MAX_CACHED = 4


def get_simulator(microscope: Microscope, shape, *, dtype=torch.float32, device=None) -> Simulator:
    """A cached :class:`Simulator` for (config, size, dtype, device)."""
    key = (json.dumps(microscope.to_dict(), sort_keys=True), tuple(shape), dtype, str(device))
    if key in _SIMULATORS:
        _SIMULATORS.move_to_end(key)
        return _SIMULATORS[key]
    sim = Simulator(microscope, shape, dtype=dtype, device=device)
    _SIMULATORS[key] = sim
    while len(_SIMULATORS) > _MAX_CACHED:
        _SIMULATORS.popitem(last=False)
    return sim


def tensor_from_array(array: np.ndarray) -> torch.Tensor:
    """A tensor of a numpy array, copied only where torch cannot share it: a big-endian (e.g. from a
    file), non-contiguous or read-only array."""
    return torch.from_numpy(np.require(array, dtype=array.dtype.newbyteorder("="), requirements=("C", "W")))


def as_phase_batch(phase, name: str = "phase") -> torch.Tensor:
    """Validate and convert an (H,W) or (B,H,W) array/tensor to a float tensor (B,H,W)."""
    if isinstance(phase, np.ndarray):
        if not np.issubdtype(phase.dtype, np.floating):
            raise InputError(f"{name} must be a float array (radians), got dtype {phase.dtype}")
        phase = tensor_from_array(phase)
    if not isinstance(phase, torch.Tensor):
        raise InputError(f"{name} must be a numpy array or torch tensor, got {type(phase).__name__}")
    if not phase.is_floating_point():
        raise InputError(f"{name} must be a float tensor (radians), got {phase.dtype}")
    if phase.ndim == 2:
        phase = phase[None]
    if phase.ndim != 3:
        raise InputError(f"{name} must have shape (H,W) or (B,H,W), got {tuple(phase.shape)}")
    if min(phase.shape[-2:]) < 4:
        raise InputError(f"{name} is too small: {tuple(phase.shape[-2:])}")
    if not torch.isfinite(phase).all():
        raise InputError(f"{name} contains NaN or Inf")
    if phase.dtype not in (torch.float32, torch.float64):
        phase = phase.float()
    return phase


def simulate(phase, microscope: Microscope | str, *, absorption=None, stain=None, noise: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulate what the colour camera records from a thin phase object.

    Parameters
    ----------
    phase : (H, W) or (B, H, W) float array/tensor, radians at the microscope's
        reference wavelength (``optics.wavelength_ref_um``).
    microscope : a :class:`~chromaqpi.microscope.Microscope`, preset name or TOML path.
    absorption : optional, same shape, amplitude attenuation ``a`` (``|t|² = e^{-2a}``; >= 0 for a
        specimen, negative values are a gain, computed as given: weak-object gratings and fitted maps
        use them); or a list of such maps, one per stain of a list ``stain`` (a specimen with several
        dyes, e.g. H&E).
    stain : how that attenuation depends on wavelength: None (grey), a name in
        :data:`chromaqpi.optics.spectra.STAINS` (``"eosin"``, ``"haematoxylin"``, ``"haemoglobin"``,
        ``"methylene-blue"``) or a :class:`~chromaqpi.optics.spectra.Stain`; with a list of maps, a
        list of as many (None for grey).
    noise : apply the sensor noise model (``microscope.sensor``).
    generator : torch.Generator, the only source of randomness.

    Returns
    -------
    torch.Tensor (B, C, H, W), same dtype (float32 for a float16 or bfloat16 ``phase``, which is computed
    and returned in float32: half precision resolves intensities near 1 only to 1e-3 or 8e-3, the size
    of a weak object's contrast) and device as ``phase``; a NumPy ``phase`` gives a tensor. An empty
    field reads 1 (before any model-specific normalisation).

    Examples
    --------
    >>> import torch, chromaqpi
    >>> img = chromaqpi.simulate(torch.zeros(32, 32), "default", noise=False)
    >>> tuple(img.shape)
    (1, 3, 32, 32)
    """
    microscope = Microscope.resolve(microscope)
    phase = as_phase_batch(phase)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, "
                          f"got {type(generator).__name__}")
    if stain is not None and absorption is None:
        raise InputError("a stain needs an absorption map")
    maps, stains = _absorbers(absorption, stain)
    for i, a in enumerate(maps):
        maps[i] = as_phase_batch(a, "absorption").to(phase.dtype)
        if maps[i].shape != phase.shape:
            raise InputError(f"absorption shape {tuple(maps[i].shape)} differs from phase {tuple(phase.shape)}")
    sim = get_simulator(microscope, phase.shape[-2:], dtype=phase.dtype, device=phase.device)
    several = isinstance(absorption, (list, tuple))
    return sim(phase, absorption=(maps if several else maps[0]) if maps else None,
               stain=stains if several else stain, noise=noise, generator=generator)
