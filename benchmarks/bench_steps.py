"""What do fewer DDIM steps cost? ZMD accuracy and time against the step count, on validation images.

Usage: python benchmarks/bench_steps.py [--n 16] [--steps 5,10,25,50]
       [--data default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,...]
       (validation shards, where a choice is made; built by scripts/build_bench_val.sh)
       python benchmarks/bench_steps.py --sets phantoms-test,... --n 8
       (the test sets, to measure a choice afterwards; writes steps-test.md)

Sampling time grows linearly with the step count (the noise network runs once per step). This is where
each shipped model's recommended count (its card's `sampling.steps`, what `chromaqpi reconstruct` uses
when given none) is chosen; the other results use that count. Per image (a validation
image brings its own microscope from the shard): one draw per step count from the same seed, and the
mean net as a reference. Scores: offset-aligned
nMAE and MS-SSIM (fixed range: the folder's largest truth range); 'vs 25' divides by the 25-step row
of the same run. Seconds: the mean wall time per image of that row in this run (2 threads unless
OMP_NUM_THREADS says otherwise); a job sharing the cores inflates them. Writes
benchmarks/results/steps.md (steps-test.md with --sets).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from _common import markdown_table, write_results
from bench_orientations import add_source_args, source_runs
from chromaqpi.metrics import ms_ssim, normalised_mae
from chromaqpi.models.registry import reconstruct_with_model

DATA = "default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,paper-rgb=data/paper-rgb-val"


def score_rows(model: str, items: list[tuple], label: str, rows: list[tuple[str, str, dict]]) -> dict:
    """Row name -> mean nMAE, MS-SSIM and seconds per image over the items, plus ``per_image`` nMAE.
    Rows are (name, kind, options of ``reconstruct_with_model``); every row of image i draws from
    seed 1000 + i."""
    data_range = max(float(true.max() - true.min()) for _, true, _ in items)
    out = {name: {"nmae": [], "ms_ssim": [], "seconds": []} for name, _, _ in rows}
    images, _, microscope = items[0]  # untimed warm-up: model loading and first-call set-up
    reconstruct_with_model(images, microscope, kind="zmd", model=model, steps=1)
    for i, (images, true, microscope) in enumerate(tqdm(items, desc=label, leave=False)):
        for name, kind, options in rows:
            started = time.perf_counter()
            phase = reconstruct_with_model(images, microscope, kind=kind, model=model,
                                           generator=torch.Generator().manual_seed(1000 + i), **options)
            out[name]["seconds"].append(time.perf_counter() - started)
            est = phase[0].double()
            out[name]["nmae"].append(float(normalised_mae(est, true, align="mean")))
            out[name]["ms_ssim"].append(float(ms_ssim(est, true, data_range=data_range, align="mean")))
    return {name: {key: float(np.mean(v)) for key, v in s.items()} | {"per_image": s["nmae"]}
            for name, s in out.items()}


def score(model: str, items: list[tuple], label: str, steps: list[int]) -> dict[str, dict[str, float]]:
    """Row ("mean" or "zmd K": one draw at the card's temperature) -> scores, as :func:`score_rows`."""
    return score_rows(model, items, label, [("mean", "mean", {})] + [(f"zmd {k}", "zmd", {"steps": k}) for k in steps])


def write_sweep(args, stem: str, what: str, description: str, header: list[str], rows: list[list]) -> None:
    """``<stem>.md`` (validation folders) or ``<stem>-test.md`` (``--sets``)."""
    name, where = (f"{stem}-test", "test") if args.sets else (stem, "validation")
    write_results(name + args.suffix, f"{what} ({where})", description + "\n\n" + markdown_table(header, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, DATA)
    parser.add_argument("--steps", default="5,10,25,50", help="comma-separated DDIM step counts (25 is always run)")
    args = parser.parse_args()
    steps = sorted({int(k) for k in args.steps.split(",")} | {25})
    torch.set_flush_denormal(True)
    runs = source_runs(args)
    header = ["model", "test set" if args.sets else "validation folder", "images", "row", "nMAE aligned", "MS-SSIM",
              "nMAE vs 25", "MS-SSIM vs 25", "s/image", "time vs 25"]
    rows = []
    for model, folder, load in runs:
        items = load(args.n)
        r = score(model, items, folder, steps)
        ref = r["zmd 25"]
        for name, v in r.items():
            rows.append([model, folder, len(items), name, f"{v['nmae']:.4f}", f"{v['ms_ssim']:.4f}",
                         f"{v['nmae'] / ref['nmae']:.3f}", f"{v['ms_ssim'] / ref['ms_ssim']:.3f}",
                         f"{v['seconds']:.2f}", f"{v['seconds'] / ref['seconds']:.2f}"])
        print(markdown_table(header, rows[-len(r):]), flush=True)
    write_sweep(args, "steps", "ZMD accuracy and time against the number of DDIM steps",
                "Shipped models, one ZMD draw per step count (DDIM, eta 0, the card's temperature for one draw "
                "since 2026-12-06, T=1 before; draw seed 1000 + image index, one orientation), the mean net for "
                "reference; offset-aligned metrics; 'vs 25' = ratio to the 25-step draw in the same run.",
                header, rows)

if __name__ == "__main__":
    main()
