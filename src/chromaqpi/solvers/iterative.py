"""Physics-based iterative phase retrieval with the differentiable forward model.

Minimises the misfit between the measured channel images and the noiseless
simulator output (the same Abbe model that generated training data) over a
pure-phase object, plus an optional TV/Tikhonov prior, starting from a linear
(TIE or WOTF) estimate. :func:`refine` is the same loop from a given phase,
the data-consistency step learned methods can call; :func:`refine_with_absorption`
fits an absorbing object (phase and amplitude attenuation) the same way.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from chromaqpi.errors import ConfigError, InputError, MethodError, is_number
from chromaqpi.microscope import Microscope
from chromaqpi.optics.simulator import coherent_paraxial, get_simulator
from chromaqpi.optics.spectra import get_stain
from chromaqpi.solvers.wotf import transfer_functions

# Preconditioner floor δ relative to max Σ|H|² (see _preconditioner).
_PRECOND_FLOOR = 1e-2
# TV smoothing (rad per pixel): |∇φ| is replaced by sqrt(|∇φ|² + ε²).
_TV_EPS = 1e-2
# Automatic TV weight per unit variance of the amplitude residual, i.e. the
# inverse Laplace scale of |∇φ| in px/rad. Tuned on four 128 px natural-image
# phases (paper-2shot, σ = 0.05-0.2): 3 beat 0.3, 1, 10, 30 and 100 at every level.
_TV_PER_VARIANCE = 3.0
# Unregularised warm-up iterations whose residual gives the noise estimate.
_WARMUP = 20
_MAD_TO_STD = 1.4826
# Early stopping: relative loss change below tol for this many iterations.
_PATIENCE = 5
# Peak memory of a fit that recomputes its fields, relative to one that keeps them (fit_memory_bytes).
_RECOMPUTE_MEMORY = 0.8


def fast_microscope(microscope: Microscope) -> Microscope:
    """Reduced-quadrature copy: ≤ 7 wavelengths and ≤ 12 source points.

    Used by ``fast=True``: the full ``default`` preset (31 wavelengths x ~60
    source points) costs ~1900 FFT pairs per forward pass; this copy ~80, at a
    few per cent model error (PHYSICS.md §1.2, §2.1).
    """
    sp, o = microscope.spectra, microscope.optics
    return microscope.replace(spectra={"n_wavelengths": min(sp.n_wavelengths, 7)},
                              optics={"source_points": min(o.source_points, 12)})


def fit_memory_bytes(shape: tuple[int, int], microscope: Microscope, *, recompute: bool = False) -> float:
    """Rough peak memory of one image's fit: the simulator keeps each channel's field per wavelength
    and source point for the gradient. Measured on CPU: about 0.55 kB per pixel plus
    92 B per pixel and quadrature point (``default`` reduced quadrature, 256 px: 2.3 GB in all).
    ``recompute``: the fields are recomputed in the backward pass instead (partially coherent
    optics only; measured 0.67-0.82x the peak at 256-768 px, ``benchmarks/results/fit-memory.md``;
    budgeted as 0.8x of this estimate, which exceeds the measured plain peaks by 1.3-1.5x)."""
    o = microscope.optics
    wavelengths = 1 if microscope.planes else microscope.spectra.n_wavelengths
    points = microscope.n_channels * wavelengths * (max(o.source_points, 1) if o.na_condenser > 0 else 1)
    need = shape[0] * shape[1] * (550.0 + 92.0 * points)
    return need * _RECOMPUTE_MEMORY if recompute and not coherent_paraxial(o) else need


def plan_memory(shape: tuple[int, int], microscope: Microscope, device) -> bool:
    """Whether a CPU fit of a ``shape`` image must recompute its fields to fit in the free memory;
    refuses one that does not fit either way (the kernel would kill it without a word)."""
    if torch.device(device).type != "cpu":
        return False
    free = _available_memory()
    if free is None or fit_memory_bytes(shape, microscope) <= free:
        return False
    need = fit_memory_bytes(shape, microscope, recompute=True)
    if need > free:
        h, w = shape
        raise MethodError(f"the iterative fit of a {h}x{w} image on these optics needs about {need / 2**30:.0f} GB "
                          f"but {free / 2**30:.0f} GB are free: crop the image or use a GPU")
    return True


def _available_memory() -> float | None:
    """MemAvailable of Linux (bytes), else None (no check)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _preconditioner(microscope: Microscope, shape, *, joint: bool = False, dtype, device, stain=None) -> torch.Tensor:
    """(K, H, W): one row per unknown (phase; and absorption when ``joint``, coloured by ``stain``)."""
    # Gradients of the data term scale like the WOTF energy s = Σ|H_c|², tiny
    # at low frequencies (∝ f⁴): plain descent fixes fine detail first and the
    # low-frequency background last (PHYSICS.md §4.2). Optimising u with
    # φ = F⁻¹{P·F{u}}, P = 1/sqrt(s + δ·max s), equalises the curvature. The
    # absorption's energy is flat at low frequencies and falls towards the
    # pupil cut-off: the same rule equalises it there.
    tfs = transfer_functions(microscope, tuple(shape), dtype=torch.float64, device=device, stain=stain)
    rows = []
    for h in tfs[:2 if joint else 1]:
        s = (h**2).sum(dim=0)
        p = 1.0 / torch.sqrt(s + _PRECOND_FLOOR * s.max())
        rows.append(p / p.max())
    return torch.stack(rows).to(dtype)


