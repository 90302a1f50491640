"""Clinical metrics: every threshold edge worked out by hand (errors = estimate - reference)."""

from __future__ import annotations

import doctest
import json
import logging
import math

import numpy as np
import pytest

import edgebp.metrics as metrics
from edgebp.metrics import (
    aami_criterion1,
    aami_criterion2,
    aami_criterion2_limit,
    aami_p10,
    baseline_hold,
    baseline_mean,
    bhs_grade,
    bhs_shares,
    bp_metrics,
    bp_report,
    error_stats,
    format_report_table,
    ieee1708_grade,
    mase,
    reference_distribution_check,
)


def _errors(*groups: tuple[int, float]) -> np.ndarray:
    """``_errors((12, 5.0), (5, 10.0))`` = twelve errors of 5.0 then five of 10.0."""
    return np.concatenate([np.full(k, v, dtype=float) for k, v in groups])


# ------------------------------------------------------------------ BHS
def test_bhs_exactly_60_85_95_is_grade_a():
    # 20 errors: 12 at |e| = 5.0 (12/20 = 60 %), 5 at 10.0 (17/20 = 85 %), 2 at 15.0
    # (19/20 = 95 %), 1 at 30. Every share sits exactly on grade A's limit, and |e| equal
    # to the threshold counts as within, so this is A.
    e = _errors((6, 5.0), (6, -5.0), (5, 10.0), (2, -15.0), (1, 30.0))
    assert bhs_shares(e) == {"within5": 60.0, "within10": 85.0, "within15": 95.0}
    assert bhs_grade(e) == "A"


def test_bhs_59_9_percent_within_5_is_not_a():
    # 1000 errors: 599 at 0 (59.9 %), 251 at 8 (850 -> 85 %), 100 at 12 (950 -> 95 %), 50 at 20.
    # A fails only at 5 mmHg (59.9 < 60); B needs 50/75/90 -> B.
    e = _errors((599, 0.0), (251, 8.0), (100, 12.0), (50, 20.0))
    s = bhs_shares(e)
    assert s["within5"] == pytest.approx(59.9) and s["within10"] == 85.0 and s["within15"] == 95.0
    assert bhs_grade(e) == "B"


def test_bhs_abs_error_exactly_5_counts_within():
    # 125 - 120 = 5.0 exactly; 120.1 - 115.1 is 5.000000000000014 in binary floating point and
    # must still count (decimal inputs); 125.01 - 120 = 5.01 does not.
    assert bp_metrics([125.0], [120.0])["bhs"]["within5"] == 100.0
    assert bp_metrics([115.0], [120.0])["bhs"]["within5"] == 100.0
    assert bp_metrics([120.1], [115.1])["bhs"]["within5"] == 100.0
    assert bp_metrics([125.01], [120.0])["bhs"]["within5"] == 0.0


def test_bhs_all_three_must_hold():
    # 12 at 0 (60 %), 5 at 9 (85 %), 1 at 14 (18/20 = 90 %), 2 at 20: A holds at 5 and 10 but
    # 90 < 95 at 15, so not A; B (50/75/90) holds -> B.
    assert bhs_grade(_errors((12, 0.0), (5, 9.0), (1, 14.0), (2, 20.0))) == "B"
    # 12 at 0 (60 %), 4 at 9 (80 %), 4 at 20 (80 % within 15): A fails at 10 and 15, B fails at
    # 15 (80 < 90), C fails at 15 (80 < 85) -> D even though 60 % within 5 is grade-A level.
    assert bhs_grade(_errors((12, 0.0), (4, 9.0), (4, 20.0))) == "D"


