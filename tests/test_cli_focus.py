"""`chromaqpi focus` end to end: the fitted offset, the written microscope, and user errors."""

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.cli.main import main
from chromaqpi.microscope import Microscope
from chromaqpi.solvers.focus import shift_focus


@pytest.fixture(scope="module")
def shifted_2shot(tmp_path_factory):
    """A weak paper-2shot object imaged 0.3 µm beyond the declared planes, saved as (C, H, W) NPY."""
    g = torch.Generator().manual_seed(3)
    f = torch.fft.fftfreq(64, dtype=torch.float64)
    noise = torch.randn(64, 64, generator=g, dtype=torch.float64)
    phase = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(f[:, None] ** 2 + f[None] ** 2) / 0.045)).real
    phase = 0.1 * phase / phase.abs().max()
    scope = Microscope.from_preset("paper-2shot")
    images = chromaqpi.simulate(phase.float(), shift_focus(scope, 0.3), noise=False)[0].numpy()
    path = tmp_path_factory.mktemp("in") / "field.npy"
    np.save(path, images.astype(np.float32))
    return path


def test_fits_the_offset_and_writes_the_moved_microscope(shifted_2shot, tmp_path, capsys):
    out = tmp_path / "fitted.toml"
    assert main(["focus", str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "field.npy: focus offset +0.30 µm" in printed
    fitted = Microscope.resolve(str(out))
    declared = Microscope.from_preset("paper-2shot")
    moved = [p.defocus_um - q.defocus_um for p, q in zip(fitted.planes, declared.planes)]
    assert moved == pytest.approx([0.3, 0.3], abs=0.025)


@pytest.mark.parametrize("extra, message", [
    (["--step", "0"], "search_um"),
    (["--crop", "4"], "--crop must be >= 16"),
    (["--dark", "0.1"], "--normalized inputs are already flat-fielded"),
    (["-m", "paper-rgb"], "image has 2 channel(s) but 3 are needed"),  # two planes given, three needed
])
def test_user_errors_exit_2_without_output(shifted_2shot, tmp_path, capsys, extra, message):
    out = tmp_path / "fitted.toml"
    args = ["focus", str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--out", str(out)] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
