"""Core generator shared by shard building and on-the-fly loading: one group of pairs.

A *group* is ``group_size`` consecutive samples that share one drawn microscope, so that
the simulator's transfer functions -- about two thirds of the cost of a 128 px sample with
the default family's quadrature -- are computed once per group and the group is
simulated as one batch. Every random draw comes from the seed scheme of
:mod:`chromaqpi.datasets.seeds`, so a group's output depends only on (seed, group index,
configuration), never on the process or worker count that computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from chromaqpi.datasets import seeds
from chromaqpi.datasets.randomize import (Ranges, draw_absorption_per_rad, draw_absorption_stain, draw_microscope,
                                         draw_second_dye)
from chromaqpi.datasets.sources import SourceSpec, instantiate
from chromaqpi.microscope import Microscope
from chromaqpi.optics.sensor import undo_colour_matrix
from chromaqpi.optics.simulator import Simulator, get_simulator
from chromaqpi.phantoms import phase_rad

__all__ = ["GroupResult", "generate_group", "draw_group_microscope", "make_object"]


@dataclass
class GroupResult:
    """A simulated group of samples (all on the CPU unless ``device`` was given).

    Attributes
    ----------
    indices : (B,) int64 sample indices in the dataset.
    input : (B, C, H, W) float32 normalised intensities (empty field = 1).
    phase : (B, H, W) float32 true phase (rad) at ``microscope.optics.wavelength_ref_um``.
        (A sample drawn absorbing, ``Ranges.absorption_per_rad``, was simulated with ``a = k·(φ - min φ)``,
        or with a second object's phase in place of φ, ``Ranges.absorption_pattern``, coloured by a stain
        drawn from ``Ranges.absorption_stains``, and with ``Ranges.absorption_second_dye`` perhaps a second
        dye on a third object's phase; its ``params`` record k, the pattern and the stains.)
    opd : (B, H, W) float32 optical path difference (µm).
    mask : (B, H, W) int32 object labels (0 = background; all 0 without a mask).
    has_mask : (B,) bool, whether the source provides object labels.
    microscope : the microscope every sample of the group was simulated with, as the inputs are stored: a
        camera colour matrix (``sensor.colour_matrix``) is undone in them, as ``reconstruct`` does, and
        recorded in ``params`` as ``camera_colour_matrix`` instead.
    params : per-sample JSON-ready dicts (index, seeds, source, source meta, microscope).
    """

    indices: np.ndarray
    input: torch.Tensor
    phase: torch.Tensor
    opd: torch.Tensor
    mask: torch.Tensor
    has_mask: torch.Tensor
    microscope: Microscope
    params: list[dict]


def draw_group_microscope(ranges: Ranges, seed: int, group: int) -> Microscope:
    """The microscope of ``group`` (the base itself when nothing is randomised)."""
    if ranges.is_fixed:
        return ranges.base_microscope()
    rng = seeds.rng_from(seeds.train_sequence(seed, group, seeds.MICROSCOPE_STREAM))
    return draw_microscope(None, ranges, rng)


def make_object(sources: list[SourceSpec], shape, pixel_size_um: float, rng: np.random.Generator):
    """Pick a source by weight and draw one phase object from it -> (spec, PhaseSample)."""
    weights = np.array([s.weight for s in sources], dtype=float)
    k = int(rng.choice(len(sources), p=weights / weights.sum())) if len(sources) > 1 else 0
    return sources[k], instantiate(sources[k])(tuple(shape), pixel_size_um, rng)


def _absorption_pattern(sources, shape, microscope: Microscope, ranges: Ranges, k, phase: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """What an absorbing sample's absorption is proportional to: its own phase, or (pattern
    ``"independent"``) the phase of a second object, drawn last from the sample's stream so the first
    object and k are unchanged. Transparent samples draw nothing more."""
    if not k or ranges.absorption_pattern != "independent":
        return phase
    _, stain = make_object(sources, shape, microscope.sampling.pixel_size_um, rng)
    return phase_rad(stain, microscope.optics.wavelength_ref_um)


def _attenuation(patterns: list, ks: list, phase: torch.Tensor) -> torch.Tensor:
    """(B, H, W) ``k·(pattern - min pattern)`` per sample, zero where k is None or 0 or the pattern is None."""
    pattern = torch.stack([torch.zeros_like(phase[0]) if p is None else torch.from_numpy(p).to(phase)
                           for p in patterns])
    per_rad = torch.tensor([k or 0.0 for k in ks], dtype=phase.dtype, device=phase.device)[:, None, None]
    return per_rad * (pattern - pattern.amin(dim=(-2, -1), keepdim=True))


def _simulator(microscope: Microscope, shape, fixed: bool, device) -> Simulator:
    # A fixed microscope reuses one cached simulator; a drawn one is used once.
    if fixed:
        return get_simulator(microscope, shape, device=device)
    return Simulator(microscope, shape, device=device)


def generate_group(sources: list[SourceSpec], ranges: Ranges, shape, seed: int, group: int, indices,
                   *, noise: bool = True, device=None) -> GroupResult:
    """Simulate the samples ``indices`` of ``group``.

    Parameters
    ----------
    sources : resolved source specs (:func:`chromaqpi.datasets.sources.resolve_sources`).
    ranges : randomisation ranges (a fixed microscope is ``Ranges.fixed(m)``).
    shape : (H, W) in camera pixels.
    seed : training seed in [0, 2**31).
    group : group number; the microscope and the noise are drawn per group.
    indices : sample indices of the group, in order; sample ``j`` of the group draws its
        phase object from stream ``(group, OBJECT, j)``.
    noise : apply the sensor model's noise.
    device : simulate there (e.g. a GPU for on-the-fly data); outputs stay there.

    Returns
    -------
    GroupResult
    """
    shape = (int(shape[0]), int(shape[1]))
    microscope = draw_group_microscope(ranges, seed, group)
    lam_ref = microscope.optics.wavelength_ref_um
    phases, ks, patterns, stains, opds, masks, has_mask, params = [], [], [], [], [], [], [], []
    seconds, second_patterns = [], []
    for j, index in enumerate(indices):
        rng = seeds.rng_from(seeds.train_sequence(seed, group, seeds.OBJECT_STREAM, j))
        spec, sample = make_object(sources, shape, microscope.sampling.pixel_size_um, rng)
        phases.append(phase_rad(sample, lam_ref))
        ks.append(draw_absorption_per_rad(ranges, rng))
        patterns.append(_absorption_pattern(sources, shape, microscope, ranges, ks[-1], phases[-1], rng))
        stains.append(draw_absorption_stain(ranges, ks[-1], rng))
        seconds.append(draw_second_dye(ranges, ks[-1], stains[-1], rng))
        # The second dye's own independent pattern, drawn last from the sample's stream.
        second_patterns.append(phase_rad(make_object(sources, shape, microscope.sampling.pixel_size_um, rng)[1],
                                         lam_ref) if seconds[-1] else None)
        opds.append(sample.opd_um)
        masks.append(sample.mask)
        has_mask.append(bool(sample.meta.get("has_mask", bool(sample.mask.any()))))
        params.append({"index": int(index), "seed": int(seed), "group": int(group), "slot": j,
                       "source": spec.name, "source_params": spec.params, "source_meta": sample.meta})
        if ks[-1] is not None:
            params[-1]["absorption_per_rad"] = ks[-1]
            if ranges.absorption_pattern is not None:
                params[-1]["absorption_pattern"] = ranges.absorption_pattern
            if stains[-1] is not None:
                params[-1]["absorption_stain"] = stains[-1]
            if seconds[-1] is not None:
                params[-1]["absorption_second_stain"] = seconds[-1]
    phase = torch.from_numpy(np.stack(phases)).to(device)
    # a = k·(pattern - min pattern) per sample and dye; None and 0 are transparent, a missing dye is zero.
    absorption = _attenuation(patterns, ks, phase) if any(ks) else None
    second = _attenuation(second_patterns, ks, phase) if any(seconds) else None
    generator = seeds.torch_generator_from(seeds.train_sequence(seed, group, seeds.NOISE_STREAM), device=device)
    simulator = _simulator(microscope, shape, ranges.is_fixed, device)
    dyes = list(zip(stains, seconds))
    with torch.no_grad():
        if not any(stains) and not any(seconds):
            images = simulator(phase, absorption=absorption, noise=noise, generator=generator)
        else:  # one simulation per dye set, in order of first appearance, on the same noise stream
            images = None
            for first, other in dict.fromkeys(dyes):
                rows = torch.tensor([j for j, d in enumerate(dyes) if d == (first, other)], device=phase.device)
                maps = [absorption[rows]] if other is None else [absorption[rows], second[rows]]
                part = simulator(phase[rows], absorption=maps, stain=[first, other][:len(maps)], noise=noise,
                                 generator=generator)
                images = part.new_empty((len(dyes), *part.shape[1:])) if images is None else images
                images[rows] = part
    # Stored as every method sees them: in the camera's own channels (reconstruct undoes a declared colour
    # matrix first), with the clipping the matrix caused; the matrix is kept as provenance.
    images, stored = undo_colour_matrix(images, microscope)
    config = stored.to_dict()
    for p in params:
        p.update(noise=bool(noise), microscope=config)
        if stored is not microscope:
            p["camera_colour_matrix"] = microscope.sensor.colour_matrix
    return GroupResult(np.asarray(indices, dtype=np.int64), images, phase, torch.from_numpy(np.stack(opds)),
                       torch.from_numpy(np.stack(masks)), torch.tensor(has_mask), stored, params)
