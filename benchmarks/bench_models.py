"""Learned-model cost: training samples/s and inference seconds per 256x256 image.

Models use the default architectures (``UNetConfig()``: 32 base channels, widths x(1, 2, 4, 8), two
residual blocks per level, bottleneck attention; ZMD adds a 16-channel kappa net). Weights are
random: cost does not depend on training. Training throughput covers forward, backward, AdamW and
the EMA update on one fixed batch; inference is one draw (``samples=1``) with the deterministic DDIM
sampler, so ZMD costs one mean-net and one kappa-net call plus K noise-net calls.

Usage: python benchmarks/bench_models.py [--size 256] [--batch 2] [--steps 10 25 100] [--threads N]

On a CPU shared with other jobs, use --threads 1: oversubscribed intra-op threads can be 10x slower.
"""

from __future__ import annotations

import argparse
import os

import torch

from _common import markdown_table, timed, write_results
from chromaqpi.models.registry import build_model
from chromaqpi.training.loop import measure_train_throughput


def batch_of(size: int, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"input": torch.rand(n, 3, size, size, generator=g) - 0.5,
            "target": 3.0 * torch.rand(n, 1, size, size, generator=g)}


def params_m(model) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2, help="training batch size")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 100], help="ZMD sampler steps K")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--shipped", action="store_true",
                        help="the shipped models' architecture (width 16, 3 levels, 1 block) instead of the default")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as training and inference do
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.shipped:
        from chromaqpi.cli.train import model_config

        mean, zmd = (build_model(model_config(kind, 3, 16, 3, 1)) for kind in ("mean", "zmd"))
    else:
        mean, zmd = build_model({"kind": "mean"}), build_model({"kind": "zmd"})
    batch = batch_of(args.size, args.batch)
    x = batch_of(args.size, 1)["input"]

    rows = []
    for name, model in (("mean", mean), ("zmd", zmd)):
        rate = measure_train_throughput(model, batch, steps=2, warmup=1)
        rows.append([name, params_m(model), f"{args.batch}", f"{rate:.3f}"])
    table1 = markdown_table([f"training, {args.size}x{args.size}", "parameters (M)", "batch", "samples/s"], rows)

    mean.eval()
    zmd.eval()
    rows2 = [["mean", "-", f"{timed(lambda: mean.predict(x), repeat=2):.2f}"]]
    for k in args.steps:
        gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        seconds = timed(lambda: zmd.predict(x, steps=k, generator=gen()), repeat=1, warmup=0)
        rows2.append(["zmd (DDIM)", str(k), f"{seconds:.2f}"])
    table2 = markdown_table([f"inference, one {args.size}x{args.size} image", "K", "seconds"], rows2)
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    body = (f"{table1}\n\n{table2}\n\nLoad average at the end (1, 5, 15 min): {load}. On a shared CPU the "
            "numbers vary with other jobs; ZMD inference is about (K + 2) noise-net-sized calls.")
    name = "models-shipped" if args.shipped else "models"
    arch = "shipped architecture (width 16, 3 levels, 1 block)" if args.shipped else "default architecture"
    write_results(name, f"Learned models: training and inference cost, {arch}", body)


if __name__ == "__main__":
    main()
