"""The edgebp binary encoding: CRC-protected frames for low-bandwidth links.

Every frame (see ``docs/serial-protocol.md`` for the byte tables)::

    offset  size  field
    0       2     sync 0xA5 0x5A
    2       1     type: 0x48 'H' header, 0x53 'S' sample, 0x43 'C' cuff reading
    3       1     LEN: number of body bytes (0..255)
    4       2     seq, uint16 little-endian (0 in header frames)
    6       LEN   body: sample = one int24 little-endian two's complement per channel;
                  header = the ASCII header fields string;
                  cuff = SBP, DBP as uint16 little-endian in 0.1 mmHg (LEN 4);
                  0x50 'P' device BP = K u32, FS f32, LAG u16, int16 values in 0.01 mmHg
    6+LEN   2     CRC-16/CCITT-FALSE over bytes 2 .. 5+LEN (type, LEN, seq, body), MSB first

A 2-channel sample frame is 14 bytes (text: about 20). The decoder finds frames by their
sync bytes, checks each CRC, and resynchronises at the next sync after a bad frame. Runs of
equal-length sample frames are located, checked (CRC computed column-wise for all frames at
once) and converted with numpy.

Examples
--------
>>> import numpy as np
>>> frame = samples_encode_binary(np.array([1]), np.array([[-2, 3]]))
>>> frame.hex(" ")
'a5 5a 53 06 01 00 fe ff ff 03 00 00 f2 62'
>>> len(frame) == frame_size(2)
True
"""

from __future__ import annotations

import logging

import numpy as np

from edgebp.runtime.crc import crc16_ccitt_false, crc16_ccitt_false_rows
from edgebp.runtime.protocol_common import Sink, device_bp_check, device_bp_codes, one_record, status_range
from edgebp.runtime.protocol_header import HeaderError, StreamHeader, header_fields_decode, header_fields_encode
from edgebp.runtime.protocol_text import check_samples

log = logging.getLogger(__name__)

SYNC = b"\xa5\x5a"
TYPE_HEADER = 0x48  # 'H'
TYPE_SAMPLE = 0x53  # 'S'
TYPE_CUFF = 0x43  # 'C'
CUFF_LEN = 4
#: The device's own ABP (docs/serial-protocol.md, section 11): read only when the decoder
#: asks (``StreamDecoder(device_bp=True)``); other readers skip it as an unknown type.
TYPE_DEVICE_BP = 0x50  # 'P'
DEVICE_BP_FIXED = 10  # K uint32, FS float32, LAG uint16
DEVICE_BP_MAX_VALUES = (255 - DEVICE_BP_FIXED) // 2
FRAME_OVERHEAD = 8  # sync 2 + type 1 + LEN 1 + seq 2 + CRC 2
INT24_MIN, INT24_MAX = -(2**23), 2**23 - 1
MAX_CHANNELS = 255 // 3


def frame_size(n_channels: int) -> int:
    """Bytes of one sample frame with ``n_channels`` channels.

    Examples
    --------
    >>> frame_size(2)
    14
    """
    return FRAME_OVERHEAD + 3 * n_channels


def _frame(frame_type: int, seq: int, body: bytes) -> bytes:
    if len(body) > 255:
        raise ValueError(f"binary frame body is {len(body)} bytes; the LEN field allows at most 255")
    core = bytes([frame_type, len(body)]) + int(seq % 65536).to_bytes(2, "little") + body
    return SYNC + core + crc16_ccitt_false(core).to_bytes(2, "big")


def header_encode_binary(h: StreamHeader) -> bytes:
    """A header frame carrying the same fields as the text header line.

    Raises
    ------
    ValueError
        When the fields string is longer than the 255 bytes a frame body can hold.

    Examples
    --------
    >>> h = StreamHeader(250, ["ppg"], ["NU"], [18], [1.0], [0.0])
    >>> f = header_encode_binary(h)
    >>> f[:4].hex(" "), f[6:-2]
    ('a5 5a 48 32', b'v=1 fs=250 ch=ppg units=NU bits=18 gain=1 offset=0')
    """
    body = header_fields_encode(h).encode("ascii")
    if len(body) > 255:
        raise ValueError(
            f"header fields are {len(body)} bytes, more than the 255 a binary header frame holds; "
            "use fewer channels or shorter names/units")
    if h.n_channels > MAX_CHANNELS:
        raise ValueError(f"binary frames hold at most {MAX_CHANNELS} channels, header has {h.n_channels}")
    return _frame(TYPE_HEADER, 0, body)


