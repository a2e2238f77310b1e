"""The learned entries of :func:`chromaqpi.reconstruct`: one function per model kind.

Each is :func:`chromaqpi.models.registry.reconstruct_with_model` with its ``kind``
fixed; the options are keyword-only so the registry can check them by signature.
"""

from __future__ import annotations

import torch

from chromaqpi.tiling import DEFAULT_TILE


def _method(kind: str):
    def reconstruct(
        images: torch.Tensor, microscope, *, model=None, steps: int | None = None, samples: int = 1,
        sampler: str = "ddim", generator=None, condition: torch.Tensor | None = None, device=None,
        tile: int = DEFAULT_TILE, overlap: int = 48, return_std: bool = False, refine: int = 0,
        refine_starts: str = "model", orientations: bool = True, progress: bool = False,
        temperature: float | None = None, calibrated_std: bool = True, fit_absorption: bool = False, stain=None,
    ):
        from chromaqpi.models.registry import reconstruct_with_model

        return reconstruct_with_model(images, microscope, kind=kind, model=model, steps=steps, samples=samples,
                                      sampler=sampler, generator=generator, condition=condition, device=device,
                                      tile=tile, overlap=overlap, return_std=return_std, refine=refine,
                                      refine_starts=refine_starts, orientations=orientations,
                                      progress=progress, temperature=temperature,
                                      calibrated_std=calibrated_std, fit_absorption=fit_absorption, stain=stain)

    reconstruct.__name__ = reconstruct.__qualname__ = kind
    reconstruct.__doc__ = (f"Phase (B, H, W) in radians with a trained {kind} model: the ``method={kind!r}`` "
                           "entry of :func:`chromaqpi.reconstruct`; options as "
                           ":func:`chromaqpi.models.registry.reconstruct_with_model`.")
    return reconstruct


mean, ddpm, cvdm, zmd = (_method(k) for k in ("mean", "ddpm", "cvdm", "zmd"))


# ------------------------------------------------------------------ method="auto"
#: What ``method="auto"`` runs when a shipped ZMD model serves the microscope: its mean network,
#: better than or within 1 % of one 10-step ZMD draw at the card's temperature in nMAE on three of
#: four validation folders (6 % worse on low-noise paper-2shot images) at under a tenth of the time,
#: deterministically
#: (``benchmarks/results/temperature.md``).
AUTO_LEARNED = "mean"


def auto_fallback(microscope) -> str:
    """The classical solver ``auto`` runs where no shipped model reads the stack: ``tie`` for planes
    (on the planes-mode variants of ``benchmarks/results/auto.md`` TIE beat WOTF on 11 of 14 and WOTF
    once failed outright), ``wotf`` in RGB mode (better than TIE on 4 of 7 classes of
    ``microscopes.md``, and TIE is unreliable at low frequencies there, ``classical.md``)."""
    return "tie" if microscope.planes else "wotf"


def same_acquisition(card: dict, microscope) -> bool:
    """Whether a shipped model's microscope records the same kind of stack: RGB mode (one colour
    exposure) or planes mode, and as many channels."""
    from chromaqpi.errors import ConfigError
    from chromaqpi.microscope import Microscope
    from chromaqpi.models.registry import acquisition

    try:
        preset = Microscope.from_preset(card.get("microscope_preset", ""))
    except ConfigError:  # a card without a known preset: not a candidate
        return False
    return acquisition(preset) == acquisition(microscope) and preset.n_channels == microscope.n_channels


#: The shipped model trained with coloured absorbers (an opt-in variant of `default`).
STAINED_MODEL = "default-stained"


def stained_model_reads(microscope, variant_of: str | None = None) -> bool:
    """Whether :data:`STAINED_MODEL` is installed and reads this microscope's kind of stack (and, with
    ``variant_of``, is that model's variant)."""
    from chromaqpi.errors import WeightsError
    from chromaqpi.models.registry import WEIGHTS_DIR, list_models, read_card

    if STAINED_MODEL not in list_models():
        return False
    try:
        card = read_card(WEIGHTS_DIR / STAINED_MODEL)
    except WeightsError:
        return False
    return same_acquisition(card, microscope) and variant_of in (None, card.get("family"))


def _shipped_zmd_cards() -> dict[str, dict]:
    """Readable shipped ZMD cards by name, a family's variant models left out (an unreadable one is
    skipped: auto is the CLI default)."""
    from chromaqpi.errors import WeightsError
    from chromaqpi.models.registry import WEIGHTS_DIR, list_models, read_card

    cards = {}
    for name in list_models():
        try:
            card = read_card(WEIGHTS_DIR / name)
        except WeightsError:
            continue
        variant = card.get("family", name) != name  # e.g. default-stained: opt-in, for coloured specimens
        if card["model"].get("kind") == "zmd" and isinstance(card.get("microscope"), dict) and not variant:
            cards[name] = card
    return cards


