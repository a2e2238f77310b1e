"""refine_with_absorption: phase and amplitude attenuation fitted together, against noiseless simulations."""

import pytest
import torch
from solver_cases import rel_rms_after_offset

import chromaqpi
from chromaqpi import Microscope, reconstruct, simulate
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.solvers.iterative import refine, refine_with_absorption, residual_noise_variance
from chromaqpi.solvers.tie import tie


@pytest.fixture(scope="module")
def paper2():
    return Microscope.from_preset("paper-2shot")


@pytest.fixture
def smooth_absorber():
    """An attenuation of the same band and grid as smooth_random_phase, from another seed, spanning 0-0.3
    (|t|² down to 0.55)."""
    g = torch.Generator().manual_seed(11)
    fy = torch.fft.fftfreq(48, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(53, dtype=torch.float64)[None, :]
    noise = torch.randn(48, 53, generator=g, dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(fx**2 + fy**2) / (2 * 0.06**2))).real
    field = field - field.min()
    return 0.3 * field / field.max()


def _rel_rms(estimate, true):
    return float((estimate - true).pow(2).mean().sqrt() / true.pow(2).mean().sqrt())


def test_the_joint_fit_recovers_what_a_pure_phase_fit_cannot(paper2, smooth_random_phase, smooth_absorber):
    # ±1 µm planes, 3 rad phase plus a 0.3 absorber elsewhere, noiseless, no prior, from TIE and the intercept.
    # Measured after 150 steps (phase error RMS over the 3 rad peak): phase 3.5e-4 (a pure-phase fit: 0.080,
    # it bends the phase to darken the absorber), attenuation 0.007 relative RMS. Tolerances 5e-3, 0.03, and
    # the pure-phase fit must stay above 0.04.
    images = simulate(smooth_random_phase, paper2, absorption=smooth_absorber, noise=False)
    start = reconstruct(images, paper2, method="tie")
    fit = refine_with_absorption(images, paper2, start, steps=150, tv=0.0)
    assert fit.phase.shape == fit.absorption.shape == (1, 48, 53)
    assert fit.phase.dtype == fit.absorption.dtype == images.dtype
    assert rel_rms_after_offset(fit.phase[0], smooth_random_phase) < 5e-3
    assert _rel_rms(fit.absorption[0], smooth_absorber) < 0.03
    pure = refine(images, paper2, start, steps=150, tv=0.0)
    assert rel_rms_after_offset(pure[0], smooth_random_phase) > 0.04


def test_a_transparent_specimen_gets_no_attenuation(paper2, smooth_random_phase):
    # Measured after 100 steps: |a| <= 0.004, phase error 3e-4 of the peak; tolerances 0.02 and 5e-3.
    images = simulate(smooth_random_phase, paper2, noise=False)
    fit = refine_with_absorption(images, paper2, reconstruct(images, paper2, method="tie"), steps=100, tv=0.0)
    assert float(fit.absorption.abs().max()) < 0.02
    assert rel_rms_after_offset(fit.phase[0], smooth_random_phase) < 5e-3


def test_the_exact_solution_is_kept(paper2, smooth_random_phase, smooth_absorber):
    images = simulate(smooth_random_phase, paper2, absorption=smooth_absorber, noise=False)
    fit = refine_with_absorption(images, paper2, smooth_random_phase, smooth_absorber, steps=5, tv=0.0)
    assert rel_rms_after_offset(fit.phase[0], smooth_random_phase) < 1e-6
    assert _rel_rms(fit.absorption[0], smooth_absorber) < 1e-6


def test_the_starts_it_is_given(paper2, smooth_random_phase, smooth_absorber):
    # Zero steps return the starts: "intercept" is estimate_absorption's map, "zeros" zeros.
    images = simulate(smooth_random_phase, paper2, absorption=smooth_absorber, noise=False)
    kept = refine_with_absorption(images, paper2, smooth_random_phase, steps=0)
    torch.testing.assert_close(kept.absorption[0], chromaqpi.estimate_absorption(images[0], paper2))
    torch.testing.assert_close(kept.phase[0], smooth_random_phase)
    assert float(refine_with_absorption(images, paper2, smooth_random_phase, "zeros", steps=0).absorption.abs().max()) == 0


def test_iterative_fit_absorption_is_the_joint_fit_from_tie(paper2, smooth_random_phase, smooth_absorber):
    images = simulate(smooth_random_phase, paper2, absorption=smooth_absorber, noise=False)
    out = reconstruct(images, paper2, method="iterative", max_iter=30, fit_absorption=True)
    joint = refine_with_absorption(images, paper2, reconstruct(images, paper2, method="tie"), steps=30).phase
    torch.testing.assert_close(out, joint - joint.mean(), rtol=0, atol=1e-10)
    assert (out - reconstruct(images, paper2, method="iterative", max_iter=30)).abs().max() > 0.1


