"""Multi-channel WOTF Tikhonov/TV inversion."""

import pytest
import torch
from solver_cases import gaussian, planes_microscope, rel_rms_after_offset, seeded_noise

from chromaqpi import Microscope, reconstruct, simulate
from chromaqpi.errors import ConfigError
from chromaqpi.optics.transfer import channel_transfer_functions
from chromaqpi.solvers.fourier import mirror_pad
from chromaqpi.solvers.wotf import invert_wotf

SHAPE = (45, 52)


@pytest.fixture(scope="module")
def three_planes():
    # PHYSICS.md §8 row 17: three planes (-1, 0.3, 1.5 µm), σ 0.5.
    return planes_microscope([(0.55, -1.0), (0.55, 0.3), (0.55, 1.5)], na=0.4, na_ill=0.2, points=30,
                             n=1.33, dx=0.2)


def weak_object(shape, seed, amplitude=0.01):
    return amplitude * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def linear_images(m, phase, absorption=None):
    """I_c = 1 + F⁻¹{H^φ_c F{φ} + H^a_c F{a}} on the periodic grid of ``phase``."""
    h_phi, h_abs = channel_transfer_functions(m, phase.shape[-2:])
    spectrum = h_phi * torch.fft.fft2(phase)
    if absorption is not None:
        spectrum = spectrum + h_abs * torch.fft.fft2(absorption)
    return 1 + torch.fft.ifft2(spectrum).real


def band_error(pred, true, energy):
    band = energy > 1e-6
    band[0, 0] = False
    diff = torch.fft.fft2(pred - true)[..., band]
    return float(diff.abs().norm() / torch.fft.fft2(true)[..., band].abs().norm())


@pytest.mark.parametrize("alpha", [1e-12, "gcv"])
def test_linear_model_recovered_to_machine_precision(three_planes, alpha):
    phase = weak_object(SHAPE, 0)
    img = linear_images(three_planes, phase)
    out = reconstruct(img, three_planes, method="wotf", alpha=alpha, padding="none")
    h_phi, _ = channel_transfer_functions(three_planes, SHAPE)
    assert band_error(out, phase, (h_phi**2).sum(0)) < 1e-6


def test_mirror_padding_is_exact_for_mirror_extended_objects(three_planes):
    # Even TFs map the mirrored object to the mirrored image, so cropping the
    # linear image of the extended object and mirror-padding it is lossless.
    phase = weak_object(SHAPE, 1)
    big = mirror_pad(phase, "mirror")
    img = linear_images(three_planes, big)[..., : SHAPE[0], : SHAPE[1]]
    out = reconstruct(img, three_planes, method="wotf", alpha=1e-12, padding="mirror")
    h_phi, _ = channel_transfer_functions(three_planes, big.shape)
    assert band_error(mirror_pad(out, "mirror"), big, (h_phi**2).sum(0)) < 1e-6


def test_joint_phase_and_absorption(three_planes):
    phase, absorption = weak_object(SHAPE, 2), weak_object(SHAPE, 3)
    img = linear_images(three_planes, phase, absorption)
    h_phi, h_abs = channel_transfer_functions(three_planes, SHAPE)
    spp, saa, sap = (h_phi**2).sum(0), (h_abs**2).sum(0), (h_phi * h_abs).sum(0)
    det = spp * saa - sap**2
    p, a = invert_wotf(img[None], three_planes, alpha=1e-14, absorption=True, padding="none")
    assert band_error(p[0], phase, det / saa.max() ** 2) < 1e-5
    assert band_error(a[0], absorption, det / saa.max() ** 2) < 1e-5
    # A pure-phase inversion of the same data is biased by the absorption; with
    # the absorption profiled out as a nuisance (the default here) it is not.
    pure = reconstruct(img, three_planes, method="wotf", alpha=1e-14, nuisance="none", padding="none")
    assert band_error(pure, phase, spp) > 1e-2
    profiled = reconstruct(img, three_planes, method="wotf", alpha=1e-14, padding="none")
    assert band_error(profiled, phase, det / saa.max() ** 2) < 1e-5


