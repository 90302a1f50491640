"""The calibrated per-beat estimator: its mechanics, the cuff readings it takes, and that the
runtime (what a device runs) and the offline scoring give the very same calibrated beats.

Real parts: the default bundle through StreamRuntime on a real validation record, real ONNX
Runtime sessions, the real numba beat and QRS detectors.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.cli import cli
from edgebp.runtime.beat_features import FEATURES, BeatFeatureBuffer
from edgebp.runtime.calibrated import (TARGETS, CalibratedEstimator, EstimatorParams, cuff_check, cuff_csv_read,
                                       estimator_params_hold, estimator_params_offset)

VAL_RECORD = "f362s"  # a validation record of the default bundle (never a test record)


def _params(**kw) -> EstimatorParams:
    k = len(FEATURES)
    rng = np.random.default_rng(3)
    base = dict(features=list(FEATURES), scale={t: [1.0] * k for t in TARGETS},
                weights={t: rng.normal(0, 1, k).tolist() for t in TARGETS}, alpha={t: 0.5 for t in TARGETS},
                tau={t: 4.0 for t in TARGETS}, window_s=20.0)
    base.update(kw)
    return EstimatorParams(**base)


def _rows(n=60, dt=1.0, sbp0=100.0):
    return [{"t": i * dt, "sbp": sbp0 + 0.5 * i, "dbp": 60.0 + 0.2 * i, "map": 75.0 + 0.3 * i, "hr": 70.0 + (i % 3),
             "valid": True, "reason": "ok", "pat_foot": 0.3 - 0.001 * i, "pat_peak": 0.45, "rise": 0.12, "width50": 0.2,
             "area_ratio": 1.4} for i in range(n)]


# ----------------------------------------------------------------------------- params
def test_params_reject_unknown_keys_bad_values_and_roundtrip(tmp_path):
    p = _params()
    d = p.to_dict()
    assert EstimatorParams.from_dict(d) == p
    with pytest.raises(ValueError, match="unknown key"):
        EstimatorParams.from_dict(d | {"gain": 2})
    with pytest.raises(ValueError, match="alpha\\[sbp\\]"):
        _params(alpha={"sbp": 1.5, "dbp": 0.5, "map": 0.5})
    with pytest.raises(ValueError, match="unknown feature"):
        _params(features=["hr", "ptt_magic"], scale={t: [1, 1] for t in TARGETS}, weights={t: [0, 0] for t in TARGETS})
    with pytest.raises(ValueError, match="valid methods"):
        _params(method="kalman-ish")
    bad = tmp_path / "estimator.json"
    bad.write_text(json.dumps(d | {"schema": "other/9"}))
    from edgebp.runtime.calibrated import estimator_load

    with pytest.raises(ValueError, match=str(bad)):
        estimator_load(bad)


# ----------------------------------------------------------------------------- estimator
def test_nothing_is_calibrated_before_a_reading_and_hold_is_the_cuff():
    est = CalibratedEstimator(estimator_params_hold(window_s=10.0))
    assert est.reading_add(20.0, 130.0, 70.0)
    rows = _rows()
    for r in rows:
        est.update(r)
    before = [r for r in rows if r["t"] <= 20.0]
    after = [r for r in rows if r["t"] > 20.0]
    assert all(r["calibrated"] is False for r in before)
    assert before[0]["sbp"] == 100.0  # the model's own absolute value, not claimed calibrated
    assert all(r["calibrated"] and r["sbp"] == 130.0 and r["dbp"] == 70.0 for r in after)
    assert after[0]["map"] == pytest.approx((130 + 140) / 3)


def test_offset_method_shifts_the_model_by_cuff_minus_model_over_the_window():
    est = CalibratedEstimator(estimator_params_offset(window_s=10.0))
    est.reading_add(20.0, 130.0, 70.0)
    rows = _rows()
    for r in rows:
        est.update(r)
    # model SBP over [10, 20] s averages 100 + 0.5 * 15 = 107.5: the offset is +22.5
    r30 = next(r for r in rows if r["t"] == 30.0)
    assert r30["sbp"] == pytest.approx(100 + 15 + 22.5)
    assert r30["dbp"] == pytest.approx(66.0 + (70 - (60 + 0.2 * 15)))


def test_estimator_starts_at_the_cuff_value_and_a_new_reading_recalibrates():
    p = _params()
    est = CalibratedEstimator(p)
    est.reading_add(20.0, 130.0, 70.0)
    est.reading_add(40.0, 110.0, 65.0)
    rows = _rows()
    for r in rows:
        est.update(r)
    first = next(r for r in rows if r["t"] > 20.0)
    # the smoother restarts from the window's mean: right after the reading the change is
    # only the first beat's own step away from that mean, damped by tau
    assert abs(first["sbp"] - 130.0) < 8.0
    moved = [r["sbp"] for r in rows if 20 < r["t"] <= 40]
    assert np.std(moved) > 0  # it does move with the features
    r41 = next(r for r in rows if r["t"] > 40.0)
    assert abs(r41["sbp"] - 110.0) < 8.0
    assert est.readings_applied == 2 and [h["t"] for h in est.history] == [20.0, 40.0]
    # alpha 0 is hold exactly, whatever the weights
    est0 = CalibratedEstimator(_params(alpha={t: 0.0 for t in TARGETS}))
    est0.reading_add(20.0, 130.0, 70.0)
    rows0 = _rows()
    for r in rows0:
        est0.update(r)
    assert all(r["sbp"] == 130.0 for r in rows0 if r["t"] > 20)


def test_too_few_beats_before_a_reading_holds_until_enough_follow():
    p = _params(min_cal_beats=5)
    est = CalibratedEstimator(p)
    est.reading_add(2.0, 120.0, 80.0)  # only beats at 0, 1, 2 s exist before it
    rows = _rows(20)
    for r in rows:
        est.update(r)
    after = [r for r in rows if r["t"] > 2.0]
    assert [r["sbp"] for r in after[:1]] == [120.0]  # held while the window fills
    assert est.f_cal is not None


def test_invalid_beats_pass_through_and_keep_the_estimate_state():
    est = CalibratedEstimator(_params())
    est.reading_add(10.0, 120.0, 80.0)
    rows = _rows(40)
    for r in rows[25:30]:
        r.update(sbp=float("nan"), dbp=float("nan"), map=float("nan"), valid=False, reason="gap")
    for r in rows:
        est.update(r)
    assert all(np.isnan(r["sbp"]) and r["calibrated"] for r in rows[25:30])
    assert all(np.isfinite(r["sbp"]) for r in rows[30:])


@pytest.mark.parametrize("sbp,dbp,why", [(320.0, 80.0, "outside 40-300"), (120.0, 30.0, "outside 40-300"),
                                         (90.0, 95.0, "not below SBP"), (float("nan"), 80.0, "SBP")])
def test_implausible_readings_are_refused_with_where_and_the_stream_goes_on(caplog, sbp, dbp, why):
    assert why in cuff_check(sbp, dbp)
    est = CalibratedEstimator(estimator_params_hold())
    with caplog.at_level(logging.WARNING, logger="edgebp.runtime.calibrated"):
        assert not est.reading_add(5.0, sbp, dbp, where="serial.log: line 1502")
    assert "serial.log: line 1502" in caplog.text and why in caplog.text
    rows = _rows(10)
    for r in rows:
        est.update(r)
    assert not any(r["calibrated"] for r in rows)


def test_cuff_csv_errors_name_file_and_line(tmp_path):
    good = tmp_path / "cuff.csv"
    good.write_text("time,sbp,dbp\n120,118,72\n60,121,75\n")
    rs = cuff_csv_read(str(good))
    assert [r.t for r in rs] == [60.0, 120.0]  # sorted by time
    for body, msg in [("time,sbp\n1,2\n", "line 1: missing column 'dbp'"), ("time,sbp,dbp\n1,abc,70\n", "line 2"),
                      ("time,sbp,dbp\n1,120,70\n2,80,90\n", "line 3: cuff reading rejected: DBP 90 is not below SBP 80"),
                      ("time,sbp,dbp\n-5,120,70\n", "before the stream starts"), ("time,sbp,dbp\n", "no calibration readings")]:
        p = tmp_path / "bad.csv"
        p.write_text(body)
        with pytest.raises(ValueError, match=msg):
            cuff_csv_read(str(p))


def test_cuff_csv_one_schema_with_subject_and_window(tmp_path):
    """The one calibration schema (edgebp.calibration_csv): time,sbp,dbp[,subject][,window],
    comments skipped; a stream takes one subject's readings (given, or the only one)."""
    p = tmp_path / "cuff.csv"
    p.write_text("# cuff log\nTime,SBP,DBP,subject,window\n30,118,72,s1,20\n10,121,75,s1,\n")
    rs = cuff_csv_read(str(p))
    assert [(r.t, r.sbp, r.window_s) for r in rs] == [(10.0, 121.0, None), (30.0, 118.0, 20.0)]
    assert "line 4" in rs[0].where
    p.write_text("time,sbp,dbp,subject\n30,118,72,s1\n10,121,75,s2\n")
    with pytest.raises(ValueError, match="2 subjects"):
        cuff_csv_read(str(p))
    assert [r.sbp for r in cuff_csv_read(str(p), subject="s2")] == [121.0]


