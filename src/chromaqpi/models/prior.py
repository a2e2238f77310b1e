"""Physics priors: a classical solver's phase as an extra input plane of a learned model.

A mean network with ``prior = "tie"`` sees ``TIE(images, microscope)`` as its last input channel
and predicts a correction to it, ``mu(X) = TIE + net(X, TIE)``. The output layer starts at zero,
so an untrained network returns the TIE estimate, and training can only learn what TIE misses
(its low-frequency bias, strong-phase and absorption errors). The prior is computed with the
microscope the caller describes, on the whole image before tiling, so each tile inherits the
field's low frequencies.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch

from chromaqpi.errors import ConfigError

#: prior name -> classical method of :func:`chromaqpi.reconstruct`
PRIORS = {"tie": "tie"}


def check_prior(name: str | None) -> None:
    """Raise ConfigError unless ``name`` is None or a known prior."""
    if name is not None and name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; choose one of {sorted(PRIORS)} or none")


@torch.no_grad()
def prior_plane(images: torch.Tensor, microscope, name: str) -> torch.Tensor:
    """The prior's phase (B, 1, H, W) float32 in radians, zero mean per image.

    Parameters
    ----------
    images : torch.Tensor
        (B, C, H, W) flat-field normalised intensities (empty field = 1), before the model's
        input normalisation.
    microscope : Microscope, preset name or TOML path
    name : str
        A key of :data:`PRIORS`.
    """
    from chromaqpi.solvers.base import reconstruct

    check_prior(name)
    phase = reconstruct(images.float(), microscope, method=PRIORS[name])
    return phase.float()[:, None]


@lru_cache(maxsize=64)
def _microscope_from_json(text: str):
    from chromaqpi.microscope import Microscope

    return Microscope.from_dict(json.loads(text))


def sample_prior(image: torch.Tensor, microscope_dict: dict, name: str) -> torch.Tensor:
    """:func:`prior_plane` of one training sample (C, H, W) with its recorded microscope -> (1, H, W)."""
    microscope = _microscope_from_json(json.dumps(microscope_dict, sort_keys=True))
    return prior_plane(image[None], microscope, name)[0]
