"""Domain randomisation: draws stay in their ranges and give valid, reproducible microscopes."""

import math
import warnings

import numpy as np
import pytest

from chromaqpi.datasets.randomize import (Ranges, achromat_shift_um, draw_microscope, get_family, list_families,
                                          nyquist_oversample, resolve_ranges)
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope

N_DRAWS = 150


def _draws(family, seed=0, n=N_DRAWS):
    ranges = get_family(family)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an under-sampled draw would warn
        return ranges, [draw_microscope(None, ranges, rng) for _ in range(n)]


def _within(value, lo, hi, tol=1e-6):
    return lo - tol <= value <= hi + tol


def test_default_family_draws_stay_in_range():
    r, ms = _draws("default")
    for m in ms:
        assert Microscope.from_dict(m.to_dict()) == m  # valid and serialisable
        obj = min(r.objectives, key=lambda o: abs(o.na - m.optics.na_objective))
        assert _within(m.optics.na_objective, obj.na * 0.95, obj.na * 1.05)
        assert _within(m.optics.na_condenser / m.optics.na_objective, *r.condenser_sigma)
        assert _within(m.sampling.pixel_size_um * obj.magnification, *r.camera_pixel_um, tol=1e-4)
        assert _within(m.optics.n_medium, *r.n_medium)
        assert _within(m.focus.defocus_um, *obj.defocus_um)
        n_bg = m.sensor.full_well_e * m.sensor.fill_fraction
        assert _within(n_bg, 1e3, 3e4, tol=0.1) and _within(m.sensor.fill_fraction, *r.fill_fraction)
        assert _within(m.sensor.read_noise_e, *r.read_noise_e) and m.sensor.bit_depth in r.bit_depths
        assert m.spectra.n_wavelengths == 12 and m.optics.source_points == 19
        assert m.sampling.oversample == nyquist_oversample(m)
        if m.spectra.illuminant == "blackbody":
            assert _within(m.spectra.temperature_k, *r.temperature_k)
        else:
            assert m.spectra.illuminant == "table"
        assert m.spectra.camera == "table"
    # every discrete choice is exercised
    assert {m.sensor.bayer for m in ms} == {True, False}
    assert {m.spectra.illuminant for m in ms} == {"blackbody", "table"}
    assert {m.sensor.bit_depth for m in ms} == {8, 12, 14}
    assert len({m.optics.na_objective > 0.5 for m in ms}) == 2
    # N_bg is log-uniform: about half the draws below the geometric mean
    below = np.mean([m.sensor.full_well_e * m.sensor.fill_fraction < math.sqrt(3e7) for m in ms])
    assert 0.35 < below < 0.65


def test_paper_rgb_family_follows_the_protocol():
    _, ms = _draws("paper-rgb")
    for m in ms:
        assert [p.wavelength_um for p in m.planes] == [0.630, 0.530, 0.450]
        assert all(_within(p.defocus_um, 0.01, 3.0) and _within(p.bandwidth_um, 0.01, 0.1) for p in m.planes)
        assert m.sensor.model == "gaussian" and m.sensor.gaussian_mean == m.sensor.gaussian_std
        assert _within(m.sensor.gaussian_std, 0.0, 0.3)
        assert m.spectra.n_wavelengths == 50 and m.optics.phase_model == "constant"
    # channels are drawn independently
    assert np.std([m.planes[0].defocus_um - m.planes[2].defocus_um for m in ms]) > 0.5


def test_paper_2shot_family_only_varies_noise():
    _, ms = _draws("paper-2shot")
    for m in ms:
        assert [(p.wavelength_um, p.defocus_um) for p in m.planes] == [(0.521, -1.0), (0.521, 1.0)]
        assert _within(m.sensor.gaussian_std, 0.0, 0.2) and m.sensor.gaussian_mean == m.sensor.gaussian_std
    assert len({m.sensor.gaussian_std for m in ms}) == len(ms)


@pytest.mark.parametrize("family", list_families())
def test_draws_are_reproducible(family):
    _, a = _draws(family, seed=3, n=5)
    _, b = _draws(family, seed=3, n=5)
    _, c = _draws(family, seed=4, n=5)
    assert a == b and a != c


def test_achromat_shift_has_cf_foci_at_nominal_focus():
    h = 0.0851
    s = achromat_shift_um(2.0, 0.57, 0.0, wavelengths_um=(0.57 - h, 0.57, 0.57 + h))
    assert s[0] == pytest.approx(0, abs=1e-5) and s[2] == pytest.approx(0, abs=1e-5)
    assert s[1] == pytest.approx(-2.0, abs=1e-5)  # green focus S closer, as the default preset


