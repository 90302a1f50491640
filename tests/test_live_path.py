"""The live path: a log replayed as a device sends it (k whole sample lines per read) gives the
same outputs, bit for bit, for packets of 1, 5, 25 and 250 samples and for one read of
everything: point-wise rows, beat rows and the summary's counts, on a real record excerpt
with a gap, a device reset and a flat (frozen front-end) stretch.

The engine holds pushes too small to complete a model step (runtime/engine.py push); these
tests also check that holding changes neither which push an output leaves from nor the cuff
reading's time, and that the short-region text decoder accepts and rejects what the general
one does. Costs are measured by ``edgebp bench --parts live``, not here.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgebp.bench.live import live_once, log_packets, outputs_digest
from edgebp.firmware_sim.cuff import CuffSpec
from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.engine import REASONS, StreamRuntime
from edgebp.runtime.protocol import StreamDecoder
from edgebp.runtime.run import stream_process

PACKETS = (1, 5, 25, 250)
FAULTS = "drop@12s+0.2s,reset@25s,flat@33s+3s"


@pytest.fixture(scope="module")
def bundle():
    return bundle_load("default")


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR)


@pytest.fixture(scope="module")
def record_log(shared_data):
    """45 s of challenge2015 f362s from 30 s on (text protocol) with a 0.2 s dropped stretch
    (a gap), a device reset at 25 s and a 3 s frozen front-end at 33 s, and two cuff readings."""
    path = shared_data / "challenge2015" / "f362s"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"record {path} not found")
    src = sim_source_load(f"record:{path}")
    return device_simulate(src, fmt="text", baud=0, seed=5, start_s=30.0, minutes=0.75, faults=FAULTS,
                           cuff=CuffSpec(at_s=(10.0, 30.0))).stream


def _run(bundle, chunks, variant="int8"):
    s = stream_process(iter(chunks), bundle, StreamDecoder(fmt="auto"), variant=variant, collect=True)
    return s


def _arrays(s):
    outs = s["_outputs"]
    return {f: np.concatenate([getattr(o, f) for o in outs]) for f in ("t", "abp", "valid", "reason")}, [b for o in outs for b in o.beats]


def test_packets_give_identical_outputs_beats_and_counts(bundle, record_log):
    runs = {k: _run(bundle, log_packets(record_log, k)) for k in PACKETS}
    runs["whole"] = _run(bundle, [record_log])
    ref = runs["whole"]
    a_ref, beats_ref = _arrays(ref)
    # the faults are there: a reset, a gap, a flat stretch, cuff readings, valid beats
    assert ref["resets"] == 1 and ref["decoder"]["resets"] == 1
    assert ref["decoder"]["samples_missing"] >= 40 and ref["decoder"]["gaps"] >= 1
    for why in ("gap", "flat", "reset" if ref["invalid_reasons"]["reset"] else "warmup"):
        assert ref["invalid_reasons"][why] > 0, (why, ref["invalid_reasons"])
    assert ref["cuff_readings"] == 2
    assert ref["beats"] >= 20 and ref["valid"] > 0.5 * ref["outputs"]
    for k in PACKETS:
        s = runs[k]
        a, beats = _arrays(s)
        for f in a_ref:
            assert np.array_equal(a[f], a_ref[f], equal_nan=a_ref[f].dtype.kind == "f"), f"{k}-sample packets: {f} differs"
        assert [repr(b) for b in beats] == [repr(b) for b in beats_ref], f"{k}-sample packets: beats differ"
        for key in ("decoder", "outputs", "valid", "invalid_reasons", "beats", "model_calls", "resets", "interpolated_samples",
                    "cuff_readings", "cuff_rejected", "calibration_history"):
            assert s[key] == ref[key], f"{k}-sample packets: summary {key} differs"
        assert outputs_digest(s)[0] == outputs_digest(ref)[0]


@pytest.mark.parametrize("size", [81, 87, 200, 1000])
def test_reads_cut_mid_line_give_identical_outputs_and_take_the_one_pass_decoder(bundle, record_log, size, monkeypatch):
    """Reads of N bytes (a UART, `edgebp run --read-size`, a serve file stream) cut lines
    anywhere; the one-pass text decoder takes the line begun by the previous read and buffers
    the one this read begins, as the general path does: the same outputs, beats and counts as
    one read of everything, and most reads never reach the general path's line splitter."""
    from edgebp.runtime.protocol_text import TextParser

    general = []
    real = TextParser.lines
    monkeypatch.setattr(TextParser, "lines", lambda self, chunk, base: (general.append(len(chunk)), real(self, chunk, base))[1])
    chunks = [record_log[i:i + size] for i in range(0, len(record_log), size)]
    s = _run(bundle, chunks)
    monkeypatch.setattr(TextParser, "lines", real)
    ref = _run(bundle, [record_log])
    a, beats = _arrays(s)
    a_ref, beats_ref = _arrays(ref)
    for f in a_ref:
        assert np.array_equal(a[f], a_ref[f], equal_nan=a_ref[f].dtype.kind == "f"), f"{size}-byte reads: {f} differs"
    assert [repr(b) for b in beats] == [repr(b) for b in beats_ref]
    for key in ("decoder", "outputs", "valid", "invalid_reasons", "beats", "resets", "cuff_readings"):
        assert s[key] == ref[key], f"{size}-byte reads: summary {key} differs"
    # the general path only around the header, the cuff lines, the gap and the reset (a
    # read that ends with no newline at all is buffered there too); before this path existed
    # every cut read went there
    assert len(general) < 0.1 * len(chunks), (len(general), len(chunks))


