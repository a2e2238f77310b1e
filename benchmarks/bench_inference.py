"""Inference cost of a shipped model: seconds per 256x256 image and peak memory at 2048x2048.

1. Seconds per 256x256 image (one tile) for the mean network and ZMD with K DDIM steps (one draw),
   through ``chromaqpi.reconstruct`` as a user calls it; torch threads as given.
2. Peak resident memory of ``chromaqpi reconstruct`` on a 2048x2048 RGB image (the default tiling:
   overlapping 512 px tiles), measured in a fresh subprocess (``ru_maxrss`` of the child) against the same command
   on a 256x256 image as the baseline; the requirement is < 2 GB. Memory does not depend on K,
   so this uses few steps to stay short.

The in-run baseline times the network call alone in the default NCHW layout against channels_last.

Usage: python benchmarks/bench_inference.py [--model default] [--steps 10 25 200] [--threads 1]
       [--big 2048 (0: timing only, to inference-MODEL-Nthreads.md)] [--big-steps 5]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import markdown_table, timed, write_results
import chromaqpi
from chromaqpi import Microscope
from chromaqpi.io import write_tiff
from chromaqpi.models.registry import load_model, model_input


def test_image(size: int, scope: Microscope, seed: int = 0) -> torch.Tensor:
    """A simulated cell field (1, 3, size, size), flat-fielded, as a user would pass it."""
    from chromaqpi.phantoms import get_source, phase_rad

    src = get_source("cells", n_objects=(max(1, size // 40), max(2, size // 20)))
    phase = phase_rad(src((size, size), scope.sampling.pixel_size_um, np.random.default_rng(seed)), 0.55)
    fast = scope.replace(spectra={"n_wavelengths": 8}, optics={"source_points": 12})  # test input only
    with torch.no_grad():
        return chromaqpi.simulate(torch.from_numpy(phase), fast, generator=torch.Generator().manual_seed(seed))


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of one ``chromaqpi`` subprocess (its own rusage, via wait4)."""
    import os

    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "chromaqpi.cli.main", *args],
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(err.read().decode(errors="replace").strip().splitlines()[-1])
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 200])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--big", type=int, default=2048)
    parser.add_argument("--big-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    net = load_model(args.model)
    scope = Microscope.from_preset(net.card.get("microscope_preset", args.model))
    x = test_image(256, scope)[0]
    rows = [["mean", "-", f"{timed(lambda: chromaqpi.reconstruct(x, scope, method='mean', model=args.model), repeat=2):.2f}"]]
    for k in args.steps:
        run = lambda: chromaqpi.reconstruct(x, scope, method="zmd", model=args.model, steps=k,  # noqa: E731
                                            generator=torch.Generator().manual_seed(0))
        rows.append(["zmd", str(k), f"{timed(run, repeat=1, warmup=1 if k <= 25 else 0):.2f}"])
    # Baseline in the same run: the network call alone, default NCHW layout vs channels_last (what
    # reconstruct uses), on the same model input.
    k = min(args.steps, key=lambda s: abs(s - 25))
    inp = model_input(net, x[None], scope)
    layouts = {}
    for name, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model, xin = copy.deepcopy(net).to(memory_format=fmt), inp.contiguous(memory_format=fmt)
        layouts[name] = timed(lambda: model.sample(xin, steps=k, generator=torch.Generator().manual_seed(0)),
                              repeat=1, warmup=1)
    for name, seconds in layouts.items():
        rows.append([f"zmd network only, {name} layout", str(k), f"{seconds:.2f}"])
    ratio = layouts["NCHW"] / layouts["channels_last"]
    table1 = markdown_table([f"`{args.model}`, one 256x256 image, {args.threads} thread(s)", "K", "seconds"], rows)

    if not args.big:  # timing only: a separate results file, the memory table stays as measured
        write_results(f"inference-{args.model}-{args.threads}threads",
                      f"Inference time of the shipped `{args.model}` model, {args.threads} thread(s)",
                      f"{table1}\n\nchannels_last vs NCHW (same run, same input): {ratio:.2f}x faster.")
        return
    rows2 = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (256, args.big):
            img = test_image(size, scope, seed=1)[0] if size <= 512 else _tiled_field(scope, size)
            path = Path(tmp) / f"field{size}.tif"
            write_tiff(path, img.numpy(), metadata={"quantity": "I/I_bg"}, unit="intensity")
            for method, extra in (("mean", []), ("zmd", ["--steps", str(args.big_steps)])):
                mib, wall = peak_rss_mib(["reconstruct", str(path), "--method", method, "--model", args.model,
                                          "--microscope", scope.name, "--normalized", "--no-preview",
                                          "--out", str(Path(tmp) / "out"), *extra])
                rows2.append([f"{size}x{size}", method + (f" (K={args.big_steps})" if extra else ""),
                              f"{mib:.0f}", f"{wall:.1f}"])
    table2 = markdown_table(["image", "method", "peak RSS (MiB)", "wall (s, incl. start-up)"], rows2)
    body = (f"{table1}\n\nchannels_last vs NCHW (same run, same input): {ratio:.2f}x faster.\n\n{table2}\n\nPeak memory comes from a fresh `chromaqpi reconstruct` process per row "
            f"(torch's default threads); requirement at {args.big}x{args.big}: < 2 GB (1907 MiB).")
    write_results(f"inference-{args.model}", f"Inference cost of the shipped `{args.model}` model", body)


def _tiled_field(scope: Microscope, size: int) -> torch.Tensor:
    """A large field from 256 px simulated tiles (simulating 2048 px directly costs minutes)."""
    tiles = [test_image(256, scope, seed=s)[0] for s in range(4)]
    rows = [torch.cat([tiles[(i + j) % 4] for j in range(size // 256)], dim=-1) for i in range(size // 256)]
    return torch.cat(rows, dim=-2)


if __name__ == "__main__":
    main()
