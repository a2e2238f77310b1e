"""Evaluation sets: deterministic, cached faithfully, and disjoint from training data."""

import numpy as np
import pytest
import torch

from chromaqpi.datasets import seeds
from chromaqpi.datasets.evalsets import EVALSETS, eval_microscope, eval_object, list_evalsets, load_evalset
from chromaqpi.datasets.sources import resolve_sources
from chromaqpi.errors import ConfigError
from chromaqpi.phantoms import BUNDLED_TEST, BUNDLED_TRAIN


def _same(a, b):
    return (torch.equal(a.images, b.images) and torch.equal(a.phase, b.phase)
            and a.microscope == b.microscope and a.meta == b.meta)


def test_generation_is_deterministic_and_cache_is_faithful(tmp_path):
    fresh = load_evalset("paper-2shot-noisy-test", n=2, cache_dir=False)
    again = load_evalset("paper-2shot-noisy-test", n=2, cache_dir=False)
    assert all(_same(a, b) for a, b in zip(fresh, again))
    cached = load_evalset("paper-2shot-noisy-test", n=2, cache_dir=tmp_path)
    from_cache = load_evalset("paper-2shot-noisy-test", n=2, cache_dir=tmp_path)
    assert all(_same(a, b) and _same(a, c) for a, b, c in zip(fresh, cached, from_cache))
    assert len(list(tmp_path.rglob("sample-*.npz"))) == 2
    assert fresh[0].microscope.sensor.gaussian_std != fresh[1].microscope.sensor.gaussian_std


def test_corrupt_cache_file_is_regenerated(tmp_path):
    ref = load_evalset("paper-rgb-test", n=1, cache_dir=tmp_path)[0]
    path = next(tmp_path.rglob("sample-00000.npz"))
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="regenerating"):
        again = load_evalset("paper-rgb-test", n=1, cache_dir=tmp_path)[0]
    assert _same(ref, again)


def test_paper_sets_follow_the_protocol():
    for name, lam in (("paper-rgb-test", 0.530), ("paper-2shot-test", 0.521)):
        s = load_evalset(name, n=1, cache_dir=False)[0]
        assert s.images.shape[-2:] == (256, 256) and s.mask is None
        assert s.microscope.optics.wavelength_ref_um == lam
        assert float(s.phase.min()) == 0.0 and float(s.phase.max()) == pytest.approx(3.5, abs=1e-5)
        assert s.microscope.sensor.gaussian_std == 0  # noiseless evaluation


def test_image_sets_use_only_held_out_images():
    assert not set(BUNDLED_TEST) & set(BUNDLED_TRAIN)
    for name, spec in EVALSETS.items():
        if spec.source == "skimage-test":
            used = {eval_object(name, i).meta["image"] for i in range(spec.n)}
            assert used == set(BUNDLED_TEST)
    with pytest.raises(ConfigError):
        resolve_sources("skimage-test")


def test_phantom_set_objects_are_fixed():
    a, b = eval_object("phantoms-test", 3), eval_object("phantoms-test", 3)
    assert np.array_equal(a.opd_um, b.opd_um) and a.mask.max() > 0
    assert not np.array_equal(a.opd_um, eval_object("phantoms-test", 4).opd_um)
    assert eval_microscope("phantoms-test", 0).name == "default"
    assert eval_object("phantoms-test", 0).shape == (256, 256)


def test_eval_streams_are_disjoint_from_training_streams():
    ids = {spec.set_id for spec in EVALSETS.values()}
    assert len(ids) == len(EVALSETS)  # one stream family per set
    eval_states = {tuple(seeds.eval_sequence(sid, i, k).generate_state(4)) for sid in ids for i in range(32)
                   for k in range(3)}
    # training streams for many seeds, including the seeds equal to set ids / indices
    train_states = {tuple(seeds.train_sequence(s, g, k).generate_state(4)) for s in range(40) for g in range(32)
                    for k in range(3)}
    assert not eval_states & train_states
    assert seeds.eval_sequence(1, 0).spawn_key[0] != seeds.train_sequence(1, 0).spawn_key[0]


def test_unknown_set_and_bad_n():
    with pytest.raises(ConfigError, match="phantoms-test"):
        load_evalset("nope")
    with pytest.raises(ConfigError):
        load_evalset("paper-rgb-test", n=1000, cache_dir=False)
    assert "natural-test" in list_evalsets()
