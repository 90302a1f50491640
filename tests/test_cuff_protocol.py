"""Cuff readings in the device stream: the #CUFF line and 'C' frame, validation, placement,
chunking, backward compatibility, and `edgebp sim --cuff-*` against the truth."""

from __future__ import annotations

import binascii
import importlib
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.firmware_sim.truth import truth_frames_invisible
from edgebp.runtime.crc import crc16_ccitt_false
from edgebp.runtime.protocol import (
    CUFF_RANGE_MMHG, CuffEvent, GapEvent, HeaderEvent, ResetEvent, StreamDecoder, StreamHeader,
    cuff_encode_binary, cuff_encode_text, decode_bytes, decode_stream, header_encode_binary, header_encode_text,
    samples_encode_binary, samples_encode_text,
)
from edgebp.runtime.protocol_binary import TYPE_CUFF

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "serial-protocol.md"
#: The last commit before cuff readings existed: its decoder is the "old reader".
PRE_CUFF_COMMIT = "970f52c"

HDR = StreamHeader(fs=250.0, channels=["ecg", "ppg"], units=["mV", "NU"], adc_bits=[24, 18],
                   gain=[4.76837158203125e-05, 1.0], offset=[0.0, 1000.0], device="sim-01")
ENC = {"text": (header_encode_text, samples_encode_text), "binary": (header_encode_binary, samples_encode_binary)}


