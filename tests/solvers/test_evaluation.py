"""The evaluation harness: files written, metrics consistent with chromaqpi.metrics."""

import csv
import math

import pytest
import torch
from solver_cases import gaussian, planes_microscope, two_shot

from chromaqpi import simulate
from chromaqpi.errors import InputError
from chromaqpi.evaluation import evaluate
from chromaqpi.metrics import mae


def test_evaluate_writes_csv_table_and_figure(tmp_path):
    m = two_shot(1.0, na=0.4, n=1.33, dx=0.2)
    phases = [gaussian((40, 44), a, 1.2, 0.2) for a in (0.5, 1.0)]
    samples = [(simulate(p, m, noise=False)[0], p) for p in phases]
    samples.append({"images": samples[0][0], "phase": phases[0], "mask": phases[0] > 0.05})
    summary = evaluate(["constant", "tie"], samples, m, tmp_path / "out", options={"tie": {"regularization": 0.0}})
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    assert len(rows) == 6 and {r["method"] for r in rows} == {"constant", "tie"}
    assert summary["tie"]["mae_rad_aligned"][0] < 0.2 * summary["constant"]["mae_rad_aligned"][0]
    flat = torch.zeros(40, 44, dtype=torch.float64)
    expected = float(mae(flat, phases[1], align="median"))
    assert float(rows[2]["mae_rad_aligned"]) == pytest.approx(expected)
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "| tie |" in table and "nMAE" in table and "s/image" in table
    assert (tmp_path / "out" / "figure.png").stat().st_size > 1000


def test_evaluate_rejects_bad_samples(tmp_path):
    with pytest.raises(InputError):
        evaluate(["tie"], [(torch.ones(2, 8, 8), torch.ones(9, 9))], two_shot(1.0), tmp_path)
    with pytest.raises(InputError):
        evaluate(["tie"], [], two_shot(1.0), tmp_path)


class _Fixed:
    """Monkeypatched reconstruct: returns a stored prediction per call."""


def _eval_with_predictions(tmp_path, monkeypatch, samples, preds, **kw):
    import chromaqpi.solvers.base as base
    from chromaqpi.evaluation import evaluate
    queue = list(preds)
    monkeypatch.setattr(base, "reconstruct", lambda images, m, method, **o: queue.pop(0))
    m = planes_microscope([(0.55, -1.0), (0.55, 1.0)])
    return evaluate(["tie"], samples, m, tmp_path, figure_samples=0, **kw)


def test_evaluate_data_range_is_the_largest_truth_range(tmp_path, monkeypatch):
    # Catches a slip (min instead of max over samples).
    t1 = torch.linspace(0, 1, 40 * 40, dtype=torch.float64).reshape(40, 40)
    t2 = 3 * t1
    imgs = torch.ones(2, 40, 40, dtype=torch.float64)
    _eval_with_predictions(tmp_path, monkeypatch, [(imgs, t1), (imgs, t2)], [t1, t2])
    assert "data range 3 rad" in (tmp_path / "metrics.md").read_text()


def _eval_case():
    truth = torch.zeros(40, 40, dtype=torch.float64)
    truth[10:20, 10:20] = 1.0
    labels = (truth > 0).to(torch.int64)
    return truth, labels, torch.ones(2, 40, 40, dtype=torch.float64)


def test_evaluate_uses_the_mask(tmp_path, monkeypatch):
    # Catches a slip (mask ignored): an error only outside the mask gives zero masked metrics.
    truth, _, imgs = _eval_case()
    pred = truth.clone()
    pred[30:, 30:] += 0.7
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[:25, :25] = True
    _eval_with_predictions(tmp_path, monkeypatch, [{"images": imgs, "phase": truth, "mask": mask}], [pred])
    import csv
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(rows[0]["mae_rad"]) == 0.0 and float(rows[0]["rmse_rad"]) == 0.0


def test_evaluate_default_phi_max_and_labels(tmp_path, monkeypatch):
    # Catches a slip (default phi_max 3.5 changed) and (labels not passed on: no dry-mass column).
    truth, labels, imgs = _eval_case()
    pred = truth.clone()
    pred[10:20, 10:20] = 1.2                  # 20 % dry-mass error of the labelled object
    _eval_with_predictions(tmp_path, monkeypatch, [{"images": imgs, "phase": truth, "labels": labels}], [pred])
    import csv
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    mae = 0.2 * 100 / 1600
    assert float(rows[0]["mae_rad"]) == pytest.approx(mae)
    assert float(rows[0]["nmae"]) == pytest.approx(mae * 2 / 3.5)
    assert float(rows[0]["dry_mass_rel_error"]) == pytest.approx(0.2, rel=0.05)


def test_evaluate_with_labels_on_only_some_samples(tmp_path, monkeypatch):
    # The CSV header once came from the first row: a set whose first sample had no labels and a later
    # one had raised "dict contains fields not in fieldnames: 'dry_mass_rel_error'".
    truth, labels, imgs = _eval_case()
    _eval_with_predictions(tmp_path, monkeypatch, [(imgs, truth), {"images": imgs, "phase": truth, "labels": labels}],
                           [truth, truth])
    assert (tmp_path / "metrics.csv").exists()


def test_evaluate_summary_ignores_nan_metrics_of_small_images(tmp_path, monkeypatch):
    # Catches a slip (NaN filter removed): MS-SSIM is NaN for <= 32 px images, finite for larger ones.
    big = torch.rand(48, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    small = big[:24, :24].clone()
    s = _eval_with_predictions(tmp_path, monkeypatch, [(torch.ones(2, 48, 48), big), (torch.ones(2, 24, 24), small)],
                               [big + 0.01 * torch.randn(48, 48, dtype=torch.float64), small])
    assert math.isfinite(s["tie"]["ms_ssim_aligned"][0])


def test_the_table_names_the_weights_steps_and_temperature_of_learned_methods(tmp_path):
    import chromaqpi
    from chromaqpi.models.registry import load_model

    scope = chromaqpi.Microscope.from_preset("paper-2shot")
    phase = gaussian((64, 64), 1.0, 1.2, 0.2)
    samples = [(simulate(phase, scope, noise=False)[0], phase)]
    evaluate(["tie", "mean", "zmd"], samples, scope, tmp_path, figure_samples=0,
             options={"zmd": {"steps": 2, "generator": torch.Generator().manual_seed(0)}})
    card = load_model("paper-2shot").card
    sha, temperature = card["weights"]["sha256"][:12], card["sampling"]["temperature"]
    table = (tmp_path / "metrics.md").read_text()
    assert f"`zmd`: weights sha256 {sha}..., 2 DDIM steps, temperature {temperature:g}." in table
    assert f"`mean`: weights sha256 {sha}...." in table and "`tie`:" not in table
