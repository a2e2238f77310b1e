"""Model registry: build a model from its JSON config and load trained weights by name or path.

A model directory holds ``config.json`` (the model card) and a safetensors weights file. Card keys:

``model``
    ``{"kind": "mean"|"ddpm"|"cvdm"|"zmd", **config}`` (:func:`build_model`).
``weights``
    ``{"file": "model.safetensors", "sha256": ..., "dtype": ...}``; the checksum is verified when given.
``microscope``
    Training family: dotted Microscope fields mapped to a value or a ``[low, high]`` range, e.g.
    ``{"n_channels": 3, "optics.na_objective": [0.3, 0.75]}``, plus the channels' focus separations
    and centroid wavelengths (:func:`family_envelope`, :func:`microscope_family_warnings`).
``input_normalisation``
    How flat-field images were turned into model inputs (:func:`normalise_input`).
``data``, ``provenance``
    Free-form description of the training data; git commit, versions, step, metrics.

Named models live in ``chromaqpi/weights/<name>/``. Weights are only ever read with safetensors
(no pickle, no code execution).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from pathlib import Path

import torch
from torch import nn

from chromaqpi.errors import ConfigError, WeightsError, is_number
from chromaqpi.models.cvdm import CVDMConfig, CVDMModel
from chromaqpi.models.ddpm import DDPMConfig, DDPMModel
from chromaqpi.models.mean import MeanConfig, MeanModel
from chromaqpi.models.zmd import ZMDConfig, ZMDModel
from chromaqpi.sampling import DEFAULT_STEPS
from chromaqpi.tiling import DEFAULT_TILE

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
#: The card's ``format`` and the newest ``format_version`` this code reads.
FORMAT = "chromaqpi-model"
FORMAT_VERSION = 1


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
        if sub is None and not _fits(hints[key], value):
            raise ConfigError(f"{where + '.' if where else ''}{key}: expected {_type_name(hints[key])}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _fits(tp, value) -> bool:
    """Whether a JSON/TOML value has the field's annotated type (int accepted for float; bool is not a number)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if origin is typing.Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(args[0], v) for v in value)
        return len(args) == len(value) and all(_fits(a, v) for a, v in zip(args, value))
    return True  # other annotations (dicts, nested containers) are checked where they are used


def _type_name(tp) -> str:
    name = getattr(tp, "__name__", None) if typing.get_origin(tp) is None else None
    return name or str(tp).replace("typing.", "")


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
        # A zip or pickle header: a torch.save checkpoint, which we never unpickle.
        hint = " (a PyTorch pickle checkpoint; only safetensors weights are loaded)" if _is_pickle(path) else ""
        raise WeightsError(f"cannot read weights {path}: {err}{hint}") from None


def read_model_weights(model_dir: str | Path, card: dict) -> dict[str, torch.Tensor]:
    """The weights a card's ``weights`` section names, checksum verified.

    The file must be a plain name inside ``model_dir`` (a card cannot point at another file on the
    machine) and the card must carry its sha256: a card without one could load anything.
    """
    model_dir, info = Path(model_dir), card["weights"]
    name, sha = info.get("file", "model.safetensors"), info.get("sha256")
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise WeightsError(f"{model_dir / CONFIG_FILE}: weights.file must be a file name inside the model folder, "
                           f"got {name!r}")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        raise WeightsError(f"{model_dir / CONFIG_FILE}: weights.sha256 must be the file's 64-digit hex checksum, "
                           f"got {sha!r}")
    return read_weights(model_dir / name, sha256=sha.lower())


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


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
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # a diverged run: every output would be NaN
        raise WeightsError(f"{source}: weights hold NaN/Inf values ({_names(broken)}); the training diverged")
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
    if path.exists():  # say why an existing path is not a model, rather than "not found"
        what = "folder has no" if path.is_dir() else "is a file, not a model folder with"
        raise WeightsError(f"{path}: {what} {CONFIG_FILE} (a model folder holds {CONFIG_FILE} and safetensors weights)")
    known = ", ".join(list_models()) or "none installed"
    raise WeightsError(f"no model directory or named model {str(name_or_path)!r} (named models: {known})")


def _envelope_entry(value) -> bool:
    """A card's family entry: a number, a name (the acquisition; a checkpoint's ``family``), or an
    ordered [low, high] of numbers."""
    if isinstance(value, list):
        return len(value) == 2 and all(map(is_number, value)) and value[0] <= value[1]
    return is_number(value) or isinstance(value, str)