def _samples(seq, seed=0):
    seq = np.asarray(seq, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return seq, np.column_stack([rng.integers(-(2**17), 2**17, seq.size) for _ in range(2)])


def _stream(fmt: str, parts) -> bytes:
    """``parts``: "H" (header), a sequence of seq numbers (sample records), or bytes (as is)."""
    hdr, enc = ENC[fmt]
    out = []
    for i, p in enumerate(parts):
        if isinstance(p, str) and p == "H":
            out.append(hdr(HDR))
        elif isinstance(p, (bytes, bytearray)):
            out.append(bytes(p))
        else:
            out.append(enc(*_samples(p, seed=i)))
    return b"".join(out)


def _cuff(fmt: str, sbp: float, dbp: float, seq: int = 0) -> bytes:
    return cuff_encode_text(sbp, dbp) if fmt == "text" else cuff_encode_binary(sbp, dbp, seq)


def _flat(blocks):
    """Samples and events of all blocks, events at absolute sample positions."""
    seqs, events, pos = [], [], 0
    for b in blocks:
        for e in b.events:
            if isinstance(e, CuffEvent):
                events.append(("cuff", pos + e.at_index, e.sbp, e.dbp, e.where))
            elif isinstance(e, GapEvent):
                events.append(("gap", pos + e.at_index, e.after_seq, e.n_missing))
            elif isinstance(e, ResetEvent):
                events.append(("reset", pos + e.at_index, e.from_seq, e.to_seq))
            elif isinstance(e, HeaderEvent):
                events.append(("header", pos + e.at_index, e.header))
            else:  # pragma: no cover - a new event type this test does not know
                raise AssertionError(f"unexpected event {e!r}")
        seqs.append(b.seq)
        pos += len(b)
    return np.concatenate(seqs) if seqs else np.zeros(0, np.int64), events


def _decode(data: bytes, chunk: int | None = None, **kw):
    dec = StreamDecoder(**kw)
    chunks = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    seq, events = _flat(list(decode_stream(chunks, decoder=dec)))
    return seq, events, dec.counts


def _cuffs(events):
    return [e for e in events if e[0] == "cuff"]


def _identity(c) -> int:
    return c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"]


# ----------------------------------------------------------------------------- round trips
def test_text_round_trip_exact_position_keys_any_order():
    data = _stream("text", ["H", range(0, 10), cuff_encode_text(121.5, 78.25), range(10, 20),
                            b"#CUFF dbp=70 sbp=118 src=arm hr=61\n", range(20, 25)])
    seq, events, c = _decode(data)
    assert seq.tolist() == list(range(25))
    # line 1 header, lines 2-11 samples, line 12 the first reading, line 23 the second
    assert _cuffs(events) == [("cuff", 10, 121.5, 78.25, "line 12"), ("cuff", 20, 118.0, 70.0, "line 23")]
    assert c["cuff_readings"] == 2 and c["cuff_rejected"] == 0 and c["cuff_rejected_reasons"] == {}
    assert c["samples_parsed"] == 25 and c["samples_rejected"] == 0 and c["lines_ignored"] == 0


@pytest.mark.parametrize("sbp,dbp", [(120.0, 80.0), (121.25, 78.5), (299.99, 40.0), (41.04, 40.01)])
def test_text_encoding_is_shortest_exact(sbp, dbp):
    line = cuff_encode_text(sbp, dbp)
    assert re.fullmatch(rb"#CUFF sbp=[0-9.]+ dbp=[0-9.]+\n", line)
    assert b".0 " not in line and not line.endswith(b".0\n")  # integers without a decimal point
    _, events, _ = _decode(_stream("text", ["H", [0], line, [1]]))
    assert [(e[2], e[3]) for e in _cuffs(events)] == [(sbp, dbp)]  # exactly the same floats


def test_binary_round_trip_within_rounding():
    rng = np.random.default_rng(3)
    sbp = rng.uniform(80, 300, 200)
    dbp = sbp - rng.uniform(0.2, 39.9, 200)
    parts: list = ["H"]
    for i in range(200):
        parts += [[i], cuff_encode_binary(sbp[i], dbp[i], seq=i)]
    parts.append([200])
    seq, events, c = _decode(_stream("binary", parts))
    got = _cuffs(events)
    assert len(got) == c["cuff_readings"] == 200 and c["samples_parsed"] == 201 and c["lines_ignored"] == 0
    assert [e[1] for e in got] == list(range(1, 201))  # each applies at the next sample
    assert np.max(np.abs(np.array([e[2] for e in got]) - sbp)) <= 0.05 + 1e-9
    assert np.max(np.abs(np.array([e[3] for e in got]) - dbp)) <= 0.05 + 1e-9
    assert got[0][4] == f"byte {len(header_encode_binary(HDR)) + 14}"


def test_encoder_errors():
    with pytest.raises(ValueError, match="finite"):
        cuff_encode_text(float("nan"), 80)
    with pytest.raises(ValueError, match="uint16"):
        cuff_encode_binary(-1.0, 80, 0)
    with pytest.raises(ValueError, match="uint16"):
        cuff_encode_binary(120.0, 7000.0, 0)
    # the encoders write what the decoder must reject, so that it can be tested
    assert cuff_encode_text(320, 80) == b"#CUFF sbp=320 dbp=80\n"


# ----------------------------------------------------------------------------- the documentation
def test_doc_examples_byte_for_byte():
    doc = DOC.read_text()
    sec = doc[doc.index("## 9. Cuff readings"):]
    m = re.search(r"```\n(A5 5A \| 43 [^\n]*)\n", sec)
    assert m, "the example cuff frame is missing from section 9.2"
    frame = bytes.fromhex(m.group(1).replace("|", " "))
    assert frame == cuff_encode_binary(121.5, 78.3, 1234)
    # independently of the project's CRC code: binascii's CRC-16/CCITT-FALSE, MSB first
    assert frame[-2:] == binascii.crc_hqx(frame[2:-2], 0xFFFF).to_bytes(2, "big")
    assert frame[2] == TYPE_CUFF == ord("C") and frame[3] == 4
    assert int.from_bytes(frame[4:6], "little") == 1234
    assert int.from_bytes(frame[6:8], "little") == 1215 and int.from_bytes(frame[8:10], "little") == 783
    t = re.search(r"```\n(#CUFF [^\n]*)\n```", sec)
    assert t and (t.group(1) + "\n").encode() == cuff_encode_text(121.5, 78.3)
    # the counters are documented where the others are
    counters = doc[doc.index("### 4.3 Decoder counters"):doc.index("### 4.4")]
    for key in ("cuff_readings", "cuff_rejected", "cuff_rejected_reasons", "order"):
        assert key in counters
    c = StreamDecoder().counts
    assert {"cuff_readings", "cuff_rejected", "cuff_rejected_reasons"} <= set(c)


# ----------------------------------------------------------------------------- rejections
def _bad_frame(body: bytes, seq: int = 9) -> bytes:
    core = bytes([TYPE_CUFF, len(body)]) + seq.to_bytes(2, "little") + body
    return b"\xa5\x5a" + core + crc16_ccitt_false(core).to_bytes(2, "big")


TEXT_BAD = [
    (b"#CUFF sbp=320 dbp=80\n", "range", "SBP 320 is outside 40..300 mmHg"),
    (b"#CUFF sbp=120 dbp=30\n", "range", "DBP 30 is outside 40..300 mmHg"),
    (b"#CUFF sbp=90 dbp=95\n", "order", "DBP 95 is not below SBP 90"),
    (b"#CUFF sbp=90 dbp=90\n", "order", "DBP 90 is not below SBP 90"),
    (b"#CUFF sbp=120\n", "malformed", "missing dbp="),
    (b"#CUFF sbp=12O dbp=80\n", "malformed", "is not a decimal number"),
    (b"#CUFF sbp=nan dbp=80\n", "malformed", "is not a decimal number"),
    (b"#CUFF sbp=120 dbp=80 sbp=121\n", "malformed", "appears twice"),
    (b"#CUFF 120/80\n", "malformed", "is not key=value"),
]


@pytest.mark.parametrize("line,reason,message", TEXT_BAD)
def test_text_rejections_name_the_line_and_the_stream_goes_on(caplog, line, reason, message):
    good = _stream("text", ["H", range(0, 5), [5], range(6, 10)])
    data = _stream("text", ["H", range(0, 5), line, [5], cuff_encode_text(120, 80), range(6, 10)])
    with caplog.at_level(logging.WARNING, logger="edgebp.runtime.protocol"):
        seq, events, c = _decode(data)
    assert seq.tolist() == list(range(10))  # samples after the bad line decoded
    assert c["cuff_rejected"] == 1 and c["cuff_rejected_reasons"] == {reason: 1}
    assert _cuffs(events) == [("cuff", 6, 120.0, 80.0, "line 9")]  # the next good reading still read
    assert "line 7: cuff reading rejected: " in caplog.text and message in caplog.text
    # accounting: the readings are not records
    gseq, gev, gc = _decode(good)
    assert _identity(c) == _identity(gc) == 10 and c["samples_rejected"] == 0
    assert {k: v for k, v in c.items() if not k.startswith("cuff") and k != "bytes_in"} == \
        {k: v for k, v in gc.items() if not k.startswith("cuff") and k != "bytes_in"}


BINARY_BAD = [
    (cuff_encode_binary(320.0, 80.0, 4), "range", "SBP 320 is outside 40..300 mmHg"),
    (cuff_encode_binary(90.0, 95.0, 4), "order", "DBP 95 is not below SBP 90"),
    (cuff_encode_binary(120.0, 39.9, 4), "range", "DBP 39.9 is outside"),
    (_bad_frame(b"\xb0\x04\x20\x03\x00"), "malformed", "LEN 5, expected 4"),
    (_bad_frame(b"\xb0\x04"), "malformed", "LEN 2, expected 4"),
    (cuff_encode_binary(120.0, 80.0, 4)[:7] + b"\x77" + cuff_encode_binary(120.0, 80.0, 4)[8:], "crc",
     "cuff frame failed its CRC check"),
    (cuff_encode_binary(120.0, 80.0, 4)[:8], "truncated", "cuff frame cut short"),
]


@pytest.mark.parametrize("frame,reason,message", BINARY_BAD)
def test_binary_rejections_name_the_byte_and_the_stream_goes_on(caplog, frame, reason, message):
    head = _stream("binary", ["H", range(0, 5)])
    data = head + frame + _stream("binary", [[5], cuff_encode_binary(120, 80, 5), range(6, 10)])
    with caplog.at_level(logging.WARNING, logger="edgebp.runtime.protocol"):
        seq, events, c = _decode(data)
    assert seq.tolist() == list(range(10))
    assert c["cuff_rejected"] == 1 and c["cuff_rejected_reasons"] == {reason: 1}
    assert [e[:4] for e in _cuffs(events)] == [("cuff", 6, 120.0, 80.0)]
    assert f"byte {len(head)}: cuff reading rejected: " in caplog.text and message in caplog.text
    assert c["samples_rejected"] == 0 and _identity(c) == 10 and c["gaps"] == 0


def test_no_header_and_truncated_at_end(caplog):
    text = b"#CUFF sbp=120 dbp=80\n" + _stream("text", ["H", range(0, 3), b"#CUFF sbp=121 dbp=7"])
    with caplog.at_level(logging.WARNING):
        seq, events, c = _decode(text)
    assert seq.tolist() == [0, 1, 2] and _cuffs(events) == []
    assert c["cuff_rejected_reasons"] == {"no_header": 1, "truncated": 1} and c["cuff_readings"] == 0
    assert "line 1: cuff reading rejected: before any stream header" in caplog.text
    assert "line 6: cuff reading rejected: truncated cuff line" in caplog.text
    assert c["samples_rejected"] == 0 and c["lines_ignored"] == 0
    caplog.clear()
    binary = cuff_encode_binary(120, 80, 0) + _stream("binary", ["H", range(0, 3)])
    tail = cuff_encode_binary(121, 70, 2)[:9]
    with caplog.at_level(logging.WARNING):
        seq, events, c = _decode(binary + tail)
    assert seq.tolist() == [0, 1, 2] and c["cuff_rejected_reasons"] == {"no_header": 1, "truncated": 1}
    assert "byte 0: cuff reading rejected: before any stream header" in caplog.text
    assert f"byte {len(binary)} (end of stream inside a frame): cuff reading rejected: truncated" in caplog.text
    assert c["samples_rejected"] == 0


def test_range_bounds_inclusive():
    lo, hi = CUFF_RANGE_MMHG
    assert (lo, hi) == (40.0, 300.0)
    data = _stream("text", ["H", [0], cuff_encode_text(hi, lo), [1], cuff_encode_text(300.01, lo), [2],
                            cuff_encode_text(hi, 39.99), [3]])
    _, events, c = _decode(data)
    assert [e[2:4] for e in _cuffs(events)] == [(300.0, 40.0)] and c["cuff_rejected_reasons"] == {"range": 2}


def test_log_limit_then_quiet(caplog):
    parts: list = ["H"]
    for i in range(8):
        parts += [[i], b"#CUFF sbp=90 dbp=95\n"]
    with caplog.at_level(logging.WARNING, logger="edgebp.runtime.protocol"):
        _, _, c = _decode(_stream("text", parts))
    assert c["cuff_rejected_reasons"] == {"order": 8}
    assert caplog.text.count("cuff reading rejected") == 5 and "further ones logged at debug level" in caplog.text


# ----------------------------------------------------------------------------- placement and chunking
def test_reading_after_a_held_jump_lies_after_it():
    """Text holds every sequence jump until the next good line; a reading that follows the
    held line applies after it, whether the jump is confirmed (a gap) or rejected (bad_seq)."""
    gap = _stream("text", ["H", range(0, 10), [12], cuff_encode_text(120, 80), range(13, 16)])
    seq, events, c = _decode(gap)
    assert seq.tolist() == list(range(10)) + [12, 13, 14, 15]
    assert [e[:2] for e in events] == [("header", 0), ("gap", 10), ("cuff", 11)]
    bad = _stream("text", ["H", range(0, 10), [1290], cuff_encode_text(120, 80), range(10, 13)])
    seq, events, c = _decode(bad)
    assert seq.tolist() == list(range(13)) and c["rejected_reasons"] == {"bad_seq": 1}
    assert [e[:2] for e in events] == [("header", 0), ("cuff", 10)]
    # and at the end of the stream the held record is accepted, the reading after it
    end = _stream("text", ["H", range(0, 3), [7], cuff_encode_text(120, 80)])
    seq, events, _ = _decode(end)
    assert seq.tolist() == [0, 1, 2, 7] and [e[:2] for e in events] == [("header", 0), ("gap", 3), ("cuff", 4)]


def _mixed(fmt: str) -> bytes:
    """A stream with readings (good and bad), gaps, a duplicate, a restart, a repeated header."""
    c = lambda s, d, q=0: _cuff(fmt, s, d, q)  # noqa: E731
    parts = ["H", range(0, 40), c(120, 80, 39), range(40, 90), c(90, 95, 89), range(92, 150), c(118.5, 76.5, 149),
             [149], range(150, 200), "H", c(117, 75, 199), range(200, 260), c(320, 80), range(0, 50),
             c(125.5, 79.5, 49), range(50, 120), c(119, 77, 119)]
    if fmt == "text":
        parts.insert(5, b"#CUFF sbp=12O dbp=80\n")
    else:
        parts.insert(5, _bad_frame(b"\x00\x01\x02"))
    return _stream(fmt, parts)


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_chunk_size_invariance(fmt):
    data = _mixed(fmt)
    ref = None
    for size in (1, 7, 87, 4096):
        seq, events, c = _decode(data, chunk=size)
        got = (seq.tolist(), events, {k: v for k, v in c.items()})
        if ref is None:
            ref = got
            cuffs = _cuffs(events)
            assert len(cuffs) == 5 and c["cuff_readings"] == 5
            assert c["cuff_rejected_reasons"] == {"order": 1, "range": 1, "malformed": 1}
            assert c["resets"] == 1 and c["gaps"] >= 1 and c["duplicates_dropped"] == 1
            # the last reading lies after the last sample: at_index == len(final block)
            assert cuffs[-1][1] == len(seq)
        else:
            assert got == ref, f"chunk size {size} changed the output"


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_stream_without_cuff_decodes_as_before(fmt):
    """The same stream with and without cuff readings: identical samples, values, other
    events and counters (a stream without them is untouched by the feature)."""
    data = _mixed(fmt)
    plain = re.sub(rb"#CUFF[^\n]*\n", b"", data) if fmt == "text" else _strip_cuff_frames(data)
    with_c, without = decode_bytes(data), decode_bytes(plain)
    s1, e1 = _flat(with_c[0])
    s2, e2 = _flat(without[0])
    assert s1.tolist() == s2.tolist()
    assert [e for e in e1 if e[0] != "cuff"] == e2
    assert np.array_equal(np.concatenate([b.values for b in with_c[0]]), np.concatenate([b.values for b in without[0]]))
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("cuff") and k != "bytes_in"}  # noqa: E731
    assert strip(with_c[1]) == strip(without[1])
    assert without[1]["cuff_readings"] == without[1]["cuff_rejected"] == 0


