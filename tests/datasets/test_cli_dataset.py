"""``chromaqpi dataset build|verify|preview`` end to end on a tiny dataset."""

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
