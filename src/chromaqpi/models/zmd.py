"""Zero-Mean Diffusion (ZMD, arXiv 2406.04388): a mean network plus a CVDM on its residual.

``Y_hat = mu(X) + sigma_zmd * R_hat`` with ``R = (Y - stopgrad(mu(X))) / sigma_zmd``. The mean
network carries the MMSE estimate and the physical units (radians, no min-max normalisation); the
diffusion only models the zero-mean residual, whose spread is O(1) when sigma_zmd is the RMS of
``Y - mu`` (PHYSICS.md 6.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from chromaqpi.models.cvdm import CVDMDiffusion, CVDMLossWeights
from chromaqpi.models.mean import MeanConfig, MeanModel
from chromaqpi.models.schedules import LearnedScheduleConfig
from chromaqpi.models.unet import UNetConfig, condition_from_batch, per_sample_mean, remove_offset
from chromaqpi.sampling import DEFAULT_STEPS, SampleResult, posterior_samples


@dataclass
class ZMDConfig:
    """Zero-mean diffusion.

    Attributes
    ----------
    in_channels, out_channels : int
        Channels of the stacked condition X and of the phase target.
    mean_unet : UNetConfig
        Backbone of mu(X).
    unet : UNetConfig
        Noise network backbone; it sees ``concat(z_t, X, mu(X))`` and the per-pixel log-SNR map.
    schedule : LearnedScheduleConfig
        kappa network (conditioned on X only) and time network.
    loss : CVDMLossWeights
        Weights of the residual CVDM's terms.
    mean_weight : float
        Weight of ``|Y - mu(X)|^2`` (the authors use 2).
    sigma_zmd : float
        Residual scale in radians; set it to the validation RMS of ``Y - mu(X)`` (the authors
        hard-code 0.5 in normalised units, i.e. 0.875 rad for a 3.5 rad range).
    clip_residual : float or None
        Clamp residual estimates R_hat to [-c, c] while sampling (None: no clipping, as the authors).
        Early eps-parametrised steps divide by sqrt(gamma(1)); a generous bound such as 6 tames an
        undertrained noise net without touching a well-trained one.
    prediction : {"v", "eps"}
        Output parametrisation of the noise network (see :class:`chromaqpi.models.cvdm.CVDMDiffusion`).
    prior : str or None
        Physics prior of the mean network (:class:`chromaqpi.models.mean.MeanConfig`); its plane is
        the last channel of X, which the noise network and schedule see too.
    offset_invariant : bool
        Both the mean loss and the diffusion's residual drop the per-image mean of ``Y - mu``
        (the phase offset is unobservable, see :func:`chromaqpi.models.unet.remove_offset`), so
        the diffusion samples a zero-mean residual. False reproduces models trained before.
    """

    in_channels: int = 3
    out_channels: int = 1
    mean_unet: UNetConfig = field(default_factory=UNetConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: LearnedScheduleConfig = field(default_factory=LearnedScheduleConfig)
    loss: CVDMLossWeights = field(default_factory=CVDMLossWeights)
    mean_weight: float = 2.0
    sigma_zmd: float = 0.5
    clip_residual: float | None = None
    prediction: str = "v"
    prior: str | None = None
    offset_invariant: bool = False


class ZMDModel(nn.Module):
    """mu(X) + sigma_zmd * (CVDM sample of the residual), in radians."""

    kind = "zmd"

    def __init__(self, config: ZMDConfig | None = None):
        super().__init__()
        cfg = self.config = config or ZMDConfig()
        self.mean = MeanModel(MeanConfig(cfg.in_channels, cfg.out_channels, cfg.mean_unet, cfg.prior,
                                            cfg.offset_invariant))
        self.diffusion = CVDMDiffusion(cfg.in_channels + cfg.out_channels, cfg.in_channels, cfg.out_channels,
                                       cfg.unet, cfg.schedule, cfg.loss, cfg.prediction)

    @property
    def stride(self) -> int:
        """H and W of inputs must be divisible by this."""
        return max(self.mean.stride, self.diffusion.net.stride, self.diffusion.schedule.kappa_net.stride)

    def loss_terms(self, batch: dict, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample terms (B,): ``mean`` (rad^2) plus the residual CVDM's terms; "loss" is the total."""
        x, y = condition_from_batch(batch), batch["target"].float()
        mu = self.mean(x).float()
        error = remove_offset(y - mu) if self.config.offset_invariant else y - mu
        mean = per_sample_mean(error**2)
        # The diffusion branch must not move mu (ZMD's stop-gradient).
        r = error.detach() / self.config.sigma_zmd
        mu_sg = mu.detach()
        terms = self.diffusion.loss_terms(r, torch.cat([x, mu_sg.to(x.dtype)], dim=1), x, generator)
        return {**terms, "loss": self.config.mean_weight * mean + terms["loss"], "mean": mean}

    def loss(self, batch: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample weighted loss (B,)."""
        return self.loss_terms(batch, generator=generator)["loss"]

    @torch.no_grad()
    def sample(
        self, x: torch.Tensor, *, steps: int = DEFAULT_STEPS, generator=None, sampler: str = "ddim",
        samples: int = 1, eta: float = 0.0, keep: bool = False, temperature: float = 1.0,
    ) -> SampleResult:
        """Posterior samples ``mu + sigma_zmd * R_hat`` in radians.

        Arguments as :meth:`chromaqpi.models.ddpm.DDPMModel.sample`; the residual is clipped only
        if ``config.clip_residual`` is set.
        """
        mu = self.mean(x).float()
        cond = torch.cat([x, mu.to(x.dtype)], dim=1)
        kappa = self.diffusion.schedule.kappa(x)
        c = self.config.clip_residual
        clip = None if c is None else (-c, c)

        def draw(gens):
            r = self.diffusion.sample_normalised(cond, x, steps=steps, generators=gens, sampler=sampler,
                                                 eta=eta, clip=clip, kappa=kappa, temperature=temperature)
            return (mu.double() + self.config.sigma_zmd * r).float()

        return posterior_samples(draw, x.shape[0], samples=samples, generator=generator, device=x.device, keep=keep)

    def predict(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Posterior-mean estimate (B, out_channels, H, W) in radians; kwargs as :meth:`sample`."""
        return self.sample(x, **kwargs).mean
