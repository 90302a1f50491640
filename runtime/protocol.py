"""edgebp's device serial protocol: encoders and the incremental stream decoder.

One implementation of each encoding serves the writer (the firmware simulator) and the
reader (the runtime). The specification is ``docs/serial-protocol.md``.

- edgebp text: ``#EDGEBP v=1 fs=250 ch=ecg,ppg ...`` header line, then ``seq,v1,v2`` lines.
- edgebp binary: sync ``A5 5A``, type, LEN, uint16 seq, int24 values, CRC-16/CCITT-FALSE.
- third-party logs (need ``fs`` and ``channel_map``): SparkFun MAX3010x ``red=.., ir=..`` or
  ``R[..] IR[..] G[..]`` lines, CSV/TSV with a header row.

:class:`StreamDecoder` accepts bytes at any boundary; output does not depend on how the stream
was cut. It resynchronises after bad lines or frames, drops duplicates, turns sequence jumps
into :class:`GapEvent`, device restarts into :class:`ResetEvent`, (re)appearing headers
into :class:`HeaderEvent`, and cuff readings (``#CUFF`` lines, ``'C'`` frames) into
:class:`CuffEvent`; ``counts`` accounts for every record read.

Examples
--------
>>> import numpy as np
>>> h = StreamHeader(250, ["ecg", "ppg"], ["mV", "NU"], [24, 18], [0.5, 1.0], [100, 0])
>>> raw = np.array([[100, 5], [101, 6], [102, 7]])
>>> stream = header_encode_binary(h) + samples_encode_binary(np.array([0, 1, 3]), raw)
>>> dec = StreamDecoder()                      # fmt="auto": binary, from the sync bytes
>>> block = dec.feed(stream)
>>> block.seq.tolist(), block.values[:, 0].tolist()
([0, 1, 3], [0.0, 0.5, 1.0])
>>> [type(e).__name__ for e in block.events]
['HeaderEvent', 'GapEvent']
>>> dec.counts["samples_missing"]
1
>>> block = dec.feed(cuff_encode_binary(121.0, 79.5, seq=3) + samples_encode_binary(np.array([4]), raw[:1]))
>>> ev = block.events[0]
>>> (ev.at_index, ev.sbp, ev.dbp, ev.where), dec.counts["cuff_readings"]
((0, 121.0, 79.5, 'byte 118'), 1)
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from edgebp.runtime.crc import crc16_ccitt_false
from edgebp.runtime.protocol_binary import (
    SYNC, BinaryParser, cuff_encode_binary, device_bp_encode_binary, frame_size, header_encode_binary,
    samples_encode_binary,
)
from edgebp.runtime.protocol_common import CUFF_REASONS, DEVICE_BP_REASONS, MAX_LINE_BYTES, OK, REASONS
from edgebp.runtime.protocol_header import (
    HeaderError, StreamHeader, header_apply_channel_map, header_fields_decode, header_fields_encode,
)
from edgebp.runtime.protocol_logs import (
    CsvParser, Max3010xParser, csv_delimiter, csv_header_candidate, csv_row_confirms, samples_encode_max3010x,
)
from edgebp.runtime.protocol_text import (
    TEXT_MAGIC, TextParser, cuff_encode_text, device_bp_encode_text, header_encode_text, samples_encode_text,
)

log = logging.getLogger(__name__)

FORMATS = ("auto", "text", "binary", "max3010x", "csv")
#: A backwards jump of the sequence number that lands at or below this value is a device
#: restart (the counter starts again from 0); any other backwards jump must be confirmed.
RESET_MAX_SEQ = 255
#: Forward jumps up to half the counter range are gaps; larger ones read as backwards jumps.
HALF_RANGE = 32768
#: Rejections of one reason logged at WARNING before the decoder goes quiet (DEBUG).
_LOG_LIMIT = 5
# Bytes that appear in text logs; anything else before the first line ends means binary.
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"
#: The longest line detection reads: a longer one is decided "text" (as the parsers, which
#: reject it as overlong), whether or not its end has arrived yet.
_DETECT_LIMIT = MAX_LINE_BYTES
#: Bytes of banner/comment lines read while detecting; beyond this the format is not guessed.
_DETECT_GIVE_UP = 65536
#: Cuff readings accepted: SBP and DBP within these bounds (mmHg, inclusive), DBP below SBP.
CUFF_RANGE_MMHG = (40.0, 300.0)

__all__ = [
    "StreamHeader", "HeaderError", "GapEvent", "ResetEvent", "HeaderEvent", "CuffEvent", "Event", "DecodedBlock",
    "StreamDecoder", "FORMATS", "REASONS", "CUFF_REASONS", "CUFF_RANGE_MMHG", "header_encode_text",
    "samples_encode_text", "cuff_encode_text", "cuff_encode_binary", "DeviceBPEvent", "DEVICE_BP_REASONS",
    "device_bp_encode_text", "device_bp_encode_binary",
    "header_encode_binary", "samples_encode_binary", "samples_encode_max3010x",
    "header_fields_encode", "header_fields_decode", "crc16_ccitt_false", "frame_size", "SYNC",
    "decode_bytes", "decode_stream", "stream_detect_format", "decoder_throughput",
]


@dataclass
class GapEvent:
    """Samples missing before ``values[at_index]`` of the block.

    Attributes
    ----------
    after_seq : int
        Sequence number of the last sample before the gap.
    n_missing : int
        Number of sample periods absent from the output (insert this many NaNs to keep time).
        Rejected records that fell in the gap are part of it; ``counts["samples_missing"]``
        counts only the samples never seen at all.
    at_index : int
        Position in the block's arrays where the gap lies.
    """

    after_seq: int
    n_missing: int
    at_index: int = 0


@dataclass
class ResetEvent:
    """The device restarted its sequence counter before ``values[at_index]`` (no samples missing).

    Attributes
    ----------
    at_index : int
        Position in the block's arrays of the first sample after the restart.
    from_seq, to_seq : int
        Last sequence number before and first after the restart.
    """

    at_index: int
    from_seq: int = -1
    to_seq: int = -1


@dataclass
class HeaderEvent:
    """A header arrived before ``values[at_index]`` (first one, repeat, or changed).

    Attributes
    ----------
    header : StreamHeader
        The header now in force (after the channel map).
    at_index : int
        Position in the block's arrays.
    previous : StreamHeader or None
        The header before it (None for the first).
    """

    header: StreamHeader
    at_index: int = 0
    previous: StreamHeader | None = None

    @property
    def changed(self) -> tuple[str, ...]:
        """Fields that differ from the previous header (every field for the first header)."""
        return self.header.differences(self.previous)

    @property
    def is_repeat(self) -> bool:
        """True when the header is identical to the one before."""
        return self.previous is not None and not self.changed


@dataclass
class CuffEvent:
    """A cuff (reference blood-pressure) reading, in force from ``values[at_index]`` on.

    The reading applies at the stream position where it appears, i.e. at the time of the
    next sample (``at_index`` is that sample's position; ``len(block)`` when the next sample
    comes in a later block).

    Attributes
    ----------
    at_index : int
        Position in the block's arrays of the first sample after the reading.
    sbp, dbp : float
        Systolic and diastolic pressure (mmHg), validated: within :data:`CUFF_RANGE_MMHG`,
        ``dbp < sbp``.
    where : str
        Where it was read (``"line 1234"``, ``"byte 5678"``), for messages.
    """

    at_index: int
    sbp: float
    dbp: float
    where: str = ""


@dataclass
class DeviceBPEvent:
    """The device's own ABP (a ``#BP`` line or ``'P'`` frame, docs/serial-protocol.md section
    11), reported only by a decoder made with ``device_bp=True``.

    Attributes
    ----------
    at_index : int
        Position in the block of the first sample after the record (as :class:`CuffEvent`).
    first : int
        The output number (since the device booted, at the model rate) of ``abp[0]``.
    fs : float
        The model rate (Hz).
    lag : int
        Model samples between an output and the signal it estimates: ``abp[i]`` is the ABP at
        ``(first + i - lag) / fs`` s after the boot's first device sample.
    abp : np.ndarray
        float64 mmHg, 0.01 mmHg resolution, NaN where the device claims no value.
    where : str
        Where it was read (``"line 1234"``, ``"byte 5678"``).
    """

    at_index: int
    first: int
    fs: float
    lag: int
    abp: np.ndarray
    where: str = ""


Event = GapEvent | ResetEvent | HeaderEvent | CuffEvent | DeviceBPEvent


@dataclass
class DecodedBlock:
    """Samples decoded from one :meth:`StreamDecoder.feed` call.

    Attributes
    ----------
    seq : np.ndarray
        int64 (n,), the sequence number of each sample (0..65535).
    values : np.ndarray
        float64 (n, n_channels): ``(raw - offset) * gain`` per the header in force; for
        third-party logs the raw numbers.
    events : list
        :class:`GapEvent`, :class:`ResetEvent`, :class:`HeaderEvent`, :class:`CuffEvent`, in
        stream order, each with ``at_index`` into ``seq``/``values``.
    header : StreamHeader or None
        The header describing the columns (one block never mixes two rates or channel sets).
    """

    seq: np.ndarray
    values: np.ndarray
    events: list = field(default_factory=list)
    header: StreamHeader | None = None

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def channels(self) -> list[str]:
        """Names of the columns of ``values``."""
        return list(self.header.channels) if self.header is not None else []


class _Segment:
    """Output under construction for one channel layout."""

    def __init__(self, header: StreamHeader | None) -> None:
        self.header = header
        self.seq: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.events: list = []
        self.n = 0

    def append(self, seq: np.ndarray, values: np.ndarray) -> None:
        if seq.size:
            self.seq.append(seq)
            self.values.append(values)
            self.n += seq.size

    def block(self) -> DecodedBlock:
        n_ch = self.header.n_channels if self.header is not None else 0
        if len(self.seq) == 1:  # one stretch (a live packet): its arrays as they are
            return DecodedBlock(seq=self.seq[0], values=self.values[0], events=self.events, header=self.header)
        seq = np.concatenate(self.seq) if self.seq else np.zeros(0, dtype=np.int64)
        values = np.concatenate(self.values) if self.values else np.zeros((0, n_ch), dtype=np.float64)
        return DecodedBlock(seq=seq, values=values, events=self.events, header=self.header)


def stream_detect_format(data: bytes, final: bool = False) -> str | None:
    """Which encoding a stream uses, from its first bytes (None: not decidable yet).

    The answer depends only on a prefix that ends where the decision is made, so it does
    not depend on how the stream is cut into chunks: each line is judged by its first
    :data:`_DETECT_LIMIT` + 1 bytes at most, and only :data:`_DETECT_GIVE_UP` bytes are
    looked at (the caller gives up after that many).

    - a byte outside printable ASCII before the first meaningful line ends -> ``"binary"``;
    - a line longer than :data:`_DETECT_LIMIT` bytes (longer than any line the text parsers
      accept) -> ``"text"``: the text parser rejects it as overlong and goes on;
    - blank lines, ``#`` comment lines and lines without digits or fields (banners) are
      skipped; the first other line decides: ``#EDGEBP``, or two edgebp header fields such
      as ``fs=``/``ch=`` (a reader that joined in the middle of the header line) ->
      ``"text"``; ``red=``/``ir=`` or ``IR[`` -> ``"max3010x"``; integers separated by commas
      -> ``"text"`` (a reader that joined mid-stream, before the next header);
    - a delimited row of names is a CSV/TSV header row only when the next meaningful line is
      a data row with the same number of cells (see
      :func:`~edgebp.runtime.protocol_logs.csv_row_confirms`) -> ``"csv"``; otherwise it was
      a banner (an ESP32 ROM banner has commas: ``rst:0x1 (POWERON_RESET),boot:0x13 (...)``)
      and detection goes on with the next line;
    - at the end of the stream, an undecided last line or a header row candidate without
      data gives ``"text"`` (whose parser counts what it cannot use).

    Examples
    --------
    >>> stream_detect_format(b"\\xa5\\x5aS")
    'binary'
    >>> stream_detect_format(b"Initializing...\\nred=1, ir=2\\n")
    'max3010x'
    >>> stream_detect_format(b"time\\tppg\\n") is None, stream_detect_format(b"time\\tppg\\n0.0\\t512\\n")
    (True, 'csv')
    >>> stream_detect_format(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\\n#EDGEBP v=1") is None
    True
    >>> stream_detect_format(b"#EDGEBP v=1")  is None
    True
    """
    data = data[:_DETECT_GIVE_UP]
    p = 0
    pending: bytes | None = None  # a CSV header row candidate waiting for its first data row
    while True:
        limit = p + _DETECT_LIMIT + 1
        nl = data.find(b"\n", p, limit)
        line = data[p:limit] if nl < 0 else data[p:nl]
        if line.translate(None, _TEXT_BYTES):
            return "binary"
        if nl < 0:
            if len(line) > _DETECT_LIMIT:
                return "text"  # a long run of text without newline: the text parser rejects it
            if not final:
                return None
            s = line.strip()
            if s and not (s.startswith(b"#") and not s.startswith(TEXT_MAGIC)):
                kind, _ = _detect_line(line.rstrip(b"\r"), s, pending)
                return kind or "text"
            return "text" if data.strip() else None
        s = line.strip()
        p = nl + 1
        if not s or (s.startswith(b"#") and not s.startswith(TEXT_MAGIC)):
            continue
        kind, pending = _detect_line(line.rstrip(b"\r"), s, pending)
        if kind is not None:
            return kind


def _detect_line(line: bytes, s: bytes, pending: bytes | None) -> tuple[str | None, bytes | None]:
    """One meaningful line: ``(format or None, header row candidate now pending)``."""
    if s.startswith(TEXT_MAGIC) or TEXT_MAGIC[1:] in s:  # also a header whose '#' was damaged
        return "text", None
    if len(_HEADER_FIELD_RE.findall(s)) >= 2:
        return "text", None  # the rest of an edgebp header line (joined mid-line)
    if pending is not None and csv_row_confirms(pending, line):
        return "csv", None
    kind = _classify_line(s)
    if kind is not None:
        return kind, None
    if csv_delimiter(s) is not None and csv_header_candidate(s):
        return None, s
    return None, None


# "key=" of edgebp header fields, as they appear in a header line (also its tail).
_HEADER_FIELD_RE = re.compile(rb"(?:^|\s)(?:v|fs|ch|units|bits|gain|offset|dev)=")


def _classify_line(s: bytes) -> str | None:
    """The formats one line decides by itself (a CSV header row needs the line after it)."""
    low = s.lower()
    if re.search(rb"(^|[\s,])(red|ir)\s*=", low) or re.search(rb"(^|\s)(r|ir)\[", low):
        return "max3010x"
    if re.fullmatch(rb"-?[0-9]+(,\s*-?[0-9]+)+", s):
        return "text"
    return None


#: How far behind the last accepted record a resent copy is recognised (records; the last
#: this many are kept, StreamDecoder._is_resend).
RESEND_BACK = 8


class StreamDecoder:
    """Incremental decoder of a device byte stream.

    Parameters
    ----------
    fmt : {"auto", "text", "binary", "max3010x", "csv"}
        Encoding; ``"auto"`` decides from the first bytes (see :func:`stream_detect_format`).
    fs : float, optional
        Sampling rate in Hz. Required for ``max3010x`` and ``csv`` logs, which do not carry
        it. For edgebp streams it is checked against the first header (a mismatch raises).
    channel_map : dict, optional
        Source field/column/channel name -> output name, e.g. ``{"ir": "ppg", "red": "ppg_red"}``.
        Selects and renames channels (output order = map order). Required for ``max3010x``
        (boards swap red and IR). Source names match case-insensitively.

    Notes
    -----
    Sequence rules (uint16, modulo 65536), for a record with seq ``s`` after the last
    accepted ``last``, ``d = (s - last) mod 65536``:

    - ``d == 1``: next sample. ``d == 0``: duplicate, dropped (``"duplicate"``).
    - ``2 <= d <= 32768``: a gap of ``d - 1`` samples (:class:`GapEvent`).
    - otherwise a backwards jump: to ``s <= 255`` it is a device restart
      (:class:`ResetEvent`, nothing missing); to a larger ``s`` the record is held and
      accepted as a restart only if the next record continues from it (``s + 1``).
    - edgebp *text* has no checksum, so every jump (forward too) is held until the next good
      line: it is confirmed when that line continues from it (``s + 1``, allowing for lines
      rejected in between) or lies further ahead in order (another gap); otherwise it was
      a corrupted sequence number and is rejected (``"bad_seq"``).

    A rejected record just before a gap is taken to be one of the gap's samples, so
    ``samples_parsed + samples_rejected + samples_missing`` equals the number of records
    the device sent (plus any garbage lines read as records).

    Examples
    --------
    >>> dec = StreamDecoder(fmt="max3010x", fs=100, channel_map={"ir": "ppg"})
    >>> b = dec.feed(b"red=5, ir=7, HR=61\\nred=6, ir=")
    >>> b.values.tolist(), b.channels
    ([[7.0]], ['ppg'])
    >>> dec.finish().values.shape, dec.counts["rejected_reasons"]
    ((0, 1), {'truncated': 1})
    """

    def __init__(self, fmt: str = "auto", fs: float | None = None, channel_map: dict[str, str] | None = None,
                 device_bp: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown stream format {fmt!r}; valid formats: {', '.join(FORMATS)}")
        if fs is not None:
            fs = float(fs)
            if not (np.isfinite(fs) and fs > 0):
                raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs!r}")
        if channel_map is not None:
            channel_map = {str(k): str(v) for k, v in dict(channel_map).items()}
            targets = list(channel_map.values())
            if not channel_map or any(not t for t in targets) or len(set(targets)) != len(targets):
                raise ValueError(f"channel_map must map each source name to a distinct non-empty name, got {channel_map}")
        self.fmt = fmt
        self.fs = fs
        self.channel_map = channel_map
        # off: #BP lines are comments and 'P' frames an unknown type, exactly as for readers
        # that predate them (their consumers never see a DeviceBPEvent)
        self.device_bp = bool(device_bp)
        self._counts: dict = {
            "format": None, "bytes_in": 0, "samples_parsed": 0, "samples_rejected": 0,
            "rejected_reasons": {}, "samples_missing": 0, "duplicates_dropped": 0, "resets": 0,
            "gaps": 0, "headers": 0, "headers_rejected": 0, "lines_ignored": 0, "bytes_skipped": 0,
            "cuff_readings": 0, "cuff_rejected": 0, "cuff_rejected_reasons": {},
            "device_bp_records": 0, "device_bp_values": 0, "device_bp_rejected": 0, "device_bp_rejected_reasons": {},
        }
        self._parser = None
        self._pre = bytearray()  # bytes held until the format is known
        self._finished = False
        self._confirm_all = False
        self._source_header: StreamHeader | None = None
        self._header: StreamHeader | None = None
        self._columns: list[int] | None = None
        self._gain = self._offset = None
        self._plain = False
        self._source_n = -1
        self._last: int | None = None
        # the last accepted records (seq, values) by block, newest last: a record just behind
        # the last one that repeats one of them is a resend, not a device restart (see _step)
        self._tail: list[tuple[np.ndarray, np.ndarray]] = []
        self._held: tuple[int, np.ndarray] | None = None
        self._pending_rejects = 0
        self._held_rejects = 0
        self._held_events: list = []  # cuff readings and device-BP records after the held record
        self._segments: list[_Segment] = [_Segment(None)]
        self._logged: dict[str, int] = {}
        if fmt != "auto":
            self._start(fmt)

    # ------------------------------------------------------------------ public API
    @property
    def header(self) -> StreamHeader | None:
        """The header in force (after the channel map), or None before the first one."""
        return self._header

    @property
    def counts(self) -> dict:
        """Accounts of everything read (a copy).

        Keys: ``format``, ``bytes_in``, ``samples_parsed`` (accepted samples),
        ``samples_rejected`` and ``rejected_reasons`` (reason -> count; reasons are
        ``malformed, crc, truncated, overlong, range, no_header, duplicate, bad_seq``),
        ``samples_missing`` (never seen, from gaps), ``duplicates_dropped``, ``resets``,
        ``gaps``, ``headers``, ``headers_rejected``, ``lines_ignored`` (blank, comment,
        banner lines), ``bytes_skipped`` (binary bytes outside valid frames),
        ``cuff_readings`` (cuff readings accepted), ``cuff_rejected`` and
        ``cuff_rejected_reasons`` (reasons ``malformed, crc, truncated, range, order,
        no_header``). Cuff readings are events, not records: they never count as samples.
        With ``device_bp=True`` also ``device_bp_records``, ``device_bp_values``,
        ``device_bp_rejected`` and ``device_bp_rejected_reasons`` (``malformed, crc,
        truncated, no_header``); zero otherwise. They are events too.
        """
        out = dict(self._counts)
        out["rejected_reasons"] = dict(self._counts["rejected_reasons"])
        out["cuff_rejected_reasons"] = dict(self._counts["cuff_rejected_reasons"])
        out["device_bp_rejected_reasons"] = dict(self._counts["device_bp_rejected_reasons"])
        return out

    @property
    def pending(self) -> bool:
        """True when samples or events already decoded wait to be returned, which happens
        when a header changed the channel layout within a chunk (get them with
        ``feed(b"")``; :func:`decode_stream` does this for you)."""
        return any(seg.n or seg.events for seg in self._segments)

    def feed(self, data: bytes) -> DecodedBlock:
        """Decode ``data`` (any length, any boundary) and return the samples completed so far.

        A record whose sequence jump awaits confirmation is returned with a later block.
        """
        if self._packet_ok and data.__class__ is bytes:
            block = self._packet(data)
            if block is not None:
                return block
        if self._finished and data:
            raise ValueError("feed() after finish(): create a new StreamDecoder for a new stream")
        data = bytes(data)
        self._counts["bytes_in"] += len(data)
        if data:
            if self._parser is None:
                self._pre += data
                kind = stream_detect_format(bytes(self._pre))
                if kind is not None:
                    self._start(kind)
                elif len(self._pre) >= _DETECT_GIVE_UP:
                    # stream_detect_format reads this many bytes at most, so giving up here
                    # does not depend on how the stream was chunked.
                    raise ValueError(
                        f"could not recognise the stream format in its first {_DETECT_GIVE_UP} bytes "
                        f"(no edgebp header, frame, MAX3010x or CSV line); give the format "
                        f"explicitly (one of {', '.join(FORMATS[1:])})")
            else:
                self._parser.feed(data)
        return self._pop()

    @property
    def _packet_ok(self) -> bool:
        # the decoder's own state allows the one-pass packet path (the text parser's is
        # checked by TextParser.packet): nothing held, nothing waiting in a segment
        return (self._parser.__class__ is TextParser and self._held is None and not self._finished
                and len(self._segments) == 1 and not self._segments[0].n and not self._segments[0].events
                and self._header is not None)

    def _packet(self, data: bytes) -> DecodedBlock | None:
        """A live packet of good records that each continue the one before, decoded in one
        pass: the same block, counts and state as the general path
        (:meth:`TextParser.feed <edgebp.runtime.protocol_text.TextParser.feed>` ->
        :meth:`on_records` -> :meth:`_accept` -> :meth:`_pop`) gives it, without its calls
        and small arrays; None (nothing changed) sends ``data`` there."""
        p = self._parser
        got = p.packet(data)
        if got is None:
            return None
        vals, n, tail = got
        width = p._pk[2]
        if n > 64 or width - 1 != self._source_n:
            return None
        prev = vals[0] - 1 if self._last is None else self._last
        for x in vals[::width]:
            if (x - prev) % 65536 != 1:
                return None
            prev = x
        arr = np.array(vals, dtype=np.int64).reshape(n, width)
        # as on_records: (raw[:, columns] - offset) * gain, raw = arr[:, 1:]
        if self._plain:
            values = arr[:, 1:] * self._gain
        else:
            values = (arr[:, 1:][:, self._columns] - self._offset) * self._gain
        c = self._counts
        c["bytes_in"] += len(data)
        c["samples_parsed"] += n
        p.line_no += n
        if tail or p.buf:  # what LineParser.feed leaves buffered: the line this read begins
            p.buf[:] = tail
        self._last = prev
        self._pending_rejects = 0
        self._tail_add(arr[:, 0], values)
        # _pop would hand over this segment's header and start an equal empty segment
        return DecodedBlock(seq=arr[:, 0].copy(), values=values, events=[], header=self._segments[0].header)

    def finish(self) -> DecodedBlock:
        """End of stream: decode what is buffered; an unterminated last line or frame is
        counted as rejected ``"truncated"``. Held records are accepted.

        If the last chunk changed the channel layout, ``pending`` is still True afterwards:
        call ``finish()`` again for the next block (:func:`decode_stream` does)."""
        if not self._finished:
            self._finished = True
            if self._parser is None and self._pre:
                kind = stream_detect_format(bytes(self._pre), final=True)
                if kind is None:
                    log.warning("stream ended after %d bytes before its format could be recognised", len(self._pre))
                    self._counts["lines_ignored"] += 1
                    self._pre.clear()
                else:
                    self._start(kind)
            if self._parser is not None:
                self._parser.finish()
            self._release_held()
            reasons = self._counts["rejected_reasons"]
            if reasons or self._counts["samples_missing"]:
                log.info("stream decoded: %d samples, %d rejected %s, %d missing",
                         self._counts["samples_parsed"], self._counts["samples_rejected"], reasons,
                         self._counts["samples_missing"])
        return self._pop()

    # ------------------------------------------------------------------ set-up
    def _start(self, kind: str) -> None:
        if kind in ("max3010x", "csv") and self.fs is None:
            name = "a MAX3010x log" if kind == "max3010x" else "a CSV/TSV log"
            raise ValueError(
                f"the stream is {name}, which carries no sampling rate: give fs "
                "(edgebp run --fs <Hz>) and a channel map (--channel-map ir=ppg,red=ppg_red); "
                "the rate is never guessed")
        self._counts["format"] = kind
        log.debug("stream format: %s", kind)
        if kind == "text":
            self._parser = TextParser(self)
            self._parser.device_bp = self.device_bp
            self._confirm_all = True
        elif kind == "binary":
            self._parser = BinaryParser(self)
            self._parser.device_bp = self.device_bp
        elif kind == "max3010x":
            if not self.channel_map:
                raise ValueError(
                    "the stream is a MAX3010x log: give a channel map (--channel-map ir=ppg,red=ppg_red); "
                    "boards differ on which LED is red and which is IR, so it is never guessed")
            self._parser = Max3010xParser(self, self.fs, self.channel_map)
        else:
            self._parser = CsvParser(self, self.fs, self.channel_map)
        if self._pre:
            pre = bytes(self._pre)
            self._pre.clear()
            self._parser.feed(pre)

    # ------------------------------------------------------------------ sink interface
    def on_header(self, header: StreamHeader, where: str, mapped: bool = False) -> None:
        if mapped:
            out, columns = header, list(range(header.n_channels))
        else:
            m = header_apply_channel_map(header, self.channel_map)
            out, columns = m.header, m.columns
        if self._header is None and self.fs is not None and not mapped and out.fs != self.fs:
            raise ValueError(f"{where}: the stream header says fs={out.fs:g} Hz but fs={self.fs:g} Hz was given")
        previous = self._header
        self._counts["headers"] += 1
        if previous is not None and previous.layout() != out.layout():
            log.warning("%s: stream header changed %s", where, ", ".join(out.differences(previous)))
            self._release_held()
            seg = self._segments[-1]
            if seg.n:
                self._segments.append(_Segment(out))
        elif previous is not None and previous != out:
            log.info("%s: stream header changed %s", where, ", ".join(out.differences(previous)))
        seg = self._segments[-1]
        seg.header = out
        seg.events.append(HeaderEvent(header=out, at_index=seg.n, previous=previous))
        self._source_header = header
        self._header = out
        self._columns = columns
        self._gain = np.asarray(out.gain, dtype=np.float64)
        self._offset = np.asarray(out.offset, dtype=np.float64)
        # the columns as they come and no offset (the usual layout): (raw - 0.0) * gain is
        # raw * gain, bit for bit, without the column copy (the packet path uses this)
        self._plain = columns == list(range(header.n_channels)) and not self._offset.any()
        self._source_n = header.n_channels

    def on_header_rejected(self, message: str, where: str) -> None:
        self._counts["headers_rejected"] += 1
        log.warning("%s: header rejected: %s", where, message)

    def on_ignored(self, what: str, n: int = 1) -> None:
        self._counts["lines_ignored"] += n

    def on_skipped(self, n_bytes: int) -> None:
        self._counts["bytes_skipped"] += n_bytes

    def on_cuff(self, sbp: float, dbp: float, where: str) -> None:
        lo, hi = CUFF_RANGE_MMHG
        if self._header is None:
            self.on_cuff_rejected("no_header", "before any stream header", where)
            return
        for name, x in (("SBP", sbp), ("DBP", dbp)):
            if not (math.isfinite(x) and lo <= x <= hi):
                self.on_cuff_rejected("range", f"{name} {x:g} is outside {lo:g}..{hi:g} mmHg", where)
                return
        if not dbp < sbp:
            self.on_cuff_rejected("order", f"DBP {dbp:g} is not below SBP {sbp:g}", where)
            return
        self._counts["cuff_readings"] += 1
        ev = CuffEvent(at_index=0, sbp=float(sbp), dbp=float(dbp), where=where)
        if self._held is not None:
            # The held record came before the reading: place it once the record is decided.
            self._held_events.append(ev)
        else:
            self._place(ev)
        log.debug("%s: cuff reading %g/%g mmHg", where, sbp, dbp)

    def _count_rejected(self, kind: str, what: str, reason: str, message: str, where: str) -> None:
        """Count a rejected ``kind`` record (``cuff``, ``device_bp``) by reason; warn about the
        first few of each reason, then log at debug level."""
        c = self._counts
        c[f"{kind}_rejected"] += 1
        reasons = c[f"{kind}_rejected_reasons"]
        reasons[reason] = reasons.get(reason, 0) + 1
        key = f"{kind}:{reason}"
        k = self._logged.get(key, 0)
        self._logged[key] = k + 1
        if k < _LOG_LIMIT:
            log.warning("%s: %s rejected: %s%s", where, what, message, "; further ones logged at debug level" if k == _LOG_LIMIT - 1 else "")
        else:
            log.debug("%s: %s rejected: %s", where, what, message)

    def on_cuff_rejected(self, reason: str, message: str, where: str) -> None:
        self._count_rejected("cuff", "cuff reading", reason, message, where)

    def on_device_bp(self, first: int, fs: float, lag: int, abp: np.ndarray, where: str) -> None:
        if self._header is None:
            self.on_device_bp_rejected("no_header", "before any stream header", where)
            return
        self._counts["device_bp_records"] += 1
        self._counts["device_bp_values"] += int(abp.size)
        ev = DeviceBPEvent(at_index=0, first=int(first), fs=float(fs), lag=int(lag), abp=abp, where=where)
        if self._held is not None:
            # as a cuff reading: it came after the held record, placed once that is decided
            self._held_events.append(ev)
        else:
            self._place(ev)

    def on_device_bp_rejected(self, reason: str, message: str, where: str) -> None:
        self._count_rejected("device_bp", "device BP record", reason, message, where)

    def _place(self, ev: "CuffEvent | DeviceBPEvent") -> None:
        seg = self._segments[-1]
        ev.at_index = seg.n
        seg.events.append(ev)

    def _place_held_events(self) -> None:
        events, self._held_events = self._held_events, []
        for ev in events:
            self._place(ev)

    def on_records(self, seq: np.ndarray, raw: np.ndarray, status: np.ndarray | None,
                   where: Callable[[int], str] | None = None) -> None:
        n = seq.shape[0]
        if n == 0:
            return
        if self._header is not None and raw.shape[1] == self._source_header.n_channels:
            values = (raw[:, self._columns] - self._offset) * self._gain
        else:  # only rejected records can arrive without a header
            values = np.zeros((n, self._header.n_channels if self._header else 0))
        if (n <= 64 and self._held is None and (status is None or not status.any())
                and self._header is not None and raw.shape[1] == self._source_header.n_channels):
            # a short run of good records (a live packet): when each continues the one
            # before, they are accepted together, as the general path below would
            sl = seq.tolist()
            prev = sl[0] - 1 if self._last is None else self._last
            for x in sl:
                if (x - prev) % 65536 != 1:
                    break
                prev = x
            else:
                self._accept(seq, values)
                return
        ok = np.ones(n, dtype=bool) if status is None else (status == OK)
        # Break points: a rejected record, or a good one that does not simply continue the
        # good record before it. Between break points, records are accepted in bulk.
        brk = ~ok
        brk[1:] |= ~ok[:-1] | (np.diff(seq) % 65536 != 1)
        starts = np.flatnonzero(brk)
        i = 0
        while i < n:
            if ok[i] and self._held is None and (self._last is None or (int(seq[i]) - self._last) % 65536 == 1):
                k = int(np.searchsorted(starts, i, side="right"))
                j = int(starts[k]) if k < starts.size else n
                self._accept(seq[i:j], values[i:j])
                i = j
                continue
            self._step(int(seq[i]), values[i], OK if status is None else int(status[i]), where, i)
            i += 1

    # ------------------------------------------------------------------ sequence rules
    def _accept(self, seq: np.ndarray, values: np.ndarray) -> None:
        self._segments[-1].append(seq, values)
        self._counts["samples_parsed"] += seq.size
        self._last = int(seq[-1])
        self._pending_rejects = 0
        self._tail_add(seq, values)

    def _tail_add(self, seq: np.ndarray, values: np.ndarray) -> None:
        t = self._tail
        t.append((seq[-RESEND_BACK:], values[-RESEND_BACK:]))  # views: nothing copied
        if len(t) > RESEND_BACK:
            del t[0]

    def _is_resend(self, s: int, v: np.ndarray) -> bool:
        """Whether record ``s`` with values ``v`` repeats one of the last :data:`RESEND_BACK`
        accepted records (the caller checks that ``s`` lies at most that far behind).

        Why: a frame cut by its last byte, when that byte is 0xA5 (a CRC byte), completes
        with the next frame's first sync byte into a valid copy of itself; the parser then
        decodes the intact frame after it too (nothing is lost). Such a copy of the frame
        before the previous one arrives one behind (32, 33, 32, 33): without this check the
        small backward step read as a device restart. The same seq with the same values just
        behind the last one is the same record again (a device that restarts jumps back to
        near 0 from wherever it was, and stays a restart when it sends the same samples
        again, as a replayed log does)."""
        for seq, values in reversed(self._tail):
            hit = np.flatnonzero(seq == s)
            if hit.size and np.array_equal(values[hit[-1]], v, equal_nan=True):
                return True
        return False

    def _accept_one(self, s: int, v: np.ndarray) -> None:
        self._accept(np.array([s], dtype=np.int64), v[None, :])

    def _reject(self, reason: str, where: str | None, pending: bool = True) -> None:
        c = self._counts
        c["samples_rejected"] += 1
        c["rejected_reasons"][reason] = c["rejected_reasons"].get(reason, 0) + 1
        if pending:
            # Rejections after a held record belong to the stretch after it.
            if self._held is not None:
                self._held_rejects += 1
            else:
                self._pending_rejects += 1
        k = self._logged.get(reason, 0)
        self._logged[reason] = k + 1
        if k < _LOG_LIMIT:
            log.warning("%s: record rejected (%s)%s", where or "stream", reason,
                        "; further ones logged at debug level" if k == _LOG_LIMIT - 1 else "")
        else:
            log.debug("%s: record rejected (%s)", where or "stream", reason)

    def _step(self, s: int, v: np.ndarray, st: int, where, i: int) -> None:
        if st != OK:
            self._reject(REASONS[st], where(i) if where is not None else None)
            return
        if self._held is not None:
            hs, hv = self._held
            dh = (s - hs) % 65536
            if dh == 0:
                self._reject("duplicate", where(i) if where is not None else None, pending=False)
                self._counts["duplicates_dropped"] += 1
                return
            between = self._held_rejects
            self._held = None
            self._held_rejects = 0
            h_fwd = (hs - self._last) % 65536
            s_fwd = (s - self._last) % 65536
            if dh <= 1 + between or (h_fwd <= HALF_RANGE and s_fwd <= HALF_RANGE and h_fwd < s_fwd):
                # Confirmed: this record continues from the held one (allowing for the
                # records rejected in between, which then lie in the stretch after it), or
                # both lie ahead in order (two gaps in a row).
                self._jump(hs, hv)
                self._pending_rejects = between
            else:
                self._pending_rejects += between
                self._reject("bad_seq", f"seq {hs} (after {self._last}, before {s})")
            self._place_held_events()
        if self._last is None:
            self._accept_one(s, v)
            return
        d = (s - self._last) % 65536
        if d == 1:
            self._accept_one(s, v)
        elif d == 0 or (d >= 65536 - RESEND_BACK and self._is_resend(s, v)):
            self._reject("duplicate", where(i) if where is not None else None, pending=False)
            self._counts["duplicates_dropped"] += 1
        elif self._confirm_all or (d > HALF_RANGE and s > RESET_MAX_SEQ):
            self._held = (s, v)
            self._held_rejects = 0
        else:
            self._jump(s, v)

    def _jump(self, s: int, v: np.ndarray) -> None:
        """Accept ``s`` after a sequence jump from the last accepted sample."""
        seg = self._segments[-1]
        d = (s - self._last) % 65536
        if d <= HALF_RANGE:
            n_missing = d - 1
            seg.events.append(GapEvent(after_seq=self._last, n_missing=n_missing, at_index=seg.n))
            self._counts["gaps"] += 1
            self._counts["samples_missing"] += max(0, n_missing - self._pending_rejects)
            log.info("gap of %d samples after seq %d", n_missing, self._last)
        else:
            seg.events.append(ResetEvent(at_index=seg.n, from_seq=self._last, to_seq=s))
            self._counts["resets"] += 1
            log.warning("device restart: seq %d -> %d", self._last, s)
        self._accept_one(s, v)

    def _release_held(self) -> None:
        if self._held is not None:
            hs, hv = self._held
            between = self._held_rejects
            self._held = None
            self._held_rejects = 0
            self._jump(hs, hv)
            self._pending_rejects = between
            self._place_held_events()

    # ------------------------------------------------------------------ output
    def _pop(self) -> DecodedBlock:
        seg = self._segments.pop(0)
        if not self._segments:
            self._segments.append(_Segment(seg.header))
        return seg.block()


def decode_stream(chunks: Iterable[bytes], fmt: str = "auto", fs: float | None = None,
                  channel_map: dict[str, str] | None = None,
                  decoder: StreamDecoder | None = None) -> Iterator[DecodedBlock]:
    """Decode an iterable of byte chunks (e.g. from :mod:`edgebp.runtime.sources`), yielding
    non-empty blocks (or blocks with events) and finishing at the end.

    Examples
    --------
    >>> h = StreamHeader(250, ["ppg"], ["NU"], [18], [1.0], [0.0])
    >>> data = header_encode_text(h) + samples_encode_text(np.arange(4), np.arange(4)[:, None])
    >>> sum(len(b) for b in decode_stream([data[:30], data[30:]]))
    4
    """
    dec = decoder if decoder is not None else StreamDecoder(fmt=fmt, fs=fs, channel_map=channel_map)
    for chunk in chunks:
        while True:
            block = dec.feed(chunk)
            chunk = b""
            if len(block) or block.events:
                yield block
            if not dec.pending:
                break
    while True:
        block = dec.finish()
        if len(block) or block.events:
            yield block
        if not dec.pending:
            break


def decode_bytes(data: bytes, fmt: str = "auto", fs: float | None = None,
                 channel_map: dict[str, str] | None = None) -> tuple[list[DecodedBlock], dict]:
    """Decode a complete stream held in memory: ``(blocks, counts)``.

    Examples
    --------
    >>> blocks, counts = decode_bytes(b"red=1, ir=2\\n", fs=50, channel_map={"red": "ppg_red", "ir": "ppg"})
    >>> blocks[0].values.tolist(), counts["samples_parsed"]
    ([[1.0, 2.0]], 1)
    """
    dec = StreamDecoder(fmt=fmt, fs=fs, channel_map=channel_map)
    blocks = list(decode_stream([data], decoder=dec))
    return blocks, dec.counts


from edgebp.runtime.protocol_bench import decoder_throughput  # noqa: E402  (needs the names above)
