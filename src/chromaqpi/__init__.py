"""chromaqpi: quantitative phase from chromatic defocus in one RGB brightfield image.

Public API (heavy modules are imported lazily, on first use):

- :class:`Microscope`, :func:`list_presets` -- the typed optical description;
- :func:`simulate` -- polychromatic partially coherent brightfield forward model;
- :func:`reconstruct`, :func:`list_methods` -- every phase-retrieval method behind one call;
- :func:`load_model` -- learned models (safetensors + JSON);
- :func:`estimate_focus_offset` -- where the stack sits along z, fitted from the images;
- :func:`estimate_registration` -- the channels' lateral colour, fitted from a calibration image;
- :func:`data_fit` -- how well a phase map explains its image (residual over noise, no ground truth);
- :func:`estimate_absorption` -- where the specimen attenuates the light, which the phase methods assume it does not;
- :func:`refine_with_absorption` -- phase and attenuation fitted together to the images (stained specimens);
- :func:`specimen_colour` -- whether the specimen absorbs some colours more than others (a stain).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Microscope": "chromaqpi.microscope",
    "list_presets": "chromaqpi.microscope",
    "simulate": "chromaqpi.optics.simulator",
    "Simulator": "chromaqpi.optics.simulator",
    "reconstruct": "chromaqpi.solvers.base",
    "list_methods": "chromaqpi.solvers.base",
    "load_model": "chromaqpi.models.registry",
    "estimate_focus_offset": "chromaqpi.solvers.focus",
    "estimate_registration": "chromaqpi.registration",
    "data_fit": "chromaqpi.consistency",
    "estimate_absorption": "chromaqpi.consistency",
    "specimen_colour": "chromaqpi.consistency",
    "refine_with_absorption": "chromaqpi.solvers.iterative",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chromaqpi' has no attribute {name!r}")
