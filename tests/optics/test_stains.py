"""Wavelength-dependent absorption (stains) in the forward model, against analytic results."""

import math

import numpy as np
import pytest
import torch

from chromaqpi import Microscope, simulate
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Optics, Plane, Sampling
from chromaqpi.optics.spectra import STAINS, Stain, channel_quadrature


def two_colours(lams=(0.45, 0.62), z_um=1.5):
    """Two single-wavelength planes at one defocus, partially coherent, camera grid."""
    return Microscope(
        name="test",
        sampling=Sampling(pixel_size_um=0.2, oversample=1, pad_px=0),
        optics=Optics(na_objective=0.4, na_condenser=0.2, source_points=20, n_medium=1.33,
                      wavelength_ref_um=0.55, paraxial=False, phase_model="opd"),
        planes=[Plane(lam, z_um) for lam in lams],
    )


@pytest.mark.parametrize("preset", ["default", "paper-2shot", "paper-rgb"])
def test_uniform_stain_gives_the_quadrature_of_beer_lambert(preset):
    # A uniform absorber diffracts nothing: channel c reads Σ_k W_ck exp(-2·a·s_k/s̄) exactly.
    m = Microscope.from_preset(preset)
    a0 = 0.3
    phase = torch.zeros(24, 24, dtype=torch.float64)
    img = simulate(phase, m, absorption=torch.full_like(phase, a0), stain="eosin", noise=False)[0]
    quad = channel_quadrature(m)
    scales = STAINS["eosin"].node_scales(quad)
    expected = quad.weights @ np.exp(-2 * a0 * scales)
    np.testing.assert_allclose(img.mean(dim=(-2, -1)).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(img.std(dim=(-2, -1)).numpy(), 0, atol=1e-9)


@pytest.mark.parametrize("preset", ["default", "paper-2shot"])
def test_grey_stain_equals_the_grey_absorber(preset):
    m = Microscope.from_preset(preset)
    g = torch.Generator().manual_seed(0)
    phase = torch.rand(32, 32, generator=g, dtype=torch.float64) * 2
    a = torch.rand(32, 32, generator=g, dtype=torch.float64) * 0.3
    grey = simulate(phase, m, absorption=a, noise=False)
    named = simulate(phase, m, absorption=a, stain="grey", noise=False)
    torch.testing.assert_close(named, grey, rtol=0, atol=1e-10)


def test_weak_absorption_grating_scales_with_the_stain_per_wavelength():
    # Weak-object limit: the absorption transfer function of each plane is the grey one times
    # s(λ_c)/s̄, with s̄ the mean of s over the two (equally weighted) planes.
    m = two_colours()
    n_px, f_index, eps = 64, 5, 1e-3
    x = torch.arange(n_px, dtype=torch.float64)
    cos = torch.cos(2 * math.pi * f_index * x / n_px)[None, :].expand(n_px, n_px)
    phase = torch.zeros(n_px, n_px, dtype=torch.float64)

    def response(stain):
        img = simulate(phase, m, absorption=eps * cos, stain=stain, noise=False)[0]
        return (2 * ((img - 1) * cos).mean(dim=(-2, -1)) / eps).numpy()

    stain = STAINS["haemoglobin"]
    s = stain.extinction(np.array([0.45, 0.62]))
    np.testing.assert_allclose(response(stain), response(None) * s / s.mean(), rtol=2e-3)
    assert abs(response(None)[0]) > 0.5  # the grey response is not trivially 0


@pytest.mark.parametrize("name, darkest", [("eosin", 1), ("haemoglobin", 2), ("methylene-blue", 0),
                                           ("haematoxylin", 0)])
def test_each_stain_takes_the_colour_it_absorbs(name, darkest):
    # On the default camera (R, G, B) the channel the stain absorbs most reads darkest.
    m = Microscope.from_preset("default")
    phase = torch.zeros(16, 16, dtype=torch.float64)
    img = simulate(phase, m, absorption=torch.full_like(phase, 0.2), stain=name, noise=False)[0, :, 0, 0]
    assert int(torch.argmin(img)) == darkest
    # To first order in a the channels lose as much light on average as under a grey absorber (the
    # normalisation; at larger a, exp(-2as) is convex in s and a coloured stain passes more light).
    weak = {stain: 1 - simulate(phase, m, absorption=torch.full_like(phase, 0.005), stain=stain,
                                noise=False)[0, :, 0, 0] for stain in (name, None)}
    assert float(weak[name].mean()) == pytest.approx(float(weak[None].mean()), rel=0.05)


def test_node_scales_average_to_one_over_the_recorded_light():
    quad = channel_quadrature(Microscope.from_preset("default"))
    for stain in STAINS.values():
        scales = stain.node_scales(quad)
        assert float(quad.weights.mean(axis=0) @ scales) == pytest.approx(1.0, abs=1e-12)
        assert (scales >= 0).all()


def test_stain_errors():
    phase = torch.zeros(8, 8)
    with pytest.raises(ConfigError, match="unknown stain"):
        simulate(phase, "default", absorption=phase + 0.1, stain="indigo", noise=False)
    with pytest.raises(InputError, match="needs an absorption"):
        simulate(phase, "default", stain="eosin", noise=False)
    with pytest.raises(ConfigError, match="absorbs at no wavelength"):
        Stain("none")
    with pytest.raises(ConfigError, match=">= 0"):
        Stain("bad", ((0.5, 0.05, -1.0),))
    with pytest.raises(ConfigError, match="triples"):
        Stain("bad", ((0.5, 0.05),))
    with pytest.raises(ConfigError, match="finite"):
        Stain("bad", ((0.5, float("nan"), 1.0),))
    assert Stain("listed", [[0.5, 0.05, 1]]) == Stain("listed", ((0.5, 0.05, 1.0),))  # hashable, as cache keys need
    # A band far outside the camera's light absorbs nothing it records.
    with pytest.raises(ConfigError, match="none of the light"):
        simulate(phase, "default", absorption=phase + 0.1, stain=Stain("ir", ((2.0, 0.01, 1.0),)), noise=False)


@pytest.mark.parametrize("preset", ["default", "paper-rgb"])
def test_two_uniform_dyes_add_their_attenuations_at_each_wavelength(preset):
    # Beer-Lambert for a mixture: channel c reads Σ_k W_ck exp(-2·(a_h·s_h,k/s̄_h + a_e·s_e,k/s̄_e)), which is
    # not the product of the two single-dye readings once a channel spans several nodes.
    m = Microscope.from_preset(preset)
    phase = torch.zeros(16, 16, dtype=torch.float64)
    a_h, a_e = torch.full_like(phase, 0.25), torch.full_like(phase, 0.4)
    img = simulate(phase, m, absorption=[a_h, a_e], stain=["haematoxylin", "eosin"], noise=False)[0]
    quad = channel_quadrature(m)
    od = 0.25 * STAINS["haematoxylin"].node_scales(quad) + 0.4 * STAINS["eosin"].node_scales(quad)
    np.testing.assert_allclose(img.mean(dim=(-2, -1)).numpy(), quad.weights @ np.exp(-2 * od), rtol=1e-6)


def test_a_dye_list_is_each_dye_alone_where_the_others_are_absent():
    # Two dyes on disjoint halves of a phase scene, and grey in a list: each matches the single-map form.
    m = Microscope.from_preset("default")
    g = torch.Generator().manual_seed(3)
    phase = torch.rand(48, 48, generator=g, dtype=torch.float64) * 2
    a = torch.rand(48, 48, generator=g, dtype=torch.float64) * 0.3
    zero = torch.zeros_like(a)
    alone = simulate(phase, m, absorption=a, stain="eosin", noise=False)
    for maps, stains in (([a, zero], ["eosin", "haematoxylin"]), ([zero, a], ["methylene-blue", "eosin"])):
        torch.testing.assert_close(simulate(phase, m, absorption=maps, stain=stains, noise=False), alone,
                                   rtol=0, atol=1e-10)
    grey = simulate(phase, m, absorption=a, noise=False)
    torch.testing.assert_close(simulate(phase, m, absorption=[a, zero], stain=[None, "eosin"], noise=False), grey,
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(simulate(phase, m, absorption=[a / 2, a / 2], stain=[None, "grey"], noise=False),
                               grey, rtol=0, atol=1e-10)
    mixed = simulate(phase, m, absorption=[a, a], stain=["eosin", "haematoxylin"], noise=False)
    assert float((mixed - alone).abs().max()) > 1e-2  # the second dye is not ignored


def test_dye_list_errors():
    phase = torch.zeros(8, 8)
    with pytest.raises(InputError, match="2 absorption maps need a list of as many stains"):
        simulate(phase, "default", absorption=[phase, phase], stain="eosin", noise=False)
    with pytest.raises(InputError, match="2 absorption maps need"):
        simulate(phase, "default", absorption=[phase, phase], stain=["eosin"], noise=False)
    with pytest.raises(InputError, match="a list of stains needs a list of absorption maps"):
        simulate(phase, "default", absorption=phase, stain=["eosin"], noise=False)
    with pytest.raises(InputError, match="absorption shape"):
        simulate(phase, "default", absorption=[phase, torch.zeros(4, 4)], stain=["eosin", None], noise=False)
