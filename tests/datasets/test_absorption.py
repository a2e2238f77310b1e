"""Absorbing specimens in generated data (``Ranges.absorption_per_rad``): the right images, and the
same objects and microscopes as without it."""

import dataclasses

import numpy as np
import pytest
import torch

from chromaqpi.datasets import seeds
from chromaqpi.datasets.generate import generate_group, make_object
from chromaqpi.datasets.randomize import (Ranges, absorbers_drawn, draw_absorption_per_rad, get_family,
                                         resolve_ranges)
from chromaqpi.datasets.sources import resolve_sources
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.simulator import simulate
from chromaqpi.phantoms import phase_rad

SHAPE = (32, 32)


def _sources(ranges):
    return resolve_sources("textures", wavelength_um=ranges.base_microscope().optics.wavelength_ref_um)


def _group(ranges, **kw):
    return generate_group(_sources(ranges), ranges, SHAPE, 5, 0, [0, 1], **kw)


def _paper_2shot(**absorption) -> Ranges:
    return dataclasses.replace(Ranges.fixed(Microscope.from_preset("paper-2shot")), **absorption)


def test_absorbing_samples_are_the_simulator_with_a_proportional_absorption():
    plain = _group(_paper_2shot(), noise=False)
    absorbing = _group(_paper_2shot(absorption_per_rad=(0.2, 0.2)), noise=False)
    torch.testing.assert_close(absorbing.phase, plain.phase, rtol=0, atol=0)  # the target stays the phase
    phase = plain.phase.double()
    absorption = 0.2 * (phase - phase.amin(dim=(-2, -1), keepdim=True))
    expected = simulate(phase, absorbing.microscope, absorption=absorption, noise=False)
    torch.testing.assert_close(absorbing.input.double(), expected, rtol=1e-5, atol=1e-5)
    assert [p["absorption_per_rad"] for p in absorbing.params] == [0.2, 0.2]
    assert "absorption_per_rad" not in plain.params[0]
    # Energy: the paper-2shot planes are pure defocus of an unapertured coherent field (a phase-only
    # filter), so each plane's mean intensity is the mean of |t|² = exp(-2a) (Parseval), to 1e-5.
    transmitted = torch.exp(-2 * absorption).mean(dim=(-2, -1))
    for c in range(absorbing.input.shape[1]):
        torch.testing.assert_close(absorbing.input[:, c].double().mean(dim=(-2, -1)), transmitted, rtol=1e-5, atol=0)
    assert float((transmitted - 1).abs().min()) > 0.05  # the check above is not the trivial 1 = 1


def test_absorption_draws_change_neither_objects_nor_microscopes():
    family = get_family("default")
    plain = _group(family, noise=False)
    absorbing = _group(dataclasses.replace(family, absorption_per_rad=(0.05, 0.1), absorption_probability=0.5),
                       noise=False)
    assert absorbing.microscope == plain.microscope
    torch.testing.assert_close(absorbing.phase, plain.phase, rtol=0, atol=0)
    strip = [{k: v for k, v in p.items() if k != "absorption_per_rad"} for p in absorbing.params]
    assert strip == plain.params


def test_absorption_probability_is_the_share_of_absorbing_samples():
    rng = np.random.default_rng(0)
    ranges = dataclasses.replace(get_family("paper-2shot"), absorption_per_rad=(0.01, 0.03), absorption_probability=0.3)
    ks = np.array([draw_absorption_per_rad(ranges, rng) for _ in range(4000)])
    # binomial std of the share: sqrt(0.3 * 0.7 / 4000) = 0.0072; 4 std
    assert abs(float((ks > 0).mean()) - 0.3) < 0.029
    assert ks[ks > 0].min() >= 0.01 and ks.max() <= 0.03
    # without the range nothing is drawn: the stream is left as it was
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert draw_absorption_per_rad(get_family("paper-2shot"), rng_a) is None
    assert rng_a.uniform() == rng_b.uniform()


