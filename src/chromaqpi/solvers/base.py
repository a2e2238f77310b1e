"""One call for every phase-retrieval method, and the registry of method names.

A method is a function ``fn(images, microscope, **options) -> phase`` taking
validated ``(B, C, H, W)`` float intensities (empty field = 1) and a resolved
:class:`~chromaqpi.microscope.Microscope`, returning ``(B, H, W)`` phase in
radians at ``microscope.optics.wavelength_ref_um``. Its options are
keyword-only parameters; :func:`reconstruct` checks them against the signature
so a misspelt option is an error, never silently ignored.

Registry entries are either callables or ``"module:function"`` strings that
are imported on first use, so :func:`list_methods` can list learned models
without importing them (or torch model code) eagerly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import warnings
from typing import Callable

import numpy as np
import torch

from chromaqpi.errors import ConfigError, InputError, MethodError
from chromaqpi.io import check_light
from chromaqpi.microscope import Microscope
from chromaqpi.optics.simulator import tensor_from_array
from chromaqpi.registration import unregister

# Classical solvers, imported on first use.
_REGISTRY: dict[str, Callable | str] = {
    "constant": "chromaqpi.solvers.base:constant",
    "tie": "chromaqpi.solvers.tie:tie",
    "wotf": "chromaqpi.solvers.wotf:wotf",
    "iterative": "chromaqpi.solvers.iterative:iterative",
}

# Learned methods (chromaqpi.models.methods), listed once that module exists; each entry is
# ``reconstruct(images, microscope, **options)`` with the contract above.
_LEARNED: dict[str, str] = {
    "mean": "chromaqpi.models.methods:mean",
    "ddpm": "chromaqpi.models.methods:ddpm",
    "cvdm": "chromaqpi.models.methods:cvdm",
    "zmd": "chromaqpi.models.methods:zmd",
    "auto": "chromaqpi.models.methods:auto",
}

# Options handled here, available to every method.
_COMMON_OPTIONS = ("reference_mask",)

# Shortest image side phase retrieval is trusted on. Defocus contrast is weakest at low frequencies (∝ f²),
# where most of a cell's phase lies, and a small field holds few of them: on noiseless paper-rgb images of
# smooth random phase (4 px correlation) TIE and WOTF erred 0.10-0.21 rad (MAE) at 8-24 px against
# 0.03-0.07 rad at 32-128 px, and TIE on a 16 x 256 px strip of the default optics 2.6 rad.
MIN_RELIABLE_SIDE_PX = 32


def register_method(name: str, target: Callable | str | None = None):
    """Register a phase-retrieval method under ``name``.

    Use as a decorator (``@register_method("mine")``) or directly with a
    callable or a lazy ``"package.module:function"`` string
    (``register_method("zmd", "chromaqpi.models.zmd:reconstruct")``).

    Parameters
    ----------
    name : method name used by :func:`reconstruct` and the CLI.
    target : the method, or ``None`` to return a decorator.

    Returns
    -------
    The decorator, or ``target`` itself.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigError(f"method name must be a non-empty string without surrounding spaces, got {name!r}")

    def add(fn: Callable | str):
        if isinstance(fn, str) and ":" not in fn:
            raise ConfigError(f"lazy method target must read 'module:function', got {fn!r}")
        if not (isinstance(fn, str) or callable(fn)):
            raise ConfigError(f"method {name!r} must be a callable or a 'module:function' string")
        _REGISTRY[name] = fn
        return fn

    return add if target is None else add(target)