# ----------------------------------------------------------------------------- features
def test_pulse_arrival_time_of_a_known_delay():
    """Pulses whose foot follows an R peak by exactly 0.240 s: the tangent-method foot is
    exact for a pulse with a straight upstroke, so PAT comes back within one sample (8 ms)."""
    fs = 125.0
    n = int(12 * fs)
    x = np.zeros(n)
    r_peaks, period = [], int(0.8 * fs)
    for k, r in enumerate(range(50, n - period, period)):
        r_peaks.append(r)
        foot = r + int(0.24 * fs)
        up = np.linspace(0, 1, 13)  # 96 ms straight rise
        down = np.linspace(1, 0, period - 13)
        seg = np.concatenate([up, down[1:]])
        x[foot:foot + len(seg)] = seg[: max(0, min(len(seg), n - foot))]
    buf = BeatFeatureBuffer(fs)
    buf.push(x, r_peaks)
    a = r_peaks[3] + 30
    f = buf.features(a, a + period, a + 12, None)
    assert f["pat_foot"] == pytest.approx(0.24, abs=1 / fs)
    assert f["rise"] == pytest.approx(12 / fs, abs=1 / fs)
    # a pulse with no R peak before it has no PAT (NaN), the shape features stay
    g = BeatFeatureBuffer(fs)
    g.push(x, [])
    h = g.features(a, a + period, a + 12)
    assert np.isnan(h["pat_foot"]) and np.isfinite(h["rise"])


