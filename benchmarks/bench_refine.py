"""How many data-consistency iterations should follow a ZMD draw? Measured on validation shards, not test sets.

Usage: python benchmarks/bench_refine.py [--data default=data/default-val256,default=data/natural-val]
       [--n 12] [--iterations 10,50,200]
       (validation shards with each sample's own microscope: scripts/build_bench_val.sh and
       scripts/build_select_val.sh build these two)

Per image: one ZMD draw (the card's steps and temperature, seed 1000 + index), then
``chromaqpi.solvers.iterative.refine`` from it with the reduced quadrature for each iteration budget
(``reconstruct(..., method="zmd", refine=K)``). Scores: offset-aligned nMAE (median offset, as
accuracy.md), its ratio to the ZMD draw, the images it improved, the data residual over the noise
(``chromaqpi.data_fit``) and seconds per image. Writes benchmarks/results/refine.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import folder_items, markdown_table, model_steps, write_results
from chromaqpi.metrics import normalised_mae
from chromaqpi.models.registry import reconstruct_with_model
from chromaqpi.solvers.iterative import refine

DATA = "default=data/default-val256,default=data/natural-val"


def score_folder(model: str, folder: str, n: int, budgets: list[int]) -> dict[str, dict]:
    rows = {name: {"nmae": [], "residual": [], "seconds": []} for name in ["zmd", *(f"zmd+refine{k}" for k in budgets)]}
    for i, (images, true, scope) in enumerate(tqdm(folder_items(folder, n), desc=folder, leave=False)):
        start = time.perf_counter()
        estimate = reconstruct_with_model(images, scope, kind="zmd", model=model,
                                          generator=torch.Generator().manual_seed(1000 + i)).double()
        maps = {"zmd": (estimate, time.perf_counter() - start)}
        for k in budgets:
            start = time.perf_counter()
            maps[f"zmd+refine{k}"] = (refine(images, scope, [estimate], steps=k, fast=True).double(),
                                      maps["zmd"][1] + time.perf_counter() - start)
        for name, (phase, seconds) in maps.items():
            rows[name]["nmae"].append(float(normalised_mae(phase[0], true, align="median")))
            rows[name]["residual"].append(chromaqpi.data_fit(images, phase, scope)[0].residual_over_noise)
            rows[name]["seconds"].append(seconds)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="comma-separated MODEL=FOLDER pairs (validation shards)")
    parser.add_argument("--n", type=int, default=12, help="first n images of each folder")
    parser.add_argument("--iterations", default="10,50,200", help="comma-separated refinement budgets")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    budgets = [int(k) for k in args.iterations.split(",") if k]
    runs = [pair.split("=") for pair in args.data.split(",") if pair]
    steps = model_steps(list(dict.fromkeys(m for m, _ in runs)), None)
    header = ["model", "validation folder", "images", "row", "nMAE", "vs zmd", "images better than zmd",
              "residual / noise (median)", "s/image"]
    table = []
    for model, folder in runs:
        rows = score_folder(model, folder, args.n, budgets)
        ref = rows["zmd"]["nmae"]
        for name, v in rows.items():
            better = sum(a < b for a, b in zip(v["nmae"], ref))
            table.append([model, folder, len(ref), name, f"{np.mean(v['nmae']):.4f}",
                          f"{np.mean(v['nmae']) / np.mean(ref):.3f}", "-" if name == "zmd" else f"{better}/{len(ref)}",
                          f"{np.median(v['residual']):.3g}", f"{np.mean(v['seconds']):.1f}"])
        print(markdown_table(header, table[-len(rows):]), flush=True)
    write_results("refine", "Data-consistency iterations after a ZMD draw, on validation images",
                  f"ZMD: one draw of {steps} DDIM steps at the card's temperature (seed 1000 + image index); "
                  "refinement: the iterative solver (reduced quadrature, automatic TV weight, early stopping) started "
                  "from it, with each sample's own microscope. nMAE offset-aligned by the median (as accuracy.md); "
                  "'s/image' includes the draw.\n\n" + markdown_table(header, table))


if __name__ == "__main__":
    main()
