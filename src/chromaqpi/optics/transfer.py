"""Weak-object transfer functions (WOTF) of the same optics the simulator uses.

Linearising the Abbe sum for ``t ≈ 1 + iΔφ - Δa`` gives, per spectral node
(PHYSICS.md §4.1), with ``C(g) = Σ_s w_s conj(K_s(0))·K_s(g) / I_bg``:

``H^φ(g) = i[C(g) - conj C(-g)]``,  ``H^a(g) = -[C(g) + conj C(-g)]``,

and per channel ``H_c = Σ_k W_ck·s_k·H_k`` with ``s_k = λ_ref/λ_k`` for a
non-dispersive (OPD) object (PHYSICS.md §4.3). Built from the simulator's own
kernels, so the linear model and the forward model cannot drift apart.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import torch

from chromaqpi.microscope import Microscope, Registration
from chromaqpi.optics.simulator import Simulator
from chromaqpi.optics.spectra import get_stain


def _negate_frequency(x: torch.Tensor) -> torch.Tensor:
    """x(-g) on an FFT-ordered grid (index i -> -i mod N)."""
    return torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def node_transfer_functions(sim: Simulator, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H^φ, H^a) on the simulator's fine grid for spectral node k (complex)."""
    # Only the pupils' band of rows and columns: the kernels vanish elsewhere, and the band of
    # a 0.65 NA objective is about a third of a 512 px grid of 0.16 µm pixels.
    kernels, rows, cols = sim.band_kernels(k)  # already scaled by sqrt(w_s / I_bg)
    corr = torch.zeros(sim.fine_shape, dtype=kernels.dtype, device=kernels.device)
    corr[rows[:, None], cols[None, :]] = (kernels[:, :1, :1].conj() * kernels).sum(dim=0)
    neg = _negate_frequency(corr).conj()
    return 1j * (corr - neg), -(corr + neg)


_TF_CACHE: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_TF_CACHE_SIZE = 8


def channel_transfer_functions(microscope: Microscope, shape: tuple[int, int], *,
                               dtype=torch.float64, device=None, pixel_integration: bool = True, stain=None):
    """Per-channel WOTFs on the camera grid, memoised per (config, size, dtype, device).

    See :func:`compute_channel_transfer_functions`. Building them costs one
    kernel evaluation per (wavelength, source point), i.e. seconds for the
    ``default`` preset at 512 px, so repeated calls reuse the result.
    """
    stain = get_stain(stain)
    key = (json.dumps(microscope.to_dict(), sort_keys=True), tuple(shape), dtype, str(device), pixel_integration,
           stain)
    if key not in _TF_CACHE:
        _TF_CACHE[key] = compute_channel_transfer_functions(microscope, shape, dtype=dtype, device=device,
                                                            pixel_integration=pixel_integration, stain=stain)
        while len(_TF_CACHE) > _TF_CACHE_SIZE:
            _TF_CACHE.popitem(last=False)
    _TF_CACHE.move_to_end(key)
    return _TF_CACHE[key]


def compute_channel_transfer_functions(microscope: Microscope, shape: tuple[int, int], *,
                                       dtype=torch.float64, device=None, pixel_integration: bool = True,
                                       stain=None):
    """Per-channel phase and absorption WOTFs on the camera grid.

    The TFs are computed on a camera-pitch grid of size ``shape`` (the caller
    pads its data to that size); pixel integration of the oversampled
    simulator is modelled by the box-pixel MTF ``sinc(f_x dx)·sinc(f_y dx)``.

    Returns
    -------
    h_phase, h_abs : real (C, H, W) tensors for the phase at λ_ref (rad) and
        the absorption ``a``; the linear model is
        ``I_c - 1 ≈ F⁻¹{H^φ_c·F{Δφ} + H^a_c·F{Δa}}``; with a ``stain`` (name or
        :class:`~chromaqpi.optics.spectra.Stain`) ``a`` is its mean attenuation and each
        wavelength's absorption TF is weighted by ``s(λ)/s̄``.
    """
    # The weak-object model of registered channels: lateral colour is undone before any solver.
    camera = microscope.replace(sampling={"oversample": 1, "pad_px": 0}, registration=Registration())
    sim = Simulator(camera, shape, dtype=dtype, device=device)
    o = microscope.optics
    h_phi = torch.zeros(microscope.n_channels, *shape, dtype=dtype, device=device)
    h_abs = torch.zeros_like(h_phi)
    stain = get_stain(stain)
    a_scales = stain.node_scales(sim.quadrature) if stain is not None else [1.0] * len(sim.wavelengths)
    for k, lam in enumerate(sim.wavelengths):
        hp, ha = node_transfer_functions(sim, k)
        scale = o.wavelength_ref_um / lam if o.phase_model == "opd" else 1.0
        w = sim.channel_weights[:, k, None, None]
        h_phi += w * scale * hp.real
        h_abs += w * float(a_scales[k]) * ha.real
    if pixel_integration and microscope.sampling.oversample > 1:
        mtf = _pixel_mtf(shape, dtype=dtype, device=device)
        h_phi, h_abs = h_phi * mtf, h_abs * mtf
    return h_phi, h_abs


def _pixel_mtf(shape, *, dtype, device):
    fy = torch.fft.fftfreq(shape[0], dtype=dtype, device=device)
    fx = torch.fft.fftfreq(shape[1], dtype=dtype, device=device)
    return torch.sinc(fy)[:, None] * torch.sinc(fx)[None, :]
