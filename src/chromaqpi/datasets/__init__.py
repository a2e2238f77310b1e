"""Synthetic training data and fixed evaluation sets.

- :mod:`.randomize` -- domain randomisation as data (:class:`Ranges`, :func:`draw_microscope`, families);
- :mod:`.sources` -- weighted phase-source specs (``"cells:0.7,rbc:0.3"``);
- :mod:`.build` / :mod:`.shards` -- parallel, resumable, checksummed ``.npz`` shards + manifest;
- :mod:`.torch_data` -- :class:`ShardDataset` (disk) and :class:`OnTheFlyDataset` (simulated in the loader);
- :mod:`.augment` -- the D4 flips/rotations the physics allows;
- :mod:`.normalize` -- model input normalisations;
- :mod:`.evalsets` -- versioned evaluation sets (:func:`load_evalset`);
- :mod:`.seeds` -- the seed scheme that keeps training and evaluation streams disjoint.

Names are imported lazily (torch and the simulator load on first use).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Ranges": "randomize", "Objective": "randomize", "draw_microscope": "randomize", "get_family": "randomize",
    "list_families": "randomize", "resolve_ranges": "randomize",
    "SourceSpec": "sources", "parse_sources": "sources",
    "build_dataset": "build", "verify_dataset": "shards",
    "ShardDataset": "torch_data", "OnTheFlyDataset": "torch_data",
    "normalize_input": "normalize", "valid_transforms": "augment",
    "load_evalset": "evalsets", "list_evalsets": "evalsets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"chromaqpi.datasets.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'chromaqpi.datasets' has no attribute {name!r}")
