"""``chromaqpi train --model mean|ddpm|cvdm|zmd --data DIR|on-the-fly --microscope FAMILY --out RUN``.

Examples
--------
Small model on this CPU from pre-built shards::

    chromaqpi train --model zmd --data data/train --val data/val --microscope default \\
        --out runs/zmd-default --steps 3000 --batch-size 8 --crop 96 --width 24

The same on 8 GPUs (DDP, NCCL), simulating data in the loader::

    torchrun --nproc_per_node 8 -m chromaqpi.cli.main train --model zmd --data on-the-fly \\
        --microscope default --out runs/zmd-big --steps 200000 --batch-size 32 --width 64

A TOML file (``--config``) can set every field of
:class:`chromaqpi.training.config.TrainConfig`; flags override it, except that a
``[model]`` table sets the whole model (``--width`` and the other model flags are then refused). The
resolved config is written to ``RUN/config.json`` (``--dry-run`` prints it and stops).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from chromaqpi.errors import ConfigError

PAPER_NORMALISATION = {"paper-rgb": "paper-rgb", "paper-2shot": "paper-2shot"}
# Flags that build the [model] table (argparse dest -> default when not given).
MODEL_FLAGS = {"width": 24, "levels": 4, "blocks": 2, "sigma_zmd": 0.5, "prior": None}


# Validation MAE beyond which a run has certainly failed: phase maps span a few rad.
DIVERGED_MAE_RAD = 100.0


def add_arguments(parser):
    parser.add_argument("--model", required=True, choices=("mean", "ddpm", "cvdm", "zmd"))
    parser.add_argument("--data", required=True, metavar="DIR[,DIR]|on-the-fly",
                        help="shard dataset folder(s) or 'on-the-fly' (simulate in the loader)")
    parser.add_argument("--val", metavar="DIR[,DIR]", help="validation shard folder(s) (best checkpoint by aligned MAE)")
    parser.add_argument("--microscope", default="default", metavar="FAMILY",
                        help="randomisation family (default, paper-rgb, paper-2shot) the model is for")
    parser.add_argument("--source", metavar="SPEC", help="phase sources for on-the-fly data (e.g. cells:2,textures:1)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument("--config", metavar="TOML",
                        help="TrainConfig fields as TOML (flags override; a [model] table excludes the model flags)")
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--crop", type=int, default=96, help="training crop (px, multiple of the stride)")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--channel-shift", type=float, default=0.0, metavar="PX",
                        help="augment RGB samples with red and blue moved sideways against green by up to "
                             "PX pixels (lateral colour, camera channel offsets); default 0: off")
    parser.add_argument("--channel-shift-prob", type=float, default=0.5, metavar="P",
                        help="share of the samples --channel-shift moves (default 0.5)")
    # The model flags have no argparse default, so that one given beside a [model] table is seen.
    parser.add_argument("--width", type=int, help=f"U-Net base channels (default: {MODEL_FLAGS['width']})")
    parser.add_argument("--levels", type=int, help=f"U-Net resolution levels (default: {MODEL_FLAGS['levels']})")
    parser.add_argument("--blocks", type=int,
                        help=f"residual blocks per U-Net level (default: {MODEL_FLAGS['blocks']})")
    parser.add_argument("--sigma-zmd", type=float, help="ZMD residual scale in rad: about the RMS of Y - mu(X) "
                        f"(default: {MODEL_FLAGS['sigma_zmd']})")
    parser.add_argument("--prior", choices=("tie",),
                        help="mean network corrects this classical solver's phase (mean and zmd models)")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="start from a trained model's weights (shipped name or directory), e.g. to fine-tune")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: 0, in the training process)")
    parser.add_argument("--val-every", type=int, help="validate every N steps")
    parser.add_argument("--val-batches", type=int, help="validation batches per check (0: the whole set)")
    parser.add_argument("--val-batch-size", type=int,
                        help="validation batch size (default: the training batch size); with --val-batches it sets "
                             "how many images each check scores")
    parser.add_argument("--seed", type=int, help="the run's one seed (default: 0, or the --config value)")
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


def model_config(kind: str, channels: int, width: int, levels: int, blocks: int = 2, sigma_zmd: float = 0.5,
                 prior: str | None = None) -> dict:
    if not 1 <= levels <= 6:
        raise ConfigError(f"--levels must be 1 to 6 U-Net resolution levels, got {levels}")
    mults = [1, 2, 4, 8, 8, 8][:levels]
    unet = {"base_channels": width, "channel_mults": mults, "blocks_per_level": blocks, "mid_attention": True,
            "groups": 8}
    config: dict = {"kind": kind, "in_channels": channels + (prior is not None), "out_channels": 1}
    if kind in ("mean", "zmd"):
        config["offset_invariant"] = True
    if prior is not None:
        if kind not in ("mean", "zmd"):
            raise ConfigError(f"--prior applies to mean and zmd models, not {kind}")
        config["prior"] = prior
    if kind == "zmd":
        config.update(mean_unet=dict(unet), unet=dict(unet), sigma_zmd=sigma_zmd)
    else:
        config["unet"] = unet
    return config


# Config keys the flags set (key -> flag, argparse dest): a bad value the user gave by flag is
# reported under that flag and its key; one from --config under its key alone.
FLAG_OF_KEY = {"schedule.steps": ("--steps", "steps"), "data.batch_size": ("--batch-size", "batch_size"),
               "optim.lr": ("--lr", "lr"), "validation.every": ("--val-every", "val_every"),
               "validation.max_batches": ("--val-batches", "val_batches"),
               "validation.batch_size": ("--val-batch-size", "val_batch_size"),
               "data.num_workers": ("--workers", "workers"), "unet: base_channels": ("--width", "width"),
               "unet: channel_mults": ("--levels", "levels"), "unet: blocks_per_level": ("--blocks", "blocks"),
               "unet: attention_heads": ("--width", "width"), "seed": ("--seed", "seed")}


def _given_flags(args, model_from_flags: bool) -> dict[str, str]:
    return {key: flag for key, (flag, dest) in FLAG_OF_KEY.items()
            if getattr(args, dest) is not None or (model_from_flags and key.startswith("unet"))}


def resolve_config(args, channels: int):
    from chromaqpi.cli.common import naming_flags
    from chromaqpi.training.config import TrainConfig

    data: dict = {}
    if args.config:
        import tomllib

        try:
            with open(args.config, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc}") from None
    model_from_flags = "model" not in data
    given = [dest for dest in MODEL_FLAGS if getattr(args, dest) is not None]
    if not model_from_flags and given:
        flags = ", ".join("--" + dest.replace("_", "-") for dest in given)
        raise ConfigError(f"{flags}: the --config file's [model] table sets the whole model; "
                          "set the value there or drop the table")
    if model_from_flags:
        m = {dest: default if getattr(args, dest) is None else getattr(args, dest)
             for dest, default in MODEL_FLAGS.items()}
        data["model"] = model_config(args.model, channels, m["width"], m["levels"], m["blocks"],
                                     m["sigma_zmd"], m["prior"])
    data["model"]["kind"] = args.model
    # A [model] table without in_channels gets the family's (the dataclass default 3 is wrong for
    # two-plane families and with a prior plane).
    data["model"].setdefault("in_channels", channels + (data["model"].get("prior") is not None))
    data.setdefault("input_normalisation", PAPER_NORMALISATION.get(args.microscope, "flatfield"))
    if args.seed is not None:
        data["seed"] = args.seed
    for section, key, value in (("schedule", "steps", args.steps), ("data", "batch_size", args.batch_size),
                                ("optim", "lr", args.lr), ("validation", "every", args.val_every),
                                ("validation", "max_batches", args.val_batches),
                                ("validation", "batch_size", args.val_batch_size),
                                ("data", "num_workers", args.workers)):
        if value is not None:
            data.setdefault(section, {})[key] = value
    data.setdefault("data", {})["description"] = {"data": args.data, "val": args.val, "family": args.microscope,
                                                  "crop": args.crop, "source": args.source}
    if args.channel_shift:
        data["data"]["description"]["channel_shift"] = args.channel_shift
        data["data"]["description"]["channel_shift_prob"] = args.channel_shift_prob
    if args.init_from:
        data["init_from"] = args.init_from
        data["data"]["description"]["init_from"] = args.init_from
    with naming_flags(_given_flags(args, model_from_flags)):
        config = TrainConfig.from_dict(data)
    config.microscope = {"family": args.microscope}
    return config


def _folders(text: str, flag: str) -> list[str]:
    folders = [f.strip() for f in text.split(",")]
    if not all(folders):
        raise ConfigError(f"{flag} {text!r}: empty folder name in the comma-separated list")
    return folders


def datasets(args, prior: str | None = None, seed: int = 0):
    from chromaqpi.datasets.sources import check_training_sources
    from chromaqpi.datasets.torch_data import OnTheFlyDataset, ShardDataset

    folders = [] if args.data == "on-the-fly" else _folders(args.data, "--data")
    if not folders:
        import os

        # Under torchrun every rank simulates its own stream of samples.
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        train = OnTheFlyDataset(args.source, family=args.microscope, size=args.crop, seed=seed,
                                rank=rank, world_size=world, prior=prior, channel_shift=args.channel_shift,
                                channel_shift_prob=args.channel_shift_prob)
    else:
        train = ShardDataset(folders, crop=args.crop, seed=seed, prior=prior, channel_shift=args.channel_shift,
                             channel_shift_prob=args.channel_shift_prob)
        for folder, manifest in zip(folders, train.manifests):
            check_training_sources(manifest["config"].get("sources", []), f"training data {folder}")
    val_folders = _folders(args.val, "--val") if args.val else []
    val = ShardDataset(val_folders, crop=None, augment=False, prior=prior) if val_folders else None
    shared = {Path(f).resolve() for f in folders} & {Path(f).resolve() for f in val_folders}
    if shared:  # the best checkpoint would be chosen on training samples
        warnings.warn(f"--val shares {', '.join(sorted(map(str, shared)))} with --data: validation scores "
                      "training samples; build a validation set with another --seed", UserWarning)
    for flag, dataset in (("--data", train if folders else None), ("--val", val)):
        if dataset is not None:
            check_family(args.microscope, dataset, flag)
    return train, val


def check_family(microscope: str, dataset, flag: str) -> None:
    """The data must have the family's channel count; data built for another family are named in a
    warning (the card will name --microscope, and its input normalisation follows it)."""
    from chromaqpi.datasets.randomize import resolve_ranges

    family = resolve_ranges(microscope)
    channels = family.base_microscope().n_channels
    got = int(dataset[0]["input"].shape[0])
    if got != channels:
        raise ConfigError(f"{flag}: the samples have {got} channels but family {family.name!r} (--microscope) has "
                          f"{channels}: build the data with --microscope {family.name}, or train for their family")
    built = {(m["config"].get("family") or {}).get("name") for m in dataset.manifests} - {family.name, None}
    if built:
        warnings.warn(f"{flag} was built for family {', '.join(sorted(built))} but --microscope is {family.name!r}: "
                      "the model will be labelled and normalised for the latter", UserWarning)


def run(args):
    from chromaqpi.datasets.randomize import resolve_ranges
    from chromaqpi.training.loop import train

    channels = resolve_ranges(args.microscope).base_microscope().n_channels
    config = resolve_config(args, channels)
    if args.dry_run:
        json.dump(config.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    from chromaqpi.cli.common import output_dir
    from chromaqpi.models.registry import family_envelope

    # The family's envelope, as shipped cards have it: the checkpoint then warns outside its family.
    config.microscope.update(family_envelope(args.microscope))
    out = output_dir(args.out)  # removed again if it stays empty (the data fail to load)
    train_set, val_set = datasets(args, config.model.get("prior"), config.seed)
    result = train(config, train_set, val_set, out, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns the same result
        print(f"finished: {result}")
        if result.best_val_mae is not None and not result.best_val_mae < DIVERGED_MAE_RAD:
            warnings.warn(f"best validation MAE {result.best_val_mae:.3g} rad: the model did not learn phase "
                          "(a too-high --lr?); do not use it", UserWarning)
    return 0
