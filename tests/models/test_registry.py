import pytest
import torch
from tiny_models import tiny_config

import chromaqpi
from chromaqpi.errors import ConfigError, WeightsError
from chromaqpi.models.registry import build_model, microscope_family_warnings, normalise_input
from chromaqpi.training.checkpoint import make_card, save_model


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
