import pytest
import torch

from chromaqpi.microscope import Sensor
from chromaqpi.optics.sensor import apply_sensor, bayer_masks, camera_noise, demosaic_bilinear, mosaic


def test_photon_transfer_of_flat_field(generator):
    # Var(I_norm) = 1/N_bg + σ_r²/N_bg² + (K²/12)/N_bg² for a flat field at 1 (PHYSICS.md §3).
    s = Sensor(full_well_e=10000, fill_fraction=0.5, read_noise_e=5.0, bit_depth=12)
    flat = torch.ones(1, 1, 400, 400, dtype=torch.float64)
    out = camera_noise(flat, s, generator=generator)
    n_bg, gain = 5000.0, 10000 / 4096
    expected = 1 / n_bg + (s.read_noise_e**2 + gain**2 / 12) / n_bg**2
    assert float(out.var()) == pytest.approx(expected, rel=0.02)
    assert abs(float(out.mean()) - 1) < 5 * (expected / flat.numel()) ** 0.5


def test_quantisation_clips_at_full_scale(generator):
    s = Sensor(full_well_e=1000, fill_fraction=0.5, read_noise_e=0.0, bit_depth=8)
    bright = torch.full((1, 1, 10, 10), 10.0)
    out = camera_noise(bright, s, generator=generator)
    assert torch.allclose(out, torch.full_like(out, 255 * (1000 / 256) / 500))


def test_noise_is_reproducible_with_a_generator():
    s = Sensor()
    img = torch.ones(1, 3, 16, 16)
    a = apply_sensor(img, s, noise=True, generator=torch.Generator().manual_seed(5))
    b = apply_sensor(img, s, noise=True, generator=torch.Generator().manual_seed(5))
    c = apply_sensor(img, s, noise=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bayer_masks_partition_pixels():
    m = bayer_masks((6, 8))
    assert torch.equal(m.sum(0), torch.ones(6, 8))
    assert m[1].sum() == 2 * m[0].sum() == 2 * m[2].sum()


def test_bilinear_demosaic_is_exact_for_linear_ramps():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    rgb = torch.stack([1 + 0.01 * x, 1 + 0.02 * y, 1 - 0.01 * x + 0.01 * y])[None].double()
    out = demosaic_bilinear(mosaic(rgb))
    assert torch.allclose(out[..., 2:-2, 2:-2], rgb[..., 2:-2, 2:-2], atol=1e-12)


def test_read_noise_adds_its_variance_at_low_light(generator):
    # N_bg = 100 e-: shot variance 1/N_bg = 0.01 and read variance σ_r²/N_bg² = 0.01 are equal, so a
    # missing or mis-scaled read-noise term changes the total by 50 % or more (tolerance 2 %).
    s = Sensor(full_well_e=10000, fill_fraction=0.01, read_noise_e=10.0, bit_depth=16)
    out = camera_noise(torch.ones(1, 1, 500, 500, dtype=torch.float64), s, generator=generator)
    gain = 10000 / 2**16
    expected = 1 / 100 + (10.0**2 + gain**2 / 12) / 100**2
    assert float(out.var()) == pytest.approx(expected, rel=0.02)


def test_mosaic_is_rggb_from_the_top_left_pixel():
    rgb = torch.stack([torch.full((4, 6), v) for v in (1.0, 2.0, 3.0)])[None]
    raw = mosaic(rgb)[0, 0]
    assert raw[0::2, 0::2].eq(1).all() and raw[1::2, 1::2].eq(3).all()  # R top-left, B bottom-right
    assert raw[0::2, 1::2].eq(2).all() and raw[1::2, 0::2].eq(2).all()  # G on the other diagonal


def test_reference_paper_gaussian_noise_has_its_bias_and_spread(generator):
    s = Sensor(model="gaussian", gaussian_mean=0.01, gaussian_std=0.05)
    out = apply_sensor(torch.ones(1, 2, 300, 300, dtype=torch.float64), s, noise=True, generator=generator)
    assert float(out.mean()) == pytest.approx(1.01, abs=5 * 0.05 / 300 / 2**0.5)
    assert float(out.std()) == pytest.approx(0.05, rel=0.01)


def test_shot_noise_is_poisson_at_low_light(generator):
    # Gain K = FWC/2^b = 1 e-/DN and no read noise, so DN counts photo-electrons; at N_bg = 2 e- their
    # distribution must be Poisson(2): P(k) = e^{-2}·2^k/k! (not just its mean and variance, which a
    # Gaussian with variance μ would also match: it gives P(1) ≈ 0.22 instead of 0.27). 4e5 pixels:
    # sampling std of each frequency <= 7e-4, tolerance 4e-3.
    import math

    s = Sensor(full_well_e=4096, fill_fraction=2 / 4096, read_noise_e=0.0, bit_depth=12)
    out = camera_noise(torch.ones(1, 1, 400, 1000, dtype=torch.float64), s, generator=generator)
    counts = torch.round(out * 2).flatten()  # DN·K/N_bg -> electrons
    assert torch.equal(counts, out.flatten() * 2)  # whole electrons
    for k in range(7):
        pmf = math.exp(-2) * 2**k / math.factorial(k)
        assert float((counts == k).double().mean()) == pytest.approx(pmf, abs=4e-3)


def test_bilinear_demosaic_keeps_every_sample_and_matches_the_standard_kernels():
    # Bilinear demosaicing (Malvar et al. 2004 baseline; colour_demosaicing's demosaicing_CFA_Bayer_bilinear,
    # the acquisition-side demosaicer PHYSICS.md §2.6 says to mirror) interpolates: each channel keeps its
    # own samples and fills the gaps with H_G = [[0,1,0],[1,4,1],[0,1,0]]/4 (G) and
    # H_RB = [[1,2,1],[2,4,2],[1,2,1]]/4 (R, B) applied to the masked mosaic. Written here independently;
    # interior pixels (the border is reflect-padded), random input, exact to rounding (1e-12).
    # Until session 24 the code applied H_RB to G as well, so a G site became (4G + the four diagonal G
    # neighbours)/8 (G off by up to 0.30 here); this test found it.
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, 12, 14, generator=g, dtype=torch.float64)
    raw = mosaic(rgb)[0, 0]
    masks = bayer_masks((12, 14), dtype=torch.float64)
    out = demosaic_bilinear(mosaic(rgb))[0]
    h_g = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=torch.float64) / 4
    h_rb = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 4
    for c, kernel in enumerate((h_rb, h_g, h_rb)):
        ref = F.conv2d((raw * masks[c])[None, None], kernel[None, None])[0, 0]
        assert float((out[c, 1:-1, 1:-1] - ref).abs().max()) < 1e-12, c
        sites = masks[c].bool()
        assert float((out[c][sites] - rgb[0, c][sites]).abs().max()) < 1e-12, c
