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
#: What ``method="auto"`` runs when a shipped ZMD model serves the microscope: its mean network,
#: which on validation images matched or beat one 10-step ZMD draw in nMAE at under a tenth of the
#: time (``benchmarks/results/steps.md``); else the classical solver that needs no training data.
AUTO_LEARNED, AUTO_FALLBACK = "mean", "wotf"


def _randomised_over_objectives(card: dict) -> bool:
    """Whether a model was trained over a range of objectives (its envelope's NA is a range, not
    one value), so that it has learnt to read the optics from the image rather than one setting."""
    na = (card.get("microscope") or {}).get("optics.na_objective")
    return isinstance(na, (list, tuple)) and len(na) == 2 and na[0] < na[1]


def choose_method(microscope) -> tuple[str, str | None, str]:
    """``(method, model, reason)`` that ``method="auto"`` runs for ``microscope``.

    1. Inside the training family of a shipped ZMD model (its card's envelope,
       :func:`~chromaqpi.models.registry.microscope_family_warnings`; the model named like the
       microscope's preset is tried first): that model's mean network.
    2. An RGB-mode microscope outside every family: the mean network of a model trained over a
       range of objectives with the same channel count (``default``), which then warns that it is
       extrapolating. Measured: on every simulated microscope outside its envelope (10x/0.25 and
       60x/0.85 achromats, a plan-apochromat, 3-6 µm defocus) it was 1.3-3.6x better than WOTF in
       nMAE (``benchmarks/results/microscopes.md``).
    3. Otherwise (planes-mode microscopes outside the paper presets' single-microscope families,
       whose networks never saw another microscope; or no model installed): ``wotf``, the reason
       naming where the microscope leaves the nearest model's family.
    """
    from chromaqpi.models.registry import WEIGHTS_DIR, list_models, microscope_family_warnings, read_card

    cards = {n: read_card(WEIGHTS_DIR / n) for n in list_models()}
    names = sorted((n for n, c in cards.items() if c["model"].get("kind") == "zmd"),
                   key=lambda n: (n != microscope.name, n != "default", n))
    problems = {n: microscope_family_warnings(cards[n].get("microscope"), microscope) for n in names}
    for name in names:
        if not problems[name]:
            return AUTO_LEARNED, name, f"inside the training family of shipped model {name!r}"
    if not microscope.planes:
        for name in names:
            if (_randomised_over_objectives(cards[name])
                    and cards[name]["microscope"].get("n_channels") == microscope.n_channels):
                return AUTO_LEARNED, name, (f"RGB-mode microscope outside every family; model {name!r} was "
                                            "trained over a range of objectives")
    if not names:
        return AUTO_FALLBACK, None, "no shipped ZMD model is installed"
    nearest = min(names, key=lambda n: len(problems[n]))  # the first of the fewest violations
    return AUTO_FALLBACK, None, (f"no shipped model was trained for this microscope (model {nearest!r}: "
                                 f"{'; '.join(problems[nearest])})")


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
    (:func:`choose_method`): a shipped model's mean network where one serves it, else ``wotf``.
    The ``method="auto"`` entry of :func:`chromaqpi.reconstruct`, the CLI's default."""
    from chromaqpi.solvers.base import get_method

    method, options = resolve_auto(microscope)
    if method == AUTO_LEARNED:
        options.update(device=device, progress=progress)
    return get_method(method)(images, microscope, **options)
