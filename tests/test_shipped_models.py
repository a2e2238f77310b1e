"""The bundled weights: every shipped model loads (checksum verified), fits the size limit, matches its
card and preset, and reconstructs a simulated cell better than the zero (constant) prediction."""

import json
from importlib import resources

import pytest
import torch

import chromaqpi
from chromaqpi import Microscope
from chromaqpi.models.registry import list_models, load_model

SHIPPED = ("default", "paper-2shot", "paper-rgb")
# The reference paper's comparison models: same U-Nets and training budget, no prior.
COMPARISON = ("paper-2shot-ddpm", "paper-2shot-cvdm", "paper-rgb-ddpm", "paper-rgb-cvdm", "default-ddpm",
              "default-cvdm")
MAX_BYTES = 25 * 2**20


def test_all_three_models_are_shipped():
    assert set(SHIPPED) <= set(list_models())


def test_comparison_models_are_shipped():
    assert set(COMPARISON) <= set(list_models())


@pytest.mark.parametrize("name", SHIPPED + COMPARISON)
def test_weights_load_and_match_their_card(name):
    folder = resources.files("chromaqpi") / "weights" / name
    card = json.loads((folder / "config.json").read_text())
    assert (folder / "MODEL_CARD.md").is_file()
    assert (folder / card["weights"]["file"]).stat().st_size <= MAX_BYTES
    net = load_model(name)  # verifies the sha256 of the safetensors file
    scope = Microscope.from_preset(card["microscope_preset"])
    kind = name.rsplit("-", 1)[1] if name in COMPARISON else "zmd"
    # The input stack is the microscope's channels plus the prior's phase plane, if the model has one.
    prior = getattr(net.config, "prior", None)
    assert net.kind == kind and net.config.in_channels == scope.n_channels + (prior is not None)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("name", COMPARISON)
def test_comparison_model_is_the_default_for_its_kind_and_preset(name):
    preset, kind = name.rsplit("-", 1)
    scope = Microscope.from_preset(preset)
    if preset == "default":  # cheap quadrature; the preset name (which picks the model) stays
        scope = scope.replace(spectra={"n_wavelengths": 8}, optics={"source_points": 12})
    images = chromaqpi.simulate(torch.zeros(32, 32), scope, noise=False)
    # model=None must pick "<preset>-<kind>", not the preset's ZMD model (which would be a kind error)
    phase = chromaqpi.reconstruct(images, scope, method=kind, steps=3, generator=torch.Generator().manual_seed(0))
    assert phase.shape == (1, 32, 32) and torch.isfinite(phase).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_mean_net_beats_the_zero_prediction_on_a_simulated_cell(name):
    torch.manual_seed(0)
    scope = Microscope.from_preset(json.loads((resources.files("chromaqpi") / "weights" / name / "config.json")
                                              .read_text())["microscope_preset"])
    if name == "default":  # keep the simulation cheap: the test checks the weights, not the quadrature
        scope = scope.replace(spectra={"n_wavelengths": 8}, optics={"source_points": 12})
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    truth = 1.5 * torch.exp(-((yy - 30) ** 2 + (xx - 34) ** 2) / 120.0)
    if name != "default":
        truth = truth / truth.max() * 3.5  # the paper protocol's [0, 3.5] rad range
    images = chromaqpi.simulate(truth, scope, noise=False)
    phase = chromaqpi.reconstruct(images, scope, method="mean", model=name)[0].double()

    def aligned_mae(p):
        d = p - truth.double()
        return (d - d.median()).abs().mean()

    assert torch.isfinite(phase).all()
    assert aligned_mae(phase) < aligned_mae(torch.zeros_like(phase))
