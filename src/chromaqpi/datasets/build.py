"""Build a sharded training set: parallel, resumable, byte-reproducible.

:func:`build_dataset` splits ``n`` samples into shards of ``shard_size``; each shard is
computed by one worker process and written atomically (temporary file + rename), and the
manifest records its sha256 as soon as it lands. Re-running the same build skips shards
whose file matches the recorded checksum and recomputes the rest; a killed build
therefore leaves at worst a stray temporary file (removed on the next run), never a
corrupt shard that the manifest vouches for.

Every sample depends only on (seed, index) and the configuration (see
:mod:`chromaqpi.datasets.seeds`): one worker or eight give identical shard bytes.
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing as mp
import queue as queue_mod
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from chromaqpi.datasets import seeds
from chromaqpi.datasets.generate import generate_group
from chromaqpi.datasets.randomize import Ranges, resolve_ranges
from chromaqpi.datasets.shards import (FORMAT, FORMAT_VERSION, encode_group, read_manifest, sha256_file,
                                       shard_name, write_manifest, write_shard)
from chromaqpi.datasets.sources import SourceSpec, resolve_sources
from chromaqpi.errors import ConfigError

__all__ = ["build_dataset", "plan_shards", "DEFAULT_SHARD_SIZE", "DEFAULT_GROUP_SIZE"]

DEFAULT_SHARD_SIZE = 256
#: Samples sharing one drawn microscope (its transfer functions are computed once).
DEFAULT_GROUP_SIZE = 4
SEED_SCHEME = ("numpy SeedSequence(seed, spawn_key=(0, index // group_size, stream, ...)); "
               "streams: 0 microscope, 1 sensor noise (torch), (2, slot) phase object")


def _shape(size) -> tuple[int, int]:
    shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 8:
        raise ConfigError(f"size must be >= 8 pixels (an int or (H, W)), got {size!r}")
    return shape


def build_config(sources, ranges: Ranges, n, size, seed, shard_size, group_size, noise) -> dict:
    """The manifest's ``config`` of a build, checked (ConfigError on sizes or counts that cannot work)."""
    shape = _shape(size)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    if shard_size < 1 or shard_size % group_size:
        raise ConfigError(f"shard_size must be a positive multiple of group_size, got {shard_size} and {group_size}")
    return {"sources": [s.to_dict() for s in sources], "family": ranges.to_dict(), "n": int(n),
            "shape": list(shape), "seed": seeds.check_seed(seed), "shard_size": int(shard_size),
            "group_size": int(group_size), "noise": bool(noise), "seed_scheme": SEED_SCHEME}


def plan_shards(n: int, shard_size: int) -> list[dict]:
    """Shard table: file name, first index and sample count of each shard."""
    return [{"file": shard_name(k), "start": start, "count": min(shard_size, n - start), "sha256": None}
            for k, start in enumerate(range(0, n, shard_size))]


# -------------------------------------------------------------- worker side
_TICKS = None  # per-process progress queue (set by the pool initialiser)


def _init_worker(ticks) -> None:
    global _TICKS
    _TICKS = ticks
    # One thread per process: workers are the parallelism, and single-threaded FFTs keep
    # results independent of the machine's core count.
    torch.set_num_threads(1)


def _build_shard(job: dict, tick: Callable[[int], None] | None = None) -> dict:
    """Compute and write one shard; returns its manifest entry with the sha256."""
    cfg = job["config"]
    sources = [SourceSpec.from_dict(s) for s in cfg["sources"]]
    ranges = Ranges.from_dict(cfg["family"])
    entry, gs = dict(job["shard"]), cfg["group_size"]
    samples = {}
    for start in range(entry["start"], entry["start"] + entry["count"], gs):
        indices = list(range(start, min(start + gs, entry["start"] + entry["count"])))
        result = generate_group(sources, ranges, cfg["shape"], cfg["seed"], start // gs, indices, noise=cfg["noise"])
        samples.update(encode_group(result))
        (tick or _queue_tick)(len(indices))
    path = Path(job["root"]) / entry["file"]
    entry["sha256"] = write_shard(path, [samples[i] for i in sorted(samples)])
    entry["bytes"] = path.stat().st_size
    return entry


def _queue_tick(count: int) -> None:
    if _TICKS is not None:
        _TICKS.put(count)


@contextmanager
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------- main side
def _clean_temporaries(root: Path) -> None:
    # atomic_write names its temporaries ".<name>.<random>.tmp"; a killed build leaves them.
    for tmp in list(root.glob(".shard-*.tmp")) + list(root.glob(".manifest.json.*.tmp")):
        tmp.unlink(missing_ok=True)


def _start_manifest(root: Path, config: dict, ranges: Ranges) -> dict:
    base = ranges.base_microscope()
    fresh = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
             "channels": base.n_channels, "channel_names": base.channel_names,
             "wavelength_ref_um": base.optics.wavelength_ref_um, "versions": _versions(),
             "created": _now(), "complete": False, "shards": plan_shards(config["n"], config["shard_size"])}
    if not (root / "manifest.json").exists():
        return fresh
    old = read_manifest(root)
    if _normal(old.get("config")) != _normal(config):
        diff = sorted(k for k in set(config) | set(old.get("config", {})) if
                      _normal(config.get(k)) != _normal(old.get("config", {}).get(k)))
        raise ConfigError(f"{root} holds a different dataset (differs in: {', '.join(diff)}); "
                          "choose another --out folder or delete this one")
    if old.get("versions", {}).get("chromaqpi") != fresh["versions"]["chromaqpi"]:
        warnings.warn(f"{root} was started with chromaqpi {old.get('versions', {}).get('chromaqpi')}; "
                      "new shards come from this version", stacklevel=3)
    fresh["created"] = old.get("created", fresh["created"])
    recorded = {s["file"]: s for s in old.get("shards", [])}
    for shard in fresh["shards"]:
        prev = recorded.get(shard["file"], {})
        path = root / shard["file"]
        if prev.get("sha256") and path.is_file() and sha256_file(path) == prev["sha256"]:
            shard.update(sha256=prev["sha256"], bytes=prev.get("bytes"))
    return fresh


