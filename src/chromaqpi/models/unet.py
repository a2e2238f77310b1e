"""Conditional U-Net backbone shared by the mean, DDPM, CVDM and ZMD models.

The network maps a stack of per-pixel inputs (the noisy state, the RGB image, any extra conditioning
planes; the caller concatenates them) to per-pixel outputs. An optional noise level -- one scalar per
sample, or a per-pixel map for CVDM's input-dependent schedule -- modulates every residual block
(FiLM: scale and shift after GroupNorm). Layout follows the ADM/DDPM++ family (Ho et al. 2020,
Dhariwal & Nichol 2021): residual blocks with GroupNorm and SiLU, strided-conv downsampling,
nearest upsampling, skip concatenation, optional self-attention at low resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from chromaqpi.errors import InputError


@dataclass
class UNetConfig:
    """Architecture of one U-Net.

    Attributes
    ----------
    base_channels : int
        Feature channels at full resolution.
    channel_mults : tuple of int
        Width multiplier per resolution level; ``len(channel_mults) - 1`` downsamplings, so inputs
        must have H and W divisible by ``2 ** (len(channel_mults) - 1)`` (the *stride*).
    blocks_per_level : int
        Residual blocks per level in the encoder (the decoder has one more, ADM style).
    attention_levels : tuple of int
        Level indices (0 = full resolution) that get a self-attention layer after each block.
    mid_attention : bool
        Self-attention between the two bottleneck residual blocks (global receptive field).
    attention_heads : int
        Heads of every attention layer (must divide the channels there).
    groups : int
        Upper bound on GroupNorm groups (the largest divisor of the channel count not above it).
    dropout : float
        Dropout probability inside residual blocks.
    embedding_channels : int
        Width of the noise-level embedding (0: ``4 * base_channels``).
    """

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = ()
    mid_attention: bool = True
    attention_heads: int = 4
    groups: int = 32
    dropout: float = 0.0
    embedding_channels: int = 0

    def __post_init__(self):
        from chromaqpi.errors import ConfigError

        levels = len(self.channel_mults)
        checks = [
            (self.base_channels >= 1, "base_channels must be >= 1"),
            (levels >= 1 and all(m >= 1 for m in self.channel_mults), "channel_mults must be >= 1 entries, each >= 1"),
            (self.blocks_per_level >= 1, "blocks_per_level must be >= 1"),
            (all(0 <= a < levels for a in self.attention_levels), f"attention_levels must lie in [0, {levels})"),
            (self.attention_heads >= 1 and self.groups >= 1, "attention_heads and groups must be >= 1"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.embedding_channels >= 0, "embedding_channels must be >= 0 (0: 4 x base_channels)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"unet: {message}")
        attended = [self.base_channels * self.channel_mults[a] for a in self.attention_levels]
        attended += [self.base_channels * self.channel_mults[-1]] * self.mid_attention
        if any(c % self.attention_heads for c in attended):
            raise ConfigError(f"unet: attention_heads {self.attention_heads} must divide the channels of every "
                              f"attention layer ({sorted(set(attended))})")

    @property
    def stride(self) -> int:
        """Factor by which H and W must be divisible."""
        return 2 ** (len(self.channel_mults) - 1)


def condition_from_batch(batch: dict) -> torch.Tensor:
    """Stack the model's conditioning input from a training batch.

    Parameters
    ----------
    batch : dict
        ``"input"`` (B, C, H, W) and optionally ``"condition"`` (B, Cc, H, W): extra per-pixel
        planes (a classical solver's phase, constant per-channel defocus planes, ...).

    Returns
    -------
    torch.Tensor
        (B, C + Cc, H, W); the model's ``in_channels`` must equal C + Cc.
    """
    x = batch["input"]
    extra = batch.get("condition")
    return x if extra is None else torch.cat([x, extra.to(x.dtype)], dim=1)


def per_sample_mean(values: torch.Tensor) -> torch.Tensor:
    """Average (B, ...) over everything but the batch axis -> (B,)."""
    return values.flatten(1).mean(dim=1)


def remove_offset(error: torch.Tensor) -> torch.Tensor:
    """``error`` (B, C, H, W) minus its per-image, per-channel mean.

    Defocus contrast carries no information on the mean phase, so a loss on the raw error would
    spend the network on guessing each image's offset; every reconstruction is offset-referenced.
    """
    return error - error.mean(dim=(-2, -1), keepdim=True)


def _norm(channels: int, max_groups: int) -> nn.GroupNorm:
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _zero(module: nn.Module) -> nn.Module:
    # Zero-initialised last layers make every residual branch start as the identity (ADM).
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of a noise level followed by a pointwise MLP.

    A scalar level per sample gives a (B, E, 1, 1) embedding; a per-pixel level map gives
    (B, E, H, W). Both feed the same 1x1-conv MLP, so one network serves both cases.
    """

    def __init__(self, noise_channels: int, out_channels: int, frequencies: int = 16):
        super().__init__()
        # Geometric frequencies, pi .. 64 pi, for an input of order one (log-SNR / 8).
        freqs = math.pi * torch.logspace(0, math.log10(64.0), frequencies)
        self.register_buffer("freqs", freqs, persistent=False)
        self.noise_channels = noise_channels
        features = 2 * frequencies * noise_channels
        self.mlp = nn.Sequential(
            nn.Conv2d(features, out_channels, 1), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 1)
        )

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        """Embed ``level``: (B,), (B, Cn) or (B, Cn, H, W) -> (B, E, 1 or H, 1 or W)."""
        if level.ndim == 1:
            level = level[:, None]
        if level.ndim == 2:
            level = level[:, :, None, None]
        angles = level.float()[:, :, None] * self.freqs[None, None, :, None, None]
        feats = torch.cat([angles.sin(), angles.cos()], dim=2).flatten(1, 2)
        return self.mlp(feats)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with FiLM from the noise embedding and a 1x1 skip if needed."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Conv2d(emb, 2 * cout, 1) if emb else None
        self.norm2, self.drop = _norm(cout, groups), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels of a feature map (residual, zero-init output)."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads {heads} must divide channels {channels}")
        self.heads, self.norm = heads, _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    """The residual (+ attention) blocks of one resolution level."""

    def __init__(self, chans: list[tuple[int, int]], emb: int, cfg: UNetConfig, attend: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb, cfg.groups, cfg.dropout) for a, b in chans)
        self.attns = nn.ModuleList(
            SelfAttention(b, cfg.attention_heads, cfg.groups) if attend else nn.Identity() for _, b in chans
        )


