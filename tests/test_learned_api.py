"""The learned-method path of chromaqpi.reconstruct without trained weights:
(phase, std) returns, tiling, and a tiny untrained ZMD checkpoint on disk."""

import dataclasses
import re

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.errors import ConfigError, WeightsError
from chromaqpi.solvers.base import register_method


def test_methods_returning_std_keep_offset_convention_on_phase_only():
    def fake(images, microscope):
        phase = images[:, 0] + 3.0
        return phase, torch.full_like(phase, 0.2)

    register_method("test-fake-std", fake)
    images = np.random.default_rng(0).uniform(0.9, 1.1, (2, 20, 24))
    phase, std = chromaqpi.reconstruct(images, "paper-2shot", method="test-fake-std")
    assert isinstance(phase, np.ndarray) and phase.shape == (20, 24)
    assert abs(phase.mean()) < 1e-12  # zero-mean convention
    assert np.allclose(std, 0.2)


def test_tiny_zmd_checkpoint_runs_end_to_end(tmp_path):
    from chromaqpi.cli.train import model_config
    from chromaqpi.models.registry import build_model
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("zmd", 2, 8, 2, 1))
    with torch.no_grad():  # zero-initialised output layers would hide what the views change
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(tmp_path / "tiny", net, make_card(net, input_normalisation="paper-2shot"))
    images = chromaqpi.simulate(torch.rand(1, 40, 52), "paper-2shot", noise=False)
    gen = torch.Generator().manual_seed(1)
    phase, std = chromaqpi.reconstruct(images, "paper-2shot", method="zmd", model=str(tmp_path / "tiny"),
                                       steps=3, samples=2, return_std=True, generator=gen, tile=32, overlap=8)
    assert phase.shape == (1, 40, 52) and std.shape == (1, 40, 52)
    assert torch.isfinite(phase).all() and (std >= 0).all()
    mu = chromaqpi.reconstruct(images, "paper-2shot", method="mean", model=str(tmp_path / "tiny"))
    assert mu.shape == (1, 40, 52)
    again = chromaqpi.reconstruct(images, "paper-2shot", method="zmd", model=str(tmp_path / "tiny"), steps=3,
                                  samples=2, generator=torch.Generator().manual_seed(1), tile=32, overlap=8)
    assert torch.equal(again, phase)  # seeds control everything
    # The cached (channels_last) model and a plain loaded one give the same posterior mean.
    from chromaqpi.models.registry import load_model

    plain = chromaqpi.reconstruct(images, "paper-2shot", method="zmd", model=load_model(tmp_path / "tiny"), steps=3,
                                  samples=2, generator=torch.Generator().manual_seed(1), tile=32, overlap=8)
    assert float((plain - phase).abs().max()) < 1e-4
    views = chromaqpi.reconstruct(images, "paper-2shot", method="mean", model=str(tmp_path / "tiny"), samples=4,
                                  orientations=True, tile=32, overlap=8)
    assert views.shape == mu.shape and torch.isfinite(views).all()
    assert float((views - mu).abs().max()) > 1e-6  # an untrained net is not D4-equivariant: the views differ


def test_std_is_calibrated_by_the_cards_scale_for_zmd_draws_at_temperature_1_only(tmp_path):
    import json

    from chromaqpi.cli.train import model_config
    from chromaqpi.models.registry import build_model, learned_settings
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("zmd", 2, 8, 2, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(tmp_path / "tiny", net, make_card(net, input_normalisation="paper-2shot"))
    config = tmp_path / "tiny" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "uncertainty": {"scale": 3.0}}))
    images = chromaqpi.simulate(torch.rand(1, 32, 32), "paper-2shot", noise=False)
    model = str(tmp_path / "tiny")

    def std(**options):
        return chromaqpi.reconstruct(images, "paper-2shot", model=model, steps=2, samples=2, return_std=True,
                                     generator=torch.Generator().manual_seed(1), **options)[1]

    raw = std(method="zmd", calibrated_std=False)
    assert float(raw.max()) > 0
    assert torch.allclose(std(method="zmd"), 3.0 * raw)  # the default: calibrated
    # Fitted for ZMD draws at T = 1: a cooler chain's spread and the mean net's views stay raw.
    with pytest.warns(UserWarning, match="narrower"):
        cool = std(method="zmd", temperature=0.5)
        assert torch.allclose(cool, std(method="zmd", temperature=0.5, calibrated_std=False))
    views = std(method="mean")
    assert torch.allclose(views, std(method="mean", calibrated_std=False))
    scope = chromaqpi.Microscope.from_preset("paper-2shot")
    assert learned_settings("zmd", scope, {"model": model, "samples": 2, "return_std": True})["std_scale"] == 3.0
    assert learned_settings("zmd", scope, {"model": model, "samples": 2, "return_std": True,
                                           "calibrated_std": False})["std_scale"] is None
    assert "std_scale" not in learned_settings("zmd", scope, {"model": model})
    assert learned_settings("zmd", scope, {"model": model, "samples": 2, "return_std": True,
                                           "refine": 3})["std_scale"] is None  # the spread is not the refined phase's
    # A scale fitted on 8 draws, applied to 2: the Student-t small-sample factor.
    from chromaqpi.models.registry import draws_correction

    config.write_text(json.dumps({**json.loads(config.read_text()), "uncertainty": {"scale": 3.0, "draws": 8}}))
    from chromaqpi.models import registry

    registry._LOADED.clear()  # the card changed within the file system's timestamp resolution, perhaps
    assert torch.allclose(std(method="zmd"), 3.0 * draws_correction(2, 8) * raw)


