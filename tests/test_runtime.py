"""The streaming runtime: streaming equals offline, accounting, gating, no torch on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgebp.record import Channel, Record
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.protocol import StreamDecoder, StreamHeader, header_encode_text, samples_encode_text
from edgebp.runtime.run import stream_process

GAINS = {"ecg": 2.0**-12, "ppg": 2.0**-14}  # powers of two: raw * gain is exact in float64


def _log_from_record(rec: Record, channels=("ecg", "ppg"), seconds: float | None = None) -> tuple[bytes, Record]:
    """A text serial log of a record's channels, and the record as the device quantized it."""
    fs = rec.get(channels[0]).fs
    n = min(len(rec.get(c).signal) for c in channels)
    if seconds:
        n = min(n, int(seconds * fs))
    raw = np.stack([np.round(rec.get(c).signal[:n] / GAINS[c]).astype(np.int64) for c in channels], axis=1)
    h = StreamHeader(fs, list(channels), ["mV", "NU"], [24, 24], [GAINS[c] for c in channels], [0.0, 0.0], device="test")
    data = header_encode_text(h) + samples_encode_text(np.arange(n) % 65536, raw)
    chans = [Channel(c, raw[:, j] * GAINS[c], fs, label=c) for j, c in enumerate(channels)] + [Channel("abp", rec.get("abp").signal[:n], fs, label="abp")]
    return data, Record(rec.record_id, chans)


def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _stream(bundle, data, variant="fp32", hop=None, chunk_bytes=65536):
    s = stream_process(_chunks(data, chunk_bytes), bundle, StreamDecoder(), variant=variant, hop=hop, collect=True)
    outs = s.pop("_outputs")
    t = np.concatenate([o.t for o in outs])
    abp = np.concatenate([o.abp for o in outs])
    valid = np.concatenate([o.valid for o in outs])
    return s, t, abp, valid


def _offline(bundle_dir, rec: Record, variant="fp32", hop=None):
    from edgebp.evaluation import waveform_predict_record
    from edgebp.processing.chain import preprocess_record
    from edgebp.runtime.bundle_model import BundleModel

    src = BundleModel.open(bundle_dir, variant=variant)
    X, _ = preprocess_record(rec, inputs=src.inputs, fs_out=src.geometry().fs)
    return waveform_predict_record(src.runner, X, src.geometry(), hop=hop)


@pytest.fixture(scope="module")
def tcn(tiny_bundle_factory):
    return tiny_bundle_factory("edge-tcn")


@pytest.fixture(scope="module")
def record(tiny_cohort):
    from edgebp.io import read_record

    return read_record(tiny_cohort / "synth-007")


def _compare(bundle_dir, s_t, s_abp, s_valid, offline):
    b = bundle_load(bundle_dir)
    m = b.manifest
    from edgebp.processing.stream_resample import StreamResampler

    res_delay = StreamResampler(250.0, m["fs"]).delay_out
    # streaming time t = (k - delay - res_delay)/fs; offline index j = k - delay
    j = np.round(s_t * m["fs"] + res_delay).astype(int)
    ok = s_valid & (j >= 0) & (j < len(offline))
    ok &= np.isfinite(offline[np.clip(j, 0, len(offline) - 1)])
    assert ok.sum() > 0.8 * len(offline) - 3 * m["fs"], f"only {ok.sum()} of {len(offline)} outputs comparable"
    return np.abs(s_abp[ok] - offline[j[ok]])


@pytest.mark.parametrize("chunk_bytes", [1, 7, 125, 4096, 10**9])
def test_streaming_equals_offline_fp32(tcn, record, chunk_bytes):
    data, qrec = _log_from_record(record, seconds=20 if chunk_bytes < 100 else None)
    s, t, abp, valid = _stream(bundle_load(tcn), data, chunk_bytes=chunk_bytes)
    d = _compare(tcn, t, abp, valid, _offline(tcn, qrec))
    assert d.max() < 1e-4, d.max()  # the bar: 1e-4 mmHg with the fp32 model
    assert s["decoder"]["samples_rejected"] == 0 and s["decoder"]["samples_missing"] == 0


