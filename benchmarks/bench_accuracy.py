"""The results table: every method on every evaluation set, in one run.

Usage: python benchmarks/bench_accuracy.py [--n 8] [--sets a,b] [--steps K] [--samples 4]
       (``--sets ""`` re-assembles accuracy.md from the stored per-set sections;
        --steps: default the DDIM step count the models' cards recommend)

Rows: constant predictor, TIE, WOTF, iterative, the mean model, ZMD (1 sample),
ZMD (mean of N samples), ZMD + 10 data-consistency steps, on the paper presets ZMD +
the iterative solver's full 200-iteration budget, and ZMD with 200 DDIM steps (and with
25 when --steps is another count: the issue's 25-vs-200 target). DDPM and CVDM rows appear for the sets whose preset has a shipped
model of that kind (``<preset>-ddpm``, ``<preset>-cvdm``). Learned methods use the
shipped models matching each set's microscope preset.
Writes benchmarks/results/accuracy.md plus per-set folders under
benchmarks/results/accuracy/ (metrics.csv and figure.png).
"""

from __future__ import annotations

import argparse
import functools
import sys
from datetime import datetime

import torch

from _common import RESULTS, steps_of_run, write_results
from chromaqpi.datasets.evalsets import get_evalset, load_evalset
from chromaqpi.evaluation import evaluate
from chromaqpi.models import registry as model_registry
from chromaqpi.solvers.base import register_method

SETS = ("phantoms-test", "natural-test", "paper-2shot-test", "paper-2shot-noisy-test", "paper-rgb-test")
CLASSICAL = ("constant", "tie", "wotf", "iterative")
ITERATIVE_BUDGET = 200  # iterations of the iterative row on the paper presets (and of zmd+refine200)
# Data-consistency iterations of the default sets' long zmd+refine row (reduced quadrature), chosen on validation
# folders by the rule in benchmarks/bench_refine.py's commit (refine.md); None: no such row.
DEFAULT_REFINE: int | None = 200


def register_variants(steps: int, samples: int, refine: int) -> dict[str, str]:
    """Benchmark-only method names for ZMD settings (labels of the table rows)."""
    zmd = functools.partial(model_registry.reconstruct_with_model, kind="zmd")
    variants = {
        "zmd": dict(steps=steps),
        # one orientation, as measured before draws over D4 views became the default (orientations.md)
        f"zmd-mean{samples}": dict(steps=steps, samples=samples, orientations=False),
        f"zmd+refine{refine}": dict(steps=steps, refine=refine),
        # the iterative solver with its full budget, started from ZMD instead of TIE
        f"zmd+refine{ITERATIVE_BUDGET}": dict(steps=steps, refine=ITERATIVE_BUDGET),
        # the same from both the ZMD and the TIE start, keeping the fit with the lower objective
        f"zmd+refine{ITERATIVE_BUDGET}-2starts": dict(steps=steps, refine=ITERATIVE_BUDGET, refine_starts="model+tie"),
        "zmd-200steps": dict(steps=200),
    }
    if DEFAULT_REFINE:
        variants[f"zmd+refine{DEFAULT_REFINE}"] = dict(steps=steps, refine=DEFAULT_REFINE)
    if steps != 25:
        variants["zmd-25steps"] = dict(steps=25)
    for name, opts in variants.items():
        def method(images, microscope, *, generator=None, _opts=opts):
            return zmd(images, microscope, generator=generator, **_opts)

        register_method(f"bench:{name}", method)
    register_method("bench:mean", functools.partial(model_registry.reconstruct_with_model, kind="mean"))
    return {f"bench:{k}": k for k in variants} | {"bench:mean": "mean"}


