"""Channel registration (lateral colour, channel offsets): geometry against analytic images,
the simulator applying it, reconstruct undoing it, and the microscope section's validation."""

import re

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.datasets.augment import valid_transforms
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope, Registration
from chromaqpi.registration import cosine_resample, warp_channels

N = 96
CENTRE = (N - 1) / 2


def gaussians(y, x):
    """A smooth test image: widths >= 4 px (its spectrum is below 1e-30 at Nyquist), < 1e-9 at the frame's edges."""
    return np.exp(-((y - 40.3) ** 2 + (x - 52.1) ** 2) / (2 * 6.0 ** 2)) \
        + 0.5 * np.exp(-((y - 60.0) ** 2 + (x - 30.0) ** 2) / (2 * 4.0 ** 2))


def grid():
    return np.mgrid[:N, :N].astype(float)


def stack():
    y, x = grid()
    return np.stack([gaussians(y, x)] * 3)


def test_forward_is_magnification_about_the_centre_then_shift():
    # Analytic reference: recorded_c(o) = ideal(centre + (o - centre - t_c) / s_c).
    reg = Registration(scale=[1.02, 1.0, 0.985], shift_px=[[0.0, 0.0], [0.0, 0.0], [1.5, -2.25]])
    out = warp_channels(stack(), reg)
    y, x = grid()
    inner = (slice(12, -12), slice(12, -12))
    for c, (s, (ty, tx)) in enumerate(zip(reg.scale, reg.shift_px)):
        expected = gaussians(CENTRE + (y - CENTRE - ty) / s, CENTRE + (x - CENTRE - tx) / s)
        # Band-limited and ~0 at the edges: resampled to rounding (measured 3e-14; the earlier cubic spline 2e-3).
        assert np.abs(out[c][inner] - expected[inner]).max() < 1e-9
    assert np.array_equal(out[1], stack()[1])  # an identity channel is copied, not resampled


def test_whole_pixel_shift_is_exact_and_direction_is_down_right():
    image = np.random.default_rng(0).random((3, 40, 40))
    out = warp_channels(image, Registration(shift_px=[[2, -3], [0, 0], [0, 0]]))
    # The interpolant passes through the samples: content moves 2 down and 3 left, exactly.
    np.testing.assert_allclose(out[0, 2:, :-3], image[0, :-2, 3:], atol=1e-12)
    assert np.array_equal(out[2], image[2])


def test_inverse_undoes_forward():
    reg = Registration(scale=[1.01, 1.0, 0.99], shift_px=[[0.3, -0.7], [0.0, 0.0], [-1.2, 0.4]])
    image = stack()
    back = warp_channels(warp_channels(image, reg), reg, inverse=True)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(back[inner] - image[inner]).max() < 1e-9  # band-limited, ~0 at the edges: exact to rounding
    assert np.abs(warp_channels(image, reg)[inner] - image[inner]).max() > 0.05  # the warp itself is not small
    # A texture that fills the frame: what crossed the edges is lost and the mirrored extension's kink rings
    # (decaying inwards; measured 7e-4 of its std at 8 px, 2e-4 at 16 px; a cubic spline leaves 6e-3).
    from scipy import ndimage

    texture = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((128, 128)), 2)
    texture = np.stack([texture / texture.std()] * 3)
    back = warp_channels(warp_channels(texture, reg), reg, inverse=True)
    assert np.abs(back[inner] - texture[inner]).max() < 2e-3
    assert np.abs(back[:, 16:-16, 16:-16] - texture[:, 16:-16, 16:-16]).max() < 5e-4


def mirrored_fourier_shift(plane, shift):
    """An independent reference: a linear phase on the (2H, 2W) mirrored extension's FFT."""
    h, w = plane.shape
    field = np.concatenate([plane, plane[::-1]], axis=0)
    spectrum = np.fft.fft2(np.concatenate([field, field[:, ::-1]], axis=1))
    spectrum *= np.exp(-2j * np.pi * np.fft.fftfreq(2 * h) * shift[0])[:, None]
    spectrum *= np.exp(-2j * np.pi * np.fft.fftfreq(2 * w) * shift[1])[None, :]
    return np.fft.ifft2(spectrum).real[:h, :w]