@pytest.mark.parametrize(
    "groups, grade",
    [
        # all exact -> 100/100/100 -> A
        (((20, 0.0),), "A"),
        # 10 at 0 (50 %), 5 at 7 (75 %), 3 at 12 (90 %), 2 at 40: exactly B's limits -> B
        (((10, 0.0), (5, 7.0), (3, 12.0), (2, 40.0)), "B"),
        # 8 at 0 (40 %), 5 at 7 (65 %), 4 at 12 (85 %), 3 at 40: exactly C's limits -> C
        (((8, 0.0), (5, 7.0), (4, 12.0), (3, 40.0)), "C"),
        # 7 at 0 (35 %), 6 at 7 (65 %), 4 at 12 (85 %), 3 at 40: 35 < 40 at 5 mmHg -> D
        (((7, 0.0), (6, 7.0), (4, 12.0), (3, 40.0)), "D"),
        # B at 5 and 10 (50/75) but 17/20 = 85 % at 15 < 90 -> C (40/65/85 holds)
        (((10, 0.0), (5, 7.0), (2, 12.0), (3, 40.0)), "C"),
    ],
)
def test_bhs_each_grade(groups, grade):
    assert bhs_grade(_errors(*groups)) == grade


def test_bhs_grade_needs_errors():
    with pytest.raises(ValueError, match="no finite errors"):
        bhs_grade([np.nan])


# ------------------------------------------------------------------ AAMI
def test_aami_criterion1_edges():
    # errors -3, 5, 13: ME = 15/3 = 5; deviations -8, 0, 8 -> variance (64+0+64)/(3-1) = 64,
    # SD (ddof=1) = 8. Both exactly on the limit -> pass.
    m = bp_metrics(np.array([117.0, 125.0, 133.0]), np.array([120.0, 120.0, 120.0]))
    assert m["me"] == 5.0 and m["sd"] == 8.0
    assert m["aami"]["criterion1"] is True
    # Mirror image: ME = -5, SD = 8 -> pass.
    assert aami_criterion1(-5.0, 8.0) is True
    # ME 5.01 or SD 8.01 -> fail.
    assert aami_criterion1(5.01, 8.0) is False
    assert aami_criterion1(5.0, 8.01) is False
    # One reading: SD undefined -> criterion not evaluable.
    assert aami_criterion1(1.0, None) is None


def test_aami_criterion2_table_values():
    # Straight from ISO 81060-2 Table 1.
    assert aami_criterion2_limit(0.0) == 6.95
    assert aami_criterion2_limit(2.5) == 6.47
    assert aami_criterion2_limit(5.0) == 4.79
    assert aami_criterion2_limit(-2.5) == 6.47  # the table is in |ME|
    # Halfway between 2.5 (6.47) and 3.0 (6.24): (6.47 + 6.24) / 2 = 6.355.
    assert aami_criterion2_limit(2.75) == pytest.approx(6.355, abs=1e-12)
    # 0.2 is 2/5 of the way from 0.0 (6.95) to 0.5 (6.93): 6.95 - 0.4 * 0.02 = 6.942.
    assert aami_criterion2_limit(0.2) == pytest.approx(6.942, abs=1e-12)
    # 4.8: 6/10 of the way from 4.5 (5.24) to 5.0 (4.79): 5.24 - 0.6 * 0.45 = 4.97.
    assert aami_criterion2_limit(4.8) == pytest.approx(4.97, abs=1e-12)
    # Beyond the table.
    assert aami_criterion2_limit(5.01) is None


def test_aami_criterion2_table_is_the_standard():
    assert metrics.AAMI_CRITERION2_TABLE == (
        (0.0, 6.95), (0.5, 6.93), (1.0, 6.87), (1.5, 6.78), (2.0, 6.65), (2.5, 6.47),
        (3.0, 6.24), (3.5, 5.97), (4.0, 5.64), (4.5, 5.24), (5.0, 4.79),
    )


