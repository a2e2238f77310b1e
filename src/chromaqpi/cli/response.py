"""``chromaqpi response FRAME... --exposures T,... --out camera.json``: measure the camera's tone curve.

For a camera whose files are neither linear, sRGB nor a plain power law (``--gamma``): frames of one
static field (an empty field serves) at several exposure times, lamp and gain unchanged, give the curve
from code value to light (``chromaqpi.response.fit_response``). ``--out`` writes it as JSON for
``chromaqpi reconstruct|focus|register --response camera.json``, which decodes every image (and the
background) with it before flat-fielding.
"""

from __future__ import annotations

import math
import warnings

# Exposure steps above this leave the curve between frames to the smoothness penalty (fit_response, Notes).
MAX_STEP = 1.5


def add_arguments(parser):
    parser.add_argument("frames", nargs="+", metavar="FRAME",
                        help="frames of one field, in --exposures order (a folder: its images in name order)")
    parser.add_argument("--exposures", required=True, metavar="T,T,...",
                        help="each frame's exposure time, comma-separated, any unit (only ratios matter)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE", help="write the response curve (JSON)")
    parser.add_argument("--knots", type=int, default=256, help="code values of the curve (default: %(default)s)")
    parser.add_argument("--smoothness", type=float, default=None,
                        help="curvature penalty relative to the data (default: the fit's, chosen on validation)")


def _exposures(text: str) -> list[float]:
    from chromaqpi.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--exposures must be comma-separated numbers, got {text!r}") from None
    return values


def frame_paths(items: list[str]) -> list:
    """The frames in order: files as named (twice if named twice), a folder's images in name order."""
    from pathlib import Path

    from chromaqpi.cli.common import IMAGE_SUFFIXES

    paths = []
    for item in map(Path, items):
        paths.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                     if item.is_dir() else [item])
    return paths


def run(args):
    from chromaqpi.cli.common import output_file
    from chromaqpi.errors import InputError
    from chromaqpi.io import read_image
    from chromaqpi.response import DEFAULT_SMOOTHNESS, fit_response, plural, write_response

    out = output_file(args.out, suffix=".json")
    exposures = _exposures(args.exposures)
    paths = frame_paths(args.frames)
    if len(exposures) != len(paths):
        raise InputError(f"{plural(len(paths), 'frame')} but {plural(len(exposures), 'exposure time')} in "
                         "--exposures")
    # Clipped pixels are expected in the longest exposures: they carry no weight in the fit, and a frame
    # clipped (or black) everywhere, uniform as it is, is dropped by the fit.
    frames = (read_image(path, max_saturated_fraction=1.0, empty_field=True)[0] for path in paths)  # one at a time
    smoothness = DEFAULT_SMOOTHNESS if args.smoothness is None else args.smoothness
    response = fit_response(frames, exposures, knots=args.knots, smoothness=smoothness)
    steps = sorted(set(response.fit["exposures"]))  # those of the frames used
    worst = max(b / a for a, b in zip(steps, steps[1:]))
    if worst > MAX_STEP:
        warnings.warn(f"exposure steps up to {worst:.2g}x: between such frames the curve is interpolated; "
                      f"steps of at most {math.sqrt(2):.2g}x determine it (fit error 0.4-2.7 % vs 2-7 % at 2x)",
                      UserWarning)
    fit = response.fit
    for c in range(response.n_channels):
        lo, hi = response.observed[c]
        gamma = fit["effective_gamma"][c]
        shown = "n/a" if gamma is None else f"{gamma:.3f}"
        print(f"channel {c}: codes {lo:.3f}-{hi:.3f} observed, effective gamma {shown} "
              f"(1: linear, ~0.45: sRGB), rms misfit {fit['rms_log_residual'][c]:.4f} (ln light)")
    write_response(out, response)
    print(f"wrote {out} ({fit['frames']} frames, {fit['blocks']} blocks each); use --response {out}")
    return 0
