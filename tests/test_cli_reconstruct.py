"""`chromaqpi reconstruct` end to end: written units and values, and user errors (exit 2, nothing written)."""

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tifffile

import chromaqpi
from chromaqpi.cli.main import main
from chromaqpi.io import read_tiff


@pytest.fixture(scope="module")
def rgb_stack(tmp_path_factory):
    """A noiseless paper-rgb image of a Gaussian bump, saved as (C, H, W) float32 NPY (flat-fielded)."""
    yy, xx = np.mgrid[:48, :56]
    phase = 1.2 * np.exp(-((yy - 24.0) ** 2 + (xx - 28.0) ** 2) / 80.0)
    images = chromaqpi.simulate(torch.as_tensor(phase[None]), "paper-rgb", noise=False)[0].numpy()
    path = tmp_path_factory.mktemp("in") / "bump.npy"
    np.save(path, images.astype(np.float32))
    return path, images


def test_writes_phase_and_opd_that_match_the_api(rgb_stack, tmp_path):
    path, images = rgb_stack
    out = tmp_path / "out"
    args = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out), "--no-preview"]
    assert main(args) == 0
    phase, meta = read_tiff(out / "bump_phase.tif")
    opd, _ = read_tiff(out / "bump_opd.tif")
    expected = chromaqpi.reconstruct(images, "paper-rgb", method="tie")
    assert np.allclose(phase, expected, atol=1e-5)
    lam_nm = 1000 * chromaqpi.Microscope.from_preset("paper-rgb").optics.wavelength_ref_um
    assert np.allclose(opd, phase * lam_nm / (2 * math.pi), rtol=1e-5, atol=1e-4)
    assert meta["method"] == "tie" and meta["source"] == "bump.npy"


def test_check_data_skips_an_image_too_small_and_still_writes_it(tmp_path):
    yy, xx = np.mgrid[:24, :24]
    bump = torch.as_tensor(np.exp(-((yy - 12.0) ** 2 + (xx - 12.0) ** 2) / 20.0)[None])
    images = chromaqpi.simulate(bump, "paper-rgb", noise=False)[0].numpy()
    np.save(tmp_path / "small.npy", images.astype(np.float32))
    with pytest.warns(UserWarning, match="--check-data skipped"):
        assert main(["reconstruct", str(tmp_path / "small.npy"), "--method", "tie", "--microscope", "paper-rgb",
                     "--normalized", "--out", str(tmp_path / "out"), "--no-preview", "--check-data"]) == 0
    _, meta = read_tiff(tmp_path / "out" / "small_phase.tif")
    assert meta["data_fit"] is None and any("--check-data skipped" in w for w in meta["warnings"])


def test_check_data_records_the_data_fit_of_the_written_phase(rgb_stack, tmp_path, capsys):
    path, images = rgb_stack
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
                 "--out", str(out), "--no-preview", "--check-data"]) == 0
    phase, meta = read_tiff(out / "bump_phase.tif")
    expected = chromaqpi.data_fit(images, phase, "paper-rgb")
    assert meta["data_fit"]["unexplained_contrast"] == pytest.approx(expected.unexplained_contrast, rel=1e-4)
    assert "of the contrast unexplained" in capsys.readouterr().out


def test_learned_outputs_record_their_weights_and_the_step_count_and_temperature_used(rgb_stack, tmp_path):
    path, _ = rgb_stack
    card = json.loads((Path(chromaqpi.__file__).parent / "weights" / "paper-rgb" / "config.json").read_text())
    card_temperature = card["sampling"].get("temperature", 1.0)
    base = ["reconstruct", str(path), "--method", "zmd", "--microscope", "paper-rgb", "--normalized", "--no-preview"]
    # The card's count and temperature, the flags', and temperature 1 for N > 1 draws (their spread).
    for extra, steps, temperature in (([], card["sampling"]["steps"], card_temperature),
                                      (["--steps", "3", "--temperature", "0.2"], 3, 0.2),
                                      (["--steps", "2", "--samples", "2"], 2, 1.0)):
        out = tmp_path / f"out{steps}"
        assert main([*base, "--out", str(out), *extra]) == 0
        _, meta = read_tiff(out / "bump_phase.tif")
        assert meta["steps"] == steps and meta["model_sha256"] == card["weights"]["sha256"]
        assert meta["temperature"] == temperature


@pytest.fixture(scope="module")
def tiny_calibrated_zmd(tmp_path_factory):
    """An untrained 3-channel ZMD checkpoint for paper-rgb whose card has a std scale of 3 (fitted on 8 draws)."""
    from chromaqpi.cli.train import model_config
    from chromaqpi.models.registry import build_model
    from chromaqpi.training.checkpoint import make_card, save_model

    torch.manual_seed(0)
    net = build_model(model_config("zmd", 3, 8, 2, 1))
    with torch.no_grad():  # zero-initialised output layers would give no spread
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(folder, net, make_card(net, input_normalisation="flatfield"))
    config = folder / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "uncertainty": {"scale": 3.0, "draws": 8}}))
    return folder


