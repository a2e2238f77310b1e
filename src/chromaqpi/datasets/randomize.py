"""Domain randomisation as data: ranges of microscope parameters, and draws from them.

A :class:`Ranges` object says *which* microscope parameters vary over a training set and
*how much*; :func:`draw_microscope` turns it plus a seeded generator into one concrete,
validated :class:`~chromaqpi.microscope.Microscope`. The ranges travel with the dataset
(``manifest.json``) and every sample stores the exact microscope it was simulated with.

Named families (:func:`get_family`):

``default``
    Common 20x/0.40 and 40x/0.65 achromats on a brightfield stand (PHYSICS.md §9):
    condenser σ, NA ±5 %, camera pixel, medium index, nominal defocus, secondary
    spectrum, vertex and linear chromatic term, halogen (blackbody 2800-3400 K) or white
    LED, ±5 nm camera-channel shifts, exposure (N_bg log-uniform 1e3-3e4 e-), read noise,
    bit depth and Bayer on/off. Meant for OPD sources with physical ranges (cell scenes).
    A reduced spectral/source quadrature keeps it fast (see ``benchmarks/results/dataset.md``).
``paper-rgb``
    The reference paper's polychromatic training protocol (PHYSICS.md §6.5) in our
    geometry: Gaussian channel spectra σ ~ U(0.01, 0.1) µm around 0.630/0.530/0.450 µm
    on 50 wavelengths, per-channel defocus U(0.01, 3) µm with OUR sign (positive, as in
    the ``paper-rgb`` preset's evaluation geometry), additive N(p, p) noise, p ~ U(0, 0.3).
``paper-2shot``
    Two monochromatic shots at 0.521 µm, our z = -1 and +1 µm, N(p, p) noise, p ~ U(0, 0.2).

The paper families expect image sources min-max scaled to [0, 3.5] rad (their protocol);
the default family expects OPD sources (no min-max).

Notes
-----
Sign of the nominal defocus. The default family draws a *positive* nominal defocus only.
For a pure-phase object ``I(+z; φ) = I(-z; -φ)`` (PHYSICS.md §8 #7), so a training set
with both signs would teach a model that the sign of the phase is unknowable; the sign is
fixed by the acquisition protocol instead (focus past the sample, as in the ``default``
preset). PHYSICS.md §9 lists z_0 ∈ [-2, 2] µm for calibrated use; use a custom
:class:`Ranges` for that.

Channel gains. After flat-field normalisation (each channel divided by its empty field)
a per-channel gain cancels exactly -- the simulator normalises each channel's spectral
weights -- so gains are not drawn; only the channels' spectral positions are.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope, list_presets

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Objective", "Ranges", "draw_microscope", "get_family", "list_families", "resolve_ranges",
           "nyquist_oversample", "achromat_shift_um", "SHIFT_WAVELENGTHS_UM"]

#: What a drawn absorption follows (``Ranges.absorption_pattern``).
ABSORPTION_PATTERNS = ("phase", "independent")
#: Wavelengths (µm) at which the focal shift is stored (``Focus.shift_wavelengths_um``).
SHIFT_WAVELENGTHS_UM = (0.45, 0.55, 0.65)
#: Half the C-F separation (µm) for λ_C = 0.6563 and λ_F = 0.4861 (PHYSICS.md §2.3).
_HALF_CF_UM = 0.0851
#: Tabulation grid for drawn LED and camera spectra (µm): covers the 0.40-0.70 quadrature.
_TABLE_GRID_UM = np.round(np.arange(0.38, 0.7201, 0.005), 4)

Range = tuple  # (lo, hi); uniform unless documented otherwise


@dataclass
class Objective:
    """One objective class of a family, with its chromatic and focus ranges.

    Attributes
    ----------
    magnification : nominal magnification (pixel at the sample = camera pixel / magnification).
    na : nominal numerical aperture.
    secondary_spectrum_um : (lo, hi) green-vs-C/F focus separation S (µm), PHYSICS.md §2.3.
    defocus_um : (lo, hi) nominal defocus z_0 of the C/F focus (µm, our sign).
    weight : relative probability of this objective.
    """

    magnification: float
    na: float
    secondary_spectrum_um: Range
    defocus_um: Range
    weight: float = 1.0


@dataclass
class Ranges:
    """Randomisation ranges over a base microscope. ``None`` means "keep the base value".

    Ranges ``(lo, hi)`` are drawn uniformly, except ``n_bg_e`` (log-uniform). Units are in
    the field names (µm, K, e-).

    Attributes
    ----------
    name : family name, recorded in manifests.
    base : preset name or a full microscope dict that the draws modify.
    default_source : source spec used when none is given (see :mod:`chromaqpi.datasets.sources`).
    n_wavelengths, source_points : spectral and Abbe-source quadrature (fixed, not drawn).
    oversample : simulation oversampling: an integer, or ``"auto"`` for the smallest
        factor that samples the intensity band (NA_obj + NA_cond)/λ_min at Nyquist.
    objectives : objective classes, chosen by weight (RGB mode).
    na_jitter : relative NA jitter, NA·(1 + U(-j, j)).
    condenser_sigma : (lo, hi) condenser fill σ = NA_cond/NA_obj.
    camera_pixel_um : (lo, hi) camera pixel pitch on the sensor (µm).
    n_medium : (lo, hi) refractive index of the medium.
    vertex_um : (lo, hi) wavelength of the focal-curve extremum (µm).
    linear_um_per_um : (lo, hi) linear chromatic term a1 (µm of focus per µm of wavelength).
    illuminants : {"blackbody": weight, "led": weight}.
    temperature_k : (lo, hi) halogen colour temperature.
    led_pump_um, led_phosphor_um : (lo, hi) centres of the LED's blue pump and phosphor band.
    led_phosphor_ratio : (lo, hi) phosphor-to-pump peak ratio.
    camera_shift_um : maximum absolute shift of each camera channel's curve (µm).
    n_bg_e : (lo, hi) background photo-electrons per pixel, log-uniform.
    fill_fraction : (lo, hi) N_bg / full well.
    read_noise_e : (lo, hi) read noise (e-).
    bit_depths : choices of ADC bit depth.
    bayer_probability : probability of an RGGB mosaic (+ bilinear demosaicing).
    plane_defocus_um : per plane (lo, hi) defocus, our sign (planes mode).
    plane_bandwidth_um : (lo, hi) Gaussian band σ of every plane (planes mode).
    gaussian_noise : (lo, hi) for p; the sensor adds N(mean=p, std=p) (the paper's noise).
    absorption_per_rad : (lo, hi) of k >= 0, drawn per sample: the specimen also attenuates the
        amplitude by ``a = k·(φ - min φ)`` (grey; real specimens are never quite transparent, and
        the phase-only training data leave the networks blind to it: ``benchmarks/results/absorption.md``).
    absorption_probability : share of the samples that absorb (default 1 with ``absorption_per_rad``).
    absorption_pattern : ``"phase"`` (default): the absorption follows the phase, ``a = k·(φ - min φ)``;
        ``"independent"``: ``a = k·(ψ - min ψ)`` with ψ the phase (rad) of a second object drawn from
        the same sources, so the absorption carries no cue to the phase (stains, pigment, debris) and a
        network can only learn to tell it apart, not to read it.
    absorption_stains : names in :data:`chromaqpi.optics.spectra.STAINS` (``"grey"`` included), one drawn
        uniformly per absorbing sample to colour its absorption (``a·s(λ)/s̄``; default: all grey).
        Specimen draws, not microscope draws: they come from each sample's object stream, after the
        object, so they change neither the objects nor the microscopes of a seed.
    absorption_second_dye : share of the absorbing samples that carry a second dye as well (as H&E
        does): another stain from ``absorption_stains`` on its own independent pattern, with the same k;
        the attenuations add at each wavelength. Needs the independent pattern and two or more stains.
        Drawn after everything else of the sample, so the first dye's samples stay as they were.
    """

    name: str = "custom"
    base: Any = "default"
    default_source: str = "cells"
    n_wavelengths: int | None = None
    source_points: int | None = None
    oversample: int | str | None = None
    objectives: list[Objective] | None = None
    na_jitter: float = 0.0
    condenser_sigma: Range | None = None
    camera_pixel_um: Range | None = None
    n_medium: Range | None = None
    vertex_um: Range | None = None
    linear_um_per_um: Range | None = None
    illuminants: dict[str, float] | None = None
    temperature_k: Range | None = None
    led_pump_um: Range | None = None
    led_phosphor_um: Range | None = None
    led_phosphor_ratio: Range | None = None
    camera_shift_um: float | None = None
    n_bg_e: Range | None = None
    fill_fraction: Range | None = None
    read_noise_e: Range | None = None
    bit_depths: list[int] | None = None
    bayer_probability: float | None = None
    plane_defocus_um: list[Range] | None = None
    plane_bandwidth_um: Range | None = None
    gaussian_noise: Range | None = None
    absorption_per_rad: Range | None = None
    absorption_probability: float | None = None
    absorption_pattern: str | None = None
    absorption_stains: list[str] | None = None
    absorption_second_dye: float | None = None

    def __post_init__(self) -> None:
        if self.objectives is not None:
            self.objectives = [o if isinstance(o, Objective) else _build(Objective, o, "objectives[]")
                               for o in self.objectives]
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ConfigError for malformed or unphysical ranges."""
        base = self.base_microscope()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _RANGE_FIELDS and value is not None:
                _check_range(value, f.name, positive=f.name not in ("linear_um_per_um", "gaussian_noise", "absorption_per_rad"))
        _require(0 <= self.na_jitter < 0.5, "na_jitter must be in [0, 0.5)")
        _require(self.oversample in (None, "auto") or (isinstance(self.oversample, int) and self.oversample >= 1),
                 "oversample must be an integer >= 1, 'auto' or absent")
        for o in self.objectives or []:
            _require(o.magnification > 0 and 0 < o.na < 1.5 and o.weight > 0, f"invalid objective {o}")
            _check_range(o.secondary_spectrum_um, "objective.secondary_spectrum_um", positive=False)
            _check_range(o.defocus_um, "objective.defocus_um", positive=False)
        if self.illuminants is not None:
            _require(set(self.illuminants) <= {"blackbody", "led"} and sum(self.illuminants.values()) > 0,
                     "illuminants must map 'blackbody'/'led' to non-negative weights")
        if self.plane_defocus_um is not None:
            _require(len(self.plane_defocus_um) == len(base.planes),
                     f"plane_defocus_um needs one range per plane of the base ({len(base.planes)})")
            for r in self.plane_defocus_um:
                _check_range(r, "plane_defocus_um", positive=False)
        if self.absorption_per_rad is not None:
            _require(float(self.absorption_per_rad[0]) >= 0, "absorption_per_rad: values must be >= 0")
        if self.absorption_probability is not None:
            _require(self.absorption_per_rad is not None, "absorption_probability needs absorption_per_rad")
            p = self.absorption_probability
            _require(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1,
                     f"absorption_probability must be a number in [0, 1], got {p!r}")
        if self.absorption_pattern is not None:
            _require(self.absorption_per_rad is not None, "absorption_pattern needs absorption_per_rad")
            _require(self.absorption_pattern in ABSORPTION_PATTERNS,
                     f"absorption_pattern must be one of {', '.join(ABSORPTION_PATTERNS)}, got {self.absorption_pattern!r}")
        if self.absorption_stains is not None:
            from chromaqpi.optics.spectra import STAINS

            _require(self.absorption_per_rad is not None, "absorption_stains needs absorption_per_rad")
            _require(isinstance(self.absorption_stains, (list, tuple)) and len(self.absorption_stains) > 0
                     and all(name in STAINS for name in self.absorption_stains),
                     f"absorption_stains must be a non-empty list of {', '.join(STAINS)}, got {self.absorption_stains!r}")
        if self.absorption_second_dye is not None:
            p = self.absorption_second_dye
            _require(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1,
                     f"absorption_second_dye must be a number in [0, 1], got {p!r}")
            _require(self.absorption_pattern == "independent" and len(set(self.absorption_stains or [])) >= 2,
                     "absorption_second_dye needs absorption_pattern = \"independent\" and two or more absorption_stains")
        planes_only = ("plane_defocus_um", "plane_bandwidth_um")
        rgb_only = ("objectives", "vertex_um", "linear_um_per_um", "illuminants", "camera_shift_um", "bayer_probability")
        if base.planes:
            _require(all(getattr(self, k) is None for k in rgb_only), f"{', '.join(rgb_only)} need an RGB-mode base")
        else:
            _require(all(getattr(self, k) is None for k in planes_only), f"{', '.join(planes_only)} need a planes base")

    def base_microscope(self) -> Microscope:
        """The microscope the draws start from."""
        if isinstance(self.base, Microscope):
            return self.base
        if isinstance(self.base, dict):
            return Microscope.from_dict(self.base)
        if isinstance(self.base, str) and self.base in list_presets():
            return Microscope.from_preset(self.base)
        raise ConfigError(f"ranges base must be a preset ({', '.join(list_presets())}) or a microscope table, "
                          f"got {self.base!r}")

    @property
    def is_fixed(self) -> bool:
        """True when nothing is drawn (every sample uses the base microscope as it is)."""
        skip = {"name", "base", "default_source", "na_jitter", "absorption_per_rad", "absorption_probability",
                "absorption_pattern", "absorption_stains", "absorption_second_dye"}
        return all(getattr(self, f.name) is None for f in fields(self) if f.name not in skip)

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict; ``None`` fields are left out, tuples become lists."""
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "base" and isinstance(value, Microscope):
                value = value.to_dict()
            if value is not None:
                data[f.name] = _plain(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ranges":
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        return _build(cls, data, "ranges")

    @classmethod
    def fixed(cls, microscope: Microscope, name: str | None = None) -> "Ranges":
        """Ranges that draw nothing: every sample uses ``microscope``."""
        return cls(name=name or f"fixed:{microscope.name}", base=microscope.to_dict())


_RANGE_FIELDS = {"condenser_sigma", "camera_pixel_um", "n_medium", "vertex_um", "linear_um_per_um", "temperature_k",
                 "led_pump_um", "led_phosphor_um", "led_phosphor_ratio", "n_bg_e", "fill_fraction", "read_noise_e",
                 "plane_bandwidth_um", "gaussian_noise", "absorption_per_rad"}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table/dict")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_range(value, name: str, *, positive: bool) -> None:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a range (lo, hi), got {value!r}") from None
    _require(math.isfinite(lo) and math.isfinite(hi) and lo <= hi, f"{name}: need finite lo <= hi, got {value!r}")
    _require(not positive or lo > 0, f"{name}: values must be > 0, got {value!r}")


# ------------------------------------------------------------------- drawing
def _uniform(rng: np.random.Generator, r: Range) -> float:
    lo, hi = float(r[0]), float(r[1])
    return float(rng.uniform(lo, hi)) if hi > lo else lo


def _log_uniform(rng: np.random.Generator, r: Range) -> float:
    lo, hi = math.log(float(r[0])), math.log(float(r[1]))
    return float(math.exp(rng.uniform(lo, hi))) if hi > lo else float(r[0])


def _pick(rng: np.random.Generator, weights) -> int:
    w = np.asarray(weights, dtype=float)
    return int(rng.choice(len(w), p=w / w.sum()))


def achromat_shift_um(secondary_spectrum_um: float, vertex_um: float, linear_um_per_um: float,
                      wavelengths_um=SHIFT_WAVELENGTHS_UM) -> list[float]:
    """Focal shift of an achromat at ``wavelengths_um`` (µm), relative to its C/F focus.

    ``shift(λ) = a2·((λ - λ_v)² - h²) + a1·(λ - 0.55)`` with ``a2 = S/h²`` and h = 0.0851 µm
    (half the C-F separation), PHYSICS.md §2.3. With a1 = 0 the C and F lines sit at the
    nominal focus and the vertex (green) is S closer, the sign of the ``default`` preset.
    """
    a2 = secondary_spectrum_um / _HALF_CF_UM**2
    return [round(a2 * ((lam - vertex_um) ** 2 - _HALF_CF_UM**2) + linear_um_per_um * (lam - 0.55), 6)
            for lam in wavelengths_um]


def nyquist_oversample(microscope: Microscope) -> int:
    """Smallest oversampling that samples the intensity band (NA_obj + NA_cond)/λ_min at Nyquist."""
    o = microscope.optics
    if o.na_objective == 0:  # no pupil: nothing is band limited, oversampling cannot fix aliasing
        return 1
    lam_min = min(p.wavelength_um for p in microscope.planes) if microscope.planes else microscope.spectra.wavelength_min_um
    nyquist_dx = lam_min / (2 * (o.na_objective + o.na_condenser))
    return max(1, math.ceil(microscope.sampling.pixel_size_um / nyquist_dx - 1e-9))


def _led_table(rng, r: Ranges) -> list[list[float]]:
    pump = _uniform(rng, r.led_pump_um or (0.450, 0.450))
    phosphor = _uniform(rng, r.led_phosphor_um or (0.565, 0.565))
    ratio = _uniform(rng, r.led_phosphor_ratio or (0.55, 0.55))
    lam = _TABLE_GRID_UM
    # FWHM of a blue pump ~22 nm, of a YAG-like phosphor ~120 nm (as the built-in LED).
    power = np.exp(-4 * math.log(2) * ((lam - pump) / 0.022) ** 2) + ratio * np.exp(
        -4 * math.log(2) * ((lam - phosphor) / 0.120) ** 2)
    return [[float(a), round(float(b), 6)] for a, b in zip(lam, power)]


def _camera_table(rng, shift_max_um: float) -> list[list[float]]:
    from chromaqpi.microscope import Spectra
    from chromaqpi.optics.spectra import camera_sensitivity

    shifts = rng.uniform(-shift_max_um, shift_max_um, size=3)
    # A channel shifted by +δ has the built-in curve evaluated at λ - δ.
    curves = [camera_sensitivity(_TABLE_GRID_UM - shifts[c], Spectra())[c] for c in range(3)]
    return [[float(lam)] + [round(float(curves[c][i]), 6) for c in range(3)] for i, lam in enumerate(_TABLE_GRID_UM)]


def _draw_optics(rng, r: Ranges, base: Microscope, update: dict) -> None:
    optics, sampling, focus = update["optics"], update["sampling"], update["focus"]
    if r.objectives:
        obj = r.objectives[_pick(rng, [o.weight for o in r.objectives])]
        optics["na_objective"] = round(obj.na * (1 + _uniform(rng, (-r.na_jitter, r.na_jitter))), 6)
        focus["defocus_um"] = round(_uniform(rng, obj.defocus_um), 6)
        secondary = _uniform(rng, obj.secondary_spectrum_um)
        vertex = _uniform(rng, r.vertex_um or (0.56, 0.56))
        linear = _uniform(rng, r.linear_um_per_um or (0.0, 0.0))
        focus["shift_wavelengths_um"] = list(SHIFT_WAVELENGTHS_UM)
        focus["shift_um"] = achromat_shift_um(secondary, vertex, linear)
        if r.camera_pixel_um is not None:
            sampling["pixel_size_um"] = round(_uniform(rng, r.camera_pixel_um) / obj.magnification, 6)
    na_obj = optics.get("na_objective", base.optics.na_objective)
    if r.condenser_sigma is not None:
        optics["na_condenser"] = round(_uniform(rng, r.condenser_sigma) * na_obj, 6)
    if r.n_medium is not None:
        optics["n_medium"] = round(_uniform(rng, r.n_medium), 6)


def _draw_spectra(rng, r: Ranges, update: dict) -> None:
    spectra = update["spectra"]
    if r.illuminants:
        kinds = sorted(r.illuminants)
        kind = kinds[_pick(rng, [r.illuminants[k] for k in kinds])]
        if kind == "blackbody":
            spectra["illuminant"] = "blackbody"
            spectra["temperature_k"] = round(_uniform(rng, r.temperature_k or (3100.0, 3100.0)), 3)
        else:
            spectra["illuminant"] = "table"
            spectra["illuminant_table"] = _led_table(rng, r)
    if r.camera_shift_um:
        spectra["camera"] = "table"
        spectra["camera_table"] = _camera_table(rng, float(r.camera_shift_um))


def _draw_sensor(rng, r: Ranges, update: dict) -> None:
    sensor = update["sensor"]
    if r.n_bg_e is not None:
        n_bg = _log_uniform(rng, r.n_bg_e)
        fill = _uniform(rng, r.fill_fraction or (0.7, 0.7))
        sensor["fill_fraction"] = round(fill, 6)
        sensor["full_well_e"] = round(n_bg / fill, 3)
    if r.read_noise_e is not None:
        sensor["read_noise_e"] = round(_uniform(rng, r.read_noise_e), 6)
    if r.bit_depths:
        sensor["bit_depth"] = int(r.bit_depths[int(rng.integers(len(r.bit_depths)))])
    if r.bayer_probability is not None:
        sensor["bayer"] = bool(rng.uniform() < r.bayer_probability)
    if r.gaussian_noise is not None:
        p = round(_uniform(rng, r.gaussian_noise), 6)
        sensor.update(model="gaussian", gaussian_mean=p, gaussian_std=p)


def _draw_planes(rng, r: Ranges, base: Microscope) -> list[dict] | None:
    if r.plane_defocus_um is None and r.plane_bandwidth_um is None:
        return None
    planes = [asdict(p) for p in base.planes]
    for i, plane in enumerate(planes):
        if r.plane_defocus_um is not None:
            plane["defocus_um"] = round(_uniform(rng, r.plane_defocus_um[i]), 6)
        if r.plane_bandwidth_um is not None:
            plane["bandwidth_um"] = round(_uniform(rng, r.plane_bandwidth_um), 6)
    return planes


def absorbers_drawn(family: dict) -> dict | None:
    """What absorbing samples a dataset's family (a :class:`Ranges` as its manifest records it) draws, for
    the card of a model trained on it: k range per radian, share, pattern and stains (``["grey"]`` when it
    names none); None for a transparent dataset."""
    k = family.get("absorption_per_rad")
    p = 1.0 if family.get("absorption_probability") is None else float(family["absorption_probability"])
    if k is None or float(k[1]) <= 0 or p <= 0:
        return None
    return {"per_rad": [float(v) for v in k], "probability": p, "pattern": family.get("absorption_pattern"),
            "stains": list(family.get("absorption_stains") or ["grey"]),
            **({"second_dye": float(family["absorption_second_dye"])} if family.get("absorption_second_dye") else {})}


def draw_absorption_per_rad(ranges: Ranges, rng: np.random.Generator) -> float | None:
    """k of one sample's absorption ``a = k·(φ - min φ)``: None when the ranges draw none (nothing is
    drawn from ``rng`` then), else 0 for a transparent sample. Always two draws, so later ones do not
    depend on the outcome."""
    if ranges.absorption_per_rad is None:
        return None
    p = 1.0 if ranges.absorption_probability is None else float(ranges.absorption_probability)
    lo, hi = (float(v) for v in ranges.absorption_per_rad)
    absorbs, k = rng.uniform() < p, float(rng.uniform(lo, hi))  # a draw even when lo == hi
    return k if absorbs else 0.0


def draw_absorption_stain(ranges: Ranges, k, rng: np.random.Generator) -> str | None:
    """The stain colouring one absorbing sample (k > 0): None for grey or when the ranges list none
    (nothing is drawn then, nor for transparent samples)."""
    if not k or ranges.absorption_stains is None:
        return None
    name = ranges.absorption_stains[int(rng.integers(len(ranges.absorption_stains)))]
    return None if name == "grey" else name


def draw_second_dye(ranges: Ranges, k, first: str | None, rng: np.random.Generator) -> str | None:
    """The second dye of an absorbing sample (``Ranges.absorption_second_dye``): another of the listed
    stains than the first (``first`` None: grey), or None for one dye only. Nothing is drawn for
    transparent samples or ranges without a second dye; otherwise two draws, whatever the outcome."""
    if not k or not ranges.absorption_second_dye:
        return None
    others = [n for n in dict.fromkeys(ranges.absorption_stains) if n != (first or "grey")]
    second, pick = rng.uniform() < ranges.absorption_second_dye, int(rng.integers(len(others)))
    return others[pick] if second else None


def draw_microscope(base: Microscope | None, ranges: Ranges, rng: np.random.Generator) -> Microscope:
    """Draw one microscope from ``ranges`` around ``base``.

    Parameters
    ----------
    base : Microscope or None
        Starting point; ``None`` uses ``ranges.base``.
    ranges : Ranges
    rng : numpy.random.Generator
        The only source of randomness; the draw order is fixed, so a seed gives one microscope.

    Returns
    -------
    Microscope
        Validated, with the quadrature of ``ranges`` and a Nyquist-safe oversampling when
        ``ranges.oversample == "auto"``; its name is ``"<family>-draw"``.
    """
    base = ranges.base_microscope() if base is None else base
    update: dict[str, dict] = {k: {} for k in ("sampling", "optics", "focus", "spectra", "sensor")}
    _draw_optics(rng, ranges, base, update)
    _draw_spectra(rng, ranges, update)
    _draw_sensor(rng, ranges, update)
    planes = _draw_planes(rng, ranges, base)
    if ranges.n_wavelengths is not None:
        update["spectra"]["n_wavelengths"] = int(ranges.n_wavelengths)
    if ranges.source_points is not None:
        update["optics"]["source_points"] = int(ranges.source_points)
    if isinstance(ranges.oversample, int):
        update["sampling"]["oversample"] = ranges.oversample
    extra = {"planes": planes} if planes is not None else {}
    name = base.name if ranges.is_fixed else f"{ranges.name}-draw"
    if ranges.oversample != "auto":
        return base.replace(name=name, **update, **extra)
    # The intermediate copy may be under-sampled (warning); the final one is not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        drawn = base.replace(name=name, **update, **extra)
    return drawn.replace(sampling={"oversample": nyquist_oversample(drawn)})


# ------------------------------------------------------------------ families
def _default_family() -> Ranges:
    # PHYSICS.md §2.3 table (achromat secondary spectrum per objective) and §9 ranges.
    objectives = [
        Objective(magnification=20, na=0.40, secondary_spectrum_um=(1.0, 4.0), defocus_um=(0.5, 3.0)),
        Objective(magnification=40, na=0.65, secondary_spectrum_um=(0.5, 2.0), defocus_um=(0.3, 2.0)),
    ]
    return Ranges(
        name="default", base="default",
        # Object counts are per image and the field is 8-40 µm wide at 128 px, so the
        # scene sources' own counts (tuned for larger fields) are reduced here.
        default_source=("cells(n_objects=[1,6]):0.35,rbc(n_objects=[1,8]):0.2,bacteria(n_objects=[2,12]):0.15,"
                        "beads(n_objects=[1,4]):0.1,blobs(n_objects=[1,5]):0.1,textures:0.1"),
        n_wavelengths=12, source_points=19, oversample="auto",
        objectives=objectives, na_jitter=0.05, condenser_sigma=(0.3, 0.8), camera_pixel_um=(2.4, 6.5),
        n_medium=(1.33, 1.34), vertex_um=(0.55, 0.58), linear_um_per_um=(-2.0, 2.0),
        illuminants={"blackbody": 0.6, "led": 0.4}, temperature_k=(2800.0, 3400.0),
        led_pump_um=(0.445, 0.460), led_phosphor_um=(0.55, 0.60), led_phosphor_ratio=(0.4, 1.0),
        camera_shift_um=0.005,
        n_bg_e=(1e3, 3e4), fill_fraction=(0.5, 0.8), read_noise_e=(1.0, 5.0), bit_depths=[8, 12, 14],
        bayer_probability=0.5,
    )


def _paper_rgb_family() -> Ranges:
    # PHYSICS.md §6.5: 50 wavelengths on [0.4, 0.7] µm (the preset's spectra grid),
    # Gaussian channels σ ~ U(0.01, 0.1) µm, per-channel z ~ U(0.01, 3) µm, N(p, p) noise.
    return Ranges(
        name="paper-rgb", base="paper-rgb", default_source="skimage-train", n_wavelengths=50,
        plane_defocus_um=[(0.01, 3.0)] * 3, plane_bandwidth_um=(0.01, 0.1), gaussian_noise=(0.0, 0.3),
    )


def _paper_2shot_family() -> Ranges:
    # Planes stay at our z = -1, +1 µm and λ = 0.521 µm; only the noise level varies.
    return Ranges(name="paper-2shot", base="paper-2shot", default_source="skimage-train", gaussian_noise=(0.0, 0.2))


_FAMILIES = {"default": _default_family, "paper-rgb": _paper_rgb_family, "paper-2shot": _paper_2shot_family}


def list_families() -> list[str]:
    """Names accepted by :func:`get_family`."""
    return sorted(_FAMILIES)


def get_family(name: str) -> Ranges:
    """A fresh copy of a named family's :class:`Ranges`."""
    if name not in _FAMILIES:
        raise ConfigError(f"unknown randomisation family {name!r}; valid: {', '.join(list_families())}")
    return _FAMILIES[name]()


