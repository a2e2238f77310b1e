"""``chromaqpi reconstruct IMAGE... --method M --microscope PRESET|FILE --out DIR``.

Reads PNG/JPEG/TIFF/NPY micrographs (8/16-bit or float), optionally decodes
sRGB to linear, flat-fields them (with ``--background`` or an automatic smooth
background estimate), reconstructs phase and writes per image:
``<stem>_phase.tif`` (float32, rad at the reference wavelength),
``<stem>_opd.tif`` (float32, nm), ``<stem>_phase.png`` (preview with colour
bar), for learned models with ``--samples N > 1`` ``<stem>_std.tif``, and with ``--absorption``
``<stem>_absorption.tif`` (the specimen's amplitude attenuation, ``chromaqpi.estimate_absorption``).
The TIFFs' JSON metadata records the method, options, microscope and any warnings
raised for that image (e.g. a microscope outside the model's training family).
``--fit-focus`` (planes-mode microscopes) first fits the image's focus offset as
``chromaqpi focus`` does, prints it, and reconstructs with the moved microscope;
the metadata then holds that microscope and ``focus_offset_um``. A crop without focus
signal (flat scores, e.g. empty background) keeps the declared focus (offset 0, with a warning).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import warnings
from pathlib import Path

import numpy as np

PHASE_OFFSET = "zero-mean (the constant phase is not observable)"
# Options that do not change the result (the seed is recorded on its own).
NOT_RECORDED = ("generator", "progress")
# What reconstruct writes per input: <stem>_<kind>.tif (and _phase.png).
OUTPUT_KINDS = ("phase", "opd", "std", "absorption")
ABSORPTION_DESCRIPTION = {
    "quantity": "amplitude attenuation a of the specimen (|t|^2 = exp(-2a)); 0 = transparent",
    "estimate": "-1/2 ln I0, I0 the intercept of the channels' per-pixel intensity-vs-defocus fit "
                "(chromaqpi.estimate_absorption); light a strong phase object scatters past the pupil also reads as a",
}


def add_arguments(parser):
    from chromaqpi.cli.focus import add_search_arguments

    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="micrographs (files or folders)")
    parser.add_argument("--method", default="auto", metavar="NAME",
                        help="auto, tie, wotf, iterative, mean, zmd, ... (see `chromaqpi.list_methods()`; default: "
                             "%(default)s = the mean net of the shipped model nearest to the microscope, else tie/wotf)")
    add_reading_arguments(parser)
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--model", metavar="NAME|PATH", help="learned model name or checkpoint folder")
    parser.add_argument("--steps", type=int, metavar="K",
                        help="diffusion sampling steps (default: the count the model's card recommends, else 25)")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="scale of the diffusion chain's noise, >= 0 (1: posterior draws; 0: one deterministic "
                             "estimate; default: the model card's for one draw, 1 with --samples N > 1)")
    parser.add_argument("--samples", type=int, default=1, metavar="N",
                        help="posterior samples; N > 1 also writes a per-pixel std: for ZMD models whose card has "
                             "a scale (shipped: default) the draws' spread calibrated on validation images to a "
                             "one-sigma error bar (benchmarks/results/uncertainty-calibration.md), else their raw "
                             "spread")
    parser.add_argument("--raw-std", action="store_true",
                        help="with --samples N > 1: write the draws' raw spread instead of the calibrated std "
                             "(2-9x narrower than the error, benchmarks/results/uncertainty.md)")
    parser.add_argument("--orientations", action=argparse.BooleanOptionalAction, default=None,
                        help="take the --samples draws on turned/flipped views of the image (the D4 "
                             "elements the microscope allows), turned back before averaging "
                             "(default: on when --samples > 1)")
    # 512 = tiling.DEFAULT_TILE, written out: importing it would load torch for every --help
    parser.add_argument("--tile", type=int, metavar="PX",
                        help="learned methods: side of the overlapping tiles larger images are cut into (default "
                             "512; larger tiles gave a better large-scale phase, benchmarks/results/tiles-1024.md, "
                             "for more memory: one tile per network call)")
    parser.add_argument("--iterations", type=int, metavar="N",
                        help="--method iterative: maximum iterations (default 200; early stopping may end sooner; "
                             "about 1 s each per 256 px image on the default optics and 2 CPU cores)")
    parser.add_argument("--alpha", metavar="A",
                        help="--method wotf: Tikhonov weight, auto (default), gcv or a number >= 0; a number "
                             "such as 1e-3 for absorbing (stained) specimens, whose absorbed light the automatic "
                             "rule reads as light lost past the pupil (benchmarks/results/absorption.md)")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="data-consistency steps of the iterative solver after a learned model")
    parser.add_argument("--refine-starts", choices=("model", "model+tie"), default="model",
                        help="refine from the model's estimate only, or also from TIE keeping the fit "
                             "with the lower objective (twice the cost; for near-noiseless data only; "
                             "default: model)")
    parser.add_argument("--fit-absorption", action="store_true",
                        help="--method iterative, or with --refine: fit the specimen's amplitude attenuation along "
                             "with the phase, for stained specimens whose absorbed light a pure-phase fit explains "
                             "by bending the phase (chromaqpi.refine_with_absorption; --absorption still writes "
                             "the in-focus intercept estimate)")
    parser.add_argument("--stain", metavar="NAME",
                        help="with --fit-absorption or --method wotf: the stain colouring the specimen, so that the "
                             "fit (or WOTF's absorption nuisance) knows how its absorption depends on wavelength "
                             "(eosin, haematoxylin, haemoglobin, methylene-blue, grey; default: grey), or auto: "
                             "per image, the named stain nearest its measured colour (grey when it is not coloured). Coloured stains mislead every pure-phase method "
                             "(benchmarks/results/absorption-independent-*.md)")
    parser.add_argument("--fit-focus", action="store_true",
                        help="first fit each image's focus offset from the image (as `chromaqpi focus`) and "
                             "reconstruct with the microscope moved by it (planes-mode microscopes only; recorded "
                             "as focus_offset_um in the metadata)")
    add_search_arguments(parser, prefix="focus-")
    parser.add_argument("--check-data", action="store_true",
                        help="put each phase map back through the forward model and report how much of the image "
                             "it leaves unexplained, relative to the noise (chromaqpi.data_fit; central 512 px; "
                             "recorded as data_fit in the metadata)")
    parser.add_argument("--absorption", action="store_true",
                        help="also write <stem>_absorption.tif: the specimen's amplitude attenuation a (|t|^2 = "
                             "e^-2a) from the channels' in-focus intercept, and print its 99th percentile; every "
                             "method assumes a = 0 (costs: benchmarks/results/absorption.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed for stochastic methods (default: 0)")
    parser.add_argument("--keep-going", action="store_true",
                        help="in a batch, report an unreadable or unusable image and go on with the next "
                             "(exit code 1 if any failed); default: stop at the first")
    parser.add_argument("--no-preview", action="store_true", help="skip the PNG previews")


def add_reading_arguments(parser):
    """The microscope and how the micrographs are read and flat-fielded (shared with `chromaqpi focus`)."""
    parser.add_argument("--microscope", "-m", default="default", metavar="PRESET|FILE",
                        help="microscope preset or TOML (default: %(default)s)")
    parser.add_argument("--background", metavar="IMAGE", help="empty-field image for flat-fielding")
    parser.add_argument("--dark", type=float, default=0.0, metavar="LEVEL",
                        help="black level in the file's units after scaling to [0, 1] (default: 0)")
    parser.add_argument("--normalized", action="store_true",
                        help="inputs are already flat-fielded (empty field = 1); skip flat-fielding")
    parser.add_argument("--srgb", action="store_true", help="decode sRGB (JPEG/PNG from a camera) to linear first")
    parser.add_argument("--gamma", type=float, metavar="G",
                        help="the camera's gamma setting if not 1 (it wrote linear^G, e.g. 0.45): decoded first")
    parser.add_argument("--response", metavar="JSON",
                        help="the camera's measured response curve (`chromaqpi response`): decoded first")


def check_reading_options(args) -> None:
    from chromaqpi.errors import ConfigError

    if not (math.isfinite(args.dark) and args.dark >= 0):
        raise ConfigError(f"--dark must be a finite black level >= 0, got {args.dark}")
    if sum((args.srgb, args.gamma is not None, args.response is not None)) > 1:
        raise ConfigError("--srgb, --gamma and --response each describe the file's encoding: give one")
    if args.response is not None and args.dark != 0:
        raise ConfigError("--response curves include the camera's black level: drop --dark")
    if args.gamma is not None:
        from chromaqpi.io import check_gamma

        check_gamma(args.gamma)  # before any file is read
    decoding(args)  # reads a --response curve once, before any image
    if args.normalized and (args.background or args.dark != 0):
        raise ConfigError("--normalized inputs are already flat-fielded: drop --background/--dark, "
                          "or the raw image needs them without --normalized")


def reading_record(args) -> dict:
    """How the input was decoded and flat-fielded, for the outputs' metadata."""
    return {"srgb": args.srgb, "gamma": args.gamma,
            "response": Path(args.response).name if args.response else None,
            "dark": args.dark, "normalized": args.normalized,
            "background": Path(args.background).name if args.background else None}


