"""Object measurements against analytic beads: area, peak phase, optical volume and dry mass."""

import csv
import math

import numpy as np
import pytest

from chromaqpi.cli.main import main
from chromaqpi.errors import InputError
from chromaqpi.io import read_tiff, write_tiff
from chromaqpi.measure import measure_objects, segment_objects

PX, LAM, ALPHA = 0.1, 0.55, 0.19  # µm, µm, µm³/pg


def bead_field(offset=0.0, noise=0.0, seed=0):
    """Two polystyrene-like spheres in water (radius 2 and 1.5 µm, Δn 0.05) on a 200x240 grid, phase in rad."""
    yy, xx = np.mgrid[0:200, 0:240] * PX
    phase = np.full(yy.shape, offset)
    beads = [(6.0, 7.0, 2.0), (14.0, 17.0, 1.5)]
    for cy, cx, r in beads:
        rho2 = (yy - cy) ** 2 + (xx - cx) ** 2
        opd = 2 * 0.05 * np.sqrt(np.clip(r**2 - rho2, 0, None))  # µm
        phase += 2 * math.pi * opd / LAM
    phase += noise * np.random.default_rng(seed).standard_normal(phase.shape)
    return phase, beads


def analytic(r):
    volume = 4 / 3 * math.pi * r**3 * 0.05  # optical volume, µm³ = ∫ OPD dA
    return {"optical_volume_um3": volume, "dry_mass_pg": volume / ALPHA,
            "max_phase_rad": 2 * math.pi * 2 * 0.05 * r / LAM, "area_um2": math.pi * r**2}


@pytest.mark.parametrize("offset", [0.0, -0.7])
def test_beads_match_their_analytic_volume_and_dry_mass(offset):
    phase, beads = bead_field(offset=offset, noise=0.01)
    seg = segment_objects(phase)
    assert seg.labels.max() == 2
    assert abs(seg.background_rad - offset) < 0.01
    rows = sorted(measure_objects(phase, seg.labels, wavelength_um=LAM, pixel_size_um=PX,
                                  background_rad=seg.background_rad), key=lambda r: r.centroid_y_um)
    for row, (cy, cx, r) in zip(rows, beads):
        ref = analytic(r)
        # The Otsu mask misses the thin rim of each sphere (phase below the threshold): a few % of
        # the integral (2 % measured); the area is that of the thresholded disk.
        assert row.dry_mass_pg == pytest.approx(ref["dry_mass_pg"], rel=0.05)
        assert row.optical_volume_um3 == pytest.approx(ref["optical_volume_um3"], rel=0.05)
        assert row.dry_mass_pg == pytest.approx(row.optical_volume_um3 / ALPHA, rel=1e-9)
        assert row.max_phase_rad == pytest.approx(ref["max_phase_rad"], abs=0.05)
        assert row.area_um2 < ref["area_um2"] and row.area_um2 > 0.6 * ref["area_um2"]
        assert (row.centroid_y_um, row.centroid_x_um) == pytest.approx((cy, cx), abs=PX)


def test_flat_disk_mean_phase_opd_and_diameter():
    # A flat-topped disk (phase 1.2 rad, radius 1.5 µm) on a -0.3 rad medium: mean phase and OPD are
    # exact; area and equivalent diameter carry only the pixelisation of the disk (1.1 % and 0.6 % measured).
    yy, xx = np.mgrid[0:80, 0:90] * PX
    disk = (yy - 4.0) ** 2 + (xx - 4.5) ** 2 < 1.5**2
    phase = np.where(disk, 1.2 - 0.3, -0.3)
    (row,) = measure_objects(phase, disk.astype(np.int32), wavelength_um=LAM, pixel_size_um=PX, background_rad=-0.3)
    assert row.mean_phase_rad == pytest.approx(1.2, abs=1e-12)
    assert row.mean_opd_nm == pytest.approx(1.2 * LAM * 1000 / (2 * math.pi), rel=1e-12)  # 105.0 nm
    assert row.area_um2 == pytest.approx(math.pi * 1.5**2, rel=0.02)
    assert row.equivalent_diameter_um == pytest.approx(3.0, rel=0.01)
    assert row.dry_mass_pg == pytest.approx(row.mean_opd_nm / 1000 * row.area_um2 / ALPHA, rel=1e-9)


