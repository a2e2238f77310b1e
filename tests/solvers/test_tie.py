"""TIE solvers against analytic phases and exact (angular-spectrum) simulated images."""

import math

import pytest
import torch
from solver_cases import gaussian, paraboloid, planes_microscope, rel_rms_after_offset, seeded_noise, two_shot

from chromaqpi import Microscope, reconstruct, simulate
from chromaqpi.errors import ConfigError
from chromaqpi.solvers.fourier import k_squared
from chromaqpi.solvers.tie import (chromatic_alpha_floor, defocus_coordinates, derivative_fit, solve_poisson, tie,
                                  tie_alpha)

SHAPE = (150, 163)  # odd, non-square: exposes FFT-shift and padding bugs


@pytest.mark.parametrize("phi0", [1.0, 3.0])
@pytest.mark.parametrize("dz", [0.25, 2.0])
def test_paraboloid_cap_coherent(phi0, dz):
    # PHYSICS.md §5.2: coherent, no pupil, R = 4 µm, 0.1 µm grid: 0.09-0.33 % measured.
    m = two_shot(dz, n=1.33)
    phase = paraboloid(SHAPE, phi0, 4.0, 0.1)
    img = simulate(phase, m, noise=False)
    out = reconstruct(img, m, method="tie", regularization=0.0)[0]
    assert rel_rms_after_offset(out, phase) < 0.01


def test_paraboloid_cap_partially_coherent_with_pupil():
    # §8 row 15: NA 0.4, σ 0.5, ≤ 1 % (0.50-0.64 % measured).
    m = two_shot(1.0, na=0.4, na_ill=0.2, points=60, n=1.33)
    phase = paraboloid(SHAPE, 2.0, 4.0, 0.1)
    out = reconstruct(simulate(phase, m, noise=False), m, method="tie")[0]
    assert rel_rms_after_offset(out, phase) < 0.01


@pytest.mark.parametrize("teague", [False, True])
def test_gaussian_phase_with_auto_regularisation(teague):
    m = two_shot(1.0, na=0.4, n=1.33, dx=0.1)
    phase = gaussian(SHAPE, 2.0, 1.5, 0.1)
    out = reconstruct(simulate(phase, m, noise=False), m, method="tie", teague=teague)[0]
    assert rel_rms_after_offset(out, phase) < 0.002  # 0.02 % / 0.03 % measured


def test_teague_form_solves_a_phase_object_with_absorption():
    # I0 dips to 0.6 off-centre of the phase bump: ∇·(I0∇φ) != I0∇²φ there. The Teague form solves
    # the full equation (0.18 % measured), the uniform-intensity form cannot (1.3 %).
    m = two_shot(0.5, na=0.0, n=1.33, dx=0.1)
    phase = gaussian(SHAPE, 1.0, 1.5, 0.1)
    img = simulate(phase, m, absorption=gaussian(SHAPE, 0.25, 1.0, 0.1, centre=(80, 90)), noise=False)
    teague = rel_rms_after_offset(reconstruct(img, m, method="tie", teague=True)[0], phase)
    uniform = rel_rms_after_offset(reconstruct(img, m, method="tie", teague=False)[0], phase)
    assert teague < 0.004 and uniform > 0.01


