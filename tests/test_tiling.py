import pytest
import torch

from chromaqpi.tiling import blend_window, reconstruct_tiled, tile_starts


def test_tile_starts_cover_with_overlap():
    for length in (100, 256, 257, 700, 2048):
        starts = tile_starts(length, 128, 32)
        assert starts[0] == 0 and starts[-1] + 128 == max(length, 128)
        assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))


def test_blend_window_is_smooth_and_positive():
    w = blend_window(64, 16)
    assert float(w.min()) > 0 and float(w[16:48].min()) == 1.0
    assert torch.all(w[:16].diff() > 0)


# (100, 700): the image is shorter than a tile, so tiles are 112 x 128 (not square).
@pytest.mark.parametrize("h, w", [(300, 437), (100, 700)])
def test_tiles_with_random_offsets_blend_without_seams(h, w):
    # A "model" that returns the truth inside each tile plus an arbitrary
    # constant (the DC phase is unobservable): after offset harmonisation the
    # mosaic equals the truth up to one global constant.
    gen = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    truth = torch.sin(x / 37) + 0.5 * torch.cos(y / 23) + 1e-3 * x * y / 100
    images = torch.stack([truth, truth, truth])  # channels carry the truth for the fake model

    def fake_model(batch):
        return batch[:, 0] + 5 * torch.randn(batch.shape[0], 1, 1, generator=gen, dtype=batch.dtype)

    phase, std = reconstruct_tiled(fake_model, images, tile=128, overlap=32, multiple=16)
    assert std is None and phase.shape == (h, w)
    err = (phase - truth) - (phase - truth).mean()
    assert float(err.abs().max()) < 1e-9


def test_small_and_odd_images_are_padded_and_cropped():
    images = torch.rand(3, 37, 53)
    phase, _ = reconstruct_tiled(lambda b: b.mean(1), images, tile=256, multiple=16)
    assert phase.shape == (37, 53)
    expected = images.mean(0)
    assert torch.allclose(phase, expected, atol=1e-6)


def test_std_maps_are_blended():
    images = torch.rand(3, 200, 150)
    _, std = reconstruct_tiled(lambda b: (b.mean(1), torch.full_like(b[:, 0], 0.25)), images, tile=96, overlap=24)
    assert torch.allclose(std, torch.full((200, 150), 0.25))


@pytest.mark.parametrize("tile, per_call", [(64, 64), (128, 16), (256, 4), (512, 1), (768, 1)])
def test_each_model_call_takes_about_four_256_px_tiles_of_pixels(tile, per_call):
    # batch=None sizes a call by pixels (BATCH_PIXELS = 4 x 256²): a larger tile costs no more
    # activation memory per call, and a call takes at least one tile. Images of 25 tiles or more.
    sizes = []

    def fake_model(batch):
        sizes.append(batch.shape[0])
        return batch[:, 0]

    side = max(4 * tile, 640)
    phase, _ = reconstruct_tiled(fake_model, torch.rand(1, side, side), tile=tile, overlap=tile // 4)
    assert phase.shape == (side, side) and sum(sizes) >= 25
    assert max(sizes) == per_call
