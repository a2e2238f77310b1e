"""Every phantom kind and the scene composer: contracts, ground truth, determinism."""

import json
import math

import numpy as np
import pytest

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms import (
    KIND_DEFAULTS,
    build_object,
    dead_leaves,
    drift_field_rad,
    gaussian_random_field,
    list_kinds,
    make_scene,
    render_object,
)

SHAPE = (45, 52)  # odd, non-square
KINDS = list_kinds()


def test_all_documented_kinds_exist():
    expected = {"discocyte", "echinocyte", "spherocyte", "wbc", "epithelial", "rod", "coccus", "yeast",
                "crystal", "cast", "bead", "blob"}
    assert expected <= set(KINDS) and set(KINDS) == set(KIND_DEFAULTS)


def _render_whole(kind, seed, **kw):
    """Render one object with >= ~10 px across its smallest feature, wholly inside the grid."""
    obj = build_object(kind, np.random.default_rng(seed), **kw)
    dx = min(0.21, obj.feature_um / 10)
    n = math.ceil(2 * obj.extent_um / dx) + 6
    # the same seed draws the same object again inside render_object
    return render_object(kind, (n, n + 3), dx, rng=np.random.default_rng(seed), **kw), dx


@pytest.mark.parametrize("kind", KINDS)
def test_kind_contract(kind):
    for seed in range(3):
        s, dx = _render_whole(kind, seed)
        opd, rec = s.opd_um, s.meta["objects"][0]
        assert opd.dtype == np.float32 and s.mask.dtype == np.int32
        assert np.all(np.isfinite(opd))
        assert opd.min() >= 0.0 and opd.max() > 0.0  # default indices exceed the medium's
        # the label mask is exactly the object's support
        assert np.array_equal(s.mask > 0, opd != 0) and set(np.unique(s.mask)) == {0, 1}
        assert rec["kind"] == kind and not rec["clipped"]
        json.dumps(s.meta)


# closed forms exist for these settings (an untextured blob, a one-lobed nucleus)
CLOSED_FORM = {"blob": {"texture": 0.0}, "wbc": {"n_lobes": 1}}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "yeast"])  # budding union: no closed form
def test_integrated_opd_matches_analytic_volume(kind):
    for seed in range(3):
        s, dx = _render_whole(kind, seed, params=CLOSED_FORM.get(kind))
        analytic = s.meta["objects"][0]["opd_integral_um3"]
        assert analytic is not None and analytic > 0
        assert s.opd_um.astype(np.float64).sum() * dx * dx == pytest.approx(analytic, rel=0.01)


def test_negative_contrast_when_medium_is_denser():
    s = render_object("bead", (41, 43), 0.1, rng=np.random.default_rng(0), n_medium=1.52,
                      params={"diameter_um": 2.0, "n_obj": 1.46})
    assert s.opd_um.max() == 0.0 and s.opd_um.min() < 0
    assert np.array_equal(s.mask > 0, s.opd_um != 0)


def test_parameter_overrides_are_used_and_checked():
    s = render_object("bead", (61, 61), 0.1, rng=np.random.default_rng(0), n_medium=1.333,
                      params={"diameter_um": 3.0, "n_obj": 1.59})
    assert s.meta["objects"][0]["diameter_um"] == 3.0
    assert s.opd_um.max() == pytest.approx(2 * 1.5 * (1.59 - 1.333), rel=0.01)
    with pytest.raises(ConfigError, match="diameter_um"):
        render_object("bead", SHAPE, 0.1, rng=np.random.default_rng(0), params={"radius": 1.0})
    with pytest.raises(ConfigError, match="unknown phantom kind"):
        render_object("platelet", SHAPE, 0.1, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="hi < lo"):
        render_object("bead", SHAPE, 0.1, rng=np.random.default_rng(0), params={"diameter_um": (3.0, 1.0)})


# ----------------------------------------------------------------------------- scenes


def _scene(seed, **kw):
    args = dict(kinds=KINDS, n_objects=(4, 8), background_drift_rad=0.0)
    args.update(kw)
    return make_scene((96, 101), 0.25, rng=np.random.default_rng(seed), **args)


def test_scene_is_deterministic_per_seed():
    a, b, c = _scene(7), _scene(7), _scene(8)
    assert np.array_equal(a.opd_um, b.opd_um) and np.array_equal(a.mask, b.mask) and a.meta == b.meta
    assert not np.array_equal(a.opd_um, c.opd_um)


def test_scene_mask_matches_support_and_meta():
    for seed in range(4):
        s = _scene(seed)
        labels = [o["label"] for o in s.meta["objects"]]
        assert labels == list(range(1, len(labels) + 1))
        assert set(np.unique(s.mask)) - {0} <= set(labels)
        assert np.array_equal(s.mask > 0, s.opd_um != 0)
        assert s.opd_um.min() >= 0 and np.all(np.isfinite(s.opd_um))
        json.dumps(s.meta)