def test_sign_positive_bump_is_bright_at_positive_z_and_positive_phase():
    m = planes_microscope([(0.55, 1.0)], na=0.4, n=1.33)
    phase = gaussian(SHAPE, 0.5, 1.5, 0.1)
    img = simulate(phase, m, noise=False)[0, 0]
    centre = (SHAPE[0] // 2, SHAPE[1] // 2)
    assert img[centre] > 1.0  # a positive phase bump focuses light at z > 0
    out = reconstruct(img[None], m, method="tie", in_focus="unity")
    assert out[centre] - out.mean() > 0.2
    assert rel_rms_after_offset(out, phase) < 0.02


def test_chromatic_three_plane_opd_model():
    # Non-dispersive object, three colours at distinct defocus: regress on z.
    m = planes_microscope([(0.62, 1.2), (0.53, 0.1), (0.46, -0.9)], na=0.5, n=1.33, lam_ref=0.53)
    assert defocus_coordinates(m) == pytest.approx([1.2, 0.1, -0.9])
    phase = gaussian(SHAPE, 1.5, 1.5, 0.1)
    out = reconstruct(simulate(phase, m, noise=False), m, method="tie", regularization=0.0)[0]
    assert rel_rms_after_offset(out, phase) < 0.02


def test_chromatic_cutoff_floor_only_for_colour_stacks_losing_light_at_the_pupil():
    colour = planes_microscope([(0.62, 1.2), (0.53, 0.1), (0.46, -0.9)], na=0.5)
    lossy = torch.ones(2, 3, 150, 200, dtype=torch.float64)
    lossy[0, 2] = 0.99  # 1 % of the light lost in one channel
    floor = chromatic_alpha_floor(lossy, colour)
    assert float(floor[0]) == pytest.approx((2 * math.pi * 3 / (200 * 0.1)) ** 4) and float(floor[1]) == 0
    assert float(chromatic_alpha_floor(lossy[:, :2], two_shot(1.0, na=0.5))[0]) == 0  # one wavelength
    assert float(chromatic_alpha_floor(lossy, Microscope.from_preset("paper-rgb"))[0]) == 0  # no pupil
    assert float(chromatic_alpha_floor(lossy, Microscope.from_preset("default"))[0]) > 0


def test_constant_phase_model_single_sided_uses_unit_in_focus_intensity():
    # paper-rgb layout: every channel at z = +1, colour diversity only through λz.
    m = Microscope.from_preset("paper-rgb")
    assert defocus_coordinates(m) == pytest.approx([0.63 / 0.53, 1.0, 0.45 / 0.53])
    phase = gaussian((96, 101), 1.0, 2.0, 0.21)
    img = simulate(phase, m, noise=False)
    out = reconstruct(img, m, method="tie")[0]
    assert rel_rms_after_offset(out, phase) < 0.02
    with pytest.raises(ConfigError, match="cannot determine"):
        reconstruct(img, m.replace(planes=[{"wavelength_um": 0.53, "defocus_um": 1.0}] * 3), method="tie",
                    in_focus="fit")


def test_derivative_fit_is_central_difference_for_plus_minus_dz():
    g = torch.Generator().manual_seed(0)
    img = 1 + 0.1 * torch.rand(2, 2, 9, 10, generator=g, dtype=torch.float64)
    d_i, i0, gain = derivative_fit(img, [-0.5, 0.5])
    assert torch.allclose(d_i, img[:, 1] - img[:, 0], atol=1e-12)
    assert torch.allclose(i0, img.mean(dim=1), atol=1e-12)
    assert gain == pytest.approx(2.0)


def test_errors_grow_monotonically_with_noise():
    m = two_shot(1.0, na=0.4, n=1.33, dx=0.2)
    phase = paraboloid((100, 109), 1.0, 6.0, 0.2)
    img = simulate(phase, m, noise=False)
    errors = []
    for sigma in (0.0, 0.003, 0.01, 0.03, 0.1):
        runs = [reconstruct(img + seeded_noise(img.shape, sigma, seed), m, method="tie")[0] for seed in (1, 2)]
        errors.append(sum(rel_rms_after_offset(r, phase) for r in runs) / 2)
    assert errors == sorted(errors), errors
    assert errors[0] < 0.01 and errors[-1] < 0.5


def test_auto_regularisation_tames_low_frequency_noise():
    # 40 µm field: the 1/f² noise amplification dominates without regularisation
    # (measured over 6 seeds: 0.11 auto vs 0.18 none at 3 % noise).
    m = two_shot(1.0, na=0.4, n=1.33, dx=0.2)
    phase = paraboloid((200, 209), 1.0, 6.0, 0.2)
    img = simulate(phase, m, noise=False)
    auto, plain = 0.0, 0.0
    for seed in (3, 4):
        noisy = img + seeded_noise(img.shape, 0.03, seed)
        auto += rel_rms_after_offset(reconstruct(noisy, m, method="tie")[0], phase)
        plain += rel_rms_after_offset(reconstruct(noisy, m, method="tie", regularization=0.0)[0], phase)
    assert auto < 0.8 * plain


def test_invalid_options():
    m = two_shot(1.0)
    img = torch.ones(2, 16, 16, dtype=torch.float64)
    for bad in ({"regularization": "gcv"}, {"regularization": -1.0}, {"order": 3}, {"in_focus": "x"},
                {"padding": "zero"}, {"noise_std": -1}):
        with pytest.raises(ConfigError):
            reconstruct(img, m, method="tie", **bad)
    with pytest.raises(ConfigError, match="order-2"):
        reconstruct(img, m, method="tie", order=2)


def test_tie_cutoff_frequency_halves_the_gain_at_fc():
    # Catches a slip (alpha = (pi f_c)^4 instead of (2 pi f_c)^4). Analytic: the filter |k|^2/(|k|^4+alpha)
    # at |k| = 2 pi f_c is exactly half the plain inverse Laplacian.
    from chromaqpi.solvers.tie import solve_poisson
    n, dx, cycles = 64, 0.1, 5
    f = cycles / (n * dx)
    x = torch.arange(n, dtype=torch.float64) * dx
    rhs = torch.cos(2 * math.pi * f * x)[None, None, :].expand(1, n, n).contiguous()
    i0 = torch.ones_like(rhs)
    plain = solve_poisson(rhs, i0, dx, regularization=0.0)
    cut = solve_poisson(rhs, i0, dx, regularization=f)
    exact = -rhs / (2 * math.pi * f) ** 2
    assert torch.allclose(plain, exact, atol=1e-12)
    assert torch.allclose(cut, 0.5 * exact, atol=1e-12)


def test_tie_auto_in_focus_fits_the_intercept_for_the_default_spread():
    # Catches a slip (_MIN_SPREAD 0.2 -> 0.3): the default preset (spread 0.29) is documented as fitted.
    from chromaqpi.solvers.tie import defocus_coordinates, derivative_fit
    z = defocus_coordinates(Microscope.from_preset("default"))
    zt = torch.tensor(z, dtype=torch.float64)
    assert 0.2 < float(zt.std(unbiased=False) / zt.pow(2).mean().sqrt()) < 0.3  # the documented 0.29
    img = (0.9 + 0.05 * zt)[None, :, None, None].expand(1, 3, 4, 5)
    d_i, i0, _ = derivative_fit(img, z)  # in_focus="auto"
    assert torch.allclose(i0, torch.full_like(i0, 0.9), atol=1e-12)
    assert torch.allclose(d_i, torch.full_like(d_i, 0.05), atol=1e-12)


def test_derivative_fit_unity_anchor_returns_the_true_slope():
    # Catches a slip (images - 1 dropped for the anchored fit): I(zeta) = 1 + s zeta gives dI = s, exactly.
    from chromaqpi.solvers.tie import derivative_fit
    z = [0.8, 1.0, 1.3]
    slope = torch.linspace(-0.2, 0.3, 20, dtype=torch.float64).reshape(1, 4, 5)
    img = 1 + slope[:, None] * torch.tensor(z, dtype=torch.float64)[None, :, None, None]
    d_i, i0, gain = derivative_fit(img, z, in_focus="unity")
    assert torch.allclose(d_i, slope, atol=1e-12) and torch.all(i0 == 1)
    assert gain == pytest.approx(1 / sum(v * v for v in z))


def test_teague_with_uniform_attenuation_equals_the_uniform_form():
    # Catches a slip (Teague also divides rhs by mean(I0)): for I0 = const = c, div(c grad phi) = rhs gives
    # phi = lap^-1(rhs)/c in both forms.
    from chromaqpi.solvers.tie import solve_poisson
    g = torch.Generator().manual_seed(0)
    rhs = torch.randn(1, 41, 45, generator=g, dtype=torch.float64)  # odd: no Nyquist bin
    rhs = rhs - rhs.mean()
    i0 = torch.full_like(rhs, 0.5)
    teague = solve_poisson(rhs, i0, 0.2, regularization=0.0, teague=True)
    uniform = solve_poisson(rhs, i0, 0.2, regularization=0.0, teague=False)
    ref = 2.0 * solve_poisson(rhs, torch.ones_like(rhs), 0.2, regularization=0.0)
    assert torch.allclose(uniform, ref, atol=1e-10)
    assert torch.allclose(teague, ref, atol=1e-8 * float(ref.abs().max()))


def test_teague_floors_dark_pixels_at_i0_floor_times_mean():
    # Catches a slip (I0 floor dropped): pixels with I0 = 0 behave as if I0 = i0_floor * mean(I0).
    from chromaqpi.solvers.tie import solve_poisson
    g = torch.Generator().manual_seed(1)
    rhs = torch.randn(1, 32, 34, generator=g, dtype=torch.float64)
    i0 = 1 + 0.1 * torch.rand(1, 32, 34, generator=g, dtype=torch.float64)
    i0[0, 10:13, 5:8] = 0.0
    floored = i0.clone()
    floored[0, 10:13, 5:8] = 0.1 * float(i0.mean())
    out = solve_poisson(rhs, i0, 0.2, regularization=0.0, teague=True, i0_floor=0.1)
    ref = solve_poisson(rhs, floored, 0.2, regularization=0.0, teague=True, i0_floor=0.0)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, atol=1e-10 * float(ref.abs().max()))


