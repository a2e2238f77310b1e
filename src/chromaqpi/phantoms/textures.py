"""Generic random OPD textures and the slow background phase drift of a scene.

- :func:`gaussian_random_field` -- stationary Gaussian field with a power-law spectrum,
  the classic model of rough, scale-free surfaces and of tissue index fluctuations.
- :class:`TextureSource` -- a phase source made of such fields (no objects, no mask).
- :func:`dead_leaves` -- occluding random ellipses with power-law sizes, the classic
  model of natural-image statistics (edges at all scales, a near 1/f^2 spectrum).
- :class:`DeadLeavesSource` -- a phase source of such images, scaled like pictures, so
  training meets an endless supply of picture-like scenes instead of a few photographs.
- :func:`drift_field_rad` -- a smooth quadratic background (coverslip tilt, uneven medium
  thickness) rebuilt exactly from the coefficients stored in a sample's meta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms._params import draw
from chromaqpi.phantoms.sample import PhaseSample, check_pixel_size, check_shape, opd_from_phase

__all__ = ["gaussian_random_field", "TextureSource", "dead_leaves", "DeadLeavesSource", "drift_field_rad",
           "random_drift_coeffs", "DRIFT_BASIS"]


def gaussian_random_field(shape, pixel_size_um: float, *, rng: np.random.Generator, beta: float = 3.0, outer_scale_um: float | None = None) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with a power-law spectrum.

    Parameters
    ----------
    shape : (int, int)
        Grid shape (H, W).
    pixel_size_um : float
        Pixel pitch, µm (sets the frequency axis of the spectrum).
    rng : numpy.random.Generator
        Source of randomness.
    beta : float
        Spectral exponent: power ``P(f) ∝ (f^2 + f0^2)^(-beta/2)``. 2 gives rough,
        4 gives smooth fields. Dimensionless.
    outer_scale_um : float, optional
        Largest correlated length, µm (``f0 = 1/outer_scale_um``); default: the longer
        side of the grid.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32

    Notes
    -----
    White Gaussian noise is filtered in Fourier space by ``sqrt(P(f))`` on a grid twice
    the requested size and then cropped, so the field does not wrap around the edges
    (a periodic texture would hide boundary artefacts of the simulator's padding).
    """
    h, w = check_shape(shape)
    dx = check_pixel_size(pixel_size_um)
    ph, pw = 2 * h, 2 * w
    f0 = 1.0 / (outer_scale_um if outer_scale_um else max(h, w) * dx)
    fy = np.fft.fftfreq(ph, dx)[:, None]
    fx = np.fft.fftfreq(pw, dx)[None, :]
    amplitude = (fy * fy + fx * fx + f0 * f0) ** (-float(beta) / 4.0)
    amplitude[0, 0] = 0.0  # the mean is set below, not by the DC term
    noise = rng.standard_normal((ph, pw))
    field = np.fft.ifft2(np.fft.fft2(noise) * amplitude).real[:h, :w]
    field = field - field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


@dataclass(frozen=True)
class TextureSource:
    """Phase source of Gaussian random field textures: a thin film of random thickness.

    Each call draws ``beta`` and a peak OPD, makes a field with
    :func:`gaussian_random_field` and maps it linearly to ``[0, opd_max_um]``.

    Parameters
    ----------
    beta : float or (float, float)
        Spectral exponent, or a range to draw it from uniformly (dimensionless).
    opd_max_um : float or (float, float)
        Peak OPD (µm) of the texture, or a range; 0.3 µm is 3.4 rad at 0.55 µm.
    outer_scale_um : float, optional
        Largest correlated length, µm; default: the grid size.
    """

    beta: float | tuple[float, float] = (2.0, 4.0)
    opd_max_um: float | tuple[float, float] = (0.05, 0.3)
    outer_scale_um: float | None = None

    def __call__(self, shape, pixel_size_um: float, rng: np.random.Generator) -> PhaseSample:
        beta = draw(rng, self.beta, "beta")
        peak = draw(rng, self.opd_max_um, "opd_max_um")
        g = gaussian_random_field(shape, pixel_size_um, rng=rng, beta=beta, outer_scale_um=self.outer_scale_um).astype(np.float64)
        span = g.max() - g.min()
        opd = peak * (g - g.min()) / span if span > 0 else np.zeros_like(g)
        meta = {"source": "textures", "has_mask": False, "beta": beta, "opd_max_um": peak}
        return PhaseSample(opd, np.zeros(opd.shape, np.int32), pixel_size_um, meta)