def decoding(args) -> dict:
    """``read_image``'s decoding keywords from the reading options; a --response curve is read on the first
    call and kept on ``args``."""
    if args.response is not None and getattr(args, "camera_response", None) is None:
        from chromaqpi.response import read_response

        args.camera_response = read_response(args.response)
    return {"linearize_srgb": args.srgb, "gamma": args.gamma, "response": getattr(args, "camera_response", None)}


def read_background(args, microscope) -> np.ndarray | None:
    """The --background frame, read once for every input (its errors name that flag)."""
    from chromaqpi.errors import InputError
    from chromaqpi.io import read_image

    if not args.background:
        return None
    try:
        background, _ = read_image(args.background, **decoding(args), need_channels=microscope.n_channels,
                                   empty_field=True)
    except InputError as exc:
        raise InputError(f"--background {exc}") from None
    return background


def load_normalized(path, microscope, args, background=None) -> np.ndarray:
    """Read, linearise and flat-field one image to (C, H, W), empty field = 1."""
    from chromaqpi.flatfield import flat_field
    from chromaqpi.io import read_image

    image, info = read_image(path, **decoding(args), need_channels=microscope.n_channels)
    warn_pixel_size(info.get("pixel_size_um"), microscope)
    if args.normalized:
        return image
    return flat_field(image, background=background, dark=args.dark)


