"""Cuff readings for the simulated wearable: when, what, and the CSV beside the stream.

An oscillometric cuff inflates, deflates over about half a minute and reports roughly the
average pressure over that measurement. The simulated reading at time ``T`` is therefore the
mean SBP and the mean DBP of the valid truth beats (:func:`edgebp.firmware_sim.truth.beats_truth`,
the same beats the simulator writes to ``X_beats.csv``) whose systolic peak lies in
``[T - window, T]``, plus optional Gaussian noise (``noise_sd`` mmHg, drawn from the
simulator's seed). The firmware puts the reading into the serial stream just before the
first sample taken at or after ``T`` (``#CUFF`` line or ``'C'`` frame of
``docs/serial-protocol.md``): it applies at the time of the next sample.

Times given to the simulator (``--cuff-every``, ``--cuff-at``) count from the simulation
start (device power-up), like ``--faults``; the CSV's ``time`` column is on the truth file's
axis (``t_true_s``), i.e. ``--start`` plus that (the same number with the default ``--start 0``).

Examples
--------
>>> cuff_times_parse("30, 1min,90s")
(30.0, 60.0, 90.0)
>>> cuff_schedule(every_s=60.0, at_s=(), last_s=200.0).tolist()
[60.0, 120.0, 180.0]
>>> beats = {"t_sys_s": np.array([1.0, 2.0, 3.0]), "sbp_mmHg": np.array([120.0, 130.0, 125.0]),
...          "dbp_mmHg": np.array([80.0, 84.0, 70.0]), "valid": np.array([1, 1, 0])}
>>> r = cuff_readings(beats, np.array([2.5]), window_s=2.0)
>>> r["sbp"].tolist(), r["dbp"].tolist(), r["n_beats"].tolist()
([125.0], [82.0], [2])
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from edgebp.firmware_sim.faults import fault_rng

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 30.0
_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_TIME_RE = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class CuffSpec:
    """When the simulated cuff measures and how.

    Attributes
    ----------
    every_s : float or None
        A reading every ``every_s`` seconds, the first at ``every_s``.
    at_s : tuple of float
        Explicit reading times (s from the simulation start).
    window_s : float
        Averaging window of one measurement (s), ending at the reading time.
    noise_sd : float
        SD (mmHg) of Gaussian noise added to SBP and DBP independently.
    """

    every_s: float | None = None
    at_s: tuple[float, ...] = ()
    window_s: float = DEFAULT_WINDOW_S
    noise_sd: float = 0.0

    def __post_init__(self) -> None:
        if self.every_s is not None and not (np.isfinite(self.every_s) and self.every_s > 0):
            raise ValueError(f"--cuff-every must be a positive number of seconds, got {self.every_s:g}")
        bad = [t for t in self.at_s if not (np.isfinite(t) and t >= 0)]
        if bad:
            raise ValueError(f"--cuff-at: times must be >= 0 s from the start, got {bad[0]:g}")
        if not (np.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"--cuff-window must be a positive number of seconds, got {self.window_s:g}")
        if not (np.isfinite(self.noise_sd) and self.noise_sd >= 0):
            raise ValueError(f"--cuff-noise must be >= 0 mmHg, got {self.noise_sd:g}")

    @property
    def active(self) -> bool:
        """True when any reading is asked for."""
        return self.every_s is not None or bool(self.at_s)

    def to_dict(self) -> dict:
        return {"every_s": self.every_s, "at_s": list(self.at_s), "window_s": self.window_s,
                "noise_sd": self.noise_sd}


def cuff_times_parse(text: str) -> tuple[float, ...]:
    """Times of ``--cuff-at``: comma-separated numbers of seconds, optionally with a unit
    (``ms``, ``s``, ``min``/``m``, ``h``), sorted.

    Raises
    ------
    ValueError
        Naming the item that is not a time.
    """
    out = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        m = _TIME_RE.match(item.lower())
        if not m or m.group(2) not in ("", *_UNITS):
            raise ValueError(f"--cuff-at: {item.strip()!r} is not a time; use seconds, e.g. 30,90.5,2min")
        out.append(float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0))
    if not out:
        raise ValueError("--cuff-at: no times given; e.g. --cuff-at 30,90")
    return tuple(sorted(out))


def cuff_schedule(every_s: float | None, at_s: tuple[float, ...], last_s: float) -> np.ndarray:
    """Sorted reading times (s from the start) up to ``last_s``, the time of the last sample.

    A reading needs a sample at or after it, so a time after ``last_s`` is an error (for
    ``--cuff-at``) and ``--cuff-every`` stops there.

    Raises
    ------
    ValueError
        A ``--cuff-at`` time after the last sample, or a ``--cuff-every`` longer than the
        simulation.
    """
    times = [float(t) for t in at_s]
    late = [t for t in times if t > last_s]
    if late:
        raise ValueError(f"--cuff-at {late[0]:g} s is outside the simulation (0..{last_s:.3f} s, "
                         "the time of its last sample)")
    if every_s is not None:
        k = int(np.floor(last_s / every_s + 1e-9))
        if k < 1:
            raise ValueError(f"--cuff-every {every_s:g} s gives no reading: the simulation's last sample is at "
                             f"{last_s:.3f} s")
        times += (every_s * np.arange(1, k + 1)).tolist()
    return np.array(sorted(set(times)), dtype=np.float64)


def cuff_readings(beats: dict[str, np.ndarray], t_abs: np.ndarray, window_s: float, noise_sd: float = 0.0,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Mean SBP/DBP of the valid beats with ``t_sys_s`` in ``[t - window_s, t]`` for each ``t``.

    Parameters
    ----------
    beats : dict
        Beat truth (``t_sys_s``, ``sbp_mmHg``, ``dbp_mmHg``, ``valid``) on the source axis.
    t_abs : np.ndarray
        Reading times on the same axis.
    window_s, noise_sd, seed
        See :class:`CuffSpec`; two noise draws per time, in order, from the ``cuff_noise``
        stream of ``seed`` (drawn even when ``noise_sd`` is 0, so the SD does not move them).

    Returns
    -------
    dict
        ``time``, ``sbp``, ``dbp`` (NaN where no valid beat lies in the window), ``n_beats``.
    """
    t_abs = np.asarray(t_abs, dtype=np.float64)
    t_sys = np.asarray(beats["t_sys_s"], dtype=np.float64)
    ok = np.asarray(beats["valid"]).astype(bool) & np.isfinite(beats["sbp_mmHg"]) & np.isfinite(beats["dbp_mmHg"])
    sbp = np.full(t_abs.size, np.nan)
    dbp = np.full(t_abs.size, np.nan)
    n_beats = np.zeros(t_abs.size, dtype=np.int64)
    for i, t in enumerate(t_abs):
        sel = ok & (t_sys >= t - window_s) & (t_sys <= t)
        n_beats[i] = int(sel.sum())
        if n_beats[i]:
            sbp[i] = float(np.mean(beats["sbp_mmHg"][sel]))
            dbp[i] = float(np.mean(beats["dbp_mmHg"][sel]))
    noise = fault_rng(seed, "cuff_noise").normal(0.0, 1.0, (t_abs.size, 2))
    sbp = sbp + noise_sd * noise[:, 0]
    dbp = dbp + noise_sd * noise[:, 1]
    return {"time": t_abs, "sbp": sbp, "dbp": dbp, "n_beats": n_beats}


