"""Model registry: build a model from its JSON config and load trained weights by name or path.

A model directory holds ``config.json`` (the model config under ``"model"`` plus the card: microscope
family, input normalisation, data, provenance) and a safetensors weights file named under
``"weights"``, with its sha256 when known. Named models live in ``chromaqpi/weights/<name>/``.
Weights are only ever read with safetensors (no pickle, no code execution).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path

import torch
from torch import nn

from chromaqpi.errors import ConfigError, WeightsError
from chromaqpi.models.cvdm import CVDMConfig, CVDMModel
from chromaqpi.models.ddpm import DDPMConfig, DDPMModel
from chromaqpi.models.mean import MeanConfig, MeanModel
from chromaqpi.models.zmd import ZMDConfig, ZMDModel

#: kind -> (model class, config dataclass)
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "mean": (MeanModel, MeanConfig),
    "ddpm": (DDPMModel, DDPMConfig),
    "cvdm": (CVDMModel, CVDMConfig),
    "zmd": (ZMDModel, ZMDConfig),
}

#: Folder of the named, shipped models.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------- config <-> dict


def _dataclass_type(tp) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``, ``Optional[X]``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return inner[0] if inner else None
    return None


def config_from_dict(cls: type, data: dict, *, where: str = "") -> typing.Any:
    """Build dataclass ``cls`` from a (JSON/TOML) dict, rejecting unknown keys.

    Nested dataclass fields are built recursively and lists become tuples where the field is a
    tuple. Missing keys take the dataclass defaults.

    Raises
    ------
    ConfigError
        On unknown keys or a non-dict where a section is expected.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table/dict, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        sub = _dataclass_type(hints[key])
        if sub is not None and value is not None:
            value = config_from_dict(sub, value, where=f"{where}.{key}" if where else key)
        elif typing.get_origin(hints[key]) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def config_to_dict(config) -> dict:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def model_config(model: nn.Module) -> dict:
    """``{"kind": ..., **config}`` of a model, enough for :func:`build_model`."""
    return {"kind": model.kind, **config_to_dict(model.config)}


def build_model(config: dict) -> nn.Module:
    """Instantiate a model from ``{"kind": "mean"|"ddpm"|"cvdm"|"zmd", **fields}``.

    Raises
    ------
    ConfigError
        Unknown kind or unknown config keys.
    """
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in MODELS:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {sorted(MODELS)}")
    cls, cfg_cls = MODELS[kind]
    return cls(config_from_dict(cfg_cls, config, where=f"model ({kind})"))


# ---------------------------------------------------------------- weights I/O


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_weights(path: str | Path, *, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file to CPU tensors, checking its sha256 when given.

    Raises
    ------
    WeightsError
        Missing or unreadable file, or checksum mismatch.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if sha256 and sha256_file(path) != sha256:
        raise WeightsError(f"sha256 mismatch for {path} (corrupt or modified weights)")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"cannot read weights {path}: {err}") from None


def _names(items, limit: int = 4) -> str:
    items = sorted(items)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def mismatch_report(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """One-line description of missing / unexpected / wrongly shaped tensors, or None if they match."""
    missing, unexpected = set(expected) - set(found), set(found) - set(expected)
    shapes = [
        f"{k} {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found)) if found[k].shape != expected[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {_names(unexpected)}")
    if shapes:
        parts.append(f"shape {_names(shapes, 3)}")
    return "; ".join(parts) or None


def load_weights_into(module: nn.Module, tensors: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Copy ``tensors`` into ``module``'s state exactly (names and shapes must match; dtype is cast).

    Raises
    ------
    WeightsError
        One line naming the mismatched tensors.
    """
    state = module.state_dict()
    report = mismatch_report(state, tensors)
    if report:
        raise WeightsError(f"{source} does not match {type(module).__name__}: {report}")
    with torch.no_grad():
        for name, value in state.items():
            value.copy_(tensors[name].to(value.dtype))


# ---------------------------------------------------------------- lookup and loading


def list_models() -> list[str]:
    """Names of the shipped models (folders of ``chromaqpi/weights`` with a config.json)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in WEIGHTS_DIR.glob(f"*/{CONFIG_FILE}"))


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A model directory: an existing path, else the shipped model of that name.

    Raises
    ------
    WeightsError
        Neither a directory with config.json nor a known name.
    """
    path = Path(name_or_path).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    named = WEIGHTS_DIR / str(name_or_path)
    if Path(str(name_or_path)).name == str(name_or_path) and (named / CONFIG_FILE).is_file():
        return named
    known = ", ".join(list_models()) or "none installed"
    raise WeightsError(f"no model directory or named model {str(name_or_path)!r} (named models: {known})")


def read_card(model_dir: str | Path) -> dict:
    """The parsed config.json of a model directory."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"cannot read {path}: {err}") from None
    if "model" not in card or "weights" not in card:
        raise WeightsError(f"{path} lacks the 'model' or 'weights' section")
    return card


def load_model(name_or_path: str | Path, *, device: torch.device | str = "cpu") -> nn.Module:
    """Load a trained model for inference.

    Parameters
    ----------
    name_or_path : str or Path
        A checkpoint directory (config.json + safetensors), or the name of a shipped model under
        ``chromaqpi/weights/<name>/``.
    device : torch.device or str

    Returns
    -------
    torch.nn.Module
        The model in eval mode, float32, with its card (the parsed config.json: microscope family,
        input normalisation, data, provenance) as ``model.card``.

    Raises
    ------
    WeightsError
        Unknown name, unreadable files, checksum mismatch, or weights that do not fit the config.
    """
    model_dir = resolve_model_dir(name_or_path)
    card = read_card(model_dir)
    try:
        model = build_model(card["model"])
    except ConfigError as err:
        raise WeightsError(f"{model_dir}: invalid model config: {err}") from None
    info = card["weights"]
    tensors = read_weights(model_dir / info.get("file", "model.safetensors"), sha256=info.get("sha256"))
    load_weights_into(model, tensors, source=str(model_dir))
    model.card = card
    return model.to(device).eval()