def samples_encode_binary(seq: np.ndarray, values: np.ndarray) -> bytes:
    """Sample frames, one per sample, with 24-bit signed values and a CRC each.

    Parameters
    ----------
    seq : np.ndarray
        Sequence numbers (n,); reduced modulo 65536.
    values : np.ndarray
        Raw integer ADC counts (n, n_channels), each in ``[-2**23, 2**23 - 1]``.

    Examples
    --------
    >>> len(samples_encode_binary(np.arange(3), np.zeros((3, 2), dtype=int)))
    42
    """
    seq, values = check_samples(seq, values, INT24_MIN, INT24_MAX, "samples_encode_binary")
    n, n_ch = values.shape
    if n_ch > MAX_CHANNELS:
        raise ValueError(f"samples_encode_binary: at most {MAX_CHANNELS} channels per frame, got {n_ch}")
    size = frame_size(n_ch)
    out = np.empty((n, size), dtype=np.uint8)
    out[:, 0], out[:, 1] = SYNC[0], SYNC[1]
    out[:, 2] = TYPE_SAMPLE
    out[:, 3] = 3 * n_ch
    out[:, 4] = seq & 0xFF
    out[:, 5] = seq >> 8
    v = values & 0xFFFFFF  # two's complement in 24 bits
    for j in range(n_ch):
        out[:, 6 + 3 * j] = v[:, j] & 0xFF
        out[:, 7 + 3 * j] = (v[:, j] >> 8) & 0xFF
        out[:, 8 + 3 * j] = (v[:, j] >> 16) & 0xFF
    crc = crc16_ccitt_false_rows(out[:, 2:size - 2])
    out[:, size - 2] = crc >> 8
    out[:, size - 1] = crc & 0xFF
    return out.tobytes()


def cuff_encode_binary(sbp: float, dbp: float, seq: int) -> bytes:
    """A cuff reading frame: TYPE 0x43, LEN 4, SBP and DBP as uint16 LE in 0.1 mmHg.

    ``seq`` is the sequence number of the last sample sent before the reading (informational;
    the reading applies at the next sample). Values are rounded to 0.1 mmHg (half up). Only
    representability is checked here (0..6553.5 mmHg); the decoder decides what it accepts.

    Examples
    --------
    >>> cuff_encode_binary(120.0, 80.0, 1234).hex(" ")
    'a5 5a 43 04 d2 04 b0 04 20 03 73 3b'
    """
    body = b""
    for name, x in (("sbp", sbp), ("dbp", dbp)):
        x = float(x)
        code = int(np.floor(x * 10.0 + 0.5)) if np.isfinite(x) else -1
        if not 0 <= code <= 0xFFFF:
            raise ValueError(f"cuff_encode_binary: {name} {x!r} mmHg does not fit a uint16 in 0.1 mmHg (0..6553.5)")
        body += code.to_bytes(2, "little")
    return _frame(TYPE_CUFF, int(seq), body)


def device_bp_encode_binary(first: int, fs: float, lag: int, abp: np.ndarray, seq: int) -> bytes:
    """A device-BP frame: TYPE 0x50 ``'P'``, body ``K`` uint32 LE (the first value's output
    number since boot), ``FS`` float32 LE (the model rate, Hz), ``LAG`` uint16 LE (model
    samples), then one int16 LE per value in 0.01 mmHg (half up), -32768 for no value.

    ``seq`` is the sequence number of the last sample the device had pushed when it had
    the values (informational). At most :data:`DEVICE_BP_MAX_VALUES` values per frame.

    Examples
    --------
    >>> device_bp_encode_binary(250, 125.0, 41, np.array([101.234, np.nan]), seq=7).hex(" ")
    'a5 5a 50 0e 07 00 fa 00 00 00 00 00 fa 42 29 00 8b 27 00 80 b6 b5'
    """
    first, lag, fs = device_bp_check(first, fs, lag)
    code = device_bp_codes(abp)
    if code.size > DEVICE_BP_MAX_VALUES:
        raise ValueError(f"device_bp_encode_binary: {code.size} values; a frame holds at most {DEVICE_BP_MAX_VALUES}")
    body = (first.to_bytes(4, "little") + np.float32(fs).astype("<f4").tobytes() + lag.to_bytes(2, "little")
            + code.astype("<i2").tobytes())
    return _frame(TYPE_DEVICE_BP, int(seq), body)


