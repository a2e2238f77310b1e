"""Shard building: determinism, worker independence, resume after a crash, checksums, contents."""

import json
import zipfile

import numpy as np
import pytest
import torch

from chromaqpi.datasets.build import build_dataset
from chromaqpi.datasets.shards import read_manifest, sha256_file, verify_dataset
from chromaqpi.datasets.torch_data import OnTheFlyDataset, ShardDataset
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope
from chromaqpi.optics.simulator import simulate


def _shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*.npz"))}


class _Crash(RuntimeError):
    pass


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tiny_dataset, tmp_path, tiny):
    again = tmp_path / "again"
    build_dataset(None, "default", out_dir=again, workers=2, **tiny)  # spawned workers
    assert _shard_bytes(again) == _shard_bytes(tiny_dataset)
    other = tmp_path / "other"
    build_dataset(None, "default", out_dir=other, workers=1, **{**tiny, "seed": tiny["seed"] + 1})
    assert all(a != b for a, b in zip(_shard_bytes(other).values(), _shard_bytes(tiny_dataset).values()))


def test_resume_after_interrupted_build(tiny_dataset, tmp_path, tiny):
    root = tmp_path / "resumed"
    seen = []

    def crash_after_first(entry):
        seen.append(entry["file"])
        raise _Crash("simulated kill")

    with pytest.raises(_Crash):
        build_dataset(None, "default", out_dir=root, workers=1, on_shard=crash_after_first, **tiny)
    manifest = read_manifest(root)
    assert not manifest["complete"] and sum(bool(s["sha256"]) for s in manifest["shards"]) == 1
    with pytest.raises(InputError, match="incomplete"):
        ShardDataset(root)
    # a SIGKILL mid-write leaves the temporary file of atomic_write behind, and a shard
    # that landed after the manifest was last written is not vouched for
    (root / ".shard-00001.npz.abc123.tmp").write_bytes(b"partial")
    (root / "shard-00002.npz").write_bytes(b"garbage from an unrecorded write")

    recorded = []
    build_dataset(None, "default", out_dir=root, workers=1, on_shard=lambda e: recorded.append(e["file"]), **tiny)
    assert seen == ["shard-00000.npz"] and recorded == ["shard-00001.npz", "shard-00002.npz"]
    assert not list(root.glob("*.tmp")) and not list(root.glob(".*tmp"))
    assert verify_dataset(root)["complete"]
    assert _shard_bytes(root) == _shard_bytes(tiny_dataset)


def test_rerun_of_a_complete_build_recomputes_nothing(tiny_dataset, tiny):
    calls = []
    build_dataset(None, "default", out_dir=tiny_dataset, workers=1, on_shard=calls.append, **tiny)
    assert calls == []


def test_resume_with_other_arguments_is_refused(tiny_dataset, tiny):
    with pytest.raises(ConfigError, match="seed"):
        build_dataset(None, "default", out_dir=tiny_dataset, workers=1, **{**tiny, "seed": 99})


def test_corrupt_shard_is_named(tiny_dataset, tmp_path):
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(tiny_dataset, root)
    path = root / "shard-00001.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="shard-00001.npz is corrupt"):
        ShardDataset(root)
    (root / "shard-00002.npz").unlink()
    path.write_bytes(bytes(tiny_dataset.joinpath("shard-00001.npz").read_bytes()))
    with pytest.raises(InputError, match="shard-00002.npz is missing"):
        verify_dataset(root)



def _edit_manifest(root, edit):
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("verify", [True, False])
def test_shard_counts_are_checked_against_the_manifest(tiny_dataset, tmp_path, verify):
    import shutil

    root = tmp_path / "edited"
    shutil.copytree(tiny_dataset, root)
    _edit_manifest(root, lambda m: m["shards"][1].update(count=3))  # the checksums still match
    with pytest.raises(InputError, match=r"^dataset .*: shard shard-00001.npz holds 4 samples but the manifest "
                                         r"counts 3 \(edited manifest or replaced shard\)") as err:
        ShardDataset(root, verify=verify)
    assert "\n" not in str(err.value)
    # a shard replaced by one with fewer samples, its sha256 updated to match
    shutil.rmtree(root)
    shutil.copytree(tiny_dataset, root)
    small = tmp_path / "small"
    build_dataset(None, "default", 2, 32, 11, small, shard_size=2, group_size=2, progress=False)
    shutil.copyfile(small / "shard-00000.npz", root / "shard-00002.npz")
    _edit_manifest(root, lambda m: m["shards"][2].update(sha256=sha256_file(root / "shard-00002.npz")))
    with pytest.raises(InputError, match="shard shard-00002.npz holds 2 samples but the manifest counts 4"):
        ShardDataset(root, verify=verify)


