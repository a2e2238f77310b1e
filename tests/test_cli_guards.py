"""Guards against inputs and outputs that would silently give wrong or lost data (exit 2, one line, nothing written)."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import chromaqpi
from chromaqpi.cli.main import main
from chromaqpi.errors import InputError
from chromaqpi.io import read_image, write_tiff


@pytest.fixture
def stack(tmp_path):
    """A flat-fielded two-plane paper-2shot image of a bump, (C, H, W) float32 TIFF."""
    yy, xx = np.mgrid[:32, :40]
    phase = np.exp(-((yy - 16.0) ** 2 + (xx - 20.0) ** 2) / 40.0)
    images = chromaqpi.simulate(torch.as_tensor(phase[None]), "paper-2shot", noise=False)[0].numpy()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, images.astype(np.float32))
    return path


def _one_line_error(capsys, message):
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["focus", "register"])
def test_calibration_commands_refuse_to_write_over_their_input(stack, capsys, command):
    before = stack.read_bytes()
    assert main([command, str(stack), "-m", "paper-2shot", "--normalized", "--out", str(stack)]) == 2
    _one_line_error(capsys, "expected a .toml file name")
    assert stack.read_bytes() == before


def test_dataset_preview_writes_only_a_png(tmp_path, capsys):
    data = tmp_path / "ds"
    assert main(["dataset", "build", "--microscope", "paper-2shot", "--source", "cells:1", "--n", "2", "--size", "32",
                 "--seed", "1", "--out", str(data), "--quiet"]) == 0
    manifest = (data / "manifest.json").read_bytes()
    assert main(["dataset", "preview", str(data), "--out", str(data / "manifest.json")]) == 2
    _one_line_error(capsys, "expected a .png file name")
    assert (data / "manifest.json").read_bytes() == manifest


def test_a_failed_write_leaves_none_of_the_inputs_outputs(stack, tmp_path, capsys, monkeypatch):
    import chromaqpi.cli.reconstruct as rec

    written = rec.write_outputs

    def full_disk(outputs, *args):  # the phase TIFF lands, then the disk fills up
        write_tiff(outputs["phase.tif"], np.zeros((4, 4), np.float32), metadata={}, unit="rad")
        raise OSError("65536 requested and 35212 written")  # tifffile's short write: no errno, no file name

    monkeypatch.setattr(rec, "write_outputs", full_disk)
    out = tmp_path / "out"
    assert main(["reconstruct", str(stack), "-m", "paper-2shot", "--method", "tie", "--normalized",
                 "--out", str(out)]) == 1
    _one_line_error(capsys, "this input's outputs were not written")
    assert not out.exists() or not list(out.iterdir())
    monkeypatch.setattr(rec, "write_outputs", written)


def test_simulate_reads_the_unit_its_maps_record(tmp_path, capsys):
    opd = tmp_path / "cell_opd.tif"
    write_tiff(opd, np.full((16, 16), 200.0, np.float32), metadata={}, unit="nm")
    out = tmp_path / "out"
    assert main(["simulate", str(opd), "--out", str(out)]) == 2
    _one_line_error(capsys, "values are in 'nm', not rad; pass --opd-nm")
    assert main(["simulate", str(opd), "--opd-nm", "--out", str(out)]) == 0
    phase = tmp_path / "cell_phase.tif"
    write_tiff(phase, np.zeros((16, 16), np.float32), metadata={}, unit="rad")
    assert main(["simulate", str(phase), "--opd-nm", "--out", str(tmp_path / "o2")]) == 2
    _one_line_error(capsys, "values are in 'rad', not nm; drop --opd-nm")


def test_a_12_bit_camera_in_a_16_bit_file_is_checked_for_clipping(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(1500, 3000, size=(32, 32, 3)).astype(np.uint16)  # (H, W, C) as cameras save
    tifffile.imwrite(tmp_path / "ok.tif", image, photometric="rgb")
    read_image(tmp_path / "ok.tif")
    image[:8] = 4095  # a quarter of the frame at the 12-bit ceiling
    tifffile.imwrite(tmp_path / "clipped.tif", image, photometric="rgb")
    with pytest.raises(InputError, match=r"25.0% of values are saturated"):
        read_image(tmp_path / "clipped.tif")
    image[:8] = 3500  # the same level short of 2^k - 1 is just bright
    tifffile.imwrite(tmp_path / "bright.tif", image, photometric="rgb")
    read_image(tmp_path / "bright.tif")


@pytest.mark.parametrize("mode, name", [("CMYK", "x.jpg"), ("P", "x.png"), ("1", "x.png")])
def test_files_that_do_not_hold_intensities_are_refused(tmp_path, mode, name):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    rgb.convert(mode).save(tmp_path / name)
    with pytest.raises(InputError, match="not camera intensities"):
        read_image(tmp_path / name)


def test_intensities_must_be_light():
    images = torch.ones(3, 16, 16)
    images[1] = 0  # a dead channel
    with pytest.raises(InputError, match="a channel has no light"):
        chromaqpi.reconstruct(images, "default", method="tie")
    centred = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.2
    with pytest.raises(InputError, match=r"of the intensities are negative \(down to"):
        chromaqpi.reconstruct(centred - 0.2 + 0.05, "default", method="tie")
    chromaqpi.reconstruct(centred + 0.8, "default", method="tie")  # all light: fine


def test_a_negative_dark_level_is_refused(stack, tmp_path, capsys):
    assert main(["reconstruct", str(stack), "-m", "paper-2shot", "--dark", "-0.5", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--dark must be a finite black level >= 0")


def test_a_killed_run_leaves_no_empty_output_folder(stack, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "chromaqpi.cli.main", "reconstruct", str(stack), "-m", "paper-2shot", "--normalized",
           "--method", "zmd", "--steps", "1000000", "--out", str(out)]  # hours: killed mid-run
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:  # the folder is made before the work starts
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"interrupted" in err
    assert not out.exists()


def test_keep_going_reports_a_bad_image_and_finishes_the_batch(stack, tmp_path, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.tif").write_bytes(stack.read_bytes())
    (folder / "b.tif").write_text("not a TIFF")
    (folder / "c.tif").write_bytes(stack.read_bytes())
    base = ["reconstruct", str(folder), "-m", "paper-2shot", "--normalized", "--method", "tie", "--no-preview"]
    assert main([*base, "--out", str(tmp_path / "stop")]) == 2  # default: stop at the first bad one
    assert sorted(p.name for p in (tmp_path / "stop").iterdir()) == ["a_opd.tif", "a_phase.tif"]
    capsys.readouterr()
    assert main([*base, "--keep-going", "--out", str(tmp_path / "all")]) == 1
    captured = capsys.readouterr()
    assert "b.tif: cannot read tiff file" in captured.err and "(skipped)" in captured.err
    lines = captured.err.splitlines()
    assert any(line.startswith("chromaqpi reconstruct: error: ") for line in lines)  # not on the progress bar
    assert "wrote 2 reconstruction(s)" in captured.out and "1 input(s) failed: b.tif" in captured.out
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["a_opd.tif", "a_phase.tif", "c_opd.tif",
                                                                     "c_phase.tif"]
    a = str(folder / "a.tif")
    assert main([*base[:1], a, str(folder / ".." / "batch" / "a.tif"), *base[2:],
                 "--out", str(tmp_path / "twice")]) == 0  # one file named twice runs once
    assert "wrote 1 reconstruction(s)" in capsys.readouterr().out


def test_reconstruct_into_its_input_folder_does_not_read_its_outputs_back(stack, tmp_path, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.tif").write_bytes(stack.read_bytes())
    args = ["reconstruct", str(folder), "-m", "paper-2shot", "--normalized", "--method", "tie", "--out", str(folder)]
    assert main(args) == 0 and main(args) == 0  # the re-run sees a.tif only, not a_phase.tif / a_opd.tif / a_phase.png
    assert "wrote 1 reconstruction(s)" in capsys.readouterr().out.splitlines()[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "a_opd.tif", "a_phase.png", "a_phase.tif"]


def test_simulate_says_when_its_16_bit_output_clips(tmp_path, capsys):
    yy, xx = np.mgrid[:48, :48]
    picture = tmp_path / "saw.png"
    Image.fromarray(((xx % 8) * 31).astype(np.uint8)).save(picture)  # sharp steps focus to bright lines
    with pytest.warns(UserWarning, match="are clipped in the 16-bit output"):
        assert main(["simulate", str(picture), "--from-image", "--max-phase", "3.5", "-m", "paper-rgb",
                     "--out", str(tmp_path / "a")]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["simulate", str(picture), "--from-image", "--max-phase", "3.5", "-m", "paper-rgb", "--float",
                     "--out", str(tmp_path / "b")]) == 0
    assert not [w for w in caught if "clipped" in str(w.message)]
    assert main(["simulate", str(picture), "--from-image", "--max-phase", "0", "--out", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "--max-phase must be a finite phase > 0")


def test_a_defocus_in_nm_is_refused(stack, tmp_path, capsys):
    text = chromaqpi.Microscope.from_preset("default").to_toml().replace("defocus_um = 1.0", "defocus_um = 1000.0")
    assert "defocus_um = 1000.0" in text
    scope = tmp_path / "nm.toml"
    scope.write_text(text)  # a 1000 "µm" focus made every phase 1000x too small, without a word
    assert main(["reconstruct", str(stack), "-m", str(scope), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "must be in µm (|z| <= 100), got 1000")
    assert not (tmp_path / "o").exists()


def test_a_display_gamma_is_questioned_and_dark_with_a_response_refused(stack, tmp_path, capsys):
    from chromaqpi.io import check_gamma

    with pytest.warns(UserWarning, match="did you mean 0.455"):
        check_gamma(2.2)
    assert main(["reconstruct", str(stack), "-m", "paper-2shot", "--response", str(tmp_path / "cam.json"),
                 "--dark", "0.01", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--response curves include the camera's black level: drop --dark")
    assert not (tmp_path / "o").exists()


def test_the_background_is_not_reconstructed_as_a_specimen(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    empty = np.full((32, 40, 3), 30000, np.uint16) + np.random.default_rng(0).integers(0, 300, (32, 40, 3)).astype(
        np.uint16)
    tifffile.imwrite(folder / "empty.tif", empty)
    tifffile.imwrite(folder / "cell.tif", (empty * 0.9).astype(np.uint16))
    args = ["-m", "default", "--method", "tie", "--background", str(folder / "empty.tif"), "--out"]
    assert main(["reconstruct", str(folder), *args, str(tmp_path / "o")]) == 0
    assert "skipped empty.tif: it is the --background" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").glob("*_phase.tif")) == ["cell_phase.tif"]
    assert main(["reconstruct", str(folder / "empty.tif"), *args, str(tmp_path / "o2")]) == 2
    _one_line_error(capsys, "the only input is the --background")
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("alpha, warned", [(255, False), (128, True)])
def test_a_transparent_alpha_channel_is_named_when_dropped(tmp_path, alpha, warned):
    rgba = np.random.default_rng(0).integers(150, 220, (16, 16, 4)).astype(np.uint8)
    rgba[..., 3] = alpha
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, info = read_image(tmp_path / "a.png", need_channels=3)
    assert image.shape == (3, 16, 16) and info["alpha_dropped"]
    assert any("alpha channel is not opaque" in str(w.message) for w in caught) == warned


def test_a_uniform_background_is_a_valid_empty_field(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cell = (2700 + rng.integers(0, 300, (32, 40, 3))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cell.tif", cell, photometric="rgb")
    tifffile.imwrite(tmp_path / "bg.tif", np.full((32, 40, 3), 3000, np.uint16), photometric="rgb")
    assert main(["reconstruct", str(tmp_path / "cell.tif"), "--method", "tie", "--background", str(tmp_path / "bg.tif"),
                 "--no-preview", "--out", str(tmp_path / "o")]) == 0
    # As a specimen it has nothing to reconstruct: said in the file's own counts, not scaled units.
    assert main(["reconstruct", str(tmp_path / "bg.tif"), "--method", "tie", "--out", str(tmp_path / "o2")]) == 2
    _one_line_error(capsys, "image is constant (every pixel reads 3000 of 65535)")


@pytest.mark.parametrize("preset, extra, noise", [("paper-2shot", [], False), ("default", [], True),
                                                  ("default", ["--no-noise"], False)])
def test_simulate_records_whether_noise_was_applied(tmp_path, preset, extra, noise):
    # The paper presets' additive noise is N(0, 0): "noise: true" said it was applied.
    import json

    np.save(tmp_path / "p.npy", np.zeros((16, 16), np.float32))
    assert main(["simulate", str(tmp_path / "p.npy"), "-m", preset, *extra, "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "p_sim.json").read_text())["noise"] is noise


def test_a_black_level_above_the_image_is_named_as_such(tmp_path, capsys):
    image = (20000 + np.random.default_rng(0).integers(0, 3000, (32, 40, 3))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb")
    assert main(["reconstruct", str(tmp_path / "a.tif"), "--method", "tie", "--dark", "100",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "the black level (dark) 100 is at or above the image's median intensity 0.3")
    assert not (tmp_path / "o").exists()


def test_a_device_or_an_empty_file_is_named_for_what_it_is(tmp_path, capsys):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="file is empty"):
        read_image(tmp_path / "empty.tif")
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    with pytest.raises(InputError, match="not a regular file"):
        read_image("/dev/null")
    assert main(["reconstruct", "/dev/null", "--method", "tie", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "input /dev/null is not a regular file")


def test_srgb_decoding_of_a_16_bit_file_is_questioned(tmp_path):
    image = (20000 + np.random.default_rng(0).integers(0, 3000, (32, 40, 3))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb")
    with pytest.warns(UserWarning, match="sRGB decoding is meant for 8-bit display images .* this file is 16-bit"):
        assert main(["reconstruct", str(tmp_path / "a.tif"), "--method", "tie", "--srgb", "--no-preview",
                     "--out", str(tmp_path / "o")]) == 0
    Image.fromarray((image // 256).astype(np.uint8)).save(tmp_path / "b.png")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="sRGB decoding")
        read_image(tmp_path / "b.png", linearize_srgb=True)  # 8-bit: what it is for


def test_the_constant_baseline_is_not_offered_to_reconstruct_images(stack, tmp_path, capsys):
    assert main(["reconstruct", str(stack), "-m", "paper-2shot", "--normalized", "--method", "constant",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--method constant is a benchmark baseline" in err and "constant," not in err.split("choose from")[1]
    assert not (tmp_path / "o").exists()
    assert main(["reconstruct", str(stack), "-m", "paper-2shot", "--normalized", "--method", "tei",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--method tei is not a method; choose from auto,")
    phase = chromaqpi.reconstruct(tifffile.imread(stack), "paper-2shot", method="constant")  # the API keeps it
    assert not phase.any()
