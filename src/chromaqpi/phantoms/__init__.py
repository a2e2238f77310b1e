"""Phase-object sources: analytic cell and bead phantoms, image folders, and a registry.

Every source returns a :class:`PhaseSample` holding an OPD map in µm (float32), an integer
object mask (0 = background) and a JSON-serialisable ``meta``; :func:`phase_rad` converts
to radians at a wavelength. Sources are looked up by name with :func:`get_source`.

Example
-------
>>> import numpy as np
>>> from chromaqpi.phantoms import get_source, phase_rad
>>> sample = get_source("rbc")((64, 64), 0.21, np.random.default_rng(0))
>>> sample.opd_um.shape, sample.opd_um.dtype.name
((64, 64), 'float32')
>>> float(phase_rad(sample, 0.55).min()) >= 0.0
True
"""

from chromaqpi.phantoms.cells import (
    CLINICAL_MIX,
    KIND_DEFAULTS,
    PhantomObject,
    SceneSource,
    build_object,
    list_kinds,
    make_scene,
    render_object,
)
from chromaqpi.phantoms.images import (
    BUNDLED_TEST,
    BUNDLED_VAL,
    BUNDLED_TRAIN,
    BundledImageSource,
    ImageFolderSource,
    bundled_image_names,
    image_to_phase,
    load_bundled_image,
)
from chromaqpi.phantoms.registry import Source, get_source, list_sources, register_source
from chromaqpi.phantoms.sample import PhaseSample, opd_from_phase, phase_rad
from chromaqpi.phantoms.textures import DeadLeavesSource, TextureSource, dead_leaves, drift_field_rad, gaussian_random_field

__all__ = [
    "PhaseSample", "phase_rad", "opd_from_phase",
    "make_scene", "render_object", "build_object", "list_kinds", "PhantomObject", "SceneSource",
    "KIND_DEFAULTS", "CLINICAL_MIX",
    "gaussian_random_field", "TextureSource", "dead_leaves", "DeadLeavesSource", "drift_field_rad",
    "image_to_phase", "ImageFolderSource", "BundledImageSource", "bundled_image_names",
    "load_bundled_image", "BUNDLED_TRAIN", "BUNDLED_TEST", "BUNDLED_VAL",
    "Source", "register_source", "get_source", "list_sources",
]