def _normal(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


def _versions() -> dict:
    from chromaqpi import __version__

    return {"chromaqpi": __version__, "torch": torch.__version__, "numpy": np.__version__}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_target(out_dir, workers) -> None:
    """The checks on where and how a build runs (a dry run makes them too)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        # -1 means "all cores" elsewhere (joblib); here it would quietly build in one process.
        raise ConfigError(f"workers must be an integer >= 0 (0 or 1: build in this process), got {workers!r}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")


def build_dataset(sources, family, n: int, size, seed: int, out_dir, *, workers: int = 1,
                  shard_size: int = DEFAULT_SHARD_SIZE, group_size: int = DEFAULT_GROUP_SIZE, noise: bool = True,
                  progress: bool = True, start_method: str = "spawn", allow_heldout: bool = False,
                  on_shard: Callable[[dict], None] | None = None) -> dict:
    """Generate ``n`` (image, phase) pairs into sharded ``.npz`` files under ``out_dir``.

    Parameters
    ----------
    sources : source spec string (``"cells:0.7,rbc:0.3"``), SourceSpec list, or ``None``
        for the family's default sources.
    family : family name (``default``, ``paper-rgb``, ``paper-2shot``), ``preset:NAME``,
        a TOML file, a :class:`~chromaqpi.datasets.randomize.Ranges` or a Microscope.
    n : number of samples.
    size : image size in pixels, int or (H, W).
    seed : integer in [0, 2**31).
    out_dir : dataset folder (created). Re-running with the same arguments resumes.
    workers : processes; ``<= 1`` builds in this process. The output does not depend on it.
    shard_size : samples per shard (a multiple of ``group_size``).
    group_size : consecutive samples sharing one drawn microscope.
    noise : apply the sensor noise of each drawn microscope.
    progress : show a tqdm progress bar.
    start_method : multiprocessing start method (``spawn`` or ``forkserver``; ``fork`` is
        unsafe once torch has started threads).
    allow_heldout : allow the evaluation-only ``skimage-test`` source.
    on_shard : called in this process with each finished shard's manifest entry
        (progress hooks, tests that simulate a crash).

    Returns
    -------
    dict
        The final manifest (also in ``out_dir/manifest.json``).
    """
    check_target(out_dir, workers)
    ranges = resolve_ranges(family)
    base = ranges.base_microscope()
    specs = resolve_sources(ranges.default_source if sources is None else sources,
                            wavelength_um=base.optics.wavelength_ref_um, allow_heldout=allow_heldout)
    config = build_config(specs, ranges, n, size, seed, shard_size, group_size, noise)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(root)
    manifest = _start_manifest(root, config, ranges)
    write_manifest(root, manifest)
    todo = [s for s in manifest["shards"] if not s.get("sha256")]
    if todo:
        _run(root, manifest, todo, workers, start_method, progress, on_shard)
    manifest["complete"] = True
    manifest["updated"] = _now()
    write_manifest(root, manifest)
    return manifest


def _record(root: Path, manifest: dict, entry: dict, on_shard) -> None:
    for shard in manifest["shards"]:
        if shard["file"] == entry["file"]:
            shard.update(entry)
    manifest["updated"] = _now()
    write_manifest(root, manifest)
    if on_shard is not None:
        on_shard(entry)


def _run(root, manifest, todo, workers, start_method, progress, on_shard) -> None:
    from tqdm.auto import tqdm

    done = sum(s["count"] for s in manifest["shards"] if s.get("sha256"))
    jobs = [{"config": manifest["config"], "root": str(root), "shard": s} for s in todo]
    with tqdm(total=manifest["config"]["n"], initial=done, desc="building", unit="sample",
              disable=not progress, dynamic_ncols=True) as bar:
        if workers <= 1:
            with _single_thread():
                for job in jobs:
                    _record(root, manifest, _build_shard(job, bar.update), on_shard)
        else:
            _run_pool(root, manifest, jobs, workers, start_method, bar, on_shard)


def _run_pool(root, manifest, jobs, workers, start_method, bar, on_shard) -> None:
    ctx = mp.get_context(start_method)
    ticks = ctx.Queue()
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(ticks,)) as pool:
        pending = [pool.apply_async(_build_shard, (job,)) for job in jobs]
        while pending:
            _drain(ticks, bar)
            for result in [r for r in pending if r.ready()]:
                pending.remove(result)
                _record(root, manifest, result.get(), on_shard)  # re-raises a worker's exception
        _drain(ticks, bar, wait=0.0)
    # leaving the block terminates the pool, also when a worker or the hook raised


def _drain(ticks, bar, wait: float = 0.2) -> None:
    try:
        bar.update(ticks.get(timeout=wait) if wait else ticks.get_nowait())
        while True:
            bar.update(ticks.get_nowait())
    except queue_mod.Empty:
        pass