def test_threshold_zero_above_medium_recovers_the_full_integral():
    phase, beads = bead_field()
    seg = segment_objects(phase, threshold_rad=1e-9)
    rows = sorted(measure_objects(phase, seg.labels, wavelength_um=LAM, pixel_size_um=PX),
                  key=lambda r: r.centroid_y_um)
    for row, (_, _, r) in zip(rows, beads):
        assert row.dry_mass_pg == pytest.approx(analytic(r)["dry_mass_pg"], rel=0.005)  # pixel sampling
        assert row.area_um2 == pytest.approx(analytic(r)["area_um2"], rel=0.03)


def test_zero_threshold_counts_everything_above_the_medium_and_bad_thresholds_are_rejected():
    phase, _ = bead_field()
    assert segment_objects(phase, threshold_rad=0.0).labels.max() == 2
    for bad in (-0.1, float("nan")):
        with pytest.raises(InputError, match="threshold"):
            segment_objects(phase, threshold_rad=bad)


def test_an_empty_field_has_no_objects():
    seg = segment_objects(np.zeros((64, 64)))
    assert seg.labels.max() == 0
    assert measure_objects(np.zeros((64, 64)), seg.labels, wavelength_um=LAM, pixel_size_um=PX) == []


def test_cli_writes_csv_labels_and_fails_cleanly(tmp_path, capsys):
    phase, beads = bead_field(noise=0.01)
    src = tmp_path / "cells_phase.tif"
    write_tiff(src, phase, metadata={"wavelength_um": LAM}, unit="rad", pixel_size_um=PX)
    out = tmp_path / "out"
    assert main(["measure", str(src), "--out", str(out), "--no-preview"]) == 0
    with open(out / "cells_objects.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    masses = sorted(float(r["dry_mass_pg"]) for r in rows)
    assert masses == pytest.approx(sorted(analytic(r)["dry_mass_pg"] for *_, r in beads), rel=0.05)
    labels, settings = read_tiff(out / "cells_labels.tif")
    assert set(np.unique(labels).round().astype(int)) == {0, 1, 2}
    assert settings["wavelength_um"] == LAM and settings["alpha_um3_per_pg"] == 0.19  # what the CSV's masses used
    # A TIFF without calibration: one-line error, exit 2, no CSV.
    bare = tmp_path / "bare.tif"
    write_tiff(bare, phase, metadata={}, unit="rad")
    assert main(["measure", str(bare), "--out", str(tmp_path / "o2")]) == 2
    assert "pixel-size" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "bare_objects.csv").exists()


