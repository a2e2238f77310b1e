"""Iterative retrieval with the differentiable simulator, and the refine() step."""

import pytest
import torch
from solver_cases import rel_rms_after_offset, seeded_noise

from chromaqpi import Microscope, reconstruct, simulate
from chromaqpi.errors import ConfigError, InputError, MethodError
from chromaqpi.optics.simulator import get_simulator
from chromaqpi.solvers.iterative import _fit_one, _preconditioner, _warm_up, fast_microscope, refine

_KW = dict(loss="amplitude", tikhonov=0.0, optimizer="lbfgs", lr=None, tol=1e-6)


@pytest.fixture(scope="module")
def paper2():
    return Microscope.from_preset("paper-2shot")


@pytest.fixture(scope="module")
def natural_phase():
    """A 64 x 70 crop of a natural photograph mapped to [0, 3.5] rad (the paper's protocol)."""
    from skimage import data

    crop = torch.as_tensor(data.camera()[180:244, 200:270], dtype=torch.float64)
    return 3.5 * (crop - crop.min()) / (crop.max() - crop.min())


def test_beats_tie_on_noiseless_two_shot(paper2, natural_phase):
    # paper-2shot kind: coherent ±1 µm, natural image spanning 3.5 rad. TIE is
    # limited by the nonlinearity of sharp, large phase steps; the exact model is not.
    img = simulate(natural_phase, paper2, noise=False)
    tie = rel_rms_after_offset(reconstruct(img, paper2, method="tie")[0], natural_phase)
    it = rel_rms_after_offset(reconstruct(img, paper2, method="iterative", max_iter=60)[0], natural_phase)
    assert it < 0.3 * tie, (it, tie)


def test_refine_keeps_the_exact_solution(paper2, smooth_random_phase):
    img = simulate(smooth_random_phase, paper2, noise=False)
    out = refine(img, paper2, smooth_random_phase, steps=5, tv=0.0)
    assert rel_rms_after_offset(out[0], smooth_random_phase) < 1e-6


def test_refine_improves_a_perturbed_estimate(paper2, smooth_random_phase):
    img = simulate(smooth_random_phase, paper2, noise=False)
    start = smooth_random_phase + 0.3 * torch.sin(torch.arange(53, dtype=torch.float64) / 5)[None, :]
    before = rel_rms_after_offset(start, smooth_random_phase)
    after = rel_rms_after_offset(refine(img, paper2, start, steps=50)[0], smooth_random_phase)
    assert after < 0.05 * before


@pytest.mark.parametrize("exact_first", [True, False])
def test_multi_start_keeps_the_fit_with_the_lowest_misfit(paper2, smooth_random_phase, exact_first):
    # Five steps do not fully repair a start with a 1 rad ripple, so only the exact
    # start ends with zero misfit; whichever position it has in the list, its fit must be kept.
    img = simulate(smooth_random_phase, paper2, noise=False)
    bad = smooth_random_phase + torch.cos(torch.arange(53, dtype=torch.float64) / 3)[None, :]
    starts = [smooth_random_phase, bad] if exact_first else [bad, smooth_random_phase]
    out = refine(img, paper2, starts, steps=5, tv=0.0)
    assert rel_rms_after_offset(refine(img, paper2, bad, steps=5, tv=0.0)[0], smooth_random_phase) > 1e-2
    assert rel_rms_after_offset(out[0], smooth_random_phase) < 1e-6


@pytest.mark.parametrize("regularised_first", [True, False])
def test_multi_start_compares_the_full_objective_not_the_misfit(paper2, smooth_random_phase, regularised_first):
    # Noisy data, TV weight 0.03: the unregularised fit has the lower data misfit (0.83 vs 3.3) but
    # the higher objective (14.7 vs 11.4). One more iteration moves neither far, so the kept fit
    # must be the regularised one; a misfit-only rule would keep the noise-absorbing fit.
    img = simulate(smooth_random_phase, paper2, noise=False) + seeded_noise((1, 2, 48, 53), 0.05, 3)
    over = refine(img, paper2, smooth_random_phase, steps=100, tv=0.0)
    reg = refine(img, paper2, smooth_random_phase, steps=100, tv=0.03)
    kept = refine(img, paper2, [reg, over] if regularised_first else [over, reg], steps=1, tv=0.03)
    assert torch.allclose(kept, refine(img, paper2, reg, steps=1, tv=0.03), atol=1e-12)
    assert (kept - refine(img, paper2, over, steps=1, tv=0.03)).abs().max() > 0.05


