"""Pieces shared by the stream parsers: record status codes, the line splitter, range checks.

A parser turns bytes into *records*: a sequence number, the raw value of every source
channel, and a status code (0 = good, otherwise why the record is rejected). It hands them
to a sink (the :class:`~edgebp.runtime.protocol.StreamDecoder`), which applies sequence rules
(duplicates, gaps, resets), converts to physical units and keeps the accounts.

Examples
--------
>>> REASONS[STATUS["malformed"]]
'malformed'
>>> lo, hi = raw_limits([24, 18])
>>> int(lo[0]), int(hi[1])
(-8388608, 262143)
"""

from __future__ import annotations

import functools
from typing import Callable, Protocol

import numpy as np

from edgebp.runtime.protocol_header import StreamHeader

#: Why a record can be rejected. Index = status code carried by the parsers.
REASONS = ("ok", "malformed", "crc", "truncated", "overlong", "range", "no_header", "duplicate", "bad_seq", "empty")
STATUS = {name: code for code, name in enumerate(REASONS)}
OK = 0

#: Why a cuff reading can be rejected (``cuff_rejected_reasons``). Cuff readings are events,
#: not records: they never count as samples.
CUFF_REASONS = ("malformed", "crc", "truncated", "range", "order", "no_header")

#: Why a device-BP record (the device's own ABP, ``#BP`` line or ``'P'`` frame) can be
#: rejected (``device_bp_rejected_reasons``). Like cuff readings they are events, not records;
#: a decoder reads them only when asked (``StreamDecoder(device_bp=True)``).
DEVICE_BP_REASONS = ("malformed", "crc", "truncated", "no_header")
#: Device-BP values travel in 0.01 mmHg as int16 (binary) and with two decimals (text), so
#: both encodings carry the same numbers; -32768 (binary) / ``nan`` (text) is "no value".
DEVICE_BP_SCALE = 100
DEVICE_BP_MAX_CODE = 32767

#: The longest line (without its terminator) a line-based parser accepts. Longer lines are
#: rejected as "overlong" and skipped up to the next newline, so garbage without newlines
#: cannot make the decoder buffer without bound.
MAX_LINE_BYTES = 4096

SEQ_MODULO = 65536