def test_draws_correction_keeps_one_sigma_coverage_for_gaussian_errors():
    # Independent check by simulation: truth and N draws from one Gaussian; a factor that covers 68.27 %
    # of |truth - mean| with the std of 8 draws, times draws_correction(N, 8), covers the same with N.
    from chromaqpi.models.registry import draws_correction

    rng = np.random.default_rng(0)

    def ratios(n: int) -> np.ndarray:
        x = rng.standard_normal((200_000, n + 1))
        return np.abs(x[:, 0] - x[:, 1:].mean(axis=1)) / x[:, 1:].std(axis=1, ddof=1)

    k8 = np.quantile(ratios(8), 0.6827)
    for n in (2, 3, 4, 16):
        cover = float(np.mean(ratios(n) <= k8 * draws_correction(n, 8)))
        assert cover == pytest.approx(0.6827, abs=0.005), n
    assert draws_correction(8, 8) == 1.0 and draws_correction(2, 8) > 1.5


def test_missing_weights_give_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="no model directory"):
        chromaqpi.reconstruct(torch.ones(2, 16, 16), "paper-2shot", method="zmd", model=str(tmp_path / "nope"))


def test_refine_from_model_and_tie_keeps_the_lower_misfit(tmp_path):
    from chromaqpi.cli.train import model_config
    from chromaqpi.errors import ConfigError
    from chromaqpi.models.registry import build_model
    from chromaqpi.optics.simulator import get_simulator
    from chromaqpi.solvers.iterative import _data_term
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("mean", 2, 8, 2, 1))
    save_model(tmp_path / "tiny", net, make_card(net, input_normalisation="paper-2shot"))
    truth = 0.8 * torch.exp(-((torch.arange(40.0)[:, None] - 20) ** 2 + (torch.arange(48.0) - 24) ** 2) / 60)
    images = chromaqpi.simulate(truth[None], "paper-2shot", noise=False)
    sim = get_simulator(chromaqpi.Microscope.from_preset("paper-2shot"), images.shape[-2:], dtype=images.dtype)

    def misfit(**extra):
        phase = chromaqpi.reconstruct(images, "paper-2shot", method="mean", model=str(tmp_path / "tiny"),
                                      refine=3, **extra)
        return float(_data_term(sim(phase - phase.mean(), noise=False), images, "amplitude"))

    # An untrained net is a poor start; adding the TIE start can only lower the kept misfit.
    assert misfit(refine_starts="model+tie") < 0.5 * misfit()
    with pytest.raises(ConfigError, match="refine_starts"):
        misfit(refine_starts="tie")


