import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs a worker per core: one thread each, subprocesses too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def smooth_phase():
    """A smooth, non-symmetric cell-like phase (rad) on an odd, non-square grid."""
    h, w = 45, 52
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    blob = 1.2 * torch.exp(-((x - 20) ** 2 + (y - 22) ** 2) / 60.0)
    ridge = 0.6 * torch.exp(-((x - 36) ** 2) / 20.0 - ((y - 15) ** 2) / 120.0)
    return blob + ridge
