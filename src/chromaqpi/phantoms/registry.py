"""Name -> phase-source registry, so configs and the CLI can pick sources by name.

A *source* is any callable ``source(shape, pixel_size_um, rng) -> PhaseSample``. A
*factory* builds one from keyword parameters (as found in a config file)::

    @register_source("my-source")
    def my_source(*, scale=1.0):
        return MySource(scale)

    source = get_source("my-source", scale=2.0)
    sample = source((256, 256), 0.21, np.random.default_rng(0))

Built-in sources:

=============== ==================================================================
cells           mixed clinical scene: blood cells plus urine sediment
rbc             red blood cells (discocytes, some echinocytes and spherocytes)
beads           calibration beads, non-overlapping (exact analytic OPD)
bacteria        rods and cocci, single and in chains or clusters
blobs           random smooth textured shapes
textures        Gaussian random fields with power-law spectra (no mask)
deadleaves      occluding random ellipses, picture-like statistics (no mask)
skimage-train   bundled scikit-image pictures, training split (no mask)
skimage-test    bundled scikit-image pictures, held-out split (no mask)
pictures-val    other bundled pictures, for validation sets only (no mask)
folder          any folder of PNG/JPEG/TIFF images; needs ``path=`` (no mask)
=============== ==================================================================
"""

from __future__ import annotations

import inspect
from typing import Callable, Protocol

import numpy as np

from chromaqpi.errors import ConfigError
from chromaqpi.phantoms.cells import CLINICAL_MIX, N_MEDIUM, SceneSource
from chromaqpi.phantoms.images import BundledImageSource, ImageFolderSource
from chromaqpi.phantoms.sample import PhaseSample
from chromaqpi.phantoms.textures import DeadLeavesSource, TextureSource

__all__ = ["Source", "register_source", "get_source", "list_sources"]


class Source(Protocol):
    """A phase source: ``source(shape, pixel_size_um, rng) -> PhaseSample``."""

    def __call__(self, shape: tuple[int, int], pixel_size_um: float, rng: np.random.Generator) -> PhaseSample: ...


_FACTORIES: dict[str, Callable[..., Source]] = {}


def register_source(name: str):
    """Decorator registering ``factory(**params) -> Source`` under ``name``.

    Raises ValueError if the name is taken (two plug-ins claiming one name is a bug).
    """

    def decorator(factory: Callable[..., Source]) -> Callable[..., Source]:
        if name in _FACTORIES:
            raise ValueError(f"phase source {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorator


def get_source(name: str, **params) -> Source:
    """Build the source registered as ``name`` with keyword ``params``.

    Raises
    ------
    chromaqpi.errors.ConfigError
        For an unknown name (the message lists the valid ones) or parameters the
        factory does not accept.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown phase source {name!r}; valid: {', '.join(list_sources())}")
    try:
        # check the call first, so a TypeError raised inside the factory is not misreported
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise ConfigError(f"phase source {name!r}: {exc}") from None
    return factory(**params)


def list_sources() -> list[str]:
    """Registered source names, sorted."""
    return sorted(_FACTORIES)


def _scene_factory(name: str, kinds: dict, n_objects, allow_overlap: bool = True):
    def factory(*, kinds=kinds, n_objects=n_objects, n_medium=N_MEDIUM, background_drift_rad=0.0,
                wavelength_um=0.55, allow_overlap=allow_overlap, kind_params=None, supersample=None):
        return SceneSource(kinds=kinds, n_objects=n_objects, n_medium=n_medium,
                           background_drift_rad=background_drift_rad, wavelength_um=wavelength_um,
                           allow_overlap=allow_overlap, kind_params=kind_params, supersample=supersample, name=name)

    factory.__doc__ = f"Scene source {name!r}; parameters as in :func:`chromaqpi.phantoms.cells.make_scene`."
    return factory


register_source("cells")(_scene_factory("cells", CLINICAL_MIX, (3, 15)))
register_source("rbc")(_scene_factory("rbc", {"discocyte": 0.8, "echinocyte": 0.1, "spherocyte": 0.1}, (5, 25)))
register_source("beads")(_scene_factory("beads", {"bead": 1.0}, (1, 8), allow_overlap=False))
register_source("bacteria")(_scene_factory("bacteria", {"rod": 0.6, "coccus": 0.4}, (3, 30)))
register_source("blobs")(_scene_factory("blobs", {"blob": 1.0}, (1, 10)))


@register_source("textures")
def _textures(*, beta=(2.0, 4.0), opd_max_um=(0.05, 0.3), outer_scale_um=None) -> Source:
    """Gaussian random field textures; see :class:`~chromaqpi.phantoms.textures.TextureSource`."""
    return TextureSource(beta=beta, opd_max_um=opd_max_um, outer_scale_um=outer_scale_um)


@register_source("deadleaves")
def _deadleaves(*, radius_px=(2.0, 128.0), blur_px=(0.0, 1.5), texture=(0.0, 0.15), phase_range_rad=(0.0, 3.5),
                wavelength_um=0.55) -> Source:
    """Dead-leaves scenes; see :class:`~chromaqpi.phantoms.textures.DeadLeavesSource`."""
    return DeadLeavesSource(radius_px=tuple(radius_px), blur_px=blur_px, texture=texture,
                            phase_range_rad=phase_range_rad, wavelength_um=wavelength_um)


@register_source("skimage-train")
def _skimage_train(*, phase_range_rad=(0.0, 3.5), wavelength_um=0.55, names=None) -> Source:
    """Bundled scikit-image pictures, training split."""
    return BundledImageSource("train", phase_range_rad, wavelength_um, None if names is None else tuple(names))


@register_source("skimage-test")
def _skimage_test(*, phase_range_rad=(0.0, 3.5), wavelength_um=0.55, names=None) -> Source:
    """Bundled scikit-image pictures, held-out test split."""
    return BundledImageSource("test", phase_range_rad, wavelength_um, None if names is None else tuple(names))


@register_source("pictures-val")
def _pictures_val(*, phase_range_rad=(0.0, 3.5), wavelength_um=0.55, names=None) -> Source:
    """Validation pictures (matplotlib's samples and spare scikit-image files); never for training."""
    return BundledImageSource("val", phase_range_rad, wavelength_um, None if names is None else tuple(names))


@register_source("folder")
def _folder(*, path, phase_range_rad=(0.0, 3.5), wavelength_um=0.55, recursive=True) -> Source:
    """Any folder of PNG/JPEG/TIFF images; see :class:`~chromaqpi.phantoms.images.ImageFolderSource`."""
    return ImageFolderSource(path, phase_range_rad, wavelength_um, recursive)