@pytest.mark.filterwarnings("ignore:the std of 2 draws at temperature 0.5")
def test_std_map_is_the_calibrated_error_bar_unless_raw_std(rgb_stack, tmp_path, tiny_calibrated_zmd):
    from chromaqpi.models.registry import draws_correction

    path, _ = rgb_stack
    base = ["reconstruct", str(path), "--method", "zmd", "--model", str(tiny_calibrated_zmd), "--microscope",
            "paper-rgb", "--normalized", "--no-preview", "--steps", "2", "--samples", "2"]
    stds = {}
    for name, extra in (("calibrated", []), ("raw", ["--raw-std"]), ("cool", ["--temperature", "0.5"])):
        assert main([*base, "--out", str(tmp_path / name), *extra]) == 0
        stds[name] = read_tiff(tmp_path / name / "bump_std.tif")
    (calibrated, meta), (raw, raw_meta), (_, cool_meta) = stds["calibrated"], stds["raw"], stds["cool"]
    assert float(raw.max()) > 0
    assert meta["std_scale"] == pytest.approx(3.0 * draws_correction(2, 8))
    assert np.allclose(calibrated, meta["std_scale"] * raw, rtol=1e-5, atol=1e-7)
    assert meta["quantity"] == "calibrated one-sigma error of phase"
    assert raw_meta["std_scale"] is None and "uncalibrated" in raw_meta["calibration"]
    assert raw_meta["options"]["calibrated_std"] is False
    assert cool_meta["std_scale"] is None and "uncalibrated spread of posterior draws" in cool_meta["calibration"]
    # The mean net's std is the spread of its views, never scaled.
    assert main(["reconstruct", str(path), "--method", "mean", "--model", str(tiny_calibrated_zmd), "--microscope",
                 "paper-rgb", "--normalized", "--no-preview", "--samples", "2", "--out", str(tmp_path / "m")]) == 0
    _, mean_meta = read_tiff(tmp_path / "m" / "bump_std.tif")
    assert mean_meta["std_scale"] is None and "turned/flipped views" in mean_meta["quantity"]


def test_tile_reaches_the_learned_method_and_is_recorded(tmp_path):
    # 96 x 112 px with --tile 64: 2 x 2 tiles, as the API call with tile=64 (not the default one pass).
    yy, xx = np.mgrid[:96, :112]
    phase = 1.2 * np.exp(-((yy - 40.0) ** 2 + (xx - 60.0) ** 2) / 120.0)
    images = chromaqpi.simulate(torch.as_tensor(phase[None]), "paper-rgb", noise=False)[0].numpy()
    path = tmp_path / "big.npy"
    np.save(path, images.astype(np.float32))
    assert main(["reconstruct", str(path), "--method", "mean", "--microscope", "paper-rgb", "--normalized",
                 "--no-preview", "--tile", "64", "--out", str(tmp_path / "out")]) == 0
    got, meta = read_tiff(tmp_path / "out" / "big_phase.tif")
    tiled = chromaqpi.reconstruct(torch.as_tensor(images[None]), "paper-rgb", method="mean", tile=64)[0].numpy()
    whole = chromaqpi.reconstruct(torch.as_tensor(images[None]), "paper-rgb", method="mean")[0].numpy()
    assert meta["options"]["tile"] == 64
    assert np.allclose(got, tiled, atol=1e-5) and not np.allclose(got, whole, atol=1e-3)


def test_the_default_method_is_the_nearest_shipped_mean_net_else_tie_with_a_warning(rgb_stack, tmp_path):
    path, images = rgb_stack
    card = json.loads((Path(chromaqpi.__file__).parent / "weights" / "paper-rgb" / "config.json").read_text())
    assert main(["reconstruct", str(path), "-m", "paper-rgb", "--normalized", "--no-preview",
                 "--out", str(tmp_path / "in")]) == 0
    phase, meta = read_tiff(tmp_path / "in" / "bump_phase.tif")
    assert (meta["method"], meta["method_requested"], meta["options"]["model"]) == ("mean", "auto", "paper-rgb")
    assert meta["model_sha256"] == card["weights"]["sha256"] and meta["warnings"] == []
    assert np.allclose(phase, chromaqpi.reconstruct(images, "paper-rgb", method="mean"), atol=1e-5)
    # Four planes: no shipped network reads such a stack, so the classical TIE runs, and says why.
    scope = chromaqpi.Microscope.from_preset("paper-2shot")
    plane = dataclasses.asdict(scope.planes[0])
    four = scope.replace(planes=[{**plane, "defocus_um": z} for z in (-2.0, -1.0, 1.0, 2.0)])
    four.to_toml(tmp_path / "four.toml")
    yy, xx = np.mgrid[:48, :56]
    bump = 1.2 * np.exp(-((yy - 24.0) ** 2 + (xx - 28.0) ** 2) / 80.0)
    stack = chromaqpi.simulate(torch.as_tensor(bump[None]), four, noise=False)[0].numpy()
    np.save(tmp_path / "four.npy", stack.astype(np.float32))
    with pytest.warns(UserWarning, match="method 'auto' runs tie"):
        assert main(["reconstruct", str(tmp_path / "four.npy"), "-m", str(tmp_path / "four.toml"), "--normalized",
                     "--no-preview", "--out", str(tmp_path / "out")]) == 0
    phase, meta = read_tiff(tmp_path / "out" / "four_phase.tif")
    assert (meta["method"], meta["method_requested"]) == ("tie", "auto") and "model_sha256" not in meta
    assert any("n_channels = 4" in w for w in meta["warnings"])
    assert np.allclose(phase, chromaqpi.reconstruct(stack, four, method="tie"), atol=1e-5)