def choose_method(microscope) -> tuple[str, str | None, str]:
    """``(method, model, reason)`` that ``method="auto"`` runs for ``microscope``.

    Candidates are the shipped ZMD models with the same acquisition (RGB or planes mode, channel
    count; the model named like the microscope's preset first, then ``default``).

    1. Inside a candidate's training family (its card's envelope,
       :func:`~chromaqpi.models.registry.microscope_family_warnings`): that model's mean network.
    2. Outside every family: the mean network of the candidate whose family the microscope leaves on
       the fewest quantities; the model then warns that it is extrapolating. Measured: on every
       microscope tried outside a family it beat WOTF, by 1.3-3.6x for `default` on other objectives
       (``benchmarks/results/microscopes.md``) and 1.2-23x for the paper models on moved or spread
       planes, other pixel sizes, wavelength and pupil, where it also beat TIE on 9 of 11
       (``benchmarks/results/auto.md``, validation maps).
    3. No candidate (e.g. four planes, or no weights installed): :func:`auto_fallback`, the reason
       naming where the microscope leaves the nearest shipped model's family.
    """
    from chromaqpi.models.registry import microscope_family_warnings

    cards = _shipped_zmd_cards()
    names = sorted(cards, key=lambda n: (n != microscope.name, n != "default", n))
    problems = {n: microscope_family_warnings(cards[n]["microscope"], microscope) for n in names}
    same = [n for n in names if same_acquisition(cards[n], microscope)]
    for name in same:
        if not problems[name]:
            return AUTO_LEARNED, name, f"inside the training family of shipped model {name!r}"
    if same:
        nearest = min(same, key=lambda n: len(problems[n]))  # the first of the fewest violations
        return AUTO_LEARNED, nearest, f"outside every family; nearest with this acquisition: {nearest!r}"
    fallback = auto_fallback(microscope)
    if not names:
        return fallback, None, "no shipped ZMD model is installed"
    nearest = min(names, key=lambda n: len(problems[n]))
    return fallback, None, (f"no shipped model was trained for this kind of stack (model {nearest!r}: "
                            f"{'; '.join(problems[nearest]) or 'another acquisition mode'})")


def resolve_auto(microscope, coloured: bool = False) -> tuple[str, dict]:
    """``(method, options)`` for ``method="auto"``; warns when it falls back to the classical solver,
    so that the choice travels with the result (the CLI records warnings in the TIFF metadata).

    ``coloured``: the image is coloured (:func:`chromaqpi.specimen_colour`). Where the choice is the
    model whose variant :data:`STAINED_MODEL` (trained with coloured absorbers)
    reads the stack, that variant runs instead. Rule, written before the check: on the flagged images
    of two validation folders (32 transparent, 32 stained samples), its mean network had to beat
    ``default``'s on average and on 3/4 of them, with no transparent image flagged. Measured: 6 stained
    samples flagged, none transparent; aligned MAE 0.225 against 1.570 rad, better on 5 of 6
    (``benchmarks/results/absorption-training.md``, experiment 3b).
    """
    import warnings

    method, model, reason = choose_method(microscope)
    if model is None:
        # stacklevel 4: the caller of chromaqpi.reconstruct (reconstruct -> auto -> resolve_auto)
        warnings.warn(f"method 'auto' runs {method}: {reason}", stacklevel=4)
        return method, {}
    if coloured and stained_model_reads(microscope, variant_of=model):
        warnings.warn(f"method 'auto' runs model {STAINED_MODEL!r}: the specimen is coloured (a stain or pigment; "
                      f"{STAINED_MODEL!r} was trained with coloured absorbers)", stacklevel=4)
        return method, {"model": STAINED_MODEL}
    return method, {"model": model}


def auto(images: torch.Tensor, microscope, *, device=None, progress: bool = False):
    """Phase (B, H, W) in radians with the best measured method this microscope allows
    (:func:`choose_method`): a shipped model's mean network where one serves it, else
    :func:`auto_fallback`; a coloured image (:func:`chromaqpi.specimen_colour`) gets the model's
    variant trained with coloured absorbers where one is shipped (:func:`resolve_auto`). ``device``
    applies to the network (the classical solvers run where the images are).
    The ``method="auto"`` entry of :func:`chromaqpi.reconstruct`, the CLI's default."""
    from chromaqpi.solvers.base import checked_colours, get_method, reads_stains, warn_if_coloured

    colours = checked_colours(images, microscope)
    parts = []  # (batch indices, their phase) per colour group
    for flag in (False, True):
        index = [i for i, c in enumerate(colours) if c.coloured == flag]
        if not index:
            continue
        method, options = resolve_auto(microscope, coloured=flag)
        if flag and not reads_stains(method, microscope, options):  # coloured, and no variant reads it: say so
            warn_if_coloured(images[index], microscope, [colours[i] for i in index])
        if method == AUTO_LEARNED:
            options.update(device=device, progress=progress)
        parts.append((index, get_method(method)(images[index], microscope, **options)))
    if len(parts) == 1:
        return parts[0][1]
    order = torch.argsort(torch.tensor([i for index, _ in parts for i in index]))
    return torch.cat([phase for _, phase in parts])[order.to(images.device)]  # back in the batch's order
