import pytest

from chromaqpi import Microscope, list_presets
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import effective_defocus_um, effective_wavelength_um


@pytest.mark.parametrize("name", ["default", "paper-2shot", "paper-rgb"])
def test_toml_round_trip(tmp_path, name):
    m = Microscope.from_preset(name)
    path = tmp_path / "m.toml"
    text = m.to_toml(path)
    again = Microscope.from_toml(path)
    assert again == m
    assert again.to_toml() == text


def test_presets_listed():
    assert {"default", "paper-2shot", "paper-rgb"} <= set(list_presets())


@pytest.mark.parametrize("change,message", [
    ({"optics": {"na_objective": 1.5}}, "na_objective"),
    ({"sampling": {"pixel_size_um": -1}}, "pixel_size_um"),
    ({"sampling": {"pixel_size_um": 6.5}}, "camera pixel"),
    ({"optics": {"phase_model": "weird"}}, "phase_model"),
    ({"optics": {"wavelength_ref_um": 550}}, "µm"),
    ({"spectra": {"illuminant": "table"}}, "illuminant_table"),
    ({"optics": {"bogus": 1}}, "unknown key"),
    ({"sensor": {"bayer": True}, "planes": [{"wavelength_um": 0.5, "defocus_um": 1}]}, "bayer"),
    # Wrong value types from a hand-written TOML: a ConfigError, not a TypeError deep in the optics.
    ({"focus": {"shift_um": 3}}, "lists of three numbers"),
    ({"focus": {"shift_um": ["a", "b", "c"]}}, "must be finite numbers"),
    ({"focus": {"defocus_um": "1.0"}}, "focus.defocus_um must be a finite number, got '1.0'"),
    ({"optics": {"na_objective": "high"}}, "optics.na_objective must be a finite number, got 'high'"),
    ({"optics": {"source_points": 4.5}}, "optics.source_points must be an integer, got 4.5"),
    ({"optics": {"source_points": True}}, "optics.source_points must be an integer, got True"),
    ({"planes": [{"wavelength_um": 0.5, "defocus_um": "x"}, {"wavelength_um": 0.5, "defocus_um": 1}]}, "defocus_um"),
    ({"optics": {"paraxial": "no"}}, "true or false"),
])
def test_invalid_configs_rejected_with_clear_message(change, message):
    with pytest.raises(ConfigError, match=message):
        Microscope.from_preset("default").replace(**change)


def test_bad_toml_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optics\nna = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Microscope.from_toml(bad)
    with pytest.raises(ConfigError, match="not found"):
        Microscope.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown microscope preset"):
        Microscope.from_preset("nope")


def test_focal_shift_passes_through_reference_points():
    f = Microscope.from_preset("default").focus
    for lam, shift in zip(f.shift_wavelengths_um, f.shift_um):
        assert f.z_um(lam) == pytest.approx(f.defocus_um + shift, abs=1e-12)


def test_default_channels_are_distinctly_defocused():
    m = Microscope.from_preset("default")
    z = effective_defocus_um(m)
    lam = effective_wavelength_um(m)
    assert lam[0] > lam[1] > lam[2]  # R, G, B centroids in order
    assert max(z) - min(z) > 0.4  # a usable through-focus stack, not degenerate
    assert all(v > 0 for v in z)
