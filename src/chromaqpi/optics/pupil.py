"""Frequency grids, Köhler source sampling, objective pupil and defocus kernels.

Pure, batched torch functions. Conventions (PHYSICS.md §0-1): forward FFT
``Σ g e^{-i2πf·x}``; a plane wave to +z is ``e^{+i2πk_z z}``; the angular-spectrum
defocus factor is ``D_z(f) = exp(i2πz(k_z(f) - n/λ))`` (constant phase dropped).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def frequency_grid(shape: tuple[int, int], dx_um: float, *, dtype=torch.float64, device=None):
    """(fy, fx) spatial-frequency grids (cycles/µm) in FFT order, each (H, W)."""
    h, w = shape
    fy = torch.fft.fftfreq(h, d=dx_um, dtype=dtype, device=device)
    fx = torch.fft.fftfreq(w, d=dx_um, dtype=dtype, device=device)
    return torch.meshgrid(fy, fx, indexing="ij")


def source_points(na_condenser: float, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Abbe source points in direction cosines for a uniform condenser disk.

    Equal-width annuli, each sampled by a multiple of four equally spaced points
    at the radius that preserves the annulus' second moment, and weighted by
    the annulus area. The set is invariant under flips and quarter turns (so is
    the simulator, which makes D4 augmentations exact) and point-symmetric, so
    in-focus phase contrast vanishes and ±z symmetry holds exactly; matching
    the disk's radial moments makes the image converge much faster with the
    number of points than a clipped square lattice does.

    Returns
    -------
    nu : (S, 2) direction cosines (ν_y, ν_x), S ≈ n_target.
    weights : (S,) non-negative weights summing to one.
    """
    if na_condenser <= 0 or n_target <= 1:
        return np.zeros((1, 2)), np.ones(1)
    rings = max(1, int(round(math.sqrt(n_target))))
    points, weights = [np.zeros((1, 2))], [np.ones(1)]  # central disk of radius NA/rings
    for k in range(1, rings):
        count = 4 * int(math.ceil((2 * k + 1) / 4))  # multiples of 4: symmetric under quarter turns
        radius = na_condenser / rings * math.sqrt((k**2 + (k + 1) ** 2) / 2)
        theta = 2 * math.pi * (np.arange(count) + 0.5 * (k % 2)) / count
        points.append(radius * np.stack([np.sin(theta), np.cos(theta)], axis=1))
        weights.append(np.full(count, (2 * k + 1) / count))
    nu, w = np.concatenate(points), np.concatenate(weights)
    return nu, w / w.sum()


def defocus_factor(fy, fx, wavelength_um: float, z_um: float, n_medium: float, *, paraxial: bool):
    """Defocus transfer factor ``D_z(f)`` (complex, same shape as fy).

    Angular spectrum: ``exp(i2πz(k_z - n/λ))`` with evanescent waves removed;
    paraxial: ``exp(-iπλz|f|²/n)``. ``k_z - k`` is evaluated as
    ``-|f|²/(k_z + k)``, which has no cancellation, so float32 grids stay accurate.
    """
    return _defocus_from_f2(fy**2 + fx**2, wavelength_um, z_um, n_medium, paraxial=paraxial)


def _defocus_from_f2(f2, wavelength_um: float, z_um: float, n_medium: float, *, paraxial: bool):
    if paraxial:
        return torch.polar(torch.ones_like(f2), -math.pi * wavelength_um * z_um * f2 / n_medium)
    k = n_medium / wavelength_um
    kz2 = k**2 - f2
    propagating = kz2 > 0
    kz = torch.sqrt(torch.clamp(kz2, min=0.0))
    phase = -2 * math.pi * z_um * f2 / (kz + k)
    return torch.polar(propagating.to(f2.dtype), phase)


def pupil(fy, fx, wavelength_um: float, na_objective: float):
    """Hard-edged objective pupil ``λ|f| <= NA``; NA = 0 means no pupil (all pass)."""
    if na_objective <= 0:
        return torch.ones_like(fy)
    return _inside_pupil(fy**2 + fx**2, wavelength_um, na_objective).to(fy.dtype)


def _inside_pupil(f2, wavelength_um: float, na_objective: float):
    return f2 * wavelength_um**2 <= na_objective**2 * (1 + 1e-12)