def read_card(model_dir: str | Path) -> dict:
    """The parsed config.json of a model directory."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"cannot read {path}: {err}") from None
    # Sections must be JSON objects: anything else would fail later with a TypeError.
    if not isinstance(card, dict) or not all(isinstance(card.get(k), dict) for k in ("model", "weights")):
        raise WeightsError(f"{path} lacks the 'model' or 'weights' section (JSON objects)")
    if card.get("format", FORMAT) != FORMAT or card.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise WeightsError(f"{path}: format {card.get('format', FORMAT)!r} version "
                           f"{card.get('format_version', FORMAT_VERSION)!r} is not {FORMAT!r} version "
                           f"{FORMAT_VERSION} (written by another chromaqpi version?)")
    family = card.get("microscope") or {}
    if not isinstance(family, dict) or not all(map(_envelope_entry, family.values())):
        raise WeightsError(f"{path}: 'microscope' must map microscope fields to values or [low, high] ranges")
    sampling = card.get("sampling", {})
    steps = sampling.get("steps", DEFAULT_STEPS) if isinstance(sampling, dict) else None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise WeightsError(f"{path}: 'sampling' must be an object whose 'steps' is an integer >= 1")
    if not is_temperature(sampling.get("temperature", 1.0)):
        raise WeightsError(f"{path}: 'sampling.temperature' must be a finite number >= 0")
    uncertainty = card.get("uncertainty") or {}
    scale = uncertainty.get("scale", 1.0) if isinstance(uncertainty, dict) else None
    draws = uncertainty.get("draws", 2) if isinstance(uncertainty, dict) else None
    if not is_temperature(scale) or scale == 0 or isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise WeightsError(f"{path}: 'uncertainty' must be an object whose 'scale' is a finite number > 0 "
                           "(and 'draws' an integer >= 2)")
    return card


def card_steps(card: dict) -> int:
    """The DDIM steps a model card recommends (``sampling.steps``, chosen on validation), else 25."""
    return int((card.get("sampling") or {}).get("steps", DEFAULT_STEPS))


#: The Gaussian share within one sigma: the coverage a calibrated std map is fitted to.
ONE_SIGMA = 0.6827


def card_std_scale(card: dict, samples: int | None = None) -> float | None:
    """The factor that turns a model's spread of ``samples`` draws into a calibrated one-sigma error
    (``uncertainty.scale``, fitted on validation folders with ``uncertainty.draws`` draws, corrected by
    :func:`draws_correction` for another count), or None when the card has none."""
    uncertainty = card.get("uncertainty") or {}
    if uncertainty.get("scale") is None:
        return None
    scale, fitted = float(uncertainty["scale"]), uncertainty.get("draws")
    return scale * draws_correction(samples, int(fitted)) if samples and fitted else scale


def draws_correction(samples: int, fitted: int) -> float:
    """How a scale fitted on the spread of ``fitted`` draws changes for ``samples`` draws, if the error
    were Gaussian about the posterior: (truth - mean of N draws) / std of the N draws is Student-t with
    N - 1 degrees of freedom times sqrt(1 + 1/N), so its one-sigma (68.27 %) quantile sets the factor.
    Two draws need 1.97x the eight-draw scale (their std is a poor estimate), four 1.17x, sixteen 0.93x."""
    from scipy.stats import t

    def quantile(n: int) -> float:
        return float(t.ppf(0.5 + ONE_SIGMA / 2, n - 1)) * math.sqrt(1 + 1 / n)

    return quantile(samples) / quantile(fitted)


def applied_std_scale(net: nn.Module, kind: str, temperature: float, calibrated: bool, samples: int,
                      refine: int = 0) -> float | None:
    """The card's calibration scale for the spread of ``samples`` draws where it applies, else None (raw
    spread): it was fitted for ZMD draws at temperature 1 without refinement
    (``benchmarks/results/uncertainty-calibration.md``), so the mean network's spread over views, a
    cooler chain's spread and the spread about an unrefined mean under a refined phase stay raw."""
    if not calibrated or kind != "zmd" or getattr(net, "kind", None) != "zmd" or temperature != 1 or refine:
        return None
    return card_std_scale(getattr(net, "card", None) or {}, samples) if samples > 1 else None


def is_temperature(value) -> bool:
    """A usable sampling temperature: a finite real number >= 0."""
    return is_number(value) and value >= 0


