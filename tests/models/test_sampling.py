import numpy as np
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


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.7), ("ancestral", 0.0)])
def test_temperature_scales_a_linear_chain(sampler, eta):
    # With a denoiser linear in z (and no clipping) every step is linear in the noise draws, so a
    # chain whose every draw is multiplied by T returns T times the temperature-1 output.
    eps_fn = lambda z, g: 0.3 * z  # noqa: E731
    hot = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=6, generators=gens(1), sampler=sampler, eta=eta)
    for t in (0.0, 0.4):
        cool = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=6, generators=gens(1), sampler=sampler, eta=eta,
                         temperature=t)
        assert torch.allclose(cool, t * hot, atol=1e-12)
    assert hot.abs().max() > 0.1


def test_temperature_zero_ddim_ignores_the_seed_and_keeps_an_oracle_exact():
    y = torch.randn(SHAPE, dtype=torch.float64)
    out = run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=5, generators=gens(3), temperature=0.0)
    assert (out - y).abs().max() < 1e-6  # the exact noise still recovers the target from z_T = 0
    eps_fn = lambda z, g: 0.3 * z + 0.1  # noqa: E731 -- any fixed denoiser
    a = run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=5, generators=gens(1), temperature=0.0)
    assert torch.equal(a, run_chain(eps_fn, per_pixel_schedule(), SHAPE, steps=5, generators=gens(2),
                                    temperature=0.0))


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


def _gaussian_denoiser(mu, sigma):
    # Exact E[eps | z] for Y ~ N(mu, sigma^2), z = sqrt(g) Y + sqrt(1-g) eps (independent reference).
    def eps(z, g):
        z = z.double()
        return (1 - g).sqrt() * (z - g.sqrt() * mu) / (g * sigma**2 + 1 - g)
    return eps


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ancestral", 0.0)])
def test_sampler_draws_the_gaussian_target_distribution(sampler, eta):
    # Catches a slip (ancestral mean), (ancestral variance), (DDIM signal term at gbar_t).
    # With the exact denoiser of a Gaussian target, 200 steps give samples of that Gaussian.
    from chromaqpi.sampling import run_chain, sample_generators
    mu, sigma, shape = 0.5, 0.3, (2, 1, 64, 64)
    grid = lambda times: [torch.exp(-12.0 * t**2) for t in times]  # noqa: E731 (gbar(1) = 6e-6)
    gens = sample_generators(torch.Generator().manual_seed(0), 2, "cpu")
    out = run_chain(_gaussian_denoiser(mu, sigma), grid, shape, steps=200, generators=gens, sampler=sampler, eta=eta)
    assert float(out.mean()) == pytest.approx(mu, abs=0.02)   # 8192 samples: sd of the mean 0.003
    assert float(out.std()) == pytest.approx(sigma, rel=0.05)  # sd of the std ~0.8 %


def test_ddim_eta_one_is_stochastic_eta_zero_is_not():
    # Catches a slip (the DDIM noise scale s vanishes): with eta = 1 the chain injects fresh noise.
    from chromaqpi.sampling import run_chain, sample_generators
    shape = (1, 1, 8, 8)
    grid = lambda times: [torch.exp(-12.0 * t**2) for t in times]  # noqa: E731
    eps_fn = _gaussian_denoiser(0.0, 0.5)
    g = lambda: sample_generators(torch.Generator().manual_seed(3), 1, "cpu")  # noqa: E731
    a = run_chain(eps_fn, grid, shape, steps=20, generators=g(), eta=0.0)
    b = run_chain(eps_fn, grid, shape, steps=20, generators=g(), eta=1.0)
    assert float((a - b).abs().max()) > 1e-2


def test_posterior_std_uses_n_minus_one():
    # Catches a slip (population std): documented N - 1 normalisation.
    from chromaqpi.sampling import posterior_samples, randn_per_sample
    res = posterior_samples(lambda g: randn_per_sample((2, 1, 3, 4), g, "cpu"), 2, samples=3,
                            generator=torch.Generator().manual_seed(0), keep=True)
    ref = np.std(res.samples.numpy(), axis=0, ddof=1)
    assert np.allclose(res.std.numpy(), ref, atol=1e-12)


