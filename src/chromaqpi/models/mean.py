"""Regression ("mean") model: mu(X) trained with MSE, in radians.

It estimates the posterior mean E[Y | X] (the MMSE estimate), which is the deterministic baseline
and the first stage of zero-mean diffusion (ZMD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chromaqpi.models.unet import UNet, UNetConfig, condition_from_batch, per_sample_mean
from chromaqpi.sampling import SampleResult


@dataclass
class MeanConfig:
    """Mean model.

    Attributes
    ----------
    in_channels : int
        Channels of the stacked input (RGB plus any extra conditioning planes).
    out_channels : int
        Phase channels (1).
    unet : UNetConfig
        Backbone (the authors use 64 base filters).
    """

    in_channels: int = 3
    out_channels: int = 1
    unet: UNetConfig = field(default_factory=UNetConfig)


class MeanModel(nn.Module):
    """mu(X): (B, in_channels, H, W) -> phase (B, out_channels, H, W) in radians."""

    kind = "mean"

    def __init__(self, config: MeanConfig | None = None):
        super().__init__()
        self.config = config or MeanConfig()
        self.net = UNet(self.config.in_channels, self.config.out_channels, self.config.unet)

    @property
    def stride(self) -> int:
        """H and W of inputs must be divisible by this."""
        return self.net.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """mu(X), (B, in_channels, H, W) -> (B, out_channels, H, W)."""
        return self.net(x)

    def loss_terms(self, batch: dict, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample loss terms, each (B,): ``{"loss", "mse"}`` (``generator`` unused)."""
        mse = per_sample_mean((self(condition_from_batch(batch)).float() - batch["target"].float()) ** 2)
        return {"loss": mse, "mse": mse}

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample MSE (B,) in rad^2."""
        return self.loss_terms(batch, generator=generator)["loss"]

    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, *, steps: int | None = None, generator=None, sampler: str = "ddim",
        samples: int = 1, eta: float = 0.0, keep: bool = False,
    ) -> SampleResult:
        """Deterministic prediction in the common sampling interface (std is zero).

        Parameters
        ----------
        x : torch.Tensor
            (B, in_channels, H, W).
        steps, generator, sampler, samples, eta, keep
            Accepted for interface compatibility with the diffusion models; ignored.

        Returns
        -------
        SampleResult
            ``mean`` = mu(X), ``std`` = 0, both (B, out_channels, H, W).
        """
        mu = self(x).float()
        return SampleResult(mu, torch.zeros_like(mu), None)

    def predict(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """mu(X), (B, out_channels, H, W) in radians."""
        return self.sample(x, **kwargs).mean