def test_independent_absorption_is_a_second_object_not_the_phase():
    ranges = _paper_2shot(absorption_per_rad=(0.3, 0.3), absorption_pattern="independent")
    plain = _group(_paper_2shot(), noise=False)
    absorbing = _group(ranges, noise=False)
    torch.testing.assert_close(absorbing.phase, plain.phase, rtol=0, atol=0)
    assert [p["absorption_pattern"] for p in absorbing.params] == ["independent"] * 2
    # The documented draw order: object, k (two draws), then the absorbing object, all from the sample's stream.
    patterns = []
    for j in range(2):
        rng = seeds.rng_from(seeds.train_sequence(5, 0, seeds.OBJECT_STREAM, j))
        pixel = absorbing.microscope.sampling.pixel_size_um
        make_object(_sources(ranges), SHAPE, pixel, rng)
        assert draw_absorption_per_rad(ranges, rng) == 0.3
        _, stain = make_object(_sources(ranges), SHAPE, pixel, rng)
        patterns.append(torch.from_numpy(phase_rad(stain, absorbing.microscope.optics.wavelength_ref_um)).double())
    pattern = torch.stack(patterns)
    absorption = 0.3 * (pattern - pattern.amin(dim=(-2, -1), keepdim=True))
    expected = simulate(absorbing.phase.double(), absorbing.microscope, absorption=absorption, noise=False)
    torch.testing.assert_close(absorbing.input.double(), expected, rtol=1e-5, atol=1e-5)
    # Energy (Parseval, as above) fixes the absorption map's |t|² independently of the simulator's phase path.
    for c in range(absorbing.input.shape[1]):
        torch.testing.assert_close(absorbing.input[:, c].double().mean(dim=(-2, -1)),
                                   torch.exp(-2 * absorption).mean(dim=(-2, -1)), rtol=1e-5, atol=0)
    # ... and it is not the phase-following map: the two patterns are barely correlated.
    phase = absorbing.phase.double()
    for a, p in zip(pattern, phase):
        assert abs(float(torch.corrcoef(torch.stack([a.flatten(), p.flatten()]))[0, 1])) < 0.5


@pytest.mark.parametrize("bad", [{"absorption_per_rad": (-0.1, 0.1)}, {"absorption_probability": 0.5},
                                 {"absorption_pattern": "phase"},
                                 {"absorption_per_rad": (0.0, 0.1), "absorption_pattern": "stain"},
                                 {"absorption_per_rad": (0.0, 0.1), "absorption_probability": 1.5},
                                 {"absorption_per_rad": (0.2, 0.1)},
                                 {"absorption_per_rad": (0.0, 0.1), "absorption_probability": "half"}])
def test_invalid_absorption_ranges_raise(bad):
    with pytest.raises(ConfigError, match="absorption"):
        Ranges.from_dict({"base": "default", **bad})


def test_toml_variant_adds_absorption_to_a_family(tmp_path):
    path = tmp_path / "absorbing.toml"
    path.write_text('[ranges]\nfamily = "default"\nabsorption_per_rad = [0.0, 0.1]\nabsorption_probability = 0.5\n')
    ranges = resolve_ranges(str(path))
    assert ranges.absorption_per_rad == [0.0, 0.1] and ranges.absorption_probability == 0.5
    assert {k: v for k, v in ranges.to_dict().items() if not k.startswith("absorption")} == get_family("default").to_dict()


