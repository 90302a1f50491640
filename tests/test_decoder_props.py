"""Property-based checks of the stream decoder (issue 17), and regressions for its bugs.

Properties (hypothesis; bounded to well under a minute in total on the project's machine):

- chunking: for any bytes and any cut into chunks, the output (samples, events) and every
  counter equal those of one-shot decoding (or both raise the same one-line error);
- binary: intact frames with arbitrary garbage and truncated copies of frames between them
  decode to every intact frame exactly once, with its values;
- counters add up exactly on streams whose faults are all countable: parsed + rejected +
  missing = records the device sent (+ duplicates), every byte is in a frame or in
  ``bytes_skipped``, every rejection reason is counted;
- text: intact lines with garbage lines between them decode to every intact line exactly
  once, each garbage line counted;
- CSV: rows of empty/NA cells are rejected samples that keep their slot (a gap), never the
  end of the run.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebp.runtime.crc import crc16_ccitt_false
from edgebp.runtime.protocol import (
    CuffEvent, GapEvent, HeaderEvent, ResetEvent, StreamDecoder, StreamHeader, decode_bytes, decode_stream,
    header_encode_binary, header_encode_text, samples_encode_binary, samples_encode_text, stream_detect_format,
)

HDR = StreamHeader(fs=250.0, channels=["ecg", "ppg"], units=["mV", "NU"], adc_bits=[24, 18],
                   gain=[0.5, 1.0], offset=[0.0, 0.0], device="props")
HEAD_BIN = header_encode_binary(HDR)
HEAD_TEXT = header_encode_text(HDR)
# Hypothesis budget: every test below states its own (1,800 examples in all); the file ran in
# 38 s on the project's 2 cores while other test runs shared them (12 s with half the
# examples on a quieter machine): `pytest --durations=0 tests/test_decoder_props.py`.
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers
def flatten(blocks) -> tuple[list[int], np.ndarray, list]:
    """Concatenated output with events at global positions, so that any two cuts compare."""
    seqs, vals, events, pos = [], [], [], 0
    for b in blocks:
        for e in b.events:
            if isinstance(e, GapEvent):
                events.append(("gap", pos + e.at_index, e.after_seq, e.n_missing))
            elif isinstance(e, ResetEvent):
                events.append(("reset", pos + e.at_index, e.from_seq, e.to_seq))
            elif isinstance(e, CuffEvent):
                events.append(("cuff", pos + e.at_index, e.sbp, e.dbp, e.where))
            else:
                assert isinstance(e, HeaderEvent)
                events.append(("header", pos + e.at_index, e.header))
        seqs.extend(b.seq.tolist())
        if len(b):
            vals.append(b.values)
        pos += len(b)
    widths = {v.shape[1] for v in vals if len(v)}
    values = np.concatenate(vals) if len(widths) == 1 else np.zeros((0, 0))
    return seqs, values, events


def decode_chunks(chunks: list[bytes], **kw):
    """``(flattened output, counts)`` or ``("error", message)``."""
    dec = StreamDecoder(**kw)
    try:
        blocks = list(decode_stream(chunks, decoder=dec))
    except ValueError as err:
        return ("error", str(err)), None
    return flatten(blocks), dec.counts


def cut(data: bytes, points: list[int]) -> list[bytes]:
    pts = sorted({min(max(p, 0), len(data)) for p in points})
    edges = [0, *pts, len(data)]
    return [data[a:b] for a, b in zip(edges[:-1], edges[1:])]


def same(a, b) -> None:
    (oa, ca), (ob, cb) = a, b
    assert ca == cb
    if oa and oa[0] == "error":
        assert ob == oa
        return
    assert oa[0] == ob[0] and oa[2] == ob[2]
    np.testing.assert_array_equal(oa[1], ob[1])


def frame(seq: int, v0: int, v1: int) -> bytes:
    return samples_encode_binary(np.array([seq]), np.array([[v0, v1]]))


def frame_ending_in(seq: int, v0: int, last: int = 0xA5) -> tuple[bytes, int]:
    """A sample frame whose last byte (CRC low byte) is ``last``: the second value is searched
    (about 256 tries), so that the rare case of the bug is drawn often."""
    head = bytes([0x53, 6]) + seq.to_bytes(2, "little") + (v0 & 0xFFFFFF).to_bytes(3, "little")
    for v1 in range(0, 1 << 17):  # the CRC is computed directly: the search must be cheap
        if crc16_ccitt_false(head + v1.to_bytes(3, "little")) & 0xFF == last:
            f = frame(seq, v0, v1)
            assert f[-1] == last
            return f, v1
    raise AssertionError("unreachable: the CRC low byte takes every value")


def clean_frame(seq: int, v0: int, v1: int) -> tuple[bytes, int]:
    """A sample frame with no 0xA5 after its sync (no sync can start inside it, however it
    is damaged), so that the counters of a damaged stream are exactly predictable."""
    v0 = int(v0) & 0x5F5F5F  # bits 5 and 7 never both set: no byte of v0 is 0xA5
    while True:
        f = frame(seq, v0, v1)
        if SYNC0 not in f[1:]:
            return f, v1
        v1 = (v1 + 1) % (1 << 17)


SYNC0 = 0xA5


# ----------------------------------------------------------------------------- chunking
byte_soup = st.lists(
    st.one_of(
        st.binary(max_size=24),
        st.sampled_from([HEAD_BIN, HEAD_TEXT, b"\xa5\x5a", b"\xa5", b"\n", b"0,1,2\n", b"#CUFF sbp=120 dbp=80\n",
                         b"time,ppg\n", b"0.5,12\n", b"NA,NA\n", b",\n", b"red=1, ir=2\n",
                         b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"]),
        st.builds(lambda s, a, b: frame(s, a, b), st.integers(0, 65535), st.integers(-2**17, 2**17 - 1),
                  st.integers(-2**17, 2**17 - 1)),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(byte_soup, st.lists(st.integers(0, 2000), max_size=12), st.sampled_from(["auto", "binary", "text", "csv"]))
def test_any_chunking_equals_one_shot(data, points, fmt):
    kw = {"fmt": fmt, "fs": 250.0 if fmt in ("auto", "csv") else None}
    one = decode_chunks([data], **kw)
    same(decode_chunks(cut(data, points), **kw), one)
    same(decode_chunks([data[i:i + 1] for i in range(len(data))], **kw), one)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=200).filter(lambda b: b"\n" not in b), st.integers(0, 7000),
       st.sampled_from([b"time,ppg\n0.5,7\n", b"#EDGEBP v=1\n", b"\xa5Z"]), st.integers(1, 5000))
def test_detection_of_a_long_first_line_is_chunking_independent(head, length, tail, split):
    """Issue 17: a first printable line longer than 512 bytes was decided by how much of it
    had arrived."""
    line = (head.translate(bytes(range(256)), bytes(range(0, 32)) + bytes(range(127, 256))) + b"x" * length)
    data = line + b"\n" + tail
    ref = stream_detect_format(data, final=True)
    for k in range(0, len(data) + 1, max(1, split)):
        got = stream_detect_format(data[:k])
        assert got is None or got == ref, (k, got, ref)


# ----------------------------------------------------------------------------- binary: nothing intact lost
@st.composite
def binary_with_damage(draw):
    """Intact frames (seq 0..n-1) with garbage and truncated copies of neighbours between."""
    n = draw(st.integers(2, 40))
    frames, values = [], []
    for s in range(n):
        v0 = draw(st.integers(-2**17, 2**17 - 1))
        if draw(st.integers(0, 3)) == 0:
            f, v1 = frame_ending_in(s, v0)  # the issue 17 case: last byte 0xA5
        else:
            v1 = draw(st.integers(-2**17, 2**17 - 1))
            f = frame(s, v0, v1)
        frames.append(f)
        values.append((v0, v1))
    out = [HEAD_BIN]
    for s in range(n):
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["garbage", "trunc_next", "trunc_prev", "sync_junk"]))
            if kind == "garbage":
                out.append(draw(st.binary(min_size=1, max_size=30)))
            elif kind == "sync_junk":  # a sync and a LEN that spans the next intact frames
                out.append(b"\xa5\x5a" + draw(st.binary(min_size=0, max_size=6)))
            else:  # a copy of a neighbour cut by 1..len-1 bytes (a resend, a lost tail)
                src = frames[s] if kind == "trunc_next" else frames[max(s - 1, 0)]
                out.append(src[:len(src) - draw(st.integers(1, len(src) - 1))])
        out.append(frames[s])
    return b"".join(out), values


def test_a_resent_frame_completed_by_a_borrowed_sync_byte_is_a_duplicate_not_a_restart():
    """Found by the property below (hypothesis, 2026-12-01): frames 32 and 33 both end in
    0xA5; the wire carries 32, a copy of 33 cut by its last byte, a copy of 32 cut by its last
    byte, then 33. Each cut copy completes with the next frame's first byte into a valid
    frame, so the parser reads 32, 33, 32, 33 (every intact frame is kept). The repeated 32
    used to read as a device restart (seq 33 -> 32) and its samples came out twice; it is a
    duplicate of a record just accepted (the same seq, the same values)."""
    head = [frame(s, 100 * s, 7) for s in range(32)]
    f32, v32 = frame_ending_in(32, 3200)
    f33, v33 = frame_ending_in(33, 3300)
    data = HEAD_BIN + b"".join(head) + f32 + f33[:-1] + f32[:-1] + f33
    for points in ([], [len(data) - 20], list(range(0, len(data), 7))):
        (seq, vals, events), counts = decode_chunks(cut(data, points), fmt="binary")
        assert seq == list(range(34)), seq[-6:]
        assert counts["resets"] == 0 and not [e for e in events if e[0] == "reset"]
        # the re-read 32, and the intact 33 after the completed copy of it
        assert counts["duplicates_dropped"] == 2 and counts["rejected_reasons"] == {"duplicate": 2}
        assert counts["samples_parsed"] == 34 and counts["samples_missing"] == 0
        np.testing.assert_array_equal(vals[-2:], np.array([[3200, v32], [3300, v33]]) * np.array(HDR.gain))
    # a real restart (seq back to 0, new samples) is still one, and so is a device that
    # replays the very same samples from 0 (a replayed log: 10 behind, the same values)
    data2 = HEAD_BIN + b"".join(head[:10]) + frame(0, 5, 5) + frame(1, 6, 6)
    (seq2, _, _), c2 = decode_chunks([data2], fmt="binary")
    assert seq2 == [*range(10), 0, 1] and c2["resets"] == 1 and c2["duplicates_dropped"] == 0
    data3 = HEAD_BIN + b"".join(head[:10]) + b"".join(head[:10])
    (seq3, _, _), c3 = decode_chunks([data3], fmt="binary")
    assert seq3 == [*range(10)] * 2 and c3["resets"] == 1 and c3["duplicates_dropped"] == 0


@FAST
@given(binary_with_damage(), st.lists(st.integers(0, 1500), max_size=8))
def test_every_intact_frame_is_decoded_exactly_once(case, points):
    data, values = case
    (seq, vals, _), counts = decode_chunks(cut(data, points), fmt="binary")
    n = len(values)
    # Garbage could in principle hold a CRC-valid frame (2**-16 per sync); a damaged copy of a
    # neighbour that passes its CRC carries that neighbour's own seq and values.
    assert seq == list(range(n)), (seq, counts)
    np.testing.assert_array_equal(vals, np.array(values, dtype=float) * np.array(HDR.gain))
    assert counts["samples_parsed"] == n
    assert counts["samples_missing"] == 0
    assert sum(counts["rejected_reasons"].values()) == counts["samples_rejected"]


@st.composite
def binary_countable(draw):
    """Per slot: intact, dropped, duplicated, corrupted (CRC fails) or truncated by 1..11
    bytes; frames hold no 0xA5 after their sync, so each fault is exactly one record."""
    n = draw(st.integers(1, 50))
    start = draw(st.integers(0, 100))  # seq bytes stay below 0xA5
    out, expect = [HEAD_BIN], {"parsed": 0, "crc": 0, "truncated": 0, "duplicate": 0, "frame_bytes": len(HEAD_BIN),
                               "skipped": 0, "slots": n, "sent_extra": 0}
    faults = []
    for i in range(n):
        f, _ = clean_frame(start + i, draw(st.integers(0, 2**17 - 1)), draw(st.integers(0, 2**17 - 1)))
        fault = draw(st.sampled_from(["ok", "ok", "ok", "drop", "dup", "crc", "trunc"]))
        last = i == n - 1
        if fault == "trunc" and last:
            fault = "crc"  # (a cut at the end of the stream is one 'truncated' record too)
        faults.append(fault)
        if fault == "ok":
            out.append(f)
            expect["parsed"] += 1
            expect["frame_bytes"] += len(f)
        elif fault == "drop":
            pass
        elif fault == "dup":
            out += [f, f]
            expect["parsed"] += 1
            expect["duplicate"] += 1
            expect["sent_extra"] += 1
            expect["frame_bytes"] += 2 * len(f)
        elif fault == "crc":
            pos = draw(st.integers(4, len(f) - 1))  # not the sync or LEN: the frame keeps its extent
            bad = bytearray(f)
            bad[pos] ^= draw(st.sampled_from([0x01, 0x10, 0x40, 0x02]))
            if SYNC0 in bad[1:]:
                bad[pos] ^= 0x03
            out.append(bytes(bad))
            expect["crc"] += 1
            expect["skipped"] += len(f)
        else:
            k = draw(st.integers(1, len(f) - 2))
            out.append(f[:-k])
            expect["truncated"] += 1  # the next frame's sync lies inside its extent
            expect["skipped"] += len(f) - k
    # Dropped frames before the first or after the last accepted one show as no gap: nothing
    # tells the decoder that they were sent.
    accepted = [i for i, f in enumerate(faults) if f in ("ok", "dup")]
    expect["uncounted"] = sum(1 for i, f in enumerate(faults)
                              if f == "drop" and (not accepted or i < accepted[0] or i > accepted[-1]))
    junk = draw(st.binary(max_size=20).map(lambda b: b.replace(b"\xa5", b"")))
    out.insert(1, junk)
    expect["skipped"] += len(junk)
    return b"".join(out), expect


@FAST
@given(binary_countable(), st.lists(st.integers(0, 900), max_size=6))
def test_binary_counters_add_up(case, points):
    data, e = case
    _, c = decode_chunks(cut(data, points), fmt="binary")
    assert c["samples_parsed"] == e["parsed"]
    reasons = {k: e[k] for k in ("crc", "truncated", "duplicate") if e[k]}
    assert c["rejected_reasons"] == reasons
    assert c["samples_rejected"] == sum(reasons.values())
    # Every record the device sent is accounted for: parsed, rejected, or missing in a gap.
    accounted = c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"]
    assert accounted == e["slots"] + e["sent_extra"] - e["uncounted"]
    # Every byte: in an accepted frame or skipped.
    assert c["bytes_in"] == len(data) == e["frame_bytes"] + c["bytes_skipped"]
    assert c["bytes_skipped"] == e["skipped"]


def test_binary_counters_exact_when_the_stream_ends_with_an_intact_frame():
    """The identity of docs/serial-protocol.md 4.2 exactly, every fault at once."""
    f = [clean_frame(10 + i, 1000 + i, 2000 + i)[0] for i in range(12)]
    bad = bytearray(f[3])
    bad[7] ^= 0x10
    data = HEAD_BIN + f[0] + f[1] + f[1] + f[2] + bytes(bad) + f[4][:-1] + f[5] + f[8] + f[9] + f[10] + f[11]
    _, c = decode_chunks([data], fmt="binary")
    assert c["rejected_reasons"] == {"duplicate": 1, "crc": 1, "truncated": 1}
    assert c["samples_missing"] == 2  # 6 and 7 never sent
    assert c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"] == 12 + 1  # + the duplicate
    assert c["bytes_skipped"] == len(f[3]) + len(f[4]) - 1


# ----------------------------------------------------------------------------- text
garbage_line = st.text(alphabet=st.sampled_from(list("abcxyz ,;:=()-.0123456789\t")), min_size=0, max_size=30).filter(
    lambda t: not t.replace(",", "").replace("-", "").isdigit() or not t.strip()).map(lambda t: t.encode() + b"\n")


@FAST
@given(st.integers(1, 60), st.integers(0, 65535), st.data(), st.lists(st.integers(0, 3000), max_size=8))
def test_text_intact_lines_decode_exactly_once_and_garbage_is_counted(n, start, data, points):
    rng = np.random.default_rng(n)
    seq = (start + np.arange(n)) % 65536
    raw = rng.integers(-1000, 1000, (n, 2))
    out, n_garbage, n_blank = [HEAD_TEXT], 0, 0
    for i in range(n):
        for g in data.draw(st.lists(garbage_line, max_size=2)):
            out.append(g)
            if g.strip():
                n_garbage += 1
            else:
                n_blank += 1
        out.append(samples_encode_text(seq[i:i + 1], raw[i:i + 1]))
    stream = b"".join(out)
    (got, vals, _), c = decode_chunks(cut(stream, points), fmt="auto")
    assert c["format"] == "text"
    assert got == seq.tolist()
    np.testing.assert_array_equal(vals, raw * np.array(HDR.gain))
    # A garbage line (letters or other non-sample text) is a rejected record; a blank one ignored.
    assert c["samples_rejected"] == n_garbage and c["samples_missing"] == 0
    assert c["lines_ignored"] == n_blank
    assert c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"] == n + n_garbage


# ----------------------------------------------------------------------------- CSV
@FAST
@given(st.lists(st.sampled_from(["row", "row", "na", "empty", "nan"]), min_size=1, max_size=40),
       st.lists(st.integers(0, 600), max_size=6))
def test_csv_empty_rows_are_rejected_samples_that_keep_their_slot(kinds, points):
    rows = [b"time,ppg\n"]
    for i, k in enumerate(kinds):
        rows.append({"row": b"%d,%d\n" % (i, 100 + i), "na": b"NA,NA\n", "empty": b",\n", "nan": b"nan, NaN\n"}[k])
    (seq, vals, events), c = decode_chunks(cut(b"".join(rows), points), fmt="auto", fs=100.0)
    good = [i for i, k in enumerate(kinds) if k == "row"]
    assert c["format"] == "csv"
    assert seq == good and c["headers"] == 1  # never a "repeated header"
    assert c["samples_rejected"] == len(kinds) - len(good)
    if c["samples_rejected"]:
        assert c["rejected_reasons"] == {"empty": len(kinds) - len(good)}
    # A rejected row before a good one shows as a gap of its slots, counted once.
    # (Rejected rows before the first good one are no gap: the first sample starts the stream.)
    gaps = [e for e in events if e[0] == "gap"]
    inner = [i for i in range(len(kinds)) if good and good[0] < i < good[-1] and kinds[i] != "row"]
    assert sum(e[3] for e in gaps) == len(inner)
    assert c["samples_parsed"] + c["samples_rejected"] + c["samples_missing"] == len(kinds)


# ----------------------------------------------------------------------------- regressions (issue 17)
def test_regression_frame_cut_by_its_last_byte_0xA5_does_not_swallow_the_next():
    """A frame that lost its last byte, when that byte was 0xA5, passed its CRC with the next
    frame's first sync byte, and the next intact frame was skipped (4 of 4.1 M frames)."""
    cut_frame, v1 = frame_ending_in(5, 77)
    before = b"".join(frame(s, s, s) for s in range(5))
    after = b"".join(frame(s, s, s) for s in range(6, 10))
    data = HEAD_BIN + before + cut_frame[:-1] + after
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))],
                   [data[:len(HEAD_BIN) + len(before) + len(cut_frame) - 1], data[len(HEAD_BIN) + len(before) + len(cut_frame) - 1:]]):
        (seq, vals, _), c = decode_chunks(chunks, fmt="binary")
        assert seq == list(range(10)), seq
        assert vals[6].tolist() == [6 * 0.5, 6.0]
        assert vals[5].tolist() == [77 * 0.5, float(v1)]  # its CRC vouched for the borrowed byte
        assert c["samples_missing"] == 0 and c["samples_rejected"] == 0
    # The same frame intact, at the end of a chunk: held until the next byte says whether a
    # sync starts at its last byte, then decoded once.
    dec = StreamDecoder(fmt="binary")
    first = dec.feed(HEAD_BIN + cut_frame)
    assert len(first) == 0
    assert dec.feed(frame(6, 6, 6)).seq.tolist() == [5, 6]
    assert dec.finish().seq.tolist() == []


