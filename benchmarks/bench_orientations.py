"""Do draws over the D4 orientations (``orientations=True``) beat draws in one orientation?

Usage: python benchmarks/bench_orientations.py [--n 16]
       [--data default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,...]
       (validation shards, where the choice is made: 16 samples of 256 px each with the shipped
       recipe's sources and validation seeds, built by scripts/build_bench_val.sh)
       python benchmarks/bench_orientations.py --sets phantoms-test,... --n 8
       (the test sets, to measure the choice afterwards; writes orientations-test.md)

The simulator commutes with every D4 element that the microscope allows (datasets/augment.py),
so a turned or flipped image is an equally valid input; the networks learnt the group only from
training augmentation. Per image (each with its own microscope from the shard): the mean net in
one view and averaged over 8 views; ZMD with 1 draw, 4 draws in one view and 4 draws in 4 views.
Scores: offset-aligned nMAE, MS-SSIM (fixed range: the folder's largest truth range) and, for the
4-draw rows, RMSE / RMS(std) and 1-std coverage of their spread. Writes
benchmarks/results/orientations.md (orientations-test.md with --sets).
"""

from __future__ import annotations

import argparse
import functools
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

from _common import check_same_steps, folder_items, markdown_table, merge_rows, model_steps, write_results
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.metrics import align_offset, ms_ssim, normalised_mae
from chromaqpi.models.registry import reconstruct_with_model

DATA = ("default=data/default-val256,paper-2shot=data/paper-2shot-lownoise-val,"
        "paper-2shot=data/paper-2shot-val")
# row -> (kind, samples, orientations)
ROWS = {"mean": ("mean", 1, False), "mean, 8 views": ("mean", 8, True),
        "zmd": ("zmd", 1, False), "zmd-mean4, 1 view": ("zmd", 4, False), "zmd-mean4, 4 views": ("zmd", 4, True)}
# row -> the same model in one orientation (the mean net is deterministic: one evaluation)
BASELINE = {"mean": "mean", "mean, 8 views": "mean", "zmd": "zmd",
            "zmd-mean4, 1 view": "zmd-mean4, 1 view", "zmd-mean4, 4 views": "zmd-mean4, 1 view"}


def evalset_items(name: str, n: int) -> list[tuple]:
    return [(torch.as_tensor(s.images)[None].float(), torch.as_tensor(s.phase).double(), s.microscope)
            for s in load_evalset(name, n=n)]


def score(model: str, items: list[tuple], label: str, steps: int = 25) -> dict[str, dict[str, float]]:
    data_range = max(float(true.max() - true.min()) for _, true, _ in items)
    scores = {row: {"nmae": [], "ms_ssim": [], "num": 0.0, "den": 0.0, "cov1": []} for row in ROWS}
    for i, (images, true, microscope) in enumerate(tqdm(items, desc=label, leave=False)):
        for row, (kind, samples, orientations) in ROWS.items():
            phase, std = reconstruct_with_model(
                images, microscope, kind=kind, model=model, steps=steps, samples=samples, temperature=1.0,
                orientations=orientations, return_std=True, calibrated_std=False,
                generator=torch.Generator().manual_seed(1000 + i))
            est, std = phase[0].double(), std[0].double()
            s = scores[row]
            s["nmae"].append(float(normalised_mae(est, true, align="mean")))
            s["ms_ssim"].append(float(ms_ssim(est, true, data_range=data_range, align="mean")))
            if samples > 1 and kind == "zmd":
                err = (align_offset(est, true, align="mean") - true).abs()
                s["num"] += float((err ** 2).sum())
                s["den"] += float((std ** 2).sum())
                s["cov1"].append(float((err <= std).double().mean()))
    return {row: {"nmae": float(np.mean(s["nmae"])), "ms_ssim": float(np.mean(s["ms_ssim"])),
                  "ratio": (s["num"] / s["den"]) ** 0.5 if s["den"] > 0 else float("nan"),
                  "cov1": 100 * float(np.mean(s["cov1"])) if s["cov1"] else float("nan"),
                  "images": len(items)}
            for row, s in scores.items()}


def add_source_args(parser: argparse.ArgumentParser, data: str) -> None:
    """--data (validation folders, where a choice is made), --sets (test sets, to measure it) and --n."""
    parser.add_argument("--data", default=data, help="comma-separated MODEL=FOLDER pairs (validation shards)")
    parser.add_argument("--sets", default="", help="comma-separated evaluation sets instead (test sets: "
                        "only to measure a choice already made on validation)")
    parser.add_argument("--n", type=int, default=16, help="first n images of each folder or set")
    parser.add_argument("--suffix", default="", help="appended to the results file's name (e.g. for a run on "
                        "another model's folders, so that the shipped models' file is kept)")


def source_runs(args) -> list[tuple]:
    """(model, label, load) per folder or set; ``load(n)`` gives its first n items."""
    if args.sets:
        return [(get_evalset(s).microscope, s, functools.partial(evalset_items, s)) for s in args.sets.split(",")]
    return [(m, f, functools.partial(folder_items, f)) for m, f in (p.split("=") for p in args.data.split(","))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser, DATA)
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD draw (default: the count the model's card recommends)")
    parser.add_argument("--update", action="store_true", help="keep the results file's rows of the models and "
                        "folders/sets not re-run (e.g. after retraining one model)")
    args = parser.parse_args()
    runs = source_runs(args)
    args.steps = model_steps([model for model, _, _ in runs], args.steps)
    torch.set_flush_denormal(True)
    name = ("orientations-test" if args.sets else "orientations") + args.suffix
    check_same_steps(name, f"Shipped models, {args.steps} DDIM steps", args.update)
    header = ["model", "test set" if args.sets else "validation folder", "images", "row", "nMAE aligned",
              "MS-SSIM", "RMSE / RMS std", "cover 1 std (%)", "nMAE vs 1 view"]
    rows = []
    for model, label, items in runs:
        started = datetime.now()
        r = score(model, items(args.n), label, args.steps)
        for row, v in r.items():
            base = r[BASELINE[row]]
            rows.append([model, label, v["images"], row, f"{v['nmae']:.4f}", f"{v['ms_ssim']:.4f}",
                         f"{v['ratio']:.2f}", f"{v['cov1']:.1f}", f"{v['nmae'] / base['nmae']:.3f}"])
        print(markdown_table(header, rows[-len(r):]), f"({(datetime.now() - started).seconds / 60:.1f} min)",
              flush=True)
    rows, merged = merge_rows(name, header, rows, key_columns=2) if args.update else (rows, "")
    body = (f"Shipped models, {args.steps} DDIM steps at temperature 1 (posterior draws, as `samples=N` takes "
            "them; the single-draw rows too, so that only the views differ), draw seeds 1000 + image index. "
            "'N views': draw j (or the mean net's "
            "j-th evaluation) on the image under the j-th D4 element the sample's microscope allows, turned back, "
            "then averaged. 'nMAE vs 1 view' divides by the same model's row with the same number of draws in "
            f"one orientation (for the single-draw rows, itself). {merged}\n\n" + markdown_table(header, rows))
    write_results(name, f"D4 views on {'test' if args.sets else 'validation'} images", body)


if __name__ == "__main__":
    main()
