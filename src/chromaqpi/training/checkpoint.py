"""Checkpoints: safetensors tensors plus JSON metadata, written atomically, never pickled.

A checkpoint directory contains

``config.json``
    The model card read by :func:`chromaqpi.models.registry.load_model`: ``model`` (kind + config),
    ``weights`` (file, sha256, dtype), ``microscope`` (family dict from the caller),
    ``input_normalisation``, ``data``, ``provenance`` (git commit, package and torch versions, step, metrics;
    for a trained model also its hardware, training wall time and the identity of its datasets).
``model.safetensors``
    Inference weights (the EMA average).
``train_state.safetensors`` / ``train_state.json`` (resume checkpoints only)
    Raw weights (``model.*``), AdamW moments (``optim.<i>.<name>``), RNG states (``rng.*``); the
    JSON holds optimizer hyper-parameters, EMA counters, the step and loop bookkeeping.

The whole directory is built under a temporary name and swapped in with ``os.replace``, so a
killed process leaves either the old or the new checkpoint, never a mix.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import torch
from torch import nn

from chromaqpi.errors import WeightsError
from chromaqpi.io import atomic_write, sibling_temp_dir
from chromaqpi.models.registry import (
    CONFIG_FILE, FORMAT, FORMAT_VERSION, load_weights_into, model_config, read_card, read_model_weights, read_weights,
    sha256_file,
)

WEIGHTS_FILE = "model.safetensors"
STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"


# ---------------------------------------------------------------- atomic files


def git_commit() -> str | None:
    """Commit hash of the source tree (with "-dirty" if modified), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then ``os.replace`` it (the file gets
    the permissions of a plain ``open``: :func:`chromaqpi.io.atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_json(path: str | Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically write CPU copies of ``tensors`` as safetensors; returns the file's sha256."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat))
    return sha256_file(path)


@contextlib.contextmanager
def atomic_directory(path: str | Path):
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    The old directory is moved aside to ``<path>.old`` for the instant of the swap;
    :func:`find_checkpoint` falls back to it if a crash happened in between.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp_dir(path)  # the permissions of a plain mkdir (mkdtemp's are 0700)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path | None:
    """``path`` if it is a checkpoint, else its ``.old`` sibling left by an interrupted swap, else None."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


# ---------------------------------------------------------------- model directories


def make_card(
    model: nn.Module, *, microscope: dict | None = None, input_normalisation: dict | None = None,
    data: dict | None = None, provenance: dict | None = None, hardware: dict | None = None,
    datasets: dict | None = None,
) -> dict:
    """The JSON card of a model (weights section filled in when written); ``hardware`` (what trained
    it: :func:`chromaqpi.training.loop.training_hardware`) and ``datasets`` (what it read, ``{"train": [...],
    "val": [...]}``: :func:`chromaqpi.training.loop.dataset_identity`) go into its provenance."""
    import chromaqpi

    prov = {
        "git_commit": git_commit(), "chromaqpi_version": chromaqpi.__version__, "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": model_config(model),
        "microscope": microscope, "input_normalisation": input_normalisation, "data": data,
        "provenance": {**prov, **({"hardware": hardware} if hardware else {}),
                       **({"datasets": datasets} if datasets else {}), **(provenance or {})},
    }


def write_model_dir(directory: str | Path, weights: dict[str, torch.Tensor], card: dict,
                    *, dtype: torch.dtype = torch.float32) -> None:
    """Write ``model.safetensors`` (floating tensors cast to ``dtype``) and ``config.json`` into a directory."""
    directory = Path(directory)
    cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in weights.items()}
    sha = save_tensors(directory / WEIGHTS_FILE, cast)
    card = {**card, "weights": {"file": WEIGHTS_FILE, "sha256": sha, "dtype": str(dtype).removeprefix("torch.")}}
    atomic_write_json(directory / CONFIG_FILE, card)


def save_model(directory: str | Path, model: nn.Module, card: dict) -> Path:
    """Atomically save an inference checkpoint (weights + card) of ``model``."""
    with atomic_directory(directory) as tmp:
        write_model_dir(tmp, model.state_dict(), card)
    return Path(directory)


def export_fp16(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint's inference weights to ``dst`` in float16 (for shipping; loads as float32).

    Parameters
    ----------
    src : str or Path
        A checkpoint directory.
    dst : str or Path
        New model directory (config.json + half-size model.safetensors).
    """
    card = read_card(src)
    tensors = read_model_weights(src, card)
    card = {k: v for k, v in card.items() if k != "weights"}
    with atomic_directory(dst) as tmp:
        write_model_dir(tmp, tensors, card, dtype=torch.float16)
    return Path(dst)


# ---------------------------------------------------------------- training state


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def save_training_checkpoint(
    directory: str | Path, *, model: nn.Module, ema, optimizer: torch.optim.Optimizer, card: dict, loop_state: dict,
) -> Path:
    """Atomically save everything needed to continue training bit for bit.

    Parameters
    ----------
    directory : str or Path
        Checkpoint directory (replaced atomically).
    model : torch.nn.Module
        The raw (non-EMA, unwrapped) model.
    ema : chromaqpi.training.ema.EMA
        Its averaged copy provides ``model.safetensors``.
    optimizer : torch.optim.Optimizer
    card : dict
        Model card (:func:`make_card`).
    loop_state : dict
        JSON-able loop bookkeeping (step, best metric, seed, ...).
    """
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    ema_tensors, ema_meta = ema.state()
    with atomic_directory(directory) as tmp:
        write_model_dir(tmp, ema_tensors, card)
        tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors, **_rng_tensors()}
        sha = save_tensors(tmp / STATE_FILE, tensors)
        atomic_write_json(tmp / STATE_JSON, {
            "format": FORMAT + "-train-state", "format_version": FORMAT_VERSION, "sha256": sha,
            "optimizer": opt_meta, "ema": ema_meta, "loop": loop_state,
        })
    return Path(directory)


def load_training_checkpoint(
    directory: str | Path, *, model: nn.Module, ema, optimizer: torch.optim.Optimizer, restore_rng: bool = True,
) -> dict:
    """Restore model, EMA, optimizer and RNG state saved by :func:`save_training_checkpoint`.

    Returns
    -------
    dict
        The saved ``loop_state``.

    Raises
    ------
    WeightsError
        Missing/corrupt files or tensors that do not match the model (one line, names listed).
    """
    found = find_checkpoint(directory)
    if found is None or not (found / STATE_JSON).is_file():
        raise WeightsError(f"no resumable checkpoint in {directory}")
    meta = json.loads((found / STATE_JSON).read_text())
    card = read_card(found)
    tensors = read_weights(found / STATE_FILE, sha256=meta.get("sha256"))
    raw = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    load_weights_into(model, raw, source=f"{found} (raw weights)")
    ema_w = read_model_weights(found, card)
    load_weights_into(ema.module, ema_w, source=f"{found} (EMA weights)")
    ema.updates = int(meta["ema"]["updates"])
    optimizer.load_state_dict(_optimizer_state(tensors, meta["optimizer"]))  # moves state to the params' device
    if restore_rng:
        torch.set_rng_state(tensors["rng.cpu"])
        keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        cuda = [tensors[k] for k in keys]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    return meta["loop"]
