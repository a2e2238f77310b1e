"""Phase maps made from ordinary images: any image folder, and scikit-image's bundled samples.

This follows the reference paper's recipe (PHYSICS.md §6.5): image -> grey -> random crop
(Lanczos-upscaled first if the image is smaller than the crop) -> min-max -> linear map
onto a phase range, by default exactly [0, 3.5] rad.

The result is a *phase at a reference wavelength*, in radians: an image has no thickness
or index, so the phase is the defined quantity. The sources here return a
:class:`~chromaqpi.phantoms.sample.PhaseSample` whose OPD is ``phase*lambda/(2*pi)`` at
the source's ``wavelength_um`` (default 0.55 µm), and record the phase range and that
wavelength in ``meta``. These maps are textures, not physical OPD maps, and have no
object mask.

Bundled images are read straight from the files inside the installed scikit-image
package (never through its downloader), so they work offline; they are split once, in
code, into :data:`BUNDLED_TRAIN` and :data:`BUNDLED_TEST`. A third, smaller split,
:data:`BUNDLED_VAL`, holds pictures from other installed packages (matplotlib's sample
data and scikit-image files outside the other two): neither training nor the test sets
use them, so they measure how a model does on pictures it has never seen without
touching the test images.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chromaqpi.errors import ConfigError, InputError
from chromaqpi.io import quiet_tifffile
from chromaqpi.phantoms._params import draw
from chromaqpi.phantoms.sample import PhaseSample, check_shape, opd_from_phase

__all__ = [
    "IMAGE_EXTENSIONS",
    "BUNDLED_TRAIN",
    "BUNDLED_TEST",
    "BUNDLED_VAL",
    "bundled_image_names",
    "load_bundled_image",
    "load_image_grey",
    "to_grey",
    "random_crop",
    "scale_to_range",
    "image_to_phase",
    "ImageFolderSource",
    "BundledImageSource",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

#: Rec. 709 luma weights (as scikit-image's rgb2gray), for linear-ish RGB.
_LUMA = np.array([0.2125, 0.7154, 0.0721])

#: Bundled name -> file inside ``skimage/data`` (each verified to load with networking off).
_BUNDLED_FILES = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "cell": "cell.png",
    "chelsea": "chelsea.png", "checkerboard": "chessboard_GRAY.png", "clock": "clock_motion.png",
    "coffee": "coffee.png", "coins": "coins.png", "colorwheel": "color.png", "grass": "grass.png",
    "gravel": "gravel.png", "horse": "horse.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "logo": "logo.png", "microaneurysms": "microaneurysms.png",
    "moon": "moon.png", "motorcycle": "motorcycle_left.png", "page": "page.png", "retina": "retina.jpg",
    "rocket": "rocket.jpg", "shepp_logan_phantom": "phantom.png", "text": "text.png",
}

#: Held-out images (8 of 25): one of each flavour -- natural photo, microscopy, histology,
#: texture, astronomy. Training never sees them. Never edit: evaluation sets depend on it.
BUNDLED_TEST = ("camera", "cell", "coffee", "coins", "gravel", "hubble_deep_field", "immunohistochemistry", "moon")

#: Training images (17 of 25), including ``binary_blobs``, a new random image per draw.
#: ``motorcycle_right`` and ``chessboard_RGB`` are left out: near-copies of other images.
BUNDLED_TRAIN = (
    "astronaut", "binary_blobs", "brick", "checkerboard", "chelsea", "clock", "colorwheel", "grass", "horse",
    "logo", "microaneurysms", "motorcycle", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)


#: Validation pictures: package, file inside it, and how to read it. A photo, a small RGBA
#: illustration, two elevation maps and an MRI slice -- textures unlike the training
#: pictures'. Only validation sets use them (training refuses them).
_VAL_FILES = {
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "image"),
    "present": ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png", "image"),
    "fault_dem": ("matplotlib", "mpl-data/sample_data/jacksboro_fault_dem.npz", "elevation"),
    "topobathy": ("matplotlib", "mpl-data/sample_data/topobathy.npz", "topo"),
    "mri": ("matplotlib", "mpl-data/sample_data/s1045.ima.gz", "uint16-256"),
}
BUNDLED_VAL = tuple(_VAL_FILES)


def bundled_image_names(split: str = "train") -> tuple[str, ...]:
    """Names of the bundled images in ``split``: ``"train"``, ``"test"``, ``"val"`` or ``"all"``."""
    splits = {"train": BUNDLED_TRAIN, "test": BUNDLED_TEST, "val": BUNDLED_VAL,
              "all": tuple(sorted(BUNDLED_TRAIN + BUNDLED_TEST + BUNDLED_VAL))}
    if split not in splits:
        raise ConfigError(f"unknown bundled image split {split!r}; valid: {', '.join(splits)}")
    return splits[split]


def load_bundled_image(name: str, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """One bundled image as a grey float32 (H, W) array in its native value scale.

    ``binary_blobs`` is generated: a new image for every call, drawn from ``rng``
    (default: a fixed seed). Everything else is read from the installed scikit-image
    package's own data folder, with no network access.
    """
    if name == "binary_blobs":
        return _binary_blobs(rng if rng is not None else np.random.default_rng(0))
    if name in _VAL_FILES:
        package, relative, kind = _VAL_FILES[name]
        return _cached_package_file(package, relative, kind)
    if name not in _BUNDLED_FILES:
        raise ConfigError(f"unknown bundled image {name!r}; valid: {', '.join(bundled_image_names('all'))}")
    path = _skimage_data_dir() / _BUNDLED_FILES[name]
    if not path.is_file():
        raise InputError(f"bundled image {name!r} is not shipped with the installed scikit-image ({path} missing)")
    return _cached_grey(str(path))


def _skimage_data_dir() -> Path:
    return _package_dir("skimage") / "data"


def _package_dir(package: str) -> Path:
    # locate the package without importing it: skimage.data would pull in pooch
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{package} is not installed; the bundled image source needs it")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=16)
def _cached_package_file(package: str, relative: str, kind: str) -> np.ndarray:
    """A validation picture as grey float32: an image file, an ``.npz`` array or raw 256x256 uint16."""
    path = _package_dir(package) / relative
    if not path.is_file():
        raise InputError(f"bundled picture {path} is missing from the installed {package}")
    if kind == "image":
        grey = load_image_grey(path)
    elif kind == "uint16-256":
        import gzip

        with gzip.open(path) as raw:  # big-endian: values 0-215
            grey = np.frombuffer(raw.read(), dtype=">u2").reshape(256, 256).astype(np.float32)
    else:
        with np.load(path, allow_pickle=False) as arrays:
            grey = np.asarray(arrays[kind], dtype=np.float32)
    grey.setflags(write=False)
    return grey


def _binary_blobs(rng: np.random.Generator) -> np.ndarray:
    from skimage.data import binary_blobs

    kwargs = {"length": 512, "blob_size_fraction": float(rng.uniform(0.03, 0.15)),
              "volume_fraction": float(rng.uniform(0.3, 0.7))}
    seed = int(rng.integers(2**31))
    # the seed argument was renamed seed -> rng in scikit-image 0.23
    key = "rng" if "rng" in inspect.signature(binary_blobs).parameters else "seed"
    return binary_blobs(**kwargs, **{key: seed}).astype(np.float32)


# --------------------------------------------------------------------------- reading


def load_image_grey(path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF file as a grey float32 array in its native value scale.

    Colour is reduced with Rec. 709 luma weights; an alpha channel is composited over
    white. A TIFF with several planes (pages, z or time) returns a (P, H, W) stack;
    sources pick one plane at random.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return to_grey(_read_tiff(path))
    return to_grey(_read_pil(path))


@functools.lru_cache(maxsize=64)
def _cached_grey(path: str) -> np.ndarray:
    grey = load_image_grey(path)
    grey.setflags(write=False)  # shared between calls: must never be modified
    return grey


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "I;16", "F"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with quiet_tifffile():
            return tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"cannot read TIFF {path}: {exc}") from None


def to_grey(image) -> np.ndarray:
    """Grey float32 version of an image array, keeping its value scale.

    Accepts (H, W), (H, W, C) with C in {2, 3, 4} (grey+alpha, RGB, RGBA) and stacks
    (..., H, W) or (..., H, W, 3|4), returned as (P, H, W). Alpha is composited over white.
    """
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.float32)
    full = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    img = img.astype(np.float64)
    if img.ndim >= 3 and img.shape[-1] in (2, 3, 4):
        img = _flatten_channels(img, full)
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim >= 3:
        return img.reshape((-1,) + img.shape[-2:]).astype(np.float32)
    raise InputError(f"cannot make a grey image from an array of shape {img.shape}")


def _flatten_channels(img: np.ndarray, full: float) -> np.ndarray:
    colour = img[..., :-1] if img.shape[-1] in (2, 4) else img
    grey = colour @ _LUMA if colour.shape[-1] == 3 else colour[..., 0]
    if img.shape[-1] in (2, 4):
        alpha = img[..., -1] / full
        grey = grey * alpha + full * (1.0 - alpha)
    return grey


# --------------------------------------------------------------------------- crop and scale


def random_crop(grey: np.ndarray, shape, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random (H, W) window of a grey image, Lanczos-upscaled first if it is too small.

    Parameters
    ----------
    grey : numpy.ndarray, shape (h, w) or (P, h, w)
        Grey image, or a stack of planes of which one is drawn at random.
    shape : (int, int)
        Crop shape (H, W) in pixels.
    rng : numpy.random.Generator
        Draws the plane and the crop position.

    Returns
    -------
    crop : numpy.ndarray, float64 (H, W)
    info : dict
        ``plane``, ``crop_yx`` (top-left corner after resizing) and ``resize_factor``
        (1.0 when the image was large enough), JSON-serialisable.
    """
    h, w = check_shape(shape)
    plane = 0
    if grey.ndim == 3:
        plane = int(rng.integers(grey.shape[0]))
        grey = grey[plane]
    factor = max(h / grey.shape[0], w / grey.shape[1], 1.0)
    if factor > 1.0:
        grey = _lanczos_resize(grey, (math.ceil(grey.shape[0] * factor), math.ceil(grey.shape[1] * factor)), (h, w))
    y0 = int(rng.integers(grey.shape[0] - h + 1))
    x0 = int(rng.integers(grey.shape[1] - w + 1))
    crop = np.array(grey[y0:y0 + h, x0:x0 + w], dtype=np.float64)
    return crop, {"plane": plane, "crop_yx": [y0, x0], "resize_factor": float(factor)}


