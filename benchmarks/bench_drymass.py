"""Is the per-object dry-mass error a bias or scatter? Signed errors of each method, by object size.

Usage: python benchmarks/bench_drymass.py [--sets phantoms-test] [--data data/default-val] [--n 24]
       [--steps K] [--model default]

accuracy.md reports the mean |relative error| of per-object dry mass. This splits it: for every
labelled object, (m_pred - m_true) / m_true with both phases referenced to their background median
(`chromaqpi.metrics.dry_mass_error`), pooled over the first --n labelled scenes of each source.
A negative median means mass is systematically missed; the halves by object area show whether the
loss grows with size, as it would if the lowest spatial frequencies (which carry an object's mass and
hardly any defocus contrast) were what is missing. Sources: evaluation sets (--sets) and validation
shard folders (--data: samples with labels only, each with its own drawn microscope).
Writes benchmarks/results/drymass.md.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import chromaqpi
from _common import markdown_table, model_steps, write_results
from chromaqpi.datasets.evalsets import load_evalset
from chromaqpi.datasets.torch_data import DatasetFolder
from chromaqpi.metrics import dry_mass_error
from chromaqpi.microscope import Microscope

METHODS = ("tie", "wotf", "mean", "zmd")


def evalset_scenes(name: str, n: int) -> list[tuple]:
    """(images, phase, labels, microscope) of an evaluation set's first n labelled samples."""
    return [(torch.as_tensor(s.images).float(), torch.as_tensor(s.phase).double(),
             torch.as_tensor(s.mask).long(), s.microscope)
            for s in load_evalset(name, n=n) if s.mask is not None and int(s.mask.max()) > 0]


def folder_scenes(folder: str, n: int) -> list[tuple]:
    """The same from a shard folder's first n samples with labels."""
    data, scenes = DatasetFolder(folder, verify=False), []
    for i in range(data.n):
        raw = data.sample(i)
        if not raw["has_mask"] or raw["mask"].max() == 0:
            continue
        scope = Microscope.from_dict(raw["params"]["microscope"])
        scenes.append((torch.from_numpy(raw["input"].astype(np.float32)), torch.from_numpy(raw["phase"]).double(),
                       torch.from_numpy(raw["mask"].astype(np.int64)), scope))
        if len(scenes) == n:
            break
    return scenes


def signed_errors(scenes: list[tuple], model: str, steps: int, label: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Per method: (signed relative errors, object areas in px, scene index) over all objects."""
    out = {m: ([], [], []) for m in METHODS}
    for i, (images, phase, labels, scope) in enumerate(tqdm(scenes, desc=label)):
        areas = torch.bincount(labels.flatten())[1:].double()
        for method in METHODS:
            opts = {"model": model} if method in ("mean", "zmd") else {}
            if method == "zmd":
                opts.update(steps=steps, generator=torch.Generator().manual_seed(1000 + i))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                pred = chromaqpi.reconstruct(images, scope, method=method, **opts).double()
            err = dry_mass_error(pred, phase, labels, num_labels=len(areas))
            keep = torch.isfinite(err) & (areas > 0)
            for store, values in zip(out[method], (err[keep], areas[keep], torch.full_like(err[keep], i))):
                store.append(values.numpy())
    return {m: tuple(np.concatenate(v) for v in lists) for m, lists in out.items()}


def rows_for(source: str, n_scenes: int, errors: dict) -> list[list]:
    rows = []
    for method, (err, area, scene) in errors.items():
        small = area < np.median(area)
        per_scene = [err[scene == s].mean() for s in np.unique(scene)]
        rows.append([source, method, n_scenes, err.size, f"{np.median(err):+.3f}", f"{err.mean():+.3f}",
                     f"{np.abs(err).mean():.3f}", f"{100 * np.mean(err < 0):.0f}",
                     f"{100 * np.mean(np.array(per_scene) < 0):.0f}",
                     f"{np.median(err[small]):+.3f}", f"{np.median(err[~small]):+.3f}"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="phantoms-test", help="comma-separated evaluation sets with labels")
    parser.add_argument("--data", default="data/default-val", help="comma-separated validation shard folders")
    parser.add_argument("--n", type=int, default=24, help="labelled scenes per source")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps of the ZMD draw (default: the count the model's card recommends)")
    parser.add_argument("--model", default="default", help="shipped model name or checkpoint")
    args = parser.parse_args()
    args.steps = model_steps([args.model], args.steps)
    sources = [(name, lambda name=name: evalset_scenes(name, args.n)) for name in filter(None, args.sets.split(","))]
    for folder in filter(None, args.data.split(",")):
        if not (Path(folder) / "manifest.json").exists():
            parser.error(f"{folder} is not a dataset folder (scripts/train_shipped.sh builds data/default-val; "
                         "--data '' skips it)")
        sources.append((folder, lambda folder=folder: folder_scenes(folder, args.n)))
    rows = []
    for source, load in sources:
        scenes = load()
        if not scenes:
            print(f"{source}: no labelled scenes, skipped")
            continue
        rows += rows_for(source, len(scenes), signed_errors(scenes, args.model, args.steps, source))
    if not rows:
        parser.error("no source has labelled scenes (objects with labels are needed for dry mass)")
    header = ["source", "method", "scenes", "objects", "median signed", "mean signed", "mean abs.",
              "under (% objects)", "under (% scenes)", "median signed, small half", "median signed, large half"]
    body = (f"Model `{args.model}`; ZMD one {args.steps}-step DDIM draw (seed 1000 + scene index). Per object: "
            "(m_pred - m_true) / m_true, both phases referenced to their background median; pooled over "
            "objects. 'under (% scenes)': scenes whose mean object error is negative. Halves split the objects "
            "at the median area.\n\n" + markdown_table(header, rows))
    write_results("drymass", "Per-object dry-mass error: bias or scatter", body)


if __name__ == "__main__":
    main()