def test_ranges_round_trip_through_toml(tmp_path):
    import tomli_w

    ranges = get_family("default")
    path = tmp_path / "family.toml"
    path.write_text(tomli_w.dumps({"ranges": ranges.to_dict()}))
    again = resolve_ranges(str(path))
    assert again.to_dict() == ranges.to_dict()
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert draw_microscope(None, again, rng_a) == draw_microscope(None, ranges, rng_b)


def test_toml_family_key_overrides_only_the_given_fields(tmp_path):
    path = tmp_path / "low-noise.toml"
    path.write_text('[ranges]\nfamily = "paper-rgb"\ngaussian_noise = [0.0, 0.03]\n')
    variant, family = resolve_ranges(str(path)).to_dict(), get_family("paper-rgb").to_dict()
    assert variant.pop("gaussian_noise") == [0.0, 0.03] and family.pop("gaussian_noise") == [0.0, 0.3]
    assert variant == family
    path.write_text('[ranges]\nfamily = "no-such"\n')
    with pytest.raises(ConfigError, match="no-such"):
        resolve_ranges(str(path))


def test_fixed_ranges_return_the_base():
    m = Microscope.from_preset("paper-rgb")
    for spec in ("preset:paper-rgb", m):
        r = resolve_ranges(spec)
        assert r.is_fixed and draw_microscope(None, r, np.random.default_rng(0)) == m


@pytest.mark.parametrize("bad", [{"condenser_sigma": (0.8, 0.3)}, {"n_bg_e": (0, 10)}, {"unknown_key": 1},
                                 {"plane_bandwidth_um": (0.01, 0.1)}, {"oversample": 0}])
def test_invalid_ranges_raise(bad):
    with pytest.raises(ConfigError):
        Ranges.from_dict({"base": "default", **bad})


def test_unknown_family_lists_valid_ones():
    with pytest.raises(ConfigError, match="paper-rgb"):
        resolve_ranges("no-such-family")


def _draw_many(ranges, n=400, seed=0):
    from chromaqpi.datasets.randomize import draw_microscope
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [draw_microscope(None, ranges, rng) for _ in range(n)]


def test_na_jitter_is_symmetric_around_the_nominal_na():
    # Catches a slip (jitter drawn from [0, j] only): NA (1 + U(-j, j)) has mean NA and half the draws below.
    from chromaqpi.datasets.randomize import Objective, Ranges
    r = Ranges(base="default", objectives=[Objective(20, 0.4, (1.0, 1.0), (1.0, 1.0))], na_jitter=0.1)
    ratio = np.array([m.optics.na_objective / 0.4 for m in _draw_many(r)])
    assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    assert abs(ratio.mean() - 1) < 0.01 and 0.4 < np.mean(ratio < 1) < 0.6  # 400 draws: sd 0.003, 0.025


def test_achromat_linear_term_has_the_documented_sign():
    # Catches a slip (a1 (0.55 - lambda)): shift = a1 (lambda - 0.55) with no secondary spectrum.
    from chromaqpi.datasets.randomize import achromat_shift_um
    assert achromat_shift_um(0.0, 0.56, 2.0, wavelengths_um=(0.45, 0.55, 0.65)) == pytest.approx([-0.2, 0.0, 0.2])


def test_bayer_probability_is_the_probability_of_a_mosaic():
    # Catches a slip (uniform() > p): p = 0.2 gives ~20 % mosaics, p = 0 none, p = 1 all.
    from chromaqpi.datasets.randomize import Ranges
    for p, lo, hi in ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.2, 0.14, 0.26)):
        frac = np.mean([m.sensor.bayer for m in _draw_many(Ranges(base="default", bayer_probability=p), n=300)])
        assert lo <= frac <= hi, (p, frac)


@pytest.mark.parametrize("jitter", [-0.1, 0.5, 1.2])
def test_na_jitter_out_of_range_is_refused(jitter):
    # Catches a slip (na_jitter check removed): a jitter >= 1 would draw NA <= 0.
    from chromaqpi.datasets.randomize import Ranges
    from chromaqpi.errors import ConfigError
    with pytest.raises(ConfigError, match="na_jitter"):
        Ranges(base="default", na_jitter=jitter)
