"""Measured camera response (chromaqpi.response, `chromaqpi response`, `--response`).

References: the synthetic camera's own tone curve (its log-slope, which scales every small contrast, is
known in closed form), and a linear image's TIE phase. The curves here differ from the four the default
smoothness was chosen on (sRGB, a 0.45 power law, linear, a tanh S-curve).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

import chromaqpi
from chromaqpi.cli.main import main
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.io import read_image, read_tiff
from chromaqpi.response import CameraResponse, fit_response, read_response, write_response

STEPS = np.sqrt(2.0) ** np.arange(-12, 1)  # 13 frames over 64x, the recommended √2 steps


def filmic(light):
    """A Reinhard-like tone curve (not a power law): code = 1.25 L / (L + 0.25), clipped."""
    return np.clip(1.25 * light / (light + 0.25), 0, 1)


def filmic_inverse(code):
    return 0.25 * code / (1.25 - code)


def empty_field_series(curve, shape=(3, 192, 192), *, bits=8, seed=7, steps=STEPS):
    """Frames of an empty field with 30 % vignetting and shot-like noise, quantised to ``bits``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:shape[1] * 1j, -1:1:shape[2] * 1j]
    light = (1 - 0.15 * (x**2 + y**2))[None] * np.array([0.85, 1.0, 0.75])[:shape[0], None, None]
    top = 2**bits - 1
    frames = []
    for t in steps:
        exposed = light * t * 1.1
        exposed = exposed + 0.003 * np.sqrt(exposed) * rng.standard_normal(exposed.shape)
        frames.append(np.round(curve(np.clip(exposed, 0, 1)) * top) / top)
    return frames


def log_slope(codes, light):
    """d ln(light) / d ln(code), by central differences."""
    return np.gradient(np.log(light), np.log(codes))


@pytest.fixture(scope="module")
def filmic_response():
    return fit_response(empty_field_series(filmic), STEPS)


def test_fit_recovers_the_log_slope_of_a_filmic_curve(filmic_response):
    # The phase scales with the curve's log-slope: it must be right within 3 % over the codes an
    # exposed field occupies (0.15-0.95; validation curves: worst 0.4-2.7 %).
    codes = np.linspace(0.15, 0.95, 161)
    truth = log_slope(codes, filmic_inverse(codes))
    for c in range(3):
        fitted = log_slope(codes, np.interp(codes, filmic_response.codes, filmic_response.linear[c]))
        # averaged over 0.05 in code: the piecewise-linear curve's slope steps at each knot
        smooth = np.convolve(fitted / truth, np.ones(11) / 11, mode="valid")
        assert np.abs(smooth - 1).max() < 0.03, c


def test_power_law_camera_reads_as_its_gamma():
    response = fit_response(empty_field_series(lambda light: light**0.6, bits=16), STEPS)
    assert response.fit["effective_gamma"] == pytest.approx([0.6] * 3, abs=0.01)


def test_linear_camera_decodes_to_light_proportional_to_code():
    response = fit_response(empty_field_series(lambda light: light, bits=16), STEPS)
    for c in range(3):
        # within the codes this channel reached (channel 2, the dimmest, tops out at 0.83)
        codes = np.linspace(0.1, response.observed[c, 1], 50)
        ratio = response.decode(np.broadcast_to(codes, (3, 1, 50)))[c, 0] / codes
        assert np.abs(ratio / ratio.mean() - 1).max() < 0.01, c
    assert response.fit["effective_gamma"] == pytest.approx([1.0] * 3, abs=0.01)


def test_decode_is_per_channel_and_keeps_the_shape(filmic_response):
    code = np.full((3, 4, 5), 0.5, dtype=np.float32)
    out = filmic_response.decode(code)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    expected = [np.interp(0.5, filmic_response.codes, curve) for curve in filmic_response.linear]
    assert out[:, 0, 0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InputError, match="1 channel"):
        filmic_response.decode(code[0])


