"""Noise schedules: the fixed cosine schedule (DDPM) and CVDM's learned per-pixel schedule.

Conventions (PHYSICS.md section 6): ``gamma`` is the signal fraction of the variance-preserving
forward process ``z_t = sqrt(gamma) Y + sqrt(1 - gamma) eps``; ``gamma(0) = 1`` (clean) and
``gamma(1) ~ 0`` (pure noise). Networks see the noise level as ``log-SNR / 8`` (order one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from chromaqpi.models.unet import UNet, UNetConfig

#: Numerical range of gamma used wherever it divides or feeds sqrt(1 - gamma) (as the authors).
GAMMA_MIN, GAMMA_MAX = 1e-6, 1.0 - 1e-5


def cosine_gamma_bar(t: torch.Tensor, s: float = 0.008, gamma_min: float = 1e-5) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), continuous in t.

    Parameters
    ----------
    t : torch.Tensor
        Times in [0, 1], any shape and float dtype (float64 for sampler arithmetic).
    s : float
        Offset that keeps the noise level near t = 0 above zero.
    gamma_min : float
        Lower clip so that t = 1 stays invertible.

    Returns
    -------
    torch.Tensor
        ``gamma_bar(t) = cos^2(pi/2 (t + s)/(1 + s)) / cos^2(pi/2 s/(1 + s))``, same shape and dtype,
        equal to 1 at t = 0.
    """
    f = torch.cos(0.5 * math.pi * (t + s) / (1 + s)) ** 2
    return (f / math.cos(0.5 * math.pi * s / (1 + s)) ** 2).clamp(gamma_min, 1.0)


def noise_level(gamma: torch.Tensor) -> torch.Tensor:
    """Network input for a noise level: ``log(gamma / (1 - gamma)) / 8`` (log-SNR, order one)."""
    g = gamma.clamp(GAMMA_MIN, GAMMA_MAX)
    return (torch.log(g) - torch.log1p(-g)) / 8.0


def _softplus_inv(y: float) -> float:
    return y + math.log(-math.expm1(-y))


@dataclass
class LearnedScheduleConfig:
    """CVDM schedule ``gamma(t, X) = exp(-kappa(X) G(t))`` (PHYSICS.md 6.1).

    Attributes
    ----------
    unet : UNetConfig
        Backbone of ``kappa(X) = softplus(UNet(X))`` (the authors use 32 base filters).
    time_hidden : int
        Sigmoid units of the monotone time network m(t) (the authors use 1024).
    m_start, m_slope, m_end_rise : float
        Initial ``m(t) = m_start + m_slope t + m_end_rise sigmoid(25 (t - 0.9))``. At kappa = 1 the
        defaults track the cosine schedule within 0.03 for t <= 0.8 and give gamma(1) ~ 2e-4.
    separate_beta : bool
        False (recommended): ``beta := kappa G'(t)``, so the ODE link holds exactly. True: a second
        monotone network ``tau(t)`` with ``beta = kappa tau(t)`` as in the authors' code, tied to G
        only by the consistency loss.
    boundary_steps : int
        T of the boundary times ``t0 = 1/T`` and ``t1 = 1 - 1/T`` (200 in the authors' configs).
    """

    unet: UNetConfig = field(default_factory=lambda: UNetConfig(base_channels=16, mid_attention=False))
    time_hidden: int = 64
    m_start: float = -1.5
    m_slope: float = 5.5
    m_end_rise: float = 5.0
    separate_beta: bool = False
    boundary_steps: int = 200


