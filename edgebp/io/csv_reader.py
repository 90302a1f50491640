"""Delimited text files (CSV, TSV, semicolon) with a header row of channel labels.

A CSV carries no trustworthy sampling rate, so ``fs`` is always explicit; a ``time`` column is
skipped for values and only checked against ``fs``. Empty cells and ``nan`` are gaps (NaN).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgebp.io.checks import channel_map_apply, fs_validate
from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

TIME_COLUMNS = {"time", "t", "time_s", "times", "timestamp", "seconds", "sec"}
_NAN_TOKENS = {"", "nan", "na", "n/a", "null", "none", "-"}
# "ABP (mmHg)" or "ABP [mmHg]": the label, then units in brackets.
_UNITS_RE = re.compile(r"^\s*(?P<label>.*?)\s*[\(\[](?P<units>[^\)\]]*)[\)\]]\s*$")


def _label_split(column: str) -> tuple[str, str]:
    m = _UNITS_RE.match(column)
    if m and m.group("label"):
        return m.group("label"), m.group("units").strip()
    return column.strip(), ""


def _delimiter_guess(line: str) -> str:
    # The header decides: the separator that splits it into the most fields wins.
    counts = {d: line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _float(token: str) -> float:
    t = token.strip()
    if t.lower() in _NAN_TOKENS:
        return np.nan
    return float(t)


def read_csv(path: str | os.PathLike, fs: float | None, channel_map: Mapping[str, str] | None = None) -> Record:
    """Read a delimited text file with a header row of channel labels at an explicit rate.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Lines starting with ``#`` before the header are comments. Separator: comma,
        tab or semicolon (taken from the header line). A column label may carry units in
        brackets: ``ABP (mmHg)``.
    fs : float
        Sampling rate of every column in Hz. Required: a CSV never says it reliably.
    channel_map : dict, optional
        Column label -> canonical name or ECG lead, e.g. ``{"IR": "ppg", "chest": "II"}``.
        Unmapped columns go through :func:`edgebp.record.channel_name_canonical`.

    Returns
    -------
    Record
        ``record_id`` is the file stem, ``source`` the path; a ``time`` column (``time``,
        ``t``, ``time_s``, ``timestamp``...) is not a channel.

    Raises
    ------
    ReadError
        No fs or an absurd fs, missing or empty file, no header row, duplicate or missing
        columns, a row of the wrong width or a value that is not a number (naming the line
        and column), a ``channel_map`` key that is not a column.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "wrist.csv"
    >>> _ = f.write_text("time,IR,ABP (mmHg)\\n0.00,1.0,80\\n0.01,2.0,\\n0.02,3.0,82\\n")
    >>> rec = read_csv(f, fs=100, channel_map={"IR": "ppg"})
    >>> rec.names, rec.get("abp").units, rec.get("abp").signal.tolist()
    (['ppg', 'abp'], 'mmHg', [80.0, nan, 82.0])
    """
    p = Path(path)
    if fs is None:
        raise ReadError(p, "a CSV file does not state its sampling rate: pass fs (e.g. fs=125 or --fs 125)")
    fs_value = fs_validate(p, fs)
    if not p.is_file():
        raise ReadError(p, "no such file" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise ReadError(p, "empty file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(p, f"not a text file ({exc.reason} at byte {exc.start})") from None

    lines = text.splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    if start == len(lines):
        raise ReadError(p, "no header row (the file holds only comments or blank lines)")
    delimiter = _delimiter_guess(lines[start])
    reader = csv.reader(lines[start:], delimiter=delimiter)
    header = [h.strip() for h in next(reader)]

    if any(_looks_numeric(h) for h in header):
        raise ReadError(p, f"line {start + 1}: the first row must be channel labels, got {header!r}")
    if any(not h for h in header):
        raise ReadError(p, f"line {start + 1}: column {header.index('') + 1} has no label")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ReadError(p, f"line {start + 1}: duplicate column label(s) {', '.join(map(repr, dupes))}")
    time_cols = [i for i, h in enumerate(header) if h.lower() in TIME_COLUMNS]
    value_cols = [i for i in range(len(header)) if i not in time_cols]
    if not value_cols:
        raise ReadError(p, f"line {start + 1}: no signal columns (only {', '.join(header)})")

    rows: list[list[float]] = []
    for lineno, row in enumerate(reader, start=start + 2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if row[0].lstrip().startswith("#"):
            continue
        if len(row) != len(header):
            raise ReadError(p, f"line {lineno}: {len(row)} fields, the header has {len(header)}")
        values = []
        for i, token in enumerate(row):
            try:
                values.append(_float(token))
            except ValueError:
                raise ReadError(p, f"line {lineno}, column {header[i]!r}: {token.strip()!r} is not a number") from None
        rows.append(values)
    if not rows:
        raise ReadError(p, "no data rows after the header")

    data = np.asarray(rows, dtype=np.float64)
    if time_cols:
        _time_check(p, data[:, time_cols[0]], fs_value)
    channels = []
    for i in value_cols:
        label, units = _label_split(header[i])
        channels.append(Channel.from_label(label, data[:, i], fs=fs_value, units=units))
    record = Record(record_id=p.stem, channels=channels, source=str(p))
    return channel_map_apply(p, record, channel_map)


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _time_check(path: Path, t: np.ndarray, fs: float) -> None:
    """Warn when a time column disagrees with ``fs`` in both seconds and milliseconds."""
    dt = np.diff(t[np.isfinite(t)])
    if dt.size == 0:
        return
    step = float(np.median(dt))
    if not any(abs(step * scale * fs - 1.0) < 0.02 for scale in (1.0, 1e-3)):
        log.warning(
            "%s: the time column steps by %.6g (median) but fs=%g Hz means %.6g s per sample; check fs",
            path, step, fs, 1.0 / fs,
        )
