"""`chromaqpi demo` and `chromaqpi evaluate` from the command line: outputs, and options refused before any work."""

import pytest

from chromaqpi.cli.main import main
from chromaqpi.io import read_tiff


def test_demo_with_a_classical_method_writes_figure_table_and_phase(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--methods", "tie", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| tie |" in printed and "without --method (auto) runs mean (model 'default')" in printed
    assert {"sample.png", "comparison.png", "metrics.md", "metrics.csv", "phase_tie.tif",
            "input_flatfielded.tif"} <= {p.name for p in out.iterdir()}
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("method,") and "data residual / noise" in header
    assert "the true phase leaves" in printed
    _, meta = read_tiff(out / "phase_tie.tif")  # self-describing like reconstruct's maps: `measure` reads it as is
    assert meta["unit"] == "rad" and meta["wavelength_um"] == 0.55 and meta["microscope"]["name"] == "default"


@pytest.mark.parametrize("methods, message", [
    ("bogus", "unknown method(s) bogus"),
    ("tie,wotff", "unknown method(s) wotff"),  # a typo is not silently skipped
    ("", "no method given"),
])
def test_demo_refuses_unknown_methods_before_writing(tmp_path, capsys, methods, message):
    out = tmp_path / "demo"
    assert main(["demo", "--methods", methods, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--methods", "tie,bogus"], "unknown method(s) bogus"),
    (["--out", "FILE"], "--out FILE_PATH exists and is not a folder"),
    (["--cache", "FILE"], "--cache FILE_PATH exists and is not a folder"),  # named by its own flag
])
def test_evaluate_refuses_bad_options_before_building_the_set(tmp_path, capsys, extra, message):
    (tmp_path / "FILE").write_text("x")
    args = {"--out": str(tmp_path / "out"), "--cache": str(tmp_path / "cache")}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = str(tmp_path / value) if value == "FILE" else value
    argv = ["evaluate", "--set", "paper-2shot-test", "--n", "1", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("FILE_PATH", str(tmp_path / "FILE")) in err and err.count("\n") == 1
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
