"""Weighted phase-source specs: ``"cells:0.7,folder(path=/data/img):0.3"`` <-> SourceSpec list.

Grammar (the ``--source`` flag)::

    SPEC    := ITEM ("," ITEM)*
    ITEM    := NAME ["(" KEY=VALUE (";" KEY=VALUE)* ")"] [":" WEIGHT]

Values are parsed as JSON when they can be (numbers, lists, true/false), else kept as
strings, e.g. ``skimage-train(phase_range_rad=[0,2])`` or ``folder(path=~/imgs;recursive=false)``.
Weights default to 1 and are normalised.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms import get_source, list_sources
from chromaqpi.phantoms.registry import _FACTORIES

__all__ = ["SourceSpec", "parse_sources", "format_sources", "resolve_sources", "instantiate",
           "HELD_OUT_SOURCES", "VALIDATION_SOURCES", "check_training_sources"]

#: Sources reserved for evaluation sets: training builds refuse them unless told otherwise.
HELD_OUT_SOURCES = ("skimage-test",)
#: Sources reserved for validation sets: any build may use them, training refuses them.
VALIDATION_SOURCES = ("pictures-val",)


def check_training_sources(sources, where: str) -> None:
    """Refuse training data drawn from evaluation or validation sources.

    ``sources`` is a list of :class:`SourceSpec` or of their dicts (a manifest's
    ``config["sources"]``); ``where`` names the data in the message.
    """
    names = {s.name if isinstance(s, SourceSpec) else str(s.get("name")) for s in sources}
    reserved = sorted(names & set(HELD_OUT_SOURCES + VALIDATION_SOURCES))
    if reserved:
        raise ConfigError(f"{where} is drawn from {', '.join(reserved)}, kept for validation and evaluation; "
                          f"never train on it")


@dataclass(frozen=True)
class SourceSpec:
    """One phase source of a dataset: registry name, factory parameters, mixing weight."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict) -> "SourceSpec":
        unknown = set(data) - {"name", "weight", "params"}
        if unknown or "name" not in data:
            raise ConfigError(f"a source spec needs 'name' (and optional 'weight', 'params'), got {data!r}")
        return cls(str(data["name"]), float(data.get("weight", 1.0)), dict(data.get("params", {})))


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_item(item: str) -> SourceSpec:
    item = item.strip()
    if "(" in item:
        name, _, rest = item.partition("(")
        inner, close, tail = rest.rpartition(")")
        if not close:
            raise ConfigError(f"source {item!r}: missing ')'")
    else:
        name, inner, tail = item.partition(":")[0], "", item[len(item.partition(":")[0]):]
    params: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in _split_top(inner, ";"))):
        key, eq, value = pair.partition("=")
        if not eq:
            raise ConfigError(f"source {item!r}: parameter {pair!r} is not KEY=VALUE")
        params[key.strip()] = _value(value.strip())
    return SourceSpec(_check_name(name, item), _weight(tail, item), params)


def _check_name(name: str, item: str) -> str:
    if not name.strip():
        raise ConfigError(f"empty source name in {item!r}")
    return name.strip()


def _weight(tail: str, item: str) -> float:
    if not tail:
        return 1.0
    try:
        weight = float(tail[1:]) if tail.startswith(":") else float("nan")
    except ValueError:
        weight = float("nan")
    if not weight > 0:
        raise ConfigError(f"source {item!r}: expected ':WEIGHT' with a weight > 0 after the name")
    return weight


def parse_sources(text: str) -> list[SourceSpec]:
    """Parse a ``--source`` string into specs (see module docstring)."""
    if not text or not text.strip():
        raise ConfigError(f"no phase source given; valid names: {', '.join(list_sources())}")
    return [_parse_item(item) for item in _split_top(text, ",")]


def format_sources(specs: list[SourceSpec]) -> str:
    """Inverse of :func:`parse_sources` (for messages and previews)."""
    out = []
    for s in specs:
        params = ";".join(f"{k}={json.dumps(v)}" for k, v in s.params.items())
        out.append(f"{s.name}" + (f"({params})" if params else "") + (f":{s.weight:g}" if s.weight != 1 else ""))
    return ",".join(out)


def resolve_sources(spec, *, wavelength_um: float | None = None, allow_heldout: bool = False) -> list[SourceSpec]:
    """Normalise any source description to a validated list of :class:`SourceSpec`.

    Parameters
    ----------
    spec : str, SourceSpec, dict, or a list of these / of ``(name, weight)`` pairs.
    wavelength_um : reference wavelength (µm) given to sources that accept
        ``wavelength_um`` and were not given one, so that an image source's phase range
        (e.g. [0, 3.5] rad) holds at the microscope's reference wavelength.
    allow_heldout : permit sources reserved for evaluation (``skimage-test``).

    Raises
    ------
    ConfigError
        Unknown names, bad parameters (each source is built once here, so a typo fails
        before any worker starts), or a held-out source without ``allow_heldout``.
    """
    items = parse_sources(spec) if isinstance(spec, str) else list(spec if isinstance(spec, (list, tuple)) else [spec])
    specs = [_coerce(item) for item in items]
    out = []
    for s in specs:
        if s.name in HELD_OUT_SOURCES and not allow_heldout:
            raise ConfigError(f"source {s.name!r} holds the evaluation images and is never used for training; "
                              f"use skimage-train")
        params = dict(s.params)
        if wavelength_um is not None and "wavelength_um" not in params and _accepts(s.name, "wavelength_um"):
            params["wavelength_um"] = float(wavelength_um)
        checked = SourceSpec(s.name, s.weight, params)
        instantiate(checked)
        out.append(checked)
    return out


def _coerce(item) -> SourceSpec:
    if isinstance(item, SourceSpec):
        return item
    if isinstance(item, dict):
        return SourceSpec.from_dict(item)
    if isinstance(item, str):
        parsed = parse_sources(item)
        if len(parsed) != 1:
            raise ConfigError(f"expected one source, got {item!r}")
        return parsed[0]
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return SourceSpec(str(item[0]), float(item[1]))
    raise ConfigError(f"cannot read a phase source from {item!r}")


def _accepts(name: str, parameter: str) -> bool:
    factory = _FACTORIES.get(name)
    return factory is not None and parameter in inspect.signature(factory).parameters


_INSTANCES: dict[str, Any] = {}


def instantiate(spec: SourceSpec):
    """The source object for a spec, built once per process (folder listings are cached too)."""
    key = json.dumps(spec.to_dict() | {"weight": 0}, sort_keys=True)
    if key not in _INSTANCES:
        _INSTANCES[key] = get_source(spec.name, **spec.params)
    return _INSTANCES[key]
