"""The wearable simulator: faults, front-ends, clock, UART, truth, round trips, CLI and a real pty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.firmware_sim.truth import truth_frames_invisible
from edgebp.firmware_sim.device import DeviceConfig, FrontEndInput, adc_channels, clock_ticks, frontend_convert
from edgebp.firmware_sim.faults import FAULT_BITS, FAULT_NAMES, faults_frame_mask, faults_parse, faults_schedule
from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
from edgebp.firmware_sim.truth import truth_read
from edgebp.firmware_sim.uart import uart_schedule
from edgebp.record import Channel, Record

protocol = pytest.importorskip("edgebp.runtime.protocol")

FS = 250.0


def _toy_signals(seconds: float, fs: float = FS):
    """A regular 66 bpm heart: ECG spikes (mV), a pleth pulse (NU), ABP about 120/75 mmHg."""
    t = np.arange(int(seconds * fs)) / fs
    ph = 2 * np.pi * 1.1 * t
    ecg = 1.2 * np.exp(-((np.mod(ph, 2 * np.pi) - 1.0) ** 2) / 0.01) - 0.1
    ppg = np.clip(np.sin(ph - 1.0), 0, None) ** 2
    abp = 75 + 45 * np.clip(np.sin(ph - 0.8), 0, None) ** 1.5
    return ecg, ppg, abp


@pytest.fixture(scope="module")
def toy():
    ecg, ppg, abp = _toy_signals(40.0)
    return Record("toy", [Channel.from_label("II", ecg, FS, "mV"), Channel.from_label("PLETH", ppg, FS, "NU"),
                          Channel.from_label("ABP", abp, FS, "mmHg")])


@pytest.fixture(scope="module")
def toy_wfdb(tmp_path_factory):
    """The toy heart as a real WFDB record on disk (read back through edgebp.io)."""
    import wfdb

    d = tmp_path_factory.mktemp("wfdb")
    ecg, ppg, abp = _toy_signals(40.0)
    wfdb.wrsamp("toy", fs=FS, units=["mV", "NU", "mmHg"], sig_name=["II", "PLETH", "ABP"],
                p_signal=np.column_stack([ecg, ppg, abp]), fmt=["16", "16", "16"], write_dir=str(d))
    return d / "toy"


def _decode(stream: bytes, **kw):
    dec = protocol.StreamDecoder(**kw)
    blocks = [dec.feed(stream[i:i + 4096]) for i in range(0, len(stream), 4096)] + [dec.finish()]
    seq = np.concatenate([b.seq for b in blocks])
    values = np.concatenate([b.values for b in blocks if b.values.size] or [np.zeros((0, 1))])
    events = [e for b in blocks for e in b.events]
    return seq, values, events, dec.counts


# ----------------------------------------------------------------------------- fault syntax
def test_fault_syntax_and_errors():
    spec = faults_parse("drop=0.01,corrupt=1e-4,reset@120s,leadoff@30s+5s,flat@1min+3s,motion=0.02,"
                        "saturate@90s+500ms,dup=0.001,truncate=0.001")
    assert {r.name: r.rate for r in spec.rates} == {"drop": 0.01, "corrupt": 1e-4, "motion": 0.02, "dup": 0.001,
                                                   "truncate": 0.001}
    ev = {(e.name, e.start_s, e.duration_s) for e in spec.events}
    assert ev == {("reset", 120.0, None), ("leadoff", 30.0, 5.0), ("flat", 60.0, 3.0), ("saturate", 90.0, 0.5)}
    with pytest.raises(ValueError) as err:
        faults_parse("drop=0.01,wobble=2")
    assert "wobble" in str(err.value) and all(n in str(err.value) for n in FAULT_NAMES)
    for bad, msg in (("drop=2", r"\[0, 1\]"), ("drop=x", "not a number"), ("leadoff@30s", "needs a duration"),
                     ("reset@10parsecs", "bad time"), ("motion=-1", ">= 0"), ("drop", "expected NAME"),
                     ("flat@1s+0s", "positive"), ("drop=0.1+2s", "no duration")):
        with pytest.raises(ValueError, match=msg):
            faults_parse(bad)
    assert faults_parse("").rates == () and faults_parse(None).events == ()


def test_random_event_rate_and_determinism():
    spec = faults_parse("reset=0.1,motion=0.05+2s")
    a = faults_schedule(spec, 10_000.0, seed=4)
    assert a.events == faults_schedule(spec, 10_000.0, seed=4).events
    assert a.events != faults_schedule(spec, 10_000.0, seed=5).events
    n_reset = sum(e.name == "reset" for e in a.events)
    n_motion = sum(e.name == "motion" for e in a.events)
    # Poisson: mean 1000 (sd ~32) and 500 (sd ~22)
    assert 850 < n_reset < 1150 and 400 < n_motion < 600
    assert all(e.duration_s == 2.0 for e in a.events if e.name == "motion")
    # per-frame probability: 20000 frames at p = 0.05 -> ~1000 (sd ~31)
    t = np.arange(20_000) / FS
    hits = faults_frame_mask(faults_schedule(faults_parse("drop=0.05"), 80.0), "drop", t, seed=1).sum()
    assert 880 < hits < 1120


# ----------------------------------------------------------------------------- hardware
def test_adc_rails_leadoff_saturation_flat_and_hold():
    cfg = DeviceConfig(ecg_bits=12, ecg_range_mv=2.0, ecg_noise_uv=0.0, ppg_noise=0.0, jitter_us=0.0, ppg_fs=125.0)
    ecg_ch, ppg_ch = adc_channels(cfg)
    assert (ecg_ch.code_min, ecg_ch.code_max, ecg_ch.signed) == (-2048, 2047, True)
    assert ecg_ch.gain == pytest.approx(2.0 / 2048)
    n = 40
    ecg = np.linspace(-3.0, 3.0, n)  # beyond +-2 mV at both ends
    ppg = np.linspace(0.0, 1.0, n)
    zeros = np.zeros(n, dtype=bool)
    masks = {"leadoff": zeros.copy(), "saturate": zeros.copy(), "flat": zeros.copy()}
    masks["leadoff"][5:8] = True
    masks["saturate"][20:22] = True
    masks["flat"][30:34] = True
    codes = frontend_convert(cfg, FrontEndInput(ecg=ecg, ppg=ppg, masks=masks), n)
    e, p = codes[:, 0], codes[:, 1]
    assert e[0] == -2048 and e[39] == 2047  # clipped at the rails
    inside = (np.abs(ecg) < 1.9) & ~masks["leadoff"] & ~masks["saturate"] & ~masks["flat"]
    assert np.abs(ecg_ch.to_physical(e[inside]) - ecg[inside]).max() <= ecg_ch.gain / 2 + 1e-12
    assert (e[5:8] == 2047).all()  # lead-off to the rail
    assert (e[20:22] == 2047).all() and (p[20:22] == ppg_ch.code_max).all()
    assert (codes[30:34] == codes[29]).all()  # flat: frozen at the last code
    # PPG at 125 Hz inside 250 Hz frames: each own sample held for two frames
    assert (p[0:20:2] == p[1:20:2]).all() and p[2] != p[0]
    # lead-off without an ECG channel: the PPG reads ambient light only
    cfg_p = DeviceConfig(channels=("ppg",), ppg_noise=0.0, jitter_us=0.0)
    c = frontend_convert(cfg_p, FrontEndInput(ecg=None, ppg=ppg, masks={"leadoff": np.ones(n, bool)}), n)
    assert (c[:, 0] == round(cfg_p.ppg_ambient * adc_channels(cfg_p)[0].code_max)).all()
    cfg_flat = DeviceConfig(leadoff_mode="flat", ecg_noise_uv=0.0, ppg_noise=0.0, jitter_us=0.0)
    c = frontend_convert(cfg_flat, FrontEndInput(ecg=ecg, ppg=ppg, masks={"leadoff": np.ones(n, bool)}), n)
    assert (c[:, 0] == 0).all()


def test_device_config_errors():
    for kw, msg in (({"ppg_fs": 100.0}, "divide"), ({"ecg_bits": 30}, "ecg_bits"), ({"ppg_bits": 24}, "int24"),
                    ({"channels": ("ecg", "spo2")}, "choose"), ({"jitter_us": 1e4}, "jitter")):
        with pytest.raises(ValueError, match=msg):
            DeviceConfig(**kw)


def test_clock_ppm_and_jitter():
    t = clock_ticks(DeviceConfig(clock_ppm=200.0, jitter_us=0.0), 25_001, seed=0)
    # after 25000 nominal periods (100 s) a +200 ppm clock is 20 ms early
    assert t[-1] == pytest.approx(100.0 / (1 + 200e-6))
    tj = clock_ticks(DeviceConfig(clock_ppm=0.0, jitter_us=50.0), 20_000, seed=3)
    dev = tj[1:] - np.arange(1, 20_000) / FS
    assert np.std(dev) == pytest.approx(50e-6, rel=0.05)


def test_uart_buffer_and_reset_cut():
    # 1000 B/s line, 100-byte frames offered every 50 ms (2000 B/s), 250-byte buffer
    t = np.arange(40) * 0.05
    s = uart_schedule(t, np.full(40, 100), baud=10_000, buffer_bytes=250)
    assert 19 <= s.accepted.sum() <= 23  # the line carries half of what is offered
    ends = s.end[s.accepted]
    assert np.all(np.diff(ends) >= 0.1 - 1e-9)  # never faster than the line
    cut = uart_schedule(np.zeros(3), np.full(3, 100), baud=10_000, buffer_bytes=1000, resets=[0.15])
    assert cut.sent.tolist() == [100, 50, 0]
    free = uart_schedule(t, np.full(40, 100), baud=0, buffer_bytes=1)
    assert free.accepted.all() and (free.end == t).all()


# ----------------------------------------------------------------------------- whole device
def test_summary_accounting_and_truth(toy):
    r = device_simulate(toy, faults="drop=0.02,dup=0.01,truncate=0.01,corrupt=0.01,reset@12s,leadoff@5s+2s,"
                                    "motion@20s+3s,flat@25s+1s,saturate@28s+1s", fmt="binary", seed=2)
    s, T = r.summary, r.truth
    assert s["frames_generated"] == (s["frames_emitted"] + s["frames_dropped_fault"] + s["frames_dropped_overflow"]
                                     + s["frames_lost_reset"] + s["frames_truncated"])
    assert s["frames_generated"] + s["ticks_reboot"] == s["ticks"] == len(T["tick"])
    assert s["resets"] == 1 and s["headers_sent"] == 2
    assert s["frames_dropped_fault"] > 0 and s["frames_corrupted"] > 0 and s["frames_duplicated"] > 0
    # the reboot takes 0.5 s: 125 ticks without a sample, then seq restarts at 0
    reboot = T["status"] == "reboot"
    assert reboot.sum() == s["ticks_reboot"] == pytest.approx(125, abs=1)
    after = np.flatnonzero(reboot)[-1] + 1
    assert T["seq"][after] == 0 and T["boot"][after] == 1 and T["seq"][after - 126] > 2000
    assert (T["fault_bits"][reboot] & FAULT_BITS["reboot"]).all()
    lo = (T["t_true_s"] >= 5.0) & (T["t_true_s"] < 7.0)
    assert (T["fault_bits"][lo] & FAULT_BITS["leadoff"]).all() and (T["ecg_code"][lo] == r.channels[0].code_max).all()
    assert all("leadoff" in f for f in T["faults"][lo])
    # truth time and ABP: strictly increasing instants, ABP = the source at those instants
    assert np.all(np.diff(T["t_true_s"]) > 0)
    abp_src = toy.get("abp").signal
    assert np.allclose(T["abp_mmHg"], np.interp(T["t_true_s"], np.arange(len(abp_src)) / FS, abp_src))
    # per-beat truth from the project's beat detector
    assert 40 <= len(r.beats["sbp_mmHg"]) <= 44  # 1.1 Hz over ~40 s
    assert np.allclose(np.median(r.beats["sbp_mmHg"]), 120, atol=1) and np.allclose(np.median(r.beats["dbp_mmHg"]), 75, atol=1)
    assert (T["copies"][T["status"] == "emitted"] >= 1).all() and (T["copies"][T["status"] == "dropped"] == 0).all()


def test_same_seed_same_output(toy):
    a = device_simulate(toy, faults="drop=0.01,corrupt=0.001,motion=0.1", seed=7, minutes=0.3)
    b = device_simulate(toy, faults="drop=0.01,corrupt=0.001,motion=0.1", seed=7, minutes=0.3)
    c = device_simulate(toy, faults="drop=0.01,corrupt=0.001,motion=0.1", seed=8, minutes=0.3)
    assert a.stream == b.stream and a.summary == b.summary
    for k in a.truth:
        if a.truth[k].dtype.kind == "f":
            assert np.array_equal(a.truth[k], b.truth[k], equal_nan=True)
        else:
            assert np.array_equal(a.truth[k], b.truth[k])
    assert a.stream != c.stream and a.summary["clock_ppm"] != c.summary["clock_ppm"]


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_round_trip_clean_stream_is_exact(toy, fmt):
    r = device_simulate(toy, fmt=fmt, seed=1, minutes=0.25)
    seq, values, events, counts = _decode(r.stream)
    ok = r.truth["status"] == "emitted"
    assert ok.all() and counts["samples_parsed"] == ok.sum() == r.summary["frames_generated"]
    assert np.array_equal(seq, r.truth["seq"] % 65536)
    for j, ch in enumerate(r.channels):
        assert np.array_equal(values[:, j], ch.to_physical(r.truth[f"{ch.name}_code"]))
    hdr = [e for e in events if type(e).__name__ == "HeaderEvent"]
    assert len(hdr) == 1 and hdr[0].header.fs == FS and hdr[0].header.channels == ["ecg", "ppg"]




@pytest.mark.parametrize("faults", ["drop=0.01,corrupt=0.01,truncate=0.01,reset@15s", "dup=0.02,drop=0.01"])
def test_round_trip_binary_faults_accounting(toy, faults):
    """The decoder's counts agree with the simulator's: every record accounted for.

    (A corrupted copy of a duplicated frame whose sync bytes were hit is invisible to any
    decoder, so corruption and duplication are checked in separate runs.)
    """
    r = device_simulate(toy, faults=faults, fmt="binary", seed=1)
    s, T = r.summary, r.truth
    seq, values, events, c = _decode(r.stream)
    assert c["samples_parsed"] == s["frames_intact"] == np.sum(T["status"] == "emitted")
    assert c["duplicates_dropped"] == s["duplicates_intact"]
    assert c["resets"] == s["resets"]
    bad = c["rejected_reasons"].get("crc", 0) + c["rejected_reasons"].get("truncated", 0)
    assert bad <= s["copies_corrupted"] + s["copies_truncated"]
    # parsed + rejected + missing = records on the wire + frames never sent that a gap reveals
    frames_on_wire = int(np.sum(np.isin(T["status"], ["emitted", "corrupted", "truncated"])))
    unsent_seen = s["frames_generated"] - frames_on_wire - truth_frames_invisible(T)
    assert c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"] == s["copies_on_wire"] + unsent_seen
    intact = T["status"] == "emitted"
    assert np.array_equal(seq, T["seq"][intact])
    assert np.array_equal(values[:, 1], T["ppg_code"][intact].astype(float))
    if "dup" in faults:
        assert s["duplicates_intact"] > 0 and np.sum(T["copies"] == 2) == s["duplicates_intact"]
    else:
        assert bad > 0 and s["resets"] == 1


def test_uart_overflow_drops_whole_frames(toy):
    r = device_simulate(toy, fmt="text", baud=9600, buffer_bytes=256, seed=0, minutes=0.2)
    s = r.summary
    assert s["data_rate_bytes_per_s"] > 960 and s["frames_dropped_overflow"] > 0
    # the wire never carries more than the line rate allows (plus the buffer present at the end)
    assert s["bytes_out"] <= s["duration_s"] * 960 + 256 + 200
    seq, values, events, c = _decode(r.stream)
    assert c["samples_rejected"] == 0  # whole frames dropped: nothing half-sent
    assert c["samples_parsed"] == s["frames_intact"]
    assert np.array_equal(seq, r.truth["seq"][r.truth["status"] == "emitted"])
    fast = device_simulate(toy, fmt="text", baud=115200, seed=0, minutes=0.2)
    assert fast.summary["frames_dropped_overflow"] == 0
    # a reset with a full buffer loses what is queued and cuts the frame on the wire
    rr = device_simulate(toy, fmt="binary", baud=9600, buffer_bytes=256, seed=0, minutes=0.2, faults="reset@5s")
    s = rr.summary
    assert s["frames_lost_reset"] > 0 and s["frames_truncated_reset"] == 1 and s["frames_truncated_fault"] == 0
    assert s["frames_generated"] == (s["frames_emitted"] + s["frames_dropped_overflow"] + s["frames_lost_reset"]
                                     + s["frames_truncated"])


def test_max3010x_mode(toy):
    r = device_simulate(toy, fmt="max3010x", seed=0, minutes=0.1)
    assert [c.name for c in r.channels] == ["red", "ir"] and r.header is None
    assert r.stream.startswith(b"red=") and b"#EDGEBP" not in r.stream
    seq, values, events, c = _decode(r.stream, fmt="max3010x", fs=FS, channel_map={"ir": "ppg"})
    assert np.array_equal(values[:, 0], r.truth["ir_code"].astype(float))
    # the pulse is in the signal: IR AC/DC follows ppg_perfusion, red carries half of it
    ir, red = r.truth["ir_code"], r.truth["red_code"]
    assert 0.5 < (np.ptp(ir) / np.mean(ir)) / 0.02 < 1.5
    assert np.ptp(red) / np.mean(red) < np.ptp(ir) / np.mean(ir)


def test_source_errors(toy):
    no_abp = Record("x", [c for c in toy.channels if c.name != "abp"])
    with pytest.raises(ValueError, match="no ABP channel"):
        device_simulate(no_abp)
    with pytest.raises(ValueError, match="valid formats"):
        device_simulate(toy, fmt="morse")
    with pytest.raises(ValueError, match="synth:SUBJECT"):
        sim_source_load("wav:foo")
    with pytest.raises(ValueError, match="buffer"):
        device_simulate(toy, fmt="binary", buffer_bytes=10)


def test_synth_source_round_trip():
    synth = pytest.importorskip("edgebp.synth")
    if not hasattr(synth, "synth_record"):
        pytest.skip("edgebp.synth.synth_record is not available yet")
    rec = sim_source_load("synth:2", minutes=0.3)
    r = device_simulate(rec, fmt="binary", seed=0, minutes=0.3)
    seq, values, events, c = _decode(r.stream)
    assert c["samples_parsed"] == r.summary["frames_generated"]
    assert len(r.beats["sbp_mmHg"]) > 5 and np.isfinite(r.truth["abp_mmHg"]).all()


def test_real_record(shared_data):
    rec = sim_source_load(f"record:{shared_data / 'challenge2015' / 'a123l'}")
    r = device_simulate(rec, fmt="text", seed=0, minutes=0.2, start_s=60.0, faults="motion@3s+2s")
    assert r.truth["t_true_s"][0] >= 60.0 and r.summary["frames_generated"] == pytest.approx(3000, abs=2)
    seq, values, events, c = _decode(r.stream)
    assert c["samples_parsed"] == 3000 or c["samples_parsed"] == r.summary["frames_generated"]


# ----------------------------------------------------------------------------- CLI
def _cli():
    from edgebp.firmware_sim.cli import sim_command

    return sim_command


def test_cli_file_outputs(tmp_path, toy_wfdb):
    out, truth = tmp_path / "s.bin", tmp_path / "truth.csv"
    r = CliRunner().invoke(_cli(), ["--source", f"record:{toy_wfdb}", "--minutes", "0.2", "--format", "binary",
                                    "--faults", "drop=0.01,reset@5s", "--seed", "5", "--out", str(out),
                                    "--truth", str(truth), "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "truth_summary.json").read_text())
    T = truth_read(truth)
    assert len(T["tick"]) == summary["ticks"] and set(T["status"]) <= {"emitted", "dropped", "reboot"}
    assert out.stat().st_size == summary["bytes_out"]
    beats = truth_read(tmp_path / "truth_beats.csv")
    assert len(beats["sbp_mmHg"]) == summary["beats"] > 5
    seq, values, events, c = _decode(out.read_bytes())
    assert c["samples_parsed"] == summary["frames_intact"] and c["resets"] == 1


def test_cli_errors_and_help(tmp_path, toy_wfdb):
    run = CliRunner().invoke
    h = run(_cli(), ["--help"])
    assert h.exit_code == 0 and "drop=0.01,corrupt=1e-4" in h.output and "8N1" in h.output
    base = ["--source", f"record:{toy_wfdb}", "--truth", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o")]
    r = run(_cli(), base + ["--faults", "jitter=3"])
    assert r.exit_code == 2 and "valid: drop, corrupt" in r.output
    r = run(_cli(), ["--source", f"record:{toy_wfdb}", "--truth", str(tmp_path / "t.csv")])
    assert r.exit_code == 2 and "--out" in r.output
    r = run(_cli(), base + ["--ppg-fs", "100"])
    assert r.exit_code == 2 and "divide" in r.output
    r = run(_cli(), base[:4] + ["--out", str(tmp_path / "nodir" / "o")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_stdout_and_realtime_file(tmp_path, toy_wfdb):
    args = ["--source", f"record:{toy_wfdb}", "--minutes", "0.05", "--truth", str(tmp_path / "t.csv"), "--quiet"]
    r = CliRunner().invoke(_cli(), args + ["--out", "-"])
    assert r.exit_code == 0
    fast = r.stdout_bytes
    assert fast.startswith(b"#EDGEBP v=1 fs=250 ch=ecg,ppg")
    paced = tmp_path / "paced.log"
    r = CliRunner().invoke(_cli(), args + ["--out", str(paced), "--realtime", "--speed", "50"])
    assert r.exit_code == 0
    assert paced.read_bytes() == fast


def test_cli_pty_streams_same_bytes(tmp_path, toy_wfdb):
    """A real pseudo-terminal: the simulator prints its path, a pyserial reader gets the stream."""
    serial = pytest.importorskip("serial")
    args = ["--source", f"record:{toy_wfdb}", "--minutes", "0.05", "--faults", "drop=0.02", "--seed", "9",
            "--format", "binary"]
    ref = tmp_path / "ref.bin"
    r = CliRunner().invoke(_cli(), args + ["--out", str(ref), "--truth", str(tmp_path / "ref.csv"), "--quiet"])
    assert r.exit_code == 0
    expected = ref.read_bytes()
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "edgebp", "sim", *args, "--pty", "--speed", "10",
                             "--pty-wait", "30", "--truth", str(tmp_path / "pty.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("device: /dev/"), (line, proc.stderr.read().decode() if proc.poll() is not None else "")
        port = serial.Serial(line.split()[1], 115200, timeout=0.5)
        got = b""
        deadline = time.monotonic() + 30
        while len(got) < len(expected) and time.monotonic() < deadline:
            try:
                got += port.read(4096)
            except serial.SerialException:
                break
        port.close()
        assert got == expected
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