def test_stained_samples_are_the_simulator_with_their_drawn_stain():
    # paper-rgb's three colour planes see a stain; each absorbing sample draws one of the listed stains
    # (last from its stream), is simulated with it, and records it; grey records none.
    base = Ranges.fixed(Microscope.from_preset("paper-rgb"))
    stains = ["methylene-blue", "grey", "eosin"]
    ranges = dataclasses.replace(base, absorption_per_rad=(0.3, 0.3), absorption_stains=stains)
    def group(r, **kw):
        return generate_group(_sources(r), r, SHAPE, 5, 0, [0, 1, 2, 3], **kw)

    plain = group(dataclasses.replace(base, absorption_per_rad=(0.3, 0.3)), noise=False)
    stained = group(ranges, noise=False)
    torch.testing.assert_close(stained.phase, plain.phase, rtol=0, atol=0)
    drawn = []
    for j in range(4):
        rng = seeds.rng_from(seeds.train_sequence(5, 0, seeds.OBJECT_STREAM, j))
        make_object(_sources(ranges), SHAPE, stained.microscope.sampling.pixel_size_um, rng)
        draw_absorption_per_rad(ranges, rng)
        drawn.append(stains[int(rng.integers(len(stains)))])
    assert [p.get("absorption_stain", "grey") for p in stained.params] == drawn
    assert len(set(drawn)) > 1  # the group is simulated in parts, one per stain
    phase = plain.phase.double()
    absorption = 0.3 * (phase - phase.amin(dim=(-2, -1), keepdim=True))
    for j, stain in enumerate(drawn):
        expected = simulate(phase[j], stained.microscope, absorption=absorption[j],
                            stain=None if stain == "grey" else stain, noise=False)
        torch.testing.assert_close(stained.input[j:j + 1].double(), expected, rtol=1e-5, atol=1e-5)
    assert (stained.input - plain.input).abs().max() > 1e-3  # a stain changes the images
    # Noisy groups run one simulation per stain on the group's noise stream: reproducible.
    torch.testing.assert_close(group(ranges).input, group(ranges).input, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [{"absorption_stains": ["eosin"]},
                                 {"absorption_per_rad": (0.0, 0.1), "absorption_stains": ["indigo"]},
                                 {"absorption_per_rad": (0.0, 0.1), "absorption_stains": []}])
def test_invalid_absorption_stains_raise(bad):
    with pytest.raises(ConfigError, match="absorption_stains"):
        dataclasses.replace(Ranges.fixed(Microscope.from_preset("paper-rgb")), **bad)


def test_a_dataset_names_its_absorbers_for_the_cards_of_models_trained_on_it(tmp_path):
    from chromaqpi.datasets.build import build_dataset
    from chromaqpi.datasets.torch_data import ShardDataset

    base = Ranges.fixed(Microscope.from_preset("paper-rgb"))
    stained = dataclasses.replace(base, absorption_per_rad=(0.0, 0.2), absorption_probability=0.5,
                                  absorption_stains=["eosin", "grey"])
    assert absorbers_drawn(stained.to_dict()) == {"per_rad": [0.0, 0.2], "probability": 0.5, "pattern": None,
                                                  "stains": ["eosin", "grey"]}
    grey = dataclasses.replace(base, absorption_per_rad=(0.1, 0.1))  # every sample, no stain named: grey
    assert absorbers_drawn(grey.to_dict())["stains"] == ["grey"] and absorbers_drawn(grey.to_dict())["probability"] == 1
    for transparent in (base, dataclasses.replace(base, absorption_per_rad=(0.0, 0.0)),
                        dataclasses.replace(base, absorption_per_rad=(0.0, 0.1), absorption_probability=0)):
        assert absorbers_drawn(transparent.to_dict()) is None
    for name, family in (("stained", stained), ("plain", base)):
        build_dataset("textures", family, 4, 16, 3, tmp_path / name, progress=False, noise=False)
    (plain, coloured) = (ShardDataset(tmp_path / n).identity()[0] for n in ("plain", "stained"))
    assert "absorbers" not in plain and coloured["absorbers"]["stains"] == ["eosin", "grey"]


