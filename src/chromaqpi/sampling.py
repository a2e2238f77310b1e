"""Reverse-diffusion samplers with per-pixel noise levels, as plain functions.

Every sampler receives its randomness as a list of per-sample ``torch.Generator`` objects, so a
sample never depends on the batch it was drawn in (the idea of EDM's ``StackedRandomGenerator``).
The state and all step arithmetic are float64; only the network sees float32.

Notation (PHYSICS.md 6.3): ``gbar_k`` is the signal fraction at grid time ``t_k = k / K``
(k = K .. 0), per pixel or broadcastable; ``gbar_0 = 1`` (clean) by construction of every schedule.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from chromaqpi.errors import ConfigError

#: DDIM steps of a draw when neither the caller nor the model's card (``sampling.steps``) names any
DEFAULT_STEPS = 25

#: Clip of the float64 signal fraction inside the chain (the authors use [1e-10, 0.99999]).
GBAR_MIN, GBAR_MAX = 1e-10, 1.0 - 1e-10

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GridFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]
GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class SampleResult:
    """Posterior summary of ``samples`` draws.

    Attributes
    ----------
    mean : torch.Tensor
        (B, C, H, W) mean of the draws (the draw itself when samples = 1).
    std : torch.Tensor
        (B, C, H, W) per-pixel standard deviation (N - 1 normalisation; zeros when samples = 1).
    samples : torch.Tensor or None
        (N, B, C, H, W) the draws, when requested.
    """

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor | None = None


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def sample_generators(generator: GeneratorLike, batch: int, device: torch.device | str) -> list[torch.Generator]:
    """One generator per sample, on ``device``.

    Parameters
    ----------
    generator : torch.Generator, sequence of them, or None
        A sequence is used as is (length ``batch``). A single generator hands out one seed per
        sample, drawn in order, so splitting a batch into consecutive chunks that share the same
        generator gives the same samples. None: fresh OS entropy (not reproducible).
    batch : int
    device : torch.device or str

    Returns
    -------
    list of torch.Generator
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = list(generator) if isinstance(generator, (list, tuple)) else []
        if not gens or not all(isinstance(g, torch.Generator) for g in gens):
            raise ConfigError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), a "
                              f"list of them or None, got {type(generator).__name__}")
        if len(gens) != batch:
            raise ConfigError(f"got {len(gens)} generators for a batch of {batch}")
        return gens
    seeds = [
        _draw_seed(generator) if generator is not None else int.from_bytes(os.urandom(8), "little") >> 2
        for _ in range(batch)
    ]
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def randn_per_sample(shape: Sequence[int], generators: Sequence[torch.Generator], device) -> torch.Tensor:
    """Standard normal (B, ...) float64, row i drawn from ``generators[i]``."""
    return torch.stack(
        [torch.randn(tuple(shape[1:]), generator=g, device=device) for g in generators]
    ).double()


def time_grid(steps: int) -> torch.Tensor:
    """Times ``t_k = k / K`` for k = 0 .. K, float64 (K+1,); the chain runs from t_K = 1 to t_0 = 0."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


def predict_clean(z: torch.Tensor, eps: torch.Tensor, gbar: torch.Tensor) -> torch.Tensor:
    """``Y0_hat = (z - sqrt(1 - gbar) eps) / sqrt(gbar)`` (inverse of the forward process)."""
    return (z - (1 - gbar).sqrt() * eps) / gbar.sqrt()


def ddim_step(
    z: torch.Tensor, eps: torch.Tensor, y0: torch.Tensor, gbar_t: torch.Tensor, gbar_s: torch.Tensor,
    *, eta: float = 0.0, noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM(eta) step from level ``gbar_t`` to the cleaner level ``gbar_s`` (Song et al. 2021, eq. 12).

    ``z_s = sqrt(gbar_s) Y0 + sqrt(1 - gbar_s - s^2) eps + s xi`` with
    ``s = eta sqrt((1 - gbar_s)/(1 - gbar_t)) sqrt(1 - gbar_t/gbar_s)``; eta = 0 is deterministic.
    """
    s = eta * ((1 - gbar_s) / (1 - gbar_t)).sqrt() * (1 - gbar_t / gbar_s).clamp(min=0).sqrt()
    out = gbar_s.sqrt() * y0 + (1 - gbar_s - s**2).clamp(min=0).sqrt() * eps
    return out if eta == 0.0 else out + s * noise


def ancestral_step(
    z: torch.Tensor, eps: torch.Tensor, gbar_t: torch.Tensor, gbar_s: torch.Tensor, *, noise: torch.Tensor
) -> torch.Tensor:
    """One ancestral step, the DDPM posterior ``q(z_s | z_t, Y0_hat)`` (Ho et al. 2020, Algorithm 2).

    With per-pixel ``alpha = gbar_t / gbar_s``:
    ``z_s = (z - (1 - alpha)/sqrt(1 - gbar_t) eps)/sqrt(alpha) + sqrt(var) xi``,
    ``var = (1 - gbar_s)(1 - alpha)/(1 - gbar_t)``.
    """
    alpha = (gbar_t / gbar_s).clamp(max=1.0)
    mean = (z - (1 - alpha) / (1 - gbar_t).sqrt() * eps) / alpha.sqrt()
    var = (1 - gbar_s) * (1 - alpha) / (1 - gbar_t)
    return mean + var.clamp(min=0).sqrt() * noise