def device_bp_body_decode(body: bytes) -> tuple[int, float, int, np.ndarray]:
    """``(first, fs, lag, abp)`` from a ``'P'`` frame's body; ``ValueError`` when malformed."""
    n = len(body) - DEVICE_BP_FIXED
    if n < 2 or n % 2:
        raise ValueError(f"LEN {len(body)}: expected {DEVICE_BP_FIXED} + 2 per value, at least one value")
    first = int.from_bytes(body[0:4], "little")
    fs = float(np.frombuffer(body, "<f4", 1, 4)[0])
    lag = int.from_bytes(body[8:10], "little")
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"FS {fs!r} is not a positive rate")
    code = np.frombuffer(body, "<i2", n // 2, DEVICE_BP_FIXED).astype(np.int64)
    abp = np.where(code == -32768, np.nan, code / 100.0)
    return first, fs, lag, abp


def decode_sample_rows(rows: np.ndarray, n_ch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(seq int64 (k,), raw int64 (k, n_ch))`` from sample frames stacked as rows of bytes."""
    r = rows.astype(np.int64)
    seq = r[:, 4] | (r[:, 5] << 8)
    raw = np.empty((rows.shape[0], n_ch), dtype=np.int64)
    for j in range(n_ch):
        v = r[:, 6 + 3 * j] | (r[:, 7 + 3 * j] << 8) | (r[:, 8 + 3 * j] << 16)
        raw[:, j] = v - ((v & 0x800000) << 1)
    return seq, raw


_NO, _YES, _INCOMPLETE = 0, 1, -1


def _intact_at(data: bytes, q: int) -> int:
    """Whether a CRC-valid frame starts at ``data[q]``: ``_YES``, ``_NO``, or ``_INCOMPLETE``
    (it may, but the buffer ends before its sync, LEN or CRC could be read)."""
    n = len(data)
    if q + 2 > n:
        return _INCOMPLETE if data[q] == SYNC[0] else _NO
    if data[q] != SYNC[0] or data[q + 1] != SYNC[1]:
        return _NO
    if q + 4 > n:
        return _INCOMPLETE
    total = FRAME_OVERHEAD + data[q + 3]
    if q + total > n:
        return _INCOMPLETE
    return _YES if crc16_ccitt_false(data[q + 2:q + total]) == 0 else _NO


def _resume_after(data: bytes, p: int, total: int, final: bool) -> int | None:
    """Where parsing goes on after the CRC-valid frame ``data[p:p + total]``.

    Why: on a clean wire frames never overlap, so a CRC-valid frame that starts *inside*
    another one means one of the two was cut short and the CRC check of the other was
    passed with bytes borrowed from it (e.g. a frame that lost its last byte, when that byte
    was 0xA5, is completed by the next frame's first sync byte). The CRC cannot tell which of
    the two is real, and skipping to ``p + total`` would lose the inner one although it
    reached the wire intact. So parsing resumes at the earliest CRC-valid frame starting in
    ``(p, p + total)`` (both are decoded; the sequence rules then drop a stale or
    duplicate one), and at ``p + total`` when there is none. Candidates inside that fail
    their CRC are ordinary payload bytes and are not reported. The overlapping bytes are
    accounted to the later frame, so every byte still belongs to one frame or to
    ``bytes_skipped``.

    Returns None when the answer depends on bytes not received yet (an inner candidate is
    incomplete, or the frame ends the buffer with 0xA5, which may be the first byte of a
    sync); at the end of the stream an incomplete candidate is not a frame. The decision
    therefore depends only on the stream's content, not on how it was cut into chunks.
    """
    end = p + total
    n = len(data)
    q = data.find(SYNC, p + 1, end + 1)
    while 0 <= q < end:
        r = _intact_at(data, q)
        if r == _YES:
            return q
        if r == _INCOMPLETE and not final:
            return None
        q = data.find(SYNC, q + 1, end + 1)
    if end == n and data[end - 1] == SYNC[0] and not final:
        return None
    return end


def _rows_without_inner_frame(data: bytes, view: np.ndarray, p: int, m: int) -> int:
    """How many of the ``m`` CRC-valid rows of ``view`` (frames from ``data[p]`` on) can be
    accepted in bulk: up to the first row inside which a CRC-valid frame may start (see
    :func:`_resume_after`); that row is then read on the single-frame path."""
    size = view.shape[1]
    # A sync at a row's last byte needs 0x5A after it: inside the run that byte is the next
    # row's 0xA5, so only the last row's last byte can start one.
    cands: list[int] = []
    if data.count(SYNC, p, p + m * size) > m:  # syncs cannot overlap: more than the rows' own
        rows = view[:m]
        hit = (rows[:, 1:size - 1] == SYNC[0]) & (rows[:, 2:size] == SYNC[1])
        r, j = np.nonzero(hit)
        cands = (r * size + j + 1).tolist()
    if view[m - 1, size - 1] == SYNC[0]:
        cands.append(m * size - 1)
    for c in sorted(cands):
        if _intact_at(data, p + c) != _NO:
            return c // size
    return m


class BinaryParser:
    """Incremental parser of the edgebp binary encoding (see module docstring)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.offset = 0  # stream offset of buf[0], for error messages
        self.header: StreamHeader | None = None
        # 'P' frames are read only when the decoder asks (else: an unknown type, as before)
        self.device_bp = False

    @property
    def n_channels(self) -> int:
        return self.header.n_channels if self.header is not None else 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        self._parse(final=False)

    def finish(self) -> None:
        self._parse(final=True)
        self.buf.clear()

    def _parse(self, final: bool) -> None:
        data = bytes(self.buf)
        n = len(data)
        p = 0
        skipped = 0
        while p < n:
            j = data.find(SYNC, p)
            if j < 0:
                # Keep a last 0xA5: it may be the first half of the next sync.
                keep = 1 if (not final and data[-1] == SYNC[0]) else 0
                skipped += n - keep - p
                p = n - keep
                break
            skipped += j - p
            p = j
            if n - p < 4:
                if not final:
                    break
                self._reject_incomplete(data, p)
                skipped += n - p
                p = n
                break
            ftype, length = data[p + 2], data[p + 3]
            total = FRAME_OVERHEAD + length
            if n - p < total:
                if not final:
                    break
                # End of stream inside a frame: the frame is truncated; any frame starting
                # after its sync is still parsed.
                self._reject_incomplete(data, p)
                skipped += 2
                p += 2
                continue
            if ftype == TYPE_SAMPLE and self.header is not None and length == 3 * self.n_channels:
                k = self._bulk(data, p, total)
                if k:
                    p += k * total
                    continue
            core = data[p + 2:p + total]
            where = f"byte {self.offset + p}"
            crc_ok = crc16_ccitt_false(core) == 0
            if crc_ok:
                # Decided before anything is emitted, so that a wait re-reads the frame once.
                nxt = _resume_after(data, p, total, final)
                if nxt is None:
                    break  # a frame that may start inside this one is not complete yet
            if not crc_ok:
                # A sync inside the frame's extent means the frame was cut short and the next
                # one began; otherwise bytes were damaged.
                # (A last byte 0xA5 counts, as the next frame may begin there: a frame cut by
                # one byte. Decided from the frame's own bytes, whatever follows has arrived.)
                cut = data.find(SYNC, p + 2, p + total) >= 0 or data[p + total - 1] == SYNC[0]
                reason = "truncated" if cut else "crc"
                if ftype == TYPE_HEADER:
                    self.sink.on_header_rejected(f"header frame failed its {reason} check", where)
                elif ftype == TYPE_CUFF:
                    self.sink.on_cuff_rejected(reason, "cuff frame failed its CRC check" if reason == "crc" else
                                               "cuff frame cut short (a frame sync lies inside it)", where)
                elif ftype == TYPE_DEVICE_BP and self.device_bp:
                    self.sink.on_device_bp_rejected(reason, "device BP frame failed its CRC check" if reason == "crc"
                                                    else "device BP frame cut short (a frame sync lies inside it)", where)
                else:
                    one_record(self.sink, reason, self.n_channels, where)
                skipped += 2
                p += 2
                continue
            if ftype == TYPE_SAMPLE:
                if self.header is None:
                    one_record(self.sink, "no_header", self.n_channels, where)
                elif length != 3 * self.n_channels:
                    log.debug("%s: sample frame with %d body bytes for %d channels", where, length, self.n_channels)
                    one_record(self.sink, "malformed", self.n_channels, where)
                else:
                    self._emit(np.frombuffer(data, np.uint8, total, p).reshape(1, total), where_base=p)
            elif ftype == TYPE_HEADER:
                try:
                    header = header_fields_decode(data[p + 6:p + 6 + length])
                except HeaderError as err:
                    self.sink.on_header_rejected(str(err), where)
                else:
                    self.sink.on_header(header, where)
                    self.header = header
            elif ftype == TYPE_CUFF:
                if length != CUFF_LEN:
                    self.sink.on_cuff_rejected("malformed", f"malformed cuff frame (LEN {length}, expected {CUFF_LEN})",
                                               where)
                else:
                    b = data[p + 6:p + 10]
                    sbp = int.from_bytes(b[0:2], "little") / 10.0
                    dbp = int.from_bytes(b[2:4], "little") / 10.0
                    self.sink.on_cuff(sbp, dbp, where)
            elif ftype == TYPE_DEVICE_BP and self.device_bp:
                try:
                    first, fs, lag, abp = device_bp_body_decode(data[p + 6:p + 6 + length])
                except ValueError as err:
                    self.sink.on_device_bp_rejected("malformed", f"malformed device BP frame ({err})", where)
                else:
                    self.sink.on_device_bp(first, fs, lag, abp, where)
            else:
                self.sink.on_ignored(f"frame of unknown type 0x{ftype:02X}")
            p = nxt
        if skipped:
            self.sink.on_skipped(skipped)
        del self.buf[:p]
        self.offset += p

    def _bulk(self, data: bytes, p: int, size: int) -> int:
        """Accept the longest run of valid equal-size sample frames starting at ``p``."""
        rows = (len(data) - p) // size
        if rows < 2:
            return 0
        view = np.frombuffer(data, np.uint8, rows * size, p).reshape(rows, size)
        ok = (view[:, 0] == SYNC[0]) & (view[:, 1] == SYNC[1]) & (view[:, 2] == TYPE_SAMPLE) & (view[:, 3] == size - 8)
        m = rows if ok.all() else int(np.argmin(ok))
        if m == 0:
            return 0
        good = crc16_ccitt_false_rows(view[:m, 2:]) == 0  # residue 0 over body + CRC
        m = m if good.all() else int(np.argmin(good))
        if m:
            m = _rows_without_inner_frame(data, view, p, m)
        if m:
            self._emit(view[:m], where_base=p)
        return m

    def _emit(self, rows: np.ndarray, where_base: int) -> None:
        seq, raw = decode_sample_rows(rows, self.n_channels)
        status = status_range(raw, np.zeros(seq.size, dtype=np.int8), self.header)
        size = rows.shape[1]
        base = self.offset + where_base
        self.sink.on_records(seq, raw, status, lambda i: f"byte {base + i * size}")

    def _reject_incomplete(self, data: bytes, p: int) -> None:
        where = f"byte {self.offset + p} (end of stream inside a frame)"
        if len(data) > p + 2 and data[p + 2] == TYPE_HEADER:
            self.sink.on_header_rejected("truncated header frame", where)
            return
        if len(data) > p + 2 and data[p + 2] == TYPE_CUFF:
            self.sink.on_cuff_rejected("truncated", "truncated cuff frame", where)
            return
        if len(data) > p + 2 and data[p + 2] == TYPE_DEVICE_BP and self.device_bp:
            self.sink.on_device_bp_rejected("truncated", "truncated device BP frame", where)
            return
        one_record(self.sink, "truncated", self.n_channels, where)

