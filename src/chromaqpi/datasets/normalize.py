"""Input normalisations that models may apply (the datasets themselves store raw images).

``"flatfield"``
    ``x - 1``: our convention. Flat-fielded intensities have an empty field of 1, so the
    result is the signed defocus contrast, 0 on the background, with the physical scale
    kept (no per-image rescaling that would hide noise or contrast level).
``"paper-rgb"``
    The reference paper's polychromatic input (PHYSICS.md §6.5): each channel divided by
    its own maximum, then ``*2 - 1``.
``"paper-2shot"``
    The paper's two-shot input: joint min-max over both shots, then ``*2 - 1``.
``"paper"``
    ``paper-rgb`` for 3 channels, ``paper-2shot`` for 2.

The paper's target scaling ``Y = (φ/3.5)*2 - 1`` is :func:`paper_target`.
"""

from __future__ import annotations

import torch

from chromaqpi.errors import ConfigError

__all__ = ["MODES", "normalize_input", "paper_target", "paper_phase", "PAPER_PHASE_MAX_RAD"]

MODES = ("flatfield", "paper", "paper-rgb", "paper-2shot")
#: Upper end of the paper's min-max phase range (rad).
PAPER_PHASE_MAX_RAD = 3.5
# Guards divisions by a zero maximum or range (a blank image).
_EPS = 1e-12


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        raise ConfigError(f"expected a (C,H,W) or (B,C,H,W) tensor, got {getattr(x, 'shape', type(x))}")
    return (x[None], True) if x.ndim == 3 else (x, False)


def normalize_input(x: torch.Tensor, mode: str = "flatfield") -> torch.Tensor:
    """Normalise camera images for a model.

    Parameters
    ----------
    x : (C, H, W) or (B, C, H, W) float tensor, flat-fielded intensities (empty field = 1).
    mode : one of :data:`MODES` (see the module docstring).

    Returns
    -------
    torch.Tensor of the shape and dtype of ``x``; statistics are per sample.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown input normalisation {mode!r}; valid: {', '.join(MODES)}")
    xb, single = _batched(x)
    if mode == "paper":
        mode = {3: "paper-rgb", 2: "paper-2shot"}.get(xb.shape[1], "")
        if not mode:
            raise ConfigError(f"'paper' normalisation needs 2 or 3 channels, got {xb.shape[1]}")
    if mode == "flatfield":
        out = xb - 1
    elif mode == "paper-rgb":
        peak = xb.amax(dim=(-2, -1), keepdim=True)
        out = xb / peak.clamp_min(_EPS) * 2 - 1
    else:
        lo = xb.amin(dim=(-3, -2, -1), keepdim=True)
        hi = xb.amax(dim=(-3, -2, -1), keepdim=True)
        out = (xb - lo) / (hi - lo).clamp_min(_EPS) * 2 - 1
    return out[0] if single else out


def paper_target(phase: torch.Tensor) -> torch.Tensor:
    """Phase (rad) on the paper's [0, 3.5] scale -> their target ``φ/3.5*2 - 1`` in [-1, 1]."""
    return phase / PAPER_PHASE_MAX_RAD * 2 - 1


def paper_phase(target: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`paper_target`: [-1, 1] -> phase in rad."""
    return (target + 1) / 2 * PAPER_PHASE_MAX_RAD