def pupil_band(shape, dx_um, wavelength_um, na_objective: float, nu, *, device=None):
    """Row and column indices (FFT order) that some shifted pupil ``|f + u_s| <= NA/λ`` reaches.

    Every kernel of :func:`shifted_kernels` vanishes outside these rows and columns; with
    no pupil (NA = 0) they are all of them.
    """
    fy = torch.fft.fftfreq(shape[0], d=dx_um, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(shape[1], d=dx_um, dtype=torch.float64, device=device)
    if na_objective <= 0:
        return torch.arange(shape[0], device=device), torch.arange(shape[1], device=device)
    u = torch.as_tensor(nu, dtype=torch.float64, device=device) / wavelength_um
    reach = na_objective / wavelength_um * (1 + 1e-6)  # wider than _inside_pupil, even in float32
    rows = ((fy[:, None] + u[None, :, 0]).abs() <= reach).any(dim=1)
    cols = ((fx[:, None] + u[None, :, 1]).abs() <= reach).any(dim=1)
    return rows.nonzero().squeeze(1), cols.nonzero().squeeze(1)


def shifted_kernels(shape, dx_um, wavelength_um, z_um, optics, nu, *, dtype=torch.float64, device=None,
                    rows=None, cols=None):
    """Coherent transfer functions ``K_s(f) = P(f+u_s)·D_z(f+u_s)`` for each source point.

    ``u_s = ν_s/λ`` is the source tilt in the pupil (shifted-pupil Abbe form,
    PHYSICS.md §1.2), so off-grid source points need no spectrum shifting.
    Behind an objective the defocus factor is evaluated on the pupil pixels
    only: on an oversampled grid they are a few per cent of the field, and the
    square root, sine and cosine per pixel dominated the cost.

    ``rows``/``cols`` (index tensors, e.g. from :func:`pupil_band`) evaluate only
    that sub-grid of the FFT-ordered grid, with the same values.

    Returns complex (S, H, W) of the precision of ``dtype`` ((S, len(rows), len(cols)) with rows/cols).
    """
    u = torch.as_tensor(nu, dtype=dtype, device=device) / wavelength_um
    fy = torch.fft.fftfreq(shape[0], d=dx_um, dtype=dtype, device=device)
    fx = torch.fft.fftfreq(shape[1], d=dx_um, dtype=dtype, device=device)
    fy = fy if rows is None else fy[rows]
    fx = fx if cols is None else fx[cols]
    # |f + u_s|² in one (S, H, W) pass from per-axis squares.
    f2 = (fy[None, :, None] + u[:, 0, None, None]) ** 2 + (fx[None, None, :] + u[:, 1, None, None]) ** 2
    args = (wavelength_um, z_um, optics.n_medium)
    if optics.na_objective <= 0:
        return _defocus_from_f2(f2, *args, paraxial=optics.paraxial)
    inside = _inside_pupil(f2, wavelength_um, optics.na_objective)
    kernels = torch.zeros(f2.shape, dtype=torch.complex64 if dtype == torch.float32 else torch.complex128,
                          device=device)
    kernels[inside] = _defocus_from_f2(f2[inside], *args, paraxial=optics.paraxial)
    return kernels


def fresnel_factors(shape, dx_um, wavelength_um, z_um, n_medium: float, *, dtype=torch.float64, device=None):
    """Separable paraxial defocus factors for many nodes at once.

    The Fresnel kernel factorises, ``exp(-iπλz|f|²/n) = exp(-iπλz f_y²/n)·exp(-iπλz f_x²/n)``,
    so a node's (H, W) kernel is the outer product of two vectors: building
    it costs O(H+W) transcendentals instead of O(H·W). The phases are
    evaluated in float64 whatever ``dtype`` is, so float32 kernels are
    accurate to rounding.

    Parameters
    ----------
    shape : (H, W) grid size.
    dx_um : grid pitch (µm).
    wavelength_um, z_um : (K,) vacuum wavelength and defocus of each node (µm).
    n_medium : refractive index of the medium.
    dtype : real dtype whose complex counterpart is returned.

    Returns
    -------
    ky : complex (K, H), the ``f_y`` factor in FFT order.
    kx : complex (K, W), the ``f_x`` factor.
    """
    coeff = -math.pi * torch.as_tensor(np.asarray(wavelength_um) * np.asarray(z_um) / n_medium,
                                       dtype=torch.float64, device=device)[:, None]
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128

    def factor(n):
        f2 = torch.fft.fftfreq(n, d=dx_um, dtype=torch.float64, device=device) ** 2
        angle = coeff * f2[None]
        return torch.complex(torch.cos(angle), torch.sin(angle)).to(cdtype)

    return factor(shape[0]), factor(shape[1])
