"""chromaqpi.estimate_absorption: the specimen's amplitude attenuation from the in-focus intercept of the
channels' defocus fit, against analytic cases."""

import dataclasses

import pytest
import torch

import chromaqpi
from chromaqpi.errors import ConfigError, InputError
from chromaqpi.microscope import Microscope

N = 96


def _blob(microscope, sigma_um: float, peak: float, shift_px: int = 0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(N, dtype=torch.float64), torch.arange(N, dtype=torch.float64), indexing="ij")
    r2 = ((yy - N / 2 - shift_px) ** 2 + (xx - N / 2) ** 2) * microscope.sampling.pixel_size_um**2
    return peak * torch.exp(-r2 / (2 * sigma_um**2))


@pytest.mark.parametrize("preset", ["default", "paper-2shot"])
def test_a_smooth_absorber_reads_as_its_attenuation(preset):
    # A 3 µm Gaussian absorber without phase: a smooth amplitude hardly changes over a few µm of defocus,
    # so every channel records about e^{-2a} and the intercept returns a itself. Measured error <= 5e-4
    # (default: the absorber's own weak defocus contrast); tolerance 5e-3, 60x below the 0.3 peak.
    m = Microscope.from_preset(preset)
    a = _blob(m, 3.0, 0.3)
    images = chromaqpi.simulate(torch.zeros(N, N, dtype=torch.float64), m, absorption=a, noise=False)[0]
    est = chromaqpi.estimate_absorption(images, m)
    assert est.shape == (N, N) and est.dtype == torch.float64
    torch.testing.assert_close(est, a, rtol=0, atol=5e-3)


@pytest.mark.parametrize("preset", ["default", "paper-2shot"])
def test_a_transparent_specimen_reads_as_transparent_and_absorption_is_told_from_phase(preset):
    m = Microscope.from_preset(preset)
    phase = _blob(m, 3.0, 1.0, shift_px=-20)  # 1 rad: not a weak object, measured |a| <= 6e-4
    clear = chromaqpi.simulate(phase, m, noise=False)[0]
    assert float(chromaqpi.estimate_absorption(clear, m).abs().max()) < 5e-3
    a = _blob(m, 3.0, 0.2, shift_px=20)  # beside the phase object, in the same image
    both = chromaqpi.simulate(phase, m, absorption=a, noise=False)[0]
    # The blobs reach the border, where the simulation mirrors them; inside, measured error <= 1e-3.
    inner = (slice(8, -8), slice(8, -8))
    torch.testing.assert_close(chromaqpi.estimate_absorption(both, m)[inner], a[inner], rtol=0, atol=5e-3)