def card_temperature(card: dict) -> float:
    """The sampling temperature a model card recommends for a single draw (``sampling.temperature``,
    chosen on validation), else 1 (the learned posterior)."""
    return float((card.get("sampling") or {}).get("temperature", 1.0))


def resolve_temperature(net: nn.Module, temperature: float | None, samples: int, sampler: str = "ddim") -> float:
    """``temperature`` as given; None: the card's for one DDIM draw (a point estimate, where a
    cooler draw measured closer to the truth), 1 for N > 1 draws (their spread is the posterior's)
    and for the other samplers (not measured)."""
    if temperature is not None:
        return float(temperature)
    if samples > 1 or sampler != "ddim":
        return 1.0
    return card_temperature(getattr(net, "card", None) or {})


def learned_settings(kind: str, microscope, options: dict) -> dict:
    """What a learned method runs with ``options`` (those of :func:`reconstruct_with_model`): its
    weights' sha256 and, for diffusion, the step count and temperature; without ``steps`` or
    ``temperature`` those are the card's recommendation, which a retrained model may change."""
    net = model_for(kind, microscope, options.get("model"))
    record = {"model_sha256": (getattr(net, "card", None) or {}).get("weights", {}).get("sha256")}
    if kind != "mean":
        sampler = options.get("sampler", "ddim")
        record["steps"] = resolve_steps(net, options.get("steps"), sampler)
        record["temperature"] = resolve_temperature(net, options.get("temperature"), options.get("samples", 1),
                                                    sampler)
    if options.get("return_std"):
        scale = applied_std_scale(net, kind, record.get("temperature", 1.0), options.get("calibrated_std", True),
                                  options.get("samples", 1), options.get("refine", 0))
        record["std_scale"] = scale  # None: the raw spread of the draws
    return record


def resolve_steps(net: nn.Module, steps: int | None, sampler: str = "ddim") -> int:
    """``steps`` as given; None: the card's recommendation for DDIM (it was measured for DDIM
    only), :data:`~chromaqpi.sampling.DEFAULT_STEPS` for the other samplers."""
    if steps is not None:
        return steps
    return card_steps(getattr(net, "card", None) or {}) if sampler == "ddim" else DEFAULT_STEPS


def model_for(kind: str, microscope, model: str | Path | nn.Module | None = None, device="cpu") -> nn.Module:
    """The network ``reconstruct_with_model`` runs for ``kind`` (loaded once and cached)."""
    if isinstance(model, nn.Module):
        return model
    return _cached_model(model or _default_model_name(kind, getattr(microscope, "name", None)), device)


def trained_stains(kind: str, microscope, model: str | Path | nn.Module | None = None) -> list[str]:
    """The coloured stains (grey left out) among the absorbers of the model's training data, as its card
    records them (``provenance.datasets``): what it has learned to tell from defocus contrast. The model as
    :func:`model_for` picks it; [] for transparent data, a card that records none, or no readable model
    (the method itself then says what is wrong)."""
    try:
        if isinstance(model, nn.Module):
            card = getattr(model, "card", None) or {}
        else:
            card = read_card(resolve_model_dir(model or _default_model_name(kind, getattr(microscope, "name", None))))
        data = ((card.get("provenance") or {}).get("datasets") or {}).get("train") or []
        stains = [stain for d in data for stain in ((d.get("absorbers") or {}).get("stains") or [])]
    except (WeightsError, AttributeError, TypeError):
        return []
    return [stain for stain in dict.fromkeys(stains) if stain != "grey"]


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
    except (TypeError, ValueError, ArithmeticError, IndexError, RuntimeError) as err:  # values the layers reject
        raise WeightsError(f"{model_dir}: invalid model config ({type(err).__name__}: {err})") from None
    tensors = read_model_weights(model_dir, card)
    load_weights_into(model, tensors, source=str(model_dir))
    model.card = card
    return model.to(device).eval()


# ---------------------------------------------------------------- reconstruction entry point


def input_normalisation_mode(spec: str | dict | None) -> str:
    """The mode named by a card's ``input_normalisation`` (a string, or a dict with "mode")."""
    if spec is None:
        return "identity"
    mode = spec if isinstance(spec, str) else spec.get("mode", spec.get("kind", "identity"))
    from chromaqpi.datasets.normalize import MODES

    if mode not in ("identity", "affine", *MODES):
        raise WeightsError(f"unknown input_normalisation {mode!r}; valid: identity, affine, {', '.join(MODES)}")
    return mode


