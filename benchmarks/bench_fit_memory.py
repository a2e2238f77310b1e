"""Peak memory and time of the iterative fit, keeping or recomputing the simulator's fields.

Usage: python benchmarks/bench_fit_memory.py [--sizes 256,512] [--iterations 5] [--preset default]

Each case runs in a fresh process (peak RSS is per process): the images of a smooth random
phase (simulated beforehand, noiseless, full quadrature) are fitted for a fixed number of L-BFGS
iterations from zero with the reduced quadrature (``fast=True``, what ``iterative`` and
``--refine`` use), once with the fields kept for the gradient and once recomputed in the backward
pass (``Simulator.recompute``; a fit switches it on by itself only when the plain fit would not
fit in the free memory). Both must end in the same phase. Writes benchmarks/results/fit-memory.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import markdown_table, write_results

CHILD = r"""
import json, resource, sys, time, torch
import chromaqpi.solvers.iterative as it
from chromaqpi import Microscope
from chromaqpi.optics.simulator import get_simulator
torch.set_flush_denormal(True)
path, preset, iterations, recompute = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
images = torch.load(path)
size = tuple(images.shape[-2:])
start = torch.zeros(1, *size)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
it.plan_memory = lambda *a: recompute  # the case decides, not the free memory
t = time.perf_counter()
phase = it.refine(images, Microscope.from_preset(preset), start, steps=iterations, tv=0.0, tol=0.0)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "added_gb": (peak - base) * 1024 / 2**30, "checksum": float(phase.double().abs().sum())}))
"""

SIMULATE = r"""
import sys, torch
from chromaqpi import Microscope, simulate
size, preset, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
g = torch.Generator().manual_seed(0)
phase = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 9, 1, 4)[0] * 6
torch.save(simulate(phase, Microscope.from_preset(preset), noise=False), path)
"""


def run(code: str, *args) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return proc.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512", help="comma-separated image sides (px)")
    parser.add_argument("--iterations", type=int, default=5, help="L-BFGS iterations per fit")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    header = ["size (px)", "fields", "added peak memory (GB)", "memory vs kept", "seconds", "time vs kept",
              "same phase"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"images_{size}.pt"
            run(SIMULATE, size, args.preset, path)
            kept, again = (json.loads(run(CHILD, path, args.preset, args.iterations, flag)) for flag in ("0", "1"))
            same = abs(kept["checksum"] - again["checksum"]) <= 1e-6 * abs(kept["checksum"])
            for name, r in (("kept", kept), ("recomputed", again)):
                rows.append([size, name, f"{r['added_gb']:.2f}", f"{r['added_gb'] / kept['added_gb']:.2f}",
                             f"{r['seconds']:.1f}", f"{r['seconds'] / kept['seconds']:.2f}",
                             "yes" if same else "NO"])
            print(markdown_table(header, rows[-2:]), flush=True)
    body = (f"Preset `{args.preset}` (the fit's reduced quadrature), {args.iterations} L-BFGS iterations from "
            "zero phase on noiseless images of a smooth random phase, no TV, no early stopping. 'added peak "
            "memory': the fitting process's peak RSS minus its RSS before the fit (each case its own process). "
            "'same phase': the two fits' results agree to 1e-6 (sum of |phase|).\n\n"
            + markdown_table(header, rows))
    write_results("fit-memory", "Iterative fit: memory with the simulator's fields kept or recomputed", body)


if __name__ == "__main__":
    main()
