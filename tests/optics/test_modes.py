"""Coherent-mode decomposition (chromaqpi.optics.modes): exact identity and truncation bound."""

import numpy as np
import pytest
import torch

from chromaqpi.optics.modes import coherent_modes, separable_gram
from chromaqpi.optics.pupil import fresnel_factors


def _channel(shape=(40, 36), dx=0.21, z=2.5):
    # A Gaussian band on a 50-node grid, as in the paper-rgb protocol.
    lam = np.linspace(0.4, 0.7, 50)
    w = np.exp(-0.5 * ((lam - 0.55) / 0.06) ** 2)
    ky, kx = fresnel_factors(shape, dx, lam, np.full_like(lam, z), 1.0)
    return ky, kx, torch.as_tensor(w / w.sum())


def _intensities(t, ky, kx, coeffs=None):
    """Σ_k w_k |F⁻¹{T·K_k}|² via explicit per-node fields (weights folded in coeffs)."""
    kernels = ky[:, :, None] * kx[:, None, :]
    fields = torch.fft.ifft2(torch.fft.fft2(t)[None] * kernels)
    if coeffs is None:
        return fields
    return (torch.einsum("jk,khw->jhw", coeffs, fields).abs() ** 2).sum(0)


def test_all_modes_reproduce_the_node_sum():
    ky, kx, w = _channel()
    gen = torch.Generator().manual_seed(0)
    t = torch.polar(torch.ones(40, 36, dtype=torch.float64), 3 * torch.rand(40, 36, dtype=torch.float64, generator=gen))
    exact = (w[:, None, None] * _intensities(t, ky, kx).abs() ** 2).sum(0)
    coeffs = coherent_modes(separable_gram(ky, kx), w, tolerance=-1.0)  # keep every mode
    assert coeffs.shape == (50, 50)
    assert torch.max(torch.abs(_intensities(t, ky, kx, coeffs) - exact)) < 1e-12


def test_truncated_modes_obey_the_error_bound_and_save_ffts():
    ky, kx, w = _channel()
    gen = torch.Generator().manual_seed(1)
    phase = 3.5 * torch.rand(40, 36, dtype=torch.float64, generator=gen)
    amplitude = torch.exp(-0.3 * torch.rand(40, 36, dtype=torch.float64, generator=gen))  # |t| <= 1
    t = torch.polar(amplitude, phase)
    exact = (w[:, None, None] * _intensities(t, ky, kx).abs() ** 2).sum(0)
    for tolerance in (1e-4, 1e-8):
        coeffs = coherent_modes(separable_gram(ky, kx), w, tolerance)
        error = exact - _intensities(t, ky, kx, coeffs)
        # Dropping modes only removes non-negative terms, bounded by the dropped eigenvalue mass.
        assert float(error.min()) > -1e-12 and float(error.max()) <= tolerance
        assert len(coeffs) < 25  # measured 9 and 12 modes for 50 nodes (actual errors 5e-7, 8e-12)


def _mode_case(z=2.5):
    from chromaqpi.optics.modes import separable_gram
    from chromaqpi.optics.pupil import fresnel_factors
    lam = np.linspace(0.4, 0.7, 50)
    w = np.exp(-0.5 * ((lam - 0.55) / 0.06) ** 2)
    ky, kx = fresnel_factors((40, 36), 0.21, lam, np.full_like(lam, z), 1.0)
    return separable_gram(ky, kx), torch.as_tensor(w / w.sum())


@pytest.mark.parametrize("tolerance", [1e-4, 1e-8])
def test_coherent_modes_keep_the_fewest_modes(tolerance):
    # Catches a slip (drops modes up to 10x the tolerance): r is minimal, by an independent eigen-solve.
    from chromaqpi.optics.modes import coherent_modes
    gram, w = _mode_case()
    root = np.sqrt(w.numpy())
    mu = np.sort(np.clip(np.linalg.eigvalsh(root[:, None] * gram.numpy() * root[None, :]), 0, None))
    r_expected = len(mu) - int(np.sum(np.cumsum(mu) <= tolerance))
    assert len(coherent_modes(gram, w, tolerance)) == r_expected


def test_coherent_modes_are_ordered_by_decreasing_power():
    # Catches a slip (ascending order): mode power C G C^H is diagonal, decreasing.
    from chromaqpi.optics.modes import coherent_modes
    gram, w = _mode_case()
    c = coherent_modes(gram, w, 1e-8)
    power = torch.einsum("jk,kl,jl->j", c.conj(), gram, c).real
    assert len(power) > 2 and torch.all(power.diff() <= 1e-9 * power[0])