def test_multi_start_uses_one_tv_weight_for_every_start(paper2, smooth_random_phase, monkeypatch):
    # Automatic TV weight from the smallest warm-up residual: after a 2-iteration warm-up a start
    # 1 rad off is still misfitted, and its own, larger estimate must not be used for any start.
    import chromaqpi.solvers.iterative as it

    img = simulate(smooth_random_phase, paper2, noise=False) + seeded_noise((1, 2, 48, 53), 0.02, 4)
    bad = smooth_random_phase + torch.cos(torch.arange(53, dtype=torch.float64) / 3)[None, :]
    sim = get_simulator(paper2, img.shape[-2:], dtype=img.dtype)
    precond = _preconditioner(paper2, img.shape[-2:], dtype=img.dtype, device=img.device)
    own = [_warm_up(img, sim, p[None], precond, "auto", 4, _KW)[1] for p in (smooth_random_phase, bad)]
    assert own[1] > 2 * own[0]
    used = []

    def spy(*args, tv, **kw):
        used.append(tv)
        return _fit_one(*args, tv=tv, **kw)

    monkeypatch.setattr(it, "_fit_one", spy)
    refine(img, paper2, [bad, smooth_random_phase], steps=4)
    assert used[:2] == [0.0, 0.0] and used[2:] == pytest.approx([own[0], own[0]], rel=1e-9)


def test_multi_start_rejects_an_empty_or_mismatched_list(paper2, smooth_random_phase):
    img = simulate(smooth_random_phase, paper2, noise=False)
    with pytest.raises(InputError, match="empty list"):
        refine(img, paper2, [], steps=2)
    with pytest.raises(InputError, match="does not match"):
        refine(img, paper2, [smooth_random_phase, smooth_random_phase[:, :-1]], steps=2)


def test_auto_tv_is_off_for_clean_band_limited_data_and_helps_with_noise():
    m = Microscope.from_preset("paper-2shot").replace(optics={"na_objective": 0.5}, name="t")
    y, x = torch.meshgrid(torch.arange(48.0, dtype=torch.float64), torch.arange(51.0, dtype=torch.float64),
                          indexing="ij")
    phase = 1.5 * (((y - 24) ** 2 + (x - 20) ** 2) < 150).double()
    img = simulate(phase, m, noise=False)
    noisy = img + seeded_noise(img.shape, 0.05, 3)
    plain = rel_rms_after_offset(reconstruct(noisy, m, method="iterative", max_iter=40, tv=0.0)[0], phase)
    auto = rel_rms_after_offset(reconstruct(noisy, m, method="iterative", max_iter=40)[0], phase)
    assert auto < 0.8 * plain, (auto, plain)
    # The "off for clean data" half, which the lines above never checked: the warm-up weight is
    # τ = 3·σ̂ₐ² with σ̂ₐ² ≈ (σ/2)²·C/(C-1) the amplitude noise, i.e. 3.75e-3 at σ = 0.05 (measured 3.5e-3,
    # tolerance 20 %), and on clean data it is what the 20 warm-up iterations leave (measured 1.8e-5):
    # required below 2 % of the noisy weight.
    from chromaqpi.solvers.tie import tie

    sim = get_simulator(m, img.shape[-2:], dtype=img.dtype)
    precond = _preconditioner(m, img.shape[-2:], dtype=img.dtype, device=img.device)
    clean_w = _warm_up(img, sim, tie(img, m), precond, "auto", 40, _KW)[1]
    noisy_w = _warm_up(noisy, sim, tie(noisy, m), precond, "auto", 40, _KW)[1]
    assert noisy_w == pytest.approx(3 * (0.05 / 2) ** 2 * 2, rel=0.2)
    assert clean_w < 0.02 * noisy_w, (clean_w, noisy_w)


def test_early_stopping_on_relative_change(paper2, smooth_random_phase):
    img = simulate(smooth_random_phase, paper2, noise=False)
    sim = get_simulator(paper2, img.shape[-2:], dtype=img.dtype)
    precond = torch.ones(img.shape[-2:], dtype=img.dtype)
    kw = dict(loss="amplitude", tv=0.0, tikhonov=0.0, optimizer="adam", lr=1e-9, max_iter=50)
    _, losses = _fit_one(img, sim, torch.zeros_like(img[:, 0]), precond, tol=1e-3, **kw)
    assert len(losses) == 6  # five calm iterations after the first
    _, losses = _fit_one(img, sim, torch.zeros_like(img[:, 0]), precond, tol=0.0, **kw)
    assert len(losses) == 50


