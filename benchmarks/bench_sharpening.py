"""How much in-camera sharpening costs each method.

Usage: python benchmarks/bench_sharpening.py [--n 16] [--radii 1,2] [--amounts 0.5,1,2] [--exposure 0.7] [--steps K]

Camera software often sharpens by default (a "sharpness" setting), and the phase signal is the small
defocus contrast that sharpening boosts at fine scales. Each `family` cell scene of bench_microscopes.py
(the `default` family, sensor noise, the same seeds) is exposed so that the empty field reads
``--exposure`` of full scale (linear), sRGB-encoded as a camera would, sharpened in the encoded domain
by an unsharp mask (``scikit-image``'s ``unsharp_mask``: ``x + amount·(x - G_radius * x)``, Gaussian
σ = radius in pixels), clipped to full scale, and read back as a user's file is (sRGB decoded,
divided by the exposure). Two placements, as cameras do it:

- ``RGB``: each channel sharpened on its own;
- ``luma``: only the luma ``Y' = 0.2126 R' + 0.7152 G' + 0.0722 B'`` (Rec. 709 weights on the encoded
  values, as in Y'CbCr pipelines), its change added to every channel; the chroma is untouched.

Reference row "none": encoded, clipped and decoded without sharpening. TIE and WOTF get each image's
exact microscope; the `default` networks do not read it. Scores: offset-aligned nMAE (mean offset),
mean over images, and its ratio to "none". Writes benchmarks/results/sharpening.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from functools import partial

import numpy as np
import torch
from skimage.filters import unsharp_mask

from _common import model_steps, write_results
from bench_microscopes import add_scene_arguments, score_variants, variant_table
from chromaqpi.io import srgb_decode, srgb_encode

REFERENCE = "none"
LUMA = np.array([0.2126, 0.7152, 0.0722])


def sharpen(code: np.ndarray, placement: str, radius: float, amount: float) -> np.ndarray:
    """Unsharp mask of encoded (3, H, W) values in [0, 1] on each channel or on the luma only."""
    if placement == "RGB":
        return unsharp_mask(code, radius=radius, amount=amount, channel_axis=0, preserve_range=True)
    y = luma(code)
    return code + (unsharp_mask(y, radius=radius, amount=amount, preserve_range=True) - y)[None]


def luma(code: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of encoded (3, H, W) values."""
    return np.tensordot(LUMA, code, axes=1)


def through_camera(images: torch.Tensor, exposure: float, process=None) -> torch.Tensor:
    """(1, 3, H, W) normalised intensities -> encoded, ``process``-ed (a function of the encoded (3, H, W)
    values; None: none), clipped to full scale -> read back as a user's sRGB file is."""
    code = srgb_encode(np.clip(images[0].double().numpy() * exposure, 0, 1))
    if process is not None:
        code = process(code)
    return torch.from_numpy(srgb_decode(np.clip(code, 0, 1)) / exposure).float()[None]


def cases(radii: list[float], amounts: list[float]) -> list[tuple[str, object]]:
    """(label, processing of the encoded values or None)."""
    return [(REFERENCE, None)] + [(f"{placement} r{r:g} x{a:g}", partial(sharpen, placement=placement, radius=r,
                                                                       amount=a))
                                  for placement in ("RGB", "luma") for r in radii for a in amounts]


def camera_parser(doc: str, *, exposure: float = 0.7) -> argparse.ArgumentParser:
    """The options of the benchmarks that pass the `family` scenes through a camera's processing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_scene_arguments(parser, n=16)
    parser.add_argument("--exposure", type=float, default=exposure,
                        help="empty-field level, fraction of full scale (linear)")
    return parser


def parse_camera_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if not 0 < args.exposure < 1:
        parser.error("--exposure must lie in (0, 1)")
    args.steps = model_steps([args.model], args.steps)
    return args


def main():
    parser = camera_parser(__doc__)
    parser.add_argument("--radii", default="1,2", help="comma-separated unsharp-mask radii (Gaussian σ, pixels)")
    parser.add_argument("--amounts", default="0.5,1,2", help="comma-separated unsharp-mask amounts")
    args = parse_camera_args(parser)
    floats = [[float(v) for v in text.split(",") if v.strip()] for text in (args.radii, args.amounts)]
    rows_spec = cases(*floats)
    started = datetime.now()
    clipped = {label: [] for label, _ in rows_spec}
    rows = [(label, partial(through_camera, exposure=args.exposure, process=process)) for label, process in rows_spec]
    nmae = score_variants(rows, args, record=lambda label, stored: clipped[label].append(
        float((stored * args.exposure >= 1).float().mean())))
    extra = {"clipped (%)": {label: f"{100 * float(np.mean(v)):.3f}" for label, v in clipped.items()}}
    table = variant_table(nmae, [label for label, _ in rows_spec], REFERENCE, first="sharpening", versus="none",
                          extra=extra)
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds); empty field at {args.exposure:g} of full scale (linear), sRGB-encoded (float, no "
            f"quantisation); rows 'PLACEMENT rR xA': unsharp mask of radius R px and amount A; ZMD one "
            f"{args.steps}-step DDIM draw at the card's temperature (seed 1000 + image index); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    write_results("sharpening", "Cost of in-camera sharpening", body)


if __name__ == "__main__":
    main()