def _apply(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifft2(torch.fft.fft2(x) * p).real


def _tv(x: torch.Tensor) -> torch.Tensor:
    """Smoothed total variation of each (H, W) map in x, summed."""
    gy = torch.diff(x, dim=-2)[..., :, :-1]
    gx = torch.diff(x, dim=-1)[..., :-1, :]
    return torch.sqrt(gy**2 + gx**2 + _TV_EPS**2).sum()


def _grad_energy(x: torch.Tensor) -> torch.Tensor:
    return (torch.diff(x, dim=-2) ** 2).sum() + (torch.diff(x, dim=-1) ** 2).sum()


def _forward(sim, x: torch.Tensor) -> torch.Tensor:
    """Noise-free images of the unknowns x (K, H, W): phase, and absorption when K = 2."""
    return sim(x[:1], absorption=x[1:] if len(x) > 1 else None, noise=False)


def _data_term(model: torch.Tensor, images: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "amplitude":
        # Amplitude misfit: better conditioned than intensity for phase retrieval
        # and close to the Poisson likelihood; clamp keeps sqrt differentiable.
        return 0.5 * ((model.clamp(min=1e-12).sqrt() - images.clamp(min=0).sqrt()) ** 2).sum()
    return 0.5 * ((model - images) ** 2).sum()


def _make_optimizer(name: str, params, lr: float | None):
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=1.0 if lr is None else lr, max_iter=1, max_eval=25, history_size=20,
                                 line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=0.02 if lr is None else lr)
    raise ConfigError(f"optimizer must be 'lbfgs' or 'adam', got {name!r}")


def _objective(images, sim, x, *, loss, tv, tikhonov) -> torch.Tensor:
    """Data misfit plus the TV and gradient-energy priors (on every unknown): what :func:`_fit_one` minimises."""
    value = _data_term(_forward(sim, x), images, loss)
    if tv > 0:
        value = value + tv * _tv(x)
    if tikhonov > 0:
        value = value + 0.5 * tikhonov * _grad_energy(x)
    return value


def _fit_one(images, sim, x0, precond, *, loss, tv, tikhonov, optimizer, lr, max_iter, tol, bar=None):
    """Optimise one image (1, C, H, W) from the unknowns x0 (K, H, W); returns (x, losses).

    ``bar``: a progress bar advanced once per iteration.
    """
    u = _apply(1.0 / precond, x0).detach().clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, [u], lr)

    def closure():
        opt.zero_grad()
        value = _objective(images, sim, _apply(precond, u), loss=loss, tv=tv, tikhonov=tikhonov)
        value.backward()
        return value

    losses: list[float] = []
    calm = 0
    for _ in range(max_iter):
        value = float(opt.step(closure).detach())
        if not math.isfinite(value):
            break
        if losses and abs(losses[-1] - value) <= tol * max(abs(losses[-1]), 1e-300):
            calm += 1
        else:
            calm = 0
        losses.append(value)
        if bar is not None:
            bar.update(1)
        if calm >= _PATIENCE:
            break
    return _apply(precond, u).detach(), losses