@pytest.fixture(scope="module")
def colour_planes():
    # Three single-wavelength planes, each at its own focus (a chromatic objective's R, G, B).
    return planes_microscope([(0.63, -1.0), (0.53, 0.3), (0.45, 1.5)], na=0.4, na_ill=0.2, points=30,
                             n=1.33, dx=0.2)


def test_a_stained_absorber_is_profiled_out_when_the_stain_is_named(colour_planes):
    # Each plane's absorption TF is the grey one times s(λ_c)/s̄ (s̄ the mean over the equally weighted
    # planes), exactly. A weak methylene-blue absorber in the linear images: profiled with its colour,
    # the phase comes back to 1e-5 in the band (measured 8e-13); profiled as grey it is biased (17; > 1e-2).
    import numpy as np

    from chromaqpi.optics.spectra import STAINS

    _, grey = channel_transfer_functions(colour_planes, SHAPE)
    h_phi, blue = channel_transfer_functions(colour_planes, SHAPE, stain="methylene-blue")
    s = STAINS["methylene-blue"].extinction(np.array([0.63, 0.53, 0.45]))
    torch.testing.assert_close(blue, grey * torch.as_tensor(s / s.mean())[:, None, None], rtol=1e-12, atol=1e-15)
    phase, absorption = weak_object(SHAPE, 2), weak_object(SHAPE, 3)
    img = 1 + torch.fft.ifft2(h_phi * torch.fft.fft2(phase) + blue * torch.fft.fft2(absorption)).real
    spp, saa, sap = (h_phi**2).sum(0), (blue**2).sum(0), (h_phi * blue).sum(0)
    band = (spp * saa - sap**2) / saa.max() ** 2
    named = reconstruct(img, colour_planes, method="wotf", alpha=1e-14, nuisance="absorption", padding="none",
                        stain="methylene-blue")
    assert band_error(named, phase, band) < 1e-5
    as_grey = reconstruct(img, colour_planes, method="wotf", alpha=1e-14, nuisance="absorption", padding="none")
    assert band_error(as_grey, phase, band) > 1e-2


def two_bumps(shape):
    return gaussian(shape, 0.5, 1.5, 0.2) + gaussian(shape, -0.3, 0.6, 0.2, centre=(10, 12))


def test_errors_grow_monotonically_with_noise(three_planes):
    phase = two_bumps(SHAPE)
    img = linear_images(three_planes, phase)  # contrast std ~1 %
    errors = []
    for sigma in (0.0, 1e-3, 3e-3, 1e-2, 3e-2):
        runs = [reconstruct(img + seeded_noise(img.shape, sigma, s), three_planes, method="wotf")
                for s in (1, 2)]
        errors.append(sum(rel_rms_after_offset(r, phase) for r in runs) / 2)
    assert errors == sorted(errors), errors
    assert errors[0] < 1e-3 and errors[-1] < 0.3


