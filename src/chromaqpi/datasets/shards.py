"""Shard files and the dataset manifest.

Layout of a dataset folder::

    manifest.json          sources, family ranges, seeds, counts, versions, per-shard sha256
    shard-00000.npz        samples [0, shard_size)
    shard-00001.npz        ...

A shard is a standard compressed ``.npz`` (``np.load(path, allow_pickle=False)`` reads
it) with one set of members per sample, so a loader decompresses only the sample it
needs. For local sample ``j`` (zero-padded to 5 digits):

============== ================= ======================================================
member         dtype, shape      content
============== ================= ======================================================
``input_j``    float16 (C,H,W)   normalised camera image(s), empty field = 1
``phase_j``    float32 (H,W)     true phase (rad) at the microscope's reference wavelength
``opd_j``      float32 (H,W)     optical path difference (µm)
``mask_j``     uint16/int32 (H,W) object labels, 0 = background (all 0 without a mask)
``params_j``   uint8 (bytes,)    UTF-8 JSON: index, seeds, source, its meta, the exact
                                 microscope (``Microscope.to_dict()``)
``index``      int64 (N,)        dataset indices of the shard's samples
``has_mask``   bool (N,)         whether each sample's source provides labels
============== ================= ======================================================

JSON is stored as bytes, never as pickled objects. Shards are written with fixed zip
timestamps (``np.savez_compressed`` stamps the current time), so the same seed gives
byte-identical shards and their sha256 can be compared across machines.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from chromaqpi.errors import InputError
from chromaqpi.io import atomic_write, write_json

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "shard_name", "encode_group", "write_shard", "sha256_file",
           "npz_bytes", "write_npz",
           "read_manifest", "write_manifest", "verify_dataset", "check_shard_counts", "shard_sample_count",
           "ShardReader", "json_to_array", "array_to_json"]

MANIFEST = "manifest.json"
FORMAT = "chromaqpi-dataset"
FORMAT_VERSION = 1
# Zip's earliest representable time: a fixed stamp keeps shard bytes reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Float images compress little beyond level 1; higher levels only cost time.
_COMPRESS_LEVEL = 1


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard-{k:05d}.npz"


def json_to_array(obj: Any) -> np.ndarray:
    """A JSON-serialisable object as a uint8 array of UTF-8 bytes (no pickles)."""
    return np.frombuffer(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)


def array_to_json(arr: np.ndarray) -> Any:
    """Inverse of :func:`json_to_array`."""
    return json.loads(np.asarray(arr, dtype=np.uint8).tobytes().decode("utf-8"))


def _mask_dtype(mask: np.ndarray):
    return np.uint16 if mask.size == 0 or (mask.min() >= 0 and mask.max() < 2**16) else np.int32


def encode_group(result) -> dict[str, np.ndarray]:
    """Arrays of one :class:`~chromaqpi.datasets.generate.GroupResult`, keyed by dataset index."""
    images = result.input.detach().cpu().numpy().astype(np.float16)
    out = {}
    for b, index in enumerate(result.indices):
        mask = result.mask[b].numpy()
        out[int(index)] = {
            "input": images[b], "phase": result.phase[b].detach().cpu().numpy().astype(np.float32),
            "opd": result.opd[b].numpy().astype(np.float32), "mask": mask.astype(_mask_dtype(mask)),
            "has_mask": bool(result.has_mask[b]), "params": result.params[b],
        }
    return out


def npz_bytes(members: dict[str, np.ndarray]) -> bytes:
    """Deterministic compressed ``.npz`` bytes of named arrays (no pickles, fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as zf:
        for name, arr in members.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=_COMPRESS_LEVEL)
    return buffer.getvalue()


def write_npz(path, members: dict[str, np.ndarray]) -> str:
    """Write :func:`npz_bytes` to ``path`` atomically (temporary file + rename); return the sha256."""
    data = npz_bytes(members)
    with atomic_write(path) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def _shard_members(samples: list[dict]) -> dict[str, np.ndarray]:
    members: dict[str, np.ndarray] = {}
    for j, s in enumerate(samples):
        for key in ("input", "phase", "opd", "mask"):
            members[f"{key}_{j:05d}"] = s[key]
        members[f"params_{j:05d}"] = json_to_array(s["params"])
    members["index"] = np.array([s["params"]["index"] for s in samples], dtype=np.int64)
    members["has_mask"] = np.array([s["has_mask"] for s in samples], dtype=bool)
    return members


