"""Score `default` model candidates on the selection sets, as the shipping rules in the cards and targets.md do.

    python scripts/select_default.py v5=default v6=runs/zmd-default/checkpoints/last [--shift 2]
    python scripts/select_default.py v6=paper-rgb v7=runs/zmd-paper-rgb/checkpoints/best --limit 16 \
        --sets data/paper-rgb-noiseless-val,data/paper-rgb-lownoise-val,data/paper-rgb-val --prior tie \
        --normalisation paper-rgb          (a paper model: its in-training check, 16 images of each set)

Each candidate (a shipped name or a checkpoint folder) gets ZMD's offset-aligned MAE from
chromaqpi.training.loop.validate (one 10-step DDIM draw per image, the training check) on the sets of
scripts/build_select_val.sh: 32 pictures-val images and 32 whole 256 px samples of the training mix.
With --shift PX each set is also scored with every image's red and blue moved by
draw_channel_shifts(rng(1234, i), PX, prob=1) (Bayer samples stay as they are, as in training).
The table gives each score's ratio to the first candidate and their mean; the rule that decides
is written before the run (see the model card). Never point it at a test set.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch.utils.data import Dataset

from chromaqpi.datasets.augment import random_channel_shift
from chromaqpi.datasets.torch_data import ShardDataset
from chromaqpi.models.registry import load_model
from chromaqpi.training.config import TrainConfig
from chromaqpi.training.loop import validate

SETS = ("data/natural-val", "data/default-val256-s14")
SHIFT_SEED = 1234
# The training check's settings (scripts/train_cpu_default.toml, train_shipped.sh), over the whole set.
VALIDATION = {"batch_size": 8, "sampler": "ddim", "sampler_steps": 10, "seed": 1234, "max_batches": 0}


class SelectionSet(Dataset):
    """A validation folder's whole samples, optionally with red and blue moved by a per-image draw."""

    def __init__(self, root: str, shift_px: float = 0.0, prior: str | None = None, limit: int = 0):
        self.samples = ShardDataset(root, crop=None, augment=False, with_params=True, prior=prior)
        self.shift_px, self.limit = shift_px, limit

    def __len__(self) -> int:
        return min(len(self.samples), self.limit) if self.limit else len(self.samples)

    def __getitem__(self, i: int) -> dict:
        item = self.samples[i]
        micro = json.loads(item.pop("params"))["microscope"]
        rng = np.random.default_rng((SHIFT_SEED, i))
        item["input"] = random_channel_shift(item["input"], micro, self.shift_px, rng, prob=1.0)
        return item


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", metavar="NAME=MODEL", help="the first one is the reference")
    parser.add_argument("--shift", type=float, default=0.0, metavar="PX", help="also score shifted copies")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated validation folders")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="first N images of each set (0: all)")
    parser.add_argument("--prior", choices=("tie",), help="the candidates' physics prior, the same for all "
                        "(paper models: tie)")
    parser.add_argument("--normalisation", default="flatfield", help="the candidates' input normalisation, "
                        "the same for all")
    args = parser.parse_args()
    if args.shift and args.prior:  # the prior would be computed before the shift (ShardDataset refuses it too)
        parser.error("--shift and --prior do not combine")
    torch.set_flush_denormal(True)
    cands = dict(c.split("=", 1) for c in args.candidates)
    cfg = TrainConfig.from_dict({"validation": VALIDATION, "input_normalisation": args.normalisation})
    roots = args.sets.split(",")
    sets = {root: SelectionSet(root, 0.0, args.prior, args.limit) for root in roots}
    if args.shift:
        sets.update({f"{root} shifted": SelectionSet(root, args.shift, args.prior, args.limit) for root in roots})
    mae = {}
    for label, data in sets.items():
        for name, model in cands.items():
            r = validate(load_model(model), data, cfg)
            mae[label, name] = r["mae_rad"]
            print(label, name, json.dumps(r), flush=True)
    ref = next(iter(cands))
    print("\n| candidate | " + " | ".join(sets) + f" | mean ratio to {ref} |\n|" + "---|" * (len(sets) + 2))
    for name in cands:
        ratios = [mae[s, name] / mae[s, ref] for s in sets]
        cells = [f"{mae[s, name]:.4f} ({r:.3f})" for s, r in zip(sets, ratios)]
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(ratios):.4f} |")


if __name__ == "__main__":
    main()