def test_unit_scale_is_the_fourier_shift_and_no_shift_the_identity():
    # Non-square, odd and even sizes: the cosine series must keep every coefficient up to (not including) the
    # mirrored field's Nyquist, which vanishes. Rounding of order-1 noise through a few FFTs: ~1e-13 (measured).
    noise = np.random.default_rng(0).standard_normal((3, 37, 64))
    shift = (0.3, -1.7)
    for plane in noise:
        np.testing.assert_allclose(cosine_resample(plane, 1.0, -np.array(shift)), mirrored_fourier_shift(plane, shift),
                                   rtol=0, atol=1e-10)
    moved = warp_channels(noise, Registration(scale=[1.0, 1.0, 1.0], shift_px=[list(shift), [0, 0], [0, 0]]))
    np.testing.assert_allclose(moved[0], mirrored_fourier_shift(noise[0], shift), rtol=0, atol=1e-10)
    np.testing.assert_allclose(cosine_resample(noise, 1.0, 0.0), noise, rtol=0, atol=1e-12)


def dct_pattern(y, x, n):
    """A sum of the cosine-series basis functions of an n x n frame: the resampler represents it exactly,
    and its even, 2n-periodic continuation is itself (so points mapped outside the frame are known too)."""
    def basis(k, u):
        return np.cos(np.pi * k * (2 * u + 1) / (2 * n))
    return basis(3, y) * basis(5, x) + 0.5 * basis(11, y) + 0.3 * basis(7, y) * basis(19, x) + 0.2 * basis(40, x)


def test_magnification_of_a_cosine_series_is_exact_everywhere():
    # 1 % about the centre plus an offset: every output pixel, including those read from beyond the edges, is the
    # analytic pattern at the mapped position (to rounding: a few 1e-13 measured). A spline would miss by ~1e-3.
    reg = Registration(scale=[1.01, 1.0, 0.99], shift_px=[[0.4, -1.3], [0.0, 0.0], [0.0, 0.0]])
    y, x = grid()
    image = np.stack([dct_pattern(y, x, N)] * 3)
    for inverse in (False, True):
        out = warp_channels(image, reg, inverse=inverse)
        for c in (0, 2):
            s, (ty, tx) = reg.scale[c], reg.shift_px[c]
            if inverse:
                expected = dct_pattern(CENTRE + s * (y - CENTRE) + ty, CENTRE + s * (x - CENTRE) + tx, N)
            else:
                expected = dct_pattern(CENTRE + (y - CENTRE - ty) / s, CENTRE + (x - CENTRE - tx) / s, N)
            np.testing.assert_allclose(out[c], expected, rtol=0, atol=1e-10)
            assert np.abs(out[c] - image[c]).max() > 0.1  # the warp itself is not small


def test_an_offset_keeps_white_noise_white():
    # A Fourier shift is all-pass: half a pixel both ways keeps the variance (a cubic spline keeps 57 %) and the
    # spectrum flat; only the Nyquist row and column lose their imaginary part (~1 %).
    noise = np.random.default_rng(0).standard_normal((1, 3, 128, 128))
    moved = warp_channels(noise, Registration(shift_px=[[0.5, 0.5], [0, 0], [-2.5, 1.25]]))[0]
    for c in (0, 2):
        assert moved[c].var() == pytest.approx(noise[0, c].var(), rel=0.03)
        power = np.abs(np.fft.fft2(moved[c])) ** 2
        k = np.abs(np.fft.fftfreq(128))
        band = np.maximum(k[:, None], k[None, :])
        assert power[band > 0.4].mean() / power[band < 0.1].mean() == pytest.approx(1, abs=0.1)


