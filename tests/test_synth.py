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


# --- ground truth, cohort files, realism, and learnability without the project's detectors ---

import doctest  # noqa: E402
import json  # noqa: E402
from scipy.signal import butter, find_peaks, sosfiltfilt, welch  # noqa: E402

from edgebp.synth import synth_subject, synth_subject_params  # noqa: E402


def test_subject_is_the_same_whatever_the_cohort_size(tmp_path):
    synth_cohort_write(tmp_path / "a", 2, minutes=0.2, seed=4)
    synth_cohort_write(tmp_path / "b", 3, minutes=0.2, seed=4)
    for ext in (".dat", ".hea"):
        assert (tmp_path / "a" / f"synth-001{ext}").read_bytes() == (tmp_path / "b" / f"synth-001{ext}").read_bytes()
    assert synth_subject_params(1, seed=4) == synth_subject(1, 0.2, seed=4).params


def test_truth_matches_the_waveforms():
    """The per-beat truth is what the signals show: ABP peaks = SBP, troughs = DBP, R peaks at t_r."""
    s = synth_subject(5, minutes=1.0, seed=3)
    b, fs = s.beats, 250.0
    abp = s.record.get("abp").signal
    fa = np.rint(b.t_abp_foot * fs).astype(int)
    inside = np.flatnonzero((fa[:-1] >= 0) & (fa[1:] < len(abp)))
    peak = np.array([abp[fa[i]:fa[i + 1]].max() for i in inside])
    assert np.max(np.abs(peak - b.sbp[inside])) < 2.0
    assert np.max(np.abs(abp[fa[inside]] - b.dbp[inside])) < 0.5
    ecg = s.record.get("ecg").signal
    for tr in b.t_r[b.within(0.5, 59.5)]:
        i = int(round(tr * fs))
        assert abs(np.argmax(ecg[i - 12:i + 13]) - 12) <= 2  # the R peak is the local maximum at t_r
    # physiological ordering per beat: R, then the radial (ABP) foot, then the finger (PPG) foot
    assert np.all(b.t_abp_foot > b.t_r) and np.all(b.t_ppg_foot > b.t_abp_foot)
    assert np.all((b.pep >= 0.04) & (b.pep <= 0.13))


def test_transit_time_law_within_subjects():
    for k in range(4):
        s = synth_subject(k, minutes=2.0, seed=2)
        b = s.beats
        assert np.corrcoef(b.ptt, b.map)[0, 1] < -0.9
        slope = np.polyfit(b.map, np.log(b.ptt), 1)[0]
        assert abs(slope + s.params.gamma) < 0.1 * s.params.gamma  # PTT = PTT0 exp(-gamma (MAP - ref))


def test_bp_moves_within_a_record():
    for k in range(6):
        s = synth_subject(k, minutes=2.0, seed=5)
        m = s.beats.within(0, 120.0)
        assert np.ptp(s.beats.sbp[m]) > 10.0
        inside = [d for t, d in s.beats.steps if 0 <= t < 120.0]
        assert inside and all(10.0 <= abs(d) <= 25.0 for d in inside)


def test_reference_distribution_is_not_trivially_failed():
    """The 2018 AAMI/ESH/ISO reference-BP spread holds for the population (per beat, 200 subjects)."""
    sbp, dbp = [], []
    for k in range(200):
        s = synth_subject(k, minutes=0.25, seed=0)
        m = s.beats.within(0, 15.0)
        sbp.append(s.beats.sbp[m])
        dbp.append(s.beats.dbp[m])
    sbp, dbp = np.concatenate(sbp), np.concatenate(dbp)
    assert np.mean(sbp >= 160) >= 0.05 and np.mean(sbp <= 100) >= 0.05 and np.mean(sbp >= 140) >= 0.20
    assert np.mean(dbp <= 60) >= 0.05 and np.mean(dbp >= 100) >= 0.05 and np.mean(dbp >= 85) >= 0.20
    p = [synth_subject_params(k) for k in range(200)]
    assert all(95 <= q.sbp0 <= 175 and 55 <= q.dbp0 <= 100 and 50 <= q.pep0_ms <= 110 for q in p)


def test_noise_is_where_real_front_ends_put_it():
    s = synth_subject(1, minutes=0.5, seed=0, fs=500.0)
    f, pxx = welch(s.record.get("ecg").signal, fs=500.0, nperseg=2048)
    pl = s.params.powerline_hz
    near = (f > pl - 8) & (f < pl - 3)
    assert pxx[np.argmin(np.abs(f - pl))] > 20 * np.median(pxx[near])  # mains line on the ECG
    abp = s.record.get("abp").signal
    assert np.allclose(abp / 0.01, np.round(abp / 0.01), atol=1e-6)  # ABP: quantised, nothing else
    assert np.ptp(np.diff(s.record.get("ecg").signal)) > 0  # noisy ECG, not a constant
    # motion bursts: the PPG is far more disturbed inside them than outside
    s = synth_subject(3, minutes=3.0, seed=1)
    ppg = s.record.get("ppg").signal
    hp = sosfiltfilt(butter(2, [0.3, 5], "bandpass", fs=250.0, output="sos"), ppg)
    t = np.arange(len(ppg)) / 250.0
    inside = np.zeros(len(ppg), bool)
    for a, b in s.motion_ppg:
        inside |= (t >= a) & (t < b)
    assert s.motion_ppg and inside.mean() < 0.3
    assert np.percentile(np.abs(hp[inside]), 99) > np.percentile(np.abs(hp[~inside]), 99)