@pytest.mark.parametrize("extra, message", [
    (["--refine-starts", "model+tie"], "--refine-starts needs --refine"),
    (["--orientations"], "--orientations needs --samples"),
    (["--method", "no-such-method"], "no-such-method"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--refine", "-3"], "--refine must be >= 0"),
    (["--dark", "nan"], "--dark must be a finite"),
    (["--method", "zmd", "--steps", "0"], "steps must be >= 1, got 0"),  # 0 used to mean "the default"
    (["--dark", "0.1"], "--normalized inputs are already flat-fielded"),  # would be ignored
    (["--background", "bg.tif"], "--normalized inputs are already flat-fielded"),
    (["--steps", "5"], "--method tie does not take --steps"),  # named by flag, not by internal option
    (["--samples", "4"], "--method tie does not take --samples"),
    (["--refine", "3"], "--method tie does not take --refine ("),
    (["--method", "mean", "--steps", "5"], "--method mean does not take --steps"),
    (["--method", "mean", "--temperature", "0.5"], "--method mean does not take --temperature"),
    (["--temperature", "0.5"], "--method tie does not take --temperature"),
    (["--method", "auto", "--temperature", "0.5"], "--method auto (the default) does not take --temperature"),
    (["--method", "zmd", "--temperature", "-0.5"], "--temperature must be a finite number >= 0"),
    (["--method", "zmd", "--temperature", "inf"], "--temperature must be a finite number >= 0"),
    (["--method", "auto", "--samples", "4"], "--method auto (the default) does not take --samples"),
    (["--tile", "512"], "--method tie does not take --tile"),
    (["--method", "zmd", "--raw-std"], "--raw-std needs --samples N >= 2"),
    (["--method", "mean", "--tile", "32"], "--tile must be >= 64 px"),
    (["--gamma", "0.45", "--srgb"], "--srgb, --gamma and --response each describe the file's encoding"),
    (["--gamma", "0"], "gamma must be a number in [0.1, 10]"),
])
def test_user_errors_exit_2_without_output(rgb_stack, tmp_path, capsys, extra, message):
    path, _ = rgb_stack
    out = tmp_path / "out"
    args = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out), "--no-preview", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out.exists() and list(out.iterdir()))


@pytest.mark.parametrize("extra", [["--steps", "abc"], ["--no-such-option"], []])
def test_usage_errors_are_one_line(rgb_stack, tmp_path, capsys, extra):
    path, _ = rgb_stack
    args = ["reconstruct", str(path), *extra] + (["--out", str(tmp_path / "out")] if extra else [])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chromaqpi reconstruct: error:"), lines
    assert "--help" in lines[0]


def test_grayscale_where_rgb_is_needed_is_rejected(tmp_path, capsys):
    gray = tmp_path / "gray.npy"
    np.save(gray, np.ones((32, 32), np.float32))
    out = tmp_path / "out"
    assert main(["reconstruct", str(gray), "--microscope", "paper-rgb", "--normalized", "--out", str(out)]) == 2
    assert "channel" in capsys.readouterr().err
    assert not (out.exists() and list(out.iterdir()))