def test_two_planes_give_the_mean_of_the_pair():
    # ±dz: the intercept of a line through two points is their mean, so a = -½ ln((I₊ + I₋)/2) exactly.
    m = Microscope.from_preset("paper-2shot")
    images = 0.6 + 0.8 * torch.rand(2, 2, 24, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = -0.5 * torch.log(images.mean(dim=1))
    torch.testing.assert_close(chromaqpi.estimate_absorption(images, m), expected, rtol=1e-12, atol=1e-12)
    dark = images.clone()
    dark[0, :, 0, 0] = -0.5  # no light left: clipped at -½ ln 0.01
    assert float(chromaqpi.estimate_absorption(dark, m)[0, 0, 0]) == pytest.approx(-0.5 * torch.log(torch.tensor(0.01)).item())


def test_channels_that_cannot_tell_absorption_from_defocus_are_refused():
    with pytest.raises(ConfigError, match="too alike to tell absorption"):
        chromaqpi.estimate_absorption(torch.ones(3, 16, 16), "paper-rgb")
    one_sided = Microscope.from_preset("paper-2shot")
    planes = [{**dataclasses.asdict(p), "defocus_um": 1.0 + 0.1 * i} for i, p in enumerate(one_sided.planes)]
    with pytest.raises(ConfigError, match="too alike"):
        chromaqpi.estimate_absorption(torch.ones(2, 16, 16), one_sided.replace(planes=planes))
    with pytest.raises(ConfigError, match="order"):
        chromaqpi.estimate_absorption(torch.ones(2, 16, 16), "paper-2shot", order=3)


def test_bad_images_are_refused():
    with pytest.raises(InputError, match="images have 3 channels but the microscope has 2"):
        chromaqpi.estimate_absorption(torch.ones(3, 16, 16), "paper-2shot")
    bad = torch.ones(2, 16, 16)
    bad[0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN or Inf"):
        chromaqpi.estimate_absorption(bad, "paper-2shot")


def test_given_the_phase_the_pupil_loss_it_causes_is_taken_out():
    # A sharp-edged 4 rad disc scatters light past the `default` pupil, which the in-focus intercept reads as
    # attenuation (measured up to 0.205). Given the true phase, the prediction takes it out down to the
    # reduced quadrature's model error (measured 0.025: tolerance 0.04), and an absorber beside it stays
    # (measured error 0.007: tolerance 0.015).
    m = Microscope.from_preset("default")
    yy, xx = torch.meshgrid(torch.arange(N, dtype=torch.float64), torch.arange(N, dtype=torch.float64), indexing="ij")
    disc = 4.0 / (1 + torch.exp(((yy - 28) ** 2 + (xx - 48) ** 2).sqrt() - 12))
    a = _blob(m, 1.5, 0.2, shift_px=26)
    images = chromaqpi.simulate(disc, m, absorption=a, noise=False)[0]
    inner = (slice(8, -8), slice(8, -8))
    plain = chromaqpi.estimate_absorption(images, m)[inner]
    corrected = chromaqpi.estimate_absorption(images, m, phase=disc)[inner]
    clear, spot = (a < 1e-3)[inner], (a > 0.05)[inner]
    assert float(plain[clear].abs().max()) > 0.15  # the test is not trivial
    assert float(corrected[clear].abs().max()) < 0.04
    assert float((corrected - a[inner])[spot].abs().max()) < 0.015
    with pytest.raises(InputError, match="phase shape"):
        chromaqpi.estimate_absorption(images, m, phase=disc[:-1])


@pytest.mark.parametrize("stain", ["eosin", "haematoxylin", "haemoglobin", "methylene-blue"])
def test_a_stained_absorber_reads_as_its_attenuation_when_the_stain_is_named(stain):
    # The same 3 µm, 0.3 absorber coloured by a stain (noiseless, default optics). The grey intercept misreads
    # it (measured max error 0.13-0.90); fitted with the stain's Beer-Lambert quadrature per channel it
    # is back to 0.0007-0.0024. Tolerances 0.01, and the grey estimate must stay above 0.05 off.
    m = Microscope.from_preset("default")
    a = _blob(m, 3.0, 0.3)
    images = chromaqpi.simulate(torch.zeros(N, N, dtype=torch.float64), m, absorption=a, stain=stain, noise=False)[0]
    assert float((chromaqpi.estimate_absorption(images, m, stain=stain) - a).abs().max()) < 0.01
    assert float((chromaqpi.estimate_absorption(images, m) - a).abs().max()) > 0.05


def test_the_stained_fit_runs_in_row_blocks(monkeypatch):
    import chromaqpi.consistency as consistency

    m = Microscope.from_preset("default")
    a = _blob(m, 3.0, 0.3)
    images = chromaqpi.simulate(torch.zeros(N, N, dtype=torch.float64), m, absorption=a, stain="eosin", noise=False)
    whole = chromaqpi.estimate_absorption(images, m, stain="eosin")
    monkeypatch.setattr(consistency, "_STAIN_BLOCK_BYTES", 1)  # one row per block
    torch.testing.assert_close(chromaqpi.estimate_absorption(images, m, stain="eosin"), whole, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="order 1"):
        chromaqpi.estimate_absorption(images, m, stain="eosin", order=2)
