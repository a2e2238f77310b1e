import numpy as np
import pytest

from chromaqpi.errors import InputError
from chromaqpi.flatfield import estimate_background, flat_field


def vignetted(rng, shape=(3, 96, 120)):
    c, h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    illum = np.stack([g * (1 - 0.2 * (x**2 + y**2) + 0.05 * x) for g in (800.0, 1000.0, 600.0)])
    obj = np.ones((h, w))
    obj[30:50, 40:70] = 1.4  # a bright cell covering ~5 % of the field
    return illum, illum * obj


# 96x120 is fitted on every pixel; 515x700 on a coarse grid (step 4, rows 0..512 of 514),
# where the samples must be placed at their true positions.
@pytest.mark.parametrize("shape", [(3, 96, 120), (3, 515, 700)])
def test_auto_background_recovers_smooth_illumination(rng, shape):
    illum, raw = vignetted(rng, shape)
    est = estimate_background(raw)
    assert np.max(np.abs(est / illum - 1)) < 1e-6  # exact for a quadratic surface, object clipped away
    norm = flat_field(raw)
    assert np.median(norm) == pytest.approx(1.0, abs=1e-6)
    assert norm[0, 40, 55] == pytest.approx(1.4, rel=1e-5)


def test_measured_background_frame(rng):
    illum, raw = vignetted(rng)
    norm = flat_field(raw, background=illum)
    assert np.abs(norm[:, 60:, :] - 1).max() < 1e-6
    assert norm[1, 40, 55] == pytest.approx(1.4, rel=1e-6)


def test_dark_level_is_subtracted_from_image_and_background(rng):
    illum, raw = vignetted(rng)
    dark = 100.0
    norm = flat_field(raw + dark, background=illum + dark, dark=dark)
    assert norm[1, 40, 55] == pytest.approx(1.4, rel=1e-6)  # without it: (1.4*1000+100)/1100 = 1.36
    assert np.abs(norm[:, 60:, :] - 1).max() < 1e-6


def test_background_errors():
    with pytest.raises(InputError, match="shape"):
        flat_field(np.ones((3, 8, 8)), background=np.ones((3, 8, 9)))
    with pytest.raises(InputError, match="zero or negative"):
        flat_field(np.ones((3, 8, 8)), background=np.zeros((3, 8, 8)))
