"""chromaqpi.specimen_colour: a stain's colour at a coarse scale, against analytic cases."""

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.consistency import COLOURED_OD
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.spectra import STAINS, channel_quadrature

N = 96


@pytest.fixture(scope="module")
def default():
    return Microscope.from_preset("default")


def _blob(m, sigma_um, peak):
    yy, xx = np.mgrid[:N, :N]
    r2 = ((yy - N / 2) ** 2 + (xx - N / 2) ** 2) * m.sampling.pixel_size_um**2
    return torch.as_tensor(peak * np.exp(-r2 / (2 * sigma_um**2)))


@pytest.mark.parametrize("name", ["eosin", "haematoxylin", "haemoglobin", "methylene-blue"])
def test_a_uniform_stain_reads_as_its_beer_lambert_colour(default, name):
    # A uniform stained field diffracts nothing: channel c reads Σ_k W_ck e^{-2 a s_k} (the quadrature), so
    # its optical density -½ ln I_c and their spread over the channels are known exactly (tolerance 1e-9).
    a = 0.1
    phase = torch.zeros(N, N, dtype=torch.float64)
    images = chromaqpi.simulate(phase, default, absorption=phase + a, stain=name, noise=False)[0]
    quad = channel_quadrature(default)
    od = -0.5 * np.log(quad.weights @ np.exp(-2 * a * STAINS[name].node_scales(quad)))
    colour = chromaqpi.specimen_colour(images, default)
    assert colour.chromatic_od == pytest.approx(np.sqrt(((od - od.mean()) ** 2).sum()), abs=1e-9)
    np.testing.assert_allclose(colour.extinction, od / od.mean(), atol=1e-9)
    assert colour.coloured and colour.nearest_stain == name


def test_transparent_and_grey_specimens_read_colourless(default):
    # A 2 rad, 4 µm phase blob and a 0.3 grey absorber beside it (noiseless): measured chromatic OD 5e-5,
    # the defocus contrast averages out at 10 µm; tolerance a third of the threshold (eosin: 0.05).
    phase = 2.0 * _blob(default, 4.0, 1.0)
    grey = chromaqpi.simulate(phase, default, absorption=_blob(default, 3.0, 0.3).roll(20, 1), noise=False)[0]
    clear = chromaqpi.simulate(phase, default, noise=False)[0]
    for images in (clear, grey):
        colour = chromaqpi.specimen_colour(images, default)
        assert colour.chromatic_od < COLOURED_OD / 3
        assert not colour.coloured and colour.nearest_stain is None
    stained = chromaqpi.simulate(phase, default, absorption=_blob(default, 3.0, 0.3).roll(20, 1), stain="eosin",
                                 noise=False)[0]
    assert chromaqpi.specimen_colour(stained, default).coloured  # the same absorber, coloured


def test_batches_and_bad_scales(default):
    images = torch.ones(2, 3, 32, 32, dtype=torch.float64)
    out = chromaqpi.specimen_colour(images, default)
    assert len(out) == 2 and out[0].chromatic_od == 0 and out[0].extinction == (1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="scale_um"):
        chromaqpi.specimen_colour(images, default, scale_um=0)


def test_reconstruct_warns_about_a_coloured_image_unless_told_its_stain(default):
    import warnings

    phase = 2.0 * _blob(default, 4.0, 1.0)
    absorber = _blob(default, 3.0, 0.3).roll(20, 1)
    pink = chromaqpi.simulate(phase, default, absorption=absorber, stain="eosin", noise=False)[0]
    with pytest.warns(UserWarning, match=r"the specimen is coloured .*like eosin.*stain='eosin'"):
        chromaqpi.reconstruct(pink, default, method="tie")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chromaqpi.reconstruct(pink, default, method="wotf", alpha=1e-3, stain="eosin")
        chromaqpi.reconstruct(chromaqpi.simulate(phase, default, absorption=absorber, noise=False)[0], default,
                              method="tie")  # grey: not coloured
