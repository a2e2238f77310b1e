"""What the Python API accepts and refuses at its edges: array flavours, option values, microscopes,
generators, global state and metadata (an external audit's findings, session 36)."""
import json
import warnings

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi import Microscope
from chromaqpi.errors import ConfigError
from chromaqpi.io import read_tiff_metadata, write_json, write_tiff
from chromaqpi.microscope import Optics, Sensor


@pytest.fixture(scope="module")
def two_shot():
    y, x = np.mgrid[:48, :48]
    phase = 0.3 * np.exp(-((x - 24.0) ** 2 + (y - 20.0) ** 2) / 40.0)
    return chromaqpi.simulate(phase, "paper-2shot", noise=False)[0]


def test_tensors_that_track_gradients_are_read_as_their_values(two_shot):
    plain = chromaqpi.reconstruct(two_shot, "paper-2shot", method="tie")
    tracked = chromaqpi.reconstruct(two_shot.clone().requires_grad_(), "paper-2shot", method="tie")
    assert not tracked.requires_grad
    torch.testing.assert_close(tracked, plain, rtol=0, atol=0)


def test_big_endian_and_read_only_arrays_give_the_native_result_without_a_warning(two_shot):
    native = chromaqpi.reconstruct(two_shot.numpy(), "paper-2shot", method="tie")
    read_only = two_shot.numpy().copy()
    read_only.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about sharing a read-only array
        for flavour in (two_shot.numpy().astype(">f8"), read_only):
            np.testing.assert_array_equal(chromaqpi.reconstruct(flavour, "paper-2shot", method="tie"), native)
    assert chromaqpi.simulate(np.zeros((16, 16), ">f4"), "default", noise=False).dtype == torch.float32


@pytest.mark.parametrize("method, options", [
    ("tie", {"noise_std": float("nan")}),  # NaN passed `< 0` and zeroed the map
    ("tie", {"regularization": float("inf")}),
    ("wotf", {"alpha": float("inf")}),
    ("wotf", {"alpha": float("nan")}),
    ("iterative", {"tv": float("nan")}),
])
def test_non_finite_option_values_are_refused(two_shot, method, options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        chromaqpi.reconstruct(two_shot, "paper-2shot", method=method, **options)


@pytest.mark.parametrize("build, field", [
    (lambda: Microscope.from_preset("paper-2shot").replace(
        planes=[{"wavelength_um": 0.521, "defocus_um": float("nan")}, {"wavelength_um": 0.521, "defocus_um": 1.0}]),
     r"planes\[0\].defocus_um"),
    (lambda: Microscope.from_preset("default").replace(focus={"defocus_um": float("inf")}), "focus.defocus_um"),
    (lambda: Microscope(optics=Optics(na_objective="0.65")), "optics.na_objective"),
    (lambda: Microscope(optics=Optics(source_points=2.5)), "optics.source_points"),
    (lambda: Microscope(sensor=Sensor(bit_depth=12.5)), "sensor.bit_depth"),
    (lambda: Microscope(sensor=Sensor(full_well_e=float("inf"))), "sensor.full_well_e"),
])
def test_a_microscope_built_in_python_is_checked_like_one_read_from_toml(build, field):
    with pytest.raises(ConfigError, match=field):
        build()


def test_a_microscope_can_be_given_as_its_dict_and_nothing_else_unknown(two_shot):
    scope = Microscope.from_preset("paper-2shot")
    torch.testing.assert_close(chromaqpi.reconstruct(two_shot, scope.to_dict(), method="tie"),
                               chromaqpi.reconstruct(two_shot, scope, method="tie"))
    with pytest.raises(ConfigError, match="microscope must be"):
        chromaqpi.reconstruct(two_shot, 5, method="tie")


def test_a_generator_that_is_not_one_is_refused_by_name(two_shot):
    with pytest.raises(ConfigError, match="generator must be a torch.Generator"):
        chromaqpi.simulate(torch.zeros(16, 16), "default", generator=0)
    with pytest.raises(ConfigError, match="got int"):
        chromaqpi.reconstruct(two_shot, "paper-2shot", method="zmd", steps=1, generator=0)


def subnormals_flushed() -> bool:
    return torch.tensor(1e-40, dtype=torch.float32).item() == 0.0


@pytest.mark.parametrize("flushed_before", [False, True])
def test_a_learned_method_leaves_the_flush_denormal_flag_as_it_found_it(two_shot, flushed_before):
    torch.set_flush_denormal(flushed_before)
    try:
        chromaqpi.reconstruct(two_shot, "paper-2shot", method="mean")
        assert subnormals_flushed() == flushed_before
    finally:
        torch.set_flush_denormal(False)


def test_an_unnormalised_image_is_warned_about_once(two_shot):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chromaqpi.reconstruct(two_shot * 255, "paper-2shot", method="tie")
    assert sum("median intensity" in str(w.message) for w in caught) == 1


def test_metadata_is_strict_json_with_non_finite_numbers_as_null(tmp_path):
    meta = {"residual_over_noise": float("inf"), "p": np.float32(np.nan), "pair": [1.5, float("-inf")]}
    write_tiff(tmp_path / "a.tif", np.zeros((8, 8)), metadata=meta)
    write_json(tmp_path / "a.json", meta)
    strict = {"residual_over_noise": None, "p": None, "pair": [1.5, None]}
    assert {k: read_tiff_metadata(tmp_path / "a.tif")[k] for k in meta} == strict

    def refuse(token):
        raise ValueError(token)
    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse) == strict