def test_fit_absorption_refines_phase_and_attenuation_from_the_model(tmp_path, monkeypatch):
    import chromaqpi.models.registry as registry
    from chromaqpi.cli.train import model_config
    from chromaqpi.models.registry import build_model
    from chromaqpi.solvers.iterative import refine_with_absorption
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("mean", 2, 8, 2, 1))
    save_model(tmp_path / "tiny", net, make_card(net, input_normalisation="paper-2shot"))
    images = 0.9 + 0.2 * torch.rand(1, 2, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(method="mean", model=str(tmp_path / "tiny"))
    start = chromaqpi.reconstruct(images, "paper-2shot", **kw)
    phase = chromaqpi.reconstruct(images, "paper-2shot", refine=2, fit_absorption=True, **kw)
    joint = refine_with_absorption(images, "paper-2shot", start.to(images.dtype), steps=2).phase
    # the same fit from the model's estimate (float32 in, float64 fitted), shifted to zero mean
    torch.testing.assert_close(phase, (joint - joint.mean()).to(phase.dtype), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="fit_absorption needs refine"):
        chromaqpi.reconstruct(images, "paper-2shot", fit_absorption=True, **kw)

    def no_model(*args, **kwargs):
        raise AssertionError("the network ran before the microscope was checked")

    monkeypatch.setattr(registry, "model_for", no_model)
    with pytest.raises(ConfigError, match="too alike to tell absorption"):
        chromaqpi.reconstruct(torch.ones(1, 3, 16, 16), "paper-rgb", refine=2, fit_absorption=True, **kw)


class _ViewProbe:
    """Stand-in predictor: 'phase' = input channel 0 plus a fixed pattern that ignores the view."""

    kind = "mean"

    def __init__(self, pattern):
        self.pattern = pattern

    def sample(self, x, *, samples=1, **_):
        from chromaqpi.sampling import SampleResult

        out = (x[:, :1] + self.pattern).float()
        return SampleResult(out, torch.zeros_like(out), None)


@pytest.mark.parametrize("bayer", [False, True])
def test_orientation_views_are_turned_back_and_averaged(bayer):
    from chromaqpi.microscope import Microscope
    from chromaqpi.models.registry import _oriented_samples

    scope = Microscope.from_preset("default")
    if bayer:
        scope = Microscope.from_dict({**scope.to_dict(), "sensor": {**scope.to_dict()["sensor"], "bayer": True}})
    tiles = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = torch.arange(16.0).repeat(16, 1)  # a ramp along x: not D4-invariant
    res = _oriented_samples(_ViewProbe(x), tiles, scope, 8, {})
    # The view-following part (channel 0) must come back in place whatever the view.
    if bayer:  # a flipped mosaic is another camera: identity only, all views equal
        expected, spread = tiles[:, :1] + x, torch.zeros(2, 1, 16, 16)
    else:
        # Turned back, the fixed ramp appears as x, 15 - x, y and 15 - y, twice each: mean 7.5.
        y = x.T
        views = torch.stack([x, x, 15 - x, 15 - x, y, y, 15 - y, 15 - y])
        expected, spread = tiles[:, :1] + 7.5, views.std(dim=0).expand(2, 1, 16, 16)
    assert float((res.mean - expected).abs().max()) < 1e-5
    assert float((res.std - spread).abs().max()) < 1e-4


def test_invert_transform_undoes_every_d4_element():
    from chromaqpi.datasets.augment import apply_transform, invert_transform

    x = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(3))
    for t in range(8):
        assert torch.equal(invert_transform(apply_transform(x, t), t), x)
    assert not torch.equal(apply_transform(x, 4), x)


@pytest.mark.parametrize("preset", ["default", "paper-2shot", "paper-rgb"])
def test_auto_picks_each_presets_shipped_model(preset):
    from chromaqpi.models.methods import choose_method

    method, model, _ = choose_method(chromaqpi.Microscope.from_preset(preset))
    assert (method, model) == ("mean", preset)


def test_auto_finds_a_model_by_family_not_by_name():
    from chromaqpi.models.methods import choose_method

    renamed = chromaqpi.Microscope.from_preset("paper-2shot").replace(name="my-scope")
    assert choose_method(renamed)[:2] == ("mean", "paper-2shot")


def four_planes(scope):
    """A stack no shipped model was trained for: the paper-2shot planes plus two more."""
    plane = dataclasses.asdict(scope.planes[0])
    return scope.replace(planes=[{**plane, "defocus_um": z} for z in (-2.0, -1.0, 1.0, 2.0)])


def test_auto_extrapolates_with_the_nearest_model_of_the_same_acquisition():
    from chromaqpi.models.methods import choose_method

    # An RGB objective outside default's NA range: still the default net (better than wotf, microscopes.md).
    scope = chromaqpi.Microscope.from_preset("default").replace(optics={"na_objective": 0.85}, name="60x")
    assert choose_method(scope)[:2] == ("mean", "default")
    images = chromaqpi.simulate(torch.zeros(1, 32, 40), scope, noise=False)
    with pytest.warns(UserWarning, match="outside the model's training family: optics.na_objective = 0.85"):
        chromaqpi.reconstruct(images, scope, method="auto")
    # Two planes with a pupil: the two-plane model, not the RGB ones (auto.md: better than wotf there).
    pupil = chromaqpi.Microscope.from_preset("paper-2shot").replace(optics={"na_objective": 0.3}, name="x")
    assert choose_method(pupil)[:2] == ("mean", "paper-2shot")
    # Three planes of the RGB model's kind (planes mode) go to paper-rgb, not to the RGB-mode default net.
    rgb_planes = chromaqpi.Microscope.from_preset("paper-rgb").replace(sampling={"pixel_size_um": 0.3}, name="x")
    assert choose_method(rgb_planes)[:2] == ("mean", "paper-rgb")
    method, model, reason = choose_method(four_planes(pupil))
    assert (method, model) == ("tie", None) and "n_channels = 4 (trained for " in reason