def _strip_cuff_frames(data: bytes) -> bytes:
    out, p = bytearray(), 0
    while p < len(data):
        if data[p:p + 2] == b"\xa5\x5a":
            size = 8 + data[p + 3]
            if data[p + 2] != TYPE_CUFF:
                out += data[p:p + size]
            p += size
        else:
            out.append(data[p])
            p += 1
    return bytes(out)


def _old_protocol(tmp_path):
    """The decoder as it was before cuff readings (from git), as a separate package."""
    pkg = tmp_path / "oldproto"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("protocol", "protocol_text", "protocol_binary", "protocol_common", "protocol_header",
                 "protocol_logs", "protocol_bench"):
        try:
            src = subprocess.run(["git", "-C", str(REPO), "show", f"{PRE_CUFF_COMMIT}:runtime/{name}.py"],
                                 capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pytest.skip(f"git history with commit {PRE_CUFF_COMMIT} is not available")
        src = re.sub(r"edgebp\.runtime\.(protocol\w*)", r"oldproto.\1", src)
        assert "#CUFF" not in src and "TYPE_CUFF" not in src
        (pkg / f"{name}.py").write_text(src)
    for m in [k for k in sys.modules if k == "oldproto" or k.startswith("oldproto.")]:
        del sys.modules[m]
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("oldproto.protocol")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_old_reader_ignores_readings(tmp_path, fmt):
    """Backward compatibility as documented: the pre-cuff decoder skips #CUFF lines as
    comments and 'C' frames as unknown types (lines_ignored), its samples unchanged."""
    old = _old_protocol(tmp_path)
    data = _mixed(fmt)
    n_cuff = data.count(b"#CUFF") if fmt == "text" else len(re.findall(rb"\xa5\x5aC", data))
    assert n_cuff == 8
    blocks_old, c_old = old.decode_bytes(data)
    blocks_new, c_new = decode_bytes(data)
    assert np.array_equal(np.concatenate([b.seq for b in blocks_old]), np.concatenate([b.seq for b in blocks_new]))
    assert np.array_equal(np.concatenate([b.values for b in blocks_old]),
                          np.concatenate([b.values for b in blocks_new]))
    assert c_old["lines_ignored"] == c_new["lines_ignored"] + n_cuff
    assert c_new["cuff_readings"] + c_new["cuff_rejected"] == n_cuff
    for k in ("samples_parsed", "samples_rejected", "samples_missing", "rejected_reasons", "gaps", "resets"):
        assert c_old[k] == c_new[k], k


# ----------------------------------------------------------------------------- the simulator


def _cli():
    from edgebp.firmware_sim.cli import sim_command

    return sim_command


def _expected_readings(beats, t_abs, window):
    """Mean SBP/DBP of the valid beats with t_sys in [t - window, t] (written out here on purpose)."""
    out = []
    for t in t_abs:
        sel = (beats["valid"] == 1) & (beats["t_sys_s"] >= t - window) & (beats["t_sys_s"] <= t)
        out.append((beats["sbp_mmHg"][sel].mean(), beats["dbp_mmHg"][sel].mean()))
    return np.array(out)


def _check_sim_outputs(tmp_path, args, fmt, window, record, minutes, start_s=0.0, seed=0, every=None, at=()):
    from edgebp.firmware_sim.cuff import CuffSpec, cuff_read
    from edgebp.firmware_sim.simulate import device_simulate
    from edgebp.firmware_sim.truth import truth_read

    out, truth, csv = tmp_path / "s.out", tmp_path / "truth.csv", tmp_path / "cuff.csv"
    r = CliRunner().invoke(_cli(), args + ["--format", fmt, "--out", str(out), "--truth", str(truth),
                                           "--cuff-csv", str(csv), "--quiet"])
    assert r.exit_code == 0, r.output
    assert csv.read_text().splitlines()[0] == "time,sbp,dbp"
    cuff = cuff_read(csv)
    T = truth_read(truth)
    beats_csv = truth_read(tmp_path / "truth_beats.csv")
    # the same simulation in memory (same seed, same output) has the beats at full precision
    res = device_simulate(record, fmt=fmt, minutes=minutes, start_s=start_s, seed=seed,
                          cuff=CuffSpec(every_s=every, at_s=at, window_s=window))
    assert res.stream == out.read_bytes()
    assert np.allclose(res.beats["sbp_mmHg"], beats_csv["sbp_mmHg"], rtol=1e-5)
    exp = _expected_readings(res.beats, cuff["time"], window)
    assert len(cuff["time"]) > 1
    assert np.max(np.abs(cuff["sbp"] - exp[:, 0])) < 1e-6 and np.max(np.abs(cuff["dbp"] - exp[:, 1])) < 1e-6
    # and against the 6-digit beats file the CLI wrote
    exp6 = _expected_readings(beats_csv, cuff["time"], window)
    assert np.max(np.abs(np.column_stack([cuff["sbp"], cuff["dbp"]]) - exp6)) < 1e-3
    # the decoder: the same readings, each at the first sample at or after its time
    seq, events, c = _decode(out.read_bytes(), chunk=4096)
    got = _cuffs(events)
    assert c["cuff_readings"] == len(got) == len(cuff["time"]) and c["cuff_rejected"] == 0
    assert c["samples_parsed"] == len(T["tick"]) and c["samples_rejected"] == 0  # no faults: every tick
    pos = np.searchsorted(T["t_true_s"], cuff["time"], side="left")
    assert [e[1] for e in got] == pos.tolist()
    assert np.all(T["t_true_s"][pos] >= cuff["time"]) and np.all(T["t_true_s"][pos - 1] < cuff["time"])
    if fmt == "text":
        assert [e[2] for e in got] == cuff["sbp"].tolist() and [e[3] for e in got] == cuff["dbp"].tolist()
    else:
        assert np.max(np.abs(np.array([e[2:4] for e in got]) - np.column_stack([cuff["sbp"], cuff["dbp"]]))) <= 0.05
    return cuff, T, res


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_sim_cuff_every_synthetic(tmp_path, fmt):
    from edgebp.firmware_sim.simulate import sim_source_load

    rec = sim_source_load("synth:3", minutes=1.5)
    cuff, T, res = _check_sim_outputs(tmp_path, ["--source", "synth:3", "--minutes", "1.5", "--cuff-every", "20"],
                                      fmt, 30.0, rec, 1.5, every=20.0)
    assert cuff["time"].tolist() == [20.0, 40.0, 60.0, 80.0]
    s = res.summary["cuff"]
    assert s["readings"] == s["readings_emitted"] == 4 and s["skipped"] == 0 and s["window_s"] == 30.0


def test_sim_cuff_real_record(tmp_path, shared_data):
    from edgebp.firmware_sim.simulate import sim_source_load

    path = shared_data / "challenge2015" / "a272s"  # a123l's ABP has hardly a valid beat
    rec = sim_source_load(f"record:{path}")
    cuff, T, res = _check_sim_outputs(
        tmp_path, ["--source", f"record:{path}", "--start", "60", "--minutes", "1", "--cuff-every", "15",
                   "--cuff-at", "7.5", "--cuff-window", "20", "--seed", "2"],
        "binary", 20.0, rec, 1.0, start_s=60.0, seed=2, every=15.0, at=(7.5,))
    assert cuff["time"].tolist() == [67.5, 75.0, 90.0, 105.0]  # truth axis: --start + T
    assert T["t_true_s"][0] >= 60.0


def test_sim_cuff_noise_seeded(tmp_path):
    from edgebp.firmware_sim.cuff import CuffSpec
    from edgebp.firmware_sim.simulate import device_simulate, sim_source_load

    rec = sim_source_load("synth:4", minutes=1)
    clean = device_simulate(rec, minutes=1, seed=1, cuff=CuffSpec(every_s=10))
    a = device_simulate(rec, minutes=1, seed=1, cuff=CuffSpec(every_s=10, noise_sd=3.0))
    b = device_simulate(rec, minutes=1, seed=1, cuff=CuffSpec(every_s=10, noise_sd=3.0))
    c = device_simulate(rec, minutes=1, seed=2, cuff=CuffSpec(every_s=10, noise_sd=3.0))
    d = a.cuff["sbp"] - clean.cuff["sbp"]
    assert np.all(d != 0) and 0.5 < np.std(np.concatenate([d, a.cuff["dbp"] - clean.cuff["dbp"]])) < 8
    assert np.array_equal(a.cuff["sbp"], b.cuff["sbp"]) and a.stream == b.stream
    assert not np.array_equal(a.cuff["sbp"], c.cuff["sbp"])
    # the noise does not move the samples: only the #CUFF lines differ
    strip = lambda s: re.sub(rb"#CUFF[^\n]*\n", b"", s)  # noqa: E731
    assert strip(a.stream) == strip(clean.stream)
    assert strip(clean.stream) == device_simulate(rec, minutes=1, seed=1).stream


@pytest.mark.parametrize("fmt", ["binary", "text"])
def test_sim_cuff_with_faults(fmt):
    """Faults keep working with readings present: the frame faults draw the same, the binary
    accounting identity holds, and every reading that reached the wire is decoded at its place."""
    from edgebp.firmware_sim.cuff import CuffSpec
    from edgebp.firmware_sim.simulate import device_simulate, sim_source_load

    rec = sim_source_load("synth:5", minutes=1)
    faults = "drop=0.01,corrupt=0.005,truncate=0.005,dup=0.005,reset@25s,leadoff@10s+3s"
    plain = device_simulate(rec, fmt=fmt, minutes=1, seed=3, faults=faults)
    r = device_simulate(rec, fmt=fmt, minutes=1, seed=3, faults=faults, cuff=CuffSpec(every_s=2.5, window_s=10))
    T, s = r.truth, r.summary
    for bit in (1, 4, 8, 16, 64):  # drop, truncate, dup, reboot, leadoff
        assert np.array_equal(T["fault_bits"] & bit, plain.truth["fault_bits"] & bit)
    assert np.array_equal(T["seq"], plain.truth["seq"])
    seq, events, c = _decode(r.stream, chunk=87)
    got = _cuffs(events)
    sent = r.cuff["status"] == "emitted"
    assert s["cuff"]["readings"] == len(r.cuff["time"]) >= 20 and sent.sum() >= len(sent) - 1
    if fmt == "binary":
        assert c["samples_parsed"] == s["frames_intact"]
        assert c["cuff_readings"] == sent.sum()
        assert c["cuff_rejected"] == int(np.sum(r.cuff["status"] == "truncated"))  # cut by the reset
        assert [e[2] for e in got] == pytest.approx(r.cuff["sbp"][sent].tolist(), abs=0.05)
        # a reading lies after the intact frames of the ticks before its own tick
        emitted = T["status"] == "emitted"
        expect = [int(np.sum(emitted[:k])) for k in r.cuff["tick"][sent]]
        assert [e[1] for e in got] == expect
        # the sample accounting of tests/test_firmware_sim.py holds with the readings present
        assert (c["duplicates_dropped"], c["resets"]) == (s["duplicates_intact"], s["resets"])
        on_wire = int(np.sum(np.isin(T["status"], ["emitted", "corrupted", "truncated"])))
        assert _identity(c) == s["copies_on_wire"] + s["frames_generated"] - on_wire - truth_frames_invisible(T)
    else:
        assert c["cuff_readings"] <= sent.sum()
        assert c["cuff_readings"] >= sent.sum() - s["copies_corrupted"] - s["copies_truncated"]
        assert all(g[2] in r.cuff["sbp"].tolist() for g in got)


def test_sim_cli_errors(tmp_path):
    base = ["--source", "synth:1", "--minutes", "0.2", "--truth", str(tmp_path / "t.csv"),
            "--out", str(tmp_path / "o"), "--quiet"]
    for extra, msg in (
        (["--cuff-every", "0"], "'--cuff-every': 0 is not > 0"),
        (["--cuff-every", "-5"], "'--cuff-every': -5 is not > 0"),
        (["--cuff-every", "30"], "--cuff-every 30 s gives no reading"),
        (["--cuff-at", "5,20"], "--cuff-at 20 s is outside the simulation"),
        (["--cuff-at", "-1"], "--cuff-at: times must be >= 0"),
        (["--cuff-at", "5,abc"], "'abc' is not a time"),
        (["--cuff-at", "5", "--cuff-window", "0"], "'--cuff-window': 0 is not within (0, 3600]"),
        (["--cuff-at", "5", "--cuff-noise", "-1"], "'--cuff-noise': -1 is not within [0, 100]"),
        (["--cuff-csv", str(tmp_path / "c.csv")], "--cuff-csv needs --cuff-every or --cuff-at"),
        (["--cuff-at", "5", "--format", "max3010x"], "need --format text or binary"),
        (["--cuff-at", "5", "--cuff-csv", str(tmp_path / "nodir" / "c.csv")], "does not exist"),
    ):
        r = CliRunner().invoke(_cli(), base + extra)
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
    r = CliRunner().invoke(_cli(), ["--help"])
    assert all(o in r.output for o in ("--cuff-every", "--cuff-at", "--cuff-window", "--cuff-noise", "--cuff-csv"))


def test_cuff_module_docstrings_and_no_torch():
    import doctest

    import edgebp.firmware_sim.cuff as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    code = ("import sys, edgebp.firmware_sim.cli, edgebp.firmware_sim.cuff, edgebp.runtime.protocol; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