def test_streaming_int8_within_int8_tolerance(tcn, record):
    data, qrec = _log_from_record(record)
    _, t, abp, valid = _stream(bundle_load(tcn), data, variant="int8")
    d = _compare(tcn, t, abp, valid, _offline(tcn, qrec, variant="fp32"))
    assert np.percentile(d, 99) < 10.0  # the int8 tolerance of tests/test_export.py


@pytest.mark.parametrize("hop", [1, 44])
def test_window_model_hops_equal_offline(tiny_bundle_factory, record, hop):
    b = tiny_bundle_factory("msca-cssc-unet")
    data, qrec = _log_from_record(record, channels=("ecg", "ppg"), seconds=12 if hop == 1 else None)
    _, t, abp, valid = _stream(bundle_load(b), data, hop=hop)
    d = _compare(b, t, abp, valid, _offline(b, qrec, hop=hop))
    assert d.max() < 1e-4


def test_gaps_corruption_and_truncation_are_accounted(tcn, record):
    data, _ = _log_from_record(record, seconds=30)
    lines = data.split(b"\n")
    header, body = lines[0], lines[1:-1]
    n = len(body)
    drop = set(range(1000, 1250))  # a 1 s gap
    corrupt = {2000, 2001, 3000}
    out = [header]
    for i, ln in enumerate(body):
        if i in drop:
            continue
        out.append(b"x9,garbage" if i in corrupt else ln)
    payload = b"\n".join(out) + b"\n" + body[-1][:3]  # a truncated last line
    s, t, abp, valid = _stream(bundle_load(tcn), payload)
    d = s["decoder"]
    assert d["samples_parsed"] == n - len(drop) - len(corrupt)
    assert d["samples_rejected"] == len(corrupt) + 1  # the truncated line too
    assert d["samples_parsed"] + d["samples_rejected"] + d["samples_missing"] >= n
    # every device sample is on the time axis: the outputs cover it at the model rate
    expected = (n) * 125 // 250
    assert abs(len(t) - expected) <= bundle_load(tcn).manifest["streaming"]["chunk"]
    assert s["invalid_reasons"]["gap"] > 0
    # nothing claimed inside the gap (plus the receptive field after it)
    gap_t = (np.array([1000, 1250]) / 250.0)
    inside = (t > gap_t[0] + 0.1) & (t < gap_t[1])
    assert not valid[inside].any()
    # and valid output resumes within 2 s (receptive field ~2 s) of the gap's end
    after = (t > gap_t[1] + 2.5) & (t < gap_t[1] + 5)
    assert valid[after].all()


def test_flat_input_is_not_claimed(tcn, record):
    data, _ = _log_from_record(record, seconds=30)
    lines = data.split(b"\n")
    body = lines[1:-1]
    flat_val = body[3000].split(b",", 1)[1]
    for i in range(3000, 4000):  # 4 s of a stuck ADC
        body[i] = body[i].split(b",", 1)[0] + b"," + flat_val
    payload = b"\n".join([lines[0]] + body) + b"\n"
    s, t, abp, valid = _stream(bundle_load(tcn), payload)
    assert s["invalid_reasons"]["flat"] > 0
    assert not valid[(t > 3000 / 250 + 2.2) & (t < 4000 / 250)].any()


def test_runtime_runs_without_torch(tcn, record, tmp_path):
    data, _ = _log_from_record(record, seconds=20)
    log = tmp_path / "serial.log"
    log.write_bytes(data)
    out = tmp_path / "bp.csv"
    # importing torch fails in this process: the whole runtime path must not need it
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from edgebp.cli import main\n"
            f"sys.argv = ['edgebp', 'run', {str(tcn)!r}, '--stream', {str(log)!r}, '--out', {str(out)!r}, '--summary', {str(tmp_path / 's.json')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outputs"] > 0 and summary["decoder"]["samples_parsed"] == 20 * 250
    rows = [r for r in out.read_text().splitlines() if not r.startswith("#")]
    assert rows[0] == "time,abp,valid,reason" and len(rows) - 1 == summary["outputs"]
    assert (tmp_path / "bp.beats.csv").exists()


def test_run_cli_errors_are_one_line(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "edgebp")
    p = subprocess.run([exe, "run", str(tmp_path), "--stream", "x.log"], capture_output=True, text=True)
    assert p.returncode != 0 and "not a bundle" in p.stderr and "Traceback" not in p.stderr


