"""Coherent-mode decomposition of a polychromatic channel under coherent illumination.

A channel that sums spectral nodes ``k`` (weights ``w_k``, transfer functions
``K_k``) seen through one object spectrum ``T`` is

``I = Σ_k w_k |F⁻¹{T·K_k}|² = Σ_j |F⁻¹{T·φ_j}|²``,  ``φ_j = Σ_k C_jk K_k``,

where ``C = (W^{1/2} U)ᵀ`` and ``U, μ`` are the eigenvectors and eigenvalues of
``W^{1/2} G W^{1/2}`` with the Gram matrix ``G_kl = Σ_f conj K_k(f)·K_l(f)``: the
eigen-decomposition of the channel's mutual spectral density
``M = Σ_k w_k K_k K_kᴴ`` (Hopkins' sum of coherent systems, here for temporal
rather than spatial partial coherence). For a smooth spectrum the eigenvalues
fall off super-exponentially, so a few modes replace tens of nodes: one
inverse FFT per mode instead of per node.

Truncation bound: with the inverse DFT's ``1/N``, ``I(x) = v_xᴴ M̄ v_x`` where
``‖v_x‖² = mean|t|²``, so dropping modes ``j > r`` changes every pixel by at most
``mean|t|²·Σ_{j>r} μ_j`` (``μ`` on the scale where ``G_kk = N``, the number of
pixels) -- at most the dropped eigenvalue mass for an object with ``|t| <= 1``.
"""

from __future__ import annotations

import torch


def separable_gram(ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G_kl = Σ_f conj K_k(f)·K_l(f)`` of separable kernels ``K_k = ky_k ⊗ kx_k``.

    Parameters
    ----------
    ky : complex (K, H) and kx : complex (K, W) factors (unscaled, float64 precision advised).

    Returns
    -------
    complex (K, K) Hermitian positive semi-definite matrix, ``G_kk = H·W`` for unit-modulus kernels.
    """
    return (ky.conj() @ ky.T) * (kx.conj() @ kx.T)


def coherent_modes(gram: torch.Tensor, weights: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Mode coefficients ``C`` (r, K) with ``Σ_k w_k |E_k|² ≈ Σ_j |Σ_k C_jk E_k|²``.

    Parameters
    ----------
    gram : complex (K, K) Gram matrix of the nodes' kernels (:func:`separable_gram`).
    weights : real (K,) non-negative node weights of the channel.
    tolerance : largest allowed dropped eigenvalue mass, i.e. the bound on the
        absolute intensity error per pixel for ``|t| <= 1``.

    Returns
    -------
    complex (r, K) coefficients, modes ordered by decreasing power; ``r`` is the
    fewest modes whose dropped eigenvalues sum to at most ``tolerance``.
    """
    root = weights.to(gram.real.dtype).sqrt()
    power, vectors = torch.linalg.eigh(root[:, None] * gram * root[None, :])  # ascending
    dropped = torch.cumsum(power.clamp(min=0), 0)  # dropped[i]: mass of the i+1 weakest modes
    n_drop = int((dropped <= tolerance).sum())
    keep = vectors[:, n_drop:].flip(-1)
    return (root[:, None] * keep).T
