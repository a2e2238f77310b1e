"""Does reconstructing large images in tiles cost accuracy? Measured on validation shards, not test sets.

Usage: python benchmarks/bench_tiles.py [--data data/default-val512:default,...] [--n 8]
       [--tiles 128,256,512] [--methods mean,zmd] [--name tiles]
       (512 px validation shards: bash scripts/build_bench_val.sh large builds them)

The learned models see 256 px windows in training; `reconstruct` cuts larger images into
overlapping tiles (48 px), blends them smoothly and harmonises the tiles' constant offsets
(:mod:`chromaqpi.tiling`). Here each image is reconstructed with several tile sides, the largest
covering the whole image in one pass (the U-Nets are convolutional, so any multiple of 16 runs),
and the errors are compared: offset-aligned normalised MAE; the MAE of the error's large-scale
part (Gaussian low-pass, sigma 32 px), where per-tile offsets and tilts would show; and the ratio
of the error's fine part (error minus that low-pass) on the tiles' blend zones to elsewhere, where
seams would show (1 = none). ZMD is one seeded draw at the card's steps and temperature.
Writes benchmarks/results/tiles.md (or --name).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

import torch
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from _common import markdown_table, write_results
from chromaqpi.datasets.torch_data import ShardDataset
from chromaqpi.metrics import normalised_mae
from chromaqpi.microscope import Microscope
from chromaqpi.models.registry import read_card, reconstruct_with_model, resolve_model_dir
from chromaqpi.tiling import tile_starts

OVERLAP = 48
SIGMA_PX = 32
SEAM_HALF_WIDTH = 8
CONTROL_TILE = 256


def overlap_for(tile: int) -> int:
    """The tiles' overlap: reconstruct's default 48 px (a quarter of the side for tiles under 192 px)."""
    return min(OVERLAP, tile // 4)


def seam_mask(h: int, w: int, tile: int) -> torch.Tensor:
    """True within SEAM_HALF_WIDTH px of the middle of every overlap between neighbouring tiles."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for length, axis in ((h, 0), (w, 1)):
        starts = tile_starts(length, min(tile, length), overlap_for(tile))
        for a, b in zip(starts, starts[1:]):
            middle = (b + a + min(tile, length)) // 2
            lo, hi = max(middle - SEAM_HALF_WIDTH, 0), middle + SEAM_HALF_WIDTH
            if axis == 0:
                mask[lo:hi, :] = True
            else:
                mask[:, lo:hi] = True
    return mask


def error_parts(phase: torch.Tensor, true: torch.Tensor, tile: int) -> tuple[float, float, float]:
    """(nMAE aligned, low-pass MAE in rad, seam ratio) of one estimate."""
    err = (phase.double() - true).numpy()
    err = err - err.mean()
    low = gaussian_filter(err, SIGMA_PX, mode="reflect")
    fine = torch.as_tensor(abs(err - low))
    # a one-pass row has no blend zones: it is scored on the 256 px tiling's (a control, ~1)
    mask = seam_mask(*true.shape, tile if tile < max(true.shape) else CONTROL_TILE)
    seam = float(fine[mask].mean() / fine[~mask].mean()) if mask.any() and (~mask).any() else float("nan")
    return float(normalised_mae(phase.double(), true, align="mean")), float(abs(low).mean()), seam


def score(folder: str, model: str, methods: list[str], tiles: list[int], n: int) -> dict:
    microscope = Microscope.from_preset(read_card(resolve_model_dir(model))["microscope_preset"])
    data = ShardDataset(folder, augment=False)
    sums: dict = {}
    count = min(n, len(data))
    for i in tqdm(range(count), desc=folder, leave=False):
        item = data[i]
        images, true = item["input"][None].float(), item["target"][0].double()
        for method in methods:
            for tile in tiles:
                phase = reconstruct_with_model(images, microscope, kind=method, model=model, tile=tile,
                                               overlap=overlap_for(tile), generator=torch.Generator().manual_seed(1000 + i))
                parts = error_parts(phase[0], true, tile)
                acc = sums.setdefault((method, tile), [0.0, 0.0, 0.0])
                for k, v in enumerate(parts):
                    acc[k] += v / count
    return {"images": count, "size": tuple(true.shape), "rows": sums}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/default-val512:default,data/paper-2shot-lownoise-val512:paper-2shot,"
                        "data/paper-2shot-val512:paper-2shot,data/paper-rgb-val512:paper-rgb",
                        help="comma-separated FOLDER:MODEL pairs")
    parser.add_argument("--n", type=int, default=8, help="first n images of each folder")
    parser.add_argument("--tiles", default="128,256,512", help="tile sides (px); one >= the image side is one pass")
    parser.add_argument("--methods", default="mean,zmd")
    parser.add_argument("--name", default="tiles", help="results file benchmarks/results/NAME.md")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    tiles = [int(t) for t in args.tiles.split(",")]
    methods = args.methods.split(",")
    header = ["folder", "model", "images", "method", "tile (px)", "nMAE aligned", "vs largest tile",
              "low-pass MAE (rad)", "seam ratio"]
    rows = []
    for pair in args.data.split(","):
        folder, model = pair.split(":")
        r = score(folder, model, methods, tiles, args.n)
        for method in methods:
            ref = r["rows"][(method, tiles[-1])][0]
            for tile in tiles:
                nmae, low, seam = r["rows"][(method, tile)]
                rows.append([folder, model, r["images"], method, tile if tile < max(r["size"]) else f"{tile} (one pass)",
                             f"{nmae:.4f}", f"{nmae / ref:.3f}", f"{low:.4f}", f"{seam:.3f}"])
        print(markdown_table(header, rows), flush=True)
    body = (f"_measured {datetime.now():%Y-%m-%d %H:%M} with `{' '.join(sys.argv)}`_\n\n"
            f"Shipped models on validation images; tiles overlap by {OVERLAP} px (a quarter of smaller tiles). 'vs largest tile': nMAE over the "
            f"same method's row with the largest tile side. 'low-pass MAE': mean |error| after a Gaussian low-pass "
            f"(sigma {SIGMA_PX} px) of the offset-aligned error. 'seam ratio': mean fine-scale |error| within "
            f"{SEAM_HALF_WIDTH} px of the middle of the tiles' overlaps over that elsewhere (1: no seam; a one-pass "
            f"row is scored on the {CONTROL_TILE} px tiling's zones, as a control).\n\n" + markdown_table(header, rows))
    write_results(args.name, "Large images: tiled against one-pass reconstruction", body)


if __name__ == "__main__":
    main()
