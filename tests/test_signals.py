"""SIGTERM, SIGHUP and SIGINT end `edgebp run` and `edgebp serve` like the end of the input.

Real processes, a real FIFO (a device that is still connected: the run is blocked reading it
when the signal comes), a growing file under --follow, and a TCP listener for serve. Checked:
the exit status is 128 + the signal (143, 129, 130); the summary is written and names the
signal; every sample that was sent is parsed; every output row and beat the summary counts is
in the files; and the rows were on disk before the signal (the live flush).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgebp.runtime.protocol import decode_bytes

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP") or not hasattr(os, "mkfifo"), reason="POSIX signals and FIFOs")

EXE = [sys.executable, "-m", "edgebp"]


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("sig")
    p = subprocess.run([*EXE, "sim", "--source", "synth:4", "--minutes", "0.5", "--out", str(d / "s.log"), "--truth", str(d / "t.csv"), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return (d / "s.log").read_bytes()


def _rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")][1:]  # after the column header


def _wait_stable(path: Path, timeout: float = 90.0) -> int:
    """Rows in ``path`` once some are there and none came for 1.5 s (the run has caught up)."""
    t_end, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < t_end:
        n = len(_rows(path))
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since > 1.5:
            return n
        time.sleep(0.1)
    raise AssertionError(f"{path}: no stable rows within {timeout} s (last count {last})")


def _check_summary(tmp: Path, name: str, fed: bytes) -> dict:
    s = json.loads((tmp / "s.json").read_text())
    assert s["stopped"] == f"signal {name}"
    _, counts = decode_bytes(fed)
    assert s["decoder"]["samples_parsed"] == counts["samples_parsed"] > 0  # every sample sent was processed
    assert len(_rows(tmp / "bp.csv")) == s["outputs"]  # every output counted is in the file
    assert len(_rows(tmp / "bp.beats.csv")) == s["beats"] + s["beats_invalid"]
    return s


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_signal_on_a_fifo_source(name, code, log, tmp_path):
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    half = log[: log.index(b"\n", len(log) // 2) + 1]  # 15 s of the device, cut at a line end
    p = subprocess.Popen([*EXE, "run", "--stream", str(fifo), "--out", str(tmp_path / "bp.csv"), "--summary", str(tmp_path / "s.json")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "wb") as w:  # opens once the run opened its end
            w.write(half)
            w.flush()
            before = _wait_stable(tmp_path / "bp.csv")  # rows are on disk while the device is still connected
            p.send_signal(getattr(signal, name))
            _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    assert "Traceback" not in err and f"stopped by {name}" in err
    s = _check_summary(tmp_path, name, half)
    assert s["exit_code"] == code
    assert 0 < before <= s["outputs"]


def test_sigterm_with_follow(log, tmp_path):
    """--follow polls a growing file; SIGTERM sets the stop the source waits on."""
    (tmp_path / "s.log").write_bytes(log)
    p = subprocess.Popen([*EXE, "run", "--stream", "s.log", "--follow", "--out", "bp.csv", "--summary", "s.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_stable(tmp_path / "bp.csv")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    _check_summary(tmp_path, "SIGTERM", log)


def test_serve_sighup(log, tmp_path):
    """edgebp serve with a TCP listener (it would run forever): SIGHUP stops it, every stream
    writes its summary, then serve.summary.json; exit 129."""
    (tmp_path / "s.log").write_bytes(log)
    out = tmp_path / "served"
    p = subprocess.Popen([*EXE, "serve", "--source", "file:s.log", "--source", "tcp:0", "--out", str(out)],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 120
        while not (out / "file-s.summary.json").exists() and time.monotonic() < t_end and p.poll() is None:
            time.sleep(0.2)
        assert (out / "file-s.summary.json").exists(), "the file stream never finished"
        p.send_signal(signal.SIGHUP)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 129, err
    assert "stopped by SIGHUP" in err and "Traceback" not in err
    overall = json.loads((out / "serve.summary.json").read_text())
    assert [s["name"] for s in overall["streams"]] == ["file-s"]
    _, counts = decode_bytes(log)
    assert overall["streams"][0]["samples_parsed"] == counts["samples_parsed"]