def _lanczos_resize(grey: np.ndarray, size: tuple[int, int], at_least: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    size = (max(size[0], at_least[0]), max(size[1], at_least[1]))
    resized = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32), mode="F").resize((size[1], size[0]), Image.LANCZOS)
    return np.asarray(resized, dtype=np.float64)


def scale_to_range(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max map an array onto exactly [lo, hi] (float32).

    Raises InputError for a constant array, which has no range to stretch, and for
    NaN or infinite values (e.g. in float TIFFs), which have no place on a phase map.

    Notes
    -----
    ``u = (x - min)/(max - min)`` is exactly 0 and 1 at the extremes in IEEE arithmetic,
    and ``lo*(1 - u) + hi*u`` then gives exactly lo and hi, so the output range is exact.
    """
    x = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError("image crop contains NaN or infinite values")
    x_min, x_max = float(x.min()), float(x.max())
    if not x_max > x_min:
        raise InputError("image crop is constant: it has no range to map onto a phase range")
    u = (x - x_min) / (x_max - x_min)
    return (np.float32(lo) * (1.0 - u) + np.float32(hi) * u).astype(np.float32)


def image_to_phase(image, shape, *, rng: np.random.Generator, phase_range_rad=(0.0, 3.5)) -> np.ndarray:
    """The paper's recipe on one image: grey -> random crop -> min-max -> phase range.

    Parameters
    ----------
    image : array_like
        Image array (see :func:`to_grey` for accepted layouts).
    shape : (int, int)
        Output shape (H, W).
    rng : numpy.random.Generator
        Draws the crop (and the plane of a stack).
    phase_range_rad : (float, float)
        Output range [lo, hi] in rad; the output hits both ends exactly.

    Returns
    -------
    numpy.ndarray, float32 (H, W)
        Phase in radians at the reference wavelength.
    """
    lo, hi = _check_range(phase_range_rad)
    crop, _ = random_crop(to_grey(image), shape, rng)
    return scale_to_range(crop, lo, hi)


def _check_range(phase_range_rad) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in phase_range_rad)
    except (TypeError, ValueError):
        raise ConfigError(f"phase_range_rad must be (lo, hi) in rad, got {phase_range_rad!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ConfigError(f"phase_range_rad must have finite lo < hi, got {phase_range_rad!r}")
    return lo, hi


# --------------------------------------------------------------------------- sources


def _draw_range(rng, phase_range_rad) -> tuple[float, float]:
    """Resolve a phase-range spec: each end a number or a (lo, hi) range drawn uniformly."""
    try:
        lo_spec, hi_spec = phase_range_rad
    except (TypeError, ValueError):
        raise ConfigError(f"phase_range_rad must be (lo, hi) in rad, got {phase_range_rad!r}") from None
    return _check_range((draw(rng, lo_spec, "phase_range_rad[0]"), draw(rng, hi_spec, "phase_range_rad[1]")))


class _ImageSource:
    """Shared sampling for image sources: pick an image, crop, retry flat crops, scale."""

    max_tries = 10
    name = "images"

    def _names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _load(self, name: str, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def phase(self, shape, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """A phase map (rad, float32) and its JSON-serialisable description."""
        check_shape(shape)
        lo, hi = _draw_range(rng, self.phase_range_rad)
        names = self._names()
        for _ in range(self.max_tries):
            name = names[int(rng.integers(len(names)))]
            crop, info = random_crop(self._load(name, rng), shape, rng)
            if crop.max() > crop.min():  # a flat crop has no texture: draw again
                info.update(image=name, phase_range_rad=[lo, hi])
                return scale_to_range(crop, lo, hi), info
        raise InputError(f"{self.max_tries} crops in a row were constant; are the images in {self.name} blank?")

    def __call__(self, shape, pixel_size_um: float, rng: np.random.Generator) -> PhaseSample:
        phase, info = self.phase(shape, rng)
        meta = {"source": self.name, "has_mask": False, "wavelength_um": float(self.wavelength_um), **info}
        opd = opd_from_phase(phase, self.wavelength_um)
        return PhaseSample(opd, np.zeros(phase.shape, np.int32), pixel_size_um, meta)


@dataclass(frozen=True)
class ImageFolderSource(_ImageSource):
    """Phase source from every PNG/JPEG/TIFF under a folder (the paper used ImageNet).

    Parameters
    ----------
    path : str or Path
        Folder to search (recursively by default). Files are listed once, sorted, so a
        given seed always picks the same image.
    phase_range_rad : (lo, hi)
        Phase range in rad; each end a number or a (lo, hi) range drawn per sample.
        Default exactly [0, 3.5] rad as in the paper.
    wavelength_um : float
        Reference wavelength (µm) at which the phase holds; OPD = phase*lambda/(2*pi).
    recursive : bool
        Search sub-folders too.

    Notes
    -----
    Each process keeps the last 64 decoded images in memory, so small folders are read
    from disk only once.
    """

    path: str | Path
    phase_range_rad: tuple = (0.0, 3.5)
    wavelength_um: float = 0.55
    recursive: bool = True

    def __post_init__(self):
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"image folder {root} does not exist or is not a folder")
        pattern = root.rglob("*") if self.recursive else root.glob("*")
        files = sorted(p.relative_to(root).as_posix() for p in pattern if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise ConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_files", tuple(files))

    @property
    def name(self) -> str:
        return f"folder:{self._root}"

    @property
    def files(self) -> tuple[str, ...]:
        """Image paths relative to ``path``, sorted."""
        return self._files

    def _names(self):
        return self._files

    def _load(self, name, rng):
        return _cached_grey(str(self._root / name))


@dataclass(frozen=True)
class BundledImageSource(_ImageSource):
    """Phase source from the sample images shipped inside scikit-image (offline).

    Parameters
    ----------
    split : {"train", "test", "val", "all"}
        Which fixed list to draw from (:data:`BUNDLED_TRAIN`, :data:`BUNDLED_TEST`,
        :data:`BUNDLED_VAL`).
    phase_range_rad, wavelength_um
        As in :class:`ImageFolderSource`.
    names : tuple of str, optional
        Restrict to these images (they must belong to ``split``), e.g. one per
        evaluation sample.
    """

    split: str = "train"
    phase_range_rad: tuple = (0.0, 3.5)
    wavelength_um: float = 0.55
    names: tuple[str, ...] | None = None

    def __post_init__(self):
        allowed = bundled_image_names(self.split)
        chosen = tuple(self.names) if self.names is not None else allowed
        outside = [n for n in chosen if n not in allowed]
        if outside or not chosen:
            raise ConfigError(f"bundled images {outside or '[]'} are not in split {self.split!r}; valid: {', '.join(allowed)}")
        object.__setattr__(self, "names", chosen)

    @property
    def name(self) -> str:
        return "pictures-val" if self.split == "val" else f"skimage-{self.split}"

    def _names(self):
        return self.names

    def _load(self, name, rng):
        return load_bundled_image(name, rng=rng)
