"""Small, cheap microscopes and phantoms shared by the solver tests."""

import torch

from chromaqpi import Microscope
from chromaqpi.microscope import Optics, Plane, Sampling


def planes_microscope(planes, *, na=0.0, na_ill=0.0, n=1.0, lam_ref=0.55, dx=0.1, points=1, paraxial=False,
                      phase_model="opd", pad_px=0):
    """Planes-mode microscope simulated directly on the camera grid."""
    return Microscope(
        name="test",
        sampling=Sampling(pixel_size_um=dx, oversample=1, pad_px=pad_px),
        optics=Optics(na_objective=na, na_condenser=na_ill, source_points=points, n_medium=n,
                      wavelength_ref_um=lam_ref, paraxial=paraxial, phase_model=phase_model),
        planes=[Plane(lam, z) for lam, z in planes],
    )


def two_shot(dz, lam=0.55, **kw):
    return planes_microscope([(lam, -dz), (lam, dz)], lam_ref=lam, **kw)


def radius2(shape, centre, dx):
    y, x = torch.meshgrid(torch.arange(shape[0], dtype=torch.float64),
                          torch.arange(shape[1], dtype=torch.float64), indexing="ij")
    return ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) * dx**2


def paraboloid(shape, phi0, radius_um, dx, centre=None):
    """Cap φ0(1 - r²/R²) for r < R (PHYSICS.md §5.2)."""
    centre = centre or (shape[0] / 2, shape[1] / 2)
    return phi0 * torch.clamp(1 - radius2(shape, centre, dx) / radius_um**2, min=0)


def gaussian(shape, phi0, sigma_um, dx, centre=None):
    centre = centre or (shape[0] / 2, shape[1] / 2)
    return phi0 * torch.exp(-radius2(shape, centre, dx) / (2 * sigma_um**2))


def rel_rms_after_offset(pred, true):
    err = pred - true
    err = err - err.mean()
    return float(err.pow(2).mean().sqrt() / true.abs().max())


def seeded_noise(shape, sigma, seed, dtype=torch.float64):
    return sigma * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)