def dead_leaves(shape, *, rng: np.random.Generator, radius_px=(2.0, 128.0), exponent: float = 3.0,
                max_leaves: int = 100_000) -> np.ndarray:
    """A dead-leaves image: random ellipses stacked until they hide the whole grid.

    Parameters
    ----------
    shape : (int, int)
        Grid shape (H, W).
    rng : numpy.random.Generator
    radius_px : (float, float)
        Smallest and largest leaf semi-major axis, pixels.
    exponent : float
        Sizes follow ``p(r) ∝ r^-exponent``; 3 is scale invariant (Lee, Mumford & Huang
        2001) and gives a power spectrum close to ``1/f^2`` between the two radii.
    max_leaves : int
        Safety cap; pixels still bare after it take one more random value.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32, values in [0, 1]; each leaf one uniform grey.

    Notes
    -----
    Leaves are drawn front to back and only paint bare pixels, which has the same
    distribution as dropping them back to front forever, but stops once covered.
    Centres fall up to one radius outside the grid so the borders are not thinner.
    """
    h, w = check_shape(shape)
    r_lo, r_hi = (float(r) for r in radius_px)
    if not 0 < r_lo <= r_hi or exponent == 1.0:
        raise ConfigError(f"dead_leaves needs 0 < radius_px[0] <= radius_px[1] and exponent != 1, "
                          f"got {radius_px!r}, {exponent!r}")
    out = np.full((h, w), np.nan)
    bare = h * w
    k = 1.0 - float(exponent)
    for _ in range(int(max_leaves)):
        r = (r_lo**k + rng.uniform() * (r_hi**k - r_lo**k)) ** (1.0 / k)  # inverse CDF of r^-exponent
        b, theta, value = r * rng.uniform(0.4, 1.0), rng.uniform(0.0, np.pi), rng.uniform()
        cy, cx = rng.uniform(-r, h + r), rng.uniform(-r, w + r)
        y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1)[:, None] - cy
        dx = np.arange(x0, x1)[None, :] - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / r
        v = (dy * np.cos(theta) - dx * np.sin(theta)) / b
        patch = out[y0:y1, x0:x1]
        paint = (u * u + v * v <= 1.0) & np.isnan(patch)
        patch[paint] = value
        bare -= int(paint.sum())
        if bare == 0:
            break
    out[np.isnan(out)] = rng.uniform()
    return out.astype(np.float32)


@dataclass(frozen=True)
class DeadLeavesSource:
    """Phase source of dead-leaves scenes, mapped onto a phase range like the pictures.

    Each call draws a :func:`dead_leaves` image, optionally softens its edges with a
    Gaussian blur and adds a Gaussian-random-field texture (so leaves are not all flat),
    then maps it linearly onto the phase range, as the image sources do.

    Parameters
    ----------
    radius_px : (float, float)
        Leaf size range, pixels.
    blur_px : float or (float, float)
        Gaussian blur sigma (pixels), or a range.
    texture : float or (float, float)
        Standard deviation of the added texture relative to the leaves' grey range [0, 1].
    phase_range_rad : (lo, hi)
        As for the image sources; each end a number or a range. Default [0, 3.5] rad.
    wavelength_um : float
        Reference wavelength (µm) at which the phase holds.
    """

    radius_px: tuple[float, float] = (2.0, 128.0)
    blur_px: float | tuple[float, float] = (0.0, 1.5)
    texture: float | tuple[float, float] = (0.0, 0.15)
    phase_range_rad: tuple = (0.0, 3.5)
    wavelength_um: float = 0.55

    def __call__(self, shape, pixel_size_um: float, rng: np.random.Generator) -> PhaseSample:
        from scipy.ndimage import gaussian_filter

        from chromaqpi.phantoms.images import _draw_range, scale_to_range

        lo, hi = _draw_range(rng, self.phase_range_rad)
        blur, texture = draw(rng, self.blur_px, "blur_px"), draw(rng, self.texture, "texture")
        grey = dead_leaves(shape, rng=rng, radius_px=self.radius_px).astype(np.float64)
        if blur > 0:
            grey = gaussian_filter(grey, blur, mode="reflect")
        beta = float(rng.uniform(2.0, 4.0))
        grey = grey + texture * gaussian_random_field(shape, pixel_size_um, rng=rng, beta=beta)
        phase = scale_to_range(grey, lo, hi)
        meta = {"source": "deadleaves", "has_mask": False, "wavelength_um": float(self.wavelength_um),
                "blur_px": blur, "texture": texture, "texture_beta": beta, "phase_range_rad": [lo, hi]}
        return PhaseSample(opd_from_phase(phase, self.wavelength_um), np.zeros(phase.shape, np.int32), pixel_size_um, meta)


#: Names of the drift basis functions, in the order of the stored coefficients.
DRIFT_BASIS = ("1", "y", "x", "P2(y)", "x*y", "P2(x)")


def drift_field_rad(shape, coeffs_rad) -> np.ndarray:
    """Smooth background phase (rad) from six coefficients on the :data:`DRIFT_BASIS`.

    The basis holds Legendre polynomials up to degree 2 in y and x, both normalised to
    [-1, 1] across the grid (pixel centres). Returns float64 (H, W).
    """
    h, w = check_shape(shape)
    y = _unit_axis(h)[:, None]
    x = _unit_axis(w)[None, :]
    basis = (np.ones((h, w)), y + 0 * x, x + 0 * y, _p2(y) + 0 * x, x * y, _p2(x) + 0 * y)
    return sum(float(c) * b for c, b in zip(coeffs_rad, basis))


def random_drift_coeffs(shape, amplitude_rad: float, rng: np.random.Generator) -> list[float]:
    """Coefficients of a random drift with peak-to-peak ``amplitude_rad`` and zero mean."""
    coeffs = [0.0] + list(rng.standard_normal(len(DRIFT_BASIS) - 1))
    field = drift_field_rad(shape, coeffs)
    ptp = float(field.max() - field.min())
    if amplitude_rad <= 0 or ptp == 0:
        return [0.0] * len(DRIFT_BASIS)
    coeffs = [c * amplitude_rad / ptp for c in coeffs]
    # zero mean: the medium stays the phase reference on average
    coeffs[0] = -float(drift_field_rad(shape, coeffs).mean())
    return [float(c) for c in coeffs]


def _unit_axis(n: int) -> np.ndarray:
    return np.zeros(1) if n == 1 else np.linspace(-1.0, 1.0, n)


def _p2(t):
    return 1.5 * t * t - 0.5