@pytest.mark.parametrize("card, message", [
    ("5", "lacks the 'model' or 'weights' section"),
    ('{"model": 5, "weights": {}}', "lacks the 'model' or 'weights' section"),
    ('{"model": {"kind": "mean"}, "weights": "model.safetensors"}', "lacks the 'model' or 'weights' section"),
    (None, "folder has no config.json"),
    ('{"format": "chromaqpi-model", "format_version": 7, "model": {}, "weights": {}}', "version 7 is not"),
    ('{"model": {"kind": "mean"}, "weights": {}, "microscope": "oops"}', "'microscope' must map"),
    ('{"model": {"kind": "mean"}, "weights": {}, "microscope": {"n_channels": [3]}}', "'microscope' must map"),
    ('{"model": {"kind": "mean"}, "weights": {}, "microscope": {"optics.na_objective": [0.6, 0.4]}}',
     "'microscope' must map"),  # a reversed range would flag every microscope
    ('{"model": {"kind": "mean"}, "weights": {}, "sampling": {"steps": 0}}', "'steps' is an integer >= 1"),
    ('{"model": {"kind": "mean"}, "weights": {}, "sampling": 10}', "'sampling' must be an object"),
    ('{"model": {"kind": "mean"}, "weights": {}, "sampling": {"temperature": "cool"}}', "'sampling.temperature'"),
    ('{"model": {"kind": "mean"}, "weights": {}, "sampling": {"temperature": -1}}', "'sampling.temperature'"),
    ('{"model": {"kind": "mean"}, "weights": {}, "uncertainty": {"scale": 0}}', "'uncertainty' must be an object"),
    ('{"model": {"kind": "mean"}, "weights": {}, "uncertainty": {"scale": "x"}}', "'uncertainty' must be an object"),
    ('{"model": {"kind": "mean"}, "weights": {}, "uncertainty": 2}', "'uncertainty' must be an object"),
])
def test_malformed_model_folder_is_a_one_line_error(rgb_stack, tmp_path, capsys, card, message):
    path, _ = rgb_stack
    model = tmp_path / "model"
    model.mkdir()
    if card is not None:
        (model / "config.json").write_text(card)
    out = tmp_path / "out"
    args = ["reconstruct", str(path), "--method", "mean", "--model", str(model), "--microscope", "paper-rgb",
            "--normalized", "--out", str(out), "--no-preview"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (out.exists() and list(out.iterdir()))


def test_pickle_file_as_model_is_named_as_a_file(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    args = ["reconstruct", str(path), "--method", "mean", "--model", str(pt), "--microscope", "paper-rgb",
            "--normalized", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "is a file, not a model folder" in capsys.readouterr().err


def test_out_below_a_regular_file_is_a_user_error(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    (tmp_path / "file").write_text("x")
    for command in (["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized"],
                    ["simulate", str(tmp_path / "file")]):  # the folder is checked before the input is read
        assert main([*command, "--out", str(tmp_path / "file" / "sub")]) == 2
        err = capsys.readouterr().err
        assert "cannot create folder" in err and "Traceback" not in err


def test_an_out_named_like_an_image_file_is_refused_unless_that_folder_exists(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    command = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized", "--no-preview"]
    assert main([*command, "--out", str(tmp_path / "phase.TIF")]) == 2
    err = capsys.readouterr().err
    assert "looks like a file name; --out is the output folder" in err and "Traceback" not in err
    assert not (tmp_path / "phase.TIF").exists()
    (tmp_path / "run.tif").mkdir()  # a folder of that name that the user made is taken
    assert main([*command, "--out", str(tmp_path / "run.tif")]) == 0
    assert any((tmp_path / "run.tif").iterdir())


def test_read_only_out_is_refused_before_any_work(rgb_stack, tmp_path, capsys, monkeypatch):
    path, _ = rgb_stack
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root may write anyway: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != out and real_access(p, mode))
    args = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out)]
    assert main(args) == 2
    assert "not writable" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no temp files either


def test_simulate_rejects_a_non_finite_max_phase(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--from-image", "--max-phase", "nan", "--out", str(out)]) == 2
    assert "--max-phase must be a finite" in capsys.readouterr().err
    assert main(["simulate", str(path), "--max-phase", "3", "--out", str(out)]) == 2  # a map keeps its values
    assert "--max-phase scales pictures: it needs --from-image" in capsys.readouterr().err
    assert not out.exists()
    assert not out.exists()


def test_inputs_with_one_stem_are_refused_before_they_overwrite_each_other(rgb_stack, tmp_path, capsys):
    path, images = rgb_stack
    other = tmp_path / "second"
    other.mkdir()
    np.save(other / path.name, images[::-1].copy())  # another folder's bump.npy -> the same bump_phase.tif
    out = tmp_path / "out"
    args = ["reconstruct", str(path), str(other), "--method", "tie", "--microscope", "paper-rgb",
            "--normalized", "--out", str(out), "--no-preview"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "would write the same outputs" in err and "Traceback" not in err
    assert not out.exists()
    assert main([*args[:2], str(path), *args[3:]]) == 0  # the same file twice is not a conflict


def test_an_error_in_a_batch_names_the_file_and_leaves_no_empty_out(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.ones((3, 4, 4), np.float32) + 0.01 * np.arange(16, dtype=np.float32).reshape(4, 4))
    out = tmp_path / "new" / "out"
    args = ["reconstruct", str(tiny), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out), "--no-preview"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "too small" in err and str(tiny) in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()  # created for this run, removed again when nothing was written
    existing = tmp_path / "kept"
    existing.mkdir()
    assert main([*args[:-3], "--out", str(existing), "--no-preview"]) == 2
    assert existing.is_dir()  # a folder the user already had is never removed


@pytest.mark.parametrize("blocked", ["bump_phase.tif", "bump_opd.tif", "bump_phase.png"])
def test_an_output_name_taken_by_a_folder_is_refused_before_any_file_is_written(rgb_stack, tmp_path, capsys,
                                                                                blocked):
    path, _ = rgb_stack
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)
    args = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: output {out / blocked} is a folder" in err and err.count("\n") == 1  # not blamed on the input
    assert [p.name for p in out.iterdir()] == [blocked]  # no partial set, no temp file


def test_a_file_system_refusal_is_one_line_exit_1_and_no_empty_out(rgb_stack, tmp_path, capsys, monkeypatch):
    from chromaqpi.cli import reconstruct as cli

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "bump_phase.tif"))

    monkeypatch.setattr(cli, "write_outputs", disk_full)
    out = tmp_path / "out"
    assert main(["reconstruct", str(rgb_stack[0]), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"chromaqpi reconstruct: error: {out / 'bump_phase.tif'}: No space left on device\n"
    assert not out.exists()



def test_simulate_takes_integer_phase_and_opd_maps_at_face_value(tmp_path):
    # An int16 OPD map in nm is values, not camera codes: it must not be divided by 32767,
    # nor refused as "saturated" or "constant" like an intensity image.
    opd = np.zeros((48, 48), np.int16)
    opd[16:32, 16:32] = 120  # nm
    np.save(tmp_path / "opd_int.npy", opd)
    np.save(tmp_path / "opd_float.npy", opd.astype(np.float32))
    out = tmp_path / "out"
    base = ["simulate", "--microscope", "paper-rgb", "--opd-nm", "--no-noise", "--float", "--out", str(out)]
    assert main([*base, str(tmp_path / "opd_int.npy"), str(tmp_path / "opd_float.npy")]) == 0
    from_int, _ = read_tiff(out / "opd_int_sim.tif")
    from_float, _ = read_tiff(out / "opd_float_sim.tif")
    np.testing.assert_array_equal(from_int, from_float)
    assert float(np.ptp(from_float)) > 0.01  # a 120 nm step gives visible defocus contrast


def test_simulate_refuses_png_phase_maps_and_blocked_outputs(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(tmp_path / "map.png")
    np.save(tmp_path / "a.npy", np.zeros((32, 32), np.float32))
    out = tmp_path / "o"
    assert main(["simulate", str(tmp_path / "a.npy"), str(tmp_path / "map.png"), "--out", str(out)]) == 2
    assert "PNG/JPEG hold pictures, not phase values; use --from-image" in capsys.readouterr().err
    assert not out.exists()  # refused before a.npy was simulated
    np.save(tmp_path / "map.npy", np.zeros((32, 32), np.float32))
    out = tmp_path / "o2"
    (out / "map_sim.json").mkdir(parents=True)
    assert main(["simulate", str(tmp_path / "map.npy"), "--out", str(out), "--no-noise"]) == 2
    assert f"error: output {out / 'map_sim.json'} is a folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["map_sim.json"]  # the TIFF was not written first


def test_cli_warnings_are_one_line_and_the_format_is_restored(rgb_stack, tmp_path):
    import subprocess
    import sys
    import warnings

    path, images = rgb_stack
    dim = tmp_path / "dim.npy"
    np.save(dim, (0.2 * images).astype(np.float32))  # median far from 1: the solvers warn
    args = [str(dim), "--method", "tie", "--microscope", "paper-rgb", "--normalized", "--out", str(tmp_path / "o"),
            "--no-preview"]
    run = subprocess.run([sys.executable, "-m", "chromaqpi.cli.main", "reconstruct", *args],
                         capture_output=True, text=True, check=True)
    lines = [line for line in run.stderr.splitlines() if "median intensity" in line]
    assert len(lines) == 1 and lines[0].startswith("chromaqpi reconstruct: warning: median intensity")
    assert "warnings.warn" not in run.stderr  # no source line of the library call
    before = warnings.formatwarning
    with pytest.warns(UserWarning, match="median intensity"):
        assert main(["reconstruct", *args]) == 0  # in process: the format is put back afterwards
    assert warnings.formatwarning is before
    # The files carry the image's warnings (a map made under a warning says so wherever it goes).
    for name in ("dim_phase.tif", "dim_opd.tif"):
        notes = read_tiff(tmp_path / "o" / name)[1]["warnings"]
        assert len(notes) == 1 and notes[0].startswith("median intensity")
    plain = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
             "--out", str(tmp_path / "plain"), "--no-preview"]
    assert main(plain) == 0
    assert read_tiff(tmp_path / "plain" / "bump_phase.tif")[1]["warnings"] == []


def test_a_batch_repeats_each_warning_once_and_records_it_per_image(rgb_stack, tmp_path, capsys):
    path, images = rgb_stack
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        np.save(folder / f"{name}.npy", (0.2 * images).astype(np.float32))
    with pytest.warns(UserWarning, match="median intensity") as record:
        assert main(["reconstruct", str(folder), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
                     "--out", str(tmp_path / "o"), "--no-preview"]) == 0
    assert sum("median intensity" in str(w.message) for w in record) == 1
    for name in ("a", "b"):
        assert read_tiff(tmp_path / "o" / f"{name}_phase.tif")[1]["warnings"][0].startswith("median intensity")


def test_a_missing_background_is_named_by_its_flag_before_any_input_is_read(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb",
                 "--background", str(tmp_path / "nofile.tif"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: --background {tmp_path / 'nofile.tif'}: no such file" in err and str(path) not in err
    assert not out.exists()


def test_a_method_failing_in_a_batch_names_the_file(rgb_stack, tmp_path, capsys, monkeypatch):
    import chromaqpi.solvers.base as base

    path, images = rgb_stack
    second = tmp_path / "zz.npy"
    np.save(second, images)
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    calls = []

    @base.register_method("nan-second")
    def nan_second(batch, microscope):
        calls.append(1)
        return torch.full_like(batch[:, 0], float("nan") if len(calls) == 2 else 0.0)

    out = tmp_path / "out"
    assert main(["reconstruct", str(path), str(second), "--method", "nan-second", "--microscope", "paper-rgb",
                 "--normalized", "--out", str(out), "--no-preview"]) == 2
    err = capsys.readouterr().err
    assert f"error: {second}: method 'nan-second' returned NaN/Inf phase" in err


def _spy(monkeypatch, module, name: str) -> list[dict]:
    """Wrap module.name so that each call's keyword arguments are recorded; returns the record."""
    calls = []
    real = getattr(module, name)

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_iterations_sets_the_iterative_budget_and_only_there(rgb_stack, tmp_path, capsys, monkeypatch):
    import chromaqpi.solvers.iterative as it

    calls = _spy(monkeypatch, it, "refine")
    path, _ = rgb_stack
    base = ["reconstruct", str(path), "--microscope", "paper-rgb", "--normalized", "--no-preview"]
    assert main([*base, "--method", "iterative", "--iterations", "3", "--out", str(tmp_path / "a")]) == 0
    assert [(kw["steps"], kw["fast"]) for kw in calls] == [(3, True)]  # the reduced quadrature: the default optics' full one is ~60x slower
    assert main([*base, "--method", "tie", "--iterations", "3", "--out", str(tmp_path / "b")]) == 2
    assert "--iterations is for --method iterative" in capsys.readouterr().err
    assert main([*base, "--method", "iterative", "--iterations", "0", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_alpha_sets_the_wotf_weight_and_only_there(rgb_stack, tmp_path, capsys, monkeypatch):
    import chromaqpi.solvers.wotf as wotf

    calls = _spy(monkeypatch, wotf, "invert_wotf")
    path, _ = rgb_stack
    base = ["reconstruct", str(path), "--microscope", "paper-rgb", "--normalized", "--no-preview"]
    assert main([*base, "--method", "wotf", "--alpha", "1e-3", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--method", "wotf", "--alpha", "gcv", "--out", str(tmp_path / "b")]) == 0
    assert [kw["alpha"] for kw in calls] == [1e-3, "gcv"]
    assert read_tiff(tmp_path / "a" / "bump_phase.tif")[1]["options"]["alpha"] == 1e-3  # recorded with the phase
    capsys.readouterr()
    for i, (method, value, message) in enumerate([("tie", "1e-3", "--alpha is for --method wotf, not tie"),
                                                  ("wotf", "-1", "--alpha must be auto, gcv or a finite number"),
                                                  ("wotf", "nan", "--alpha must be auto, gcv or a finite number"),
                                                  ("wotf", "big", "--alpha must be auto, gcv or a finite number")]):
        out = tmp_path / f"bad{i}"
        assert main([*base, "--method", method, "--alpha", value, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_absorption_writes_the_attenuation_map_and_refuses_channels_that_cannot_show_it(rgb_stack, tmp_path, capsys):
    yy, xx = np.mgrid[:48, :48]
    a = 0.25 * np.exp(-((yy - 24.0) ** 2 + (xx - 24.0) ** 2) / 60.0)
    images = chromaqpi.simulate(torch.zeros(48, 48, dtype=torch.float64), "paper-2shot",
                                absorption=torch.as_tensor(a), noise=False)[0].numpy()
    path = tmp_path / "absorber.npy"
    np.save(path, images.astype(np.float32))
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--microscope", "paper-2shot", "--normalized", "--method", "tie",
                 "--absorption", "--no-preview", "--out", str(out)]) == 0
    est, meta = read_tiff(out / "absorber_absorption.tif")
    np.testing.assert_allclose(est, a, atol=5e-3)  # the API's analytic check, through the files
    assert meta["unit"] == "1" and "amplitude attenuation" in meta["quantity"]
    assert meta["absorption_p99"] == pytest.approx(float(np.quantile(est, 0.99)), abs=1e-3)
    assert "absorption a (|t|² = e^-2a), 99th percentile" in capsys.readouterr().out
    rgb, _ = rgb_stack
    assert main(["reconstruct", str(rgb), "--microscope", "paper-rgb", "--normalized", "--method", "tie",
                 "--absorption", "--out", str(tmp_path / "rgb")]) == 2
    assert "too alike to tell absorption" in capsys.readouterr().err
    assert not (tmp_path / "rgb").exists()


def test_fit_absorption_runs_the_joint_fit_and_only_where_there_is_a_fit(rgb_stack, tmp_path, capsys, monkeypatch):
    import chromaqpi.solvers.iterative as it

    calls = _spy(monkeypatch, it, "refine_with_absorption")
    yy, xx = np.mgrid[:32, :32]
    bump = torch.as_tensor(0.5 * np.exp(-((yy - 16.0) ** 2 + (xx - 16.0) ** 2) / 30.0))
    images = chromaqpi.simulate(bump, "paper-2shot", noise=False)[0].numpy()
    path = tmp_path / "clear.npy"
    np.save(path, images.astype(np.float32))
    base = ["reconstruct", str(path), "--microscope", "paper-2shot", "--normalized", "--no-preview"]
    assert main([*base, "--method", "iterative", "--iterations", "3", "--fit-absorption",
                 "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--method", "mean", "--refine", "2", "--fit-absorption", "--out", str(tmp_path / "b")]) == 0
    assert main([*base, "--method", "iterative", "--iterations", "2", "--fit-absorption", "--stain", "eosin",
                 "--out", str(tmp_path / "c")]) == 0
    assert [kw["steps"] for kw in calls] == [3, 2, 2]
    assert [kw.get("stain") for kw in calls] == [None, None, "eosin"]
    for name in ("a", "b", "c"):
        assert read_tiff(tmp_path / name / "clear_phase.tif")[1]["options"]["fit_absorption"] is True
    assert read_tiff(tmp_path / "c" / "clear_phase.tif")[1]["options"]["stain"] == "eosin"
    capsys.readouterr()
    rgb, _ = rgb_stack
    for i, (args, message) in enumerate([
            ([*base, "--method", "tie", "--fit-absorption"], "--fit-absorption is for --method iterative or --refine"),
            ([*base, "--method", "mean", "--fit-absorption"], "--fit-absorption is for --method iterative or --refine"),
            ([*base, "--method", "iterative", "--stain", "eosin"], "--stain needs --fit-absorption, or --method wotf"),
            ([*base, "--method", "tie", "--stain", "eosin"], "--stain needs --fit-absorption, or --method wotf"),
            ([*base, "--method", "iterative", "--fit-absorption", "--stain", "indigo"], "unknown stain 'indigo'"),
            (["reconstruct", str(rgb), "--microscope", "paper-rgb", "--normalized", "--method", "iterative",
              "--fit-absorption"], "too alike to tell absorption")]):
        out = tmp_path / f"bad{i}"
        assert main([*args, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_model_without_method_runs_the_models_own_kind(rgb_stack, tmp_path, capsys):
    path, _ = rgb_stack
    base = ["reconstruct", str(path), "--microscope", "paper-rgb", "--normalized", "--no-preview"]
    assert main([*base, "--model", "paper-rgb-ddpm", "--steps", "2", "--out", str(tmp_path / "a")]) == 0
    assert "--model paper-rgb-ddpm: --method ddpm (the model's kind)" in capsys.readouterr().out
    _, meta = read_tiff(tmp_path / "a" / "bump_phase.tif")
    assert meta["method"] == "ddpm" and "method_requested" not in meta


def test_an_image_recording_another_pixel_size_than_the_microscope_warns(rgb_stack, tmp_path):
    import tifffile

    _, images = rgb_stack
    declared = chromaqpi.Microscope.from_preset("paper-rgb").sampling.pixel_size_um
    for name, size_um, warned in (("same", declared * 1.05, False), ("other", declared * 2, True)):
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, images.astype(np.float32), photometric="minisblack", imagej=True,
                         resolution=(1 / size_um, 1 / size_um), metadata={"unit": "um"})
        out = tmp_path / name
        args = ["reconstruct", str(path), "--method", "tie", "-m", "paper-rgb", "--normalized", "--no-preview",
                "--out", str(out)]
        if warned:
            with pytest.warns(UserWarning, match=r"records 0\.42 µm per pixel but the microscope declares 0\.21 µm"):
                assert main(args) == 0
        else:
            assert main(args) == 0
        _, meta = read_tiff(out / f"{name}_phase.tif")
        assert any("µm per pixel" in w for w in meta["warnings"]) == warned


@pytest.mark.filterwarnings("ignore:simulation grid")  # 0.45 µm pixels alias at NA 0.65 on the camera grid
def test_a_coloured_specimen_is_named_and_warned_about(tmp_path, monkeypatch):
    import warnings

    import chromaqpi.solvers.iterative as it
    from chromaqpi.cli.reconstruct import check_colour

    # The default optics with 0.45 µm pixels: 96 px span 43 µm, a field wide enough to judge the colour.
    wide = chromaqpi.Microscope.from_preset("default").replace(sampling={"pixel_size_um": 0.45, "oversample": 3})
    scope = tmp_path / "wide.toml"
    wide.to_toml(scope)
    yy, xx = np.mgrid[:96, :96]
    blob = torch.as_tensor(np.exp(-((yy - 48.0) ** 2 + (xx - 48.0) ** 2) / 200.0))
    for name, stain in (("clear", None), ("pink", "eosin")):
        images = chromaqpi.simulate(blob, wide, absorption=0.2 * blob if stain else None, stain=stain,
                                    noise=False)[0].numpy()
        np.save(tmp_path / f"{name}.npy", images.astype(np.float32))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["reconstruct", str(tmp_path / f"{name}.npy"), "--microscope", str(scope), "--normalized",
                         "--method", "tie", "--no-preview", "--out", str(tmp_path / name)]) == 0
        meta = read_tiff(tmp_path / name / f"{name}_phase.tif")[1]
        assert meta["specimen_colour"]["coloured"] is (stain is not None)
        assert meta["specimen_colour"]["nearest_stain"] == stain
        told = [str(w.message) for w in caught if "the specimen is coloured" in str(w.message)]
        assert len(told) == (stain is not None)
        if stain:
            assert "--stain eosin" in told[0] and any("coloured" in w for w in meta["warnings"])
    pink = torch.from_numpy(np.load(tmp_path / "pink.npy")).double()
    assert check_colour(pink, wide, {"stain": "eosin"})[0].coloured
    assert check_colour(pink, wide, {"stain": "auto"})[1] == {"stain": "eosin"}
    assert check_colour(torch.ones_like(pink), wide, {"stain": "auto"})[1] == {"stain": None}  # grey
    calls = _spy(monkeypatch, it, "refine_with_absorption")
    assert main(["reconstruct", str(tmp_path / "pink.npy"), "--microscope", str(scope), "--normalized", "--no-preview",
                 "--method", "iterative", "--iterations", "1", "--fit-absorption", "--stain", "auto",
                 "--out", str(tmp_path / "auto")]) == 0
    assert [kw["stain"] for kw in calls] == ["eosin"]
    assert read_tiff(tmp_path / "auto" / "pink_phase.tif")[1]["options"]["stain"] == "eosin"
    assert main(["reconstruct", str(tmp_path / "pink.npy"), "--microscope", str(scope), "--normalized", "--no-preview",
                 "--method", "wotf", "--alpha", "1e-3", "--stain", "auto", "--absorption",
                 "--out", str(tmp_path / "wotf")]) == 0
    written = read_tiff(tmp_path / "wotf" / "pink_phase.tif")
    assert written[1]["options"]["stain"] == "eosin"
    stained_map = chromaqpi.estimate_absorption(pink, wide, stain="eosin").numpy()  # the map is the stain's
    np.testing.assert_allclose(read_tiff(tmp_path / "wotf" / "pink_absorption.tif")[0], stained_map, atol=1e-5)
    grey = read_tiff(tmp_path / "pink" / "pink_phase.tif")[0]  # tie's map of the same image
    assert np.isfinite(written[0]).all() and written[0].shape == grey.shape


@pytest.mark.filterwarnings("ignore:simulation grid")
@pytest.mark.filterwarnings("ignore:microscope outside the model's training family")  # 0.45 µm pixels
@pytest.mark.filterwarnings("ignore:method 'auto' runs model")  # checked in the metadata below
def test_auto_runs_the_stained_model_on_a_coloured_image(tmp_path):
    # The same 43 µm field as above: the eosin image is coloured, the clear one is not. The command line's
    # default --method auto records which model ran, and says why.
    wide = chromaqpi.Microscope.from_preset("default").replace(sampling={"pixel_size_um": 0.45, "oversample": 3})
    scope = tmp_path / "wide.toml"
    wide.to_toml(scope)
    yy, xx = np.mgrid[:96, :96]
    blob = torch.as_tensor(np.exp(-((yy - 48.0) ** 2 + (xx - 48.0) ** 2) / 200.0))
    for name, stain, model in (("clear", None, "default"), ("pink", "eosin", "default-stained")):
        images = chromaqpi.simulate(blob, wide, absorption=0.2 * blob if stain else None, stain=stain,
                                    noise=False)[0].numpy()
        np.save(tmp_path / f"{name}.npy", images.astype(np.float32))
        assert main(["reconstruct", str(tmp_path / f"{name}.npy"), "--microscope", str(scope), "--normalized",
                     "--no-preview", "--out", str(tmp_path / name)]) == 0
        meta = read_tiff(tmp_path / name / f"{name}_phase.tif")[1]
        assert meta["method"] == "mean" and meta["options"]["model"] == model
        routed = [w for w in meta["warnings"] if "runs model 'default-stained'" in w]
        assert len(routed) == (stain is not None)
        assert not any("for its phase use" in w for w in meta["warnings"])  # no advice to run what ran


def test_gamma_decodes_a_power_law_camera_and_is_recorded(tmp_path):
    # A camera set to gamma G writes V = L^G. Flat-fielding leaves (I/I_empty)^G, whose weak contrast is G
    # times the linear one: read undecoded, TIE's phase (linear in the contrast) comes out G times too small.
    yy, xx = np.mgrid[:64, :64]
    phase = 0.3 * np.exp(-((yy - 32.0) ** 2 + (xx - 30.0) ** 2) / 60.0)
    linear = chromaqpi.simulate(torch.as_tensor(phase[None]), "paper-rgb", noise=False)[0].numpy()
    exposure, g = 0.6, 0.5
    code = np.round((exposure * linear) ** g * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cam.tif", code, photometric="minisblack")
    level = round(exposure**g * 65535)  # an empty field, with a code of read noise (a constant one is refused)
    background = (level + np.random.default_rng(0).integers(-1, 2, size=code.shape)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "empty.tif", background, photometric="minisblack")
    common = ["--method", "tie", "--microscope", "paper-rgb", "--background", str(tmp_path / "empty.tif"),
              "--no-preview"]
    assert main(["reconstruct", str(tmp_path / "cam.tif"), "--gamma", str(g), "--out", str(tmp_path / "g"),
                 *common]) == 0
    assert main(["reconstruct", str(tmp_path / "cam.tif"), "--out", str(tmp_path / "plain"), *common]) == 0
    expected = np.asarray(chromaqpi.reconstruct(linear, "paper-rgb", method="tie"))
    decoded, meta = read_tiff(tmp_path / "g" / "cam_phase.tif")
    undecoded, _ = read_tiff(tmp_path / "plain" / "cam_phase.tif")
    span = np.ptp(expected)
    assert np.abs(decoded - expected).max() < 0.01 * span  # 16-bit quantisation
    assert np.ptp(undecoded) / span == pytest.approx(g, rel=0.05)  # the weak-contrast limit
    assert meta["reading"] == {"srgb": False, "gamma": g, "response": None, "dark": 0.0, "normalized": False,
                               "background": "empty.tif"}
