"""Noise-level estimation from the images (the automatic regularisation of TIE/WOTF rests on it)."""

import math

import pytest
import torch
from solver_cases import gaussian, planes_microscope, radius2, seeded_noise, two_shot

from chromaqpi import Microscope, simulate
from chromaqpi.solvers.noise import intensity_bandwidth, noise_variance


def cells(shape=(128, 136), dx=0.1625):
    # A few smooth bumps of different sizes: a band-limited object with real structure.
    return (gaussian(shape, 1.0, 1.2, dx, centre=(40, 50)) + gaussian(shape, 0.6, 0.6, dx, centre=(90, 100))
            + gaussian(shape, 0.8, 2.0, dx, centre=(70, 30)))


def test_intensity_bandwidth_is_the_incoherent_cutoff_at_the_bluest_node():
    m = planes_microscope([(0.45, -1.0), (0.60, 1.0)], na=0.5, na_ill=0.2, points=8)
    assert intensity_bandwidth(m) == pytest.approx((0.5 + 0.2) / 0.45, rel=1e-12)
    assert intensity_bandwidth(m.replace(optics={"na_condenser": 0.9})) == pytest.approx(1.0 / 0.45)
    assert intensity_bandwidth(Microscope.from_preset("paper-2shot")) is None  # no pupil: unbounded


@pytest.mark.parametrize("sigma", [3e-3, 2e-2])
def test_out_of_band_estimate_recovers_white_noise(sigma):
    # NA 0.3 at 0.1625 µm pixels: most of the spectrum is beyond the optical band, only noise lives there.
    m = planes_microscope([(0.55, -1.5), (0.55, 1.5)], na=0.3, dx=0.1625, n=1.33)
    clean = simulate(cells(), m, noise=False)
    noisy = clean + seeded_noise(clean.shape, sigma, 3)
    est = noise_variance(noisy, m)
    assert est.shape == (1,)
    assert math.sqrt(float(est)) == pytest.approx(sigma, rel=0.05)
    assert float(noise_variance(clean, m)) < (0.05 * 3e-3) ** 2  # no noise: (almost) nothing found


def test_haar_estimate_without_a_pupil_cancels_the_phase_contrast():
    # Paper-like ±dz pair without a pupil: no out-of-band region. The channel sum I+ + I- is free of
    # first-order phase contrast, so its Haar detail measures the noise (smooth object: 0.9998 σ
    # measured). Sharp edges leak second-order fringes into it (1.9 σ measured), still less than
    # the best single channel (2.5 σ): the estimate is an upper bound that the direction tightens.
    m = two_shot(2.0, n=1.33, dx=0.1)
    sigma, direction = 5e-3, torch.tensor([-1.0, 1.0])
    smooth = simulate(gaussian((128, 136), 1.0, 1.2, 0.1), m, noise=False)
    est = noise_variance(smooth + seeded_noise(smooth.shape, sigma, 4), m, signal_direction=direction)
    assert math.sqrt(float(est)) == pytest.approx(sigma, rel=0.05)
    disk = 1.0 * (radius2((128, 136), (64, 68), 0.1) < 9).double()
    sharp = simulate(disk, m, noise=False) + seeded_noise(smooth.shape, sigma, 4)
    with_direction = math.sqrt(float(noise_variance(sharp, m, signal_direction=direction)))
    per_channel = math.sqrt(float(noise_variance(sharp, m)))
    assert 0.95 * sigma < with_direction < 0.8 * per_channel


@pytest.mark.parametrize("sigma", [1e-3, 1e-2])
def test_haar_estimate_is_unit_gain_for_white_noise_and_blind_to_separable_trends(sigma):
    # No pupil (no out-of-band region): the finest diagonal Haar detail (a - b - c + d)/2 of white noise
    # has variance σ², and it cancels exactly any trend g(x) + h(y) (linear ramps included), which a
    # horizontal or vertical detail would see. Trend: a steep ramp plus sinusoids in x and in y whose
    # pixel-to-pixel steps vary by ~1e-2 (10x σ at 1e-3; a constant step would hide in the MAD's median).
    # One channel, 256 x 258 px (16k coefficients: MAD spread ~0.9 %): σ within 4 %.
    m = planes_microscope([(0.55, 1.0)], dx=0.1)
    y, x = torch.meshgrid(torch.arange(256.0, dtype=torch.float64), torch.arange(258.0, dtype=torch.float64),
                          indexing="ij")
    trend = 1 + 0.01 * x - 0.004 * y + 0.06 * torch.sin(2 * math.pi * x / 37) + 0.05 * torch.cos(2 * math.pi * y / 23)
    images = (trend + seeded_noise((256, 258), sigma, 11))[None, None]
    assert math.sqrt(float(noise_variance(images, m))) == pytest.approx(sigma, rel=0.04)
