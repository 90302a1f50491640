"""Calibrated per-beat BP: the cuff reading plus the change the beat features say, shrunk
toward the cuff by a confidence chosen on validation records.

Why: a subject-independent waveform model on real ICU records is further off than a cuff
reading held constant (docs/results.md). What a calibrated wearable can add is *tracking*:
how far BP moved since the last cuff reading. The estimator here does that, beat by beat:

1. each valid beat's features ``f`` (:data:`edgebp.runtime.beat_features.FEATURES`: heart
   rate, pulse arrival time, PPG shape, the edge network's own beat values) are smoothed by
   an exponential moving average over ``tau`` beats (per target);
2. at a cuff reading ``(t, SBP, DBP)`` the features are summarised over the ``window_s``
   seconds before it (their mean over the valid beats there, ``f_cal``; the smoother restarts
   from it, so the estimate starts at the cuff value);
3. per target ``y`` in SBP, DBP, MAP: ``y = cuff_y + alpha_y * clip(w_y . z, +-max_delta)``
   with ``z = clip((ema - f_cal) / scale, +-4)`` (a feature that is NaN counts as no change).

``alpha = 0`` is holding the cuff value; the weights are a ridge regression of the change of
the reference from its calibration value on ``z`` over the training records, and ``tau``,
the ridge penalty and ``alpha`` are chosen on the validation records only
(:mod:`edgebp.train.beat_delta`). A few dozen floats of state and one dot product per beat:
it fits any microcontroller (``edgebp budget``).

Method ``offset`` (a bundle without an estimator) is the model's own beat value shifted by
the cuff minus the model over the calibration window; ``hold`` is the cuff value itself.
Before the first reading nothing is calibrated: rows keep the model's absolute values and
``calibrated`` is False.

Examples
--------
>>> est = CalibratedEstimator(estimator_params_offset())
>>> est.reading_add(10.0, 120.0, 80.0)
True
>>> rows = [{"t": t, "sbp": 100.0 + t, "dbp": 60.0, "map": 73.3, "hr": 60.0, "valid": True}
...         for t in np.arange(0.0, 20.0)]
>>> for r in rows:
...     _ = est.update(r)
>>> rows[5]["calibrated"], rows[15]["calibrated"], round(rows[15]["sbp"], 1)
(False, True, 130.0)
"""

from __future__ import annotations

import collections
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgebp.runtime.beat_features import FEATURES

log = logging.getLogger(__name__)

HISTORY_KEEP = 100  # cuff readings kept in CalibratedEstimator.history (the summary's calibration_history)

__all__ = ["ESTIMATOR_SCHEMA", "METHODS", "TARGETS", "CUFF_RANGE", "EstimatorParams", "CuffReading", "CalibratedEstimator",
           "estimator_params_offset", "estimator_params_hold", "estimator_load", "estimator_save", "cuff_check", "cuff_csv_read"]

ESTIMATOR_SCHEMA = "edgebp-beat-delta/1"
METHODS = ("estimator", "offset", "hold")
TARGETS = ("sbp", "dbp", "map")
CUFF_RANGE = (40.0, 300.0)
Z_CLIP = 4.0


