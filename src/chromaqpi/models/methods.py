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


# ------------------------------------------------------------------ method="auto"
#: What ``method="auto"`` runs inside a shipped ZMD model's training family: its mean network,
#: which on validation images matched or beat one ZMD draw in nMAE at a sixth of the time
#: (``benchmarks/results/orientations.md``); outside every family, the classical solver that
#: needs no training data.
AUTO_LEARNED, AUTO_FALLBACK = "mean", "wotf"


def choose_method(microscope) -> tuple[str, str | None, str]:
    """``(method, model, reason)`` that ``method="auto"`` runs for ``microscope``.

    The shipped ZMD models are tried in turn (the one named like the microscope's preset first):
    the first whose card's training family (:func:`~chromaqpi.models.registry.microscope_family_warnings`)
    contains the microscope gives ``(AUTO_LEARNED, name, ...)``. Outside all of them a network
    would extrapolate, so the choice is ``(AUTO_FALLBACK, None, reason)``, the reason naming where
    the microscope leaves the nearest model's family.
    """
    from chromaqpi.models.registry import WEIGHTS_DIR, list_models, microscope_family_warnings, read_card

    names = [n for n in list_models() if read_card(WEIGHTS_DIR / n)["model"].get("kind") == "zmd"]
    names.sort(key=lambda n: (n != microscope.name, n != "default", n))
    for name in names:
        if not microscope_family_warnings(read_card(WEIGHTS_DIR / name).get("microscope"), microscope):
            return AUTO_LEARNED, name, f"inside the training family of shipped model {name!r}"
    if not names:
        return AUTO_FALLBACK, None, "no shipped ZMD model is installed"
    nearest = names[0]
    problems = microscope_family_warnings(read_card(WEIGHTS_DIR / nearest).get("microscope"), microscope)
    return AUTO_FALLBACK, None, (f"no shipped model was trained for this microscope (model {nearest!r}: "
                                 f"{'; '.join(problems)})")


def resolve_auto(microscope) -> tuple[str, dict]:
    """``(method, options)`` for ``method="auto"``; warns when it falls back to the classical solver,
    so that the choice travels with the result (the CLI records warnings in the TIFF metadata)."""
    import warnings

    method, model, reason = choose_method(microscope)
    if model is None:
        warnings.warn(f"method 'auto' runs {method}: {reason}", stacklevel=3)
        return method, {}
    return method, {"model": model}


def auto(images: torch.Tensor, microscope, *, device=None, progress: bool = False):
    """Phase (B, H, W) in radians with the best measured method this microscope allows
    (:func:`choose_method`): a shipped model's mean network inside its training family, else
    ``wotf``. The ``method="auto"`` entry of :func:`chromaqpi.reconstruct`, the CLI's default."""
    from chromaqpi.solvers.base import get_method

    method, options = resolve_auto(microscope)
    if method == AUTO_LEARNED:
        options.update(device=device, progress=progress)
    return get_method(method)(images, microscope, **options)
