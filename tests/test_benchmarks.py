"""Smoke runs of every benchmark script with tiny arguments, so none rots unnoticed.

Each script runs as the README says (``python benchmarks/<script>.py ...``) in a fresh
process, with its results folder and the evaluation-set cache redirected to a temporary
directory (``CHROMAQPI_BENCH_RESULTS``, ``CHROMAQPI_CACHE``): the committed results are
never touched. The checks are on structure (exit code, provenance lines, table rows), not
on the numbers, which at these sizes mean nothing.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chromaqpi.datasets.build import build_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, CHROMAQPI_BENCH_RESULTS=str(root / "results"), CHROMAQPI_CACHE=str(root / "cache"))
    return root, env


@pytest.fixture(scope="module")
def val_shard(tmp_path_factory):
    """A 4-sample paper-2shot shard at 64 px (stands in for the validation shards)."""
    root = tmp_path_factory.mktemp("val")
    build_dataset("textures", "paper-2shot", 4, 64, 3, root, shard_size=4, group_size=4, progress=False)
    return root


def run_bench(env, script: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, script, *args], cwd=BENCH, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def results_text(root: Path, name: str) -> str:
    text = (root / "results" / f"{name}.md").read_text()
    for line in ("- command: `python ", "- machine: ", "- date: ", "- commit: "):
        assert line in text
    return text


CASES = {
    "accuracy": ("bench_accuracy.py", ["--n", "1", "--sets", "paper-2shot-test", "--quick", "--steps", "2",
                                       "--skip", "iterative,wotf"], ["| tie |", "| mean |", "| zmd |"]),
    "uncertainty": ("bench_uncertainty.py", ["--n", "1", "--draws", "2", "--steps", "2",
                                             "--sets", "paper-2shot-test"], ["paper-2shot-test"]),
    "data-fit": ("bench_data_fit.py", ["--n", "1", "--sets", "paper-2shot-test", "--steps", "2"],
                 ["| paper-2shot-test | truth |", "| paper-2shot-test | pixel size 0.8x | mean |"]),
    "orientations-test": ("bench_orientations.py", ["--sets", "paper-2shot-test", "--n", "1", "--steps", "2"],
                          ["| zmd-mean4, 4 views |", "| mean, 8 views |"]),
    "steps-test": ("bench_steps.py", ["--sets", "paper-2shot-test", "--n", "1", "--steps", "2"], ["| zmd 2 |"]),
    "inference-default-1threads": ("bench_inference.py", ["--steps", "1", "--big", "0"], ["| zmd | 1 |"]),
    "classical": ("bench_classical.py", ["--n", "1", "--sets", "paper-2shot-test", "--iters", "2,3",
                                         "--no-peer"], ["paper-2shot-test"]),
    "fit-memory": ("bench_fit_memory.py", ["--sizes", "32", "--iterations", "1"], ["| 32 | recomputed |"]),
    "simulator": ("bench_simulator.py", ["--samples", "1", "--default-repeat", "1", "--default-sizes", "32"],
                  ["| 32x32 |"]),
    "dataset": ("bench_dataset.py", ["--n-build", "2", "--draws", "1", "--phantoms", "1"],
                ["## 2. Build speed", "DataLoader workers"]),
    "microscopes": ("bench_microscopes.py", ["--n", "1", "--size", "64", "--steps", "1", "--classes",
                                             "family,10x-0.25"], ["| family | 0/1 |", "| 10x-0.25 | 1/1 |"]),
    "misregistration": ("bench_misregistration.py", ["--n", "1", "--size", "64", "--steps", "1", "--shifts", "0,1",
                                                     "--lateral-colour", "1", "--declared"],
                        ["| 0 |", "| 1 |", "| ±1 % |", "| 1, declared |", "| ±1 %, declared |"]),
    "colour-matrix": ("bench_colour_matrix.py", ["--n", "1", "--size", "64", "--steps", "1", "--saturation", "1"],
                      ["| camera's own channels |", "| s = 1, ignored |", "| s = 1, declared |",
                       "| s = 1, declared, not clipped |", "condition numbers"]),
    "illumination": ("bench_illumination.py", ["--n", "1", "--size", "64", "--steps", "1", "--condenser", "2",
                                               "--lamp=-500"],
                     ["| NA x 2 |", "| NA x 2, told |", "| -500 K, told |", "| white LED, told |"]),
    "jpeg": ("bench_jpeg.py", ["--n", "1", "--size", "64", "--steps", "1", "--qualities", "90"],
             ["| float |", "| PNG 8-bit |", "| JPEG q90 4:4:4 |", "| JPEG q90 4:2:0 |"]),
    "sharpening": ("bench_sharpening.py", ["--n", "1", "--size", "64", "--steps", "1", "--radii", "1", "--amounts", "1"],
                   ["| none |", "| RGB r1 x1 |", "| luma r1 x1 |"]),
    "noise-reduction": ("bench_noise_reduction.py", ["--n", "1", "--size", "64", "--steps", "1", "--chroma", "2",
                                                     "--luma", "1"], ["| none |", "| chroma σ2 |", "| luma σ1 |"]),
    "linearity-default": ("bench_linearity.py", ["--sigmas", "1", "--peaks", "1", "--seeds", "1", "--size", "64",
                                                  "--steps", "1"],
                          ["| 1 | 1 | none |", "| 1 | 1 | noise x1 |", "gain zmd", "mass tie"]),
    "tone-curve": ("bench_tone_curve.py", ["--n", "1", "--size", "64", "--steps", "1"],
                   ["| linear camera |", "| filmic, read as linear |", "| log, fitted response |",
                    "| log, exact inverse |", "fitted effective gamma"]),
    "absorption": ("bench_absorption.py", ["--n", "1", "--size", "64", "--steps", "1", "--ratios", "0,0.1"],
                   ["| 0 |", "| 0.1 |", "wotf:none / pure phase", "a estimate vs true a"]),
    "absorption-independent-eosin-refine2": ("bench_absorption.py", ["--n", "1", "--size", "64", "--steps", "1",
                                                                     "--ratios", "0,0.1", "--pattern", "independent",
                                                                     "--refine", "2", "--stain", "eosin"],
                                             ["| 0.1 |", "second, independent", "mean:refine2 / pure phase",
                                              "coloured by the `eosin` stain", "wotf:alpha1e-3+stain / pure phase",
                                              "iterative:2+absorption+stain / pure phase",
                                              "a estimate, told the stain vs true a"]),
    "absorption-independent-haematoxylin+eosin": ("bench_absorption.py", ["--n", "1", "--size", "64", "--steps", "1",
                                                                          "--ratios", "0,0.1", "--pattern", "independent",
                                                                          "--stain", "haematoxylin+eosin",
                                                                          "--methods", "tie,mean"],
                                                  ["| 0.1 |", "two or more dyes (`haematoxylin`, `eosin`)",
                                                   "mean / pure phase", "flagged coloured by specimen_colour"]),
    "colour": ("bench_colour.py", ["--n", "1", "--val", "1", "--size", "64"],
               ["| transparent | 0 |", "| methylene-blue | 0.05 |", "Validation scenes"]),
    "colour-small-fields": ("bench_colour_small.py", ["--val", "1", "--n", "1", "--first", "13"],  # 64 px
                            ["## Validation scenes", "| methylene-blue | 0.05 | 1 |", "T_small"]),
    "focus-error": ("bench_focus_error.py", ["--n", "1", "--steps", "1", "--shifts", "0,0.2",
                                             "--sets", "paper-2shot-test"], ["| paper-2shot-test | +0.2 |"]),
    "focus-estimate-phase0.5x": ("bench_focus_estimate.py", ["--n", "1", "--shifts", "0.2", "--search", "0.2",
                                                             "--sets", "paper-2shot-test", "--phase-scale", "0.5"],
                                 ["| paper-2shot-test | +0.2 |", "phase multiplied by 0.5"]),
    "drymass": ("bench_drymass.py", ["--n", "1", "--steps", "1", "--data", ""],
                ["| phantoms-test | zmd | 1 |", "median signed, large half"]),
    "transfer": ("bench_transfer.py", ["--sizes", "64", "--repeat", "1", "--threads", "1"], ["| 64x64 |"]),
    "models-shipped": ("bench_models.py", ["--size", "32", "--steps", "1", "--shipped"], ["| zmd |"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_script_runs(bench_env, name):
    root, env = bench_env
    script, args, rows = CASES[name]
    run_bench(env, script, *args)
    text = results_text(root, name)
    for row in rows:
        assert row in text, f"{row!r} missing from {name}.md"


def test_benchmarks_on_validation_shards(bench_env, val_shard):
    root, env = bench_env
    run_bench(env, "bench_refine_starts.py", "--data", str(val_shard), "--n", "1", "--steps", "2")
    assert "both starts, lower objective" in results_text(root, "refine_starts")
    run_bench(env, "bench_orientations.py", "--data", f"paper-2shot={val_shard}", "--n", "1", "--steps", "2")
    assert "| zmd-mean4, 4 views |" in results_text(root, "orientations")
    run_bench(env, "bench_steps.py", "--data", f"paper-2shot={val_shard}", "--n", "1", "--steps", "2,3")
    assert all(f"| zmd {k} |" in results_text(root, "steps") for k in (2, 3, 25))
    run_bench(env, "bench_temperature.py", "--data", f"paper-2shot={val_shard}", "--n", "1", "--steps", "2",
              "--temperatures", "0,0.5")
    assert all(f"| {row} |" in results_text(root, "temperature")
               for row in ("mean", "zmd T=0", "zmd T=0.5", "zmd T=1", "zmd-mean4 views, T=1"))
    run_bench(env, "bench_tiles.py", "--data", f"{val_shard}:paper-2shot", "--n", "1", "--tiles", "32,64",
              "--methods", "mean")
    assert "| 64 (one pass) |" in results_text(root, "tiles")
    run_bench(env, "bench_refine.py", "--data", f"paper-2shot={val_shard}", "--n", "1", "--iterations", "2")
    assert "| zmd+refine2 |" in results_text(root, "refine")
    run_bench(env, "bench_auto.py", "--data", f"paper-2shot={val_shard}", "--n", "1")
    assert "| paper-2shot | planes x1.5 (±1.5 µm) | yes | mean (paper-2shot) |" in results_text(root, "auto")
    proc = subprocess.run([sys.executable, "bench_drymass.py", "--sets", "", "--data", str(val_shard)], cwd=BENCH,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no source has labelled scenes" in proc.stderr  # textures carry no labels


def test_update_runs_merge_rows_by_group(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        import _common
    finally:
        sys.path.remove(str(BENCH))
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    header = ["model", "set", "row", "value"]
    old = [["default", "a", "mean", "1"], ["default", "a", "zmd", "2"], ["paper", "b", "zmd", "3"]]
    (tmp_path / "t.md").write_text("# t\n\n- command: `python old.py`\n- commit: abc123\n- date: 2026-12-04 10:00\n\n"
                                   "Text.\n\n" + _common.markdown_table(header, old) + "\n")
    rows, note = _common.merge_rows("t", header, [["default", "a", "zmd", "9"], ["new", "c", "zmd", "7"]], 2)
    assert rows == [["default", "a", "zmd", "9"], ["paper", "b", "zmd", "3"], ["new", "c", "zmd", "7"]]
    assert "paper / b are kept" in note and "abc123" in note and "python old.py" in note
    # a group that was re-run in full keeps nothing old; another header means another table
    assert _common.merge_rows("t", header, old, 2) == (old, "")
    assert _common.merge_rows("t", ["x"], [["1"]], 1) == ([["1"]], "")
    assert _common.merge_rows("missing", header, old, 2) == (old, "")
    # --update keeps rows only under the same step count
    _common.check_same_steps("t", "Text.", update=True)
    _common.check_same_steps("t", "draws of 10 DDIM steps", update=False)
    with pytest.raises(SystemExit, match="another step count"):
        _common.check_same_steps("t", "draws of 10 DDIM steps", update=True)


def test_steps_of_run_follows_the_cards():
    sys.path.insert(0, str(BENCH))
    try:
        import _common
    finally:
        sys.path.remove(str(BENCH))
    from chromaqpi.models.registry import card_steps, load_model

    recommended = card_steps(load_model("default").card)
    assert _common.steps_of_run(["phantoms-test", "natural-test"], None) == recommended
    assert _common.steps_of_run(["phantoms-test"], 7) == 7  # an explicit count wins
    assert _common.steps_of_run([], None) == 0
    assert _common.model_steps(["default", "paper-2shot"], None) == recommended  # the shipped cards agree


def test_absorption_estimate_benchmark_on_a_validation_shard(bench_env, val_shard):
    root, env = bench_env
    run_bench(env, "bench_absorption_estimate.py", "--data", str(val_shard), "--model", "paper-2shot")
    text = results_text(root, "absorption-estimate")
    assert "| 0 (transparent) |" in text and "by phase source" in text
