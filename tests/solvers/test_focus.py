"""Focus-offset estimation: the shifted weak-object model must explain a weak object, and only at the true focus."""

import math

import pytest
import torch

import chromaqpi
from chromaqpi import Microscope, simulate
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.solvers.focus import (MAX_TRIALS, estimate_focus_offset, explained_fraction, score_noise, shift_focus,
                                     trial_offsets)


@pytest.fixture
def weak_detailed_phase():
    """Weak (0.1 rad peak: the first-order model holds to ~1 %) random phase with detail up to ~0.3 cycles/px.

    Fine detail matters: with every plane at one z (paper-rgb) the low-frequency transfer
    directions are (λ_R, λ_G, λ_B)·z whatever z is; a shift shows only where sin(πλzf²)
    bends away from its small-argument form.
    """
    g = torch.Generator().manual_seed(7)
    h, w = 48, 53
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    noise = torch.randn(h, w, generator=g, dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(fx**2 + fy**2) / (2 * 0.15**2))).real
    field = field - field.min()
    return (0.1 * field / field.max()).float()


def test_shift_focus_moves_planes_or_nominal_defocus():
    two = Microscope.from_preset("paper-2shot")
    moved = shift_focus(two, 0.3)
    assert [p.defocus_um for p in moved.planes] == pytest.approx([p.defocus_um + 0.3 for p in two.planes], abs=1e-12)
    rgb = Microscope.from_preset("default")
    assert shift_focus(rgb, -0.4).focus.defocus_um == pytest.approx(rgb.focus.defocus_um - 0.4, abs=1e-12)
    assert shift_focus(rgb, -0.4).focus.shift_um == rgb.focus.shift_um  # the chromatic curve is the optics'


@pytest.mark.parametrize("preset", ["paper-2shot", "paper-rgb"])
def test_weak_object_is_explained_at_its_focus_only(preset, weak_detailed_phase):
    # Noiseless weak phase object: the linear model is exact to O(φ²) at the true focus, so
    # nearly all the energy is explained (tolerance 2 %); 0.3 µm off, the channel directions turn.
    scope = Microscope.from_preset(preset)
    images = simulate(weak_detailed_phase, scope, noise=False)
    at_focus = float(explained_fraction(images, scope)[0])
    off = float(explained_fraction(images, shift_focus(scope, 0.3))[0])
    assert at_focus > 0.98
    assert off < at_focus - 0.02


@pytest.mark.parametrize("preset, delta", [("paper-2shot", -0.3), ("paper-2shot", 0.25), ("paper-rgb", 0.35)])
def test_estimate_recovers_a_known_offset(preset, delta, weak_detailed_phase):
    # The object was imaged delta µm from the declared planes; the estimate must find delta
    # to within a quarter of the 0.1 µm trial step (parabola refinement).
    scope = Microscope.from_preset(preset)
    images = simulate(weak_detailed_phase, shift_focus(scope, delta), noise=False)
    est = chromaqpi.estimate_focus_offset(images[0], scope)  # the public name
    assert est.offset_um == pytest.approx(delta, abs=0.025)
    assert est.microscope.to_dict() == shift_focus(scope, est.offset_um).to_dict()
    assert max(est.explained) > est.explained_declared


@pytest.mark.parametrize("delta", [-0.3, 0.0, 0.25])
def test_rgb_mode_estimate_recovers_a_known_offset(delta, weak_detailed_phase):
    # Broadband, partially coherent RGB mode. A common shift acts on every channel alike at low
    # frequencies, the direction an absorption fit would take: scored with absorption profiled
    # out, this case landed at +0.5..+0.7 µm for every delta. Phase-only, it must find delta to
    # 0.06 µm (noiseless weak object; the residual error is the simulator's sub-pixel response,
    # which the solvers' sinc pixel model misses by up to 2.7 %, see test_simulator).
    scope = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 3}, optics={"source_points": 5})
    images = simulate(weak_detailed_phase, shift_focus(scope, delta), noise=False)
    with pytest.warns(UserWarning, match="not validated for RGB-mode"):
        est = estimate_focus_offset(images[0], scope)
    assert est.offset_um == pytest.approx(delta, abs=0.06)


def test_large_fields_score_one_trial_at_a_time_alike(weak_detailed_phase, monkeypatch):
    # Above the cache budget the trials are computed one at a time; the scores must not change.
    import chromaqpi.solvers.focus as focus

    scope = Microscope.from_preset("paper-2shot")
    images = simulate(weak_detailed_phase, shift_focus(scope, 0.2), noise=False)[0]
    cached = estimate_focus_offset(images, scope)
    focus._trial_models.cache_clear()
    monkeypatch.setattr(focus, "_CACHE_BYTES", 0)
    streamed = estimate_focus_offset(images, scope)
    assert focus._trial_models.cache_info().currsize == 0
    assert streamed.explained == pytest.approx(cached.explained, rel=1e-12)
    assert streamed.offset_um == pytest.approx(cached.offset_um, abs=1e-12)


