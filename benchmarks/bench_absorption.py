"""How much an absorbing specimen costs each method, and whether the data residual notices.

Usage: python benchmarks/bench_absorption.py [--n 8] [--ratios 0,0.02,0.05,0.1,0.2] [--steps K]
                                            [--pattern phase|independent] [--refine STEPS]
                                            [--stain NAME] [--methods A,B,...] [--suffix TEXT]

Every solver and network here assumes a transparent (pure-phase) specimen, and the shipped models were
trained on such specimens only. Real brightfield samples absorb a little (unstained cells) or a lot
(stained ones). This measures what that costs: the `family` cell scenes of bench_microscopes.py (the
`default` family, sensor noise, the same seeds and microscopes) with the object also attenuating the
amplitude by ``a = k·(φ - min φ)`` per radian of phase (grey: the same at every wavelength; the
simulator's absorption model), for each ratio k. ``--stain NAME`` colours it instead: the attenuation at
λ is ``a·s(λ)/s̄`` with a stain's extinction spectrum s (``chromaqpi.optics.spectra.STAINS``), the same
mean attenuation as grey; ``--stain haematoxylin+eosin`` (with ``--pattern independent``) gives each dye
its own independent scene, as in H&E, their attenuations adding at each wavelength. Every row also says
how many images ``chromaqpi.specimen_colour`` flags as coloured (what ``method="auto"`` routes on).
With ``--pattern independent`` the absorption follows a second cell scene instead, ``a = k·(ψ - min ψ)``: absorbers that are not where the phase is (stains, pigment,
debris). Methods: TIE, WOTF (automatic nuisance: an absorption is fitted out where the channels can
tell it from phase), WOTF with a pure-phase model (``nuisance="none"``), WOTF with a fixed α = 1e-3
(the automatic α's light-loss floor counts absorbed light as pupil loss), the mean net and one ZMD
draw; TIE and WOTF get each image's exact microscope, the `default` networks do not. Scores:
offset-aligned nMAE of the phase (mean offset), mean over images, its ratio to the pure-phase images;
and the data residual of the ZMD map and of the true phase (``chromaqpi.data_fit``, pure-phase forward
model; median over images): does ``reconstruct --check-data`` flag the absorbing specimens? And
``chromaqpi.estimate_absorption`` (``reconstruct --absorption``): its 99th percentile against the true
absorption's, and its pixel correlation with it (medians over images); with ``--stain`` also the map told
the stain (``estimate_absorption(stain=)``, the start of the joint fits told the stain).
With ``--refine STEPS`` three more rows: the mean net refined by STEPS data-consistency steps of a
pure-phase fit, and of a fit of phase and absorption together (``fit_absorption``,
``chromaqpi.refine_with_absorption``); that joint fit from TIE (``iterative`` with ``fit_absorption``,
STEPS iterations); and from both starts, keeping the lower objective (``refine_starts="model+tie"``);
with ``--stain`` also WOTF at α = 1e-3 and the two joint fits told the stain (rows ``...+stain``).
``--methods`` runs a subset of the rows (the file then takes ``--suffix``).
Writes benchmarks/results/absorption.md (absorption-independent.md with ``--pattern independent``;
``-NAME`` appended with ``--stain``).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

from _common import model_steps, write_results
from bench_microscopes import add_scene_arguments, class_sample, reconstruct_methods, variant_table
from chromaqpi.consistency import data_fit, estimate_absorption, specimen_colour
from chromaqpi.metrics import normalised_mae
from chromaqpi.optics.spectra import STAINS

METHODS = ("tie", "wotf", "wotf:none", "wotf:alpha1e-3", "mean", "zmd")
# wotf:alpha1e-3 isolates the automatic α: its light-loss floor δ² (chromaqpi.solvers.wotf.light_loss) reads
# the light an absorber takes as light scattered past the pupil, and regularises harder.
OPTIONS = {"wotf:none": {"nuisance": "none"}, "wotf:alpha1e-3": {"alpha": 1e-3}}


def _flags(names: list) -> str:
    """'n/N' flagged coloured, with the nearest stains named (None: not flagged; '?': like no named stain)."""
    hits = [n for n in names if n is not None]
    shown = ", ".join(f"{n} {hits.count(n)}" for n in sorted(set(hits)))
    return f"{len(hits)}/{len(names)}" + (f" ({shown})" if shown else "")


def _p99(a: torch.Tensor) -> float:
    return float(torch.quantile(a.flatten().float(), 0.99))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser, n=8)
    parser.add_argument("--ratios", default="0,0.02,0.05,0.1,0.2",
                        help="comma-separated absorption per radian of phase k; 0 first")
    parser.add_argument("--pattern", choices=("phase", "independent"), default="phase",
                        help="what the absorption follows: the scene's own phase, or a second scene's")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="also score the mean net refined by STEPS data-consistency steps, pure-phase and "
                             "with the absorption fitted too, and that joint fit from TIE "
                             "(results to absorption[-independent]-refineSTEPS.md)")
    parser.add_argument("--stain", help="a named stain colouring the absorption (default: grey); NAME+NAME... for "
                        "several dyes (e.g. haematoxylin+eosin, with --pattern independent), each on its own scene")
    parser.add_argument("--methods", help="comma-separated subset of the rows to run (default: all)")
    parser.add_argument("--suffix", default="", help="appended to the results file's name (e.g. for a --methods run)")
    args = parser.parse_args()
    args.steps = model_steps([args.model], args.steps)
    ratios = [float(k) for k in args.ratios.split(",")]
    if ratios[0] != 0 or any(k < 0 for k in ratios):
        parser.error("--ratios must start with 0 (the reference) and be >= 0")
    dyes = args.stain.split("+") if args.stain else []
    if any(d not in STAINS for d in dyes):
        parser.error(f"--stain: choose from {', '.join(sorted(STAINS))}, joined by + for several dyes")
    if len(dyes) > 1 and args.pattern != "independent":
        parser.error("several dyes need --pattern independent (each on its own scene)")
    stain = dyes if len(dyes) > 1 else args.stain  # passed to the simulator
    told = args.stain if len(dyes) == 1 else None  # the methods take one stain: none told a mixture
    torch.set_flush_denormal(True)
    methods, options = METHODS, dict(OPTIONS)
    if told:  # WOTF told the stain: its absorption nuisance and TFs take the stain's colour
        methods = (*methods, "wotf:alpha1e-3+stain")
        options["wotf:alpha1e-3+stain"] = {"alpha": 1e-3, "stain": args.stain}
    if args.refine:
        pure, joint = f"mean:refine{args.refine}", f"mean:refine{args.refine}+absorption"
        from_tie = f"iterative:{args.refine}+absorption"
        both = f"{joint}+tie"  # refined from the mean net and from TIE, keeping the lower objective
        methods = (*methods, pure, joint, from_tie, both)
        options[pure] = {"refine": args.refine}
        options[joint] = {"refine": args.refine, "fit_absorption": True}
        options[from_tie] = {"max_iter": args.refine, "fit_absorption": True}
        options[both] = {"refine": args.refine, "fit_absorption": True, "refine_starts": "model+tie"}
        if told:  # the joint fits told which stain colours the specimen
            methods = (*methods, f"{joint}+stain", f"{from_tie}+stain")
            options[f"{joint}+stain"] = {**options[joint], "stain": args.stain}
            options[f"{from_tie}+stain"] = {**options[from_tie], "stain": args.stain}
    if args.methods:
        chosen = args.methods.split(",")
        unknown = sorted(set(chosen) - set(methods))
        if unknown:
            parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(methods)}")
        methods = tuple(m for m in methods if m in chosen)
    started = datetime.now()
    labels = {k: f"{k:g}" for k in ratios}
    nmae = {(labels[k], m): [] for k in ratios for m in methods}
    residual = {(labels[k], m): [] for k in ratios for m in ("zmd", "truth")}
    # The absorption map, grey intercept, and (with --stain) the stained fit: (estimate p99, true p99), correlation.
    maps = ("", "told the stain") if told else ("",)
    flagged = {label: [] for label in labels.values()}  # specimen_colour: coloured, and the nearest stain
    p99 = {(label, m): [] for label in labels.values() for m in maps}
    corr = {(label, m): [] for label in labels.values() for m in maps}
    for i in tqdm(range(args.n), desc="images"):
        for k in ratios:
            images, true, microscope, true_a = class_sample("family", i, args.size, absorption_per_rad=k,
                                                               absorption_pattern=args.pattern, stain=stain,
                                                               with_absorption=True)
            colour = specimen_colour(images[0], microscope)
            flagged[labels[k]].append((colour.nearest_stain or "?") if colour.coloured else None)
            for m in maps:
                est_a = estimate_absorption(images[0].double(), microscope, stain=told if m else None)
                p99[labels[k], m].append((_p99(est_a), _p99(true_a)))
                if k:
                    corr[labels[k], m].append(float(torch.corrcoef(torch.stack([est_a.flatten(), true_a.flatten()]))[0, 1]))
            estimates = reconstruct_methods(images, microscope, i, steps=args.steps, model=args.model,
                                            methods=methods, options=options)
            for method, est in estimates.items():
                nmae[labels[k], method].append(float(normalised_mae(est, true, align="mean")))
            for name, phase in (("zmd", estimates.get("zmd")), ("truth", true)):
                if phase is not None:
                    residual[labels[k], name].append(data_fit(images[0].double(), phase, microscope).residual_over_noise)
    extra = {f"residual / noise, {title}": {k: f"{np.median(residual[k, name]):.3g}" for k in labels.values()}
             for name, title in (("zmd", "zmd"), ("truth", "true phase")) if residual[labels[0], name]}
    for m in maps:
        name = f"a estimate{', ' + m if m else ''}"
        extra[f"{name}, 99th pct (median)"] = {k: f"{np.median([e for e, _ in p99[k, m]]):.3g}" for k in labels.values()}
        if not m:
            extra["true a, 99th pct (median)"] = {k: f"{np.median([t for _, t in p99[k, m]]):.3g}" for k in labels.values()}
        extra[f"{name} vs true a, correlation (median)"] = {k: f"{np.median(corr[k, m]):.2f}" if corr[k, m] else "-"
                                                           for k in labels.values()}
    extra["flagged coloured by specimen_colour (nearest stain)"] = {k: _flags(v) for k, v in flagged.items()}
    table = variant_table(nmae, list(labels.values()), "0", first="k (absorption / rad)", versus="pure phase", methods=methods,
                          extra=extra)
    pattern = ("a = k·(φ - min φ)" if args.pattern == "phase"
               else "a = k·(ψ - min ψ), ψ the phase of a second, independent cell scene")
    colour = (f"coloured by the `{args.stain}` stain (a·s(λ)/s̄)" if told else
              f"two or more dyes ({', '.join(f'`{d}`' for d in dyes)}), each on its own independent scene with "
              "the same k, attenuations added at each wavelength; the methods told a stain are not run (they take "
              "one), and the true a is the sum of the maps" if dyes else "grey")
    body = (f"Absorption {pattern}, {colour}. Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds and microscopes at every k); ZMD one {args.steps}-step DDIM draw at the card's temperature "
            f"(seed 1000 + image index); `wotf:none` is WOTF with `nuisance=\"none\"`, `wotf:alpha1e-3` WOTF with a "
            f"fixed α = 1e-3 instead of the automatic one; residuals are "
            f"medians over the images of `chromaqpi.data_fit` (pure-phase model, reduced quadrature); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n" + table)
    name = ("absorption" if args.pattern == "phase" else "absorption-independent") + (
        f"-{args.stain}" if args.stain else "") + (f"-refine{args.refine}" if args.refine else "") + args.suffix
    write_results(name, f"Cost of an absorbing specimen ({args.pattern} pattern)", body)


if __name__ == "__main__":
    main()
