"""The shipped `default` model on Bayer-camera images, before and after the session-24 demosaicing fix.

Usage: python benchmarks/bench_bayer.py [--n 16] [--data data/default-val]

Until session 24 the simulator's bilinear demosaicing interpolated G with the R/B kernel, so every G
sample was averaged with its four diagonal G neighbours; about half of `default`'s training samples were
Bayer-mode and simulated that way. A real bilinear-demosaiced camera keeps its G samples (the fixed
simulator). This measures what the mismatch costs: validation phase maps (the first n of the folder),
each re-simulated with its own recorded microscope three ways -- no mosaic, Bayer with the fixed
demosaicer, Bayer with the old one (re-created here) -- from the same noise seed, and reconstructed with
TIE and the mean network `auto` runs. Offset-aligned nMAE (mean offset), mean over images.
Writes benchmarks/results/bayer.md.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime

import numpy as np
import torch
import torch.nn.functional as F

import chromaqpi
from _common import folder_items, markdown_table, write_results
from chromaqpi.metrics import normalised_mae
from chromaqpi.optics import sensor as sensor_module

METHODS = ("tie", "mean")


def old_demosaic(raw: torch.Tensor) -> torch.Tensor:
    """The pre-session-24 demosaicer: the R/B kernel for all three channels (G samples smoothed)."""
    masks = sensor_module.bayer_masks(raw.shape[-2:], dtype=raw.dtype, device=raw.device)[None]
    kernel = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=raw.dtype,
                          device=raw.device).expand(3, 1, 3, 3)
    sampled = F.pad(raw * masks, (1, 1, 1, 1), mode="reflect")
    weight = F.pad(masks.expand(raw.shape[0], -1, -1, -1), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(sampled, kernel, groups=3) / F.conv2d(weight, kernel, groups=3)


def simulate(phase, scope, variant: str, seed: int) -> torch.Tensor:
    bayer = variant != "no mosaic"
    scope = scope.replace(sensor={"bayer": bayer})
    fixed = sensor_module.demosaic_bilinear
    if variant == "Bayer, old demosaicer":
        sensor_module.demosaic_bilinear = old_demosaic
    try:
        with torch.no_grad():
            return chromaqpi.simulate(phase.float(), scope, noise=True, generator=torch.Generator().manual_seed(seed))
    finally:
        sensor_module.demosaic_bilinear = fixed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="validation images")
    parser.add_argument("--data", default="data/default-val", help="validation shard folder (default family)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    started = datetime.now()
    items = folder_items(args.data, args.n)
    variants = ("no mosaic", "Bayer, fixed demosaicer", "Bayer, old demosaicer")
    scores = {(v, m): [] for v in variants for m in METHODS}
    for i, (_, phase, scope) in enumerate(items):
        for variant in variants:
            images = simulate(phase, scope, variant, seed=i)
            for m in METHODS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # family warnings: these are family draws
                    est = chromaqpi.reconstruct(images, scope.replace(sensor={"bayer": variant != "no mosaic"}),
                                                method=m, **({"model": "default"} if m == "mean" else {}))[0]
                scores[variant, m].append(float(normalised_mae(est.double(), phase, align="mean")))
    rows = [[v] + [f"{np.mean(scores[v, m]):.4f}" for m in METHODS]
            + [f"{np.mean(scores[v, 'mean']) / np.mean(scores['no mosaic', 'mean']):.3f}"] for v in variants]
    header = ["images"] + [f"nMAE {m}" for m in METHODS] + ["mean net vs no mosaic"]
    body = (f"First {len(items)} samples of {args.data}, each re-simulated with its recorded microscope (camera noise, "
            f"seed = index) three ways; mean net = the shipped `default` model; "
            f"{(datetime.now() - started).seconds / 60:.1f} min.\n\n" + markdown_table(header, rows))
    write_results("bayer", "The default model on Bayer images, old and fixed demosaicing", body)


if __name__ == "__main__":
    main()
