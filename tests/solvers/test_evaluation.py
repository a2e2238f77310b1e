"""The evaluation harness: files written, metrics consistent with chromaqpi.metrics."""

import csv

import pytest
import torch
from solver_cases import gaussian, two_shot

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
