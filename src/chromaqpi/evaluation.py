"""Evaluation harness: run registered methods on samples with known phase, tabulate metrics.

``evaluate(methods, samples, microscope, out_dir)`` writes

* ``metrics.csv`` -- one row per (sample, method): every metric of
  :func:`chromaqpi.metrics.evaluate_per_sample` (raw and offset-aligned) and
  the wall time of the reconstruction;
* ``metrics.md`` -- mean ± std per method of the main metrics and seconds per image;
* ``figure.png`` -- for the first samples: input, truth, each method's
  (offset-aligned) phase and its error map.
"""

from __future__ import annotations

import csv
import io as _io
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from chromaqpi.errors import InputError
from chromaqpi.microscope import Microscope
from chromaqpi.models_available import LEARNED_METHODS

# Columns of the markdown table (metric key, header), offset-aligned first.
TABLE_COLUMNS = (
    ("nmae_aligned", "nMAE"),
    ("mae_rad_aligned", "MAE (rad)"),
    ("rmse_rad_aligned", "RMSE (rad)"),
    ("psnr_db_aligned", "PSNR (dB)"),
    ("ssim_aligned", "SSIM"),
    ("ms_ssim_aligned", "MS-SSIM"),
    ("mae_rad", "raw MAE (rad)"),
    ("dry_mass_rel_error", "dry-mass rel. err."),
)


def _as_sample(item: Any, index: int) -> dict:
    """Normalise a sample to {"images", "phase", "mask", "labels"} (tensors or None)."""
    if isinstance(item, Mapping):
        sample = {k: item.get(k) for k in ("images", "phase", "mask", "labels")}
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        sample = {"images": item[0], "phase": item[1], "mask": item[2] if len(item) == 3 else None,
                  "labels": None}
    else:
        raise InputError(f"sample {index}: expected (images, phase[, mask]) or a dict, got {type(item).__name__}")
    if sample["images"] is None or sample["phase"] is None:
        raise InputError(f"sample {index}: needs 'images' and 'phase'")
    for key, value in sample.items():
        if value is not None and not isinstance(value, torch.Tensor):
            sample[key] = torch.as_tensor(np.asarray(value))
    if sample["images"].ndim != 3 or sample["phase"].shape != sample["images"].shape[-2:]:
        raise InputError(f"sample {index}: images must be (C,H,W) and phase (H,W), got "
                         f"{tuple(sample['images'].shape)} and {tuple(sample['phase'].shape)}")
    return sample


def _run(method: str, sample: dict, microscope: Microscope, options: dict) -> tuple[torch.Tensor, float]:
    from chromaqpi.solvers.base import reconstruct

    start = time.perf_counter()
    phase = reconstruct(sample["images"], microscope, method=method, **options)
    return torch.as_tensor(phase), time.perf_counter() - start


def _metrics(pred: torch.Tensor, sample: dict, data_range: float, phi_max: float) -> dict[str, float]:
    from chromaqpi.metrics import evaluate_per_sample

    values = evaluate_per_sample(pred, sample["phase"], data_range=data_range, mask=sample["mask"],
                                 phi_max=phi_max, labels=sample["labels"])
    return {k: float(v) for k, v in values.items()}


