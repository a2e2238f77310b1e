"""Regularisation-weight rules (chromaqpi.solvers.fourier) on toy diagonal problems with a known optimum.

Toy model, per frequency g (64 x 64 of them, C = 2 channels): data ``D_c = h_c·Φ + n_c`` with a
white complex signal ``Φ ~ CN(0, S)``, white complex noise ``n_c ~ CN(0, N)`` and random real
operator columns ``h_c``. For a white signal the Wiener filter ``Φ̂ = Σh_cD_c/(s + α)``,
``s = Σh_c²``, is optimal at every frequency for the single constant ``α = N/S``, in the solution
domain (what risk_alpha targets) and in the data domain (what GCV targets) alike. So both rules
must return N/S, up to the candidate grid (8 per decade: one step is a factor 1.33) and the
sampling noise of 4096 frequencies (measured: always N/S or its grid neighbour).
"""

import math

import pytest
import torch

from chromaqpi.solvers.fourier import gcv_alpha, risk_alpha

ALPHAS = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-3, 3, 49, dtype=torch.float64)])


def _toy(signal, noise, h_range, seed, batch=3, shape=(64, 64), channels=2):
    g = torch.Generator().manual_seed(seed)

    def cnormal(*size, var):
        re, im = (torch.randn(*size, generator=g, dtype=torch.float64) for _ in range(2))
        return math.sqrt(var / 2) * torch.complex(re, im)

    lo, hi = h_range
    h = lo + (hi - lo) * torch.rand(channels, *shape, generator=g, dtype=torch.float64)
    phi = cnormal(batch, *shape, var=signal)
    data = h[None] * phi[:, None] + cnormal(batch, channels, *shape, var=noise)
    s = (h**2).sum(dim=0)
    p = (h[None] * data).sum(dim=1)
    return data, s, p


def _within_a_grid_step(alpha, target):
    return bool(torch.all((alpha / target > 1 / 1.5) & (alpha / target < 1.5)))


@pytest.mark.parametrize("signal, noise", [(1.0, 0.1), (1.0, 0.3), (4.0, 0.5)])
def test_risk_alpha_is_the_wiener_weight_at_high_snr(signal, noise):
    # h in [0.7, 2.1]: every frequency has SNR s·S/N >= 3, where the positive-part signal estimate of
    # risk_alpha is unbiased (its documented regime). Expected α = N/S within a factor 1.5 (one grid step);
    # a missing factor 2 in the cross term, or a risk in the data domain, misses by >= 2x.
    _, s, p = _toy(signal, noise, (0.7, 2.1), seed=1)
    alpha = risk_alpha(s, p.abs() ** 2, torch.full((p.shape[0],), noise, dtype=torch.float64), ALPHAS)
    assert _within_a_grid_step(alpha, noise / signal), alpha


def test_risk_alpha_is_zero_without_noise():
    # Documented: zero noise gives α = 0 (exact data need no regularisation).
    _, s, p = _toy(1.0, 0.0, (0.1, 2.1), seed=2)
    alpha = risk_alpha(s, p.abs() ** 2, torch.zeros(p.shape[0], dtype=torch.float64), ALPHAS)
    assert torch.all(alpha == 0)


@pytest.mark.parametrize("signal, noise, h_range", [(1.0, 0.1, (0.7, 2.1)), (4.0, 0.5, (0.7, 2.1)),
                                                     (1.0, 3.0, (0.1, 2.1)), (1.0, 0.3, (0.1, 2.1))])
def test_gcv_alpha_is_the_wiener_weight(signal, noise, h_range):
    # GCV (Golub, Heath & Wahba 1979) with the α-independent residual r0 and the rank-one shortcut of
    # gcv_alpha, fed the toy's exact quantities: power |p|²/s, r0 = Σ|D|² - Σ|p|²/s, n_data = C·H·W
    # (complex data: real and imaginary parts double residual, trace and n alike, same minimiser).
    # Also in the noise-dominated cases (SNR down to 0.003), where GCV stays unbiased (measured: N/S).
    data, s, p = _toy(signal, noise, h_range, seed=3)
    power = p.abs() ** 2 / s
    residual0 = (data.abs() ** 2).sum(dim=(1, 2, 3)) - power.sum(dim=(-2, -1))
    alpha = gcv_alpha(s, power, residual0, data[0].numel(), ALPHAS)
    assert _within_a_grid_step(alpha, noise / signal), alpha
