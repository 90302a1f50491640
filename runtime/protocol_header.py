"""The stream header shared by the edgebp text and binary encodings.

The header says what the integers of the sample records mean: sampling rate, channel names,
units, ADC resolution, and the linear map from raw counts to physical units::

    physical = (raw - offset) * gain        # gain in units per LSB, offset in LSB

Both encodings carry the same header *fields string* (ASCII, space-separated ``key=value``)::

    v=1 fs=250 ch=ecg,ppg units=mV,NU bits=24,18 gain=0.000125,1 offset=0,131072 dev=sim-01

The text encoding writes it on a line after ``#EDGEBP``; the binary encoding puts it in the
body of a header frame. See ``docs/serial-protocol.md``.

Examples
--------
>>> h = StreamHeader(fs=250.0, channels=["ecg", "ppg"], units=["mV", "NU"], adc_bits=[24, 18],
...                  gain=[0.000125, 1.0], offset=[0.0, 131072.0], device="sim-01")
>>> header_fields_encode(h)
'v=1 fs=250 ch=ecg,ppg units=mV,NU bits=24,18 gain=0.000125,1 offset=0,131072 dev=sim-01'
>>> header_fields_decode(header_fields_encode(h)) == h
True
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, fields

log = logging.getLogger(__name__)

#: Protocol version written by this implementation; a reader rejects other major versions.
PROTOCOL_VERSION = 1
#: Field names of the header fields string, in the order they are written.
HEADER_KEYS = ("v", "fs", "ch", "units", "bits", "gain", "offset", "dev")
REQUIRED_KEYS = ("v", "fs", "ch", "units", "bits", "gain", "offset")

_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+\Z")
_UNIT_RE = re.compile(r"[^\s,=]+\Z")
_DEV_RE = re.compile(r"[^\s,=]*\Z")
# The one spelling of an empty unit in a header (a token cannot be empty).
EMPTY_UNIT = "-"


class HeaderError(ValueError):
    """A header that cannot be decoded or encoded; the message names the field."""


@dataclass
class StreamHeader:
    """What the integers of a sample stream mean.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz (the same for every channel).
    channels : list of str
        Channel names in record order, e.g. ``["ecg", "ppg"]``.
    units : list of str
        Physical unit per channel (``""`` when unknown).
    adc_bits : list of int
        ADC resolution per channel, 1..32 (0 = unknown, only for third-party logs). A raw
        value outside ``[-2**(bits-1), 2**bits - 1]`` is rejected as out of range.
    gain : list of float
        Units per LSB: ``physical = (raw - offset) * gain``.
    offset : list of float
        Raw value (in LSB) that maps to physical zero.
    version : int
        Protocol version (1).
    device : str
        Free device identifier without spaces, commas or ``=`` (may be empty).

    Examples
    --------
    >>> h = StreamHeader(125.0, ["ppg"], ["NU"], [18], [1.0], [0.0])
    >>> h.n_channels
    1
    """

    fs: float
    channels: list[str]
    units: list[str]
    adc_bits: list[int]
    gain: list[float]
    offset: list[float]
    version: int = PROTOCOL_VERSION
    device: str = ""

    def __post_init__(self) -> None:
        self.channels = [str(c) for c in self.channels]
        self.units = [str(u) for u in self.units]
        self.adc_bits = [int(b) for b in self.adc_bits]
        self.gain = [float(g) for g in self.gain]
        self.offset = [float(o) for o in self.offset]
        self.fs = float(self.fs)
        self.version = int(self.version)
        self.device = str(self.device)
        n = len(self.channels)
        if n == 0:
            raise HeaderError("header: at least one channel is needed (field 'ch')")
        for name, values in (("units", self.units), ("adc_bits", self.adc_bits),
                             ("gain", self.gain), ("offset", self.offset)):
            if len(values) != n:
                raise HeaderError(f"header field {name!r} has {len(values)} entries for {n} channels {self.channels}")
        if not (math.isfinite(self.fs) and self.fs > 0):
            raise HeaderError(f"header field 'fs' must be a positive number of Hz, got {self.fs!r}")
        if len(set(self.channels)) != n:
            raise HeaderError(f"header field 'ch' repeats a channel name: {self.channels}")
        for b in self.adc_bits:
            if not 0 <= b <= 32:
                raise HeaderError(f"header field 'bits' must be 1..32 (0 = unknown), got {b}")
        for name, values in (("gain", self.gain), ("offset", self.offset)):
            if not all(math.isfinite(v) for v in values):
                raise HeaderError(f"header field {name!r} must be finite numbers, got {values}")

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channels)

    def layout(self) -> tuple[float, tuple[str, ...]]:
        """``(fs, channels)``: what a block of samples cannot mix."""
        return self.fs, tuple(self.channels)

    def differences(self, other: "StreamHeader | None") -> tuple[str, ...]:
        """Names of the fields that differ from ``other`` (all of them when ``other`` is None).

        Examples
        --------
        >>> a = StreamHeader(250, ["ppg"], ["NU"], [18], [1.0], [0.0])
        >>> b = StreamHeader(500, ["ppg"], ["NU"], [18], [1.0], [0.0])
        >>> a.differences(b)
        ('fs',)
        """
        names = tuple(f.name for f in fields(self))
        if other is None:
            return names
        return tuple(n for n in names if getattr(self, n) != getattr(other, n))


def _fmt_num(x: float) -> str:
    """Shortest exact text of a float: integers without a decimal point, else repr()."""
    x = float(x)
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return repr(x)


def header_fields_encode(h: StreamHeader) -> str:
    """The ASCII header fields string of ``h`` (no ``#EDGEBP`` prefix, no newline).

    Raises
    ------
    HeaderError
        When a name, unit or device string cannot be written (spaces, commas, ``=``), or a
        bit count is 0 (only third-party logs have unknown resolution).

    Examples
    --------
    >>> header_fields_encode(StreamHeader(250, ["ppg"], [""], [18], [0.5], [0.0]))
    'v=1 fs=250 ch=ppg units=- bits=18 gain=0.5 offset=0'
    """
    for c in h.channels:
        if not _NAME_RE.match(c):
            raise HeaderError(f"channel name {c!r} cannot be written: use letters, digits, '_', '.', '+', '-'")
    units = []
    for u in h.units:
        if u == "":
            units.append(EMPTY_UNIT)
        elif _UNIT_RE.match(u):
            units.append(u)
        else:
            raise HeaderError(f"unit {u!r} cannot be written: no spaces, commas or '='")
    if not _DEV_RE.match(h.device):
        raise HeaderError(f"device {h.device!r} cannot be written: no spaces, commas or '='")
    if any(b == 0 for b in h.adc_bits):
        raise HeaderError(f"header field 'bits' must be 1..32 to be written, got {h.adc_bits}")
    parts = [
        f"v={h.version}",
        f"fs={_fmt_num(h.fs)}",
        "ch=" + ",".join(h.channels),
        "units=" + ",".join(units),
        "bits=" + ",".join(str(b) for b in h.adc_bits),
        "gain=" + ",".join(_fmt_num(g) for g in h.gain),
        "offset=" + ",".join(_fmt_num(o) for o in h.offset),
    ]
    if h.device:
        parts.append(f"dev={h.device}")
    return " ".join(parts)


def key_value_fields(text: str | bytes | bytearray, what: str, error: type[Exception] = ValueError, line: str | None = None) -> dict[str, str]:
    """The ``key=value`` tokens of an ASCII line (a header, a cuff or a device-BP record);
    ``error`` for a non-ASCII byte (naming ``line``, default ``what``), a token without ``=`` or
    a repeated key (naming ``what``).

    Examples
    --------
    >>> key_value_fields(b" sbp=120 dbp=80", "cuff", line="cuff line")
    {'sbp': '120', 'dbp': '80'}
    >>> key_value_fields("k=1 k=2", "device BP")
    Traceback (most recent call last):
    ...
    ValueError: device BP field 'k' appears twice
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError as err:
            raise error(f"{line or what} is not ASCII (byte {err.start})") from None
    kv: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep:
            raise error(f"{what} token {token!r} is not key=value")
        if key in kv:
            raise error(f"{what} field {key!r} appears twice")
        kv[key] = value
    return kv


def header_fields_decode(text: str | bytes) -> StreamHeader:
    """Parse a header fields string back into a :class:`StreamHeader`.

    Unknown keys are ignored (logged at debug level) so that later minor versions can add
    fields; a missing required key, an unparsable number, a list of the wrong length or a
    different major version raise :class:`HeaderError` naming the field.

    Examples
    --------
    >>> h = header_fields_decode("v=1 fs=125.5 ch=ppg units=NU bits=18 gain=1 offset=0 color=red")
    >>> h.fs, h.channels
    (125.5, ['ppg'])
    >>> header_fields_decode("v=1 fs=250 ch=ppg units=NU bits=18 gain=1")
    Traceback (most recent call last):
    ...
    edgebp.runtime.protocol_header.HeaderError: header is missing field(s) 'offset'
    """
    kv = key_value_fields(text, "header", HeaderError)
    missing = [k for k in REQUIRED_KEYS if k not in kv]
    if missing:
        raise HeaderError("header is missing field(s) " + ", ".join(repr(m) for m in missing))
    unknown = [k for k in kv if k not in HEADER_KEYS]
    if unknown:
        log.debug("header: ignoring unknown field(s) %s", unknown)

    def ints(key: str) -> list[int]:
        try:
            return [int(x) for x in kv[key].split(",")]
        except ValueError:
            raise HeaderError(f"header field {key!r} must be integers, got {kv[key]!r}") from None

    def floats(key: str) -> list[float]:
        try:
            vals = [float(x) for x in kv[key].split(",")]
        except ValueError:
            raise HeaderError(f"header field {key!r} must be numbers, got {kv[key]!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise HeaderError(f"header field {key!r} must be finite, got {kv[key]!r}")
        return vals

    version = ints("v")
    if len(version) != 1 or version[0] != PROTOCOL_VERSION:
        raise HeaderError(f"header field 'v': protocol version {kv['v']!r} is not supported (this reader: {PROTOCOL_VERSION})")
    fs = floats("fs")
    if len(fs) != 1:
        raise HeaderError(f"header field 'fs' must be one number, got {kv['fs']!r}")
    channels = kv["ch"].split(",")
    if not all(_NAME_RE.match(c) for c in channels):
        raise HeaderError(f"header field 'ch' has an invalid channel name: {kv['ch']!r}")
    units = ["" if u == EMPTY_UNIT else u for u in kv["units"].split(",")]
    bits = ints("bits")
    if any(b < 1 for b in bits):
        raise HeaderError(f"header field 'bits' must be 1..32, got {kv['bits']!r}")
    return StreamHeader(
        fs=fs[0], channels=channels, units=units, adc_bits=bits,
        gain=floats("gain"), offset=floats("offset"), version=version[0], device=kv.get("dev", ""),
    )


@dataclass
class _Mapped:
    """A source header after the user's channel map: what the decoder reports, and the
    columns of the source records it keeps."""

    header: StreamHeader
    columns: list[int] = field(default_factory=list)


def header_apply_channel_map(h: StreamHeader, channel_map: dict[str, str] | None) -> _Mapped:
    """Select and rename channels of ``h`` by ``channel_map`` (source name -> output name).

    Matching of source names is case-insensitive. Without a map every channel is kept.

    Raises
    ------
    ValueError
        Naming the source channels the map asks for and the ones the header has.

    Examples
    --------
    >>> h = StreamHeader(100, ["red", "ir"], ["", ""], [18, 18], [1, 1], [0, 0])
    >>> m = header_apply_channel_map(h, {"IR": "ppg"})
    >>> m.header.channels, m.columns
    (['ppg'], [1])
    """
    if not channel_map:
        return _Mapped(h, list(range(h.n_channels)))
    lower = [c.lower() for c in h.channels]
    missing = [k for k in channel_map if k.lower() not in lower]
    if missing:
        raise ValueError(f"channel map asks for {missing} but the stream header has channels {h.channels}")
    cols = [lower.index(k.lower()) for k in channel_map]
    mapped = StreamHeader(
        fs=h.fs, channels=list(channel_map.values()), units=[h.units[i] for i in cols],
        adc_bits=[h.adc_bits[i] for i in cols], gain=[h.gain[i] for i in cols],
        offset=[h.offset[i] for i in cols], version=h.version, device=h.device,
    )
    return _Mapped(mapped, cols)