# A file's recorded pixel size further than this (relative) from the microscope's is flagged.
PIXEL_SIZE_TOLERANCE = 0.1


def warn_pixel_size(recorded_um: float | None, microscope) -> None:
    """Warn when the image file records a pixel size other than the microscope's: defocus contrast
    scales with the pixel size (the solvers' frequencies, the networks' training range), so a wrong
    ``sampling.pixel_size_um`` gives a wrong phase without any other sign."""
    declared = microscope.sampling.pixel_size_um
    if recorded_um and abs(recorded_um / declared - 1) > PIXEL_SIZE_TOLERANCE:
        warnings.warn(f"the image records {recorded_um:.4g} µm per pixel but the microscope declares "
                      f"{declared:.4g} µm at the sample: if the file's value is the sample-plane pixel, set "
                      "sampling.pixel_size_um to it (the phase scales with it)", stacklevel=2)


# The method option each flag sets, to name the flag (not the option) when a method does not take it.
FLAG_OF = {"model": "--model", "steps": "--steps", "temperature": "--temperature", "samples": "--samples",
           "return_std": "--samples", "orientations": "--orientations", "refine": "--refine",
           "refine_starts": "--refine", "tile": "--tile", "calibrated_std": "--raw-std",
           "fit_absorption": "--fit-absorption", "stain": "--stain"}
