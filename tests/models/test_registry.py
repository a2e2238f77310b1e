import copy
import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_config

import chromaqpi
from chromaqpi.datasets.randomize import Objective, draw_microscope, get_family
from chromaqpi.errors import ConfigError, WeightsError
from chromaqpi.models.registry import (build_model, card_steps, family_envelope, focus_features_um,
                                       focus_separations_um, list_models, microscope_family_warnings,
                                       normalise_input, read_card)
from chromaqpi.sampling import DEFAULT_STEPS
from chromaqpi.training.checkpoint import make_card, save_model


@functools.lru_cache(maxsize=None)
def _envelope(name: str) -> dict:
    return family_envelope(name)


def envelope(name: str) -> dict:
    """family_envelope(name), computed once per test session (it samples the family: seconds each)."""
    return copy.deepcopy(_envelope(name))


@pytest.fixture
def saved_mean(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config("mean"))
    with torch.no_grad():
        model.net.out.bias.fill_(0.5)
        model.net.out.weight.normal_(std=0.1)
    card = make_card(model, microscope={"n_channels": 3, "optics.na_objective": [0.1, 0.9]},
                     input_normalisation={"mode": "flatfield"})
    return save_model(tmp_path / "mean-tiny", model, card)


def test_reconstruct_runs_a_saved_model_on_any_size(saved_mean):
    images = 1 + 0.05 * torch.randn(2, 3, 13, 22, dtype=torch.float64)  # not divisible by the stride
    phase = chromaqpi.reconstruct(images, "default", method="mean", model=str(saved_mean))
    assert phase.shape == (2, 13, 22) and phase.dtype == torch.float64 and torch.isfinite(phase).all()
    assert phase.std() > 0


def test_a_cards_recommended_steps_are_the_default_and_an_explicit_count_wins(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config("zmd"))
    card = make_card(model, microscope={"n_channels": 3}, input_normalisation={"mode": "flatfield"})
    folder = save_model(tmp_path / "zmd-tiny", model, {**card, "sampling": {"steps": 3}})
    images = 1 + 0.05 * torch.randn(1, 3, 16, 16, dtype=torch.float64)

    def run(**steps):
        return chromaqpi.reconstruct(images, "default", method="zmd", model=str(folder),
                                     generator=torch.Generator().manual_seed(5), **steps)

    recommended = run()
    assert torch.equal(recommended, run(steps=3))
    assert not torch.allclose(recommended, run(steps=25))  # so the card's 3, not the fallback 25, was used
    # The recommendation was measured for DDIM: the ancestral sampler keeps the general default.
    assert torch.equal(run(sampler="ancestral"), run(sampler="ancestral", steps=DEFAULT_STEPS))
    assert read_card(folder)["sampling"] == {"steps": 3}


def test_a_cards_temperature_serves_one_draw_and_samples_draw_at_temperature_one(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config("zmd"))
    card = make_card(model, microscope={"n_channels": 3}, input_normalisation={"mode": "flatfield"})
    folder = save_model(tmp_path / "zmd-tiny", model, {**card, "sampling": {"steps": 3, "temperature": 0.0}})
    images = 1 + 0.05 * torch.randn(1, 3, 16, 16, dtype=torch.float64)

    def run(seed=5, **options):
        return chromaqpi.reconstruct(images, "default", method="zmd", model=str(folder),
                                     generator=torch.Generator().manual_seed(seed), **options)

    one = run()
    assert torch.equal(one, run(seed=6)) and torch.equal(one, run(temperature=0.0))  # T = 0: no seed dependence
    assert not torch.allclose(one, run(temperature=1.0))
    # N > 1 draws: temperature 1 unless asked, so that their spread is the model's posterior width.
    _, std = run(samples=2, return_std=True, orientations=False)
    assert std.abs().max() > 0
    with pytest.warns(UserWarning, match="narrower than the model's posterior spread"):
        _, std = run(samples=2, return_std=True, orientations=False, temperature=0.0)
    assert std.abs().max() == 0
    for bad in (-0.1, float("nan"), "0.5", True):
        with pytest.raises(ConfigError, match="temperature must be a finite number"):
            run(temperature=bad)


def test_reconstruct_checks_kind_family_and_channels(saved_mean):
    images = torch.ones(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="'mean' model, not 'zmd'"):
        chromaqpi.reconstruct(images, "default", method="zmd", model=str(saved_mean))
    narrow = chromaqpi.Microscope.resolve("default")
    narrow.optics.na_objective = 0.95
    with pytest.warns(UserWarning, match="na_objective"):
        chromaqpi.reconstruct(images, narrow, method="mean", model=str(saved_mean))
    with pytest.raises(ConfigError, match="input channels"):
        chromaqpi.reconstruct(images, "default", method="mean", model=str(saved_mean), condition=torch.ones(1, 1, 16, 16))


