"""Analytic truth: sphere beads and Evans-Fung discocytes, rasterised and integrated."""

import math

import numpy as np
import pytest
from scipy.integrate import quad

from chromaqpi.phantoms import profiles as pf
from chromaqpi.phantoms import render_object

DX = 0.1  # µm; objects below are 20-80 px across


def _pixel_radius(shape, centre_um, dx=DX):
    y = (np.arange(shape[0]) + 0.5) * dx - centre_um[0]
    x = (np.arange(shape[1]) + 0.5) * dx - centre_um[1]
    return np.hypot(y[:, None], x[None, :])


@pytest.mark.parametrize("diameter_um, n_obj", [(2.0, 1.59), (5.3, 1.46), (8.0, 1.49)])
def test_bead_matches_exact_sphere_opd(diameter_um, n_obj):
    shape, centre = (97, 103), (4.87, 5.13)  # off-grid centre on an odd, non-square grid
    s = render_object("bead", shape, DX, rng=np.random.default_rng(0), centre_um=centre,
                      n_medium=1.333, params={"diameter_um": diameter_um, "n_obj": n_obj})
    radius, dn = diameter_um / 2, n_obj - 1.333
    r = _pixel_radius(shape, centre)
    exact = pf.sphere_opd_um(r, radius, dn)
    peak = 2 * dn * radius
    # Pixels hold area averages; 2 px inside the rim they differ from the centre value
    # by the curvature term (~dx^2/24 * laplacian), < 0.5 % of the peak.
    interior = r < radius - 2 * DX
    assert np.max(np.abs(s.opd_um[interior] - exact[interior])) < 5e-3 * peak
    # well outside the sphere the map is exactly zero
    assert np.all(s.opd_um[r > radius + 1.5 * DX] == 0)


@pytest.mark.parametrize("diameter_um", [1.0, 2.0, 3.7, 8.0])  # 10 to 80 px across
def test_bead_integral_is_volume_times_contrast(diameter_um):
    shape = (int(diameter_um / DX) + 9, int(diameter_um / DX) + 12)
    rng = np.random.default_rng(1)
    centre = (shape[0] * DX / 2 + rng.uniform(-0.05, 0.05), shape[1] * DX / 2 + rng.uniform(-0.05, 0.05))
    s = render_object("bead", shape, DX, rng=rng, centre_um=centre, n_medium=1.333,
                      params={"diameter_um": diameter_um, "n_obj": 1.59})
    expected = 4 / 3 * math.pi * (diameter_um / 2) ** 3 * (1.59 - 1.333)
    integral = s.opd_um.astype(np.float64).sum() * DX**2
    assert integral == pytest.approx(expected, rel=0.01)
    assert s.meta["objects"][0]["opd_integral_um3"] == pytest.approx(expected, rel=1e-12)


def test_evans_fung_formula_at_reference_size():
    # the published polynomial, evaluated by hand
    r = np.linspace(0, 3.91, 9)
    x2 = (r / 3.91) ** 2
    expected = np.sqrt(1 - x2) * (0.81 + 7.83 * x2 - 4.39 * x2**2)
    assert np.allclose(pf.discocyte_thickness_um(r, 7.82), expected, rtol=0, atol=1e-12)
    assert pf.discocyte_thickness_um(0.0, 7.82) == pytest.approx(0.81)
    assert pf.discocyte_thickness_um(4.5, 7.82) == 0.0
    # biconcave: thinner in the middle than at the rim (max about 2.6 µm near r = 0.7 R)
    assert 2.5 < expected.max() < 2.7 and expected[0] < expected.max() / 3


@pytest.mark.parametrize("diameter_um, scale", [(7.82, 1.0), (6.5, 0.9), (8.4, 1.12)])
def test_discocyte_volume_matches_radial_integral(diameter_um, scale):
    numeric, _ = quad(lambda r: 2 * math.pi * r * float(pf.discocyte_thickness_um(r, diameter_um, scale)),
                      0, diameter_um / 2, limit=200)
    assert pf.discocyte_volume_um3(diameter_um, scale) == pytest.approx(numeric, rel=1e-9)
    if diameter_um == 7.82:
        assert numeric == pytest.approx(94.1, abs=0.5)  # a normal cell's ~90 fL


@pytest.mark.parametrize("diameter_um", [1.2, 7.82])  # 12 and 78 px across
def test_discocyte_raster_matches_profile_and_volume(diameter_um):
    shape = (int(diameter_um / DX) + 7, int(diameter_um / DX) + 10)
    centre = (shape[0] * DX / 2 + 0.013, shape[1] * DX / 2 - 0.021)
    s = render_object("discocyte", shape, DX, rng=np.random.default_rng(2), centre_um=centre, n_medium=1.335,
                      params={"diameter_um": diameter_um, "thickness_scale": 1.0, "n_obj": 1.40})
    dn = 1.40 - 1.335
    numeric, _ = quad(lambda r: 2 * math.pi * r * float(pf.discocyte_thickness_um(r, diameter_um)), 0, diameter_um / 2)
    assert s.opd_um.astype(np.float64).sum() * DX**2 == pytest.approx(dn * numeric, rel=0.01)
    r = _pixel_radius(shape, centre)
    interior = r < diameter_um / 2 - 2 * DX
    exact = dn * pf.discocyte_thickness_um(r, diameter_um)
    peak = float(exact.max())
    assert np.max(np.abs(s.opd_um[interior] - exact[interior])) < 0.02 * peak


def test_closed_form_volumes():
    assert pf.sphere_volume_um3(2.0) == pytest.approx(32 * math.pi / 3)
    assert pf.ellipsoid_volume_um3(1.0, 2.0, 3.0) == pytest.approx(8 * math.pi)
    # a capsule of length 2r is a sphere
    assert pf.spherocylinder_volume_um3(2.0, 1.0) == pytest.approx(pf.sphere_volume_um3(1.0))
    assert pf.spherocylinder_volume_um3(5.0, 1.0) == pytest.approx(3 * math.pi + 4 * math.pi / 3)
    square = [(0, 0), (0, 2), (3, 2), (3, 0)]
    assert pf.polygon_area_um2(square) == pytest.approx(6.0)
