"""Defocus and pupil factors of the angular-spectrum propagator."""

import math

import numpy as np
import pytest
import torch


def test_defocus_factor_removes_evanescent_waves():
    # Catches a slip (evanescent components kept with |D| = 1): for |f| > n/lambda the factor is 0.
    from chromaqpi.optics.pupil import defocus_factor, frequency_grid
    fy, fx = frequency_grid((64, 66), 0.1)
    d = defocus_factor(fy, fx, 0.55, 1.0, 1.33, paraxial=False)
    f = (fy**2 + fx**2).sqrt()
    assert torch.all(d[f > 1.33 / 0.55 * 1.0001] == 0)
    assert torch.allclose(d[f < 1.33 / 0.55 * 0.9999].abs(), torch.tensor(1.0, dtype=torch.float64))


def test_band_kernels_equal_the_whole_grid_and_vanish_outside():
    # The transfer functions evaluate only the rows/columns a shifted pupil reaches; that must be
    # the same numbers as the full grid, with nothing (exactly 0) left outside the band.
    from chromaqpi import Microscope
    from chromaqpi.optics.simulator import Simulator

    scope = Microscope.from_preset("default").replace(sampling={"oversample": 1, "pad_px": 0},
                                                      spectra={"n_wavelengths": 3})
    sim = Simulator(scope, (64, 70))
    for k in range(len(sim.wavelengths)):
        full, _ = sim.kernels(k)
        band, rows, cols = sim.band_kernels(k)
        assert 0 < len(rows) < 64 and 0 < len(cols) < 70  # a real band on this grid
        assert torch.equal(band, full[:, rows[:, None], cols[None, :]])
        outside = full.clone()
        outside[:, rows[:, None], cols[None, :]] = 0
        assert torch.count_nonzero(outside) == 0


def test_band_is_the_whole_grid_without_a_pupil():
    from chromaqpi.optics.pupil import pupil_band

    rows, cols = pupil_band((8, 6), 0.1, 0.55, 0.0, [[0.0, 0.0]])
    assert rows.tolist() == list(range(8)) and cols.tolist() == list(range(6))


def test_band_kernels_hold_in_float32():
    from chromaqpi import Microscope
    from chromaqpi.optics.simulator import Simulator

    scope = Microscope.from_preset("default").replace(sampling={"oversample": 1, "pad_px": 0},
                                                      spectra={"n_wavelengths": 3})
    sim = Simulator(scope, (48, 50), dtype=torch.float32)
    for k in range(len(sim.wavelengths)):
        full, _ = sim.kernels(k)
        band, rows, cols = sim.band_kernels(k)
        assert torch.equal(band, full[:, rows[:, None], cols[None, :]])
        assert torch.count_nonzero(full).item() == torch.count_nonzero(band).item()


@pytest.mark.parametrize("n_target", [5, 12, 60, 400])
def test_source_points_sample_a_uniform_disk_symmetrically(n_target):
    # Uniform condenser disk of radius NA (PHYSICS.md §1.2), sampled in R = round(sqrt(n)) equal-width
    # annuli. Analytic references: weights sum to 1; point symmetry gives a zero first moment (in-focus
    # phase contrast vanishes, ±z symmetry); every ring sits at the radius that keeps its annulus'
    # second moment, and the central disk (radius NA/R) is one point at 0, so Σ w|ν|² equals the
    # disk's NA²/2 minus that disk's share NA²/(2R⁴): exact to rounding (1e-15 measured, 1e-12 here).
    # The set is invariant under a quarter turn and a mirror (exact D4 augmentations). Rings at the
    # annulus mid-radius instead would miss the second moment by NA²/(4R²) (>= 5e-5 here, >> 1e-12).
    from chromaqpi.optics.pupil import source_points

    na = 0.3
    nu, w = source_points(na, n_target)
    rings = int(round(math.sqrt(n_target)))
    assert w.shape == (len(nu),) and np.all(w > 0) and abs(w.sum() - 1) < 1e-12
    assert np.abs((w[:, None] * nu).sum(axis=0)).max() < 1e-15
    assert np.hypot(nu[:, 0], nu[:, 1]).max() <= na
    second = float((w * (nu**2).sum(axis=1)).sum())
    assert second == pytest.approx(na**2 / 2 * (1 - rings**-4), abs=1e-12)

    def canonical(points):
        return sorted((round(a, 12) + 0.0, round(b, 12) + 0.0, round(c, 12)) for (a, b), c in zip(points, w))

    assert canonical(np.stack([nu[:, 1], -nu[:, 0]], axis=1)) == canonical(nu)  # quarter turn
    assert canonical(np.stack([nu[:, 0], -nu[:, 1]], axis=1)) == canonical(nu)  # mirror x -> -x


def test_single_point_source_without_condenser():
    from chromaqpi.optics.pupil import source_points

    for na, n in ((0.0, 40), (0.3, 1)):
        nu, w = source_points(na, n)
        assert nu.tolist() == [[0.0, 0.0]] and w.tolist() == [1.0]