def test_gcv_close_to_best_fixed_alpha(three_planes):
    # GCV targets the predictive error, so it is not the solution-error
    # optimum; over 4 noise draws it stays within 20 % of the best fixed α
    # (measured: 1.0-1.3x across 0.3-3 % noise and two field sizes).
    shape = (64, 70)
    phase = two_bumps(shape)
    img = linear_images(three_planes, phase)
    alphas = ("gcv", 0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    err = dict.fromkeys(alphas, 0.0)
    for seed in (5, 6, 7, 8):
        noisy = img + seeded_noise((3, *shape), 1e-2, seed)
        for a in alphas:
            err[a] += rel_rms_after_offset(reconstruct(noisy, three_planes, method="wotf", alpha=a), phase) / 4
    best = min(v for k, v in err.items() if k != "gcv")
    assert err["gcv"] < 1.2 * best and err["gcv"] < 0.4 * err[1.0], err


def test_tv_improves_a_noisy_piecewise_constant_object(three_planes):
    y, x = torch.meshgrid(torch.arange(64.0, dtype=torch.float64), torch.arange(70.0, dtype=torch.float64),
                          indexing="ij")
    phase = 0.05 * (((y - 30) ** 2 + (x - 25) ** 2) < 120).double() + 0.03 * ((x > 45) & (y < 40)).double()
    noisy = linear_images(three_planes, phase) + seeded_noise((3, 64, 70), 3e-3, 6)
    tik_gcv = rel_rms_after_offset(reconstruct(noisy, three_planes, method="wotf", alpha="gcv"), phase)
    tik_auto = rel_rms_after_offset(reconstruct(noisy, three_planes, method="wotf"), phase)
    tv = rel_rms_after_offset(reconstruct(noisy, three_planes, method="wotf", tv=3e-5), phase)
    # Measured: TV 0.131, Tikhonov with GCV's α 0.195, with the automatic (TIE-capped) α 0.156.
    assert tv < 0.7 * tik_gcv and tv < 0.9 * tik_auto, (tv, tik_gcv, tik_auto)


def test_abbe_data_of_a_weak_object_polychromatic():
    # Full forward model (partially coherent, 5 wavelengths, focal shift, pixel
    # integration): the linear inverse is accurate for a weak object.
    m = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 5}, optics={"source_points": 8})
    phase = gaussian((40, 43), 0.1, 0.8, 0.1625)
    out = reconstruct(simulate(phase, m, noise=False), m, method="wotf")[0]
    assert rel_rms_after_offset(out, phase) < 0.015  # 0.55 % measured


def test_invalid_options(three_planes):
    img = torch.ones(3, 16, 16, dtype=torch.float64)
    for bad in ({"alpha": "risk"}, {"alpha": -1.0}, {"tv": -1.0}, {"tv": 1e-3, "absorption": True},
                {"tv": 1e-3, "tv_iterations": 0}, {"nuisance": "phase"}):
        with pytest.raises(ConfigError):
            reconstruct(img, three_planes, method="wotf", **bad)
    with pytest.raises(ConfigError):
        reconstruct(img[:1], planes_microscope([(0.55, 1.0)], na=0.4, na_ill=0.2, points=4, n=1.33, dx=0.2),
                    method="wotf", nuisance="absorption")


def test_absorption_separation_of_the_presets():
    # All channels at one defocus (paper-rgb) cannot tell absorption from phase;
    # a ±dz pair separates them exactly; the chromatic default preset in between.
    from chromaqpi.solvers.wotf import absorption_separation

    def sep(name):
        return absorption_separation(*channel_transfer_functions(Microscope.from_preset(name), (32, 36)))

    assert sep("paper-rgb") < 0.2 < sep("default") < 0.5
    assert sep("paper-2shot") == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name, y, x", [("rocket", 0, 0), ("page", 60, 60), ("chelsea", 0, 0)])
def test_strong_picture_phase_no_worse_than_a_constant(name, y, x):
    # Regression (natural-test blow-up, nMAE 4.7 vs 0.25 for a constant): a
    # 3.5 rad picture behind NA 0.65 loses light beyond the pupil, nearly alike
    # in every colour. A pure-phase inversion with GCV read that as phase and
    # amplified it like 1/f² (offset-aligned MAE 2.5-17 rad here); profiling the
    # absorption and the light-loss term of α keep WOTF below the constant predictor.
    from chromaqpi.phantoms import load_bundled_image

    m = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 5}, optics={"source_points": 8})
    crop = torch.tensor(load_bundled_image(name)[y:y + 96, x:x + 99], dtype=torch.float64)
    phase = 3.5 * (crop - crop.min()) / (crop.max() - crop.min())
    img = simulate(phase, m, noise=False)

    def mae(est):
        d = phase - est
        return float((d - d.median()).abs().mean())

    constant = mae(torch.zeros_like(phase))
    assert mae(reconstruct(img, m, method="wotf")[0]) < constant
    assert mae(reconstruct(img, m, method="wotf", tv=1e-3)[0]) < constant
    assert mae(reconstruct(img, m, method="wotf", alpha="gcv", nuisance="none")[0]) > 3 * constant  # the old rule


