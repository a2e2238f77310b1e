"""Helpers shared by subcommands: input discovery, output folders, progress."""

from __future__ import annotations

from pathlib import Path

from chromaqpi.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"}


def collect_inputs(items: list[str]) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of image files."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise InputError(f"input not found: {path}")
    return paths


def output_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def progress(items, *, desc: str, disable: bool | None = None):
    """tqdm progress bar, shown only for more than one item."""
    from tqdm.auto import tqdm

    items = list(items)
    return tqdm(items, desc=desc, disable=len(items) < 2 if disable is None else disable, unit="img")