# ----------------------------------------------------------------------------- runtime
def _data_dir(shared_data, tmp_path, rid: str):
    """A data directory holding one real record (copied), for evaluate/bench on it alone."""
    import shutil

    src = shared_data / "challenge2015"
    if not (src / f"{rid}.hea").exists():
        pytest.skip(f"{src / rid}.hea not found (real recordings absent)")
    data = tmp_path / "data"
    data.mkdir()
    for f in src.glob(f"{rid}.*"):
        shutil.copy(f, data / f.name)
    return data


@pytest.fixture(scope="module")
def val_samples(shared_data):
    from edgebp.io import read_record
    from edgebp.runtime.stream_score import record_device_samples
    from edgebp.train.data import _record_crop

    path = shared_data / "challenge2015" / VAL_RECORD
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"{path}.hea not found (real recordings absent)")
    rec = _record_crop(read_record(path), 90.0)
    return rec, record_device_samples(rec, ["ppg", "ecg"])


def _stream(b, vals, fs, packet, calibration=None, estimator=None, features=False):
    from edgebp.runtime.engine import StreamRuntime

    rt = StreamRuntime(b, fs, {"ppg": 0, "ecg": 1}, calibration=calibration, estimator=estimator, features=features)
    beats = []
    for i in range(0, len(vals), packet):
        beats += rt.push(vals[i:i + packet]).beats
    beats += rt.flush().beats
    return rt, beats