def test_a_truncated_shard_or_a_manifest_that_does_not_tile_is_named_without_verify(tiny_dataset, tmp_path):
    import shutil

    root = tmp_path / "truncated"
    shutil.copytree(tiny_dataset, root)
    path = root / "shard-00001.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cannot read shard .*shard-00001.npz .*truncated or damaged"):
        ShardDataset(root, verify=False)
    shutil.copyfile(tiny_dataset / "shard-00001.npz", path)
    assert len(ShardDataset(root, verify=False)) == 12
    _edit_manifest(root, lambda m: m["shards"][2].update(start=9))
    with pytest.raises(InputError, match="shard shard-00002.npz starts at sample 9 in the manifest, but the shards "
                                         "before it hold 8"):
        ShardDataset(root, verify=False)
    _edit_manifest(root, lambda m: (m["shards"][2].update(start=8), m["config"].update(n=13)))
    with pytest.raises(InputError, match="its shards count 12 samples but the manifest's n is 13"):
        ShardDataset(root, verify=False)

def test_shard_contents_and_manifest(tiny_dataset):
    manifest = verify_dataset(tiny_dataset)
    assert manifest["config"]["n"] == 12 and manifest["channels"] == 3
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 4]
    assert all(sha256_file(tiny_dataset / s["file"]) == s["sha256"] for s in manifest["shards"])
    assert manifest["versions"]["chromaqpi"] and manifest["config"]["family"]["name"] == "default"
    with zipfile.ZipFile(tiny_dataset / "shard-00000.npz") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(tiny_dataset / "shard-00000.npz", allow_pickle=False) as f:
        assert f["input_00000"].dtype == np.float16 and f["input_00000"].shape == (3, 32, 32)
        assert f["phase_00000"].dtype == np.float32 and f["opd_00000"].dtype == np.float32
        assert f["mask_00000"].dtype in (np.uint16, np.int32)
        assert f["index"].tolist() == [0, 1, 2, 3]
        params = json.loads(f["params_00001"].tobytes())
    assert params["index"] == 1 and params["group"] == 0 and params["slot"] == 1
    Microscope.from_dict(params["microscope"])  # the exact microscope, valid


def test_stored_microscope_reproduces_the_image(tmp_path):
    # noiseless build: re-simulating the stored phase with the stored microscope gives the image
    root = tmp_path / "clean"
    build_dataset("cells", "default", 2, 32, 21, root, shard_size=2, group_size=1, noise=False, progress=False)
    ds = ShardDataset(root, augment=False, with_params=True)
    for i in range(2):
        item = ds[i]
        m = Microscope.from_dict(json.loads(item["params"])["microscope"])
        again = simulate(item["target"][0], m, noise=False)[0]
        assert torch.allclose(again, item["input"], atol=2e-3)  # float16 storage


def test_on_the_fly_matches_the_build(tiny_dataset, tiny):
    stored = ShardDataset(tiny_dataset, augment=False)
    stream = OnTheFlyDataset(None, "default", tiny["size"], tiny["seed"], n=4, group_size=tiny["group_size"])
    items = list(stream)
    assert [int(it["index"]) for it in items] == list(range(4))
    for it in items:
        ref = stored[int(it["index"])]
        assert torch.equal(it["target"], ref["target"])
        assert torch.allclose(it["input"], ref["input"], atol=1e-3, rtol=1e-3)


def test_on_the_fly_channel_shift_moves_red_and_blue_only(tiny):
    args = (None, "default", tiny["size"], tiny["seed"])
    plain = list(OnTheFlyDataset(*args, n=8, group_size=tiny["group_size"], with_params=True))
    moved = list(OnTheFlyDataset(*args, n=8, group_size=tiny["group_size"], channel_shift=2.0))
    changed = 0
    for p, m in zip(plain, moved):
        assert torch.equal(p["target"], m["target"]) and torch.equal(p["input"][1], m["input"][1])
        if json.loads(p["params"])["microscope"]["sensor"]["bayer"]:
            assert torch.equal(p["input"], m["input"])
        changed += not torch.equal(p["input"], m["input"])
    assert changed


def test_on_the_fly_workers_split_the_stream():
    ds = OnTheFlyDataset("beads", "paper-2shot", 16, 3, n=10, group_size=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(int(it["index"]) for it in loader) == list(range(10))


def test_held_out_source_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="evaluation"):
        build_dataset("skimage-test", "paper-rgb", 2, 16, 0, tmp_path / "x", progress=False)


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 2**31}, {"n": 0}, {"size": 4}, {"shard_size": 3}])
def test_invalid_arguments_raise(tmp_path, kwargs, tiny):
    args = {**tiny, **kwargs}
    with pytest.raises(ConfigError):
        build_dataset(None, "default", out_dir=tmp_path / "bad", workers=1, **args)