def test_input_normalisation_kinds():
    x = torch.full((1, 3, 2, 2), 2.0)
    assert torch.equal(normalise_input(x, None), x)
    assert torch.equal(normalise_input(x, "flatfield"), x - 1)
    assert torch.equal(normalise_input(x, {"mode": "paper-rgb"}), torch.ones_like(x))  # own max -> 1 -> *2-1
    out = normalise_input(x, {"mode": "affine", "offset": [1, 0, 0], "scale": [1, 2, 3]})
    assert out[0, :, 0, 0].tolist() == [1.0, 4.0, 6.0]
    with pytest.raises(WeightsError, match="unknown input_normalisation"):
        normalise_input(x, "per-image-minmax")


def test_family_check_values_and_ranges():
    scope = chromaqpi.Microscope.resolve("default")
    assert microscope_family_warnings({"n_channels": 3, "unknown.key": 1}, scope) == []
    msgs = microscope_family_warnings({"n_channels": 2, "sampling.pixel_size_um": [1.0, 2.0]}, scope)
    assert len(msgs) == 2
    assert microscope_family_warnings({"optics.na_objective": 0.0}, scope) == \
        ["optics.na_objective = 0.65 (trained for 0, no objective pupil)"]


def test_focus_separations_of_plane_presets_are_their_defocus_differences():
    # Monochromatic planes: the weighted defocus of a plane is its own defocus, exactly.
    assert focus_separations_um(chromaqpi.Microscope.from_preset("paper-2shot")) == \
        pytest.approx({"effective_defocus_um.c1-c0": 2.0}, abs=1e-12)  # planes at z = -1, +1 µm
    rgb = focus_separations_um(chromaqpi.Microscope.from_preset("paper-rgb"))  # all three at z = +1 µm
    assert rgb == pytest.approx(dict.fromkeys(["effective_defocus_um.c1-c0", "effective_defocus_um.c2-c0",
                                               "effective_defocus_um.c2-c1"], 0.0), abs=1e-12)


def test_shipped_cards_carry_their_familys_current_envelope():
    # A stale card (family ranges changed, card not refreshed) would warn for the wrong microscopes:
    # scripts/export_shipped.py --refresh-envelope NAME rewrites it.
    for name in ("default", "paper-2shot", "paper-rgb"):
        card = read_card(Path(chromaqpi.__file__).parent / "weights" / name)
        assert card["microscope"] == envelope(name), name
        inside = chromaqpi.Microscope.from_preset(card["microscope_preset"])
        assert microscope_family_warnings(card["microscope"], inside) == [], name
    for name in ("default-stained", "default-cvdm", "default-ddpm"):  # trained on the default family too
        card = read_card(Path(chromaqpi.__file__).parent / "weights" / name)
        assert card["microscope"] == envelope("default"), name


def test_a_condenser_opened_beyond_the_trained_fill_is_flagged():
    # The default family draws σ = NA_condenser/NA_objective in [0.3, 0.8]; at 1.5-2x the drawn NA the
    # shipped networks lost 1.3-1.6x (benchmarks/results/illumination.md). The envelope pads σ by 0.005.
    default = envelope("default")
    scope = chromaqpi.Microscope.from_preset("default")  # NA 0.65
    assert default["optics.na_condenser/na_objective"] == [0.295, 0.805]
    assert microscope_family_warnings(default, scope.replace(optics={"na_condenser": 0.52})) == []  # σ 0.8
    assert microscope_family_warnings(default, scope.replace(optics={"na_condenser": 0.6})) == [
        "optics.na_condenser/na_objective = 0.9231 (trained for [0.295, 0.805])"]
    assert microscope_family_warnings(default, scope.replace(optics={"na_condenser": 0.15}))  # σ 0.23
    assert "optics.na_condenser/na_objective" not in envelope("paper-2shot")  # no condenser range drawn


def test_shipped_cards_usage_line_shows_the_recommended_steps():
    for name in list_models():
        folder = Path(chromaqpi.__file__).parent / "weights" / name
        steps = card_steps(read_card(folder))
        assert f'model="{name}", steps={steps}, samples=1)' in (folder / "MODEL_CARD.md").read_text(), name


