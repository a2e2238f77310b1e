"""Gain of every method on one smooth, isolated object: how much of its phase and dry mass comes back.

Usage: python benchmarks/bench_linearity.py [--microscope default] [--sigmas 0.5,1,2,4] [--peaks 0.5,1.5]
       [--seeds 2] [--size 256] [--steps K]

Defocus contrast is a band-pass view of the phase: a smooth object shows little of it, and what each method
returns for such an object is its gain, not its nMAE on busy scenes. One Gaussian phase bump of standard
deviation σ (µm) and peak φ0 (rad) sits in the middle of an empty ``--size`` px field of the microscope;
it is imaged without noise and with the microscope's sensor noise (``--seeds`` draws). Per image:

- ``gain``: the least-squares slope of the offset-aligned estimate on the offset-aligned truth (1 = right
  amplitude, 0 = nothing returned);
- ``mass``: the phase integrated within 3σ of the centre, each map referenced to its median beyond 5σ, over
  the truth's (the dry-mass ratio ``chromaqpi measure`` would report).

TIE and WOTF get the exact microscope; the networks (the model named after the microscope, as
``reconstruct`` picks it) read the image alone. ZMD is one ``--steps`` DDIM draw at the card's temperature
(seed 1000 + image index). Writes benchmarks/results/linearity-<microscope>.md.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime

import numpy as np
import torch

from _common import markdown_table, model_steps, write_results
import chromaqpi
from chromaqpi import Microscope
from chromaqpi.models.registry import model_for

METHODS = ("tie", "wotf", "mean", "zmd")


def bump(size: int, pixel_um: float, sigma_um: float, peak: float) -> tuple[np.ndarray, np.ndarray]:
    """The bump (rad) and each pixel's squared distance from its centre (µm²)."""
    r2 = sum(axis**2 for axis in np.meshgrid(*[(np.arange(size) - size / 2) * pixel_um] * 2, indexing="ij"))
    return peak * np.exp(-r2 / (2 * sigma_um**2)), r2


def scores(estimate: np.ndarray, truth: np.ndarray, r2: np.ndarray, sigma_um: float) -> tuple[float, float]:
    e, t = estimate - estimate.mean(), truth - truth.mean()
    gain = float((e * t).sum() / (t * t).sum())
    inside, outside = r2 <= (3 * sigma_um) ** 2, r2 >= (5 * sigma_um) ** 2

    def mass(m: np.ndarray) -> float:
        return float((m[inside] - np.median(m[outside])).sum())

    return gain, mass(estimate) / mass(truth)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--microscope", default="default", help="preset or TOML")
    parser.add_argument("--sigmas", default="0.5,1,2,4", help="bump standard deviations (µm)")
    parser.add_argument("--peaks", default="0.5,1.5", help="bump peak phases (rad)")
    parser.add_argument("--seeds", type=int, default=2, help="noisy draws per bump")
    parser.add_argument("--size", type=int, default=256, help="field (px)")
    parser.add_argument("--steps", type=int, default=None, help="ZMD DDIM steps (default: the card's)")
    args = parser.parse_args()
    scope = Microscope.resolve(args.microscope)
    steps = model_steps([model_for("zmd", scope)], args.steps)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    peaks = [float(p) for p in args.peaks.split(",")]
    started, index, rows = datetime.now(), 0, []
    # 5σ must fit inside the field for the mass reference (and 3σ for the integral)
    too_wide = [s for s in sigmas if 5 * s > args.size / 2 * scope.sampling.pixel_size_um]
    if too_wide:
        parser.error(f"σ {too_wide} µm leave no background beyond 5σ in a {args.size} px field")
    for sigma in sigmas:
        for peak in peaks:
            truth, r2 = bump(args.size, scope.sampling.pixel_size_um, sigma, peak)
            phase = torch.from_numpy(truth).float()
            for noisy in (False, True):
                results = {m: [] for m in METHODS}
                for seed in range(args.seeds if noisy else 1):
                    images = chromaqpi.simulate(phase, scope, noise=noisy,
                                                generator=torch.Generator().manual_seed(seed))
                    for method in METHODS:
                        options = ({"generator": torch.Generator().manual_seed(1000 + index), "steps": steps}
                                   if method == "zmd" else {})
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            estimate = chromaqpi.reconstruct(images, scope, method=method, **options)[0]
                        results[method].append(scores(estimate.double().numpy(), truth, r2, sigma))
                    index += 1
                mean = {m: np.mean(v, axis=0) for m, v in results.items()}
                rows.append([f"{sigma:g}", f"{peak:g}", f"noise x{args.seeds}" if noisy else "none"]
                            + [f"{mean[m][0]:.2f}" for m in METHODS] + [f"{mean[m][1]:.2f}" for m in METHODS])
    header = (["σ (µm)", "peak (rad)", "sensor noise"] + [f"gain {m}" for m in METHODS]
              + [f"mass {m}" for m in METHODS])
    body = (f"Microscope `{scope.name}` ({scope.sampling.pixel_size_um:g} µm pixels), one Gaussian bump in an "
            f"empty {args.size} px field; ZMD one {steps}-step DDIM draw at the card's temperature; "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all. 1.00 is a faithful method; gain "
            "and mass are means over the noisy draws.\n\n" + markdown_table(header, rows))
    write_results(f"linearity-{scope.name}", "Gain on one smooth isolated object: phase and dry mass returned",
                  body)


if __name__ == "__main__":
    main()
