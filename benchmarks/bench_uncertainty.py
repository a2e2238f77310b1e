"""Is ZMD's uncertainty map (``--samples N``) calibrated? Its per-pixel spread against the true error.

Usage: python benchmarks/bench_uncertainty.py [--n 8] [--draws 8] [--steps K] [--sets a,b] [--one-view]
       (--steps: default the step count the models' cards recommend, what ``samples=N`` uses)

Per image: N seeded ZMD draws (the shipped model of the set's preset), draw k on the k-th D4 view
the microscope allows (``--one-view``: all in the image's orientation); their mean is the estimate and
their per-pixel standard deviation the uncertainty, as ``reconstruct(..., samples=N)`` returns. The
error is the mean's offset-aligned error (phase from defocus has no DC). Two spreads are scored:
``raw`` (what the API returns today) and ``offset-free`` (each draw's mean offset from the others
removed first, since that offset is not observable either). Reported per set:

- RMSE / RMS(sigma): 1 when the spread has the error's size; > 1 overconfident;
- coverage: share of pixels with |error| <= k sigma (Gaussian 68.3 % for k = 1, 95.4 % for k = 2);
- Spearman rank correlation of sigma and |error| over the pixels of each image (mean over images),
  against a baseline that needs no sampling: the smoothed gradient magnitude of the estimate
  (errors sit at edges);
- Spearman correlation over images of mean sigma and the image's MAE (does sigma flag bad images?).

No parameter is fitted: the test sets are only measured. Writes benchmarks/results/uncertainty.md
(uncertainty-one-view.md with ``--one-view``).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from scipy import ndimage, stats
from tqdm import tqdm

from _common import check_same_steps, markdown_table, merge_rows, steps_of_run, write_results
from chromaqpi.datasets.augment import apply_transform, invert_transform, valid_transforms
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.metrics import align_offset
from chromaqpi.models.registry import reconstruct_with_model

SETS = ("phantoms-test", "natural-test", "paper-2shot-test", "paper-2shot-noisy-test")
SPREADS = ("raw", "offset-free")


def draws_for(sample, n_draws: int, steps: int, seed: int, views: bool) -> torch.Tensor:
    """(N, H, W) float64 ZMD draws for one evaluation sample; with ``views``, draw k is taken on
    the k-th allowed D4 view and turned back, as ``samples=N`` does by default."""
    images = torch.as_tensor(sample.images)[None].float()
    allowed = valid_transforms(sample.microscope, tuple(images.shape[-2:])) if views else (0,)
    out = []
    for k in range(n_draws):
        t = allowed[k % len(allowed)]
        # temperature 1, as samples=N draws (one draw alone would take the card's cooler one)
        draw = reconstruct_with_model(apply_transform(images, t), sample.microscope, kind="zmd", steps=steps,
                                      temperature=1.0, generator=torch.Generator().manual_seed(seed + k))
        out.append(invert_transform(draw, t)[0])
    return torch.stack(out).double()


def spreads(draws: torch.Tensor) -> dict[str, np.ndarray]:
    centred = draws - draws.mean(dim=(-2, -1), keepdim=True)  # per-draw offset removed
    return {"raw": draws.std(dim=0).numpy(), "offset-free": centred.std(dim=0).numpy()}


def edge_baseline(estimate: np.ndarray) -> np.ndarray:
    """Uncertainty proxy without sampling: smoothed gradient magnitude of the estimate."""
    return ndimage.gaussian_filter(ndimage.gaussian_gradient_magnitude(estimate, 1.0), 2.0)


def score_set(name: str, n: int, n_draws: int, steps: int, views: bool) -> dict[str, float]:
    samples = load_evalset(name, n=n)
    per = {s: {"ratio_num": 0.0, "ratio_den": 0.0, "cov1": [], "cov2": [], "rho": [], "mean_sigma": []}
           for s in SPREADS}
    rho_edge, maes = [], []
    for i, sample in enumerate(tqdm(samples, desc=name, leave=False)):
        draws = draws_for(sample, n_draws, steps, seed=1000 * (i + 1), views=views)
        true = torch.as_tensor(sample.phase).double()
        estimate = draws.mean(dim=0)
        error = np.abs((align_offset(estimate, true, align="mean") - true).numpy())
        maes.append(error.mean())
        rho_edge.append(stats.spearmanr(edge_baseline(estimate.numpy()).ravel(), error.ravel())[0])
        for kind, sigma in spreads(draws).items():
            p = per[kind]
            p["ratio_num"] += float((error ** 2).sum())
            p["ratio_den"] += float((sigma ** 2).sum())
            p["cov1"].append(float((error <= sigma).mean()))
            p["cov2"].append(float((error <= 2 * sigma).mean()))
            p["rho"].append(stats.spearmanr(sigma.ravel(), error.ravel())[0])
            p["mean_sigma"].append(float(sigma.mean()))
    result = {"images": len(samples), "rho_edge": float(np.mean(rho_edge)), "mae": float(np.mean(maes))}
    for kind, p in per.items():
        result[kind] = {
            "ratio": (p["ratio_num"] / max(p["ratio_den"], 1e-300)) ** 0.5,
            "cov1": float(np.mean(p["cov1"])), "cov2": float(np.mean(p["cov2"])),
            "rho": float(np.mean(p["rho"])),
            "rho_images": float(stats.spearmanr(p["mean_sigma"], maes)[0]) if len(maes) > 2 else float("nan"),
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images per set")
    parser.add_argument("--draws", type=int, default=8, help="ZMD draws per image")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps per draw (default: the count the model's card recommends)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--one-view", action="store_true", help="all draws in the image's own orientation "
                        "(samples=N before orientations=True became the default)")
    parser.add_argument("--update", action="store_true",
                        help="keep the results file's rows of the sets not re-run (e.g. after retraining one model)")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    args.steps = steps_of_run(sets, args.steps)
    name = "uncertainty-one-view" if args.one_view else "uncertainty"
    check_same_steps(name, f"draws of {args.steps} DDIM steps", args.update)
    rows = []
    for set_name in sets:
        started = datetime.now()
        r = score_set(set_name, args.n, args.draws, args.steps, views=not args.one_view)
        minutes = (datetime.now() - started).total_seconds() / 60
        for kind in SPREADS:
            k = r[kind]
            rows.append([set_name, get_evalset(set_name).microscope, kind, r["images"], f"{r['mae']:.3f}",
                         f"{k['ratio']:.2f}", f"{100 * k['cov1']:.1f}", f"{100 * k['cov2']:.1f}",
                         f"{k['rho']:.3f}", f"{r['rho_edge']:.3f}", f"{k['rho_images']:.2f}", f"{minutes:.1f}"])
    header = ["set", "preset", "sigma", "images", "MAE (rad)", "RMSE / RMS sigma", "cover 1 sigma (%)",
              "cover 2 sigma (%)", "Spearman sigma vs abs. error", "Spearman edge vs abs. error (baseline)",
              "Spearman over images", "minutes"]
    rows, merged = merge_rows(name, header, rows, key_columns=1) if args.update else (rows, "")
    body = (f"ZMD with {args.draws} draws of {args.steps} DDIM steps at temperature 1 per image (the shipped model of each "
            "set's preset), " + ("all in the image's own orientation" if args.one_view else
                                 "draw k on the k-th D4 view the microscope allows, turned back")
            + "; error = |offset-aligned mean of the draws - truth|. Gaussian reference: 68.3 % within "
            "1 sigma, 95.4 % within 2 sigma, RMSE / RMS sigma = 1. The baseline column ranks pixels by the "
            f"smoothed gradient magnitude of the estimate instead of sigma. {merged}\n\n"
            + markdown_table(header, rows))
    write_results(name, "Calibration of the ZMD uncertainty map" + (", one view" if args.one_view else ""), body)


if __name__ == "__main__":
    main()
