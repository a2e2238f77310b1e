"""The :class:`PhaseSample` container shared by every phase source, and unit conversions.

Every source returns the optical path difference (OPD) in µm rather than a phase, because
OPD does not depend on wavelength (dispersion aside): the simulator converts it to phase
per wavelength with ``phi = 2*pi*OPD/lambda`` (PHYSICS.md §0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from chromaqpi.errors import ConfigError, InputError

__all__ = ["PhaseSample", "phase_rad", "opd_from_phase", "check_shape", "check_pixel_size"]


@dataclass(frozen=True)
class PhaseSample:
    """One phase object on a pixel grid.

    Parameters
    ----------
    opd_um : numpy.ndarray, shape (H, W), float32
        Optical path difference relative to the medium, ``(n_obj - n_medium) * thickness``,
        in µm. Positive means optically denser than the medium (a phase delay).
    mask : numpy.ndarray, shape (H, W), int32
        Object labels: 0 is background, 1..N label objects in drawing order. Where objects
        overlap the later one's label wins. Sources without objects (image folders,
        textures) return all zeros and set ``meta["has_mask"] = False``.
    pixel_size_um : float
        Pixel pitch in the sample plane, µm.
    meta : dict
        JSON-serialisable description of how the sample was made (source name, per-object
        parameters, analytic OPD integrals in µm³, phase range, wavelength, ...).
    """

    opd_um: np.ndarray
    mask: np.ndarray
    pixel_size_um: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        opd = np.asarray(self.opd_um, dtype=np.float32)
        mask = np.asarray(self.mask, dtype=np.int32)
        if opd.ndim != 2 or mask.shape != opd.shape:
            raise InputError(f"PhaseSample needs 2-D opd_um and a mask of the same shape, got {opd.shape} and {mask.shape}")
        # frozen dataclass: normalise dtypes once, here, so consumers can rely on them
        object.__setattr__(self, "opd_um", opd)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "pixel_size_um", check_pixel_size(self.pixel_size_um))

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (H, W) in pixels."""
        return self.opd_um.shape


def phase_rad(sample: PhaseSample, wavelength_um: float) -> np.ndarray:
    """Phase of a sample at one vacuum wavelength.

    Parameters
    ----------
    sample : PhaseSample
        The phase object (its ``opd_um`` is used).
    wavelength_um : float
        Vacuum wavelength in µm.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32
        Phase in radians, ``2*pi*OPD/lambda`` (dispersion of the object is ignored).
    """
    lam = _check_wavelength(wavelength_um)
    return (sample.opd_um * np.float32(2.0 * math.pi / lam)).astype(np.float32)


def opd_from_phase(phase: np.ndarray, wavelength_um: float) -> np.ndarray:
    """OPD in µm of a phase map given in radians at ``wavelength_um``: ``phase*lambda/(2*pi)``.

    Returns a float32 array of the same shape.
    """
    lam = _check_wavelength(wavelength_um)
    return (np.asarray(phase, dtype=np.float64) * (lam / (2.0 * math.pi))).astype(np.float32)


def check_shape(shape) -> tuple[int, int]:
    """Validate a grid shape ``(H, W)`` of positive integers; raise ConfigError otherwise."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"shape must be two integers (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"shape must be positive, got {shape!r}")
    return h, w


def check_pixel_size(pixel_size_um) -> float:
    """Validate a positive, finite pixel size in µm; raise ConfigError otherwise."""
    dx = float(pixel_size_um)
    if not (math.isfinite(dx) and dx > 0):
        raise ConfigError(f"pixel_size_um must be a positive number of µm, got {pixel_size_um!r}")
    return dx


def _check_wavelength(wavelength_um) -> float:
    lam = float(wavelength_um)
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"wavelength_um must be a positive number of µm, got {wavelength_um!r}")
    return lam
