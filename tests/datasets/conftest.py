"""Shared tiny datasets for the dataset tests (built once per session, in-process)."""

import pytest

from chromaqpi.datasets.build import build_dataset

# Small enough to build in about a second; big enough for several shards and groups.
TINY = dict(n=12, size=32, seed=11, shard_size=4, group_size=2, progress=False)


@pytest.fixture(scope="session")
def tiny():
    """Arguments of :func:`tiny_dataset`'s build (a fresh copy)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A complete default-family dataset (12 samples, 3 shards of 4, 32x32)."""
    root = tmp_path_factory.mktemp("tiny")
    build_dataset(None, "default", out_dir=root, workers=1, **TINY)
    return root


@pytest.fixture(scope="session")
def tiny_planes_dataset(tmp_path_factory):
    """A complete paper-2shot dataset (coherent, no Bayer: every D4 transform is valid)."""
    root = tmp_path_factory.mktemp("tiny2shot")
    build_dataset("skimage-train", "paper-2shot", 8, 32, 5, root, shard_size=4, group_size=2, progress=False)
    return root
