"""The common reconstruct() contract: registry, validation, shapes, dtypes, offset convention."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from solver_cases import gaussian, two_shot

import chromaqpi
from chromaqpi import list_methods, reconstruct, simulate
from chromaqpi.errors import ConfigError, InputError, MethodError
from chromaqpi.solvers import base
from chromaqpi.solvers.base import phase_to_opd_nm, register_method

CLASSICAL = ["tie", "wotf", "iterative"]
FAST_OPTIONS = {"tie": {}, "wotf": {}, "iterative": {"max_iter": 3}}


@pytest.fixture
def case():
    m = two_shot(1.0, dx=0.2)
    phase = gaussian((40, 45), 0.8, 1.2, 0.2)
    return m, phase, simulate(phase, m, noise=False)[0]


def test_classical_methods_listed_and_top_level_api():
    assert set(CLASSICAL) <= set(list_methods())
    assert chromaqpi.reconstruct is reconstruct


def test_list_methods_imports_no_solver_or_model_code():
    code = ("import sys, chromaqpi; chromaqpi.list_methods(); "
            "bad = [m for m in sys.modules if m.startswith(('chromaqpi.solvers.tie', 'chromaqpi.solvers.wotf', "
            "'chromaqpi.solvers.iterative', 'chromaqpi.models.'))]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_unknown_method_lists_available(case):
    m, _, img = case
    with pytest.raises(ConfigError, match="unknown method 'nope'.*tie.*wotf"):
        reconstruct(img, m, method="nope")


@pytest.mark.parametrize("method", CLASSICAL)
def test_unknown_option_is_named(case, method):
    m, _, img = case
    with pytest.raises(ConfigError, match="unknown option.*bogus_option"):
        reconstruct(img, m, method=method, bogus_option=1)


def test_register_callable_and_lazy_string(case, monkeypatch):
    m, _, img = case
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @register_method("flat-test")
    def flat(images, microscope, *, level=0.0):
        return torch.full_like(images[:, 0], level)

    register_method("lazy-test", "chromaqpi.solvers.tie:tie")
    assert {"flat-test", "lazy-test"} <= set(list_methods())
    out = reconstruct(img, m, method="flat-test", level=2.0)
    assert torch.all(out == 0)  # zero-mean convention applies to every method
    assert torch.allclose(reconstruct(img, m, method="lazy-test"), reconstruct(img, m, method="tie"))
    with pytest.raises(ConfigError, match="module:function"):
        register_method("bad", "no_colon_here")
    register_method("missing-attr", "chromaqpi.solvers.tie:does_not_exist")
    with pytest.raises(ConfigError, match="does_not_exist"):
        reconstruct(img, m, method="missing-attr")


def test_a_method_returning_nan_is_an_error_not_a_result(case, monkeypatch):
    m, _, img = case
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_method("nan-test", lambda images, microscope: torch.full_like(images[:, 0], float("nan")))
    with pytest.raises(MethodError, match="'nan-test' returned NaN/Inf phase"):
        reconstruct(img, m, method="nan-test")
    register_method("nan-std-test", lambda images, microscope: (images[:, 0], torch.full_like(images[:, 0], math.inf)))
    with pytest.raises(MethodError, match="'nan-std-test' returned NaN/Inf std"):
        reconstruct(img, m, method="nan-std-test")


@pytest.mark.parametrize("bad,match", [
    (np.ones((2, 40, 45), dtype=np.uint8), "float"),
    (torch.ones(3, 40, 45), "3 channels"),
    (torch.ones(40, 45), r"\(C,H,W\)"),
    (torch.ones(2, 4, 4), "too small"),
    ([[1.0]], "numpy array or torch tensor"),
])
def test_invalid_images_raise_input_error(case, bad, match):
    m = case[0]
    with pytest.raises(InputError, match=match):
        reconstruct(bad, m, method="tie")


def test_non_finite_images_raise(case):
    m, _, img = case
    img = img.clone()
    img[0, 3, 4] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        reconstruct(img, m, method="tie")


def test_unnormalised_images_warn(case):
    m, _, img = case
    with pytest.warns(UserWarning, match="flat-field"):
        reconstruct(img * 255, m, method="tie")


@pytest.mark.parametrize("method", CLASSICAL)
def test_shapes_dtypes_and_zero_mean(case, method):
    m, _, img = case
    single = reconstruct(img.float(), m, method=method, **FAST_OPTIONS[method])
    assert single.shape == img.shape[-2:] and single.dtype == torch.float32
    batch = reconstruct(img[None].double(), m, method=method, **FAST_OPTIONS[method])
    assert batch.shape == (1, *img.shape[-2:]) and batch.dtype == torch.float64
    assert abs(float(batch.mean())) < 1e-12
    as_numpy = reconstruct(img.numpy(), m, method=method, **FAST_OPTIONS[method])
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float64


@pytest.mark.parametrize("method", CLASSICAL)
def test_batched_equals_sequential(case, method):
    m, phase, img = case
    other = simulate(0.5 * phase.flip(-1), m, noise=False)[0]
    batch = torch.stack([img, other])
    together = reconstruct(batch, m, method=method, **FAST_OPTIONS[method])
    apart = torch.stack([reconstruct(x, m, method=method, **FAST_OPTIONS[method]) for x in batch])
    assert torch.allclose(together, apart, rtol=0, atol=1e-12)


def test_reference_mask_sets_background_to_zero(case):
    m, phase, img = case
    background = phase < 1e-3
    out = reconstruct(img, m, method="tie", reference_mask=background)
    assert abs(float(out[background].mean())) < 1e-12
    assert float(out[~background].max()) > 0.5
    with pytest.raises(InputError, match="boolean"):
        reconstruct(img, m, method="tie", reference_mask=background.double())
    with pytest.raises(InputError, match="no pixel"):
        reconstruct(img, m, method="tie", reference_mask=torch.zeros_like(background))


def test_phase_to_opd():
    assert phase_to_opd_nm(2 * np.pi, "default") == pytest.approx(550.0)