def _planes(planes):
    """Three or two planes behind a 0.4 NA objective with a 0.2 NA condenser, 0.2 µm pixels."""
    return planes_microscope(planes, na=0.4, na_ill=0.2, points=12, n=1.33, dx=0.2)


def _weak(shape, seed, amp=0.01):
    return amp * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_light_loss_counts_only_lost_light():
    # Catches a slip (clamp(min=0) -> abs): excess light (biased noise) is not a loss.
    from chromaqpi.solvers.wotf import light_loss
    img = torch.ones(2, 3, 8, 9, dtype=torch.float64)
    img[0] *= 1.05                       # 5 % excess in every channel: no loss
    img[1, 1] = 0.97                     # 3 % lost in one channel, 2 % excess in another
    img[1, 2] = 1.02
    assert light_loss(img).tolist() == pytest.approx([0.0, 0.03], abs=1e-12)


def test_auto_alpha_is_the_squared_light_loss_on_noiseless_data():
    # Catches a slip (alpha = max(GCV, delta) instead of delta^2). Noiseless linear data: GCV picks ~0,
    # a DC deficit of delta = 0.1 (invisible to the phase TFs, H^phi(0) = 0) sets alpha = delta^2.
    m = _planes([(0.55, -1.0), (0.55, 0.3), (0.55, 1.5)])
    img = linear_images(m, _weak((32, 36), 0)) - 0.1
    auto = reconstruct(img, m, method="wotf", alpha="auto", padding="none")
    same = reconstruct(img, m, method="wotf", alpha=0.01, padding="none")
    other = reconstruct(img, m, method="wotf", alpha=0.1, padding="none")
    scale = float(same.abs().max())
    assert float((auto - same).abs().max()) < 1e-6 * scale
    assert float((auto - other).abs().max()) > 1e-2 * scale


def test_auto_nuisance_needs_three_channels():
    # Catches a slip (C >= 3 -> C >= 2): a two-plane stack with separation >= 0.2 keeps the pure-phase model.
    # (Not a symmetric +-dz pair: there H^phi is orthogonal to H^a and profiling changes nothing.)
    from chromaqpi.solvers.wotf import absorption_separation
    m = _planes([(0.55, -0.5), (0.55, 1.5)])
    assert absorption_separation(*channel_transfer_functions(m, (32, 36))) >= 0.2
    img = linear_images(m, _weak((32, 36), 1), _weak((32, 36), 2))
    auto = reconstruct(img, m, method="wotf", alpha=1e-6, padding="none")
    none = reconstruct(img, m, method="wotf", alpha=1e-6, nuisance="none", padding="none")
    prof = reconstruct(img, m, method="wotf", alpha=1e-6, nuisance="absorption", padding="none")
    assert torch.allclose(auto, none, atol=1e-12)
    assert float((prof - none).abs().max()) > 1e-3 * float(none.abs().max())


def test_auto_nuisance_leaves_paper_rgb_alone():
    # Catches a slip (_MIN_SEPARATION 0.2 -> 0.1): paper-rgb (separation 0.14) is documented as not profiled.
    m = Microscope.from_preset("paper-rgb").replace(spectra={"n_wavelengths": 5})
    img = linear_images(m, _weak((32, 36), 3), _weak((32, 36), 4))
    auto = reconstruct(img, m, method="wotf", alpha=1e-4, padding="none")
    none = reconstruct(img, m, method="wotf", alpha=1e-4, nuisance="none", padding="none")
    assert torch.allclose(auto, none, atol=1e-12)