@pytest.fixture(scope="module")
def chromatic3():
    """Three coherent colour planes, each at its own focus (a cheap chromatic objective)."""
    from dataclasses import replace

    from chromaqpi.microscope import Plane

    base = Microscope.from_preset("paper-2shot")
    return replace(base, name="chromatic-3", optics=replace(base.optics, phase_model="opd", wavelength_ref_um=0.53),
                   planes=[Plane(0.63, -1.0), Plane(0.53, 0.0), Plane(0.45, 1.2)])


def test_a_coloured_stain_is_fitted_when_named(chromatic3, smooth_random_phase, smooth_absorber):
    # Methylene blue (absorbs red) on three colour planes at different focus, noiseless, 150 steps from TIE,
    # no prior; the attenuation starts from the stained intercept (estimate_absorption(stain=), relative RMS
    # error 0.089 here) and is preconditioned by the stain's transfer functions. Measured: phase error RMS
    # over the peak 0.034 with the stain named, attenuation relative RMS 0.025 (0.050 and 0.086 from the grey
    # intercept with the grey preconditioner); the grey joint fit, which cannot make the channels' colour,
    # bends the phase to 0.66 (TIE alone 0.43). Tolerances 0.06 and 0.05; the grey fit must stay above 0.3.
    images = simulate(smooth_random_phase, chromatic3, absorption=smooth_absorber, stain="methylene-blue",
                      noise=False)
    start = tie(images, chromatic3)  # iterative's own start, so that the two fits below are the same fit
    fit = refine_with_absorption(images, chromatic3, start, steps=150, tv=0.0, stain="methylene-blue")
    assert rel_rms_after_offset(fit.phase[0], smooth_random_phase) < 0.06
    assert _rel_rms(fit.absorption[0], smooth_absorber) < 0.05
    grey = refine_with_absorption(images, chromatic3, start, steps=150, tv=0.0)
    assert rel_rms_after_offset(grey.phase[0], smooth_random_phase) > 0.3
    out = reconstruct(images, chromatic3, method="iterative", max_iter=150, tv=0.0, fit_absorption=True,
                      stain="methylene-blue")
    torch.testing.assert_close(out, fit.phase - fit.phase.mean(), rtol=0, atol=1e-6)


def test_noise_allowance_counts_the_unknowns_per_pixel():
    # Same residual, K unknowns per pixel: the variance is scaled by C/(C-K), at most by C.
    g = torch.Generator().manual_seed(0)
    model = torch.ones(1, 3, 64, 64, dtype=torch.float64)
    images = model + 0.02 * torch.randn(model.shape, generator=g, dtype=torch.float64)
    one, two = (residual_noise_variance(images, model, unknowns=k) for k in (1, 2))
    assert two == pytest.approx(one * 2, rel=1e-12)  # 3/1 against 3/2
    # Two channels, two unknowns: the residual says little about the noise; the allowance stays C/(C-1) = 2.
    pair = images[:, :2], model[:, :2]
    assert residual_noise_variance(*pair, unknowns=2) == pytest.approx(residual_noise_variance(*pair), rel=1e-12)


def test_bad_requests_are_refused(paper2, smooth_random_phase):
    images = simulate(smooth_random_phase, paper2, noise=False)
    with pytest.raises(ConfigError, match="init_absorption must be"):
        refine_with_absorption(images, paper2, smooth_random_phase, "ones")
    with pytest.raises(InputError, match="init_absorption shape"):
        refine_with_absorption(images, paper2, smooth_random_phase, torch.zeros(4, 4))
    with pytest.raises(ConfigError, match="unknown stain"):
        refine_with_absorption(images, paper2, smooth_random_phase, stain="indigo")
    with pytest.raises(ConfigError, match="set fit_absorption=True"):
        reconstruct(images, paper2, method="iterative", stain="eosin")
    with pytest.raises(ConfigError, match="set fit_absorption=True"):
        reconstruct(images, paper2, method="mean", refine=2, stain="eosin")
    rgb = Microscope.from_preset("paper-rgb")
    with pytest.raises(ConfigError, match="too alike to tell absorption"):
        refine_with_absorption(torch.ones(1, 3, 16, 16, dtype=torch.float64), rgb, torch.zeros(16, 16))
    with pytest.raises(ConfigError, match="too alike to tell absorption"):
        reconstruct(torch.ones(1, 3, 16, 16, dtype=torch.float64), rgb, method="iterative", fit_absorption=True)
