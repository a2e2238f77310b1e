"""Random parameter specs shared by the phantoms: a number, a range, or a set of choices.

A spec is what a config file holds for one physical parameter:

- a number: that fixed value;
- a pair ``(lo, hi)``: drawn uniformly in [lo, hi] (inclusive integers for counts);
- ``{"choice": [v1, v2, ...]}``: one of the listed values, equally likely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from chromaqpi.errors import ConfigError


def draw(rng: np.random.Generator, spec, name: str) -> float:
    """Draw one float from a spec (see module docstring); ConfigError if malformed."""
    if isinstance(spec, Mapping):
        return float(_choice(rng, spec, name))
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        lo, hi = _pair(spec, name)
        return float(rng.uniform(lo, hi)) if hi > lo else lo
    return _number(spec, name)


def draw_int(rng: np.random.Generator, spec, name: str) -> int:
    """Draw one integer from a spec; a pair ``(lo, hi)`` is inclusive at both ends."""
    if isinstance(spec, Mapping):
        return int(_choice(rng, spec, name))
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        lo, hi = _pair(spec, name)
        return int(rng.integers(int(lo), int(hi) + 1))
    return int(_number(spec, name))


def merge(defaults: Mapping, overrides: Mapping | None, where: str) -> dict:
    """Defaults updated by overrides; an unknown key raises ConfigError naming the valid ones."""
    out = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ConfigError(f"unknown parameter {key!r} for {where}; valid: {', '.join(sorted(defaults))}")
        out[key] = value
    return out


def _pair(spec, name: str) -> tuple[float, float]:
    if len(spec) != 2:
        raise ConfigError(f"{name}: a range must be (lo, hi), got {spec!r}")
    lo, hi = _number(spec[0], name), _number(spec[1], name)
    if hi < lo:
        raise ConfigError(f"{name}: range ({lo}, {hi}) has hi < lo")
    return lo, hi


def _choice(rng: np.random.Generator, spec: Mapping, name: str):
    values = spec.get("choice") if set(spec) == {"choice"} else None
    if not values:
        raise ConfigError(f"{name}: expected {{'choice': [values...]}}, got {spec!r}")
    return values[int(rng.integers(len(values)))]


def _number(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, a (lo, hi) range or {{'choice': [...]}}, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name}: must be finite, got {value!r}")
    return out
