"""Can ``chromaqpi.estimate_absorption`` tell an absorbing sample from a transparent one?

Usage: python benchmarks/bench_absorption_estimate.py
           [--data data/absorb-val-plain,data/absorb-val-absorbing,data/absorb-val-independent]

The absorb-val folders (absorption-training.md) hold the same 32 objects and microscopes of the
`default` training mix, transparent, absorbing along their phase, and absorbing by a second object;
the params record each sample's k. Per sample: the 99th percentile of the estimated attenuation a,
alone and given a phase map (the attenuation it predicts subtracted): the true phase (what the
correction can do at best) and the `default` mean network's map (what a user has).
Reported by folder and k (min / median / max over the samples), the first folder's transparent
samples also by phase source, and how many drawn microscopes were refused (channels' defocus too alike for an
intercept). Validation data only: this reads no test set. Writes benchmarks/results/absorption-estimate.md.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import chromaqpi
from _common import markdown_table, write_results
from chromaqpi.consistency import check_absorption_identifiable, estimate_absorption
from chromaqpi.datasets.torch_data import DatasetFolder
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope

BINS = (("0 (transparent)", 0.0, 0.0), ("(0, 0.03]", 1e-12, 0.03), ("(0.03, 0.1]", 0.03 + 1e-12, 0.1))


def folder_scores(path: str, model: str) -> list[tuple[float, list[float] | None, str]]:
    """(k, 99th percentiles of the estimate [alone, given the true phase, given the mean net's phase] or
    None where refused, phase source) per sample."""
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
        images = torch.as_tensor(sample["input"]).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mean = chromaqpi.reconstruct(images[None].float(), microscope, method="mean", model=model)[0]
            phases = (None, torch.as_tensor(sample["phase"]).double(), mean.double())
            out.append((k, [_p99(estimate_absorption(images, microscope, phase=p)) for p in phases], params["source"]))
    return out


def _p99(a: torch.Tensor) -> float:
    return float(torch.quantile(a.flatten().float(), 0.99))


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {np.median(values):.3f} / {max(values):.3f}" if values else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/absorb-val-plain,data/absorb-val-absorbing,data/absorb-val-independent",
                        help="comma-separated dataset folders")
    parser.add_argument("--model", default="default", help="mean network whose phase maps are given")
    args = parser.parse_args()
    by_k, by_source = [], {}
    for n, path in enumerate(args.data.split(",")):
        scores = folder_scores(path, args.model)
        for label, lo, hi in BINS:
            chosen = [s for s in scores if lo <= s[0] <= hi]
            if chosen:
                kept = [p for _, p, _ in chosen if p is not None]
                by_k.append([path, label, len(chosen), len(chosen) - len(kept)] + [spread([p[j] for p in kept])
                                                                                   for j in range(3)])
        for k, p, source in scores if n == 0 else []:  # the first folder's (the others share its objects)
            if k == 0 and p is not None:
                by_source.setdefault(source, []).append(p)
    sources = [[name, len(v)] + [spread([p[j] for p in v]) for j in range(3)] for name, v in sorted(by_source.items())]
    columns = [f"99th pct of a, {given}: min / median / max"
               for given in ("alone", "given the true phase", f"given the `{args.model}` mean net's phase")]
    body = ("99th percentile of the estimated attenuation a per sample (alone, and minus what a phase map "
            "predicts: `estimate_absorption(..., phase=)`), min / median / max over the samples.\n\n"
            + markdown_table(["folder", "k (absorption / rad)", "samples", "refused"] + columns, by_k)
            + f"\n\nTransparent samples of {args.data.split(',')[0]} by phase source:\n\n"
            + markdown_table(["source", "samples"] + columns, sources))
    write_results("absorption-estimate", "Absorption estimate on validation folders", body)


if __name__ == "__main__":
    main()
