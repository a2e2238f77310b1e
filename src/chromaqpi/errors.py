"""Exceptions for user-facing problems (bad input, bad config, bad weights).

The CLI prints these as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


import math
import numbers


def is_number(value) -> bool:
    """A finite real number (int, float or numpy scalar), not a bool, a string, NaN or Inf: what a numeric
    option or config value must be (NaN passes every ``<`` check and Inf silently zeroes a solver)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class ChromaQPIError(Exception):
    """A problem with the user's input, configuration or files (not a bug)."""


class ConfigError(ChromaQPIError, ValueError):
    """An invalid microscope, training or dataset configuration."""


class InputError(ChromaQPIError, ValueError):
    """An image or array the user handed us cannot be used (shape, dtype, NaN, ...)."""


class WeightsError(ChromaQPIError):
    """Missing, corrupt or mismatched model weights."""


class MethodError(ChromaQPIError):
    """A method gave no usable result (NaN/Inf) from valid input: reported, never returned."""
