"""How much lateral misregistration between the colour channels costs each method.

Usage: python benchmarks/bench_misregistration.py [--n 8] [--shifts 0,0.25,0.5,1,2] [--lateral-colour 0.5,1]
       [--steps K] [--model default] [--declared]

The phase signal lies in the differences between the channels, so a channel displaced
sideways (lateral chromatic aberration of the objective, a colour camera's channel offsets,
a beam splitter) might be read as phase. This measures it: the `family` scenes of
bench_microscopes.py (cell scenes of the `default` family, sensor noise, the same seeds), with
red displaced by +d and blue by -d pixels along x relative to green (lateral colour pulls red
and blue to opposite sides), by the Fourier shift of the channel-shift training augmentation
(`chromaqpi.datasets.augment.shift_colour_channels`, mirrored, so no strip wraps around). Real lateral
colour is a magnification difference, so d here stands for its local value in one tile; the
`--lateral-colour` rows model it as such: red magnified by 1 + m and blue by 1 - m about the image
centre (`chromaqpi.registration.warp_channels`: band-limited, mirrored edges), so the offset grows
from 0 at the centre to m x 128 px at the edge of a 256 px image. With `--declared`, every distortion
is also reconstructed with the microscope's `registration` declaring it, which `reconstruct` undoes.
Scores: offset-aligned nMAE (mean offset), mean over images, and its ratio to the unshifted
images. TIE and WOTF get each image's exact microscope; the `default` networks do not.
Writes benchmarks/results/misregistration.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

from _common import model_steps, write_results
from bench_microscopes import METHODS, add_scene_arguments, class_sample, reconstruct_methods, variant_table
from chromaqpi.datasets.augment import shift_colour_channels
from chromaqpi.metrics import normalised_mae
from chromaqpi.microscope import Registration
from chromaqpi.registration import warp_channels


def displace(images: torch.Tensor, d: float) -> torch.Tensor:
    """(1, 3, H, W) with red moved by +d and blue by -d pixels along x (green stays)."""
    if d == 0:
        return images
    shifts = np.array([[0.0, d], [0.0, -d]])
    return torch.from_numpy(shift_colour_channels(images[0].double().numpy(), shifts))[None]


def lateral_colour(m: float) -> Registration:
    """Red magnified by 1 + m and blue by 1 - m about the centre (green stays)."""
    return Registration(scale=[1 + m, 1.0, 1 - m])


def opposite_shifts(d: float) -> Registration:
    """Red moved by +d and blue by -d pixels along x: what :func:`displace` does."""
    return Registration(shift_px=[[0.0, d], [0.0, 0.0], [0.0, -d]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser, n=8)
    parser.add_argument("--shifts", default="0,0.25,0.5,1,2", help="comma-separated d (pixels); 0 first")
    parser.add_argument("--lateral-colour", default="0.5,1", help="comma-separated m (per cent); empty: none")
    parser.add_argument("--declared", action="store_true",
                        help="also each distortion declared in the microscope's registration (reconstruct undoes it)")
    args = parser.parse_args()
    args.steps = model_steps([args.model], args.steps)
    shifts = [float(s) for s in args.shifts.split(",")]
    if shifts[0] != 0:
        parser.error("--shifts must start with 0 (the reference)")
    # (label, distortion, the registration that describes it)
    distortions = [(f"{d:g}", lambda x, d=d: displace(x, d), opposite_shifts(d)) for d in shifts]
    distortions += [(f"±{m:g} %", lambda x, r=lateral_colour(m / 100): warp_channels(x, r), lateral_colour(m / 100))
                    for m in (float(v) for v in args.lateral_colour.split(",") if v.strip())]
    # (label, distortion, registration declared to reconstruct or None)
    cases = [(label, distort, None) for label, distort, _ in distortions]
    if args.declared:
        cases += [(f"{label}, declared", distort, reg) for label, distort, reg in distortions[1:]]
    torch.set_flush_denormal(True)
    started = datetime.now()
    nmae = {(d, m): [] for d, _, _ in cases for m in METHODS}
    for i in tqdm(range(args.n), desc="images"):
        images, true, plain = class_sample("family", i, args.size)
        for d, distort, declared in cases:
            shifted = distort(images)
            microscope = plain if declared is None else plain.replace(registration=declared)
            estimates = reconstruct_methods(shifted, microscope, i, steps=args.steps, model=args.model)
            for method, est in estimates.items():
                nmae[d, method].append(float(normalised_mae(est, true, align="mean")))
    table = variant_table(nmae, [d for d, _, _ in cases], "0", first="d (px) or m", versus="unshifted")
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of "
            f"microscopes.md, same seeds); ZMD one {args.steps}-step DDIM draw at the card's temperature (seed 1000 + image "
            f"index); red "
            f"displaced by +d, blue by -d pixels along x; rows 'm': red magnified by 1 + m, blue by 1 - m about the "
            f"centre; rows 'declared': the same images reconstructed with that misregistration declared in the "
            f"microscope's `registration` (reconstruct resamples the channels back, band-limited cosine series); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    write_results("misregistration", "Cost of lateral misregistration between the colour channels", body)


if __name__ == "__main__":
    main()