def raw_limits(bits: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest raw value accepted per channel for its ADC resolution.

    The range is the union of the signed and the unsigned range of ``bits`` bits,
    ``[-2**(bits-1), 2**bits - 1]``; ``bits == 0`` (unknown) accepts anything.
    (Read-only arrays, computed once per resolution list.)
    """
    return _raw_limits(tuple(int(x) for x in bits))


@functools.lru_cache(maxsize=64)
def _raw_limits(bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(bits, dtype=np.int64)
    lo = np.where(b > 0, -(np.int64(1) << np.maximum(b - 1, 0)), np.iinfo(np.int64).min)
    hi = np.where(b > 0, (np.int64(1) << b) - 1, np.iinfo(np.int64).max)
    lo.flags.writeable = False
    hi.flags.writeable = False
    return lo, hi


def status_range(raw: np.ndarray, status: np.ndarray, header: StreamHeader) -> np.ndarray:
    """Mark good records with a raw value outside the header's ADC range as ``"range"``."""
    if raw.shape[0] == 0 or raw.dtype.kind != "i":
        return status
    lo, hi = raw_limits(header.adc_bits)
    bad = ((raw < lo) | (raw > hi)).any(axis=1)
    if bad.any():
        status = status.copy()
        status[bad & (status == OK)] = STATUS["range"]
    return status


def device_bp_codes(abp: np.ndarray) -> np.ndarray:
    """ABP (mmHg, NaN = no value) as int codes of 0.01 mmHg (half up), -32768 for NaN.

    Raises ``ValueError`` for an infinite value or one beyond +-327.67 mmHg.
    """
    a = np.asarray(abp, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("device BP record: no values")
    nan = np.isnan(a)
    bad = ~nan & ~(np.abs(a) * DEVICE_BP_SCALE <= DEVICE_BP_MAX_CODE)  # infinities included
    if bad.any():
        raise ValueError(f"device BP record: {a[bad][0]!r} mmHg is not a finite value within +-327.67 mmHg")
    code = np.full(a.size, -DEVICE_BP_MAX_CODE - 1, dtype=np.int64)
    code[~nan] = np.clip(np.floor(a[~nan] * DEVICE_BP_SCALE + 0.5), -DEVICE_BP_MAX_CODE, DEVICE_BP_MAX_CODE)
    return code


def device_bp_check(first: int, fs: float, lag: int) -> tuple[int, int, float]:
    """``(first, lag, fs)`` as int, int, float, checked for the device-BP record fields."""
    first, lag, fs = int(first), int(lag), float(fs)
    if not 0 <= first < 2**32:
        raise ValueError(f"device BP record: k={first} is outside 0..2^32-1")
    if not 0 <= lag < 2**16:
        raise ValueError(f"device BP record: lag={lag} is outside 0..65535")
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"device BP record: fs={fs!r} must be a positive rate in Hz")
    return first, lag, fs


class Sink(Protocol):
    """What a parser reports to (implemented by the stream decoder)."""

    def on_header(self, header: StreamHeader, where: str, mapped: bool = False) -> None: ...

    def on_header_rejected(self, message: str, where: str) -> None: ...

    def on_records(self, seq: np.ndarray, raw: np.ndarray, status: np.ndarray | None,
                   where: Callable[[int], str] | None = None) -> None: ...

    def on_ignored(self, what: str, n: int = 1) -> None: ...

    def on_skipped(self, n_bytes: int) -> None: ...

    def on_cuff(self, sbp: float, dbp: float, where: str) -> None: ...

    def on_cuff_rejected(self, reason: str, message: str, where: str) -> None: ...

    def on_device_bp(self, first: int, fs: float, lag: int, abp: np.ndarray, where: str) -> None: ...

    def on_device_bp_rejected(self, reason: str, message: str, where: str) -> None: ...


class LineParser:
    """Splits a byte stream into complete lines at any chunk boundary.

    Subclasses implement :meth:`lines` (a chunk of complete lines, ending in ``\\n``),
    :meth:`overlong` (a line longer than :data:`MAX_LINE_BYTES`, called once; the rest of the
    line is skipped) and :meth:`partial` (an unterminated last line at the end of the stream).
    ``line_no`` counts the lines completed so far, for error messages.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.skipping = False
        self.line_no = 0

    def feed(self, data: bytes) -> None:
        if self.skipping:
            k = data.find(b"\n")
            if k < 0:
                return
            data = data[k + 1:]
            self.skipping = False
            self.line_no += 1
        k = data.rfind(b"\n")
        if data and k == len(data) - 1 and not self.buf:
            # the usual live read: whole lines, nothing buffered before them
            base = self.line_no
            self.line_no += data.count(b"\n")
            self.lines(bytes(data), base)
            return
        if k >= 0:
            end = len(self.buf) + k + 1
            self.buf += data
            chunk = bytes(self.buf[:end])
            del self.buf[:end]
            base = self.line_no
            self.line_no += chunk.count(b"\n")
            self.lines(chunk, base)
        else:
            self.buf += data
        # A trailing "\r" may still turn out to be half of a "\r\n" terminator.
        content = len(self.buf) - (1 if self.buf.endswith(b"\r") else 0)
        if content > MAX_LINE_BYTES:
            self.buf.clear()
            self.skipping = True
            self.overlong(self.line_no + 1)

    def finish(self) -> None:
        if self.buf and not self.skipping:
            data = bytes(self.buf)
            self.buf.clear()
            self.partial(data, self.line_no + 1)
        self.buf.clear()

    # Subclass hooks -------------------------------------------------------------------
    def lines(self, chunk: bytes, base_line: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def overlong(self, line_no: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def partial(self, data: bytes, line_no: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def one_record(sink: Sink, reason: str, n_channels: int, where: str, seq: int = 0) -> None:
    """Report one record that carries no usable values (a rejected line or frame)."""
    sink.on_records(
        np.array([seq], dtype=np.int64),
        np.zeros((1, n_channels), dtype=np.int64),
        np.array([STATUS[reason]], dtype=np.int8),
        lambda i: where,
    )