def test_gcv_recovers_a_weak_absorption_object_from_a_low_noise_pair():
    # Absorption only, ±1 µm pair, noise 1e-4: GCV on the absorption operator H^a keeps detail the data
    # support (0.16 % measured). GCV on the wrong operator (H^φ, nearly orthogonal to H^a for a
    # symmetric pair, so the data look like noise to it) over-smooths: 0.83 %.
    m = _planes([(0.55, -1.0), (0.55, 1.0)])
    shape = (64, 70)
    a = gaussian(shape, 0.05, 1.0, 0.2, centre=(30, 30)) + gaussian(shape, 0.03, 0.6, 0.2, centre=(45, 50))
    _, h_abs = channel_transfer_functions(m, shape)
    img = 1 + torch.fft.ifft2(h_abs * torch.fft.fft2(a)).real + seeded_noise((2, *shape), 1e-4, 5)
    _, absorption = invert_wotf(img[None], m, alpha=1e-3, absorption=True, alpha_absorption="gcv", padding="none")
    assert rel_rms_after_offset(absorption[0], a) < 0.004


@pytest.mark.parametrize("tv", [0.5, 2.0])
def test_tv_admm_converges_to_the_analytic_tv_denoised_step(tv):
    # Closed form for the documented objective ½Σ_c‖h_c∗φ - d_c‖² + ½α‖φ‖² + tv·Σ|∇φ| (pixel sums,
    # periodic forward differences, mean fixed at 0): with h ≡ 1, α = 0 and data constant along y with
    # two levels (A on L1 columns, B on L2, zero mean), the minimiser keeps the two levels and pulls
    # each towards the other by the TV force of its two edges: a = A - 2tv/L1, b = B + 2tv/L2 (per row,
    # ½L1(a-A)² + ½L2(b-B)² + 2tv|a-b|). ADMM reaches it to rounding within 300 iterations (measured
    # 1e-15, 7e-14); tolerance 1e-9. A threshold of tv·ρ, a missing FFT normalisation or a TV weight
    # off by any factor moves the levels by >= 0.04.
    from chromaqpi.solvers.wotf import _tv_admm

    h_px, w_px, l1, start = 8, 64, 24, 10
    l2 = w_px - l1
    a_level, b_level = 1.0, -l1 / l2
    d = torch.full((h_px, w_px), b_level, dtype=torch.float64)
    d[:, start:start + l1] = a_level
    phi_hat = _tv_admm(torch.fft.fft2(d)[None, None], torch.ones(1, h_px, w_px, dtype=torch.float64),
                       torch.zeros(1, dtype=torch.float64), tv, 300)
    expected = torch.full_like(d, b_level + 2 * tv / l2)
    expected[:, start:start + l1] = a_level - 2 * tv / l1
    assert float((torch.fft.ifft2(phi_hat).real[0] - expected).abs().max()) < 1e-9


def _bump_gain_and_warnings(scope, noise: bool, peak: float = 1.5, var_um2: float = 8.0, n: int = 256,
                            **options):
    """WOTF's gain on a Gaussian bump in an empty n px field, and how many times it said GCV saw no signal."""
    import warnings

    import numpy as np

    pixel = scope.sampling.pixel_size_um
    yy, xx = np.mgrid[:n, :n]
    bump = torch.tensor(peak * np.exp(-((xx - n / 2) ** 2 + (yy - n / 2) ** 2) * pixel**2 / var_um2))
    images = simulate(bump, scope, noise=noise, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        phase = reconstruct(images, scope, method="wotf", **options)[0]
    said = [w for w in caught if "found no phase signal above the noise" in str(w.message)]
    gain = float(((phase - phase.mean()) * (bump - bump.mean())).sum() / ((bump - bump.mean()) ** 2).sum())
    return gain, len(said)


def test_a_smooth_object_in_noise_keeps_its_gain_with_a_pupil():
    """Bumps under the default camera's noise: GCV alone damps them (to ~0 at the top of its grid in a
    256 px field, to gain 0.59 with a weight 200x the TIE-equivalent one in a 128 px field); the automatic
    rule caps α at the TIE-equivalent and keeps the phase (measured gains 1.01, 0.88 and 0.98; the TIE's own
    on such bumps is 0.7-1). Noiseless, GCV keeps it unaided.
    (A light quadrature of the default preset, to keep the test fast.)"""
    scope = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 4}, optics={"source_points": 5},
                                                      sampling={"oversample": 1, "pad_px": 0})
    for peak, var_um2 in ((1.5, 8.0), (0.4, 2.0)):
        for noise in (True, False):
            gain, said = _bump_gain_and_warnings(scope, noise, peak, var_um2)
            assert said == 0
            assert (0.75 < gain < 1.25) if noise else (0.95 < gain < 1.05)
    gain_128, _ = _bump_gain_and_warnings(scope, True, n=128)
    assert 0.9 < gain_128 < 1.1
    gain, said = _bump_gain_and_warnings(scope, True, alpha="gcv")
    assert said == 1 and gain < 0.1  # GCV alone: the failure the cap is for
    gain_128, said = _bump_gain_and_warnings(scope, True, n=128, alpha="gcv")
    assert said == 0 and gain_128 < 0.7  # GCV damps it, yet under the no-signal threshold


