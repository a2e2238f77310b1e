"""Conditional Variational Diffusion Model (CVDM, arXiv 2312.02246) with a learned per-pixel schedule.

:class:`CVDMDiffusion` is the reusable core (a noise network plus a :class:`LearnedSchedule`,
working on an already normalised target); :class:`CVDMModel` wraps it with the fixed target
normalisation of the authors, and :class:`chromaqpi.models.zmd.ZMDModel` reuses it on a residual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chromaqpi.models.ddpm import standard_normal, uniform_times
from chromaqpi.models.schedules import GAMMA_MAX, GAMMA_MIN, LearnedSchedule, LearnedScheduleConfig, noise_level
from chromaqpi.models.unet import UNet, UNetConfig, condition_from_batch, per_sample_mean
from chromaqpi.sampling import DEFAULT_STEPS, SampleResult, posterior_samples, run_chain


@dataclass
class CVDMLossWeights:
    """Weights of the CVDM loss terms (PHYSICS.md 6.2; defaults are the authors' Keras weights).

    Attributes
    ----------
    noise : float
        Noise regression ``|eps_theta - eps|^2``.
    schedule : float
        ODE consistency ``(d_t gamma + beta gamma)^2`` plus boundaries ``(gamma(t0) - 1)^2 + gamma(t1)^2``.
    prior : float
        ``KL(q(z_t1 | Y) || N(0, I))`` at t1.
    smooth : float
        ``(d^2_t S_n)^2`` with ``S_n = sum_{i<=n} gamma^i`` (authors: weight 2 x alpha 0.001).
    snr_expansion_n : int
        n of S_n (1: S_1 = gamma; large n approaches the SNR gamma / (1 - gamma)).
    detach_schedule_in_noise : bool
        Stop the noise loss's gradient into the schedule (default). The authors let it flow
        (False); the noise MSE is smallest when gamma -> 0 (z ~ eps), so that gradient pushes kappa
        up and bends the schedule (the smoothness term grows 2-6x in the overfit test), the more so
        with the v-parametrisation. Detached, the schedule is shaped by the boundary, prior and
        smoothness terms: kappa(X) rises where the residual is large, per pixel.
    """

    noise: float = 1.0
    schedule: float = 2.0
    prior: float = 2.0
    smooth: float = 0.002
    snr_expansion_n: int = 1
    detach_schedule_in_noise: bool = True


@dataclass
class CVDMConfig:
    """CVDM on the normalised target ``Y_n = 2 (Y - offset)/scale - 1``.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the stacked condition X and of the phase target.
    unet : UNetConfig
        Noise network backbone (the authors use 64 base filters); it sees ``concat(z_t, X)`` and the
        per-pixel log-SNR map.
    schedule : LearnedScheduleConfig
        kappa network and time network.
    loss : CVDMLossWeights
    target_offset, target_scale : float
        Radians; see :class:`chromaqpi.models.ddpm.DDPMConfig`.
    clip_denoised : bool
        Clamp Y0 estimates to [-1, 1] while sampling.
    prediction : {"v", "eps"}
        Output parametrisation of the noise network (see :class:`CVDMDiffusion`).
    """

    in_channels: int = 3
    out_channels: int = 1
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: LearnedScheduleConfig = field(default_factory=LearnedScheduleConfig)
    loss: CVDMLossWeights = field(default_factory=CVDMLossWeights)
    target_offset: float = 0.0
    target_scale: float = 3.5
    clip_denoised: bool = True
    prediction: str = "v"


def prior_kl(y: torch.Tensor, gamma1: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(sqrt(g) Y, 1 - g) || N(0, 1)) = (v + m^2 - 1 - log v) / 2``.

    This is the usual direction (forward marginal to the prior), not the authors' reverse
    ``KL(N(0,1) || q)``; both vanish only when gamma(t1) -> 0.
    """
    v = (1 - gamma1).clamp(min=1 - GAMMA_MAX)
    return 0.5 * (v + gamma1 * y**2 - 1 - torch.log(v))


def snr_expansion_d2(gamma: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, n: int) -> torch.Tensor:
    """Second time derivative of ``S_n = sum_{i=1..n} gamma^i`` given gamma, gamma' and gamma''."""
    total = torch.zeros_like(gamma)
    for i in range(1, n + 1):
        total = total + i * gamma ** (i - 1) * d2
        if i > 1:
            total = total + i * (i - 1) * gamma ** (i - 2) * d1**2
    return total


class CVDMDiffusion(nn.Module):
    """Noise network plus learned schedule, on a normalised target.

    Parameters
    ----------
    noise_cond_channels : int
        Channels of the noise network's condition (X, or X and mu(X) for ZMD).
    schedule_cond_channels : int
        Channels of the schedule network's condition (X).
    out_channels : int
        Target channels.
    unet : UNetConfig
    schedule : LearnedScheduleConfig
    weights : CVDMLossWeights
    prediction : {"v", "eps"}
        What the U-Net outputs. "eps": the noise itself (the authors). "v": ``v = sqrt(g) eps -
        sqrt(1 - g) Y`` and ``eps_hat = sqrt(1 - g) z + sqrt(g) v_hat``, a skip connection that
        makes ``eps_hat -> z`` and ``Y_hat -> -v_hat`` (bounded) at high noise, where an
        eps-network's error is amplified by ``1/sqrt(g)``. The loss is the same noise MSE either way.
    """

    def __init__(
        self, noise_cond_channels: int, schedule_cond_channels: int, out_channels: int,
        unet: UNetConfig, schedule: LearnedScheduleConfig, weights: CVDMLossWeights,
        prediction: str = "v",
    ):
        super().__init__()
        if prediction not in ("v", "eps"):
            raise ValueError(f"prediction must be 'v' or 'eps', got {prediction!r}")
        self.out_channels, self.weights, self.prediction = out_channels, weights, prediction
        self.net = UNet(out_channels + noise_cond_channels, out_channels, unet, noise_channels=out_channels)
        self.schedule = LearnedSchedule(schedule_cond_channels, out_channels, schedule)

    def eps(self, z: torch.Tensor, cond: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """eps_hat for z (B, C, H, W), condition (B, Cc, H, W) and per-pixel gamma (B, C, H, W)."""
        out = self.net(torch.cat([z, cond.to(z.dtype)], dim=1), noise_level(gamma.float()))
        if self.prediction == "eps":
            return out
        g = gamma.clamp(GAMMA_MIN, GAMMA_MAX).to(out.dtype)
        return (1 - g).sqrt() * z.to(out.dtype) + g.sqrt() * out

    def loss_terms(
        self, y: torch.Tensor, cond_noise: torch.Tensor, cond_schedule: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """CVDM loss terms for a normalised target y (B, C, H, W), each (B,) (PHYSICS.md 6.2).

        Returns
        -------
        dict
            ``{"loss", "noise", "schedule", "prior", "smooth"}``; "loss" is the weighted sum.
        """
        w, sch = self.weights, self.schedule
        kappa = sch.kappa(cond_schedule)
        t = uniform_times(y.shape[0], generator, y.device)
        G, dG, d2G = sch.G.with_derivatives(t, create_graph=torch.is_grad_enabled())
        gamma = sch.gamma(kappa, G)
        noise = self._noise_term(y, cond_noise, gamma, generator)
        # d_t gamma = -kappa G' gamma and d2_t gamma = (kappa^2 G'^2 - kappa G'') gamma, per pixel.
        k_dG, k_d2G = kappa * dG.reshape(-1, 1, 1, 1), kappa * d2G.reshape(-1, 1, 1, 1)
        d1, d2 = -k_dG * gamma, (k_dG**2 - k_d2G) * gamma
        beta = kappa * sch.beta_time(t, dG).reshape(-1, 1, 1, 1)
        g0, g1 = (sch.gamma(kappa, g) for g in sch.G(torch.tensor(sch.boundary_times, device=y.device)))
        schedule = per_sample_mean((d1 + beta * gamma) ** 2 + (g0 - 1) ** 2 + g1**2)
        prior = per_sample_mean(prior_kl(y, g1))
        smooth = per_sample_mean(snr_expansion_d2(gamma, d1, d2, w.snr_expansion_n) ** 2)
        loss = w.noise * noise + w.schedule * schedule + w.prior * prior + w.smooth * smooth
        return {"loss": loss, "noise": noise, "schedule": schedule, "prior": prior, "smooth": smooth}

    def _noise_term(self, y, cond, gamma, generator) -> torch.Tensor:
        # Forward process z_t = sqrt(gamma) Y + sqrt(1 - gamma) eps, per pixel (CVDM eq. 1).
        g = gamma.clamp(GAMMA_MIN, GAMMA_MAX)
        g = g.detach() if self.weights.detach_schedule_in_noise else g
        eps = standard_normal(y, generator)
        z = g.sqrt() * y + (1 - g).sqrt() * eps
        return per_sample_mean((self.eps(z, cond, g).float() - eps) ** 2)

    @torch.no_grad()
    def sample_normalised(
        self, cond_noise: torch.Tensor, cond_schedule: torch.Tensor, *, steps: int,
        generators: list[torch.Generator], sampler: str = "ddim", eta: float = 0.0,
        clip: tuple[float, float] | None = None, kappa: torch.Tensor | None = None, temperature: float = 1.0,
    ) -> torch.Tensor:
        """One draw of the normalised target, (B, C, H, W) float64; kappa may be precomputed."""
        kappa = self.schedule.kappa(cond_schedule) if kappa is None else kappa
        shape = (cond_noise.shape[0], self.out_channels, *cond_noise.shape[-2:])
        return run_chain(
            lambda z, gbar: self.eps(z, cond_noise, gbar), lambda ts: self.schedule.gamma_grid(kappa, ts),
            shape, steps=steps, generators=generators, sampler=sampler, eta=eta, clip=clip,
            device=cond_noise.device, temperature=temperature,
        )


class CVDMModel(nn.Module):
    """CVDM phase model: learned per-pixel schedule, target normalised to [-1, 1]."""

    kind = "cvdm"

    def __init__(self, config: CVDMConfig | None = None):
        super().__init__()
        cfg = self.config = config or CVDMConfig()
        self.diffusion = CVDMDiffusion(cfg.in_channels, cfg.in_channels, cfg.out_channels, cfg.unet,
                                       cfg.schedule, cfg.loss, cfg.prediction)

    @property
    def stride(self) -> int:
        """H and W of inputs must be divisible by this."""
        return max(self.diffusion.net.stride, self.diffusion.schedule.kappa_net.stride)

    def normalise(self, y: torch.Tensor) -> torch.Tensor:
        """Radians -> network units [-1, 1]."""
        return 2.0 * (y - self.config.target_offset) / self.config.target_scale - 1.0

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        """Network units -> radians."""
        return (y + 1.0) * 0.5 * self.config.target_scale + self.config.target_offset

    def gamma_curve(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Learned schedule gamma(t, X) at times (K,): (K, B, C, H, W) float64."""
        with torch.no_grad():
            return torch.stack(list(self.diffusion.schedule.gamma_grid(self.diffusion.schedule.kappa(x), times)))

    def loss_terms(self, batch: dict, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample CVDM loss terms, each (B,); see :meth:`CVDMDiffusion.loss_terms`."""
        x = condition_from_batch(batch)
        return self.diffusion.loss_terms(self.normalise(batch["target"].float()), x, x, generator)

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample weighted loss (B,)."""
        return self.loss_terms(batch, generator=generator)["loss"]

    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, *, steps: int = DEFAULT_STEPS, generator=None, sampler: str = "ddim",
        samples: int = 1, eta: float = 0.0, keep: bool = False, temperature: float = 1.0,
    ) -> SampleResult:
        """Posterior samples (radians); arguments as :meth:`chromaqpi.models.ddpm.DDPMModel.sample`."""
        kappa = self.diffusion.schedule.kappa(x)  # computed once, shared by all draws
        clip = (-1.0, 1.0) if self.config.clip_denoised else None

        def draw(gens):
            y = self.diffusion.sample_normalised(x, x, steps=steps, generators=gens, sampler=sampler,
                                                 eta=eta, clip=clip, kappa=kappa, temperature=temperature)
            return self.denormalise(y).float()

        return posterior_samples(draw, x.shape[0], samples=samples, generator=generator, device=x.device, keep=keep)

    def predict(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Posterior-mean estimate (B, out_channels, H, W) in radians; kwargs as :meth:`sample`."""
        return self.sample(x, **kwargs).mean
