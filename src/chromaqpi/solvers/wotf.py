"""Multi-channel Tikhonov inversion of the polychromatic weak-object transfer functions.

Linear model (PHYSICS.md §4): ``D_c = FFT{I_c - 1} = H^φ_c·Φ + H^a_c·A + noise``
with the per-channel WOTFs of :func:`chromaqpi.optics.transfer.channel_transfer_functions`,
inverted per spatial frequency in closed form (§4.4), optionally with a
total-variation prior solved by ADMM. By default an unregularised,
wavelength-independent absorption is profiled out where the channels can
separate it (see :func:`wotf`, Notes).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import OrderedDict

import torch

from chromaqpi.errors import ConfigError, is_number
from chromaqpi.microscope import Microscope
from chromaqpi.optics.spectra import get_stain
from chromaqpi.optics.transfer import channel_transfer_functions
from chromaqpi.solvers.fourier import alpha_grid, crop, gcv_alpha, k_squared, mirror_pad, resolve_padding
from chromaqpi.solvers.tie import tie_regularization

_TF_CACHE: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_TF_CACHE_SIZE = 4
# ADMM penalty relative to the TV weight; converges for any value, this one in ~50 iterations.
_ADMM_RHO_PER_TV = 20.0
NUISANCE_MODES = ("auto", "absorption", "none")
# Smallest phase/absorption separation (see absorption_separation) at which
# nuisance="auto" profiles the absorption out: the TIE's _MIN_SPREAD.
_MIN_SEPARATION = 0.2


def transfer_functions(microscope: Microscope, shape: tuple[int, int], *, dtype=torch.float64, device=None,
                       stain=None):
    """Cached ``(h_phase, h_abs)``, real (C, H, W), on the camera grid of ``shape`` (``h_abs`` of an absorber
    coloured by ``stain``, None: grey).

    Computed in float64 (the TFs are sums over many source points and
    wavelengths), then cast to ``dtype``.
    """
    stain = get_stain(stain)
    key = (json.dumps(microscope.to_dict(), sort_keys=True), tuple(shape), dtype, str(device), stain)
    if key not in _TF_CACHE:
        h_phi, h_abs = channel_transfer_functions(microscope, tuple(shape), dtype=torch.float64, device=device,
                                                  stain=stain)
        _TF_CACHE[key] = (h_phi.to(dtype), h_abs.to(dtype))
        while len(_TF_CACHE) > _TF_CACHE_SIZE:
            _TF_CACHE.popitem(last=False)
    _TF_CACHE.move_to_end(key)
    return _TF_CACHE[key]


# ------------------------------------------------------------------ alpha
def light_loss(images: torch.Tensor) -> torch.Tensor:
    """Light lost by the stack, ``δ = max_c max(0, 1 - mean I_c)``, per image (B,), float64.

    A pure-phase object conserves energy, and the weak-object model predicts a
    mean intensity of exactly 1 (``H^φ(0) = 0``); light scattered beyond the
    objective pupil (cut-off NA/λ) is lost. ``δ`` therefore measures the
    model error of strong objects behind a finite pupil (PHYSICS.md §4.2);
    excess light (e.g. the paper's biased noise) is not a loss and counts as 0.
    """
    return (1 - images.to(torch.float64).mean(dim=(-2, -1))).clamp(min=0).amax(dim=1)


def _gcv(data: torch.Tensor, h: torch.Tensor, nuisance_dof: int = 0) -> torch.Tensor:
    """GCV choice of α (B,) for the rank-one filter of operator h (C, H, W) on ``data``.

    ``nuisance_dof``: unpenalised nuisance parameters already fitted (one per
    frequency where the absorption TF is non-zero); they count in the trace.
    """
    s = (h**2).sum(dim=0)
    p = torch.einsum("chw,bchw->bhw", h.to(data.dtype), data)
    valid = s > 0
    proj = torch.where(valid, p.abs() ** 2 / torch.where(valid, s, 1), 0)
    residual0 = (data.abs() ** 2).sum(dim=(1, 2, 3)) - proj.sum(dim=(-2, -1))
    return gcv_alpha(s, proj, residual0, data[0].numel() - nuisance_dof, alpha_grid(s.max()))


def _low_ring(shape, device) -> torch.Tensor:
    """Mask (H, W) of the frequencies 1-2 grid steps from DC."""
    hy = torch.fft.fftfreq(shape[0], dtype=torch.float64, device=device) * shape[0]
    hx = torch.fft.fftfreq(shape[1], dtype=torch.float64, device=device) * shape[1]
    r2 = hy[:, None] ** 2 + hx[None, :] ** 2
    return (r2 >= 1) & (r2 <= 4)


def _no_signal(alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Images (B,) whose α damps every frequency by half or more: GCV saw nothing but noise."""
    return alpha >= 0.5 * float((h**2).sum(dim=0).max())


def _tie_equivalent_alpha(h: torch.Tensor, images: torch.Tensor, microscope: Microscope) -> torch.Tensor:
    """α (B,) giving the filter ``s/(s+α)`` the low-frequency roll-off the TIE's automatic rule picks.

    Near DC the phase TFs grow like ``|k|²`` (the TIE limit), so ``s = Σ|H^φ|² ≈ κ|k|⁴`` and ``α = κ·α_TIE``
    makes ``s/(s+α)`` the TIE's ``|k|⁴/(|k|⁴+α_TIE)`` there; κ is the median of ``s/|k|⁴`` 1-2 grid steps
    from DC.
    """
    k2 = k_squared(h.shape[-2:], microscope.sampling.pixel_size_um, dtype=torch.float64, device=h.device)
    ring = _low_ring(h.shape[-2:], h.device)
    kappa = ((h.to(torch.float64)[:, ring] ** 2).sum(dim=0) / k2[ring] ** 2).median()
    return kappa * tie_regularization(images, microscope).to(torch.float64)


def _tie_band(h: torch.Tensor) -> torch.Tensor:
    """Mask (H, W) of the TIE regime: frequencies up to the first maximum of ``s = Σ|H^φ|²`` along kx.

    There the phase TFs still grow with |k| as the TIE's ``|k|²`` does; beyond it they oscillate and
    have near-zeros, where only the data-driven α keeps noise and model error in check. (The TFs of a
    circular pupil under Köhler illumination are isotropic, so one axis places the edge.)
    """
    s = (h.to(torch.float64) ** 2).sum(dim=0)
    profile = s[0, : s.shape[-1] // 2 + 1]
    falling = torch.nonzero(profile[1:] < profile[:-1])
    edge = int(falling[0]) if falling.numel() else profile.numel() - 1
    # Frequencies in kx grid steps (exact integers along kx).
    fy = torch.fft.fftfreq(s.shape[0], 1 / s.shape[1], dtype=torch.float64, device=s.device)
    fx = torch.fft.fftfreq(s.shape[1], 1 / s.shape[1], dtype=torch.float64, device=s.device)
    return fy[:, None] ** 2 + fx[None, :] ** 2 <= edge**2 * (1 + 1e-9)


def _at_most_tie(alpha: torch.Tensor, h: torch.Tensor, images: torch.Tensor, microscope: Microscope,
                 loss: torch.Tensor) -> torch.Tensor:
    """Per-frequency α (B, H, W): GCV's, but at most the TIE-equivalent (floored at δ²) in the TIE band.

    A smooth or small object in a mostly empty field has its phase at low frequencies, where ``|H|`` is
    small, so it adds little to the data, and GCV, which scores the fit to the data, damps it: at the top
    of its grid under camera noise (gain 0.00-0.05 on isolated Gaussian bumps, default preset) and often
    10-1e4 times above the TIE's weight below that. Up to the first maximum of ``Σ|H^φ|²``
    (:func:`_tie_band`) the cap keeps WOTF's roll-off no steeper than the TIE's automatic one; beyond
    it GCV's α stays. Chosen on validation data (seeds outside the evaluation sets): mean gain of 8 noisy
    bumps (σ 0.5-4 µm, 0.5 and 1.5 rad; 128 and 256 px, 3 noise seeds) 0.64-0.75 with GCV alone (and
    the TIE-equivalent α where it saw no signal), 0.80-0.92 with this cap (TIE 0.81-0.93); offset-aligned
    MAE of 8 training-split pictures and of 6 noisy cell scenes unchanged to 1e-3 rad. The same cap on
    every frequency gave the same gains but cost the noisy cells 0.008 rad and tripled the error of a
    noiseless weak bump (0.55 % -> 1.9 %), where GCV's α is right and the TIE's near 0. Only for
    objectives with a pupil: on the pupil-free paper presets the TIE-equivalent α raised the MAE of 8
    training-split pictures of 3.5 rad from 0.59 to 0.71-1.18 rad (paper-2shot), so they keep GCV's
    choice and its warning.
    """
    floor = loss.to(torch.float64) ** 2
    if bool((alpha.to(torch.float64) <= floor).all()):
        return alpha  # at its δ² floor α is already under the cap: skip the TIE's FFTs
    cap = torch.maximum(_tie_equivalent_alpha(h, images, microscope), floor).to(alpha)
    per_image = _per_frequency(alpha)
    return torch.where(_tie_band(h), torch.minimum(per_image, _per_frequency(cap)), per_image)


def _per_frequency(alpha: torch.Tensor) -> torch.Tensor:
    """α as (B, H, W) or broadcastable (B, 1, 1): one weight per image or one per frequency."""
    return alpha if alpha.dim() == 3 else alpha.reshape(-1, 1, 1)


def _warn_if_no_signal(alpha: torch.Tensor, h: torch.Tensor) -> None:
    """Warn when an automatic α damps every frequency to half or less: GCV then saw nothing but noise (it
    chose the top of its grid on a small or smooth object under camera noise) and the map is nearly 0."""
    empty = int(_no_signal(alpha, h).sum())
    if empty:
        warnings.warn(f"wotf: the automatic alpha found no phase signal above the noise in {empty} of "
                      f"{alpha.numel()} image(s) and damped every frequency by half or more (the map is nearly 0); "
                      "for small or smooth objects in noise use method 'tie' "
                      "(benchmarks/results/linearity-default.md)", stacklevel=4)


def _alpha(data: torch.Tensor, h: torch.Tensor, rule, loss: torch.Tensor, nuisance_dof: int = 0) -> torch.Tensor:
    """α (B,) for operator h: ``"auto"`` (max of GCV and δ²), ``"gcv"`` or a number >= 0."""
    batch = data.shape[0]
    if is_number(rule) and rule >= 0:
        return torch.full((batch,), float(rule), dtype=torch.float64, device=data.device)
    if rule not in ("auto", "gcv"):
        raise ConfigError(f"alpha must be 'auto', 'gcv' or a number >= 0, got {rule!r}")
    alpha = _gcv(data, h, nuisance_dof)
    return torch.maximum(alpha, loss.to(alpha) ** 2) if rule == "auto" else alpha


# -------------------------------------------------------- absorption nuisance
def absorption_separation(h_phase: torch.Tensor, h_abs: torch.Tensor) -> float:
    """Sine of the angle between the channel vectors of ``H^φ`` and ``H^a`` at the lowest frequencies.

    Median over the frequencies 1-2 grid steps from DC. Close to 0 when every
    channel sees the same defocus sign and size (``paper-rgb``: 0.14), 1 for a
    symmetric ±dz pair, 0.29 for the chromatic ``default`` preset. At low
    frequency ``H^φ_c ∝ ζ_c`` and ``H^a_c ≈ -2``, so this is about the spread
    ``std(ζ)/rms(ζ)`` that decides the TIE's intercept fit.
    """
    ring = _low_ring(h_phase.shape[-2:], h_phase.device)
    hp, ha = h_phase.to(torch.float64)[:, ring], h_abs.to(torch.float64)[:, ring]
    sp, sa, spa = (hp**2).sum(0), (ha**2).sum(0), (hp * ha).sum(0)
    ok = (sp > 0) & (sa > 0)
    if not bool(ok.any()):
        return 1.0
    cos2 = spa[ok] ** 2 / (sp[ok] * sa[ok])
    return float(torch.sqrt(torch.clamp(1 - cos2, min=0)).median())


def _profile_absorption(hp: torch.Tensor, ha: torch.Tensor) -> torch.Tensor:
    """Phase TF with the absorption direction projected out per frequency, ``P⊥_a·H^φ`` (C, H, W)."""
    sa = (ha**2).sum(dim=0)
    coef = torch.where(sa > 0, (ha * hp).sum(dim=0) / torch.where(sa > 0, sa, 1), 0)
    return hp - coef * ha


def _project_out(data: torch.Tensor, ha: torch.Tensor) -> torch.Tensor:
    sa = (ha**2).sum(dim=0)
    c = torch.einsum("chw,bchw->bhw", ha.to(data.dtype), data) / torch.where(sa > 0, sa, 1)
    return data - torch.where(sa > 0, c, 0)[:, None] * ha


def _use_nuisance(nuisance: str, hp: torch.Tensor, ha: torch.Tensor) -> bool:
    if nuisance not in NUISANCE_MODES:
        raise ConfigError(f"nuisance must be one of {', '.join(NUISANCE_MODES)}, got {nuisance!r}")
    if nuisance == "auto":
        # Needs a residual degree of freedom per frequency for the α rule (C >= 3)
        # and directions the channels can tell apart.
        return hp.shape[0] >= 3 and absorption_separation(hp, ha) >= _MIN_SEPARATION
    if nuisance == "absorption" and hp.shape[0] < 2:
        raise ConfigError("nuisance='absorption' needs at least 2 channels (one image is all absorption)")
    return nuisance == "absorption"


# ----------------------------------------------------------------- solvers
def _phase_only(data: torch.Tensor, h: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    s = (h**2).sum(dim=0)
    p = torch.einsum("chw,bchw->bhw", h.to(data.dtype), data)
    denom = s + _per_frequency(alpha.to(s.dtype))
    phi = torch.where(denom > 0, p / torch.where(denom > 0, denom, 1), 0)
    phi[..., 0, 0] = 0  # the mean phase is unobservable
    return phi


def _joint(data: torch.Tensor, hp: torch.Tensor, ha: torch.Tensor, alpha_p: torch.Tensor,
           alpha_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # 2x2 normal equations per frequency, inverted with the determinant (§4.4).
    spp, saa, sap = (hp**2).sum(0), (ha**2).sum(0), (hp * ha).sum(0)
    pp = torch.einsum("chw,bchw->bhw", hp.to(data.dtype), data)
    pa = torch.einsum("chw,bchw->bhw", ha.to(data.dtype), data)
    mpp = spp + _per_frequency(alpha_p.to(spp.dtype))
    maa = saa + _per_frequency(alpha_a.to(spp.dtype))
    det = mpp * maa - sap**2
    ok = det.abs() > 0
    inv = torch.where(ok, 1 / torch.where(ok, det, 1), 0)
    phi = (maa * pp - sap * pa) * inv
    amp = (mpp * pa - sap * pp) * inv
    phi[..., 0, 0] = 0
    return phi, amp


def _difference_symbols(shape, *, dtype, device):
    # Forward differences with periodic boundaries: x[i+1] - x[i] <-> e^{2πik/N} - 1.
    ky = torch.fft.fftfreq(shape[0], dtype=dtype, device=device)
    kx = torch.fft.fftfreq(shape[1], dtype=dtype, device=device)
    dy = torch.polar(torch.ones_like(ky), 2 * math.pi * ky) - 1
    dx = torch.polar(torch.ones_like(kx), 2 * math.pi * kx) - 1
    return dy[:, None], dx[None, :]


def _tv_admm(data: torch.Tensor, h: torch.Tensor, alpha: torch.Tensor, tv: float, iterations: int) -> torch.Tensor:
    """ADMM for ``min ½Σ_c‖h_c∗φ - d_c‖² + ½α‖φ‖² + tv·Σ|∇φ|`` (isotropic TV), spectrum of φ."""
    s = (h**2).sum(dim=0)
    p = torch.einsum("chw,bchw->bhw", h.to(data.dtype), data)
    dy, dx = _difference_symbols(data.shape[-2:], dtype=s.dtype, device=s.device)
    rho = _ADMM_RHO_PER_TV * tv
    denom = s + alpha.to(s.dtype).reshape(-1, 1, 1) + rho * (dy.abs() ** 2 + dx.abs() ** 2)
    denom[..., 0, 0] = 1  # DC fixed to zero below
    z = torch.zeros(2, *p.shape, dtype=s.dtype, device=s.device)
    u = torch.zeros_like(z)
    for _ in range(iterations):
        w = torch.fft.fft2(z - u)
        phi = (p + rho * (dy.conj() * w[0] + dx.conj() * w[1])) / denom
        phi[..., 0, 0] = 0
        grad = torch.stack([torch.fft.ifft2(dy * phi).real, torch.fft.ifft2(dx * phi).real])
        v = grad + u
        mag = torch.sqrt((v**2).sum(dim=0, keepdim=True))
        z = v * torch.clamp(1 - (tv / rho) / torch.clamp(mag, min=1e-30), min=0)
        u = v - z
    return phi


def invert_wotf(images: torch.Tensor, microscope: Microscope, *, alpha="auto", absorption: bool = False,
                alpha_absorption=None, nuisance: str = "auto", tv: float = 0.0, tv_iterations: int = 100,
                padding: str = "auto", stain=None):
    """Tikhonov/TV inversion of the WOTF model; returns phase and (optionally) absorption.

    Parameters and rules as in :func:`wotf`.

    Returns
    -------
    phase : (B, H, W) radians at λ_ref, zero mean.
    absorption : (B, H, W) amplitude attenuation ``a`` (``|t|² = e^{-2a}``), or
        None unless ``absorption=True``.
    """
    padding = resolve_padding(padding, microscope)
    if not is_number(tv) or tv < 0 or (tv > 0 and absorption):
        raise ConfigError("tv must be a number >= 0; TV is available for phase-only inversion (absorption=False)")
    if isinstance(tv_iterations, bool) or not isinstance(tv_iterations, int) or tv_iterations < 1:
        raise ConfigError(f"tv_iterations must be an integer >= 1, got {tv_iterations!r}")
    shape = images.shape[-2:]
    field = mirror_pad(images - 1, padding)
    data = torch.fft.fft2(field)
    hp, ha = transfer_functions(microscope, field.shape[-2:], dtype=images.dtype, device=images.device, stain=stain)
    loss = light_loss(images)
    # The phase-only problem: with a profiled absorption, min over A of
    # Σ_c|D_c - H^a_c A - H^φ_c Φ|² = |P⊥_a D - P⊥_a H^φ Φ|² (absorption direction projected out).
    h_eff, d_eff, dof = hp, data, 0
    if _use_nuisance(nuisance, hp, ha):
        h_eff, d_eff = _profile_absorption(hp, ha), _project_out(data, ha)
        dof = int(((ha**2).sum(dim=0) > 0).sum())
    if tv > 0:
        # The TV prior regularises the noise; an automatic α keeps the model-error term only.
        alpha_p = _alpha(d_eff, h_eff, alpha, loss, dof) if alpha not in ("auto", "gcv") else \
            (loss**2 if alpha == "auto" else torch.zeros_like(loss))
        phi = _tv_admm(d_eff, h_eff, alpha_p, float(tv), int(tv_iterations))
        return crop(torch.fft.ifft2(phi).real, shape), None
    alpha_p = _alpha(d_eff, h_eff, alpha, loss, dof)
    if alpha == "auto" and microscope.optics.na_objective > 0:
        alpha_p = _at_most_tie(alpha_p, h_eff, images, microscope, loss)
    elif alpha in ("auto", "gcv"):
        _warn_if_no_signal(alpha_p, h_eff)
    if not absorption:
        return crop(torch.fft.ifft2(_phase_only(d_eff, h_eff, alpha_p)).real, shape), None
    alpha_a = alpha_p if alpha_absorption is None else _alpha(data, ha, alpha_absorption, loss)
    phi, amp = _joint(data, hp, ha, alpha_p, alpha_a)
    return crop(torch.fft.ifft2(phi).real, shape), crop(torch.fft.ifft2(amp).real, shape)


def wotf(images: torch.Tensor, microscope: Microscope, *, alpha="auto", absorption: bool = False,
         alpha_absorption=None, nuisance: str = "auto", tv: float = 0.0, tv_iterations: int = 100,
         padding: str = "auto", stain=None) -> torch.Tensor:
    """Phase from the multi-channel weak-object transfer functions.

    Parameters
    ----------
    images : (B, C, H, W) intensities, empty field = 1.
    microscope : resolved Microscope; the WOTFs come from the same optics the
        simulator uses (partial coherence, spectra, focal shift, pixel MTF).
    alpha : ``"auto"`` (default, rule in Notes), ``"gcv"`` (generalised
        cross-validation alone) or a number: Tikhonov weight α in the units
        of ``Σ|H|²`` (1/rad²).
    absorption : also estimate an absorption map ``a`` (same at all
        wavelengths) with the joint, regularised 2x2 normal equations; the
        returned value is still the phase (use :func:`invert_wotf` for both).
    alpha_absorption : α for the absorption unknown (``"auto"``/``"gcv"`` on
        the absorption TFs alone, or a number; default: same as phase).
    nuisance : phase-only inversion: ``"auto"`` (default), ``"absorption"``
        (an unregularised, wavelength-independent absorption is fitted and
        discarded, see Notes) or ``"none"`` (pure-phase model). ``"auto"``
        profiles the absorption when there are at least 3 channels and
        :func:`absorption_separation` is >= 0.2.
    tv : isotropic total-variation weight (0 = off), solved by ADMM; the
        Tikhonov term is kept when α is a number (``"auto"`` then keeps only
        the light-loss term δ² of the Notes, ``"gcv"`` none).
        Units: the data term is ``½Σ_c‖I_c-1-model‖²`` summed over pixels and
        TV is ``Σ|∇φ|`` in rad per pixel, so useful weights scale with the
        noise variance (1e-4 to 1e-2 for 0-3 % noise).
    tv_iterations : ADMM iterations.
    padding : ``"auto"``, ``"mirror"`` or ``"none"`` (see
        :func:`~chromaqpi.solvers.fourier.resolve_padding`).
    stain : the stain colouring the specimen's absorption (a name in
        :data:`chromaqpi.optics.spectra.STAINS` or a ``Stain``; None: grey). The absorption unknown,
        fitted or profiled out as a nuisance, then has the stain's colour, so the channels' colour is
        not read as phase; pair it with a fixed ``alpha`` (the automatic one reads absorbed light as
        pupil loss).

    Returns
    -------
    (B, H, W) phase (rad) at ``optics.wavelength_ref_um``.

    Notes
    -----
    Phase-only estimator per spatial frequency g (PHYSICS.md §4.4):

    ``Φ(g) = Σ_c H^φ_c(g)·D_c(g) / (Σ_c |H^φ_c(g)|² + α)``, ``Φ(0) = 0``,

    with ``D_c = FFT{I_c - 1}`` on the mirror-padded grid. The joint form
    solves ``[[Σ|H^a|²+α_a, ΣH^aH^φ], [ΣH^φH^a, Σ|H^φ|²+α]]·[A, Φ] = [ΣH^aD, ΣH^φD]``.

    **Absorption nuisance.** Strong phase objects behind a finite pupil do
    not conserve intensity: light scattered beyond NA/λ is lost, and
    second-order terms add low-frequency contrast. Both look like absorption,
    nearly the same in every colour, while the phase TFs of a stack whose
    channels are all defocused the same way are nearly parallel to the
    absorption TFs at low frequencies (``H^φ_c ∝ ζ_c·f²``, ``H^a_c ≈ -2``).
    A pure-phase inversion reads that contrast as phase and amplifies it
    like 1/f² (GCV on 3.5 rad pictures, ``default`` preset: errors of 5-40
    rad). ``nuisance="absorption"`` fits an unregularised absorption ``A``
    per frequency and keeps the phase: the problem above with ``α_a = 0``,
    i.e. ``H^φ`` and ``D`` projected onto the complement of ``H^a``. It is
    the WOTF counterpart of the TIE's free intercept ``I0`` and, like it,
    needs channels whose defocus differs enough (separation >= 0.2; paper-rgb
    has 0.14 and is left alone). On 8 training-split pictures of 3.5 rad
    (default preset) it cut the model error along ``H^φ`` from 400x to 3x the
    signal at 0.5-1 cycles per field and from 40x to 1.2x at 2-3 cycles.

    **Automatic α** (``"auto"``): ``α = max(α_GCV, δ²)`` with δ the light
    loss of :func:`light_loss`. ``α_GCV`` minimises the generalised
    cross-validation score ``‖D - HΦ_α‖²/(n - tr A_α)²`` (``A_α`` the
    influence matrix, trace ``Σ_g s/(s+α)`` with ``s = Σ|H^φ|²``, plus one per
    frequency for a profiled absorption) over 0 and 14 decades below max s
    (:func:`~chromaqpi.solvers.fourier.gcv_alpha`); it needs no noise
    estimate and handles white noise. GCV cannot see the pupil-loss model
    error, which is concentrated at the lowest frequencies; its size in
    intensity units is that of the lost light δ, so ``δ²`` is the Tikhonov
    noise-to-signal ratio for a phase of 1 rad rms. Weak objects and pupil-free
    optics have δ ≈ 0 and keep plain GCV. Where the objective has a pupil,
    α becomes a weight per frequency: at most the TIE-equivalent
    ``κ·α_TIE`` (floored at δ²) up to the first maximum of ``s``, which
    gives ``s/(s+α)`` no steeper a low-frequency roll-off than the TIE's
    automatic one (see ``_at_most_tie``), and GCV's beyond. GCV alone damps
    small or smooth objects in a mostly empty, noisy field, whose phase lies
    where ``|H|`` is small. Pupil-free optics keep GCV and warn where it sees
    no signal at all (α_GCV >= ½ max s). The δ² factor was chosen on validation images only
    (training-split pictures and cell scenes, default preset, seeds outside
    the evaluation sets; 8 pictures of 3.5 rad and 4 cell scenes, 256 px,
    noiseless): factors 0.3, 1, 3, 10 on δ² gave offset-aligned MAE 0.70,
    0.68, 0.68, 0.69 rad on the pictures and 0.60, 0.64, 0.67, 0.69 rad on
    the cells (constant predictor 0.73 and 0.73; GCV alone 7.0 and 0.55, two
    pictures above 10 rad; the pure-phase model with this α 0.83 and 0.96;
    the previous rule, pure phase with α floored at 3 cycles per field,
    0.93 and 0.76). With sensor noise: 0.69 and 0.68. For the joint
    inversion the same α is used for the absorption unless overridden.
    An absorbing specimen also takes light, which δ cannot tell from pupil
    loss: on 8 `default`-family cell scenes with a grey absorption of 0.02-0.2
    per radian the automatic α costs 17-23 %, a fixed α = 1e-3 at most 2 %
    (``benchmarks/results/absorption.md``); pass a number for stained samples.

    References
    ----------
    Tian & Waller, Opt. Express 23:11394 (2015); Jenkins & Gaylord, Appl. Opt.
    54:8566 (2015); Golub, Heath & Wahba, Technometrics 21:215 (1979) (GCV).
    """
    phase, _ = invert_wotf(images, microscope, alpha=alpha, absorption=absorption,
                           alpha_absorption=alpha_absorption, nuisance=nuisance, tv=tv,
                           tv_iterations=tv_iterations, padding=padding, stain=stain)
    return phase