def cuff_write(path: str | os.PathLike, readings: dict[str, np.ndarray]) -> None:
    """Write readings as CSV ``time,sbp,dbp`` (numbers at full precision, ``repr``).

    Examples
    --------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "cuff.csv")
    >>> cuff_write(p, {"time": np.array([30.0]), "sbp": np.array([121.25]), "dbp": np.array([80.0])})
    >>> open(p).read()
    'time,sbp,dbp\\n30.0,121.25,80.0\\n'
    """
    with open(path, "w", newline="") as fh:
        fh.write("time,sbp,dbp\n")
        for t, s, d in zip(*(np.asarray(readings[k], dtype=np.float64).tolist() for k in ("time", "sbp", "dbp"))):
            fh.write(f"{t!r},{s!r},{d!r}\n")
    log.info("wrote %s (%d cuff readings)", path, len(readings["time"]))


def cuff_read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a calibration CSV (``time,sbp,dbp[,subject]``, as :func:`cuff_write` writes it)
    through the one reader every ``--calibration FILE`` uses (:mod:`edgebp.calibration_csv`).

    Raises
    ------
    ValueError
        Naming the file, the line and the column of a bad header or row.
    """
    from edgebp.calibration_csv import calibration_csv_read

    rows = calibration_csv_read(str(path), empty_ok=True)
    return {k: np.array([getattr(r, k) for r in rows], dtype=np.float64) for k in ("time", "sbp", "dbp")}
