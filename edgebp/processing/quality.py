"""Signal quality: which samples of an ABP, PPG or ECG channel are usable for BP work.

Each ``*_quality`` function returns a :class:`QualityMask`: a boolean per sample (True =
usable) and, per reason, how many samples it rejects. Reasons may overlap (a disconnected
line is also flat); every unusable sample has at least one reason, ``no_beat`` being the
catch-all for samples that passed every other check but lie in no accepted beat.

Reasons
-------
All channels
    ``nan`` (gap), ``flat`` (rolling 2 s SD below ``flat_sd``), ``clipped`` (a run of 0.1 s or
    more pinned at the channel's extreme value), ``no_beat``.
ABP (mmHg)
    ``disconnected`` (values at or below 5 mmHg, +-0.5 s), ``out_of_range`` (above 300 mmHg,
    +-0.5 s), ``jump`` (a step larger than max(30 mmHg, 4000 mmHg/s / fs) between samples,
    +-1 s), ``damped`` (beats with SBP and DBP in range but a pulse pressure below 10 mmHg
    or 12 % of the SBP), ``implausible_beat`` (other failed beat checks: SBP 60-260, DBP
    20-160, PP <= 150, duration 0.27-2.5 s; this catches lines reading ~25/13 mmHg),
    ``outlier_beat`` (SBP more than 40 or DBP more than 25 mmHg away from the median of the
    10 neighbouring valid beats),
    ``ecg_disagree`` (with an ECG: more valid beats per 10 s window than R peaks, e.g.
    intra-aortic balloon pumps doubling the pressure peaks; fewer is physiology, not flagged).
PPG and ECG
    ``template`` (beat correlates below 0.8 with the median of its 20 neighbours),
    ``implausible_beat`` (PPG pulse shorter than 0.27 s or longer than 2.5 s),
    ``ppg_disagree`` / ``ecg_disagree`` (with the other channel: pulse count and R-peak count
    per 10 s window differ by more than max(2, 15 %), judged only in windows where the other
    channel is at least 90 % usable on its own).

:class:`FlatClipDetector` is the streaming flat/clipped gate (numba, explicit state) that the
runtime uses to refuse BP claims on flat or clipped input; the offline masks use it too.

Examples
--------
>>> import numpy as np
>>> from edgebp.processing.quality import abp_quality
>>> fs = 125.0
>>> ph = (np.arange(int(30 * fs)) / fs * 1.2) % 1.0           # beat phase, 72 bpm
>>> abp = 80 + 40 * np.exp(-((ph - 0.2) / 0.08) ** 2) + 8 * (1 - ph)
>>> abp[int(10 * fs):int(20 * fs)] = 0.0                      # line disconnected for 10 s
>>> q = abp_quality(abp, fs)
>>> round(q.usable_fraction, 1), q.reasons["disconnected"] >= int(10 * fs)
(0.5, True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from edgebp.processing.filters import njit  # numba.njit, imported without its scipy probe

from edgebp.processing.beats import (
    BEAT_DBP,
    BEAT_INTERVAL,
    BEAT_PP_LOW,
    BEAT_SBP,
    Beats,
    _band_sos,
    _filtfilt_runs,
    _ppg_track,
    abp_beats,
    beats_check,
    ecg_findpeaks,
)

log = logging.getLogger(__name__)

__all__ = [
    "QualityMask",
    "FlatClipDetector",
    "flatclip_masks",
    "flat_sd_estimate",
    "abp_quality",
    "ppg_quality",
    "ecg_quality",
    "FLAT",
    "CLIPPED",
    "InputGuard",
    "RANGE",
    "MOTION",
    "REACQUIRED",
]

FLAT = 1
CLIPPED = 2
RANGE = 4
MOTION = 8
REACQUIRED = 16

ABP_FLAT_SD = 0.5            # mmHg
ABP_DISCONNECTED = 5.0       # mmHg
ABP_MAX = 300.0              # mmHg
TEMPLATE_MIN_CORR = 0.8
AGREE_WINDOW_S = 10.0


@dataclass
class QualityMask:
    """Usable samples of one channel and why the others are not.

    Attributes
    ----------
    mask : np.ndarray of bool
        True where the sample is usable.
    reasons : dict[str, int]
        Samples rejected per reason (reasons may overlap).
    fs : float
        Sampling rate of the channel.
    """

    mask: np.ndarray
    reasons: dict[str, int] = field(default_factory=dict)
    fs: float = float("nan")

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool).reshape(-1)

    @property
    def usable_fraction(self) -> float:
        """Share of usable samples (0 for an empty channel)."""
        return float(self.mask.mean()) if len(self.mask) else 0.0

    def segments(self, min_s: float = 0.0) -> list[tuple[int, int]]:
        """Runs of usable samples as ``[start, stop)``, at least ``min_s`` seconds long."""
        d = np.diff(np.concatenate(([0], self.mask.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        min_n = int(np.ceil(min_s * self.fs)) if np.isfinite(self.fs) else 0
        return [(int(a), int(b)) for a, b in zip(starts, stops) if b - a >= max(min_n, 1)]

    def top_reasons(self, k: int = 2) -> list[str]:
        """The ``k`` reasons that reject most samples, largest first."""
        items = sorted(((v, r) for r, v in self.reasons.items() if v > 0), reverse=True)
        return [r for _, r in items[:k]]


# --------------------------------------------------------------------------------------------
# Streaming flat / clipped gate
# --------------------------------------------------------------------------------------------

_F_N, _F_COUNT, _F_SHIFT, _F_S1, _F_S2, _F_POS, _F_SINCE, _F_RUN, _F_RUNV, _F_MAX, _F_MIN = range(11)
_F_HDR = 11


@njit(cache=True)
def _flatclip_block(x, st_in, w, flat_var, clip_n, clip_tol, clip_lo, clip_hi, min_range):
    st = st_in.copy()
    n = x.shape[0]
    flags = np.zeros(n, dtype=np.uint8)
    for j in range(n):
        v = x[j]
        st[_F_N] += 1.0
        if not np.isfinite(v):
            st[_F_COUNT] = 0.0
            st[_F_S1] = 0.0
            st[_F_S2] = 0.0
            st[_F_POS] = 0.0
            st[_F_SINCE] = 0.0
            st[_F_RUN] = 0.0
            continue
        # --- rolling SD over the last w samples (ring buffer, exact re-sum every w samples)
        if st[_F_COUNT] == 0.0:
            st[_F_SHIFT] = v
        d = v - st[_F_SHIFT]
        pos = int(st[_F_POS])
        if st[_F_COUNT] >= w:
            old = st[_F_HDR + pos]
            st[_F_S1] -= old
            st[_F_S2] -= old * old
        else:
            st[_F_COUNT] += 1.0
        st[_F_HDR + pos] = d
        st[_F_S1] += d
        st[_F_S2] += d * d
        st[_F_POS] = float((pos + 1) % w)
        st[_F_SINCE] += 1.0
        cnt = int(st[_F_COUNT])
        if st[_F_SINCE] >= w:
            s1 = 0.0
            s2 = 0.0
            for q in range(cnt):
                b = st[_F_HDR + q]
                s1 += b
                s2 += b * b
            st[_F_S1] = s1
            st[_F_S2] = s2
            st[_F_SINCE] = 0.0
        if cnt >= w:
            mean = st[_F_S1] / w
            var = st[_F_S2] / w - mean * mean
            if var <= flat_var:
                flags[j] |= 1
        # --- clipping: a run of identical samples at the extreme (known rails or seen so far)
        if st[_F_N] == 1.0 or v > st[_F_MAX]:
            st[_F_MAX] = v
        if st[_F_N] == 1.0 or v < st[_F_MIN]:
            st[_F_MIN] = v
        if np.isfinite(clip_hi):
            at_hi = v >= clip_hi - clip_tol
        else:
            at_hi = v >= st[_F_MAX] - clip_tol and st[_F_MAX] - st[_F_MIN] > min_range
        if np.isfinite(clip_lo):
            at_lo = v <= clip_lo + clip_tol
        else:
            at_lo = v <= st[_F_MIN] + clip_tol and st[_F_MAX] - st[_F_MIN] > min_range
        if at_hi or at_lo:
            if st[_F_RUN] > 0.0 and abs(v - st[_F_RUNV]) <= clip_tol:
                st[_F_RUN] += 1.0
            else:
                st[_F_RUN] = 1.0
                st[_F_RUNV] = v
        else:
            st[_F_RUN] = 0.0
        if st[_F_RUN] >= clip_n:
            flags[j] |= 2
    return flags, st


class FlatClipDetector:
    """Streaming flat-line and clipping gate with explicit state.

    Per sample it outputs a bit field: ``FLAT`` (1) when the SD of the last ``flat_s``
    seconds is below ``flat_sd``, ``CLIPPED`` (2) when the sample ends a run of at least
    ``clip_s`` seconds of identical values (within ``clip_tol``) at the channel's extreme: the
    known ADC rails ``clip_lo``/``clip_hi`` when given, else the lowest/highest value seen so far
    (once the signal has spanned more than ``min_range``). Flags are causal: a flag at sample
    ``i`` describes the window ending at ``i`` (see :func:`flatclip_masks` for the offline
    masks covering whole windows). NaN restarts the window and the run.

    Parameters
    ----------
    fs : float
        Sampling rate (Hz).
    flat_s : float
        Window of the rolling SD (s).
    flat_sd : float
        Flat when the rolling SD is below this (channel units; 0.5 mmHg for ABP).
    clip_s : float
        Shortest pinned run called clipping (s).
    clip_tol : float
        Values within this of each other count as identical.
    clip_lo, clip_hi : float or None
        Known rails of the channel (e.g. ADC limits in physical units).
    min_range : float or None
        Without known rails, the seen range must exceed this before a run is called clipped
        (so a flat line is not also "clipped"); default ``10 * flat_sd``.

    For a stream in ADC units with a known gain (units per LSB), ``flat_sd = 5 * gain`` matches
    the offline PPG/ECG masks (:func:`flat_sd_estimate`); for ABP use 0.5 mmHg.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 100.0
    >>> x = np.sin(np.arange(1000) / 5.0)
    >>> x[500:800] = 0.2                                   # 3 s flat
    >>> det = FlatClipDetector(fs, flat_s=1.0, flat_sd=0.01)
    >>> f1, st = det.process(x[:600], det.init_state())
    >>> f2, st = det.process(x[600:], st)
    >>> flags = np.concatenate([f1, f2])
    >>> bool(np.array_equal(flags, det.process(x, det.init_state())[0])), int((flags & FLAT).sum())
    (True, 202)
    """

    def __init__(self, fs: float, flat_s: float = 2.0, flat_sd: float = ABP_FLAT_SD, clip_s: float = 0.1,
                 clip_tol: float = 0.0, clip_lo: float | None = None, clip_hi: float | None = None,
                 min_range: float | None = None):
        if not np.isfinite(fs) or fs <= 0:
            raise ValueError(f"FlatClipDetector: fs must be a positive rate in Hz, got {fs!r}")
        if flat_s <= 0 or clip_s <= 0 or flat_sd < 0 or clip_tol < 0:
            raise ValueError("FlatClipDetector: flat_s and clip_s must be > 0, flat_sd and clip_tol >= 0")
        self.fs = float(fs)
        self.flat_s = float(flat_s)
        self.flat_sd = float(flat_sd)
        self.clip_s = float(clip_s)
        self.clip_tol = float(clip_tol)
        self.clip_lo = np.nan if clip_lo is None else float(clip_lo)
        self.clip_hi = np.nan if clip_hi is None else float(clip_hi)
        self.min_range = 10.0 * self.flat_sd if min_range is None else float(min_range)
        self.window = max(2, int(round(self.flat_s * self.fs)))
        self.clip_n = max(2, int(round(self.clip_s * self.fs)))

    def init_state(self) -> np.ndarray:
        """A fresh state (float64 vector holding the ring buffer)."""
        return np.zeros(_F_HDR + self.window)

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flags (uint8 per sample, ``FLAT | CLIPPED``) of a block and the new state."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (_F_HDR + self.window,):
            raise ValueError(f"FlatClipDetector: state must have shape ({_F_HDR + self.window},), got {state.shape}")
        return _flatclip_block(x, state, self.window, self.flat_sd ** 2, float(self.clip_n), self.clip_tol,
                               self.clip_lo, self.clip_hi, self.min_range)


@njit(cache=True)
def stuck_block(vals, last, run, min_run):
    """Per sample of ``vals`` (n, channels): does some channel end a run of at least
    ``min_run`` repeats of its previous value (NaN never repeats: a gap ends a run)?

    Explicit state, carried across blocks (any cut of the stream gives the same flags):
    ``last`` (channels,) float64, the value before the block (NaN at the start), and ``run``
    (channels,) int64, the repeats it ended. Both are updated in place. The engine's
    *stuck* input gate (a frozen front-end holds one code; live converter noise does not).
    """
    n, c = vals.shape
    out = np.zeros(n, dtype=np.bool_)
    for j in range(c):
        prev = last[j]
        r = run[j]
        for i in range(n):
            v = vals[i, j]
            if v == prev:
                r += 1
            else:
                r = 0
            if r >= min_run:
                out[i] = True
            prev = v
        last[j] = prev
        run[j] = r
    return out


# --------------------------------------------------------------------------------------------
# Streaming range and motion gate
# --------------------------------------------------------------------------------------------

_G_XPREV, _G_Y, _G_PS, _G_PL, _G_CNT, _G_LVL, _G_MRUN, _G_RRUN, _G_PMAX, _G_QUIET = range(10)
_G_N = 10


@njit(cache=True)
def _guard_block(x, st_in, a_hp, a_s, a_l, warm_n, warm_r, k_motion, k_range, abs_max, step, reacq_m, reacq_r, motion_on, slew, a_hold, a_r, quiet_n):
    st = st_in.copy()
    n = x.shape[0]
    flags = np.zeros(n, dtype=np.uint8)
    for j in range(n):
        v = x[j]
        if not np.isfinite(v):
            continue  # a gap: the state is held
        if abs(v) > abs_max:
            flags[j] = 4  # beyond any converter: never a signal, never learned from
            continue
        cnt = st[_G_CNT]
        # (a channel that has only ever been exactly constant, a PLETH at 0 from the start,
        # gives no scale to judge by: only the absolute bound holds until it moves)
        if cnt >= warm_r and (st[_G_PMAX] > 0.0 or step > 0.0):
            # the largest pulsatile power of about the last minute: a channel that went
            # quiet (a flat PLETH, an electrode off) and comes back at its old amplitude
            # is not absurd
            scale = np.sqrt(st[_G_PMAX])
            if scale < step:
                scale = step
            # and never less than a thousandth of the level: a sensor with a DC part (PPG in
            # counts) that moves within its own level is not absurd, even after a stretch
            # with no pulse at all (a PLETH flat from the start, then a pulse)
            if scale < 1e-3 * abs(st[_G_LVL]):
                scale = 1e-3 * abs(st[_G_LVL])
            if abs(v - st[_G_LVL]) > k_range * scale:
                st[_G_RRUN] += 1.0
                if st[_G_RRUN] <= reacq_r:
                    flags[j] = 4
                    continue
                # the level stayed there: a new operating point (re-attached sensor, new
                # offset), learned afresh from this sample
                for q in range(_G_N):
                    st[q] = 0.0
                cnt = 0.0
                flags[j] = 16  # REACQUIRED: what learnt from the old level must restart here
        st[_G_RRUN] = 0.0
        if cnt == 0.0:
            st[_G_XPREV] = v
            st[_G_LVL] = v
        cnt += 1.0
        st[_G_CNT] = cnt
        # one-pole high-pass at the model's own band edge: the pulsatile (AC) part, its
        # input slew-limited on motion channels: a pulse (and motion, 0.2-4 Hz) moves by at
        # most ~0.5 RMS per 4 ms, while the step into a rail or back is a hundred RMS in one
        # sample, which would hold the short-term power up for seconds after saturation
        d = v - st[_G_XPREV]
        if motion_on and cnt > warm_r:
            lim = slew * np.sqrt(st[_G_PL])
            if d > lim:
                d = lim
            elif d < -lim:
                d = -lim
        y = a_hp * (st[_G_Y] + d)
        st[_G_Y] = y
        st[_G_XPREV] = v
        w = 1.0 / cnt
        st[_G_LVL] += (w if w > a_l else a_l) * (v - st[_G_LVL])
        p2 = y * y
        a_p = a_s if p2 >= st[_G_PS] else a_r
        st[_G_PS] += (w if w > a_p else a_p) * (p2 - st[_G_PS])
        if motion_on and cnt > warm_n and st[_G_PS] > k_motion * st[_G_PL]:
            st[_G_MRUN] += 1.0
            if st[_G_MRUN] <= reacq_m:
                flags[j] |= 8  # the reference power is held while the burst lasts
                st[_G_QUIET] = quiet_n
                continue
            st[_G_PL] = st[_G_PS]  # a lasting new amplitude: take it as the reference
            st[_G_QUIET] = 0.0
        if st[_G_QUIET] > 0.0:
            st[_G_QUIET] -= 1.0  # just after a burst: not yet learned from (a lull mid-swing)
        else:
            st[_G_MRUN] = 0.0
            st[_G_PL] += (w if w > a_l else a_l) * (p2 - st[_G_PL])
        st[_G_PMAX] *= a_hold
        if st[_G_PL] > st[_G_PMAX]:
            st[_G_PMAX] = st[_G_PL]
    return flags, st


class InputGuard:
    """Streaming gate for absurd values and (PPG) motion, per channel, with explicit state.

    Flags per sample (``RANGE`` 4, ``MOTION`` 8):

    - ``RANGE``: ``|x| > abs_max`` (no converter the stream protocol can describe gives it,
      e.g. a CSV cell of 1e308), or a sample further than ``k_range`` times the channel's
      pulsatile RMS (the largest of about the last minute) from its running level (a 1e6
      in a millivolt ECG log). Such a sample is
      never learned from. When a channel stays that far away for ``reacquire_s`` seconds the
      gate takes it as a new operating point (a sensor put back on, a new electrode offset)
      and learns it afresh; that sample is flagged ``REACQUIRED`` (16), so that whatever
      learnt from the old level (filters, normalisers) can restart there too.
    - ``MOTION`` (only with ``motion=True``, for PPG): the short-term power (time constant
      ``short_s``) of the channel's pulsatile part above ``k_motion`` times its long-term
      power (``long_s``), learned on the samples the gate passed. Why this is physiology and
      not a tuned threshold: the PPG pulse amplitude follows perfusion, which changes over
      tens of seconds; respiration modulates it by some 10-30 %. Motion or a displaced
      sensor adds swings of several pulse amplitudes within a second. ``k_motion = 9`` is a
      tripled amplitude within ``short_s`` (0.3 s). Measured: it flags 0 of 10 clean
      challenge2015 PLETH records' outputs beyond what they lose today, and catches 98 % of
      the outputs of simulated 4 s bursts (tests/test_fault_matrix.py). The short-term power
      rises with ``short_s`` and falls with ``release_s`` (0.05 s): the flags end soon after a
      burst (the output's recovery waits for them), and a lull mid-swing is let through,
      which claims nothing, because an output is claimed only when its whole receptive field
      (2 s) passed the gate. The reference is held while the burst lasts and for ``quiet_s``
      (2 s) after the last flag, so a lull teaches it nothing and a long burst stays
      gated (unlike a z-score, whose running SD adapts within its 4 s time constant); after
      ``reacquire_motion_s`` of flags without a 2 s pause the new power is taken as the
      reference (a lasting amplitude change, e.g. the sensor re-seated, is not gated forever).

    The pulsatile part is a one-pole high-pass at ``highpass_hz`` (the models' band edge).
    The first ``warm_s`` seconds after a start only learn motion (0.5 s for the range
    rule: the level and RMS of half a second are already good to orders of magnitude). NaN
    holds the state.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 100.0
    >>> t = np.arange(3000) / fs
    >>> x = 1000.0 + np.sin(2 * np.pi * 1.2 * t)
    >>> x[2000:2300] += 6.0 * np.sin(2 * np.pi * 0.7 * t[2000:2300])   # a 3 s motion burst
    >>> x[1000] = 1e308                                                # one absurd value
    >>> g = InputGuard(fs, motion=True)
    >>> f, st = g.process(x, g.init_state())
    >>> int(f[1000]), int((f[:2000] & MOTION).sum()), int((f[2000:2300] & MOTION).sum()) > 250
    (4, 0, True)
    >>> bool(np.array_equal(f, np.concatenate([g.process(x[:1234], g.init_state())[0], g.process(x[1234:], g.process(x[:1234], g.init_state())[1])[0]])))
    True
    """

    def __init__(self, fs: float, motion: bool = False, step: float = 0.0, abs_max: float = 2.0 ** 32,
                 k_range: float = 1000.0, k_motion: float = 9.0, highpass_hz: float = 0.5, short_s: float = 0.3,
                 long_s: float = 10.0, warm_s: float = 4.0, reacquire_s: float = 1.0, reacquire_motion_s: float = 10.0,
                 release_s: float = 0.05, quiet_s: float = 2.0):
        if not np.isfinite(fs) or fs <= 0:
            raise ValueError(f"InputGuard: fs must be a positive rate in Hz, got {fs!r}")
        if not (abs_max > 0 and k_range > 0 and k_motion > 1 and highpass_hz > 0 and short_s > 0
                and long_s > short_s and warm_s >= 0 and reacquire_s > 0 and reacquire_motion_s > 0 and step >= 0):
            raise ValueError("InputGuard: thresholds and times must be positive (k_motion > 1, long_s > short_s)")
        self.fs = float(fs)
        self.motion = bool(motion)
        self.step = float(step)
        self.abs_max = float(abs_max)
        self.k_range = float(k_range)
        self.k_motion = float(k_motion)
        rc = 1.0 / (2.0 * np.pi * highpass_hz)
        self.a_hp = rc / (rc + 1.0 / self.fs)
        self.a_s = 1.0 - float(np.exp(-1.0 / (short_s * self.fs)))
        if not release_s > 0:
            raise ValueError(f"InputGuard: release_s must be positive, got {release_s!r}")
        self.a_r = 1.0 - float(np.exp(-1.0 / (release_s * self.fs)))
        if not quiet_s >= 0:
            raise ValueError(f"InputGuard: quiet_s must be >= 0, got {quiet_s!r}")
        self.quiet_n = float(round(quiet_s * self.fs))
        self.a_l = 1.0 - float(np.exp(-1.0 / (long_s * self.fs)))
        self.warm_n = float(round(warm_s * self.fs))
        self.warm_r = float(max(2, round(0.5 * self.fs)))
        self.reacq_r = float(max(1, round(reacquire_s * self.fs)))
        self.reacq_m = float(max(1, round(reacquire_motion_s * self.fs)))
        # largest per-sample change passed on, in RMS of the pulsatile part: 200 RMS/s
        # (a 4 Hz swing of 3x the pulse amplitude moves ~110 RMS/s)
        self.slew = 200.0 / self.fs
        self.a_hold = float(np.exp(-1.0 / (60.0 * self.fs)))  # the range rule's amplitude: held ~1 min

    def init_state(self) -> np.ndarray:
        """A fresh state (nothing learned)."""
        return np.zeros(_G_N)

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flags (uint8 per sample, ``RANGE | MOTION``) of a block and the new state."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (_G_N,):
            raise ValueError(f"InputGuard: state must have shape ({_G_N},), got {state.shape}")
        return _guard_block(x, state, self.a_hp, self.a_s, self.a_l, self.warm_n, self.warm_r, self.k_motion, self.k_range,
                            self.abs_max, self.step, self.reacq_m, self.reacq_r, self.motion, self.slew, self.a_hold, self.a_r, self.quiet_n)


def _cover_back(flags: np.ndarray, length: int) -> np.ndarray:
    """Samples lying in some window ``[i - length + 1, i]`` whose end ``i`` is flagged."""
    n = len(flags)
    c = np.concatenate(([0], np.cumsum(flags.astype(np.int64))))
    j = np.arange(n)
    return (c[np.minimum(j + length, n)] - c[j]) > 0


def _dilate(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Grow every True sample by ``before`` samples to the left and ``after`` to the right."""
    n = len(mask)
    if not mask.any():
        return mask.copy()
    c = np.concatenate(([0], np.cumsum(mask.astype(np.int64))))
    j = np.arange(n)
    lo = np.maximum(j - after, 0)
    hi = np.minimum(j + before + 1, n)
    return (c[hi] - c[lo]) > 0


def flatclip_masks(x: np.ndarray, fs: float, **detector_kw) -> tuple[np.ndarray, np.ndarray]:
    """Offline flat and clipped masks (whole flat windows and whole pinned runs).

    Parameters
    ----------
    x : np.ndarray
    fs : float
    **detector_kw
        Passed to :class:`FlatClipDetector`.

    Returns
    -------
    (flat, clipped) : tuple of np.ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(np.arange(2000) / 8.0)
    >>> x[1000:1100] = x.max()                              # pinned at the top for 1 s
    >>> flat, clipped = flatclip_masks(x, 100.0, flat_sd=0.01)
    >>> int(clipped[990:1110].sum()) >= 100, bool(flat.any())
    (True, False)
    """
    det = FlatClipDetector(fs, **detector_kw)
    flags, _ = det.process(x, det.init_state())
    flat = _cover_back((flags & FLAT) > 0, det.window)
    clipped = _cover_back((flags & CLIPPED) > 0, det.clip_n)
    return flat, clipped


def flat_sd_estimate(x: np.ndarray, fs: float, flat_s: float = 2.0) -> float:
    """Flat threshold for a channel in unknown units (PPG, ECG).

    5 quantisation steps (the smallest non-zero step between samples), or 3 % of the 90th
    percentile of the 2 s window SDs (the live part of a record that is partly flat),
    whichever is larger. On challenge2015 a "flat" PLETH still wanders by 6-9 steps while a
    live one has hundreds; a coarse 200/mV ECG lead has a live SD of ~16 steps.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.round(np.sin(np.arange(5000) / 20.0) * 1000) / 1000     # 0.001 steps
    >>> x[:2500] = 0.0
    >>> round(flat_sd_estimate(x, 100.0), 4)
    0.0216
    """
    fin = x[np.isfinite(x)]
    if len(fin) < 2:
        return 0.0
    steps = np.abs(np.diff(fin))
    steps = steps[steps > 0]
    lsb = float(steps.min()) if len(steps) else 0.0
    w = max(2, int(round(flat_s * fs)))
    m = len(fin) // w * w
    rel = 0.0
    if m >= w:
        sd = fin[:m].reshape(-1, w).std(axis=1)
        rel = 0.03 * float(np.percentile(sd, 90))
    # a floor so that an exactly constant channel (no steps at all) is flat too
    return max(5.0 * lsb, rel, 1e-9 * max(1.0, float(np.median(np.abs(fin)))))


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def _spans(n: int, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Boolean mask covering the ``[start, stop)`` spans."""
    d = np.zeros(n + 1, dtype=np.int64)
    starts = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    stops = np.clip(np.asarray(stops, dtype=np.int64), 0, n)
    ok = stops > starts
    np.add.at(d, starts[ok], 1)
    np.add.at(d, stops[ok], -1)
    return np.cumsum(d[:n]) > 0


def _finish(n: int, fs: float, reasons: dict[str, np.ndarray], good: np.ndarray) -> QualityMask:
    """Mask = good and no reason; ``no_beat`` takes the unusable samples no reason explains."""
    bad = np.zeros(n, dtype=bool)
    for m in reasons.values():
        bad |= m
    mask = good & ~bad
    reasons = dict(reasons)
    reasons["no_beat"] = ~mask & ~bad
    return QualityMask(mask=mask, reasons={k: int(v.sum()) for k, v in reasons.items()}, fs=fs)


def _template_bad(segments: np.ndarray, k: int = 10, min_corr: float = TEMPLATE_MIN_CORR) -> np.ndarray:
    """Beats whose correlation with the median of their +-k neighbours is below ``min_corr``."""
    nb = len(segments)
    if nb < 3:
        return np.zeros(nb, dtype=bool)
    z = segments - segments.mean(axis=1, keepdims=True)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    bad = np.zeros(nb, dtype=bool)
    for q in range(nb):
        tpl = np.median(segments[max(0, q - k): q + k + 1], axis=0)
        tpl = tpl - tpl.mean()
        norm = np.linalg.norm(tpl)
        if norm <= 1e-12:
            bad[q] = True
            continue
        bad[q] = float(z[q] @ tpl) / norm < min_corr
    return bad


def _resample_rows(y: np.ndarray, starts: np.ndarray, stops: np.ndarray, m: int = 64) -> np.ndarray:
    """Each ``y[start:stop]`` linearly resampled to ``m`` points (one row per beat)."""
    out = np.empty((len(starts), m))
    grid = np.linspace(0.0, 1.0, m)
    for q, (a, b) in enumerate(zip(starts, stops)):
        seg = y[a:b]
        out[q] = np.interp(grid, np.linspace(0.0, 1.0, len(seg)), seg) if len(seg) > 1 else 0.0
    return np.nan_to_num(out)


def _count_disagree(n: int, fs: float, t_own: np.ndarray, t_other: np.ndarray,
                    other_ok: np.ndarray | None, other_fs: float, own_live: np.ndarray,
                    window_s: float = AGREE_WINDOW_S, excess_only: bool = False) -> np.ndarray:
    """Samples in 10 s windows where the beat counts of two channels disagree.

    A window is judged only when the other channel is at least 90 % usable in it and this
    channel is at least half live (not flat/clipped/NaN); tolerance max(2, 15 %) beats. With
    ``excess_only`` only more beats than the other channel count as disagreement.
    """
    out = np.zeros(n, dtype=bool)
    w = int(round(window_s * fs))
    if w <= 0:
        return out
    for a in range(0, n - w + 1, w):
        t0, t1 = a / fs, (a + w) / fs
        if own_live[a:a + w].mean() < 0.5:
            continue
        if other_ok is not None:
            oa, ob = int(round(t0 * other_fs)), int(round(t1 * other_fs))
            seg = other_ok[oa:ob]
            if len(seg) == 0 or seg.mean() < 0.9:
                continue
        n_own = int(np.count_nonzero((t_own >= t0) & (t_own < t1)))
        n_oth = int(np.count_nonzero((t_other >= t0) & (t_other < t1)))
        diff = n_own - n_oth if excess_only else abs(n_own - n_oth)
        if diff > max(2, 0.15 * n_oth):
            out[a:a + w] = True
    return out


def _as_signal(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name}: signal must be 1-D, got shape {x.shape}")
    return x


# --------------------------------------------------------------------------------------------
# ABP
# --------------------------------------------------------------------------------------------


def abp_quality(abp: np.ndarray, fs: float, beats: Beats | None = None, ecg: np.ndarray | None = None,
                ecg_fs: float | None = None) -> QualityMask:
    """Usable samples of an arterial pressure channel (mmHg).

    Parameters
    ----------
    abp : np.ndarray
        Pressure in mmHg, NaN = gap.
    fs : float
        Sampling rate (Hz).
    beats : Beats, optional
        Beats already detected with :func:`edgebp.processing.beats.abp_beats` (saves a pass).
    ecg, ecg_fs : optional
        An ECG lead and its rate: 10 s windows with more valid pressure beats than R peaks
        (where the ECG itself is usable) are rejected as ``ecg_disagree`` (balloon pumps,
        notches or artefacts counted as beats). Fewer pressure beats than R peaks is
        physiology (beats that do not open the aortic valve, e.g. in atrial fibrillation) and
        is not held against the line.

    Returns
    -------
    QualityMask
        Usable = inside a valid beat and no reason against it (see the module reasons).

    Examples
    --------
    >>> import numpy as np
    >>> fs = 125.0
    >>> ph = (np.arange(int(20 * fs)) / fs * 1.2) % 1.0
    >>> wave = np.exp(-((ph - 0.2) / 0.08) ** 2) + 0.2 * (1 - ph)
    >>> q = abp_quality(13 + 10 * wave, fs)                  # a line reading ~25/13 mmHg
    >>> q.usable_fraction, q.reasons["implausible_beat"] > 0
    (0.0, True)
    """
    x = _as_signal(abp, "abp_quality")
    n = len(x)
    fin = np.isfinite(x)
    r: dict[str, np.ndarray] = {"nan": ~fin}
    r["flat"], r["clipped"] = flatclip_masks(x, fs, flat_s=2.0, flat_sd=ABP_FLAT_SD)
    half_s = int(round(0.5 * fs))
    with np.errstate(invalid="ignore"):
        r["disconnected"] = _dilate(fin & (x <= ABP_DISCONNECTED), half_s, half_s)
        r["out_of_range"] = _dilate(fin & (x > ABP_MAX), half_s, half_s)
        step = np.abs(np.diff(x, prepend=x[:1]))
        r["jump"] = _dilate(np.nan_to_num(step) > max(30.0, 4000.0 / fs), int(fs), int(fs))
    b = abp_beats(x, fs) if beats is None else beats
    flags = beats_check(b) if len(b) else np.zeros(0, dtype=np.uint8)
    valid = flags == 0
    # damped: a plausible level but too little pulse; a line reading 25/13 is implausible instead
    damped = ((flags & BEAT_PP_LOW) > 0) & ((flags & (BEAT_SBP | BEAT_DBP)) == 0)
    r["damped"] = _spans(n, b.i_dia[damped], b.i_end[damped])
    other = ~valid & ~damped
    r["implausible_beat"] = _spans(n, b.i_dia[other], b.i_end[other])
    r["outlier_beat"] = np.zeros(n, dtype=bool)
    iv = np.flatnonzero(valid)
    if len(iv) >= 5:
        sbp, dbp = b.sbp[iv], b.dbp[iv]
        out = np.zeros(len(iv), dtype=bool)
        for q in range(len(iv)):
            nb = np.r_[max(0, q - 5):q, q + 1:min(len(iv), q + 6)]
            if len(nb) >= 4:
                out[q] = abs(sbp[q] - np.median(sbp[nb])) > 40.0 or abs(dbp[q] - np.median(dbp[nb])) > 25.0
        r["outlier_beat"] = _spans(n, b.i_dia[iv[out]], b.i_end[iv[out]])
    if ecg is not None:
        if ecg_fs is None:
            raise ValueError("abp_quality: ecg given without ecg_fs")
        e = _as_signal(ecg, "abp_quality(ecg)")
        rp = ecg_findpeaks(e, ecg_fs)
        eq = ecg_quality(e, ecg_fs)
        live = fin & ~r["flat"] & ~r["clipped"]
        r["ecg_disagree"] = _count_disagree(n, fs, b.t_sys[valid], rp / ecg_fs, eq.mask, ecg_fs, live,
                                            excess_only=True)
    good = _spans(n, b.i_dia[valid], b.i_end[valid])
    return _finish(n, fs, r, good)


# --------------------------------------------------------------------------------------------
# PPG
# --------------------------------------------------------------------------------------------


def _ppg_intrinsic(x: np.ndarray, fs: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Reasons and good-beat coverage of a PPG on its own; also its peak times (s)."""
    n = len(x)
    fin = np.isfinite(x)
    r: dict[str, np.ndarray] = {"nan": ~fin}
    r["flat"], r["clipped"] = flatclip_masks(x, fs, flat_s=2.0, flat_sd=flat_sd_estimate(x, fs))
    beats, y = _ppg_track(x, fs)
    good = np.zeros(n, dtype=bool)
    r["template"] = np.zeros(n, dtype=bool)
    r["implausible_beat"] = np.zeros(n, dtype=bool)
    if len(beats):
        bad_iv = (beats_check(beats) & BEAT_INTERVAL) > 0
        ok = ~bad_iv
        tpl_bad = np.zeros(len(beats), dtype=bool)
        if ok.sum() >= 3:
            rows = _resample_rows(y, beats.i_dia[ok], beats.i_end[ok])
            tpl_bad[np.flatnonzero(ok)] = _template_bad(rows)
        r["implausible_beat"] = _spans(n, beats.i_dia[bad_iv], beats.i_end[bad_iv])
        r["template"] = _spans(n, beats.i_dia[tpl_bad], beats.i_end[tpl_bad])
        keep = ok & ~tpl_bad
        good = _spans(n, beats.i_dia[keep], beats.i_end[keep])
    return r, good, beats.t_sys


def ppg_quality(ppg: np.ndarray, fs: float, ecg: np.ndarray | None = None,
                ecg_fs: float | None = None) -> QualityMask:
    """Usable samples of a PPG channel (any units, pulses pointing up).

    Parameters
    ----------
    ppg : np.ndarray
        NaN = gap.
    fs : float
        Sampling rate (Hz).
    ecg, ecg_fs : optional
        An ECG lead and its rate: 10 s windows whose pulse count differs from the R-peak
        count (where the ECG is usable on its own) are rejected as ``ecg_disagree``.

    Returns
    -------
    QualityMask
        Reasons ``nan``, ``flat`` (threshold from the channel's quantisation step and
        amplitude, see :func:`flat_sd_estimate`), ``clipped``, ``template``, ``implausible_beat``,
        ``ecg_disagree``, ``no_beat``.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 125.0
    >>> ph = (np.arange(int(40 * fs)) / fs * 1.25) % 1.0     # 75 bpm
    >>> ppg = np.exp(-((ph - 0.25) / 0.1) ** 2) + 0.3 * np.exp(-((ph - 0.55) / 0.08) ** 2) + 0.1 * (1 - ph)
    >>> ppg[int(20 * fs):] = ppg[int(20 * fs)]             # sensor off: flat for 20 s
    >>> q = ppg_quality(ppg, fs)
    >>> 0.4 < q.usable_fraction < 0.5, q.reasons["flat"] >= int(19 * fs)
    (True, True)
    """
    x = _as_signal(ppg, "ppg_quality")
    n = len(x)
    r, good, t_peaks = _ppg_intrinsic(x, fs)
    if ecg is not None:
        if ecg_fs is None:
            raise ValueError("ppg_quality: ecg given without ecg_fs")
        e = _as_signal(ecg, "ppg_quality(ecg)")
        rp = ecg_findpeaks(e, ecg_fs)
        eq = ecg_quality(e, ecg_fs)
        live = ~r["nan"] & ~r["flat"] & ~r["clipped"]
        r["ecg_disagree"] = _count_disagree(n, fs, t_peaks, rp / ecg_fs, eq.mask, ecg_fs, live)
    return _finish(n, fs, r, good)


# --------------------------------------------------------------------------------------------
# ECG
# --------------------------------------------------------------------------------------------


def _ecg_intrinsic(x: np.ndarray, fs: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    n = len(x)
    fin = np.isfinite(x)
    r: dict[str, np.ndarray] = {"nan": ~fin}
    r["flat"], r["clipped"] = flatclip_masks(x, fs, flat_s=2.0, flat_sd=flat_sd_estimate(x, fs))
    peaks = ecg_findpeaks(x, fs) if n >= int(fs) else np.zeros(0, dtype=np.int64)
    r["template"] = np.zeros(n, dtype=bool)
    good = np.zeros(n, dtype=bool)
    if len(peaks):
        # each beat owns the samples half-way to its neighbours, at most 1.5 s either side
        mid = (peaks[1:] + peaks[:-1]) // 2
        lim = int(round(1.5 * fs))
        starts = np.maximum(np.r_[peaks[0] - lim, mid], peaks - lim)
        stops = np.minimum(np.r_[mid, peaks[-1] + lim], peaks + lim)
        pre, post = int(round(0.1 * fs)), int(round(0.15 * fs))
        wide = np.nan_to_num(_filtfilt_runs(x, _band_sos(fs, 1.0, 30.0)))
        idx = np.clip(peaks[:, None] + np.arange(-pre, post)[None, :], 0, n - 1)
        bad = _template_bad(wide[idx])
        r["template"] = _spans(n, starts[bad], stops[bad])
        good = _spans(n, starts[~bad], stops[~bad])
    return r, good, peaks / fs


def ecg_quality(ecg: np.ndarray, fs: float, ppg: np.ndarray | None = None,
                ppg_fs: float | None = None) -> QualityMask:
    """Usable samples of one ECG lead (any polarity, any units).

    Parameters
    ----------
    ecg : np.ndarray
        NaN = gap.
    fs : float
        Sampling rate (Hz), at least 50.
    ppg, ppg_fs : optional
        A PPG and its rate: 10 s windows whose R-peak count differs from the pulse count
        (where the PPG is usable on its own) are rejected as ``ppg_disagree``.

    Returns
    -------
    QualityMask
        Reasons ``nan``, ``flat``, ``clipped``, ``template`` (QRS-T window -0.2..+0.4 s
        correlating below 0.8 with the median of its neighbours), ``ppg_disagree``,
        ``no_beat`` (e.g. asystole, lead off).

    Examples
    --------
    >>> import numpy as np
    >>> fs = 250.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> noise = np.random.default_rng(0).normal(0, 0.01, len(t))
    >>> ecg = sum(np.exp(-0.5 * ((t - r) / 0.01) ** 2) for r in np.arange(0.4, 30, 0.8)) + noise
    >>> ecg[int(15 * fs):] = 0.0                                    # lead off
    >>> q = ecg_quality(ecg, fs)
    >>> 0.4 < q.usable_fraction < 0.55, q.reasons["flat"] > int(10 * fs)
    (True, True)
    """
    x = _as_signal(ecg, "ecg_quality")
    if fs < 50:
        raise ValueError(f"ecg_quality: fs={fs} Hz is too low for QRS detection (need >= 50 Hz)")
    n = len(x)
    r, good, t_r = _ecg_intrinsic(x, fs)
    if ppg is not None:
        if ppg_fs is None:
            raise ValueError("ecg_quality: ppg given without ppg_fs")
        p = _as_signal(ppg, "ecg_quality(ppg)")
        pr, pgood, t_p = _ppg_intrinsic(p, ppg_fs)
        pmask = _finish(len(p), ppg_fs, pr, pgood).mask
        live = ~r["nan"] & ~r["flat"] & ~r["clipped"]
        r["ppg_disagree"] = _count_disagree(n, fs, t_r, t_p, pmask, ppg_fs, live)
    return _finish(n, fs, r, good)
