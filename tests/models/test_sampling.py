import pytest
import torch

from chromaqpi.errors import ConfigError
from chromaqpi.sampling import (
    posterior_samples, randn_per_sample, run_chain, sample_generators, time_grid,
)

SHAPE = (2, 1, 6, 10)


def per_pixel_schedule(seed=0):
    """gamma_bar(t) = exp(-kappa G(t)) with a random per-pixel kappa, float64."""
    kappa = 0.5 + 1.5 * torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda times: [torch.exp(-kappa * 12.0 * t**2) for t in times]


def oracle(y):
    # eps_hat := (z - sqrt(gbar) Y) / sqrt(1 - gbar): the exact noise for a known Y (PHYSICS 8 #23).
    return lambda z, g: (z.double() - g.sqrt() * y) / (1 - g).sqrt()


def gens(seed=0):
    return sample_generators(torch.Generator().manual_seed(seed), SHAPE[0], "cpu")


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ancestral", 0.0)])
@pytest.mark.parametrize("steps", [1, 4, 50])
def test_oracle_noise_returns_the_target(sampler, eta, steps):
    y = torch.randn(SHAPE, dtype=torch.float64)
    out = run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=steps, generators=gens(), sampler=sampler, eta=eta)
    assert out.dtype == torch.float64
    assert (out - y).abs().max() < 1e-6


def test_clipping_keeps_an_in_range_target():
    y = torch.rand(SHAPE, dtype=torch.float64) * 2 - 1
    out = run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=5, generators=gens(), clip=(-1.0, 1.0))
    assert (out - y).abs().max() < 1e-6


def test_ddim_is_deterministic_given_the_initial_noise_and_uses_it():
    eps_fn = lambda z, g: 0.3 * z  # noqa: E731 -- any fixed denoiser
    a = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=7, generators=gens(1))
    b = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=7, generators=gens(1))
    c = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=7, generators=gens(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == SHAPE and torch.isfinite(a).all()


def test_time_grid_and_bad_arguments():
    assert torch.equal(time_grid(4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    with pytest.raises(ConfigError):
        time_grid(0)
    with pytest.raises(ConfigError, match="sampler"):
        run_chain(oracle(torch.zeros(SHAPE)), per_pixel_schedule(), SHAPE, steps=2, generators=gens(), sampler="x")
    with pytest.raises(ConfigError, match="3 generators"):
        sample_generators([torch.Generator()] * 3, 2, "cpu")


def test_per_sample_generators_make_draws_independent_of_batching():
    master_a, master_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    whole = randn_per_sample((4, 3), sample_generators(master_a, 4, "cpu"), "cpu")
    parts = [randn_per_sample((2, 3), sample_generators(master_b, 2, "cpu"), "cpu") for _ in range(2)]
    assert torch.equal(whole, torch.cat(parts))


def test_posterior_summary_shapes_and_spread():
    draw = lambda g: randn_per_sample(SHAPE, g, "cpu")  # noqa: E731
    res = posterior_samples(draw, SHAPE[0], samples=64, generator=torch.Generator().manual_seed(0), keep=True)
    assert res.mean.shape == res.std.shape == SHAPE and res.samples.shape == (64, *SHAPE)
    assert res.std.mean() == pytest.approx(1.0, abs=0.1) and res.mean.abs().mean() < 0.3
    one = posterior_samples(draw, SHAPE[0], samples=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one.std, torch.zeros(SHAPE))
