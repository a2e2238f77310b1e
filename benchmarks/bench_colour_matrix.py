"""How much a camera's colour-correction matrix costs each method, ignored and declared.

Usage: python benchmarks/bench_colour_matrix.py [--n 8] [--saturation 1,1.5] [--steps K] [--model default]

Cameras that write sRGB (and many microscope cameras by default) mix their raw channels with a 3x3
colour matrix after white balance, to render colours as the eye sees them. The phase signal is in
the differences between the channels, so the mixing changes it: each recorded channel carries a
blend of three defocus distances. The matrix measured here is the one such a camera would use:
the least-squares map from the built-in camera sensitivities (`chromaqpi.optics.spectra`) to the
linear-sRGB colour-matching functions (CIE 1931 by the multi-lobe Gaussian fit of Wyman, Sloan and
Shirley, JCGT 2(2), 2013; XYZ to linear sRGB by IEC 61966-2-1), white-balanced under the
microscope's lamp (each sample's own: halogen or LED), rows normalised to one (what flat-fielding
leaves). `--saturation s` scales its off-identity part, M_s = I + s (M - I): s = 1 is that fit, s > 1
the vivid look of consumer pipelines. Scenes: the `family` cell scenes of bench_microscopes.py (sensor
noise, same seeds); the matrix is applied to the read-out and clipped to the camera's range, as
`chromaqpi.simulate` does with `sensor.colour_matrix` (the 'clipped' column: the share of pixels the
mixing pushed out of range; rows 'not clipped' skip the clipping, a control that isolates its cost).
Rows 'ignored': reconstructed with the microscope without the matrix; rows 'declared': with it in
`sensor.colour_matrix`, which every method undoes on input. Scores: offset-aligned nMAE (mean offset),
mean over images, and its ratio to the camera's own channels.
Writes benchmarks/results/colour-matrix.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
from tqdm import tqdm

from _common import model_steps, write_results
from bench_microscopes import METHODS, add_scene_arguments, class_sample, reconstruct_methods, variant_table
from chromaqpi.metrics import normalised_mae
from chromaqpi.optics.sensor import apply_colour_matrix
from chromaqpi.optics.spectra import camera_sensitivity, illuminant

# XYZ (D65) -> linear sRGB, IEC 61966-2-1.
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
# CIE 1931 2° colour-matching functions as sums of two-sided Gaussians (Wyman, Sloan, Shirley 2013):
# per function, lobes (amplitude, centre nm, σ below the centre, σ above).
_CMF_LOBES = (((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
              ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
              ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)))


def cie_xyz(lam_nm: np.ndarray) -> np.ndarray:
    """(3, K) x̄, ȳ, z̄ at the wavelengths (nm)."""
    def lobe(a, mu, below, above):
        sigma = np.where(lam_nm < mu, below, above)
        return a * np.exp(-0.5 * ((lam_nm - mu) / sigma) ** 2)
    return np.stack([sum(lobe(*p) for p in lobes) for lobes in _CMF_LOBES])


def srgb_matrix(microscope) -> np.ndarray:
    """The camera's white-balanced raw -> linear sRGB matrix, rows summing to one."""
    sp = microscope.spectra
    lam = np.linspace(sp.wavelength_min_um, sp.wavelength_max_um, 301)
    q = camera_sensitivity(lam, sp)  # (3, K)
    target = XYZ_TO_SRGB @ cie_xyz(lam * 1000)
    fit = np.linalg.lstsq(q.T, target.T, rcond=None)[0].T  # fit @ q ≈ target
    white = q @ illuminant(lam, sp)  # raw empty field
    m = fit * white[None, :]
    return m / m.sum(axis=1, keepdims=True)


def saturated(m: np.ndarray, s: float) -> np.ndarray:
    return np.eye(len(m)) + s * (m - np.eye(len(m)))


def _span(diagonals) -> str:
    """'lo-hi' per channel of a list of matrix diagonals."""
    d = np.array(diagonals)
    return ", ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(d.min(axis=0), d.max(axis=0)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser, n=8)
    parser.add_argument("--saturation", default="1,1.5", help="comma-separated s (1: the fitted matrix)")
    args = parser.parse_args()
    args.steps = model_steps([args.model], args.steps)
    levels = [float(s) for s in args.saturation.split(",")]
    started = datetime.now()
    labels = ["camera's own channels"]
    for s in levels:
        labels += [f"s = {s:g}, ignored", f"s = {s:g}, declared", f"s = {s:g}, declared, not clipped"]
    nmae = {(label, m): [] for label in labels for m in METHODS}
    matrices = {s: [] for s in levels}
    clipped = {label: [0.0] if label == labels[0] or label.endswith("not clipped") else [] for label in labels}
    for i in tqdm(range(args.n), desc="images"):
        images, true, plain = class_sample("family", i, args.size)
        cases = [(labels[0], images, plain)]
        for s in levels:
            matrix = saturated(srgb_matrix(plain), s)
            matrices[s].append(matrix)
            scope = plain.replace(sensor={"colour_matrix": matrix.tolist()})
            mixed = apply_colour_matrix(images.double(), scope.sensor, clip=False)
            recorded = apply_colour_matrix(images.double(), scope.sensor, clip=True)
            for label in (f"s = {s:g}, ignored", f"s = {s:g}, declared"):
                clipped[label].append(float((mixed != recorded).double().mean()))
            recorded = recorded.to(images.dtype)
            cases += [(f"s = {s:g}, ignored", recorded, plain), (f"s = {s:g}, declared", recorded, scope),
                      (f"s = {s:g}, declared, not clipped", mixed.to(images.dtype), scope)]
        for label, recorded, scope in cases:
            for method, est in reconstruct_methods(recorded, scope, i, steps=args.steps, model=args.model).items():
                nmae[label, method].append(float(normalised_mae(est, true, align="mean")))
    extra = {"clipped pixels (mean, max)": {label: f"{np.mean(v):.2%}, {np.max(v):.2%}"
                                            for label, v in clipped.items()}}
    table = variant_table(nmae, labels, labels[0], first="recorded as", versus="own channels", extra=extra)
    shown = "\n".join(f"- s = {s:g}: diagonals {_span([np.diag(m) for m in ms])}, condition numbers "
                       f"{min(map(np.linalg.cond, ms)):.2f}-{max(map(np.linalg.cond, ms)):.2f}; the first image's "
                       f"`{np.array2string(ms[0], precision=3, separator=', ')}`".replace("\n", "")
                       for s, ms in matrices.items())
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds); ZMD one {args.steps}-step DDIM draw at the card's temperature (seed 1000 + image index). "
            f"The colour matrices, one per image's lamp (rows R, G, B of the output; columns the camera's R, G, "
            f"B):\n\n{shown}\n\n"
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    write_results("colour-matrix", "Cost of a camera's colour-correction matrix", body)


if __name__ == "__main__":
    main()
