"""Per-object measurements on a phase image: segmentation, area, phase, OPD and dry mass.

What QPI users compute after reconstruction. The phase of a reconstruction is defined up to a
constant, so every quantity is referenced to the surrounding medium: the median phase of the
pixels outside all objects is subtracted first (dry mass is an integral of phase and would
otherwise grow with the object's area times the offset).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from chromaqpi.errors import InputError
from chromaqpi.metrics import ALPHA_UM3_PER_PG, per_object_dry_mass


@dataclass
class ObjectMeasurement:
    """One segmented object; lengths in µm, phase in rad at ``wavelength_um``."""

    label: int
    centroid_x_um: float
    centroid_y_um: float
    area_um2: float
    equivalent_diameter_um: float
    mean_phase_rad: float
    max_phase_rad: float
    mean_opd_nm: float
    optical_volume_um3: float
    dry_mass_pg: float


@dataclass
class Segmentation:
    """Labels (H, W) int32 (0 = medium), the medium's phase and the threshold above it (rad)."""

    labels: np.ndarray
    background_rad: float
    threshold_rad: float


def _check_phase(phase) -> np.ndarray:
    phi = np.asarray(phase, dtype=np.float64)
    if phi.ndim != 2:
        raise InputError(f"phase image must be 2-D (H, W), got shape {phi.shape}")
    if not np.isfinite(phi).all():
        raise InputError("phase image contains NaN or Inf")
    if min(phi.shape) < 8:
        raise InputError(f"phase image too small to segment: {phi.shape}")
    return phi


def _default_threshold(rel: np.ndarray, otsu: float) -> float:
    low = rel[rel <= otsu]
    spread = 1.4826 * float(np.median(np.abs(low - np.median(low)))) if low.size else 0.0
    return max(min(float(otsu), 4.0 * spread), float(otsu) / 20.0)


def segment_objects(phase, *, threshold_rad: float | None = None, min_area_px: int = 20) -> Segmentation:
    """Objects = connected regions whose phase exceeds the medium's by a threshold.

    Parameters
    ----------
    phase : array_like (H, W)
        Phase in rad (any constant offset).
    threshold_rad : float, optional
        Phase above the medium that counts as object. Default: ``max(min(T_otsu, 4 s), T_otsu / 20)``
        with Otsu's two-class threshold ``T_otsu`` and the robust spread ``s`` (1.4826 MAD) of the
        pixels below it: as low as the medium's noise allows, because a high threshold cuts the
        thin rims of cells and biases dry mass low (by 9 % for spheres at Otsu's threshold),
        while background pixels inside a generous mask add only noise. Pass a value for faint
        objects or crowded fields.
    min_area_px : int
        Smaller regions are discarded as noise; holes inside objects are filled.

    Notes
    -----
    The medium's phase is estimated twice: the median of the whole image (robust when objects
    cover less than half of it), then the median of the pixels left outside the first mask.
    """
    from scipy import ndimage
    from skimage import filters, measure, segmentation

    phi = _check_phase(phase)
    if min_area_px < 1:
        raise InputError(f"min_area_px must be >= 1, got {min_area_px}")
    if threshold_rad is not None and not (math.isfinite(threshold_rad) and threshold_rad >= 0):
        raise InputError(f"threshold must be a finite phase >= 0 rad above the medium, got {threshold_rad}")
    background = float(np.median(phi))
    for _ in range(2):
        rel = phi - background
        if threshold_rad is None:
            otsu = float(filters.threshold_otsu(rel))
            # A flat image (Otsu at or below the medium) has no objects.
            thr = _default_threshold(rel, otsu) if math.isfinite(otsu) and otsu > 0 else float("inf")
        else:
            thr = float(threshold_rad)
        outside = phi[~(rel > thr)]
        background = float(np.median(outside)) if outside.size else background
    labels = measure.label(ndimage.binary_fill_holes(phi - background > thr), connectivity=2)
    small = np.bincount(labels.ravel()) < min_area_px
    small[0] = False
    labels[small[labels]] = 0
    labels = segmentation.relabel_sequential(labels)[0].astype(np.int32)
    return Segmentation(labels, background, thr)


def measure_objects(
    phase, labels, *, wavelength_um: float, pixel_size_um: float, background_rad: float = 0.0,
    alpha_um3_per_pg: float = ALPHA_UM3_PER_PG,
) -> list[ObjectMeasurement]:
    """Measurements of every labelled object, referenced to ``background_rad``.

    Dry mass ``m = lambda / (2 pi alpha) * sum(phase) dx^2`` (:func:`chromaqpi.metrics.per_object_dry_mass`);
    optical volume ``sum(OPD) dx^2``.
    """
    from skimage import measure

    phi = _check_phase(phase) - background_rad
    labels = np.asarray(labels)
    if labels.shape != phi.shape:
        raise InputError(f"labels {labels.shape} and phase {phi.shape} differ in shape")
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return []
    masses = per_object_dry_mass(phi, labels, wavelength_um, pixel_size_um, alpha_um3_per_pg=alpha_um3_per_pg,
                                 num_labels=n).numpy()
    opd_nm_per_rad = wavelength_um * 1000.0 / (2 * math.pi)
    px_area = pixel_size_um**2
    out = []
    for region in measure.regionprops(labels):
        values = phi[region.coords[:, 0], region.coords[:, 1]]
        area = region.area * px_area
        cy, cx = region.centroid
        out.append(ObjectMeasurement(
            label=int(region.label), centroid_x_um=cx * pixel_size_um, centroid_y_um=cy * pixel_size_um,
            area_um2=area, equivalent_diameter_um=2.0 * math.sqrt(area / math.pi),
            mean_phase_rad=float(values.mean()), max_phase_rad=float(values.max()),
            mean_opd_nm=float(values.mean()) * opd_nm_per_rad,
            optical_volume_um3=float(values.sum()) * opd_nm_per_rad / 1000.0 * px_area,
            dry_mass_pg=float(masses[region.label - 1]),
        ))
    return out


def measurements_table(rows: list[ObjectMeasurement]) -> tuple[list[str], list[dict]]:
    """(column names, row dicts) for CSV output."""
    names = list(ObjectMeasurement.__dataclass_fields__)
    return names, [asdict(r) for r in rows]