class UNet(nn.Module):
    """Conditional U-Net mapping (B, in_channels, H, W) to (B, out_channels, H, W).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the concatenated input stack and of the output.
    config : UNetConfig
        Architecture.
    noise_channels : int
        0 for an unconditional-in-noise network (the mean model); otherwise the number of
        channels of the noise level passed to :meth:`forward` (scalar per sample or per pixel).
    out_bias : float
        Initial value of the output bias (the output weights start at zero, so the network
        initially returns this constant; CVDM's kappa net uses it to start at kappa = 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, config: UNetConfig | None = None,
        *, noise_channels: int = 0, out_bias: float = 0.0,
    ):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        self.in_channels, self.out_channels = in_channels, out_channels
        width = [cfg.base_channels * m for m in cfg.channel_mults]
        emb = (cfg.embedding_channels or 4 * cfg.base_channels) if noise_channels else 0
        self.embed = NoiseEmbedding(noise_channels, emb) if noise_channels else None
        self.stem = nn.Conv2d(in_channels, width[0], 3, padding=1)
        self.down, self.downsample, skips, ch = nn.ModuleList(), nn.ModuleList(), [width[0]], width[0]
        for i, w in enumerate(width):
            pairs = []
            for _ in range(cfg.blocks_per_level):
                pairs.append((ch, w))
                ch = w
                skips.append(ch)
            self.down.append(_Level(pairs, emb, cfg, i in cfg.attention_levels))
            if i < len(width) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb, cfg.groups, cfg.dropout)
        self.mid_attn = SelfAttention(ch, cfg.attention_heads, cfg.groups) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb, cfg.groups, cfg.dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(width))):
            pairs = []
            for _ in range(cfg.blocks_per_level + 1):
                pairs.append((ch + skips.pop(), w))
                ch = w
            self.up.append(_Level(pairs, emb, cfg, i in cfg.attention_levels))
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = _norm(ch, cfg.groups)
        self.out = _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.constant_(self.out.bias, out_bias)

    @property
    def stride(self) -> int:
        """H and W of every input must be divisible by this."""
        return self.config.stride

    def receptive_field(self) -> int:
        """Receptive field (pixels) of the convolutions along the deepest path.

        GroupNorm statistics and bottleneck attention add global context on top of this.
        """
        cfg, rf, jump = self.config, 1, 1
        rf += 2  # stem
        levels = len(cfg.channel_mults)
        for i in range(levels):
            rf += 4 * cfg.blocks_per_level * jump
            if i < levels - 1:
                rf += 2 * jump
                jump *= 2
        rf += 8 * jump  # two bottleneck blocks
        for i in reversed(range(levels)):
            rf += 4 * (cfg.blocks_per_level + 1) * jump
            if i > 0:
                jump //= 2
                rf += 2 * jump
        return rf + 2  # output conv

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            (B, in_channels, H, W), H and W divisible by :attr:`stride`.
        noise_level : torch.Tensor, optional
            (B,), (B, Cn) or (B, Cn, H, W); required iff ``noise_channels > 0``.

        Returns
        -------
        torch.Tensor
            (B, out_channels, H, W).
        """
        self._check(x, noise_level)
        embs = self._embedding_pyramid(noise_level, len(self.config.channel_mults))
        h = self.stem(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h, embs[i]))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, embs[-1])), embs[-1])
        for j, level in enumerate(self.up):
            i = len(self.up) - 1 - j
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), embs[i]))
            if i > 0:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))

    def _check(self, x: torch.Tensor, noise_level: torch.Tensor | None) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"U-Net expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise InputError(f"H and W must be divisible by {self.stride}, got {tuple(x.shape[-2:])}")
        if (noise_level is None) != (self.embed is None):
            raise InputError("noise_level must be given exactly when the U-Net has noise_channels > 0")

    def _embedding_pyramid(self, level: torch.Tensor | None, n: int) -> list[torch.Tensor | None]:
        # One embedding per resolution level; per-pixel maps are average-pooled to each level.
        if self.embed is None:
            return [None] * n
        emb = self.embed(level)
        out = [emb]
        for _ in range(n - 1):
            emb = F.avg_pool2d(emb, 2) if emb.shape[-1] > 1 else emb
            out.append(emb)
        return out
