"""``chromaqpi register IMAGE... --microscope PRESET|FILE [--out registered.toml]``: fit lateral colour.

Fits each channel's magnification and offset against the reference channel (green in RGB) from
calibration images (``registration.estimate_registration``): an in-focus amplitude target with
detail across the field (stage micrometer, stained section). Prints the fit per image and, with
``--out``, writes the declared microscope with the median fit as its ``registration``, ready for
``chromaqpi reconstruct --microscope registered.toml``, which maps the channels back before any
method runs. Fit the images at the size you reconstruct: the magnification is about the image centre,
so the written registration records that size and `reconstruct` refuses others. A magnification that
moves the edges by under a tenth of a pixel is written as exactly 1, and without one no size is recorded.
"""

from __future__ import annotations

import statistics
import warnings

#: RMS tile misfit (px) above which the tiles disagree with one magnification and offset.
RESIDUAL_WARN_PX = 0.25


def add_arguments(parser):
    from chromaqpi.cli.reconstruct import add_reading_arguments

    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="calibration micrographs (files or folders)")
    add_reading_arguments(parser)
    parser.add_argument("--tile", type=int, default=64, metavar="PX",
                        help="tile size of the local displacement estimates (default: %(default)s)")
    parser.add_argument("--out", "-o", metavar="FILE", help="write the microscope with the fitted registration (TOML)")


def run(args):
    from chromaqpi.cli.common import output_file
    from chromaqpi.cli.reconstruct import check_reading_options, fit_each_input
    from chromaqpi.errors import ConfigError
    from chromaqpi.io import atomic_write
    from chromaqpi.microscope import Microscope, Registration
    from chromaqpi.optics.sensor import undo_colour_matrix
    from chromaqpi.registration import estimate_registration, snap_unit_scale

    check_reading_options(args)
    if args.tile < 16:
        raise ConfigError(f"--tile must be >= 16 px, got {args.tile}")
    microscope = Microscope.resolve(args.microscope)
    reference = 1 if not microscope.planes else 0
    out = output_file(args.out, suffix=".toml") if args.out else None
    fits = []
    # Lateral colour moves the camera's own channels: a declared colour matrix is undone first.
    for path, fit in fit_each_input(args, microscope, "register", lambda images, path: estimate_registration(
            undo_colour_matrix(images, microscope)[0], reference, tile=args.tile)):
        fits.append(fit.registration)
        print(f"{path}:")
        for c, name in enumerate(microscope.channel_names):
            if c == reference:
                continue
            scale, (dy, dx) = fit.registration.scale[c], fit.registration.shift_px[c]
            print(f"  {name}: magnification {100 * (scale - 1):+.3f} %, shift dy {dy:+.2f} dx {dx:+.2f} px "
                  f"(tile misfit {fit.residual_px[c]:.2f} px RMS, {fit.tiles[c]} tiles)")
            if fit.residual_px[c] > RESIDUAL_WARN_PX:
                warnings.warn(f"{path.name}: channel {name}'s tiles disagree ({fit.residual_px[c]:.2f} px RMS): "
                              "a moving or phase-dominated specimen; use an in-focus amplitude target", UserWarning)
    if out is not None:
        n, shapes = microscope.n_channels, {tuple(f.image_shape) for f in fits}
        if len(shapes) > 1:  # a magnification is about each image's own centre: no common median
            raise ConfigError(f"the images have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(shapes))}): "
                              "fit a registration from images of the size you will reconstruct")
        shape = shapes.pop()
        scale = [snap_unit_scale(statistics.median(f.scale[c] for f in fits), shape) for c in range(n)]
        median = Registration(
            image_shape=list(shape) if any(s != 1 for s in scale) else [],  # offsets hold at any size
            scale=scale,
            shift_px=[[statistics.median(f.shift_px[c][k] for f in fits) for k in range(2)] for c in range(n)])
        with atomic_write(out, "w") as f:
            f.write(microscope.replace(registration=median).to_toml())
        print(f"wrote {out} (median registration of {len(fits)} image(s))")
    return 0