def test_clipping_recomputes_eps_consistently():
    # Catches a slip (eps not recomputed after clipping). Reference: DDIM(0) with clipped x0 written out by
    # hand for K = 2 steps, eps re-derived from the clipped estimate.
    from chromaqpi.sampling import randn_per_sample, run_chain, sample_generators
    shape = (1, 1, 6, 7)
    gb = lambda t: torch.exp(-12.0 * t**2).clamp(1e-10, 1 - 1e-10)  # noqa: E731
    grid = lambda times: [gb(t) for t in times]  # noqa: E731
    eps_fn = lambda z, g: 0.2 * z.double()  # noqa: E731  -- a poor denoiser, so clipping bites
    z = randn_per_sample(shape, sample_generators(torch.Generator().manual_seed(4), 1, "cpu"), "cpu")
    g2, g1 = gb(torch.tensor(1.0, dtype=torch.float64)), gb(torch.tensor(0.5, dtype=torch.float64))
    e = eps_fn(z.float(), g2)
    y0 = ((z - (1 - g2).sqrt() * e) / g2.sqrt()).clamp(-1, 1)
    e = (z - g2.sqrt() * y0) / (1 - g2).sqrt()
    z1 = g1.sqrt() * y0 + (1 - g1).sqrt() * e
    e1 = eps_fn(z1.float(), g1)
    ref = ((z1 - (1 - g1).sqrt() * e1) / g1.sqrt()).clamp(-1, 1)
    out = run_chain(eps_fn, grid, shape, steps=2, clip=(-1.0, 1.0),
                    generators=sample_generators(torch.Generator().manual_seed(4), 1, "cpu"))
    assert torch.allclose(out, ref, atol=1e-6)
    assert not torch.all(ref.abs() == 1)  # not everything saturated



def test_ancestral_step_is_the_ddpm_posterior_in_its_x0_form():
    # Catches a slip in the ancestral mean or variance (beta_t instead of the posterior beta~_t).
    # Reference: Ho et al. eq. 7,
    # q(z_s | z_t, y0) with mean sqrt(gs) b/(1-gt) y0 + sqrt(a)(1-gs)/(1-gt) z_t, var (1-gs) b/(1-gt),
    # a = gt/gs, b = 1 - a -- written in y0, independent of the eps form in the code.
    from chromaqpi.sampling import ancestral_step, predict_clean
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, generator=g, dtype=torch.float64)
    eps = torch.randn(50, generator=g, dtype=torch.float64)
    gt = torch.rand(50, generator=g, dtype=torch.float64) * 0.5 + 0.05
    gs = gt + (1 - gt) * torch.rand(50, generator=g, dtype=torch.float64) * 0.9
    y0 = predict_clean(z, eps, gt)
    a = gt / gs
    b = 1 - a
    mean = gs.sqrt() * b / (1 - gt) * y0 + a.sqrt() * (1 - gs) / (1 - gt) * z
    var = (1 - gs) * b / (1 - gt)
    m0 = ancestral_step(z, eps, gt, gs, noise=torch.zeros_like(z))
    m1 = ancestral_step(z, eps, gt, gs, noise=torch.ones_like(z))
    assert torch.allclose(m0, mean, atol=1e-10)
    assert torch.allclose(m1 - m0, var.sqrt(), atol=1e-10)


def test_step_progress_counts_every_network_evaluation_and_only_inside_its_block():
    from chromaqpi.sampling import step_progress

    y = torch.zeros(SHAPE, dtype=torch.float64)
    with step_progress() as bar:
        run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=7, generators=gens(), sampler="ddim")
        run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=3, generators=gens(), sampler="ancestral")
    assert bar.n == 10
    run_chain(oracle(y), per_pixel_schedule(), SHAPE, steps=4, generators=gens())  # after the block: not counted
    assert bar.n == 10