def test_calibration_offset_is_applied_and_stated(tcn, record, tmp_path):
    from edgebp.runtime.engine import Calibration

    data, _ = _log_from_record(record)
    cal_csv = tmp_path / "cuff.csv"
    cal_csv.write_text("time,sbp,dbp\n10,150,90\n")
    cal = Calibration.from_csv(str(cal_csv))
    from edgebp.runtime.run import stream_process

    s = stream_process(_chunks(data, 65536), bundle_load(tcn), StreamDecoder(), variant="fp32", calibration=cal, collect=True)
    beats = [b for o in s["_outputs"] for b in o.beats]
    assert "offset: 1 cuff reading(s) applied" in s["calibration"] and s["calibration_history"][0]["t"] == 10.0
    assert all(not b["calibrated"] for b in beats if b["t"] <= 10.0)
    cal_beats = [b for b in beats if b.get("calibrated")]
    assert cal_beats, "no calibrated beats"
    near = [b for b in cal_beats if abs(b["t"] - 12) < 6]
    if near:
        assert abs(np.mean([b["sbp"] for b in near]) - 150) < 15
    with pytest.raises(ValueError, match="time,sbp,dbp"):
        bad = tmp_path / "bad.csv"
        bad.write_text("t,s\n1,2\n")
        Calibration.from_csv(str(bad))


def test_torch_backend_matches_onnx_fp32(tcn, record, tiny_run_factory):
    """--backend torch (development only) runs the run's own model through the same runtime."""
    data, _ = _log_from_record(record, seconds=20)
    b = bundle_load(tcn)
    s_ort = stream_process(_chunks(data, 4096), b, StreamDecoder(), variant="fp32", collect=True)
    s_pt = stream_process(_chunks(data, 4096), b, StreamDecoder(), backend="torch", variant="fp32", collect=True,
                          run_dir=str(tiny_run_factory("edge-tcn")))
    a = np.concatenate([o.abp for o in s_ort["_outputs"]])
    p = np.concatenate([o.abp for o in s_pt["_outputs"]])
    ok = np.isfinite(a) & np.isfinite(p)
    assert ok.sum() > 1000 and np.max(np.abs(a[ok] - p[ok])) < 1e-3
    with pytest.raises(ValueError, match="--run-dir"):
        stream_process(_chunks(data, 4096), b, StreamDecoder(), backend="torch", variant="fp32")


def test_run_reads_standard_input_and_a_growing_file(tcn, record, tmp_path):
    """`--stream -` and `--follow` reach the same runtime (real subprocesses, real files)."""
    import threading
    import time

    data, _ = _log_from_record(record, seconds=10)
    exe = os.path.join(os.path.dirname(sys.executable), "edgebp")
    s1 = tmp_path / "stdin.json"
    p = subprocess.run([exe, "run", str(tcn), "--stream", "-", "--summary", str(s1)], input=data, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(s1.read_text())["decoder"]["samples_parsed"] == 10 * 250

    log = tmp_path / "growing.log"
    log.write_bytes(b"")

    def writer():
        for i in range(0, len(data), 20000):
            with open(log, "ab") as f:
                f.write(data[i : i + 20000])
            time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    s2 = tmp_path / "follow.json"
    p = subprocess.run([exe, "run", str(tcn), "--stream", str(log), "--follow", "--idle-timeout", "2", "--summary", str(s2)],
                       capture_output=True, timeout=300)
    t.join()
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(s2.read_text())["decoder"]["samples_parsed"] == 10 * 250


def test_step_latencies_are_bounded_on_a_long_stream(monkeypatch):
    """A live stream keeps only the latest push latencies (the summary's percentiles are over
    those): 200 pushes with a bound of 50 leave 50, the newest."""
    import numpy as np

    from edgebp.runtime import engine
    from edgebp.runtime.bundle import bundle_load

    monkeypatch.setattr(engine, "STEP_LATENCY_KEEP", 50)
    b = bundle_load("default")
    rt = engine.StreamRuntime(b, 250.0, {c: i for i, c in enumerate(b.inputs)})
    rng = np.random.default_rng(0)
    for _ in range(200):
        rt.push(rng.normal(size=(5, len(b.inputs))))
    assert len(rt.stats["step_latency_s"]) == 50
