"""Fixed, versioned evaluation sets, defined in code and generated deterministically.

=========================== ==== ======= ============== =============================================
name                         n    size    microscope     content
=========================== ==== ======= ============== =============================================
``phantoms-test``            24   256     ``default``    clinical cell scenes (``cells``), sensor noise
``natural-test``             16   256     ``default``    held-out bundled images (``skimage-test``),
                                                         [0, 3.5] rad, sensor noise
``paper-2shot-test``         32   256     paper-2shot    held-out images, [0, 3.5] rad, noiseless
``paper-rgb-test``           32   256     paper-rgb      held-out images, [0, 3.5] rad, noiseless
``paper-2shot-noisy-test``   32   256     paper-2shot    as paper-2shot-test plus N(p, p), p ~ U(0, 0.2)
=========================== ==== ======= ============== =============================================

The microscopes are the presets as they are (full quadrature), not the training
families' fast approximations. Image sets cycle through the eight held-out images
(:data:`chromaqpi.phantoms.BUNDLED_TEST`), which training builds refuse to use.

Seeds: sample ``i`` of a set draws everything from
``SeedSequence(EVAL_ENTROPY, spawn_key=(EVAL_KEY, set_id, i, stream))``; training streams
have spawn key ``(TRAIN_KEY, ...)``, so no training seed reaches these streams
(:mod:`chromaqpi.datasets.seeds`). Changing a set's content means a new ``version``.

Generating ``phantoms-test`` with the full ``default`` preset takes seconds per sample, so
samples are cached (one ``.npz`` per sample) under ``~/.cache/chromaqpi/evalsets`` (or
``$CHROMAQPI_CACHE/evalsets``, or a given folder), keyed by name, version and a
fingerprint of the definition and the chromaqpi version.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from chromaqpi.datasets import seeds
from chromaqpi.datasets.shards import array_to_json, json_to_array, write_npz
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.phantoms import BUNDLED_TEST, PhaseSample, get_source, phase_rad

__all__ = ["EvalSetSpec", "EvalSample", "EVALSETS", "list_evalsets", "get_evalset", "load_evalset",
           "eval_object", "eval_microscope", "default_cache_dir"]

# Streams inside one evaluation sample.
_OBJECT, _MICROSCOPE, _NOISE = 0, 1, 2


@dataclass(frozen=True)
class EvalSetSpec:
    """Definition of one evaluation set (never edit in place: bump ``version``).

    Attributes
    ----------
    name : set name.
    set_id : fixed integer in the seed's spawn key (unique per set).
    version : content version.
    n : number of samples.
    size : image size (pixels, square).
    microscope : preset name.
    source : phase source name (``cells`` or ``skimage-test``).
    noise : apply the microscope's sensor noise.
    gaussian_noise : optional (lo, hi): per-sample p, sensor N(mean=p, std=p).
    description : one line.
    """

    name: str
    set_id: int
    version: int
    n: int
    size: int
    microscope: str
    source: str
    noise: bool
    gaussian_noise: tuple[float, float] | None = None
    description: str = ""


@dataclass
class EvalSample:
    """One evaluation sample.

    Attributes
    ----------
    images : (C, H, W) float32 normalised camera image(s), empty field = 1.
    phase : (H, W) float32 true phase (rad) at ``microscope.optics.wavelength_ref_um``.
    opd : (H, W) float32 OPD (µm).
    mask : (H, W) int32 object labels, or None when the source has none.
    microscope : the exact microscope used.
    meta : set name, index, version and the source's description of the object.
    """

    images: torch.Tensor
    phase: torch.Tensor
    opd: torch.Tensor
    mask: torch.Tensor | None
    microscope: Microscope
    meta: dict = field(default_factory=dict)


EVALSETS: dict[str, EvalSetSpec] = {s.name: s for s in [
    EvalSetSpec("phantoms-test", 1, 1, 24, 256, "default", "cells", True,
                description="clinical cell scenes, default preset, with sensor noise"),
    EvalSetSpec("natural-test", 2, 1, 16, 256, "default", "skimage-test", True,
                description="held-out scikit-image pictures as [0, 3.5] rad phase, default preset, sensor noise"),
    EvalSetSpec("paper-2shot-test", 3, 1, 32, 256, "paper-2shot", "skimage-test", False,
                description="the paper's two-shot evaluation: held-out pictures, [0, 3.5] rad, noiseless"),
    EvalSetSpec("paper-rgb-test", 4, 1, 32, 256, "paper-rgb", "skimage-test", False,
                description="the paper's polychromatic evaluation: held-out pictures, [0, 3.5] rad, noiseless"),
    EvalSetSpec("paper-2shot-noisy-test", 5, 1, 32, 256, "paper-2shot", "skimage-test", True, (0.0, 0.2),
                description="paper-2shot-test with the paper's training noise N(p, p), p ~ U(0, 0.2)"),
]}


def list_evalsets() -> list[str]:
    """Names of the evaluation sets."""
    return sorted(EVALSETS)


def get_evalset(name: str) -> EvalSetSpec:
    """The definition of an evaluation set."""
    if name not in EVALSETS:
        raise ConfigError(f"unknown evaluation set {name!r}; valid: {', '.join(list_evalsets())}")
    return EVALSETS[name]


def _check_index(spec: EvalSetSpec, index: int) -> int:
    if not 0 <= int(index) < spec.n:
        raise ConfigError(f"{spec.name} has {spec.n} samples; index {index} is out of range")
    return int(index)


def eval_microscope(name: str, index: int) -> Microscope:
    """The microscope of sample ``index`` (the preset, plus its drawn noise level if any)."""
    spec = get_evalset(name)
    microscope = Microscope.from_preset(spec.microscope)
    if spec.gaussian_noise is None:
        return microscope
    rng = seeds.rng_from(seeds.eval_sequence(spec.set_id, _check_index(spec, index), _MICROSCOPE))
    p = round(float(rng.uniform(*spec.gaussian_noise)), 6)
    return microscope.replace(sensor={"model": "gaussian", "gaussian_mean": p, "gaussian_std": p})


def eval_object(name: str, index: int) -> PhaseSample:
    """The phase object of sample ``index`` (cheap: no simulation)."""
    spec = get_evalset(name)
    index = _check_index(spec, index)
    microscope = Microscope.from_preset(spec.microscope)
    params = {"wavelength_um": microscope.optics.wavelength_ref_um}
    if spec.source == "skimage-test":
        params["names"] = [BUNDLED_TEST[index % len(BUNDLED_TEST)]]
    source = get_source(spec.source, **params)
    rng = seeds.rng_from(seeds.eval_sequence(spec.set_id, index, _OBJECT))
    return source((spec.size, spec.size), microscope.sampling.pixel_size_um, rng)


def _generate(spec: EvalSetSpec, index: int) -> dict[str, np.ndarray]:
    from chromaqpi.optics.simulator import simulate

    sample = eval_object(spec.name, index)
    microscope = eval_microscope(spec.name, index)
    phase = phase_rad(sample, microscope.optics.wavelength_ref_um)
    generator = seeds.torch_generator_from(seeds.eval_sequence(spec.set_id, index, _NOISE))
    with torch.no_grad():
        images = simulate(torch.from_numpy(phase), microscope, noise=spec.noise, generator=generator)[0]
    meta = {"evalset": spec.name, "version": spec.version, "index": index,
            "has_mask": bool(sample.meta.get("has_mask", True)), "source_meta": sample.meta,
            "microscope": microscope.to_dict()}
    return {"images": images.numpy().astype(np.float32), "phase": phase, "opd": sample.opd_um,
            "mask": sample.mask.astype(np.int32), "params": json_to_array(meta)}


def _to_sample(arrays) -> EvalSample:
    meta = array_to_json(arrays["params"])
    mask = torch.from_numpy(np.array(arrays["mask"])) if meta["has_mask"] else None
    return EvalSample(torch.from_numpy(np.array(arrays["images"])), torch.from_numpy(np.array(arrays["phase"])),
                      torch.from_numpy(np.array(arrays["opd"])), mask, Microscope.from_dict(meta.pop("microscope")),
                      meta)


def default_cache_dir() -> Path:
    """``$CHROMAQPI_CACHE/evalsets`` or ``~/.cache/chromaqpi/evalsets``."""
    root = os.environ.get("CHROMAQPI_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chromaqpi"
    return Path(root) / "evalsets"


def _fingerprint(spec: EvalSetSpec) -> str:
    from chromaqpi import __version__

    blob = json.dumps({"spec": asdict(spec), "microscope": Microscope.from_preset(spec.microscope).to_dict(),
                       "chromaqpi": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _cached(path: Path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        warnings.warn(f"unreadable evaluation cache file {path}: regenerating it", stacklevel=4)
        return None


def load_evalset(name: str, n: int | None = None, cache_dir=None, *, progress: bool = False) -> list[EvalSample]:
    """Generate (or read from the cache) the first ``n`` samples of an evaluation set.

    Parameters
    ----------
    name : one of :func:`list_evalsets`.
    n : number of samples (default all); sample ``i`` is the same whatever ``n``.
    cache_dir : cache folder; ``None`` uses :func:`default_cache_dir`, ``False`` disables caching.
    progress : show a tqdm bar while generating.

    Returns
    -------
    list of EvalSample
    """
    spec = get_evalset(name)
    n = spec.n if n is None else int(n)
    if not 0 < n <= spec.n:
        raise ConfigError(f"{name} has {spec.n} samples; n={n} is out of range")
    folder = None
    if cache_dir is not False:
        folder = Path(cache_dir if cache_dir is not None else default_cache_dir())
        folder = folder / f"{name}-v{spec.version}-{_fingerprint(spec)}"
        folder.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    samples = []
    for i in tqdm(range(n), desc=name, unit="sample", disable=not progress):
        path = folder / f"sample-{i:05d}.npz" if folder is not None else None
        arrays = _cached(path) if path is not None else None
        if arrays is None:
            arrays = _generate(spec, i)
            if path is not None:
                write_npz(path, arrays)
        samples.append(_to_sample(arrays))
    return samples
