"""Analytic thickness profiles and volumes of simple phase objects (all lengths in µm).

These closed forms are the ground truth the rasterised phantoms are tested against: a
thin object of uniform index has ``OPD(x, y) = dn * h(x, y)`` and an integrated OPD of
``dn * V`` (µm³), which divided by the refraction increment gives dry mass.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EVANS_FUNG_RADIUS_UM",
    "EVANS_FUNG_COEFFS_UM",
    "chord_um",
    "sphere_opd_um",
    "sphere_volume_um3",
    "ellipsoid_thickness_um",
    "ellipsoid_volume_um3",
    "discocyte_thickness_um",
    "discocyte_volume_um3",
    "spherocylinder_volume_um3",
    "polygon_area_um2",
]

#: Radius (µm) of the average human discocyte in Evans & Fung (1972).
EVANS_FUNG_RADIUS_UM = 3.91
#: Coefficients C0, C1, C2 (µm) of the Evans & Fung thickness polynomial.
EVANS_FUNG_COEFFS_UM = (0.81, 7.83, -4.39)


def chord_um(d_um, radius_um):
    """Length (µm) of the chord through a sphere at distance ``d_um`` from its centre.

    ``2*sqrt(R^2 - d^2)`` inside, 0 outside. It is the thickness profile of a sphere
    (d = lateral distance to the centre) and of a spherocylinder (d = distance to its axis).
    """
    d = np.asarray(d_um, dtype=np.float64)
    return 2.0 * np.sqrt(np.clip(radius_um * radius_um - d * d, 0.0, None))


def sphere_opd_um(r_um, radius_um: float, dn: float):
    """Exact OPD (µm) of a sphere of radius ``radius_um`` and index contrast ``dn``.

    Notes
    -----
    ``OPD(r) = 2*dn*sqrt(R^2 - r^2)`` for ``r < R`` and 0 outside, with r the lateral
    distance (µm) from the sphere centre.
    """
    return dn * chord_um(r_um, radius_um)


def sphere_volume_um3(radius_um: float) -> float:
    """Volume of a sphere, ``4/3*pi*R^3`` (µm³)."""
    return 4.0 / 3.0 * math.pi * radius_um**3


def ellipsoid_thickness_um(u_um, v_um, a_um: float, b_um: float, c_um: float):
    """Thickness (µm) of an ellipsoid with semi-axes a, b (in plane) and c (along z).

    ``h = 2c*sqrt(1 - (u/a)^2 - (v/b)^2)`` inside the footprint, 0 outside; (u, v) are
    coordinates along the a and b axes (µm).
    """
    u = np.asarray(u_um, dtype=np.float64) / a_um
    v = np.asarray(v_um, dtype=np.float64) / b_um
    return 2.0 * c_um * np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None))


def ellipsoid_volume_um3(a_um: float, b_um: float, c_um: float) -> float:
    """Volume of an ellipsoid, ``4/3*pi*a*b*c`` (µm³)."""
    return 4.0 / 3.0 * math.pi * a_um * b_um * c_um


def discocyte_thickness_um(r_um, diameter_um: float = 2 * EVANS_FUNG_RADIUS_UM, thickness_scale: float = 1.0):
    """Thickness (µm) of a biconcave red blood cell (Evans & Fung 1972).

    Parameters
    ----------
    r_um : array_like
        Lateral distance from the cell centre, µm.
    diameter_um : float
        Cell diameter 2R, µm. The shape is scaled isotropically from the reference
        diameter 7.82 µm, so the thickness coefficients scale with it.
    thickness_scale : float
        Extra factor on the thickness only (dimensionless), for flatter or fuller cells.

    Notes
    -----
    ``h(r) = sqrt(1 - x^2) * (C0 + C1*x^2 + C2*x^4)``, ``x = r/R``, with C0 = 0.81,
    C1 = 7.83, C2 = -4.39 µm at R = 3.91 µm: about 0.8 µm at the centre and 2.6 µm at the
    rim, zero for ``r >= R``.

    References
    ----------
    E. Evans and Y.-C. Fung, "Improved measurements of the erythrocyte geometry",
    Microvascular Research 4(4):335-347, 1972.
    """
    radius = 0.5 * diameter_um
    scale = thickness_scale * radius / EVANS_FUNG_RADIUS_UM
    c0, c1, c2 = (scale * c for c in EVANS_FUNG_COEFFS_UM)
    x2 = np.clip((np.asarray(r_um, dtype=np.float64) / radius) ** 2, 0.0, 1.0)
    return np.sqrt(1.0 - x2) * (c0 + c1 * x2 + c2 * x2 * x2)


def discocyte_volume_um3(diameter_um: float = 2 * EVANS_FUNG_RADIUS_UM, thickness_scale: float = 1.0) -> float:
    """Volume (µm³) of the Evans-Fung discocyte of :func:`discocyte_thickness_um`.

    Notes
    -----
    With ``t = x^2``, ``V = pi*R^2 * int_0^1 sqrt(1-t)(C0 + C1 t + C2 t^2) dt
    = pi*R^2 * (2/3 C0 + 4/15 C1 + 16/105 C2)``; about 94 µm³ at the reference size.
    """
    radius = 0.5 * diameter_um
    scale = thickness_scale * radius / EVANS_FUNG_RADIUS_UM
    c0, c1, c2 = (scale * c for c in EVANS_FUNG_COEFFS_UM)
    return math.pi * radius**2 * (2.0 / 3.0 * c0 + 4.0 / 15.0 * c1 + 16.0 / 105.0 * c2)


def spherocylinder_volume_um3(length_um: float, radius_um: float) -> float:
    """Volume (µm³) of a capsule of total length ``length_um`` (caps included) and radius ``radius_um``."""
    body = max(length_um - 2.0 * radius_um, 0.0)
    return math.pi * radius_um**2 * body + sphere_volume_um3(radius_um)


def polygon_area_um2(vertices) -> float:
    """Area (µm²) of a simple polygon given as an (N, 2) array of (y, x) vertices (shoelace formula)."""
    v = np.asarray(vertices, dtype=np.float64)
    y, x = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
