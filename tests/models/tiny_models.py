"""Tiny model configs and toy batches shared by the model tests."""

import torch

TINY_UNET = {"base_channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1, "groups": 4,
             "mid_attention": False}
KINDS = ["mean", "ddpm", "cvdm", "zmd"]


def tiny_config(kind: str, in_channels: int = 3, width: int = 8) -> dict:
    unet = {**TINY_UNET, "base_channels": width}
    cfg = {"kind": kind, "in_channels": in_channels, "out_channels": 1, "unet": unet}
    if kind in ("cvdm", "zmd"):
        cfg["schedule"] = {"unet": TINY_UNET, "time_hidden": 16}
    if kind == "zmd":
        cfg["mean_unet"] = unet
    return cfg


def smooth_batch(batch: int = 2, h: int = 8, w: int = 8, seed: int = 0) -> dict:
    """Gaussian-bump phases (0..2 rad) and an RGB-like input that determines them."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    centres = torch.rand(batch, 2, generator=g) - 0.5
    amp = 1.0 + torch.rand(batch, generator=g)
    r2 = (xx - centres[:, 0, None, None]) ** 2 + (yy - centres[:, 1, None, None]) ** 2
    target = (amp[:, None, None] * torch.exp(-r2 / 0.3))[:, None]
    inp = torch.cat([target, target**2, -target], 1) + 0.05 * torch.randn(batch, 3, h, w, generator=g)
    return {"input": inp, "target": target}
