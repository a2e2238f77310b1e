"""Conditional DDPM with a fixed cosine schedule on a min-max normalised target.

This is the baseline the ZMD paper argues against: the target is mapped to [-1, 1] with a fixed
phase range, and one scalar noise level per sample is shared by all pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chromaqpi.models.schedules import cosine_gamma_bar, noise_level
from chromaqpi.models.unet import UNet, UNetConfig, condition_from_batch, per_sample_mean
from chromaqpi.sampling import DEFAULT_STEPS, SampleResult, posterior_samples, run_chain


@dataclass
class DDPMConfig:
    """Conditional DDPM.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the stacked condition X and of the phase target.
    unet : UNetConfig
        Noise-prediction backbone; it sees ``concat(z_t, X)``.
    target_offset, target_scale : float
        Radians. The network works on ``Y_n = 2 (Y - offset) / scale - 1``; scale is the phase
        range (phi_max, 3.5 rad in the authors' protocol).
    cosine_s : float
        Offset of the cosine schedule.
    clip_denoised : bool
        Clamp every Y0 estimate to [-1, 1] while sampling (the normalised target's range).
    """

    in_channels: int = 3
    out_channels: int = 1
    unet: UNetConfig = field(default_factory=UNetConfig)
    target_offset: float = 0.0
    target_scale: float = 3.5
    cosine_s: float = 0.008
    clip_denoised: bool = True


def uniform_times(batch: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """One diffusion time t ~ U(0, 1) per sample, (B,) float32."""
    return torch.rand(batch, generator=generator, device=device)


def standard_normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """eps ~ N(0, I) with the shape, device and float32 dtype of ``like``."""
    return torch.randn(like.shape, generator=generator, device=like.device)


class DDPMModel(nn.Module):
    """Conditional DDPM: eps_theta(z_t, X, gamma_bar(t)) with a cosine gamma_bar."""

    kind = "ddpm"

    def __init__(self, config: DDPMConfig | None = None):
        super().__init__()
        cfg = self.config = config or DDPMConfig()
        self.net = UNet(cfg.out_channels + cfg.in_channels, cfg.out_channels, cfg.unet, noise_channels=1)

    @property
    def stride(self) -> int:
        """H and W of inputs must be divisible by this."""
        return self.net.stride

    def normalise(self, y: torch.Tensor) -> torch.Tensor:
        """Radians -> network units [-1, 1] (for y in [offset, offset + scale])."""
        return 2.0 * (y - self.config.target_offset) / self.config.target_scale - 1.0

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        """Network units -> radians."""
        return (y + 1.0) * 0.5 * self.config.target_scale + self.config.target_offset

    def gamma_bar(self, t: torch.Tensor) -> torch.Tensor:
        """Signal fraction of the cosine schedule at times t (any shape)."""
        return cosine_gamma_bar(t, self.config.cosine_s)

    def eps(self, z: torch.Tensor, x: torch.Tensor, gbar: torch.Tensor) -> torch.Tensor:
        """eps_hat for z (B, C, H, W), condition x (B, Cx, H, W), per-sample gbar (B,)."""
        return self.net(torch.cat([z, x.to(z.dtype)], dim=1), noise_level(gbar.float()))

    def loss_terms(self, batch: dict, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Noise-prediction MSE ``|eps_theta(z_t, X, t) - eps|^2`` per sample (Ho et al. 2020, Algorithm 1).

        Returns
        -------
        dict
            ``{"loss", "noise"}``, each (B,).
        """
        x, y = condition_from_batch(batch), self.normalise(batch["target"].float())
        gbar = self.gamma_bar(uniform_times(y.shape[0], generator, y.device))
        eps = standard_normal(y, generator)
        g = gbar.reshape(-1, 1, 1, 1)
        z = g.sqrt() * y + (1 - g).sqrt() * eps
        mse = per_sample_mean((self.eps(z, x, gbar).float() - eps) ** 2)
        return {"loss": mse, "noise": mse}

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample loss (B,)."""
        return self.loss_terms(batch, generator=generator)["loss"]

    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, *, steps: int = DEFAULT_STEPS, generator=None, sampler: str = "ddim",
        samples: int = 1, eta: float = 0.0, keep: bool = False, temperature: float = 1.0,
    ) -> SampleResult:
        """Posterior samples of the phase given the condition.

        Parameters
        ----------
        x : torch.Tensor
            (B, in_channels, H, W) condition.
        steps : int
            K network evaluations (strided from t = 1 to 0).
        generator : torch.Generator, list of them, or None
            Randomness; see :func:`chromaqpi.sampling.sample_generators`.
        sampler : {"ddim", "ancestral"}
        samples : int
            N draws per image.
        eta : float
            DDIM stochasticity (0: deterministic given the initial noise).
        temperature : float
            Scale of the chain's noise draws (:func:`chromaqpi.sampling.run_chain`); 1 = posterior.
        keep : bool
            Also return the draws.

        Returns
        -------
        SampleResult
            Mean and per-pixel std over the draws, (B, out_channels, H, W), radians.
        """
        shape = (x.shape[0], self.config.out_channels, *x.shape[-2:])
        clip = (-1.0, 1.0) if self.config.clip_denoised else None

        def eps_fn(z, gbar):
            return self.eps(z, x, gbar.reshape(-1)[:1].expand(z.shape[0]))

        def grid(times):
            return [self.gamma_bar(t).reshape(1, 1, 1, 1) for t in times]

        def draw(gens):
            y = run_chain(eps_fn, grid, shape, steps=steps, generators=gens, sampler=sampler, eta=eta,
                          clip=clip, device=x.device, temperature=temperature)
            return self.denormalise(y).float()

        return posterior_samples(draw, shape[0], samples=samples, generator=generator, device=x.device, keep=keep)

    def predict(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Posterior-mean estimate (B, out_channels, H, W) in radians; kwargs as :meth:`sample`."""
        return self.sample(x, **kwargs).mean