def test_overlapping_objects_add():
    # crowded beads: the scene must equal the sum of its objects rendered one by one
    s = make_scene((64, 70), 0.25, rng=np.random.default_rng(3), kinds=["bead"], n_objects=12,
                   n_medium=1.333, kind_params={"bead": {"diameter_um": (2.0, 6.0)}})
    singles = [render_object("bead", s.shape, 0.25, rng=np.random.default_rng(0), centre_um=o["centre_um"],
                             n_medium=1.333, params={"diameter_um": o["diameter_um"], "n_obj": o["n_obj"]})
               for o in s.meta["objects"]]
    assert len(singles) == 12
    assert sum((one.mask > 0).astype(int) for one in singles).max() >= 2  # there really are overlaps
    assert np.allclose(s.opd_um, sum(one.opd_um.astype(np.float64) for one in singles), rtol=1e-5, atol=1e-6)


def test_no_overlap_keeps_bounding_circles_apart():
    s = make_scene((200, 200), 0.2, rng=np.random.default_rng(5), kinds=["bead"], n_objects=10,
                   allow_overlap=False, kind_params={"bead": {"diameter_um": 3.0}})
    centres = np.array([o["centre_um"] for o in s.meta["objects"]])
    d = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    assert len(centres) >= 5 and np.all(d[np.triu_indices(len(centres), 1)] >= 3.0)


def test_background_drift_is_smooth_zero_mean_and_recorded():
    lam = 0.55
    s = _scene(11, background_drift_rad=0.8, wavelength_um=lam)
    flat = _scene(11, background_drift_rad=0.0, wavelength_um=lam)
    coeffs = s.meta["background_drift"]["coeffs_rad"]
    drift = drift_field_rad(s.shape, coeffs)
    assert drift.max() - drift.min() == pytest.approx(0.8, rel=1e-9)
    assert abs(drift.mean()) < 1e-12
    # objects are unchanged by the drift (same draws), which is added on top in OPD units
    objects = s.opd_um - (drift * lam / (2 * math.pi)).astype(np.float32)
    assert np.allclose(objects, flat.opd_um, atol=1e-6)
    assert np.array_equal(s.mask, flat.mask)


def test_scene_rejects_bad_configuration():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="valid: "):
        make_scene(SHAPE, 0.2, rng=rng, kinds=["discocyte", "neuron"])
    with pytest.raises(ConfigError):
        make_scene(SHAPE, 0.2, rng=rng, kinds={"discocyte": 0.0})
    with pytest.raises(ConfigError):
        make_scene(SHAPE, -0.2, rng=rng)
    with pytest.raises(ConfigError):
        make_scene((0, 5), 0.2, rng=rng)
    with pytest.raises(ConfigError, match="thickness"):
        make_scene(SHAPE, 0.2, rng=rng, kind_params={"discocyte": {"thickness": 2.0}})
    with pytest.raises(ConfigError):
        make_scene(SHAPE, 0.2, rng=rng, background_drift_rad=-1.0)


# ----------------------------------------------------------------------------- textures


def test_gaussian_random_field_statistics_and_spectrum():
    g = gaussian_random_field((256, 256), 0.2, rng=np.random.default_rng(0), beta=3.0, outer_scale_um=1e6)
    assert g.dtype == np.float32 and g.shape == (256, 256)
    assert abs(float(g.mean())) < 1e-6 and float(g.std()) == pytest.approx(1.0, rel=1e-5)
    # radially averaged power spectrum falls as f^-beta (the crop and window blur it slightly)
    p = np.abs(np.fft.fft2(g * np.hanning(256)[:, None] * np.hanning(256)[None, :])) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256, 0.2), np.fft.fftfreq(256, 0.2)))
    band = (f > 0.1) & (f < 1.0)
    slope = np.polyfit(np.log(f[band]), np.log(p[band]), 1)[0]
    assert slope == pytest.approx(-3.0, abs=0.4)
    same = gaussian_random_field((64, 65), 0.2, rng=np.random.default_rng(4), beta=2.5)
    again = gaussian_random_field((64, 65), 0.2, rng=np.random.default_rng(4), beta=2.5)
    other = gaussian_random_field((64, 65), 0.2, rng=np.random.default_rng(5), beta=2.5)
    assert np.array_equal(same, again) and not np.array_equal(same, other)


