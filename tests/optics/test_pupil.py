"""Defocus and pupil factors of the angular-spectrum propagator."""

import torch


def test_defocus_factor_removes_evanescent_waves():
    # Catches a slip (evanescent components kept with |D| = 1): for |f| > n/lambda the factor is 0.
    from chromaqpi.optics.pupil import defocus_factor, frequency_grid
    fy, fx = frequency_grid((64, 66), 0.1)
    d = defocus_factor(fy, fx, 0.55, 1.0, 1.33, paraxial=False)
    f = (fy**2 + fx**2).sqrt()
    assert torch.all(d[f > 1.33 / 0.55 * 1.0001] == 0)
    assert torch.allclose(d[f < 1.33 / 0.55 * 0.9999].abs(), torch.tensor(1.0, dtype=torch.float64))
