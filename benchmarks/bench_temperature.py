"""What does a cooler diffusion chain give? ZMD accuracy against the sampling temperature, on validation images.

Usage: python benchmarks/bench_temperature.py [--n 16] [--temperatures 0,0.25,0.5,0.75,1]
       [--data default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,...]
       (validation shards, where the choice is made; built by scripts/build_bench_val.sh, paper-rgb-val
       as its header says)
       python benchmarks/bench_temperature.py --sets phantoms-test,... --n 8
       (the test sets, to measure the choice afterwards; writes temperature-test.md)

The temperature multiplies the chain's start noise (DDIM with eta 0 draws no other), so 1 draws from
the learned posterior and 0 gives one deterministic estimate. A single draw is a point estimate; a
cooler one sits nearer the posterior's centre, which is what a point estimate should be. The shipped
models' card value (``sampling.temperature``, what ``reconstruct`` uses for one draw when given none)
is chosen here. Per image (a validation image brings its own microscope from the shard): one draw per
temperature from the same seed at the card's step count, the mean net, and the mean of four D4 views at
temperature 1 (what ``samples=4`` returns) for reference. Scores: offset-aligned nMAE and MS-SSIM
(fixed range: the folder's largest truth range); 'vs T=1' divides by the temperature-1 draw of the same
run. Writes benchmarks/results/temperature.md (temperature-test.md with --sets).
"""

from __future__ import annotations

import argparse

import torch

from _common import markdown_table, model_steps
from bench_orientations import add_source_args, source_runs
from bench_steps import score_rows, write_sweep

DATA = ("default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,paper-2shot=data/paper-2shot-val,"
        "paper-rgb=data/paper-rgb-val")


def rows_for(temperatures: list[float], steps: int) -> list[tuple[str, str, dict]]:
    """(row name, kind, options) in run order."""
    rows = [("mean", "mean", {})]
    rows += [(f"zmd T={t:g}", "zmd", {"steps": steps, "temperature": t}) for t in temperatures]
    return rows + [("zmd-mean4 views, T=1", "zmd", {"steps": steps, "samples": 4, "temperature": 1.0})]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, DATA)
    parser.add_argument("--temperatures", default="0,0.25,0.5,0.75,1",
                        help="comma-separated temperatures (1 is always run)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps per draw (default: the count the models' cards recommend)")
    args = parser.parse_args()
    temperatures = sorted({float(t) for t in args.temperatures.split(",")} | {1.0})
    torch.set_flush_denormal(True)
    runs = source_runs(args)
    steps = model_steps([model for model, _, _ in runs], args.steps)
    header = ["model", "test set" if args.sets else "validation folder", "images", "row", "nMAE aligned", "MS-SSIM",
              "nMAE vs T=1", "MS-SSIM vs T=1", "images better than T=1", "s/image"]
    rows = []
    for model, folder, load in runs:
        items = load(args.n)
        r = score_rows(model, items, folder, rows_for(temperatures, steps))
        ref = r["zmd T=1"]
        for name, v in r.items():
            better = sum(a < b for a, b in zip(v["per_image"], ref["per_image"]))
            rows.append([model, folder, len(items), name, f"{v['nmae']:.4f}", f"{v['ms_ssim']:.4f}",
                         f"{v['nmae'] / ref['nmae']:.3f}", f"{v['ms_ssim'] / ref['ms_ssim']:.3f}",
                         "-" if name == "zmd T=1" else f"{better}/{len(items)}", f"{v['seconds']:.2f}"])
        print(markdown_table(header, rows[-len(r):]), flush=True)
    write_sweep(args, "temperature", "ZMD accuracy against the sampling temperature",
                f"Shipped models, one ZMD draw per temperature (DDIM, eta 0, {steps} steps, draw seed 1000 + image "
                "index, one orientation); the mean net and the mean of 4 D4-view draws at T=1 for reference; "
                "offset-aligned metrics; 'vs T=1' = ratio to the temperature-1 draw of the same run, 'images "
                "better' counts the images whose nMAE is lower than that draw's.", header, rows)

if __name__ == "__main__":
    main()
