"""``chromaqpi dataset build|verify|preview`` end to end on a tiny dataset."""

import json
import struct
import zipfile

import pytest

from chromaqpi.cli.main import main


def test_build_verify_preview(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["dataset", "build", "--source", "beads:1,rbc(n_objects=[1,3]):1", "--microscope", "default", "--n", "4",
            "--size", "24", "--seed", "5", "--out", str(out), "--workers", "1", "--shard-size", "4", "--quiet"]
    assert main(args) == 0
    assert main(["dataset", "verify", str(out)]) == 0
    assert "checksums match" in capsys.readouterr().out
    png = tmp_path / "preview.png"
    assert main(["dataset", "preview", str(out), "--out", str(png), "--count", "3"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["dataset", "verify", str(tmp_path)]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    args = ["dataset", "build", "--source", "nosuch", "--n", "2", "--seed", "0", "--out", str(tmp_path / "x")]
    assert main(args) == 2
    assert "unknown phase source" in capsys.readouterr().err


def test_dry_run_prints_the_first_microscope_and_builds_nothing(tmp_path, capsys):
    out = tmp_path / "dry"
    args = ["dataset", "build", "--microscope", "paper-2shot", "--n", "8", "--seed", "1", "--out", str(out), "--dry-run"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "skimage-train" in text and "gaussian_std" in text and not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--shard-size", "0"], "--shard-size (shard_size) must be a positive multiple"),  # was a ZeroDivisionError
    (["--n", "0"], "--n (n) must be a positive integer"),
    (["--size", "7"], "--size (size) must be >= 8 pixels"),
    (["--group-size", "0"], "--group-size (group_size) must be >= 1"),
    (["--workers", "-1"], "--workers (workers) must be an integer >= 0"),  # was a silent in-process build
    (["--out", "FILE"], "exists and is not a folder"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_dry_run_refuses_what_a_build_would_refuse(tmp_path, capsys, extra, message, dry):
    (tmp_path / "FILE").write_text("x")
    extra = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    args = ["dataset", "build", "--microscope", "paper-2shot", "--n", "8", "--seed", "1", "--out",
            str(tmp_path / "dry"), "--quiet", *(["--dry-run"] if dry else []), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "dry").exists() and (tmp_path / "FILE").read_text() == "x"


def _fake_dataset(root, shards=None):
    """A one-sample dataset written by hand (no build): manifest plus a shard of float16 zeros."""
    import numpy as np

    root.mkdir()
    np.savez_compressed(root / "shard-00000.npz", input_00000=np.zeros((3, 8, 8), np.float16),
                        phase_00000=np.zeros((8, 8), np.float32), opd_00000=np.zeros((8, 8), np.float32),
                        mask_00000=np.zeros((8, 8), np.uint16), index=np.zeros(1, np.int64),
                        has_mask=np.zeros(1, bool))
    manifest = {"format": "chromaqpi-dataset", "format_version": 1, "complete": True, "channels": 3,
                "config": {"n": 1, "shape": [8, 8]},
                "shards": [{"file": "shard-00000.npz", "start": 0, "count": 1}] if shards is None else shards}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize("manifest, message", [
    ("[1]", "not a chromaqpi dataset manifest"),
    (None, "'shards' is not a list"),
])
def test_damaged_manifest_is_a_one_line_error(tmp_path, capsys, manifest, message):
    root = _fake_dataset(tmp_path / "ds", shards="x")
    if manifest is not None:
        (root / "manifest.json").write_text(manifest)
    for args in (["verify", str(root)], ["preview", str(root), "--out", str(tmp_path / "p.png")]):
        assert main(["dataset", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.pop("shards"), "'shards' is not a list"),
    (lambda m: m.pop("config"), "'config' is missing"),
    (lambda m: m["config"].pop("shape"), "two-entry 'shape'"),
    (lambda m: m.pop("channels"), "'channels' is missing"),
    (lambda m: m["shards"][0].pop("start"), "lacks its 'file', 'start' or 'count'"),
])
def test_manifest_missing_an_entry_is_a_one_line_error(tmp_path, capsys, damage, message):
    root = _fake_dataset(tmp_path / "ds")
    manifest = json.loads((root / "manifest.json").read_text())
    damage(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["dataset", "verify", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_preview_of_a_shard_with_corrupt_deflate_data(tmp_path, capsys):
    root = _fake_dataset(tmp_path / "ds")
    shard = root / "shard-00000.npz"
    with zipfile.ZipFile(shard) as z:
        offset = z.getinfo("input_00000.npy").header_offset
    data = bytearray(shard.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[offset + 26:offset + 30])
    data[offset + 30 + name_len + extra_len] = 0xFF  # deflate block type 3: "invalid block type"
    shard.write_bytes(bytes(data))
    assert main(["dataset", "preview", str(root), "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot read sample 0" in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


def test_preview_out_must_be_a_file_in_an_existing_folder(tmp_path, capsys):
    root = _fake_dataset(tmp_path / "ds")
    for out, message in ((tmp_path, "is a folder"), (tmp_path / "missing" / "p.png", "not an existing folder")):
        assert main(["dataset", "preview", str(root), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
