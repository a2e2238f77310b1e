"""Regression ("mean") model: mu(X) trained with MSE, in radians.

It estimates the posterior mean E[Y | X] (the MMSE estimate), which is the deterministic baseline
and the first stage of zero-mean diffusion (ZMD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chromaqpi.errors import ConfigError
from chromaqpi.models.prior import check_prior
from chromaqpi.models.unet import UNet, UNetConfig, condition_from_batch, per_sample_mean, remove_offset
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
    prior : str or None
        Physics prior (:mod:`chromaqpi.models.prior`, e.g. ``"tie"``): its phase is the last input
        channel (counted in ``in_channels``) and the network predicts a correction to it.
    offset_invariant : bool
        Train on the error minus its per-image mean (:func:`chromaqpi.models.unet.remove_offset`):
        the unrecoverable phase offset costs nothing. False reproduces models trained before.
    """

    in_channels: int = 3
    out_channels: int = 1
    unet: UNetConfig = field(default_factory=UNetConfig)
    prior: str | None = None
    offset_invariant: bool = False


class MeanModel(nn.Module):
    """mu(X): (B, in_channels, H, W) -> phase (B, out_channels, H, W) in radians."""

    kind = "mean"

    def __init__(self, config: MeanConfig | None = None):
        super().__init__()
        self.config = config or MeanConfig()
        check_prior(self.config.prior)
        if self.config.prior is not None and self.config.out_channels != 1:
            raise ConfigError("a prior needs out_channels = 1 (one phase plane)")
        self.net = UNet(self.config.in_channels, self.config.out_channels, self.config.unet)

    @property
    def stride(self) -> int:
        """H and W of inputs must be divisible by this."""
        return self.net.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """mu(X), (B, in_channels, H, W) -> (B, out_channels, H, W)."""
        out = self.net(x)
        return out if self.config.prior is None else x[:, -1:] + out

    def loss_terms(self, batch: dict, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample loss terms, each (B,): ``{"loss", "mse"}`` (``generator`` unused)."""
        error = self(condition_from_batch(batch)).float() - batch["target"].float()
        mse = per_sample_mean((remove_offset(error) if self.config.offset_invariant else error) ** 2)
        return {"loss": mse, "mse": mse}

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample MSE (B,) in rad^2."""
        return self.loss_terms(batch, generator=generator)["loss"]

    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, *, steps: int | None = None, generator=None, sampler: str = "ddim",
        samples: int = 1, eta: float = 0.0, keep: bool = False, temperature: float = 1.0,
    ) -> SampleResult:
        """Deterministic prediction in the common sampling interface (std is zero).

        Parameters
        ----------
        x : torch.Tensor
            (B, in_channels, H, W).
        steps, generator, sampler, samples, eta, keep, temperature
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
