"""Physics prior (TIE) as the mean network's starting point: plane, model, datasets, inference."""

import pytest
import torch

import chromaqpi
from chromaqpi.errors import ConfigError
from chromaqpi.models.prior import prior_plane
from chromaqpi.models.registry import build_model


def _bump_images(h=40, w=52, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h) - h / 2, torch.arange(w) - w / 3, indexing="ij")
    phase = 0.8 * torch.exp(-(xx**2 + yy**2) / 40.0) + 0.05 * torch.rand(h, w, generator=g)
    return chromaqpi.simulate(phase.double(), "paper-2shot", noise=False)[0].float()  # (C, H, W)


def test_prior_plane_is_the_tie_reconstruction():
    images = _bump_images()[None]
    plane = prior_plane(images, "paper-2shot", "tie")
    tie = chromaqpi.reconstruct(images, "paper-2shot", method="tie")
    assert plane.shape == (1, 1, 40, 52) and plane.dtype == torch.float32
    assert torch.allclose(plane[:, 0], tie, atol=1e-6)
    assert abs(float(plane.mean())) < 1e-5  # the solvers' zero-mean convention


def test_unknown_prior_and_prior_on_diffusion_baselines_are_rejected():
    from chromaqpi.cli.train import model_config

    with pytest.raises(ConfigError, match="unknown prior"):
        build_model({"kind": "mean", "in_channels": 3, "prior": "wotf-magic"})
    with pytest.raises(ConfigError, match="prior"):
        model_config("ddpm", 3, 8, 2, 1, prior="tie")
    with pytest.raises(ConfigError, match="unknown key"):
        build_model({"kind": "cvdm", "in_channels": 3, "prior": "tie"})


@pytest.mark.parametrize("kind", ["mean", "zmd"])
def test_untrained_prior_model_returns_its_prior_and_learns_a_correction(kind):
    from chromaqpi.cli.train import model_config

    torch.manual_seed(0)
    net = build_model(model_config(kind, 2, 8, 2, 1, prior="tie"))
    mean = net.mean if kind == "zmd" else net
    x = torch.randn(2, 3, 16, 16)
    # The output layer starts at zero: mu is exactly the last (prior) plane.
    assert torch.equal(mean(x), x[:, -1:])
    target = x[:, -1:] + 0.3
    loss = ((mean(x) - target) ** 2).mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mean.net.parameters())


def test_reconstruction_with_an_untrained_prior_model_is_the_whole_image_tie(tmp_path):
    """The prior is computed on the full image, so tiling must hand back TIE itself (no seams)."""
    from chromaqpi.cli.train import model_config
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("zmd", 2, 8, 2, 1, prior="tie"))
    save_model(tmp_path / "m", net, make_card(net, input_normalisation="paper-2shot"))
    images = _bump_images(h=72, w=90)
    tie = chromaqpi.reconstruct(images, "paper-2shot", method="tie")
    mu = chromaqpi.reconstruct(images, "paper-2shot", method="mean", model=str(tmp_path / "m"), tile=32, overlap=8)
    assert mu.shape == tie.shape == (72, 90)
    assert float((mu - tie).abs().max()) < 1e-4
    # A model that expects a prior plane reports the channel count it wanted.
    with pytest.raises(ConfigError, match=r"3 input channels \(images \+ condition \+ prior\), got 4"):
        chromaqpi.reconstruct(images, "paper-2shot", method="mean", model=str(tmp_path / "m"),
                              condition=torch.zeros(1, 1, 72, 90))


def test_train_cli_adds_the_prior_plane_and_rejects_it_for_baselines(tmp_path, capsys):
    import json

    from chromaqpi.cli.main import main

    base = ["train", "--data", "on-the-fly", "--microscope", "paper-2shot", "--out", str(tmp_path / "r"), "--dry-run"]
    assert main([*base, "--model", "zmd", "--prior", "tie"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["prior"] == "tie" and model["in_channels"] == 3 and model["offset_invariant"] is True
    assert main([*base, "--model", "ddpm", "--prior", "tie"]) == 2
    assert "--prior applies to mean and zmd" in capsys.readouterr().err