def test_second_dye_samples_are_the_simulator_with_both_dyes():
    # A second dye (H&E-like): another listed stain on a third object's phase, the same k; drawn after the
    # first dye, so the objects, k and first stains are those of the one-dye ranges.
    from chromaqpi.datasets.randomize import draw_absorption_stain, draw_second_dye

    base = Ranges.fixed(Microscope.from_preset("paper-rgb"))
    one = dataclasses.replace(base, absorption_per_rad=(0.2, 0.3), absorption_pattern="independent",
                              absorption_stains=["haematoxylin", "eosin"])
    two = dataclasses.replace(one, absorption_second_dye=1.0)
    slots = [0, 1, 2]
    single = generate_group(_sources(one), one, SHAPE, 7, 0, slots, noise=False)
    double = generate_group(_sources(two), two, SHAPE, 7, 0, slots, noise=False)
    torch.testing.assert_close(double.phase, single.phase, rtol=0, atol=0)
    for p1, p2 in zip(single.params, double.params):
        assert {k: v for k, v in p2.items() if k != "absorption_second_stain"} == p1
        assert p2["absorption_second_stain"] in {"haematoxylin", "eosin"} - {p1["absorption_stain"]}
    for j in range(len(slots)):  # the expected maps, from the sample's own stream
        rng = seeds.rng_from(seeds.train_sequence(7, 0, seeds.OBJECT_STREAM, j))
        lam = double.microscope.optics.wavelength_ref_um
        make_object(_sources(two), SHAPE, double.microscope.sampling.pixel_size_um, rng)
        k = draw_absorption_per_rad(two, rng)
        first = phase_rad(make_object(_sources(two), SHAPE, double.microscope.sampling.pixel_size_um, rng)[1], lam)
        stain = draw_absorption_stain(two, k, rng)
        other = draw_second_dye(two, k, stain, rng)
        second = phase_rad(make_object(_sources(two), SHAPE, double.microscope.sampling.pixel_size_um, rng)[1], lam)
        maps = [k * (torch.from_numpy(m) - float(m.min())) for m in (first, second)]
        expected = simulate(double.phase[j].double(), double.microscope, absorption=maps, stain=[stain, other],
                            noise=False)
        torch.testing.assert_close(double.input[j:j + 1].double(), expected, rtol=1e-5, atol=1e-5)
    assert (double.input - single.input).abs().max() > 1e-2  # the second dye shows
    assert absorbers_drawn(two.to_dict())["second_dye"] == 1.0 and "second_dye" not in absorbers_drawn(one.to_dict())
    # A share of 0 draws nothing: the one-dye samples exactly.
    none = generate_group(_sources(one), dataclasses.replace(one, absorption_second_dye=0.0), SHAPE, 7, 0, slots)
    torch.testing.assert_close(none.input, generate_group(_sources(one), one, SHAPE, 7, 0, slots).input, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [{"absorption_second_dye": 0.5},  # no stains listed
                                 {"absorption_second_dye": 1.5, "absorption_stains": ["eosin", "grey"]},
                                 {"absorption_second_dye": 0.5, "absorption_stains": ["eosin", "eosin"]}])
def test_invalid_second_dye_raises(bad):
    with pytest.raises(ConfigError, match="absorption_second_dye"):
        dataclasses.replace(Ranges.fixed(Microscope.from_preset("paper-rgb")), absorption_per_rad=(0.0, 0.1),
                            absorption_pattern="independent", **bad)


def test_a_camera_colour_matrix_is_stored_undone_as_reconstruct_sees_it():
    # Training inputs must be what the networks see at inference, where reconstruct undoes a declared colour
    # matrix: noiseless, a matrix family's samples equal the plain family's (same seed), and the stored
    # microscope no longer carries the matrix (kept as provenance), so (input, microscope) pairs stay consistent.
    matrix = [[1.6, -0.5, -0.1], [-0.2, 1.5, -0.3], [0.0, -0.6, 1.6]]
    plain = Ranges.fixed(Microscope.from_preset("default"))
    mixed = Ranges.fixed(Microscope.from_preset("default").replace(sensor={"colour_matrix": matrix}))
    a, b = _group(plain, noise=False), _group(mixed, noise=False)
    torch.testing.assert_close(b.input, a.input, rtol=0, atol=1e-5)  # float32 images
    assert b.microscope == a.microscope and all(p["microscope"] == q["microscope"] for p, q in zip(a.params, b.params))
    assert all(p["camera_colour_matrix"] == matrix for p in b.params)
    assert all("camera_colour_matrix" not in p for p in a.params)