@dataclass
class EstimatorParams:
    """The fitted estimator (JSON in a bundle: ``estimator.json``).

    Attributes
    ----------
    features : list of str
        Feature names, in the order of ``scale`` and the weights.
    scale : dict
        Target -> per feature, the SD of its change from calibration on the training records
        (with that target's smoothing).
    weights : dict
        Target -> weights over ``features`` (mmHg per scaled unit).
    alpha : dict
        Target -> shrinkage toward the cuff value (0 = hold, 1 = the full regression).
    tau : dict
        Target -> smoothing of the features, in beats (1 = none).
    window_s : float
        Seconds before a reading over which its features are summarised (a reading may say
        its own).
    min_cal_beats : int
        Valid beats needed in that window; with fewer, the first ones after the reading are used.
    max_delta : float
        Largest change from the cuff value the estimator reports (mmHg).
    method : str
        ``estimator``, ``offset`` or ``hold``.
    fit : dict
        Provenance: records, grids, validation figures.
    """

    features: list
    scale: list
    weights: dict
    alpha: dict
    tau: dict
    window_s: float = 30.0
    min_cal_beats: int = 5
    max_delta: float = 40.0
    method: str = "estimator"
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"estimator method {self.method!r}: valid methods are {', '.join(METHODS)}")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"estimator: unknown feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}")
        for t in TARGETS:
            for key in ("scale", "weights", "alpha", "tau"):
                if t not in getattr(self, key):
                    raise ValueError(f"estimator: {key} has no entry for {t}")
            for key in ("scale", "weights"):
                if len(getattr(self, key)[t]) != len(self.features):
                    raise ValueError(f"estimator: {key}[{t}] has {len(getattr(self, key)[t])} entries for {len(self.features)} features")
            if not 0.0 <= float(self.alpha[t]) <= 1.0:
                raise ValueError(f"estimator: alpha[{t}] = {self.alpha[t]} is outside 0..1")
            if not float(self.tau[t]) >= 1.0:
                raise ValueError(f"estimator: tau[{t}] = {self.tau[t]} must be at least 1 beat")
        if not self.window_s > 0 or self.min_cal_beats < 1 or not self.max_delta > 0:
            raise ValueError("estimator: window_s and max_delta must be positive and min_cal_beats at least 1")

    @classmethod
    def from_dict(cls, d: dict) -> "EstimatorParams":
        d = dict(d)
        schema = d.pop("schema", ESTIMATOR_SCHEMA)
        if schema != ESTIMATOR_SCHEMA:
            raise ValueError(f"estimator schema {schema!r}: this edgebp reads {ESTIMATOR_SCHEMA}")
        known = {f for f in cls.__dataclass_fields__}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"estimator: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return {"schema": ESTIMATOR_SCHEMA} | asdict(self)


def estimator_params_offset(window_s: float = 30.0) -> EstimatorParams:
    """The model's own beat values shifted by (cuff - model) over the calibration window."""
    f = ["pred_sbp", "pred_dbp", "pred_map"]
    eye = {"sbp": [1.0, 0.0, 0.0], "dbp": [0.0, 1.0, 0.0], "map": [0.0, 0.0, 1.0]}
    return EstimatorParams(features=f, scale={t: [1.0, 1.0, 1.0] for t in TARGETS}, weights=eye, alpha={t: 1.0 for t in TARGETS},
                           tau={t: 1.0 for t in TARGETS}, window_s=window_s, min_cal_beats=3, max_delta=1e9, method="offset")


def estimator_params_hold(window_s: float = 30.0) -> EstimatorParams:
    """The cuff value held until the next reading."""
    p = estimator_params_offset(window_s)
    p.alpha = {t: 0.0 for t in TARGETS}
    p.method = "hold"
    return p


def estimator_load(path: str | Path) -> EstimatorParams:
    """Read an ``estimator.json``; a clear error names the file."""
    try:
        return EstimatorParams.from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid estimator file: {exc}") from None


def estimator_save(params: EstimatorParams, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps(params.to_dict(), indent=1, sort_keys=True) + "\n")
    return p


@dataclass
class CuffReading:
    """One cuff reading: time (s on the stream's time axis), SBP, DBP (mmHg), and optionally
    the seconds of signal it summarises (default: the estimator's ``window_s``)."""

    t: float
    sbp: float
    dbp: float
    window_s: float | None = None
    where: str = ""

    @property
    def map(self) -> float:
        return (self.sbp + 2.0 * self.dbp) / 3.0


