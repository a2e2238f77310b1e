"""Weak-object transfer functions (chromaqpi.optics.transfer) against closed forms (PHYSICS.md §4, §8 #5, #8).

The simulator tests check the TFs at one grating frequency; these check them on the whole
frequency grid, the symmetry and in-focus properties of the node correlations before the
real part is taken, the OPD phase scaling of §2.2/§4.3, and the full linearisation of the
polychromatic, partially coherent Abbe model.
"""

import math

import numpy as np
import pytest
import torch

from chromaqpi import Microscope, simulate
from chromaqpi.microscope import Optics, Plane, Sampling
from chromaqpi.optics.simulator import Simulator
from chromaqpi.optics.transfer import channel_transfer_functions, node_transfer_functions

SHAPE = (64, 66)  # even, non-square: exposes the f -> -f index mapping on both axes


def mono(z_um, *, na=0.4, na_ill=0.0, n=1.33, lam=0.55, lam_ref=None, dx=0.2, points=40, paraxial=False,
         phase_model="opd"):
    return Microscope(
        name="test", sampling=Sampling(pixel_size_um=dx, oversample=1, pad_px=0),
        optics=Optics(na_objective=na, na_condenser=na_ill, source_points=points, n_medium=n,
                      wavelength_ref_um=lam_ref or lam, paraxial=paraxial, phase_model=phase_model),
        planes=[Plane(lam, z_um)])


def _grid_f2(shape, dx):
    fy = np.fft.fftfreq(shape[0], dx)[:, None]
    fx = np.fft.fftfreq(shape[1], dx)[None, :]
    return fy**2 + fx**2


def _negate(x):
    """x(-g) on an FFT-ordered grid, written independently: index i -> (-i) mod N."""
    iy = (-torch.arange(x.shape[-2])) % x.shape[-2]
    ix = (-torch.arange(x.shape[-1])) % x.shape[-1]
    return x[..., iy[:, None], ix[None, :]]


@pytest.mark.parametrize("paraxial", [False, True])
@pytest.mark.parametrize("z", [-2.0, 1.5])
def test_coherent_transfer_functions_equal_the_closed_form_on_the_whole_grid(z, paraxial):
    # PHYSICS.md §4.2 / §8 #5, coherent on-axis source: H^φ = 2 sin θ·P, H^a = -2 cos θ·P with
    # θ = 2πz(n/λ - k_z) (angular spectrum) or πλz|f|²/n (paraxial), and 0 outside the pupil.
    # Every one of the 64 x 66 frequencies is compared, not just a grating frequency; the only
    # error is float64 rounding (measured <= 1e-15), hence 1e-12.
    n, lam, na, dx = 1.33, 0.55, 0.4, 0.2
    h_phi, h_abs = channel_transfer_functions(mono(z, na=na, n=n, lam=lam, dx=dx, paraxial=paraxial), SHAPE)
    f2 = _grid_f2(SHAPE, dx)
    inside = lam**2 * f2 <= na**2
    if paraxial:
        theta = np.pi * lam * z * f2 / n
    else:
        theta = 2 * np.pi * z * (n / lam - np.sqrt(np.maximum((n / lam) ** 2 - f2, 0)))
    assert np.max(np.abs(h_phi[0].numpy() - 2 * np.sin(theta) * inside)) < 1e-12
    assert np.max(np.abs(h_abs[0].numpy() + 2 * np.cos(theta) * inside)) < 1e-12
    assert 0.03 < inside.mean() < 0.5  # the pupil edge lies inside the grid, so the clipping is tested


@pytest.mark.parametrize("z", [0.0, 1.3, -2.2])
def test_partially_coherent_node_transfer_functions_are_real_and_even(z):
    # PHYSICS.md §4.1 / §8 #8: for a point-symmetric source and pupil, H^φ and H^a are real and
    # even, H^a(0) = -2 (absorption of the mean), and in focus H^φ ≡ 0. The solvers keep only the
    # real part, so an asymmetric source would silently lose its imaginary part there; this checks
    # the complex node TFs before that. Off-grid source points (40 ring points of a 0.25 NA
    # condenser); float64 rounding only (measured <= 7e-16), hence 1e-12.
    sim = Simulator(mono(z, na_ill=0.25), SHAPE, dtype=torch.float64)
    h_phi, h_abs = node_transfer_functions(sim, 0)
    for h in (h_phi, h_abs):
        assert float(h.imag.abs().max()) < 1e-12
        assert float((h - _negate(h)).abs().max()) < 1e-12
    assert float(h_abs[0, 0].real) == pytest.approx(-2.0, abs=1e-12)
    if z == 0:
        assert float(h_phi.abs().max()) < 1e-12
    else:
        assert float(h_phi.real.abs().max()) > 0.1  # a defocused TF is not trivially zero


