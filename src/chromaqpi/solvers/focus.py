"""Where the stack sits along z: estimate an unknown focus offset from the images themselves.

A user focuses by eye, so every plane may sit delta µm from where the declared microscope
says (``benchmarks/results/focus-error.md``: 0.2 µm already costs 20 % nMAE on
``paper-2shot``). The channels' weak-object transfer functions fix, per spatial frequency,
the direction of the data vector ``D(f) = H(f)·Φ(f)`` across channels, whatever the phase;
a wrong focus turns that direction. :func:`estimate_focus_offset` therefore scores each
trial offset by the fraction of the data's spectral energy that the shifted model's
directions explain (the phase-only least-squares fit per frequency; energy where a trial's model
has no contrast counts as unexplained) and returns the best offset, refined by a parabola.

The specimen is assumed transparent. Absorption is not profiled out as the WOTF inversion
does for RGB-mode microscopes: at low frequencies ``H^φ_c ∝ λ_c·z_c·f²`` and ``H^a_c`` is the
same for every channel, so a common shift ``z_c -> z_c + δ`` adds a channel-common term, the
very direction profiling removes; profiled, the score barely moves with δ. So an absorbing
specimen biases the estimate. The fit uses the linear (weak-object) model, so strong objects
explain less at every offset and can shift the peak too.
Measured (``benchmarks/results/focus-estimate.md``): on the paper presets (planes mode) it
finds ±0.2-0.5 µm offsets to < 0.1 µm on average; on the broadband, partially coherent
``default`` preset it finds a weak object's offset (the tests), but on the cell phantoms of
``phantoms-test`` (several rad, camera noise) it is biased by about +0.4 µm and follows the
true offset at only ~0.4x its size. That bias is the strong-object nonlinearity: the same
scenes with their phase multiplied by 0.2 (``focus-estimate-phase0.2x.md``) are found to
0.04-0.14 µm on average. RGB-mode microscopes therefore get a warning.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.solvers.fourier import mirror_pad, resolve_padding
from chromaqpi.optics.transfer import channel_transfer_functions
from chromaqpi.registration import unregister
from chromaqpi.solvers.base import as_image_batch

# Frequencies whose model energy Σ_c|H_c|² is below this share of its maximum count as
# unexplained; without it a near-zero transfer direction would "explain" pure noise.
_REL_FLOOR = 1e-3
# Largest set of trial transfer functions kept for the next image (15 trials of a 3-channel
# 512 px padded grid take 90 MiB; the CLI fits a 256 px crop, padded to 512 where the preset pads).
_CACHE_BYTES = 256 * 2**20
# Most trial offsets one search may take (each costs a transfer-function computation).
MAX_TRIALS = 201
# Scores within this many white-noise standard deviations of what noise gives carry no focus
# signal: on white noise the best score sits 3-4 of them above chance (1/C) and the curve spans
# 5-8 (15 trials, 2-3 channels, 64-256 px).
_SIGNAL_SIGMAS = 12.0


@dataclass(frozen=True)
class FocusEstimate:
    """Result of :func:`estimate_focus_offset`.

    Attributes
    ----------
    offset_um : the estimated shift of every plane along z (µm), parabola-refined.
    offsets_um : the trial offsets (µm).
    explained : fraction of the data's spectral energy the model explains at each trial
        offset (NaN where the shifted model has no contrast, e.g. every plane in focus).
    microscope : the declared microscope with its focus moved by ``offset_um``.
    signal : how far the best score rises above chance (1/C, what white noise scores) or above
        the lowest score, whichever is more, in standard deviations of a white-noise score of the
        same size (:func:`score_noise`); below 12 the data hold no usable focus signal (e.g. a crop
        of empty background) and ``reliable`` is False.
    """

    offset_um: float
    offsets_um: tuple[float, ...]
    explained: tuple[float, ...]
    microscope: Microscope
    signal: float = math.inf

    @property
    def reliable(self) -> bool:
        """Whether the scores stand far enough above noise (chance and their own minimum) to locate a focus."""
        return self.signal >= _SIGNAL_SIGMAS

    @property
    def explained_best(self) -> float:
        """The highest explained fraction among the trials (NaN when no trial has contrast)."""
        finite = [e for e in self.explained if not math.isnan(e)]
        return max(finite) if finite else math.nan

    @property
    def explained_declared(self) -> float:
        """Explained fraction at offset 0 (the declared microscope), NaN if 0 was not tried."""
        hits = [e for o, e in zip(self.offsets_um, self.explained) if abs(o) < 1e-9]
        return hits[0] if hits else math.nan


def shift_focus(microscope: Microscope, delta_um: float) -> Microscope:
    """The microscope with every plane (planes mode) or the nominal defocus (RGB mode) moved by delta_um."""
    if microscope.planes:
        return microscope.replace(planes=[{**p, "defocus_um": p["defocus_um"] + delta_um}
                                          for p in microscope.to_dict()["planes"]])
    return microscope.replace(focus={"defocus_um": microscope.focus.defocus_um + delta_um})


def explained_fraction(images: torch.Tensor, microscope: Microscope, *, padding: str = "auto") -> torch.Tensor:
    """Share of the spectral energy of ``images - 1`` that the phase-only WOTF model explains, per image (B,).

    1 for a noiseless weak phase object imaged by ``microscope``; NaN where the model has no
    contrast at all.
    """
    data = _spectrum(images, microscope, padding)
    hp = _phase_transfer(microscope, tuple(data.shape[-2:]), data.device)
    return _explained(data, hp, _contrast(hp))


def _spectrum(images: torch.Tensor, microscope: Microscope, padding: str) -> torch.Tensor:
    # The padding follows sampling.pad_px, which a focus shift leaves alone: one FFT serves every trial.
    return torch.fft.fft2(mirror_pad(images.to(torch.float64) - 1, resolve_padding(padding, microscope)))


def _phase_transfer(microscope: Microscope, shape: tuple[int, int], device) -> torch.Tensor:
    # Not through the WOTF solver's cache: trials would evict the caller's own microscope there.
    return channel_transfer_functions(microscope, shape, dtype=torch.float64, device=device)[0]


def _contrast(hp: torch.Tensor) -> torch.Tensor:
    """Frequencies where the model has contrast (its energy above ``_REL_FLOOR`` of the peak)."""
    energy = (hp**2).sum(dim=0)
    return energy > _REL_FLOOR * energy.max()


def _explained(data: torch.Tensor, hp: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Phase-only least-squares fit per frequency, summed over ``keep``, over the data's whole energy."""
    if not bool(keep.any()):
        return torch.full(data.shape[:1], math.nan, dtype=torch.float64)
    energy = torch.where(keep, (hp**2).sum(dim=0), 1)
    proj = torch.einsum("chw,bchw->bhw", hp.to(data.dtype), data)
    fit = torch.where(keep, proj.abs() ** 2 / energy, 0).sum(dim=(-2, -1))
    return fit / (data.abs() ** 2).sum(dim=(1, 2, 3)).clamp(min=1e-300)


