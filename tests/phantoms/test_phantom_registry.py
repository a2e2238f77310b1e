"""Name -> source registry: every built-in source honours the source contract."""

import json

import numpy as np
import pytest
from PIL import Image

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms import PhaseSample, get_source, list_sources, register_source
from chromaqpi.phantoms import registry

SHAPE = (45, 52)
REQUIRED = {"cells", "rbc", "beads", "bacteria", "textures", "skimage-train", "skimage-test", "folder"}


@pytest.fixture
def folder(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (60, 64), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    return tmp_path


def _params(name, folder):
    return {"path": str(folder)} if name == "folder" else {}


def test_required_sources_registered():
    assert REQUIRED <= set(list_sources())
    assert list_sources() == sorted(list_sources())


@pytest.mark.parametrize("name", sorted(registry._FACTORIES))
def test_source_contract(name, folder):
    src = get_source(name, **_params(name, folder))
    a = src(SHAPE, 0.21, np.random.default_rng(0))
    assert isinstance(a, PhaseSample)
    assert a.opd_um.shape == SHAPE and a.opd_um.dtype == np.float32 and a.mask.dtype == np.int32
    assert a.pixel_size_um == 0.21 and np.all(np.isfinite(a.opd_um))
    json.dumps(a.meta)
    if a.meta["has_mask"]:
        assert np.array_equal(a.mask > 0, a.opd_um != 0)  # default scenes have no drift
    else:
        assert not a.mask.any()
    # determinism both ways: same seed identical, another seed different
    b = src(SHAPE, 0.21, np.random.default_rng(0))
    assert np.array_equal(a.opd_um, b.opd_um) and np.array_equal(a.mask, b.mask) and a.meta == b.meta
    others = [src(SHAPE, 0.21, np.random.default_rng(s)).opd_um for s in (1, 2, 3)]
    assert any(not np.array_equal(a.opd_um, o) for o in others)


def test_image_sources_record_phase_range_and_wavelength(folder):
    s = get_source("folder", path=str(folder), phase_range_rad=(0.0, 1.5), wavelength_um=0.45)(
        SHAPE, 0.21, np.random.default_rng(0))
    assert s.meta["phase_range_rad"] == [0.0, 1.5] and s.meta["wavelength_um"] == 0.45
    assert float(s.opd_um.max()) == pytest.approx(1.5 * 0.45 / (2 * np.pi), rel=1e-6)


def test_scene_sources_take_parameters():
    src = get_source("beads", n_objects=3, kind_params={"bead": {"diameter_um": 2.0}})
    s = src((120, 121), 0.2, np.random.default_rng(0))
    assert s.meta["source"] == "beads" and len(s.meta["objects"]) == 3
    assert all(o["diameter_um"] == 2.0 for o in s.meta["objects"])


def test_unknown_source_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        get_source("imagenet")
    message = str(err.value)
    assert "\n" not in message and "'imagenet'" in message
    assert all(name in message for name in list_sources())


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="path"):
        get_source("folder")
    with pytest.raises(ConfigError, match="colour"):
        get_source("rbc", colour="red")
    with pytest.raises(ConfigError, match="unknown phantom kind"):
        get_source("cells", kinds={"neuron": 1.0})


def test_register_new_source(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))

    @register_source("flat")
    def flat(*, value=0.1):
        return lambda shape, dx, rng: PhaseSample(np.full(shape, value), np.zeros(shape, int), dx, {"has_mask": False})

    assert "flat" in list_sources()
    assert get_source("flat", value=0.2)(SHAPE, 0.2, np.random.default_rng(0)).opd_um.max() == np.float32(0.2)
    with pytest.raises(ValueError, match="already registered"):
        register_source("flat")(flat)


def test_phase_conversions_and_sample_validation():
    from chromaqpi.errors import InputError
    from chromaqpi.phantoms import opd_from_phase, phase_rad

    s = PhaseSample(np.full((3, 4), 0.55), np.zeros((3, 4)), 0.2)
    assert s.opd_um.dtype == np.float32 and s.mask.dtype == np.int32
    assert np.allclose(phase_rad(s, 0.55), 2 * np.pi)  # one wave of OPD is 2 pi
    assert np.allclose(opd_from_phase(phase_rad(s, 0.45), 0.45), 0.55)
    with pytest.raises(InputError):
        PhaseSample(np.zeros((3, 4)), np.zeros((4, 3)), 0.2)
    with pytest.raises(ConfigError):
        PhaseSample(np.zeros((3, 4)), np.zeros((3, 4)), 0.0)
    with pytest.raises(ConfigError):
        phase_rad(s, -0.5)


def test_package_docstring_example_runs():
    import doctest

    import chromaqpi.phantoms

    result = doctest.testmod(chromaqpi.phantoms)
    assert result.attempted > 0 and result.failed == 0