def normalise_input(images: torch.Tensor, spec: str | dict | None) -> torch.Tensor:
    """Turn flat-field normalised images (empty field = 1) into model inputs, as the card says.

    Modes: ``"identity"`` (or None); ``"affine"``: ``(I - offset[c]) * scale[c]`` with per-channel
    (or scalar) ``offset`` and ``scale`` in the dict; and the dataset modes of
    :func:`chromaqpi.datasets.normalize.normalize_input` (``"flatfield"``: ``I - 1``, ``"paper"``,
    ``"paper-rgb"``, ``"paper-2shot"``). Training applies the same function, so the two agree.

    Parameters
    ----------
    images : torch.Tensor
        (B, C, H, W).
    spec : str, dict or None
        A mode name, or ``{"mode": name, ...}``.

    Raises
    ------
    WeightsError
        Unknown mode (the model cannot be fed correctly).
    """
    mode = input_normalisation_mode(spec)
    if mode == "identity":
        return images
    if mode == "affine":
        def per_channel(v):
            return torch.as_tensor(v, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)

        return (images - per_channel(spec.get("offset", 0.0))) * per_channel(spec.get("scale", 1.0))
    from chromaqpi.datasets.normalize import normalize_input

    return normalize_input(images, mode)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def focus_separations_um(microscope) -> dict[str, float]:
    """Differences of the channels' spectrally weighted defocus (µm), every pair j > i, keyed
    ``"effective_defocus_um.c<j>-c<i>"``.

    These differences are the through-focus diversity the method reads: an objective with
    less (or reversed) longitudinal chromatic aberration than the training family is outside
    it even at the same NA and pixel size (a plan-apochromat, ``benchmarks/results/microscopes.md``).
    All pairs, because a family's draws are correlated: with the default family's achromats
    blue minus green never falls below 0.27 µm, while blue minus red can be near zero.
    """
    from chromaqpi.microscope import effective_defocus_um

    return _pair_differences(effective_defocus_um(microscope))


def _pair_differences(z: list[float]) -> dict[str, float]:
    return {f"effective_defocus_um.c{j}-c{i}": z[j] - z[i] for i in range(len(z)) for j in range(i + 1, len(z))}


def focus_features_um(microscope) -> dict[str, float]:
    """The focus quantities an envelope bounds: the separations (:func:`focus_separations_um`)
    and the channels' mean weighted defocus (``"effective_defocus_um.mean"``, µm).

    The mean places the stack along z: phase contrast changes sign with defocus, so planes at
    0 and +2 µm image a phase object differently from planes at -1 and +1 µm, although their
    separation is the same.
    """
    from chromaqpi.microscope import effective_defocus_um

    return _focus_features(effective_defocus_um(microscope))


def _focus_features(z: list[float]) -> dict[str, float]:
    return {**_pair_differences(z), "effective_defocus_um.mean": sum(z) / len(z)}


def sampled_features_um(microscope) -> dict[str, float]:
    """The quantities :func:`family_envelope` samples from a family's draws: the focus quantities
    (:func:`focus_features_um`) and each channel's centroid wavelength (``"effective_wavelength_um.c<i>"``,
    µm). The wavelength sets how a defocus turns into phase contrast (``λz``), so a stack at another
    wavelength is outside a family even at the same planes."""
    from chromaqpi.microscope import channel_centroids_um

    z, lam = channel_centroids_um(microscope)  # one channel quadrature for both
    return {**_focus_features(z), **{f"effective_wavelength_um.c{i}": w for i, w in enumerate(lam)}}


#: draws, seed and widening of :func:`family_envelope`'s sampled focus and wavelength quantities:
#: the range of 4000 draws, widened by 0.5 % of its width (at least 0.01 µm, so ±10 nm around a
#: single-wavelength family) each side so that the sampled extremes do not flag microscopes at the
#: family's true edge.
ENVELOPE_DRAWS, ENVELOPE_SEED, ENVELOPE_MARGIN, ENVELOPE_MIN_MARGIN_UM = 4000, 0, 0.005, 0.01
#: The envelope's name for the condenser fill σ = NA_condenser / NA_objective (a ratio, not a config field).
CONDENSER_FILL = "optics.na_condenser/na_objective"