def _gaussian_phase_and_laplacian(shape=(64, 67), dx=0.2, phi0=1.5, sigma=1.0, centre=(31.0, 34.0)):
    """φ = φ0·exp(-r²/2σ²) and its analytic Laplacian ∇²φ = φ·(r²/σ⁴ - 2/σ²), plus r² (µm²)."""
    y, x = torch.meshgrid(torch.arange(shape[0], dtype=torch.float64), torch.arange(shape[1], dtype=torch.float64),
                          indexing="ij")
    r2 = ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) * dx**2
    phi = phi0 * torch.exp(-r2 / (2 * sigma**2))
    return phi, phi * (r2 / sigma**4 - 2 / sigma**2), r2


def _max_error_after_offset(out, ref):
    return float(((out - out.mean()) - (ref - ref.mean())).abs().max())


def test_poisson_solver_inverts_the_analytic_laplacian_of_a_gaussian():
    # ∇²φ written analytically (not by the code's FFT derivatives); the spectral inverse Laplacian
    # must return φ up to its mean. The Gaussian is band-limited on the grid and ~e^{-20} at the
    # (periodic) borders: measured 2e-8 rad, tolerance 1e-6 of φ0 = 1.5 rad. An α = (πf_c)⁴ slip or
    # a missing (2π)² is an O(1) error.
    phi, lap, _ = _gaussian_phase_and_laplacian()
    out = solve_poisson(lap[None], torch.ones_like(lap)[None], 0.2, regularization=0.0)[0]
    assert _max_error_after_offset(out, phi) < 1e-6


