"""Can the images tell where the stack sits along z? `solvers.focus.estimate_focus_offset` measured.

Usage: python benchmarks/bench_focus_estimate.py [--n 8] [--shifts -0.5,-0.2,0,0.2,0.5]
       [--sets paper-2shot-test,paper-rgb-test,paper-2shot-noisy-test,phantoms-test]
       [--search 0.7] [--step 0.1]

The set-up of bench_focus_error.py: each test object re-simulated (with the set's noise: fresh
draws on a noisy set) with every plane (RGB mode: the nominal focus) moved by delta, the method
told the declared preset. The estimator fits one shared offset from the images alone (trial
offsets -search..+search in steps of `step`, parabola-refined).
Reported per delta: mean estimate, mean |estimate - delta|, share of images within 0.1 µm, and the
nMAE (offset-aligned, mean) of WOTF given the declared microscope, the estimated one and the true
one: the phase a user gains by fitting the focus. Writes benchmarks/results/focus-estimate.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import markdown_table, write_results
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.errors import ConfigError
from chromaqpi.metrics import normalised_mae
from chromaqpi.solvers import wotf
from chromaqpi.solvers.focus import estimate_focus_offset, shift_focus

SCOPES = ("declared", "estimated", "true z")


def score_set(name: str, n: int, shifts: list[float], search: float, step: float, scale: float) -> dict:
    spec = get_evalset(name)
    est = {d: [] for d in shifts}
    nmae = {(d, s): [] for d in shifts for s in SCOPES}
    for i, s in enumerate(tqdm(load_evalset(name, n=n), desc=name)):
        phase = scale * s.phase.double()
        for k, d in enumerate(shifts):
            actual = shift_focus(s.microscope, d)
            noise = torch.Generator().manual_seed(1000 * i + k)  # a noisy set's fresh draws, reproducible
            with torch.no_grad():
                images = chromaqpi.simulate(phase.float(), actual, noise=spec.noise, generator=noise)
            fit = estimate_focus_offset(images[0], s.microscope, search_um=search, step_um=step)
            est[d].append(fit.offset_um)
            for scope_name, scope in zip(SCOPES, (s.microscope, fit.microscope, actual)):
                out = chromaqpi.reconstruct(images, scope, method="wotf")[0]
                nmae[d, scope_name].append(float(normalised_mae(out.double(), phase, align="mean")))
    return {"est": est, "nmae": {k: float(np.mean(v)) for k, v in nmae.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per set")
    parser.add_argument("--shifts", default="-0.5,-0.2,0,0.2,0.5", help="comma-separated true delta (µm)")
    parser.add_argument("--sets", default="paper-2shot-test,paper-rgb-test,paper-2shot-noisy-test,phantoms-test")
    parser.add_argument("--search", type=float, default=0.7, help="largest trial offset (µm)")
    parser.add_argument("--step", type=float, default=0.1, help="trial offset step (µm)")
    parser.add_argument("--phase-scale", type=float, default=1.0,
                        help="multiply each test phase by this before re-simulating (weak-object check; "
                             "writes focus-estimate-phase<S>x.md)")
    args = parser.parse_args()
    if not args.phase_scale > 0:
        parser.error(f"--phase-scale must be > 0, got {args.phase_scale}")
    shifts = [float(s) for s in args.shifts.split(",")]
    try:
        for name in args.sets.split(","):
            get_evalset(name)
    except ConfigError as err:
        parser.error(str(err))
    # The trial microscopes are the same for every image of a set: keep all their transfer functions.
    wotf._TF_CACHE_SIZE = max(wotf._TF_CACHE_SIZE, 4 * int(round(args.search / args.step)) + 8)
    torch.set_flush_denormal(True)
    started = datetime.now()
    header = (["test set", "delta (µm)", "mean estimate (µm)", "mean |error| (µm)", "within 0.1 µm"]
              + [f"nMAE wotf, {s}" for s in SCOPES] + ["estimated / declared"])
    rows = []
    for name in args.sets.split(","):
        res = score_set(name, args.n, shifts, args.search, args.step, args.phase_scale)
        for d in shifts:
            e = np.array(res["est"][d])
            m = [res["nmae"][d, s] for s in SCOPES]
            rows.append([name, f"{d:+g}", f"{e.mean():+.3f}", f"{np.abs(e - d).mean():.3f}",
                         f"{int((np.abs(e - d) <= 0.1).sum())}/{len(e)}"]
                        + [f"{v:.4f}" for v in m] + [f"{m[1] / m[0]:.3f}"])
        print(markdown_table(header, rows[-len(shifts):]), flush=True)
    scaled = "" if args.phase_scale == 1 else f" with their phase multiplied by {args.phase_scale:g}"
    body = (f"First {args.n} images of each test set{scaled}, re-simulated with every plane (or the nominal focus) moved "
            f"by delta (as in focus-error.md; a noisy set draws fresh noise, seed 1000 * image + shift index); "
            f"the estimator sees only the images "
            f"and the declared preset (trial offsets ±{args.search:g} µm in steps of {args.step:g}); WOTF with its "
            f"default options; "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + markdown_table(header, rows))
    name = "focus-estimate" if args.phase_scale == 1 else f"focus-estimate-phase{args.phase_scale:g}x"
    write_results(name, "Estimating an unknown focus offset from the images", body)


if __name__ == "__main__":
    main()
