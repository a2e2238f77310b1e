"""Can `specimen_colour` judge small fields (10-25 µm)? The measurement behind ``COLOURED_OD_SMALL``.

Usage: python benchmarks/bench_colour_small.py [--val 120] [--n 64] [--first 0]

`specimen_colour` judged a field only from 2.5 blur widths (25 µm) up, because on smaller fields a
transparent specimen's defocus contrast does not average out under the 10 µm blur. A user's crop of a
stained slide under that size was then never flagged, and `auto` ran `default`, which reads a stain's
colour as phase (absorption-training.md: 0.85-1.96 rad on three such two-dye validation fields). This
measures a separate threshold for fields of 1 to 2.5 blur widths (adopted: ``COLOURED_OD_SMALL``; the
script recomputes it from the readings and does not use the constant).

Scenes: the `family` cell scenes of bench_microscopes.py (sensor noise), each at the size (a multiple of
16, at least 64 px) that gives it a field of 10-25 µm at its drawn pixel size (a deterministic draw per
index; indices whose pixels are too large for it are skipped): transparent, with a grey absorber (k = 0.05
and 0.1 per radian, independent pattern) and with each named stain at k = 0.01, 0.02 and 0.05.

Rule (written and committed before the measurement):
- Validation: indices 100 to 100 + val - 1, transparent and grey only. T_small = 1.25 x the largest
  chromatic OD among them (the margin of ``COLOURED_OD``).
- Test: indices 0 to n - 1, every case. T_small is adopted for fields of 1 to 2.5 blur widths only if
  on the test scenes (a) at most 2 % of the transparent and grey ones exceed it, (b) the mean nMAE of
  the routed mean net (`default-stained` where flagged, `default` elsewhere) over all test cases is lower
  than `default`'s everywhere (today's routing on these fields), and (c) on the transparent and grey
  ones the routed mean net is within 1 % of `default`'s. Otherwise nothing changes.
Scores: the mean nets' offset-aligned nMAE (mean offset) with each scene's own microscope.
Writes benchmarks/results/colour-small-fields.md.
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

from _common import markdown_table, write_results
from bench_colour import CASES
from bench_microscopes import SET_ID, class_sample
from chromaqpi import reconstruct
from chromaqpi.consistency import COLOUR_MIN_FIELD, COLOUR_SCALE_UM, COLOURED_OD, specimen_colour
from chromaqpi.datasets import seeds
from chromaqpi.datasets.randomize import draw_microscope, get_family
from chromaqpi.metrics import normalised_mae

SMALLEST_FIELD = 1.0  # blur widths
MODELS = ("default", "default-stained")
MARGIN = 1.25
SIZE_STREAM = 7  # class_sample's streams are 0-4: this one only picks the size


def small_size(i: int) -> int | None:
    """A size (multiple of 16, >= 64 px) giving scene i a field of 1-2.5 blur widths, or None."""
    # The family class's microscope draw of class_sample, for its pixel size.
    microscope = draw_microscope(None, get_family("default"), seeds.rng_from(seeds.eval_sequence(SET_ID, i, 0)))
    pixel = microscope.sampling.pixel_size_um
    lo, hi = SMALLEST_FIELD * COLOUR_SCALE_UM / pixel, COLOUR_MIN_FIELD * COLOUR_SCALE_UM / pixel
    sizes = [s for s in range(64, int(hi) + 1, 16) if lo <= s < hi]
    if not sizes:
        return None
    u = seeds.rng_from(seeds.eval_sequence(SET_ID, i, SIZE_STREAM)).random()
    return sizes[int(u * len(sizes))]


def measure(indices, cases, *, nets: bool):
    """[(index, label, k, field µm, chromatic OD, {model: nMAE})] over the scenes that fit."""
    rows = []
    for i in tqdm(indices, desc="scenes"):
        size = small_size(i)
        if size is None:
            continue
        for label, stain, k in cases:
            images, true, microscope = class_sample("family", i, size, absorption_per_rad=k,
                                                    absorption_pattern="independent", stain=stain)
            colour = specimen_colour(images[0].double(), microscope)
            scores = {}
            if nets:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for model in MODELS:
                        est = reconstruct(images, microscope, method="mean", model=model)[0]
                        scores[model] = float(normalised_mae(est, true, align="mean"))
            rows.append((i, label, k, size * microscope.sampling.pixel_size_um, colour.chromatic_od, scores))
    return rows


def is_clear(label: str) -> bool:
    return label in ("transparent", "grey")


def case_table(rows, threshold: float) -> str:
    header = ["specimen", "k", "scenes", "chromatic OD, median", "max", f"flagged at {threshold:.4f}",
              "nMAE default", "nMAE default-stained", "nMAE routed"]
    body = []
    for label, _, k in CASES:
        sel = [r for r in rows if r[1] == label and r[2] == k]
        if not sel:
            continue
        od = np.array([r[4] for r in sel])
        flagged = od > threshold
        nets = [r[5] for r in sel]
        cells = ["-"] * 3
        if nets[0]:
            d = np.array([n["default"] for n in nets])
            s = np.array([n["default-stained"] for n in nets])
            cells = [f"{d.mean():.4f}", f"{s.mean():.4f}", f"{np.where(flagged, s, d).mean():.4f}"]
        body.append([label, f"{k:g}", str(len(sel)), f"{np.median(od):.4f}", f"{od.max():.4f}",
                     f"{flagged.sum()}/{len(sel)}", *cells])
    return markdown_table(header, body)


def verdict(rows, threshold: float) -> tuple[bool, str]:
    clear = [r for r in rows if is_clear(r[1])]
    false_flags = sum(r[4] > threshold for r in clear)
    routed = [r[5]["default-stained"] if r[4] > threshold else r[5]["default"] for r in rows]
    today = [r[5]["default"] for r in rows]
    routed_clear = [r[5]["default-stained"] if r[4] > threshold else r[5]["default"] for r in clear]
    today_clear = [r[5]["default"] for r in clear]
    a = false_flags <= 0.02 * len(clear)
    b = np.mean(routed) < np.mean(today)
    c = np.mean(routed_clear) <= 1.01 * np.mean(today_clear)
    text = (f"(a) transparent and grey test scenes above T_small: {false_flags}/{len(clear)} (at most 2 %: "
            f"{'pass' if a else 'fail'}); (b) all test scenes, routed {np.mean(routed):.4f} vs `default` "
            f"{np.mean(today):.4f} ({'pass' if b else 'fail'}); (c) transparent and grey, routed "
            f"{np.mean(routed_clear):.4f} vs {np.mean(today_clear):.4f}, ratio "
            f"{np.mean(routed_clear) / np.mean(today_clear):.4f} (at most 1.01: {'pass' if c else 'fail'})")
    return a and b and c, text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", type=int, default=120, help="validation scenes (indices 100 onwards)")
    parser.add_argument("--n", type=int, default=64, help="test scenes (indices first to first + n - 1)")
    parser.add_argument("--first", type=int, default=0, help="first test index (default 0; a smoke test may skip)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    started = datetime.now()
    clear_cases = [c for c in CASES if is_clear(c[0])]
    val = measure(range(100, 100 + args.val), clear_cases, nets=False)
    threshold = MARGIN * max(r[4] for r in val)
    test = measure(range(args.first, args.first + args.n), CASES, nets=True)
    adopted, text = verdict(test, threshold)
    fields = np.array([r[3] for r in val + test])
    body = (f"Fields of {SMALLEST_FIELD:g}-{COLOUR_MIN_FIELD:g} blur widths ({fields.min():.1f}-{fields.max():.1f} µm "
            f"here); Gaussian σ {COLOUR_SCALE_UM:g} µm; the judged-field threshold `COLOURED_OD` is {COLOURED_OD:g}. "
            f"Validation: {len({r[0] for r in val})} scenes, the largest transparent or grey chromatic OD "
            f"{max(r[4] for r in val):.4f}, so T_small = {MARGIN:g} x it = {threshold:.4f}. Test: "
            f"{len({r[0] for r in test})} scenes; mean nets of the shipped `default` and `default-stained` "
            f"(fp16 weights); 'routed': `default-stained` where the OD exceeds T_small, else `default`. "
            f"{(datetime.now() - started).seconds / 60:.1f} min in all.\n\n"
            f"## Validation scenes (T_small was set here)\n\n{case_table(val, threshold)}\n\n"
            f"## Test scenes\n\n{case_table(test, threshold)}\n\n"
            f"## Rule\n\n{text}: T_small {'adopted' if adopted else 'not adopted'}.\n")
    write_results("colour-small-fields", "Judging the colour of small fields (10-25 µm)", body)


if __name__ == "__main__":
    main()
