"""How much an unknown focus error costs each method on the paper presets.

Usage: python benchmarks/bench_focus_error.py [--n 8] [--shifts -0.5,-0.2,0,0.2,0.5] [--steps K]
       [--sets paper-2shot-test,paper-rgb-test]

The paper presets image their planes at fixed defocus (paper-2shot: -1 and +1 µm; paper-rgb:
all three at +1 µm), and their families train at exactly those positions (paper-2shot) or at
0.01-3 µm per plane (paper-rgb). A user focuses by eye, so the whole stack sits delta µm off
where the declared preset says. Each test object is re-simulated (noiseless, like the set) with
every plane moved by delta, and every method is given the *declared* preset microscope: the
error is unknown to it, so the card's envelope cannot warn either. `tie (true z)` is TIE given
the shifted microscope, the reference for what knowing the focus would recover. At delta = 0
the re-simulation must reproduce the stored test images (checked). Scores: offset-aligned nMAE
(mean offset), mean over images, and its ratio to delta = 0. Writes benchmarks/results/focus-error.md.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import markdown_table, steps_of_run, write_results
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.errors import ConfigError
from chromaqpi.metrics import normalised_mae
from chromaqpi.solvers.focus import shift_focus

METHODS = ("tie", "tie (true z)", "mean", "zmd")


def estimate(method: str, images, declared, actual, model: str, steps: int, seed: int) -> torch.Tensor:
    if method == "tie (true z)":
        return chromaqpi.reconstruct(images, actual, method="tie")[0]
    opts = {"model": model} if method in ("mean", "zmd") else {}
    if method == "zmd":
        opts.update(steps=steps, samples=1, generator=torch.Generator().manual_seed(seed))
    return chromaqpi.reconstruct(images, declared, method=method, **opts)[0]


def score_set(name: str, n: int, shifts: list[float], steps: int) -> dict:
    spec = get_evalset(name)
    nmae = {(d, m): [] for d in shifts for m in METHODS}
    for i, s in enumerate(tqdm(load_evalset(name, n=n), desc=name)):
        phase = s.phase.double()
        for d in shifts:
            actual = shift_focus(s.microscope, d)
            with torch.no_grad():
                images = chromaqpi.simulate(phase.float(), actual, noise=spec.noise)
            if d == 0:
                gap = float((images[0] - s.images).abs().max())
                assert gap < 1e-4, f"{name} image {i}: re-simulation differs from the stored image by {gap}"
            for method in METHODS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    est = estimate(method, images, s.microscope, actual, spec.microscope, steps, 1000 + i)
                nmae[d, method].append(float(normalised_mae(est.double(), phase, align="mean")))
    return {key: float(np.mean(v)) for key, v in nmae.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per set")
    parser.add_argument("--shifts", default="-0.5,-0.2,0,0.2,0.5", help="comma-separated delta (µm); must include 0")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD draw (default: the count the model's card recommends)")
    parser.add_argument("--sets", default="paper-2shot-test,paper-rgb-test")
    args = parser.parse_args()
    args.steps = steps_of_run(args.sets.split(","), args.steps)
    shifts = [float(s) for s in args.shifts.split(",")]
    if 0.0 not in shifts:
        parser.error("--shifts must include 0 (the reference)")
    try:
        noisy = [name for name in args.sets.split(",") if get_evalset(name).noise]
    except ConfigError as err:
        parser.error(str(err))
    if noisy:  # re-simulation draws fresh noise: the delta = 0 images could not match the stored ones
        parser.error(f"--sets takes noiseless test sets only, not {', '.join(noisy)}")
    torch.set_flush_denormal(True)
    started = datetime.now()
    header = ["test set", "delta (µm)"] + [f"nMAE {m}" for m in METHODS] + [f"{m} / in focus" for m in METHODS]
    rows = []
    for name in args.sets.split(","):
        mean = score_set(name, args.n, shifts, args.steps)
        rows += [[name, f"{d:+g}"] + [f"{mean[d, m]:.4f}" for m in METHODS]
                 + [f"{mean[d, m] / mean[0.0, m]:.3f}" for m in METHODS] for d in shifts]
        print(markdown_table(header, rows[-len(shifts):]), flush=True)
    body = (f"Shipped ZMD models of each set's preset; first {args.n} images of each test set, re-simulated "
            f"noiseless with every plane moved by delta; every method but `tie (true z)` is given the declared "
            f"preset; ZMD one {args.steps}-step DDIM draw at the card's temperature (seed 1000 + image index); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + markdown_table(header, rows))
    write_results("focus-error", "Cost of an unknown focus error on the paper presets", body)


if __name__ == "__main__":
    main()
