"""PyTorch datasets: shards on disk (:class:`ShardDataset`) or simulated in the loader
(:class:`OnTheFlyDataset`).

Both yield dicts of tensors (shapes for one sample; a DataLoader adds the batch axis):

============== ====================== ==================================================
key            dtype, shape           content
============== ====================== ==================================================
``input``      float32 (C, h, w)      normalised camera image(s), empty field = 1 (the
                                      model owns any further normalisation, see
                                      :mod:`chromaqpi.datasets.normalize`)
``target``     float32 (1, h, w)      true phase (rad) at the reference wavelength
``opd``        float32 (1, h, w)      optical path difference (µm)
``mask``       int32 (h, w)           object labels (0 = background)
``has_mask``   bool ()                whether the source provides labels
``index``      int64 ()               sample index within its dataset
``dataset``    int64 ()               which dataset of a mixture it came from
``transform``  int64 ()               D4 augmentation applied (see :mod:`.augment`)
``params``     str (optional)         the sample's JSON (microscope, source, seeds)
``condition``  float32 (1, h, w)      with ``prior``: the physics prior's phase (rad),
                                      computed on the whole stored image with the
                                      sample's own microscope, then cropped
                                      (:mod:`chromaqpi.models.prior`)
============== ====================== ==================================================
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from chromaqpi.datasets.augment import apply_transform, random_channel_shift, valid_transforms
from chromaqpi.datasets.build import DEFAULT_GROUP_SIZE
from chromaqpi.datasets.generate import generate_group
from chromaqpi.datasets.randomize import resolve_ranges
from chromaqpi.datasets.shards import (MANIFEST, ShardReader, check_shard_counts, read_manifest, sha256_file,
                                       verify_dataset)
from chromaqpi.datasets.sources import check_training_sources, resolve_sources
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.models.prior import check_prior, sample_prior

__all__ = ["ShardDataset", "OnTheFlyDataset", "DatasetFolder"]

#: Memory a ShardDataset may spend keeping its samples' prior planes (per process).
PRIOR_CACHE_BYTES = 1 << 30


def _crop_shape(crop, shape) -> tuple[int, int]:
    if crop is None:
        return tuple(shape)
    h, w = (int(crop), int(crop)) if np.isscalar(crop) else (int(crop[0]), int(crop[1]))
    if not (0 < h <= shape[0] and 0 < w <= shape[1]):
        raise ConfigError(f"crop {h}x{w} does not fit the stored {shape[0]}x{shape[1]} samples")
    return h, w


def _check_channel_shift(max_px: float, channels: int, prior: str | None, prob: float = 0.5) -> float:
    max_px, prob = float(max_px), float(prob)
    if not (np.isfinite(max_px) and 0 <= max_px <= 16):
        raise ConfigError(f"channel shift must be 0 to 16 px, got {max_px}")
    if not 0 < prob <= 1:
        raise ConfigError(f"channel shift probability must be in (0, 1], got {prob}")
    if max_px and channels != 3:
        raise ConfigError(f"channel shift needs RGB data (3 channels), these have {channels}")
    if max_px and prior is not None:
        raise ConfigError("channel shift cannot be combined with a physics prior (it is computed before shifting)")
    return max_px


class DatasetFolder:
    """One dataset folder: manifest, shard readers and an index -> (shard, slot) table."""

    def __init__(self, root, verify: bool):
        self.root = Path(root)
        if verify:  # checksums, and each shard's sample count against the manifest
            self.manifest = verify_dataset(self.root)
        else:  # the counts alone (index headers: cheap)
            self.manifest = read_manifest(self.root)
            check_shard_counts(self.root, self.manifest)
        self.manifest_sha256 = sha256_file(self.root / MANIFEST)  # the data's identity, for model cards
        if not self.manifest.get("complete"):
            raise InputError(f"dataset {self.root} is incomplete: resume its build first")
        shards = self.manifest["shards"]
        self.readers = [ShardReader(self.root / s["file"]) for s in shards]
        self.starts = [s["start"] for s in shards]
        self.n = self.manifest["config"]["n"]
        self.shape = tuple(self.manifest["config"]["shape"])
        self.channels = self.manifest["channels"]

    def sample(self, i: int, with_params: bool = True) -> dict:
        k = bisect.bisect_right(self.starts, i) - 1
        return self.readers[k].sample(i - self.starts[k], with_params=with_params)


class ShardDataset(Dataset):
    """Map-style dataset over one or several built datasets, with physics-valid augmentation.

    Parameters
    ----------
    roots : a dataset folder or a list of them.
    weights : mixing weights, one per root. ``None`` concatenates the datasets; with
        weights, item ``i`` draws its dataset by weight and a uniform sample inside it
        (deterministically from ``(seed, epoch, i)``).
    length : number of items per epoch (default: the total number of samples).
    crop : crop size (int or (h, w)); ``None`` keeps the stored size. Crops of Bayer
        samples start at even offsets so the RGGB phase is kept.
    augment : apply a random D4 transform among those valid for each sample's microscope
        (:func:`chromaqpi.datasets.augment.valid_transforms`; identity for Bayer data).
    channel_shift : largest lateral offset (px) of red and blue against green, applied to a share
        ``channel_shift_prob`` of the samples (:func:`chromaqpi.datasets.augment.draw_channel_shifts`) on the whole stored
        image before cropping; 0 (default) turns it off. RGB data only; Bayer samples are left
        alone (their colour planes are interleaved on the sensor). Not with ``prior``.
    channel_shift_prob : share of the samples that are shifted (default 0.5).
    verify : check every shard's sha256 against the manifest on opening; a mismatch
        raises :class:`~chromaqpi.errors.InputError` naming the shard.
    seed : seed of the crops, flips and mixture draws (with the epoch, see :meth:`set_epoch`).
    with_params : also return each sample's JSON parameters (``"params"``).
    prior : physics prior name (``"tie"``) to return as ``"condition"``, or None.

    Examples
    --------
    >>> ds = ShardDataset("data/train", crop=96)  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, roots, *, weights=None, length: int | None = None, crop=None, augment: bool = True,
                 channel_shift: float = 0.0, channel_shift_prob: float = 0.5, verify: bool = True, seed: int = 0,
                 with_params: bool = False, prior: str | None = None):
        check_prior(prior)
        self.prior, self._prior_cache = prior, {}
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        if not roots:
            raise ConfigError("ShardDataset needs at least one dataset folder")
        self.stores = [DatasetFolder(r, verify) for r in roots]
        if len({s.channels for s in self.stores}) != 1:
            raise ConfigError(f"datasets have different channel counts: {[s.channels for s in self.stores]}")
        shapes = {s.shape for s in self.stores}
        if crop is None and len(shapes) != 1:
            raise ConfigError(f"datasets have different image sizes {sorted(shapes)}: give a crop size")
        self.crop = _crop_shape(crop, tuple(min(s[i] for s in shapes) for i in (0, 1)))
        self.weights = self._weights(weights)
        self.sizes = [s.n for s in self.stores]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).tolist()
        self.length = int(length) if length is not None else int(sum(self.sizes))
        self.augment, self.seed, self.with_params, self.epoch = augment, int(seed), with_params, 0
        self.channel_shift = _check_channel_shift(channel_shift, self.stores[0].channels, prior, channel_shift_prob)
        self.channel_shift_prob = float(channel_shift_prob)

    def _weights(self, weights):
        if weights is None:
            return None
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(self.stores),) or not np.all(w >= 0) or w.sum() <= 0:
            raise ConfigError(f"weights must be {len(self.stores)} non-negative numbers, got {weights!r}")
        return w / w.sum()

    @property
    def manifests(self) -> list[dict]:
        """The manifests of the datasets, in the order given."""
        return [s.manifest for s in self.stores]

    def identity(self) -> list[dict]:
        """Which data these are, for a model card: per folder (in the order given) its path, the sha256
        of its manifest (which holds every shard's sha256), its sample count and, for data with absorbing
        samples, what absorbers it draws (:func:`~chromaqpi.datasets.randomize.absorbers_drawn`)."""
        from chromaqpi.datasets.randomize import absorbers_drawn

        out = []
        for s in self.stores:
            absorbers = absorbers_drawn(s.manifest["config"].get("family") or {})
            out.append({"folder": str(s.root.resolve()), "manifest_sha256": s.manifest_sha256, "samples": s.n,
                        **({"absorbers": absorbers} if absorbers else {})})
        return out

    def set_epoch(self, epoch: int) -> None:
        """Change the crops/flips/mixture draws (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _locate(self, i: int, rng: np.random.Generator) -> tuple[int, int]:
        if self.weights is None:
            i = i % self.offsets[-1]
            d = bisect.bisect_right(self.offsets, i) - 1
            return d, i - self.offsets[d]
        d = int(rng.choice(len(self.stores), p=self.weights))
        return d, int(rng.integers(self.sizes[d]))

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        d, local = self._locate(int(i), rng)
        raw = self.stores[d].sample(local)
        micro = raw["params"]["microscope"]
        if self.channel_shift:
            raw["input"] = random_channel_shift(raw["input"], micro, self.channel_shift, rng, self.channel_shift_prob)
        if self.prior is not None:  # before cropping: the whole field's low frequencies, as at inference
            raw["prior"] = self._prior(d, local, raw["input"], micro)
        raw = self._crop(raw, rng, bool(micro["sensor"].get("bayer")))
        allowed = valid_transforms(micro, self.crop) if self.augment else (0,)
        t = int(allowed[rng.integers(len(allowed))])
        return self._to_item(raw, t, d)

    def _prior(self, d: int, local: int, image: np.ndarray, micro: dict) -> np.ndarray:
        # The prior depends on the stored sample only: compute it once per sample, within a budget.
        key = (d, local)
        if key in self._prior_cache:
            return self._prior_cache[key]
        plane = sample_prior(torch.from_numpy(image.astype(np.float32)), micro, self.prior).numpy()
        if (len(self._prior_cache) + 1) * plane.nbytes <= PRIOR_CACHE_BYTES:
            self._prior_cache[key] = plane
        return plane

    def _crop(self, raw: dict, rng: np.random.Generator, bayer: bool) -> dict:
        h, w = raw["phase"].shape
        ch, cw = self.crop
        step = 2 if bayer else 1
        y0 = int(rng.integers((h - ch) // step + 1)) * step
        x0 = int(rng.integers((w - cw) // step + 1)) * step
        for key in ("input", "phase", "opd", "mask", "prior"):
            if key in raw:
                raw[key] = raw[key][..., y0:y0 + ch, x0:x0 + cw]
        return raw

    def _to_item(self, raw: dict, t: int, d: int) -> dict:
        item = {
            "input": torch.from_numpy(apply_transform(raw["input"].astype(np.float32), t)),
            "target": torch.from_numpy(apply_transform(raw["phase"][None].astype(np.float32), t)),
            "opd": torch.from_numpy(apply_transform(raw["opd"][None].astype(np.float32), t)),
            "mask": torch.from_numpy(apply_transform(raw["mask"].astype(np.int32), t)),
            "has_mask": torch.tensor(raw["has_mask"]),
            "index": torch.tensor(raw["index"], dtype=torch.int64),
            "dataset": torch.tensor(d, dtype=torch.int64),
            "transform": torch.tensor(t, dtype=torch.int64),
        }
        if "prior" in raw:
            item["condition"] = torch.from_numpy(apply_transform(raw["prior"], t))
        if self.with_params:
            item["params"] = json.dumps(raw["params"], sort_keys=True)
        return item


class OnTheFlyDataset(IterableDataset):
    """Training pairs simulated inside the DataLoader (no disk), same samples as a build.

    Sample ``i`` is exactly sample ``i`` of ``build_dataset(sources, family, ..., seed)``
    with the same ``group_size`` (before the build's float16 rounding of the image).

    Parameters
    ----------
    sources : source spec (None: the family's default sources).
    family : family name, ``preset:NAME``, TOML file, Ranges or Microscope.
    size : image size (int or (H, W)).
    seed : training seed in [0, 2**31).
    n : total samples; ``None`` streams forever.
    start : first sample index (resume a stream).
    group_size : samples per drawn microscope (as in the build).
    noise : apply sensor noise.
    device : simulate there (e.g. ``"cuda"`` with ``num_workers=0``); CPU by default.
    rank, world_size : split the stream between distributed processes.
    channel_shift, channel_shift_prob : lateral offsets of red and blue against green, as in
        :class:`ShardDataset` (drawn from ``(seed, index)``).
    prior : physics prior name (``"tie"``) to return as ``"condition"``, or None.

    Notes
    -----
    Worker-aware: groups ``g`` are dealt round-robin over ``world_size x num_workers``
    streams, so no two workers or ranks repeat a sample and the multiset of samples does
    not depend on the worker count. DataLoader workers run single-threaded torch.
    """

    def __init__(self, sources=None, family="default", size=128, seed: int = 0, *, n: int | None = None,
                 start: int = 0, group_size: int = DEFAULT_GROUP_SIZE, noise: bool = True, device=None,
                 rank: int = 0, world_size: int = 1, with_params: bool = False, prior: str | None = None,
                 channel_shift: float = 0.0, channel_shift_prob: float = 0.5):
        check_prior(prior)
        self.prior = prior
        self.ranges = resolve_ranges(family)
        base = self.ranges.base_microscope()
        self.channel_shift = _check_channel_shift(channel_shift, base.n_channels, prior, channel_shift_prob)
        self.channel_shift_prob = float(channel_shift_prob)
        lam = base.optics.wavelength_ref_um
        self.sources = resolve_sources(self.ranges.default_source if sources is None else sources, wavelength_um=lam)
        check_training_sources(self.sources, "on-the-fly training data")
        self.shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        self.seed, self.n, self.start, self.group_size = int(seed), n, int(start), int(group_size)
        self.noise, self.device, self.with_params = noise, device, with_params
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} must be in [0, world_size={world_size})")
        if self.start % self.group_size:
            raise ConfigError(f"start ({start}) must be a multiple of group_size ({group_size})")
        self.rank, self.world_size = rank, world_size

    def _streams(self) -> tuple[int, int]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self):
        stream, n_streams = self._streams()
        gs = self.group_size
        end_group = math.ceil(self.n / gs) if self.n is not None else None
        g = self.start // gs + stream
        while end_group is None or g < end_group:
            stop = (g + 1) * gs if self.n is None else min((g + 1) * gs, self.n)
            result = generate_group(self.sources, self.ranges, self.shape, self.seed, g, list(range(g * gs, stop)),
                                    noise=self.noise, device=self.device)
            yield from self._items(result)
            g += n_streams

    def _items(self, result):
        for b, index in enumerate(result.indices):
            item = {"input": result.input[b].float(), "target": result.phase[b][None].float(),
                    "opd": result.opd[b][None].float(), "mask": result.mask[b].to(torch.int32),
                    "has_mask": result.has_mask[b], "index": torch.tensor(int(index)),
                    "dataset": torch.tensor(0), "transform": torch.tensor(0)}
            if self.channel_shift:
                rng = np.random.default_rng((self.seed, 0x5F1F7, int(index)))
                item["input"] = random_channel_shift(item["input"], result.params[b]["microscope"], self.channel_shift,
                                                     rng, self.channel_shift_prob)
            if self.prior is not None:
                item["condition"] = sample_prior(item["input"], result.params[b]["microscope"], self.prior)
            if self.with_params:
                item["params"] = json.dumps(result.params[b], sort_keys=True)
            yield item