class MonotoneTimeNet(nn.Module):
    """``G(t) = t * softplus(m(t))`` with m non-decreasing, so G(0) = 0 and G'(t) >= 0.

    ``m(t) = b + softplus(w) t + sum_j softplus(v_j) sigmoid(softplus(u_j) t + c_j)``: every
    t-dependent term is non-decreasing by construction, whatever the parameters (PHYSICS.md 6.1).
    """

    def __init__(self, hidden: int, m_start: float, m_slope: float, m_end_rise: float):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(float(m_start)))
        self.w = nn.Parameter(torch.tensor(_softplus_inv(m_slope)))
        # Deterministic spread of sigmoid slopes (0.3 .. 25) and centres (0 .. 0.9) with tiny output
        # weights, except the last unit: the steep rise near t = 1 that drives gamma(1) towards 0.
        slopes = torch.linspace(0.3, 25.0, hidden)
        self.u = nn.Parameter(slopes + torch.log(-torch.expm1(-slopes)))
        self.c = nn.Parameter(-torch.linspace(0.0, 0.9, hidden) * slopes)
        v = torch.full((hidden,), 1e-3)
        v[-1] = m_end_rise
        self.v = nn.Parameter(v + torch.log(-torch.expm1(-v)))

    def m(self, t: torch.Tensor) -> torch.Tensor:
        """The non-decreasing inner function, (N,) -> (N,)."""
        hidden = torch.sigmoid(F.softplus(self.u) * t[:, None] + self.c) @ F.softplus(self.v)
        return self.b + F.softplus(self.w) * t + hidden

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """G(t) for times (N,) -> (N,), computed in float32 outside autocast."""
        with torch.autocast(t.device.type, enabled=False):
            t = t.float()
            return t * F.softplus(self.m(t))

    def with_derivatives(self, t: torch.Tensor, *, create_graph: bool) -> tuple[torch.Tensor, ...]:
        """G, dG/dt and d2G/dt2 at times (N,), by autograd w.r.t. t (each (N,))."""
        with torch.enable_grad():
            t = t.detach().float().requires_grad_(True)
            g = self(t)
            # Each G_i depends on t_i only, so the gradient of the sum is the per-sample derivative.
            dg = torch.autograd.grad(g.sum(), t, create_graph=True)[0]
            d2g = torch.autograd.grad(dg.sum(), t, create_graph=create_graph)[0]
        return g, dg, d2g


class LearnedSchedule(nn.Module):
    """CVDM's input-dependent, per-pixel schedule ``gamma(t, X) = exp(-kappa(X) G(t))``.

    Parameters
    ----------
    cond_channels : int
        Channels of the conditioning image X seen by the kappa network.
    out_channels : int
        Target channels (one kappa map each).
    config : LearnedScheduleConfig
    """

    def __init__(self, cond_channels: int, out_channels: int, config: LearnedScheduleConfig | None = None):
        super().__init__()
        cfg = self.config = config or LearnedScheduleConfig()
        # Output weights start at zero and the bias at softplus^-1(1): kappa = 1 everywhere at init.
        self.kappa_net = UNet(cond_channels, out_channels, cfg.unet, out_bias=_softplus_inv(1.0))
        init = (cfg.time_hidden, cfg.m_start, cfg.m_slope, cfg.m_end_rise)
        self.G = MonotoneTimeNet(*init)
        # tau starts as G's shape; only the consistency loss ties it to G' (authors' two-net form).
        self.tau = MonotoneTimeNet(*init) if cfg.separate_beta else None

    @property
    def boundary_times(self) -> tuple[float, float]:
        """(t0, t1) = (1/T, 1 - 1/T) of the boundary and prior terms."""
        T = self.config.boundary_steps
        return 1.0 / T, 1.0 - 1.0 / T

    def kappa(self, x: torch.Tensor) -> torch.Tensor:
        """``kappa(X) = softplus(UNet(X))``: (B, Cx, H, W) -> (B, C_out, H, W), float32, >= 0."""
        return F.softplus(self.kappa_net(x).float())

    @staticmethod
    def gamma(kappa: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``exp(-kappa G)`` with kappa (B, C, H, W) and G (B,) or scalar -> (B, C, H, W)."""
        g = g.reshape(-1, 1, 1, 1) if g.ndim else g
        return torch.exp(-kappa * g.to(kappa.dtype))

    def beta_time(self, t: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
        """Time factor of ``beta = kappa * tau(t)``: G'(t) when tied, tau(t) otherwise; (N,)."""
        return dg if self.tau is None else self.tau(t)

    def gamma_grid(self, kappa: torch.Tensor, times: torch.Tensor) -> GammaGrid:
        """float64 ``gamma(t_k, X)`` maps for a grid of times (K,), each (B, C, H, W), computed on access."""
        with torch.no_grad():
            return GammaGrid(kappa.detach().double(), self.G(times.float()).double())


class GammaGrid(Sequence):
    """Lazy sequence ``k -> exp(-kappa G(t_k))`` (float64), so a K-step sampler never holds K maps."""

    def __init__(self, kappa: torch.Tensor, g: torch.Tensor):
        self.kappa, self.g = kappa, g

    def __len__(self) -> int:
        return len(self.g)

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.exp(-self.kappa * self.g[k])
