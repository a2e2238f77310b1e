"""Does the data residual (``chromaqpi.data_fit``, ``reconstruct --check-data``) say when to distrust a phase map?

Usage: python benchmarks/bench_data_fit.py [--n 8] [--sets phantoms-test,...] [--steps K]

Part 1, per test set and method (TIE, WOTF, the mean net, one ZMD draw with the card's settings, and the
true phase as the floor): each image's phase map goes back through the forward model (reduced
quadrature) and its residual is compared with the image. Scores: median residual over the estimated
noise variance and median share of the contrast unexplained; the rank correlation over images between
the residual and the map's offset-aligned nMAE (does a worse fit mean a worse map?), per method and
over all (image, method) pairs of the set; and how often the method with the lowest residual on an
image is also the one with the lowest nMAE (4 candidates: 25 % by chance).

Part 2, misconfiguration (no ground truth needed to detect it): the same images reconstructed and
checked with a wrong microscope -- the declared pixel size 0.8x or 1.25x the true one, or (RGB sets)
red and blue displaced by +-1 px along x, undeclared -- against the right one, for TIE and the mean
net: median ratio of the residual and the share of images where it rose.

No parameter is fitted: data_fit's crop and margin are fixed in chromaqpi.consistency.
Writes benchmarks/results/data-fit.md.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

import chromaqpi
from _common import markdown_table, steps_of_run, write_results
from chromaqpi.datasets.augment import shift_colour_channels
from chromaqpi.datasets.evalsets import load_evalset
from chromaqpi.metrics import normalised_mae

SETS = ("phantoms-test", "natural-test", "paper-2shot-test", "paper-2shot-noisy-test", "paper-rgb-test")
METHODS = ("tie", "wotf", "mean", "zmd")
WRONG_METHODS = ("tie", "mean")


def phase_of(method: str, images, microscope, steps: int, seed: int) -> torch.Tensor:
    options = {"steps": steps, "generator": torch.Generator().manual_seed(seed)} if method == "zmd" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-family warnings: the point of part 2
        return torch.as_tensor(chromaqpi.reconstruct(images, microscope, method=method, **options)).double()


def wrong_microscopes(microscope) -> dict[str, tuple]:
    """name -> (microscope declared, function applied to the recorded images)."""
    px = microscope.sampling.pixel_size_um
    out = {f"pixel size {f}x": (microscope.replace(sampling={"pixel_size_um": f * px}), None) for f in (0.8, 1.25)}
    if microscope.n_channels == 3 and not microscope.planes:
        out["red/blue +-1 px"] = (microscope, lambda im: torch.as_tensor(
            shift_colour_channels(im.numpy(), np.array([[0.0, 1.0], [0.0, -1.0]]))))
    return out


def score_set(name: str, n: int, steps: int) -> tuple[list, list]:
    samples = load_evalset(name, n=n)
    per = {m: {"nmae": [], "ratio": [], "unexplained": []} for m in (*METHODS, "truth")}
    wrong = {}
    for i, s in enumerate(tqdm(samples, desc=name, leave=False)):
        images, true = torch.as_tensor(s.images).float(), torch.as_tensor(s.phase).double()
        for method in (*METHODS, "truth"):
            phase = true if method == "truth" else phase_of(method, images, s.microscope, steps, 1000 + i)
            fit = chromaqpi.data_fit(images, phase, s.microscope)
            per[method]["nmae"].append(float(normalised_mae(phase, true, align="mean")))
            per[method]["ratio"].append(fit.residual_over_noise)
            per[method]["unexplained"].append(fit.unexplained_contrast)
        for label, (scope, distort) in wrong_microscopes(s.microscope).items():
            seen = distort(images) if distort else images
            for method in WRONG_METHODS:
                phase = phase_of(method, seen, scope, steps, 1000 + i)
                ratio = chromaqpi.data_fit(seen, phase, scope).residual_over_noise
                wrong.setdefault((label, method), []).append(ratio / per[method]["ratio"][i])
    rows = []
    pairs_ratio, pairs_nmae = [], []
    for method, v in per.items():
        rho = stats.spearmanr(v["ratio"], v["nmae"])[0] if method != "truth" else float("nan")
        rows.append([name, method, len(samples), f"{np.mean(v['nmae']):.3f}", f"{np.median(v['ratio']):.3g}",
                     f"{100 * np.median(v['unexplained']):.1f}", "-" if method == "truth" else f"{rho:.2f}"])
        if method != "truth":
            pairs_ratio += v["ratio"]
            pairs_nmae += v["nmae"]
    lowest_fit = np.argmin([per[m]["ratio"] for m in METHODS], axis=0)
    lowest_err = np.argmin([per[m]["nmae"] for m in METHODS], axis=0)
    picked = np.array([per[METHODS[k]]["nmae"][i] for i, k in enumerate(lowest_fit)])
    rows.append([name, "all (image, method) pairs", len(samples), "-", "-", "-",
                 f"{stats.spearmanr(pairs_ratio, pairs_nmae)[0]:.2f}"])
    rows.append([name, "lowest residual per image", len(samples), f"{picked.mean():.3f}", "-", "-",
                 f"best map picked on {int((lowest_fit == lowest_err).sum())}/{len(samples)}"])
    wrong_rows = [[name, label, method, len(r), f"{np.median(r):.3g}", f"{100 * np.mean(np.array(r) > 1):.0f}"]
                  for (label, method), r in wrong.items()]
    return rows, wrong_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per set")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--steps", type=int, default=None, help="ZMD DDIM steps (default: the cards' count)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    sets = [s for s in args.sets.split(",") if s]
    steps = steps_of_run(sets, args.steps)
    rows, wrong_rows, minutes = [], [], []
    for name in sets:
        started = datetime.now()
        r, w = score_set(name, args.n, steps)
        rows += r
        wrong_rows += w
        minutes.append(f"{name} {(datetime.now() - started).total_seconds() / 60:.1f}")
        print(markdown_table(["set", "map", "images", "nMAE"], [x[:4] for x in r]), flush=True)
    body = (f"ZMD: one draw of {steps} DDIM steps at the card's temperature (seed 1000 + image index). Residual: "
            "`chromaqpi.data_fit` (reduced quadrature, central crop up to 512 px without a 16 px margin; each "
            "channel's mean residual removed). 'residual / noise' is the mean squared residual over the noise "
            "variance estimated from the image (an upper bound for the paper presets, whose optics are not "
            "band-limited, so their ratios are lower bounds); 'Spearman' ranks images by residual against nMAE "
            "(offset aligned by the mean).\n\n### Part 1: residual against error\n\n"
            + markdown_table(["set", "map", "images", "nMAE (mean)", "residual / noise (median)",
                              "contrast unexplained (median, %)", "Spearman residual vs nMAE"], rows)
            + "\n\n### Part 2: a wrong microscope, reconstructed and checked with it\n\n"
            + markdown_table(["set", "declared", "method", "images", "residual ratio wrong / right (median)",
                              "images where it rose (%)"], wrong_rows)
            + f"\n\nMinutes per set: {', '.join(minutes)}.")
    write_results("data-fit", "Data residual of the reconstructions: a check without ground truth", body)


if __name__ == "__main__":
    main()
