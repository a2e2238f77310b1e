import pytest
import torch

from chromaqpi.errors import InputError
from chromaqpi.models.unet import UNet, UNetConfig, condition_from_batch


def tiny(**kw):
    base = dict(base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=1, groups=4, attention_heads=2)
    return UNetConfig(**{**base, **kw})


@pytest.mark.parametrize("level", [None, "scalar", "pixel"])
def test_shapes_on_odd_non_square_sizes(level):
    net = UNet(5, 2, tiny(attention_levels=(2,)), noise_channels=0 if level is None else 2)
    x = torch.randn(3, 5, 12, 20)  # divisible by the stride 4, not square, not a power of two
    noise = {None: None, "scalar": torch.rand(3, 2), "pixel": torch.rand(3, 2, 12, 20)}[level]
    out = net(x, noise)
    assert out.shape == (3, 2, 12, 20)
    assert torch.isfinite(out).all()


def test_output_starts_at_the_bias():
    net = UNet(3, 1, tiny(), out_bias=0.25)
    assert torch.equal(net(torch.randn(2, 3, 8, 8)), torch.full((2, 1, 8, 8), 0.25))


def test_noise_level_changes_the_output():
    net = UNet(3, 1, tiny(), noise_channels=1)
    with torch.no_grad():  # leave the zero init, under which every residual branch is silent
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 3, 8, 8)
    assert not torch.allclose(net(x, torch.tensor([0.1])), net(x, torch.tensor([0.9])))


def test_rejects_bad_sizes_and_missing_noise():
    net = UNet(3, 1, tiny(), noise_channels=1)
    with pytest.raises(InputError, match="divisible by 4"):
        net(torch.randn(1, 3, 10, 8), torch.rand(1))
    with pytest.raises(InputError, match="noise_level"):
        net(torch.randn(1, 3, 8, 8))
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 4, 8, 8), torch.rand(1))


def test_default_receptive_field_covers_256_px():
    cfg = UNetConfig()
    assert UNet(3, 1, cfg).receptive_field() >= 256
    assert cfg.mid_attention  # and bottleneck attention makes it global


def test_condition_channels_are_stacked_after_the_input():
    b = {"input": torch.zeros(2, 3, 4, 4), "condition": torch.ones(2, 2, 4, 4)}
    x = condition_from_batch(b)
    assert x.shape == (2, 5, 4, 4) and x[:, 3:].eq(1).all() and x[:, :3].eq(0).all()
