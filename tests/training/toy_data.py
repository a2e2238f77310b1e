"""Tiny synthetic datasets and configs shared by the training tests."""

import torch
from torch.utils.data import Dataset, IterableDataset

TINY_UNET = {"base_channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1, "groups": 4,
             "mid_attention": False}


class ToyPhaseDataset(Dataset):
    """In-memory (input, target) pairs: smooth random phases and an input that encodes them."""

    def __init__(self, n: int = 16, size: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n, 1, size // 2, size // 2, generator=g) * 2
        self.target = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear")
        noise = 0.05 * torch.randn(n, 3, size, size, generator=g)
        self.input = torch.cat([self.target, self.target**2, -self.target], dim=1) + noise

    def __len__(self):
        return len(self.target)

    def __getitem__(self, i):
        return {"input": self.input[i], "target": self.target[i]}


class ToyIterable(IterableDataset):
    def __init__(self, n: int = 8):
        self.data = ToyPhaseDataset(n)

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


def model_dict(kind: str) -> dict:
    cfg = {"kind": kind, "unet": TINY_UNET}
    if kind in ("cvdm", "zmd"):
        cfg["schedule"] = {"unet": TINY_UNET, "time_hidden": 8}
    if kind == "zmd":
        cfg["mean_unet"] = TINY_UNET
    return cfg


def train_dict(kind: str = "mean", steps: int = 6, **sections) -> dict:
    d = {
        "model": model_dict(kind),
        "optim": {"lr": 2e-3, "ema_decay": 0.9},
        "schedule": {"steps": steps, "warmup_steps": 2},
        "data": {"batch_size": 4, "description": {"source": "toy"}},
        "validation": {"every": 3, "sampler_steps": 2},
        "logging": {"log_every": 2, "checkpoint_every": 3, "progress": False, "tensorboard": False},
        "microscope": {"family": "toy"},
        "input_normalisation": {"mode": "identity"},
    }
    for key, value in sections.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    return d
