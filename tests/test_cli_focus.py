"""`chromaqpi focus` and `reconstruct --fit-focus` end to end: the fitted offset, the moved microscope, user errors."""

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.tiling import central_crop
from chromaqpi.cli.main import main
from chromaqpi.io import read_tiff
from chromaqpi.microscope import Microscope
from chromaqpi.solvers.focus import shift_focus


@pytest.fixture(scope="module")
def shifted_2shot(tmp_path_factory):
    """A weak paper-2shot object imaged 0.3 µm beyond the declared planes, saved as (C, H, W) NPY (truth.npy beside it)."""
    g = torch.Generator().manual_seed(3)
    f = torch.fft.fftfreq(64, dtype=torch.float64)
    noise = torch.randn(64, 64, generator=g, dtype=torch.float64)
    phase = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(f[:, None] ** 2 + f[None] ** 2) / 0.045)).real
    phase = 0.1 * phase / phase.abs().max()
    scope = Microscope.from_preset("paper-2shot")
    images = chromaqpi.simulate(phase.float(), shift_focus(scope, 0.3), noise=False)[0].numpy()
    path = tmp_path_factory.mktemp("in") / "field.npy"
    np.save(path, images.astype(np.float32))
    np.save(path.with_name("truth.npy"), phase.numpy())
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