def residual_noise_variance(images: torch.Tensor, model: torch.Tensor, unknowns: int = 1) -> float:
    """Robust variance of the amplitude residual ``√I_model - √I`` of one fit.

    MAD-based, and scaled by ``C/(C-K)`` because a fit with K unknowns per
    pixel absorbs about K channels' worth of noise (C channels; no more than
    ``C`` when K >= C, where the residual says little about the noise).
    """
    r = (model.clamp(min=0).sqrt() - images.clamp(min=0).sqrt()).flatten()
    mad = (r - r.median()).abs().median()
    c = images.shape[1]
    return float((_MAD_TO_STD * mad) ** 2) * c / max(c - unknowns, 1)


def _check_numbers(**values) -> None:
    for name, v in values.items():
        if not is_number(v) or v < 0:
            raise ConfigError(f"{name} must be a number >= 0, got {v!r}")


def refine(images: torch.Tensor, microscope: Microscope | str, init_phase, *, steps: int = 50,
           loss: str = "amplitude", tv="auto", tikhonov: float = 0.0, optimizer: str = "lbfgs",
           lr: float | None = None, tol: float = 1e-6, fast: bool = True, precondition: bool = True,
           progress: bool = False) -> torch.Tensor:
    """Data-consistency refinement of a phase estimate with the exact forward model.

    Parameters
    ----------
    images : (B, C, H, W) measured intensities, empty field = 1.
    microscope : Microscope, preset name or path (the forward model).
    init_phase : (B, H, W) or (H, W) starting phase (rad at λ_ref), or a list of
        such starts: each image is then fitted from every start, with one common TV
        weight, and the fit with the lowest objective is kept (a multi-start: the
        objective is not convex, and a start can end in a local minimum another
        start avoids).
    steps : maximum number of optimiser iterations (L-BFGS iterations each
        use one or a few forward/backward passes).
    loss : ``"amplitude"`` (``½Σ(√I_model - √I)²``, default) or ``"intensity"``.
    tv : total-variation weight on φ (rad per pixel) or ``"auto"`` (see Notes).
    tikhonov : weight of ``½‖∇φ‖²``.
    optimizer : ``"lbfgs"`` (strong-Wolfe line search, default) or ``"adam"``.
    lr : optimiser step (L-BFGS: initial step, default 1; Adam: default 0.02).
    tol : early stopping when the relative loss change stays below ``tol``
        for 5 consecutive iterations.
    fast : use :func:`fast_microscope` (fewer wavelengths and source points; default). On the
        ``default`` preset at 256 px and 2 CPU threads: ~1 s per iteration and 2.5 GB peak memory,
        against ~60 s and 14 GB with the full quadrature (``fast=False``, for GPUs); monochromatic coherent
        stacks (the paper presets) are the same either way.
    precondition : optimise in the WOTF-preconditioned variable (see Notes).
    progress : show a progress bar of the iterations (all images and starts).

    Returns
    -------
    (B, H, W) phase (rad), same dtype and device as ``images``.

    Notes
    -----
    Solves, per image, with the noiseless simulator ``S`` (pure-phase object):

    ``φ̂ = argmin ½Σ_c‖√S_c(φ) - √I_c‖² + τ·Σ sqrt(|∇φ|² + ε²) + ½μ‖∇φ‖²``,

    ε = 0.01 rad/px, optimised over ``u`` with ``φ = F⁻¹{P·F{u}}``, ``P ∝ 1/sqrt(Σ_c|H^φ_c|² + 0.01·max)``
    so that low frequencies, whose WOTF vanishes like f², converge as fast as
    fine detail. Images are solved one at a time, so batched and sequential
    calls agree.

    **Automatic TV weight** (``tv="auto"``): the first 20 iterations (at most
    half of ``steps``) run without prior; the robust (MAD) variance σ̂ₐ² of
    their amplitude residual, scaled by C/(C-1) for the noise the fit
    absorbed, estimates the amplitude noise (model error included), and
    ``τ = 3·σ̂ₐ²`` -- the MAP weight for a Laplace prior on |∇φ| with a scale
    of 1/3 rad/px (tuned on natural-image phases). Exact data leave a vanishing residual, hence no prior.
    With several starts every start is warmed up and the smallest estimate is
    the common weight: structure a warm-up has not yet fitted only inflates
    its residual. All starts then minimise the same objective, so comparing
    their final values is fair; comparing data misfit alone would favour the
    fit that absorbed more noise.
    """
    return _refine(images, microscope, init_phase, None, steps=steps, loss=loss, tv=tv, tikhonov=tikhonov,
                   optimizer=optimizer, lr=lr, tol=tol, fast=fast, precondition=precondition, progress=progress)[:, 0]


