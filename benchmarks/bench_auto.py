"""How the shipped models fare outside their families, and what `method="auto"` runs there.

Usage: python benchmarks/bench_auto.py [--n 8] [--noise P]
       [--data paper-2shot=data/paper-2shot-noiseless-val,paper-rgb=data/paper-rgb-val]

`auto` (chromaqpi.models.methods.choose_method) runs a shipped model's mean network inside its
training family and, outside every family, the mean network of the nearest shipped model with the same
acquisition (RGB or planes mode, channel count); TIE only where none has it. For the `default` model on
other objectives see microscopes.md; this measures the planes-mode paper models, each trained on one
microscope, on validation phase maps re-simulated noiseless with the preset and with variants of it
(moved or spread planes, another wavelength, pixel size or pupil). Every method is given the true
microscope (a user declaring their own optics). Columns: TIE, WOTF and the preset model's mean network,
which is what auto runs on every variant here ("auto runs"). Offset-aligned nMAE (mean offset), mean over images. Writes benchmarks/results/auto.md, or
with --noise P (the paper's additive N(P, P) noise, image i seeded by i) auto-noiseP.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import folder_items, markdown_table, write_results
from chromaqpi.metrics import normalised_mae
from chromaqpi.models.methods import choose_method
from chromaqpi.models.registry import WEIGHTS_DIR, microscope_family_warnings, read_card
from chromaqpi.solvers.focus import shift_focus

DATA = "paper-2shot=data/paper-2shot-noiseless-val,paper-rgb=data/paper-rgb-val"
METHODS = ("tie", "wotf", "mean")


def scaled_planes(factor: float):
    """Every plane's defocus multiplied by ``factor`` (planes further apart, or nearer)."""
    return lambda m: m.replace(planes=[{**dataclasses.asdict(p), "defocus_um": factor * p.defocus_um}
                                       for p in m.planes])


def at_wavelength(um: float):
    return lambda m: m.replace(planes=[{**dataclasses.asdict(p), "wavelength_um": um} for p in m.planes])


#: preset -> variant name -> microscope transform; "preset" is the family's own microscope.
VARIANTS = {
    "paper-2shot": {
        "preset": lambda m: m,
        "planes x0.5 (±0.5 µm)": scaled_planes(0.5),
        "planes x1.5 (±1.5 µm)": scaled_planes(1.5),
        "planes x3 (±3 µm)": scaled_planes(3.0),
        "both planes +0.3 µm": lambda m: shift_focus(m, 0.3),
        "both planes +1 µm": lambda m: shift_focus(m, 1.0),
        "633 nm": at_wavelength(0.633),
        "NA 0.3 pupil": lambda m: m.replace(optics={"na_objective": 0.3}),
    },
    "paper-rgb": {
        "preset": lambda m: m,
        "planes x0.25 (+0.25 µm)": scaled_planes(0.25),
        "planes x4 (+4 µm)": scaled_planes(4.0),
        "pixel 0.1 µm": lambda m: m.replace(sampling={"pixel_size_um": 0.1}),
        "pixel 0.3 µm": lambda m: m.replace(sampling={"pixel_size_um": 0.3}),
        "NA 0.3 pupil": lambda m: m.replace(optics={"na_objective": 0.3}),
    },
}


def estimate(method: str, images, microscope, model: str) -> torch.Tensor:
    opts = {"model": model} if method == "mean" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # out-of-family warnings: expected here
        return chromaqpi.reconstruct(images, microscope, method=method, **opts)[0]


def score(preset: str, folder: str, n: int, noise: float = 0.0) -> list[list]:
    base = chromaqpi.Microscope.from_preset(preset).replace(sensor={"gaussian_mean": noise, "gaussian_std": noise})
    items = folder_items(folder, n)
    rows = []
    for variant, transform in VARIANTS[preset].items():
        scope = transform(base)
        method, model, _ = choose_method(scope)
        card = read_card(WEIGHTS_DIR / preset)
        outside = bool(microscope_family_warnings(card["microscope"], scope))
        nmae = {m: [] for m in METHODS}
        for i, (_, phase, _) in enumerate(tqdm(items, desc=f"{preset}: {variant}", leave=False)):
            with torch.no_grad():
                images = chromaqpi.simulate(phase.float(), scope, noise=noise > 0,
                                            generator=torch.Generator().manual_seed(i))
            for m in METHODS:
                est = estimate(m, images, scope, preset)
                nmae[m].append(float(normalised_mae(est.double(), phase, align="mean")))
        mean = {m: float(np.mean(v)) for m, v in nmae.items()}
        runs = f"{method} ({model})" if model else method
        rows.append([preset, variant, "yes" if outside else "no", runs]
                    + [f"{mean[m]:.4f}" for m in METHODS]
                    + [f"{mean['mean'] / mean['wotf']:.2f}", f"{mean['tie'] / mean['wotf']:.2f}"])
        print(markdown_table(HEADER, rows[-1:]), flush=True)
    return rows


HEADER = (["preset", "variant", "outside family", "auto runs"] + [f"nMAE {m}" for m in METHODS]
          + ["mean net / wotf", "tie / wotf"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="validation images per preset")
    parser.add_argument("--data", default=DATA, help="comma-separated PRESET=FOLDER validation shards")
    parser.add_argument("--noise", type=float, default=0.0, metavar="P",
                        help="additive N(P, P) noise, as the paper's training data (default: 0, noiseless)")
    args = parser.parse_args()
    if not 0 <= args.noise < 1:
        parser.error(f"--noise must be in [0, 1), got {args.noise}")
    torch.set_flush_denormal(True)
    started = datetime.now()
    rows = []
    for preset, folder in (p.split("=") for p in args.data.split(",")):
        if preset not in VARIANTS:
            parser.error(f"--data: no variants for preset {preset!r}; choose from {', '.join(VARIANTS)}")
        rows += score(preset, folder, args.n, args.noise)
    outside = [r for r in rows if r[2] == "yes"]
    col = {m: HEADER.index(f"nMAE {m}") for m in METHODS}
    wins = {ref: sum(float(r[col["mean"]]) < float(r[col[ref]]) for r in outside) for ref in ("tie", "wotf")}
    noise = f"with additive N({args.noise:g}, {args.noise:g}) noise" if args.noise else "noiseless"
    body = (f"Validation phase maps (first {args.n} of each folder: {args.data}), re-simulated {noise} with "
            "each microscope; every method given that microscope; the mean net is the preset's shipped model; "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all. Ratios below 1: better than WOTF.\n\n"
            + markdown_table(HEADER, rows) + f"\n\nOutside the family: the mean net beats WOTF on {wins['wotf']} "
            f"of {len(outside)} variants and TIE on {wins['tie']} of {len(outside)}.")
    write_results(f"auto-noise{args.noise:g}" if args.noise else "auto",
                  "What auto runs outside the shipped families (planes mode)", body)


if __name__ == "__main__":
    main()
