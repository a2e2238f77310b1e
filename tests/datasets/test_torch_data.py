"""ShardDataset / augmentation / normalisation: only physically valid transforms are applied."""

import json

import numpy as np
import pytest
import torch

from chromaqpi.datasets.augment import apply_transform, draw_channel_shifts, shift_colour_channels, valid_transforms
from chromaqpi.datasets.normalize import normalize_input, paper_phase, paper_target
from chromaqpi.datasets.randomize import draw_microscope, get_family
from chromaqpi.datasets.sources import check_training_sources
from chromaqpi.datasets.torch_data import ShardDataset
from chromaqpi.errors import ConfigError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.simulator import simulate


@pytest.fixture
def phase():
    """A smooth, asymmetric 36x36 phase (rad): no accidental symmetry hides a wrong transform."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.random((1, 1, 36, 36)))
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)[0] * 3.0
    y, xx = torch.meshgrid(torch.arange(36.0), torch.arange(36.0), indexing="ij")
    return x + 0.8 * torch.exp(-((xx - 9) ** 2 + (y - 24) ** 2) / 30.0)


def _non_bayer_default_draw():
    m = draw_microscope(None, get_family("default"), np.random.default_rng(2))
    return m.replace(sensor={"bayer": False}, spectra={"n_wavelengths": 5})


def _commutation_error(m, phase, t):
    lhs = simulate(apply_transform(phase, t), m, noise=False)
    rhs = apply_transform(simulate(phase, m, noise=False), t)
    return float((lhs - rhs).abs().max())


def test_valid_transforms_commute_with_the_simulator(phase):
    m = _non_bayer_default_draw()
    allowed = valid_transforms(m, phase.shape[-2:])
    # source rings hold multiples of four points, so the whole dihedral group qualifies
    assert set(allowed) == set(range(8))
    for t in allowed:
        assert _commutation_error(m, phase, t) < 1e-9
    # a non-square crop refuses quarter turns
    assert set(valid_transforms(m, (phase.shape[-2], phase.shape[-1] + 2))) == {0, 2, 4, 6}


def test_quarter_turns_allowed_for_coherent_microscopes(phase):
    m = Microscope.from_preset("paper-rgb")
    assert valid_transforms(m, (36, 36)) == tuple(range(8))
    assert valid_transforms(m, (36, 30)) == (0, 2, 4, 6)  # no quarter turn of a non-square crop
    for t in range(8):
        assert _commutation_error(m, phase, t) < 1e-9


def test_bayer_microscopes_get_no_transform():
    m = _non_bayer_default_draw().replace(sensor={"bayer": True})
    assert valid_transforms(m, (32, 32)) == (0,)


def test_shard_dataset_items(tiny_dataset):
    ds = ShardDataset(tiny_dataset, crop=20, seed=1, with_params=True)
    assert len(ds) == 12
    seen_transforms = set()
    for i in range(len(ds)):
        item = ds[i]
        assert item["input"].shape == (3, 20, 20) and item["input"].dtype == torch.float32
        assert item["target"].shape == (1, 20, 20) and item["mask"].shape == (20, 20)
        micro = json.loads(item["params"])["microscope"]
        t = int(item["transform"])
        assert t in valid_transforms(micro, (20, 20))
        seen_transforms.add(t)
        if micro["sensor"]["bayer"]:
            assert t == 0
    assert len(seen_transforms) > 1
    # deterministic per (seed, epoch, index); a new epoch changes the draws
    assert torch.equal(ds[3]["input"], ShardDataset(tiny_dataset, crop=20, seed=1)[3]["input"])
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i]["input"], ShardDataset(tiny_dataset, crop=20, seed=1)[i]["input"])
               for i in range(4))


def test_augmented_item_is_the_transformed_sample(tiny_planes_dataset):
    plain = ShardDataset(tiny_planes_dataset, augment=False)
    aug = ShardDataset(tiny_planes_dataset, augment=True, seed=4)
    ts = set()
    for i in range(len(plain)):
        a, p = aug[i], plain[i]
        t = int(a["transform"])
        ts.add(t)
        assert torch.equal(a["input"], apply_transform(p["input"], t))
        assert torch.equal(a["target"], apply_transform(p["target"], t))
    assert len(ts) > 2


def test_bayer_crops_keep_the_mosaic_phase(tiny_dataset):
    ds = ShardDataset(tiny_dataset, crop=17, seed=0, with_params=True, augment=False)
    full = ShardDataset(tiny_dataset, augment=False)
    checked = 0
    for i in range(len(ds)):
        item = ds[i]
        if not json.loads(item["params"])["microscope"]["sensor"]["bayer"]:
            continue
        checked += 1
        whole = full[i]["target"][0].numpy()
        crop = item["target"][0].numpy()
        offsets = [(y, x) for y in range(16) for x in range(16) if np.array_equal(whole[y:y + 17, x:x + 17], crop)]
        assert offsets and all(y % 2 == 0 and x % 2 == 0 for y, x in offsets)
    assert checked  # the fixture's seed draws some Bayer microscopes


def test_weighted_mixture(tiny_dataset, tiny_planes_dataset, tmp_path):
    with pytest.raises(ConfigError, match="channel"):
        ShardDataset([tiny_dataset, tiny_planes_dataset])
    mix = ShardDataset([tiny_dataset, tiny_dataset], weights=[1.0, 0.0], length=10)
    assert len(mix) == 10 and {int(mix[i]["dataset"]) for i in range(10)} == {0}
    even = ShardDataset([tiny_dataset, tiny_dataset], weights=[1, 1], length=40)
    assert {int(even[i]["dataset"]) for i in range(40)} == {0, 1}


def test_dataloader_batches(tiny_dataset):
    loader = torch.utils.data.DataLoader(ShardDataset(tiny_dataset, crop=16), batch_size=4, num_workers=0)
    batch = next(iter(loader))
    assert batch["input"].shape == (4, 3, 16, 16) and batch["target"].shape == (4, 1, 16, 16)


def test_normalize_input_modes():
    x = 1 + 0.1 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(normalize_input(x, "flatfield"), x - 1)
    rgb = normalize_input(x, "paper")
    assert torch.allclose(rgb.amax(dim=(-2, -1)), torch.ones(2, 3))
    two = normalize_input(x[:, :2], "paper")
    assert torch.allclose(two.amin(dim=(1, 2, 3)), -torch.ones(2)) and torch.allclose(two.amax(dim=(1, 2, 3)), torch.ones(2))
    assert torch.allclose(normalize_input(x[0], "flatfield"), x[0] - 1)  # unbatched
    assert torch.allclose(paper_phase(paper_target(torch.tensor([0.0, 3.5]))), torch.tensor([0.0, 3.5]))
    with pytest.raises(ConfigError):
        normalize_input(x, "minmax")


@pytest.mark.filterwarnings("ignore:--val shares")  # the same folder on purpose
def test_train_cli_takes_several_data_and_val_folders(tiny_dataset, tmp_path, capsys):
    import argparse
    import json

    from chromaqpi.cli import train as train_cli
    from chromaqpi.cli.main import main

    both = f"{tiny_dataset},{tiny_dataset}"
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--model", "mean", "--data", both, "--val", both, "--out", str(tmp_path), "--crop", "16"])
    train, val = train_cli.datasets(args)
    assert len(train) == len(val) == 2 * len(ShardDataset(tiny_dataset, augment=False))
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--val-batches", "3",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["validation"]["max_batches"] == 3
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--val-batch-size", "8",
                 "--batch-size", "2", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (resolved["validation"]["batch_size"], resolved["data"]["batch_size"]) == (8, 2)
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--channel-shift", "1.5",
                 "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["description"]["channel_shift"] == 1.5
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--channel-shift", "1",
                 "--channel-shift-prob", "0.25", "--dry-run"]) == 0
    described = json.loads(capsys.readouterr().out)["data"]["description"]
    assert (described["channel_shift"], described["channel_shift_prob"]) == (1, 0.25)
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--val-batch-size", "-1",
                 "--dry-run"]) == 2
    assert "--val-batch-size (validation.batch_size) must be >= 0" in capsys.readouterr().err
    assert main(["train", "--model", "mean", "--data", f"{tiny_dataset},", "--out", str(tmp_path / "r")]) == 2
    assert "empty folder name" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["train", "--model", "mean", "--data", both, "--out", str(tmp_path), "--val-batches", "-1",
                 "--dry-run"]) == 2
    assert "--val-batches (validation.max_batches) must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--width", "0", "--width (unet.base_channels) must be >= 1"),
    ("--levels", "0", "--levels must be 1 to 6"),
    ("--levels", "9", "--levels must be 1 to 6"),  # [:levels] silently gave 6
    ("--levels", "-1", "--levels must be 1 to 6"),  # ... and 5
    ("--workers", "-1", "--workers (data.num_workers) must be >= 0"),
    ("--steps", "0", "--steps (schedule.steps) must be >= 1"),
    ("--seed", "-1", "--seed (seed) must be an integer in [0, 2**31)"),  # was a traceback after the data loaded
    ("--out", "FILE", "exists and is not a folder"),
    ("--channel-shift", "-1", "channel shift must be 0 to 16 px"),
    ("--channel-shift-prob", "0", "channel shift probability must be in (0, 1]"),
])
def test_train_cli_refuses_impossible_sizes_before_writing(tiny_dataset, tmp_path, capsys, option, value, message):
    from chromaqpi.cli.main import main

    out = tmp_path / "run"
    if value == "FILE":
        (tmp_path / "FILE").write_text("x")
        option, value = "--out", str(tmp_path / "FILE")
    assert main(["train", "--model", "zmd", "--data", str(tiny_dataset), "--out", str(out), "--steps", "1",
                 "--crop", "16", option, value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_train_cli_blames_a_bad_config_value_on_its_key_not_on_a_flag(tiny_dataset, tmp_path, capsys):
    from chromaqpi.cli.main import main

    (tmp_path / "bad.toml").write_text("seed = 7\n[schedule]\nsteps = 0\n")
    args = ["train", "--model", "mean", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--dry-run"]
    assert main([*args, "--config", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert "schedule.steps must be >= 1" in err and "--steps" not in err
    (tmp_path / "ok.toml").write_text("seed = 7\n[data]\nnum_workers = 1\n")
    assert main([*args, "--config", str(tmp_path / "ok.toml")]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["seed"] == 7 and resolved["data"]["num_workers"] == 1  # flags left unset keep the TOML's
    (tmp_path / "unet.toml").write_text("[model.unet]\nbase_channels = 8\n")
    assert main([*args, "--config", str(tmp_path / "unet.toml"), "--microscope", "paper-2shot"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["in_channels"] == 2  # the family's, not the default 3
    (tmp_path / "heads.toml").write_text("[model.unet]\nbase_channels = 24\nattention_heads = 5\n")
    assert main([*args, "--config", str(tmp_path / "heads.toml")]) == 2
    assert "attention_heads 5 must divide" in capsys.readouterr().err


def test_train_cli_refuses_model_flags_beside_a_config_model_table(tiny_dataset, tmp_path, capsys):
    from chromaqpi.cli.main import main

    (tmp_path / "unet.toml").write_text("[model.unet]\nbase_channels = 8\n")
    args = ["train", "--model", "mean", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--dry-run",
            "--config", str(tmp_path / "unet.toml")]
    # The table sets the whole model: a flag beside it would be silently ignored.
    assert main([*args, "--width", "32", "--blocks", "1"]) == 2
    err = capsys.readouterr().err
    assert "--width, --blocks: the --config file's [model] table sets the whole model" in err
    assert err.count("\n") == 1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["model"]["unet"]["base_channels"] == 8
    # Without a table the flags build the model, and the defaults fill what is not given.
    assert main([*args[:-2], "--width", "32"]) == 0
    unet = json.loads(capsys.readouterr().out)["model"]["unet"]
    assert unet["base_channels"] == 32 and unet["blocks_per_level"] == 2 and len(unet["channel_mults"]) == 4


def test_training_refuses_validation_and_test_pictures(tmp_path, capsys):
    from chromaqpi.cli.main import main
    from chromaqpi.datasets.build import build_dataset
    from chromaqpi.datasets.torch_data import OnTheFlyDataset

    val = tmp_path / "natural-val"  # building a validation set from them is fine ...
    build_dataset("pictures-val", "default", 2, 32, 0, val, shard_size=2, group_size=2, progress=False)
    out = tmp_path / "run"
    assert main(["train", "--model", "mean", "--data", str(val), "--out", str(out), "--steps", "1",
                 "--crop", "16"]) == 2  # ... training on it is not
    err = capsys.readouterr().err
    assert "pictures-val" in err and "never train on it" in err and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(ConfigError, match="pictures-val"):
        OnTheFlyDataset("pictures-val", "default", 16, 0, n=2)
    check_training_sources([{"name": "cells"}, {"name": "deadleaves"}], "x")  # ordinary sources pass


def _cosines(shape, dy=0.0, dx=0.0, seed=0):
    """A band-limited (non-periodic) test image, translated by (dy, dx) analytically."""
    rng = np.random.default_rng(seed)
    k, phase = rng.uniform(-0.3, 0.3, (12, 2)), rng.uniform(0, 2 * np.pi, 12)
    y, x = np.mgrid[:shape[0], :shape[1]].astype(float)
    return sum(np.cos(2 * np.pi * (ky * (y - dy) + kx * (x - dx)) + p) for (ky, kx), p in zip(k, phase)) / 12


@pytest.mark.parametrize("red, blue", [((0.0, 0.5), (0.0, 0.0)), ((0.7, -1.3), (-1.5, 0.25)), ((2.0, -2.0), (3.0, 1.0))])
def test_channel_shift_translates_red_and_blue_only(red, blue):
    image = np.stack([_cosines((64, 96))] * 3)
    out = shift_colour_channels(image, np.array([red, blue]))
    assert np.array_equal(out[1], image[1].astype(np.float32))  # green is the reference
    amplitude = np.abs(image[0]).max()
    for channel, (dy, dx) in ((0, red), (2, blue)):
        err = np.abs(out[channel] - _cosines((64, 96), dy, dx))[8:-8, 8:-8]
        # whole-pixel shifts are exact up to float32; sub-pixel ones carry the ringing of the mirror's kink
        # (0.2-0.3 % measured 8 px inside)
        tol = 1e-6 if float(dy).is_integer() and float(dx).is_integer() else 0.006
        assert err.max() < tol * amplitude, (channel, err.max())


def test_channel_shift_keeps_white_noise_white():
    # A Fourier shift multiplies each frequency by a unit phase factor: the noise keeps its variance and
    # stays uncorrelated between neighbours (spline interpolation at half a pixel would smooth it).
    noise = np.random.default_rng(3).normal(size=(3, 256, 256))
    out = shift_colour_channels(noise, np.array([[0.5, 0.5], [-0.5, 0.0]]))
    for c in (0, 2):
        assert out[c].var() == pytest.approx(noise[c].var(), rel=0.03)
        neighbour = np.corrcoef(out[c][:, 1:].ravel(), out[c][:, :-1].ravel())[0, 1]
        assert abs(neighbour) < 0.03


def test_channel_shift_draws():
    rng = np.random.default_rng(0)
    assert draw_channel_shifts(rng, 0.0) is None and draw_channel_shifts(rng, 2.0, prob=0.0) is None
    draws = [draw_channel_shifts(rng, 2.0) for _ in range(400)]
    shifted = [d for d in draws if d is not None]
    assert 0.4 < len(shifted) / 400 < 0.6
    for d in shifted:
        lengths = np.hypot(d[:, 0], d[:, 1])
        assert lengths.max() <= 2.0 + 1e-12
        assert abs(d[0, 0] * d[1, 1] - d[0, 1] * d[1, 0]) < 1e-12  # one (radial) direction for both
    assert max(np.hypot(*d[0]) for d in shifted) > 1.8


def test_shard_dataset_channel_shift(tiny_dataset, tiny_planes_dataset):
    plain = ShardDataset(tiny_dataset, augment=False, with_params=True)
    moved = ShardDataset(tiny_dataset, augment=False, channel_shift=2.0, seed=2)
    changed = 0
    for i in range(len(plain)):
        p, m = plain[i], moved[i]
        assert torch.equal(p["target"], m["target"]) and torch.equal(p["input"][1], m["input"][1])
        if json.loads(p["params"])["microscope"]["sensor"]["bayer"]:
            assert torch.equal(p["input"], m["input"])  # interleaved colour planes are left alone
        changed += not torch.equal(p["input"], m["input"])
    assert changed
    always = ShardDataset(tiny_dataset, augment=False, channel_shift=2.0, channel_shift_prob=1.0, seed=2)
    for i in range(len(plain)):  # probability 1: every RGB (non-Bayer) sample moves
        bayer = json.loads(plain[i]["params"])["microscope"]["sensor"]["bayer"]
        assert torch.equal(plain[i]["input"], always[i]["input"]) == bool(bayer)
    with pytest.raises(ConfigError, match="RGB"):
        ShardDataset(tiny_planes_dataset, channel_shift=1.0)
    with pytest.raises(ConfigError, match="prior"):
        ShardDataset(tiny_dataset, channel_shift=1.0, prior="tie")
    with pytest.raises(ConfigError, match="0 to 16"):
        ShardDataset(tiny_dataset, channel_shift=float("nan"))


@pytest.mark.filterwarnings("ignore:--val shares")  # the same folder on purpose
def test_train_cli_checks_the_data_against_the_family(tiny_dataset, tiny_planes_dataset, tmp_path, capsys):
    import argparse

    from chromaqpi.cli import train as train_cli
    from chromaqpi.cli.main import main

    # Two-plane samples for the three-channel default family: one line naming both counts, no run left.
    out = tmp_path / "run"
    assert main(["train", "--model", "mean", "--data", str(tiny_planes_dataset), "--out", str(out),
                 "--steps", "1", "--crop", "16"]) == 2
    err = capsys.readouterr().err
    assert "--data: the samples have 2 channels but family 'default' (--microscope) has 3" in err
    assert not out.exists()
    # Default-family RGB data for paper-rgb (three planes): same count, another family -> a warning.
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--model", "mean", "--data", str(tiny_dataset), "--val", str(tiny_dataset),
                              "--microscope", "paper-rgb", "--out", str(out), "--crop", "16"])
    with pytest.warns(UserWarning, match="was built for family default but --microscope is 'paper-rgb'"):  # --data, --val
        train_cli.datasets(args)


def test_train_cli_warns_when_validation_is_training_data_and_when_a_run_failed(tiny_dataset, tmp_path):
    from chromaqpi.cli.main import main

    with pytest.warns(UserWarning) as caught:
        assert main(["train", "--model", "mean", "--data", str(tiny_dataset), "--val", str(tiny_dataset),
                     "--out", str(tmp_path / "run"), "--steps", "1", "--crop", "16", "--batch-size", "2",
                     "--width", "8", "--levels", "2", "--blocks", "1", "--lr", "1e30"]) == 0
    messages = [str(w.message) for w in caught]
    assert any("with --data: validation scores training samples" in m for m in messages)
    assert any("the model did not learn phase" in m for m in messages)  # one step at lr 1e30: MAE ~1e28 rad
    from chromaqpi.models.registry import family_envelope, read_card

    card = read_card(tmp_path / "run" / "checkpoints" / "last")  # the family's envelope, as shipped cards have
    assert card["microscope"] == {"family": "default", **family_envelope("default")}