class PhaseAndAbsorption(NamedTuple):
    """What :func:`refine_with_absorption` returns: (B, H, W) phase (rad) and attenuation ``a``."""

    phase: torch.Tensor
    absorption: torch.Tensor


def refine_with_absorption(images: torch.Tensor, microscope: Microscope | str, init_phase, init_absorption="intercept",
                           *, steps: int = 50, loss: str = "amplitude", tv="auto", tikhonov: float = 0.0,
                           optimizer: str = "lbfgs", lr: float | None = None, tol: float = 1e-6,
                           fast: bool = True, precondition: bool = True, progress: bool = False,
                           stain=None) -> PhaseAndAbsorption:
    """:func:`refine` of an absorbing object: the phase and the amplitude attenuation fitted together.

    A pure-phase fit of a stained specimen bends the phase to explain the light the stain takes
    (``benchmarks/results/absorption-independent-refine100.md``). Here the object is
    ``t = exp(-a + iφ)`` (grey: the same ``a`` at every wavelength; or coloured by a known ``stain``,
    ``a·s(λ)/s̄``), and both maps are unknowns of the same objective.

    Parameters
    ----------
    images, microscope, init_phase, steps, loss, tv, tikhonov, optimizer, lr, tol, fast, precondition, progress
        As in :func:`refine`; the TV and gradient-energy priors apply to both maps with the same weight.
    init_absorption : ``"intercept"`` (default: :func:`chromaqpi.estimate_absorption`, the in-focus
        intercept of the channels' defocus fit; with a ``stain``, its per-pixel fit of the stain's
        Beer-Lambert optical densities), ``"zeros"``, or a (B, H, W) / (H, W) start.
    stain : None (grey absorber), or the stain that colours the specimen: a name in
        :data:`chromaqpi.optics.spectra.STAINS` or a :class:`~chromaqpi.optics.spectra.Stain`.
        ``a`` is then its mean attenuation over the light the camera records.

    Returns
    -------
    :class:`PhaseAndAbsorption` of (B, H, W) tensors, same dtype and device as ``images`` (NumPy arrays of
    their dtype for NumPy images, as :func:`chromaqpi.reconstruct` returns). ``a`` is not
    constrained to be >= 0: a flat-field gain error or light a phase edge scatters past the pupil can
    read as a small negative or positive attenuation. On the chromatic ``default`` optics the fitted ``a``
    was less accurate than its ``"intercept"`` start (ad hoc, 8 absorbing family scenes, 100 steps: RMS
    error 0.014-0.29 against 0.020-0.047): the fit's gain is in the phase (README).

    Notes
    -----
    Objective of :func:`refine` with ``S_c(φ, a)`` and the priors on both maps; the attenuation is
    optimised in its own preconditioned variable (``P ∝ 1/sqrt(Σ_c|H^a_c|² + 0.01·max)``). The
    automatic TV weight counts two unknowns per pixel (scale ``C/(C-2)``, at most ``C``). The
    microscope's channels must tell absorption from defocus contrast (planes on both sides of
    focus or a wide chromatic spread: :func:`chromaqpi.consistency.check_absorption_identifiable`);
    otherwise ConfigError.
    """
    from chromaqpi.consistency import check_absorption_identifiable, estimate_absorption

    microscope = Microscope.resolve(microscope)
    check_absorption_identifiable(microscope)
    get_stain(stain)  # an unknown name fails before any fit step
    from chromaqpi.solvers.base import as_image_batch

    given = images
    images = as_image_batch(images, microscope.n_channels)[0]  # NumPy read as reconstruct reads it, and checked
    if isinstance(init_absorption, str):
        if init_absorption == "intercept":
            init_absorption = estimate_absorption(images.double(), microscope, stain=stain)
        elif init_absorption == "zeros":
            init_absorption = torch.zeros_like(images[:, 0])
        else:
            raise ConfigError(f"init_absorption must be 'intercept', 'zeros' or a map, got {init_absorption!r}")
    fit = _refine(images, microscope, init_phase, init_absorption, steps=steps, loss=loss, tv=tv,
                  tikhonov=tikhonov, optimizer=optimizer, lr=lr, tol=tol, fast=fast, precondition=precondition,
                  progress=progress, stain=stain)
    if isinstance(given, np.ndarray):
        fit = fit.cpu().numpy().astype(given.dtype, copy=False)
    return PhaseAndAbsorption(fit[:, 0], fit[:, 1])


