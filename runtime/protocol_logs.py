"""Third-party text logs of real boards: SparkFun MAX3010x lines and CSV/TSV with a header row.

These logs carry neither a sampling rate nor sequence numbers, and boards disagree on which
LED is "red" and which is "IR". So the user must give the rate (``fs``) and say which field
is which channel (``channel_map``, field name -> canonical name); nothing is guessed.
Sequence numbers are synthesised by counting sample lines, so a line that cannot be parsed
still takes its slot in time (it becomes a one-sample gap downstream instead of shifting
everything after it). Values are raw numbers (gain 1, offset 0, units unknown).

Accepted MAX3010x line forms (field names are matched case-insensitively)::

    red=123, ir=456                       # SparkFun Example8 (extra HR=.., SPO2=.. ignored)
    IR=456, BPM=71.20, Avg BPM=70         # SparkFun Example5
     R[123] IR[456] G[789]                # SparkFun Example1

Lines with neither ``=`` nor ``[`` (banners such as "Initializing...") are ignored.

Examples
--------
>>> import numpy as np
>>> samples_encode_max3010x(np.array([10, 11]), np.array([20, 21]))
b'red=10, ir=20\\nred=11, ir=21\\n'
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np

from edgebp.runtime.protocol_common import MAX_LINE_BYTES, OK, SEQ_MODULO, STATUS, LineParser, Sink
from edgebp.runtime.protocol_header import StreamHeader

log = logging.getLogger(__name__)

_BRACKET_RE = re.compile(rb"([A-Za-z][A-Za-z0-9_]*)\[\s*([^\]]*?)\s*\]")


def samples_encode_max3010x(red: np.ndarray, ir: np.ndarray) -> bytes:
    """Lines ``red=<r>, ir=<i>`` as printed by SparkFun's MAX3010x SpO2 example (no header, no seq).

    Parameters
    ----------
    red, ir : np.ndarray
        Integer LED counts, same length.

    Examples
    --------
    >>> samples_encode_max3010x(np.array([1]), np.array([2]))
    b'red=1, ir=2\\n'
    """
    red = np.asarray(red)
    ir = np.asarray(ir)
    if red.shape != ir.shape or red.ndim != 1:
        raise ValueError(f"samples_encode_max3010x: red and ir must be 1-D of equal length, got {red.shape} and {ir.shape}")
    for name, arr in (("red", red), ("ir", ir)):
        if arr.size and arr.dtype.kind not in "iu" and not np.all(arr == np.round(arr)):
            raise ValueError(f"samples_encode_max3010x: {name} must be integer counts, got dtype {arr.dtype}")
    flat = np.column_stack([red, ir]).astype(np.int64).ravel().tolist()
    return (("red=%d, ir=%d\n" * red.size) % tuple(flat)).encode("ascii")


def _synth_header(fs: float, channels: list[str], device: str) -> StreamHeader:
    n = len(channels)
    return StreamHeader(fs=fs, channels=channels, units=[""] * n, adc_bits=[0] * n,
                        gain=[1.0] * n, offset=[0.0] * n, device=device)


def _number(text: bytes) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v


#: Cells that stand for "no value" in a CSV/TSV log.
_MISSING_CELLS = (b"", b"na", b"nan")
# "key=" tokens of the edgebp header fields: a line holding one is (part of) an edgebp
# header, e.g. the tail of a header line when a reader joined mid-line, never a CSV header row.
_HEADER_KEY_RE = re.compile(rb"(?:^|[\s,])(?:v|fs|ch|units|bits|gain|offset|dev)=")


def csv_delimiter(line: bytes) -> bytes | None:
    """The delimiter a CSV/TSV header row uses: tab, else comma, else semicolon, else None
    (whitespace)."""
    return next((d for d in (b"\t", b",", b";") if d in line), None)


def csv_cells(line: bytes, delim: bytes | None) -> list[bytes]:
    """The stripped cells of ``line`` (``\r`` already removed); with a delimiter, trailing
    delimiters are kept, so an empty last cell is a cell."""
    if delim is None:
        return line.split()
    return [p.strip() for p in line.strip(b" ").split(delim)]


def _is_missing(cell: bytes) -> bool:
    return cell.lower() in _MISSING_CELLS


def csv_header_candidate(line: bytes) -> bool:
    """Whether ``line`` may be a CSV/TSV header row: names with letters, no cell holding a
    number or standing for a missing value, and no edgebp header field (``fs=``, ``ch=``...).

    It is only *taken* as the header row when the next row confirms it
    (:func:`csv_row_confirms`): a boot banner with a comma (``rst:0x1 (POWERON_RESET),boot:0x13``)
    passes this test but is followed by more banner lines, not by data.

    Examples
    --------
    >>> csv_header_candidate(b"time,ppg"), csv_header_candidate(b"0.1,5"), csv_header_candidate(b"gain=1,1 offset=0,0")
    (True, False, False)
    """
    s = line.strip()
    if not s or not re.search(rb"[A-Za-z]", s) or _HEADER_KEY_RE.search(s):
        return False
    cells = csv_cells(s, csv_delimiter(s))
    return not any(_is_missing(c) or _number(c) is not None for c in cells)


def csv_row_confirms(header: bytes, row: bytes) -> bool:
    """Whether ``row`` is a data row for the header row candidate ``header``: the same number
    of cells (by the header's delimiter), and a number in one of them (or every cell empty or
    ``NA``).

    Examples
    --------
    >>> csv_row_confirms(b"time,ppg", b"0.1,5"), csv_row_confirms(b"mode:DIO, clock div:1", b"load:0x3fff0030,len:1184")
    (True, False)
    """
    delim = csv_delimiter(header.strip())
    hcells = csv_cells(header.strip(), delim)
    cells = csv_cells(row, delim)
    if len(cells) != len(hcells):
        return False
    return all(_is_missing(c) for c in cells) or any(_number(c) is not None for c in cells)


class _LogParser(LineParser):
    """Common part of the third-party log parsers: synthesised seq and record batching."""

    device = "log"

    def __init__(self, sink: Sink, fs: float) -> None:
        super().__init__(sink)
        self.fs = float(fs)
        self.count = 0  # sample lines seen: the synthesised sequence number
        self.header: StreamHeader | None = None
        self._seq: list[int] = []
        self._raw: list[list[float]] = []
        self._stat: list[int] = []
        self._where: list[int] = []

    @property
    def n_channels(self) -> int:
        return self.header.n_channels if self.header is not None else 0

    def _add(self, values: list[float] | None, status: int, line_no: int) -> None:
        self._seq.append(self.count % SEQ_MODULO)
        self.count += 1
        self._raw.append(values if values is not None else [0.0] * self.n_channels)
        self._stat.append(status)
        self._where.append(line_no)

    def _flush(self) -> None:
        if not self._stat:
            return
        where = self._where
        self.sink.on_records(
            np.array(self._seq, dtype=np.int64),
            np.array(self._raw, dtype=np.float64).reshape(len(self._stat), self.n_channels),
            np.array(self._stat, dtype=np.int8),
            lambda k: f"line {where[k]}",
        )
        self._seq, self._raw, self._stat, self._where = [], [], [], []

    def overlong(self, line_no: int) -> None:
        self._add(None, STATUS["overlong"], line_no)
        self._flush()


class Max3010xParser(_LogParser):
    """Incremental parser of SparkFun MAX3010x serial logs (see module docstring)."""

    device = "max3010x"

    def __init__(self, sink: Sink, fs: float, channel_map: dict[str, str]) -> None:
        super().__init__(sink, fs)
        if not channel_map:
            raise ValueError("a MAX3010x log needs a channel map, e.g. {'ir': 'ppg', 'red': 'ppg_red'}: "
                             "boards differ on which LED is which, so it is never guessed")
        self.keys = [k.lower().encode("ascii") for k in channel_map]
        self.header = _synth_header(self.fs, list(channel_map.values()), self.device)
        sink.on_header(self.header, "start of log", mapped=True)

    def _fields(self, s: bytes) -> dict[bytes, bytes]:
        if b"[" in s:
            return {k.lower(): v for k, v in _BRACKET_RE.findall(s)}
        out = {}
        for part in s.split(b","):
            key, sep, value = part.partition(b"=")
            if sep:
                out[key.strip().lower()] = value.strip()
        return out

    def lines(self, chunk: bytes, base_line: int) -> None:
        for i, line in enumerate(chunk.split(b"\n")[:-1]):
            line_no = base_line + i + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            s = line.strip()
            if not s:
                self.sink.on_ignored("blank line")
                continue
            if len(line) > MAX_LINE_BYTES:
                self._add(None, STATUS["overlong"], line_no)
                continue
            if b"=" not in s and b"[" not in s:
                self.sink.on_ignored("banner line")
                log.debug("line %d: ignored (no fields): %r", line_no, s[:80])
                continue
            fields = self._fields(s)
            values = []
            for key in self.keys:
                v = _number(fields[key]) if key in fields else None
                if v is None or not math.isfinite(v):
                    values = None
                    break
                values.append(v)
            self._add(values, OK if values is not None else STATUS["malformed"], line_no)
        self._flush()

    def partial(self, data: bytes, line_no: int) -> None:
        s = data.strip()
        if not s:
            self.sink.on_ignored("blank line")
        elif b"=" not in s and b"[" not in s:
            self.sink.on_ignored("banner line")
        else:
            self._add(None, STATUS["truncated"], line_no)
            self._flush()


class CsvParser(_LogParser):
    """Incremental parser of delimited logs with a header row (CSV, TSV, ';' or spaces).

    The header row is the first row of names (:func:`csv_header_candidate`) that the next
    row confirms as data (:func:`csv_row_confirms`); lines before it (boot banners, the rest
    of a line the reader joined in the middle of) are ignored and counted in
    ``lines_ignored``. The delimiter is taken from the header row: tab, else comma, else
    semicolon, else whitespace. Empty cells and ``nan``/``NA`` become NaN; a row in which
    every cell is empty or NA carries no value at all and is a rejected sample (``"empty"``,
    it keeps its slot in time, so a one-sample gap follows). A later row of names (no numeric
    or missing-value cell) holding the mapped columns is a repeated header, e.g. two logs
    concatenated.
    """

    device = "csv"

    def __init__(self, sink: Sink, fs: float, channel_map: dict[str, str] | None) -> None:
        super().__init__(sink, fs)
        self.channel_map = dict(channel_map) if channel_map else None
        self.columns: list[str] | None = None
        self.delim: bytes | None = None
        self.cols: list[int] = []
        self._pending: tuple[bytes, int] | None = None  # header row candidate, its line number

    def _split(self, s: bytes) -> list[bytes]:
        parts = s.split(self.delim) if self.delim is not None else s.split()
        return [p.strip() for p in parts]

    def _header_row(self, s: bytes, line_no: int, first: bool) -> bool:
        if first:
            self.delim = csv_delimiter(s)
        names = [p.decode("utf-8", "replace") for p in self._split(s)]
        lower = [n.lower() for n in names]
        if self.channel_map:
            missing = [k for k in self.channel_map if k.lower() not in lower]
            if missing:
                if first:
                    raise ValueError(f"line {line_no}: the log has no column(s) {missing} asked for by the "
                                     f"channel map; its header row has {names}")
                return False
            cols = [lower.index(k.lower()) for k in self.channel_map]
            channels = list(self.channel_map.values())
        else:
            cols = list(range(len(names)))
            channels = names
        self._flush()
        self.columns, self.cols = lower, cols
        self.header = _synth_header(self.fs, channels, self.device)
        self.sink.on_header(self.header, f"line {line_no}", mapped=True)
        return True

    def lines(self, chunk: bytes, base_line: int) -> None:
        for i, line in enumerate(chunk.split(b"\n")[:-1]):
            line_no = base_line + i + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            s = line.strip()
            if not s:
                self.sink.on_ignored("blank line")
                continue
            if s.startswith(b"#"):
                self.sink.on_ignored("comment line")
                continue
            if self.columns is None and not self._before_header(line, s, line_no):
                continue
            if len(line) > MAX_LINE_BYTES:
                self._add(None, STATUS["overlong"], line_no)
                continue
            if self.delim is not None:
                s = line.strip(b" ")  # keep trailing delimiters: an empty last cell is a cell
            parts = self._split(s)
            if all(_is_missing(p) for p in parts):
                # Every cell empty or NA: a sample without any value (the sensor had none),
                # not a header row: rejected, it keeps its slot so that a gap is reported.
                self._add(None, STATUS["empty"], line_no)
                continue
            numbers = [_number(p) for p in parts]
            if all(v is None for v in numbers):
                # No numeric cell: a repeated header row, or a text line to skip.
                if not self._header_row(s, line_no, first=False):
                    self.sink.on_ignored("text line")
                continue
            if len(parts) != len(self.columns):
                self._add(None, STATUS["malformed"], line_no)
                continue
            values = []
            for c in self.cols:
                v = numbers[c]
                if v is None:
                    if parts[c].lower() in (b"", b"na", b"nan"):
                        v = math.nan
                    else:
                        values = None
                        break
                values.append(v)
            self._add(values, OK if values is not None else STATUS["malformed"], line_no)
        self._flush()

    def _before_header(self, line: bytes, s: bytes, line_no: int) -> bool:
        """A line before the header row is known; True when it is the first data row (the
        header row is then set up from the candidate before it)."""
        if self._pending is not None:
            header, header_no = self._pending
            self._pending = None
            if len(line) <= MAX_LINE_BYTES and csv_row_confirms(header, line):
                self._header_row(header, header_no, first=True)
                return True
            self.sink.on_ignored("line before the CSV header row")
        if len(line) <= MAX_LINE_BYTES and csv_header_candidate(s):
            self._pending = (s, line_no)
        else:
            self.sink.on_ignored("line before the CSV header row")
        return False

    def overlong(self, line_no: int) -> None:
        if self.columns is None:
            # Before the header row a long line is one more line to skip (as in lines()).
            if self._pending is not None:
                self._pending = None
                self.sink.on_ignored("line before the CSV header row")
            self.sink.on_ignored("line before the CSV header row")
            return
        super().overlong(line_no)

    def partial(self, data: bytes, line_no: int) -> None:
        s = data.strip()
        if self.columns is None and self._pending is not None and s and not s.startswith(b"#"):
            line = data[:-1] if data.endswith(b"\r") else data
            if self._before_header(line, s, line_no):
                self._add(None, STATUS["truncated"], line_no)
                self._flush()
            return
        if not s or s.startswith(b"#") or self.columns is None:
            self.sink.on_ignored("unterminated last line")
            return
        self._add(None, STATUS["truncated"], line_no)
        self._flush()

    def finish(self) -> None:
        super().finish()
        if self._pending is not None:  # a header row candidate that no data row followed
            self._pending = None
            self.sink.on_ignored("line before the CSV header row")