def test_teague_solves_the_analytic_non_uniform_intensity_tie():
    # Concentric Gaussians φ and I0 = 1 - 0.4·exp(-r²/2s²): I0∇φ is radial, hence curl-free, so Teague's
    # two Poisson solves are exact (PHYSICS.md §5.1). rhs = ∇·(I0∇φ) = I0∇²φ + ∇I0·∇φ written
    # analytically. Measured 2e-8 rad (tolerance 1e-6); the uniform-intensity form, which ignores
    # ∇I0·∇φ and the varying I0, is off by 0.37 rad (required > 0.1).
    phi, lap, r2 = _gaussian_phase_and_laplacian()
    b, s = 0.4, 1.5
    dip = b * torch.exp(-r2 / (2 * s**2))
    i0 = 1 - dip
    # ∇I0 = dip·r⃗/s², ∇φ = -φ·r⃗/σ², σ = 1.
    rhs = i0 * lap - dip * phi * r2 / s**2
    teague = solve_poisson(rhs[None], i0[None], 0.2, regularization=0.0, teague=True)[0]
    uniform = solve_poisson(rhs[None], i0[None], 0.2, regularization=0.0, teague=False)[0]
    assert _max_error_after_offset(teague, phi) < 1e-6
    assert _max_error_after_offset(uniform, phi) > 0.1