def test_auto_runs_the_mean_net_inside_and_near_a_family_and_tie_with_a_warning_otherwise():
    scope = chromaqpi.Microscope.from_preset("paper-2shot")
    phase = torch.zeros(1, 40, 48, dtype=torch.float64)
    phase[:, 12:28, 14:34] = 0.8
    images = chromaqpi.simulate(phase, scope, noise=False)
    inside = chromaqpi.reconstruct(images, scope, method="auto")
    assert torch.equal(inside, chromaqpi.reconstruct(images, scope, method="mean", model="paper-2shot"))
    # Planes 3 µm apart instead of the family's 2 µm: the same net, which says it extrapolates.
    wide = scope.replace(planes=[{**dataclasses.asdict(p), "defocus_um": 1.5 * p.defocus_um} for p in scope.planes])
    with pytest.warns(UserWarning, match=r"outside the model's training family: effective_defocus_um.c1-c0 = 3"):
        near = chromaqpi.reconstruct(images, wide, method="auto")
    with pytest.warns(UserWarning):
        assert torch.equal(near, chromaqpi.reconstruct(images, wide, method="mean", model="paper-2shot"))
    four = four_planes(scope)
    stack = chromaqpi.simulate(phase, four, noise=False)
    with pytest.warns(UserWarning, match=r"method 'auto' runs tie: no shipped model was trained for this kind"):
        outside = chromaqpi.reconstruct(stack, four, method="auto")
    assert torch.equal(outside, chromaqpi.reconstruct(stack, four, method="tie"))


def test_auto_never_hands_a_planes_stack_to_an_rgb_network(tmp_path, monkeypatch):
    from chromaqpi.models import registry
    from chromaqpi.models.methods import choose_method

    # Three narrow-band planes with the default objective, wavelengths and focus: inside every range of
    # default's envelope but the acquisition, not the colour exposure its network reads, so paper-rgb's
    # network is chosen; naming the default net warns.
    default = chromaqpi.Microscope.from_preset("default")
    planes = default.replace(planes=[{"wavelength_um": lam, "defocus_um": z, "bandwidth_um": 0.0}
                                     for lam, z in ((0.59, 0.5), (0.54, 1.0), (0.47, 1.5))])
    card = registry.read_card(registry.WEIGHTS_DIR / "default")
    assert registry.microscope_family_warnings(card["microscope"], planes) == \
        ["acquisition = 'planes' (trained for 'rgb')"]
    assert choose_method(planes)[:2] == ("mean", "paper-rgb")
    with pytest.warns(UserWarning, match=r"acquisition = 'planes' \(trained for 'rgb'\)"):
        chromaqpi.reconstruct(torch.ones(1, 3, 16, 16), planes, method="mean", model="default")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)  # no weights installed
    assert choose_method(default)[:2] == ("wotf", None) and choose_method(planes)[:2] == ("tie", None)


@pytest.mark.parametrize("option", [{"samples": 2.5}, {"steps": 1.5}, {"steps": "3"}, {"steps": True}, {"refine": -1}])
def test_sampling_counts_must_be_integers(option):
    images = torch.ones(1, 3, 16, 16)
    images[..., 4:8, 4:8] = 0.9
    with pytest.raises(ConfigError, match=f"{next(iter(option))} must be an integer"):
        chromaqpi.reconstruct(images, "default", method="zmd", **option)


def test_a_stack_the_network_cannot_read_names_the_model_and_the_channel_counts():
    images = torch.ones(1, 3, 16, 16)
    images[..., 4:8, 4:8] = 0.9
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="model 'paper-2shot' reads 2-channel stacks but "
                                                                     "the microscope gives 3 channels"):
        chromaqpi.reconstruct(images, "default", method="mean", model="paper-2shot")


def test_a_renamed_microscope_gets_the_default_models_of_each_kind():
    from chromaqpi.models.registry import _default_model_name

    # A TOML copied from the default preset under its own name: the default family's models serve it.
    assert _default_model_name("zmd", "lab") == "default"
    assert _default_model_name("ddpm", "lab") == "default-ddpm" and _default_model_name("cvdm", "lab") == "default-cvdm"
    assert _default_model_name("ddpm", "paper-rgb") == "paper-rgb-ddpm"


@pytest.mark.parametrize("options, message", [({"tile": 0}, "tile must be an integer >= 16"),
                                              ({"tile": 64.0}, "tile must be an integer >= 16"),
                                              ({"overlap": -1}, "overlap must be an integer >= 0"),
                                              ({"tile": 64, "overlap": 64}, "overlap (64 px) must be smaller")])
def test_tile_and_overlap_are_checked_before_any_work(options, message):
    images = torch.ones(1, 3, 32, 32)
    with pytest.raises(ConfigError, match=re.escape(message)):
        chromaqpi.reconstruct(images, "paper-rgb", method="mean", **options)
