"""Lamp spectra, camera curves and the per-channel spectral quadrature (PHYSICS.md §2.1)."""

import numpy as np
import pytest
from scipy import constants

from chromaqpi import Microscope
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Spectra
from chromaqpi.optics.spectra import (blackbody, camera_sensitivity, channel_quadrature, illuminant,
                                      white_led)


def test_blackbody_follows_planck_and_wien():
    lam = np.linspace(0.3, 3.0, 27001)  # µm, 0.1 nm steps
    for t in (2800.0, 3100.0, 5500.0):
        b = blackbody(lam, t)
        # Wien's displacement law: λ_max T = 2897.77 µm K (to the 0.1 nm grid).
        assert lam[np.argmax(b)] == pytest.approx(2897.77 / t, abs=2e-4)
        # Shape against Planck's law written with CODATA constants (SI units, independent of the module's c2).
        lam_m = lam * 1e-6
        planck = 2 * constants.h * constants.c**2 / lam_m**5 / np.expm1(constants.h * constants.c /
                                                                          (lam_m * constants.k * t))
        ratio = b / planck
        assert np.ptp(ratio) / ratio.mean() < 1e-6


def test_halogen_is_redder_than_led_over_the_visible():
    lam = np.array([0.45, 0.65])
    halogen, led = blackbody(lam, 3100.0), white_led(lam)
    assert halogen[1] / halogen[0] > 2 and led[0] > led[1]  # a 3100 K lamp rises to the red; an LED peaks blue


def test_camera_channels_peak_where_the_sensor_does():
    lam = np.linspace(0.40, 0.70, 3001)
    q = camera_sensitivity(lam, Spectra())
    peaks = lam[np.argmax(q, axis=1)]
    np.testing.assert_allclose(peaks, [0.600, 0.535, 0.460], atol=0.005)  # R, G, B
    assert np.all(q >= 0)


def test_rgb_quadrature_rows_are_normalised_and_ordered_in_wavelength():
    quad = channel_quadrature(Microscope.from_preset("default"))
    np.testing.assert_allclose(quad.weights.sum(axis=1), 1.0, rtol=1e-12)  # empty field reads 1
    centroid = quad.weights @ quad.wavelength_um
    assert centroid[0] > centroid[1] > centroid[2]  # R > G > B
    assert quad.defocus_um.shape == quad.wavelength_um.shape


def test_planes_quadrature_centres_each_band_and_shares_identical_nodes():
    m = Microscope.from_preset("paper-2shot")
    band = {"wavelength_um": 0.55, "bandwidth_um": 0.02}
    m = m.replace(planes=[{**band, "defocus_um": -1.0}, {**band, "defocus_um": 1.0}, {**band, "defocus_um": 1.0}])
    quad = channel_quadrature(m)
    np.testing.assert_allclose(quad.weights.sum(axis=1), 1.0, rtol=1e-12)
    for c in range(3):  # a symmetric Gaussian band on the uniform 0.40-0.70 µm grid is centred at 0.55
        assert float(quad.weights[c] @ quad.wavelength_um) == pytest.approx(0.55, abs=1e-9)
    # The two planes at +1 µm use the same nodes: one FFT per node, not per plane.
    assert len(quad.wavelength_um) == 2 * int(np.count_nonzero(quad.weights[0]))
    np.testing.assert_array_equal(quad.weights[1], quad.weights[2])


def test_bad_tables_and_dark_channels_are_config_errors():
    lam = np.linspace(0.4, 0.7, 31)
    with pytest.raises(ConfigError, match="negative"):
        illuminant(lam, Spectra(illuminant="table", illuminant_table=[[0.4, 1.0], [0.7, -0.1]]))
    with pytest.raises(ConfigError, match="at least 2 numbers"):
        illuminant(lam, Spectra(illuminant="table", illuminant_table=[[0.4], [0.7]]))
    table = [[0.40, 1.0, 1.0, 0.0], [0.70, 1.0, 1.0, 0.0]]  # a blue channel that sees nothing
    m = Microscope.from_preset("default").replace(spectra={"camera": "table", "camera_table": table})
    with pytest.raises(ConfigError, match="receives no light"):
        channel_quadrature(m)
