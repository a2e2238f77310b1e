"""Cost of the weak-object transfer functions (what WOTF, the focus fit and TIE's checks build first).

The ``default`` preset (31 wavelengths x ~45 source points, 0.65 NA): the shipped path evaluates
the shifted-pupil kernels only on the rows and columns a pupil reaches
(``Simulator.band_kernels``); the baseline, timed in the same run, evaluates them on the whole
grid (``Simulator.kernels``, the simulator's own path) and forms the same correlation. Both give
the same transfer functions (max difference reported).

Usage: python benchmarks/bench_transfer.py [--sizes 256,512] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from _common import markdown_table, timed, write_results
from chromaqpi import Microscope
from chromaqpi.optics.simulator import Simulator
from chromaqpi.optics.transfer import _negate_frequency, compute_channel_transfer_functions


def whole_grid(microscope: Microscope, shape) -> torch.Tensor:
    """H^φ per channel from full-grid kernels (the pre-band computation), float64."""
    sim = Simulator(microscope.replace(sampling={"oversample": 1, "pad_px": 0}), shape, dtype=torch.float64)
    o = microscope.optics
    h = torch.zeros(microscope.n_channels, *shape, dtype=torch.float64)
    for k, lam in enumerate(sim.wavelengths):
        kernels, _ = sim.kernels(k)
        corr = (kernels[:, :1, :1].conj() * kernels).sum(dim=0)
        neg = _negate_frequency(corr).conj()
        scale = o.wavelength_ref_um / lam if o.phase_model == "opd" else 1.0
        h += sim.channel_weights[:, k, None, None] * scale * (1j * (corr - neg)).real
    return h


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512", help="comma-separated padded grid sizes (px)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scope = Microscope.from_preset("default")
    rows = []
    for n in [int(v) for v in args.sizes.split(",")]:
        shape = (n, n)
        band = compute_channel_transfer_functions(scope, shape)[0]
        # The whole-grid baseline does not apply the box-pixel MTF: compare without it.
        band_raw = compute_channel_transfer_functions(scope, shape, pixel_integration=False)[0]
        diff = float((band_raw - whole_grid(scope, shape)).abs().max() / band.abs().max())
        t_band = timed(lambda: compute_channel_transfer_functions(scope, shape), repeat=args.repeat)
        t_full = timed(lambda: whole_grid(scope, shape), repeat=args.repeat)
        rows.append([f"{n}x{n}", f"{t_full:.2f}", f"{t_band:.2f}", f"{t_full / t_band:.2f}x", f"{diff:.1e}"])
        print(rows[-1], flush=True)
    header = ["grid", "whole grid (s)", "pupil band (s)", "speed-up", "max |difference| / max |H|"]
    body = (f"`default` preset, phase and absorption TFs of all channels, float64, {args.threads} threads, "
            f"best of {args.repeat} runs after a warm-up; the whole-grid baseline computes H^φ only.\n\n"
            + markdown_table(header, rows))
    write_results("transfer", "Transfer-function cost: pupil band vs whole grid", body)


if __name__ == "__main__":
    main()
