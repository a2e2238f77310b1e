"""``chromaqpi evaluate --set NAME --methods tie,wotf,... --out DIR``.

Runs methods on a fixed evaluation set (generated deterministically and
cached) and writes ``metrics.csv``, ``metrics.md`` (mean ± std per metric and
seconds per image) and ``figure.png`` (input, truth, each method, error maps).
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--set", required=True, dest="evalset", metavar="NAME",
                        help="phantoms-test, natural-test, paper-2shot-test, paper-2shot-noisy-test, paper-rgb-test")
    parser.add_argument("--methods", default="constant,tie,wotf", metavar="LIST", help="comma-separated method names")
    parser.add_argument("--out", "-o", required=True, metavar="DIR")
    parser.add_argument("--n", type=int, metavar="N", help="first N samples only (default: all)")
    parser.add_argument("--cache", metavar="DIR", help="evaluation-set cache folder (default ~/.cache/chromaqpi)")
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic methods")


def run(args):
    import torch

    from chromaqpi.cli.common import method_list, output_dir
    from chromaqpi.datasets.evalsets import load_evalset
    from chromaqpi.evaluation import evaluate

    methods = method_list(args.methods)
    if args.cache:
        output_dir(args.cache, flag="--cache")
    out = output_dir(args.out)
    samples = load_evalset(args.evalset, n=args.n, cache_dir=args.cache, progress=True)
    stochastic = {"ddpm", "cvdm", "zmd"}
    options = {m: {"generator": torch.Generator().manual_seed(args.seed)} for m in methods if m in stochastic}
    items = [{"images": s.images, "phase": s.phase, **({"labels": s.mask} if s.mask is not None else {})}
             for s in samples]
    evaluate(methods, items, samples[0].microscope, out, options=options)
    print((out / "metrics.md").read_text())
    return 0
