"""Tests for chromaqpi.io: sRGB curve, image reading and validation, TIFF, atomic writes."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from chromaqpi import io
from chromaqpi.errors import ConfigError, InputError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def rgb8(rng):
    """An odd-sized, non-square RGB uint8 image, (H, W, C) as files store it."""
    return rng.integers(10, 240, size=(23, 37, 3), dtype=np.uint8)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- sRGB ----------------------------------------------------------------------


def test_srgb_piecewise_break_points():
    assert io.srgb_encode(0.0031308) == 12.92 * 0.0031308  # still the linear branch
    x = 0.0031309
    assert io.srgb_encode(x) == pytest.approx(1.055 * x ** (1 / 2.4) - 0.055, rel=1e-15)
    assert io.srgb_decode(0.04045) == 0.04045 / 12.92
    v = 0.0405
    assert io.srgb_decode(v) == pytest.approx(((v + 0.055) / 1.055) ** 2.4, rel=1e-15)
    assert io.srgb_encode(1.0) == pytest.approx(1.0, abs=1e-15)
    assert io.srgb_decode(1.0) == pytest.approx(1.0, abs=1e-15)
    # the two IEC branches meet to within the standard's rounding of constants
    lin_side = 12.92 * 0.0031308
    pow_side = 1.055 * 0.0031308 ** (1 / 2.4) - 0.055
    assert abs(lin_side - pow_side) < 1e-7


def test_srgb_round_trip_and_dtype():
    lin = np.linspace(0.0, 1.0, 100001)
    np.testing.assert_allclose(io.srgb_decode(io.srgb_encode(lin)), lin, rtol=0, atol=1e-12)
    code = np.linspace(0.0, 1.0, 100001)
    # codes just above 0.04045/12.92 land on the other branch: the IEC constants
    # disagree there by ~3e-8, everywhere else the round trip is exact
    np.testing.assert_allclose(io.srgb_encode(io.srgb_decode(code)), code, rtol=0, atol=5e-8)
    away = np.abs(code - 0.04045) > 1e-4
    np.testing.assert_allclose(io.srgb_encode(io.srgb_decode(code[away])), code[away],
                               rtol=0, atol=1e-12)
    assert io.srgb_decode(np.float32([0.5])).dtype == np.float32
    assert io.srgb_decode(-0.5) == -io.srgb_decode(0.5)  # odd extension for negatives


# --- reading images ------------------------------------------------------------


def test_read_png_scales_uint8_and_moves_channels(tmp_path, rgb8):
    iio.imwrite(tmp_path / "a.png", rgb8)
    img, info = io.read_image(tmp_path / "a.png", need_channels=3)
    assert img.dtype == np.float32 and img.shape == (3, 23, 37)
    np.testing.assert_array_equal(img, rgb8.transpose(2, 0, 1).astype(np.float32) / 255)
    assert info["bit_depth"] == 8 and info["format"] == "png"


def test_read_16bit_tiff_and_linearize(tmp_path, rng):
    raw = rng.integers(1000, 60000, size=(3, 19, 21), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raw, photometric="minisblack")  # 3 pages
    with pytest.warns(UserWarning, match="this file is 16-bit, which cameras write linear"):
        img, info = io.read_image(tmp_path / "a.tif", linearize_srgb=True)
    assert info["bit_depth"] == 16 and img.shape == (3, 19, 21)
    np.testing.assert_allclose(img, io.srgb_decode(raw / 65535.0), rtol=1e-6)


def test_gamma_decode_inverts_the_camera_power_law_and_checks_its_exponent(tmp_path, rng):
    lin = np.linspace(0, 1, 101)
    np.testing.assert_allclose(io.gamma_decode(lin**0.45, 0.45), lin, rtol=0, atol=1e-12)
    assert io.gamma_decode(np.float32([0.25]), 0.5).dtype == np.float32 and io.gamma_decode(0.25, 0.5) == 0.0625
    assert io.gamma_decode(-0.25, 0.5) == -0.0625  # odd extension for negatives, like sRGB
    for bad in (0, -1, float("nan"), 20, True, "0.45"):
        with pytest.raises(ConfigError, match=r"gamma must be a number in \[0.1, 10\]"):
            io.gamma_decode(0.5, bad)
    raw = rng.integers(1000, 60000, size=(3, 19, 21), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raw, photometric="minisblack")
    img, info = io.read_image(tmp_path / "a.tif", gamma=0.45)
    np.testing.assert_allclose(img, (raw / 65535.0) ** (1 / 0.45), rtol=1e-5)
    assert info["gamma"] == 0.45 and not info["srgb_linearized"]
    with pytest.raises(ConfigError, match="not several"):
        io.read_image(tmp_path / "a.tif", gamma=0.45, linearize_srgb=True)


def test_read_rgb_tiff_samples_last(tmp_path, rgb8):
    tifffile.imwrite(tmp_path / "rgb.tif", rgb8, photometric="rgb")
    img, _ = io.read_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(img[1], rgb8[..., 1] / np.float32(255))


def test_read_npy_float_kept(tmp_path, rng):
    arr = rng.random((3, 11, 13)) * 1.7  # floats above 1 are fine, not rescaled
    np.save(tmp_path / "a.npy", arr)
    img, info = io.read_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(img, arr.astype(np.float32))
    assert info["bit_depth"] is None and info["saturated_fraction"] is None


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: _write_bytes(d / "corrupt.png", b"\x89PNG not really"), "cannot read"),
        (lambda d: _write_bytes(d / "image.bmp", b"BM"), "unsupported file type"),
        (lambda d: _save_npy(d / "nan.npy", np.where(np.eye(8) > 0, np.nan, 0.5)), "NaN/Inf"),
        (lambda d: _save_npy(d / "flat.npy", np.full((3, 8, 8), 0.25)), "constant"),
        (lambda d: _save_npy(d / "obj.npy", np.array([{"a": 1}], dtype=object)), "cannot read"),
    ],
)
def test_read_image_errors(tmp_path, make, match):
    with pytest.raises(InputError, match=match) as exc:
        io.read_image(make(tmp_path))
    assert "\n" not in str(exc.value)  # one-line messages for the CLI


def test_damaged_tiff_is_one_error_without_log_lines(tmp_path, rng, caplog):
    tifffile.imwrite(tmp_path / "ok.tif", rng.integers(0, 60000, size=(64, 64, 3), dtype=np.uint16))
    data = bytearray((tmp_path / "ok.tif").read_bytes())
    data[100:400] = np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes()  # tags overwritten
    _write_bytes(tmp_path / "damaged.tif", bytes(data))
    with caplog.at_level("DEBUG"), pytest.raises(InputError, match="damaged.tif"):
        io.read_image(tmp_path / "damaged.tif")
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # the message alone reaches the user


def test_grayscale_when_rgb_needed(tmp_path, rng):
    iio.imwrite(tmp_path / "g.png", rng.integers(0, 200, size=(16, 18), dtype=np.uint8))
    img, _ = io.read_image(tmp_path / "g.png")
    assert img.shape == (16, 18)
    with pytest.raises(InputError, match="grayscale but an RGB"):
        io.read_image(tmp_path / "g.png", need_channels=3)


def test_saturated_integer_image_rejected(tmp_path, rgb8):
    clipped = rgb8.copy()
    clipped[:8] = 255
    iio.imwrite(tmp_path / "sat.png", clipped)
    with pytest.raises(InputError, match="saturated"):
        io.read_image(tmp_path / "sat.png")
    img, info = io.read_image(tmp_path / "sat.png", max_saturated_fraction=0.5)
    assert info["saturated_fraction"] == pytest.approx(8 / 23)


def test_check_intensity_image_direct():
    io.check_intensity_image(np.random.rand(3, 5, 6), need_channels=3)
    with pytest.raises(InputError, match="2 channel"):
        io.check_intensity_image(np.random.rand(2, 5, 6), need_channels=3)
    with pytest.raises(InputError, match="pixel type"):
        io.check_intensity_image(np.ones((5, 6), dtype=complex))
    with pytest.raises(InputError, match="empty"):
        io.check_intensity_image(np.zeros((3, 0, 4)))
    with pytest.raises(InputError, match="constant"):
        io.check_intensity_image(np.zeros((4, 4)))


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _png16(path, arr):
    """A minimal 16-bit PNG (filter 0), written by hand: Pillow cannot write 16-bit colour PNGs."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = arr.shape[:2]
    colour = 2 if arr.ndim == 3 else 0
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return _write_bytes(path, b"\x89PNG\r\n\x1a\n" + body)


