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


@pytest.fixture
def batch():
    return smooth_batch()