def test_cohort_json_and_truth_files(tmp_path):
    synth_cohort_write(tmp_path, 3, minutes=0.5, seed=2)
    meta = json.loads((tmp_path / "cohort.json").read_text())
    assert meta["generator"] and "not clinical evidence" in meta["note"] and len(meta["subjects"]) == 3
    e = meta["subjects"][2]
    assert e["record"] == "synth-002" and e["params"] == synth_subject_params(2, seed=2).to_dict()
    rows = np.genfromtxt(tmp_path / "truth" / "synth-002.csv", delimiter=",", names=True)
    assert len(rows) == e["truth"]["n_beats"]
    assert abs(rows["sbp_mmhg"].mean() - e["truth"]["sbp_mean"]) < 0.01
    assert np.allclose(rows["pat_s"], rows["pep_s"] + rows["ptt_s"], atol=2e-6)


def test_cli_help_summary_and_errors(tmp_path):
    from edgebp.cli import cli

    res = CliRunner().invoke(cli, ["data", "synth", "--help"])
    assert res.exit_code == 0 and "NOT CLINICAL EVIDENCE" in res.output and "Example" in res.output
    res = CliRunner().invoke(cli, ["data", "synth", "--subjects", "2", "--minutes", "0.2", "--seed", "3",
                                   "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "c" / "cohort.json").read_text())
    t = meta["subjects"][1]["truth"]
    # the summary line shows the generator's true values
    assert f"synth-001: HR {t['hr_mean']:.0f} bpm, SBP {t['sbp_mean']:.0f} ({t['sbp_min']:.0f}-{t['sbp_max']:.0f})" in res.output
    for bad in (["--minutes", "0"], ["--fs", "10"], ["--seed", "-1"]):
        res = CliRunner().invoke(cli, ["data", "synth", *bad, "--out", str(tmp_path / "d")])
        assert res.exit_code == 2 and bad[0] in res.output, res.output
    with pytest.raises(ValueError, match="subject"):
        synth_record(-1, minutes=0.1)
    with pytest.raises(ValueError, match="fs"):
        synth_record(0, minutes=0.1, fs=10.0)


def test_docstring_examples_run():
    import edgebp.synth as pkg
    from edgebp.synth import cohort, params, physiology, waveforms

    for mod in (pkg, cohort, params, physiology, waveforms):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__


def _simple_beat_features(rec):
    """Per beat, with plain scipy (independent of edgebp's detectors): PAT, HR, true SBP.

    R peaks: band-passed ECG peaks refined on the raw ECG. PPG foot: the trough just before the
    steepest upstroke 0.1-0.6 s after the R peak. True SBP: the ABP maximum in that window.
    """
    ecg, ppg, abp = (rec.get(n).signal for n in ("ecg", "ppg", "abp"))
    fs = rec.get("ecg").fs
    e = sosfiltfilt(butter(2, [5, 20], "bandpass", fs=fs, output="sos"), ecg)
    pk, _ = find_peaks(e, height=0.4 * np.percentile(e, 99.5), distance=int(0.3 * fs))
    w = int(0.03 * fs)
    r = np.array([i - w + np.argmax(ecg[i - w:i + w + 1]) for i in pk if w <= i < len(ecg) - w])
    p = sosfiltfilt(butter(2, 8, "lowpass", fs=fs, output="sos"), ppg)
    dp = np.gradient(p)
    rows = []
    for a, b in zip(r[:-1], r[1:]):
        lo, hi = a + int(0.1 * fs), a + int(0.6 * fs)
        if hi >= len(p):
            break
        j = lo + np.argmax(dp[lo:hi])
        k0 = max(j - int(0.15 * fs), 0)
        pat = (k0 + np.argmin(p[k0:j + 1]) - a) / fs
        if 0.12 <= pat <= 0.55:
            rows.append((pat, 60.0 * fs / (b - a), abp[a:hi].max()))
    return np.asarray(rows)


def test_pat_regression_generalises_to_unseen_subjects_simple_detectors():
    """SBP ~ PAT + HR, fit and scored by subject (4 folds of 24 subjects x 1 min; each subject is
    held out once and never trained on): pooled held-out MAE <= 0.8 x the training-mean predictor.

    Why folds instead of one 8/4 split: with 4 held-out subjects the ratio swings 0.4-1.0 with
    the seed (which subjects happen to be held out); over 24 subjects it stays ~0.5-0.7.
    """
    n, k_folds = 24, 4
    feats = [_simple_beat_features(synth_record(k, minutes=1.0, seed=0)) for k in range(n)]
    err_model, err_naive, slopes = [], [], []
    for fold in range(k_folds):
        tr = np.concatenate([feats[k] for k in range(n) if k % k_folds != fold])
        te = np.concatenate([feats[k] for k in range(n) if k % k_folds == fold])
        coef, *_ = np.linalg.lstsq(np.c_[np.ones(len(tr)), tr[:, :2]], tr[:, 2], rcond=None)
        err_model.append(np.abs(np.c_[np.ones(len(te)), te[:, :2]] @ coef - te[:, 2]))
        err_naive.append(np.abs(tr[:, 2].mean() - te[:, 2]))
        slopes.append(coef[1])
    mae, naive = np.concatenate(err_model).mean(), np.concatenate(err_naive).mean()
    assert all(s < 0 for s in slopes)  # later arrival, lower pressure, in every fold
    assert mae <= 0.8 * naive, (mae, naive)
