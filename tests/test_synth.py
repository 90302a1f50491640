"""The synthetic cohort: determinism, plausibility, coupling, and that it is learnable."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from click.testing import CliRunner

from edgebp.processing.beats import abp_beats, ecg_findpeaks, ppg_findpeaks
from edgebp.synth import synth_cohort_cached, synth_cohort_write, synth_record


def test_deterministic_and_independent_of_cohort_size():
    a = synth_record(2, minutes=0.2, seed=5)
    b = synth_record(2, minutes=0.2, seed=5)
    c = synth_record(2, minutes=0.2, seed=6)
    for name in ("ecg", "ppg", "abp"):
        assert np.array_equal(a.get(name).signal, b.get(name).signal)
        assert not np.array_equal(a.get(name).signal, c.get(name).signal)


def test_channels_rates_units_and_plausible_bp():
    r = synth_record(0, minutes=0.5)
    assert r.get("ecg").lead == "II" and r.get("abp").units == "mmHg" and r.get("ppg").fs == 250.0
    sbp_all, dbp_all = [], []
    for k in range(10):
        abp = synth_record(k, minutes=0.5).get("abp")
        b = abp_beats(abp.signal, abp.fs)
        v = np.asarray(b.valid, bool)
        assert v.mean() > 0.9
        sbp_all.append(np.median(b.sbp[v]))
        dbp_all.append(np.median(b.dbp[v]))
    assert 85 < min(sbp_all) and max(sbp_all) < 200 and 45 < min(dbp_all) and max(dbp_all) < 115
    assert np.std(sbp_all) > 8  # a spread of subjects, not one person


def _beat_features(rec):
    """Per beat: pulse arrival time (R peak to PPG foot), heart rate, and the true SBP."""
    ecg, ppg, abp = rec.get("ecg"), rec.get("ppg"), rec.get("abp")
    fs = ecg.fs
    r = ecg_findpeaks(ecg.signal, fs)
    feet, _ = ppg_findpeaks(ppg.signal, fs)
    b = abp_beats(abp.signal, fs)
    rows = []
    for i in range(1, len(r)):
        f = feet[(feet > r[i]) & (feet < r[i] + 0.5 * fs)]
        s = np.flatnonzero((b.i_sys > r[i]) & (b.i_sys < r[i] + 0.6 * fs) & np.asarray(b.valid, bool))
        if len(f) and len(s):
            rows.append(((f[0] - r[i]) / fs, 60.0 * fs / (r[i] - r[i - 1]), b.sbp[s[0]]))
    return np.asarray(rows)


def test_pulse_arrival_time_regression_beats_naive_on_held_out_subjects():
    """Learnable: SBP ~ PAT + HR fit on 10 subjects beats the training-mean predictor on 5 others."""
    train = np.concatenate([_beat_features(synth_record(k, minutes=1.0, seed=11)) for k in range(10)])
    test = np.concatenate([_beat_features(synth_record(k, minutes=1.0, seed=11)) for k in range(10, 15)])
    X = np.c_[np.ones(len(train)), train[:, 0], train[:, 1]]
    coef, *_ = np.linalg.lstsq(X, train[:, 2], rcond=None)
    pred = np.c_[np.ones(len(test)), test[:, 0], test[:, 1]] @ coef
    mae_model = np.mean(np.abs(pred - test[:, 2]))
    mae_naive = np.mean(np.abs(train[:, 2].mean() - test[:, 2]))
    assert coef[1] < 0  # longer arrival time, lower pressure
    assert mae_model <= 0.8 * mae_naive, (mae_model, mae_naive)


def test_ptt_shortens_as_map_rises_within_a_subject():
    rec = synth_record(4, minutes=2.0, seed=2)
    f = _beat_features(rec)
    assert np.corrcoef(f[:, 0], f[:, 2])[0, 1] < -0.3


def test_written_cohort_reads_back(tmp_path):
    paths = synth_cohort_write(tmp_path, 2, minutes=0.2, seed=1)
    assert (tmp_path / "RECORDS").read_text().split() == ["synth-000", "synth-001"]
    assert (tmp_path / "cohort.json").exists()
    rec = synth_record(1, minutes=0.2, seed=1)
    w = wfdb.rdrecord(str(paths[1]))
    assert w.sig_name == ["II", "PLETH", "ABP", "RESP"] and w.fs == 250
    for j, name in enumerate(["ecg", "ppg", "abp"]):
        step = 1.0 / w.adc_gain[j]
        assert np.max(np.abs(w.p_signal[:, j] - rec.get(name).signal)) <= step


def test_cached_cohort_is_reused():
    a = synth_cohort_cached(2, 0.1, seed=9)
    mtime = (a / "RECORDS").stat().st_mtime
    assert synth_cohort_cached(2, 0.1, seed=9) == a and (a / "RECORDS").stat().st_mtime == mtime


def test_cli_and_bad_arguments(tmp_path):
    from edgebp.cli import cli

    res = CliRunner().invoke(cli, ["data", "synth", "--subjects", "2", "--minutes", "0.2", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "not clinical evidence" in res.output and "synth-001" in res.output
    res = CliRunner().invoke(cli, ["data", "synth", "--subjects", "0", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "--subjects" in res.output
    with pytest.raises(ValueError, match="minutes"):
        synth_record(0, minutes=0)
