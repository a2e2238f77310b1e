"""chromaqpi.specimen_colour: a stain's colour at a coarse scale, against analytic cases."""

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.consistency import COLOURED_OD, COLOURED_OD_SMALL
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.spectra import STAINS, channel_quadrature

N = 96


@pytest.fixture(scope="module")
def default():
    return Microscope.from_preset("default")


@pytest.fixture(scope="module")
def wide():
    """The default optics with 0.45 µm pixels: 96 px span 43 µm, field enough to judge the colour (25 µm)."""
    return wide_field()


def wide_field():
    return Microscope.from_preset("default").replace(sampling={"pixel_size_um": 0.45, "oversample": 3})


@pytest.fixture(scope="module")
def blob_scenes(wide):
    """A 2 rad, 4 µm phase blob with a 0.3 absorber beside it: transparent, grey, eosin (noiseless)."""
    phase = 2.0 * _blob(wide, 4.0, 1.0)
    absorber = _blob(wide, 3.0, 0.3).roll(20, 1)
    scenes = {stain: chromaqpi.simulate(phase, wide, absorption=None if stain == "clear" else absorber,
                                        stain=None if stain in ("clear", "grey") else stain, noise=False)[0]
              for stain in ("clear", "grey", "eosin")}
    return scenes


def _blob(m, sigma_um, peak):
    yy, xx = np.mgrid[:N, :N]
    r2 = ((yy - N / 2) ** 2 + (xx - N / 2) ** 2) * m.sampling.pixel_size_um**2
    return torch.as_tensor(peak * np.exp(-r2 / (2 * sigma_um**2)))


@pytest.mark.parametrize("name", ["eosin", "haematoxylin", "haemoglobin", "methylene-blue"])
def test_a_uniform_stain_reads_as_its_beer_lambert_colour(default, name):
    # A uniform stained field diffracts nothing: channel c reads Σ_k W_ck e^{-2 a s_k} (the quadrature), so
    # its optical density -½ ln I_c and their spread over the channels are known exactly (tolerance 1e-9).
    # Simulated small, then spread over a field wide enough (256 px, 42 µm) to be judged.
    a = 0.1
    phase = torch.zeros(16, 16, dtype=torch.float64)
    small = chromaqpi.simulate(phase, default, absorption=phase + a, stain=name, noise=False)[0]
    assert float(small.std(dim=(-2, -1)).max()) < 1e-12
    images = small.mean(dim=(-2, -1))[:, None, None].expand(3, 256, 256)
    quad = channel_quadrature(default)
    od = -0.5 * np.log(quad.weights @ np.exp(-2 * a * STAINS[name].node_scales(quad)))
    colour = chromaqpi.specimen_colour(images, default)
    assert colour.chromatic_od == pytest.approx(np.sqrt(((od - od.mean()) ** 2).sum()), abs=1e-9)
    np.testing.assert_allclose(colour.extinction, od / od.mean(), atol=1e-9)
    assert colour.coloured and colour.nearest_stain == name


def test_transparent_and_grey_specimens_read_colourless(wide, blob_scenes):
    # A 2 rad, 4 µm phase blob and a 0.3 grey absorber beside it (noiseless): measured chromatic OD 2e-5,
    # the defocus contrast averages out at 10 µm; tolerance a third of the threshold (eosin: 0.0085).
    for images in (blob_scenes["clear"], blob_scenes["grey"]):
        colour = chromaqpi.specimen_colour(images, wide)
        assert colour.judged and colour.chromatic_od < COLOURED_OD / 3
        assert not colour.coloured and colour.nearest_stain is None
    stained = blob_scenes["eosin"]
    assert chromaqpi.specimen_colour(stained, wide).coloured  # the same absorber, coloured
    # A field of 1-2.5 blur widths (the 0.16 µm pixels of the preset: 15.6 µm) needs the stronger colour of
    # COLOURED_OD_SMALL; under one blur width (a 7.8 µm crop), or with channels that all see one wavelength
    # (paper-2shot's planes), nothing is judged, whatever the reading.
    default = Microscope.from_preset("default")
    small = chromaqpi.specimen_colour(stained, default)
    assert small.judged and small.threshold == COLOURED_OD_SMALL
    assert COLOURED_OD < small.chromatic_od < COLOURED_OD_SMALL and not small.coloured
    flat = torch.zeros(N, N, dtype=torch.float64)
    uniform = chromaqpi.simulate(flat, default, absorption=flat + 0.05, stain="eosin", noise=False)[0]
    stronger = chromaqpi.specimen_colour(uniform, default)  # stained all over the small field
    assert stronger.coloured and stronger.nearest_stain == "eosin"
    tiny = chromaqpi.specimen_colour(uniform[:, :48, :48], default)
    assert not tiny.judged and not tiny.coloured and tiny.extinction is None
    planes = chromaqpi.specimen_colour(stained[:2], Microscope.from_preset("paper-2shot").replace(
        sampling={"pixel_size_um": 0.45}))
    assert not planes.judged and not planes.coloured
    # Two planes at one wavelength hold no colour: no extinction ratios are made up from defocus contrast.
    assert planes.extinction is None and "extinction not judged" in planes.summary()


