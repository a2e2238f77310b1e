"""A PNG contact sheet of a dataset: input colour composites next to their true phase.

Inputs are shown as the flat-field contrast ``I - 1`` of each channel, all channels on one
symmetric scale (mid-grey = background), so colour fringes are the chromatic-defocus signal
itself. Two-plane data are shown as magenta (plane 0) / green (plane 1). Phases get their
own colour bar in rad.
"""

from __future__ import annotations

import numpy as np

from chromaqpi.io import atomic_write

__all__ = ["composite", "save_preview"]


def composite(image: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """(C, H, W) intensities -> (H, W, 3) display RGB in [0, 1], and the contrast scale used.

    ``scale`` is the |I - 1| shown at full saturation; default the 99.5th percentile.
    """
    d = np.asarray(image, dtype=np.float64) - 1.0
    if scale is None:
        scale = float(np.percentile(np.abs(d), 99.5)) or 1.0
    if d.shape[0] == 3:
        rgb = d
    elif d.shape[0] == 2:
        rgb = np.stack([d[0], d[1], d[0]])
    else:
        rgb = np.repeat(d[:1], 3, axis=0)
    return np.clip(0.5 + 0.5 * rgb.transpose(1, 2, 0) / scale, 0.0, 1.0), scale


def _title(params: dict) -> str:
    m = params["microscope"]
    o, f, s = m["optics"], m["focus"], m["sensor"]
    noise = f"p={s['gaussian_std']:.2f}" if s["model"] == "gaussian" else f"Nbg={s['full_well_e'] * s['fill_fraction']:.0f}"
    bayer = " Bayer" if s.get("bayer") else ""
    focus = f"z0={f['defocus_um']:.2f}" if not m["planes"] else "z=" + "/".join(f"{p['defocus_um']:.2f}" for p in m["planes"])
    return f"#{params['index']} {params['source']}\nNA {o['na_objective']:.2f} {focus} {noise}{bayer}"


def save_preview(path, samples: list[dict], *, columns: int = 4, dpi: int = 100) -> None:
    """Write a grid of (composite, phase) pairs to a PNG.

    Parameters
    ----------
    path : destination ``.png`` (written atomically).
    samples : dicts with ``input`` (C,H,W), ``phase`` (H,W) rad and ``params`` (sample JSON).
    columns : samples per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(samples)))
    rows = -(-len(samples) // columns)
    fig = Figure(figsize=(5.4 * columns, 2.9 * rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, s in enumerate(samples):
        r, c = divmod(k, columns)
        rgb, scale = composite(s["input"])
        ax_in, ax_ph = axes[r, 2 * c], axes[r, 2 * c + 1]
        ax_in.imshow(rgb, interpolation="nearest")
        ax_in.set_title(_title(s["params"]) + f"\ninput: I-1 at ±{scale:.3f}", fontsize=7)
        im = ax_ph.imshow(np.asarray(s["phase"]), cmap="viridis", interpolation="nearest")
        ax_ph.set_title(f"phase (rad) at {s['params']['microscope']['optics']['wavelength_ref_um']:.3f} µm", fontsize=7)
        fig.colorbar(im, ax=ax_ph, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