def methods_for(preset: str, quick: bool, steps: int) -> list[str]:
    full = ["bench:zmd-mean4", "bench:zmd+refine10"] + ([] if steps == 25 else ["bench:zmd-25steps"]) + [
        "bench:zmd-200steps"]
    if preset != "default":
        full[2:2] = [f"bench:zmd+refine{ITERATIVE_BUDGET}", f"bench:zmd+refine{ITERATIVE_BUDGET}-2starts"]
    elif DEFAULT_REFINE:  # the TIE start is poor on these optics (the iterative row): ZMD's start only
        full[2:2] = [f"bench:zmd+refine{DEFAULT_REFINE}"]
    learned = [] if preset not in model_registry.list_models() else ["bench:mean", "bench:zmd"] + ([] if quick else full)
    # DDPM / CVDM rows where the preset's model of that kind is shipped ("paper-2shot-ddpm", ...)
    extra = [k for k in ("ddpm", "cvdm") if f"{preset}-{k}" in model_registry.list_models()]
    return list(CLASSICAL) + learned + extra


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="samples per set (the first n; deterministic)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD rows (default: the count the models' cards recommend)")
    parser.add_argument("--quick", action="store_true", help="only mean and 1-sample ZMD among the learned rows")
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out (e.g. iterative)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    args.steps = steps_of_run([s for s in args.sets.split(",") if s], args.steps)
    register_variants(args.steps, 4, 10)
    sections = []
    for name in filter(None, args.sets.split(",")):  # --sets "" only re-assembles accuracy.md
        spec = get_evalset(name)
        samples = load_evalset(name, n=args.n, progress=True)
        items = [{"images": s.images, "phase": s.phase,
                  **({"labels": s.mask} if s.mask is not None else {})} for s in samples]
        skip = set(args.skip.split(","))
        methods = [m for m in methods_for(spec.microscope, args.quick, args.steps) if m not in skip]
        stochastic = [m for m in methods if (m.startswith("bench:") and m != "bench:mean") or m in ("ddpm", "cvdm")]
        options = {m: {"generator": torch.Generator().manual_seed(0)} for m in stochastic}
        # The default preset is costly to simulate: there the iterative solver uses its
        # reduced quadrature and 50 iterations (its full runs are in classical.md).
        options["iterative"] = ({"fast": True, "max_iter": 50} if spec.microscope == "default"
                                else {"max_iter": ITERATIVE_BUDGET})
        out = RESULTS / "accuracy" / name
        evaluate(methods, items, samples[0].microscope, out, options=options, data_range=3.5, phi_max=3.5)
        table = (out / "metrics.md").read_text().replace("bench:", "")
        stamp = (f"measured {datetime.now():%Y-%m-%d %H:%M} with `{' '.join(sys.argv)}`; "
                 f"ZMD rows {args.steps} DDIM steps unless named otherwise")
        (out / "section.md").write_text(f"## {name} ({len(samples)} samples, {spec.description})\n\n"
                                        f"_{stamp}_\n\n{table}")
    # Each set's rows come from one run; sets measured in separate runs keep their own stamp.
    for name in SETS:
        section = RESULTS / "accuracy" / name / "section.md"
        if section.exists():
            sections.append(section.read_text())
    body = ("All rows of a set come from one run on the same samples (its command and date are under its "
            "heading); s/image depend on what else ran on the machine then. Offset-aligned metrics remove the best constant "
            "(phase from defocus has no DC); normalised MAE = MAE·2/3.5 (the reference paper's scale). "
            "ZMD rows use DDIM sampling with the steps stated under each heading (`--steps`; the models' cards "
            "recommend 10, chosen on validation in steps.md); 'zmd-25steps' and 'zmd-200steps' change only the count; "
            "single-draw ZMD rows (zmd, zmd-25steps, zmd-200steps, zmd+refine*) draw at the temperature the model's card "
            "sets for one draw (default and paper-2shot 0.5, paper-rgb 0.75, chosen on validation in temperature.md; "
            "sections measured before commit 8695b3f drew at 1), 'zmd-mean4', DDPM and CVDM at 1; "
            "'zmd-mean4' averages 4 posterior samples in one orientation (the D4 views that `samples=N` now uses by default are measured in orientations.md and orientations-test.md); "
            "'zmd+refine10' adds 10 data-consistency steps of the iterative solver; 'zmd+refine200' is "
            "the iterative solver with its full 200-iteration budget started from ZMD instead of TIE (on the default "
            "sets with the reduced quadrature, the budget chosen on validation folders in refine.md, since session 27); 'zmd+refine200-2starts' "
            "runs that fit from both the ZMD and the TIE start and keeps, per image, the one with the lower objective "
            "(data misfit plus TV prior at one common weight; no ground truth involved). DDPM and CVDM (the reference "
            "paper's comparison models: the same U-Net as each ZMD network, 3000 steps on the family's training "
            "data (for the paper presets the paper-noise set only), no physics prior, 25 DDIM steps) have rows on the sets whose preset has a shipped model of that kind.\n\n" + "\n\n".join(sections))
    targets = RESULTS / "accuracy" / "targets.md"  # hand-written assessment of the sections, kept verbatim
    if targets.exists():
        body += "\n\n" + targets.read_text()
    write_results("accuracy", "Accuracy of every method on the evaluation sets", body)


if __name__ == "__main__":
    main()