def test_envelope_flags_objectives_with_little_chromatic_defocus():
    # A 40x/0.65 plan-apochromat has the family's NA and pixel size but a secondary spectrum of
    # 0.1-0.3 µm instead of 0.5-2: only the focus separations can see it. Measured with these draws:
    # 59 % of the apochromats are flagged, 0.15 % of fresh family draws (2000 each).
    card_envelope = read_card(Path(chromaqpi.__file__).parent / "weights" / "default")["microscope"]
    family = get_family("default")
    apo = dataclasses.replace(family, objectives=[Objective(40, 0.65, (0.1, 0.3), (0.3, 2.0))])
    rng = np.random.default_rng(12345)

    def flagged(ranges, n=300):
        return np.mean([bool(microscope_family_warnings(card_envelope, draw_microscope(None, ranges, rng)))
                        for _ in range(n)])

    assert flagged(apo) > 0.4
    assert flagged(family) < 0.02
    two_shot = chromaqpi.Microscope.from_preset("paper-2shot")
    wider = two_shot.replace(planes=[{**p, "defocus_um": 1.5 * p["defocus_um"]} for p in two_shot.to_dict()["planes"]])
    msgs = microscope_family_warnings(envelope("paper-2shot"), wider)
    assert msgs == ["effective_defocus_um.c1-c0 = 3 (trained for [1.99, 2.01])"]


def test_envelope_flags_a_stack_shifted_along_z():
    # Planes at 0 and +2 µm: the separation (2 µm) is the family's, the position is not. Their
    # weighted defocus is the planes' own (monochromatic), so the mean is exactly 1 µm.
    two_shot = chromaqpi.Microscope.from_preset("paper-2shot")
    shifted = two_shot.replace(planes=[{**p, "defocus_um": p["defocus_um"] + 1.0} for p in two_shot.to_dict()["planes"]])
    assert focus_features_um(shifted)["effective_defocus_um.mean"] == pytest.approx(1.0, abs=1e-12)
    msgs = microscope_family_warnings(envelope("paper-2shot"), shifted)
    assert msgs == ["effective_defocus_um.mean = 1 (trained for [-0.01, 0.01])"]
    # A whole RGB stack in focus carries no phase contrast: outside the paper-rgb family (0.08-2.95 µm).
    rgb = chromaqpi.Microscope.from_preset("paper-rgb")
    in_focus = rgb.replace(planes=[{**p, "defocus_um": 0.0} for p in rgb.to_dict()["planes"]])
    assert microscope_family_warnings(envelope("paper-rgb"), in_focus) == \
        ["effective_defocus_um.mean = 0 (trained for [0.0833, 2.9502])"]


def test_default_model_is_the_presets_model_of_the_requested_kind(tmp_path, monkeypatch):
    from chromaqpi.models import registry

    for name, kind in [("scope", "zmd"), ("scope-ddpm", "ddpm"), ("default", "zmd")]:
        save_model(tmp_path / name, build_model(tiny_config(kind)), make_card(build_model(tiny_config(kind))))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    assert registry._default_model_name("ddpm", "scope") == "scope-ddpm"
    assert registry._default_model_name("zmd", "scope") == "scope"
    assert registry._default_model_name("mean", "scope") == "scope"  # a ZMD model serves its mean net
    assert registry._default_model_name("zmd", "other") == "default"
    with pytest.raises(WeightsError, match="no trained 'cvdm' model"):  # a ZMD model must not stand in
        registry._default_model_name("cvdm", "scope")


def test_family_warnings_show_ranges_without_binary_rounding_tails():
    family = {"optics.na_objective": [0.38, 0.65 * 1.05]}  # 0.6825000000000001 in binary floating point
    scope = chromaqpi.Microscope.from_preset("default").replace(optics={"na_objective": 0.9})
    assert microscope_family_warnings(family, scope) == ["optics.na_objective = 0.9 (trained for [0.38, 0.6825])"]


def test_envelope_flags_a_stack_at_another_wavelength():
    # λz sets the phase contrast: the paper-2shot planes at 633 nm instead of 521 nm are another microscope,
    # although every focus quantity is the family's.
    two_shot = chromaqpi.Microscope.from_preset("paper-2shot")
    red = two_shot.replace(planes=[{**p, "wavelength_um": 0.633} for p in two_shot.to_dict()["planes"]])
    assert microscope_family_warnings(envelope("paper-2shot"), red) == [
        f"effective_wavelength_um.c{i} = 0.633 (trained for [0.511, 0.531])" for i in range(2)]
    assert microscope_family_warnings(envelope("paper-2shot"), two_shot) == []