def family_envelope(family) -> dict:
    """The card's ``microscope`` entry for a randomisation family (name or
    :class:`~chromaqpi.datasets.randomize.Ranges`): dotted fields -> value or [low, high].

    NA, pixel size, medium index and condenser fill come from the family's ranges; the channels' focus
    separations, mean defocus and centroid wavelengths (:func:`sampled_features_um`) have no closed
    form over the illuminant, camera and aberration draws, so their range is sampled from the family itself.
    """
    import numpy as np

    from chromaqpi.datasets.randomize import draw_microscope, resolve_ranges

    r = resolve_ranges(family)
    base = r.base_microscope()
    env: dict = {"acquisition": acquisition(base), "n_channels": base.n_channels}
    if r.objectives:
        nas = [o.na for o in r.objectives]
        env["optics.na_objective"] = [min(nas) * (1 - r.na_jitter), max(nas) * (1 + r.na_jitter)]
        mags = [o.magnification for o in r.objectives]
        env["sampling.pixel_size_um"] = [r.camera_pixel_um[0] / max(mags), r.camera_pixel_um[1] / min(mags)]
    else:
        env["sampling.pixel_size_um"] = base.sampling.pixel_size_um
        env["optics.na_objective"] = base.optics.na_objective
    if r.n_medium:
        env["optics.n_medium"] = list(r.n_medium)
    if r.condenser_sigma:  # the aperture's fill; a wider one cost `default` 1.3-1.6x (illumination.md)
        env[CONDENSER_FILL] = [round(r.condenser_sigma[0] - 0.005, 4), round(r.condenser_sigma[1] + 0.005, 4)]
    rng = np.random.default_rng(ENVELOPE_SEED)
    draws = [sampled_features_um(draw_microscope(base, r, rng)) for _ in range(ENVELOPE_DRAWS)]
    for key in draws[0]:
        values = [d[key] for d in draws]
        lo, hi = min(values), max(values)
        pad = max(ENVELOPE_MARGIN * (hi - lo), ENVELOPE_MIN_MARGIN_UM)
        env[key] = [round(lo - pad, 4), round(hi + pad, 4)]
    return env


def acquisition(microscope) -> str:
    """``"rgb"`` (one colour exposure: channels set apart by the objective's chromatic focus) or
    ``"planes"`` (monochrome images at set focus positions): models learn one of the two."""
    return "planes" if microscope.planes else "rgb"


def microscope_family_warnings(family: dict | None, microscope) -> list[str]:
    """Where ``microscope`` leaves the family a model was trained for.

    ``family`` maps dotted microscope fields (``"sampling.pixel_size_um"``, ``"optics.na_objective"``,
    ``"n_channels"``, ...), ``"acquisition"`` (:func:`acquisition`) and the derived focus and wavelength
    quantities (:func:`sampled_features_um`) to a value or an inclusive ``[low, high]`` range; other keys are ignored.

    Returns
    -------
    list of str
        One message per violated entry (empty when inside the family).
    """
    if not family:
        return []
    actual = {**_flatten(microscope.to_dict()), "acquisition": acquisition(microscope),
              "n_channels": microscope.n_channels}
    if microscope.optics.na_objective > 0:
        actual[CONDENSER_FILL] = microscope.optics.na_condenser / microscope.optics.na_objective
    if any(key.startswith(("effective_defocus_um.", "effective_wavelength_um.")) for key in family):
        actual.update(sampled_features_um(microscope))
    problems = []
    for key, want in family.items():
        if key not in actual:
            continue
        got = actual[key]
        if isinstance(want, (list, tuple)) and len(want) == 2 and all(isinstance(w, (int, float)) for w in want):
            ok = isinstance(got, (int, float)) and want[0] <= got <= want[1]
        else:
            ok = got == want
        if not ok:
            shown = f"{got:.4g}" if isinstance(got, float) else repr(got)
            pupil = ", no objective pupil" if key == "optics.na_objective" and want == 0 else ""
            problems.append(f"{key} = {shown} (trained for {_shown_range(want)}{pupil})")
    return problems


def _shown_range(want) -> str:
    """A card's value or [low, high] range as a message shows it (floats to 6 significant digits: no
    binary-rounding tails such as 0.6825000000000001)."""
    if isinstance(want, (list, tuple)):
        return "[" + ", ".join(_shown_range(w) for w in want) + "]"
    return f"{want:.6g}" if isinstance(want, float) else repr(want)


