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


def test_band_kernels_equal_the_whole_grid_and_vanish_outside():
    # The transfer functions evaluate only the rows/columns a shifted pupil reaches; that must be
    # the same numbers as the full grid, with nothing (exactly 0) left outside the band.
    from chromaqpi import Microscope
    from chromaqpi.optics.simulator import Simulator

    scope = Microscope.from_preset("default").replace(sampling={"oversample": 1, "pad_px": 0},
                                                      spectra={"n_wavelengths": 3})
    sim = Simulator(scope, (64, 70))
    for k in range(len(sim.wavelengths)):
        full, _ = sim.kernels(k)
        band, rows, cols = sim.band_kernels(k)
        assert 0 < len(rows) < 64 and 0 < len(cols) < 70  # a real band on this grid
        assert torch.equal(band, full[:, rows[:, None], cols[None, :]])
        outside = full.clone()
        outside[:, rows[:, None], cols[None, :]] = 0
        assert torch.count_nonzero(outside) == 0


def test_band_is_the_whole_grid_without_a_pupil():
    from chromaqpi.optics.pupil import pupil_band

    rows, cols = pupil_band((8, 6), 0.1, 0.55, 0.0, [[0.0, 0.0]])
    assert rows.tolist() == list(range(8)) and cols.tolist() == list(range(6))


def test_band_kernels_hold_in_float32():
    from chromaqpi import Microscope
    from chromaqpi.optics.simulator import Simulator

    scope = Microscope.from_preset("default").replace(sampling={"oversample": 1, "pad_px": 0},
                                                      spectra={"n_wavelengths": 3})
    sim = Simulator(scope, (48, 50), dtype=torch.float32)
    for k in range(len(sim.wavelengths)):
        full, _ = sim.kernels(k)
        band, rows, cols = sim.band_kernels(k)
        assert torch.equal(band, full[:, rows[:, None], cols[None, :]])
        assert torch.count_nonzero(full).item() == torch.count_nonzero(band).item()