def test_no_contrast_and_bad_arguments():
    # paper-rgb planes at +1 µm moved by -1 µm are all in focus: a pure phase object gives no contrast.
    scope = Microscope.from_preset("paper-rgb")
    in_focus = shift_focus(scope, -1.0)
    assert math.isnan(float(explained_fraction(torch.ones(1, 3, 16, 16), in_focus)[0]))
    with pytest.raises(ConfigError, match="one stack"):
        estimate_focus_offset(torch.ones(2, 3, 16, 16), scope)
    with pytest.raises(ConfigError, match="search_um"):
        estimate_focus_offset(torch.ones(3, 16, 16), scope, step_um=0)


def test_rgb_mode_microscopes_are_warned():
    # Measured biased by ~+0.4 um on phantoms-test's strong cells (focus-estimate.md): the estimate must say so.
    scope = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 3}, optics={"source_points": 1})
    images = simulate(torch.zeros(24, 24) + 0.05 * torch.rand(24, 24, generator=torch.Generator().manual_seed(0)),
                      scope, noise=False)
    with pytest.warns(UserWarning, match="not validated for RGB-mode"):
        estimate_focus_offset(images[0], scope, search_um=0.2, step_um=0.1)


def test_trial_grid_stays_within_the_search_and_is_bounded():
    # n = floor(search / step): never a trial beyond ±search (round() had given ±2 for 1.5 / 1).
    assert trial_offsets(1.5, 1.0) == [-1.0, 0.0, 1.0]
    assert trial_offsets(0.25, 0.1) == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2])
    assert trial_offsets(0.3, 0.1) == pytest.approx([-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3])  # 0.3/0.1 = 2.9999...
    assert len(trial_offsets(1.0, 2.0 / (MAX_TRIALS - 1))) == MAX_TRIALS
    for search, step in ((math.inf, 0.1), (0.7, math.nan), (math.inf, math.inf), (0.7, 0.0), (0.1, 0.2)):
        with pytest.raises(ConfigError, match="finite search_um > 0"):
            trial_offsets(search, step)
    with pytest.raises(ConfigError, match="trials; at most"):
        trial_offsets(100.0, 0.001)


@pytest.mark.parametrize("preset", ["paper-2shot", "paper-rgb"])
def test_noise_and_empty_fields_carry_no_focus_signal(preset, weak_detailed_phase):
    scope = Microscope.from_preset(preset)
    # White noise: the best score sits a few noise std above chance (1/C), under the 12 the fit needs.
    g = torch.Generator().manual_seed(1)
    for size in (48, 96):
        noise = 1 + 0.03 * torch.randn(scope.n_channels, size, size, generator=g, dtype=torch.float64)
        with pytest.warns(UserWarning, match="no usable focus signal"):
            fit = estimate_focus_offset(noise, scope)
        assert not fit.reliable and fit.signal < 12
    # The same size with a weak object is far above it.
    images = simulate(weak_detailed_phase, shift_focus(scope, 0.2), noise=False)[0]
    assert estimate_focus_offset(images, scope).signal > 50
    for level in (1.0, 0.5):  # uniform, at or off the empty-field level
        with pytest.raises(ConfigError, match="no contrast"):
            estimate_focus_offset(torch.full((scope.n_channels, 32, 32), level), scope)
    with pytest.raises(InputError, match="channels but the microscope has"):
        estimate_focus_offset(torch.ones(scope.n_channels + 1, 32, 32), scope)
    bad = torch.ones(scope.n_channels, 32, 32)
    bad[0, 3, 4] = math.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        estimate_focus_offset(bad, scope)


def test_score_noise_matches_white_noise():
    # Independent check of the Beta(1, C-1) formula: explained fractions of many white-noise stacks.
    scope = Microscope.from_preset("paper-rgb")
    g = torch.Generator().manual_seed(2)
    x = 1 + 0.05 * torch.randn(200, 3, 32, 32, generator=g, dtype=torch.float64)
    scores = explained_fraction(x, scope)
    assert float(scores.mean()) == pytest.approx(1 / 3, abs=0.01)
    assert float(scores.std()) == pytest.approx(score_noise(3, 32 * 32), rel=0.25)


@pytest.mark.parametrize("x0", [2.3, 3.0, 3.45, 2.6])
def test_parabola_refinement_finds_the_vertex_of_a_sampled_parabola(x0):
    # Three-point refinement is exact for a parabola: scores 0.9 - 0.05(x - x0)² at x = 0..6 give the
    # vertex x0 to rounding (tolerance 1e-12), from the best sample on either side of it.
    # A sign slip or a missing ½ moves it by up to half a step.
    import numpy as np

    from chromaqpi.solvers.focus import _parabola_vertex

    x = np.arange(7.0)
    scores = 0.9 - 0.05 * (x - x0) ** 2
    k = int(np.argmax(scores))
    assert k + _parabola_vertex(scores, k) == pytest.approx(x0, abs=1e-12)
    assert _parabola_vertex(scores[::-1].copy(), 6 - k) == pytest.approx(k - x0, abs=1e-12)  # mirrored