def _refine(images, microscope, init_phase, init_absorption, *, steps, loss, tv, tikhonov, optimizer, lr, tol,
            fast, precondition, progress, stain=None) -> torch.Tensor:
    """(B, K, H, W) fitted unknowns: phase, and absorption when ``init_absorption`` is given (K = 2,
    coloured by ``stain``)."""
    microscope = Microscope.resolve(microscope)
    starts = [_as_start(p, images) for p in (init_phase if isinstance(init_phase, (list, tuple)) else [init_phase])]
    if not starts:
        raise InputError("init_phase is an empty list of starts")
    if init_absorption is not None:
        absorption = _as_start(init_absorption, images, "init_absorption")
        starts = [torch.stack([start, absorption], dim=1) for start in starts]
    else:
        starts = [start[:, None] for start in starts]
    if loss not in ("amplitude", "intensity"):
        raise ConfigError(f"loss must be 'amplitude' or 'intensity', got {loss!r}")
    _check_numbers(steps=steps, tikhonov=tikhonov, tol=tol)
    if tv != "auto":
        _check_numbers(tv=tv)
    model = fast_microscope(microscope) if fast else microscope
    recompute = plan_memory(tuple(images.shape[-2:]), model, images.device)
    cached = get_simulator(model, images.shape[-2:], dtype=images.dtype, device=images.device)
    sim = functools.partial(cached, stain=stain) if stain is not None else cached
    shape = images.shape[-2:]
    joint = init_absorption is not None
    precond = (_preconditioner(model, shape, joint=joint, dtype=images.dtype, device=images.device, stain=stain)
               if precondition
               else torch.ones((1 + joint, *shape), dtype=images.dtype, device=images.device))
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=images.shape[0] * len(starts) * int(steps), desc="iterative fit", unit="it",
              disable=not progress) as bar, _recomputing(cached, recompute):
        kw = dict(loss=loss, tikhonov=float(tikhonov), optimizer=optimizer, lr=lr, tol=tol, bar=bar)
        for b in range(images.shape[0]):
            image = images[b:b + 1]
            warmed = [_warm_up(image, sim, start[b], precond, tv, int(steps), kw) for start in starts]
            weight = min(w for _, w, _ in warmed)
            fits = []
            for x, _, left in warmed:
                fit, losses = _fit_one(image, sim, x, precond, tv=weight, max_iter=left, **kw)
                bar.total -= left - len(losses)  # iterations early stopping saved
                fits.append(fit)
            out.append(fits[0] if len(fits) == 1 else min(fits, key=lambda x: _final_objective(
                image, sim, x, tv=weight, loss=kw["loss"], tikhonov=kw["tikhonov"])))
    return torch.stack(out)


@contextlib.contextmanager
def _recomputing(sim, on: bool):
    """Switch the (cached, shared) simulator's recomputation for one fit."""
    sim.recompute = on
    try:
        yield
    finally:
        sim.recompute = False