def test_aami_criterion2_pass_fail_at_limit():
    # Subject means -a, 0, a have SD (ddof=1) = sqrt(2a^2 / 2) = a. At ME 0 the limit is 6.95:
    # a = 6.95 passes (<=), a = 6.96 fails.
    ok = aami_criterion2(0.0, [-6.95, 0.0, 6.95])
    assert ok["pass"] is True and ok["limit"] == 6.95
    assert ok["sd_subject_means"] == pytest.approx(6.95)
    assert aami_criterion2(0.0, [-6.96, 0.0, 6.96])["pass"] is False
    # |ME| > 5 is beyond the table: fails, with the reason.
    bad = aami_criterion2(5.5, [5.0, 6.0])
    assert bad["pass"] is False and "beyond" in bad["reason"]
    # One subject: no SD -> None with the reason.
    one = aami_criterion2(1.0, [1.0])
    assert one["pass"] is None and "at least 2 subjects" in one["reason"]


def test_aami_p10_edges():
    # 17 of 20 with |e| <= 10 (the 10.0 values count) -> 85 % -> pass; 16 of 20 -> 80 % -> fail.
    assert aami_p10(_errors((10, 0.0), (7, -10.0), (3, 10.5))) == (85.0, True)
    assert aami_p10(_errors((10, 0.0), (6, 10.0), (4, 10.5))) == (80.0, False)


# ------------------------------------------------------------------ IEEE 1708
@pytest.mark.parametrize(
    "mae, grade",
    [(0.0, "A"), (5.0, "A"), (5.0001, "B"), (6.0, "B"), (6.0001, "C"), (7.0, "C"), (7.0001, "D")],
)
def test_ieee1708_edges(mae, grade):
    # A <= 5 < B <= 6 < C <= 7 < D, upper bounds inclusive.
    assert ieee1708_grade(mae) == grade


def test_ieee1708_from_metrics():
    # errors 4, -6, 5, 5 -> MAE = 20/4 = 5.0 exactly -> A; errors 7, -7 -> MAE 7 -> C.
    assert bp_metrics([124.0, 114.0, 125.0, 125.0], [120.0] * 4)["ieee1708"] == "A"
    assert bp_metrics([127.0, 113.0], [120.0, 120.0])["ieee1708"] == "C"
    with pytest.raises(ValueError):
        ieee1708_grade(float("nan"))


# ------------------------------------------------------------------ reference distribution
def _spread_readings():
    # 20 readings. SBP: one 160 (5 %), one 100 (5 %), 160 plus three 140 -> 4/20 = 20 % >= 140.
    # DBP: one 60 (5 %), one 100 (5 %), 100 plus three 85 -> 20 % >= 85. Rest ordinary.
    sbp = np.array([160.0, 100.0, 140.0, 140.0, 140.0] + [120.0] * 15)
    dbp = np.array([60.0, 100.0, 85.0, 85.0, 85.0] + [75.0] * 15)
    return sbp, dbp


def test_reference_distribution_exact_boundaries_pass():
    sbp, dbp = _spread_readings()
    chk = reference_distribution_check(sbp, dbp)
    shares = [r["share"] for r in chk["rules"]]
    assert shares == [5.0, 5.0, 20.0, 5.0, 5.0, 20.0]
    assert all(r["pass"] for r in chk["rules"]) and chk["pass"] is True
    assert chk["n_sbp"] == 20 and chk["n_dbp"] == 20


def test_reference_distribution_just_below_fails():
    sbp, dbp = _spread_readings()
    sbp[0] = 159.9  # no SBP >= 160 any more (0 %); still >= 140 so that rule keeps 20 %
    dbp[2] = 84.9  # DBP >= 85 drops to 3/20 = 15 %
    chk = reference_distribution_check(sbp, dbp)
    verdict = {r["rule"]: r["pass"] for r in chk["rules"]}
    assert verdict["SBP >= 160 mmHg in >= 5 % of readings"] is False
    assert verdict["SBP >= 140 mmHg in >= 20 % of readings"] is True
    assert verdict["DBP >= 85 mmHg in >= 20 % of readings"] is False
    assert chk["rules"][5]["share"] == 15.0
    assert chk["pass"] is False


def test_reference_distribution_counts_nan():
    sbp, dbp = _spread_readings()
    sbp = np.append(sbp, np.nan)
    dbp = np.append(dbp, 70.0)
    chk = reference_distribution_check(sbp, dbp)
    # The NaN is not a reading: SBP shares stay over 20, DBP now over 21 readings.
    assert chk["n_excluded"] == {"sbp": 1, "dbp": 0}
    assert chk["rules"][0]["n"] == 20 and chk["rules"][3]["n"] == 21