def cuff_check(sbp: float, dbp: float) -> str | None:
    """Why a cuff reading is implausible (None when it is fine)."""
    lo, hi = CUFF_RANGE
    for name, v in (("SBP", sbp), ("DBP", dbp)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            return f"{name} {v!r} is not a number"
        if not lo <= v <= hi:
            return f"{name} {v:g} mmHg is outside {lo:g}-{hi:g} mmHg"
    if not dbp < sbp:
        return f"DBP {dbp:g} is not below SBP {sbp:g}"
    return None


def cuff_csv_read(path: str, subject: str | None = None) -> list[CuffReading]:
    """Cuff readings from a calibration CSV, ``time,sbp,dbp[,subject][,window]`` (the one
    schema of :mod:`edgebp.calibration_csv`; ``window``: the seconds each reading summarises).
    A file with readings of several subjects needs ``subject``. A bad row raises ValueError
    naming the file and line."""
    from edgebp.calibration_csv import calibration_csv_read

    rows = calibration_csv_read(path, subject=subject, check=cuff_check)
    subjects = sorted({r.subject for r in rows if r.subject is not None})
    if subject is None and len(subjects) > 1:
        # one stream is one record: mixing several people's cuff readings is never meant
        raise ValueError(f"{path}: readings of {len(subjects)} subjects ({', '.join(subjects[:5])}); "
                         "a stream is one record: give a file with one subject's readings")
    for r in rows:
        if r.time < 0:
            raise ValueError(f"{path}: line {r.line}: time {r.time:g} s is before the stream starts")
    return [CuffReading(r.time, r.sbp, r.dbp, r.window, where=f"{path}: line {r.line}") for r in rows]


class CalibratedEstimator:
    """Beat rows in, calibrated beat rows out (in place), one stream.

    Call :meth:`reading_add` for every cuff reading (from a CSV up front, or as it arrives in
    the stream) and :meth:`update` for every beat row in time order. A reading takes effect
    with the first beat after its time.
    """

    def __init__(self, params: EstimatorParams):
        self.p = params
        self.idx = [FEATURES.index(f) for f in params.features]
        self.scale = {t: np.asarray(params.scale[t], np.float64) for t in TARGETS}
        for v in self.scale.values():
            v[~(v > 0)] = 1.0
        self.W = {t: np.asarray(params.weights[t], np.float64) for t in TARGETS}
        self.alpha = {t: float(params.alpha[t]) for t in TARGETS}
        self.k = {t: 1.0 / float(params.tau[t]) for t in TARGETS}
        # the recent valid beats' features, for the summary before a reading
        self.recent: collections.deque = collections.deque()
        self.pending: list[CuffReading] = []
        self.cuff: CuffReading | None = None
        self.f_cal: np.ndarray | None = None
        self.cal_acc: list[np.ndarray] = []  # beats after a reading that had too few before it
        self.ema: dict[str, np.ndarray] = {}
        self.readings_applied = 0
        # the latest readings only (readings_applied counts them all): a stream calibrated every
        # few minutes for days must not grow without bound
        self.history: collections.deque = collections.deque(maxlen=HISTORY_KEEP)
        self.last_dz: dict[str, np.ndarray] = {}  # the last beat's feature change, unscaled (for fitting)

    # -------------------------------------------------------------- readings
    def reading_add(self, t: float, sbp: float, dbp: float, window_s: float | None = None, where: str = "") -> bool:
        """Queue a cuff reading; an implausible one is refused with a warning naming ``where``
        (False returned) and the stream goes on."""
        why = cuff_check(sbp, dbp)
        if why is None and not (math.isfinite(t) and t >= 0):
            why = f"time {t:g} s is before the stream starts"
        if why is not None:
            log.warning("%scuff reading rejected: %s", f"{where}: " if where else "", why)
            return False
        self.pending.append(CuffReading(float(t), float(sbp), float(dbp), window_s, where))
        self.pending.sort(key=lambda r: r.t)
        return True

    def _apply(self, r: CuffReading) -> None:
        w = self.p.window_s if r.window_s is None else float(r.window_s)
        got = [f for (t, f) in self.recent if r.t - w <= t <= r.t]
        self.cuff = r
        self.cal_acc = []
        self.f_cal = None
        if len(got) >= self.p.min_cal_beats:
            self._cal_set(np.vstack(got))
        else:
            self.cal_acc = list(got)
        self.readings_applied += 1
        self.history.append({"t": r.t, "sbp": r.sbp, "dbp": r.dbp, "where": r.where, "beats_before": len(got)})
        log.debug("cuff reading at t=%.1f s: %.0f/%.0f mmHg (%d beats in the %.0f s before it)", r.t, r.sbp, r.dbp, len(got), w)

    def _cal_set(self, F: np.ndarray) -> None:
        n = np.isfinite(F).sum(axis=0)
        fc = np.where(n > 0, np.nansum(F, axis=0) / np.maximum(n, 1), np.nan)  # a feature never seen stays NaN
        self.f_cal = fc
        self.ema = {t: fc.copy() for t in TARGETS}

    # -------------------------------------------------------------- beats
    def update(self, row: dict) -> dict:
        """Calibrate one beat row in place (``sbp``, ``dbp``, ``map``, ``calibrated``)."""
        t = float(row["t"])
        self.last_dz = {}
        valid = bool(row.get("valid", True)) and math.isfinite(float(row.get("sbp", float("nan"))))
        f = None
        if valid:
            f = np.array([float(row.get(k, np.nan)) if k not in ("pred_sbp", "pred_dbp", "pred_map") else float(row[k[5:]])
                          for k in FEATURES], np.float64)
        # a reading takes effect with the first beat after it, so the beats at its time count
        while self.pending and self.pending[0].t < t:
            self._apply(self.pending.pop(0))
        if f is not None:
            self.recent.append((t, f))
            horizon = max([self.p.window_s] + [r.window_s or 0.0 for r in self.pending]) + 5.0
            while self.recent and self.recent[0][0] < t - horizon:
                self.recent.popleft()
        if self.cuff is None:
            row["calibrated"] = False
            return row
        row["calibrated"] = True
        if f is not None and self.f_cal is None:
            self.cal_acc.append(f)
            if len(self.cal_acc) >= self.p.min_cal_beats:
                self._cal_set(np.vstack(self.cal_acc))
                self.cal_acc = []
        if not valid:
            return row
        cuff = {"sbp": self.cuff.sbp, "dbp": self.cuff.dbp, "map": self.cuff.map}
        if self.f_cal is None:  # too few beats yet to know the features at calibration: hold
            for tg in TARGETS:
                row[tg] = cuff[tg]
            return row
        for tg in TARGETS:
            e = self.ema[tg]
            ok = np.isfinite(f) & np.isfinite(e)
            e[ok] += self.k[tg] * (f[ok] - e[ok])
            fresh = np.isfinite(f) & ~np.isfinite(e)
            e[fresh] = f[fresh]
            dz = e[self.idx] - self.f_cal[self.idx]
            self.last_dz[tg] = dz
            with np.errstate(invalid="ignore"):
                z = dz / self.scale[tg]
            z = np.where(np.isfinite(z), z, 0.0)
            if self.p.method == "estimator":  # offset/hold work in mmHg: nothing to clip
                z = np.clip(z, -Z_CLIP, Z_CLIP)
            d = float(np.clip(self.W[tg] @ z, -self.p.max_delta, self.p.max_delta))
            row[tg] = cuff[tg] + self.alpha[tg] * d
        return row

    def wave_offset(self) -> float | None:
        """For the point-wise waveform: the cuff MAP minus the model's MAP over the
        calibration window (None before a reading is applied)."""
        if self.cuff is None or self.f_cal is None:
            return None
        m = float(self.f_cal[FEATURES.index("pred_map")])
        return self.cuff.map - m if math.isfinite(m) else None

    def describe(self) -> str:
        if self.cuff is None:
            return f"{self.p.method}: {len(self.pending)} cuff reading(s) pending, none applied yet"
        return (f"{self.p.method}: {self.readings_applied} cuff reading(s) applied, the last at t={self.cuff.t:.1f} s "
                f"({self.cuff.sbp:.0f}/{self.cuff.dbp:.0f} mmHg)")
