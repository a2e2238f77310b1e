"""Exponential moving average (EMA) of model weights.

The averaged copy is what validation, the best checkpoint and shipped weights use: it is smoother
than the raw iterate and usually better for diffusion models (Ho et al. 2020; Karras et al. 2022).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """EMA of a module's parameters: ``theta_ema <- d theta_ema + (1 - d) theta``.

    Parameters
    ----------
    model : torch.nn.Module
        The trained module (not a DDP wrapper); its current weights seed the average.
    decay : float
        Target decay d in [0, 1).
    warmup : bool
        Use ``d_n = min(decay, (1 + n) / (10 + n))`` after n updates, so the average forgets the
        random initialisation quickly.

    Attributes
    ----------
    module : torch.nn.Module
        The averaged copy (eval mode, no gradients); buffers are copied, not averaged.
    updates : int
        Number of :meth:`update` calls so far.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def decay_at(self, updates: int) -> float:
        """Decay used for the update after ``updates`` previous updates."""
        return min(self.decay, (1 + updates) / (10 + updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        d = self.decay_at(self.updates)
        for avg, p in zip(self.module.parameters(), model.parameters(), strict=True):
            avg.lerp_(p.detach().to(avg.dtype), 1.0 - d)
        for avg, b in zip(self.module.buffers(), model.buffers(), strict=True):
            avg.copy_(b)
        self.updates += 1

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, json-able scalars) for checkpointing."""
        return self.module.state_dict(), {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}