# ------------------------------------------------------------------ baselines, MASE
def test_mase_hand_worked():
    # model errors 1, -3 -> MAE 2; naive 125 against 120, 122 -> |5|, |3| -> MAE 4; 2/4 = 0.5.
    assert mase([121.0, 119.0], [120.0, 122.0], 125.0) == 0.5
    # A per-reading naive prediction works the same: naive errors 2, 2 -> MAE 2; 2/2 = 1.
    assert mase([121.0, 119.0], [120.0, 122.0], [122.0, 120.0]) == 1.0
    # A naive MAE of 0 cannot scale anything.
    assert mase([121.0], [120.0], 120.0) is None


def test_baseline_mean_hand_worked():
    # Always 125 against 110, 130: errors 15, -5 -> ME 5, MAE 10, SD sqrt((10^2+10^2)/1) = 14.142.
    # Model 112, 128: errors 2, -2 -> MAE 2 -> MASE 2/10 = 0.2. A constant has no correlation.
    b = baseline_mean([110.0, 130.0], 125.0, pred=[112.0, 128.0])
    assert b["value"] == 125.0 and b["me"] == 5.0 and b["mae"] == 10.0
    assert b["sd"] == pytest.approx(math.sqrt(200.0))
    assert b["model_mae"] == 2.0 and b["model_mase"] == 0.2
    assert b["r"] is None


def test_baseline_hold_hand_worked():
    # Calibration 121 held against 120, 124: errors 1, -3 -> MAE 2; model 120.5, 123:
    # errors 0.5, -1 -> MAE 0.75 -> MASE 0.375.
    b = baseline_hold([120.0, 124.0], [121.0, 121.0], pred=[120.5, 123.0])
    assert b["mae"] == 2.0 and b["me"] == -1.0 and b["model_mase"] == 0.375


# ------------------------------------------------------------------ bp_metrics
def test_bp_metrics_keys_and_values():
    # errors 2, -3, 4, -1: ME 0.5; MAE 10/4 = 2.5; RMSE sqrt(30/4); SD: deviations 1.5, -3.5,
    # 3.5, -1.5 -> squares 2.25+12.25+12.25+2.25 = 29 -> sqrt(29/3).
    ref = np.array([120.0, 130.0, 140.0, 150.0])
    m = bp_metrics(ref + np.array([2.0, -3.0, 4.0, -1.0]), ref)
    assert set(m) == {"n", "me", "sd", "mae", "rmse", "r", "bhs", "aami", "ieee1708"}
    assert set(m["bhs"]) == {"within5", "within10", "within15", "grade"}
    assert set(m["aami"]) == {"criterion1", "criterion2", "p10", "p10_pass"}
    assert m["n"] == 4 and m["me"] == 0.5 and m["mae"] == 2.5
    assert m["rmse"] == pytest.approx(math.sqrt(7.5))
    assert m["sd"] == pytest.approx(math.sqrt(29.0 / 3.0))
    assert m["r"] == pytest.approx(np.corrcoef(ref + [2.0, -3.0, 4.0, -1.0], ref)[0, 1])
    assert m["aami"]["criterion2"] is None


def test_sd_is_sample_sd():
    # 1, 2, 3, 4: squared deviations 2.25+0.25+0.25+2.25 = 5; ddof=1 -> sqrt(5/3), not sqrt(5/4).
    assert error_stats([1.0, 2.0, 3.0, 4.0])["sd"] == pytest.approx(math.sqrt(5.0 / 3.0))


def test_bp_metrics_nan_pairs_excluded_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="edgebp.metrics"):
        m = bp_metrics([121.0, np.nan, 130.0, 140.0], [120.0, 125.0, np.nan, 139.0])
    assert m["n"] == 2 and m["me"] == 1.0
    assert "2 of 4 pairs excluded" in caplog.text