def test_png_16bit_gray_keeps_depth_and_colour_is_refused(tmp_path, rng):
    gray = rng.integers(0, 65536, size=(6, 7), dtype=np.uint16)
    img, info = io.read_image(_png16(tmp_path / "g16.png", gray))
    np.testing.assert_array_equal(img, gray.astype(np.float32) / 65535)
    assert info["bit_depth"] == 16
    # Pillow decodes 16-bit RGB PNGs to 8 bits per channel: refuse rather than lose the precision quietly
    with pytest.raises(InputError, match="16-bit colour PNG") as exc:
        io.read_image(_png16(tmp_path / "rgb16.png", rng.integers(0, 65536, size=(6, 7, 3), dtype=np.uint16)))
    assert "\n" not in str(exc.value)


def _save_npy(path, arr):
    np.save(path, arr, allow_pickle=True)
    return path


# --- TIFF and JSON ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(17, 29), (2, 17, 29)])
def test_tiff_round_trip_with_metadata(tmp_path, rng, shape):
    phase = rng.normal(size=shape).astype(np.float32)
    meta = {"method": "tie", "wavelength_um": 0.55, "config": {"reg": 1e-3}}
    io.write_tiff(tmp_path / "p.tif", phase, metadata=meta, pixel_size_um=0.1625)
    data, back = io.read_tiff(tmp_path / "p.tif")
    np.testing.assert_array_equal(data, phase)
    assert back["config"] == {"reg": 1e-3} and back["unit"] == "rad"
    assert back["pixel_size_um"] == 0.1625
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        xres, _ = tif.pages[0].get_resolution()
    assert 1 / xres == pytest.approx(0.1625)
    assert io.read_tiff_metadata(tmp_path / "p.tif") == back