def test_runtime_calibrated_beats_equal_the_offline_estimator_on_its_rows(val_samples):
    """What `edgebp run` emits with a cuff reading is the estimator applied to the runtime's
    own beat rows: evaluation (which applies it after streaming) scores exactly the deployed
    output. And the features do not depend on the packet size."""
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.engine import Calibration
    from edgebp.runtime.calibrated import CuffReading

    b = bundle_load("default")
    rec, (vals, fs) = val_samples
    p = _params()
    cal = Calibration([CuffReading(40.0, 118.0, 62.0, 30.0)], "auto")
    rt, live = _stream(b, vals, fs, 5, calibration=cal, estimator=p)
    assert rt.est_params is p and rt.features
    _, plain = _stream(b, vals, fs, 50, estimator=p, features=True)
    _, plain5 = _stream(b, vals, fs, 5, estimator=p, features=True)
    keys = ("t", "hr", "pat_foot", "rise", "width50", "area_ratio", "sbp")
    arr = lambda rows: np.array([[np.nan if r.get(k) is None else r[k] for k in keys] for r in rows], float)  # noqa: E731
    np.testing.assert_array_equal(arr(plain), arr(plain5))  # packet-size invariant, NaN where unmeasured
    est = CalibratedEstimator(p)
    est.reading_add(40.0, 118.0, 62.0, 30.0)
    for r in plain:
        est.update(r)
    assert len(live) == len(plain) > 80
    for a, c in zip(live, plain):
        assert a["calibrated"] == c["calibrated"]
        for k in ("sbp", "dbp", "map"):
            assert (np.isnan(a[k]) and np.isnan(c[k])) or a[k] == c[k]
    cal_rows = [r for r in live if r["calibrated"] and r["valid"]]
    assert cal_rows and all(abs(r["sbp"] - 118.0) <= p.max_delta * 0.5 + 1e-9 for r in cal_rows)
    # PAT is measured on most beats of this record (its ECG is clean)
    pat = np.array([r.get("pat_foot", np.nan) for r in plain if r["valid"]], float)
    assert np.isfinite(pat).mean() > 0.8 and 0.1 < np.nanmedian(pat) < 0.6


