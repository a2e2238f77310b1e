"""Illumination spectra, camera sensitivities and the per-channel spectral quadrature.

Every channel image is a weighted sum of monochromatic images (PHYSICS.md §2.1):
``I_c = Σ_k w_ck · I_{λ_k, z_k}``. :func:`channel_quadrature` returns the nodes
``(λ_k, z_k)`` -- each computed once and shared by all channels -- and the
weight matrix ``w`` (rows sum to one, so an empty field reads 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chromaqpi.errors import ConfigError

# Second radiation constant h*c/k_B in µm·K.
_C2_UM_K = 14387.769

# Built-in camera model: sums of Gaussians (centre µm, FWHM µm, amplitude)
# with the peaks and widths of a consumer CMOS sensor's R, G, B channels
# (NPL measurements of a Nikon D5100, Darrodi et al. JOSA A 32:381, 2015:
# peaks 595/530/460 nm) and their typical crosstalk lobes.
_CAMERA_LOBES = {
    "r": [(0.600, 0.060, 1.0), (0.520, 0.060, 0.06), (0.450, 0.040, 0.03)],
    "g": [(0.535, 0.085, 1.0), (0.600, 0.050, 0.08), (0.470, 0.040, 0.08)],
    "b": [(0.460, 0.075, 1.0), (0.530, 0.050, 0.08)],
}


@dataclass(frozen=True)
class ChannelQuadrature:
    """Spectral quadrature shared by all channels.

    Attributes
    ----------
    wavelength_um : (K,) vacuum wavelengths of the nodes (µm).
    defocus_um : (K,) defocus of each node (µm).
    weights : (C, K) non-negative weights, each row summing to one.
    """

    wavelength_um: np.ndarray
    defocus_um: np.ndarray
    weights: np.ndarray


def _gaussian_fwhm(lam: np.ndarray, centre: float, fwhm: float) -> np.ndarray:
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return np.exp(-0.5 * ((lam - centre) / sigma) ** 2)


def blackbody(lam_um: np.ndarray, temperature_k: float) -> np.ndarray:
    """Planck spectral radiance (arbitrary units) at wavelengths in µm."""
    return lam_um**-5.0 / np.expm1(_C2_UM_K / (lam_um * temperature_k))


def white_led(lam_um: np.ndarray) -> np.ndarray:
    """Phosphor-converted white LED: blue pump near 450 nm plus a broad phosphor band."""
    return _gaussian_fwhm(lam_um, 0.450, 0.022) + 0.55 * _gaussian_fwhm(lam_um, 0.565, 0.120)


def _interp_table(lam_um: np.ndarray, table: list[list[float]], column: int, what: str) -> np.ndarray:
    arr = np.asarray(table, dtype=float)
    if arr.ndim != 2 or arr.shape[1] <= column:
        raise ConfigError(f"{what} table needs rows with at least {column + 1} numbers")
    order = np.argsort(arr[:, 0])
    values = np.interp(lam_um, arr[order, 0], arr[order, column], left=0.0, right=0.0)
    if np.any(arr[:, column] < 0):
        raise ConfigError(f"{what} table has negative values")
    return values


def illuminant(lam_um: np.ndarray, spectra) -> np.ndarray:
    """Relative lamp spectrum L(λ) for a :class:`~chromaqpi.microscope.Spectra`."""
    kind = spectra.illuminant
    if kind == "blackbody":
        return blackbody(lam_um, spectra.temperature_k)
    if kind == "led":
        return white_led(lam_um)
    if kind == "flat":
        return np.ones_like(lam_um)
    return _interp_table(lam_um, spectra.illuminant_table, 1, "illuminant")


def camera_sensitivity(lam_um: np.ndarray, spectra) -> np.ndarray:
    """(3, K) relative R, G, B quantum efficiencies Q_c(λ)."""
    if spectra.camera == "table":
        return np.stack([_interp_table(lam_um, spectra.camera_table, c, "camera") for c in (1, 2, 3)])
    rows = []
    for ch in "rgb":
        rows.append(sum(a * _gaussian_fwhm(lam_um, c, w) for c, w, a in _CAMERA_LOBES[ch]))
    return np.stack(rows)


def _normalise_rows(w: np.ndarray, what: str) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ConfigError(f"{what}: a channel receives no light over the wavelength grid")
    return w / total


def channel_quadrature(microscope) -> ChannelQuadrature:
    """Spectral nodes and per-channel weights for a microscope (RGB or planes mode)."""
    sp = microscope.spectra
    grid = np.linspace(sp.wavelength_min_um, sp.wavelength_max_um, sp.n_wavelengths)
    if sp.n_wavelengths == 1:
        grid = np.array([0.5 * (sp.wavelength_min_um + sp.wavelength_max_um)])
    if not microscope.planes:
        w = illuminant(grid, sp)[None, :] * camera_sensitivity(grid, sp)
        z = np.array([microscope.focus.z_um(lam) for lam in grid])
        return ChannelQuadrature(grid, z, _normalise_rows(w, "spectra"))
    return _planes_quadrature(microscope.planes, grid)


def _planes_quadrature(planes, grid: np.ndarray) -> ChannelQuadrature:
    # Each plane owns its nodes (its own defocus); identical (λ, z) nodes are
    # merged so that e.g. several planes at one wavelength share the FFT.
    nodes: dict[tuple[float, float], int] = {}
    entries: list[list[tuple[int, float]]] = []
    for plane in planes:
        if plane.bandwidth_um == 0:
            lams, ws = np.array([plane.wavelength_um]), np.array([1.0])
        else:
            ws = np.exp(-0.5 * ((grid - plane.wavelength_um) / plane.bandwidth_um) ** 2)
            keep = ws > 1e-6 * ws.max()
            lams, ws = grid[keep], ws[keep]
        row = []
        for lam, wgt in zip(lams, ws):
            key = (round(float(lam), 9), round(float(plane.defocus_um), 9))
            row.append((nodes.setdefault(key, len(nodes)), float(wgt)))
        entries.append(row)
    weights = np.zeros((len(planes), len(nodes)))
    for c, row in enumerate(entries):
        for k, wgt in row:
            weights[c, k] += wgt
    keys = list(nodes)
    return ChannelQuadrature(
        np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), _normalise_rows(weights, "planes")
    )


# ---------------------------------------------------------------- stains
@dataclass(frozen=True)
class Stain:
    """Relative extinction spectrum of an absorber whose attenuation depends on wavelength.

    A stain of attenuation map ``a`` attenuates the amplitude at wavelength λ by ``a·s(λ)/s̄``, where
    ``s(λ) = baseline + Σ height·G(λ; centre, FWHM)`` and ``s̄`` is ``s`` averaged over the light that
    reaches the camera (the mean channel's quadrature weights). The normalisation keeps the mean
    attenuation that of a grey absorber with the same ``a``: only its colour differs.

    Attributes
    ----------
    name : what it is called in reports.
    bands : ``(centre µm, FWHM µm, height)`` Gaussian absorption bands.
    baseline : extinction common to all wavelengths.
    """

    name: str
    bands: tuple[tuple[float, float, float], ...] = ()
    baseline: float = 0.0

    def __post_init__(self):
        try:
            bands = tuple((float(c), float(w), float(h)) for c, w, h in self.bands)
            baseline = float(self.baseline)
        except (TypeError, ValueError):
            raise ConfigError(f"stain {self.name!r}: bands must be (centre µm, FWHM µm, height) triples and the "
                              "baseline a number") from None
        if not all(np.isfinite(v) for band in bands for v in band) or not np.isfinite(baseline):
            raise ConfigError(f"stain {self.name!r}: bands and baseline must be finite")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "baseline", baseline)
        if self.baseline < 0 or any(h < 0 or w <= 0 for _, w, h in self.bands):
            raise ConfigError(f"stain {self.name!r}: heights and baseline must be >= 0 and widths > 0")
        if self.baseline == 0 and not any(h > 0 for _, _, h in self.bands):
            raise ConfigError(f"stain {self.name!r} absorbs at no wavelength")

    def extinction(self, lam_um: np.ndarray) -> np.ndarray:
        """Unnormalised relative extinction s(λ) at wavelengths in µm."""
        lam_um = np.asarray(lam_um, dtype=float)
        return self.baseline + sum((h * _gaussian_fwhm(lam_um, c, w) for c, w, h in self.bands),
                                   np.zeros_like(lam_um))

    def node_scales(self, quadrature: ChannelQuadrature) -> np.ndarray:
        """(K,) factor on the attenuation map at each quadrature node, ``s(λ_k)/s̄``."""
        s = self.extinction(quadrature.wavelength_um)
        mean = float(quadrature.weights.mean(axis=0) @ s)
        if mean <= 0:
            raise ConfigError(f"stain {self.name!r} absorbs none of the light the camera records")
        return s / mean

    def channel_extinction(self, quadrature: ChannelQuadrature) -> np.ndarray:
        """(C,) each channel's relative attenuation for a weak stain, ``σ_c = Σ_k W_ck s(λ_k)/s̄`` (mean 1)."""
        return quadrature.weights @ self.node_scales(quadrature)


# Gaussian bands at published absorption peaks; the shapes are approximate, not measured spectra.
STAINS = {
    "grey": Stain("grey", baseline=1.0),
    # eosin Y bound in tissue: peak near 525 nm with a shoulder near 490 nm (pink)
    "eosin": Stain("eosin", ((0.525, 0.045, 1.0), (0.490, 0.035, 0.3)), 0.02),
    # haematoxylin (aluminium lake): one broad band near 585 nm (blue-purple)
    "haematoxylin": Stain("haematoxylin", ((0.585, 0.12, 1.0),), 0.05),
    # oxyhaemoglobin: Soret band at 415 nm, Q bands at 542 and 577 nm (red blood cells look red-orange)
    "haemoglobin": Stain("haemoglobin", ((0.415, 0.035, 10.0), (0.542, 0.030, 1.0), (0.577, 0.022, 1.05)), 0.03),
    # methylene blue: peak at 665 nm with a shoulder near 610 nm (blue)
    "methylene-blue": Stain("methylene-blue", ((0.665, 0.060, 1.0), (0.610, 0.050, 0.4)), 0.01),
}


def get_stain(stain) -> Stain | None:
    """A :class:`Stain` from itself, a name in :data:`STAINS`, or None (grey, the same at every λ)."""
    if stain is None or isinstance(stain, Stain):
        return stain
    if isinstance(stain, str) and stain in STAINS:
        return STAINS[stain]
    raise ConfigError(f"unknown stain {stain!r}; choose from {', '.join(STAINS)} or pass a Stain")
