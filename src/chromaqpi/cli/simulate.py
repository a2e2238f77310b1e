"""``chromaqpi simulate INPUT... --microscope PRESET|FILE --out DIR``.

INPUT is a phase map (TIFF/NPY in radians at the reference wavelength, or OPD
in nm with ``--opd-nm``) or, with ``--from-image``, an ordinary picture turned
into phase as the reference paper does (grey, min-max, scaled to
``--max-phase`` rad). Writes a linear 16-bit (or float) TIFF per input with the
microscope embedded as JSON metadata, plus a sidecar JSON.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


DEFAULT_MAX_PHASE = 3.5  # rad: the reference paper's phase range


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="phase maps or images (files or folders)")
    parser.add_argument("--microscope", "-m", default="default", metavar="PRESET|FILE",
                        help="microscope preset or TOML file (default: %(default)s)")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--from-image", action="store_true",
                        help="treat inputs as ordinary images: grey, min-max, x --max-phase")
    parser.add_argument("--max-phase", type=float, default=None, metavar="RAD",
                        help="phase range for --from-image (default: 3.5 rad)")
    parser.add_argument("--opd-nm", action="store_true", help="inputs are OPD maps in nm, not phase in rad")
    parser.add_argument("--no-noise", action="store_true", help="noiseless images")
    parser.add_argument("--float", action="store_true", help="write float32 TIFF instead of 16-bit")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")


def load_phase(path, *, from_image: bool, max_phase: float, opd_nm: bool, wavelength_um: float) -> np.ndarray:
    """Phase in radians at ``wavelength_um`` from a phase/OPD map or an ordinary image."""
    from chromaqpi.errors import InputError
    from chromaqpi.io import read_image, read_map

    if from_image:
        data, _ = read_image(path)
        grey = data.mean(axis=0) if data.ndim == 3 else data
        span = float(grey.max() - grey.min())
        if span == 0:
            raise InputError(f"{path}: constant image, cannot be scaled to a phase range")
        return ((grey - grey.min()) / span * max_phase).astype(np.float32)
    # Values as they are (an int16 OPD map in nm is not a camera image to scale by 32767).
    data, meta = read_map(path, plane_hint="; a phase map has one channel: use --from-image for colour pictures")
    unit = meta.get("unit")  # our TIFFs say what they hold; a map in other units would be misread
    if unit is not None and unit != ("nm" if opd_nm else "rad"):
        fix = {"nm": "pass --opd-nm", "rad": "drop --opd-nm"}.get(unit, "use --from-image to take it as a picture")
        raise InputError(f"{Path(path).name}: values are in {unit!r}, not {'nm' if opd_nm else 'rad'}; {fix}")
    if opd_nm:
        return (2 * math.pi * data / (wavelength_um * 1000.0)).astype(np.float32)
    return data.astype(np.float32)


def run(args):
    import torch

    from chromaqpi.cli.common import (collect_inputs, naming_input, output_dir, output_files, progress,
                                      writing_together)
    from chromaqpi.errors import ConfigError, InputError
    from chromaqpi.io import write_json, write_tiff
    from chromaqpi.microscope import Microscope
    from chromaqpi.optics.sensor import adds_noise
    from chromaqpi.optics.simulator import simulate

    if args.max_phase is None:
        args.max_phase = DEFAULT_MAX_PHASE
    elif not args.from_image:  # a phase map keeps its own values
        raise ConfigError("--max-phase scales pictures: it needs --from-image")
    if not (math.isfinite(args.max_phase) and args.max_phase > 0):
        raise ConfigError(f"--max-phase must be a finite phase > 0 in rad, got {args.max_phase}")
    microscope = Microscope.resolve(args.microscope)
    paths = collect_inputs(args.inputs)
    pictures = [p for p in paths if p.suffix.lower() in PICTURE_SUFFIXES]
    if pictures and not args.from_image:  # before any work: a batch is refused whole
        raise InputError(f"{pictures[0]}: PNG/JPEG hold pictures, not phase values; use --from-image, "
                         "or save the phase map as TIFF/NPY")
    out = output_dir(args.out)
    gen = torch.Generator().manual_seed(args.seed)
    noisy = not args.no_noise and adds_noise(microscope.sensor)  # recorded: whether noise was applied
    lam = microscope.optics.wavelength_ref_um
    for path in progress(paths, desc="simulate"):
        outputs = output_files(out, path.stem, ["sim.tif", "sim.json"])
        with naming_input(path):
            phase = load_phase(path, from_image=args.from_image, max_phase=args.max_phase, opd_nm=args.opd_nm,
                               wavelength_um=lam)
            image = simulate(phase, microscope, noise=not args.no_noise, generator=gen)[0].numpy()
            meta = {"kind": "chromaqpi simulated image", "source": path.name, "channels": microscope.channel_names,
                    "units": "intensity, empty field = 1" + ("" if args.float else " (uint16: value/65535*2)"),
                    "noise": noisy, "seed": args.seed, "microscope": microscope.to_dict(),
                    **({"from_image": True, "max_phase_rad": args.max_phase} if args.from_image else {})}
            encoding = {} if args.float else {"dtype": "uint16", "value_range": (0.0, 2.0)}
            clipped = float(np.mean((image < 0) | (image > 2))) if not args.float else 0.0
            if clipped:  # the 16-bit scaling holds 0-2x the empty field; a bright focus can exceed it
                warnings.warn(f"{path.name}: {clipped:.2%} of values exceed 0-2x the empty field and are clipped "
                              "in the 16-bit output (reconstruct refuses over 1 % as saturated): use --float")
            with writing_together(outputs):
                write_tiff(outputs["sim.tif"], image, metadata=meta, unit="intensity",
                           pixel_size_um=microscope.sampling.pixel_size_um, **encoding)
                write_json(outputs["sim.json"], meta)
    print(f"wrote {len(paths)} simulated image(s) to {out}")
    return 0