def score_noise(channels: int, pixels: int) -> float:
    """Standard deviation of the explained fraction of white noise (whose mean is 1/C).

    Per frequency, the share of a random complex C-vector's energy along a fixed direction is
    Beta(1, C-1) distributed (std sqrt(C-1) / (C·sqrt(C+1))); the score averages it over
    ``pixels`` frequencies, half of them independent (Hermitian symmetry).
    """
    c = channels
    return math.sqrt(c - 1) / (c * math.sqrt(c + 1)) / math.sqrt(max(pixels / 2, 1.0))


def trial_offsets(search_um: float, step_um: float, names: tuple[str, str] = ("search_um", "step_um")) -> list[float]:
    """The trial offsets ``-n·step .. +n·step`` with n·step <= search (µm); ConfigError naming ``names`` if invalid."""
    search, step = names
    if not (math.isfinite(search_um) and math.isfinite(step_um) and search_um > 0 and 0 < step_um <= search_um):
        raise ConfigError(f"need finite {search} > 0 and 0 < {step} <= {search}, got {search_um} and {step_um}")
    n = int(math.floor(search_um / step_um + 1e-9))
    if 2 * n + 1 > MAX_TRIALS:
        raise ConfigError(f"{search} / {step} = {search_um / step_um:g} gives {2 * n + 1} trials; at most "
                          f"{MAX_TRIALS} are allowed (each computes transfer functions): use a coarser {step}")
    return [round(k * step_um, 9) for k in range(-n, n + 1)]