DIFFUSION = ("ddpm", "cvdm", "zmd")
MIN_TILE = 64
# Benchmark baselines (a flat map): for the Python API and `chromaqpi evaluate`, not offered to reconstruct images.
BASELINES = ("constant",)


def fit_each_input(args, microscope, desc: str, fit):
    """``(path, fit(images, path))`` for every input, read and flat-fielded to a (C, H, W) tensor; errors
    name the input (`chromaqpi focus` and `register`: one fit per calibration or specimen image)."""
    import torch

    from chromaqpi.cli.common import collect_inputs, naming_input, progress

    paths = collect_inputs(args.inputs)
    background = read_background(args, microscope)
    for path in progress(paths, desc=desc):
        with naming_input(path):
            result = fit(torch.from_numpy(load_normalized(path, microscope, args, background)), path)
        yield path, result


def check_flags_fit_method(method: str, options: dict) -> None:
    import inspect

    from chromaqpi.errors import ConfigError
    from chromaqpi.solvers.base import get_method

    params = inspect.signature(get_method(method)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # takes any option, as the core check allows
    flags = {FLAG_OF[k] for k in options if k in FLAG_OF and k not in params}
    # accepted by the signature, but the mean net runs no diffusion chain
    flags |= {FLAG_OF[k] for k in ("steps", "temperature") if method == "mean" and k in options}
    if flags:
        flags = sorted(flags)
        which = f"--method {method}" + (" (the default)" if method == "auto" else "")
        raise ConfigError(f"{which} does not take {', '.join(flags)} (--model, --samples, --orientations, "
                          f"--tile and --refine are for mean, {', '.join(DIFFUSION)}; --steps and --temperature for "
                          f"{', '.join(DIFFUSION)}: "
                          "name the method, e.g. --method zmd)")


def check_options(args) -> None:
    """Reject values the methods would silently ignore or report under another name."""
    from chromaqpi.errors import ConfigError

    check_method(args.method)
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    if args.refine < 0:
        raise ConfigError(f"--refine must be >= 0 steps, got {args.refine}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.tile is not None and args.tile < MIN_TILE:
        raise ConfigError(f"--tile must be >= {MIN_TILE} px (tiles overlap by 48), got {args.tile}")
    from chromaqpi.models.registry import is_temperature

    if args.temperature is not None and not is_temperature(args.temperature):
        raise ConfigError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    check_reading_options(args)
    check_focus_options(args)


def check_method(name: str) -> None:
    """A method offered to reconstruct images: any listed one but the benchmark baselines."""
    from chromaqpi.errors import ConfigError
    from chromaqpi.solvers.base import list_methods

    offered = [m for m in list_methods() if m not in BASELINES]
    if name not in offered:
        what = "is a benchmark baseline (a flat phase map), not a reconstruction" if name in BASELINES else \
            "is not a method"
        raise ConfigError(f"--method {name} {what}; choose from {', '.join(offered)}")


def check_focus_options(args) -> None:
    from chromaqpi.cli.focus import SEARCH_DEFAULTS, check_search_options
    from chromaqpi.errors import ConfigError

    if args.fit_focus:
        check_search_options(args, prefix="focus-")
    elif any(getattr(args, k) != v for k, v in SEARCH_DEFAULTS.items()):
        raise ConfigError("--focus-search, --focus-step and --focus-crop need --fit-focus")


def method_options(args) -> dict:
    check_options(args)
    if args.method == "auto" and args.model:  # --model names its method: the kind its card records
        from chromaqpi.models.registry import read_card, resolve_model_dir

        args.method = read_card(resolve_model_dir(args.model))["model"]["kind"]
        print(f"--model {args.model}: --method {args.method} (the model's kind)")
    options = {}
    if args.model:
        options["model"] = args.model
    if args.steps is not None:
        options["steps"] = args.steps
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.tile is not None:
        options["tile"] = args.tile
    if args.samples > 1:
        options["samples"] = args.samples
        options["return_std"] = True
        if args.raw_std:
            options["calibrated_std"] = False
    elif args.raw_std:
        from chromaqpi.errors import ConfigError

        raise ConfigError("--raw-std needs --samples N >= 2 (the std of N draws)")
    if args.orientations is not None:
        if args.samples < 2:
            from chromaqpi.errors import ConfigError

            raise ConfigError("--orientations needs --samples N >= 2 (one view per draw)")
        options["orientations"] = args.orientations
    if args.refine:
        options["refine"] = args.refine
        options["refine_starts"] = args.refine_starts
    elif args.refine_starts != "model":
        from chromaqpi.errors import ConfigError

        raise ConfigError("--refine-starts needs --refine STEPS")
    if args.fit_absorption:
        if not (args.refine or args.method == "iterative"):
            from chromaqpi.errors import ConfigError

            raise ConfigError("--fit-absorption is for --method iterative or --refine STEPS after a learned model")
        options["fit_absorption"] = True
    if args.stain is not None:
        from chromaqpi.errors import ConfigError
        from chromaqpi.optics.spectra import get_stain

        if not (args.fit_absorption or args.method == "wotf"):
            raise ConfigError("--stain needs --fit-absorption, or --method wotf (the stain colours the absorption "
                              "they model)")
        options["stain"] = "auto" if args.stain == "auto" else get_stain(args.stain).name
    check_flags_fit_method(args.method, options)
    if args.method in {"mean", *DIFFUSION}:
        import torch

        options["generator"] = torch.Generator().manual_seed(args.seed)
        options["progress"] = True
    elif args.method == "iterative":  # minutes per image on the default optics
        options["progress"] = True
    if args.iterations is not None:
        from chromaqpi.errors import ConfigError

        if args.method != "iterative":
            raise ConfigError("--iterations is for --method iterative (use --refine STEPS after a learned model)")
        if args.iterations < 1:
            raise ConfigError(f"--iterations must be >= 1, got {args.iterations}")
        options["max_iter"] = args.iterations
    if args.alpha is not None:
        options["alpha"] = wotf_alpha(args.alpha, args.method)
    return options


def wotf_alpha(text: str, method: str):
    """``--alpha``: "auto", "gcv" or a finite number >= 0, for --method wotf only."""
    from chromaqpi.errors import ConfigError

    if method != "wotf":
        raise ConfigError(f"--alpha is for --method wotf, not {method}")
    if text in ("auto", "gcv"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"--alpha must be auto, gcv or a finite number >= 0, got {text!r}")
    return value


def resolve_method(method: str, microscope, options: dict, coloured: bool = False) -> tuple[str, dict]:
    """The method and options that run for one image: ``auto`` becomes its choice for this image's
    microscope (a focus fit may move it out of a model's family) and colour, recorded as what ran."""
    if method != "auto":
        return method, options
    from chromaqpi.models.methods import resolve_auto

    chosen, chosen_options = resolve_auto(microscope, coloured=coloured)
    return chosen, {**chosen_options, **({"progress": True} if "model" in chosen_options else {})}


def check_data(images, phase, microscope):
    """``chromaqpi.data_fit`` of a finished reconstruction; None, with a warning, for an image too small
    to compare (the phase map is still written)."""
    import chromaqpi
    from chromaqpi.errors import InputError

    try:
        return chromaqpi.data_fit(images, phase, microscope)
    except InputError as err:
        warnings.warn(f"--check-data skipped: {err}", UserWarning)
        return None


def std_description(scale: float | None, method: str) -> dict:
    """What the std map holds, for its metadata: a calibrated error bar or the raw spread of the draws
    (of the mean network's views: it draws nothing)."""
    if scale is not None:
        return {"quantity": "calibrated one-sigma error of phase",
                "calibration": f"std of the draws x {scale:g}, the model card's scale fitted on validation images "
                               "(one-sigma coverage 68 % there)"}
    spread = "of the mean network over turned/flipped views" if method == "mean" else "of posterior draws"
    return {"quantity": f"std {spread} of phase", "calibration": f"uncalibrated spread {spread}, not an error bar"}


def write_outputs(paths, stem, phase, std, microscope, meta, absorption=None):
    from chromaqpi.io import save_preview_png, write_tiff

    px = microscope.sampling.pixel_size_um
    lam = microscope.optics.wavelength_ref_um
    write_tiff(paths["phase.tif"], phase, metadata={**meta, "quantity": "phase"}, unit="rad", pixel_size_um=px)
    opd_nm = phase * lam * 1000.0 / (2 * math.pi)
    write_tiff(paths["opd.tif"], opd_nm, metadata={**meta, "quantity": "OPD"}, unit="nm", pixel_size_um=px)
    if std is not None:
        write_tiff(paths["std.tif"], std, metadata={**meta, **std_description(meta.get("std_scale"), meta["method"])},
                   unit="rad", pixel_size_um=px)
    if absorption is not None:
        write_tiff(paths["absorption.tif"], absorption, metadata={**meta, **ABSORPTION_DESCRIPTION}, unit="1",
                   pixel_size_um=px)
    if "phase.png" in paths:
        save_preview_png(paths["phase.png"], phase, cmap="viridis", label=f"phase at {lam} µm (rad)",
                         title=f"{stem}: {meta['method']}")


def check_colour(images, microscope, options: dict):
    """(the specimen's colour, ``chromaqpi.specimen_colour``; the options with ``stain="auto"`` resolved to the
    nearest named stain, or grey). ``chromaqpi.reconstruct`` warns about a coloured image given no stain."""
    from chromaqpi.consistency import specimen_colour

    colour = specimen_colour(images, microscope)
    stain = options.get("stain")
    if stain == "auto":
        options = {**options, "stain": colour.nearest_stain}
        if colour.coloured and colour.nearest_stain is None:
            warnings.warn(f"--stain auto: the specimen is coloured ({colour.summary()}) but like no named stain; "
                          "its absorption is fitted as grey", stacklevel=2)
    return colour, options


def repeat_warnings(caught, shown: set[str]) -> None:
    """Re-issue warnings recorded for one input (they also go into its files' metadata, so that
    a phase map made outside a model's training family says so), each message once per batch."""
    for w in caught:
        if str(w.message) not in shown:
            shown.add(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def run(args):
    import sys

    from chromaqpi.cli.common import collect_inputs, output_dir, output_files, progress
    from chromaqpi.errors import ConfigError, InputError, MethodError
    from chromaqpi.microscope import Microscope

    microscope = Microscope.resolve(args.microscope)
    paths = collect_inputs(args.inputs, skip_ends=tuple(f"_{name}" for name in OUTPUT_KINDS))
    if args.background:  # the empty field flat-fields itself to 1 everywhere: a phase of exactly 0
        own = [p for p in paths if p.resolve() == Path(args.background).resolve()]
        paths = [p for p in paths if p not in own]
        if not paths:
            raise InputError(f"the only input is the --background {args.background} itself")
        if own:
            print(f"skipped {own[0].name}: it is the --background")
    options = method_options(args)
    if args.fit_focus and not microscope.planes:
        raise ConfigError("--fit-focus is for planes-mode microscopes: on RGB-mode ones the focus fit is biased "
                          "(benchmarks/results/focus-estimate.md)")
    if args.absorption or args.fit_absorption:
        from chromaqpi.consistency import check_absorption_identifiable

        check_absorption_identifiable(microscope)
    background = read_background(args, microscope)
    out = output_dir(args.out)
    shown: set[str] = set()
    failed = []
    for path in progress(paths, desc=f"reconstruct ({args.method})"):
        names = (["phase.tif", "opd.tif"] + ["std.tif"] * (args.samples > 1) + ["absorption.tif"] * args.absorption
                 + ["phase.png"] * (not args.no_preview))
        outputs = output_files(out, path.stem, names)
        try:
            reconstruct_one(path, outputs, microscope, background, options, args, shown)
        except (InputError, MethodError) as exc:  # this image's problem: with --keep-going, go on to the next
            if not args.keep_going:
                raise
            failed.append(path)
            from tqdm.auto import tqdm

            tqdm.write(f"chromaqpi reconstruct: error: {exc} (skipped)", file=sys.stderr)  # a line of its own
    print(f"wrote {len(paths) - len(failed)} reconstruction(s) to {out}"
          + (f"; {len(failed)} input(s) failed: {', '.join(p.name for p in failed)}" if failed else ""))
    return 1 if failed else 0


def reconstruct_one(path, outputs, microscope, background, options, args, shown: set[str]) -> None:
    """Read, flat-field and reconstruct one input and write its outputs (all or none)."""
    import torch

    import chromaqpi
    from chromaqpi.cli.common import naming_input, writing_together
    from chromaqpi.cli.focus import fit_focus
    from chromaqpi.models.registry import learned_settings
    from chromaqpi.registration import redeclare, unregister

    with naming_input(path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            images = torch.from_numpy(load_normalized(path, microscope, args, background))
            colour, options = check_colour(images, microscope, options)
            start = time.perf_counter()
            fit, solve_scope = None, microscope
            if args.fit_focus:  # undo a declared registration once, for the fit and the solver alike
                images, solve_scope = unregister(images, microscope)
                fit = fit_focus(images, solve_scope, args, path.name, prefix="focus-")
                # No focus signal in the crop: keep the declared focus rather than move it at random.
                solve_scope = fit.microscope if fit.reliable else solve_scope
            method, method_opts = resolve_method(args.method, solve_scope, options, colour.coloured)
            result = chromaqpi.reconstruct(images, solve_scope, method=method, **method_opts)
            scope = redeclare(solve_scope, microscope)  # recorded: what the input needs
            seconds = time.perf_counter() - start
            phase, std = (result if isinstance(result, tuple) else (result, None))
            check = check_data(images, phase, solve_scope) if args.check_data else None
            absorption = (chromaqpi.estimate_absorption(images, solve_scope, stain=options.get("stain"))
                          if args.absorption else None)
        meta = {"method": method, "options": {k: v for k, v in method_opts.items() if k not in NOT_RECORDED},
                "seed": args.seed, "source": path.name, "reading": reading_record(args),
                "wavelength_um": microscope.optics.wavelength_ref_um,
                "phase_offset": PHASE_OFFSET,
                "seconds": round(seconds, 3), "microscope": scope.to_dict(),
                "warnings": list(dict.fromkeys(str(w.message) for w in caught)),
                "specimen_colour": {**dataclasses.asdict(colour), "coloured": colour.coloured}}
        if method != args.method:
            meta["method_requested"] = args.method
            choice = f"--method {args.method}: {method}" + (f" (model {method_opts['model']!r})"
                                                             if "model" in method_opts else "")
            if choice not in shown:
                shown.add(choice)
                print(choice)
        if method in {"mean", *DIFFUSION}:
            meta.update(learned_settings(method, scope, method_opts))
        if args.check_data:
            meta["data_fit"] = dataclasses.asdict(check) if check else None
            if check:
                print(f"{path}: {check.summary()}")
        if absorption is not None:
            meta["absorption_p99"] = round(float(np.quantile(absorption.numpy(), 0.99)), 4)  # torch's caps the size
            print(f"{path}: absorption a (|t|² = e^-2a), 99th percentile {meta['absorption_p99']:.3g}")
        if fit is not None:
            meta["focus_offset_um"] = fit.offset_um if fit.reliable else 0.0
            print(f"{path}: focus offset {fit.offset_um:+.2f} µm" if fit.reliable else
                  f"{path}: no focus signal in the fitted crop; kept the declared focus")
        repeat_warnings(caught, shown)
        with writing_together(outputs):
            write_outputs(outputs, path.stem, phase.numpy(), None if std is None else std.numpy(), microscope, meta,
                          None if absorption is None else absorption.numpy())
