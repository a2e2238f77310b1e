"""How the shipped `default` model holds up on microscopes it was not trained on.

Usage: python benchmarks/bench_microscopes.py [--n 8] [--steps K] [--classes family,10x-0.25,...]

The `default` family draws a 20x/0.40 or a 40x/0.65 achromat (secondary spectrum, defocus, NA
jitter, condenser, medium, illuminant, camera and sensor drawn per image, datasets/randomize.py).
Users have other objectives. Each class below is the family with its objective list replaced by
one objective (everything else drawn as in training), on cell scenes (the `cells` source of
phantoms-test) simulated with the drawn microscope's full quadrature and sensor noise:

- ``family``: the family as trained (both objectives), the in-distribution reference;
- ``20x-0.40``, ``40x-0.65``: each of the family's objectives alone;
- ``40x-0.65-apo``: a plan-apochromat (secondary spectrum 0.1-0.3 µm instead of 0.5-2):
  inside the card's NA, pixel and medium ranges, far less chromatic defocus; the card's
  focus-separation ranges (``models.registry.family_envelope``) flag the draws with the least;
- ``20x-0.40-deep``: the 20x achromat focused 3-6 µm away (training: 0.5-3 µm): the card's
  mean-defocus range flags the deeper draws;
- ``10x-0.25``: a 10x/0.25 achromat (secondary spectrum 2-8 µm, defocus 1-5 µm, pixels
  0.24-0.65 µm): outside the envelope in NA and pixel size;
- ``60x-0.85``: a 60x/0.85 dry achromat (secondary spectrum 0.3-1.2 µm, defocus 0.2-1.5 µm):
  outside the envelope in NA.

Seeds: sample i of every class draws its microscope, object and noise from the evaluation streams
``(EVAL_KEY, 300, i, stream)`` (datasets/seeds.py), disjoint from every training stream. The draws
come in a fixed order, so sample i of two classes with the same magnification differs in the
objective's ranges only (same illuminant, camera, noise, pixel size and cells): the paired columns
compare each out-of-family class with its in-family twin on the same scenes. Across magnifications
the field of view differs (the cells keep their size in µm), so those nMAEs are not comparable.
TIE and WOTF are given each image's exact microscope (they know its defocus); the `default`
networks see only the normalised image. Scores: offset-aligned nMAE (MAE·2/3.5) and MS-SSIM
(data range 3.5 rad), mean over images, ZMD's nMAE relative to TIE's on the same images, and
ZMD's and TIE's nMAE relative to the paired in-family class. The iterative solver (70 s per image here) is left out.
Writes benchmarks/results/microscopes.md.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import markdown_table, model_steps, write_results
from chromaqpi.datasets import seeds
from chromaqpi.datasets.randomize import Objective, draw_microscope, get_family
from chromaqpi.metrics import ms_ssim, normalised_mae
from chromaqpi.models.registry import load_model, microscope_family_warnings
from chromaqpi.optics.simulator import simulate
from chromaqpi.phantoms import get_source, phase_rad

SET_ID = 300  # evaluation set id of every class (not used by any registered set)
METHODS = ("tie", "wotf", "mean", "zmd")
DATA_RANGE = 3.5

# class -> (objectives replacing the family's, or None for the family as trained; description;
#           the in-family class it is paired with: same pixels, objects, noise, only the optics differ)
CLASSES = {
    "family": (None, "the default family as trained (20x/0.40 or 40x/0.65 achromat)", None),
    "20x-0.40": ([Objective(20, 0.40, (1.0, 4.0), (0.5, 3.0))], "the family's 20x achromat alone", None),
    "40x-0.65": ([Objective(40, 0.65, (0.5, 2.0), (0.3, 2.0))], "the family's 40x achromat alone", None),
    "40x-0.65-apo": ([Objective(40, 0.65, (0.1, 0.3), (0.3, 2.0))], "40x/0.65 plan-apochromat, S 0.1-0.3 µm",
                     "40x-0.65"),
    "20x-0.40-deep": ([Objective(20, 0.40, (1.0, 4.0), (3.0, 6.0))], "20x achromat, defocus 3-6 µm", "20x-0.40"),
    "10x-0.25": ([Objective(10, 0.25, (2.0, 8.0), (1.0, 5.0))],
                 "10x/0.25 achromat (outside the NA and pixel envelope)", None),
    "60x-0.85": ([Objective(60, 0.85, (0.3, 1.2), (0.2, 1.5))], "60x/0.85 dry achromat (outside the NA envelope)",
                 None),
}


def class_sample(name: str, i: int, size: int, *, absorption_per_rad: float = 0.0, absorption_pattern: str = "phase",
                 stain=None, with_absorption: bool = False, actual=None):
    """(images (1, C, H, W), true phase (H, W), microscope) of sample i of a class (and, with
    ``with_absorption``, the true absorption (H, W), zeros for a transparent one).

    ``absorption_per_rad``: the object also absorbs, with amplitude attenuation ``a = k·(φ - min φ)``
    (grey, the simulator's absorption model); with ``absorption_pattern="independent"`` a second cell
    scene's phase (its own stream) stands in for φ; ``stain`` (a name in ``chromaqpi.optics.spectra.STAINS``)
    colours it. A list of stains (e.g. H&E) gives each its own independent scene (streams 3, 4, ...), each
    with attenuation k·(ψ_i - min ψ_i); the true absorption returned is their sum. The draws stay those of
    the pure-phase sample. ``actual``: a function of the drawn microscope giving the one the image is
    simulated with (the drawn one, what a user would declare, is still returned)."""
    objectives = CLASSES[name][0]
    family = get_family("default")
    ranges = family if objectives is None else replace(family, objectives=objectives)
    microscope = draw_microscope(None, ranges, seeds.rng_from(seeds.eval_sequence(SET_ID, i, 0)))
    source = get_source("cells", wavelength_um=microscope.optics.wavelength_ref_um)
    shape, pixel, lam = (size, size), microscope.sampling.pixel_size_um, microscope.optics.wavelength_ref_um
    phase = torch.from_numpy(phase_rad(source(shape, pixel, seeds.rng_from(seeds.eval_sequence(SET_ID, i, 1))), lam))
    dyes = list(stain) if isinstance(stain, (list, tuple)) else None
    patterns = [phase]
    if absorption_per_rad and (absorption_pattern == "independent" or dyes):
        patterns = [torch.from_numpy(phase_rad(source(shape, pixel, seeds.rng_from(seeds.eval_sequence(SET_ID, i, 3 + j))),
                                               lam)) for j in range(len(dyes or [stain]))]
    maps = [absorption_per_rad * (p - p.min()) for p in patterns] if absorption_per_rad else []
    absorption = (maps if dyes else maps[0]) if maps else None
    generator = seeds.torch_generator_from(seeds.eval_sequence(SET_ID, i, 2))
    with torch.no_grad():
        images = simulate(phase, actual(microscope) if actual else microscope, absorption=absorption,
                          stain=stain if absorption is not None else None, noise=True, generator=generator)
    if with_absorption:
        truth = torch.zeros_like(phase) if absorption is None else sum(maps)
        return images.float(), phase.double(), microscope, truth.double()
    return images.float(), phase.double(), microscope


def reconstruct_methods(images, microscope, i: int, *, steps: int, model: str = "default",
                        methods=METHODS, options: dict | None = None) -> dict[str, torch.Tensor]:
    """Each method's (H, W) float64 estimate of sample i; ZMD one draw seeded 1000 + i. Warnings are
    silenced (the benchmarks count the envelope's themselves). ``options``: extra keywords per method; a
    method named ``"NAME:variant"`` runs NAME with ``options["NAME:variant"]`` (e.g. ``"wotf:none"``)."""
    out = {}
    for method in methods:
        base = method.split(":")[0]
        opts = {"model": model} if base in ("mean", "zmd") else {}
        if base == "zmd":
            opts.update(steps=steps, samples=1, generator=torch.Generator().manual_seed(1000 + i))
        opts.update((options or {}).get(method, {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out[method] = chromaqpi.reconstruct(images, microscope, method=base, **opts)[0].double()
    return out


def add_scene_arguments(parser, *, n: int) -> None:
    """--n, --size, --steps and --model of the benchmarks that alter the `family` scenes."""
    parser.add_argument("--n", type=int, default=n, help="images")
    parser.add_argument("--size", type=int, default=256, help="image size (pixels)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD draw (default: the count the model's card recommends)")
    parser.add_argument("--model", default="default", help="learned model: shipped name or checkpoint folder")


def score_variants(rows, args, record=None) -> dict:
    """``{(label, method): [nMAE per image]}`` over the first ``args.n`` `family` scenes (``args.size`` px),
    each image altered by each row's ``(label, alter)`` (``alter(images) -> images``, e.g. a camera's
    processing) before every method runs; ``record(label, altered)`` sees each altered image."""
    nmae = {(label, m): [] for label, _ in rows for m in METHODS}
    for i in tqdm(range(args.n), desc="images"):
        images, true, microscope = class_sample("family", i, args.size)
        for label, alter in rows:
            altered = alter(images)
            if record is not None:
                record(label, altered)
            for method, est in reconstruct_methods(altered, microscope, i, steps=args.steps, model=args.model).items():
                nmae[label, method].append(float(normalised_mae(est, true, align="mean")))
    return nmae


def variant_table(nmae: dict, labels, reference, *, first: str, versus: str, methods=METHODS,
                  extra: dict | None = None) -> str:
    """Markdown table of a benchmark that alters the images: per variant (row label), each method's mean
    nMAE over images (``nmae[label, method]`` lists) and its ratio to the ``reference`` variant's;
    ``extra``: more columns, header -> {label: cell}."""
    mean = {key: float(np.mean(v)) for key, v in nmae.items()}
    header = [first] + [f"nMAE {m}" for m in methods] + [f"{m} / {versus}" for m in methods] + list(extra or {})
    rows = [[label] + [f"{mean[label, m]:.4f}" for m in methods]
            + [f"{mean[label, m] / mean[reference, m]:.3f}" for m in methods]
            + [cells[label] for cells in (extra or {}).values()] for label in labels]
    return markdown_table(header, rows)


def score_class(name: str, n: int, size: int, steps: int, card: dict) -> dict:
    scores = {m: {"nmae": [], "ms_ssim": []} for m in METHODS}
    outside = 0
    for i in tqdm(range(n), desc=name, leave=False):
        images, true, microscope = class_sample(name, i, size)
        outside += bool(microscope_family_warnings(card, microscope))
        for method, est in reconstruct_methods(images, microscope, i, steps=steps).items():
            scores[method]["nmae"].append(float(normalised_mae(est, true, align="mean")))
            scores[method]["ms_ssim"].append(float(ms_ssim(est, true, data_range=DATA_RANGE, align="mean")))
    return {"outside": outside, **{m: {key: float(np.mean(v)) for key, v in s.items()} for m, s in scores.items()}}


def paired(results: dict, name: str, methods) -> list[str]:
    """nMAE of each method on class ``name`` over its in-family twin's, or "-" without one."""
    twin = results.get(CLASSES[name][2])
    return [f"{results[name][m]['nmae'] / twin[m]['nmae']:.2f}" if twin else "-" for m in methods]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per class")
    parser.add_argument("--size", type=int, default=256, help="image size (pixels)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD draw (default: the count the model's card recommends)")
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated classes")
    args = parser.parse_args()
    args.steps = model_steps(["default"], args.steps)
    torch.set_flush_denormal(True)
    names = args.classes.split(",")
    unknown = [c for c in names if c not in CLASSES]
    if unknown:
        parser.error(f"unknown classes {unknown}; valid: {', '.join(CLASSES)}")
    card = load_model("default").card.get("microscope")
    results, started = {}, datetime.now()
    for name in names:
        results[name] = score_class(name, args.n, args.size, args.steps, card)
        print(name, {m: round(results[name][m]["nmae"], 4) for m in METHODS}, flush=True)
    header = ["class", "images outside the card's envelope"] + [f"nMAE {m}" for m in METHODS] + \
             [f"MS-SSIM {m}" for m in METHODS] + ["ZMD / TIE nMAE", "ZMD vs paired class", "TIE vs paired class"]
    rows = []
    for name, r in results.items():
        rows.append([name, f"{r['outside']}/{args.n}"] + [f"{r[m]['nmae']:.4f}" for m in METHODS]
                    + [f"{r[m]['ms_ssim']:.4f}" for m in METHODS]
                    + [f"{r['zmd']['nmae'] / r['tie']['nmae']:.2f}"] + paired(results, name, ("zmd", "tie")))
    classes = "\n".join(f"- `{name}`: {CLASSES[name][1]}" for name in names)
    body = (f"Shipped `default` model, {args.n} cell scenes of {args.size} px per class, ZMD one {args.steps}-step "
            f"DDIM draw at the card's temperature (seed 1000 + image index), {(datetime.now() - started).seconds / 60:.1f} min in all. "
            "Lower nMAE is better; ratios below 1 mean ZMD is better than the reference.\n\n"
            f"{classes}\n\n" + markdown_table(header, rows))
    write_results("microscopes", "The default model on microscopes outside its training family", body)


if __name__ == "__main__":
    main()