def test_bp_metrics_empty():
    m = bp_metrics([np.nan], [120.0])
    assert m["n"] == 0 and m["me"] is None and m["bhs"]["grade"] is None and m["ieee1708"] is None


def test_bp_metrics_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        bp_metrics([1.0, 2.0], [1.0])


# ------------------------------------------------------------------ bp_report
def _report_inputs():
    # Subjects a (2 readings) and b (2 readings).
    # SBP errors: a: +2, -2 (mean 0, MAE 2); b: +3, -1 (mean 1, MAE 2).
    # DBP errors: a: +1, 0 (mean 0.5, MAE 0.5); b: -1, +2 (mean 0.5, MAE 1.5).
    ref_s = np.array([120.0, 124.0, 150.0, 148.0])
    ref_d = np.array([70.0, 72.0, 90.0, 88.0])
    pred_s = ref_s + np.array([2.0, -2.0, 3.0, -1.0])
    pred_d = ref_d + np.array([1.0, 0.0, -1.0, 2.0])
    return pred_s, ref_s, pred_d, ref_d, ["a", "a", "b", "b"]


def test_bp_report_per_subject_and_criterion2():
    pred_s, ref_s, pred_d, ref_d, subj = _report_inputs()
    rep = bp_report(pred_s, ref_s, pred_d, ref_d, subjects=subj)
    ps = rep["per_subject"]
    assert ps["n_subjects"] == 2 and ps["subjects"] == ["a", "b"]
    assert ps["sbp"]["mae_per_subject"] == [2.0, 2.0]
    assert ps["sbp"]["mean_error_per_subject"] == [0.0, 1.0]
    assert ps["dbp"]["mae_per_subject"] == [0.5, 1.5]
    # SBP subject means 0 and 1: mean 0.5, SD sqrt(0.5) (ddof=1), MAE 0.5.
    assert ps["sbp"]["me"] == 0.5 and ps["sbp"]["sd"] == pytest.approx(math.sqrt(0.5))
    # Criterion 2: SD 0.707 against the limit at overall ME 0.5 (6.93) -> pass.
    c2 = rep["sbp"]["aami"]["criterion2_detail"]
    assert rep["sbp"]["aami"]["criterion2"] is True and c2["limit"] == 6.93
    assert rep["aami_sample_size"] == {"n_subjects": 2, "required": 85, "pass": False}
    assert "per reading" in rep["analysis_unit"] and "2 subjects" in rep["analysis_unit"]
    assert rep["calibration"]["used"] is False
    json.dumps(rep, allow_nan=False)  # plain, JSON-ready types


def test_bp_report_without_subjects_criterion2_null_with_reason():
    pred_s, ref_s, pred_d, ref_d, _ = _report_inputs()
    rep = bp_report(pred_s, ref_s, pred_d, ref_d)
    assert rep["sbp"]["aami"]["criterion2"] is None
    assert "subject" in rep["sbp"]["aami"]["criterion2_detail"]["reason"]
    assert rep["per_subject"] is None
    assert "no subject ids" in rep["analysis_unit"]


def test_bp_report_baselines_and_map():
    pred_s, ref_s, pred_d, ref_d, subj = _report_inputs()
    # Training mean 130 / 78: SBP naive errors |10|, |6|, |20|, |18| -> MAE 13.5; the model's
    # SBP MAE is (2+2+3+1)/4 = 2 -> MASE 2/13.5. Calibration values (each subject's first reference):
    # SBP held 120 (a), 150 (b): errors 0, -4, 0, 2 -> MAE 1.5 -> model MASE 2/1.5.
    calib = {"sbp": np.array([120.0, 120.0, 150.0, 150.0]), "dbp": np.array([70.0, 70.0, 90.0, 90.0])}
    rep = bp_report(pred_s, ref_s, pred_d, ref_d, subjects=subj, train_ref={"sbp": 130.0, "dbp": 78.0},
                    calib_values=calib, pred_map=(pred_s + 2 * pred_d) / 3, ref_map=(ref_s + 2 * ref_d) / 3)
    tm = rep["baselines"]["training_mean"]["sbp"]
    assert tm["mae"] == 13.5 and tm["model_mase"] == pytest.approx(2.0 / 13.5)
    hold = rep["baselines"]["hold_calibration"]["sbp"]
    assert hold["mae"] == 1.5 and hold["model_mase"] == pytest.approx(2.0 / 1.5)
    assert rep["calibration"]["used"] is True
    assert "map" in rep and rep["map"]["n"] == 4
    assert any("map" in note for note in rep["baselines"]["notes"])  # no training MAP given


