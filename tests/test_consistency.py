"""chromaqpi.data_fit: the data residual of a phase map, against results known without it.

- the true phase of noiseless images explains them (exactly for the coherent paper presets, to the
  reduced quadrature's error for the broadband default);
- weak-phase linearity: contrast is linear in a weak phase, so half the true phase leaves a quarter
  of the squared contrast, and a flat phase all of it;
- on noisy images the true phase leaves the noise: residual over noise ~ 1 where the optics are
  band-limited (the noise estimate is then unbiased);
- a declared pixel size 20-25 % off is contradicted by the data.
"""

import dataclasses

import numpy as np
import pytest
import torch

import chromaqpi
from chromaqpi.errors import InputError


def weak_object(n: int = 96) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(float(n)), torch.arange(float(n)), indexing="ij")
    return (0.05 * torch.exp(-((yy - 48) ** 2 + (xx - 40) ** 2) / 50)
            + 0.03 * torch.exp(-((yy - 30) ** 2 + (xx - 60) ** 2) / 20)).double()


@pytest.mark.parametrize("preset, exact_tol", [("paper-2shot", 1e-9), ("paper-rgb", 1e-9), ("default", 1e-3)])
def test_true_phase_explains_noiseless_images_and_weak_contrast_is_linear(preset, exact_tol):
    phase = weak_object()
    images = chromaqpi.simulate(phase, preset, noise=False)
    assert chromaqpi.data_fit(images[0], phase, preset).unexplained_contrast < exact_tol
    # Weak object: I - 1 is linear in phase, so 0.5 phi leaves (0.5)^2 of the squared contrast (2 % for the
    # second-order terms at 0.05 rad and the reduced quadrature).
    assert chromaqpi.data_fit(images, 0.5 * phase[None], preset)[0].unexplained_contrast == pytest.approx(0.25, abs=0.005)
    assert chromaqpi.data_fit(images[0], torch.zeros_like(phase), preset).unexplained_contrast == pytest.approx(1.0, abs=1e-9)


def test_true_phase_leaves_the_noise_where_the_optics_are_band_limited():
    phase = 20 * weak_object(128)  # a strong object: the noise is a small part of the contrast
    images = chromaqpi.simulate(phase, "default", generator=torch.Generator().manual_seed(0))
    fit = chromaqpi.data_fit(images[0], phase, "default")
    assert fit.residual_over_noise == pytest.approx(1.0, abs=0.15)
    assert fit.region == (16, 16, 96, 96)


def test_a_wrong_pixel_size_is_contradicted_by_the_data():
    # Noiseless, the same true phase: only the declared optics differ (1e-4 unexplained when right).
    phase = 20 * weak_object(128)
    scope = chromaqpi.Microscope.from_preset("default")
    images = chromaqpi.simulate(phase, scope, noise=False)
    right = chromaqpi.data_fit(images[0], phase, scope).unexplained_contrast
    for factor in (0.8, 1.25):
        wrong = scope.replace(sampling={"pixel_size_um": factor * scope.sampling.pixel_size_um})
        assert chromaqpi.data_fit(images[0], phase, wrong).unexplained_contrast > 100 * right


def test_large_images_are_compared_on_a_central_crop():
    phase = weak_object(96)
    images = chromaqpi.simulate(phase, "paper-2shot", noise=False)
    fit = chromaqpi.data_fit(images[0].numpy(), phase.numpy(), "paper-2shot", crop=64, margin=8)
    assert fit.region == (24, 24, 48, 48)
    both = chromaqpi.data_fit(images.repeat(2, 1, 1, 1), torch.stack([phase, 0 * phase]), "paper-2shot", crop=64,
                              margin=8)  # a batch: one fit per image
    assert both[0].unexplained_contrast == pytest.approx(fit.unexplained_contrast, abs=1e-12)
    assert both[1].unexplained_contrast == pytest.approx(1.0)
    assert set(dataclasses.asdict(fit)) == {"residual_over_noise", "unexplained_contrast", "noise_std", "region"}


@pytest.mark.parametrize("phase, message", [
    (np.zeros((90, 96)), "does not match"),
    (np.full((96, 96), np.nan), "NaN or Inf"),
    (np.zeros((96, 96), dtype=np.int32), "float"),
])
def test_bad_phase_is_a_one_line_input_error(phase, message):
    images = chromaqpi.simulate(weak_object(), "paper-2shot", noise=False)[0].numpy()
    with pytest.raises(InputError, match=message):
        chromaqpi.data_fit(images, phase, "paper-2shot")


def test_a_noiseless_image_has_no_finite_ratio_to_its_noise():
    phase = weak_object()
    fit = chromaqpi.data_fit(chromaqpi.simulate(phase, "paper-2shot", noise=False)[0], 0.5 * phase, "paper-2shot")
    assert fit.residual_over_noise == float("inf") and "no measurable noise" in fit.summary()


def test_bayer_crops_keep_the_mosaic_layout():
    from chromaqpi.tiling import central_origin

    assert central_origin((3, 101, 99), 64) == (18, 17)
    assert central_origin((3, 101, 99), 64, even=True) == (18, 16)


def test_too_small_for_the_margin_is_an_input_error():
    images = chromaqpi.simulate(weak_object(32), "paper-2shot", noise=False)
    with pytest.raises(InputError, match="too small"):
        chromaqpi.data_fit(images, torch.zeros(1, 32, 32), "paper-2shot")