def test_json_round_trip_and_refusals(filmic_response, tmp_path):
    path = tmp_path / "cam.json"
    write_response(path, filmic_response)
    back = read_response(path)
    assert np.array_equal(back.linear, filmic_response.linear) and back.fit == filmic_response.fit
    data = json.loads(path.read_text())
    falling = {**data, "linear": [list(reversed(row)) for row in data["linear"]]}
    bad = {"not ours": {"format": "x"}, "falling": falling, "version": {**data, "version": 2},
           "ragged": {**data, "linear": [[0.1, 0.2]]}}
    messages = {"not ours": "not a camera response file", "falling": "never fall as the code rises",
                "version": "version 2 is not supported", "ragged": r"linear must be \(channels, 256\)"}
    for key, content in bad.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(content))
        with pytest.raises(InputError, match=messages[key]):
            read_response(tmp_path / f"{key}.json")
    (tmp_path / "corrupt.json").write_bytes(b"\x00{")
    with pytest.raises(InputError, match="not a JSON camera response"):
        read_response(tmp_path / "corrupt.json")


@pytest.mark.parametrize("frames, exposures, message", [
    (1, [1.0], "at least 2 frames"),
    (3, [1.0, 2.0], "3 frames but 2 exposure times"),
    (2, [1.0, 0.0], "finite and > 0"),
    (2, [2.0, 2.0], "all equal"),
])
def test_bad_series_are_refused(frames, exposures, message):
    series = empty_field_series(filmic, (3, 32, 32), steps=STEPS[-frames:])
    with pytest.raises(InputError, match=message):
        fit_response(series, exposures)


def test_frames_of_different_shape_or_without_usable_codes_are_refused():
    a = empty_field_series(filmic, (3, 32, 32), steps=[0.5])[0]
    with pytest.raises(InputError, match="differ in shape"):
        fit_response([a, a[:, :16]], [1, 2])
    with pytest.raises(InputError, match=r"values outside \[0, 1\]"):
        fit_response([a, a * 255], [1, 2])  # 8-bit codes not scaled
    with pytest.raises(InputError, match="NaN/Inf"):
        fit_response([a, np.full_like(a, np.nan)], [1, 2])
    saturated = np.ones_like(a)
    with pytest.raises(InputError, match="fewer than 2 exposure times"):
        fit_response([a, saturated], [1, 2])


def test_read_image_decodes_with_the_response_and_refuses_two_decodings(filmic_response, tmp_path):
    code = np.round(filmic(np.full((3, 8, 8), 0.4) + np.random.default_rng(0).uniform(0, 0.01, (3, 8, 8))) * 65535)
    tifffile.imwrite(tmp_path / "x.tif", code.astype(np.uint16), photometric="rgb", planarconfig="separate")
    image, info = read_image(tmp_path / "x.tif", response=filmic_response)
    assert info["response"] is True
    assert np.allclose(image, filmic_response.decode(code.astype(np.float32) / 65535))
    with pytest.raises(ConfigError, match="not several"):
        read_image(tmp_path / "x.tif", response=filmic_response, gamma=0.5)


def test_cli_fits_a_response_that_restores_the_linear_phase(tmp_path, capsys):
    # End to end: frames of an empty field -> `chromaqpi response`; a tone-mapped micrograph and its empty
    # field -> `reconstruct --response` gives the linear image's TIE phase; read as is, the curve's log-slope
    # at the exposure (0.29 at 0.6 of full scale) scales the phase.
    names = []
    for k, frame in enumerate(empty_field_series(filmic, bits=16)):
        names.append(str(tmp_path / f"f{k:02d}.tif"))
        tifffile.imwrite(names[-1], np.round(frame * 65535).astype(np.uint16), photometric="rgb",
                         planarconfig="separate")
    exposures = ",".join(f"{t:.6g}" for t in STEPS)
    assert main(["response", *names, "--exposures", exposures, "--out", str(tmp_path / "cam.json")]) == 0
    assert "effective gamma" in capsys.readouterr().out
    yy, xx = np.mgrid[:64, :64]
    phase = 0.3 * np.exp(-((yy - 32.0) ** 2 + (xx - 30.0) ** 2) / 60.0)
    linear = chromaqpi.simulate(torch.as_tensor(phase[None]), "paper-rgb", noise=False)[0].numpy()
    exposure = 0.6
    tifffile.imwrite(tmp_path / "cam.tif", np.round(filmic(exposure * linear) * 65535).astype(np.uint16),
                     photometric="rgb", planarconfig="separate")
    empty = filmic(np.full_like(linear, exposure)) * 65535 + np.random.default_rng(0).uniform(-1, 1, linear.shape)
    tifffile.imwrite(tmp_path / "empty.tif", np.round(empty).astype(np.uint16), photometric="rgb",
                     planarconfig="separate")
    common = ["--method", "tie", "--microscope", "paper-rgb", "--background", str(tmp_path / "empty.tif"),
              "--no-preview"]
    assert main(["reconstruct", str(tmp_path / "cam.tif"), "--response", str(tmp_path / "cam.json"),
                 "--out", str(tmp_path / "r"), *common]) == 0
    assert main(["reconstruct", str(tmp_path / "cam.tif"), "--out", str(tmp_path / "plain"), *common]) == 0
    expected = np.asarray(chromaqpi.reconstruct(linear, "paper-rgb", method="tie"))
    decoded, meta = read_tiff(tmp_path / "r" / "cam_phase.tif")
    undecoded, _ = read_tiff(tmp_path / "plain" / "cam_phase.tif")
    span = np.ptp(expected)
    assert np.abs(decoded - expected).max() < 0.03 * span
    slope = 1.25 * 0.25 / (exposure + 0.25) ** 2 * exposure / filmic(exposure)  # d ln code / d ln light
    assert np.ptp(undecoded) / span == pytest.approx(slope, rel=0.05)
    assert meta["reading"]["response"] == "cam.json"


