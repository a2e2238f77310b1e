"""Reconstruction of images of any size by overlapping tiles.

Learned models see a fixed-size window. Large or odd-sized images are cut into
overlapping tiles, each tile is reconstructed, and the tiles are blended with
a smooth partition of unity. Phase from defocus is only defined up to a
constant, so every tile carries its own arbitrary offset; before blending we
solve a small least-squares problem for per-tile offsets that make the tiles
agree on their overlaps. That removes seams and keeps the low frequencies
consistent across the whole field.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


#: Pixels per call of the model (``batch=None``): what bounds the networks' activation memory.
BATCH_PIXELS = 4 * 256 * 256
#: Tile side of the learned methods: 512 px beat the 256 px the networks trained on, on 512 and
#: 1024 px validation images (benchmarks/results/tiles.md, tiles-1024.md).
DEFAULT_TILE = 512


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    # Spread the starts evenly so every overlap is at least ``overlap`` wide.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_window(tile: int, overlap: int, *, dtype=torch.float32) -> torch.Tensor:
    """1-D weight: sin² ramps of ``overlap`` px at both ends, flat in between, never zero."""
    w = torch.ones(tile, dtype=dtype)
    if overlap > 0:
        ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=dtype) + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w.clamp_min(1e-3)


def _pad_to(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    pad_h, pad_w = height - images.shape[-2], width - images.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return images
    mode = "reflect" if pad_h < images.shape[-2] and pad_w < images.shape[-1] else "replicate"
    return F.pad(images[None], (0, pad_w, 0, pad_h), mode=mode)[0]


def _harmonise_offsets(preds: torch.Tensor, boxes: list[tuple[int, int]], th: int, tw: int,
                       weight2d: torch.Tensor):
    """Per-tile constants c minimising Σ_overlaps mean_w(p_i + c_i - p_j - c_j)², Σc = 0."""
    n = len(boxes)
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    rows, rhs = [], []
    for i in range(n):
        for j in range(i + 1, n):
            (yi, xi), (yj, xj) = boxes[i], boxes[j]
            y0, y1 = max(yi, yj), min(yi, yj) + th
            x0, x1 = max(xi, xj), min(xi, xj) + tw
            if y1 <= y0 or x1 <= x0:
                continue
            pi = preds[i, y0 - yi:y1 - yi, x0 - xi:x1 - xi].double()
            pj = preds[j, y0 - yj:y1 - yj, x0 - xj:x1 - xj].double()
            w = weight2d[y0 - yi:y1 - yi, x0 - xi:x1 - xi].double() * weight2d[y0 - yj:y1 - yj, x0 - xj:x1 - xj].double()
            row = torch.zeros(n, dtype=torch.float64)
            row[i], row[j] = 1.0, -1.0
            rows.append(row)
            rhs.append(-float((w * (pi - pj)).sum() / w.sum()))
    rows.append(torch.ones(n, dtype=torch.float64))  # fix the free global constant
    rhs.append(0.0)
    a, b = torch.stack(rows), torch.tensor(rhs, dtype=torch.float64)
    return torch.linalg.lstsq(a, b[:, None]).solution[:, 0]


def reconstruct_tiled(fn: Callable, images: torch.Tensor, *, tile: int = DEFAULT_TILE, overlap: int = 48,
                      multiple: int = 16, batch: int | None = None, progress: bool = False):
    """Apply ``fn`` to overlapping tiles of one (C, H, W) image and blend.

    Parameters
    ----------
    fn : maps (N, C, t, t) to (N, t, t) phase, or to a tuple (phase, std).
    images : (C, H, W) normalised intensities, any H, W.
    tile : tile side (rounded up to ``multiple``); images smaller than a tile
        are reflect-padded up to the next ``multiple``.
    overlap : minimum overlap between neighbouring tiles (px).
    multiple : the model's stride; every tile side is a multiple of it.
    batch : tiles per call of ``fn`` (bounds peak memory); None: as many as hold
        ``BATCH_PIXELS`` (four 256 px tiles, one 512 px tile), at least one.

    Returns
    -------
    phase (H, W), and std (H, W) or None.
    """
    c, h, w = images.shape
    tile = int(math.ceil(tile / multiple) * multiple)
    th = min(tile, int(math.ceil(h / multiple) * multiple))
    tw = min(tile, int(math.ceil(w / multiple) * multiple))
    padded = _pad_to(images, max(h, th), max(w, tw))
    hp, wp = padded.shape[-2:]
    boxes = [(y, x) for y in tile_starts(hp, th, overlap) for x in tile_starts(wp, tw, overlap)]
    batch = batch or max(1, BATCH_PIXELS // (th * tw))
    weight2d = blend_window(th, min(overlap, th // 2))[:, None] * blend_window(tw, min(overlap, tw // 2))[None, :]
    preds, stds = _run_tiles(fn, padded, boxes, th, tw, batch, progress)
    offsets = _harmonise_offsets(preds, boxes, th, tw, weight2d)
    out = torch.zeros(hp, wp, dtype=torch.float64)
    out_std = torch.zeros(hp, wp, dtype=torch.float64) if stds is not None else None
    norm = torch.zeros(hp, wp, dtype=torch.float64)
    for k, (y, x) in enumerate(boxes):
        out[y:y + th, x:x + tw] += weight2d * (preds[k] + offsets[k])
        norm[y:y + th, x:x + tw] += weight2d
        if out_std is not None:
            out_std[y:y + th, x:x + tw] += weight2d * stds[k]
    # The offsets sum to zero, so the model's own absolute level is kept on average.
    phase = (out / norm)[:h, :w]
    std = None if out_std is None else (out_std / norm)[:h, :w].to(images.dtype)
    return phase.to(images.dtype), std


def _run_tiles(fn, padded, boxes, th, tw, batch, progress):
    from tqdm.auto import tqdm

    preds, stds = [], []
    starts = range(0, len(boxes), batch)
    for s in tqdm(starts, desc="tiles", disable=not progress or len(boxes) <= batch, unit="batch"):
        chunk = torch.stack([padded[:, y:y + th, x:x + tw] for y, x in boxes[s:s + batch]])
        result = fn(chunk)
        if isinstance(result, tuple):
            preds.append(result[0].detach().cpu())
            stds.append(result[1].detach().cpu())
        else:
            preds.append(result.detach().cpu())
    return torch.cat(preds).double(), (torch.cat(stds).double() if stds else None)


def central_origin(shape, size: int, *, even: bool = False) -> tuple[int, int]:
    """Top-left corner of the central size x size window of an (..., H, W) shape. ``even``: on an even
    row and column, so that a Bayer mosaic keeps its colour layout in the window."""
    top, left = (max(0, (n - size) // 2) for n in tuple(shape)[-2:])
    return (top - top % 2, left - left % 2) if even else (top, left)


def central_crop(images, size: int, *, even: bool = False):
    """The central size x size part of a (..., H, W) stack (the whole of a shorter side); ``even``
    as :func:`central_origin`."""
    top, left = central_origin(images.shape, size, even=even)
    return images[..., top : top + size, left : left + size]
