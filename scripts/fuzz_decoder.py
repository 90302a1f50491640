"""Coverage-guided fuzzing of the stream decoder (atheris/libFuzzer), and the check it runs.

Every input is decoded twice, in one piece and cut into chunks chosen by the input's first
bytes, in the format those bytes select; :func:`check_input` then requires:

- no exception other than a one-line ``ValueError`` (a CSV/MAX3010x log without ``fs`` or a
  channel map, an unrecognisable format, ...), and the same one from both decodings;
- identical samples, events and counters for both (the output does not depend on chunking);
- counters that add up: ``bytes_in`` is the input's length, the rejection reasons sum to
  ``samples_rejected``, ``samples_parsed`` is the number of samples returned, every decoded
  value has the header's channel count.

``make fuzz FUZZ_SECONDS=60`` runs it. New coverage goes to a scratch corpus under
``build/fuzz-work/``; inputs that crash or hang (libFuzzer ``-timeout``, 10 s) are written to
``tests/fuzz_corpus/`` (``crash-*``, ``timeout-*``), which also holds a small seed corpus
(``seed-*``, made by ``--write-seeds``). ``tests/test_fuzz_corpus.py`` replays every file in
it through :func:`check_input` without atheris.

Usage::

    python scripts/fuzz_decoder.py --seconds 60 [--corpus tests/fuzz_corpus] [--work build/fuzz-work]
    python scripts/fuzz_decoder.py --write-seeds
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

FORMATS = ("auto", "binary", "text", "csv", "max3010x")
REPO = Path(__file__).resolve().parent.parent
#: libFuzzer's hang limit per input, seconds; the replay test uses the same bound.
HANG_SECONDS = 10


def _decode(chunks: list[bytes], fmt: str, fs: float | None, channel_map: dict | None, device_bp: bool = False):
    from edgebp.runtime.protocol import DeviceBPEvent, GapEvent, HeaderEvent, ResetEvent, StreamDecoder, decode_stream

    dec = StreamDecoder(fmt=fmt, fs=fs, channel_map=channel_map, device_bp=device_bp)
    try:
        blocks = list(decode_stream(chunks, decoder=dec))
    except ValueError as err:
        msg = str(err)
        assert "\n" not in msg and msg, f"error is not one line: {msg!r}"
        return ("error", msg), None
    seqs, values, events, pos = [], [], [], 0
    for b in blocks:
        if b.header is not None:
            assert b.values.shape == (len(b), b.header.n_channels), (b.values.shape, b.header)
        for e in b.events:
            kind = type(e).__name__
            detail = (e.after_seq, e.n_missing) if isinstance(e, GapEvent) else \
                (e.from_seq, e.to_seq) if isinstance(e, ResetEvent) else \
                (repr(e.header),) if isinstance(e, HeaderEvent) else \
                (e.first, e.fs, e.lag, np.asarray(e.abp).tobytes(), e.where) if isinstance(e, DeviceBPEvent) else (e.sbp, e.dbp, e.where)
            events.append((kind, pos + e.at_index, *detail))
        seqs.extend(b.seq.tolist())
        if len(b):
            values.append(b.values)
        pos += len(b)
    counts = dec.counts
    return (seqs, values, events), counts


def _same_values(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    va = np.concatenate([v.ravel() for v in a]) if a else np.zeros(0)
    vb = np.concatenate([v.ravel() for v in b]) if b else np.zeros(0)
    return va.shape == vb.shape and bool(np.array_equal(va, vb, equal_nan=True))


def check_input(data: bytes) -> None:
    """Decode ``data`` as the fuzzer does and assert the decoder's guarantees (see module doc).

    The first byte picks the format (and whether ``fs``/a channel map are given, and whether
    the device's own BP records are read: ``device_bp``), the second and third the chunk
    sizes; the rest is the stream.
    """
    if len(data) < 3:
        return
    sel, a, b = data[0], data[1], data[2]
    stream = data[3:]
    fmt = FORMATS[sel % len(FORMATS)]
    fs = 100.0 if sel & 0x10 else None
    channel_map = {"ir": "ppg"} if (sel & 0x20 or fmt == "max3010x") else None
    if fmt in ("csv", "max3010x") and fs is None:
        fs = 100.0
    device_bp = bool(sel & 0x40)
    sizes = (1 + a % 64, 1 + b % 512)
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        n = sizes[i % 2]
        chunks.append(stream[pos:pos + n])
        pos += n
        i += 1
    one, c1 = _decode([stream], fmt, fs, channel_map, device_bp)
    cut, c2 = _decode(chunks, fmt, fs, channel_map, device_bp)
    if one[0] == "error" or cut[0] == "error":
        assert one == cut, f"chunking changed the error: {one!r} vs {cut!r}"
        return
    assert c1 == c2, f"chunking changed the counters:\n{c1}\n{c2}"
    assert one[0] == cut[0], "chunking changed the samples"
    assert one[2] == cut[2], "chunking changed the events"
    assert _same_values(one[1], cut[1]), "chunking changed the values"
    assert c1["bytes_in"] == len(stream), (c1["bytes_in"], len(stream))
    assert sum(c1["rejected_reasons"].values()) == c1["samples_rejected"], c1
    assert sum(c1["cuff_rejected_reasons"].values()) == c1["cuff_rejected"], c1
    assert sum(c1["device_bp_rejected_reasons"].values()) == c1["device_bp_rejected"], c1
    n_dbp = sum(1 for e in one[2] if e[0] == "DeviceBPEvent")
    assert n_dbp == c1["device_bp_records"] and (device_bp or n_dbp == 0), (n_dbp, c1)
    assert c1["samples_parsed"] == len(one[0]), (c1["samples_parsed"], len(one[0]))
    assert min(c1[k] for k in ("samples_missing", "bytes_skipped", "lines_ignored", "gaps", "resets")) >= 0, c1


def write_seeds(corpus: Path) -> list[Path]:
    """A small seed corpus: one clean stream per format, and the issue-17 cases."""
    from edgebp.runtime.protocol import (
        StreamHeader, cuff_encode_binary, cuff_encode_text, header_encode_binary, header_encode_text,
        samples_encode_binary, samples_encode_max3010x, samples_encode_text,
    )

    h = StreamHeader(250, ["ecg", "ppg"], ["mV", "NU"], [24, 18], [0.5, 1.0], [0, 0])
    seq = np.arange(12)
    raw = np.column_stack([np.arange(12) * 7 - 40, np.arange(12) * 3])
    binary = header_encode_binary(h) + samples_encode_binary(seq[:6], raw[:6]) + cuff_encode_binary(120, 80, 5) \
        + samples_encode_binary(seq[6:], raw[6:])
    text = header_encode_text(h) + samples_encode_text(seq[:6], raw[:6]) + cuff_encode_text(120, 80) \
        + samples_encode_text(seq[6:], raw[6:])
    # A frame whose CRC low byte is 0xA5, cut by that byte, then the next frame (issue 17).
    for v in range(1 << 17):
        f = samples_encode_binary(np.array([6]), np.array([[1, v]]))
        if f[-1] == 0xA5:
            break
    cut = header_encode_binary(h) + samples_encode_binary(seq[:6], raw[:6]) + f[:-1] + samples_encode_binary(seq[7:], raw[7:])
    # the device's own BP records (docs/serial-protocol.md section 11), read with device_bp (0x40)
    from edgebp.runtime.protocol_binary import device_bp_encode_binary
    from edgebp.runtime.protocol_text import device_bp_encode_text

    abp = np.array([118.25, np.nan, 80.5, 96.0])
    bp_text = header_encode_text(h) + samples_encode_text(seq[:6], raw[:6]) + device_bp_encode_text(40, 125.0, 44, abp) \
        + samples_encode_text(seq[6:], raw[6:])
    bp_binary = header_encode_binary(h) + samples_encode_binary(seq[:6], raw[:6]) + device_bp_encode_binary(40, 125.0, 44, abp, 5) \
        + samples_encode_binary(seq[6:], raw[6:])
    banner = (b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
              b"mode:DIO, clock div:1\r\nentry 0x400805e4\r\n")
    seeds = {
        "seed-binary": bytes([1, 13, 200]) + binary,
        "seed-text": bytes([2, 7, 100]) + text,
        "seed-text-device-bp": bytes([0x43, 7, 100]) + bp_text,
        "seed-binary-device-bp": bytes([0x42, 13, 200]) + bp_binary,
        "seed-auto-binary-cut-a5": bytes([0, 1, 9]) + cut,
        "seed-auto-esp32-banner": bytes([0, 5, 50]) + banner + text,
        "seed-auto-mid-header": bytes([0, 3, 30]) + text[20:],
        "seed-csv-na-rows": bytes([3, 4, 40]) + b"time,ppg\n0,1\nNA,NA\n,\n0.3,4\n",
        "seed-max3010x": bytes([4, 6, 60]) + b"Initializing...\n" + samples_encode_max3010x(np.arange(5), np.arange(5) + 9),
        "seed-auto-long-line": bytes([0x14, 63, 255]) + b"T" * 700 + b",x\n0.1,5\n",
    }
    corpus.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in seeds.items():
        path = corpus / name
        path.write_bytes(data)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time (libFuzzer -max_total_time)")
    ap.add_argument("--corpus", type=Path, default=REPO / "tests" / "fuzz_corpus",
                    help="seed corpus, where crashing/hanging inputs are written")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "fuzz-work",
                    help="scratch corpus the fuzzer grows (not kept in the repository)")
    ap.add_argument("--write-seeds", action="store_true", help="write the seed corpus and exit")
    ap.add_argument("libfuzzer_args", nargs="*", help="extra libFuzzer flags, after --")
    args = ap.parse_args(argv)
    if args.seconds < 1:
        ap.error(f"--seconds must be at least 1, got {args.seconds}")
    if args.write_seeds:
        for p in write_seeds(args.corpus):
            print(p)
        return 0
    import atheris

    # The decoder logs every rejected record at WARNING: silence it, the checks are asserts.
    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=["edgebp.runtime"]):
        import edgebp.runtime.protocol  # noqa: F401
    args.work.mkdir(parents=True, exist_ok=True)
    args.corpus.mkdir(parents=True, exist_ok=True)
    flags = [sys.argv[0], str(args.work), str(args.corpus), f"-max_total_time={args.seconds}",
             f"-timeout={HANG_SECONDS}", f"-artifact_prefix={args.corpus}{os.sep}", "-print_final_stats=1",
             "-rss_limit_mb=4096", *args.libfuzzer_args]
    atheris.Setup(flags, check_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
