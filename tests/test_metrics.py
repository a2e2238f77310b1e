"""Tests for chromaqpi.metrics: hand-computed values, offset invariance, dry mass."""

import math

import numpy as np
import pytest
import torch

from chromaqpi import metrics as M

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def tiny():
    """pred - true = [0, 1, 2, 3]: every metric is easy by hand."""
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    return pred, torch.ones(2, 2, dtype=torch.float64)


@pytest.fixture
def dyadic():
    """Batch of images on a 1/8 grid, so y + c - c is exact in float64."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 64, (2, 67, 75), generator=g).to(torch.float64) / 8
    return y, 0.75


# --- hand-computed values ---------------------------------------------------


def test_raw_metrics_by_hand(tiny):
    pred, true = tiny
    assert float(M.mae(pred, true)) == pytest.approx(1.5, abs=1e-15)
    assert float(M.rmse(pred, true)) == pytest.approx(math.sqrt(3.5), abs=1e-15)
    assert float(M.psnr(pred, true, data_range=2.0)) == pytest.approx(
        10 * math.log10(4 / 3.5), abs=1e-12)


def test_aligned_metrics_by_hand(tiny):
    pred, true = tiny
    # median offset c = -2 (any c in [-2, -1] is optimal): errors [-2, -1, 0, 1] -> MAE 1.0
    assert float(M.mae(pred, true, align="median")) == pytest.approx(1.0, abs=1e-15)
    # mean offset -1.5 leaves errors [-1.5, -0.5, 0.5, 1.5] -> MSE 1.25
    assert float(M.rmse(pred, true, align="mean")) == pytest.approx(math.sqrt(1.25), abs=1e-15)
    assert float(M.best_offset(pred, true, align="mean")) == -1.5


def test_median_not_mean_is_the_l1_offset():
    # one outlier: the median ignores it (MAE 1.0), the mean would give 1.5
    pred = torch.tensor([[1.0, 1.0], [1.0, 5.0]], dtype=torch.float64)
    true = torch.ones(2, 2, dtype=torch.float64)
    assert float(M.mae(pred, true, align="median")) == 1.0
    assert float(M.mae(pred, true, align="mean")) == 1.5
    assert float(M.rmse(pred, true, align="mean")) == pytest.approx(math.sqrt(3.0), abs=1e-15)


def test_normalised_mae_is_mae_on_paper_scale(tiny):
    pred, true = tiny
    to_paper = lambda x: x / 3.5 * 2 - 1  # noqa: E731
    direct = M.mae(to_paper(pred), to_paper(true))
    assert float(M.normalised_mae(pred, true)) == pytest.approx(float(direct), rel=1e-14)
    assert float(M.normalised_mae(pred, true)) == pytest.approx(1.5 * 2 / 3.5, rel=1e-14)


def test_mask_restricts_pixels(tiny):
    pred, true = tiny
    mask = torch.tensor([[True, True], [False, False]])
    assert float(M.mae(pred, true, mask=mask)) == 0.5
    assert float(M.rmse(pred, true, mask=mask, align="mean")) == 0.5


def test_ssim_of_constant_images_is_luminance_term():
    a, b, L = 1.0, 0.5, 1.0
    c1 = (0.01 * L) ** 2
    val = M.ssim(torch.full((24, 24), a), torch.full((24, 24), b), data_range=L)
    assert float(val) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


@pytest.mark.parametrize("noise", [0.05, 0.3, 1.0])
def test_ssim_matches_scikit_image_reference(noise):
    # An independent implementation of Wang et al. 2004 with the same settings (Gaussian window
    # σ = 1.5 px truncated at 11 px, population covariances, fixed data range, valid region).
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    true = np.cumsum(np.cumsum(rng.standard_normal((64, 72)), 0), 1) / 20
    pred = true + noise * rng.standard_normal(true.shape)
    ours = float(M.ssim(torch.tensor(pred), torch.tensor(true), data_range=6.0))
    reference = structural_similarity(pred, true, data_range=6.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ours == pytest.approx(reference, abs=1e-9)


def test_psnr_uses_fixed_range_not_image_range(tiny):
    pred, true = tiny
    # a 10x larger range gives exactly +20 dB, whatever the images span
    gain = M.psnr(pred, true, data_range=20.0) - M.psnr(pred, true, data_range=2.0)
    assert float(gain) == pytest.approx(20.0, abs=1e-12)


# --- batching, shapes and conventions ----------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_batched_equals_sequential(dyadic, device):
    y, _ = dyadic
    pred = (y.flip(-1) * 0.9).to(device)
    y = y.to(device)
    for fn in (M.mae, M.rmse):
        batched = fn(pred, y, align="mean")
        single = torch.stack([fn(pred[i], y[i], align="mean") for i in range(2)])
        assert batched.shape == (2,) and batched.dtype == torch.float64
        assert torch.equal(batched, single)
    batched = M.ssim(pred, y, data_range=8.0)
    single = torch.stack([M.ssim(pred[i], y[i], data_range=8.0) for i in range(2)])
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


def test_numpy_input_and_zero_dim_output(tiny):
    pred, true = tiny
    out = M.mae(pred.numpy(), true.numpy())
    assert isinstance(out, torch.Tensor) and out.ndim == 0


def test_invalid_arguments_raise(tiny):
    pred, true = tiny
    with pytest.raises(ValueError, match="shapes differ"):
        M.mae(pred, true[:1])
    with pytest.raises(ValueError, match="align"):
        M.mae(pred, true, align="max")
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(pred, true, data_range=0.0)


# --- offset invariance -------------------------------------------------------


def test_aligned_metrics_ignore_constant_offset(dyadic):
    y, c = dyadic
    assert torch.all(M.mae(y + c, y, align="median") == 0)
    assert torch.all(M.mae(y + c, y) == c)  # raw MAE sees the offset
    assert torch.all(torch.isinf(M.psnr(y + c, y, data_range=8.0, align="mean")))
    assert torch.all(M.rmse(y - c, y, align="mean") == 0)
    assert torch.all(M.ms_ssim(y + c, y, data_range=8.0, align="mean") == 1)
    assert torch.all(M.ms_ssim(y + c, y, data_range=8.0) < 1)


def test_ms_ssim_invariant_at_256_px_with_standard_window():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 28, (1, 256, 256), generator=g).to(torch.float64) / 8
    assert M.ms_ssim_window(256) == 11
    assert float(M.ms_ssim(y + 1.5, y, data_range=3.5, align="mean")) == 1.0
    noisy = y + 0.2 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    assert 0.0 < float(M.ms_ssim(noisy, y, data_range=3.5)) < 1.0


def test_ms_ssim_window_adapts_to_small_images():
    assert M.ms_ssim_window(161) == 11
    assert M.ms_ssim_window(160) == 9  # (11-1)*16 = 160 is not enough
    assert M.ms_ssim_window(33) == 3
    with pytest.raises(ValueError, match="32 px"):
        M.ms_ssim_window(32)
    r = M.evaluate_all(torch.rand(1, 20, 30), torch.rand(1, 20, 30), data_range=1.0)
    assert math.isnan(r["ms_ssim"]) and math.isfinite(r["ssim"])


# --- dry mass ----------------------------------------------------------------


def _disk(n: int, radius_px: float, center=None) -> torch.Tensor:
    cy, cx = center or ((n - 1) / 2, (n - 1) / 2)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2


def test_dry_mass_of_uniform_disk_is_exact():
    lam, dx, alpha, phi0 = 0.532, 0.1625, 0.19, 1.3
    disk = _disk(121, 40.0)
    phase = disk.to(torch.float64) * phi0
    expected = lam * phi0 * int(disk.sum()) * dx**2 / (2 * math.pi * alpha)
    got = float(M.dry_mass_pg(phase, lam, dx, alpha_um3_per_pg=alpha))
    assert got == pytest.approx(expected, rel=1e-12)


def test_dry_mass_physics_example_34_pg():
    # PHYSICS.md §7: lambda 0.55 um, alpha 0.2, 1 rad over a 10-um disk -> 34 pg
    dx = 0.05
    phase = _disk(241, 5.0 / dx).to(torch.float64)
    got = float(M.dry_mass_pg(phase, 0.55, dx, alpha_um3_per_pg=0.2))
    analytic = 0.55 / (2 * math.pi * 0.2) * math.pi * 5.0**2
    assert round(got) == 34
    assert got == pytest.approx(analytic, rel=5e-3)  # pixelisation of the rim


def test_per_object_dry_mass_matches_masked_sum_and_batches():
    a, b = _disk(64, 8, (20, 20)), _disk(64, 5, (45, 40))
    labels = a.long() + 2 * b.long()
    phase = torch.stack([a * 1.0 + b * 2.0, a * 0.5 + b * 0.0]).to(torch.float64)
    masses = M.per_object_dry_mass(phase, labels, 0.55, 0.2, num_labels=3)
    assert masses.shape == (2, 3)
    for k, m in ((1, a), (2, b)):
        torch.testing.assert_close(masses[:, k - 1], M.dry_mass_pg(phase, 0.55, 0.2, mask=m))
    assert torch.all(masses[:, 2] == 0)  # label 3 absent
    with pytest.raises(ValueError, match="integer"):
        M.per_object_dry_mass(phase, labels.double(), 0.55, 0.2)


def test_dry_mass_error_relative_and_background_referenced():
    a, b = _disk(64, 8, (20, 20)), _disk(64, 5, (45, 40))
    labels = a.long() + 2 * b.long()
    true = (a * 1.0 + b * 2.0).to(torch.float64)
    pred = 1.1 * true + 0.3  # 10 % scale error plus an arbitrary offset
    err = M.dry_mass_error(pred, true, labels)
    torch.testing.assert_close(err, torch.tensor([0.1, 0.1], dtype=torch.float64))
    raw = M.dry_mass_error(pred, true, labels, reference_background=False)
    assert torch.all(raw > 0.2)  # the offset inflates unreferenced masses


# --- evaluate_all ------------------------------------------------------------


def test_evaluate_all_consistent_with_single_metrics(dyadic):
    y, c = dyadic
    pred = y + c + 0.1 * torch.sin(y)
    r = M.evaluate_all(pred, y, data_range=8.0, phi_max=8.0)
    assert r["mae_rad"] == pytest.approx(float(M.mae(pred, y).mean()))
    assert r["mae_rad_aligned"] == pytest.approx(float(M.mae(pred, y, align="median").mean()))
    assert r["nmae_aligned"] == pytest.approx(r["mae_rad_aligned"] * 2 / 8.0)
    assert r["psnr_db_aligned"] > r["psnr_db"]
    assert r["ms_ssim_aligned"] > r["ms_ssim"]
    assert all(isinstance(v, float) for v in r.values())
    expected = {f"{k}{s}" for k in ("mae_rad", "nmae", "rmse_rad", "psnr_db", "ssim", "ms_ssim")
                for s in ("", "_aligned")}
    assert set(r) == expected
    labels = np.zeros(y.shape[-2:], dtype=np.int64)
    labels[10:30, 10:30] = 1
    with_mass = M.evaluate_all(pred, y + 1, data_range=8.0, labels=labels)
    assert "dry_mass_rel_error" in with_mass
