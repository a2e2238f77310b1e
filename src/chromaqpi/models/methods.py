"""The learned entries of :func:`chromaqpi.reconstruct`: one function per model kind.

Each is :func:`chromaqpi.models.registry.reconstruct_with_model` with its ``kind``
fixed; the options are keyword-only so the registry can check them by signature.
"""

from __future__ import annotations

import torch


def _method(kind: str):
    def reconstruct(
        images: torch.Tensor, microscope, *, model=None, steps: int | None = None, samples: int = 1,
        sampler: str = "ddim", generator=None, condition: torch.Tensor | None = None, device=None,
        tile: int = 256, overlap: int = 48, return_std: bool = False, refine: int = 0,
        refine_starts: str = "model", orientations: bool = True, progress: bool = False,
    ):
        from chromaqpi.models.registry import reconstruct_with_model

        return reconstruct_with_model(images, microscope, kind=kind, model=model, steps=steps, samples=samples,
                                      sampler=sampler, generator=generator, condition=condition, device=device,
                                      tile=tile, overlap=overlap, return_std=return_std, refine=refine,
                                      refine_starts=refine_starts, orientations=orientations,
                                      progress=progress)

    reconstruct.__name__ = reconstruct.__qualname__ = kind
    reconstruct.__doc__ = (f"Phase (B, H, W) in radians with a trained {kind} model: the ``method={kind!r}`` "
                           "entry of :func:`chromaqpi.reconstruct`; options as "
                           ":func:`chromaqpi.models.registry.reconstruct_with_model`.")
    return reconstruct


mean, ddpm, cvdm, zmd = (_method(k) for k in ("mean", "ddpm", "cvdm", "zmd"))
