"""Procedural phantoms of cells and particles, and a scene composer.

Every object is an analytic thickness model ``h(x, y)`` (µm) times an index contrast
``dn = n_obj - n_medium``, giving OPD in µm (PHYSICS.md §0). Objects are rasterised by
box-averaging a supersampled grid (:mod:`chromaqpi.phantoms._raster`), so their integrated
OPD equals the analytic ``dn * volume`` (µm³) to well under 1 % for objects >= 10 px
across; where a closed form exists it is stored in ``meta["objects"][i]["opd_integral_um3"]``
as dry-mass ground truth.

Kinds (defaults in :data:`KIND_DEFAULTS`; every parameter is a number, a ``(lo, hi)``
range drawn uniformly, or ``{"choice": [...]}``):

========== ==================================================================
discocyte  normal red blood cell, Evans-Fung biconcave profile
echinocyte crenated red cell: dome with 10-30 spicules on the rim
spherocyte small, thick red cell: oblate ellipsoid
wbc        white blood cell: ellipsoid, 1-4 nuclear lobes, granules
epithelial flat irregular squamous cell with a bulging nucleus
rod        rod bacteria (spherocylinders), single or in short chains
coccus     cocci: single, chains (strepto-) or clusters (staphylo-)
yeast      budding yeast: prolate ellipsoid with 0-2 buds
crystal    urine crystal: random convex polygon of uniform thickness
cast       urinary cast: long bent tube, optional granules
bead       polystyrene / silica / PMMA calibration sphere (exact OPD)
blob       random smooth star-shaped dome with a cosine texture
========== ==================================================================

Refractive indices are typical literature values at ~0.55 µm (haemoglobin-rich red
cells 1.39-1.42, cytoplasm 1.35-1.38, nuclei 1.37-1.39, bacteria 1.38-1.40, urine
crystals 1.45-1.60, hyaline casts 1.34-1.36, polystyrene 1.59, PMMA 1.49, silica 1.46);
they are meant as plausible ranges for training data, not as measurements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms import profiles as pf
from chromaqpi.phantoms._params import draw, draw_int, merge
from chromaqpi.phantoms._raster import (
    distance_to_arc,
    distance_to_polyline,
    inside_convex_polygon,
    rasterise,
    rotate,
    star_radius,
    supersample_factor,
)
from chromaqpi.phantoms.sample import PhaseSample, check_pixel_size, check_shape
from chromaqpi.phantoms.textures import drift_field_rad, random_drift_coeffs

__all__ = [
    "KIND_DEFAULTS",
    "CLINICAL_MIX",
    "PhantomObject",
    "list_kinds",
    "build_object",
    "render_object",
    "make_scene",
    "SceneSource",
]

#: Default medium index: urine / plasma / PBS lie between 1.334 and 1.35.
N_MEDIUM = 1.335

#: Default parameter specs per kind (lengths in µm, indices absolute, counts inclusive).
KIND_DEFAULTS: dict[str, dict] = {
    "discocyte": {"diameter_um": (7.0, 8.5), "thickness_scale": (0.85, 1.15), "n_obj": (1.39, 1.42)},
    "echinocyte": {
        "diameter_um": (6.5, 8.0), "thickness_um": (2.0, 3.0), "n_spicules": (10, 30),
        "spicule_height": (0.08, 0.2), "n_obj": (1.39, 1.42),
    },
    "spherocyte": {"diameter_um": (5.5, 7.0), "thickness_um": (2.5, 4.0), "n_obj": (1.40, 1.43)},
    "wbc": {
        "diameter_um": (7.0, 15.0), "aspect": (0.8, 1.0), "thickness_ratio": (0.5, 0.9),
        "n_cytoplasm": (1.355, 1.375), "nucleus_scale": (0.45, 0.8), "n_lobes": (1, 4),
        "n_nucleus": (1.37, 1.39), "n_granules": (0, 40), "granule_radius_um": (0.15, 0.4),
        "n_granule": (1.40, 1.45),
    },
    "epithelial": {
        "diameter_um": (15.0, 50.0), "aspect": (0.6, 1.0), "thickness_um": (1.0, 3.0),
        "irregularity": (0.0, 0.15), "n_cytoplasm": (1.35, 1.37), "nucleus_diameter_um": (4.0, 9.0),
        "nucleus_thickness_um": (2.0, 4.0), "n_nucleus": (1.37, 1.39),
    },
    "rod": {"length_um": (1.5, 6.0), "diameter_um": (0.5, 1.2), "n_cells": (1, 4), "n_obj": (1.38, 1.40)},
    "coccus": {"diameter_um": (0.6, 1.2), "n_cells": (1, 12), "n_obj": (1.38, 1.40)},
    "yeast": {
        "length_um": (3.0, 7.0), "aspect": (0.65, 0.95), "n_buds": (0, 2), "bud_scale": (0.3, 0.8),
        "n_obj": (1.38, 1.41),
    },
    "crystal": {
        "size_um": (4.0, 30.0), "aspect": (0.3, 1.0), "n_vertices": (4, 8), "thickness_um": (0.5, 3.0),
        "n_obj": (1.45, 1.60),
    },
    "cast": {
        "length_um": (20.0, 120.0), "width_um": (8.0, 20.0), "thickness_ratio": (0.5, 1.0),
        "bend_deg": (0.0, 60.0), "n_obj": (1.34, 1.36), "n_granules": (0, 20),
        "granule_radius_um": (0.3, 1.0), "n_granule": (1.38, 1.42),
    },
    "bead": {"diameter_um": (1.0, 10.0), "n_obj": {"choice": [1.59, 1.49, 1.46]}},
    "blob": {
        "size_um": (2.0, 20.0), "aspect": (0.5, 1.0), "irregularity": (0.0, 0.3), "thickness_um": (0.5, 4.0),
        "profile_exponent": (0.5, 2.0), "texture": (0.0, 0.5), "n_obj": (1.35, 1.42),
    },
}

#: Kind weights of a mixed clinical scene (urine sediment plus blood).
CLINICAL_MIX = {
    "discocyte": 0.30, "echinocyte": 0.05, "spherocyte": 0.05, "wbc": 0.10, "epithelial": 0.06,
    "rod": 0.12, "coccus": 0.08, "yeast": 0.08, "crystal": 0.08, "cast": 0.03, "blob": 0.05,
}


@dataclass(frozen=True)
class PhantomObject:
    """One object ready to rasterise, in its own frame (centre at the origin).

    Attributes
    ----------
    kind : str
        Kind name (see :func:`list_kinds`).
    opd_fn : callable or None
        ``opd_fn(y_um, x_um) -> OPD_um`` for offsets from the centre (broadcastable
        arrays); None for an object made only of parts.
    extent_um : float
        Radius (µm) of a circle around the centre containing the object.
    feature_um : float
        Smallest size (µm) that must be resolved; sets the automatic supersampling.
    params : dict
        The drawn physical parameters (JSON-serialisable).
    opd_integral_um3 : float or None
        Analytic integral of OPD over the plane (µm³) where a closed form exists.
    step_edges : bool
        True for objects with a thickness discontinuity (uniform-thickness polygons).
    parts : tuple of (dy_um, dx_um, PhantomObject)
        Sub-objects at offsets from the centre whose OPDs add to the body's: disjoint
        cells of a chain, or granules wholly inside the body (with a contrast relative
        to the body material). Each is rasterised on its own small grid, which is cheaper
        and more accurate than sampling it at the resolution of the whole object.
    """

    kind: str
    opd_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    extent_um: float
    feature_um: float
    params: dict
    opd_integral_um3: float | None = None
    step_edges: bool = False
    parts: tuple = ()


# --------------------------------------------------------------------------- blood cells


def _discocyte(rng, p, n_medium) -> PhantomObject:
    d = draw(rng, p["diameter_um"], "discocyte.diameter_um")
    ts = draw(rng, p["thickness_scale"], "discocyte.thickness_scale")
    dn = draw(rng, p["n_obj"], "discocyte.n_obj") - n_medium

    def opd(y, x):
        return dn * pf.discocyte_thickness_um(np.hypot(y, x), d, ts)

    params = {"diameter_um": d, "thickness_scale": ts, "dn": dn}
    return PhantomObject("discocyte", opd, d / 2, d, params, dn * pf.discocyte_volume_um3(d, ts))


def _echinocyte(rng, p, n_medium) -> PhantomObject:
    d = draw(rng, p["diameter_um"], "echinocyte.diameter_um")
    h = draw(rng, p["thickness_um"], "echinocyte.thickness_um")
    k = draw_int(rng, p["n_spicules"], "echinocyte.n_spicules")
    a = draw(rng, p["spicule_height"], "echinocyte.spicule_height")
    dn = draw(rng, p["n_obj"], "echinocyte.n_obj") - n_medium
    phase = rng.uniform(0, 2 * np.pi)

    def radius(theta):
        # narrow spikes: a clipped cosine raised to a high power
        return 0.5 * d * (1.0 + a * np.clip(np.cos(k * theta + phase), 0.0, None) ** 8)

    opd = _polar_dome(radius, lambda rho2: h * np.sqrt(1.0 - rho2), dn)
    # ∬ h dA = ∫ R(θ)² dθ · ∫_0^1 h·sqrt(1-ρ²) ρ dρ = H/3 · ∫ R² dθ
    integral = dn * h / 3.0 * _integrate_r2(radius)
    params = {"diameter_um": d, "thickness_um": h, "n_spicules": k, "spicule_height": a, "dn": dn}
    return PhantomObject("echinocyte", opd, 0.5 * d * (1 + a), d / 4, params, integral)


def _spherocyte(rng, p, n_medium) -> PhantomObject:
    d = draw(rng, p["diameter_um"], "spherocyte.diameter_um")
    t = draw(rng, p["thickness_um"], "spherocyte.thickness_um")
    dn = draw(rng, p["n_obj"], "spherocyte.n_obj") - n_medium

    def opd(y, x):
        return dn * pf.ellipsoid_thickness_um(x, y, d / 2, d / 2, t / 2)

    integral = dn * pf.ellipsoid_volume_um3(d / 2, d / 2, t / 2)
    return PhantomObject("spherocyte", opd, d / 2, d, {"diameter_um": d, "thickness_um": t, "dn": dn}, integral)


def _wbc(rng, p, n_medium) -> PhantomObject:
    d = draw(rng, p["diameter_um"], "wbc.diameter_um")
    a = d / 2
    b = a * draw(rng, p["aspect"], "wbc.aspect")
    c = a * draw(rng, p["thickness_ratio"], "wbc.thickness_ratio")
    dn_c = draw(rng, p["n_cytoplasm"], "wbc.n_cytoplasm") - n_medium
    dn_n = draw(rng, p["n_nucleus"], "wbc.n_nucleus") - n_medium
    lobes = _nucleus_lobes(rng, p)
    grains = _granules(rng, p, (a, b, c), lobes, n_medium, "wbc")
    angle = rng.uniform(0, np.pi)

    def opd(y, x):
        u, v = rotate(y, x, angle)
        hb = pf.ellipsoid_thickness_um(u, v, a, b, c)
        # lobes are scaled copies of the body placed inside it, so min() only guards rounding
        hn = np.max([pf.ellipsoid_thickness_um(u - tu * a, v - tv * b, s * a, s * b, s * c) for tu, tv, s in lobes], axis=0)
        return dn_c * hb + (dn_n - dn_c) * np.minimum(hn, hb)

    params = {"diameter_um": d, "semi_axes_um": [a, b, c], "dn_cytoplasm": dn_c, "dn_nucleus": dn_n,
              "n_lobes": len(lobes), "n_granules": len(grains)}
    parts = tuple(_sphere_part(*_unrotate(gu, gv, angle), r, dn_g - dn_c) for gu, gv, r, dn_g in grains)
    integral = None
    if _disjoint_lobes(lobes):
        lobe_volume = sum(pf.ellipsoid_volume_um3(s * a, s * b, s * c) for _, _, s in lobes)
        integral = dn_c * pf.ellipsoid_volume_um3(a, b, c) + (dn_n - dn_c) * lobe_volume + _parts_integral(parts)
    return PhantomObject("wbc", opd, a, 2 * b, params, integral, parts=parts)


def _disjoint_lobes(lobes) -> bool:
    """Equal-scale copies ``s*E + t`` of one ellipsoid are disjoint iff ``|t_i - t_j| >= 2s``."""
    return all(math.hypot(l1[0] - l2[0], l1[1] - l2[1]) >= l1[2] + l2[2] for i, l1 in enumerate(lobes) for l2 in lobes[i + 1:])


def _parts_integral(parts) -> float:
    """Integrated OPD (µm³) of parts: they add independently."""
    return sum(part.opd_integral_um3 for _, _, part in parts)


def _sphere_part(dy: float, dx: float, radius: float, dn: float):
    """A sphere of contrast ``dn`` as a part at offset (dy, dx) µm."""

    def opd(y, x):
        return pf.sphere_opd_um(np.hypot(y, x), radius, dn)

    sphere = PhantomObject("sphere", opd, radius, 2 * radius, {}, dn * pf.sphere_volume_um3(radius))
    return (float(dy), float(dx), sphere)


def _capsule_part(segment: np.ndarray, radius: float, dn: float):
    """A spherocylinder with axis ``segment`` (2 x (y, x), µm) as a part at its midpoint."""
    mid = segment.mean(axis=0)
    axis = segment - mid

    def opd(y, x):
        return dn * pf.chord_um(distance_to_polyline(y, x, axis), radius)

    length = float(np.hypot(*(segment[1] - segment[0]))) + 2 * radius
    capsule = PhantomObject("capsule", opd, length / 2, 2 * radius, {}, dn * pf.spherocylinder_volume_um3(length, radius))
    return (float(mid[0]), float(mid[1]), capsule)


def _nucleus_lobes(rng, p) -> list[tuple[float, float, float]]:
    """Nuclear lobes as (tu, tv, s): centre in body-normalised units and scale vs the body.

    A lobe ``s*E + t`` lies inside the body ellipsoid E when ``|t| <= 1 - s`` in E's norm,
    so lobes never poke out of the cell.
    """
    n = max(1, draw_int(rng, p["n_lobes"], "wbc.n_lobes"))
    scale = draw(rng, p["nucleus_scale"], "wbc.nucleus_scale")
    s = scale / math.sqrt(n)  # several lobes share roughly one nucleus' area
    start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5) * np.pi
    lobes = []
    for i in range(n):
        rho = (1.0 - s) * (rng.uniform(0.0, 0.5) if n == 1 else rng.uniform(0.4, 0.9))
        phi = start + span * (i / max(n - 1, 1))
        lobes.append((rho * math.cos(phi), rho * math.sin(phi), s))
    return lobes


def _granules(rng, p, axes, lobes, n_medium, where) -> list[tuple[float, float, float, float]]:
    """Granules (u, v, radius_um, dn) placed inside the body and outside the nucleus lobes.

    A ball of radius r centred at body-normalised distance <= 1 - r/min(a, b, c) lies
    inside the ellipsoid, so granules never stick out of the cell.
    """
    a, b, c = axes
    out = []
    for _ in range(draw_int(rng, p["n_granules"], f"{where}.n_granules")):
        r = draw(rng, p["granule_radius_um"], f"{where}.granule_radius_um")
        dn = draw(rng, p["n_granule"], f"{where}.n_granule") - n_medium
        limit = 1.0 - r / min(a, b, c)
        if limit <= 0:
            continue
        for _try in range(5):
            rho, phi = limit * math.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            tu, tv = rho * math.cos(phi), rho * math.sin(phi)
            if not any((tu - lu) ** 2 + (tv - lv) ** 2 < s * s for lu, lv, s in lobes):
                out.append((tu * a, tv * b, r, dn))
                break
    return out


def _unrotate(u: float, v: float, angle: float) -> tuple[float, float]:
    """(y, x) of a point given in the frame of :func:`~chromaqpi.phantoms._raster.rotate`."""
    c, s = math.cos(angle), math.sin(angle)
    return u * s + v * c, u * c - v * s


# --------------------------------------------------------------------------- other cells


def _epithelial(rng, p, n_medium) -> PhantomObject:
    d = draw(rng, p["diameter_um"], "epithelial.diameter_um")
    aspect = draw(rng, p["aspect"], "epithelial.aspect")
    h = draw(rng, p["thickness_um"], "epithelial.thickness_um")
    irr = draw(rng, p["irregularity"], "epithelial.irregularity")
    dn_c = draw(rng, p["n_cytoplasm"], "epithelial.n_cytoplasm") - n_medium
    dn_n = draw(rng, p["n_nucleus"], "epithelial.n_nucleus") - n_medium
    nd = draw(rng, p["nucleus_diameter_um"], "epithelial.nucleus_diameter_um")
    nt = draw(rng, p["nucleus_thickness_um"], "epithelial.nucleus_thickness_um")
    harmonics = _harmonics(rng, irr, 2, 5)
    # keep the nucleus footprint inside the body's inscribed ellipse
    inner = 0.5 * d * aspect * (1.0 - irr)
    an = min(nd / 2, 0.6 * inner)
    bn = an * rng.uniform(0.7, 1.0)
    off = (inner - an) * 0.5 * math.sqrt(rng.uniform())
    phi, angle = rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    nu, nv = off * math.cos(phi), off * math.sin(phi)
    body = _polar_dome(lambda t: star_radius(t, d / 2, harmonics), lambda rho2: h * np.sqrt(1.0 - rho2 * rho2), dn_c, aspect)

    def opd(y, x):
        u, v = rotate(y, x, angle)
        # the nucleus bulges out of the flat sheet, so its OPD adds to the body's
        return body(v, u) + dn_n * pf.ellipsoid_thickness_um(u - nu, v - nv, an, bn, nt / 2)

    r2 = _integrate_r2(lambda t: star_radius(t, d / 2, harmonics))
    # ∫_0^1 sqrt(1-ρ⁴) ρ dρ = π/8; the aspect stretch scales the area
    integral = dn_c * h * aspect * math.pi / 8.0 * r2 + dn_n * pf.ellipsoid_volume_um3(an, bn, nt / 2)
    params = {"diameter_um": d, "aspect": aspect, "thickness_um": h, "irregularity": irr, "dn_cytoplasm": dn_c,
              "dn_nucleus": dn_n, "nucleus_semi_axes_um": [an, bn, nt / 2]}
    return PhantomObject("epithelial", opd, 0.5 * d * (1 + irr), min(d * aspect, 2 * bn), params, integral)


def _yeast(rng, p, n_medium) -> PhantomObject:
    a = 0.5 * draw(rng, p["length_um"], "yeast.length_um")
    b = a * draw(rng, p["aspect"], "yeast.aspect")
    dn = draw(rng, p["n_obj"], "yeast.n_obj") - n_medium
    n_buds = draw_int(rng, p["n_buds"], "yeast.n_buds")
    angle = rng.uniform(0, np.pi)
    # buds sit at the poles, slightly sunk into the mother (the bud neck)
    buds = []
    for i in range(n_buds):
        s = draw(rng, p["bud_scale"], "yeast.bud_scale")
        tilt = rng.normal(0.0, 0.35)
        dist = a + 0.85 * s * a
        sign = 1.0 if i % 2 == 0 else -1.0
        buds.append((sign * dist * math.cos(tilt), sign * dist * math.sin(tilt), s, tilt))

    def opd(y, x):
        u, v = rotate(y, x, angle)
        h = pf.ellipsoid_thickness_um(u, v, a, b, b)  # prolate: as thick as it is wide
        for bu, bv, s, tilt in buds:
            ub, vb = rotate(v - bv, u - bu, tilt)
            h = np.maximum(h, pf.ellipsoid_thickness_um(ub, vb, s * a, s * b, s * b))  # union
        return dn * h

    extent = max([a] + [math.hypot(bu, bv) + s * a for bu, bv, s, _ in buds])
    params = {"semi_axes_um": [a, b, b], "n_buds": n_buds, "dn": dn}
    return PhantomObject("yeast", opd, extent, 2 * b, params)


# --------------------------------------------------------------------------- bacteria


def _rod(rng, p, n_medium) -> PhantomObject:
    r = 0.5 * draw(rng, p["diameter_um"], "rod.diameter_um")
    length = max(draw(rng, p["length_um"], "rod.length_um"), 2 * r)
    dn = draw(rng, p["n_obj"], "rod.n_obj") - n_medium
    n = max(1, draw_int(rng, p["n_cells"], "rod.n_cells"))
    segments = _rod_chain(rng, n, length - 2 * r, r)
    # bends < 90° and gaps >= 2r keep the capsules disjoint, so their OPDs simply add
    parts = tuple(_capsule_part(seg, r, dn) for seg in segments)
    extent = max(math.hypot(*pt) for seg in segments for pt in seg) + r
    params = {"length_um": length, "diameter_um": 2 * r, "n_cells": n, "dn": dn}
    return PhantomObject("rod", None, extent, 2 * r, params, _parts_integral(parts), parts=parts)


def _rod_chain(rng, n, axis_len, r) -> list[np.ndarray]:
    """Axis segments (2 x (y, x)) of n capsules end to end, with small random bends."""
    heading = rng.uniform(0, 2 * np.pi)
    start = np.zeros(2)
    segs = []
    for _ in range(n):
        step = np.array([math.sin(heading), math.cos(heading)])
        end = start + axis_len * step
        segs.append(np.stack([start, end]))
        heading += float(np.clip(rng.normal(0.0, 0.3), -1.0, 1.0))  # |bend| < 60°
        start = end + 2 * r * rng.uniform(1.0, 1.15) * np.array([math.sin(heading), math.cos(heading)])
    centre = 0.5 * (np.min([s.min(0) for s in segs], 0) + np.max([s.max(0) for s in segs], 0))
    return [s - centre for s in segs]


def _coccus(rng, p, n_medium) -> PhantomObject:
    r = 0.5 * draw(rng, p["diameter_um"], "coccus.diameter_um")
    dn = draw(rng, p["n_obj"], "coccus.n_obj") - n_medium
    n = max(1, draw_int(rng, p["n_cells"], "coccus.n_cells"))
    arrangement = "chain" if rng.uniform() < 0.6 else "cluster"
    centres = _touching_disks(rng, n, r, chain=arrangement == "chain")
    parts = tuple(_sphere_part(cy, cx, r, dn) for cy, cx in centres)  # disjoint spheres
    extent = float(np.max(np.hypot(centres[:, 0], centres[:, 1]))) + r
    params = {"diameter_um": 2 * r, "n_cells": len(centres), "arrangement": arrangement if n > 1 else "single", "dn": dn}
    return PhantomObject("coccus", None, extent, 2 * r, params, _parts_integral(parts), parts=parts)


def _touching_disks(rng, n, r, *, chain: bool) -> np.ndarray:
    """Centres (n', 2) of non-overlapping spheres grown as a chain or a cluster (n' <= n)."""
    pts = [np.zeros(2)]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(20 * n):
        if len(pts) == n:
            break
        heading = heading + rng.normal(0.0, 0.35) if chain else rng.uniform(0, 2 * np.pi)
        anchor = pts[-1] if chain else pts[int(rng.integers(len(pts)))]
        cand = anchor + 2 * r * rng.uniform(1.0, 1.05) * np.array([math.sin(heading), math.cos(heading)])
        if all(np.hypot(*(cand - q)) >= 2 * r for q in pts):
            pts.append(cand)
    pts = np.array(pts)
    return pts - 0.5 * (pts.min(0) + pts.max(0))


# --------------------------------------------------------------------------- urine sediment


def _crystal(rng, p, n_medium) -> PhantomObject:
    radius = 0.5 * draw(rng, p["size_um"], "crystal.size_um")
    aspect = draw(rng, p["aspect"], "crystal.aspect")
    k = max(3, draw_int(rng, p["n_vertices"], "crystal.n_vertices"))
    t = draw(rng, p["thickness_um"], "crystal.thickness_um")
    dn = draw(rng, p["n_obj"], "crystal.n_obj") - n_medium
    # vertices on a circle are always convex; jittered angles avoid degenerate edges
    theta = 2 * np.pi * (np.arange(k) + rng.uniform(-0.35, 0.35, k)) / k
    y, x = aspect * radius * np.sin(theta), radius * np.cos(theta)
    angle = rng.uniform(0, np.pi)
    c, s = math.cos(angle), math.sin(angle)
    verts = np.stack([y * c + x * s, x * c - y * s], axis=1)  # rotation keeps the orientation

    def opd(yy, xx):
        return dn * t * inside_convex_polygon(yy, xx, verts)

    params = {"vertices_um": verts.tolist(), "thickness_um": t, "dn": dn}
    integral = dn * t * pf.polygon_area_um2(verts)
    return PhantomObject("crystal", opd, radius, 2 * radius * aspect, params, integral, step_edges=True)


def _cast(rng, p, n_medium) -> PhantomObject:
    r = 0.5 * draw(rng, p["width_um"], "cast.width_um")
    length = max(draw(rng, p["length_um"], "cast.length_um"), 2 * r)
    c = r * draw(rng, p["thickness_ratio"], "cast.thickness_ratio")
    bend = math.radians(draw(rng, p["bend_deg"], "cast.bend_deg")) * float(rng.choice([-1.0, 1.0]))
    # a bend radius above the tube radius keeps the tube from folding onto itself
    bend = float(np.clip(bend, -0.9 * (length - 2 * r) / r, 0.9 * (length - 2 * r) / r))
    dn = draw(rng, p["n_obj"], "cast.n_obj") - n_medium
    line, start, heading = _arc(length - 2 * r, bend, rng.uniform(0, 2 * np.pi))
    grains = _cast_granules(rng, p, line, r, c, n_medium)

    def opd(y, x):
        # elliptical cross-section, hemispheroidal ends
        return dn * (c / r) * pf.chord_um(distance_to_arc(y, x, start, heading, length - 2 * r, bend), r)

    extent = float(np.max(np.hypot(line[:, 0], line[:, 1]))) + r
    params = {"length_um": length, "width_um": 2 * r, "thickness_um": 2 * c, "bend_rad": bend, "dn": dn,
              "n_granules": len(grains)}
    parts = tuple(_sphere_part(gy, gx, rg, dn_g - dn) for gy, gx, rg, dn_g in grains)
    # Pappus: cross-section area pi*r*c times axis length, plus two half-spheroid ends
    body = math.pi * r * c * (length - 2 * r) + 4.0 / 3.0 * math.pi * r * r * c
    integral = dn * body + _parts_integral(parts)
    return PhantomObject("cast", opd, extent, 2 * min(r, c), params, integral, parts=parts)


def _arc(length, bend, heading, n=13):
    """A centred circular arc: (n, 2) points on it, its start point and start heading.

    The direction ``(sin t, cos t)`` in (y, x) turns linearly from ``heading`` by ``bend``
    rad over the arc ``length`` (µm); points use the exact closed form.
    """
    s = np.linspace(0.0, length, n)
    if abs(bend) < 1e-9 or length <= 0:
        pts = np.stack([s * math.sin(heading), s * math.cos(heading)], axis=1)
    else:
        k, t = bend / length, heading + bend * s / max(length, 1e-12)
        pts = np.stack([(math.cos(heading) - np.cos(t)) / k, (np.sin(t) - math.sin(heading)) / k], axis=1)
    pts = pts - 0.5 * (pts.min(0) + pts.max(0))
    return pts, pts[0], heading


def _cast_granules(rng, p, line, r, c, n_medium):
    """Granules (y, x, radius_um, dn) inside the cast tube, uniformly along its length.

    A ball whose centre is within ``r*(1 - rg/min(r, c))`` of the axis, in the mid-plane,
    lies inside the tube of elliptical cross-section (semi-axes r, c).
    """
    out = []
    for _ in range(draw_int(rng, p["n_granules"], "cast.n_granules")):
        rg = draw(rng, p["granule_radius_um"], "cast.granule_radius_um")
        dn_g = draw(rng, p["n_granule"], "cast.n_granule") - n_medium
        room = r * (1.0 - rg / min(r, c))
        if room <= 0:
            continue
        i = int(rng.integers(len(line) - 1))
        base = line[i] + rng.uniform() * (line[i + 1] - line[i])
        e = line[i + 1] - line[i]
        normal = np.array([e[1], -e[0]]) / (np.hypot(*e) or 1.0)
        gy, gx = base + rng.uniform(-room, room) * normal
        out.append((float(gy), float(gx), rg, dn_g))
    return out


# --------------------------------------------------------------------------- beads, blobs


def _bead(rng, p, n_medium) -> PhantomObject:
    radius = 0.5 * draw(rng, p["diameter_um"], "bead.diameter_um")
    n_obj = draw(rng, p["n_obj"], "bead.n_obj")
    dn = n_obj - n_medium

    def opd(y, x):
        return pf.sphere_opd_um(np.hypot(y, x), radius, dn)

    params = {"diameter_um": 2 * radius, "n_obj": n_obj, "dn": dn}
    return PhantomObject("bead", opd, radius, 2 * radius, params, dn * pf.sphere_volume_um3(radius))


def _blob(rng, p, n_medium) -> PhantomObject:
    size = draw(rng, p["size_um"], "blob.size_um")
    aspect = draw(rng, p["aspect"], "blob.aspect")
    irr = draw(rng, p["irregularity"], "blob.irregularity")
    h = draw(rng, p["thickness_um"], "blob.thickness_um")
    gamma = draw(rng, p["profile_exponent"], "blob.profile_exponent")
    depth = min(draw(rng, p["texture"], "blob.texture"), 1.0)
    dn = draw(rng, p["n_obj"], "blob.n_obj") - n_medium
    harmonics = _harmonics(rng, irr, 2, 6)
    radius = lambda t: star_radius(t, size / 2, harmonics)  # noqa: E731
    # gamma = 0.5 is an ellipsoid; larger gamma gives softer edges
    dome = _polar_dome(radius, lambda rho2: h * (1.0 - rho2) ** gamma, dn, aspect)
    waves = [(rng.uniform(1.5, 4.0) / size, rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)) for _ in range(4)]
    angle = rng.uniform(0, np.pi)

    def opd(y, x):
        u, v = rotate(y, x, angle)
        tex = sum(np.cos(2 * np.pi * f * (u * math.cos(a) + v * math.sin(a)) + ph) for f, a, ph in waves) / len(waves)
        return dome(v, u) * (1.0 + depth * tex)  # |tex| <= 1 keeps OPD >= 0

    # ∫_0^1 (1-ρ²)^γ ρ dρ = 1/(2(γ+1)); the texture has no closed form
    integral = dn * h * aspect * _integrate_r2(radius) / (2 * (gamma + 1)) if depth == 0 else None
    params = {"size_um": size, "aspect": aspect, "irregularity": irr, "thickness_um": h, "profile_exponent": gamma,
              "texture": depth, "dn": dn}
    return PhantomObject("blob", opd, 0.5 * size * (1 + irr), size * aspect * (1 - irr), params, integral)


# --------------------------------------------------------------------------- shared shape helpers


def _polar_dome(radius_fn, profile, dn, aspect: float = 1.0):
    """OPD function of a star-shaped dome: ``dn*profile(rho^2)`` with ``rho = r/R(theta)``.

    Lengths across the v axis are stretched by ``1/aspect`` first, so the footprint is the
    star outline squashed to ``aspect`` along v. ``profile`` maps rho^2 in [0, 1] to µm.
    """

    def opd(v, u):
        vs = v / aspect
        rho2 = (u * u + vs * vs) / radius_fn(np.arctan2(vs, u)) ** 2
        inside = rho2 < 1.0
        return dn * np.where(inside, profile(np.where(inside, rho2, 0.0)), 0.0)

    return opd


def _integrate_r2(radius_fn, n: int = 4096) -> float:
    """``∫_0^{2π} R(θ)² dθ`` by the periodic trapezoid rule (spectrally accurate here)."""
    theta = np.arange(n) * (2 * np.pi / n)
    return float(np.mean(radius_fn(theta) ** 2) * 2 * np.pi)


def _harmonics(rng, amplitude: float, kmin: int, kmax: int) -> list[tuple[int, float, float]]:
    """Random outline harmonics with ``sum |a_k| = amplitude`` and weights falling as 1/k."""
    ks = np.arange(kmin, kmax + 1)
    w = rng.uniform(0, 1, ks.size) / ks
    a = amplitude * w / w.sum() if w.sum() > 0 else np.zeros(ks.size)
    return [(int(k), float(ai), float(rng.uniform(0, 2 * np.pi))) for k, ai in zip(ks, a)]


_BUILDERS: dict[str, Callable] = {
    "discocyte": _discocyte, "echinocyte": _echinocyte, "spherocyte": _spherocyte, "wbc": _wbc,
    "epithelial": _epithelial, "rod": _rod, "coccus": _coccus, "yeast": _yeast, "crystal": _crystal,
    "cast": _cast, "bead": _bead, "blob": _blob,
}


def list_kinds() -> list[str]:
    """Names of the object kinds :func:`make_scene` can draw."""
    return sorted(_BUILDERS)


def build_object(kind: str, rng: np.random.Generator, *, n_medium: float = N_MEDIUM, params: Mapping | None = None) -> PhantomObject:
    """Draw one object of a kind, in its own frame.

    Parameters
    ----------
    kind : str
        One of :func:`list_kinds`.
    rng : numpy.random.Generator
        Source of randomness (parameters, orientation, sub-structure).
    n_medium : float
        Refractive index of the surrounding medium; contrasts are ``n_obj - n_medium``.
    params : mapping, optional
        Overrides of :data:`KIND_DEFAULTS` ``[kind]`` (numbers, ranges or choices).
    """
    if kind not in _BUILDERS:
        raise ConfigError(f"unknown phantom kind {kind!r}; valid: {', '.join(list_kinds())}")
    return _BUILDERS[kind](rng, merge(KIND_DEFAULTS[kind], params, f"kind {kind!r}"), float(n_medium))


def render_object(kind: str, shape, pixel_size_um: float, *, rng: np.random.Generator, centre_um=None,
                  n_medium: float = N_MEDIUM, params: Mapping | None = None, supersample: int | None = None) -> PhaseSample:
    """Rasterise a single object of one kind (label 1), e.g. to check it against theory.

    Parameters
    ----------
    kind, rng, n_medium, params
        As in :func:`build_object`.
    shape : (int, int)
        Grid shape (H, W).
    pixel_size_um : float
        Pixel pitch, µm.
    centre_um : (float, float), optional
        Object centre (y, x) in µm from the top-left corner of the grid; default: the
        grid centre.
    supersample : int, optional
        Sub-samples per pixel side; default: chosen per object for < 0.1 % integral error.

    Returns
    -------
    PhaseSample
        ``meta["objects"][0]`` holds the drawn parameters and ``opd_integral_um3``.
    """
    h, w = check_shape(shape)
    dx = check_pixel_size(pixel_size_um)
    centre = (h * dx / 2, w * dx / 2) if centre_um is None else tuple(float(c) for c in centre_um)
    obj = build_object(kind, rng, n_medium=n_medium, params=params)
    opd, mask = np.zeros((h, w)), np.zeros((h, w), np.int32)
    record = _stamp(opd, mask, obj, centre, 1, dx, supersample)
    meta = {"source": "object", "has_mask": True, "n_medium": float(n_medium), "objects": [record]}
    return PhaseSample(opd, mask, dx, meta)


def make_scene(shape, pixel_size_um: float, *, rng: np.random.Generator, kinds=("discocyte",),
               n_objects=(1, 10), n_medium=N_MEDIUM, background_drift_rad=0.0, wavelength_um: float = 0.55,
               allow_overlap: bool = True, kind_params: Mapping | None = None,
               supersample: int | None = None, max_tries: int = 50) -> PhaseSample:
    """Compose a random scene of phase objects in a medium.

    Parameters
    ----------
    shape : (int, int)
        Grid shape (H, W).
    pixel_size_um : float
        Pixel pitch in the sample plane, µm.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same scene.
    kinds : sequence of str or mapping str -> float
        Kinds to draw from (see :func:`list_kinds`), equally likely, or with weights.
    n_objects : int or (int, int)
        Number of objects, or an inclusive range to draw it from.
    n_medium : float or (float, float)
        Refractive index of the medium (or a range); contrasts are ``n_obj - n_medium``.
    background_drift_rad : float or (float, float)
        Peak-to-peak amplitude (rad at ``wavelength_um``) of a smooth zero-mean quadratic
        background, or a range. 0 (default) gives a flat background of OPD 0.
    wavelength_um : float
        Wavelength (µm) at which ``background_drift_rad`` is given; only used for that.
    allow_overlap : bool
        If True objects are placed independently and overlapping OPDs add; if False their
        bounding circles are kept apart (objects that do not fit after ``max_tries``
        placements are left out).
    kind_params : mapping, optional
        Per-kind overrides of :data:`KIND_DEFAULTS`, e.g. ``{"bead": {"diameter_um": 5.0}}``.
    supersample : int, optional
        Sub-samples per pixel side; default: automatic per object.
    max_tries : int
        Placement attempts per object when ``allow_overlap`` is False.

    Returns
    -------
    PhaseSample
        ``opd_um`` = objects + drift (µm); ``mask`` labels objects 1..N in drawing order
        (a later object's label wins where objects overlap); ``meta`` records each object
        (kind, centre in µm, parameters, analytic ``opd_integral_um3`` where known), the
        medium index and the drift coefficients (see :func:`~chromaqpi.phantoms.textures.drift_field_rad`).
    """
    h, w = check_shape(shape)
    dx = check_pixel_size(pixel_size_um)
    names, probs = _kind_weights(kinds)
    overrides = _check_kind_params(kind_params)
    n = draw_int(rng, n_objects, "n_objects")
    n_med = draw(rng, n_medium, "n_medium")
    opd, mask = np.zeros((h, w)), np.zeros((h, w), np.int32)
    records, placed = [], []
    for _ in range(n):
        kind = names[int(rng.choice(len(names), p=probs))]
        obj = build_object(kind, rng, n_medium=n_med, params=overrides.get(kind))
        centre = _place(rng, (h * dx, w * dx), obj.extent_um, placed, allow_overlap, max_tries)
        if centre is None:
            continue
        record = _stamp(opd, mask, obj, centre, len(records) + 1, dx, supersample)
        if record is not None:
            records.append(record)
            placed.append((centre, obj.extent_um))
    amplitude = draw(rng, background_drift_rad, "background_drift_rad")
    if amplitude < 0:
        raise ConfigError(f"background_drift_rad must be >= 0, got {background_drift_rad!r}")
    coeffs = random_drift_coeffs((h, w), amplitude, rng)
    if amplitude > 0:
        opd += drift_field_rad((h, w), coeffs) * (wavelength_um / (2 * math.pi))
    meta = {"source": "scene", "has_mask": True, "n_medium": n_med, "wavelength_um": float(wavelength_um),
            "objects": records, "background_drift": {"amplitude_rad": amplitude, "coeffs_rad": coeffs}}
    return PhaseSample(opd, mask, dx, meta)


def _kind_weights(kinds) -> tuple[list[str], np.ndarray]:
    pairs = list(kinds.items()) if isinstance(kinds, Mapping) else [(k, 1.0) for k in kinds]
    names = [str(k) for k, _ in pairs]
    for name in names:
        if name not in _BUILDERS:
            raise ConfigError(f"unknown phantom kind {name!r}; valid: {', '.join(list_kinds())}")
    weights = np.array([float(wt) for _, wt in pairs])
    if not names or np.any(weights < 0) or weights.sum() <= 0:
        raise ConfigError(f"kinds needs at least one kind with a positive weight, got {kinds!r}")
    return names, weights / weights.sum()


def _check_kind_params(kind_params) -> dict:
    out = dict(kind_params or {})
    for kind, params in out.items():
        if kind not in _BUILDERS:
            raise ConfigError(f"kind_params: unknown phantom kind {kind!r}; valid: {', '.join(list_kinds())}")
        merge(KIND_DEFAULTS[kind], params, f"kind {kind!r}")  # fail early on unknown keys
    return out


def _place(rng, size_um, extent, placed, allow_overlap, max_tries):
    """A centre (µm) uniform over the field; with no overlap, away from placed objects."""
    for _ in range(1 if allow_overlap else max(1, int(max_tries))):
        c = (float(rng.uniform(0, size_um[0])), float(rng.uniform(0, size_um[1])))
        if allow_overlap or all(math.dist(c, q) >= extent + e for q, e in placed):
            return c
    return None


def _stamp(opd, mask, obj: PhantomObject, centre, label, dx, supersample) -> dict | None:
    """Add an object's pixel-averaged OPD to ``opd`` and its support to ``mask``."""
    if supersample is not None and int(supersample) < 1:
        raise ConfigError(f"supersample must be >= 1, got {supersample!r}")
    if not _rasterise_into(opd, mask, obj, centre, label, dx, supersample):
        return None
    ss = int(supersample) if supersample else supersample_factor(obj.feature_um, dx, step_edges=obj.step_edges)
    inside = _fully_inside(centre, obj.extent_um, opd.shape, dx)
    return {"label": label, "kind": obj.kind, "centre_um": list(centre), "supersample": ss,
            "opd_integral_um3": obj.opd_integral_um3, "clipped": not inside, **_jsonable(obj.params)}


def _rasterise_into(opd, mask, obj: PhantomObject, centre, label, dx, supersample) -> bool:
    """Rasterise an object and its parts; True if any of it touched the grid."""
    touched = False
    if obj.opd_fn is not None:
        ss = int(supersample) if supersample else supersample_factor(obj.feature_um, dx, step_edges=obj.step_edges)
        hit = rasterise(obj.opd_fn, centre, obj.extent_um, opd.shape, dx, ss)
        if hit is not None:
            (sy, sx), patch = hit
            opd[sy, sx] += patch
            mask[sy, sx][patch != 0] = label
            touched = True
    for dy, dxx, part in obj.parts:
        touched |= _rasterise_into(opd, mask, part, (centre[0] + dy, centre[1] + dxx), label, dx, supersample)
    return touched


def _fully_inside(centre, extent, shape, dx) -> bool:
    return all(extent <= c <= n * dx - extent for c, n in zip(centre, shape))


def _jsonable(params: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in params.items()}


@dataclass(frozen=True)
class SceneSource:
    """A phase source drawing :func:`make_scene` scenes; fields as in :func:`make_scene`.

    Call it as ``source(shape, pixel_size_um, rng) -> PhaseSample``.
    """

    kinds: Mapping[str, float] | tuple[str, ...] = ("discocyte",)
    n_objects: int | tuple[int, int] = (1, 10)
    n_medium: float | tuple[float, float] = N_MEDIUM
    background_drift_rad: float | tuple[float, float] = 0.0
    wavelength_um: float = 0.55
    allow_overlap: bool = True
    kind_params: Mapping | None = None
    supersample: int | None = None
    name: str = "scene"

    def __post_init__(self):
        _kind_weights(self.kinds)  # fail at configuration time, not in a worker
        _check_kind_params(self.kind_params)

    def __call__(self, shape, pixel_size_um: float, rng: np.random.Generator) -> PhaseSample:
        sample = make_scene(shape, pixel_size_um, rng=rng, kinds=self.kinds, n_objects=self.n_objects,
                            n_medium=self.n_medium, background_drift_rad=self.background_drift_rad,
                            wavelength_um=self.wavelength_um, allow_overlap=self.allow_overlap,
                            kind_params=self.kind_params, supersample=self.supersample)
        sample.meta["source"] = self.name
        return sample