def test_cli_errors_are_one_line_without_output(tmp_path, capsys):
    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.round(empty_field_series(filmic, (3, 32, 32), steps=[0.5])[0] * 255).astype(np.uint8),
                     photometric="rgb", planarconfig="separate")
    out = tmp_path / "cam.json"
    cases = [(["--exposures", "1,a"], "--exposures must be comma-separated numbers"),
             (["--exposures", "1,2,3"], "2 frames but 3 exposure times"),
             (["--exposures", "1,1"], "all equal")]
    for extra, message in cases:
        assert main(["response", str(frame), str(frame), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["reconstruct", str(frame), "--response", str(bad), "--gamma", "0.5", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--srgb, --gamma and --response each describe" in capsys.readouterr().err
    assert main(["reconstruct", str(frame), "--response", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a camera response file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for command in ("focus", "register"):  # the shared reading options read the curve first
        assert main([command, str(frame), "--response", str(bad), "--out", str(tmp_path / "o.toml")]) == 2
        assert "not a camera response file" in capsys.readouterr().err
        assert not (tmp_path / "o.toml").exists()


def test_camera_response_validates_its_arrays():
    with pytest.raises(InputError, match="codes must rise strictly from 0 to 1"):
        CameraResponse(codes=np.array([0.0, 0.5, 0.9]), linear=np.ones((1, 3)), observed=np.zeros((1, 2)), fit={})


def test_cli_drops_a_frame_saturated_everywhere_and_counts_a_folder_s_frames(tmp_path, capsys):
    folder = tmp_path / "series"
    folder.mkdir()
    steps = STEPS[-6:]
    for k, frame in enumerate(empty_field_series(filmic, (3, 64, 64), steps=steps)):
        tifffile.imwrite(folder / f"f{k}.tif", np.round(frame * 255).astype(np.uint8), photometric="rgb",
                         planarconfig="separate")
    tifffile.imwrite(folder / "f6.tif", np.full((3, 64, 64), 255, np.uint8), photometric="rgb",
                     planarconfig="separate")  # the longest exposure clipped everywhere (uniform)
    exposures = ",".join(f"{t:.6g}" for t in [*steps, 2 * steps[-1]])
    out = tmp_path / "cam.json"
    with pytest.warns(UserWarning, match=r"frames 7 \(exposure 2\) are saturated or black everywhere: dropped") as said:
        assert main(["response", str(folder), "--exposures", exposures, "--out", str(out)]) == 0
    assert not [w for w in said if "exposure steps" in str(w.message)]  # the steps of the frames used: all √2
    fit = read_response(out).fit
    assert fit["frames"] == 6 and fit["dropped_frames"] == [7]
    capsys.readouterr()
    assert main(["response", str(folder / "f0.tif"), "--exposures", "1,2", "--out", str(tmp_path / "x.json")]) == 2
    assert "1 frame but 2 exposure times" in capsys.readouterr().err
    assert main(["response", str(folder), "--exposures", "1,2", "--out", str(tmp_path / "x.json")]) == 2
    assert "7 frames but 2 exposure times" in capsys.readouterr().err