def _spectral_slope(img: np.ndarray, f_lo: float, f_hi: float) -> float:
    """Log-log slope of the radially averaged power spectrum between f_lo and f_hi (cycles/px)."""
    p = np.abs(np.fft.fft2(img - img.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(img.shape[1]), np.fft.fftfreq(img.shape[0])))
    edges = np.geomspace(f_lo, f_hi, 9)
    power = [p[(f >= a) & (f < b)].mean() for a, b in zip(edges[:-1], edges[1:])]
    return float(np.polyfit(np.log(np.sqrt(edges[:-1] * edges[1:])), np.log(power), 1)[0])


def test_dead_leaves_covers_the_grid_with_flat_leaves_and_scale_free_spectrum():
    rng = np.random.default_rng(0)
    imgs = [dead_leaves((256, 256), rng=rng) for _ in range(6)]
    for img in imgs:
        assert img.dtype == np.float32 and np.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
        # each leaf is one grey: far fewer distinct values than pixels, yet many leaves
        assert 100 < len(np.unique(img)) < img.size // 20
    # r^-3 sizes are scale invariant: power close to 1/f^2 between 1/rmax and 1/rmin
    # (Lee, Mumford & Huang 2001); measured -1.4 to -2.0 per image, so the mean is held to +-0.4
    assert np.mean([_spectral_slope(i, 1 / 64, 1 / 8) for i in imgs]) == pytest.approx(-1.8, abs=0.4)
    # one leaf size only: a flat spectrum below 1/r and a steep fall above it, far from 1/f^2 in this band
    single = [dead_leaves((256, 256), rng=rng, radius_px=(20.0, 20.0)) for _ in range(6)]
    assert abs(np.mean([_spectral_slope(i, 1 / 64, 1 / 8) for i in single]) + 1.8) > 0.5
    with pytest.raises(ConfigError):
        dead_leaves((32, 32), rng=rng, radius_px=(5.0, 2.0))


def test_spherocyte_peak_opd_is_dn_times_thickness():
    # Catches a slip (thickness drawn twice as large): an oblate spheroid of full thickness t peaks at dn*t.
    from chromaqpi.phantoms import render_object
    s = render_object("spherocyte", (81, 83), 0.1, rng=np.random.default_rng(0), n_medium=1.333,
                      params={"diameter_um": 6.0, "thickness_um": 2.0, "n_obj": 1.40})
    assert float(s.opd_um.max()) == pytest.approx(2.0 * (1.40 - 1.333), rel=0.01)


def test_object_cut_by_the_border_is_marked_clipped():
    # Catches a slip (_fully_inside always True).
    from chromaqpi.phantoms import render_object
    kw = dict(rng=np.random.default_rng(0), n_medium=1.333, params={"diameter_um": 3.0, "n_obj": 1.45})
    assert render_object("bead", (61, 61), 0.1, centre_um=(0.5, 3.0), **kw).meta["objects"][0]["clipped"]
    kw["rng"] = np.random.default_rng(0)
    assert not render_object("bead", (61, 61), 0.1, centre_um=(3.0, 3.0), **kw).meta["objects"][0]["clipped"]


def test_no_overlap_in_a_crowded_field_keeps_bounding_circles_apart():
    # Catches a slip (distance >= max(extents) instead of their sum). Small field, many tries: close pairs
    # are frequent, so the bound is actually exercised.
    from chromaqpi.phantoms import make_scene
    hits = 0
    for seed in range(20):
        s = make_scene((60, 60), 0.2, rng=np.random.default_rng(seed), kinds=["bead"], n_objects=12,
                       allow_overlap=False, max_tries=200, kind_params={"bead": {"diameter_um": 2.0}})
        c = np.array([o["centre_um"] for o in s.meta["objects"]])
        d = np.hypot(*(c[:, None, :] - c[None, :, :]).transpose(2, 0, 1))[np.triu_indices(len(c), 1)]
        assert np.all(d >= 2.0 - 1e-9)
        hits += int(np.sum(d < 2.5))
    assert hits > 0  # the test saw near-contacts


def test_scene_labels_each_object_separately():
    # Catches a slip (every object labelled 1): non-overlapping objects keep their own label on their support.
    from chromaqpi.phantoms import make_scene, render_object
    s = make_scene((80, 80), 0.25, rng=np.random.default_rng(2), kinds=["bead"], n_objects=5, n_medium=1.333,
                   allow_overlap=False, kind_params={"bead": {"diameter_um": 3.0}})
    assert len(s.meta["objects"]) >= 3
    for o in s.meta["objects"]:
        one = render_object("bead", s.shape, 0.25, rng=np.random.default_rng(0), centre_um=o["centre_um"],
                            n_medium=1.333, params={"diameter_um": o["diameter_um"], "n_obj": o["n_obj"]})
        assert np.array_equal(s.mask == o["label"], one.opd_um != 0)
