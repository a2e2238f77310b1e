"""How much in-camera noise reduction costs each method.

Usage: python benchmarks/bench_noise_reduction.py [--n 16] [--chroma 1,2,4] [--luma 0.7,1.5] [--exposure 0.7] [--steps K]

Camera pipelines smooth colour noise hard (the eye hardly sees colour resolution) and luminance noise
less. The phase signal, though, is the difference between the colour channels, which is exactly what
chroma smoothing blurs. As bench_sharpening.py (same `family` cell scenes, exposure, sRGB encoding,
clipping and read-back), with the encoded values smoothed by a Gaussian of σ pixels, the linear upper
bound of what an edge-preserving camera filter does:

- ``chroma σ``: the chroma only: each channel becomes ``Y' + G_σ * (x' - Y')`` (``Y'`` the Rec. 709
  luma), i.e. Cb and Cr of Y'CbCr blurred and the luma kept;
- ``luma σ``: the luma only: ``G_σ * Y' - Y'`` added to every channel, the chroma kept.

Reference row "none": encoded, clipped and decoded as is. TIE and WOTF get each image's exact
microscope; the `default` networks do not read it. Scores: offset-aligned nMAE (mean offset), mean over
images, and its ratio to "none". Writes benchmarks/results/noise-reduction.md.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import numpy as np
from scipy.ndimage import gaussian_filter

from _common import write_results
from bench_microscopes import score_variants, variant_table
from bench_sharpening import REFERENCE, camera_parser, luma, parse_camera_args, through_camera


def smooth(code: np.ndarray, part: str, sigma: float) -> np.ndarray:
    """Encoded (3, H, W) values with their chroma or their luma blurred by a Gaussian of ``sigma`` px."""
    y = luma(code)
    if part == "chroma":
        return y[None] + gaussian_filter(code - y[None], sigma=(0, sigma, sigma), mode="reflect")
    return code + (gaussian_filter(y, sigma=sigma, mode="reflect") - y)[None]


def cases(chroma: list[float], lum: list[float]) -> list[tuple[str, object]]:
    """(label, processing of the encoded values or None)."""
    return [(REFERENCE, None)] + [(f"{part} σ{s:g}", partial(smooth, part=part, sigma=s))
                                  for part, sigmas in (("chroma", chroma), ("luma", lum)) for s in sigmas]


def main():
    parser = camera_parser(__doc__)
    parser.add_argument("--chroma", default="1,2,4", help="comma-separated Gaussian σ (px) of the chroma blur")
    parser.add_argument("--luma", default="0.7,1.5", help="comma-separated Gaussian σ (px) of the luma blur")
    args = parse_camera_args(parser)
    rows_spec = cases(*[[float(v) for v in text.split(",") if v.strip()] for text in (args.chroma, args.luma)])
    started = datetime.now()
    rows = [(label, partial(through_camera, exposure=args.exposure, process=process)) for label, process in rows_spec]
    nmae = score_variants(rows, args)
    table = variant_table(nmae, [label for label, _ in rows_spec], REFERENCE, first="noise reduction", versus="none")
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds); empty field at {args.exposure:g} of full scale (linear), sRGB-encoded (float, no "
            f"quantisation); rows 'PART σS': that part of Y'CbCr blurred by a Gaussian of σ = S px; ZMD one "
            f"{args.steps}-step DDIM draw at the card's temperature (seed 1000 + image index); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    write_results("noise-reduction", "Cost of in-camera noise reduction", body)


if __name__ == "__main__":
    main()