def test_a_magnification_keeps_white_noise_white():
    # Undoing 1 % of magnification (with and without an offset) reads the cosine series at a step of 1.01 px:
    # nothing is damped, so the variance stays (measured +1.5 % and +0.4 %: the top 1 % of the band folds back;
    # 60 draws: 0 to +1.6 %) and the spectrum stays flat (high band / low band power, 60 draws: 0.95-1.09).
    # The cubic spline this replaced (scipy.ndimage.affine_transform, order 3) keeps 72 % and 78 % of the variance,
    # its high band 48 % and 62 %: the reference below, so the test shows the difference it was written for.
    from scipy import ndimage

    noise = np.random.default_rng(0).standard_normal((1, 3, 128, 128))
    reg = Registration(scale=[1.01, 1.0, 1.01], shift_px=[[0, 0], [0, 0], [0.5, -0.25]])
    undone = warp_channels(noise, reg, inverse=True)[0]
    k = np.abs(np.fft.fftfreq(128))
    band = np.maximum(k[:, None], k[None, :])

    def flatness(plane):
        power = np.abs(np.fft.fft2(plane)) ** 2
        return power[band > 0.4].mean() / power[band < 0.25].mean()

    for c in (0, 2):
        s, shift = reg.scale[c], np.asarray(reg.shift_px[c], dtype=float)
        assert undone[c].var() == pytest.approx(noise[0, c].var(), rel=0.03)
        assert flatness(undone[c]) == pytest.approx(1, abs=0.1)
        spline = ndimage.affine_transform(noise[0, c], np.eye(2) * s, 127 / 2 * (1 - s) + shift, order=3, mode="mirror")
        assert spline.var() < 0.8 * noise[0, c].var() and flatness(spline) < 0.7