def test_specks_below_the_minimum_area_are_dropped_and_labels_stay_sequential():
    phase, _ = bead_field()
    phase[100:103, 5:8] = 3.0  # a 9-px speck between the beads
    assert segment_objects(phase, min_area_px=5).labels.max() == 3
    labels = segment_objects(phase, min_area_px=10).labels
    assert labels.max() == 2 and set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize("extra, message", [
    (["--pixel-size", "0"], "pixel-size must be positive"),  # not silently replaced by the metadata's value
    (["--wavelength", "0"], "wavelength must be positive"),
    (["--wavelength", "550"], "wavelength must be in µm (e.g. 0.55), got 550"),  # nm by mistake: dry mass x1000
    (["--min-area", "nan"], "--min-area must be"),
    (["--min-area", "-1"], "--min-area must be"),
    (["--alpha", "0"], "--alpha must be positive"),
])
def test_cli_rejects_bad_option_values(tmp_path, capsys, extra, message):
    phase, _ = bead_field()
    src = tmp_path / "cells_phase.tif"
    write_tiff(src, phase, metadata={"wavelength_um": LAM}, unit="rad", pixel_size_um=PX)
    out = tmp_path / "out"
    assert main(["measure", str(src), "--out", str(out), "--no-preview", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out.exists() and list(out.iterdir()))


@pytest.mark.parametrize("dtype", [np.complex64, bool])
def test_cli_rejects_complex_and_bool_phase_files(tmp_path, capsys, dtype):
    import tifffile

    phase, _ = bead_field()
    src = tmp_path / "odd.tif"
    tifffile.imwrite(src, (phase > 1).astype(dtype) if dtype is bool else phase.astype(dtype))
    out = tmp_path / "out"
    args = ["measure", str(src), "--out", str(out), "--pixel-size", str(PX), "--wavelength", str(LAM)]
    assert main(args) == 2
    assert "unsupported pixel type" in capsys.readouterr().err
    assert not (out.exists() and list(out.iterdir()))


def test_cli_measures_a_reconstruct_output_folder(tmp_path, capsys):
    # reconstruct writes <stem>_phase.tif, _opd.tif and _phase.png; measure on the folder takes the phase maps only.
    import torch

    import chromaqpi

    phase, _ = bead_field()
    images = chromaqpi.simulate(torch.as_tensor(phase[None, :96, :128]), "paper-rgb", noise=False)[0].numpy()
    np.save(tmp_path / "cells.npy", images.astype(np.float32))
    rec = tmp_path / "rec"
    assert main(["reconstruct", str(tmp_path / "cells.npy"), "--method", "tie", "--microscope", "paper-rgb",
                 "--normalized", "--out", str(rec)]) == 0
    assert {"cells_phase.tif", "cells_opd.tif", "cells_phase.png"} <= {p.name for p in rec.iterdir()}
    out = tmp_path / "out"
    assert main(["measure", str(rec), "--out", str(out), "--no-preview"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells_labels.tif", "cells_objects.csv"]
    assert "cells_phase.tif: " in capsys.readouterr().out
    # Any other folder: every phase map in it (here from another tool, no _phase suffix).
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("cell1.tif", "cell2.tif"):
        write_tiff(plain / name, phase[:96, :128], metadata={"wavelength_um": LAM}, unit="rad", pixel_size_um=PX)
    assert main(["measure", str(plain), "--out", str(tmp_path / "o3"), "--no-preview"]) == 0
    assert {"cell1_objects.csv", "cell2_objects.csv"} <= {p.name for p in (tmp_path / "o3").iterdir()}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert main(["measure", str(empty), "--out", str(tmp_path / "o4")]) == 2
    assert "no images (.npy, .tif, .tiff) in folder" in capsys.readouterr().err


def test_cli_output_name_taken_by_a_folder_leaves_no_partial_set(tmp_path, capsys):
    phase, _ = bead_field()
    write_tiff(tmp_path / "cells_phase.tif", phase, metadata={"wavelength_um": LAM}, unit="rad", pixel_size_um=PX)
    out = tmp_path / "out"
    (out / "cells_objects.png").mkdir(parents=True)
    assert main(["measure", str(tmp_path / "cells_phase.tif"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: output {out / 'cells_objects.png'} is a folder" in err  # not blamed on the input
    assert [p.name for p in out.iterdir()] == ["cells_objects.png"]  # no CSV or labels written first
    assert main(["measure", str(tmp_path / "cells_phase.tif"), "--out", str(out), "--no-preview"]) == 0  # no PNG


def test_cli_refuses_two_inputs_that_would_write_the_same_outputs(tmp_path, capsys):
    phase, _ = bead_field()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_tiff(tmp_path / "a" / "cell_phase.tif", phase, metadata={"wavelength_um": LAM}, unit="rad", pixel_size_um=PX)
    np.save(tmp_path / "b" / "cell.npy", phase)  # both give cell_objects.csv
    assert main(["measure", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o"),
                 "--pixel-size", str(PX), "--wavelength", str(LAM)]) == 2
    assert "would write the same outputs (cell_*)" in capsys.readouterr().err
