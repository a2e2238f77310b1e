"""A camera's colour-correction matrix (``sensor.colour_matrix``): validation, the simulator applying it
after read-out, and every entry point undoing it, against references computed here."""

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.sensor import apply_sensor, mix_channels, undo_colour_matrix

# A typical camera raw -> sRGB matrix (diagonal 1.4-2, rows summing to 1).
MATRIX = [[1.6, -0.5, -0.1], [-0.2, 1.5, -0.3], [0.0, -0.6, 1.6]]
N = 96


@pytest.fixture(scope="module")
def scopes():
    plain = Microscope.from_preset("default")
    return plain, plain.replace(sensor={"colour_matrix": MATRIX})


def scene():
    yy, xx = np.mgrid[:N, :N].astype(float)
    blob = np.exp(-((yy - 40.3) ** 2 + (xx - 52.1) ** 2) / (2 * 6.0**2))
    return torch.from_numpy(1.2 * blob + 0.6 * np.roll(blob, (20, -25), axis=(0, 1)))


def test_validation_and_serialisation(scopes, tmp_path):
    plain, mixed = scopes
    assert "colour_matrix" not in plain.to_dict()["sensor"]  # no matrix: configs and caches as before the field
    mixed.to_toml(tmp_path / "m.toml")
    assert Microscope.from_toml(tmp_path / "m.toml") == mixed
    for bad, message in [([[1, 0], [0, 1]], "3 rows of 3 numbers"),
                         ([[1, 0, 0], [0, 1, 0], [0, 1]], "3 rows of 3 numbers"),
                         ([[1, 0, "0"], [0, 1, 0], [0, 0, 1]], "3 rows of 3 numbers"),
                         ([[1.2, 0, 0], [0, 1, 0], [0, 0, 1]], "rows must each sum to 1 .* 1.2, 1, 1"),
                         ([[float("nan"), 1, 0], [0, 1, 0], [0, 0, 1]], "NaN or Inf"),
                         ([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]], "singular")]:
        with pytest.raises(ConfigError, match=message):
            plain.replace(sensor={"colour_matrix": bad})


def test_presets_show_where_the_matrix_goes(tmp_path, capsys):
    from chromaqpi.cli.main import main

    assert main(["presets", "default"]) == 0
    text = capsys.readouterr().out.replace("# colour_matrix", "colour_matrix")
    (tmp_path / "m.toml").write_text(text)
    assert Microscope.from_toml(tmp_path / "m.toml").sensor.colour_matrix == np.eye(3).tolist()


def test_simulator_mixes_the_read_out_channels(scopes):
    plain, mixed = scopes
    raw = chromaqpi.simulate(scene(), plain, noise=False)[0].numpy()
    recorded = chromaqpi.simulate(scene(), mixed, noise=False)[0].numpy()
    np.testing.assert_allclose(recorded, np.einsum("cj,jhw->chw", np.array(MATRIX), raw), atol=1e-12)
    # With noise, the matrix mixes the noisy read-out (the same draws) and the camera clips to its range.
    bright = torch.full((1, 3, 8, 8), 1.3, dtype=torch.float64)
    bright[:, 1] = 0.2  # a saturated magenta: red out = 1.6·1.3 - 0.5·0.2 - 0.1·1.3, beyond full scale
    noisy = [apply_sensor(bright, scope.sensor, noise=True, generator=torch.Generator().manual_seed(3))
             for scope in (plain, mixed)]
    full_scale = (1 - 2.0**-12) / plain.sensor.fill_fraction
    expected = np.einsum("cj,bjhw->bchw", np.array(MATRIX), noisy[0].numpy()).clip(0, full_scale)
    np.testing.assert_allclose(noisy[1].numpy(), expected, atol=1e-12)
    assert float(noisy[1][:, 0].max()) == pytest.approx(full_scale)


def test_undo_is_the_exact_inverse_for_arrays_and_tensors(scopes):
    plain, mixed = scopes
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    back, scope = undo_colour_matrix(mix_channels(images, MATRIX), mixed)
    assert isinstance(back, torch.Tensor) and scope == plain
    torch.testing.assert_close(back, images, atol=1e-12, rtol=0)
    array = images[0].numpy().astype(np.float32)
    back = undo_colour_matrix(mix_channels(array, MATRIX), mixed)[0]
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_allclose(back, array, atol=1e-5)
    assert undo_colour_matrix(images, plain)[0] is images
    counts = np.full((3, 2, 2), 1000, dtype=np.uint16)  # integers are mixed in float64, not truncated
    np.testing.assert_allclose(mix_channels(counts, MATRIX), counts.astype(float), atol=1e-9)
    assert mix_channels(torch.from_numpy(counts.astype(np.int32)), MATRIX).dtype == torch.float64
    with pytest.raises(InputError, match="3x3 but the images have 2 channels"):
        undo_colour_matrix(images[:, :2], mixed)


@pytest.mark.parametrize("method", ["tie", "wotf", "mean"])
def test_reconstruct_undoes_a_declared_matrix(scopes, method):
    plain, mixed = scopes
    raw = chromaqpi.simulate(scene(), plain, noise=False)
    recorded = chromaqpi.simulate(scene(), mixed, noise=False)
    reference, declared, ignored = (np.asarray(chromaqpi.reconstruct(images, scope, method=method))
                                    for images, scope in ((raw, plain), (recorded, mixed), (recorded, plain)))
    np.testing.assert_allclose(declared, reference, atol=1e-5)  # float32 networks; the solvers agree to 1e-12
    # The check can fail: ignored, the mixing moves the phase by a sizeable part of the scene's own range.
    assert np.abs(ignored - reference).mean() > 0.1 * np.abs(reference - reference.mean()).mean()


def test_colour_and_data_fit_read_the_camera_s_own_channels(scopes):
    plain, mixed = scopes
    wide = plain.replace(sampling={"pixel_size_um": 0.45, "oversample": 3})  # 43 µm: a field wide enough to judge
    absorber = 0.3 * scene() / scene().max()
    raw = chromaqpi.simulate(scene(), wide, absorption=absorber, stain="eosin", noise=False)[0]
    recorded = mix_channels(raw, MATRIX)
    declared = wide.replace(sensor={"colour_matrix": MATRIX})
    truth = chromaqpi.specimen_colour(raw, wide)
    read = chromaqpi.specimen_colour(recorded, declared)
    assert read.chromatic_od == pytest.approx(truth.chromatic_od, rel=1e-9) and read.nearest_stain == "eosin"
    assert chromaqpi.specimen_colour(recorded, wide).chromatic_od > 1.5 * truth.chromatic_od  # mixing saturates
    fit = chromaqpi.data_fit(recorded, scene(), declared)
    assert fit.unexplained_contrast == pytest.approx(chromaqpi.data_fit(raw, scene(), wide).unexplained_contrast,
                                                     rel=1e-6)
