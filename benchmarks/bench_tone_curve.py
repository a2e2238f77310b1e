"""How much an undecoded camera tone curve costs each method, and what a measured response recovers.

Usage: python benchmarks/bench_tone_curve.py [--n 16] [--exposure 0.6] [--bits 8] [--steps K]

A camera's contrast or "film" setting maps light to code by a curve that is neither sRGB nor a power law.
Flat-fielding does not undo it: small contrasts, the phase signal, are scaled by the curve's log-slope at
the exposure. Each `family` cell scene of bench_microscopes.py (the `default` family, sensor noise, the
same seeds) is exposed so that the empty field reads ``--exposure`` of full scale (linear), passed through
a tone curve, quantised to ``--bits``, and flat-fielded by the empty field's code as read the same way:

- ``read as linear``: the codes as they are (what a user without a decoding option gets);
- ``fitted response``: decoded by the curve `chromaqpi response` fits (``chromaqpi.response.fit_response``)
  from 13 empty-field frames in √2 exposure steps over 64x (the README's recipe; a Gaussian vignetting
  of 25 % at the corners, shot-like noise, the same bits), fitted once per curve with seed 0;
- ``exact inverse``: decoded by the true inverse (the control: what quantisation alone costs).

Curves (neither was used to choose the fit's smoothness): ``filmic`` ``1.25 L/(L + 0.25)``, and ``log``
``ln(1 + 20 L)/ln 21``. Reference row: the linear camera at the same bits. TIE and WOTF get each image's
exact microscope; the `default` networks do not read it. Scores: offset-aligned nMAE (mean offset), mean
over images, and its ratio to the linear camera. Writes benchmarks/results/tone-curve.md.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import numpy as np
import torch

from _common import write_results
from bench_microscopes import score_variants, variant_table
from bench_sharpening import camera_parser, parse_camera_args
from chromaqpi.response import fit_response

REFERENCE = "linear camera"
CURVES = {  # light in [0, 1] -> code in [0, 1], with the exact inverse
    "filmic": (lambda light: 1.25 * light / (light + 0.25), lambda code: 0.25 * code / (1.25 - code)),
    "log": (lambda light: np.log1p(20 * light) / np.log(21), lambda code: np.expm1(code * np.log(21)) / 20),
}
STEPS = np.sqrt(2.0) ** np.arange(-12, 1)


def quantise(code: np.ndarray, bits: int) -> np.ndarray:
    top = 2**bits - 1
    return np.round(np.clip(code, 0, 1) * top) / top


def calibration_frames(curve, bits: int, seed: int = 0, size: int = 256):
    """Empty-field frames (3, size, size) at the STEPS exposures, as the README tells users to take them."""
    rng = np.random.default_rng(seed)
    r2 = sum(axis**2 for axis in np.meshgrid(*[np.linspace(-1, 1, size)] * 2, indexing="ij"))
    field = np.exp(-0.144 * r2)[None] * np.array([0.8, 1.0, 0.7])[:, None, None]  # 25 % darker corners
    for t in STEPS:
        light = np.clip(field * t * 1.1, 0, None)
        yield quantise(curve(np.clip(light + 0.003 * np.sqrt(light) * rng.standard_normal(light.shape), 0, 1)), bits)


def through_curve(images: torch.Tensor, exposure: float, bits: int, curve, decode) -> torch.Tensor:
    """(1, 3, H, W) normalised intensities -> codes through ``curve`` -> decoded by ``decode`` (None: read as
    linear) -> flat-fielded by the empty field read the same way."""
    light = images[0].double().numpy() * exposure
    code = quantise(curve(np.clip(light, 0, 1)), bits)
    empty = quantise(curve(np.full((3, 1, 1), exposure)), bits)
    if decode is not None:
        code, empty = decode(code), decode(empty)
    return torch.from_numpy(code / empty).float()[None]


def main():
    parser = camera_parser(__doc__, exposure=0.6)
    parser.add_argument("--bits", type=int, default=8, help="bits per code value")
    args = parse_camera_args(parser)
    started = datetime.now()
    rows_spec = [(REFERENCE, lambda light: light, None)]
    notes = []
    for name, (curve, inverse) in CURVES.items():
        response = fit_response(calibration_frames(curve, args.bits), STEPS)
        gammas = ", ".join(f"{g:.3f}" for g in response.fit["effective_gamma"])
        slope = (np.log(curve(args.exposure * 1.01)) - np.log(curve(args.exposure))) / np.log(1.01)
        notes.append(f"`{name}`: log-slope {slope:.3f} at the exposure; fitted effective gamma {gammas}")
        rows_spec += [(f"{name}, read as linear", curve, None), (f"{name}, fitted response", curve, response.decode),
                      (f"{name}, exact inverse", curve, inverse)]
    nmae = score_variants([(label, partial(through_curve, exposure=args.exposure, bits=args.bits, curve=curve,
                                           decode=decode)) for label, curve, decode in rows_spec], args)
    table = variant_table(nmae, [label for label, _, _ in rows_spec], REFERENCE, first="camera", versus="linear")
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds); empty field at {args.exposure:g} of full scale (linear), {args.bits} bits; ZMD one "
            f"{args.steps}-step DDIM draw at the card's temperature (seed 1000 + image index); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + "\n".join(f"- {n}" for n in notes)
            + "\n\n" + table)
    write_results("tone-curve", "Cost of an undecoded camera tone curve, and of a measured response", body)


if __name__ == "__main__":
    main()