def test_a_toml_error_names_its_file_and_presets_are_taken_by_name(tmp_path, two_shot):
    scope = tmp_path / "mine.toml"
    scope.write_text(Microscope.from_preset("default").to_toml().replace("na_objective", "na_objectve"))
    with pytest.raises(ConfigError, match=r"mine\.toml: unknown key\(s\) in optics: na_objectve"):
        Microscope.resolve(scope)
    fit = chromaqpi.estimate_focus_offset(two_shot, "paper-2shot", search_um=0.2)
    assert fit.microscope.name == "paper-2shot"


@pytest.mark.parametrize("shape, warned", [((8, 8), True), ((16, 96), True), ((96, 16), True), ((32, 40), False)])
def test_a_tiny_or_narrow_image_is_reconstructed_with_a_warning(shape, warned):
    images = chromaqpi.simulate(torch.zeros(shape), "paper-2shot", noise=False)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chromaqpi.reconstruct(images, "paper-2shot", method="wotf")
    size = [str(w.message) for w in caught if "on a side the phase is unreliable" in str(w.message)]
    assert bool(size) == warned and (not warned or f"{shape[0]}x{shape[1]} px" in size[0])


def test_absorption_entry_points_take_and_give_numpy_like_reconstruct(two_shot):
    from chromaqpi.solvers.iterative import PhaseAndAbsorption

    images = two_shot.float()  # (C, H, W)
    a = chromaqpi.estimate_absorption(images.numpy(), "paper-2shot")
    assert isinstance(a, np.ndarray) and a.dtype == np.float64  # float64, as for a tensor
    np.testing.assert_array_equal(a, chromaqpi.estimate_absorption(images, "paper-2shot").numpy())
    start = np.zeros((1, 48, 48), np.float32)
    fit = chromaqpi.refine_with_absorption(images.numpy()[None], "paper-2shot", start, steps=2)
    assert isinstance(fit, PhaseAndAbsorption)
    assert all(isinstance(m, np.ndarray) and m.dtype == np.float32 and m.shape == (1, 48, 48) for m in fit)
    tensors = chromaqpi.refine_with_absorption(images[None], "paper-2shot", torch.from_numpy(start), steps=2)
    np.testing.assert_array_equal(fit.phase, tensors.phase.numpy())


def test_simulate_computes_half_precision_in_float32():
    # The docstring says so: float16 resolves intensities near 1 only to 1e-3.
    assert chromaqpi.simulate(torch.zeros(16, 16, dtype=torch.float16), "paper-2shot", noise=False).dtype == \
        torch.float32
    assert "float32 for a float16" in chromaqpi.simulate.__doc__


def test_an_identity_registration_keeps_its_image_shape_through_dict_and_toml(tmp_path):
    from chromaqpi.datasets.augment import valid_transforms

    sized = Microscope.from_preset("default").replace(registration={"image_shape": [64, 80]})
    assert sized.registration.is_identity and Microscope.from_dict(sized.to_dict()) == sized
    sized.to_toml(tmp_path / "m.toml")
    assert Microscope.from_toml(tmp_path / "m.toml") == sized
    assert valid_transforms(sized, (32, 32)) == valid_transforms(Microscope.from_preset("default"), (32, 32))
    assert "registration" not in Microscope.from_preset("default").to_dict()