def _ranges_from_table(table: dict, path: Path) -> Ranges:
    # ``family = "NAME"`` starts from a built-in family and overrides only the keys given,
    # so a variant (e.g. another noise range) does not restate the whole family.
    table = dict(table)
    family = table.pop("family", None)
    if family is None:
        return Ranges.from_dict(table)
    if family not in _FAMILIES:
        raise ConfigError(f"{path}: family {family!r} is not one of {', '.join(list_families())}")
    return Ranges.from_dict({**get_family(family).to_dict(), **table})


def resolve_ranges(spec) -> Ranges:
    """Family name, ``preset:NAME``, TOML file, Ranges or Microscope -> Ranges.

    A TOML file with a top-level ``[ranges]`` table is a family (with ``family = NAME`` in
    it, a built-in family with the table's keys overridden); any other TOML file is one
    fixed microscope. ``preset:NAME`` is a preset used as it is (no randomisation).
    """
    if isinstance(spec, Ranges):
        return spec
    if isinstance(spec, Microscope):
        return Ranges.fixed(spec)
    text = str(spec)
    if text in _FAMILIES:
        return get_family(text)
    if text.startswith("preset:"):
        return Ranges.fixed(Microscope.from_preset(text.split(":", 1)[1]))
    path = Path(text)
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        if "ranges" in data:
            return _ranges_from_table(data["ranges"], path)
        return Ranges.fixed(Microscope.from_dict(data), name=f"fixed:{path.name}")
    raise ConfigError(f"--microscope {text!r} is neither a family ({', '.join(list_families())}), "
                      f"'preset:NAME' ({', '.join(list_presets())}) nor a TOML file")