def test_batches_and_bad_scales(default):
    images = torch.ones(2, 3, 32, 32, dtype=torch.float64)
    out = chromaqpi.specimen_colour(images, default)
    assert len(out) == 2 and out[0].chromatic_od == 0 and not out[0].coloured
    assert out[0].extinction is None  # a 5 µm field is under the blur widths that judge a colour
    with pytest.raises(ConfigError, match="scale_um"):
        chromaqpi.specimen_colour(images, default, scale_um=0)


@pytest.mark.filterwarnings("ignore:simulation grid")  # 0.45 µm pixels alias at NA 0.65 on the camera grid
def test_reconstruct_warns_about_a_coloured_image_unless_told_its_stain(wide, blob_scenes):
    import warnings

    pink = blob_scenes["eosin"]
    # The shipped model trained with coloured absorbers reads this RGB stack: the warning names it first.
    with pytest.warns(UserWarning, match=r"the specimen is coloured .*like eosin.*model 'default-stained' with "
                                         r"method 'mean'.*stain='eosin'"):
        chromaqpi.reconstruct(pink, wide, method="tie")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the specimen is coloured")
        chromaqpi.reconstruct(pink, wide, method="wotf", alpha=1e-3, stain="eosin")
        chromaqpi.reconstruct(blob_scenes["grey"], wide, method="tie")  # grey: not coloured


def test_a_colour_like_no_named_stain_is_not_told_to_name_one(wide):
    # Two dyes (H&E) can read like no single named stain: the advice is the stained model or WOTF's automatic
    # absorption nuisance, never a stain name the Python API does not take.
    from chromaqpi.consistency import COLOURED_OD, SpecimenColour
    from chromaqpi.solvers.base import warn_if_coloured

    purple = SpecimenColour(chromatic_od=4 * COLOURED_OD, extinction=(1.1, 0.8, 1.1), nearest_stain=None, judged=True)
    with pytest.warns(UserWarning, match=r"model 'default-stained' with method 'mean'.*automatic absorption "
                                         r"nuisance \(the colour is like no named stain") as caught:
        warn_if_coloured(torch.ones(1, 3, 8, 8), wide, [purple])
    assert "stain=" not in str(caught[0].message) and "--stain" not in str(caught[0].message)


@pytest.mark.filterwarnings("ignore:simulation grid")
@pytest.mark.filterwarnings("ignore:microscope outside the model's training family")  # 0.45 µm pixels
def test_a_model_trained_with_coloured_absorbers_is_not_warned_about_them(wide, blob_scenes):
    import warnings

    from chromaqpi.models.registry import WEIGHTS_DIR, load_model, trained_stains

    # What the network saw is read from its card's training data, however the model is named.
    stained = ["eosin", "haematoxylin", "haemoglobin", "methylene-blue"]
    path = WEIGHTS_DIR / "default-stained"
    assert trained_stains("mean", wide, "default-stained") == stained
    assert trained_stains("zmd", wide, str(path)) == stained
    assert trained_stains("mean", wide, load_model(path)) == stained
    assert trained_stains("mean", wide) == [] and trained_stains("zmd", wide, "paper-rgb") == []
    assert trained_stains("mean", wide, "no-such-model") == []  # the method says what is wrong
    pink = blob_scenes["eosin"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the specimen is coloured")
        chromaqpi.reconstruct(pink, wide, method="mean", model=str(path))
    with pytest.warns(UserWarning, match="the specimen is coloured"):
        chromaqpi.reconstruct(pink, wide, method="mean", model="default")


@pytest.mark.filterwarnings("ignore:simulation grid")
@pytest.mark.filterwarnings("ignore:microscope outside the model's training family")  # 0.45 µm pixels
def test_auto_routes_a_coloured_image_to_the_stained_model(wide, blob_scenes):
    # Per image of a batch: the eosin image runs default-stained's mean net, the clear one default's.
    batch = torch.stack([blob_scenes["clear"], blob_scenes["eosin"]])
    with pytest.warns(UserWarning, match="method 'auto' runs model 'default-stained': the specimen is coloured"):
        out = chromaqpi.reconstruct(batch, wide, method="auto")
    for i, model in enumerate(("default", "default-stained")):
        alone = chromaqpi.reconstruct(batch[i], wide, method="mean", model=model)
        torch.testing.assert_close(out[i], alone.to(out.dtype), rtol=0, atol=1e-5)
