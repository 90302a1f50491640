"""The edgebp text encoding: a ``#EDGEBP`` header line, then one ``seq,v1,v2`` line per sample.

Layout (see ``docs/serial-protocol.md``)::

    #EDGEBP v=1 fs=250 ch=ecg,ppg units=mV,NU bits=24,18 gain=0.000125,1 offset=0,0 dev=sim-01
    0,1021,-88121
    #CUFF sbp=121.5 dbp=78
    1,1040,-88010

A ``#CUFF`` line is a cuff (reference blood-pressure) reading; it applies at the time of the
next sample. Readers without cuff support skip it as a comment.

The parser is vectorised per chunk: when every line of a chunk is a well-formed sample line
(the usual case) the whole chunk is checked and converted with a few numpy calls; a chunk
holding a header, a comment or a bad line falls back to a per-line path for that stretch only.

Examples
--------
>>> import numpy as np
>>> from edgebp.runtime.protocol_header import StreamHeader
>>> h = StreamHeader(250, ["ecg", "ppg"], ["mV", "NU"], [24, 18], [0.000125, 1.0], [0, 0])
>>> header_encode_text(h)
b'#EDGEBP v=1 fs=250 ch=ecg,ppg units=mV,NU bits=24,18 gain=0.000125,1 offset=0,0\\n'
>>> samples_encode_text(np.array([65535, 0]), np.array([[1, -2], [3, 4]]))
b'65535,1,-2\\n0,3,4\\n'
>>> cuff_encode_text(121.5, 78.0)
b'#CUFF sbp=121.5 dbp=78\\n'
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np

from edgebp.runtime.protocol_common import (
    DEVICE_BP_MAX_CODE, DEVICE_BP_SCALE, MAX_LINE_BYTES, OK, SEQ_MODULO, STATUS, LineParser, Sink, device_bp_check,
    device_bp_codes, one_record, raw_limits, status_range,
)
from edgebp.runtime.protocol_header import (
    HeaderError, StreamHeader, _fmt_num, header_fields_decode, header_fields_encode, key_value_fields,
)

log = logging.getLogger(__name__)

TEXT_MAGIC = b"#EDGEBP"
CUFF_MAGIC = b"#CUFF"
#: A device-BP record: the device's own ABP (docs/serial-protocol.md, section 11).
DEVICE_BP_MAGIC = b"#BP"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_LINE_RE = re.compile(rb"-?[0-9]+(?:,-?[0-9]+)*\Z")
_FAST_CHARS = b"0123456789-,\n"
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def cuff_encode_text(sbp: float, dbp: float) -> bytes:
    """A cuff reading line, ``#CUFF sbp=<mmHg> dbp=<mmHg>\\n``, numbers in the shortest exact form.

    Only finiteness is checked here: the decoder decides what it accepts (40..300 mmHg,
    DBP below SBP), so that tests and tools can also write readings it must reject.

    Examples
    --------
    >>> cuff_encode_text(120, 80.25)
    b'#CUFF sbp=120 dbp=80.25\\n'
    """
    vals = []
    for name, x in (("sbp", sbp), ("dbp", dbp)):
        x = float(x)
        if not np.isfinite(x):
            raise ValueError(f"cuff_encode_text: {name} must be a finite number of mmHg, got {x!r}")
        vals.append(_fmt_num(x))
    return CUFF_MAGIC + f" sbp={vals[0]} dbp={vals[1]}\n".encode("ascii")


def cuff_fields_decode(body: bytes) -> tuple[float, float]:
    """``(sbp, dbp)`` from the fields of a ``#CUFF`` line (the part after ``#CUFF``).

    Keys may come in any order; unknown keys are ignored (later versions may add fields).

    Raises
    ------
    ValueError
        Naming what is wrong: not ASCII, a token that is not ``key=value``, a repeated or
        missing ``sbp``/``dbp``, a value that is not a decimal number.

    Examples
    --------
    >>> cuff_fields_decode(b" dbp=80 sbp=120.5 src=arm")
    (120.5, 80.0)
    """
    kv = key_value_fields(body, "cuff", line="cuff line")
    missing = [k for k in ("sbp", "dbp") if k not in kv]
    if missing:
        raise ValueError("missing " + " and ".join(f"{k}=" for k in missing))
    out = []
    for k in ("sbp", "dbp"):
        if not _DECIMAL_RE.match(kv[k]):
            raise ValueError(f"{k}={kv[k]!r} is not a decimal number")
        out.append(float(kv[k]))
    return out[0], out[1]


def device_bp_encode_text(first: int, fs: float, lag: int, abp: np.ndarray) -> bytes:
    """A device-BP line, ``#BP k=<first> fs=<Hz> lag=<samples> abp=<v1>,<v2>,...\\n``.

    ``abp[i]`` is the device's output number ``first + i`` since it booted, at the model rate
    ``fs``; it estimates the ABP ``lag`` model samples before it, i.e. at ``(first + i - lag) /
    fs`` seconds after the boot's first device sample. Values with two decimals (0.01 mmHg,
    half up, as the binary frame), ``nan`` for no value.

    Examples
    --------
    >>> device_bp_encode_text(250, 125, 41, np.array([101.234, np.nan, 99.5]))
    b'#BP k=250 fs=125 lag=41 abp=101.23,nan,99.50\\n'
    """
    first, lag, fs = device_bp_check(first, fs, lag)
    code = device_bp_codes(abp)
    vals = ",".join("nan" if c == -DEVICE_BP_MAX_CODE - 1 else f"{c / DEVICE_BP_SCALE:.2f}" for c in code.tolist())
    return DEVICE_BP_MAGIC + f" k={first} fs={_fmt_num(fs)} lag={lag} abp={vals}\n".encode("ascii")


def device_bp_fields_decode(body: bytes) -> tuple[int, float, int, np.ndarray]:
    """``(first, fs, lag, abp)`` from the fields of a ``#BP`` line (the part after ``#BP``).

    Keys in any order; unknown keys are ignored (as in headers and cuff lines).

    Examples
    --------
    >>> k, fs, lag, abp = device_bp_fields_decode(b" abp=1.5,nan lag=3 k=7 fs=125 src=arm")
    >>> k, fs, lag, abp.tolist()
    (7, 125.0, 3, [1.5, nan])
    """
    kv = key_value_fields(body, "device BP", line="device BP line")
    missing = [k for k in ("k", "fs", "lag", "abp") if k not in kv]
    if missing:
        raise ValueError("missing " + " and ".join(f"{k}=" for k in missing))
    for key, top in (("k", 2**32), ("lag", 2**16)):
        if not kv[key].isdigit() or int(kv[key]) >= top:
            raise ValueError(f"{key}={kv[key]!r} is not an integer 0..{top - 1}")
    if not _DECIMAL_RE.match(kv["fs"]) or not float(kv["fs"]) > 0:
        raise ValueError(f"fs={kv['fs']!r} is not a positive decimal number")
    vals = []
    for v in kv["abp"].split(","):
        if v == "nan":
            vals.append(np.nan)
        elif _DECIMAL_RE.match(v) and abs(float(v)) * DEVICE_BP_SCALE <= DEVICE_BP_MAX_CODE + 0.5:
            vals.append(float(v))
        else:
            raise ValueError(f"abp value {v[:20]!r} is not a decimal number within +-327.67 mmHg or nan")
    return int(kv["k"]), float(kv["fs"]), int(kv["lag"]), np.array(vals, dtype=np.float64)


def header_encode_text(h: StreamHeader) -> bytes:
    """The header line of the text encoding, ``#EDGEBP <fields>\\n``.

    Examples
    --------
    >>> h = StreamHeader(125, ["ppg"], ["NU"], [18], [1.0], [0.0], device="board-7")
    >>> header_encode_text(h)
    b'#EDGEBP v=1 fs=125 ch=ppg units=NU bits=18 gain=1 offset=0 dev=board-7\\n'
    """
    return TEXT_MAGIC + b" " + header_fields_encode(h).encode("ascii") + b"\n"


def check_samples(seq: np.ndarray, values: np.ndarray, lo: int, hi: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate encoder input: integer ``seq`` (n,) and integer ``values`` (n, n_ch) in [lo, hi].

    Returns ``(seq mod 65536, values)`` as int64. Sequence numbers are reduced modulo 65536,
    so a running counter can be passed as is.
    """
    seq = np.asarray(seq)
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if seq.ndim != 1 or values.ndim != 2 or values.shape[0] != seq.shape[0]:
        raise ValueError(f"{what}: seq must be (n,) and values (n, n_channels); got {seq.shape} and {values.shape}")
    if values.shape[1] == 0:
        raise ValueError(f"{what}: values need at least one channel")
    for name, arr in (("seq", seq), ("values", values)):
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                continue
            if arr.size:
                raise ValueError(f"{what}: {name} must be integers (raw ADC counts), got dtype {arr.dtype}")
    values = values.astype(np.int64)
    if values.size:
        bad = np.flatnonzero(((values < lo) | (values > hi)).any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{what}: sample {i} has a value outside [{lo}, {hi}]: {values[i].tolist()}")
    return seq.astype(np.int64) % SEQ_MODULO, values


def samples_encode_text(seq: np.ndarray, values: np.ndarray) -> bytes:
    """Sample lines ``seq,v1,...,vn\\n`` of the text encoding.

    Parameters
    ----------
    seq : np.ndarray
        Sequence numbers, shape (n,); reduced modulo 65536.
    values : np.ndarray
        Raw integer ADC counts, shape (n, n_channels) (or (n,) for one channel), int32 range.

    Returns
    -------
    bytes
        ASCII lines, ``\\n`` terminated.

    Examples
    --------
    >>> samples_encode_text(np.array([7]), np.array([[-1, 2, 3]]))
    b'7,-1,2,3\\n'
    """
    seq, values = check_samples(seq, values, INT32_MIN, INT32_MAX, "samples_encode_text")
    n, n_ch = values.shape
    line = "%d" + ",%d" * n_ch + "\n"
    out = []
    step = 65536  # bounded memory for the one-shot % formatting
    for a in range(0, n, step):
        block = np.column_stack([seq[a:a + step], values[a:a + step]])
        out.append(((line * block.shape[0]) % tuple(block.ravel().tolist())).encode("ascii"))
    return b"".join(out)


# A region this small is checked by one regular expression and converted by int(): a 5-sample
# packet (87 bytes) then costs a few microseconds instead of ~15 numpy calls.
_SMALL_REGION_BYTES = 2048
_SMALL_RE: dict[int, re.Pattern] = {}


def _small_pattern(n_ch: int) -> re.Pattern:
    """The regular expression of one or more clean sample lines of ``n_ch`` channels."""
    pat = _SMALL_RE.get(n_ch)
    if pat is None:
        field = rb"-?[0-9]{1,18}"
        pat = _SMALL_RE[n_ch] = re.compile(rb"(?:" + field + (rb"," + field) * n_ch + rb"\n)+\Z")
    return pat


def _small_region(c: bytes, n_ch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_fast_region` for a short ``c`` (at most :data:`_SMALL_REGION_BYTES`): the same
    lines accepted, the same arrays returned (and the numbers as a flat list); None sends
    ``c`` on to the general paths.

    Fields are limited to 18 digits here (they fit an int64 exactly); a longer one goes on to
    :func:`_fast_region`, which then decides as it always did.

    Examples
    --------
    >>> seq, raw, _ = _small_region(b"7,-1,2\\n8,3,4\\n", 2)
    >>> seq.tolist(), raw.tolist()
    ([7, 8], [[-1, 2], [3, 4]])
    >>> _small_region(b"7,-1\\n", 2) is None
    True
    """
    if b"\r" in c:
        c = c.replace(b"\r\n", b"\n")
        if b"\r" in c:
            return None
    if _small_pattern(n_ch).match(c) is None:
        return None
    width = n_ch + 1
    vals = list(map(int, c[:-1].replace(b"\n", b",").split(b",")))
    seqs = vals[::width]
    if min(seqs) < 0 or max(seqs) >= SEQ_MODULO:
        return None
    arr = np.array(vals, dtype=np.int64).reshape(-1, width)
    return arr[:, 0].copy(), arr[:, 1:], vals


def _fast_region(c: bytes, n_ch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """All lines of ``c`` parsed at once, or None when any line is not a clean sample line.

    Accepts exactly what the per-line path accepts as good (``-?digits`` fields, ``n_ch + 1``
    of them, seq 0..65535, no line longer than MAX_LINE_BYTES); anything else goes to the
    per-line path, which then explains the rejection.
    """
    if b"\r" in c:
        c = c.replace(b"\r\n", b"\n")
        if b"\r" in c:
            return None
    if c.translate(None, _FAST_CHARS):
        return None
    arr = np.frombuffer(c, dtype=np.uint8)
    idx = np.flatnonzero(arr < 45)  # ',' (44) and '\n' (10); '-' is 45
    n_lines = c.count(b"\n")
    width = n_ch + 1
    if n_lines == 0 or idx.size != n_lines * width:
        return None
    # Empty fields: a separator first, or two separators side by side.
    if idx[0] == 0 or (np.diff(idx) == 1).any():
        return None
    idx = idx.reshape(n_lines, width)
    seps = arr[idx]
    if not ((seps[:, -1] == 10).all() and (seps[:, :-1] == 44).all()):
        return None
    # '-' only as a sign: at a field start and followed by a digit.
    dash = np.flatnonzero(arr == 45)
    if dash.size:
        after = arr[dash + 1]  # never out of range: c ends with '\n'
        if ((after < 48) | (after > 57)).any():
            return None
        before = arr[np.maximum(dash - 1, 0)]
        if not ((dash == 0) | (before == 44) | (before == 10)).all():
            return None
    lengths = np.diff(idx[:, -1], prepend=-1) - 1
    if lengths.max() > MAX_LINE_BYTES:
        return None
    try:
        with warnings.catch_warnings():
            # fromstring stops silently at unparsable text; make that an error to fall back.
            warnings.simplefilter("error")
            vals = np.fromstring(c.replace(b"\n", b","), dtype=np.int64, sep=",")
    except (DeprecationWarning, ValueError, AttributeError):
        return None
    if vals.size != n_lines * width:
        return None
    vals = vals.reshape(n_lines, width)
    seq = vals[:, 0]
    if seq.min() < 0 or seq.max() >= SEQ_MODULO:
        return None
    return seq.copy(), vals[:, 1:]


def _is_device_bp(line: bytes) -> bool:
    return line.startswith(DEVICE_BP_MAGIC) and (len(line) == len(DEVICE_BP_MAGIC) or line[len(DEVICE_BP_MAGIC)] in b" \t")


class TextParser(LineParser):
    """Incremental parser of the edgebp text encoding (see module docstring)."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.header: StreamHeader | None = None
        self._limits: tuple | None = None  # (header, lowest, highest raw value per channel) as ints
        self._pk: tuple | None = None  # packet's per-header cache: (header, pattern match, width, limits)
        # device-BP lines are read only when the decoder asks (else they stay comments, as
        # for every reader before them)
        self.device_bp = False

    @property
    def n_channels(self) -> int:
        return self.header.n_channels if self.header is not None else 0

    def _in_limits(self, vals: list[int]) -> bool:
        """Every value of the flat ``seq, v1, v2, ...`` list ``vals`` within its channel's ADC range."""
        if self._limits is None or self._limits[0] is not self.header:
            lo, hi = raw_limits(self.header.adc_bits)
            self._limits = (self.header, lo.tolist(), hi.tolist())
        _, lo, hi = self._limits
        width = len(lo) + 1
        for j in range(width - 1):  # a loop, not all(genexpr): this runs for every packet
            col = vals[j + 1::width]
            if min(col) < lo[j] or max(col) > hi[j]:
                return False
        return True

    def packet(self, data: bytes) -> tuple[list[int], int, bytes] | None:
        """The usual live read, checked without changing any state: clean sample lines (no
        ``#`` line, no ``\\r``), completed by this read, after nothing skipped, a header in
        force, every seq in 0..65535 and every value within its ADC range. A read cut at any
        byte qualifies: the line begun by the previous read (buffered) and the one this read
        begins (its tail) are taken as the general path takes them. Returns the numbers of the
        completed lines as a flat list, their count and the tail to buffer; None when ``data``
        needs the general path (:meth:`feed`), which then decodes it as it always did.

        This is the path :meth:`feed` -> :meth:`lines` -> :meth:`_region` ->
        :func:`_small_region` takes for such a read, without its calls and arrays: a 5-sample
        packet is decoded by :meth:`StreamDecoder.feed <edgebp.runtime.protocol.StreamDecoder.feed>`
        in one pass."""
        if self.skipping or self.header is None or len(data) > _SMALL_REGION_BYTES:
            return None
        if data[-1:] == b"\n" and not self.buf:  # whole lines, nothing buffered (a framed packet)
            whole, tail = data, b""
        else:  # a read cut mid-line (a UART or a file read of N bytes): as LineParser.feed cuts it
            k = data.rfind(b"\n")
            if k < 0:
                return None
            whole, tail = bytes(self.buf) + data[:k + 1], data[k + 1:]
            if len(whole) > _SMALL_REGION_BYTES:
                return None
        if b"#" in whole or b"\r" in whole:
            return None
        pk = self._pk
        if pk is None or pk[0] is not self.header:  # once per header: its pattern, width, limits
            lo, hi = raw_limits(self.header.adc_bits)
            pk = self._pk = (self.header, _small_pattern(self.header.n_channels).match, self.header.n_channels + 1,
                             tuple(zip(range(1, self.header.n_channels + 1), lo.tolist(), hi.tolist())))
        _, match, width, limits = pk
        if match(whole) is None:
            return None
        vals = list(map(int, whole[:-1].replace(b"\n", b",").split(b",")))
        seqs = vals[::width]
        if min(seqs) < 0 or max(seqs) >= SEQ_MODULO:
            return None
        for j, lo_j, hi_j in limits:  # as _in_limits
            col = vals[j::width]
            if min(col) < lo_j or max(col) > hi_j:
                return None
        return vals, len(seqs), tail

    def lines(self, chunk: bytes, base_line: int) -> None:
        pos = search = 0
        line_no = base_line + 1  # number of the line starting at pos
        while True:
            j = chunk.find(b"#", search)
            if j < 0:
                self._region(chunk[pos:], line_no)
                return
            if j > pos and chunk[j - 1] != 0x0A:
                search = j + 1  # a '#' inside a line: that line is a (bad) sample line
                continue
            line_no_j = line_no + chunk.count(b"\n", pos, j)
            self._region(chunk[pos:j], line_no)
            e = chunk.index(b"\n", j)
            self._special(chunk[j:e], line_no_j)
            pos = search = e + 1
            line_no = line_no_j + 1

    def _region(self, c: bytes, first_line: int) -> None:
        if not c:
            return
        if self.header is not None:
            small = _small_region(c, self.n_channels) if len(c) <= _SMALL_REGION_BYTES else None
            if small is not None:
                seq, raw, vals = small
                if self._in_limits(vals):
                    # every value within the ADC range: no record is rejected (status None)
                    self.sink.on_records(seq, raw, None, lambda i: f"line {first_line + i}")
                else:
                    status = status_range(raw, np.zeros(seq.size, dtype=np.int8), self.header)
                    self.sink.on_records(seq, raw, status, lambda i: f"line {first_line + i}")
                return
            parsed = _fast_region(c, self.n_channels)
            if parsed is not None:
                seq, raw = parsed
                status = status_range(raw, np.zeros(seq.size, dtype=np.int8), self.header)
                self.sink.on_records(seq, raw, status, lambda i: f"line {first_line + i}")
                return
        self._slow(c, first_line)

    def _slow(self, c: bytes, first_line: int) -> None:
        """Per-line checks, then one bulk conversion of the good lines (as in the fast path)."""
        n_ch = self.n_channels
        stats: list[int] = []
        where: list[int] = []
        good: list[bytes] = []
        good_pos: list[int] = []
        overlong, no_header, malformed = STATUS["overlong"], STATUS["no_header"], STATUS["malformed"]
        for i, line in enumerate(c.split(b"\n")[:-1]):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line.strip():
                self.sink.on_ignored("blank line")
                continue
            if self.header is None and len(line) <= MAX_LINE_BYTES and not _LINE_RE.match(line):
                # Before the first header only sample-shaped lines are records (sent before
                # the reader joined); anything else is a banner or the rest of a line
                # joined mid-way: counted as ignored while the decoder waits for a header.
                self.sink.on_ignored("line before the first header")
                continue
            where.append(first_line + i)
            if len(line) > MAX_LINE_BYTES:
                stats.append(overlong)
            elif self.header is None:
                stats.append(no_header)
            elif line.count(b",") != n_ch or not _LINE_RE.match(line):
                stats.append(malformed)
            else:
                good_pos.append(len(stats))
                good.append(line)
                stats.append(OK)
        if not stats:
            return
        n = len(stats)
        seq = np.zeros(n, dtype=np.int64)
        raw = np.zeros((n, n_ch), dtype=np.int64)
        status = np.array(stats, dtype=np.int8)
        if good:
            # Every good line has n_ch + 1 validated integer fields: parse them all at once.
            vals = np.fromstring(b",".join(good), dtype=np.int64, sep=",").reshape(len(good), n_ch + 1)
            pos = np.array(good_pos)
            seq[pos] = vals[:, 0]
            raw[pos] = vals[:, 1:]
            bad_seq = (vals[:, 0] < 0) | (vals[:, 0] >= SEQ_MODULO)
            status[pos[bad_seq]] = malformed
            seq[pos[bad_seq]] = 0
        if self.header is not None:
            status = status_range(raw, status, self.header)
        self.sink.on_records(seq, raw, status, lambda k: f"line {where[k]}")

    def _special(self, line: bytes, line_no: int) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        where = f"line {line_no}"
        if line.startswith(TEXT_MAGIC) and (len(line) == len(TEXT_MAGIC) or line[len(TEXT_MAGIC)] in b" \t"):
            if len(line) > MAX_LINE_BYTES:
                self.sink.on_header_rejected(f"header line longer than {MAX_LINE_BYTES} bytes", where)
                return
            try:
                header = header_fields_decode(line[len(TEXT_MAGIC):])
            except HeaderError as err:
                self.sink.on_header_rejected(str(err), where)
                return
            self.sink.on_header(header, where)
            self.header = header
        elif line.startswith(CUFF_MAGIC) and (len(line) == len(CUFF_MAGIC) or line[len(CUFF_MAGIC)] in b" \t"):
            if len(line) > MAX_LINE_BYTES:
                self.sink.on_cuff_rejected("malformed", f"cuff line longer than {MAX_LINE_BYTES} bytes", where)
                return
            try:
                sbp, dbp = cuff_fields_decode(line[len(CUFF_MAGIC):])
            except ValueError as err:
                self.sink.on_cuff_rejected("malformed", f"malformed cuff line ({err})", where)
                return
            self.sink.on_cuff(sbp, dbp, where)
        elif self.device_bp and _is_device_bp(line):
            if len(line) > MAX_LINE_BYTES:
                self.sink.on_device_bp_rejected("malformed", f"device BP line longer than {MAX_LINE_BYTES} bytes", where)
                return
            try:
                first, fs, lag, abp = device_bp_fields_decode(line[len(DEVICE_BP_MAGIC):])
            except ValueError as err:
                self.sink.on_device_bp_rejected("malformed", f"malformed device BP line ({err})", where)
                return
            self.sink.on_device_bp(first, fs, lag, abp, where)
        else:
            self.sink.on_ignored("comment line")

    def overlong(self, line_no: int) -> None:
        one_record(self.sink, "overlong", self.n_channels, f"line {line_no}")

    def partial(self, data: bytes, line_no: int) -> None:
        content = data[:-1] if data.endswith(b"\r") else data
        if not content.strip():
            self.sink.on_ignored("blank line")
        elif content.startswith(b"#"):
            if content.startswith(TEXT_MAGIC):
                self.sink.on_header_rejected("truncated header line (no newline at the end of the stream)",
                                             f"line {line_no}")
            elif content.startswith(CUFF_MAGIC) and (len(content) == len(CUFF_MAGIC)
                                                     or content[len(CUFF_MAGIC)] in b" \t"):
                self.sink.on_cuff_rejected("truncated", "truncated cuff line (no newline at the end of the stream)",
                                           f"line {line_no}")
            elif self.device_bp and _is_device_bp(content):
                self.sink.on_device_bp_rejected("truncated", "truncated device BP line (no newline at the end of the "
                                                "stream)", f"line {line_no}")
            else:
                self.sink.on_ignored("comment line")
        elif self.header is None and not _LINE_RE.match(content):
            self.sink.on_ignored("line before the first header")
        else:
            one_record(self.sink, "truncated", self.n_channels, f"line {line_no} (no newline at the end)")
