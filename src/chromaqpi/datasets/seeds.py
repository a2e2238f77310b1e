"""Seed schemes: every random draw of a dataset sample derives from (seed, index).

Training data and evaluation sets draw from disjoint streams of
:class:`numpy.random.SeedSequence`:

* training: ``SeedSequence(entropy=seed, spawn_key=(TRAIN_KEY, group, ...))`` with a
  user seed ``0 <= seed < 2**31``;
* evaluation: ``SeedSequence(entropy=EVAL_ENTROPY, spawn_key=(EVAL_KEY, set_id, index, ...))``.

A SeedSequence hashes its spawn key into its state, so two sequences whose first
spawn-key element differs never produce the same stream, whatever their entropy:
no training seed can reproduce an evaluation sample.

Within a group of samples that share one drawn microscope (see
:func:`chromaqpi.datasets.build.build_dataset`, ``group_size``), the streams are

* ``(TRAIN_KEY, group, 0)``: the microscope draw;
* ``(TRAIN_KEY, group, 1)``: the sensor noise of the whole group (a torch seed);
* ``(TRAIN_KEY, group, 2, j)``: the phase object of sample ``j`` of the group.

so a sample never depends on how many workers built the dataset.
"""

from __future__ import annotations

import numpy as np
import torch

from chromaqpi.errors import ConfigError

__all__ = ["TRAIN_KEY", "EVAL_KEY", "EVAL_ENTROPY", "MAX_SEED", "check_seed", "train_sequence",
           "eval_sequence", "rng_from", "torch_generator_from"]

#: First spawn-key element of every training stream.
TRAIN_KEY = 0
#: First spawn-key element of every evaluation stream (never used for training).
EVAL_KEY = 1
#: Fixed entropy of the evaluation sets (any constant works; never change it: the sets depend on it).
EVAL_ENTROPY = 0x6368726F6D61717069_6576616C  # "chromaqpi" "eval" in ASCII
#: Training seeds must lie in [0, MAX_SEED).
MAX_SEED = 2**31

# Sub-stream tags inside a group.
MICROSCOPE_STREAM, NOISE_STREAM, OBJECT_STREAM = 0, 1, 2


def check_seed(seed) -> int:
    """Validate a training seed: an integer in [0, 2**31)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    return int(seed)


def train_sequence(seed: int, group: int, *tags: int) -> np.random.SeedSequence:
    """The training stream of ``group`` (and optional sub-stream ``tags``)."""
    return np.random.SeedSequence(check_seed(seed), spawn_key=(TRAIN_KEY, int(group), *map(int, tags)))


def eval_sequence(set_id: int, index: int, *tags: int) -> np.random.SeedSequence:
    """The evaluation stream of sample ``index`` of the evaluation set ``set_id``."""
    return np.random.SeedSequence(EVAL_ENTROPY, spawn_key=(EVAL_KEY, int(set_id), int(index), *map(int, tags)))


def rng_from(sequence: np.random.SeedSequence) -> np.random.Generator:
    """A numpy Generator (PCG64) on ``sequence``."""
    return np.random.default_rng(sequence)


def torch_generator_from(sequence: np.random.SeedSequence, *, device=None) -> torch.Generator:
    """A torch.Generator (on ``device``, default CPU) seeded with 63 bits of ``sequence``."""
    seed = int(sequence.generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator(device=device if device is not None else "cpu").manual_seed(seed)