def test_bp_report_nan_counted():
    pred_s, ref_s, pred_d, ref_d, subj = _report_inputs()
    pred_s[1] = np.nan
    rep = bp_report(pred_s, ref_s, pred_d, ref_d, subjects=subj, train_ref={"sbp": 130.0, "dbp": 78.0})
    assert rep["n_pairs"] == 4
    assert rep["sbp"]["n"] == 3 and rep["sbp"]["n_excluded"] == 1
    assert rep["dbp"]["n_excluded"] == 0
    # The baseline is judged on the same 3 readings as the model.
    assert rep["baselines"]["training_mean"]["sbp"]["n"] == 3
    assert rep["reference_distribution"]["n_sbp"] == 3
    assert rep["per_subject"]["sbp"]["n_per_subject"] == [1, 2]


def test_bp_report_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="ref_dbp"):
        bp_report([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="pred_map and ref_map"):
        bp_report([1.0], [1.0], [1.0], [1.0], pred_map=[1.0])


def test_format_report_table_mentions_everything():
    pred_s, ref_s, pred_d, ref_d, subj = _report_inputs()
    calib = {"sbp": np.array([120.0, 120.0, 150.0, 150.0]), "dbp": np.array([70.0, 70.0, 90.0, 90.0])}
    rep = bp_report(pred_s, ref_s, pred_d, ref_d, subjects=subj, train_ref={"sbp": 130.0, "dbp": 78.0},
                    calib_values=calib)
    text = format_report_table(rep)
    for needle in ("model", "train-mean", "hold-calib", "BHS grade", "AAMI crit. 1", "AAMI crit. 2",
                   "IEEE 1708", "Reference BP spread", "Analysis unit: per reading", "Calibration: used",
                   "SD (sample, ddof=1)", "MASE"):
        assert needle in text, needle
    # Fixed width: the model column of the SBP MAE row says 2.00, the training-mean one 13.50.
    mae_row = next(line for line in text.splitlines() if line.startswith("MAE"))
    assert mae_row.split()[1:] == ["2.00", "13.50", "1.50"]


def test_format_report_table_markdown_renders_tables_with_the_same_figures():
    """report.md's clinical table: real Markdown tables (rendered by markdown-it-py as in the
    reports), no code block, and every cell of the text table's rows."""
    from markdown_it import MarkdownIt

    pred_s, ref_s, pred_d, ref_d, subj = _report_inputs()
    rep = bp_report(pred_s, ref_s, pred_d, ref_d, subjects=subj, train_ref={"sbp": 130.0, "dbp": 78.0})
    md = format_report_table(rep, style="markdown")
    html = MarkdownIt("commonmark").enable("table").render(md)
    # SBP, DBP, per subject, reference spread
    assert html.count("<table>") == 4 and "<pre>" not in html
    assert "| MAE | 2.00 | 13.50 |" in md
    text = format_report_table(rep)
    plain = md.replace("\\|", "|")  # table cells escape "|" (|ME|)
    missing = [line for line in text.splitlines() if line.strip() and not line.startswith("-") and line.split("  ")[0].strip() not in plain]
    assert not missing, missing
    with pytest.raises(ValueError, match="text, markdown"):
        format_report_table(rep, style="html")


def test_docstring_examples_run():
    result = doctest.testmod(metrics)
    assert result.attempted > 10 and result.failed == 0