def test_an_automatic_alpha_that_sees_only_noise_says_so():
    """Without a pupil (paper-2shot, noise N(p, p), p = 0.05) there is no cap: GCV takes its largest
    weight, WOTF returns almost nothing, and it must say so. The same bump without noise is recovered,
    silently."""
    scope = Microscope.from_preset("paper-2shot").replace(
        sensor={"model": "gaussian", "gaussian_mean": 0.05, "gaussian_std": 0.05})
    for noise, expected in ((True, 1), (False, 0)):
        gain, said = _bump_gain_and_warnings(scope, noise)
        assert said == expected
        assert (gain < 0.1) if noise else (gain > 0.9)  # the warning names a real failure, and only that


def test_the_tie_cap_only_lowers_alpha_and_only_below_the_first_peak_of_the_transfer_function():
    """On a rectangular grid the cap's band is a disc in physical frequency ending where Σ|H|² first falls
    along kx (the TFs are isotropic), and the capped weight is never above GCV's."""
    from chromaqpi.solvers.wotf import _at_most_tie, _tie_band, transfer_functions

    scope = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 4}, optics={"source_points": 5},
                                                      sampling={"oversample": 1, "pad_px": 0})
    shape = (96, 160)
    hp, _ = transfer_functions(scope, shape, dtype=torch.float64)
    s = (hp**2).sum(0)
    band = _tie_band(hp)
    profile = s[0, : shape[1] // 2]
    edge = next(i for i in range(1, profile.numel()) if profile[i] < profile[i - 1]) - 1
    assert 2 < edge < shape[1] // 2
    assert torch.equal(band[0, : shape[1] // 2], torch.arange(shape[1] // 2) <= edge)
    along_y = int(band[: shape[0] // 2, 0].sum()) - 1
    assert abs(along_y - edge * shape[0] / shape[1]) <= 1.0  # the same radius in cycles per µm
    images = 1 + 0.01 * torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gcv = torch.tensor([2.0, 1e-12], dtype=torch.float64) * float(s.max())  # the top of GCV's grid, and ~0
    capped = _at_most_tie(gcv, hp, images, scope, torch.zeros(2, dtype=torch.float64))
    assert capped.shape == (2, *shape)
    assert bool((capped <= gcv[:, None, None]).all())
    assert bool((capped[:, ~band] == gcv[:, None]).all())
    assert bool((capped[0, band] < gcv[0]).all())  # the large weight is cut inside the band
    assert bool((capped[1] == gcv[1]).all())  # a weight already under the TIE-equivalent one is kept
    floored = 1.01 * torch.sqrt(gcv)  # light loss δ with δ² >= α: α sits at its floor, which the cap never goes under
    assert torch.equal(_at_most_tie(gcv, hp, images, scope, floored), gcv)
