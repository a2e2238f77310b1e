"""``chromaqpi demo``: the bundled urine-sediment-like sample, end to end.

Loads the bundled raw 16-bit RGB frame and its empty-field frame (simulated
with the ``default`` microscope and camera noise, ground truth known),
flat-fields it, runs the classical solvers and the bundled learned models,
and writes to ``--out``: ``sample.png`` (truth, R, G, B, colour composite),
``comparison.png`` (each method and its error), ``metrics.md`` / ``metrics.csv``
and one phase TIFF per method. Prints the metrics table.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

DEMO_METHODS = ("tie", "wotf", "mean", "zmd")


def add_arguments(parser):
    parser.add_argument("--out", "-o", default="results/demo", metavar="DIR", help="output folder (%(default)s)")
    parser.add_argument("--methods", default=",".join(DEMO_METHODS), metavar="LIST",
                        help="comma-separated methods (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the diffusion sampler (default: 0)")


def load_demo():
    """(raw (3,H,W), background (3,H,W), truth dict) of the bundled sample.

    Labels hidden by overlapping objects are absent from the mask; their
    dry-mass error is NaN and skipped.
    """
    from chromaqpi.io import read_image

    data = resources.files("chromaqpi") / "data"
    with resources.as_file(data / "demo_urine.tif") as p:
        raw, _ = read_image(p, need_channels=3)
    with resources.as_file(data / "demo_urine_background.tif") as p:
        background, _ = read_image(p, need_channels=3)
    with resources.as_file(data / "demo_urine_truth.npz") as p, np.load(p, allow_pickle=False) as z:
        truth = {k: z[k] for k in z.files}
    return raw, background, truth


def available(methods):
    """(methods that can run, methods skipped for lack of weights); names are already checked."""
    from chromaqpi.models_available import has_weights

    keep = [m for m in methods if has_weights(m)]
    return keep, [m for m in methods if m not in keep]


def sample_figure(path, truth, images):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chromaqpi.io import atomic_write

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    im = axes[0].imshow(truth, cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="phase (rad)")
    axes[0].set_title("true phase")
    for c, name in enumerate("RGB"):
        im = axes[c + 1].imshow(images[c], cmap="gray")
        fig.colorbar(im, ax=axes[c + 1], label="I / I_bg")
        axes[c + 1].set_title(f"{name} channel")
    axes[4].imshow(np.clip(np.moveaxis(images, 0, -1) / 1.6, 0, 1))
    axes[4].set_title("colour composite")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)


def comparison_figure(path, truth, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chromaqpi.io import atomic_write
    from chromaqpi.metrics import align_offset

    n = len(results) + 1
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 6.4), squeeze=False)
    lo, hi = float(truth.min()), float(truth.max())
    axes[0, 0].imshow(truth, vmin=lo, vmax=hi)
    axes[0, 0].set_title("truth")
    axes[1, 0].set_axis_off()
    for i, (name, phase) in enumerate(results.items(), start=1):
        aligned = align_offset(phase, truth, align="median").numpy()
        im = axes[0, i].imshow(aligned, vmin=lo, vmax=hi)
        axes[0, i].set_title(name)
        err = axes[1, i].imshow(aligned - truth, cmap="RdBu_r", vmin=-0.5, vmax=0.5)
        axes[1, i].set_title(f"{name} error")
    fig.colorbar(im, ax=axes[0].tolist(), label="phase (rad)", shrink=0.8)
    fig.colorbar(err, ax=axes[1].tolist(), label="error (rad)", shrink=0.8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)


def metrics_table(truth, labels, results, seconds, pixel_size_um, wavelength_um, residuals):
    import torch

    from chromaqpi.metrics import dry_mass_error, mae, ms_ssim, psnr

    rows = []
    for name, phase in results.items():
        rows.append({
            "method": name,
            "MAE (rad)": float(mae(phase, truth)),
            "MAE aligned (rad)": float(mae(phase, truth, align="median")),
            "PSNR aligned (dB)": float(psnr(phase, truth, data_range=3.5, align="mean")),
            "MS-SSIM aligned": float(ms_ssim(phase, truth, data_range=3.5, align="mean")),
            "dry-mass error (%)": 100 * float(torch.nanmean(dry_mass_error(phase, truth, labels).abs())),
            "data residual / noise": residuals[name],
            "seconds": seconds[name],
        })
    return rows


def run(args):
    import torch

    import chromaqpi
    from chromaqpi.cli.common import method_list, output_dir
    from chromaqpi.cli.reconstruct import PHASE_OFFSET
    from chromaqpi.errors import ConfigError
    from chromaqpi.flatfield import flat_field
    from chromaqpi.io import atomic_write, write_tiff
    from chromaqpi.microscope import Microscope

    methods, skipped = available(method_list(args.methods))
    if not methods:
        raise ConfigError(f"none of --methods {args.methods!r} can run: no weights installed for {', '.join(skipped)}")
    out = output_dir(args.out)
    scope = Microscope.from_preset("default")
    raw, background, truth = load_demo()
    images = flat_field(raw, background=background)
    phase_true = truth["phase_rad"]
    sample_figure(out / "sample.png", phase_true, images)
    write_tiff(out / "input_flatfielded.tif", images, metadata={"quantity": "I/I_bg", "channels": "RGB"},
               unit="intensity", pixel_size_um=scope.sampling.pixel_size_um)

    results, seconds = {}, {}
    x = torch.from_numpy(images)
    for name in methods:
        options = {"generator": torch.Generator().manual_seed(args.seed)} if name in ("zmd", "ddpm", "cvdm") else {}
        start = time.perf_counter()
        results[name] = chromaqpi.reconstruct(x, scope, method=name, **options)
        seconds[name] = time.perf_counter() - start
        meta = {"method": name, "quantity": "phase", "wavelength_um": scope.optics.wavelength_ref_um,
                "source": "bundled demo sample", "phase_offset": PHASE_OFFSET,
                "seconds": round(seconds[name], 3), "microscope": scope.to_dict()}
        write_tiff(out / f"phase_{name}.tif", results[name].numpy(), metadata=meta, unit="rad",
                   pixel_size_um=scope.sampling.pixel_size_um)
    comparison_figure(out / "comparison.png", phase_true, results)
    # The check a user can run without ground truth (reconstruct --check-data), and its floor: the truth's.
    residuals = {name: chromaqpi.data_fit(x, phase, scope).residual_over_noise for name, phase in results.items()}
    floor = chromaqpi.data_fit(x, torch.as_tensor(phase_true), scope).residual_over_noise
    rows = metrics_table(phase_true, torch.from_numpy(truth["mask"]), results, seconds,
                         scope.sampling.pixel_size_um, scope.optics.wavelength_ref_um, residuals)
    table = _markdown(rows)
    note = f"\n\nSkipped (no bundled weights): {', '.join(skipped)}\n" if skipped else "\n"
    note += (f"Data residual / noise: each map put back through the forward model against the image "
             f"(`reconstruct --check-data`, no truth needed); the true phase leaves {floor:.2f}x the noise.\n")
    note += f"`chromaqpi reconstruct` without --method (auto) runs {auto_choice(scope)} for this microscope.\n"
    with atomic_write(out / "metrics.md", "w") as f:
        f.write("# chromaqpi demo: bundled urine-sediment-like sample (default microscope)\n\n"
                "Offset-aligned metrics align the prediction to the truth by the best constant "
                "(median for MAE, mean for PSNR/MS-SSIM); dry-mass error is per object after "
                "referencing each image to its background.\n\n" + table + note)
    with atomic_write(out / "metrics.csv", "w") as f:
        f.write(",".join(rows[0]) + "\n" if rows else "")
        for r in rows:
            f.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in r.values()) + "\n")
    print(table + note + f"Results written to {out}/")
    return 0


def auto_choice(microscope) -> str:
    """What ``--method auto`` runs for ``microscope``, in words."""
    from chromaqpi.models.methods import choose_method

    method, model, _ = choose_method(microscope)
    return f"{method} (model {model!r})" if model else method


def _markdown(rows):
    if not rows:
        return "(no methods ran)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)