# The progress bar of the reverse-chain steps, when a caller asked for one (step_progress).
_STEP_BAR: contextvars.ContextVar = contextvars.ContextVar("chromaqpi_step_bar", default=None)


@contextlib.contextmanager
def step_progress(desc: str = "diffusion steps"):
    """Count every network evaluation of the chains run inside the block on one tqdm bar, shown
    once the block has run for 2 s (a short reconstruction stays quiet; a long one shows it is alive)."""
    from tqdm.auto import tqdm

    with tqdm(desc=desc, unit="step", delay=2.0) as bar:
        token = _STEP_BAR.set(bar)
        try:
            yield bar
        finally:
            _STEP_BAR.reset(token)


def run_chain(
    eps_fn: EpsFn, gbar_grid: GridFn, shape: Sequence[int], *, steps: int,
    generators: Sequence[torch.Generator], sampler: str = "ddim", eta: float = 0.0,
    clip: tuple[float, float] | None = None, device: torch.device | str = "cpu", temperature: float = 1.0,
) -> torch.Tensor:
    """Draw Y0 by running the reverse chain over K strided steps from t = 1 to t = 0.

    Parameters
    ----------
    eps_fn : callable
        ``eps_fn(z, gbar) -> eps_hat``: z (B, C, H, W) float32, gbar float64 broadcastable to z.
    gbar_grid : callable
        ``gbar_grid(times) -> sequence`` of signal fractions (float64, broadcastable to ``shape``)
        at the K + 1 times of :func:`time_grid`, indexed by k (the entry at t = 0 is unused:
        gbar_0 = 1). A lazy sequence keeps only two per-pixel maps alive at a time.
    shape : sequence of int
        (B, C, H, W) of the sample.
    steps : int
        K, number of network evaluations.
    generators : sequence of torch.Generator
        One per sample (see :func:`sample_generators`).
    sampler : {"ddim", "ancestral"}
    eta : float
        DDIM stochasticity (0: deterministic); ignored by the ancestral sampler.
    clip : (float, float), optional
        Clamp every Y0 estimate to this range (and recompute eps consistently).
    device : torch.device or str
    temperature : float
        Multiplies every noise draw of the chain (the start noise; with ``eta > 0`` or the
        ancestral sampler also each step's). 1 samples the learned posterior; below 1 the draws
        move towards its high-density centre (0 with deterministic DDIM: one fixed estimate).

    Returns
    -------
    torch.Tensor
        (B, C, H, W) float64 sample of Y0 (the estimate made at t_1, where the chain reaches gbar = 1).
    """
    if sampler not in ("ddim", "ancestral"):
        raise ConfigError(f"sampler must be 'ddim' or 'ancestral', got {sampler!r}")
    grid = gbar_grid(time_grid(steps).to(device))  # may be lazy: one per-pixel map per access

    def level(k: int) -> torch.Tensor:
        return grid[k].clamp(GBAR_MIN, GBAR_MAX)

    stochastic = sampler == "ancestral" or eta > 0
    z = temperature * randn_per_sample(shape, generators, device)
    g_t = level(steps)
    bar = _STEP_BAR.get()
    for k in range(steps, 0, -1):
        eps = eps_fn(z.float(), g_t).double()
        if bar is not None:
            bar.update()
        y0 = predict_clean(z, eps, g_t)
        if clip is not None:
            y0 = y0.clamp(*clip)
            eps = (z - g_t.sqrt() * y0) / (1 - g_t).sqrt()
        if k == 1:
            return y0  # gbar_0 = 1: the next state is the clean estimate itself
        noise = temperature * randn_per_sample(shape, generators, device) if stochastic else None
        g_s = level(k - 1)
        if sampler == "ddim":
            z = ddim_step(z, eps, y0, g_t, g_s, eta=eta, noise=noise)
        else:
            z = ancestral_step(z, eps, g_t, g_s, noise=noise)
        g_t = g_s
    raise AssertionError("unreachable")


def posterior_samples(
    draw: Callable[[list[torch.Generator]], torch.Tensor], batch: int, *, samples: int = 1,
    generator: GeneratorLike = None, device: torch.device | str = "cpu", keep: bool = False,
) -> SampleResult:
    """Draw ``samples`` posterior samples per image and summarise them.

    Parameters
    ----------
    draw : callable
        ``draw(generators) -> (B, C, H, W)``: one sample per image from per-image generators.
    batch : int
        B.
    samples : int
        N draws per image; draw j of image i uses a generator seeded from image i's generator
        only, so results do not depend on batch composition.
    generator : torch.Generator, sequence of them, or None
        See :func:`sample_generators`.
    device : torch.device or str
    keep : bool
        Return the draws too.

    Returns
    -------
    SampleResult
    """
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    per_image = sample_generators(generator, batch, device)
    seeds = [[_draw_seed(g) for _ in range(samples)] for g in per_image]
    draws = torch.stack([
        draw([torch.Generator(device=device).manual_seed(seeds[i][j]) for i in range(batch)])
        for j in range(samples)
    ])
    std = draws.std(dim=0) if samples > 1 else torch.zeros_like(draws[0])
    return SampleResult(draws.mean(dim=0), std, draws if keep else None)