def _module_exists(target: str) -> bool:
    module = target.split(":", 1)[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def list_methods() -> list[str]:
    """Sorted names accepted by ``reconstruct(..., method=NAME)``.

    Learned methods appear once their module is installed; nothing is imported
    beyond locating those modules.
    """
    names = set(_REGISTRY)
    names.update(n for n, t in _LEARNED.items() if _module_exists(t))
    return sorted(names)


def get_method(name: str) -> Callable:
    """The callable registered under ``name`` (imports lazy entries once)."""
    target = _REGISTRY.get(name)
    if target is None and name in _LEARNED and _module_exists(_LEARNED[name]):
        target = _LEARNED[name]
    if target is None:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    if isinstance(target, str):
        module_name, attr = target.split(":", 1)
        module = importlib.import_module(module_name)
        if not hasattr(module, attr):
            raise ConfigError(f"method {name!r}: {module_name} defines no {attr}()")
        target = getattr(module, attr)
        _REGISTRY[name] = target
    return target


def _check_options(name: str, fn: Callable, options: dict) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"method {name!r} got unknown option(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(accepted + list(_COMMON_OPTIONS)) or 'none'}")


# ------------------------------------------------------------------ inputs
def as_image_batch(images, n_channels: int) -> tuple[torch.Tensor, bool]:
    """Validate intensities and return ``((B, C, H, W) float tensor, was_batched)``.

    Half-precision inputs are promoted to float32 (FFTs need it); the caller
    casts results back.
    """
    if isinstance(images, np.ndarray):
        if not np.issubdtype(images.dtype, np.floating):
            raise InputError(f"images must be float intensities (empty field = 1), got dtype {images.dtype}; "
                             "read files with chromaqpi.io.read_image")
        images = tensor_from_array(images)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    images = images.detach()  # no method is differentiable end to end
    if not images.is_floating_point():
        raise InputError(f"images must be float intensities (empty field = 1), got {images.dtype}")
    if images.ndim not in (3, 4):
        raise InputError(f"images must have shape (C,H,W) or (B,C,H,W), got {tuple(images.shape)}")
    batched = images.ndim == 4
    images = images if batched else images[None]
    if images.shape[1] != n_channels:
        raise InputError(f"images have {images.shape[1]} channels but the microscope has {n_channels} "
                         "(channel axis must come before H, W)")
    if min(images.shape[-2:]) < 8:
        raise InputError(f"images are too small for phase retrieval: {tuple(images.shape[-2:])} (need >= 8 px)")
    if images.shape[0] == 0:
        raise InputError("images batch is empty")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or Inf")
    check_light(images.mean(dim=(-2, -1)).double().cpu().numpy(), float((images < 0).float().mean()),
                float(images.min()))
    if images.dtype not in (torch.float32, torch.float64):
        images = images.float()
    _warn_unnormalised(images)
    return images, batched


def _warn_small(images: torch.Tensor) -> None:
    """Warn about an image too small (or too narrow) for a trustworthy phase; it is still reconstructed."""
    h, w = images.shape[-2:]
    if min(h, w) < MIN_RELIABLE_SIDE_PX:
        warnings.warn(f"images are {h}x{w} px: below {MIN_RELIABLE_SIDE_PX} px on a side the phase is unreliable "
                      "(too few of the low frequencies where defocus contrast is weakest); reconstruct a larger "
                      "field", stacklevel=3)


