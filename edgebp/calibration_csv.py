"""The one cuff-readings CSV every ``--calibration FILE`` reads: ``time,sbp,dbp[,subject]``.

Columns (header first; lines starting with # and blank lines are skipped; names are case-blind):

- ``time``: seconds on the stream's (or the graded record's) time axis (``edgebp run``: >= 0)
- ``sbp``, ``dbp``: the cuff reading (mmHg)
- ``subject`` (optional): whose reading it is, so one file serves several records
- ``window`` (optional): the seconds of signal the reading summarises (``edgebp run``)
- ``map`` (optional): the cuff's mean pressure (``edgebp grade``)

``edgebp run`` and ``edgebp grade`` read it with :func:`calibration_csv_read`; a bad row is a
ValueError naming the file, the line and the field.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "cuff.csv")
>>> _ = open(p, "w").write("time,sbp,dbp,subject\\n60,121,79,s1\\n30,118,77,s2\\n")
>>> [(r.time, r.subject) for r in calibration_csv_read(p)]
[(30.0, 's2'), (60.0, 's1')]
>>> [r.sbp for r in calibration_csv_read(p, subject="s1")]
[121.0]
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Callable

REQUIRED = ("time", "sbp", "dbp")
OPTIONAL = ("subject", "window", "map")
SCHEMA = "time,sbp,dbp[,subject][,window][,map]"


@dataclass(frozen=True)
class CuffRow:
    """One cuff reading of a calibration CSV (``line``: its line in the file, for messages)."""

    time: float
    sbp: float
    dbp: float
    subject: str | None = None
    window: float | None = None
    map: float | None = None
    line: int = 0


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{path}: line {line}: column {column!r}: {text!r} is not a finite number")
    return v


def calibration_csv_read(path: str, subject: str | None = None,
                         check: Callable[[float, float], str | None] | None = None, empty_ok: bool = False) -> list[CuffRow]:
    """The cuff readings of ``path`` in time order (all of them, or ``subject``'s only).

    ``check(sbp, dbp)`` returns why a reading is implausible (the runtime's cuff range), or None.
    ``empty_ok``: a header without readings is no error (a simulated device that took none).
    Raises FileNotFoundError for a missing file and ValueError (file, line, column) for a bad one.
    """
    name = str(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        lines = ((k, t) for k, t in enumerate(fh, start=1) if t.strip() and not t.lstrip().startswith("#"))
        numbered = list(lines)
    if not numbered:
        raise ValueError(f"{name}: empty file (expected the header {SCHEMA})")
    rows_text = list(csv.reader([t for _, t in numbered]))
    header = [c.strip().lower() for c in rows_text[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValueError(f"{name}: line {numbered[0][0]}: missing column {', '.join(repr(c) for c in missing)} "
                         f"(a calibration CSV is {SCHEMA}; has: {', '.join(header)})")
    idx = {c: header.index(c) for c in REQUIRED + OPTIONAL if c in header}
    out: list[CuffRow] = []
    for (line, _), row in zip(numbered[1:], rows_text[1:]):
        if len(row) < len(header):
            raise ValueError(f"{name}: line {line}: {len(row)} fields, the header has {len(header)}")
        who = row[idx["subject"]].strip() if "subject" in idx else None
        if "subject" in idx and not who:
            raise ValueError(f"{name}: line {line}: column 'subject' is empty")
        if subject is not None and who is not None and who != subject:
            continue
        t, s, d = (_number(row[idx[c]].strip(), name, line, c) for c in REQUIRED)
        w = row[idx["window"]].strip() if "window" in idx else ""
        w = _number(w, name, line, "window") if w else None
        m = row[idx["map"]].strip() if "map" in idx else ""
        m = _number(m, name, line, "map") if m else None
        if w is not None and not w > 0:
            raise ValueError(f"{name}: line {line}: column 'window': must be positive")
        why = check(s, d) if check is not None else None
        if why:
            raise ValueError(f"{name}: line {line}: cuff reading rejected: {why}")
        out.append(CuffRow(t, s, d, who, w, m, line))
    if not out and not empty_ok:
        who = f" for subject {subject!r}" if subject is not None else ""
        raise ValueError(f"{name}: no calibration readings{who} after the header")
    return sorted(out, key=lambda r: r.time)