def write_shard(path, samples: list[dict]) -> str:
    """Write samples to ``path`` atomically (temporary file + rename); return its sha256."""
    return write_npz(path, _shard_members(samples))


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ manifest
def read_manifest(root) -> dict:
    """Load ``root/manifest.json``; InputError if missing or not a chromaqpi dataset."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise InputError(f"{root} is not a chromaqpi dataset ({MANIFEST} not found)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a chromaqpi dataset manifest")
    # Builds, readers and verify index into these entries: a damaged manifest must fail here, in one line.
    problem = _structure_problem(manifest)
    if problem:
        raise InputError(f"{path}: {problem} (damaged manifest)")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{path} has format version {manifest['format_version']}; this chromaqpi reads "
                         f"<= {FORMAT_VERSION}: upgrade chromaqpi")
    return manifest


def _structure_problem(manifest: dict) -> str | None:
    """What is missing or mistyped among the entries every manifest this package writes has."""
    config, shards = manifest.get("config"), manifest.get("shards")
    if not isinstance(config, dict):
        return "'config' is missing or not an object"
    if not isinstance(config.get("n"), int) or not (isinstance(config.get("shape"), list)
                                                     and len(config["shape"]) == 2):
        return "'config' lacks an integer 'n' or a two-entry 'shape'"
    if not isinstance(manifest.get("channels"), int):
        return "'channels' is missing or not an integer"
    if not (isinstance(shards, list) and all(isinstance(s, dict) for s in shards)):
        return "'shards' is not a list of shard entries"
    for s in shards:
        if not (isinstance(s.get("file"), str) and isinstance(s.get("start"), int)
                and isinstance(s.get("count"), int)):
            return "a shard entry lacks its 'file', 'start' or 'count'"
    return None


def write_manifest(root, manifest: dict) -> None:
    """Write ``root/manifest.json`` atomically."""
    write_json(Path(root) / MANIFEST, manifest)


def verify_dataset(root, *, require_complete: bool = True) -> dict:
    """Check that every shard in the manifest exists, matches its sha256 and holds the samples its
    entry counts (:func:`check_shard_counts`).

    Returns the manifest. Raises InputError naming the first missing, corrupt or miscounted
    shard, or an incomplete build (when ``require_complete``).
    """
    root = Path(root)
    manifest = read_manifest(root)
    if require_complete and not manifest.get("complete"):
        total = (manifest.get("config") or {}).get("n")
        raise InputError(f"dataset {root} is incomplete ({_done(manifest)} of {total} samples): "
                         "resume it by running the same 'chromaqpi dataset build' command again")
    for shard in manifest["shards"]:
        if shard.get("sha256") is None:
            continue
        path = root / shard["file"]
        if not path.is_file():
            raise InputError(f"dataset {root}: shard {shard['file']} is missing; rebuild it by re-running the build")
        digest = sha256_file(path)
        if digest != shard["sha256"]:
            raise InputError(f"dataset {root}: shard {shard['file']} is corrupt (sha256 {digest[:12]}... != "
                             f"manifest {shard['sha256'][:12]}...); delete it and re-run the build to regenerate it")
    check_shard_counts(root, manifest)
    return manifest


def shard_sample_count(path) -> int:
    """Samples in a shard: the length of its ``index`` member, read from that member's ``.npy`` header
    (no sample is decompressed). InputError if the file is not a readable shard (e.g. truncated)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open("index.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape = read_header(f)[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"cannot read shard {path} ({exc}): truncated or damaged; delete it and re-run "
                         "the build to regenerate it") from None
    if len(shape) != 1:
        raise InputError(f"shard {path}: its index has shape {shape}, not (samples,) (damaged shard)")
    return int(shape[0])


def check_shard_counts(root, manifest: dict) -> None:
    """Each written shard must hold the number of samples its manifest entry counts, and the entries
    must tile the dataset (each ``start`` the sum of the counts before it; all of them ``n`` once
    complete). Cheap: only the shards' index headers are read. InputError naming the first mismatch."""
    root, expected_start = Path(root), 0
    for shard in manifest["shards"]:
        name, count = shard["file"], shard["count"]
        if shard["start"] != expected_start:
            raise InputError(f"dataset {root}: shard {name} starts at sample {shard['start']} in the manifest, "
                             f"but the shards before it hold {expected_start} (edited or damaged manifest)")
        expected_start += count
        if shard.get("sha256") is None:  # not written yet (an incomplete build)
            continue
        path = root / name
        if not path.is_file():
            raise InputError(f"dataset {root}: shard {name} is missing; rebuild it by re-running the build")
        actual = shard_sample_count(path)
        if actual != count:
            raise InputError(f"dataset {root}: shard {name} holds {actual} samples but the manifest counts {count} "
                             "(edited manifest or replaced shard); re-run the build to regenerate it")
    n = manifest["config"]["n"]
    if manifest.get("complete") and expected_start != n:
        raise InputError(f"dataset {root}: its shards count {expected_start} samples but the manifest's n is {n} "
                         "(edited or damaged manifest)")


def _done(manifest: dict) -> int:
    return sum(s["count"] for s in manifest.get("shards", []) if s.get("sha256"))


class ShardReader:
    """Lazy per-sample access to one shard (opened on first use, per process).

    Parameters
    ----------
    path : the shard file.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._npz = None
        self._pid = None

    def _file(self):
        import os

        # An open zip handle must not be shared across forked DataLoader workers.
        if self._npz is None or self._pid != os.getpid():
            try:
                self._npz = np.load(self.path, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise InputError(f"cannot read shard {self.path}: {exc}") from None
            self._pid = os.getpid()
        return self._npz

    def __len__(self) -> int:
        return int(self._file()["index"].shape[0])

    def sample(self, j: int, *, with_params: bool = True) -> dict:
        """Local sample ``j`` as numpy arrays (see the module docstring for keys)."""
        f = self._file()
        try:
            out = {key: f[f"{key}_{j:05d}"] for key in ("input", "phase", "opd", "mask")}
            out["has_mask"] = bool(f["has_mask"][j])
            out["index"] = int(f["index"][j])
            if with_params:
                out["params"] = array_to_json(f[f"params_{j:05d}"])
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, zlib.error) as exc:  # zlib: corrupt deflate data
            raise InputError(f"shard {self.path}: cannot read sample {j} ({exc})") from None
        return out

    def params(self, j: int) -> dict:
        """The JSON parameters of local sample ``j`` (cheap: no image is decompressed)."""
        return array_to_json(self._file()[f"params_{j:05d}"])

    def close(self) -> None:
        if self._npz is not None:
            self._npz.close()
            self._npz = None

    def __getstate__(self):
        # Pickled into DataLoader workers (multiprocessing, not storage): drop the handle.
        return {"path": self.path, "_npz": None, "_pid": None}
