"""Shared helpers for benchmark scripts: provenance and results files."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# CHROMAQPI_BENCH_RESULTS redirects every results file (the smoke tests write to a temporary folder).
RESULTS = Path(os.environ.get("CHROMAQPI_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} logical cores; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); Python {platform.python_version()}; {platform.system()}")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def timed(fn, *, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def merge_rows(name: str, header: list[str], rows: list[list], key_columns: int) -> tuple[list[list], str]:
    """Put freshly measured ``rows`` into the table of an existing results file (``--update`` runs).

    Rows are grouped by their first ``key_columns`` cells (e.g. model and set): a group that was
    re-run replaces the old group in place, new groups are appended, other old groups are kept.
    Returns the merged rows and a sentence for the body naming the kept groups and the run they
    come from. Without an old file with the same header, returns ``rows`` unchanged.
    """
    path = RESULTS / f"{name}.md"
    lines = path.read_text().splitlines() if path.exists() else []
    head = "| " + " | ".join(header) + " |"
    if head not in lines:
        return rows, ""
    old = []
    for line in lines[lines.index(head) + 2:]:
        if not line.startswith("| "):
            break
        old.append([c.strip() for c in line.strip()[1:-1].split("|")])

    def key(row):
        return tuple(str(c) for c in row[:key_columns])

    fresh = {}
    for row in rows:
        fresh.setdefault(key(row), []).append(row)
    merged, kept, done = [], [], set()
    for row in old:
        k = key(row)
        if k not in fresh:
            merged.append(row)
            if " / ".join(k) not in kept:
                kept.append(" / ".join(k))
        elif k not in done:
            merged += fresh[k]
            done.add(k)
    merged += [r for k, group in fresh.items() if k not in done for r in group]
    if not kept:
        return merged, ""
    info = dict(line[2:].split(": ", 1) for line in lines if line.startswith("- ") and ": " in line)
    earlier = next((line for line in lines if line.startswith(_MERGE_NOTE)), "")
    note = (f"{_MERGE_NOTE} {', '.join(kept)} are kept from the previous run (command {info.get('command', '?')}, "
            f"commit {info.get('commit', '?')}, {info.get('date', '?')}); the others were re-run by the command above."
            + (f" That run's note: {earlier}" if earlier else ""))
    return merged, note


_MERGE_NOTE = "Merged table: the rows for"


def check_same_steps(name: str, phrase: str, update: bool) -> None:
    """Refuse an --update run whose step count differs from the kept rows': one heading (``phrase``,
    e.g. "draws of 10 DDIM steps") labels all of them."""
    path = RESULTS / f"{name}.md"
    if update and path.exists() and phrase not in path.read_text():
        sys.exit(f"{path.name} holds draws of another step count ({phrase!r} not found); re-run every set, "
                 "or pass its --steps")


def model_steps(models: list, steps: int | None) -> int:
    """One DDIM step count for a run: ``steps``, else what the ZMD models' cards recommend (must agree)."""
    from chromaqpi.models.registry import model_for, resolve_steps

    counts = {resolve_steps(model_for("zmd", None, m), steps) for m in models}
    if len(counts) > 1:
        sys.exit(f"the models recommend different step counts {sorted(counts)}; pass --steps")
    return counts.pop() if counts else (steps or 0)


def steps_of_run(sets: list[str], steps: int | None) -> int:
    """:func:`model_steps` of the ZMD models the evaluation sets' presets use (as ``reconstruct`` picks them)."""
    from chromaqpi.datasets.evalsets import get_evalset
    from chromaqpi.microscope import Microscope
    from chromaqpi.models.registry import model_for

    presets = dict.fromkeys(get_evalset(s).microscope for s in sets)
    return model_steps([model_for("zmd", Microscope.from_preset(p)) for p in presets], steps)


def folder_items(folder: str, n: int) -> list[tuple]:
    """(images (1, C, H, W), phase (H, W), microscope) of the first n samples of a shard folder."""
    import json

    from chromaqpi.datasets.torch_data import ShardDataset
    from chromaqpi.microscope import Microscope

    data = ShardDataset(folder, augment=False, with_params=True)
    return [(it["input"][None].float(), it["target"][0].double(),
             Microscope.from_dict(json.loads(it["params"])["microscope"]))
            for it in (data[i] for i in range(min(n, len(data))))]


def write_results(name: str, title: str, body: str) -> Path:
    """Write benchmarks/results/<name>.md with command, machine, date and commit."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    text = (f"# {title}\n\n- command: `{command}`\n- machine: {machine()}\n"
            f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n- commit: {git_commit()}\n\n{body}\n")
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path
