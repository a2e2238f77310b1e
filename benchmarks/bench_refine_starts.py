"""Which start should data-consistency refinement use? Measured on validation shards, not test sets.

Usage: python benchmarks/bench_refine_starts.py --data data/paper-2shot-lownoise-val,data/paper-2shot-val
       [--model paper-2shot] [--n 16] [--steps 200] [--zmd-steps K]
       (the folders are the shipped recipe's validation shards: scripts/train_shipped.sh builds them)

Per image: ZMD (one seeded draw of the card's recommended DDIM steps, or --zmd-steps), then ``refine`` with the iterative solver's 200-iteration
budget from the ZMD estimate, from the TIE estimate, and from both keeping the lower objective
(``refine_starts="model+tie"``). Prints and writes benchmarks/results/refine_starts.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

import torch
from tqdm import tqdm

from _common import markdown_table, model_steps, write_results
from chromaqpi.datasets.torch_data import ShardDataset
from chromaqpi.metrics import normalised_mae
from chromaqpi.microscope import Microscope
from chromaqpi.models.registry import read_card, reconstruct_with_model, resolve_model_dir
from chromaqpi.solvers.iterative import refine
from chromaqpi.solvers.tie import tie

ROWS = ("zmd", "zmd+refine", "tie+refine", "both starts, lower objective")


def score_folder(folder: str, model: str, microscope: Microscope, n: int, steps: int,
                 zmd_steps: int) -> dict[str, float]:
    data = ShardDataset(folder, augment=False)
    errors = {row: [] for row in ROWS}
    picked_tie = 0
    for i in tqdm(range(min(n, len(data))), desc=folder, leave=False):
        item = data[i]
        images, true = item["input"][None].float(), item["target"][0].double()
        zmd = reconstruct_with_model(images, microscope, kind="zmd", model=model, steps=zmd_steps,
                                     generator=torch.Generator().manual_seed(1000 + i))
        start_tie = tie(images, microscope)
        fits = {"zmd": zmd,
                "zmd+refine": refine(images, microscope, zmd, steps=steps, fast=True),
                "tie+refine": refine(images, microscope, start_tie, steps=steps, fast=True),
                ROWS[3]: refine(images, microscope, [zmd, start_tie], steps=steps, fast=True)}
        # the kept fit is refitted at the common weight, so it only approximately equals either single-start fit
        kept = fits[ROWS[3]]
        picked_tie += bool((kept - fits["tie+refine"]).norm() < (kept - fits["zmd+refine"]).norm())
        for row, phase in fits.items():
            errors[row].append(float(normalised_mae(phase[0].double(), true, align="mean")))
    out = {row: sum(v) / len(v) for row, v in errors.items()}
    out["images"] = len(errors["zmd"])
    out["picked_tie"] = picked_tie
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="comma-separated validation shard folders")
    parser.add_argument("--model", default="paper-2shot", help="ZMD model, shipped name or directory (its card's "
                        "preset is the microscope)")
    parser.add_argument("--n", type=int, default=16, help="first n images of each folder")
    parser.add_argument("--steps", type=int, default=200, help="refinement iterations")
    parser.add_argument("--zmd-steps", type=int, default=None,
                        help="DDIM steps of the ZMD start (default: the count the model's card recommends)")
    args = parser.parse_args()
    args.zmd_steps = model_steps([args.model], args.zmd_steps)
    torch.set_flush_denormal(True)
    microscope = Microscope.from_preset(read_card(resolve_model_dir(args.model))["microscope_preset"])
    header = ["validation folder", "images", *ROWS, "TIE fit kept"]
    rows = []
    for folder in args.data.split(","):
        r = score_folder(folder, args.model, microscope, args.n, args.steps, args.zmd_steps)
        rows.append([folder, r["images"], *(f"{r[row]:.4f}" for row in ROWS), r["picked_tie"]])
        print(markdown_table(header, rows[-1:]), flush=True)
    body = (f"_measured {datetime.now():%Y-%m-%d %H:%M} with `{' '.join(sys.argv)}`_\n\n"
            f"Offset-aligned normalised MAE (MAE·2/3.5) of the `{args.model}` model (one {args.zmd_steps}-step DDIM "
            f"draw at the card's temperature) and {args.steps}-iteration "
            "data-consistency fits from each start; 'both starts' keeps, per image, the fit with the lower "
            "objective (data misfit + TV prior at one common weight), as `--refine-starts model+tie` does. "
            "'TIE fit kept' counts the images where the kept fit is nearer the TIE start's fit than the ZMD start's.\n\n"
            + markdown_table(header, rows))
    write_results("refine_starts", "Refinement starts on validation images", body)


if __name__ == "__main__":
    main()
