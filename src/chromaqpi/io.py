"""Image I/O: reading micrographs, writing phase TIFFs with metadata, atomic writes.

Conventions
-----------
* Images in memory are float32, ``(H, W)`` for grayscale or ``(C, H, W)`` for
  colour (channel first, as in the rest of chromaqpi).
* 8- and 16-bit integer files are scaled to [0, 1] by the maximum of their
  dtype (255, 65535) and the bit depth is recorded, nothing else is rescaled:
  a 12-bit camera image stored in 16-bit words therefore tops out near 1/16.
  Floating-point files are kept as they are.
* Every file this module writes is written atomically (:func:`atomic_write`):
  a crash or an exception never leaves a partial output behind.
* Problems with the user's files raise :class:`chromaqpi.errors.InputError`
  with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from chromaqpi.errors import ConfigError, InputError, is_number

IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff",
                  ".tiff": "tiff", ".npy": "npy"}
# A few clipped highlights are harmless; a clipped background breaks flat-fielding.
MAX_SATURATED_FRACTION = 0.01

# IEC 61966-2-1 (sRGB) transfer-function constants.
_SRGB_LINEAR_MAX = 0.0031308  # linear value where the encode curve switches branch
_SRGB_CODE_MAX = 0.04045  # encoded value where the decode curve switches branch
_SRGB_SLOPE = 12.92
_SRGB_A = 0.055
_SRGB_GAMMA = 2.4


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


_SIBLING_TRIES = 100


def _sibling(dest: Path, suffix: str, create):
    """Create a new, uniquely named entry ``.<dest name>.<random><suffix>`` beside ``dest`` with
    ``create(path)``; return the path and what ``create`` returned."""
    for _ in range(_SIBLING_TRIES):
        candidate = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(dest.parent))


def sibling_temp_file(dest, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new empty file beside ``dest`` (to be renamed onto it), opened for writing.

    Unlike :func:`tempfile.mkstemp` (always 0600) it is created with mode 0666, which the
    kernel reduces by the umask or the folder's default ACL exactly as for a plain
    ``open(dest, "w")``: the renamed output gets the permissions a normal file would have.

    Returns
    -------
    (int, Path)
        The open file descriptor (``O_WRONLY``) and the file's path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    path, fd = _sibling(Path(dest), suffix, lambda candidate: os.open(candidate, flags, 0o666))
    return fd, path


def sibling_temp_dir(dest, suffix: str = ".tmp") -> Path:
    """A new empty folder beside ``dest`` (to be renamed onto it), with the permissions of a plain
    ``mkdir`` (0777 less the umask or default ACL; :func:`tempfile.mkdtemp` gives 0700)."""
    return _sibling(Path(dest), suffix, lambda candidate: os.mkdir(candidate, 0o777))[0]


def _fsync_dir(folder: Path) -> None:
    """Flush a directory entry to disk so a rename survives a power cut (POSIX)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success move it onto ``path``.

    The temporary file lives in the destination folder so that the final
    :func:`os.replace` is an atomic rename on the same file system. It is
    flushed and fsync-ed before the rename. If the ``with`` block raises, the
    temporary file is deleted and ``path`` is left untouched (absent, or its
    previous content).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; its folder must exist.
    mode : {"wb", "w"}, default "wb"
        Binary or text mode.
    encoding : str, optional
        Text encoding (text mode only; default UTF-8).

    Yields
    ------
    file object
        Open handle on the temporary file.

    Examples
    --------
    >>> with atomic_write(tmp_path / "out.txt", "w") as f:  # doctest: +SKIP
    ...     f.write("done")
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    dest = Path(path)
    if dest.is_dir():  # else os.replace fails late, naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(dest))
    fd, tmp = sibling_temp_file(dest)
    try:
        os.close(fd)  # reopen by name: some writers (tifffile) need ``f.name`` to be a path
        with open(tmp, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):  # keep the original error, not a failed clean-up's
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def write_json(path, obj: Any, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON, atomically.

    numpy scalars/arrays, 0-d torch tensors and paths are converted. Non-finite
    floats are written as ``null`` (strict JSON, which other languages' parsers require).
    """
    text = strict_json(obj, indent=indent)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def strict_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text: numpy/torch/path values converted, NaN and Inf as ``null``."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    plain = json.loads(json.dumps(obj, default=_json_default))  # numpy and torch values as Python's
    return json.dumps(finite(plain), indent=indent, allow_nan=False)


def _json_default(obj: Any) -> Any:
    """Convert the non-JSON types we commonly produce (numpy, torch, Path)."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # torch tensors, without importing torch here
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------
# sRGB transfer function
# ---------------------------------------------------------------------------


def _float_array(x) -> np.ndarray:
    """``x`` as a float array; float dtypes kept, anything else as float64."""
    a = np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def srgb_encode(linear) -> np.ndarray:
    """Linear intensity -> sRGB code value (IEC 61966-2-1).

    ``V = 12.92 L`` for ``L <= 0.0031308``, else ``1.055 L^(1/2.4) - 0.055``.
    Negative inputs are mapped odd-symmetrically (``V(-L) = -V(L)``) so noisy
    dark-subtracted data stay finite. Float dtypes are preserved.
    """
    lin = _float_array(linear)
    mag = np.abs(lin)
    power = (1 + _SRGB_A) * np.power(mag, 1 / _SRGB_GAMMA) - _SRGB_A
    code = np.where(mag <= _SRGB_LINEAR_MAX, _SRGB_SLOPE * mag, power)
    return (np.sign(lin) * code).astype(lin.dtype, copy=False)


def srgb_decode(code) -> np.ndarray:
    """sRGB code value -> linear intensity (IEC 61966-2-1).

    ``L = V / 12.92`` for ``V <= 0.04045``, else ``((V + 0.055) / 1.055)^2.4``.
    Negative inputs are mapped odd-symmetrically. Float dtypes are preserved.
    """
    v = _float_array(code)
    mag = np.abs(v)
    power = np.power((mag + _SRGB_A) / (1 + _SRGB_A), _SRGB_GAMMA)
    lin = np.where(mag <= _SRGB_CODE_MAX, mag / _SRGB_SLOPE, power)
    return (np.sign(v) * lin).astype(v.dtype, copy=False)


def check_gamma(gamma) -> None:
    """ConfigError unless ``gamma`` is a camera exponent in [0.1, 10]; a warning above 1, which is
    usually the display's exponent (2.2) given for the camera's (0.45)."""
    if not (is_number(gamma) and 0.1 <= gamma <= 10):
        raise ConfigError(f"gamma must be a number in [0.1, 10] (the camera's exponent, e.g. 0.45), got {gamma!r}")
    if gamma > 1:
        warnings.warn(f"gamma {gamma:g} > 1: a camera writes V = L^gamma with gamma below 1 (e.g. 0.45); "
                      f"{gamma:g} looks like a display's exponent: did you mean {1 / gamma:.3g}?", stacklevel=2)


def gamma_decode(code, gamma: float) -> np.ndarray:
    """Code value of a camera set to ``gamma`` (it wrote ``V = L^gamma``) -> linear ``L = V^(1/gamma)``.

    Flat-fielding does not undo a power law: it divides it through, leaving ``(I/I_empty)^gamma``, whose
    small contrasts (the phase signal) are scaled by ``gamma``. Negative inputs are mapped
    odd-symmetrically. Float dtypes are preserved.
    """
    check_gamma(gamma)
    v = _float_array(code)
    return (np.sign(v) * np.power(np.abs(v), 1 / gamma)).astype(v.dtype, copy=False)


# ---------------------------------------------------------------------------
# Reading images
# ---------------------------------------------------------------------------


def saturated_fraction(arr: np.ndarray, level: float) -> float:
    """Fraction of values (all channels) at or above ``level``."""
    return float(np.count_nonzero(arr >= level)) / max(arr.size, 1)


def _clipping_level(raw: np.ndarray) -> float:
    """Where an 8/16-bit file's sensor clipped, as a fraction of the dtype maximum.

    The dtype maximum, unless the file's own maximum is that of a narrower sensor stored in 16 bits
    (2^k - 1 for a 10-, 12- or 14-bit camera: 4095 in the bundled demo), so that its clipped
    pixels are found too.
    """
    top, full = int(raw.max()), np.iinfo(raw.dtype).max
    return top / full if top in _NARROW_SENSOR_MAX and full == 65535 else 1.0


_NARROW_SENSOR_MAX = {2**k - 1 for k in (10, 12, 14)}
MAX_NEGATIVE_FRACTION = 0.2


def check_light(channel_means, negative_fraction: float, lowest: float, name: str = "images") -> None:
    """Intensities are light: refuse a channel without any, or a stack with many negative values.

    Up to 20 % negative values are tolerated: read noise after a dark-level subtraction, and the
    reference paper's additive noise (up to N(0.2, 0.2)) on dark features (at most 0.6 % of the
    pixels in 128 paper-noise validation samples; training computes TIE priors through the same
    check, so a rare noisy sample must pass). A zero-centred or mis-scaled image has about half.
    """
    if float(np.min(channel_means)) <= 0:
        raise InputError(f"{name}: a channel has no light (mean intensity <= 0); check the exposure or --dark")
    if negative_fraction > MAX_NEGATIVE_FRACTION:
        raise InputError(f"{name}: {negative_fraction:.1%} of the intensities are negative (down to {lowest:.3g}); "
                         "light is >= 0 (empty field = 1): check --dark or the image's scaling")


def _check_shape(arr: np.ndarray, need_channels: int | None, name: str) -> None:
    """Require (H, W) or (C, H, W), with C == need_channels when given."""
    if arr.ndim not in (2, 3):
        raise InputError(f"{name}: expected an (H, W) or (C, H, W) image, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: image is empty (shape {arr.shape})")
    channels = 1 if arr.ndim == 2 else arr.shape[0]
    if need_channels is None or channels == need_channels:
        return
    if channels == 1 and need_channels == 3:
        raise InputError(f"{name}: image is grayscale but an RGB (3-channel) image is needed")
    raise InputError(f"{name}: image has {channels} channel(s) but {need_channels} are needed")


def check_intensity_image(
    arr,
    *,
    need_channels: int | None = None,
    saturation_level: float | None = None,
    max_saturated_fraction: float = MAX_SATURATED_FRACTION,
    name: str = "image",
    allow_constant: bool = False,
) -> None:
    """Validate an intensity image, raising :class:`InputError` on the first problem.

    Parameters
    ----------
    arr : array_like, shape (H, W) or (C, H, W)
        Intensities (any scale).
    need_channels : int, optional
        Required number of channels C (3 for RGB); grayscale counts as 1.
    saturation_level : float, optional
        Value at which the sensor clipped (1.0 for integer files scaled to
        [0, 1]). Unknown for float data, so the saturation check is skipped
        when ``None``.
    max_saturated_fraction : float, default 0.01
        Largest tolerated fraction of values at ``saturation_level``.
    name : str
        Name used in messages (usually the file name).
    allow_constant : bool, default False
        Accept an image whose pixels are all equal (an empty-field frame: it only divides).

    Raises
    ------
    InputError
        Wrong shape or channel count, non-real dtype, NaN/Inf values,
        empty or constant image, too many saturated values.
    """
    a = np.asarray(arr)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name}: unsupported pixel type {a.dtype} (need integer or float)")
    _check_shape(a, need_channels, name)
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise InputError(f"{name}: {bad} NaN/Inf value(s); intensities must be finite")
    if not allow_constant:
        check_contrast(a, name)
    if np.issubdtype(a.dtype, np.floating):
        means = a.reshape(-1, *a.shape[-2:]).mean(axis=(-2, -1))
        check_light(means, float(np.count_nonzero(a < 0)) / a.size, float(a.min()), name)
    if saturation_level is not None:
        frac = saturated_fraction(a, saturation_level)
        if frac > max_saturated_fraction:
            raise InputError(f"{name}: {frac:.1%} of values are saturated (max "
                             f"{max_saturated_fraction:.1%}); reduce exposure or illumination")


def check_contrast(a: np.ndarray, name: str = "image") -> None:
    """Refuse an image whose pixels are all equal, naming that value in ``a``'s own units (a file's counts)."""
    if a.size and np.all(a == a.flat[0]):
        top = f" of {np.iinfo(a.dtype).max}" if np.issubdtype(a.dtype, np.integer) else ""
        raise InputError(f"{name}: image is constant (every pixel reads {a.flat[0]}{top}), no contrast to work "
                         "with (a uniform empty field is a background frame, not a specimen)")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception message, for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    """PNG/JPEG via imageio (the backend of skimage.io) -> (array, axes)."""
    import imageio.v3 as iio

    # Decode from bytes: imageio leaves the file handle open when decoding fails.
    data = path.read_bytes()
    # IHDR: bit depth at byte 24, colour type at 25 (2 RGB, 6 RGBA). Pillow would silently drop 8 of 16 bits.
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[24] == 16 and data[25] in (2, 6):
        raise ValueError("16-bit colour PNG, which Pillow reduces to 8 bits; save it as a 16-bit TIFF")
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        mode = im.mode
    if mode in _NOT_INTENSITIES:
        raise InputError(f"{path.name}: {_NOT_INTENSITIES[mode]}, not camera intensities; save the image as RGB")
    # plugin="pillow": a file Pillow cannot decode is not handed on to legacy plugins (e.g. DICOM).
    arr = np.asarray(iio.imread(data, plugin="pillow"))
    return arr, ("YX" if arr.ndim == 2 else "YXS") + ("A" if mode in ("LA", "RGBA") else "")


# Pillow modes whose values are not the camera's intensities (read as RGB they would give wrong phase).
_NOT_INTENSITIES = {"CMYK": "CMYK colour (a print separation)", "P": "a palette image (colours quantised to a table)",
                    "PA": "a palette image (colours quantised to a table)", "1": "a bilevel (1-bit) image"}
_JPEG_SAMPLING = {1: "4:2:2", 2: "4:2:0"}


def jpeg_chroma_subsampling(path: Path) -> str | None:
    """``"4:2:2"``/``"4:2:0"`` when a colour JPEG stores its colour at reduced resolution, else None."""
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as im:
        if im.format != "JPEG" or im.mode not in ("RGB", "YCbCr"):
            return None
        return _JPEG_SAMPLING.get(JpegImagePlugin.get_sampling(im))


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log lines on damaged files: the caller raises one InputError instead."""
    import logging

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_tifffile(path: Path) -> tuple[np.ndarray, str]:
    """First TIFF series -> (array, axes as tifffile names them, e.g. 'YXS')."""
    import tifffile

    with quiet_tifffile(), tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        arr, axes = series.asarray(), series.axes
        alpha = any(int(e) in (1, 2) for e in getattr(tif.pages[0], "extrasamples", ()))  # (un)associated alpha
    if axes == "QYX" and arr.shape[0] > 4 and arr.shape[-1] <= 4:  # planes saved as (H, W, C) without tags
        axes = "YXS"
    return arr, axes + ("A" if alpha else "")


# Length units a TIFF may state its pixel size in, in µm.
_LENGTH_UM = {"µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
              "nm": 1e-3, "pm": 1e-6, "Å": 1e-4, "mm": 1e3, "cm": 1e4, "m": 1e6, "in": 25400.0}
# A recorded size outside this range (µm) is not a sample-plane pixel (e.g. a 72 dpi default).
_PLAUSIBLE_PIXEL_UM = (0.005, 50.0)


def _length_unit_um(unit) -> float | None:
    """µm per ``unit``; ImageJ stores non-ASCII as literal ``\\uXXXX`` text (µm as ``\\u00B5m``)."""
    if not isinstance(unit, str):
        return None
    return _LENGTH_UM.get(re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), unit.strip()))


def _ome_pixel_size_um(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        pixels = next((e for e in ET.fromstring(xml).iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    except ET.ParseError:
        return None
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    factor = _length_unit_um(pixels.get("PhysicalSizeXUnit", "µm"))
    try:
        return float(pixels.get("PhysicalSizeX")) * factor if factor else None
    except ValueError:
        return None


def tiff_pixel_size_um(path) -> float | None:
    """The pixel size a TIFF records (µm), or None: OME-XML ``PhysicalSizeX``, else the resolution
    tags in ImageJ's length unit (Fiji, Micro-Manager) or in centimetres/inches. Values outside
    0.005-50 µm (a 72 dpi default, say) are not taken for a microscope's calibration."""
    import tifffile

    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                size = _ome_pixel_size_um(tif.ome_metadata or "")
            else:
                tags = tif.pages[0].tags
                xres, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
                per_unit = xres.value[0] / xres.value[1] if xres and xres.value[1] else 0.0  # pixels per unit
                # ImageJ names its unit in its metadata; else the tag's centimetre or inch (the default).
                factor = (_length_unit_um((tif.imagej_metadata or {}).get("unit"))
                          or {2: 25400.0, 3: 1e4}.get(int(unit.value) if unit else 2))
                size = factor / per_unit if factor and per_unit > 0 else None
    except Exception:  # metadata is optional: an unreadable tag is no calibration
        return None
    low, high = _PLAUSIBLE_PIXEL_UM
    return size if size is not None and low <= size <= high else None


def _read_npy(path: Path) -> tuple[np.ndarray, str]:
    """NPY without pickles; axes guessed: a first axis of <= 4 is channels."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 3 and arr.shape[0] > 4 and arr.shape[-1] <= 4:
        return arr, "YXS"
    return arr, ("YX" if arr.ndim == 2 else "CYX")


_READERS = {"png": _read_pillow, "jpeg": _read_pillow, "tiff": _read_tifffile, "npy": _read_npy}


def _to_channels_first(arr: np.ndarray, axes: str, info: dict, name: str, need_channels: int | None) -> np.ndarray:
    """Move samples to the front, drop an alpha channel, squeeze single channels.

    ``axes`` ends in ``"A"`` when the file marks its last sample as alpha (PNG LA/RGBA, TIFF extra
    samples); it is kept when the microscope needs that many channels (a 4-plane stack saved by
    a writer that tagged it RGBA). Other files have no alpha: every sample is a channel.
    """
    alpha, axes = axes.endswith("A"), axes.removesuffix("A")
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 3 and axes.endswith("S"):
        arr = np.moveaxis(arr, -1, 0)
    if arr.ndim == 3 and alpha and arr.shape[0] != need_channels:
        opaque_code = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else arr[-1].flat[0]
        if np.ptp(arr[-1]) > 0 or arr[-1].flat[0] != opaque_code:  # a float alpha's scale is unknown: uniform passes
            warnings.warn(f"{name}: its alpha channel is not opaque everywhere; it was dropped (transparency is "
                          "not light: the colour channels are read as they are)", stacklevel=3)
        arr = arr[:-1]
        info["alpha_dropped"] = True
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise InputError(f"{name}: cannot interpret array of shape {arr.shape} as an image")
    return arr


def _scale_to_unit(arr: np.ndarray, info: dict, name: str) -> np.ndarray:
    """8/16-bit unsigned ints -> [0, 1] by dtype max; floats -> float32 as is."""
    if arr.dtype in (np.uint8, np.uint16):
        info["bit_depth"] = 8 * arr.dtype.itemsize
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.floating):
        info["bit_depth"] = None
        return arr.astype(np.float32)
    raise InputError(f"{name}: unsupported pixel type {arr.dtype} (need uint8, uint16 or float)")


def _load_raw(path: Path) -> tuple[np.ndarray, str, str]:
    """Read a file with the reader for its extension -> (array, axes, format)."""
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a device, pipe or folder)" if path.exists() else
                         f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    fmt = IMAGE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"{path}: unsupported file type {path.suffix!r} (use one of {known})")
    try:
        arr, axes = _READERS[fmt](path)
    except InputError:
        raise
    except Exception as exc:  # any decoder failure means the file is unusable
        raise InputError(f"{path}: cannot read {fmt} file ({_first_line(exc)})") from exc
    return arr, axes, fmt


def read_image(
    path,
    *,
    linearize_srgb: bool = False,
    gamma: float | None = None,
    response=None,
    need_channels: int | None = None,
    max_saturated_fraction: float = MAX_SATURATED_FRACTION,
    empty_field: bool = False,
) -> tuple[np.ndarray, dict]:
    """Read a micrograph as float32 intensities and validate it.

    Parameters
    ----------
    path : str or os.PathLike
        PNG, JPEG, TIFF or NPY file. Colour files give (C, H, W); TIFF axes come
        from the file; an NPY array is taken as (C, H, W), or (H, W, C) when its
        first axis is longer than 4 and its last is at most 4.
    linearize_srgb : bool, default False
        Decode the sRGB transfer curve (:func:`srgb_decode`) after scaling, as
        needed for camera JPEG/PNG before flat-fielding (PHYSICS.md §2.6).
    gamma : float, optional
        The camera's gamma setting when it is not 1: the file holds ``linear^gamma`` (e.g. 0.45), decoded
        by :func:`gamma_decode` after scaling. Not together with ``linearize_srgb``.
    response : :class:`chromaqpi.response.CameraResponse`, optional
        The camera's measured response curve (``chromaqpi response``), decoded after scaling; for any other
        tone curve. Not together with ``linearize_srgb`` or ``gamma``.
    need_channels : int, optional
        Required channel count (3 for RGB); see :func:`check_intensity_image`.
    max_saturated_fraction : float, default 0.01
        Saturation limit, checked for integer files only (clipping level known).
    empty_field : bool, default False
        The file is an empty-field (background) frame or a calibration frame: a perfectly uniform one is
        valid, so the constant-image check is skipped.

    Returns
    -------
    image : np.ndarray, float32, shape (H, W) or (C, H, W)
        Intensities; integers scaled to [0, 1] by their dtype maximum.
    info : dict
        ``path``, ``format``, ``dtype`` (on disk), ``bit_depth`` (8, 16 or
        None for float), ``shape`` (returned), ``alpha_dropped``,
        ``srgb_linearized``, ``gamma`` (None when not decoded), ``response`` (whether a measured curve
        decoded it), ``saturated_fraction`` (None for float files) and
        ``pixel_size_um`` (what a TIFF records, :func:`tiff_pixel_size_um`; else None).

    Raises
    ------
    InputError
        Missing, unreadable or unsupported file, or an image that fails
        :func:`check_intensity_image`.
    """
    if sum((bool(linearize_srgb), gamma is not None, response is not None)) > 1:
        raise ConfigError("decode one of sRGB, a camera gamma or a measured camera response, not several")
    if gamma is not None:
        check_gamma(gamma)  # before the file is read
    path = Path(path)
    raw, axes, fmt = _load_raw(path)
    info: dict[str, Any] = {"path": str(path), "format": fmt, "dtype": str(raw.dtype),
                            "alpha_dropped": False, "srgb_linearized": bool(linearize_srgb), "gamma": gamma,
                            "response": response is not None}
    stored = _to_channels_first(raw, axes, info, path.name, need_channels)
    arr = _scale_to_unit(stored, info, path.name)
    sat_level = _clipping_level(raw) if info["bit_depth"] else None
    info["saturated_fraction"] = saturated_fraction(arr, sat_level) if sat_level else None
    check_intensity_image(arr, need_channels=need_channels, saturation_level=sat_level,
                          max_saturated_fraction=max_saturated_fraction, name=path.name, allow_constant=True)
    if not empty_field:
        check_contrast(stored, path.name)  # the value as the file stores it, not scaled to [0, 1]
    if fmt == "jpeg" and arr.ndim == 3:
        info["chroma_subsampling"] = jpeg_chroma_subsampling(path)
        if info["chroma_subsampling"]:
            # The phase signal is the difference between colour channels, which such a JPEG keeps
            # at half resolution: fine detail is lost or mixed between channels.
            warnings.warn(f"{path.name}: JPEG with {info['chroma_subsampling']} chroma subsampling keeps colour "
                          "at half resolution, so fine phase detail is unreliable; save TIFF/PNG (or 4:4:4 JPEG)",
                          stacklevel=2)
    if linearize_srgb:
        _warn_srgb_depth(info["bit_depth"], path.name)
        arr = srgb_decode(arr)
    elif gamma is not None:
        arr = gamma_decode(arr, gamma)
    elif response is not None:
        arr = response.decode(arr, name=path.name)
    info["shape"] = tuple(arr.shape)
    info["pixel_size_um"] = tiff_pixel_size_um(path) if fmt == "tiff" else None
    return arr, info


def _warn_srgb_depth(bit_depth: int | None, name: str) -> None:
    """sRGB is a display encoding of 8-bit files; 16-bit and float files are, as a rule, the camera's linear data."""
    if bit_depth != 8:
        depth = f"{bit_depth}-bit" if bit_depth else "floating-point"
        warnings.warn(f"{name}: sRGB decoding is meant for 8-bit display images (camera JPEG/PNG), but this file "
                      f"is {depth}, which cameras write linear: decode it only if it was saved with the sRGB curve",
                      stacklevel=3)


# ---------------------------------------------------------------------------
# TIFF with metadata
# ---------------------------------------------------------------------------


def _to_numpy(array) -> np.ndarray:
    """numpy view of an array or a (possibly GPU, autograd) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _quantise_uint16(a: np.ndarray, value_range: tuple[float, float] | None,
                     meta: dict) -> np.ndarray:
    """Map [lo, hi] linearly onto 0..65535 and record the inverse map in ``meta``."""
    if value_range is None:
        raise ValueError("dtype='uint16' needs value_range=(lo, hi) to define the scaling")
    lo, hi = map(float, value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be finite with hi > lo, got {value_range}")
    scale = (hi - lo) / 65535.0
    codes = np.rint((a.astype(np.float64) - lo) / scale)
    meta["uint16_value"] = {"offset": lo, "scale": scale,
                            "clipped_fraction": float(np.mean((codes < 0) | (codes > 65535)))}
    return np.clip(codes, 0, 65535).astype(np.uint16)


def write_tiff(
    path,
    array,
    *,
    metadata: dict,
    pixel_size_um: float | None = None,
    unit: str = "rad",
    dtype: str = "float32",
    value_range: tuple[float, float] | None = None,
) -> None:
    """Write an image as an ImageJ-compatible TIFF with JSON metadata, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.tif`` file.
    array : array_like or torch.Tensor, shape (H, W) or (C, H, W)
        Values in ``unit`` (e.g. phase in rad, OPD in nm).
    metadata : dict
        JSON-serialisable provenance (method, microscope, wavelength, config).
    pixel_size_um : float, optional
        Pixel size in the sample plane (µm); stored as the TIFF resolution with
        ImageJ unit ``um`` so ImageJ/Fiji show calibrated lengths.
    unit : str, default "rad"
        Unit of the pixel values, recorded in the JSON.
    dtype : {"float32", "uint16"}, default "float32"
        ``"uint16"`` stores ``round((v - lo) / scale)`` with
        ``scale = (hi - lo) / 65535`` from ``value_range``; the inverse map and
        the fraction of clipped values are recorded in the JSON
        (``uint16_value``) and undone by :func:`read_tiff`.
    value_range : (float, float), optional
        ``(lo, hi)`` in ``unit``, required for ``"uint16"``.

    Notes
    -----
    The JSON (``metadata`` plus ``unit``, ``pixel_size_um``, ``shape``,
    ``dtype``) is stored in the ImageJ ``Info`` property (IJMetadata tag),
    which Fiji shows under Image > Show Info; :func:`read_tiff_metadata`
    returns it.
    """
    import tifffile

    a = _to_numpy(array)
    if a.ndim not in (2, 3):
        raise ValueError(f"array must be (H, W) or (C, H, W), got shape {a.shape}")
    meta = {**metadata, "unit": unit, "pixel_size_um": pixel_size_um,
            "shape": list(a.shape), "dtype": dtype}
    if dtype == "float32":
        data = a.astype(np.float32)
    elif dtype == "uint16":
        data = _quantise_uint16(a, value_range, meta)
    else:
        raise ValueError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
    ij = {"axes": "YX" if a.ndim == 2 else "CYX", "unit": "um" if pixel_size_um else "pixel",
          "Info": strict_json(meta)}
    res = (1.0 / pixel_size_um, 1.0 / pixel_size_um) if pixel_size_um else None
    with atomic_write(path) as f:
        tifffile.imwrite(f, data, imagej=True, resolution=res, metadata=ij)


def read_tiff_metadata(path) -> dict:
    """Return the JSON metadata that :func:`write_tiff` stored in a TIFF.

    Returns an empty dict for TIFFs without it (e.g. from other software).

    Raises
    ------
    InputError
        Missing or unreadable file, or an ``Info`` entry that is not JSON.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            text = (tif.imagej_metadata or {}).get("Info")
    except Exception as exc:
        raise InputError(f"{path}: cannot read TIFF ({_first_line(exc)})") from exc
    if text is None:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: metadata is not valid JSON ({_first_line(exc)})") from exc


def read_tiff(path) -> tuple[np.ndarray, dict]:
    """Read a TIFF written by :func:`write_tiff` -> (values in its unit, metadata).

    uint16 files are mapped back to physical values (float64) with the
    recorded ``offset + scale * code``; float32 files are returned unchanged.
    """
    import tifffile

    meta = read_tiff_metadata(path)
    try:
        with quiet_tifffile():
            data = tifffile.imread(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read TIFF ({_first_line(exc)})") from exc
    q = meta.get("uint16_value")
    if q is not None:
        data = q["offset"] + q["scale"] * data.astype(np.float64)
    return data, meta


def read_map(path, *, plane_hint: str = "") -> tuple[np.ndarray, dict]:
    """Read a map of physical values (phase in rad, OPD in nm) -> ((H, W) float64, metadata).

    Unlike :func:`read_image`, values are taken as they are: integers are not scaled by their
    dtype maximum and no intensity checks (saturation, constant field) apply. A TIFF written by
    :func:`write_tiff` as uint16 is mapped back to its physical values and its metadata returned;
    other files give empty metadata. ``plane_hint`` is appended to the error for a multi-plane file.

    Raises
    ------
    InputError
        Unreadable file, non-real pixel type, more than one plane, or NaN/Inf values.
    """
    path = Path(path)
    raw, _, fmt = _load_raw(path)
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise InputError(f"{path.name}: unsupported pixel type {raw.dtype} (need real values)")
    meta = read_tiff_metadata(path) if fmt == "tiff" else {}
    arr = np.squeeze(raw).astype(np.float64)
    q = meta.get("uint16_value")
    if q is not None:
        arr = q["offset"] + q["scale"] * arr
    if arr.ndim != 2:
        raise InputError(f"{path.name}: expected one plane (H, W), got shape {arr.shape}{plane_hint}")
    if not np.isfinite(arr).all():
        raise InputError(f"{path.name}: contains NaN or Inf values")
    return arr, meta


# ---------------------------------------------------------------------------
# Preview PNG
# ---------------------------------------------------------------------------


def save_preview_png(
    path,
    image,
    *,
    cmap: str = "viridis",
    label: str,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> None:
    """Save a false-colour preview of a 2-D image with a labelled colour bar.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.png``.
    image : array_like or torch.Tensor, shape (H, W)
        Values to show (e.g. phase in rad).
    cmap : str, default "viridis"
        Matplotlib colour map.
    label : str
        Colour-bar label with unit, e.g. ``"phase (rad)"``.
    colorbar : bool, default True
        Draw the colour bar.
    vmin, vmax : float, optional
        Fixed colour limits; default the image's min and max.
    title : str, optional
        Axes title.
    dpi : int, default 100
        Resolution; one image pixel per screen pixel at about 100 dpi.

    Notes
    -----
    Uses the Agg canvas directly, never pyplot, so no global backend state is
    changed and no display is needed; matplotlib is imported only here.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a = _to_numpy(image)
    if a.ndim != 2:
        raise ValueError(f"preview needs an (H, W) image, got shape {a.shape}")
    h, w = a.shape
    fig = Figure(figsize=(max(w / dpi, 2.0) * (1.25 if colorbar else 1.0), max(h / dpi, 2.0)),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label=label)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
