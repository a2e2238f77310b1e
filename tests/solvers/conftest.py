"""Fixtures for the solver tests."""

import pytest
import torch


@pytest.fixture
def smooth_random_phase():
    """Band-limited random phase spanning ~3 rad on an odd, non-square grid."""
    g = torch.Generator().manual_seed(7)
    h, w = 48, 53
    noise = torch.randn(h, w, generator=g, dtype=torch.float64)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    field = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(fx**2 + fy**2) / (2 * 0.06**2))).real
    field = field - field.min()
    return 3.0 * field / field.max()


@pytest.fixture(autouse=True)
def _single_thread():
    # These tests use small tensors; with several OpenMP threads on a busy
    # machine, thread oversubscription made them ~100x slower (measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
