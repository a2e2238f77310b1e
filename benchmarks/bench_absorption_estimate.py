"""Can ``chromaqpi.estimate_absorption`` tell an absorbing sample from a transparent one?

Usage: python benchmarks/bench_absorption_estimate.py
           [--data data/absorb-val-plain,data/absorb-val-absorbing,data/absorb-val-independent]

The absorb-val folders (absorption-training.md) hold the same 32 objects and microscopes of the
`default` training mix, transparent, absorbing along their phase, and absorbing by a second object;
the params record each sample's k. Per sample: the 99th percentile of the estimated attenuation a.
Reported by folder and k (min / median / max over the samples), the first folder's transparent
samples also by phase source, and how many drawn microscopes were refused (channels' defocus too alike for an
intercept). Validation data only: this reads no test set. Writes benchmarks/results/absorption-estimate.md.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from _common import markdown_table, write_results
from chromaqpi.consistency import check_absorption_identifiable, estimate_absorption
from chromaqpi.datasets.torch_data import DatasetFolder
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope

BINS = (("0 (transparent)", 0.0, 0.0), ("(0, 0.03]", 1e-12, 0.03), ("(0.03, 0.1]", 0.03 + 1e-12, 0.1))


def folder_scores(path: str) -> list[tuple[float, float | None, str]]:
    """(k, 99th percentile of the estimate or None where refused, phase source) per sample."""
    store = DatasetFolder(path, False)
    out = []
    for i in range(store.n):
        sample = store.sample(i)
        params = sample["params"]
        microscope = Microscope.from_dict(params["microscope"])
        k = float(params.get("absorption_per_rad") or 0.0)
        try:
            check_absorption_identifiable(microscope)
        except ConfigError:
            out.append((k, None, params["source"]))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            a = estimate_absorption(torch.as_tensor(sample["input"]).double(), microscope)
        out.append((k, float(torch.quantile(a.flatten().float(), 0.99)), params["source"]))
    return out


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {np.median(values):.3f} / {max(values):.3f}" if values else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/absorb-val-plain,data/absorb-val-absorbing,data/absorb-val-independent",
                        help="comma-separated dataset folders")
    args = parser.parse_args()
    by_k, by_source = [], {}
    for n, path in enumerate(args.data.split(",")):
        scores = folder_scores(path)
        for label, lo, hi in BINS:
            chosen = [s for s in scores if lo <= s[0] <= hi]
            if chosen:
                kept = [p for _, p, _ in chosen if p is not None]
                by_k.append([path, label, len(chosen), len(chosen) - len(kept), spread(kept)])
        for k, p, source in scores if n == 0 else []:  # the first folder's (the others share its objects)
            if k == 0 and p is not None:
                by_source.setdefault(source, []).append(p)
    sources = [[name, len(v), spread(v)] for name, v in sorted(by_source.items())]
    body = ("99th percentile of the estimated attenuation a per sample, min / median / max over the samples.\n\n"
            + markdown_table(["folder", "k (absorption / rad)", "samples", "refused", "99th pct of a: min / median / max"],
                             by_k)
            + f"\n\nTransparent samples of {args.data.split(',')[0]} by phase source:\n\n"
            + markdown_table(["source", "samples", "99th pct of a: min / median / max"], sources))
    write_results("absorption-estimate", "Absorption estimate on validation folders", body)


if __name__ == "__main__":
    main()