def test_progress_bar_counts_the_iterations_run_and_changes_nothing(paper2, smooth_random_phase, monkeypatch):
    import tqdm.auto

    bars = []

    class Recorder(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if kwargs.get("desc") == "iterative fit":
                self.shown = not kwargs.get("disable")  # (close() sets .disable)
                bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    img = simulate(smooth_random_phase, paper2, noise=False)
    starts = [smooth_random_phase + 0.3 * torch.sin(torch.arange(53, dtype=torch.float64) / 5)[None, :],
              torch.zeros_like(smooth_random_phase)]
    shown = refine(img, paper2, starts, steps=60, progress=True)
    assert torch.equal(shown, refine(img, paper2, starts, steps=60))
    assert bars[0].shown and not bars[1].shown  # only when asked for
    assert bars[0].n == bars[0].total == 2 * 60
    refine(img, paper2, starts, steps=60, tol=0.5, progress=True)  # stops early: 5 calm iterations
    assert 0 < bars[2].n == bars[2].total < 2 * 60  # the iterations saved are taken off the total


def test_fast_microscope_reduces_quadrature():
    m = fast_microscope(Microscope.from_preset("default"))
    assert m.spectra.n_wavelengths == 7 and m.optics.source_points == 12
    small = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 3}, optics={"source_points": 4})
    assert fast_microscope(small) == small


def test_fast_mode_on_polychromatic_preset():
    m = Microscope.from_preset("default").replace(spectra={"n_wavelengths": 7}, optics={"source_points": 12})
    y, x = torch.meshgrid(torch.arange(40.0, dtype=torch.float64), torch.arange(42.0, dtype=torch.float64),
                          indexing="ij")
    phase = 1.0 * torch.exp(-((y - 20) ** 2 + (x - 21) ** 2) / 40)
    img = simulate(phase, m, noise=False)
    tie = rel_rms_after_offset(reconstruct(img, m, method="tie")[0], phase)
    it = rel_rms_after_offset(reconstruct(img, m, method="iterative", fast=True, max_iter=15)[0], phase)
    assert it < tie


def test_invalid_arguments(paper2):
    img = torch.ones(2, 16, 16, dtype=torch.float64)
    for bad in ({"init": "magic"}, {"loss": "l1"}, {"optimizer": "sgd"}, {"tv": -1.0}, {"max_iter": -2}):
        with pytest.raises(ConfigError):
            reconstruct(img, paper2, method="iterative", **bad)
    with pytest.raises(InputError, match="init_phase"):
        refine(img[None], paper2, torch.zeros(15, 16))


def test_a_fit_larger_than_the_free_memory_is_refused_before_it_starts(monkeypatch):
    import chromaqpi.solvers.iterative as it
    from chromaqpi.errors import MethodError

    scope = Microscope.from_preset("paper-2shot")
    images = torch.ones(1, 2, 64, 64)
    need = it.fit_memory_bytes((64, 64), scope)
    # Measured slope (benchmark note in fit_memory_bytes): ~0.73 kB per pixel for two monochrome planes.
    assert 0.5e3 < need / 64**2 < 1.0e3
    assert it.fit_memory_bytes((128, 128), scope) == pytest.approx(4 * need)  # linear in the pixel count
    monkeypatch.setattr(it, "_available_memory", lambda: need / 2)
    with pytest.raises(MethodError, match="the iterative fit of a 64x64 image on these optics needs about"):
        it.refine(images, scope, torch.zeros(1, 64, 64), steps=2)
    monkeypatch.setattr(it, "_available_memory", lambda: None)  # unknown (not Linux): no check
    it.refine(images, scope, torch.zeros(1, 64, 64), steps=2)


def _partially_coherent():
    from solver_cases import planes_microscope

    return planes_microscope([(0.55, -1.0), (0.55, 1.0)], na=0.5, na_ill=0.3, points=6, dx=0.1, pad_px=4)


