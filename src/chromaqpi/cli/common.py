"""Helpers shared by subcommands: input discovery, output folders, progress."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from chromaqpi.errors import InputError, MethodError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"}


def collect_inputs(items: list[str], *, suffixes=IMAGE_SUFFIXES, prefer_end: str = "",
                   skip_ends: tuple[str, ...] = ()) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of image files.

    A folder gives its files with one of ``suffixes``; with ``prefer_end``, only those whose stem
    ends with it when it has any (``measure`` takes a reconstruct output folder's ``*_phase.tif``,
    not its OPD or previews, and any other folder's phase maps); never those whose stem ends with
    one of ``skip_ends`` (``reconstruct`` writing into its input folder must not read its outputs
    back on the next run). Outputs are named after the stem without ``prefer_end``; two inputs
    that would share it are refused.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes
                           and not (skip_ends and p.stem.endswith(skip_ends)))
            preferred = [p for p in found if prefer_end and p.stem.endswith(prefer_end)]
            if not found:
                raise InputError(f"no images ({', '.join(sorted(suffixes))}) in folder {path}")
            paths.extend(preferred or found)
        elif path.is_file():
            paths.append(path)
        elif path.exists():  # /dev/null, a pipe: exists, but holds no image to read
            raise InputError(f"input {path} is not a regular file (a device, pipe or socket)")
        else:
            raise InputError(f"input not found: {path}")
    _check_distinct_stems(paths, prefer_end)
    unique: dict[Path, Path] = {}
    for p in paths:  # a file named twice (or through a folder and by name) runs once
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _check_distinct_stems(paths: list[Path], drop_end: str = "") -> None:
    # Outputs are named after the input's stem: a.png and a.tif (or two folders' a.tif) would overwrite each other.
    seen: dict[str, Path] = {}
    for p in paths:
        stem = p.stem.removesuffix(drop_end) if drop_end else p.stem
        if stem in seen and seen[stem].resolve() != p.resolve():
            raise InputError(f"inputs {seen[stem]} and {p} would write the same outputs ({stem}_*); rename one")
        seen.setdefault(stem, p)


@contextmanager
def naming_input(path: Path):
    """Prefix an input or method error with the file it came from (a batch of 100 images needs to say which)."""
    try:
        yield
    except (InputError, MethodError) as exc:
        message = str(exc)
        if path.name in message:
            raise
        raise type(exc)(f"{path}: {message}") from None


# Folders output_dir created in this process, so that a command failing before it writes anything
# leaves no empty folder behind (remove_empty_outputs, called by the CLI's error handler).
_created_dirs: list[Path] = []


def output_dir(path: str, flag: str = "--out") -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out} exists and is not a folder")
    if not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES | {".csv"}:
        # `--out phase.tif` would otherwise create a folder of that name: say what --out is instead.
        raise InputError(f"{flag} {out} looks like a file name; {flag} is the output folder (e.g. {flag} results)")
    missing = [d for d in (out, *out.parents) if not d.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        _created_dirs.extend(missing)  # deepest first
    except OSError as exc:  # a parent is a file, or not writable
        raise InputError(f"{flag} {out}: cannot create folder ({exc.strerror})") from None
    if not _writable(out):
        raise InputError(f"{flag} {out}: folder is not writable")
    return out


def output_files(out: Path, stem: str, names: list[str]) -> dict[str, Path]:
    """The files one input writes, ``name -> out/<stem>_<name>``, checked before its work.

    None may be a folder, so a failure cannot leave part of an input's outputs behind.
    """
    paths = {name: out / f"{stem}_{name}" for name in names}
    for path in paths.values():
        if path.is_dir():
            raise InputError(f"output {path} is a folder; remove it or choose another --out")
    return paths


@contextmanager
def writing_together(outputs: dict[str, Path]):
    """Write one input's outputs as a set: if any write fails (a full disk), the ones this block already
    wrote are removed, so no input is left with part of its files; an error names the folder."""
    before = {path: _stamp(path) for path in outputs.values()}
    try:
        yield
    except BaseException as exc:
        for path, stamp in before.items():
            if _stamp(path) != stamp:
                path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:  # e.g. tifffile's short write on a full disk
            folder = next(iter(outputs.values())).parent
            reason = "no space left on device" if shutil.disk_usage(folder).free < 1 << 20 else exc.strerror or exc
            raise OSError(exc.errno, f"{reason}; this input's outputs were not written", str(folder)) from exc
        raise


def _stamp(path: Path):
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size, st.st_ino
    except FileNotFoundError:
        return None


def remove_empty_outputs() -> None:
    """Remove the folders output_dir created that are still empty (deepest first)."""
    for folder in _created_dirs:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone
            pass
    _created_dirs.clear()


def output_file(path: str, *, suffix: str | None = None) -> Path:
    """An output file path whose folder exists and is writable (checked before any work is done).

    ``suffix``: the extension it must have (``".toml"``), so that a slip of the keyboard cannot
    write over an input image or a dataset's manifest.
    """
    out = Path(path)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name")
    if suffix is not None and out.suffix.lower() != suffix:
        raise InputError(f"--out {out}: expected a {suffix} file name")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: {out.parent} is not an existing folder")
    if not _writable(out.parent):
        raise InputError(f"--out {out}: folder {out.parent} is not writable")
    return out


def _writable(folder: Path) -> bool:
    # Checked before the work, not at the first write (outputs are temp files created in the folder).
    return os.access(folder, os.W_OK | os.X_OK)


def method_list(text: str) -> list[str]:
    """The comma-separated ``--methods``, each a known method (checked before any work or output)."""
    import chromaqpi
    from chromaqpi.errors import ConfigError

    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = chromaqpi.list_methods()
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        what = f"unknown method(s) {', '.join(unknown)}" if unknown else "no method given"
        raise ConfigError(f"--methods {text!r}: {what}; choose from {', '.join(known)}")
    return methods


@contextmanager
def naming_flags(flags: dict[str, str]):
    """Report a ConfigError about a config key under the flag that set it: ``--steps (schedule.steps) ...``.

    ``flags`` maps the leading words of a message (the key as the library names it) to the flag the
    user typed; pass only the flags actually given, so a value from a --config file keeps its key.
    """
    from chromaqpi.errors import ConfigError

    try:
        yield
    except ConfigError as err:
        message = str(err)
        for key, flag in flags.items():
            rest = message[len(key):]
            if message.startswith(key) and rest[:1] in (" ", ":"):  # the whole key, not a longer name
                raise ConfigError(f"{flag} ({key.replace(': ', '.')}){rest}") from None
        raise


def progress(items, *, desc: str, disable: bool | None = None):
    """tqdm progress bar, shown only for more than one item."""
    from tqdm.auto import tqdm

    items = list(items)
    return tqdm(items, desc=desc, disable=len(items) < 2 if disable is None else disable, unit="img")
