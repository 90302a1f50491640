"""``edgebp grade`` on small CSVs written here; numbers worked out by hand in the comments."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgebp.cli import cli
from edgebp.metrics_cli import grade_command

PRED = """subject,time,sbp,dbp
a,0.0,122,81
a,1.0004,118,80
b,0,153,90
b,2,139,88
b,3.0006,150,90
c,5,100,60
"""
# Pairing: a@0 <-> a@0; a@1.0004 rounds to 1.000 s -> pairs with a@1.0; b@0 <-> b@0.000;
# b@2 <-> b@2.0; b@3.0006 rounds to 3.001 s, the reference has 3.000 -> unpaired both sides;
# c@5 only in PRED; d@1 only in REF. So 4 pairs, pred_only = 2 (b@3.001, c@5), ref_only = 2.
REF = """subject,time,sbp,dbp
a,0,120,80
a,1.0,120,80
b,0.000,150,91
b,2.0,140,86
b,3.0,150,90
d,1,110,70
"""
# SBP errors: +2, -2, +3, -1 -> ME 0.5, MAE 2, within5 100 %.
# DBP errors: +1, 0, -1, +2 -> ME 0.5, MAE 1.0.


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(args):
    return CliRunner().invoke(grade_command, args)


def test_grade_json_pairs_with_ms_rounding(tmp_path):
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", REF)
    res = _run([pred, ref, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert out["n_pairs"] == 4
    assert out["unpaired"] == {"pred_only": 2, "ref_only": 2}
    sbp, dbp = out["sbp"], out["dbp"]
    assert sbp["me"] == 0.5 and sbp["mae"] == 2.0 and dbp["me"] == 0.5 and dbp["mae"] == 1.0
    for key in ("me", "sd", "mae", "rmse", "r", "bhs", "aami", "ieee1708"):
        assert key in sbp and key in dbp
    assert sbp["bhs"] == {"within5": 100.0, "within10": 100.0, "within15": 100.0, "grade": "A"}
    assert sbp["aami"]["criterion1"] is True
    # SBP per-subject mean errors: a (2-2)/2 = 0, b (3-1)/2 = 1 -> SD 0.707 <= 6.93 -> pass.
    assert sbp["aami"]["criterion2"] is True
    assert out["per_subject"]["subjects"] == ["a", "b"]
    assert "map" not in out
    assert out["reference_distribution"]["n_sbp"] == 4


def test_grade_table_output(tmp_path):
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", REF)
    res = _run([pred, ref])
    assert res.exit_code == 0, res.output
    assert "BHS grade" in res.stdout and "IEEE 1708" in res.stdout
    assert "2 only in estimates, 2 only in reference" in res.stdout
    assert "Calibration: not used" in res.stdout


def test_grade_through_the_main_group(tmp_path):
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", REF)
    res = CliRunner().invoke(cli, ["grade", pred, ref, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_pairs"] == 4


def test_grade_map_and_baselines(tmp_path):
    pred = _write(tmp_path, "pred.csv", "subject,time,sbp,dbp,map\na,0,122,81,95\na,1,118,80,92\n")
    ref = _write(tmp_path, "ref.csv", "subject,time,sbp,dbp,map\na,0,120,80,93\na,1,120,80,93\n")
    res = _run([pred, ref, "--json", "--train-mean", "130", "78"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # MAP errors +2, -1 -> ME 0.5. Training-mean SBP baseline: |130-120| twice -> MAE 10;
    # model SBP MAE 2 -> MASE 0.2.
    assert out["map"]["me"] == 0.5
    assert out["baselines"]["training_mean"]["sbp"]["mae"] == 10.0
    assert out["baselines"]["training_mean"]["sbp"]["model_mase"] == 0.2


def test_grade_calibration(tmp_path):
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", REF)
    calib = _write(tmp_path, "calib.csv", "subject,time,sbp,dbp\na,-10,121,80\nb,-10,150,90\n")
    res = _run([pred, ref, "--json", "--calibration", calib])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # Holding 121 for a (refs 120, 120) and 150 for b (refs 150, 140): errors 1, 1, 0, 10 -> MAE 3.
    assert out["calibration"]["used"] is True
    assert out["baselines"]["hold_calibration"]["sbp"]["mae"] == 3.0
    # A calibration at t = 1 s comes after a graded reading at t = 0 -> refused.
    late = _write(tmp_path, "late.csv", "subject,time,sbp,dbp\na,1,121,80\nb,-10,150,90\n")
    res = _run([pred, ref, "--calibration", late])
    assert res.exit_code != 0 and "late.csv" in res.output and "after the calibration" in res.output
    # A subject without calibration -> named.
    part = _write(tmp_path, "part.csv", "subject,time,sbp,dbp\na,-5,121,80\n")
    res = _run([pred, ref, "--calibration", part])
    assert res.exit_code != 0 and "part.csv" in res.output and "'b'" in res.output
    # the one calibration schema: a file without its time column is refused, naming it
    old = _write(tmp_path, "old.csv", "subject,sbp,dbp\na,121,80\n")
    res = _run([pred, ref, "--calibration", old])
    assert res.exit_code != 0 and "old.csv" in res.output and "'time'" in res.output


def test_grade_calib_deprecated_alias(tmp_path):
    """--calib (the old spelling) warns once on stderr and grades exactly as --calibration."""
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", REF)
    calib = _write(tmp_path, "calib.csv", "time,sbp,dbp,subject\n-10,121,80,a\n-10,150,90,b\n-5,99,60,b\n")
    new = _run([pred, ref, "--json", "--calibration", calib])
    old = _run([pred, ref, "--json", "--calib", calib])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert old.stdout == new.stdout
    assert "--calib is deprecated; use --calibration" in old.stderr and "deprecated" not in new.stderr
    # each subject's earliest reading calibrates it: b holds 150 (t=-10), not 99 (t=-5)
    assert json.loads(new.stdout)["baselines"]["hold_calibration"]["sbp"]["mae"] == 3.0


@pytest.mark.parametrize(
    "pred_text, needles",
    [
        # missing column: the file and the column are named
        ("subject,time,sbp\na,0,120\n", ["pred.csv", "missing column", "'dbp'"]),
        # non-numeric value: file and line (header is line 1, so line 3)
        ("subject,time,sbp,dbp\na,0,120,80\na,1,abc,80\n", ["pred.csv", "line 3", "'sbp'", "abc"]),
        # NaN: file and line
        ("subject,time,sbp,dbp\na,0,nan,80\n", ["pred.csv", "line 2", "'sbp'", "not a finite number"]),
        # bad time
        ("subject,time,sbp,dbp\na,later,120,80\n", ["pred.csv", "line 2", "'time'"]),
        # duplicate (subject, time) after rounding to 1 ms: both lines named
        ("subject,time,sbp,dbp\na,0,120,80\na,0.0004,121,80\n", ["pred.csv", "line 3", "duplicate", "line 2"]),
        # empty file
        ("", ["pred.csv", "empty file"]),
        # header only
        ("subject,time,sbp,dbp\n", ["pred.csv", "no data rows"]),
        # short row
        ("subject,time,sbp,dbp\na,0,120\n", ["pred.csv", "line 2", "3 fields"]),
        # empty subject
        ("subject,time,sbp,dbp\n,0,120,80\n", ["pred.csv", "line 2", "'subject'"]),
    ],
)
def test_grade_bad_input(tmp_path, pred_text, needles):
    pred = _write(tmp_path, "pred.csv", pred_text)
    ref = _write(tmp_path, "ref.csv", REF)
    res = _run([pred, ref, "--json"])
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    message = res.output.strip()
    assert message.count("\n") == 0, message  # one line
    for needle in needles:
        assert needle in message, (needle, message)


def test_grade_missing_file(tmp_path):
    ref = _write(tmp_path, "ref.csv", REF)
    res = _run([str(tmp_path / "nope.csv"), ref])
    assert res.exit_code != 0 and "nope.csv" in res.output and "not found" in res.output


def test_grade_missing_column_in_ref(tmp_path):
    pred = _write(tmp_path, "pred.csv", PRED)
    ref = _write(tmp_path, "ref.csv", "subject,t,sbp,dbp\na,0,120,80\n")
    res = _run([pred, ref])
    assert res.exit_code != 0 and "ref.csv" in res.output and "'time'" in res.output


def test_grade_no_pairs(tmp_path):
    pred = _write(tmp_path, "pred.csv", "subject,time,sbp,dbp\na,0,120,80\n")
    ref = _write(tmp_path, "ref.csv", "subject,time,sbp,dbp\nb,0,120,80\n")
    res = _run([pred, ref])
    assert res.exit_code != 0 and "no rows pair up" in res.output