@pytest.mark.parametrize("lam", [0.45, 0.65])
@pytest.mark.parametrize("phase_model", ["opd", "constant"])
def test_phase_model_scales_the_phase_response_by_lambda_ref_over_lambda(lam, phase_model):
    # PHYSICS.md §2.2/§4.3: the input phase is given at λ_ref = 0.55 µm. A non-dispersive object
    # ("opd") has φ_λ = φ_ref·λ_ref/λ, so its channel TF is (λ_ref/λ)·2 sin(2πz(n/λ - k_z)); a
    # λ-independent phase ("constant") has no factor. Both the TF and the simulated weak-grating
    # response (ε = 1e-3; the third-order term is ~1e-6) must follow, to 1e-5. The factor is
    # 1.22 or 0.85, so using λ/λ_ref or dropping it misses by >= 15 %.
    n, z, dx, n_px, k = 1.33, 1.2, 0.2, 64, 7
    m = mono(z, lam=lam, lam_ref=0.55, n=n, dx=dx, phase_model=phase_model)
    f0 = k / (n_px * dx)
    scale = 0.55 / lam if phase_model == "opd" else 1.0
    expected = scale * 2 * math.sin(2 * math.pi * z * (n / lam - math.sqrt((n / lam) ** 2 - f0**2)))
    h_phi, _ = channel_transfer_functions(m, (n_px, n_px))
    assert float(h_phi[0, 0, k]) == pytest.approx(expected, abs=1e-12)
    x = torch.arange(n_px, dtype=torch.float64)
    cos = torch.cos(2 * math.pi * k * x / n_px)[None, :].expand(n_px, n_px)
    img = simulate(1e-3 * cos, m, noise=False)[0, 0]
    response = float(2 * ((img - 1) * cos).mean() / 1e-3)
    assert response == pytest.approx(expected, abs=1e-5)


def _smooth_field(shape, seed, cutoff=0.12):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :]
    field = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(fx**2 + fy**2) / (2 * cutoff**2))).real
    return field / field.abs().max()


def test_polychromatic_abbe_image_of_a_weak_object_is_the_linear_wotf_prediction():
    # PHYSICS.md §4.1/§4.3: for t = exp(-εa + iεφ), I_c - 1 = F⁻¹{H^φ_c F{εφ} + H^a_c F{εa}} + O(ε²).
    # Default preset (RGB mode, 5 wavelengths, 12 off-grid source points, NA 0.65/0.3, chromatic
    # focal shift) on the camera grid (the TFs' grid: no oversampling or padding), whole field,
    # every frequency. The residual relative to the contrast is second order: measured 0.19·ε
    # (1.9e-5 at ε = 1e-4, 1.9e-4 at ε = 1e-3). So at ε = 1e-4 any TF error above ~5e-5 of the
    # contrast fails, and the residual must grow ~10x per decade of ε (between 5x and 20x):
    # a first-order model error would give a constant relative residual instead.
    m = Microscope.from_preset("default").replace(sampling={"oversample": 1, "pad_px": 0},
                                                  spectra={"n_wavelengths": 5}, optics={"source_points": 12})
    shape = (48, 50)
    phase, absorption = _smooth_field(shape, 0), _smooth_field(shape, 1)
    h_phi, h_abs = channel_transfer_functions(m, shape)
    errors = []
    for eps in (1e-4, 1e-3):
        img = simulate(eps * phase, m, absorption=eps * absorption, noise=False)[0]
        linear = torch.fft.ifft2(h_phi * torch.fft.fft2(eps * phase) + h_abs * torch.fft.fft2(eps * absorption)).real
        errors.append(float((img - 1 - linear).norm() / linear.norm()))
    assert errors[0] < 1e-4, errors
    assert 5 < errors[1] / errors[0] < 20, errors
