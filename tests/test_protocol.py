"""edgebp serial protocol: encoders, CRC, the incremental decoder and its fault accounting."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebp.runtime.crc import (
    CHECK_VALUE, crc16_ccitt_false, crc16_ccitt_false_bitwise, crc16_ccitt_false_rows,
)
from edgebp.runtime.protocol import (
    CuffEvent, GapEvent, HeaderEvent, ResetEvent, StreamDecoder, StreamHeader, decode_bytes, decode_stream,
    decoder_throughput, header_encode_binary, header_encode_text, header_fields_decode,
    header_fields_encode, samples_encode_binary, samples_encode_max3010x, samples_encode_text,
    stream_detect_format,
)
from edgebp.runtime.protocol_binary import SYNC, frame_size
from edgebp.runtime.protocol_header import HeaderError

HDR = StreamHeader(fs=250.0, channels=["ecg", "ppg"], units=["mV", "NU"], adc_bits=[24, 18],
                   gain=[4.76837158203125e-05, 1.0], offset=[0.0, 1000.0], device="sim-01")


# ----------------------------------------------------------------------------- helpers
def make_samples(n: int, start: int = 0, seed: int = 0, n_ch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    seq = (start + np.arange(n)) % 65536
    raw = np.column_stack([rng.integers(-(2**17), 2**17, n) for _ in range(n_ch)])
    return seq, raw


def records(fmt: str, seq: np.ndarray, raw: np.ndarray) -> list[bytes]:
    """One bytes object per sample record (a line or a frame)."""
    enc = samples_encode_text if fmt == "text" else samples_encode_binary
    return [enc(seq[i:i + 1], raw[i:i + 1]) for i in range(len(seq))]


def header_bytes(fmt: str, h: StreamHeader = HDR) -> bytes:
    return header_encode_text(h) if fmt == "text" else header_encode_binary(h)


def physical(raw: np.ndarray, h: StreamHeader = HDR) -> np.ndarray:
    return (raw - np.asarray(h.offset)) * np.asarray(h.gain)


def flatten(blocks) -> tuple[np.ndarray, np.ndarray, list]:
    """Concatenate blocks; events get global positions so different splits compare equal."""
    seqs, vals, events = [], [], []
    pos = 0
    for b in blocks:
        for e in b.events:
            if isinstance(e, GapEvent):
                events.append(("gap", pos + e.at_index, e.after_seq, e.n_missing))
            elif isinstance(e, ResetEvent):
                events.append(("reset", pos + e.at_index, e.from_seq, e.to_seq))
            elif isinstance(e, CuffEvent):
                events.append(("cuff", pos + e.at_index, e.sbp, e.dbp))
            else:
                assert isinstance(e, HeaderEvent), e
                events.append(("header", pos + e.at_index, e.header, e.previous))
        seqs.append(b.seq)
        vals.append(b.values)
        pos += len(b)
    seq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    n_ch = max((v.shape[1] for v in vals), default=0)
    values = np.concatenate([v for v in vals if v.shape[1] == n_ch]) if vals else np.zeros((0, 0))
    return seq, values, events


def decode_split(data: bytes, sizes, **kw):
    chunks, pos = [], 0
    for s in sizes:
        chunks.append(data[pos:pos + s])
        pos += s
    chunks.append(data[pos:])
    dec = StreamDecoder(**kw)
    blocks = list(decode_stream(chunks, decoder=dec))
    return flatten(blocks), dec.counts


def random_sizes(n_bytes: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n_bytes:
        sizes.append(int(rng.integers(1, 40)))
    return sizes


def accounted(counts: dict) -> int:
    return counts["samples_parsed"] + counts["samples_rejected"] + counts["samples_missing"]


# ----------------------------------------------------------------------------- CRC
def test_crc_check_value():
    assert CHECK_VALUE == 0x29B1
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false_bitwise(b"123456789") == 0x29B1


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=64))
def test_crc_fast_forms_equal_definition(data):
    ref = crc16_ccitt_false_bitwise(data)
    assert crc16_ccitt_false(data) == ref
    rows = np.frombuffer(data * 3, dtype=np.uint8).reshape(3, len(data))
    assert crc16_ccitt_false_rows(rows).tolist() == [ref] * 3
    # Appending the CRC MSB first gives residue 0: the receiver's one-call check.
    assert crc16_ccitt_false(data + ref.to_bytes(2, "big")) == 0


# ----------------------------------------------------------------------------- header
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=60, deadline=None)
@given(st.lists(names, min_size=1, max_size=4, unique=True), st.data())
def test_header_fields_round_trip(channels, data):
    n = len(channels)
    h = StreamHeader(
        fs=data.draw(st.floats(min_value=0.01, max_value=1e5)),
        channels=channels,
        units=data.draw(st.lists(st.sampled_from(["mV", "NU", "mmHg", "", "%"]), min_size=n, max_size=n)),
        adc_bits=data.draw(st.lists(st.integers(1, 32), min_size=n, max_size=n)),
        gain=data.draw(st.lists(finite, min_size=n, max_size=n)),
        offset=data.draw(st.lists(finite, min_size=n, max_size=n)),
        device=data.draw(st.sampled_from(["", "sim-01", "board:7"])),
    )
    assert header_fields_decode(header_fields_encode(h)) == h
    line = header_encode_text(h)
    assert line.startswith(b"#EDGEBP ") and line.endswith(b"\n")


def test_header_errors_name_the_field():
    good = header_fields_encode(HDR)
    with pytest.raises(HeaderError, match="'offset'"):
        header_fields_decode(good.replace(" offset=0,1000", ""))
    with pytest.raises(HeaderError, match="'gain'"):
        header_fields_decode(good.replace("gain=4.76837158203125e-05,1", "gain=abc,1"))
    with pytest.raises(HeaderError, match="'units' has 1 entries"):
        header_fields_decode(good.replace("units=mV,NU", "units=mV"))
    with pytest.raises(HeaderError, match="version"):
        header_fields_decode(good.replace("v=1", "v=2"))
    with pytest.raises(HeaderError, match="unit"):
        header_fields_encode(StreamHeader(250, ["ppg"], ["a b"], [18], [1.0], [0.0]))


# ----------------------------------------------------------------------------- round trips
def _stream_case(data):
    n_ch = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(1, 120))
    start = data.draw(st.integers(0, 65535))
    bits = data.draw(st.lists(st.integers(2, 24), min_size=n_ch, max_size=n_ch))
    raw = np.column_stack([
        np.array(data.draw(st.lists(st.integers(-(2 ** (b - 1)), 2 ** (b - 1) - 1), min_size=n, max_size=n)))
        for b in bits
    ])
    h = StreamHeader(
        fs=data.draw(st.sampled_from([25.0, 125.0, 250.0, 512.5])),
        channels=[f"c{i}" for i in range(n_ch)], units=["mV"] * n_ch, adc_bits=bits,
        gain=data.draw(st.lists(st.floats(1e-6, 10.0), min_size=n_ch, max_size=n_ch)),
        offset=data.draw(st.lists(st.integers(-1000, 1000), min_size=n_ch, max_size=n_ch)),
    )
    seq = (start + np.arange(n)) % 65536
    return h, seq, raw


@pytest.mark.parametrize("fmt", ["text", "binary"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(fmt, data):
    h, seq, raw = _stream_case(data)
    if fmt == "text":
        stream = header_encode_text(h) + samples_encode_text(seq, raw)
    else:
        stream = header_encode_binary(h) + samples_encode_binary(seq, raw)
    blocks, counts = decode_bytes(stream)
    got_seq, got_values, events = flatten(blocks)
    assert counts["format"] == fmt
    assert got_seq.tolist() == seq.tolist()
    assert got_values.dtype == np.float64
    np.testing.assert_array_equal(got_values, physical(raw, h))
    assert [e[0] for e in events] == ["header"] and events[0][2] == h
    assert counts["samples_parsed"] == len(seq) and counts["samples_rejected"] == 0
    assert counts["samples_missing"] == 0


def test_wraparound_is_not_a_gap_but_a_gap_across_it_is():
    seq = np.array([65533, 65534, 65535, 0, 1, 5])
    raw = np.zeros((6, 2), dtype=int)
    for fmt in ("text", "binary"):
        blocks, counts = decode_bytes(header_bytes(fmt) + b"".join(records(fmt, seq, raw)))
        _, _, events = flatten(blocks)
        assert events[1:] == [("gap", 5, 1, 3)]
        assert counts["samples_missing"] == 3
    seq = np.array([65530, 3, 4])
    blocks, counts = decode_bytes(header_bytes("binary") + b"".join(records("binary", seq, np.zeros((3, 2), int))))
    assert flatten(blocks)[2][1:] == [("gap", 1, 65530, 8)]


def test_encoders_reject_bad_input():
    with pytest.raises(ValueError, match="outside"):
        samples_encode_binary(np.array([0]), np.array([[2**23, 0]]))
    with pytest.raises(ValueError, match="integers"):
        samples_encode_text(np.array([0]), np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"\(n,\)"):
        samples_encode_text(np.array([0, 1]), np.zeros((3, 2), dtype=int))
    # a running counter is reduced modulo 65536
    assert samples_encode_text(np.array([65537]), np.array([[1]])) == b"1,1\n"


# ----------------------------------------------------------------------------- faults
N = 60


def faulty_stream(fmt: str, fault: str) -> tuple[bytes, int, dict]:
    """A stream with one fault; returns (bytes, records the device sent, expectations)."""
    seq, raw = make_samples(N, start=100, seed=1)
    recs = records(fmt, seq, raw)
    head = header_bytes(fmt)
    emitted = N
    expect: dict = {}
    k = 20
    if fault == "corrupt_byte":
        r = bytearray(recs[k])
        if fmt == "text":
            r[r.index(b",") + 1] = ord("x")
        else:
            r[8] ^= 0x10
        recs[k] = bytes(r)
        expect = {"reasons": {"malformed" if fmt == "text" else "crc": 1}, "parsed": N - 1,
                  "events": [("gap", k, int(seq[k - 1]), 1)]}
    elif fault == "truncated_record":
        recs[k] = recs[k][: len(recs[k]) // 2]
        if fmt == "text":  # the cut line runs into the next one: one malformed line for two samples
            expect = {"reasons": {"malformed": 1}, "parsed": N - 2, "missing": 1}
        else:
            expect = {"reasons": {"truncated": 1}, "parsed": N - 1, "missing": 0}
    elif fault == "duplicate":
        recs.insert(k, recs[k])
        emitted = N + 1
        expect = {"reasons": {"duplicate": 1}, "parsed": N, "duplicates": 1, "events": []}
    elif fault == "dropped_run":
        del recs[k:k + 7]
        expect = {"reasons": {}, "parsed": N - 7, "missing": 7, "events": [("gap", k, int(seq[k - 1]), 7)]}
    elif fault == "reset":
        seq2, raw2 = make_samples(15, start=0, seed=2)
        recs = recs[:k] + [head] + records(fmt, seq2, raw2)
        emitted = k + 15
        expect = {"reasons": {}, "parsed": k + 15, "missing": 0, "resets": 1,
                  "events": [("header", k, None, None), ("reset", k, int(seq[k - 1]), 0)]}
    elif fault == "header_repeat":
        recs.insert(k, head)
        expect = {"reasons": {}, "parsed": N, "missing": 0, "events": [("header", k, None, None)]}
    elif fault == "garbage":
        if fmt == "text":
            recs.insert(k, b"%%garbage: no sample here\n")
            emitted = N + 1  # a garbage line is read as a (rejected) record
            expect = {"reasons": {"malformed": 1}, "parsed": N, "missing": 0}
        else:
            rng = np.random.default_rng(5)
            junk = bytes(b for b in rng.integers(0, 256, 50).astype(np.uint8).tobytes() if b != 0xA5)
            recs.insert(k, junk)
            expect = {"reasons": {}, "parsed": N, "missing": 0, "skipped": len(junk)}
    elif fault == "truncated_last":
        recs[-1] = recs[-1][:-3]
        expect = {"reasons": {"truncated": 1}, "parsed": N - 1, "missing": 0}
    else:  # pragma: no cover
        raise AssertionError(fault)
    return head + b"".join(recs), emitted, expect


FAULTS = ["corrupt_byte", "truncated_record", "duplicate", "dropped_run", "reset", "header_repeat",
          "garbage", "truncated_last"]


@pytest.mark.parametrize("fmt", ["text", "binary"])
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_accounting(fmt, fault):
    data, emitted, expect = faulty_stream(fmt, fault)
    (seq, values, events), counts = decode_split(data, [])
    assert accounted(counts) == emitted, counts
    assert counts["rejected_reasons"] == expect["reasons"]
    assert counts["samples_parsed"] == expect["parsed"] == len(seq)
    if "missing" in expect:
        assert counts["samples_missing"] == expect["missing"]
    if "duplicates" in expect:
        assert counts["duplicates_dropped"] == expect["duplicates"]
    if "resets" in expect:
        assert counts["resets"] == expect["resets"]
    if "skipped" in expect:
        assert counts["bytes_skipped"] == expect["skipped"]
    if "events" in expect:
        got = [e if e[0] != "header" else ("header", e[1], None, None) for e in events[1:]]
        assert got == expect["events"]
    # Accepted samples are exactly the sent ones, in order, with their values.
    src_seq, src_raw = make_samples(N, start=100, seed=1)
    lookup = {int(s): physical(src_raw[i:i + 1])[0] for i, s in enumerate(src_seq)}
    if fault == "reset":
        s2, r2 = make_samples(15, start=0, seed=2)
        lookup.update({int(s): physical(r2[i:i + 1])[0] for i, s in enumerate(s2)})
    for s, v in zip(seq.tolist(), values):
        np.testing.assert_array_equal(v, lookup[s])
    assert np.all(np.diff(seq[: 20]) % 65536 == 1)


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_any_split_gives_identical_output(fmt):
    # Every fault in one stream, fed whole, byte by byte and in random pieces.
    seq, raw = make_samples(150, start=65500, seed=3)
    recs = records(fmt, seq, raw)
    head = header_bytes(fmt)
    recs[10] = recs[10][:5] if fmt == "binary" else b"12,x,3\n"
    recs.insert(30, recs[30])
    del recs[50:55]
    recs.insert(60, head)
    recs.insert(70, b"\x00\x01noise\x02" if fmt == "binary" else b"noise line\n")
    seq2, raw2 = make_samples(40, start=0, seed=4)
    data = head + b"".join(recs) + head + b"".join(records(fmt, seq2, raw2))
    data = data[:-4]  # truncated last record
    ref, ref_counts = decode_split(data, [])
    assert ref_counts["resets"] == 1 and ref_counts["samples_missing"] > 0
    for sizes in ([1] * len(data), random_sizes(len(data), 0), random_sizes(len(data), 1), [7, 1000]):
        got, counts = decode_split(data, sizes)
        assert counts == ref_counts
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[2] == ref[2]


def test_text_corrupted_seq_digit_is_bad_seq_not_a_gap():
    seq, raw = make_samples(30, start=1230, seed=0)
    lines = records("text", seq, raw)
    lines[10] = lines[10].replace(b"1240,", b"1290,", 1)
    blocks, counts = decode_bytes(header_bytes("text") + b"".join(lines))
    assert counts["rejected_reasons"] == {"bad_seq": 1}
    assert counts["samples_missing"] == 0 and accounted(counts) == 30
    assert flatten(blocks)[2][1:] == [("gap", 10, 1239, 1)]


def test_binary_stale_frame_rejected_and_confirmed_renumbering_is_a_reset():
    seq = np.array([1000, 1001, 500, 1002, 1003, 700, 701, 702])
    raw = np.zeros((8, 2), dtype=int)
    blocks, counts = decode_bytes(header_bytes("binary") + b"".join(records("binary", seq, raw)))
    got_seq, _, events = flatten(blocks)
    assert got_seq.tolist() == [1000, 1001, 1002, 1003, 700, 701, 702]
    assert counts["rejected_reasons"] == {"bad_seq": 1}
    assert events[1:] == [("reset", 4, 1003, 700)]


def test_held_jump_survives_rejected_records_in_between():
    # text: a real gap, then a damaged line, then the stream goes on
    seq, raw = make_samples(12, start=0)
    lines = records("text", seq, raw)
    del lines[3:6]                     # gap of 3 before seq 6
    lines[4] = b"7,oops,1\n"           # seq 7 damaged right after the held seq 6
    blocks, counts = decode_bytes(header_bytes("text") + b"".join(lines))
    assert flatten(blocks)[0].tolist() == [0, 1, 2, 6, 8, 9, 10, 11]
    assert counts["samples_missing"] == 3 and accounted(counts) == 12


def test_header_change_splits_blocks_and_lists_changes():
    h2 = StreamHeader(500.0, ["ppg"], ["NU"], [18], [1.0], [0.0])
    s1, r1 = make_samples(5)
    s2, r2 = make_samples(4, start=5, n_ch=1)
    for fmt in ("text", "binary"):
        data = header_bytes(fmt) + b"".join(records(fmt, s1, r1)) + header_bytes(fmt, h2) \
            + b"".join(records(fmt, s2, r2))
        dec = StreamDecoder()
        first = dec.feed(data)
        assert dec.pending
        second = dec.feed(b"")
        assert not dec.pending
        assert first.channels == ["ecg", "ppg"] and len(first) == 5
        assert second.channels == ["ppg"] and second.values.shape == (4, 1)
        ev = second.events[0]
        assert isinstance(ev, HeaderEvent) and ev.at_index == 0 and not ev.is_repeat
        assert set(ev.changed) >= {"fs", "channels"}
        assert dec.header == h2
        blocks, _ = decode_bytes(data)
        assert [len(b) for b in blocks] == [5, 4]


def test_repeated_header_is_a_repeat_event():
    seq, raw = make_samples(6)
    recs = records("text", seq, raw)
    blocks, counts = decode_bytes(header_bytes("text") + b"".join(recs[:3]) + header_bytes("text") + b"".join(recs[3:]))
    events = [e for b in blocks for e in b.events]
    assert [e.is_repeat for e in events] == [False, True] and events[1].at_index == 3
    assert counts["headers"] == 2 and counts["samples_parsed"] == 6


def test_text_line_rules():
    head = header_bytes("text")
    big = b"1," + b"9" * 5000 + b",2\n"
    body = (b"0,1,2\r\n"          # CRLF accepted
            b"# a comment\n"
            b"\n"
            b"1,2\n"               # wrong field count
            b"2,1 ,2\n"            # stray space
            b"3,1,-\n"             # lone sign
            b"70000,1,2\n"         # seq out of range
            + big +                # overlong
            b"4,99999999,1\n"      # outside 24 bits
            b"5,1,2\n")
    blocks, counts = decode_bytes(head + body)
    assert flatten(blocks)[0].tolist() == [0, 5]
    assert counts["rejected_reasons"] == {"malformed": 4, "overlong": 1, "range": 1}
    assert counts["lines_ignored"] == 2
    assert accounted(counts) == 8  # 6 lines in the gap 1..4, counted once each, plus 0 and 5


def test_text_samples_before_header_are_no_header():
    seq, raw = make_samples(5)
    recs = records("text", seq, raw)
    blocks, counts = decode_bytes(b"".join(recs[:2]) + header_bytes("text") + b"".join(recs[2:]))
    assert counts["format"] == "text"
    assert counts["rejected_reasons"] == {"no_header": 2}
    assert flatten(blocks)[0].tolist() == [2, 3, 4]


def test_fs_check_and_format_errors():
    data = header_bytes("text") + samples_encode_text(np.arange(3), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="fs=250 Hz but fs=125 Hz"):
        decode_bytes(data, fs=125)
    assert decode_bytes(data, fs=250)[1]["samples_parsed"] == 3
    with pytest.raises(ValueError, match="auto, text, binary, max3010x, csv"):
        StreamDecoder(fmt="json")
    with pytest.raises(ValueError, match="distinct"):
        StreamDecoder(channel_map={"red": "ppg", "ir": "ppg"})


def test_channel_map_selects_and_renames_edgebp_channels():
    seq, raw = make_samples(4)
    data = header_bytes("binary") + b"".join(records("binary", seq, raw))
    blocks, _ = decode_bytes(data, channel_map={"PPG": "ppg_ir"})
    assert blocks[0].channels == ["ppg_ir"]
    np.testing.assert_array_equal(blocks[0].values[:, 0], physical(raw)[:, 1])
    with pytest.raises(ValueError, match="abp"):
        decode_bytes(data, channel_map={"abp": "abp"})


# ----------------------------------------------------------------------------- third-party logs
SPARKFUN_SPO2 = (
    b"Initializing...\r\n"
    b"Attach sensor to finger with rubber band. Press any key to start conversion\r\n"
    b"red=51234, ir=60211, HR=72, HRvalid=1, SPO2=97, SPO2Valid=1\r\n"
    b"red=51240, ir=60190, HR=72, HRvalid=1, SPO2=97, SPO2Valid=1\r\n"
    b"red=51250, ir=, HR=72\r\n"
    b"red=51261, ir=60170, HR=73, HRvalid=1, SPO2=97, SPO2Valid=1\r\n"
)


def test_max3010x_key_value_log_with_channel_map():
    blocks, counts = decode_bytes(SPARKFUN_SPO2, fs=100, channel_map={"ir": "ppg", "red": "ppg_red"})
    seq, values, events = flatten(blocks)
    assert counts["format"] == "max3010x"
    assert blocks[0].channels == ["ppg", "ppg_red"]
    assert values.tolist() == [[60211, 51234], [60190, 51240], [60170, 51261]]
    assert seq.tolist() == [0, 1, 3]  # the bad line keeps its slot: a one-sample gap
    assert events[-1] == ("gap", 2, 1, 1)
    assert counts["rejected_reasons"] == {"malformed": 1} and counts["samples_missing"] == 0
    assert counts["lines_ignored"] == 2  # the two banner lines
    assert blocks[0].header.fs == 100.0
    # A board that swaps the LEDs is handled by the map, explicitly.
    swapped, _ = decode_bytes(SPARKFUN_SPO2, fs=100, channel_map={"red": "ppg", "ir": "ppg_red"})
    assert swapped[0].values[0].tolist() == [51234, 60211]


def test_max3010x_bracket_form_and_encoder():
    log = b"MAX30105 Basic Readings Example\n R[1000] IR[2000] G[300]\n R[1001] IR[2001] G[301]\n"
    blocks, counts = decode_bytes(log, fs=50, channel_map={"IR": "ppg", "g": "ppg_green"})
    assert blocks[0].values.tolist() == [[2000, 300], [2001, 301]]
    data = samples_encode_max3010x(np.array([5, 6, 7]), np.array([8, 9, 10]))
    blocks, _ = decode_bytes(data, fmt="max3010x", fs=25, channel_map={"ir": "ppg"})
    assert blocks[0].values[:, 0].tolist() == [8, 9, 10]


def test_logs_without_fs_or_map_give_clear_errors():
    with pytest.raises(ValueError, match=r"no sampling rate: give fs .*--fs"):
        decode_bytes(SPARKFUN_SPO2, channel_map={"ir": "ppg"})
    with pytest.raises(ValueError, match="channel map"):
        decode_bytes(SPARKFUN_SPO2, fs=100)
    with pytest.raises(ValueError, match="--fs"):
        StreamDecoder(fmt="csv").feed(b"time,ppg\n0,1\n")


def test_csv_and_tsv_with_header_row():
    tsv = b"time\tred\tir\n0.00\t51234\t60211\n0.01\t51240\t\n0.02\t51250\t60150\n0.03\t1\n"
    blocks, counts = decode_bytes(tsv, fs=100, channel_map={"ir": "ppg"})
    assert counts["format"] == "csv"
    v = blocks[0].values[:, 0]
    assert v[0] == 60211 and math.isnan(v[1]) and v[2] == 60150
    assert counts["rejected_reasons"] == {"malformed": 1}  # the short row, at the end
    csv = b"ECG,PPG\n0.1,5\n0.2,6\nECG,PPG\n0.3,7\n"  # two logs concatenated
    blocks, counts = decode_bytes(csv, fmt="csv", fs=125)
    assert blocks[0].channels == ["ECG", "PPG"]
    assert flatten(blocks)[1].tolist() == [[0.1, 5], [0.2, 6], [0.3, 7]]
    assert counts["headers"] == 2
    with pytest.raises(ValueError, match=r"no column\(s\) \['abp'\].*'ECG', 'PPG'"):
        decode_bytes(csv, fmt="csv", fs=125, channel_map={"abp": "abp"})


def test_log_split_invariance():
    data = SPARKFUN_SPO2 * 20 + b"red=1, ir"
    ref, ref_counts = decode_split(data, [], fs=100, channel_map={"ir": "ppg"})
    assert ref_counts["rejected_reasons"] == {"malformed": 20, "truncated": 1}
    for sizes in ([1] * len(data), random_sizes(len(data), 3)):
        got, counts = decode_split(data, sizes, fs=100, channel_map={"ir": "ppg"})
        assert counts == ref_counts
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[2] == ref[2]


def test_format_detection():
    assert stream_detect_format(SYNC + b"\x53") == "binary"
    assert stream_detect_format(b"\x00\x01" + SYNC) == "binary"
    assert stream_detect_format(header_encode_text(HDR)) == "text"
    assert stream_detect_format(b"# comment\n12,3,4\n") == "text"
    assert stream_detect_format(b" R[1] IR[2]\n") == "max3010x"
    assert stream_detect_format(b"IR=60211, BPM=71.20, Avg BPM=70\n") == "max3010x"
    # a row of names is a CSV header row once a data row confirms it (issue 17: banners)
    assert stream_detect_format(b"a;b\n") is None
    assert stream_detect_format(b"a;b\n1;2\n") == "csv"
    assert stream_detect_format(b"#EDGEBP v=1 fs=2") is None
    assert stream_detect_format(b"12,3", final=True) == "text"
    with pytest.raises(ValueError, match="could not recognise the stream format"):
        StreamDecoder().feed(b"just words\n" * 7000)


def test_binary_frame_layout():
    assert frame_size(2) == 14
    f = samples_encode_binary(np.array([0x1234]), np.array([[-1, 0x123456]]))
    assert f[:4] == b"\xa5\x5a\x53\x06" and f[4:6] == b"\x34\x12"
    assert f[6:9] == b"\xff\xff\xff" and f[9:12] == b"\x56\x34\x12"
    assert int.from_bytes(f[12:14], "big") == crc16_ccitt_false_bitwise(f[2:12])


def test_decoder_throughput_reports_numbers():
    r = decoder_throughput(n_samples=20_000, repeats=1)
    for fmt in ("text", "binary"):
        assert r[fmt]["n_samples"] == 20_000 and r[fmt]["bytes"] > 20_000 * 10
        assert r[fmt]["lines_per_s"] > 0 and r[fmt]["mb_per_s"] > 0 and r[fmt]["realtime_factor"] > 0


@pytest.mark.parametrize("module", ["crc", "protocol", "protocol_header", "protocol_text", "protocol_binary",
                                    "protocol_logs", "protocol_common", "protocol_bench"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"edgebp.runtime.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_runtime_protocol_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, edgebp.runtime.protocol, edgebp.runtime.sources; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("fmt", ["text", "binary"])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_random_damage_never_breaks_the_decoder(fmt, data):
    """Random byte damage: no exception, the same output for any split, and (binary, CRC)
    only samples that were really sent come out."""
    seq, raw = make_samples(80, start=data.draw(st.integers(0, 65535)), seed=7)
    stream = bytearray(header_bytes(fmt) + b"".join(records(fmt, seq, raw)))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            stream[pos] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del stream[pos:pos + data.draw(st.integers(1, 30))]
        else:
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
    stream = bytes(stream)
    ref, ref_counts = decode_split(stream, [], fmt=fmt)
    got, counts = decode_split(stream, random_sizes(len(stream), data.draw(st.integers(0, 99))), fmt=fmt)
    assert counts == ref_counts
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert got[2] == ref[2]
    if fmt == "binary" and ref_counts["headers"]:
        sent = {int(s): physical(raw[i:i + 1])[0] for i, s in enumerate(seq)}
        for s, v in zip(ref[0].tolist(), ref[1]):
            np.testing.assert_array_equal(v, sent[s])