def test_reconstruct_fit_focus_uses_and_records_the_moved_microscope(shifted_2shot, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["reconstruct", str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--method", "wotf", "--no-preview"]
    assert main(base + ["--out", str(out / "declared")]) == 0
    assert main(base + ["--fit-focus", "--out", str(out / "fitted")]) == 0
    assert "field.npy: focus offset +0.30 µm" in capsys.readouterr().out
    phase, meta = read_tiff(out / "fitted" / "field_phase.tif")
    assert meta["focus_offset_um"] == pytest.approx(0.3, abs=0.025)
    fitted = Microscope.from_dict(meta["microscope"])
    assert fitted.to_dict() == shift_focus(Microscope.from_preset("paper-2shot"), meta["focus_offset_um"]).to_dict()
    images = torch.from_numpy(np.load(shifted_2shot))
    expected = chromaqpi.reconstruct(images, fitted, method="wotf").numpy()
    np.testing.assert_allclose(phase, expected, atol=1e-5)
    # The fitted focus must pay: WOTF's error against the truth (offset-aligned) drops at least 3x.
    truth = np.load(shifted_2shot.with_name("truth.npy"))
    declared, _ = read_tiff(out / "declared" / "field_phase.tif")
    errors = [np.abs((p - p.mean()) - (truth - truth.mean())).mean() for p in (declared, phase)]
    assert errors[1] < errors[0] / 3


def test_reconstruct_fit_focus_undoes_a_declared_registration_once(tmp_path, monkeypatch):
    # The fit and the solver both read the registered frame: one resampling per image, and the recorded
    # microscope keeps the registration the input needed.
    import chromaqpi.registration as registration
    from chromaqpi.microscope import Registration

    g = torch.Generator().manual_seed(4)
    f = torch.fft.fftfreq(64, dtype=torch.float64)
    noise = torch.randn(64, 64, generator=g, dtype=torch.float64)
    phase = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(f[:, None] ** 2 + f[None] ** 2) / 0.045)).real
    declared = Microscope.from_preset("paper-2shot").replace(
        registration=Registration(shift_px=[[0.0, 0.0], [0.6, -0.4]]))
    images = chromaqpi.simulate((0.1 * phase / phase.abs().max()).float(), shift_focus(declared, 0.3), noise=False)
    path = tmp_path / "field.npy"
    np.save(path, images[0].numpy())
    declared.to_toml(tmp_path / "scope.toml")
    calls = []
    warp = registration.warp_channels
    monkeypatch.setattr(registration, "warp_channels", lambda *a, **k: calls.append(1) or warp(*a, **k))
    args = ["reconstruct", str(path), "-m", str(tmp_path / "scope.toml"), "--normalized", "--method", "wotf",
            "--no-preview", "--fit-focus", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert len(calls) == 1
    phase_map, meta = read_tiff(tmp_path / "out" / "field_phase.tif")
    assert meta["focus_offset_um"] == pytest.approx(0.3, abs=0.025)
    recorded = Microscope.from_dict(meta["microscope"])
    assert recorded.to_dict() == shift_focus(declared, meta["focus_offset_um"]).to_dict()
    monkeypatch.setattr(registration, "warp_channels", warp)
    expected = chromaqpi.reconstruct(images[0], recorded, method="wotf").numpy()  # undoes it itself
    np.testing.assert_allclose(phase_map, expected, atol=1e-5)


@pytest.mark.parametrize("command, extra, message", [
    ("focus", ["--step", "0"], "0 < --step <= --search"),
    ("focus", ["--crop", "4"], "--crop must be >= 16"),
    ("focus", ["--dark", "0.1"], "--normalized inputs are already flat-fielded"),
    ("focus", ["-m", "paper-rgb"], "image has 2 channel(s) but 3 are needed"),  # two planes given, three needed
    ("reconstruct", ["--fit-focus", "-m", "default"], "--fit-focus is for planes-mode microscopes"),
    ("reconstruct", ["--focus-crop", "64"], "--focus-search, --focus-step and --focus-crop need --fit-focus"),
    ("reconstruct", ["--fit-focus", "--focus-crop", "4"], "--focus-crop must be >= 16"),
    ("reconstruct", ["--fit-focus", "--focus-step", "1"], "0 < --focus-step <= --focus-search"),
])
def test_user_errors_exit_2_without_output(shifted_2shot, tmp_path, capsys, command, extra, message):
    out = tmp_path / ("fitted.toml" if command == "focus" else "out")
    args = [command, str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--out", str(out)] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_reconstruct_fit_at_the_search_edge_warns_with_its_flag(shifted_2shot, tmp_path):
    # The object sits 0.3 µm off; a ±0.2 µm search must end on its edge and say which flag widens it.
    out = tmp_path / "out"
    args = ["reconstruct", str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--no-preview", "--fit-focus",
            "--focus-search", "0.2", "--out", str(out)]
    # The moved microscope leaves the paper-2shot net's family (trained at the preset focus only): the
    # default --method auto still runs that net (the nearest), which says it extrapolates.
    with pytest.warns(UserWarning, match=r"edge of the search range: .* \(widen --focus-search\)"), \
            pytest.warns(UserWarning, match=r"outside the model's training family: effective_defocus_um.mean = 0.2"):
        assert main(args) == 0
    _, meta = read_tiff(out / "field_phase.tif")
    assert meta["focus_offset_um"] == pytest.approx(0.2, abs=1e-9)
    assert any("widen --focus-search" in w for w in meta["warnings"])
    assert (meta["method"], meta["method_requested"], meta["options"]["model"]) == ("mean", "auto", "paper-2shot")


@pytest.fixture(scope="module")
def noise_2shot(tmp_path_factory):
    """Camera-like white noise around an empty field: no object, so no focus signal."""
    g = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("noise") / "empty.npy"
    np.save(path, (1 + 0.02 * g.standard_normal((2, 64, 64))).astype(np.float32))
    return path


def test_focus_without_signal_writes_nothing(noise_2shot, tmp_path, capsys):
    out = tmp_path / "fitted.toml"
    with pytest.warns(UserWarning, match="no usable focus signal"):
        assert main(["focus", str(noise_2shot), "-m", "paper-2shot", "--normalized", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "no focus signal, left out" in captured.out
    assert "no image gave a usable focus signal" in captured.err and captured.err.count("\n") == 1
    assert not out.exists()


def test_reconstruct_fit_focus_without_signal_keeps_the_declared_focus(noise_2shot, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reconstruct", str(noise_2shot), "-m", "paper-2shot", "--normalized", "--method", "tie", "--no-preview",
            "--fit-focus", "--out", str(out)]
    with pytest.warns(UserWarning, match="no usable focus signal"):
        assert main(args) == 0
    assert "no focus signal in the fitted crop; kept the declared focus" in capsys.readouterr().out
    _, meta = read_tiff(out / "empty_phase.tif")
    assert meta["focus_offset_um"] == 0.0
    assert meta["microscope"] == Microscope.from_preset("paper-2shot").to_dict()


def test_central_crop_takes_the_middle_of_each_axis():
    x = torch.arange(3 * 81 * 70).reshape(3, 81, 70)
    crop = central_crop(x, 32)
    assert torch.equal(crop, x[:, 24:56, 19:51])  # (81 - 32) // 2 = 24, (70 - 32) // 2 = 19
    assert torch.equal(central_crop(x, 75), x[:, 3:78, :])  # an axis shorter than the crop is kept whole
    assert torch.equal(central_crop(x, 32, even=True), x[:, 24:56, 18:50])  # Bayer: even rows and columns


def test_focus_on_a_crop_finds_the_offset(shifted_2shot, capsys):
    # The 64 px field fitted on its central 48 px (mirror-padded: a crop is not periodic).
    assert main(["focus", str(shifted_2shot), "-m", "paper-2shot", "--normalized", "--crop", "48"]) == 0
    printed = capsys.readouterr().out
    offset = float(printed.split("focus offset ")[1].split(" µm")[0])
    assert offset == pytest.approx(0.3, abs=0.05)


def test_a_declared_colour_matrix_is_undone_for_the_fit_and_kept_in_what_is_written(shifted_2shot, tmp_path, capsys):
    # The fit sees the camera's own channels; the written microscope (and the outputs' metadata) still declare
    # the matrix, which the recorded images need. Two planes here: any C x C matrix takes the same path.
    from chromaqpi.optics.sensor import mix_channels

    matrix = [[1.2, -0.2], [-0.1, 1.1]]
    np.save(tmp_path / "mixed.npy", mix_channels(np.load(shifted_2shot), matrix))
    Microscope.from_preset("paper-2shot").replace(sensor={"colour_matrix": matrix}).to_toml(tmp_path / "cam.toml")
    assert main(["focus", str(tmp_path / "mixed.npy"), "-m", str(tmp_path / "cam.toml"), "--normalized",
                 "--out", str(tmp_path / "fitted.toml")]) == 0
    assert "mixed.npy: focus offset +0.30 µm" in capsys.readouterr().out
    assert Microscope.from_toml(tmp_path / "fitted.toml").sensor.colour_matrix == matrix
    assert main(["reconstruct", str(tmp_path / "mixed.npy"), "-m", str(tmp_path / "cam.toml"), "--normalized",
                 "--method", "tie", "--fit-focus", "--no-preview", "--out", str(tmp_path / "out")]) == 0
    _, meta = read_tiff(tmp_path / "out" / "mixed_phase.tif")
    assert meta["microscope"]["sensor"]["colour_matrix"] == matrix
    assert meta["focus_offset_um"] == pytest.approx(0.3, abs=0.03)
