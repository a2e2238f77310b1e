"""Typed, validated, serialisable description of a brightfield microscope and camera.

Everything the simulator and the physics-based solvers need lives here, in one
place, with units in the field names (µm, K, e-). Conventions (PHYSICS.md §0):
phase > 0 is optically denser; defocus z > 0 means the focal plane lies
downstream of the sample.

A microscope is either

* **RGB mode** (``planes`` empty): a broadband illuminant, an objective with a
  wavelength-dependent focal shift ``z(λ)``, and a colour camera whose R, G, B
  sensitivities weight a spectral quadrature; or
* **planes mode**: an explicit list of acquisition planes, each a wavelength
  (or a Gaussian band) and a defocus -- e.g. a monochromatic two-shot ±dz TIE.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from chromaqpi.errors import ConfigError, is_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class Sampling:
    """Sampling of the object and the camera.

    Attributes
    ----------
    pixel_size_um : camera pixel size referred to the sample plane (µm).
    oversample : the object is simulated on a grid ``oversample`` times finer and
        the intensity box-binned back (pixel integration, anti-aliasing).
    pad_px : reflect padding on each side, in camera pixels, against the
        circular wrap-around of FFT propagation.
    """

    pixel_size_um: float = 0.1625
    oversample: int = 2
    pad_px: int = 16


@dataclass
class Optics:
    """Objective, condenser and medium.

    Attributes
    ----------
    na_objective : detection numerical aperture; ``0`` disables the pupil
        (the reference paper's idealisation).
    na_condenser : illumination NA (radius of the Köhler source disk, in
        direction cosines); ``0`` is coherent on-axis illumination.
    source_points : approximate number of Abbe source points sampled on a
        symmetric square lattice in the condenser disk.
    n_medium : refractive index of the medium around the sample.
    wavelength_ref_um : wavelength at which phase maps are quoted (µm).
    paraxial : use the Fresnel kernel instead of the exact angular spectrum.
    phase_model : ``"opd"`` for a non-dispersive object (φ_λ = 2π·OPD/λ),
        ``"constant"`` for the same phase at every wavelength (paper presets).
    """

    na_objective: float = 0.65
    na_condenser: float = 0.3
    source_points: int = 40
    n_medium: float = 1.33
    wavelength_ref_um: float = 0.55
    paraxial: bool = False
    phase_model: str = "opd"


@dataclass
class Focus:
    """Nominal defocus plus the objective's longitudinal chromatic focal shift.

    ``z(λ) = defocus_um + shift(λ)`` where ``shift`` is the quadratic through the
    three points ``(shift_wavelengths_um[i], shift_um[i])``. The defaults model
    a 40x/0.65 achromat with C/F foci equal and a secondary spectrum of
    about 1 µm (vertex in the green, PHYSICS.md §2.3).
    """

    defocus_um: float = 1.0
    shift_wavelengths_um: tuple[float, float, float] = (0.45, 0.55, 0.65)
    shift_um: tuple[float, float, float] = (0.6, -0.55, 0.35)

    def z_um(self, wavelength_um: float) -> float:
        """Defocus (µm) at a vacuum wavelength (µm), Lagrange quadratic."""
        x, y = self.shift_wavelengths_um, self.shift_um
        total = 0.0
        for i in range(3):
            term = y[i]
            for j in range(3):
                if j != i:
                    term *= (wavelength_um - x[j]) / (x[i] - x[j])
            total += term
        return self.defocus_um + total


@dataclass
class Spectra:
    """Illumination spectrum, camera sensitivities and spectral quadrature.

    Attributes
    ----------
    illuminant : ``"blackbody"`` (halogen at ``temperature_k``), ``"led"``
        (blue pump + phosphor white LED), ``"flat"`` or ``"table"``.
    temperature_k : blackbody colour temperature (K).
    illuminant_table : rows ``[wavelength_um, relative power]`` for ``"table"``.
    camera : ``"default"`` (built-in CMOS-like R,G,B curves) or ``"table"``.
    camera_table : rows ``[wavelength_um, r, g, b]`` for ``"table"``.
    wavelength_min_um, wavelength_max_um, n_wavelengths : quadrature grid
        (10 nm steps over 400-700 nm keep the polychromatic TF error < 0.3 %).
    """

    illuminant: str = "blackbody"
    temperature_k: float = 3100.0
    illuminant_table: list[list[float]] = field(default_factory=list)
    camera: str = "default"
    camera_table: list[list[float]] = field(default_factory=list)
    wavelength_min_um: float = 0.40
    wavelength_max_um: float = 0.70
    n_wavelengths: int = 31


@dataclass
class Sensor:
    """Camera sensor and the normalisation applied to its output.

    ``model``: ``"camera"`` (Poisson shot noise + Gaussian read noise +
    quantisation, PHYSICS.md §3) or ``"gaussian"`` (the reference paper's
    additive N(mean, std) noise, in units of the normalised background).
    Output is always flat-field normalised so that an empty field reads 1.

    ``colour_matrix``: the camera's colour correction, a C x C matrix applied to the (demosaiced,
    white-balanced) channels after readout, ``recorded_c = Σ_j M_cj raw_j``; empty when the camera
    writes its own channels. Rows sum to one, as flat-fielding makes them (an empty field stays
    white). Every method undoes it on input (:func:`chromaqpi.optics.sensor.undo_colour_matrix`):
    it mixes the channels' defocus, which no solver or network would otherwise expect.
    """

    model: str = "camera"
    full_well_e: float = 20000.0
    fill_fraction: float = 0.7
    read_noise_e: float = 2.0
    bit_depth: int = 12
    bayer: bool = False
    gaussian_mean: float = 0.0
    gaussian_std: float = 0.0
    colour_matrix: list[list[float]] = field(default_factory=list)


@dataclass
class Plane:
    """One acquisition plane in planes mode: a wavelength band at a defocus.

    ``bandwidth_um`` is the standard deviation of a Gaussian band; ``0`` is
    monochromatic.
    """

    wavelength_um: float
    defocus_um: float
    bandwidth_um: float = 0.0


@dataclass
class Registration:
    """Where each channel lands on the camera: lateral colour and channel offsets.

    An objective's lateral chromatic aberration images red, green and blue at slightly
    different magnifications, and two exposures can be offset by stage drift. Channel ``c``
    of the recorded image is the ideal image magnified by ``scale[c]`` about the image
    centre, then moved by ``shift_px[c] = [dy, dx]`` camera pixels (down, right).
    :func:`chromaqpi.simulate` applies it and :func:`chromaqpi.reconstruct` undoes it
    before any method (:mod:`chromaqpi.registration`). Empty lists: all 1 / no offset.
    ``image_shape`` = [height, width] of the images it was fitted on (``chromaqpi register``
    records it): a magnification is about *their* centre, so :func:`chromaqpi.reconstruct`
    refuses other sizes rather than undo it about the wrong point. Empty: any size.
    """

    scale: list[float] = field(default_factory=list)
    shift_px: list[list[float]] = field(default_factory=list)
    image_shape: list[int] = field(default_factory=list)

    @property
    def is_identity(self) -> bool:
        return all(s == 1 for s in self.scale) and all(v == 0 for d in self.shift_px for v in d)


@dataclass
class Microscope:
    """Complete optical description used by the simulator and the solvers."""

    name: str = "custom"
    sampling: Sampling = field(default_factory=Sampling)
    optics: Optics = field(default_factory=Optics)
    focus: Focus = field(default_factory=Focus)
    spectra: Spectra = field(default_factory=Spectra)
    sensor: Sensor = field(default_factory=Sensor)
    planes: list[Plane] = field(default_factory=list)
    registration: Registration = field(default_factory=Registration)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ helpers
    @property
    def n_channels(self) -> int:
        """Number of output channels (3 in RGB mode, else the number of planes)."""
        return len(self.planes) if self.planes else 3

    @property
    def channel_names(self) -> list[str]:
        if not self.planes:
            return ["R", "G", "B"]
        return [f"plane{i}" for i in range(len(self.planes))]

    def replace(self, **sections: Any) -> "Microscope":
        """Copy with some sections or fields changed.

        ``m.replace(optics={"na_condenser": 0.2}, name="x")`` updates fields of a
        section; a dataclass instance replaces the section whole.
        """
        data = self.to_dict()
        for key, value in sections.items():
            if dataclasses.is_dataclass(value):
                data[key] = asdict(value)
            elif isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Microscope.from_dict(data)

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` with a one-line message for invalid physics."""
        s, o, sp, se = self.sampling, self.optics, self.spectra, self.sensor
        # Types (and finite numbers) first, as from_dict checks them: a NaN defocus or a string NA built
        # in Python would otherwise pass every comparison below, or fail deep inside the optics.
        for where, section in (("sampling", s), ("optics", o), ("focus", self.focus), ("spectra", sp),
                               ("sensor", se), *((f"planes[{i}]", p) for i, p in enumerate(self.planes))):
            _check_scalars(section, where)
        _check(s.pixel_size_um > 0, "sampling.pixel_size_um must be > 0 (µm)")
        _check(s.pixel_size_um < 5, "sampling.pixel_size_um looks like the camera pixel, not µm at the sample "
               "(divide by the magnification)")
        _check(isinstance(s.oversample, int) and s.oversample >= 1, "sampling.oversample must be an integer >= 1")
        _check(isinstance(s.pad_px, int) and s.pad_px >= 0, "sampling.pad_px must be an integer >= 0")
        _check(o.n_medium >= 1.0, "optics.n_medium must be >= 1")
        _check(0 <= o.na_objective <= o.n_medium,
               f"optics.na_objective={o.na_objective} must be in [0, n_medium={o.n_medium}]")
        _check(0 <= o.na_condenser <= o.n_medium, "optics.na_condenser must be in [0, n_medium]")
        _check(o.source_points >= 1, "optics.source_points must be >= 1")
        _check(0.2 < o.wavelength_ref_um < 2.0, "optics.wavelength_ref_um must be in µm (e.g. 0.55)")
        _check(o.phase_model in ("opd", "constant"), "optics.phase_model must be 'opd' or 'constant'")
        _check(len(self.focus.shift_um) == 3 and len(self.focus.shift_wavelengths_um) == 3,
               "focus.shift_um and focus.shift_wavelengths_um need exactly three values")
        # Not compared below, so a string here would only fail deep inside the optics.
        _check(all(map(is_number, (self.focus.defocus_um, *self.focus.shift_um, *self.focus.shift_wavelengths_um))),
               "focus.defocus_um, focus.shift_um and focus.shift_wavelengths_um must be finite numbers (µm)")
        _check(all(abs(v) <= MAX_DEFOCUS_UM for v in (self.focus.defocus_um, *self.focus.shift_um)),
               f"focus.defocus_um and focus.shift_um must be in µm (|z| <= {MAX_DEFOCUS_UM:g}), got "
               f"{self.focus.defocus_um:g} and {list(self.focus.shift_um)}: nm?")
        _check(isinstance(o.paraxial, bool) and isinstance(se.bayer, bool),
               "optics.paraxial and sensor.bayer must be true or false")
        _check(len(set(self.focus.shift_wavelengths_um)) == 3, "focus.shift_wavelengths_um must be distinct")
        _check(sp.illuminant in ("blackbody", "led", "flat", "table"),
               "spectra.illuminant must be blackbody, led, flat or table")
        _check(sp.camera in ("default", "table"), "spectra.camera must be 'default' or 'table'")
        _check(sp.illuminant != "table" or len(sp.illuminant_table) >= 2,
               "spectra.illuminant='table' needs spectra.illuminant_table rows [wavelength_um, power]")
        _check(sp.camera != "table" or len(sp.camera_table) >= 2,
               "spectra.camera='table' needs spectra.camera_table rows [wavelength_um, r, g, b]")
        _check(sp.temperature_k > 500, "spectra.temperature_k must be in kelvin (> 500)")
        _check(0.2 < sp.wavelength_min_um < sp.wavelength_max_um < 2.0,
               "spectra wavelengths must be in µm with min < max")
        _check(sp.n_wavelengths >= 1, "spectra.n_wavelengths must be >= 1")
        _check(se.model in ("camera", "gaussian"), "sensor.model must be 'camera' or 'gaussian'")
        _check(se.full_well_e > 0 and 0 < se.fill_fraction <= 1, "sensor.full_well_e > 0 and 0 < fill_fraction <= 1")
        _check(se.read_noise_e >= 0 and se.gaussian_std >= 0, "sensor noise levels must be >= 0")
        _check(1 <= se.bit_depth <= 32, "sensor.bit_depth must be in [1, 32]")
        _check(not (se.bayer and self.planes), "sensor.bayer needs RGB mode (no planes)")
        for i, p in enumerate(self.planes):
            _check(0.2 < p.wavelength_um < 2.0, f"planes[{i}].wavelength_um must be in µm")
            _check(p.bandwidth_um >= 0, f"planes[{i}].bandwidth_um must be >= 0")
            _check(is_number(p.defocus_um), f"planes[{i}].defocus_um must be a finite number (µm)")
            _check(abs(p.defocus_um) <= MAX_DEFOCUS_UM,
                   f"planes[{i}].defocus_um must be in µm (|z| <= {MAX_DEFOCUS_UM:g}), got {p.defocus_um:g}: nm?")
        self._check_registration()
        self._check_colour_matrix()
        self._check_sampling()

    def _check_registration(self) -> None:
        r, n = self.registration, self.n_channels
        _check(isinstance(r.scale, (list, tuple)) and isinstance(r.shift_px, (list, tuple)),
               "registration.scale and registration.shift_px must be lists, one entry per channel")
        _check(len(r.scale) in (0, n), f"registration.scale needs one value per channel ({n}), got {len(r.scale)}")
        # Lateral colour is well under 1 %; 10 % would be a different objective or a typo.
        _check(all(is_number(v) and 0.9 <= v <= 1.1 for v in r.scale),
               "registration.scale values must be magnifications near 1 (0.9 to 1.1)")
        _check(len(r.shift_px) in (0, n), f"registration.shift_px needs one [dy, dx] per channel ({n}), "
               f"got {len(r.shift_px)}")
        _check(all(isinstance(d, (list, tuple)) and len(d) == 2 and all(is_number(v) and abs(v) <= 64 for v in d)
                   for d in r.shift_px), "registration.shift_px entries must be [dy, dx] pixel offsets within ±64")
        _check(isinstance(r.image_shape, (list, tuple)) and len(r.image_shape) in (0, 2)
               and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in r.image_shape),
               "registration.image_shape must be [height, width] in pixels, or empty")

    def _check_colour_matrix(self) -> None:
        m, n = self.sensor.colour_matrix, self.n_channels
        if isinstance(m, (list, tuple)) and len(m) == 0:
            return
        import numpy as np

        square = isinstance(m, (list, tuple)) and len(m) == n and all(
            isinstance(row, (list, tuple)) and len(row) == n for row in m)
        # Any real number here (NaN and Inf get their own message below)
        _check(square and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for row in m for v in row),
               f"sensor.colour_matrix must be {n} rows of {n} numbers (one per channel), or empty")
        array = np.asarray(m, dtype=float)
        _check(bool(np.isfinite(array).all()), "sensor.colour_matrix holds NaN or Inf")
        sums = array.sum(axis=1)
        _check(bool(np.all(np.abs(sums - 1) <= 1e-3)),
               f"sensor.colour_matrix rows must each sum to 1 (an empty field stays white), got sums "
               f"{', '.join(f'{v:.4g}' for v in sums)}: divide each row by its sum")
        # Undoing it multiplies the noise by up to the condition number; past 100 the channels are lost.
        _check(float(np.linalg.cond(array)) < 100, "sensor.colour_matrix is singular or nearly so "
               "(condition number >= 100): the camera's own channels cannot be recovered")

    def _check_sampling(self) -> None:
        # Intensity bandwidth (NA_det + NA_ill)/λ must fit the simulation grid.
        o = self.optics
        if o.na_objective == 0:
            return
        lam_min = min(p.wavelength_um for p in self.planes) if self.planes else self.spectra.wavelength_min_um
        dx_sim = self.sampling.pixel_size_um / self.sampling.oversample
        nyquist_dx = lam_min / (2 * (o.na_objective + o.na_condenser))
        if dx_sim > nyquist_dx * 1.0001:
            # Real cameras often undersample; warn instead of refusing.
            warnings.warn(f"simulation grid {dx_sim:.3f} µm is coarser than Nyquist {nyquist_dx:.3f} µm "
                          f"for NA {o.na_objective}+{o.na_condenser}: intensities alias; raise sampling.oversample",
                          stacklevel=3)

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["focus"]["shift_wavelengths_um"] = list(self.focus.shift_wavelengths_um)
        data["focus"]["shift_um"] = list(self.focus.shift_um)
        registration = self.registration
        if registration.is_identity and not registration.image_shape:  # configs and caches as before the section
            del data["registration"]
        elif not registration.image_shape:
            del data["registration"]["image_shape"]  # written only when known
        if not self.sensor.colour_matrix:  # the camera's own channels: configs and caches as before the field
            del data["sensor"]["colour_matrix"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Microscope":
        if not isinstance(data, dict):
            raise ConfigError("microscope config must be a table/dict")
        _reject_unknown(data, cls, "microscope")
        kwargs: dict[str, Any] = {}
        sections = {"sampling": Sampling, "optics": Optics, "focus": Focus, "spectra": Spectra, "sensor": Sensor,
                    "registration": Registration}
        for key, value in data.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key == "planes":
                if not isinstance(value, list):
                    raise ConfigError("planes must be a list of tables")
                kwargs[key] = [_build(Plane, p, f"planes[{i}]") for i, p in enumerate(value)]
            else:
                kwargs[key] = value
        if "focus" in kwargs:
            f = kwargs["focus"]
            try:
                f.shift_wavelengths_um = tuple(f.shift_wavelengths_um)
                f.shift_um = tuple(f.shift_um)
            except TypeError:  # a scalar where a list is needed
                raise ConfigError("focus.shift_um and focus.shift_wavelengths_um must be lists of three "
                                  "numbers") from None
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong value types reach dataclass init
            raise ConfigError(f"invalid microscope config: {exc}") from None

    def to_toml(self, path: str | Path | None = None) -> str:
        """Serialise to TOML; write atomically to ``path`` if given."""
        import tomli_w

        text = tomli_w.dumps(self.to_dict())
        if path is not None:
            from chromaqpi.io import atomic_write

            with atomic_write(path, "w") as handle:
                handle.write(text)
        return text

    @classmethod
    def from_toml(cls, path: str | Path) -> "Microscope":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"microscope file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:  # name the file: a typo is found where the user looks
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_preset(cls, name: str) -> "Microscope":
        if name not in PRESETS:
            raise ConfigError(f"unknown microscope preset {name!r}; choose from {', '.join(list_presets())}")
        return PRESETS[name]()

    @classmethod
    def resolve(cls, spec: "str | Path | dict | Microscope") -> "Microscope":
        """A preset name, a TOML path, a dict (:meth:`to_dict`'s) or a Microscope -> Microscope."""
        if isinstance(spec, Microscope):
            return spec
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        if not isinstance(spec, (str, Path)):
            raise ConfigError(f"microscope must be a Microscope, preset name, TOML path or dict, "
                              f"got {type(spec).__name__}")
        text = str(spec)
        if text in PRESETS:
            return cls.from_preset(text)
        if text.endswith(".toml") or Path(text).exists():
            return cls.from_toml(text)
        raise ConfigError(f"{text!r} is neither a preset ({', '.join(list_presets())}) nor a TOML file")


#: Defocus and chromatic focal shifts beyond this (µm) are taken for nm: chromatic QPI works within a few
#: µm of focus (a 1000 "µm" shift made phases 1000x too small, with no other sign).
MAX_DEFOCUS_UM = 100.0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _reject_unknown(data: dict, cls: type, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _check_scalars(section: Any, where: str) -> None:
    """Every scalar field of a config section has its annotated kind (:data:`_SCALAR_TYPES`)."""
    for f in fields(section):
        value = getattr(section, f.name)
        _check(_SCALAR_TYPES.get(f.type, lambda v: True)(value),
               f"{where}.{f.name} must be {_SCALAR_NAMES.get(f.type)}, got {value!r}")


def _build(cls: type, value: Any, where: str):
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    _reject_unknown(value, cls, where)
    for f in fields(cls):
        if f.name in value and not _SCALAR_TYPES.get(f.type, lambda v: True)(value[f.name]):
            raise ConfigError(f"{where}.{f.name} must be {_SCALAR_NAMES[f.type]}, got {value[f.name]!r}")
    try:
        return cls(**value)
    except TypeError as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


# Scalar fields by annotation: what a config value must be (a string NA or a fractional
# source-point count would otherwise fail deep in the optics, or pass unnoticed).
_SCALAR_TYPES = {"float": is_number, "int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
                 "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}
_SCALAR_NAMES = {"float": "a finite number", "int": "an integer", "bool": "true or false", "str": "a string"}


# ------------------------------------------------------------------- presets
def _default() -> Microscope:
    # 40x/0.65 achromat, condenser at sigma ~0.45, halogen lamp, colour camera
    # with 6.5 µm pixels (0.1625 µm at the sample). A nominal defocus of 1 µm
    # puts all three channels on one side of focus with distinct z_eff, so the
    # RGB stack is not degenerate (PHYSICS.md §2.3 worked example).
    return Microscope(name="default")


def _paper_2shot() -> Microscope:
    # arXiv 2406.04388 two-shot protocol: λ 0.521 µm, ±1 µm, 0.21 µm pixels,
    # coherent on-axis plane wave, no pupil, paraxial kernel, n = 1, no padding,
    # the same phase at every wavelength. Their z is our -z; our channel order
    # is (z = -1, z = +1) in our convention.
    return Microscope(
        name="paper-2shot",
        sampling=Sampling(pixel_size_um=0.21, oversample=1, pad_px=0),
        optics=Optics(na_objective=0.0, na_condenser=0.0, source_points=1, n_medium=1.0,
                      wavelength_ref_um=0.521, paraxial=True, phase_model="constant"),
        sensor=Sensor(model="gaussian"),
        planes=[Plane(0.521, -1.0), Plane(0.521, 1.0)],
    )


def _paper_rgb() -> Microscope:
    # arXiv 2406.04388 polychromatic evaluation: monochromatic R/G/B at
    # 0.630/0.530/0.450 µm, every channel at their z = -1 µm, i.e. our z = +1.
    # We use this sign (our z > 0) for the training randomisation too, and the
    # evaluation green wavelength (0.530 µm) everywhere.
    return Microscope(
        name="paper-rgb",
        sampling=Sampling(pixel_size_um=0.21, oversample=1, pad_px=0),
        optics=Optics(na_objective=0.0, na_condenser=0.0, source_points=1, n_medium=1.0,
                      wavelength_ref_um=0.530, paraxial=True, phase_model="constant"),
        sensor=Sensor(model="gaussian"),
        planes=[Plane(0.630, 1.0), Plane(0.530, 1.0), Plane(0.450, 1.0)],
    )


PRESETS = {"default": _default, "paper-2shot": _paper_2shot, "paper-rgb": _paper_rgb}


def list_presets() -> list[str]:
    """Names accepted by :meth:`Microscope.from_preset`."""
    return sorted(PRESETS)


def channel_centroids_um(microscope: Microscope) -> tuple[list[float], list[float]]:
    """Per-channel spectrally weighted defocus ``z_eff,c = Σ w_c(λ) z(λ)`` and centroid wavelength
    ``λ_c = Σ w_c(λ) λ`` (µm), from one channel quadrature."""
    from chromaqpi.optics.spectra import channel_quadrature

    quad = channel_quadrature(microscope)
    channels = range(len(quad.weights))
    z = [float(sum(w * z for w, z in zip(quad.weights[c], quad.defocus_um))) for c in channels]
    lam = [float(sum(w * lam for w, lam in zip(quad.weights[c], quad.wavelength_um))) for c in channels]
    return z, lam


def effective_defocus_um(microscope: Microscope) -> list[float]:
    """Per-channel spectrally weighted defocus ``z_eff,c = Σ w_c(λ) z(λ)`` (µm)."""
    return channel_centroids_um(microscope)[0]


def effective_wavelength_um(microscope: Microscope) -> list[float]:
    """Per-channel centroid wavelength ``λ_c = Σ w_c(λ) λ`` (µm)."""
    return channel_centroids_um(microscope)[1]