def estimate_focus_offset(images: torch.Tensor, microscope: Microscope | str, *, search_um: float = 0.7,
                          step_um: float = 0.1, padding: str = "auto") -> FocusEstimate:
    """Estimate one focus offset shared by all planes from an image stack.

    Parameters
    ----------
    images : (C, H, W) or (1, C, H, W) flat-field-normalised intensities of one field of view.
    microscope : the declared microscope; the offset moves all its planes together (the
        separations are the optics' own and are kept). A declared ``registration`` is undone
        first, about the centre of the images given (a central crop keeps that centre).
    padding : as for :func:`chromaqpi.solvers.wotf.wotf`; ``"mirror"`` for a crop of a larger field
        (``"auto"`` leaves unpadded the presets whose simulated images are periodic).
    search_um, step_um : trial offsets in steps of ``step_um`` out to ``±search_um`` (the last step
        that fits; at most :data:`MAX_TRIALS` trials).

    Returns
    -------
    FocusEstimate; pass ``.microscope`` to :func:`chromaqpi.reconstruct` to use the fitted focus.
    When the scores are too flat to locate a focus (``.reliable`` is False: a field without
    objects, pure noise) it warns; the offset is then meaningless.
    """
    microscope = Microscope.resolve(microscope)
    if not microscope.planes:
        warnings.warn("focus estimation is not validated for RGB-mode (broadband) microscopes: on the default "
                      "preset it is biased by about +0.4 um on cell phantoms of several rad (benchmarks/results/"
                      "focus-estimate.md); use the fitted microscope only for weak specimens (peak-to-peak phase "
                      "below ~1-2 rad)", UserWarning, stacklevel=2)
    images, _ = as_image_batch(images, microscope.n_channels)  # shape, channels, dtype, NaN/Inf
    if images.shape[0] != 1:
        raise ConfigError(f"estimate_focus_offset takes one stack (C, H, W), got shape {tuple(images.shape)}")
    declared = microscope  # the fitted microscope keeps its registration; the fit sees registered channels
    images, microscope = unregister(images, microscope)
    offsets = trial_offsets(search_um, step_um)
    if not bool((images.flatten(-2).std(dim=-1) > 0).any()):
        raise ConfigError("the images have no contrast (a uniform field): nothing to fit a focus to")
    data = _spectrum(images, microscope, padding)
    if len(offsets) * data[0].numel() * 8 <= _CACHE_BYTES:
        transfer = _trial_models(json.dumps(microscope.to_dict(), sort_keys=True), tuple(offsets),
                                 tuple(data.shape[-2:]), str(data.device))
    else:  # a large field: one trial in memory at a time
        transfer = (_phase_transfer(shift_focus(microscope, d), tuple(data.shape[-2:]), data.device)
                    for d in _with_progress(offsets))
    scores = np.array([float(_explained(data, hp, _contrast(hp))[0]) for hp in transfer])
    if np.isnan(scores).all():
        raise ConfigError("no trial focus gives the model any contrast: check the microscope's defocus")
    k = int(np.nanargmax(scores))
    best = offsets[k] + _parabola_vertex(scores, k) * step_um
    c = images.shape[1]
    rise = max(scores[k] - 1 / c, scores[k] - np.nanmin(scores))
    signal = float(rise / score_noise(c, images.shape[-2] * images.shape[-1]))
    fit = FocusEstimate(float(best), tuple(offsets), tuple(float(s) for s in scores), shift_focus(declared, best),
                        signal)
    if not fit.reliable:
        warnings.warn(f"the focus scores are what noise would give ({signal:.1f} noise std above chance or "
                      f"across the trials, need {_SIGNAL_SIGMAS:g}): the field holds no usable focus signal "
                      "(empty background?); the offset is meaningless",
                      UserWarning, stacklevel=2)
    return fit


@functools.lru_cache(maxsize=1)
def _trial_models(scope_json: str, offsets: tuple[float, ...], shape: tuple[int, int], device: str):
    """Every trial's phase transfer functions, cached for the last call: a batch of same-sized images of
    one microscope (the CLI, the benchmarks) computes the partially coherent, broadband trials once."""
    microscope = Microscope.from_dict(json.loads(scope_json))
    return [_phase_transfer(shift_focus(microscope, d), shape, device) for d in _with_progress(offsets)]


def _with_progress(offsets):
    """The trials on a progress bar, shown once they take over 2 s (broadband, partially coherent trial
    transfer functions take minutes for a 256 px RGB crop on a laptop CPU)."""
    from tqdm.auto import tqdm

    return tqdm(offsets, desc="focus trials", unit="trial", delay=2.0, leave=False)


def _parabola_vertex(scores: np.ndarray, k: int) -> float:
    """Sub-step position (in steps, within ±0.5) of the peak through the three scores around k."""
    if k == 0 or k == len(scores) - 1 or np.isnan(scores[k - 1 : k + 2]).any():
        return 0.0
    left, mid, right = scores[k - 1 : k + 2]
    curvature = left - 2 * mid + right
    return 0.0 if curvature >= 0 else float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
