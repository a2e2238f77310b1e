"""How much saving the micrograph as 8-bit PNG or JPEG costs each method.

Usage: python benchmarks/bench_jpeg.py [--n 16] [--qualities 95,85,75,50] [--exposure 0.7] [--steps K]

Many microscope cameras and their software save colour JPEGs, and the phase signal is the small
difference between the colour channels that lossy compression (and especially chroma subsampling,
which keeps colour at half resolution) might remove or invent. This measures it on the `family`
cell scenes of bench_microscopes.py (the `default` family, sensor noise, the same seeds): each
simulated image is exposed so that the empty field reads ``--exposure`` of full scale (linear),
sRGB-encoded as a camera would, written with Pillow as an 8-bit PNG (lossless: the reference) and as
JPEGs at each quality with 4:4:4 and with 4:2:0 chroma, then read back as a user's file is
(``chromaqpi.io.read_image`` with sRGB decoding) and divided by the exposure (the flat field is known
exactly, so only the file format differs between rows). Row "float": the simulated image itself.
Scores: offset-aligned nMAE (mean offset), mean over images, and its ratio to the 8-bit PNG.
TIE and WOTF get each image's exact microscope; the `default` networks do not.
Writes benchmarks/results/jpeg.md.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from _common import model_steps, write_results
from bench_microscopes import METHODS, add_scene_arguments, class_sample, reconstruct_methods, variant_table
from chromaqpi.io import read_image, srgb_encode
from chromaqpi.metrics import normalised_mae

REFERENCE = "PNG 8-bit"
# Pillow's `subsampling` codes
CHROMA = {"4:4:4": 0, "4:2:0": 2}


def save_and_read(images: torch.Tensor, exposure: float, folder: Path, fmt: str, **options) -> torch.Tensor:
    """(1, 3, H, W) normalised intensities -> an 8-bit sRGB file -> read back and normalised again."""
    code = srgb_encode(np.clip(images[0].double().numpy() * exposure, 0, 1))
    pixels = np.round(code * 255).astype(np.uint8).transpose(1, 2, 0)
    path = folder / f"image.{fmt}"
    Image.fromarray(pixels, mode="RGB").save(path, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the chroma-subsampling warning: measured here
        arr, _ = read_image(path, linearize_srgb=True, need_channels=3)
    return torch.from_numpy(arr / exposure).float()[None]


def cases(qualities: list[int]) -> list[tuple[str, str | None, dict]]:
    """(label, file format or None for the float image, Pillow options)."""
    out = [("float", None, {}), (REFERENCE, "png", {})]
    out += [(f"JPEG q{q} {chroma}", "jpg", dict(quality=q, subsampling=code))
            for chroma, code in CHROMA.items() for q in qualities]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser, n=16)
    parser.add_argument("--qualities", default="95,85,75,50", help="comma-separated JPEG qualities (Pillow, 1-95)")
    parser.add_argument("--exposure", type=float, default=0.7, help="empty-field level, fraction of full scale (linear)")
    args = parser.parse_args()
    if not 0 < args.exposure < 1:
        parser.error("--exposure must lie in (0, 1)")
    args.steps = model_steps([args.model], args.steps)
    rows_spec = cases([int(q) for q in args.qualities.split(",") if q.strip()])
    torch.set_flush_denormal(True)
    started = datetime.now()
    nmae = {(label, m): [] for label, _, _ in rows_spec for m in METHODS}
    clipped = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in tqdm(range(args.n), desc="images"):
            images, true, microscope = class_sample("family", i, args.size)
            clipped.append(float((images * args.exposure > 1).float().mean()))
            for label, fmt, options in rows_spec:
                stored = images if fmt is None else save_and_read(images, args.exposure, Path(tmp), fmt, **options)
                estimates = reconstruct_methods(stored, microscope, i, steps=args.steps, model=args.model)
                for method, est in estimates.items():
                    nmae[label, method].append(float(normalised_mae(est, true, align="mean")))
    table = variant_table(nmae, [label for label, _, _ in rows_spec], REFERENCE, first="stored as", versus="PNG")
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds); empty field at {args.exposure:g} of full scale (linear), sRGB-encoded, 8 bits; "
            f"{100 * float(np.mean(clipped)):.3f} % of pixels clipped at full scale; Pillow "
            f"{Image.__version__} (libjpeg defaults otherwise); ZMD one {args.steps}-step DDIM draw at the card's "
            f"temperature (seed 1000 + image index); {(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    write_results("jpeg", "Cost of storing the micrograph as 8-bit PNG or JPEG", body)


if __name__ == "__main__":
    main()
