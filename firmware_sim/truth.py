"""What really happened in a simulation: per-sample truth, per-beat truth, summary counts.

Per-sample truth (CSV, one row per tick of the device's frame clock)
-------------------------------------------------------------------
``tick``
    Index of the tick since the simulation start (it keeps counting through reboots).
``boot``
    0 for the first power-up, +1 after each reset.
``seq``
    The frame's sequence number as the firmware numbered it (uint16, wraps, restarts at 0
    after a reset); -1 on reboot ticks. Dropped frames use a number too, so a decoder sees
    a gap. MAX3010x text mode does not transmit it.
``t_true_s``
    The true instant of the sample on the source's time axis (s), after clock error and
    jitter: the source was interpolated there.
``abp_mmHg``
    The source's ABP at ``t_true_s`` (NaN where the source has none).
``<channel>_code``
    The ADC code the device produced (also for frames that were not transmitted).
``fault_bits`` / ``faults``
    Bit field and names (``|``-joined) of the faults active on this tick; bits in
    :data:`edgebp.firmware_sim.faults.FAULT_BITS`.
``status``
    ``emitted`` (complete on the wire), ``corrupted`` (complete, one byte altered),
    ``truncated`` (part of the frame on the wire, by a truncate fault or a reset),
    ``dropped`` (drop fault), ``overflow`` (UART buffer full), ``reset_lost`` (in the buffer
    when the device reset), ``reboot`` (no sample: the device was rebooting).
``copies``
    Complete copies put on the wire (2 for a duplicated frame).

Per-beat truth (CSV): ``t_dia_s, t_sys_s, t_end_s, sbp_mmHg, dbp_mmHg, map_mmHg, valid``
from :func:`edgebp.processing.beats.abp_beats` on the source ABP over the simulated span,
times on the source's axis.

Examples
--------
>>> import numpy as np, tempfile, os
>>> cols = {"tick": np.arange(2), "status": np.array(["emitted", "dropped"]), "t_true_s": np.array([0.0, 0.004])}
>>> path = os.path.join(tempfile.mkdtemp(), "truth.csv")
>>> truth_write(path, cols)
>>> truth_read(path)["status"].tolist()
['emitted', 'dropped']
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from edgebp.jsonsafe import json_default

from edgebp.firmware_sim.faults import FAULT_BITS

log = logging.getLogger(__name__)

STATUSES = ("emitted", "corrupted", "truncated", "dropped", "overflow", "reset_lost", "reboot")


def fault_names(bits: int) -> str:
    """``|``-joined names of the set bits (empty string when none).

    Examples
    --------
    >>> fault_names(FAULT_BITS["leadoff"] | FAULT_BITS["drop"])
    'drop|leadoff'
    """
    return "|".join(n for n, b in FAULT_BITS.items() if bits & b)


def _fmt_column(name: str, a: np.ndarray) -> list[str]:
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return [str(int(v)) for v in a.astype(np.int64)]
    if a.dtype.kind == "f":
        fmt = "%.9f" if name.endswith("_s") else "%.6g"
        return ["" if not np.isfinite(v) else fmt % v for v in a.tolist()]
    return [str(v) for v in a.tolist()]


def truth_write(path: str | os.PathLike, columns: dict[str, np.ndarray]) -> None:
    """Write parallel arrays as a CSV file with a header row (NaN as an empty field).

    Time columns (names ending ``_s``) keep nanosecond precision; other floats 6 digits.
    """
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    for k, v in columns.items():
        if len(v) != n:
            raise ValueError(f"truth column {k!r} has {len(v)} rows, expected {n}")
    cols = [_fmt_column(k, columns[k]) for k in names]
    with open(path, "w", newline="") as fh:
        fh.write(",".join(names) + "\n")
        fh.writelines(",".join(row) + "\n" for row in zip(*cols))
    log.info("wrote %s (%d rows)", path, n)


def truth_read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a truth CSV back into arrays (ints, floats with NaN, or strings per column).

    Raises
    ------
    ValueError
        Naming the file when it has no header row.
    """
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty truth file (no header row)")
    names, body = rows[0], rows[1:]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        vals = [r[j] if j < len(r) else "" for r in body]
        try:
            out[name] = np.array([int(v) for v in vals], dtype=np.int64)
            continue
        except ValueError:
            pass
        try:
            out[name] = np.array([float(v) if v != "" else np.nan for v in vals], dtype=np.float64)
            continue
        except ValueError:
            pass
        out[name] = np.array(vals, dtype=object)
    return out


def beats_truth(abp: np.ndarray, fs: float, t0: float = 0.0) -> dict[str, np.ndarray]:
    """Per-beat SBP/DBP/MAP of a source ABP segment starting at source time ``t0``.

    Uses :func:`edgebp.processing.beats.abp_beats` (the project's one beat detector, so the
    truth and the runtime's labels agree on what a beat is).

    Examples
    --------
    >>> fs = 250.0
    >>> t = np.arange(int(6 * fs)) / fs
    >>> b = beats_truth(70 + 50 * np.clip(np.sin(2 * np.pi * t), 0, None), fs, t0=10.0)
    >>> b["sbp_mmHg"].round(1).tolist()[:2], b["t_sys_s"].round(2).tolist()[:2]
    ([120.0, 120.0], [11.25, 12.25])
    """
    from edgebp.processing.beats import abp_beats

    b = abp_beats(np.asarray(abp, dtype=np.float64), fs)
    return {
        "t_dia_s": t0 + b.i_dia / fs,
        "t_sys_s": t0 + b.i_sys / fs,
        "t_end_s": t0 + b.i_end / fs,
        "sbp_mmHg": b.sbp,
        "dbp_mmHg": b.dbp,
        "map_mmHg": b.map,
        "valid": b.valid.astype(np.int64),
    }


def summary_write(path: str | os.PathLike, summary: dict) -> None:
    """Write the simulator's counts and settings as indented JSON."""
    Path(path).write_text(json.dumps(summary, indent=2, default=json_default) + "\n")
    log.info("wrote %s", path)




def truth_frames_invisible(truth: dict[str, np.ndarray]) -> int:
    """Generated frames no decoder can know of: those before the first and after the last frame
    of each boot that put any byte on the wire (no sequence gap frames them).

    The accounting identity of a decoded stream (every generated frame parsed, missing or
    dropped) holds for the other frames; this is the rest.

    >>> t = {"status": np.array(["dropped", "emitted", "dropped", "emitted", "dropped"]),
    ...      "boot": np.zeros(5, int)}
    >>> truth_frames_invisible(t)  # the first and the last: no frame on the wire frames them
    2
    """
    on_wire = np.isin(truth["status"], ["emitted", "corrupted", "truncated"])
    sampled = truth["status"] != "reboot"
    n = 0
    for b in np.unique(truth["boot"][sampled]):
        idx = np.flatnonzero(sampled & (truth["boot"] == b))
        w = np.flatnonzero(on_wire[idx])
        n += len(idx) if len(w) == 0 else w[0] + (len(idx) - 1 - w[-1])
    return int(n)
