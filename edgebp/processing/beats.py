"""Beats: blood-pressure labels from an arterial waveform, R peaks from ECG, pulses from PPG.

The ABP beat detector is a hysteresis peak/trough tracker written as a numba streaming kernel
with explicit state, so the streaming runtime runs the very same code on chunks of any size
and :func:`abp_beats` is one call of it on the whole array. It works on any waveform in mmHg:
the reference arterial line and a model's predicted ABP are labelled by identical logic.

How the tracker decides (all thresholds in :class:`BeatDetector`):

* A trough is confirmed when the signal has risen ``h`` above the lowest value since the last
  peak, a peak when it has fallen ``h`` below the highest value since the last trough. ``h`` is
  ``frac`` (0.3) of a running pulse-pressure envelope (instant attack, 2.5 s decay), but never
  below ``floor`` (4 mmHg): the dicrotic notch rebound (typically 5-20 % of the pulse pressure)
  and line noise do not make beats.
* Two systolic peaks closer than 60/220 s (heart rate above 220 bpm) cannot both be beats: the
  trough between them is withdrawn and the higher peak kept.
* A beat runs from the trough that starts it (``i_dia``) over its systolic peak (``i_sys``,
  SBP = its value) to the trough that ends it (``i_end``). DBP is the lowest pressure of the
  trough; its index is the bottom of the *last* valley within ``trough_tol * h`` of that
  minimum, i.e. the foot of the upstroke, so a deep dicrotic notch does not split the beat. MAP is the mean of
  the samples ``[i_dia, i_end)``, accumulated in the state.
* NaN is a gap: it resets the tracker, so no beat spans a gap. After a reset the tracker
  first looks for a peak, so the first beat starts at the first trough reached by a real
  downstroke (the partial beat at the start of a segment is dropped).
* A beat is emitted once the next systolic peak has confirmed it (about 0.2-0.3 s after its
  end trough); :meth:`BeatDetector.flush` emits the last complete beat at the end of a stream.

``Beats.valid`` marks physiologically plausible beats, see :func:`beats_check`.

Examples
--------
>>> import numpy as np
>>> from edgebp.processing.beats import abp_beats
>>> fs = 125.0
>>> t = np.arange(int(10 * fs)) / fs
>>> abp = 80 + 40 * np.clip(np.sin(2 * np.pi * 1.2 * t), 0, None) ** 2   # 72 bpm, 120/80
>>> b = abp_beats(abp, fs)
>>> len(b), bool(b.valid.all()), round(float(np.median(b.sbp))), round(float(np.median(b.dbp)))
(10, True, 120, 80)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

import numpy as np
from edgebp.processing.filters import njit  # numba.njit, imported without its scipy probe

log = logging.getLogger(__name__)

__all__ = [
    "Beats",
    "BeatDetector",
    "abp_beats",
    "beats_check",
    "beats_to_samples",
    "ecg_findpeaks",
    "ppg_findpeaks",
    "BEAT_SBP",
    "BEAT_DBP",
    "BEAT_PP_LOW",
    "BEAT_PP_HIGH",
    "BEAT_INTERVAL",
    "BEAT_FLAG_NAMES",
]

# Plausibility limits of one beat (mmHg, seconds). PP must also reach PP_MIN_SHARE of the SBP:
# a line whose pulse pressure is a small share of its mean is damped (clot, air bubble, kinked
# catheter), whatever the absolute numbers.
SBP_RANGE = (60.0, 260.0)
DBP_RANGE = (20.0, 160.0)
PP_RANGE = (10.0, 150.0)
PP_MIN_SHARE = 0.12
INTERVAL_RANGE = (0.27, 2.5)

# Bits of beats_check(); a beat is valid when none is set.
BEAT_SBP = 1
BEAT_DBP = 2
BEAT_PP_LOW = 4
BEAT_PP_HIGH = 8
BEAT_INTERVAL = 16
BEAT_FLAG_NAMES = {
    BEAT_SBP: "sbp_range",
    BEAT_DBP: "dbp_range",
    BEAT_PP_LOW: "pp_low",
    BEAT_PP_HIGH: "pp_high",
    BEAT_INTERVAL: "interval",
}


# --------------------------------------------------------------------------------------------
# The Beats container
# --------------------------------------------------------------------------------------------


@dataclass
class Beats:
    """Detected beats of one waveform, as parallel arrays.

    Attributes
    ----------
    i_dia, i_sys, i_end : np.ndarray of int64
        Sample index of the trough that starts the beat, of its systolic peak, and of the
        trough that ends it (the next beat's ``i_dia``). Indices count from the first sample
        given to the detector.
    t_sys : np.ndarray of float64
        Time of the systolic peak in seconds (``i_sys / fs``).
    sbp, dbp, map : np.ndarray of float64
        Systolic (peak value), diastolic (lowest value of the starting trough) and mean (mean
        of ``[i_dia, i_end)``) pressure, in the waveform's units (mmHg).
    fs : float
        Sampling rate the indices refer to.
    valid : np.ndarray of bool
        Plausible beats (see :func:`beats_check`); computed when not given.
    """

    i_dia: np.ndarray
    i_sys: np.ndarray
    i_end: np.ndarray
    t_sys: np.ndarray
    sbp: np.ndarray
    dbp: np.ndarray
    map: np.ndarray
    fs: float
    valid: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("i_dia", "i_sys", "i_end"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
        for name in ("t_sys", "sbp", "dbp", "map"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
        n = len(self.i_dia)
        for f in fields(self):
            if f.name in ("fs", "valid"):
                continue
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"Beats.{f.name} has {len(getattr(self, f.name))} entries, i_dia has {n}")
        self.fs = float(self.fs)
        if self.valid is None:
            self.valid = beats_check(self) == 0
        else:
            self.valid = np.asarray(self.valid, dtype=bool).reshape(-1)
            if len(self.valid) != n:
                raise ValueError(f"Beats.valid has {len(self.valid)} entries, i_dia has {n}")

    def __len__(self) -> int:
        return len(self.i_dia)

    def __getitem__(self, index) -> "Beats":
        """A subset (boolean mask, index array or slice) as a new :class:`Beats`."""
        return Beats(
            self.i_dia[index], self.i_sys[index], self.i_end[index], self.t_sys[index],
            self.sbp[index], self.dbp[index], self.map[index], self.fs, self.valid[index],
        )

    @property
    def pp(self) -> np.ndarray:
        """Pulse pressure ``sbp - dbp``."""
        return self.sbp - self.dbp

    @property
    def interval(self) -> np.ndarray:
        """Beat duration ``(i_end - i_dia) / fs`` in seconds."""
        return (self.i_end - self.i_dia) / self.fs

    @classmethod
    def empty(cls, fs: float) -> "Beats":
        """No beats."""
        z = np.zeros(0)
        return cls(z, z, z, z, z, z, z, fs)

    @classmethod
    def concat(cls, parts: list["Beats"]) -> "Beats":
        """Join beats of consecutive chunks (all with the same ``fs``)."""
        if not parts:
            raise ValueError("Beats.concat needs at least one Beats (use Beats.empty(fs))")
        fs = parts[0].fs
        if any(p.fs != fs for p in parts):
            raise ValueError(f"Beats.concat: rates differ ({sorted({p.fs for p in parts})})")
        cat = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls) if f.name != "fs"}
        return cls(fs=fs, **cat)

    def to_dict(self) -> dict:
        """Plain lists (JSON-ready)."""
        return {f.name: (getattr(self, f.name).tolist() if f.name != "fs" else self.fs) for f in fields(self)}


def beats_check(beats: Beats) -> np.ndarray:
    """Plausibility of each beat as a bit field (0 = plausible).

    Bits: ``BEAT_SBP`` (SBP outside 60-260 mmHg), ``BEAT_DBP`` (DBP outside 20-160 mmHg),
    ``BEAT_PP_LOW`` (pulse pressure below 10 mmHg or below 12 % of the SBP: a damped or
    disconnected line), ``BEAT_PP_HIGH`` (pulse pressure above 150 mmHg), ``BEAT_INTERVAL``
    (beat shorter than 0.27 s or longer than 2.5 s, i.e. outside 24-220 bpm).

    Parameters
    ----------
    beats : Beats

    Returns
    -------
    np.ndarray of uint8

    Examples
    --------
    >>> b = Beats([0], [30], [100], [0.24], [25.0], [13.0], [18.0], fs=125.0)   # a 25/13 "ABP"
    >>> int(beats_check(b)[0]) == BEAT_SBP | BEAT_DBP
    True
    """
    sbp, dbp = beats.sbp, beats.dbp
    pp = sbp - dbp
    dur = (beats.i_end - beats.i_dia) / beats.fs
    flags = np.zeros(len(sbp), dtype=np.uint8)
    flags[~((sbp >= SBP_RANGE[0]) & (sbp <= SBP_RANGE[1]))] |= BEAT_SBP
    flags[~((dbp >= DBP_RANGE[0]) & (dbp <= DBP_RANGE[1]))] |= BEAT_DBP
    flags[~((pp >= PP_RANGE[0]) & (pp >= PP_MIN_SHARE * sbp))] |= BEAT_PP_LOW
    flags[pp > PP_RANGE[1]] |= BEAT_PP_HIGH
    flags[~((dur >= INTERVAL_RANGE[0]) & (dur <= INTERVAL_RANGE[1]))] |= BEAT_INTERVAL
    return flags


# --------------------------------------------------------------------------------------------
# The streaming tracker kernel
# --------------------------------------------------------------------------------------------

# State vector layout (float64; indices are exact as float64 up to 2**53 samples).
_N = 0          # absolute index of the next sample
_MODE = 1       # 0 = reset (next finite sample starts a segment), 1 = seek trough, 2 = seek peak
_SEG0 = 2       # index of the first sample of the current segment
_HI = 3         # envelope high
_LO = 4         # envelope low
_CV = 5         # candidate extreme value (min when seeking a trough, max when seeking a peak)
_CI = 6         # candidate index
_CCUM = 7       # beat sum up to (excluding) the trough candidate
_OPP = 8        # opposite extreme since the candidate (max after min / min after max)
_CUM = 9        # sum of samples from the current beat start to now (excluding now)
_START = 10     # index of the trough starting the current beat, -1 = none
_STARTV = 11    # its value
_SYSI = 12      # index of the last confirmed peak, -1 = none
_SYSV = 13      # its value
_PEND = 14      # 1 = a complete beat waits for the next peak to confirm it
_P_DIA = 15
_P_DIAV = 16
_P_SYS = 17
_P_SYSV = 18
_P_END = 19
_P_SUM = 20
_STATE_LEN = 21

_MODE_RESET, _MODE_TROUGH, _MODE_PEAK = 0.0, 1.0, 2.0


@njit(cache=True)
def _emit(out, k, dia, diav, sys_, sysv, end, s):
    if k >= out.shape[0]:
        grown = np.empty((out.shape[0] * 2 + 8, 6))
        grown[: out.shape[0]] = out
        out = grown
    out[k, 0] = dia
    out[k, 1] = sys_
    out[k, 2] = end
    out[k, 3] = sysv
    out[k, 4] = diav
    out[k, 5] = s / (end - dia)
    return out, k + 1


@njit(cache=True)
def _reset(st):
    st[_MODE] = _MODE_RESET
    st[_START] = -1.0
    st[_SYSI] = -1.0
    st[_PEND] = 0.0


@njit(cache=True)
def _track_block(x, st_in, frac, floor, init_pp, decay, refr, trough_tol, flush):
    """Run the hysteresis tracker over ``x``; return (beats (k, 6), new state)."""
    st = st_in.copy()
    n = x.shape[0]
    out = np.empty((n // max(refr, 1) + 4, 6))
    k = 0
    for j in range(n):
        v = x[j]
        i = st[_N]
        st[_N] = i + 1.0
        if not np.isfinite(v):
            if st[_PEND] > 0.0:
                out, k = _emit(out, k, st[_P_DIA], st[_P_DIAV], st[_P_SYS], st[_P_SYSV], st[_P_END], st[_P_SUM])
            _reset(st)
            continue
        if st[_MODE] == _MODE_RESET:
            # A segment starts by looking for a peak: the first trough counted is one reached
            # by a real downstroke, never a mid-upstroke first sample.
            st[_MODE] = _MODE_PEAK
            st[_SEG0] = i
            st[_HI] = v + 0.5 * init_pp
            st[_LO] = v - 0.5 * init_pp
            st[_CV] = v
            st[_CI] = i
            st[_CCUM] = 0.0
            st[_OPP] = v
            st[_CUM] = v
            st[_START] = -1.0
            st[_SYSI] = -1.0
            st[_PEND] = 0.0
            continue
        # Pulse-pressure envelope: instant attack, exponential shrink.
        half = 0.5 * decay * (st[_HI] - st[_LO])
        st[_HI] -= half
        st[_LO] += half
        if v > st[_HI]:
            st[_HI] = v
        if v < st[_LO]:
            st[_LO] = v
        h = frac * (st[_HI] - st[_LO])
        if h < floor:
            h = floor

        if st[_MODE] == _MODE_TROUGH:
            if v < st[_CV]:
                st[_CV] = v
                st[_CI] = i
                st[_CCUM] = st[_CUM]
                st[_OPP] = v
            elif v <= st[_CV] + trough_tol * h and v <= st[_OPP]:
                # A later valley nearly as low as the minimum (not a sample of the rise out of
                # it): the beat boundary moves there, to the foot of the next upstroke, so a
                # deep dicrotic notch does not end the beat. The DBP stays the minimum.
                st[_CI] = i
                st[_CCUM] = st[_CUM]
                st[_OPP] = v
            elif v > st[_OPP]:
                st[_OPP] = v
                if v >= st[_CV] + h:
                    # Trough confirmed: the beat that started at _START (if any) is complete.
                    t_i = st[_CI]
                    if st[_START] >= 0.0 and st[_SYSI] > st[_START]:
                        st[_PEND] = 1.0
                        st[_P_DIA] = st[_START]
                        st[_P_DIAV] = st[_STARTV]
                        st[_P_SYS] = st[_SYSI]
                        st[_P_SYSV] = st[_SYSV]
                        st[_P_END] = t_i
                        st[_P_SUM] = st[_CCUM]
                    st[_START] = t_i
                    st[_STARTV] = st[_CV]
                    st[_CUM] = st[_CUM] - st[_CCUM]
                    st[_MODE] = _MODE_PEAK
                    st[_CV] = v
                    st[_CI] = i
                    st[_OPP] = v
        else:
            if v > st[_CV]:
                st[_CV] = v
                st[_CI] = i
                st[_OPP] = v
            elif v < st[_OPP]:
                st[_OPP] = v
                if v <= st[_CV] - h:
                    p_i = st[_CI]
                    p_v = st[_CV]
                    if st[_SYSI] >= 0.0 and p_i - st[_SYSI] < refr:
                        # Too close to the previous peak: the trough between was a notch or
                        # noise. Withdraw it and keep the higher peak.
                        if st[_PEND] > 0.0:
                            st[_START] = st[_P_DIA]
                            st[_STARTV] = st[_P_DIAV]
                            st[_CUM] = st[_P_SUM] + st[_CUM]
                            st[_PEND] = 0.0
                        else:
                            st[_START] = -1.0
                        if p_v > st[_SYSV]:
                            st[_SYSI] = p_i
                            st[_SYSV] = p_v
                    else:
                        if st[_PEND] > 0.0:
                            out, k = _emit(out, k, st[_P_DIA], st[_P_DIAV], st[_P_SYS], st[_P_SYSV],
                                           st[_P_END], st[_P_SUM])
                            st[_PEND] = 0.0
                        st[_SYSI] = p_i
                        st[_SYSV] = p_v
                    st[_MODE] = _MODE_TROUGH
                    st[_CV] = v
                    st[_CI] = i
                    st[_CCUM] = st[_CUM]
                    st[_OPP] = v
        st[_CUM] += v
    if flush and st[_PEND] > 0.0:
        out, k = _emit(out, k, st[_P_DIA], st[_P_DIAV], st[_P_SYS], st[_P_SYSV], st[_P_END], st[_P_SUM])
        st[_PEND] = 0.0
    return out[:k], st


class BeatDetector:
    """Streaming ABP beat detector: a hysteresis peak/trough tracker with explicit state.

    Parameters
    ----------
    fs : float
        Sampling rate (Hz).
    frac : float
        Confirmation threshold as a fraction of the running pulse-pressure envelope.
    floor : float
        Smallest threshold, in signal units (mmHg for ABP).
    init_pp : float
        Pulse pressure assumed at the start of a segment (signal units), so that a segment
        beginning on a falling edge does not take the dicrotic notch for a trough.
    tau_s : float
        Decay time constant of the envelope (s).
    max_hr : float
        Highest heart rate accepted (bpm); sets the refractory period between systolic peaks.
    trough_tol : float
        A later valley within ``trough_tol * h`` of the lowest value moves the beat boundary
        there, so the boundary sits at the foot of the next upstroke even when a deep
        dicrotic notch is the absolute minimum; the DBP remains the minimum.

    Notes
    -----
    ``process`` is a pure function of ``(x, state)``: any chunking of the input gives exactly
    the beats of one call on the whole array (followed by :meth:`flush` in both cases).
    Indices in the output count from the first sample ever given to this state.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 125.0
    >>> t = np.arange(int(10 * fs)) / fs
    >>> abp = 80 + 40 * np.clip(np.sin(2 * np.pi * 1.2 * t), 0, None) ** 2
    >>> det = BeatDetector(fs)
    >>> st = det.init_state()
    >>> parts = []
    >>> for chunk in np.array_split(abp, 9):
    ...     b, st = det.process(chunk, st)
    ...     parts.append(b)
    >>> b, st = det.flush(st)
    >>> parts.append(b)
    >>> streamed = Beats.concat(parts)
    >>> bool(np.array_equal(streamed.i_sys, abp_beats(abp, fs).i_sys))
    True
    """

    def __init__(self, fs: float, frac: float = 0.3, floor: float = 4.0, init_pp: float = 40.0,
                 tau_s: float = 2.5, max_hr: float = 220.0, trough_tol: float = 0.3):
        if not np.isfinite(fs) or fs <= 0:
            raise ValueError(f"BeatDetector: fs must be a positive rate in Hz, got {fs!r}")
        if not 0.0 < frac < 1.0:
            raise ValueError(f"BeatDetector: frac must be in (0, 1), got {frac!r}")
        if floor < 0 or init_pp < 0 or tau_s <= 0 or max_hr <= 0 or not 0.0 <= trough_tol < 1.0:
            raise ValueError("BeatDetector: floor and init_pp must be >= 0, tau_s and max_hr > 0, "
                             "trough_tol in [0, 1)")
        self.fs = float(fs)
        self.frac = float(frac)
        self.floor = float(floor)
        self.init_pp = float(init_pp)
        self.tau_s = float(tau_s)
        self.max_hr = float(max_hr)
        self.trough_tol = float(trough_tol)
        self._decay = 1.0 / (self.tau_s * self.fs)
        self._refr = max(1, int(round(60.0 / self.max_hr * self.fs)))

    def init_state(self) -> np.ndarray:
        """A fresh state (float64 vector): nothing seen yet."""
        st = np.zeros(_STATE_LEN)
        _reset(st)
        return st

    def _run(self, x: np.ndarray, state: np.ndarray, flush: bool) -> tuple[Beats, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (_STATE_LEN,):
            raise ValueError(f"BeatDetector: state must have shape ({_STATE_LEN},), got {state.shape}")
        rows, st = _track_block(x, state, self.frac, self.floor, self.init_pp, self._decay, self._refr,
                                self.trough_tol, flush)
        return _rows_to_beats(rows, self.fs), st

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[Beats, np.ndarray]:
        """Feed a block of samples; return the beats completed in it and the new state."""
        return self._run(x, state, flush=False)

    def flush(self, state: np.ndarray) -> tuple[Beats, np.ndarray]:
        """End of stream: emit the last complete beat still waiting for confirmation."""
        return self._run(np.zeros(0), state, flush=True)


def _beats_none(fs: float) -> Beats:
    """``Beats`` of no rows, as its constructor makes them (int64 indices, float64 values,
    an empty ``valid``) without its per-field conversions and checks: most streaming steps
    complete no beat, and those checks were a measurable share of a 25-sample step."""
    b = Beats.__new__(Beats)
    b.i_dia, b.i_sys, b.i_end = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    b.t_sys, b.sbp, b.dbp, b.map = np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    b.fs = float(fs)
    b.valid = np.zeros(0, bool)
    return b


def _rows_to_beats(rows: np.ndarray, fs: float) -> Beats:
    if not rows.shape[0]:
        return _beats_none(fs)
    i_sys = rows[:, 1].astype(np.int64)
    return Beats(
        i_dia=rows[:, 0].astype(np.int64), i_sys=i_sys, i_end=rows[:, 2].astype(np.int64),
        t_sys=i_sys / fs, sbp=rows[:, 3].copy(), dbp=rows[:, 4].copy(), map=rows[:, 5].copy(), fs=fs,
    )


def abp_beats(abp: np.ndarray, fs: float, **detector_kw) -> Beats:
    """Beats of an arterial pressure waveform (reference or predicted, in mmHg).

    One call of :class:`BeatDetector` on the whole array, then a flush.

    Parameters
    ----------
    abp : np.ndarray
        Pressure in mmHg; NaN marks gaps (no beat spans one).
    fs : float
        Sampling rate (Hz).
    **detector_kw
        Passed to :class:`BeatDetector` (``frac``, ``floor``, ``init_pp``, ``tau_s``, ``max_hr``).

    Returns
    -------
    Beats

    Examples
    --------
    >>> import numpy as np
    >>> fs = 250.0
    >>> t = np.arange(int(6 * fs)) / fs
    >>> abp = 70 + 50 * np.clip(np.sin(2 * np.pi * t), 0, None)      # 60 bpm, 120/70
    >>> b = abp_beats(abp, fs)
    >>> len(b), b.sbp.round(1).tolist()[:2], b.dbp.round(1).tolist()[:2]
    (4, [120.0, 120.0], [70.0, 70.0])
    """
    det = BeatDetector(fs, **detector_kw)
    st = det.init_state()
    b1, st = det.process(abp, st)
    b2, _ = det.flush(st)
    return Beats.concat([b1, b2])


def beats_to_samples(beats: Beats, n: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample SBP and DBP targets: each valid beat's values held over ``[i_dia, i_end)``.

    Parameters
    ----------
    beats : Beats
    n : int
        Length of the output (samples of the waveform the beats came from).
    fs : float
        Sampling rate of that waveform; must equal ``beats.fs`` (a guard against mixing
        beats and signals of different rates).

    Returns
    -------
    (sbp_t, dbp_t) : tuple of np.ndarray
        float64 arrays of length ``n``, NaN outside valid beats.

    Examples
    --------
    >>> b = Beats([2, 6], [3, 7], [6, 9], [0.3, 0.7], [120., 125.], [80., 82.], [95., 97.], fs=10.0,
    ...           valid=[True, True])
    >>> s, d = beats_to_samples(b, 10, 10.0)
    >>> s.tolist()
    [nan, nan, 120.0, 120.0, 120.0, 120.0, 125.0, 125.0, 125.0, nan]
    """
    if abs(float(fs) - beats.fs) > 1e-9 * max(1.0, beats.fs):
        raise ValueError(f"beats_to_samples: fs={fs} Hz but the beats were detected at {beats.fs} Hz")
    n = int(n)
    if n < 0:
        raise ValueError(f"beats_to_samples: n must be >= 0, got {n}")
    sbp_t = np.full(n, np.nan)
    dbp_t = np.full(n, np.nan)
    for a, b, s, d in zip(beats.i_dia[beats.valid], beats.i_end[beats.valid],
                          beats.sbp[beats.valid], beats.dbp[beats.valid]):
        a, b = max(int(a), 0), min(int(b), n)
        if b > a:
            sbp_t[a:b] = s
            dbp_t[a:b] = d
    return sbp_t, dbp_t


# --------------------------------------------------------------------------------------------
# Offline helpers shared by the ECG and PPG detectors
# --------------------------------------------------------------------------------------------


def _finite_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of finite samples."""
    ok = np.isfinite(x).astype(np.int8)
    d = np.diff(np.concatenate(([0], ok, [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _filtfilt_runs(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Zero-phase filter of each finite run on its own; NaN stays NaN (short runs too)."""
    from scipy import signal as sps  # offline only: the streaming runtime never imports scipy

    y = np.full(len(x), np.nan)
    padlen = 3 * (2 * len(sos) + 1)
    for a, b in _finite_runs(x):
        if b - a > padlen:
            y[a:b] = sps.sosfiltfilt(sos, x[a:b])
    return y


def _band_sos(fs: float, low: float, high: float, order: int = 2) -> np.ndarray:
    from scipy import signal as sps  # offline only: the streaming runtime never imports scipy

    nyq = 0.5 * fs
    high = min(high, 0.45 * fs)
    if low >= high:
        raise ValueError(f"band {low}-{high} Hz does not fit a sampling rate of {fs} Hz")
    return sps.butter(order, [low / nyq, high / nyq], btype="bandpass", output="sos")


# --------------------------------------------------------------------------------------------
# ECG R peaks
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _slope_at(slope, i, w):
    a = max(0, i - w)
    b = min(slope.shape[0], i + w + 1)
    return np.max(slope[a:b])


@njit(cache=True)
def _pt_detect(mwi, slope, fs, refr, t_learn):
    """Pan-Tompkins-style decision on the integrated energy: adaptive signal/noise levels,
    refractory period, T-wave rejection, search-back at half threshold when a beat seems
    missed."""
    n = mwi.shape[0]
    # local maxima, at most one per refractory period (the larger wins)
    cand = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(1, n - 1):
        if mwi[i] > 0.0 and mwi[i] >= mwi[i - 1] and mwi[i] > mwi[i + 1]:
            if m > 0 and i - cand[m - 1] < refr:
                if mwi[i] > mwi[cand[m - 1]]:
                    cand[m - 1] = i
            else:
                cand[m] = i
                m += 1
    peaks = np.empty(m, dtype=np.int64)
    if m == 0:
        return peaks[:0]
    # robust start: the median of per-window maxima over the learning period
    nl = min(n, t_learn)
    wl = max(1, int(fs))
    nw = max(1, nl // wl)
    mx = np.empty(nw)
    for q in range(nw):
        mx[q] = np.max(mwi[q * wl: min(nl, (q + 1) * wl)])
    spki = 0.5 * np.median(mx)
    npki = 0.5 * np.median(mwi[:nl])
    rr_avg = fs  # 60 bpm until learnt
    p = 0
    last = -refr
    last_cand_idx = -1  # index in cand of the last accepted peak
    w = max(1, int(0.075 * fs))
    t_win = int(0.36 * fs)
    last_slope = 0.0
    for c in range(m):
        i = cand[c]
        thr1 = npki + 0.25 * (spki - npki)
        is_t = False
        if p > 0 and i - last < t_win:
            # within 360 ms of a QRS, a wave with less than half its steepest slope is a T wave
            is_t = _slope_at(slope, i, w) < 0.5 * last_slope
        if mwi[i] >= thr1 and i - last >= refr and not is_t:
            if p > 0:
                rr = i - last
                # search back: a gap of more than 1.66 RR may hide a weaker beat
                if rr > 1.66 * rr_avg:
                    thr2 = 0.5 * thr1
                    best = -1
                    for cc in range(last_cand_idx + 1, c):
                        j = cand[cc]
                        if j - last >= refr and i - j >= refr and mwi[j] >= thr2:
                            if best < 0 or mwi[j] > mwi[best]:
                                best = j
                    if best >= 0:
                        peaks[p] = best
                        p += 1
                        spki = 0.25 * mwi[best] + 0.75 * spki
                        rr = i - best
                        last = best
                rr_avg = 0.875 * rr_avg + 0.125 * rr
            peaks[p] = i
            p += 1
            spki = 0.125 * mwi[i] + 0.875 * spki
            last = i
            last_cand_idx = c
            last_slope = _slope_at(slope, i, w)
        else:
            npki = 0.125 * mwi[i] + 0.875 * npki
            # a long silence (lead change, gain step) lowers the signal level again
            if p > 0 and i - last > 3.0 * fs:
                spki *= 0.5
    return peaks[:p]


def ecg_findpeaks(ecg: np.ndarray, fs: float) -> np.ndarray:
    """R-peak indices of an ECG lead, either polarity.

    Pan-Tompkins-like: 5-15 Hz band-pass (zero phase, per finite run), derivative, squaring,
    150 ms centred moving integration, adaptive signal/noise thresholds with a 200 ms
    refractory period and search-back. The R peak is then placed on the extreme of the
    1-30 Hz band-passed lead within +-100 ms, on the side (positive or negative) that
    dominates the record's QRS complexes, so inverted ICU leads work.

    Parameters
    ----------
    ecg : np.ndarray
        One lead, any units; NaN marks gaps.
    fs : float
        Sampling rate (Hz), at least 50.

    Returns
    -------
    np.ndarray of int64
        Sorted R-peak sample indices.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 250.0
    >>> t = np.arange(int(10 * fs)) / fs
    >>> r_true = np.arange(0.5, 10, 0.8)
    >>> ecg = sum(np.exp(-0.5 * ((t - r) / 0.01) ** 2) for r in r_true)
    >>> r = ecg_findpeaks(-ecg, fs)          # inverted lead
    >>> len(r) == len(r_true), bool(np.all(np.abs(r / fs - r_true) < 0.01))
    (True, True)
    """
    x = np.asarray(ecg, dtype=np.float64).reshape(-1)
    if fs < 50:
        raise ValueError(f"ecg_findpeaks: fs={fs} Hz is too low for QRS detection (need >= 50 Hz)")
    if len(x) < int(fs):
        return np.zeros(0, dtype=np.int64)
    bp = _filtfilt_runs(x, _band_sos(fs, 5.0, 15.0))
    d = np.gradient(np.nan_to_num(bp, nan=0.0)) * fs
    e = d * d
    w = max(1, int(round(0.15 * fs)))
    mwi = np.convolve(e, np.ones(w) / w, mode="same")
    mwi[~np.isfinite(bp)] = 0.0
    refr = max(1, int(round(0.2 * fs)))
    det = _pt_detect(mwi, np.abs(d), float(fs), refr, int(10 * fs))
    if len(det) == 0:
        return det
    wide = np.nan_to_num(_filtfilt_runs(x, _band_sos(fs, 1.0, 30.0)), nan=0.0)
    half = max(1, int(round(0.1 * fs)))
    lo = np.clip(det - half, 0, len(x))
    hi = np.clip(det + half + 1, 0, len(x))
    pos = np.array([wide[a:b].max() for a, b in zip(lo, hi)])
    neg = np.array([-wide[a:b].min() for a, b in zip(lo, hi)])
    sign = 1.0 if np.median(pos) >= np.median(neg) else -1.0
    r = np.array([a + int(np.argmax(sign * wide[a:b])) for a, b in zip(lo, hi)], dtype=np.int64)
    r = np.unique(r)
    # refinement may pull two detections onto nearby samples: keep the refractory rule
    keep = np.ones(len(r), dtype=bool)
    last = -refr
    for q, i in enumerate(r):
        if i - last < refr:
            keep[q] = False
        else:
            last = i
    r = r[keep]
    return r[np.isfinite(x[r])]


# --------------------------------------------------------------------------------------------
# PPG pulses
# --------------------------------------------------------------------------------------------


def _ppg_track(ppg: np.ndarray, fs: float) -> tuple[Beats, np.ndarray]:
    """PPG pulses by the ABP tracker on the 0.5-8 Hz band-passed signal: (beats, filtered)."""
    x = np.asarray(ppg, dtype=np.float64).reshape(-1)
    y = _filtfilt_runs(x, _band_sos(fs, 0.5, 8.0))
    fin = y[np.isfinite(y)]
    if len(fin) < int(2 * fs):
        return Beats.empty(fs), y
    amp = float(np.percentile(fin, 95) - np.percentile(fin, 5))
    if amp <= 0:
        return Beats.empty(fs), y
    beats = abp_beats(y, fs, frac=0.3, floor=0.05 * amp, init_pp=amp)
    return beats, y


def _tangent_feet(y: np.ndarray, beats: Beats) -> np.ndarray:
    """Intersecting-tangent foot of each pulse: the tangent at the steepest point of the
    upstroke meets the horizontal through the lowest point before it."""
    feet = np.empty(len(beats), dtype=np.int64)
    for q, (a, p) in enumerate(zip(beats.i_dia, beats.i_sys)):
        seg = y[a: p + 1]
        if len(seg) < 3:
            feet[q] = a
            continue
        slope = np.gradient(seg)
        m = int(np.argmax(slope))
        s = slope[m]
        if not s > 0:
            feet[q] = a
            continue
        level = seg[: m + 1].min()
        f = m - (seg[m] - level) / s
        feet[q] = a + int(round(min(max(f, 0.0), float(m))))
    return feet


def ppg_findpeaks(ppg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Pulse feet and systolic peaks of a PPG.

    The signal is band-passed 0.5-8 Hz (zero phase, per finite run) and run through the same
    hysteresis tracker as ABP (:class:`BeatDetector`, threshold 0.3 of the pulse envelope,
    floor 5 % of the record's 5-95 % amplitude). Peaks are the tracker's systolic maxima of the
    filtered signal. The foot is the **intersecting tangent** point: where the tangent at the
    steepest point of the upstroke (maximum first derivative) crosses the horizontal through
    the preceding minimum; it is rounded to a sample and never before that minimum.

    Parameters
    ----------
    ppg : np.ndarray
        PPG in any units, pulses pointing up (more blood = higher); NaN marks gaps.
    fs : float
        Sampling rate (Hz).

    Returns
    -------
    (feet, peaks) : tuple of np.ndarray of int64
        One foot per peak, ``feet[k] < peaks[k]``.

    Notes
    -----
    The 0.5 Hz high-pass (chosen because it matched the ECG beat count best on the
    challenge2015 records) weakens the fundamental below ~40 bpm, where a large dicrotic wave
    can then be counted as a second pulse.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 125.0
    >>> ph = (np.arange(int(10 * fs)) / fs * 1.25) % 1.0                 # 75 bpm
    >>> ppg = np.exp(-((ph - 0.25) / 0.1) ** 2) + 0.3 * np.exp(-((ph - 0.55) / 0.08) ** 2)
    >>> feet, peaks = ppg_findpeaks(ppg, fs)
    >>> len(peaks), bool(np.all(feet < peaks)), (peaks[:3] / fs).round(2).tolist()
    (11, True, [1.0, 1.8, 2.6])
    """
    x = np.asarray(ppg, dtype=np.float64).reshape(-1)
    beats, y = _ppg_track(x, float(fs))
    if len(beats) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy()
    return _tangent_feet(y, beats), beats.i_sys.copy()