def test_regression_a_frame_inside_a_crc_valid_fake_frame_is_kept():
    """A sync in garbage whose LEN spans intact frames and whose CRC happens to pass (made
    here on purpose) no longer swallows them."""
    inner = frame(1, 10, 20) + frame(2, 11, 21)
    # A fake frame of unknown type 0x7E whose body is the two intact frames, with the CRC
    # that makes it valid (what garbage does once in 65536 syncs).
    core = bytes([0x7E, len(inner)]) + b"\x00\x00" + inner
    fake = b"\xa5\x5a" + core + crc16_ccitt_false(core).to_bytes(2, "big")
    data = HEAD_BIN + frame(0, 9, 19) + fake + frame(3, 12, 22)
    (seq, _, _), c = decode_chunks([data], fmt="binary")
    assert seq == [0, 1, 2, 3]
    assert c["lines_ignored"] == 1 and c["bytes_skipped"] == 2  # the fake frame (unknown type), its CRC


def test_regression_esp32_banner_and_mid_header_join_wait_for_the_header():
    banner = (b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
              b"configsip: 0, SPIWP:0xee\r\n"
              b"clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
              b"mode:DIO, clock div:1\r\nload:0x3fff0030,len:1184\r\nentry 0x400805e4\r\n")
    body = samples_encode_text(np.arange(20), np.arange(40).reshape(20, 2))
    for fmt in ("auto", "text"):
        blocks, c = decode_bytes(banner + HEAD_TEXT + body, fmt=fmt)
        assert c["format"] == "text" and c["samples_parsed"] == 20 and c["samples_rejected"] == 0
        assert c["lines_ignored"] == 8  # the banner's 7 lines and its blank line
    # Joined in the middle of a header line: the tail is skipped, samples wait for a header.
    tail = HEAD_TEXT[HEAD_TEXT.index(b"ch="):]
    lines = body.splitlines(keepends=True)
    n_before = 5
    data = tail + b"".join(lines[:n_before]) + HEAD_TEXT + b"".join(lines[n_before:])
    for chunks in ([data], [data[i:i + 7] for i in range(0, len(data), 7)]):
        (seq, _, _), c = decode_chunks(chunks)
        assert c["format"] == "text" and c["lines_ignored"] == 1
        assert c["rejected_reasons"] == {"no_header": n_before}
        assert seq == list(range(n_before, 20))
    # The banner before a CSV log (fs given) is skipped too; the header row is the real one.
    csv = b"time,ppg\n0.0,5\n0.1,6\n"
    blocks, c = decode_bytes(banner + csv, fs=100.0, channel_map={"ppg": "ppg"})
    assert c["format"] == "csv" and blocks[0].values[:, 0].tolist() == [5.0, 6.0] and c["lines_ignored"] == 8


def test_regression_csv_na_row_is_a_rejected_sample_not_the_end():
    csv = b"ECG,PPG\n0.1,5\nNA,NA\n,\n0.4,8\n"
    for kw in ({}, {"channel_map": {"ppg": "ppg"}}):
        blocks, c = decode_bytes(csv, fmt="csv", fs=125.0, **kw)
        seq, vals, events = flatten(blocks)
        assert seq == [0, 3] and c["headers"] == 1
        assert c["rejected_reasons"] == {"empty": 2}
        assert [e for e in events if e[0] == "gap"] == [("gap", 1, 0, 2)]


@pytest.mark.parametrize("n", [511, 513, 4096, 4097, 6000])
def test_regression_long_first_line_detection_is_chunking_independent(n):
    data = b"T" * n + b",x\n" + b"0.1,5\n" * 3 + b"#EDGEBP v=1 fs=250 ch=ppg units=NU bits=18 gain=1 offset=0\n5,7\n"
    ref = decode_chunks([data], fs=100.0)
    for size in (1, 100, 512, 513):
        same(decode_chunks([data[i:i + size] for i in range(0, len(data), size)], fs=100.0), ref)