@pytest.mark.parametrize("n", [1.0, 1.33])
@pytest.mark.parametrize("teague", [False, True])
def test_tie_recovers_a_gaussian_phase_from_linearised_plus_minus_dz_data(n, teague):
    # PHYSICS.md §0/§4.2: in the TIE limit I(z) = 1 - (λz/2πn)·∇²φ. Images written from the analytic
    # Laplacian at z = ∓0.5 µm, i.e. no simulator: tie() must return φ (up to its mean) through the
    # derivative fit, the 2πn/λ factor, its sign and the Poisson solve. Measured 2e-8 rad; tolerance
    # 1e-6 of φ0 = 1.5 rad. Dropping n (n = 1.33) is a 33 % error, a sign slip returns -φ.
    phi, lap, _ = _gaussian_phase_and_laplacian()
    lam, dz = 0.55, 0.5
    m = two_shot(dz, lam=lam, n=n, dx=0.2)
    contrast = lam * dz / (2 * math.pi * n) * lap
    images = torch.stack([1 + contrast, 1 - contrast])[None]  # planes at -dz, +dz
    out = tie(images, m, regularization=0.0, padding="none", teague=teague)[0]
    assert _max_error_after_offset(out, phi) < 1e-6


def test_derivative_fit_order_two_is_exact_for_a_quadratic_stack():
    # I(ζ) = I0 + aζ + cζ² per pixel over four planes: the order-2 least-squares fit returns a and I0
    # exactly (rounding, tolerance 1e-12) where the order-1 fit is biased by the curvature (> 1e-2 here).
    # Its noise gain is the slope's least-squares variance factor ((XᵀX)⁻¹)₁₁, written independently.
    z = [-1.0, 0.2, 0.9, 1.6]
    g = torch.Generator().manual_seed(0)
    i0 = 1 + 0.1 * torch.rand(2, 5, 6, generator=g, dtype=torch.float64)
    a = 0.1 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    c = 0.05 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    zt = torch.tensor(z, dtype=torch.float64)[None, :, None, None]
    img = i0[:, None] + a[:, None] * zt + c[:, None] * zt**2
    d_i, i_fit, gain = derivative_fit(img, z, order=2, in_focus="fit")
    assert float((d_i - a).abs().max()) < 1e-12 and float((i_fit - i0).abs().max()) < 1e-12
    design = torch.stack([torch.ones(4, dtype=torch.float64), zt.flatten(), zt.flatten() ** 2], dim=1)
    assert gain == pytest.approx(float(torch.linalg.inv(design.T @ design)[1, 1]), rel=1e-12)
    d_lin, _, _ = derivative_fit(img, z, order=1, in_focus="fit")
    assert float((d_lin - a).abs().max()) > 1e-2


def test_tie_propagates_the_intensity_noise_through_the_central_difference():
    # With noise_std = σ given, the automatic α must be the risk rule (tie_alpha) applied to the TIE data
    # g = -(2πn/λ)·∂I/Ī0 with its analytic noise variance: for a ±dz pair Var(∂I) = Var((I₊ - I₋)/2dz)
    # = 2σ²/(2dz)², so Var(g) = (2πn/λ)²·2σ²/(2dz)²/Ī0². The α actually used is read back from the output,
    # Φ̂ = -|k|²·G/(|k|⁴ + α), on frequencies where both terms matter (0.05 < |k|⁴ < 20); it must equal
    # the rule's α to 1e-6 relative (measured ~1e-13). Dropping the difference's noise gain (8 at
    # dz = 0.25 µm) gives an α 10x smaller.
    n, lam, dz, dx, sigma = 1.33, 0.55, 0.25, 0.2, 0.01
    factor = 2 * math.pi * n / lam
    shape = (64, 66)
    k2 = k_squared(shape, dx, dtype=torch.float64, device=None)
    contrast = lam * dz / (2 * math.pi * n) * torch.fft.ifft2(-k2 * torch.fft.fft2(gaussian(shape, 1.0, 1.0, dx))).real
    images = (torch.stack([1 + contrast, 1 - contrast]) + seeded_noise((2, *shape), sigma, 0))[None]
    out = tie(images, two_shot(dz, lam=lam, n=n, dx=dx), padding="none", noise_std=sigma)[0]
    i0 = images[0].mean()
    rhs_hat = torch.fft.fft2(-factor * (images[0, 1] - images[0, 0]) / (2 * dz) / i0)
    band = (k2**2 > 0.05) & (k2**2 < 20)
    used = (-k2 / (torch.fft.fft2(out) / rhs_hat) - k2**2).real[band]
    variance = factor**2 * 2 * sigma**2 / (2 * dz) ** 2 / i0**2
    expected = float(tie_alpha(rhs_hat[None], k2, "auto", variance.reshape(1))[0])
    assert expected > 0
    assert float((used / expected - 1).abs().max()) < 1e-6
