import math

import pytest
import torch

from chromaqpi.models.cvdm import prior_kl, snr_expansion_d2
from chromaqpi.models.schedules import (
    LearnedSchedule, LearnedScheduleConfig, MonotoneTimeNet, cosine_gamma_bar, noise_level,
)
from chromaqpi.models.unet import UNetConfig

T1000 = torch.linspace(0, 1, 1000, dtype=torch.float64)


def test_cosine_schedule_boundaries_and_monotone():
    g = cosine_gamma_bar(T1000)
    assert g.dtype == torch.float64 and g[0] == 1.0 and g[-1] == pytest.approx(1e-5)
    assert (g.diff() <= 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_time_net_is_monotone_for_any_parameters(seed):
    torch.manual_seed(seed)
    net = MonotoneTimeNet(32, -1.5, 5.5, 5.0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(3 * torch.randn_like(p))  # arbitrary, including negative raw weights
        net.w.fill_(-4.0)  # a negative raw slope must still give a non-negative one (softplus)
        m = net.m(torch.linspace(0, 1, 501))
    G, dG, _ = net.with_derivatives(T1000.float(), create_graph=False)
    assert G[0] == 0.0
    assert (dG >= 0).all() and (G.diff() >= -1e-6 * G.abs().max()).all()
    assert (m.diff() >= -1e-6).all()  # the inner time function m(t) itself (PHYSICS 6.1)


def test_time_net_derivatives_match_finite_differences():
    net = MonotoneTimeNet(16, -1.5, 5.5, 5.0).double()
    t = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64)
    with torch.autocast("cpu", enabled=False):
        h = 1e-4
        f = lambda s: s * torch.nn.functional.softplus(net.m(s))  # noqa: E731 -- float64 reference
        fd1 = (f(t + h) - f(t - h)) / (2 * h)
        fd2 = (f(t + h) - 2 * f(t) + f(t - h)) / h**2
    _, dG, d2G = net.with_derivatives(t, create_graph=False)
    assert torch.allclose(dG.double(), fd1, rtol=1e-3)
    assert torch.allclose(d2G.double(), fd2, rtol=1e-2)


def test_learned_schedule_at_init_is_monotone_with_pinned_ends():
    sch = LearnedSchedule(3, 1, LearnedScheduleConfig(unet=UNetConfig(8, (1, 2), 1, groups=4, mid_attention=False)))
    kappa = sch.kappa(torch.randn(2, 3, 8, 8))
    assert torch.allclose(kappa, torch.ones_like(kappa), atol=1e-6)  # kappa = 1 at init
    curve = torch.stack(list(sch.gamma_grid(kappa, T1000)))  # (1000, B, 1, H, W)
    assert (curve[0] == 1).all()
    assert (curve[-1] < 1e-3).all()
    assert (curve.diff(dim=0) <= 0).all()


def test_noise_level_is_finite_at_the_ends():
    lv = noise_level(torch.tensor([0.0, 1e-8, 0.5, 1.0]))
    assert torch.isfinite(lv).all() and lv[2] == 0 and (lv.diff() >= 0).all()


def test_prior_kl_is_the_gaussian_kl_to_the_standard_normal():
    y, g = torch.tensor([0.3, -1.0, 0.0]), torch.tensor([0.2, 0.05, 0.0])
    q = torch.distributions.Normal(g.sqrt() * y, (1 - g).sqrt())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(prior_kl(y, g), ref, atol=1e-6)
    assert prior_kl(y, g)[2] == 0


@pytest.mark.parametrize("n", [1, 3])
def test_snr_expansion_second_derivative_matches_autograd(n):
    t = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    gamma = torch.exp(-3 * t**2)
    d1 = torch.autograd.grad(gamma.sum(), t, create_graph=True)[0]
    d2 = torch.autograd.grad(d1.sum(), t, create_graph=True)[0]
    S = sum(gamma**i for i in range(1, n + 1))
    ref = torch.autograd.grad(torch.autograd.grad(S.sum(), t, create_graph=True)[0].sum(), t)[0]
    assert torch.allclose(snr_expansion_d2(gamma, d1, d2, n), ref, rtol=1e-10)
    assert math.isfinite(float(ref.sum()))


def test_noise_level_is_log_snr_over_8():
    # Catches a slip (/4): the trained networks were fed log-SNR/8; gamma = sigmoid(8) has log-SNR 8.
    from chromaqpi.models.schedules import noise_level
    g = torch.sigmoid(torch.tensor([-8.0, -2.0, 0.0, 4.0, 8.0], dtype=torch.float64))
    assert torch.allclose(noise_level(g), torch.tensor([-1.0, -0.25, 0.0, 0.5, 1.0], dtype=torch.float64))