def test_recomputed_fields_give_the_same_gradient_and_keep_far_less(smooth_random_phase):
    # Recomputing each spectral node's fields in the backward pass must not change the data term's
    # gradient (the same operations run again: measured bit-identical; bound 1e-12 in float64), and
    # must actually drop the fields from the tensors autograd keeps: measured 27 % of the plain
    # graph's saved bytes on this small two-node, 6-point condenser case (the spectrum and channel
    # images stay); bound one half (a no-op switch keeps 100 %).
    from chromaqpi.solvers.iterative import _data_term

    scope = _partially_coherent()
    sim = get_simulator(scope, smooth_random_phase.shape, dtype=torch.float64)
    images = simulate(smooth_random_phase + 0.3, scope, noise=False)
    grads, saved = [], []
    for on in (False, True):
        sim.recompute = on
        phase = smooth_random_phase[None].clone().requires_grad_(True)
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            loss = _data_term(sim(phase, noise=False), images, "amplitude")
        loss.backward()
        grads.append(phase.grad)
        saved.append(sum(kept))
    sim.recompute = False
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-12)
    assert saved[1] < 0.5 * saved[0]


def test_a_fit_beyond_the_free_memory_recomputes_instead_of_failing(smooth_random_phase, monkeypatch):
    import chromaqpi.solvers.iterative as it

    scope = _partially_coherent()
    shape = smooth_random_phase.shape
    images = simulate(smooth_random_phase, scope, noise=False)
    start = torch.zeros(1, *shape, dtype=torch.float64)
    plain = it.refine(images, scope, start, steps=3, tv=0.0, fast=False)
    switched = []
    real = it._recomputing
    monkeypatch.setattr(it, "_recomputing", lambda sim, on: switched.append(on) or real(sim, on))
    need = it.fit_memory_bytes(shape, scope)
    assert it.fit_memory_bytes(shape, scope, recompute=True) == pytest.approx(0.8 * need)
    monkeypatch.setattr(it, "_available_memory", lambda: 0.9 * need)  # only the recomputing fit fits
    assert torch.allclose(it.refine(images, scope, start, steps=3, tv=0.0, fast=False), plain, rtol=0, atol=1e-12)
    monkeypatch.setattr(it, "_available_memory", lambda: 1.2 * need)  # both fit: the faster plain fit
    it.refine(images, scope, start, steps=1, tv=0.0, fast=False)
    assert switched == [True, False]
    assert get_simulator(scope, shape, dtype=torch.float64, device=images.device).recompute is False
    monkeypatch.setattr(it, "_available_memory", lambda: 0.7 * need)  # neither fits
    with pytest.raises(MethodError, match="needs about"):
        it.refine(images, scope, start, steps=1, fast=False)


@pytest.mark.parametrize("na_ill, points, reduced", [(0.3, 6, True), (0.3, 2, False), (0.0, 6, False)])
def test_the_recomputing_budget_is_reduced_only_where_the_simulator_sums_sources(na_ill, points, reduced):
    # Two requested points give one ring, i.e. the single on-axis point: the coherent Fresnel path,
    # which recomputes nothing, so its budget must not shrink (a rule on the requested count got this wrong).
    import chromaqpi.solvers.iterative as it
    from solver_cases import planes_microscope

    scope = planes_microscope([(0.55, -1.0), (0.55, 1.0)], na=0.5, na_ill=na_ill, points=points, dx=0.1,
                              paraxial=True)
    assert get_simulator(scope, (16, 16)).coherent_paraxial is not reduced
    ratio = it.fit_memory_bytes((16, 16), scope, recompute=True) / it.fit_memory_bytes((16, 16), scope)
    assert ratio == pytest.approx(0.8 if reduced else 1.0)


@pytest.mark.parametrize("channels", [2, 3])
def test_residual_noise_variance_of_white_noise_about_a_flat_model(channels):
    # I = 1 + σn about a model of 1: the amplitude residual √1 - √I ≈ -σn/2, so its robust (MAD) variance
    # is σ²/4, reported times C/(C-1) (the documented allowance for the noise a fit absorbs). Measured
    # 0.98-1.01 of that for σ = 0.01-0.03 on 128² x C pixels (MAD spread ~1.5 %, the √ nonlinearity
    # -1.7 % at σ = 0.03); tolerance 5 %. A missing ½ (4x) or C/(C-1) factor (1.5-2x) fails.
    from chromaqpi.solvers.iterative import residual_noise_variance

    g = torch.Generator().manual_seed(channels)
    for sigma in (0.01, 0.03):
        model = torch.ones(1, channels, 128, 128, dtype=torch.float64)
        images = model + sigma * torch.randn(model.shape, generator=g, dtype=torch.float64)
        expected = (sigma / 2) ** 2 * channels / (channels - 1)
        assert residual_noise_variance(images, model) == pytest.approx(expected, rel=0.05)
