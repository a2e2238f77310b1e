"""``chromaqpi focus IMAGE... --microscope PRESET|FILE [--out fitted.toml]``: where does the stack sit along z?

Estimates, from the images alone, one offset by which every plane sits away from the declared
microscope's focus (``solvers.focus.estimate_focus_offset``), prints it per image, and with
``--out`` writes the declared microscope moved by the median offset as TOML, ready for
``chromaqpi reconstruct --microscope fitted.toml`` (``reconstruct --fit-focus`` fits and uses each
image's own offset instead). Images larger than ``--crop`` along an axis are fitted on their central
crop along it (the transfer functions' cost grows with the grid; a batch of one size computes them
once). Fits whose scores are too flat to locate a focus (a crop of empty background) are reported
and left out of the median; with none left, nothing is written.
"""

from __future__ import annotations

import statistics
import warnings


def add_arguments(parser):
    from chromaqpi.cli.reconstruct import add_reading_arguments

    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="micrographs (files or folders)")
    add_reading_arguments(parser)
    add_search_arguments(parser)
    parser.add_argument("--out", "-o", metavar="FILE", help="write the microscope with the fitted focus (TOML)")


SEARCH_DEFAULTS = {"search": 0.7, "step": 0.1, "crop": 256}


def add_search_arguments(parser, prefix: str = ""):
    """The focus search's flags (``--search``...; reconstruct names them ``--focus-search``...)."""
    parser.add_argument(f"--{prefix}search", dest="search", type=float, default=SEARCH_DEFAULTS["search"],
                        metavar="UM", help="largest trial offset in µm, either way (default: %(default)s)")
    parser.add_argument(f"--{prefix}step", dest="step", type=float, default=SEARCH_DEFAULTS["step"], metavar="UM",
                        help="trial step in µm (default: %(default)s)")
    parser.add_argument(f"--{prefix}crop", dest="crop", type=int, default=SEARCH_DEFAULTS["crop"], metavar="PX",
                        help="fit on the central part of larger images, at most PX along each axis "
                             "(default: %(default)s)")


def check_search_options(args, prefix: str = "") -> None:
    from chromaqpi.errors import ConfigError
    from chromaqpi.solvers.focus import trial_offsets

    if args.crop < 16:
        raise ConfigError(f"--{prefix}crop must be >= 16 px, got {args.crop}")
    trial_offsets(args.search, args.step, names=(f"--{prefix}search", f"--{prefix}step"))


def run(args):
    from chromaqpi.cli.common import output_file
    from chromaqpi.cli.reconstruct import check_reading_options, fit_each_input
    from chromaqpi.io import atomic_write
    from chromaqpi.microscope import Microscope
    from chromaqpi.solvers.focus import shift_focus

    from chromaqpi.errors import InputError

    check_reading_options(args)
    check_search_options(args)
    microscope = Microscope.resolve(args.microscope)
    out = output_file(args.out, suffix=".toml") if args.out else None
    offsets = []
    for path, fit in fit_each_input(args, microscope, "focus",
                                    lambda images, path: fit_focus(images, microscope, args, path.name)):
        verdict = "" if fit.reliable else " -- no focus signal, left out"
        print(f"{path}: focus offset {fit.offset_um:+.2f} µm (explained energy {fit.explained_best:.3f} at the fit, "
              f"{fit.explained_declared:.3f} as declared){verdict}")
        if fit.reliable:
            offsets.append(fit.offset_um)
    if out is not None and not offsets:
        raise InputError(f"no image gave a usable focus signal; {out} not written (fit a crop with objects: --crop)")
    if out is not None:
        fitted = shift_focus(microscope, statistics.median(offsets))
        with atomic_write(out, "w") as f:
            f.write(fitted.to_toml())
        print(f"wrote {out} (focus moved by the median offset {statistics.median(offsets):+.2f} µm)")
    return 0


def fit_focus(images, microscope, args, name: str, prefix: str = ""):
    """The focus fit of one (C, H, W) stack on its central --crop, warning when it lands on the search edge."""
    from dataclasses import replace

    from chromaqpi.registration import redeclare, unregister
    from chromaqpi.solvers.focus import estimate_focus_offset
    from chromaqpi.tiling import central_crop

    # Undo a declared registration (and colour matrix) on the whole frame: its magnification is about the
    # frame's centre.
    registered, plain = unregister(images, microscope)
    crop = central_crop(registered, args.crop, even=microscope.sensor.bayer)
    # A crop is not periodic even where the preset's simulated fields are: pad it.
    padding = "auto" if crop.shape == images.shape else "mirror"
    fit = estimate_focus_offset(crop, plain, search_um=args.search, step_um=args.step, padding=padding)
    fit = replace(fit, microscope=redeclare(fit.microscope, microscope))
    if fit.reliable and fit.offset_um in (fit.offsets_um[0], fit.offsets_um[-1]):
        warnings.warn(f"{name}: the focus fit lies at the edge of the search range: the focus may be further off "
                      f"(widen --{prefix}search), or strong objects pulled the fit there (compare with the declared "
                      "focus)", UserWarning)
    return fit