def test_tiff_uint16_round_trip(tmp_path, rng):
    opd = rng.uniform(0, 300, size=(9, 11))
    io.write_tiff(tmp_path / "o.tif", opd, metadata={}, unit="nm", dtype="uint16",
                  value_range=(0.0, 300.0))
    data, meta = io.read_tiff(tmp_path / "o.tif")
    assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    np.testing.assert_allclose(data, opd, atol=300 / 65535 / 2 + 1e-12)
    assert meta["uint16_value"]["clipped_fraction"] == 0.0
    with pytest.raises(ValueError, match="value_range"):
        io.write_tiff(tmp_path / "x.tif", opd, metadata={}, dtype="uint16")


def test_write_json_round_trip(tmp_path):
    io.write_json(tmp_path / "m.json", {"a": np.float32(1.5), "b": np.arange(3), "p": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "a": 1.5, "b": [0, 1, 2], "p": str(tmp_path)}


def test_preview_png(tmp_path, rng):
    io.save_preview_png(tmp_path / "p.png", rng.random((40, 60)), label="phase (rad)")
    img = iio.imread(tmp_path / "p.png")
    assert img.ndim == 3 and img.shape[0] >= 40 and _leftovers(tmp_path) == []


# --- atomic writes -------------------------------------------------------------


def test_atomic_write_leaves_nothing_after_exception(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        io.write_json(target, {"x": object()})
    with pytest.raises(ValueError):
        with io.atomic_write(target, "w") as f:
            f.write("new, half")
            raise ValueError
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    with io.atomic_write(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"


def test_atomic_write_names_the_destination_folder(tmp_path):
    (tmp_path / "x.tif").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder") as err:
        with io.atomic_write(tmp_path / "x.tif") as f:
            f.write(b"data")
    assert err.value.filename == str(tmp_path / "x.tif")
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]


def test_read_map_keeps_values_and_undoes_the_uint16_mapping(tmp_path):
    phase = np.linspace(-1.5, 2.5, 40 * 30).reshape(40, 30)
    io.write_tiff(tmp_path / "q.tif", phase, metadata={"wavelength_um": 0.55}, unit="rad", dtype="uint16",
                  value_range=(-2.0, 3.0))
    back, meta = io.read_map(tmp_path / "q.tif")
    assert np.abs(back - phase).max() < 5.0 / 65535 and meta["wavelength_um"] == 0.55
    np.save(tmp_path / "codes.npy", np.full((8, 8), 200, np.uint8))  # constant and "saturated" is fine for a map
    assert io.read_map(tmp_path / "codes.npy")[0].max() == 200.0
    np.save(tmp_path / "rgb.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match="expected one plane"):
        io.read_map(tmp_path / "rgb.npy")
    np.save(tmp_path / "nan.npy", np.full((8, 8), np.nan))
    with pytest.raises(InputError, match="NaN or Inf"):
        io.read_map(tmp_path / "nan.npy")


def test_chroma_subsampled_jpeg_warns_and_a_full_colour_one_does_not(tmp_path, recwarn):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = (rng.random((48, 56, 3)) * 200 + 20).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "s420.jpg", quality=95)  # Pillow's default: 4:2:0
    Image.fromarray(pixels).save(tmp_path / "s444.jpg", quality=95, subsampling=0)
    with pytest.warns(UserWarning, match="s420.jpg: JPEG with 4:2:0 chroma subsampling"):
        _, info = io.read_image(tmp_path / "s420.jpg", need_channels=3)
    assert info["chroma_subsampling"] == "4:2:0"
    recwarn.clear()
    _, info = io.read_image(tmp_path / "s444.jpg", need_channels=3)
    assert info["chroma_subsampling"] is None and not [w for w in recwarn if "chroma" in str(w.message)]


def test_only_a_file_marked_alpha_loses_its_last_channel(tmp_path):
    rng = np.random.default_rng(3)
    planes = (0.5 + 0.1 * rng.random((40, 48, 2))).astype(np.float32)  # a two-plane stack saved (H, W, C)
    tifffile.imwrite(tmp_path / "two.tif", planes, photometric="minisblack")  # read back as 40 planes of 48 x 2
    np.save(tmp_path / "two.npy", planes)
    for name in ("two.tif", "two.npy"):
        image, info = io.read_image(tmp_path / name, need_channels=2)
        assert image.shape == (2, 40, 48) and not info["alpha_dropped"]
        np.testing.assert_array_equal(image[1], planes[..., 1])
    four = (0.5 + 0.1 * rng.random((40, 48, 4))).astype(np.float32)
    tifffile.imwrite(tmp_path / "four.tif", four, photometric="rgb", extrasamples=["unassalpha"])  # as RGBA
    assert io.read_image(tmp_path / "four.tif", need_channels=4)[0].shape == (4, 40, 48)  # a 4-plane microscope
    with pytest.warns(UserWarning, match="alpha channel is not opaque"):  # a random alpha: said, then dropped
        image, info = io.read_image(tmp_path / "four.tif", need_channels=3)  # RGBA for an RGB microscope
    assert image.shape == (3, 40, 48) and info["alpha_dropped"]


@pytest.fixture
def umask():
    """Set the process umask for a test and restore it afterwards."""
    import os

    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path, umask, mask):
    umask(mask)
    io.write_json(tmp_path / "out.json", {"x": 1})
    (tmp_path / "plain.json").write_text("{}")
    mode = (tmp_path / "out.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~mask == (tmp_path / "plain.json").stat().st_mode & 0o777
    folder = io.sibling_temp_dir(tmp_path / "run")
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o777 & ~mask


@pytest.mark.parametrize("write, expected_um", [
    (dict(ome=True, metadata={"axes": "CYX", "PhysicalSizeX": 162.5, "PhysicalSizeXUnit": "nm"}), 0.1625),
    (dict(ome=True, metadata={"axes": "CYX", "PhysicalSizeX": 0.33}), 0.33),  # OME's default unit: µm
    (dict(imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron"}), 0.25),  # Fiji: pixels per µm
    (dict(resolution=(20000.0, 20000.0), resolutionunit=3), 0.5),  # pixels per centimetre
    (dict(resolution=(72.0, 72.0), resolutionunit=2), None),  # a 72 dpi default is no calibration
    (dict(), None),  # no resolution recorded
])
def test_tiff_pixel_size_is_read_from_ome_imagej_or_resolution_tags(tmp_path, rng, write, expected_um):
    path = tmp_path / "cal.tif"
    write = {"photometric": "minisblack", **write}  # three planes, as a planes-mode stack is saved
    tifffile.imwrite(path, rng.integers(20000, 40000, size=(3, 16, 16), dtype=np.uint16), **write)
    size = io.tiff_pixel_size_um(path)
    assert size == pytest.approx(expected_um, rel=1e-9) if expected_um else size is None
    assert io.read_image(path, need_channels=3)[1]["pixel_size_um"] == size


def test_fiji_micrometre_unit_written_as_an_escape_is_understood(tmp_path, rng):
    # ImageJ stores non-ASCII as literal "\u00B5m" in its description (real ImageJ 1.52 files).
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, rng.integers(20000, 40000, size=(3, 16, 16), dtype=np.uint16), photometric="minisblack",
                     imagej=True, resolution=(1 / 0.1625, 1 / 0.1625), metadata={"unit": "\\u00B5m"})
    assert io.tiff_pixel_size_um(path) == pytest.approx(0.1625)
