"""``chromaqpi measure PHASE.tif... --out DIR``: per-object area, phase, OPD and dry mass as CSV.

Reads phase TIFFs written by ``chromaqpi reconstruct`` (pixel size and wavelength come from their
metadata; ``--pixel-size`` and ``--wavelength`` override or supply them for other files),
segments objects above the medium and writes per input ``<stem>_objects.csv``,
``<stem>_labels.tif`` (uint16, 0 = medium) and ``<stem>_objects.png`` (outlines on the phase).
"""

from __future__ import annotations

import csv
import math
import warnings


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="PHASE",
                        help="phase maps in rad (TIFF/NPY), or folders of them (a reconstruct output "
                             "folder: its *_phase.tif)")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--threshold", type=float, metavar="RAD",
                        help="phase above the medium that counts as object (default: automatic, 4x the medium's "
                             "noise spread, between Otsu's threshold and 1/20 of it)")
    parser.add_argument("--min-area", type=float, default=1.0, metavar="UM2",
                        help="discard smaller objects, µm² (default: %(default)s)")
    parser.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size at the sample, µm")
    parser.add_argument("--wavelength", type=float, metavar="UM", help="wavelength of the phase, µm")
    parser.add_argument("--alpha", type=float, default=0.19, metavar="UM3_PER_PG",
                        help="specific refraction increment, µm³/pg (default: %(default)s)")
    parser.add_argument("--no-preview", action="store_true", help="skip the PNG overlays")


def _calibration(meta: dict, args, name: str) -> tuple[float, float]:
    from chromaqpi.errors import InputError

    # "is None", not "or": an explicit --pixel-size 0 is an error, not a request for the metadata.
    px = args.pixel_size if args.pixel_size is not None else meta.get("pixel_size_um")
    lam = args.wavelength if args.wavelength is not None else meta.get("wavelength_um")
    for flag, value in (("--pixel-size", px), ("--wavelength", lam)):
        if value is None:
            raise InputError(f"{name}: no {flag[2:]} in the file's metadata; pass {flag}")
        if not 0 < value < math.inf:
            raise InputError(f"{name}: {flag[2:]} must be positive and finite, got {value}")
        if flag == "--wavelength" and not 0.2 < value < 2.0:  # the Microscope's range: 550 nm by mistake
            raise InputError(f"{name}: wavelength must be in µm (e.g. 0.55), got {value:g}")  # scales dry mass
        recorded = meta.get(f"{flag[2:].replace('-', '_')}_um")
        if recorded and not math.isclose(value, recorded, rel_tol=0.01):
            warnings.warn(f"{name}: {flag} {value:g} overrides the {recorded:g} µm recorded in the file", UserWarning)
    if meta.get("unit", "rad") != "rad":
        raise InputError(f"{name}: values are in {meta['unit']!r}, expected a phase image in rad")
    return float(px), float(lam)


def _check_options(args) -> None:
    from chromaqpi.errors import ConfigError

    if not 0 <= args.min_area < math.inf:
        raise ConfigError(f"--min-area must be a finite area >= 0 µm², got {args.min_area}")
    if not 0 < args.alpha < math.inf:
        raise ConfigError(f"--alpha must be positive and finite, got {args.alpha}")


def _write_csv(path, names, rows) -> None:
    from chromaqpi.io import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _save_overlay(path, phase, labels, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from chromaqpi.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(phase, cmap="viridis")
    edges = find_boundaries(labels, mode="outer")
    ax.imshow(edges, cmap="Reds", alpha=edges.astype(float), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, label="phase (rad)")
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(args):
    from chromaqpi.cli.common import (collect_inputs, naming_input, output_dir, output_files, progress,
                                      writing_together)
    from chromaqpi.io import read_map, write_tiff
    from chromaqpi.measure import measure_objects, measurements_table, segment_objects

    _check_options(args)
    # In folders: the phase maps reconstruct wrote (not its OPD, std or previews), else every map.
    paths = collect_inputs(args.inputs, suffixes={".tif", ".tiff", ".npy"}, prefer_end="_phase")
    out = output_dir(args.out)
    total = 0
    for path in progress(paths, desc="measure"):
        stem = path.stem.removesuffix("_phase")
        outputs = output_files(out, stem, ["objects.csv", "labels.tif"] + ["objects.png"] * (not args.no_preview))
        with naming_input(path):
            phase, meta = read_map(path)
            px, lam = _calibration(meta, args, path.name)
            seg = segment_objects(phase, threshold_rad=args.threshold, min_area_px=max(1, round(args.min_area / px**2)))
            rows = measure_objects(phase, seg.labels, wavelength_um=lam, pixel_size_um=px,
                                   background_rad=seg.background_rad, alpha_um3_per_pg=args.alpha)
            names, table = measurements_table(rows)
            # The settings behind <stem>_objects.csv (a plain table) travel with its label image.
            labels_meta = {"quantity": "object labels", "source": path.name,
                           "background_rad": seg.background_rad, "threshold_rad": seg.threshold_rad,
                           "wavelength_um": lam, "alpha_um3_per_pg": args.alpha, "min_area_um2": args.min_area,
                           "phase_method": meta.get("method")}
            with writing_together(outputs):
                _write_csv(outputs["objects.csv"], names, table)
                write_tiff(outputs["labels.tif"], seg.labels, unit="label", pixel_size_um=px,
                           dtype="uint16", value_range=(0, 65535), metadata=labels_meta)
                if not args.no_preview:
                    _save_overlay(outputs["objects.png"], phase - seg.background_rad, seg.labels,
                                  f"{stem}: {len(rows)} objects, threshold {seg.threshold_rad:.3g} rad")
            total += len(rows)
            print(f"{path.name}: {len(rows)} objects, total dry mass {sum(r.dry_mass_pg for r in rows):.4g} pg")
    print(f"wrote measurements of {total} object(s) from {len(paths)} image(s) to {out}")
    return 0