def test_identity_and_containers():
    image = torch.rand(2, 3, 16, 16, dtype=torch.float32)
    assert warp_channels(image, Registration()) is image
    out = warp_channels(image, Registration(shift_px=[[0.5, 0], [0, 0], [0, 0]]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == image.shape
    assert torch.equal(out[:, 1:], image[:, 1:]) and not torch.equal(out[:, 0], image[:, 0])


def scene():
    y, x = grid()
    return torch.from_numpy(0.6 * gaussians(y, x))


def test_simulator_applies_the_declared_registration():
    plain = Microscope.from_preset("default")
    reg = Registration(scale=[1.01, 1.0, 0.99], shift_px=[[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    moved = chromaqpi.simulate(scene(), plain.replace(registration=reg), noise=False)[0].numpy()
    expected = warp_channels(chromaqpi.simulate(scene(), plain, noise=False)[0].numpy(), reg)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    assert np.abs(moved[inner] - expected[inner]).max() < 1e-4  # same warp, padded field vs mirrored edges


@pytest.mark.parametrize("method", ["tie", "wotf"])
def test_reconstruct_undoes_a_declared_registration(method):
    plain = Microscope.from_preset("default")
    scope = plain.replace(registration={"scale": [1.01, 1.0, 0.99], "shift_px": [[0.5, -1.0], [0, 0], [0, 0]]})
    registered = chromaqpi.reconstruct(chromaqpi.simulate(scene(), plain, noise=False), plain, method=method)
    recorded = chromaqpi.simulate(scene(), scope, noise=False)
    corrected = chromaqpi.reconstruct(recorded, scope, method=method)
    ignored = chromaqpi.reconstruct(recorded, plain, method=method)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    err = float((corrected - registered)[inner].abs().mean())
    # Declared: the same phase as from registered channels to 1 % of the misregistration's effect.
    assert err < 0.01 * float((ignored - registered)[inner].abs().mean())


def test_registration_validation_and_serialisation(tmp_path):
    scope = Microscope.from_preset("default")
    assert "registration" not in scope.to_dict()  # identity: configs and caches as before the section
    moved = scope.replace(registration={"scale": [1.002, 1.0, 0.998]})
    assert moved.to_dict()["registration"] == {"scale": [1.002, 1.0, 0.998], "shift_px": []}
    moved.to_toml(tmp_path / "m.toml")
    assert Microscope.from_toml(tmp_path / "m.toml") == moved
    assert valid_transforms(moved, (32, 32)) == (0,) and len(valid_transforms(scope, (32, 32))) > 1
    for bad, message in [({"scale": [1.0, 1.0]}, "one value per channel"),
                         ({"scale": [1.5, 1.0, 1.0]}, "near 1"),
                         ({"shift_px": [[0, 0], [0, 0]]}, "one \\[dy, dx\\] per channel"),
                         ({"shift_px": [[0, 0], [0, 0], [0, 100]]}, "within ±64"),
                         ({"shift_px": [[0], [0, 0], [0, 0]]}, "within ±64"),
                         ({"scale": "1.01"}, "must be lists"),
                         ({"image_shape": [64]}, "image_shape"), ({"image_shape": [64, 0]}, "image_shape"),
                         ({"image_shape": [64.0, 64]}, "image_shape")]:
        with pytest.raises(ConfigError, match=message):
            scope.replace(registration=bad)
    with pytest.raises(ConfigError, match="unknown key"):
        scope.replace(registration={"rotation": [0, 0, 0]})
    sized = scope.replace(registration={"scale": [1.002, 1.0, 0.998], "image_shape": [480, 640]})
    sized.to_toml(tmp_path / "s.toml")
    assert Microscope.from_toml(tmp_path / "s.toml").registration.image_shape == [480, 640]


def test_a_magnification_fitted_at_another_size_is_refused():
    # Undone about the wrong centre, a 1 % magnification would move a crop's channels by pixels.
    plain = Microscope.from_preset("default")
    images = chromaqpi.simulate(scene(), plain, noise=False)
    h, w = images.shape[-2:]
    magnified = plain.replace(registration={"scale": [1.01, 1.0, 0.99], "image_shape": [h, w]})
    chromaqpi.reconstruct(images, magnified, method="tie")  # the size it was fitted on
    with pytest.raises(InputError, match=f"fitted on {h}x{w} images .* this image is {h - 16}x{w}"):
        chromaqpi.reconstruct(images[..., 16:, :], magnified, method="tie")
    with pytest.raises(InputError, match="fitted on"), pytest.warns(UserWarning, match="not validated"):
        chromaqpi.estimate_focus_offset(images[0, :, 16:], magnified)
    # Offsets do not depend on the centre, and without a recorded size any image is taken.
    shifted = plain.replace(registration={"shift_px": [[0.5, 0], [0, 0], [0, 0]], "image_shape": [h, w]})
    chromaqpi.reconstruct(images[..., 16:, :], shifted, method="tie")
    unsized = plain.replace(registration={"scale": [1.01, 1.0, 0.99]})
    chromaqpi.reconstruct(images[..., 16:, :], unsized, method="tie")


# ------------------------------------------------------------------ estimation
TRUE = Registration(scale=[1.004, 1.0, 0.997], shift_px=[[0.6, -1.1], [0.0, 0.0], [-0.3, 0.8]])


def check_fit(reg, tol_scale=3e-4, tol_px=0.05):
    for c in (0, 2):
        assert reg.scale[c] == pytest.approx(TRUE.scale[c], abs=tol_scale)
        assert reg.shift_px[c] == pytest.approx(TRUE.shift_px[c], abs=tol_px)
    assert reg.scale[1] == 1 and reg.shift_px[1] == [0, 0]


def test_estimate_recovers_a_warp_of_a_textured_image():
    from scipy import ndimage

    texture = ndimage.gaussian_filter(np.random.default_rng(1).random((160, 160)), 2)
    fit = chromaqpi.estimate_registration(warp_channels(np.stack([texture] * 3), TRUE), tile=32)
    check_fit(fit.registration, tol_scale=1e-4, tol_px=0.02)
    assert max(fit.residual_px) < 0.05 and min(fit.tiles) > 40


@pytest.fixture(scope="module")
def calibration_image():
    """An in-focus absorbing target (dye-like blobs) under the default microscope with TRUE lateral colour and
    sensor noise: channels differ by defocus blur and noise as well as by the registration."""
    from scipy import ndimage

    blobs = ndimage.gaussian_filter(np.random.default_rng(2).random((128, 128)), 2)
    absorption = np.clip((blobs - blobs.mean()) / blobs.std() * 0.15, 0, None)
    scope = Microscope.from_preset("default").replace(registration=TRUE)
    return chromaqpi.simulate(torch.zeros(128, 128), scope, absorption=torch.from_numpy(absorption).float(),
                              generator=torch.Generator().manual_seed(1))[0]


def test_estimate_recovers_simulated_lateral_colour(calibration_image):
    check_fit(chromaqpi.estimate_registration(calibration_image, tile=32).registration)


def test_estimate_refuses_a_featureless_image():
    flat = 1 + 0.01 * np.random.default_rng(0).standard_normal((3, 128, 128))
    with pytest.raises(InputError, match="tiles have structure"):
        chromaqpi.estimate_registration(flat, tile=32)
    with pytest.raises(InputError, match="at least 64 px"):
        chromaqpi.estimate_registration(flat[:, :40], tile=32)
    flat[0, 5, 5] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        chromaqpi.estimate_registration(flat, tile=32)


def test_register_cli_writes_the_fitted_microscope(calibration_image, tmp_path, capsys):
    from chromaqpi.cli.main import main

    path = tmp_path / "target.npy"
    np.save(path, calibration_image.numpy())
    out = tmp_path / "registered.toml"
    assert main(["register", str(path), "-m", "default", "--normalized", "--tile", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    scope = Microscope.from_toml(out)
    check_fit(scope.registration)
    # what it prints is what it wrote (to the 0.001 % printed; +0.4 % and -0.3 % true)
    for c, name in ((0, "R"), (2, "B")):
        shown = float(re.search(rf"{name}: magnification ([+-][0-9.]+) %", printed).group(1))
        assert shown == pytest.approx(100 * (scope.registration.scale[c] - 1), abs=6e-4)
    assert scope.registration.image_shape == [128, 128]  # the magnification's centre is this size's
    assert scope.replace(registration=Registration()) == Microscope.from_preset("default")
    # Calibration images of two sizes have no common centre for one magnification: refused, nothing written.
    np.save(tmp_path / "narrow.npy", calibration_image.numpy()[:, :, :120])
    assert main(["register", str(path), str(tmp_path / "narrow.npy"), "-m", "default", "--normalized", "--tile", "32",
                 "--out", str(tmp_path / "mixed.toml")]) == 2
    err = capsys.readouterr().err
    assert "different sizes (128x120, 128x128)" in err and not (tmp_path / "mixed.toml").exists()
    np.save(path, (1 + 0.01 * np.random.default_rng(0).standard_normal((3, 128, 128))).astype(np.float32))
    assert main(["register", str(path), "-m", "default", "--normalized", "--out", str(tmp_path / "flat.toml")]) == 2
    err = capsys.readouterr().err
    assert "tiles have structure" in err and "Traceback" not in err and not (tmp_path / "flat.toml").exists()


def test_register_writes_no_magnification_below_what_it_resolves_and_binds_no_size(tmp_path):
    # Offsets only: the fit's spurious magnification (~1e-4) moved no edge by a tenth of a pixel, yet
    # was written, and bound the microscope to the calibration image's size.
    from scipy import ndimage

    from chromaqpi.cli.main import main

    blobs = ndimage.gaussian_filter(np.random.default_rng(1).random((128, 128)), 2)
    absorption = torch.from_numpy(np.clip((blobs - blobs.mean()) / blobs.std() * 0.15, 0, None)).float()
    offsets = Registration(shift_px=[[0.6, -1.1], [0.0, 0.0], [-0.3, 0.8]])
    drifted = Microscope.from_preset("default").replace(registration=offsets)
    images = chromaqpi.simulate(torch.zeros(128, 128), drifted, absorption=absorption,
                                generator=torch.Generator().manual_seed(1))[0].numpy()
    np.save(tmp_path / "target.npy", images)
    out = tmp_path / "registered.toml"
    assert main(["register", str(tmp_path / "target.npy"), "-m", "default", "--normalized", "--tile", "32",
                 "--out", str(out)]) == 0
    fitted = Microscope.from_toml(out).registration
    assert fitted.scale == [1.0, 1.0, 1.0] and fitted.image_shape == []
    np.testing.assert_allclose(fitted.shift_px, offsets.shift_px, atol=0.05)
    crop = images[:, 8:, :120]  # another size: taken, not refused
    chromaqpi.reconstruct(crop, Microscope.from_toml(out), method="tie")


def test_register_cli_fits_the_camera_s_own_channels_under_a_colour_matrix(calibration_image, tmp_path):
    # A camera that mixes its channels mixes their lateral colour too: the fit undoes the declared matrix first.
    from chromaqpi.cli.main import main
    from chromaqpi.optics.sensor import mix_channels

    matrix = [[1.6, -0.5, -0.1], [-0.2, 1.5, -0.3], [0.0, -0.6, 1.6]]
    np.save(tmp_path / "mixed.npy", mix_channels(calibration_image.double(), matrix).numpy())
    Microscope.from_preset("default").replace(sensor={"colour_matrix": matrix}).to_toml(tmp_path / "cam.toml")
    assert main(["register", str(tmp_path / "mixed.npy"), "-m", str(tmp_path / "cam.toml"), "--normalized",
                 "--tile", "32", "--out", str(tmp_path / "out.toml")]) == 0
    scope = Microscope.from_toml(tmp_path / "out.toml")
    assert scope.sensor.colour_matrix == matrix
    raw = chromaqpi.estimate_registration(calibration_image, tile=32).registration
    np.testing.assert_allclose(scope.registration.scale, raw.scale, atol=1e-6)
    np.testing.assert_allclose(scope.registration.shift_px, raw.shift_px, atol=1e-4)


def test_focus_fit_undoes_a_declared_registration():
    # A two-shot pair with the second exposure 1 px off (stage drift), in focus as declared.
    plain = Microscope.from_preset("paper-2shot")
    drifted = plain.replace(registration={"shift_px": [[0, 0], [1.0, -0.5]]})
    phase = torch.zeros(64, 64, dtype=torch.float64)
    phase[20:40, 20:44] = 0.2
    images = chromaqpi.simulate(phase, drifted, noise=False)[0]
    fit = chromaqpi.estimate_focus_offset(images, drifted)
    assert abs(fit.offset_um) < 0.03 and fit.microscope.registration == drifted.registration
    assert abs(chromaqpi.estimate_focus_offset(images, plain).offset_um) > 0.1  # undeclared, the drift biases it


def test_focus_cli_crops_after_undoing_a_sized_registration(tmp_path):
    # The focus fit runs on a central crop: the registration must be undone on the whole frame first.
    from chromaqpi.cli.main import main

    plain = Microscope.from_preset("paper-2shot")
    sized = plain.replace(registration={"scale": [1.0, 1.01], "shift_px": [[0, 0], [1.0, -0.5]],
                                        "image_shape": [96, 96]})
    phase = torch.zeros(96, 96, dtype=torch.float64)
    phase[30:60, 28:70] = 0.2
    path, scope, out = tmp_path / "pair.npy", tmp_path / "scope.toml", tmp_path / "focused.toml"
    np.save(path, chromaqpi.simulate(phase, sized, noise=False)[0].numpy())
    sized.to_toml(scope)
    assert main(["focus", str(path), "-m", str(scope), "--normalized", "--crop", "64", "--out", str(out)]) == 0
    fitted = Microscope.from_toml(out)
    assert fitted.registration == sized.registration
    moved = [a.defocus_um - b.defocus_um for a, b in zip(fitted.planes, sized.planes)]
    assert max(abs(d) for d in moved) < 0.05, moved  # in focus as declared (undeclared drift biases it by > 0.1)


def test_presets_registration_example_parses(tmp_path, capsys):
    # `chromaqpi presets NAME` ends with a commented [registration] example: uncommented, it must load.
    from chromaqpi.cli.main import main

    assert main(["presets", "default"]) == 0
    text = capsys.readouterr().out
    example = text[text.index("# [registration]"):].splitlines()
    lines = [line[2:].split("  #")[0] for line in example]
    (tmp_path / "m.toml").write_text(text[:text.index("\n# Lateral colour")] + "\n" + "\n".join(lines) + "\n")
    scope = Microscope.from_toml(tmp_path / "m.toml")
    assert scope.registration.image_shape == [2048, 2048] and scope.registration.scale == [1.0, 1.0, 1.0]
