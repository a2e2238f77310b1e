"""Regenerate the bundled demo sample (src/chromaqpi/data/demo_urine.*).

A 256x256 urine-sediment-like field (red cells, white cells, bacteria, yeast,
crystals, casts) from the `cells` phantom source, imaged with the `default`
microscope including camera noise, stored the way a user's camera gives it:
a linear 16-bit RGB TIFF of raw counts (12-bit sensor, black level 0) plus an
empty-field (background) frame, and the ground truth beside it.

Usage: python scripts/make_demo_sample.py   (seed 20261125; deterministic)
"""

from pathlib import Path

import numpy as np
import torch

from chromaqpi import Microscope, simulate
from chromaqpi.io import write_tiff
from chromaqpi.phantoms import get_source, phase_rad

SEED = 20261125
OUT = Path(__file__).resolve().parents[1] / "src" / "chromaqpi" / "data"


def main():
    scope = Microscope.from_preset("default")
    rng = np.random.default_rng(SEED)
    sample = get_source("cells", n_objects=(10, 16))((256, 256), scope.sampling.pixel_size_um, rng)
    phase = phase_rad(sample, scope.optics.wavelength_ref_um).astype(np.float32)
    gen = torch.Generator().manual_seed(SEED)
    image = simulate(torch.from_numpy(phase), scope, noise=True, generator=gen)[0].numpy()
    empty = simulate(torch.zeros(256, 256), scope, noise=True, generator=gen)[0].numpy()
    s = scope.sensor
    counts_per_unit = s.fill_fraction * 2**s.bit_depth  # DN of an empty field
    meta = {"kind": "chromaqpi demo sample (simulated)", "microscope": "default", "seed": SEED,
            "units": "raw DN of a 12-bit sensor", "black_level_dn": 0}
    for name, arr in (("demo_urine.tif", image), ("demo_urine_background.tif", empty)):
        dn = np.clip(np.rint(arr * counts_per_unit), 0, 2**s.bit_depth - 1).astype(np.uint16)
        write_tiff(OUT / name, dn, metadata=meta, unit="DN", dtype="uint16", value_range=(0, 65535),
                   pixel_size_um=scope.sampling.pixel_size_um)
    np.savez_compressed(OUT / "demo_urine_truth.npz", phase_rad=phase, opd_um=sample.opd_um.astype(np.float32),
                        mask=sample.mask.astype(np.int32), pixel_size_um=scope.sampling.pixel_size_um,
                        wavelength_um=scope.optics.wavelength_ref_um)
    print(f"wrote demo sample to {OUT} ({int(sample.mask.max())} objects)")


if __name__ == "__main__":
    main()
