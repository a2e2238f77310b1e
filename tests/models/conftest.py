"""Fixtures for the model tests (seconds each on one CPU thread)."""

import pytest
import torch
from tiny_models import smooth_batch, tiny_config

from chromaqpi.models.registry import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI machine has 2 shared cores; oversubscribed intra-op threads make tiny nets 10x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def make_model():
    """Factory: tiny model of a kind, deterministic init."""

    def make(kind: str, in_channels: int = 3, width: int = 8, seed: int = 0):
        torch.manual_seed(seed)
        return build_model(tiny_config(kind, in_channels, width))

    return make


def smooth_batch(batch: int = 2, h: int = 8, w: int = 8, seed: int = 0) -> dict:
    """Gaussian-bump phases (0..2 rad) and an RGB-like input that determines them."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    centres = torch.rand(batch, 2, generator=g) - 0.5
    amp = 1.0 + torch.rand(batch, generator=g)
    r2 = (xx - centres[:, 0, None, None]) ** 2 + (yy - centres[:, 1, None, None]) ** 2
    target = (amp[:, None, None] * torch.exp(-r2 / 0.3))[:, None]
    inp = torch.cat([target, target**2, -target], 1) + 0.05 * torch.randn(batch, 3, h, w, generator=g)
    return {"input": inp, "target": target}


@pytest.fixture
def batch():
    return smooth_batch()
