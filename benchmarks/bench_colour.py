"""Does `chromaqpi.specimen_colour` tell stained specimens from transparent and grey ones?

Usage: python benchmarks/bench_colour.py [--n 8] [--size 256] [--val 16]

The `family` cell scenes of bench_microscopes.py (the `default` family, sensor noise): transparent, with a
grey absorber (k = 0.05 and 0.1 per radian of a second scene's phase, as bench_absorption.py
``--pattern independent``), and with each named stain at k = 0.01, 0.02 and 0.05. For each: the
chromatic optical density (``SpecimenColour.chromatic_od``), the share judged (a field of at least
``COLOUR_SMALL_FIELD`` blur widths), the share flagged as coloured (judged and above ``COLOURED_OD``, or
``COLOURED_OD_SMALL`` on fields under ``COLOUR_MIN_FIELD`` blur widths: bench_colour_small.py),
and the share whose nearest named stain is the true one. The threshold was
chosen on the validation scenes (indices 100 onwards, ``--val``), reported here beside the test scenes
(indices 0 to n-1, the scenes of bench_absorption.py).
Writes benchmarks/results/colour.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

from _common import write_results
from bench_microscopes import class_sample
from chromaqpi.consistency import COLOUR_MIN_FIELD, COLOUR_SMALL_FIELD, COLOURED_OD, COLOURED_OD_SMALL, specimen_colour
from chromaqpi.optics.spectra import STAINS

CASES = ([("transparent", None, 0.0)] + [("grey", None, k) for k in (0.05, 0.1)]
         + [(name, name, k) for name in STAINS if name != "grey" for k in (0.01, 0.02, 0.05)])


def measure(indices, size):
    """{(label, k): [SpecimenColour]} over the scenes."""
    out = {(label, k): [] for label, _, k in CASES}
    for i in tqdm(indices, desc="scenes"):
        for label, stain, k in CASES:
            images, _, microscope = class_sample("family", i, size, absorption_per_rad=k,
                                                 absorption_pattern="independent", stain=stain)
            out[label, k].append(specimen_colour(images[0].double(), microscope))
    return out


def table(results) -> str:
    rows = ["| specimen | k | chromatic OD, median | max | max judged | judged | flagged coloured | nearest stain right |",
            "|---|---|---|---|---|---|---|---|"]
    for (label, k), values in results.items():
        od = np.array([c.chromatic_od for c in values])
        judged = [c.chromatic_od for c in values if c.judged]
        right = (f"{sum(c.nearest_stain == label for c in values)}/{len(values)}" if label in STAINS else "-")
        rows.append(f"| {label} | {k:g} | {np.median(od):.4f} | {od.max():.4f} | "
                    f"{max(judged) if judged else float('nan'):.4f} | {len(judged)}/{len(values)} | "
                    f"{sum(c.coloured for c in values)}/{len(values)} | {right} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="test scenes (indices 0 to n-1)")
    parser.add_argument("--val", type=int, default=16, help="validation scenes (indices 100 onwards)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    started = datetime.now()
    val = measure(range(100, 100 + args.val), args.size)
    test = measure(range(args.n), args.size)
    body = (f"Threshold `COLOURED_OD` = {COLOURED_OD:g} on fields of at least {COLOUR_MIN_FIELD:g} blur widths, "
            f"`COLOURED_OD_SMALL` = {COLOURED_OD_SMALL:g} from {COLOUR_SMALL_FIELD:g} blur width up; Gaussian σ 10 µm; {args.size} px scenes (their pixel sizes are drawn); "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n"
            f"## Validation scenes (indices 100-{99 + args.val}; the threshold was chosen here)\n\n{table(val)}\n\n"
            f"## Test scenes (indices 0-{args.n - 1}, as bench_absorption.py)\n\n{table(test)}\n")
    write_results("colour", "Telling stained specimens from transparent and grey ones (specimen_colour)", body)


if __name__ == "__main__":
    main()
