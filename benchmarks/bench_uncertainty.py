"""Is ZMD's uncertainty map (``--samples N``) calibrated? Its per-pixel spread against the true error.

Usage: python benchmarks/bench_uncertainty.py [--n 8] [--draws 8] [--steps K] [--sets a,b] [--one-view]
       (the test sets: measures the shipped maps; writes uncertainty.md, uncertainty-one-view.md)
       python benchmarks/bench_uncertainty.py --calibrate [--n 16] [--data default=data/default-val256,...]
       (validation shards, where each model's calibration scale is fitted; writes uncertainty-calibration.md)
       python benchmarks/bench_uncertainty.py --check-folders --draws 4 --data default=data/default-val256,...
       (the cards' scales as return_std applies them to N draws, on validation shards)
       (--steps: default the step count the models' cards recommend, what ``samples=N`` uses)

Per image: N seeded ZMD draws at temperature 1 (the shipped model of the set's preset), draw k on the
k-th D4 view the microscope allows (``--one-view``: all in the image's orientation); their mean is the
estimate and their per-pixel standard deviation the spread, as ``reconstruct(..., samples=N,
calibrated_std=False)`` returns. The error is the mean's offset-aligned error (phase from defocus has
no DC). Spreads scored: ``raw`` (the draws' spread), ``offset-free`` (each draw's mean offset from the
others removed first, since that offset is not observable either) and, where the model's card has a
calibration scale, ``calibrated`` (raw times that scale: what ``return_std`` gives by default). Per set:

- RMSE / RMS(sigma): 1 when the spread has the error's size; > 1 overconfident;
- coverage: share of pixels with |error| <= k sigma (Gaussian 68.3 % for k = 1, 95.4 % for k = 2);
- Spearman rank correlation of sigma and |error| over the pixels of each image (mean over images),
  against a baseline that needs no sampling: the smoothed gradient magnitude of the estimate
  (errors sit at edges);
- Spearman correlation over images of mean sigma and the image's MAE (does sigma flag bad images?).

``--calibrate`` fits, per model, the scale s with which s x raw sigma covers 68.27 % of the pixels
(the pooled quantile of |error| / sigma over all the model's validation folders: split-conformal
calibration at one sigma) and checks it leave-one-folder-out: the scale fitted on the model's other
folders, coverage on the held-out one. The test sets are never used to fit anything.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from scipy import ndimage, stats
from tqdm import tqdm

from _common import (check_same_steps, folder_items, markdown_table, merge_rows, model_steps, steps_of_run,
                     write_results)
from chromaqpi.datasets.augment import apply_transform, invert_transform, valid_transforms
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.metrics import align_offset
from chromaqpi.models.registry import ONE_SIGMA, card_std_scale, model_for, reconstruct_with_model

SETS = ("phantoms-test", "natural-test", "paper-2shot-test", "paper-2shot-noisy-test", "paper-rgb-test")
DATA = ("default=data/default-val256,default=data/natural-val,"
        "paper-2shot=data/paper-2shot-noiseless-val,paper-2shot=data/paper-2shot-lownoise-val,"
        "paper-2shot=data/paper-2shot-val,paper-rgb=data/paper-rgb-noiseless-val,"
        "paper-rgb=data/paper-rgb-lownoise-val,paper-rgb=data/paper-rgb-val")
SPREADS = ("raw", "offset-free", "calibrated")


def draws_for(images, microscope, model: str, n_draws: int, steps: int, seed: int, views: bool) -> torch.Tensor:
    """(N, H, W) float64 ZMD draws for one (1, C, H, W) stack; with ``views``, draw k is taken on
    the k-th allowed D4 view and turned back, as ``samples=N`` does by default."""
    allowed = valid_transforms(microscope, tuple(images.shape[-2:])) if views else (0,)
    out = []
    for k in range(n_draws):
        t = allowed[k % len(allowed)]
        # temperature 1, as samples=N draws (one draw alone would take the card's cooler one)
        draw = reconstruct_with_model(apply_transform(images, t), microscope, kind="zmd", model=model, steps=steps,
                                      temperature=1.0, generator=torch.Generator().manual_seed(seed + k))
        out.append(invert_transform(draw, t)[0])
    return torch.stack(out).double()


def spreads(draws: torch.Tensor, scale: float | None) -> dict[str, np.ndarray]:
    centred = draws - draws.mean(dim=(-2, -1), keepdim=True)  # per-draw offset removed
    raw = draws.std(dim=0).numpy()
    out = {"raw": raw, "offset-free": centred.std(dim=0).numpy()}
    if scale is not None:
        out["calibrated"] = scale * raw
    return out


def edge_baseline(estimate: np.ndarray) -> np.ndarray:
    """Uncertainty proxy without sampling: smoothed gradient magnitude of the estimate."""
    return ndimage.gaussian_filter(ndimage.gaussian_gradient_magnitude(estimate, 1.0), 2.0)


def measure(items: list[tuple], label: str, model: str, n_draws: int, steps: int, views: bool,
            scale: float | None) -> list[dict]:
    """Per image: |error|, the spreads and the edge baseline, as arrays."""
    out = []
    for i, (images, true, microscope) in enumerate(tqdm(items, desc=label, leave=False)):
        draws = draws_for(images, microscope, model, n_draws, steps, seed=1000 * (i + 1), views=views)
        estimate = draws.mean(dim=0)
        error = np.abs((align_offset(estimate, true, align="mean") - true).numpy())
        out.append({"error": error, "sigma": spreads(draws, scale), "edge": edge_baseline(estimate.numpy())})
    return out


def score(per_image: list[dict], kind: str) -> dict[str, float]:
    errors = [p["error"] for p in per_image]
    sigmas = [p["sigma"][kind] for p in per_image]
    maes = [e.mean() for e in errors]
    return {
        "ratio": (sum((e ** 2).sum() for e in errors) / max(sum((s ** 2).sum() for s in sigmas), 1e-300)) ** 0.5,
        "cov1": float(np.mean([(e <= s).mean() for e, s in zip(errors, sigmas)])),
        "cov2": float(np.mean([(e <= 2 * s).mean() for e, s in zip(errors, sigmas)])),
        "rho": float(np.mean([stats.spearmanr(s.ravel(), e.ravel())[0] for e, s in zip(errors, sigmas)])),
        "rho_images": (float(stats.spearmanr([s.mean() for s in sigmas], maes)[0]) if len(maes) > 2
                       else float("nan")),
    }


def fitted_scale(per_image: list[dict]) -> float:
    """The s with which s x raw sigma covers 68.27 % of the pooled pixels."""
    ratios = np.concatenate([(p["error"] / np.maximum(p["sigma"]["raw"], 1e-12)).ravel() for p in per_image])
    return float(np.quantile(ratios, ONE_SIGMA))


def coverage(per_image: list[dict], scale: float, k: float) -> float:
    return float(np.mean([(p["error"] <= k * scale * p["sigma"]["raw"]).mean() for p in per_image]))


def sources(args) -> list[tuple[str, str, list, object]]:
    """(label, preset, items, model) per test set, or per validation folder with --check-folders."""
    if args.check_folders:
        return [(folder, model, folder_items(folder, args.n), model)
                for model, folder in (pair.split("=") for pair in args.data.split(",") if pair)]
    out = []
    for set_name in (s for s in args.sets.split(",") if s):
        samples = load_evalset(set_name, n=args.n)
        items = [(torch.as_tensor(s.images)[None].float(), torch.as_tensor(s.phase).double(), s.microscope)
                 for s in samples]
        out.append((set_name, get_evalset(set_name).microscope, items, model_for("zmd", samples[0].microscope)))
    return out


def test_sets(args) -> None:
    if args.check_folders:
        models = list(dict.fromkeys(pair.split("=")[0] for pair in args.data.split(",") if pair))
        args.steps = model_steps(models, args.steps)
        name = f"uncertainty-val-draws{args.draws}"
    else:
        args.steps = steps_of_run([s for s in args.sets.split(",") if s], args.steps)
        name = "uncertainty-one-view" if args.one_view else "uncertainty"
    check_same_steps(name, f"draws of {args.steps} DDIM steps", args.update)
    rows = []
    for label, preset, items, model in sources(args):
        started = datetime.now()
        net = model_for("zmd", None, model) if isinstance(model, str) else model
        scale = card_std_scale(getattr(net, "card", None) or {}, args.draws)  # as return_std applies it
        per_image = measure(items, label, net, args.draws, args.steps, not args.one_view, scale)
        minutes = (datetime.now() - started).total_seconds() / 60
        rho_edge = float(np.mean([stats.spearmanr(p["edge"].ravel(), p["error"].ravel())[0] for p in per_image]))
        mae = float(np.mean([p["error"].mean() for p in per_image]))
        for kind in SPREADS:
            if kind not in per_image[0]["sigma"]:
                continue
            k = score(per_image, kind)
            shown = f"calibrated (x{scale:.2f})" if kind == "calibrated" else kind
            rows.append([label, preset, shown, len(items), f"{mae:.3f}",
                         f"{k['ratio']:.2f}", f"{100 * k['cov1']:.1f}", f"{100 * k['cov2']:.1f}",
                         f"{k['rho']:.3f}", f"{rho_edge:.3f}", f"{k['rho_images']:.2f}", f"{minutes:.1f}"])
    header = ["set", "preset", "sigma", "images", "MAE (rad)", "RMSE / RMS sigma", "cover 1 sigma (%)",
              "cover 2 sigma (%)", "Spearman sigma vs abs. error", "Spearman edge vs abs. error (baseline)",
              "Spearman over images", "minutes"]
    rows, merged = merge_rows(name, header, rows, key_columns=1) if args.update else (rows, "")
    body = (f"ZMD with {args.draws} draws of {args.steps} DDIM steps at temperature 1 per image (the shipped model of each "
            "set's preset), " + ("all in the image's own orientation" if args.one_view else
                                 "draw k on the k-th D4 view the microscope allows, turned back")
            + "; error = |offset-aligned mean of the draws - truth|. Gaussian reference: 68.3 % within "
            "1 sigma, 95.4 % within 2 sigma, RMSE / RMS sigma = 1. 'calibrated' = raw x the scale in the model's "
            "card (fitted on validation folders, uncertainty-calibration.md) for this draw count "
            "(registry.draws_correction): what return_std gives by default. "
            "The baseline column ranks pixels by the "
            f"smoothed gradient magnitude of the estimate instead of sigma. {merged}\n\n"
            + markdown_table(header, rows))
    title = "Calibration of the ZMD uncertainty map" + (", one view" if args.one_view else "")
    write_results(name, title + (f", validation folders, {args.draws} draws" if args.check_folders else ""), body)


def calibrate(args) -> None:
    runs = [pair.split("=") for pair in args.data.split(",") if pair]
    args.steps = model_steps(list(dict.fromkeys(m for m, _ in runs)), args.steps)
    measured: dict[str, dict[str, list[dict]]] = {}
    for model, folder in runs:
        items = folder_items(folder, args.n)
        measured.setdefault(model, {})[folder] = measure(items, folder, model, args.draws, args.steps,
                                                         not args.one_view, None)
    if args.save_arrays:  # per-image error and spread, to study other error models without re-running
        np.savez_compressed(args.save_arrays, **{f"{m}|{f}|{i}|{key}": p[key] if key != "sigma" else p[key]["raw"]
                                                 for m, fs in measured.items() for f, per in fs.items()
                                                 for i, p in enumerate(per) for key in ("error", "sigma")})
    folder_rows, model_rows = [], []
    for model, folders in measured.items():
        pooled = [p for per_image in folders.values() for p in per_image]
        scale = fitted_scale(pooled)
        model_rows.append([model, len(folders), len(pooled), f"{scale:.3f}", f"{100 * coverage(pooled, scale, 1):.1f}",
                           f"{100 * coverage(pooled, scale, 2):.1f}", f"{score(pooled, 'raw')['cov1'] * 100:.1f}"])
        for folder, per_image in folders.items():
            others = [p for f, rest in folders.items() if f != folder for p in rest]
            loo = fitted_scale(others) if others else float("nan")
            raw = score(per_image, "raw")
            folder_rows.append([model, folder, len(per_image), f"{np.mean([p['error'].mean() for p in per_image]):.3f}",
                                f"{raw['ratio']:.2f}", f"{100 * raw['cov1']:.1f}", f"{fitted_scale(per_image):.3f}",
                                f"{loo:.3f}", f"{100 * coverage(per_image, loo, 1):.1f}" if others else "-",
                                f"{100 * coverage(per_image, loo, 2):.1f}" if others else "-"])
        print(markdown_table(["model", "folders", "images", "scale"], [r[:4] for r in model_rows[-1:]]), flush=True)
    body = (f"ZMD with {args.draws} draws of {args.steps} DDIM steps at temperature 1 per validation image (the "
            "shipped models), " + ("all in one orientation" if args.one_view else
                                   "draw k on the k-th D4 view the microscope allows, turned back")
            + "; error = |offset-aligned mean of the draws - truth|, sigma = the draws' raw spread. The scale s is "
            "the 68.27 % quantile of |error| / sigma over the pooled pixels, so that s x sigma covers the Gaussian "
            "one-sigma share; 'held out' fits s on the model's other folders and covers this one (the test of "
            "transfer). Rule fixed before this run: a model's card gets its pooled s if every held-out one-sigma "
            "coverage lies within 50-85 %.\n\n### Per model (the scale for the card)\n\n"
            + markdown_table(["model", "folders", "images", "scale s", "cover s x sigma (%)",
                              "cover 2 s x sigma (%)", "cover raw sigma (%)"], model_rows)
            + "\n\n### Per folder\n\n"
            + markdown_table(["model", "validation folder", "images", "MAE (rad)", "RMSE / RMS sigma (raw)",
                              "cover raw sigma (%)", "s fitted on this folder", "s fitted on the others",
                              "held out: cover s x sigma (%)", "held out: cover 2 s x sigma (%)"], folder_rows))
    write_results("uncertainty-calibration" + args.suffix, "Calibrating the ZMD uncertainty map on validation folders", body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="images per set or folder (default 8 per test set, "
                        "16 per validation folder)")
    parser.add_argument("--draws", type=int, default=8, help="ZMD draws per image")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps per draw (default: the count the model's card recommends)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--calibrate", action="store_true", help="fit the scales on the validation folders of --data")
    parser.add_argument("--check-folders", action="store_true",
                        help="score the cards' scales (as return_std applies them for --draws) on the validation "
                             "folders of --data instead of the test sets; writes uncertainty-val-drawsN.md")
    parser.add_argument("--data", default=DATA, help="comma-separated MODEL=FOLDER pairs (validation shards)")
    parser.add_argument("--save-arrays", metavar="NPZ", help="--calibrate: also save each image's error and spread")
    parser.add_argument("--one-view", action="store_true", help="all draws in the image's own orientation "
                        "(samples=N before orientations=True became the default)")
    parser.add_argument("--update", action="store_true",
                        help="keep the results file's rows of the sets not re-run (e.g. after retraining one model)")
    parser.add_argument("--suffix", default="", help="--calibrate: appended to the results file's name (e.g. for "
                        "another model's folders, so that the shipped models' file is kept)")
    args = parser.parse_args()
    if args.calibrate and (args.check_folders or args.update or args.one_view):
        parser.error("--calibrate fits the scale return_std uses (D4 views, all folders): no --check-folders, "
                     "--update or --one-view")
    args.n = args.n or (16 if args.calibrate or args.check_folders else 8)
    torch.set_flush_denormal(True)
    (calibrate if args.calibrate else test_sets)(args)


if __name__ == "__main__":
    main()