def model_input(net: nn.Module, images: torch.Tensor, microscope, condition: torch.Tensor | None = None) -> torch.Tensor:
    """The stack a loaded model sees: its card's input normalisation of ``images`` (B, C, H, W),
    then any ``condition`` planes, then its prior's phase plane (computed on the whole image, so
    that tiles share its low frequencies), float32 on the images' device."""
    x = normalise_input(images.float(), (getattr(net, "card", {}) or {}).get("input_normalisation"))
    if condition is not None:
        x = torch.cat([x, condition.to(x.device, torch.float32)], dim=1)
    prior = getattr(net.config, "prior", None)
    if prior is not None:
        from chromaqpi.models.prior import prior_plane

        x = torch.cat([x, prior_plane(images, microscope, prior).to(x.device)], dim=1)
    return x


def _pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        # Reflection keeps the padded border statistically like the image (no artificial edge).
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, (h, w)


_LOADED: dict[tuple, nn.Module] = {}


def _cached_model(name_or_path, device) -> nn.Module:
    model_dir = resolve_model_dir(name_or_path).resolve()
    key = (str(model_dir), (model_dir / CONFIG_FILE).stat().st_mtime_ns, str(device))
    if key not in _LOADED:
        _LOADED.clear()  # keep one model in memory
        # channels_last lets oneDNN skip layout reorders: ~1.3x faster sampling on CPU
        # (benchmarks/results/inference-default*.md), same results to 1e-4 rad.
        _LOADED[key] = load_model(model_dir, device=device).to(memory_format=torch.channels_last)
    return _LOADED[key]


def _default_model_name(kind: str, microscope_name: str | None = None) -> str:
    # The shipped model for the microscope (its name: the preset's, or a TOML's `name`) wins:
    # "<name>-<kind>" (e.g. "paper-2shot-ddpm"), then "<name>" (a ZMD model, which also serves
    # "mean"), then "<kind>", then "default-<kind>", then "default".
    serves = {kind, "zmd"} if kind == "mean" else {kind}
    installed = set(list_models())
    candidates = [f"{microscope_name}-{kind}", microscope_name] if microscope_name else []
    for name in [*candidates, kind, f"default-{kind}", "default"]:
        if name in installed and read_card(WEIGHTS_DIR / name)["model"].get("kind") in serves:
            return name
    raise WeightsError(f"no trained {kind!r} model is installed for microscope {microscope_name!r}; "
                       "pass model=NAME or PATH (--model on the command line): a shipped model or a checkpoint")


#: starting points of the data-consistency refinement (``refine_starts``)
REFINE_STARTS = ("model", "model+tie")


def _oriented_samples(predictor, tiles: torch.Tensor, microscope, samples: int, options: dict):
    """``samples`` draws, draw j on the tiles under the j-th allowed D4 element, turned back."""
    from chromaqpi.datasets.augment import apply_transform, invert_transform, valid_transforms
    from chromaqpi.sampling import SampleResult

    allowed = valid_transforms(microscope, tuple(tiles.shape[-2:]))
    draws = []
    for j in range(samples):
        t = allowed[j % len(allowed)]
        view = apply_transform(tiles, t).contiguous(memory_format=torch.channels_last)
        draws.append(invert_transform(predictor.sample(view, samples=1, **options).mean, t))
    draws = torch.stack(draws)
    return SampleResult(draws.mean(dim=0), draws.std(dim=0), None)