def _as_start(phase, images: torch.Tensor, name: str = "init_phase") -> torch.Tensor:
    start = torch.as_tensor(phase).to(images.dtype).to(images.device)
    start = start[None] if start.ndim == 2 else start
    if start.shape != (images.shape[0], *images.shape[-2:]):
        raise InputError(f"{name} shape {tuple(start.shape)} does not match images {tuple(images.shape)}")
    return start


def _warm_up(image, sim, x, precond, tv, budget: int, kw: dict) -> tuple[torch.Tensor, float, int]:
    """Automatic TV weight of one image from one start x (K, H, W) -> (x, weight, iterations left);
    see :func:`refine`."""
    if tv != "auto":
        return x, float(tv), budget
    x, losses = _fit_one(image, sim, x, precond, tv=0.0, max_iter=min(_WARMUP, budget // 2), **kw)
    with torch.no_grad():
        weight = _TV_PER_VARIANCE * residual_noise_variance(image, _forward(sim, x), unknowns=len(x))
    return x, weight, budget - len(losses)


@torch.no_grad()
def _final_objective(image, sim, x, **terms) -> float:
    value = float(_objective(image, sim, x, **terms))
    return value if math.isfinite(value) else math.inf


def iterative(images: torch.Tensor, microscope: Microscope, *, init: str = "tie", max_iter: int = 200,
              loss: str = "amplitude", tv="auto", tikhonov: float = 0.0, optimizer: str = "lbfgs",
              lr: float | None = None, tol: float = 1e-6, fast: bool = True,
              precondition: bool = True, progress: bool = False, fit_absorption: bool = False,
              stain=None) -> torch.Tensor:
    """Iterative phase retrieval: linear initialisation, then :func:`refine`.

    Parameters
    ----------
    images : (B, C, H, W) intensities, empty field = 1.
    microscope : resolved Microscope.
    init : ``"tie"`` (default), ``"wotf"`` or ``"zeros"``: the starting phase.
    max_iter : maximum iterations (early stopping may end sooner).
    loss, tv, tikhonov, optimizer, lr, tol, fast, precondition, progress
        As in :func:`refine`.
    fit_absorption : fit the specimen's amplitude attenuation along with the phase
        (:func:`refine_with_absorption`, from the in-focus intercept): for stained specimens, whose
        absorbed light a pure-phase fit explains by bending the phase. Not for microscopes whose
        channels cannot tell absorption from defocus contrast (``paper-rgb``: ConfigError).
    stain : with ``fit_absorption``, the stain colouring the specimen (see :func:`refine_with_absorption`).

    Returns
    -------
    (B, H, W) phase (rad) at ``optics.wavelength_ref_um``.

    Notes
    -----
    Objective and preconditioning: see :func:`refine`. Cost per iteration is
    one or a few simulator passes (forward + backward): negligible for
    ``paper-2shot`` (coherent, one wavelength), large for the ``default``
    preset (31 wavelengths x ~60 source points), where ``fast=True`` runs the
    fit on a 7-wavelength, 12-point copy of the optics (a few per cent model
    error) -- use a GPU for full-quadrature fits.
    """
    if stain is not None and not fit_absorption:
        raise ConfigError("a stain is fitted with the absorption: set fit_absorption=True")
    if init == "tie":
        from chromaqpi.solvers.tie import tie

        phase0 = tie(images, microscope)
    elif init == "wotf":
        from chromaqpi.solvers.wotf import wotf

        phase0 = wotf(images, fast_microscope(microscope) if fast else microscope)
    elif init == "zeros":
        phase0 = torch.zeros_like(images[:, 0])
    else:
        raise ConfigError(f"init must be 'tie', 'wotf' or 'zeros', got {init!r}")
    kw = dict(steps=max_iter, loss=loss, tv=tv, tikhonov=tikhonov, optimizer=optimizer, lr=lr, tol=tol, fast=fast,
              precondition=precondition, progress=progress)
    if fit_absorption:
        return refine_with_absorption(images, microscope, phase0, stain=stain, **kw).phase
    return refine(images, microscope, phase0, **kw)