def test_holding_keeps_each_output_in_its_push(bundle):
    """A step's outputs leave from the push that completes it, whether the small pushes before
    it were held or not: compare a held runtime with one whose holding is switched off."""
    rng = np.random.default_rng(4)
    vals = np.column_stack([rng.normal(0, 0.3, 3000), 1e5 + rng.normal(0, 500, 3000)])
    vals[900:905] = np.nan  # a short gap inside the run
    a = StreamRuntime(bundle, 250.0, {"ecg": 0, "ppg": 1})
    b = StreamRuntime(bundle, 250.0, {"ecg": 0, "ppg": 1})
    b._hold = False
    for i in range(0, len(vals), 5):
        oa, ob = a.push(vals[i:i + 5]), b.push(vals[i:i + 5])
        assert len(oa.t) == len(ob.t), f"push {i // 5}: {len(oa.t)} outputs held vs {len(ob.t)} not held"
        assert np.array_equal(oa.abp, ob.abp, equal_nan=True) and np.array_equal(oa.reason, ob.reason)
        assert a.samples_in == b.samples_in == i + len(vals[i:i + 5])
    fa, fb = a.flush(), b.flush()
    assert np.array_equal(fa.t, fb.t) and np.array_equal(fa.abp, fb.abp, equal_nan=True)
    assert a.stats["outputs"] == b.stats["outputs"] == 1500 and a.stats["model_calls"] == b.stats["model_calls"]


def test_small_pushes_are_held_until_a_step_is_due(bundle):
    """Pushes of 5 device samples are held (the chain does not run) until the one that
    completes a model step; that push returns the step's outputs."""
    rt = StreamRuntime(bundle, 250.0, {"ecg": 0, "ppg": 1})
    step_dev = int(rt.chunk * rt.fs_dev / rt.fs)  # 50 device samples per 25-sample step
    out_pushes = []
    for i in range(40):
        out = rt.push(np.full((5, 2), [0.1, 1e5]) + i * 1e-3)
        if len(out.t):
            out_pushes.append(i)
        assert rt._held_n < step_dev + 5
    assert rt.samples_in == 200 and rt.k <= rt._pre0.n_out(rt._dev_base)
    assert out_pushes and all(b - a >= step_dev // 5 - 1 for a, b in zip(out_pushes, out_pushes[1:]))
    assert rt._held_n > 0 or rt.pending_x.shape[1] < rt.chunk


def test_cuff_time_counts_held_samples(bundle):
    """A cuff reading applies at the next device sample's time, held samples counted."""
    rt = StreamRuntime(bundle, 250.0, {"ecg": 0, "ppg": 1})
    rt.push(np.zeros((7, 2)) + [[0.1, 1e5]])
    assert rt._held_n == 7 and rt.samples_in == 7
    assert rt.cuff_reading(120.0, 80.0)
    assert rt.estimator.pending[-1].t == pytest.approx(7 / 250.0)


@pytest.mark.parametrize("text, accepted", [
    (b"1,2,3\n2,3,4\n", 2),
    (b"1,2,3\r\n2,3,4\r\n", 2),
    (b"1,2,3\n2,3\n", 1),            # a short line: malformed
    (b"1,2,3\n\n2,3,4\n", 2),         # a blank line: ignored
    (b"1,2,-\n2,3,4\n", 1),           # a bare '-'
    (b"1,2,3\n70000,3,4\n", 1),       # seq out of range
    (b"1,2,3\n2,3,99999999\n", 1),    # ECG beyond its 16-bit range
    (b"1,2,3\n2,3,1234567890123456789012\n", 1),  # a 22-digit field
])
def test_short_region_decodes_like_the_general_path(text, accepted):
    """A 5-sample packet goes through the short-region path; the same bytes fed with a large
    read go through the general one: the same samples and the same counts either way."""
    head = b"#EDGEBP v=1 fs=250 ch=ecg,ppg units=mV,NU bits=16,18 gain=1,1 offset=0,0\n0,1,1\n"
    small, big = StreamDecoder(fmt="auto"), StreamDecoder(fmt="auto")
    pad = b"".join(b"%d,5,5\n" % i for i in range(10, 300))  # the general path sees a long region
    blocks_small = [small.feed(head), small.feed(text), small.feed(pad), small.finish()]
    blocks_big = [big.feed(head + text + pad), big.finish()]
    vs = np.concatenate([b.values for b in blocks_small])
    vb = np.concatenate([b.values for b in blocks_big])
    assert np.array_equal(vs, vb)
    assert small.counts == big.counts
    assert small.counts["samples_parsed"] == 1 + accepted + 290


def test_live_once_reports_cost_and_digest(bundle, record_log):
    r5 = live_once(bundle, log_packets(record_log, 5))
    r1 = live_once(bundle, [record_log])
    assert r5["digest"] == r1["digest"] and r5["device_samples"] == r1["device_samples"] > 10_000
    assert r5["cpu_seconds"] > 0 and r5["counts"]["rows"] == r5["counts"]["outputs"]
    assert set(REASONS[1:]) == set(r5["counts"]["invalid_reasons"])
