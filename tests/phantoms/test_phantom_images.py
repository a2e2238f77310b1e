"""Image sources: exact phase range, cropping and resizing, folders, bundled images offline."""

import json
import math
import socket

import numpy as np
import pytest
import tifffile
from PIL import Image

from chromaqpi.errors import ConfigError, InputError
from chromaqpi.phantoms import (
    BUNDLED_TEST,
    BUNDLED_VAL,
    BUNDLED_TRAIN,
    BundledImageSource,
    ImageFolderSource,
    bundled_image_names,
    image_to_phase,
    load_bundled_image,
    phase_rad,
)
from chromaqpi.phantoms.images import random_crop, to_grey
from chromaqpi.phantoms.registry import get_source

SHAPE = (45, 52)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("phase_range", [(0.0, 3.5), (-1.0, 2.0), (0.3, 0.7)])
def test_phase_range_is_exact(phase_range):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    phase = image_to_phase(img, SHAPE, rng=rng, phase_range_rad=phase_range)
    assert phase.dtype == np.float32 and phase.shape == SHAPE
    assert phase.min() == np.float32(phase_range[0]) and phase.max() == np.float32(phase_range[1])


def test_small_images_are_upscaled_not_tiled():
    rng = np.random.default_rng(1)
    small = np.outer(np.arange(12), np.ones(15)).astype(np.uint8)  # a vertical ramp
    phase = image_to_phase(small, (64, 70), rng=rng)
    assert phase.shape == (64, 70) and phase.min() == 0 and phase.max() == np.float32(3.5)
    # resizing keeps the ramp's monotone profile (rows increase; Lanczos may overshoot at ends only)
    profile = phase.mean(axis=1)
    assert np.all(np.diff(profile[4:-4]) > 0)
    _, info = random_crop(to_grey(small), (64, 70), rng)
    assert info["resize_factor"] == pytest.approx(64 / 12)


def test_crop_is_a_window_of_the_image():
    rng = np.random.default_rng(2)
    img = rng.random((50, 60))
    crop, info = random_crop(img, SHAPE, rng)
    y0, x0 = info["crop_yx"]
    assert info["resize_factor"] == 1.0 and np.array_equal(crop, img[y0:y0 + 45, x0:x0 + 52])


def test_flat_or_non_finite_image_is_refused():
    with pytest.raises(InputError, match="constant"):
        image_to_phase(np.full((50, 60), 7, np.uint8), SHAPE, rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="NaN"):
        image_to_phase(np.full((45, 52), np.nan), SHAPE, rng=np.random.default_rng(0))


def test_grey_conversion():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 255
    assert np.allclose(to_grey(rgb), 0.7154 * 255, rtol=1e-6)
    rgba = np.zeros((4, 5, 4), np.uint8)  # fully transparent black over white -> white
    assert np.allclose(to_grey(rgba), 255.0)
    stack = np.zeros((3, 4, 5), np.uint16)
    assert to_grey(stack).shape == (3, 4, 5)


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (70, 60), dtype=np.uint8)).save(tmp_path / "b.JPG", quality=90)
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "c.tif", rng.random((3, 64, 64)).astype(np.float32), photometric="minisblack")  # z-stack
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_source(image_folder):
    src = ImageFolderSource(image_folder, phase_range_rad=(0.0, 2.0), wavelength_um=0.6)
    assert src.files == ("a.png", "b.JPG", "sub/c.tif")
    seen = set()
    for seed in range(12):
        s = src(SHAPE, 0.2, np.random.default_rng(seed))
        seen.add(s.meta["image"])
        phase = phase_rad(s, 0.6)
        assert phase.min() == pytest.approx(0.0, abs=1e-6) and phase.max() == pytest.approx(2.0, rel=1e-6)
        assert s.meta["phase_range_rad"] == [0.0, 2.0] and s.meta["has_mask"] is False
        assert not s.mask.any() and s.opd_um.dtype == np.float32
        # OPD = phase * lambda / (2 pi): 2 rad at 0.6 µm is 0.191 µm
        assert float(s.opd_um.max()) == pytest.approx(2.0 * 0.6 / (2 * math.pi), rel=1e-6)
        json.dumps(s.meta)
    assert seen == set(src.files)
    a = src(SHAPE, 0.2, np.random.default_rng(3))
    b = src(SHAPE, 0.2, np.random.default_rng(3))
    c = src(SHAPE, 0.2, np.random.default_rng(4))
    assert np.array_equal(a.opd_um, b.opd_um) and not np.array_equal(a.opd_um, c.opd_um)


def test_random_phase_range(image_folder):
    src = ImageFolderSource(image_folder, phase_range_rad=(0.0, (1.0, 3.0)))
    tops = [src.phase(SHAPE, np.random.default_rng(s))[1]["phase_range_rad"][1] for s in range(8)]
    assert all(1.0 <= t <= 3.0 for t in tops) and len(set(tops)) == 8
    phase, info = src.phase(SHAPE, np.random.default_rng(0))
    assert phase.max() == np.float32(info["phase_range_rad"][1])


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="no images"):
        ImageFolderSource(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        ImageFolderSource(tmp_path / "missing")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(InputError, match="constant"):
        ImageFolderSource(tmp_path)(SHAPE, 0.2, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        ImageFolderSource(tmp_path, phase_range_rad=(2.0, 1.0))(SHAPE, 0.2, np.random.default_rng(0))


def test_bundled_split_is_fixed_and_disjoint():
    assert set(BUNDLED_TRAIN).isdisjoint(BUNDLED_TEST)
    assert set(BUNDLED_VAL).isdisjoint(set(BUNDLED_TRAIN) | set(BUNDLED_TEST))
    assert len(BUNDLED_TEST) == 8 and len(BUNDLED_TRAIN) == 17  # about 1/3 held out
    assert set(bundled_image_names("all")) == set(BUNDLED_TRAIN) | set(BUNDLED_TEST) | set(BUNDLED_VAL)
    with pytest.raises(ConfigError):
        bundled_image_names("validation")
    with pytest.raises(ConfigError, match="not in split"):
        BundledImageSource("train", names=("camera",))  # a test image cannot leak into training


def test_validation_pictures_read_as_their_files_hold_them(no_network):
    mri = load_bundled_image("mri")
    assert 200 <= mri.max() < 256  # 8-bit values stored big-endian; little-endian would read them x256
    dem = load_bundled_image("fault_dem")
    assert dem.shape == (344, 403) and 200 < dem.min() < dem.max() < 1100  # elevations in metres
    assert get_source("pictures-val").name == "pictures-val"


def test_every_bundled_image_loads_offline(no_network):
    for name in bundled_image_names("all"):
        grey = load_bundled_image(name, rng=np.random.default_rng(0))
        assert grey.dtype == np.float32 and grey.ndim == 2 and min(grey.shape) >= 90  # topobathy: 91 x 120
        assert np.isfinite(grey).all() and grey.max() > grey.min(), name


def test_bundled_sources_draw_only_their_split(no_network):
    for split, names in (("train", BUNDLED_TRAIN), ("test", BUNDLED_TEST), ("val", BUNDLED_VAL)):
        src = BundledImageSource(split)
        drawn = {src(SHAPE, 0.21, np.random.default_rng(s)).meta["image"] for s in range(30)}
        assert drawn <= set(names) and len(drawn) >= min(5, len(names))
    blobs = BundledImageSource("train", names=("binary_blobs",))
    a = blobs(SHAPE, 0.21, np.random.default_rng(0)).opd_um
    b = blobs(SHAPE, 0.21, np.random.default_rng(1)).opd_um
    assert not np.array_equal(a, b)  # generated afresh per draw
