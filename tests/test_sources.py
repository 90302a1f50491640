"""Byte sources: file, followed file (growth, truncation, rotation), a real pseudo-terminal
through pyserial, and stdin of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tty

import numpy as np
import pytest

from edgebp.runtime.protocol import (
    ResetEvent, StreamDecoder, StreamHeader, decode_stream, header_encode_binary, header_encode_text,
    samples_encode_binary, samples_encode_text,
)
from edgebp.runtime.sources import SourceError, iter_file, iter_follow, iter_serial, iter_source

HDR = StreamHeader(fs=250.0, channels=["ecg", "ppg"], units=["mV", "NU"], adc_bits=[24, 18],
                   gain=[0.5, 1.0], offset=[0.0, 0.0])
WAIT_S = 30.0  # generous bound for thread hand-offs on a loaded machine; never a pass criterion


def samples(n: int, start: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (start + np.arange(n)) % 65536, rng.integers(-(2**17), 2**17, size=(n, 2))


def cat_values(blocks) -> np.ndarray:
    """Values of all non-empty blocks (an empty block before the first header has 0 columns)."""
    return np.concatenate([b.values for b in blocks if len(b)])


def test_iter_file_chunks_and_errors(tmp_path):
    seq, raw = samples(500)
    data = header_encode_binary(HDR) + samples_encode_binary(seq, raw)
    path = tmp_path / "log.bin"
    path.write_bytes(data)
    chunks = list(iter_file(path, chunk=1000))
    assert all(0 < len(c) <= 1000 for c in chunks) and b"".join(chunks) == data
    blocks = list(decode_stream(iter_file(path, chunk=333)))
    assert np.concatenate([b.seq for b in blocks]).tolist() == seq.tolist()
    with pytest.raises(FileNotFoundError, match="nope.log"):
        iter_file(tmp_path / "nope.log")
    with pytest.raises(SourceError, match="is a directory"):
        iter_file(tmp_path)
    with pytest.raises(ValueError, match="chunk"):
        iter_file(path, chunk=0)


def test_iter_follow_growing_truncated_and_rotated(tmp_path):
    path = tmp_path / "device.log"
    s1, r1 = samples(300, start=1000, seed=1)
    s2, r2 = samples(40, start=0, seed=2)   # after truncation: the device restarted
    s3, r3 = samples(50, start=0, seed=3)   # after rotation: a new file, restarted again
    first = header_encode_text(HDR) + samples_encode_text(s1, r1)
    path.write_bytes(first[:100])

    stop = threading.Event()
    seen = {"n": 0}
    reached = {200: threading.Event(), 300: threading.Event(), 340: threading.Event()}
    errors: list[str] = []

    def writer():
        try:
            with open(path, "ab") as f:  # grow the file in small pieces
                for i in range(100, len(first), 211):
                    f.write(first[i:i + 211])
                    f.flush()
                    time.sleep(0.002)
            if not reached[300].wait(WAIT_S):
                errors.append("reader never saw the first part")
                return
            # Truncate and write a stream shorter than what was read: a restart from the top.
            path.write_bytes(header_encode_text(HDR) + samples_encode_text(s2, r2))
            if not reached[340].wait(WAIT_S):
                errors.append("reader never saw the part after truncation")
                return
            os.rename(path, tmp_path / "device.log.1")
            path.write_bytes(header_encode_text(HDR) + samples_encode_text(s3, r3))
            time.sleep(0.05)
        finally:
            # Stop only once the new file is fully written: everything before stop is delivered.
            stop.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    dec = StreamDecoder(fmt="text")
    blocks = []
    for chunk in iter_follow(path, poll_s=0.005, stop=stop, idle_timeout_s=WAIT_S):
        blocks.append(dec.feed(chunk))
        seen["n"] = dec.counts["samples_parsed"]
        for k, ev in reached.items():
            if seen["n"] >= k:
                ev.set()
    blocks.append(dec.finish())
    thread.join(WAIT_S)
    assert not errors, errors
    seq = np.concatenate([b.seq for b in blocks])
    values = cat_values(blocks)
    assert seq.tolist() == s1.tolist() + s2.tolist() + s3.tolist()
    np.testing.assert_array_equal(values, np.concatenate([r1, r2, r3]) * [0.5, 1.0])
    resets = [e for b in blocks for e in b.events if isinstance(e, ResetEvent)]
    assert len(resets) == 2
    counts = dec.counts
    assert counts["samples_rejected"] == 0 and counts["samples_missing"] == 0 and counts["headers"] == 3


def test_iter_follow_idle_timeout_and_missing_file(tmp_path):
    path = tmp_path / "quiet.log"
    path.write_bytes(b"12")
    assert b"".join(iter_follow(path, poll_s=0.005, idle_timeout_s=0.05)) == b"12"
    stop = threading.Event()
    stop.set()
    assert list(iter_follow(path, poll_s=0.005, stop=stop)) == [b"12"]
    assert list(iter_follow(path, poll_s=0.005, stop=lambda: True)) == [b"12"]
    with pytest.raises(FileNotFoundError, match="absent.log"):
        iter_follow(tmp_path / "absent.log")


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)  # no line discipline: binary bytes pass unchanged
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _write_all(fd: int, data: bytes, piece: int = 700) -> None:
    for i in range(0, len(data), piece):
        view = memoryview(data)[i:i + piece]
        while view:
            n = os.write(fd, view)
            view = view[n:]
        time.sleep(0.001)


@pytest.mark.parametrize("fmt", ["binary", "text"])
def test_iter_serial_through_a_real_pty(pty_pair, fmt):
    master, port = pty_pair
    seq, raw = samples(2500, start=65000, seed=4)
    if fmt == "binary":
        data = header_encode_binary(HDR) + samples_encode_binary(seq, raw)
    else:
        data = header_encode_text(HDR) + samples_encode_text(seq, raw)
    assert b"\x0d" in data or fmt == "text"  # bytes a cooked tty would mangle
    source = iter_serial(port, baud=115200, timeout=0.02, idle_timeout_s=WAIT_S)  # port open from here
    writer = threading.Thread(target=_write_all, args=(master, data), daemon=True)
    writer.start()
    dec = StreamDecoder()
    blocks = []
    for chunk in source:
        blocks.append(dec.feed(chunk))
        if dec.counts["bytes_in"] >= len(data):
            break
    blocks.append(dec.finish())
    writer.join(WAIT_S)
    assert dec.counts["format"] == fmt
    assert np.concatenate([b.seq for b in blocks]).tolist() == seq.tolist()
    np.testing.assert_array_equal(cat_values(blocks), raw * [0.5, 1.0])
    assert dec.counts["samples_rejected"] == 0 and dec.counts["bytes_in"] == len(data)


def test_iter_serial_stop_and_errors(pty_pair):
    master, port = pty_pair
    stop = threading.Event()
    got = []
    source = iter_serial(port, timeout=0.02, stop=stop, idle_timeout_s=WAIT_S)
    os.write(master, b"abc")
    for chunk in source:
        got.append(chunk)
        if b"".join(got) == b"abc":
            stop.set()  # checked at the next empty read
    assert b"".join(got) == b"abc"
    # A character device is read as a serial port by the CLI's source picker.
    source = iter_source(port, idle_timeout_s=WAIT_S)
    os.write(master, b"xyz")
    assert next(source) in (b"x", b"xy", b"xyz")
    source.close()
    # Nothing arrives: the idle timeout ends the stream.
    assert list(iter_serial(port, timeout=0.01, idle_timeout_s=0.05)) == []
    with pytest.raises(SourceError, match="/dev/edgebp-no-such-port"):
        iter_serial("/dev/edgebp-no-such-port")
    with pytest.raises(ValueError, match="edgebp-no-such-port"):  # also a ValueError for the CLI
        iter_serial("/dev/edgebp-no-such-port")


def test_iter_stdin_in_a_child_process():
    seq, raw = samples(3000, seed=5)
    data = header_encode_text(HDR) + samples_encode_text(seq, raw)
    code = (
        "import json, sys\n"
        "from edgebp.runtime.sources import iter_stdin\n"
        "from edgebp.runtime.protocol import StreamDecoder, decode_stream\n"
        "dec = StreamDecoder()\n"
        "blocks = list(decode_stream(iter_stdin(chunk=4096), decoder=dec))\n"
        "out = {'seq_sum': int(sum(int(b.seq.sum()) for b in blocks)), 'counts': dec.counts,\n"
        "       'first': blocks[0].values[0].tolist()}\n"
        "sys.stdout.write(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["counts"]["samples_parsed"] == 3000 and out["counts"]["bytes_in"] == len(data)
    assert out["seq_sum"] == int(seq.sum())
    assert out["first"] == (raw[0] * [0.5, 1.0]).tolist()


def test_sources_docstring_examples():
    import doctest

    import edgebp.runtime.sources as mod
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