def test_run_cli_calibration_csv_labels_the_uncalibrated_beats(val_samples, tmp_path):
    """`edgebp run --calibration`: a calibrated column, 0 before the reading, 1 after; the
    summary says how many readings applied; a bad CSV exits non-zero naming the line."""
    from edgebp.runtime.protocol import header_encode_text, samples_encode_text
    from edgebp.runtime.protocol_header import StreamHeader

    rec, (vals, fs) = val_samples
    n = int(60 * fs)
    log_path = tmp_path / "serial.log"
    gains = (0.001, 0.001)
    h = StreamHeader(fs, ["ppg", "ecg"], ["NU", "mV"], [24, 24], list(gains), [0.0, 0.0])
    raw = np.rint(vals[:n] / np.array(gains)).astype(np.int64)
    log_path.write_bytes(header_encode_text(h) + samples_encode_text(np.arange(n) % 65536, raw))
    cuff = tmp_path / "cuff.csv"
    cuff.write_text("time,sbp,dbp\n30,120,60\n")
    out = tmp_path / "bp.csv"
    res = CliRunner().invoke(cli, ["run", "--stream", str(log_path), "--calibration", str(cuff), "--calibration-method", "hold",
                                   "--out", str(out), "--summary", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in (tmp_path / "bp.beats.csv").read_text().splitlines() if not ln.startswith("#")]
    assert lines[0] == "time,sbp,dbp,map,hr,valid,reason,calibrated"
    rows = [ln.split(",") for ln in lines[1:]]
    before = [r for r in rows if float(r[0]) <= 30.0 and r[5] == "1"]
    after = [r for r in rows if float(r[0]) > 31.0 and r[5] == "1"]
    assert before and all(r[7] == "0" for r in before)
    assert after and all(r[7] == "1" and float(r[1]) == 120.0 for r in after)
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["calibration_history"][0]["t"] == 30.0 and "hold: 1 cuff reading(s) applied" in s["calibration"]
    cuff.write_text("time,sbp,dbp\n30,120,160\n")
    res = CliRunner().invoke(cli, ["run", "--stream", str(log_path), "--calibration", str(cuff), "--out", str(out)])
    assert res.exit_code != 0 and "line 2" in res.output and "not below SBP" in res.output


def test_cuff_readings_inside_the_stream_calibrate_and_bad_ones_are_reported(val_samples, tmp_path):
    """A #CUFF line in the device stream calibrates from the next sample on; a malformed or
    implausible one is counted, named, and the stream goes on."""
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.engine import Calibration
    from edgebp.runtime.protocol import StreamDecoder, cuff_encode_text, header_encode_text, samples_encode_text
    from edgebp.runtime.protocol_header import StreamHeader
    from edgebp.runtime.run import stream_process

    rec, (vals, fs) = val_samples
    n = int(60 * fs)
    gains = (0.001, 0.001)
    h = StreamHeader(fs, ["ppg", "ecg"], ["NU", "mV"], [24, 24], list(gains), [0.0, 0.0])
    raw = np.rint(vals[:n] / np.array(gains)).astype(np.int64)
    k = int(30 * fs)
    data = (header_encode_text(h) + samples_encode_text(np.arange(k), raw[:k]) + cuff_encode_text(90.0, 95.0)
            + b"#CUFF sbp=abc dbp=70\n" + cuff_encode_text(121.0, 61.0) + samples_encode_text(np.arange(k, n), raw[k:]))
    s = stream_process([data[i:i + 87] for i in range(0, len(data), 87)], bundle_load("default"), StreamDecoder(),
                       calibration=Calibration([], "hold"), collect=True)
    beats = [b for o in s["_outputs"] for b in o.beats]
    assert s["decoder"]["cuff_readings"] == 1 and s["decoder"]["cuff_rejected"] == 2
    assert s["decoder"]["samples_parsed"] == n  # cuff lines are not samples
    t_cuff = k / fs
    assert s["calibration_history"][0]["t"] == pytest.approx(t_cuff)
    assert all(not b["calibrated"] for b in beats if b["t"] <= t_cuff)
    after = [b for b in beats if b["t"] > t_cuff + 1 and b["valid"]]
    assert after and all(b["calibrated"] and b["sbp"] == 121.0 and b["dbp"] == 61.0 for b in after)


def test_evaluate_calibrate_scores_estimator_against_hold_on_the_same_beats(shared_data, tmp_path):
    """`evaluate default --cuff-from-reference 60 --recalibrate-every 2`: the deployed calibrated path
    against hold, on every reference beat after the first reading, once and re-calibrated."""
    data = _data_dir(shared_data, tmp_path, VAL_RECORD)
    res = CliRunner().invoke(cli, ["evaluate", "default", "--split", "val", "--data", str(data), "--cuff-from-reference", "60",
                                   "--recalibrate-every", "2", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output.strip().splitlines()[-1])
    cal = rep["calibrated"]
    once, every = cal["schemes"]["once"], cal["schemes"]["every_2_min"]
    assert once["records"] == every["records"] == 1 and once["beats"] == every["beats"] > 200
    for sch in (once, every):
        for tg in ("sbp", "dbp", "map"):
            r = sch["targets"][tg]
            assert sum(b["n"] for b in r["by_change"]) == sch["beats"]
            assert r["mae_diff"] == pytest.approx(r["model"]["mae"] - r["hold"]["mae"])
    # re-calibrating every 2 minutes brings hold closer on this record's later beats, never further
    assert every["targets"]["sbp"]["hold"]["mae"] != once["targets"]["sbp"]["hold"]["mae"]
    res = CliRunner().invoke(cli, ["evaluate", "default", "--recalibrate-every", "2"])
    assert res.exit_code != 0 and "--cuff-from-reference" in res.output


def test_evaluate_calibrate_is_a_deprecated_alias(monkeypatch):
    """--calibrate S (the old spelling) warns on stderr and reaches evaluate exactly as
    --cuff-from-reference S does (evaluation_run is replaced: only the parsing is under test)."""
    import edgebp.train.evaluate_cli as ev

    got = {"calls": []}

    def fake_run(src, data, split, calibrate, *a, **k):
        got["calls"].append(calibrate)
        raise ev.CliError("stopped here by the test")

    monkeypatch.setattr(ev, "model_open", lambda path, variant, backend="ort": object())
    monkeypatch.setattr(ev, "evaluation_run", fake_run)
    new = CliRunner().invoke(ev.evaluate_command, ["default", "--cuff-from-reference", "60"])
    old = CliRunner().invoke(ev.evaluate_command, ["default", "--calibrate", "60"])
    assert got["calls"] == [60.0, 60.0]
    assert "--calibrate is deprecated; use --cuff-from-reference" in old.stderr and "deprecated" not in new.stderr
    both = CliRunner().invoke(ev.evaluate_command, ["default", "--calibrate", "60", "--cuff-from-reference", "30"])
    assert both.exit_code != 0 and "same option" in both.output


def test_train_beat_delta_writes_a_bundle_with_the_estimator(tiny_bundle_factory, tmp_path):
    """`edgebp train --model beat-delta --bundle B`: a copy of B with estimator.json, fitted on
    B's training records and chosen on its validation records only; its grid keys are typed."""
    from edgebp.runtime.bundle import bundle_load

    b = tiny_bundle_factory("edge-tcn")
    out = tmp_path / "cal"
    args = ["train", "--model", "beat-delta", "--bundle", str(b), "--out", str(out), "--set", "starts=[15,30]",
            "--set", "window_s=15", "--set", "episode_s=20", "--set", "taus=[1,8]", "--set", "lambdas=[10,1000]"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    nb = bundle_load(out)
    e = nb.estimator()
    split = bundle_load(b).manifest["split"]
    assert e.method == "estimator" and set(e.fit["train_records"]) == set(split["train"])
    assert set(e.fit["val_records"]) == set(split["val"]) and not set(e.fit["train_records"]) & set(split["test"])
    assert all(0.0 <= e.alpha[t] <= 1.0 for t in TARGETS) and set(e.fit["chosen"]) == set(TARGETS)
    assert e.fit["chosen"]["sbp"]["val_mae"] <= e.fit["chosen"]["sbp"]["val_hold_mae"] + 1e-9  # alpha 0 is in the grid
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and "--force" in res.output
    res = CliRunner().invoke(cli, ["train", "--model", "beat-delta", "--out", str(tmp_path / "x"), "--set", "gamma=2"])
    assert res.exit_code != 0 and "unknown key(s) gamma" in res.output
    res = CliRunner().invoke(cli, ["train", "--model", "beat-delta", "--epochs", "3", "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "does not take --epochs" in res.output


def test_bench_accuracy_carries_the_calibrated_row_beside_hold(shared_data, tmp_path):
    """`edgebp bench` scores stream variants calibration-free and, beside them, the bundle's
    estimator after a 60 s cuff reading against hold on the same beats."""
    from edgebp.bench.accuracy import accuracy_measure
    from edgebp.runtime.bundle import bundle_load

    rid = "a527l"  # a test record whose first-minute mean a cuff could report (not a382s: DBP under 40)
    assert rid in bundle_load("default").manifest["split"]["test"]
    data = _data_dir(shared_data, tmp_path, rid)
    summary, _ = accuracy_measure("default", "stream-int8", str(data), "test")
    c = summary["calibrated"]
    assert c["method"] == "estimator" and c["records"] == 1 and c["beats"] > 50
    for k in ("sbp", "dbp"):
        assert c[k]["diff"] == pytest.approx(c[k]["model_mae"] - c[k]["hold_mae"])
    assert summary["n_records"] == 1 and summary["sbp"]["n"] > c["beats"]  # the main figures stay calibration-free
