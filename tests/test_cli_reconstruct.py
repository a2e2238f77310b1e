"""`chromaqpi reconstruct` end to end: written units and values, and user errors (exit 2, nothing written)."""

import math

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("extra, message", [
    (["--refine-starts", "model+tie"], "--refine-starts needs --refine"),
    (["--method", "no-such-method"], "no-such-method"),
])
def test_user_errors_exit_2_without_output(rgb_stack, tmp_path, capsys, extra, message):
    path, _ = rgb_stack
    out = tmp_path / "out"
    args = ["reconstruct", str(path), "--method", "tie", "--microscope", "paper-rgb", "--normalized",
            "--out", str(out), "--no-preview", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out.exists() and list(out.glob("*.tif")))


def test_grayscale_where_rgb_is_needed_is_rejected(tmp_path, capsys):
    gray = tmp_path / "gray.npy"
    np.save(gray, np.ones((32, 32), np.float32))
    out = tmp_path / "out"
    assert main(["reconstruct", str(gray), "--microscope", "paper-rgb", "--normalized", "--out", str(out)]) == 2
    assert "channel" in capsys.readouterr().err
    assert not (out.exists() and list(out.iterdir()))
