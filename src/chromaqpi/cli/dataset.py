"""``chromaqpi dataset build|preview|verify``: synthetic training sets on disk.

Examples::

    chromaqpi dataset build --microscope default --n 10000 --size 128 --seed 1 --out data/train --workers 2
    chromaqpi dataset build --source "cells:0.7,rbc:0.3" --microscope default --n 512 --size 128 --seed 2 --out data/cells
    chromaqpi dataset build --source skimage-train --microscope paper-rgb --n 1000 --size 256 --seed 3 --out data/prgb
    chromaqpi dataset preview data/train --out preview.png
    chromaqpi dataset verify data/train

Re-running an interrupted ``build`` with the same arguments resumes it.
"""

from __future__ import annotations

import os


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="simulate (image, phase) pairs into compressed shards",
                           description="Simulate (image, phase) pairs with domain randomisation into compressed, "
                                       "checksummed .npz shards. Re-run the same command to resume.")
    build.add_argument("--source", default=None, metavar="NAME[:WEIGHT][,NAME...]",
                       help="phase sources with mixing weights; parameters as NAME(key=value;...), e.g. "
                            "'cells:0.7,folder(path=/data/img):0.3' (default: the family's sources)")
    build.add_argument("--microscope", "-m", default="default", metavar="FAMILY|preset:NAME|FILE",
                       help="randomisation family (default, paper-rgb, paper-2shot), a fixed preset as "
                            "preset:NAME, or a TOML file (a [ranges] table or one microscope) (default: %(default)s)")
    build.add_argument("--n", type=int, required=True, metavar="N", help="number of samples")
    build.add_argument("--size", type=int, default=128, metavar="S", help="image size in pixels (default: %(default)s)")
    build.add_argument("--seed", type=int, required=True, metavar="K", help="seed in [0, 2**31)")
    build.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset folder (created; resumes if present)")
    build.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), metavar="W",
                       help="worker processes; the output does not depend on it (default: %(default)s)")
    build.add_argument("--shard-size", type=int, default=256, metavar="N", help="samples per shard (default: %(default)s)")
    build.add_argument("--group-size", type=int, default=4, metavar="G",
                       help="consecutive samples sharing one drawn microscope (default: %(default)s)")
    build.add_argument("--no-noise", action="store_true", help="noiseless images")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument("--dry-run", action="store_true",
                       help="print the resolved sources, family and the first drawn microscope (TOML); build nothing")

    preview = sub.add_parser("preview", help="PNG grid of inputs (colour composites) and phases")
    preview.add_argument("root", metavar="DIR", help="dataset folder")
    preview.add_argument("--out", "-o", required=True, metavar="PNG", help="output PNG")
    preview.add_argument("--count", type=int, default=8, metavar="K", help="samples to show (default: %(default)s)")
    preview.add_argument("--seed", type=int, default=None, metavar="K",
                         help="show a random selection drawn with this seed (default: the first samples)")

    verify = sub.add_parser("verify", help="check the manifest and every shard's sha256")
    verify.add_argument("root", metavar="DIR", help="dataset folder")


def run(args):
    return {"build": _build, "preview": _preview, "verify": _verify}[args.action](args)


# The build's messages name its parameters; on the command line they are flags.
BUILD_FLAGS = {"n": "--n", "size": "--size", "shard_size": "--shard-size", "group_size": "--group-size",
               "seed": "--seed", "workers": "--workers"}


def _build(args):
    from chromaqpi.cli.common import naming_flags
    from chromaqpi.datasets.build import build_dataset

    if args.dry_run:
        with naming_flags(BUILD_FLAGS):
            return _dry_run(args)
    with naming_flags(BUILD_FLAGS):
        manifest = build_dataset(args.source, args.microscope, args.n, args.size, args.seed, args.out,
                                 workers=args.workers, shard_size=args.shard_size, group_size=args.group_size,
                                 noise=not args.no_noise, progress=not args.quiet)
    size = sum(s.get("bytes") or 0 for s in manifest["shards"])
    print(f"{args.out}: {manifest['config']['n']} samples in {len(manifest['shards'])} shard(s), "
          f"{size / 2**20:.1f} MiB, family {manifest['config']['family']['name']}")


def _dry_run(args):
    import json

    from chromaqpi.datasets.build import build_config, check_target
    from chromaqpi.datasets.generate import draw_group_microscope
    from chromaqpi.datasets.randomize import resolve_ranges
    from chromaqpi.datasets.sources import format_sources, resolve_sources

    check_target(args.out, args.workers)
    ranges = resolve_ranges(args.microscope)
    base = ranges.base_microscope()
    specs = resolve_sources(args.source or ranges.default_source, wavelength_um=base.optics.wavelength_ref_um)
    config = build_config(specs, ranges, args.n, args.size, args.seed, args.shard_size, args.group_size,
                          not args.no_noise)  # the checks a build makes, so a dry run accepts only what would run
    first = draw_group_microscope(ranges, config["seed"], 0)
    print(f"# sources: {format_sources(specs)}")
    print(f"# family: {json.dumps(ranges.to_dict())}")
    print(f"# {args.n} samples of {args.size}x{args.size} in {-(-args.n // args.shard_size)} shard(s) -> {args.out}")
    print("# microscope of the first group:")
    print(first.to_toml())


def _preview(args):
    import numpy as np

    from chromaqpi.cli.common import output_file
    from chromaqpi.datasets.preview import save_preview
    from chromaqpi.datasets.torch_data import DatasetFolder
    from chromaqpi.errors import ConfigError

    if args.count < 1:
        raise ConfigError("--count must be >= 1")
    output_file(args.out, suffix=".png")
    store = DatasetFolder(args.root, verify=False)
    count = min(args.count, store.n)
    if args.seed is None:
        indices = list(range(count))
    else:
        indices = sorted(np.random.default_rng(args.seed).choice(store.n, count, replace=False).tolist())
    samples = [store.sample(i) for i in indices]
    save_preview(args.out, samples)
    print(f"wrote {args.out} ({count} samples of {args.root})")


def _verify(args):
    from chromaqpi.datasets.shards import verify_dataset

    manifest = verify_dataset(args.root)  # checksums, then each shard's count against the manifest
    n = sum(shard["count"] for shard in manifest["shards"])
    print(f"{args.root}: OK, {len(manifest['shards'])} shard(s), {n} samples, checksums match")