def flushing_denormals(fn):
    """Run ``fn`` with subnormal floats flushed to zero (they slow CPU convolutions several-fold) and
    put the process-wide flag back as it was (read from a subnormal: torch has no getter)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        was_on = torch.tensor(1e-40, dtype=torch.float32).item() == 0.0
        torch.set_flush_denormal(True)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_flush_denormal(was_on)
    return run


@flushing_denormals
def reconstruct_with_model(
    images: torch.Tensor, microscope, *, kind: str, model: str | Path | nn.Module | None = None,
    steps: int | None = None, samples: int = 1, sampler: str = "ddim", generator=None,
    condition: torch.Tensor | None = None, device: str | torch.device | None = None,
    tile: int = DEFAULT_TILE, overlap: int = 48, return_std: bool = False, refine: int = 0,
    refine_starts: str = "model", orientations: bool = True, progress: bool = False,
    temperature: float | None = None, calibrated_std: bool = True, fit_absorption: bool = False, stain=None,
) -> torch.Tensor:
    """Phase from images with a learned model (the body of each model module's ``reconstruct``).

    Parameters
    ----------
    images : torch.Tensor
        (B, C, H, W) flat-field normalised intensities (empty field = 1).
    microscope : chromaqpi.microscope.Microscope
        Checked against the family in the model card (a warning when outside it).
    kind : {"mean", "ddpm", "cvdm", "zmd"}
        The method name; the model must be of this kind.
    model : str, Path, nn.Module or None
        Checkpoint directory, shipped model name, or a loaded model; None: the shipped model of
        this kind for the microscope preset (``"<preset>-<kind>"``, else ``"<preset>"``), else the
        one named like ``kind``, else ``"default"``.
    steps, samples, sampler, generator
        Sampling options (:meth:`sample` of the model); the posterior mean is returned. ``steps``
        None: for DDIM the count the model's card recommends (:func:`resolve_steps`), else 25.
    temperature : float or None
        Scale of the diffusion chain's noise (:func:`chromaqpi.sampling.run_chain`; >= 0): 1 draws
        from the learned posterior, lower values draw nearer its centre (0: one deterministic
        estimate). None (:func:`resolve_temperature`): the card's ``sampling.temperature`` for a
        single DDIM draw (the shipped ZMD models: 0.5 or 0.75, chosen on validation images,
        ``benchmarks/results/temperature.md``), 1 with ``samples`` > 1 so that the draws' spread
        is the posterior's (an explicit T < 1 narrows that spread: ``return_std`` is then no longer
        the posterior width, and a warning says so). The mean network ignores it.
    tile, overlap : int
        Images larger than ``tile`` are reconstructed in overlapping tiles, blended smoothly
        with per-tile offsets harmonised (:mod:`chromaqpi.tiling`): any size, bounded memory.
        512 px although the networks trained on 256 px: the larger context lowered nMAE on
        512 and 1024 px validation images by 0.7-10 % against 256 px tiles, mostly in the
        large-scale error (``benchmarks/results/tiles.md``, ``tiles-1024.md``); one model call
        takes one 512 px tile or four 256 px ones, so memory stays as bounded.
    return_std : bool
        Also return a per-pixel standard deviation from the ``samples`` draws.
    calibrated_std : bool
        With ``return_std``: the draws' spread times the scale in the model's card
        (``uncertainty.scale``), fitted on validation images so that the scaled spread covers
        68 % of the pixels' errors as a one-sigma error bar should
        (``benchmarks/results/uncertainty-calibration.md``; the raw spread of the shipped
        models is 2-9x narrower than the error, ``uncertainty.md``), adjusted for a draw count
        other than the fitted one (:func:`draws_correction`). Applied to ZMD draws at
        temperature 1 without ``refine`` only; False, or a card without a scale: the raw
        spread of the draws.
    refine : int
        Data-consistency steps of the iterative solver (``chromaqpi.solvers.iterative.refine``,
        reduced quadrature) started from the model's estimate; 0 = none.
    refine_starts : {"model", "model+tie"}
        ``"model+tie"`` also refines from the TIE estimate and keeps, per image, the fit with
        the lower objective at a common TV weight (twice the refinement cost; guards against a
        model estimate that leads the non-convex fit into a worse local minimum than the classical
        start). Meant for (near-)noiseless data: with noise the lower objective is often not the
        fit nearer the truth, and the model start alone does better.
    fit_absorption : bool
        With ``refine``: fit the specimen's amplitude attenuation along with the phase
        (``chromaqpi.solvers.iterative.refine_with_absorption``, started from the in-focus
        intercept), so that light a stain absorbs is not explained by bending the phase. Needs
        channels that can tell absorption from defocus contrast (not ``paper-rgb``: ConfigError).
    stain : with ``fit_absorption``, the stain colouring the specimen (a name in
        ``chromaqpi.optics.spectra.STAINS`` or a ``Stain``; None: grey).
    orientations : bool
        Take draw j of ``samples`` on the image turned/flipped by the j-th D4 element that the
        microscope allows (``chromaqpi.datasets.augment.valid_transforms``; the forward model
        commutes with it, so each is an equally valid view), and turn the estimate back. The
        models see the group only through training augmentation, so the views differ and their
        average cancels part of each one's error; the std then includes that spread. Also
        averages the deterministic mean network over ``samples`` views. Bayer cameras allow
        the identity only.
    progress : bool
        Progress bar over tiles.
    condition : torch.Tensor, optional
        (B, Cc, H, W) extra conditioning planes, stacked after the normalised images.
    device : str or torch.device, optional
        Defaults to the images' device.

    Returns
    -------
    torch.Tensor, or (phase, std) with ``return_std``
        (B, H, W) phase in radians, float32, on the images' device.
    """
    import warnings

    if refine_starts not in REFINE_STARTS:
        raise ConfigError(f"refine_starts must be one of {', '.join(REFINE_STARTS)}, got {refine_starts!r}")
    for name, value, least in (("steps", steps, 1), ("samples", samples, 1), ("refine", refine, 0),
                               ("tile", tile, 16), ("overlap", overlap, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    if overlap >= tile:
        raise ConfigError(f"overlap ({overlap} px) must be smaller than the tile ({tile} px)")
    if stain is not None:
        if not fit_absorption:
            raise ConfigError("a stain is fitted with the absorption: set fit_absorption=True")
        from chromaqpi.optics.spectra import get_stain

        get_stain(stain)
    if fit_absorption:
        if not refine:
            raise ConfigError("fit_absorption needs refine > 0 steps (it is a mode of the data-consistency fit)")
        from chromaqpi.consistency import check_absorption_identifiable

        check_absorption_identifiable(microscope)  # before the network runs
    if temperature is not None and not is_temperature(temperature):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    device = torch.device(device) if device is not None else images.device
    net = model_for(kind, microscope, model, device)
    # A ZMD checkpoint carries its mean network: method "mean" can use it directly.
    predictor = net.mean if (kind == "mean" and net.kind == "zmd") else net
    if predictor.kind != kind:
        raise ConfigError(f"model {model!r} is a {net.kind!r} model, not {kind!r}")
    card = getattr(net, "card", {}) or {}
    steps = resolve_steps(net, steps, sampler)
    temperature = resolve_temperature(net, temperature, samples, sampler)
    if return_std and samples > 1 and temperature < 1 and kind != "mean":
        warnings.warn(f"the std of {samples} draws at temperature {temperature:g} is narrower than the model's "
                      "posterior spread (draw at temperature 1 for it)", stacklevel=3)
    problems = microscope_family_warnings(card.get("microscope"), microscope)
    if problems:
        warnings.warn("microscope outside the model's training family: " + "; ".join(problems), stacklevel=3)
    x = model_input(net, images.to(device), microscope, condition)
    prior = getattr(net.config, "prior", None)
    if x.shape[1] != net.config.in_channels:
        if condition is None:  # then the stack itself does not fit the network
            shown = f"model {str(model)!r}" if isinstance(model, (str, Path)) else "the model"
            raise ConfigError(f"{shown} reads {net.config.in_channels - bool(prior)}-channel stacks but the "
                              f"microscope gives {images.shape[1]} channels: choose a model trained for this "
                              "acquisition")
        raise ConfigError(f"model expects {net.config.in_channels} input channels (images + condition"
                          f"{' + prior' if prior else ''}), got {x.shape[1]}")

    def run_tiles(tiles: torch.Tensor):
        options = dict(steps=steps, generator=generator, sampler=sampler, temperature=temperature)
        with torch.no_grad():
            if orientations and samples > 1:
                res = _oriented_samples(predictor, tiles, microscope, samples, options)
            else:
                res = predictor.sample(tiles.contiguous(memory_format=torch.channels_last), samples=samples,
                                       **options)
        if return_std and res.std is not None:
            return res.mean[:, 0], res.std[:, 0]
        return res.mean[:, 0]

    from chromaqpi.sampling import step_progress
    from chromaqpi.tiling import reconstruct_tiled

    phases, stds = [], []
    with step_progress() if progress and kind != "mean" else contextlib.nullcontext():
        for image in x:
            phase, std = reconstruct_tiled(run_tiles, image, tile=tile, overlap=overlap,
                                           multiple=predictor.stride, progress=progress)
            phases.append(phase)
            stds.append(std if std is not None else torch.zeros_like(phase))
    phase = torch.stack(phases).to(images.device)
    if refine:
        from chromaqpi.solvers.iterative import refine as refine_phase
        from chromaqpi.solvers.iterative import refine_with_absorption

        starts = [phase.to(images.dtype)]
        if refine_starts == "model+tie":
            from chromaqpi.solvers.tie import tie

            starts.append(tie(images, microscope))
        kw = dict(steps=int(refine), fast=True, progress=progress)
        fitted = (refine_with_absorption(images, microscope, starts, stain=stain, **kw).phase if fit_absorption
                  else refine_phase(images, microscope, starts, **kw))
        phase = fitted.to(phase.dtype)
    if return_std:
        std = torch.stack(stds).to(images.device)
        scale = applied_std_scale(net, kind, temperature, calibrated_std, samples, refine)
        return phase, std * scale if scale is not None else std
    return phase