def _columns(rows: list[dict]) -> list[str]:
    """Every key of any row (dry mass exists only for samples with labels), ``seconds`` last."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return [k for k in keys if k != "seconds"] + ["seconds"] * ("seconds" in keys)


def _summary(rows: list[dict], methods: Sequence[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per method: metric -> (mean, std) over samples, NaNs ignored."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        stats = {}
        for key in _columns(mine):
            if key in ("sample", "method"):
                continue
            vals = np.array([r.get(key, math.nan) for r in mine], dtype=float)  # absent: not measured here
            vals = vals[np.isfinite(vals)]
            stats[key] = (float(vals.mean()), float(vals.std())) if vals.size else (math.nan, math.nan)
        out[method] = stats
    return out


def _markdown(summary: dict, microscope: Microscope, n_samples: int, data_range: float, phi_max: float,
              settings: dict[str, dict] | None = None) -> str:
    keys = [(k, h) for k, h in TABLE_COLUMNS if any(k in s for s in summary.values())]
    lines = [f"Microscope `{microscope.name}`, {n_samples} samples; offset-aligned metrics unless marked raw "
             f"(MAE: median offset, others: mean offset); nMAE = MAE·2/{phi_max:g}; PSNR/SSIM data range "
             f"{data_range:g} rad; mean ± std over samples.", "",
             "| method | " + " | ".join(h for _, h in keys) + " | s/image |",
             "|---" * (len(keys) + 2) + "|"]
    for method, stats in summary.items():
        cells = [_cell(*stats[k]) if k in stats else "" for k, _ in keys]
        cells.append(f"{stats['seconds'][0]:.3g}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for method, record in (settings or {}).items():
        ran = [f"weights sha256 {str(record['model_sha256'])[:12]}..."]
        if "steps" in record:
            ran.append(f"{record['steps']} DDIM steps, temperature {record['temperature']:g}")
        lines += ["", f"`{method}`: " + ", ".join(ran) + "."]
    return "\n".join(lines) + "\n"


def _cell(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.4g} ± {std:.2g}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    from chromaqpi.io import atomic_write

    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), restval="nan")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def _input_preview(images: torch.Tensor) -> np.ndarray:
    """RGB composite of the first three channels (or grey), contrast-stretched."""
    x = images.detach().double().cpu().numpy()
    x = x[:3] if x.shape[0] >= 3 else x[:1].repeat(3, axis=0)
    lo, hi = np.percentile(x, 1), np.percentile(x, 99)
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1).transpose(1, 2, 0)


def _figure(path: Path, shown: list[tuple[dict, dict[str, torch.Tensor]]], methods: Sequence[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from chromaqpi.io import atomic_write

    cols = 2 + 2 * len(methods)
    fig = Figure(figsize=(2.2 * cols, 2.3 * len(shown)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(shown), cols, squeeze=False)
    for row, (sample, preds) in enumerate(shown):
        truth = sample["phase"].double().cpu().numpy()
        lo, hi = float(truth.min()), float(truth.max())
        panels = [("input", _input_preview(sample["images"]), {}), ("truth (rad)", truth, dict(vmin=lo, vmax=hi))]
        errors = []
        for method in methods:
            aligned = preds[method].double().cpu().numpy()
            aligned = aligned + float(np.mean(truth - aligned))
            panels.append((method, aligned, dict(vmin=lo, vmax=hi)))
            errors.append((f"{method} error", aligned - truth))
        span = max([float(np.abs(e).max()) for _, e in errors] + [1e-12])
        panels += [(name, e, dict(cmap="RdBu_r", vmin=-span, vmax=span)) for name, e in errors]
        for ax, (title, image, kw) in zip(axes[row], panels):
            im = ax.imshow(image, interpolation="nearest", **kw)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
            if image.ndim == 2:
                fig.colorbar(im, ax=ax, shrink=0.7)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")


def evaluate(methods: Sequence[str], samples: Iterable, microscope: Microscope | str, out_dir, *,
             options: Mapping[str, Mapping[str, Any]] | None = None, data_range: float | None = None,
             phi_max: float = 3.5, figure_samples: int = 3) -> dict[str, dict[str, tuple[float, float]]]:
    """Run ``methods`` on samples with known phase and write metrics, table and figure.

    Parameters
    ----------
    methods : names from :func:`chromaqpi.list_methods`.
    samples : iterable of ``(images, phase)``, ``(images, phase, mask)`` or dicts
        with keys ``images`` (C, H, W), ``phase`` (H, W, rad), optional ``mask``
        (H, W bool, pixels entering the metrics) and ``labels`` (H, W int,
        objects for the dry-mass error).
    microscope : Microscope, preset name or TOML path.
    out_dir : folder for ``metrics.csv``, ``metrics.md`` and ``figure.png`` (created).
    options : per-method keyword options for :func:`chromaqpi.reconstruct`.
    data_range : fixed range (rad) for PSNR/SSIM; default the truth's range
        over all samples (one number for the whole set, never per image).
    phi_max : scale of the normalised MAE (``MAE·2/phi_max``).
    figure_samples : number of samples shown in the figure (0: no figure).

    Returns
    -------
    dict method -> metric -> (mean, std); ``seconds`` is the wall time per image.
    """
    microscope = Microscope.resolve(microscope)
    options = dict(options or {})
    data = [_as_sample(item, i) for i, item in enumerate(samples)]
    if not data or not methods:
        raise InputError("evaluate() needs at least one method and one sample")
    if data_range is None:
        data_range = max(float(s["phase"].max() - s["phase"].min()) for s in data) or 1.0
    rows, shown = [], []
    for index, sample in enumerate(data):
        preds = {}
        for method in methods:
            pred, seconds = _run(method, sample, microscope, dict(options.get(method, {})))
            preds[method] = pred
            rows.append({"sample": index, "method": method, **_metrics(pred, sample, data_range, phi_max),
                         "seconds": seconds})
        if index < figure_samples:
            shown.append((sample, preds))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "metrics.csv", rows)
    summary = _summary(rows, methods)
    from chromaqpi.io import atomic_write
    from chromaqpi.models.registry import learned_settings

    settings = {m: learned_settings(m, microscope, dict(options.get(m, {}))) for m in methods if m in LEARNED_METHODS}
    with atomic_write(out / "metrics.md", "w") as handle:
        handle.write(_markdown(summary, microscope, len(data), data_range, phi_max, settings))
    if shown:
        _figure(out / "figure.png", shown, methods)
    return summary