def _warn_unnormalised(images: torch.Tensor) -> None:
    level = float(images.detach().flatten()[:: max(1, images.numel() // 100_000)].median())
    if not 0.2 < level < 5.0:
        warnings.warn(f"median intensity {level:.3g} is far from 1: solvers expect flat-field normalised "
                      "images (empty field = 1)", stacklevel=3)


def _reference(phase: torch.Tensor, mask) -> torch.Tensor:
    """Per-image offset removed by the constant-offset convention, (B, 1, 1)."""
    if mask is None:
        return phase.mean(dim=(-2, -1), keepdim=True)
    m = torch.as_tensor(mask if isinstance(mask, torch.Tensor) else np.asarray(mask), device=phase.device)
    if m.dtype != torch.bool:
        raise InputError("reference_mask must be boolean (True = background pixel)")
    if m.ndim not in (2, 3) or m.shape[-2:] != phase.shape[-2:] or (m.ndim == 3 and m.shape[0] != phase.shape[0]):
        raise InputError(f"reference_mask must have shape (H,W) or (B,H,W) = {tuple(phase.shape)}, "
                         f"got {tuple(m.shape)}")
    m = torch.broadcast_to(m, phase.shape)
    count = m.sum(dim=(-2, -1), keepdim=True)
    if (count == 0).any():
        raise InputError("reference_mask selects no pixel in at least one image")
    return (phase * m).sum(dim=(-2, -1), keepdim=True) / count


# ------------------------------------------------------------ public entry
def reconstruct(images, microscope: Microscope | str = "default", *, method: str, reference_mask=None, **options):
    """Phase in radians from normalised channel intensities.

    Parameters
    ----------
    images : (C, H, W) or (B, C, H, W) float numpy array or torch tensor
        Flat-field normalised intensities (empty field = 1), channel order of
        ``microscope`` (R, G, B or the planes), as :func:`chromaqpi.simulate`
        returns them.
    microscope : Microscope, preset name or TOML path.
    method : str
        A name from :func:`list_methods` (``"tie"``, ``"wotf"``, ``"iterative"``, ``"mean"``, ``"zmd"``, ...);
        ``"auto"``: the mean network of the shipped model trained for the microscope, else of the
        nearest one with the same acquisition (it warns), else a classical solver with a warning
        (:func:`chromaqpi.models.methods.choose_method`).
    reference_mask : optional bool (H, W) or (B, H, W)
        Background pixels; when given, the phase is referenced to zero mean
        over them instead of over the whole field (use for dry mass).
    **options
        Keyword options of the method (see its docstring); unknown names raise
        :class:`~chromaqpi.errors.ConfigError`.

    Returns
    -------
    Phase (rad) at ``microscope.optics.wavelength_ref_um``: (H, W) or (B, H, W)
    matching the input batching, same container type (numpy/torch), dtype
    and device as ``images``. Learned methods called with ``return_std=True``
    return ``(phase, std)``: the per-pixel spread of ``samples`` draws, for ZMD scaled
    by the model card's calibration to a one-sigma error (``calibrated_std``).

    Notes
    -----
    **Constant-offset convention.** Defocus contrast carries no information on
    the mean phase (``H^φ(0) = 0``), so every method's output is shifted to
    zero mean over the field, ``φ ← φ - mean(φ)``, or over ``reference_mask``
    when given (background-referenced). Compare to ground truth after offset
    alignment (PHYSICS.md §7). OPD follows from :func:`phase_to_opd_nm`.

    **Channel registration.** A microscope with a declared ``registration`` (lateral colour,
    channel offsets) has its channels mapped back onto the ideal grid first
    (:func:`chromaqpi.registration.unregister`); the phase is on that grid, which is the
    image's own grid where the registration leaves the reference channel alone. A magnification
    fitted on another image size is refused (its centre would be wrong).

    Examples
    --------
    >>> import torch, chromaqpi
    >>> phase = torch.zeros(48, 48, dtype=torch.float64)
    >>> phase[16:32, 16:32] = 0.3
    >>> img = chromaqpi.simulate(phase, "paper-2shot", noise=False)
    >>> out = chromaqpi.reconstruct(img, "paper-2shot", method="tie")
    >>> tuple(out.shape), out.dtype
    ((1, 48, 48), torch.float64)
    """
    microscope = Microscope.resolve(microscope)
    fn = get_method(method)
    _check_options(method, fn, options)
    batch, batched = as_image_batch(images, microscope.n_channels)
    _warn_small(batch)
    is_numpy, in_dtype = isinstance(images, np.ndarray), images.dtype
    # Told the stain, or running a model trained with coloured absorbers: nothing to say. Auto measures
    # the colour itself, to route on it.
    if "stain" not in options and method != "auto" and not reads_stains(method, microscope, options):
        warn_if_coloured(batch, microscope)
    batch, microscope = unregister(batch, microscope)  # every method then sees registered channels
    result = fn(batch, microscope, **options)
    phase, std = result if isinstance(result, tuple) else (result, None)
    if phase.shape != (batch.shape[0], *batch.shape[-2:]):
        raise RuntimeError(f"method {method!r} returned shape {tuple(phase.shape)}, expected (B, H, W)")
    for name, t in (("phase", phase), ("std", std)):
        if t is not None and not bool(torch.isfinite(t).all()):  # never hand back NaN maps as a result
            raise MethodError(f"method {method!r} returned NaN/Inf {name} (an input far outside what it handles, "
                              "options out of range, or a fault in the method)")
    phase = phase - _reference(phase, reference_mask)
    outputs = [_finish(t, batched, is_numpy, in_dtype) for t in (phase, std) if t is not None]
    return tuple(outputs) if std is not None else outputs[0]


def reads_stains(method: str, microscope: Microscope, options: dict) -> bool:
    """Whether the method runs a network trained with coloured absorbers (its card's training data)."""
    from chromaqpi.models.registry import trained_stains
    from chromaqpi.models_available import LEARNED_METHODS

    return method in LEARNED_METHODS and bool(trained_stains(method, microscope, options.get("model")))


def checked_colours(batch: torch.Tensor, microscope: Microscope) -> list:
    """:func:`chromaqpi.specimen_colour` of a batch :func:`as_image_batch` has checked (and warned about)."""
    from chromaqpi.consistency import specimen_colour

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="median intensity")  # said once, by the caller's check
        return specimen_colour(batch, microscope)


def warn_if_coloured(batch: torch.Tensor, microscope: Microscope, colours=None) -> None:
    """Warn when an image is coloured (:func:`chromaqpi.specimen_colour`, or its ``colours`` for the
    batch when already measured): a stain that every method reads as defocus contrast unless told it
    (``stain=``, for the methods that take one)."""
    from chromaqpi.models.methods import STAINED_MODEL, stained_model_reads

    for colour in checked_colours(batch, microscope) if colours is None else colours:
        if colour.coloured:
            name = colour.nearest_stain
            advice = (f"method 'wotf' with alpha=1e-3 and stain={name!r} (command line: --method wotf --alpha 1e-3 "
                      f"--stain {name})" if name else
                      # Like no named stain (e.g. two dyes, H&E): WOTF's automatic absorption nuisance, which
                      # held 0.41 nMAE on two-dye scenes (absorption-independent-haematoxylin+eosin.md).
                      "method 'wotf' with its automatic absorption nuisance (the colour is like no named stain, "
                      "e.g. two dyes)")
            if stained_model_reads(microscope):
                advice = (f"model {STAINED_MODEL!r} with method 'mean' (command line: --method mean --model "
                          f"{STAINED_MODEL}), or {advice}")
            warnings.warn(f"the specimen is coloured ({colour.summary()}): a stain or pigment, which the phase "
                          "methods read as defocus contrast unless told (README: coloured specimens); for its phase "
                          f"use {advice}", stacklevel=3)
            return


def _finish(t: torch.Tensor, batched: bool, is_numpy: bool, dtype):
    """Drop the batch axis if the input had none; match the input's container and dtype."""
    t = t if batched else t[0]
    if is_numpy:
        return t.detach().cpu().numpy().astype(dtype, copy=False)
    return t.detach().to(dtype)


def constant(images: torch.Tensor, microscope: Microscope) -> torch.Tensor:
    """Trivial baseline: a flat phase map, (B, H, W) zeros.

    After the offset convention and the metrics' offset alignment this is the
    best constant predictor for each image (a lower bound any method must beat).
    """
    return torch.zeros_like(images[:, 0])


def phase_to_opd_nm(phase, microscope: Microscope | str):
    """Optical path difference in nm, ``OPD = φ·λ_ref/(2π)``.

    Exact for a non-dispersive sample (``optics.phase_model = "opd"``); for the
    ``"constant"`` model it is the OPD at the reference wavelength.
    """
    lam_nm = Microscope.resolve(microscope).optics.wavelength_ref_um * 1000.0
    return phase * (lam_nm / (2 * math.pi))
