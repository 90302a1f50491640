"""Beat-level physiology of a synthetic subject: BP trajectory, heart beats, PEP and transit.

Blood pressure moves within a record (breathing, 0.1 Hz Mayer waves, a slow drift and a few
step changes); heart rate follows BP moderately and breathing (sinus arrhythmia). For each
heart beat the R peak time, that beat's SBP/DBP/MAP, the pre-ejection period and the pulse
transit times to the radial artery (ABP) and the finger (PPG) are computed, so every
waveform is placed from the same ground truth.

Synthetic data are not clinical evidence.

Examples
--------
>>> import numpy as np
>>> from edgebp.synth.params import subject_params_draw
>>> from edgebp.synth.physiology import beats_simulate
>>> rng = np.random.default_rng(0)
>>> beats = beats_simulate(subject_params_draw(rng), duration=60.0, rng=rng)
>>> bool(np.all(np.diff(beats.t_r) > 0.3)) and bool(np.all(beats.t_ppg_foot > beats.t_abp_foot))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from edgebp.synth.params import MAP_REF, RADIAL_FRACTION, SubjectParams

_GRID_HZ = 10.0   # control grid of the slow trajectories
_PAD_S = 5.0      # beats start before t=0 and end after the record so edges look like mid-stream


@dataclass
class Trajectory:
    """Slow, continuous trajectories on a control grid (seconds, mmHg, bpm)."""

    t: np.ndarray
    sbp: np.ndarray
    dbp: np.ndarray
    hr: np.ndarray
    resp_phase: np.ndarray   # radians; breathing waveform is a function of it
    steps: list = field(default_factory=list)  # [(time_s, delta_sbp_mmhg), ...]

    def resp(self, t: np.ndarray) -> np.ndarray:
        """Breathing signal in [-1, 1] (positive = inspiration) at times ``t``."""
        phase = np.interp(t, self.t, self.resp_phase)
        return breath_shape(phase)


@dataclass
class Beats:
    """Ground truth per heart beat; times in seconds from record start, pressures in mmHg."""

    t_r: np.ndarray
    rr: np.ndarray
    hr: np.ndarray
    sbp: np.ndarray
    dbp: np.ndarray
    map: np.ndarray
    pep: np.ndarray
    ptt: np.ndarray        # R-independent transit, aortic valve -> finger
    ptt_abp: np.ndarray    # aortic valve -> radial artery
    resp: np.ndarray       # breathing signal at the R peak
    steps: list = field(default_factory=list)

    @property
    def pat(self) -> np.ndarray:
        """Pulse arrival time R -> finger PPG foot (PEP + PTT)."""
        return self.pep + self.ptt

    @property
    def t_ppg_foot(self) -> np.ndarray:
        return self.t_r + self.pep + self.ptt

    @property
    def t_abp_foot(self) -> np.ndarray:
        return self.t_r + self.pep + self.ptt_abp

    def __len__(self) -> int:
        return len(self.t_r)

    def within(self, t0: float, t1: float) -> np.ndarray:
        """Boolean mask of beats whose R peak lies in [t0, t1)."""
        return (self.t_r >= t0) & (self.t_r < t1)


def breath_shape(phase: np.ndarray) -> np.ndarray:
    """Breathing waveform from its phase: inspiration a little shorter than expiration."""
    return np.sin(phase) + 0.2 * np.sin(2.0 * phase - 0.6)


def _ou(n: int, step_s: float, tau_s: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Ornstein-Uhlenbeck path (a slow random drift) with stationary SD ``sd``."""
    a = np.exp(-step_s / tau_s)
    e = rng.standard_normal(n) * sd * np.sqrt(1.0 - a * a)
    x0 = rng.standard_normal() * sd
    y, _ = lfilter([1.0], [1.0, -a], e, zi=[a * x0])
    return y


def trajectory_simulate(p: SubjectParams, duration: float, rng: np.random.Generator) -> Trajectory:
    """Simulate SBP, DBP, HR and breathing on a 10 Hz grid from -5 s to ``duration`` + 5 s.

    Parameters
    ----------
    p : SubjectParams
        The subject.
    duration : float
        Record length in seconds.
    rng : numpy.random.Generator
        Consumed in a fixed order (determinism).

    Returns
    -------
    Trajectory

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.synth.params import subject_params_draw
    >>> rng = np.random.default_rng(3)
    >>> tr = trajectory_simulate(subject_params_draw(rng), 120.0, rng)
    >>> bool(np.all(tr.sbp - tr.dbp >= 20.0))
    True
    """
    t = np.arange(-_PAD_S, duration + _PAD_S, 1.0 / _GRID_HZ)
    n = len(t)
    minutes = duration / 60.0

    # Breathing: rate wanders +-10 % around the subject's rate.
    f_resp = p.resp_hz * (1.0 + 0.1 * np.tanh(_ou(n, 1.0 / _GRID_HZ, 20.0, 1.0, rng)))
    resp_phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(f_resp) / _GRID_HZ
    resp = breath_shape(resp_phase)

    # Mayer waves (~0.1 Hz) drive both BP and HR, HR leading slightly.
    f_mayer = rng.uniform(0.08, 0.12)
    mayer_phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * f_mayer * t
    mayer = np.sin(mayer_phase)

    drift = _ou(n, 1.0 / _GRID_HZ, rng.uniform(30.0, 60.0), p.drift_mmhg, rng)

    # A few step changes (posture, drugs, arousal), smoothed over a few seconds; the running
    # offset stays within -30..+35 mmHg of baseline and the absolute SBP within 80..200.
    n_steps = max(1, int(rng.poisson(p.step_rate_per_min * minutes)))
    step_t = np.sort(rng.uniform(0.05, 0.95, n_steps)) * duration
    step_mag = rng.uniform(10.0, 25.0, n_steps)
    step_sign = rng.choice([-1.0, 1.0], n_steps)
    step_tau = rng.uniform(2.0, 8.0, n_steps)
    offset_total = 0.0
    steps_sig = np.zeros(n)
    steps = []
    for tk, mag, sign, tau in zip(step_t, step_mag, step_sign, step_tau):
        delta = sign * mag
        new = offset_total + delta
        if not (-30.0 <= new <= 35.0 and 80.0 <= p.sbp0 + new <= 200.0):
            delta = -delta
        offset_total += delta
        steps_sig += delta * 0.5 * (1.0 + np.tanh((t - tk) / tau))
        steps.append((float(tk), float(delta)))

    slow = steps_sig + drift
    resp_bp = -p.resp_bp_mmhg * np.sin(np.interp(t - 0.8, t, resp_phase))  # SBP falls in inspiration
    sbp = p.sbp0 + slow + resp_bp + p.mayer_bp_mmhg * mayer
    dbp = p.dbp0 + p.dbp_follow * slow + 0.5 * resp_bp + 0.6 * p.mayer_bp_mmhg * mayer
    sbp = np.clip(sbp, 70.0, 230.0)
    dbp = np.clip(np.minimum(dbp, sbp - 20.0), 35.0, 135.0)
    sbp = np.maximum(sbp, dbp + 20.0)

    hr = (p.hr0 + p.hr_bp_coupling * slow + p.rsa_bpm * resp
          + p.mayer_bpm * np.sin(mayer_phase + 0.5))
    hr = np.clip(hr, 40.0, 150.0)
    return Trajectory(t=t, sbp=sbp, dbp=dbp, hr=hr, resp_phase=resp_phase, steps=steps)


def beats_simulate(p: SubjectParams, duration: float, rng: np.random.Generator,
                   traj: Trajectory | None = None) -> Beats:
    """Place heart beats and give each its pressures, PEP and transit times.

    PTT follows the population law ``PTT0 * exp(-gamma * (MAP - MAP_REF))``; PEP shortens
    with heart rate and lengthens with diastolic pressure (afterload), which is what makes
    pulse *arrival* time a less faithful BP surrogate than transit time, as in real data.

    Parameters
    ----------
    p : SubjectParams
    duration : float
        Record length in seconds; beats cover -5 s .. duration + 5 s.
    rng : numpy.random.Generator
    traj : Trajectory, optional
        Made with :func:`trajectory_simulate` from ``rng`` when not given.

    Returns
    -------
    Beats

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.synth.params import subject_params_draw
    >>> rng = np.random.default_rng(0)
    >>> b = beats_simulate(subject_params_draw(rng), 30.0, rng)
    >>> bool(np.all((b.pep > 0.04) & (b.pep < 0.13)))
    True
    """
    if traj is None:
        traj = trajectory_simulate(p, duration, rng)
    # Beat times are sequential (each RR depends on the HR at that beat); a few hundred
    # iterations, so a plain loop is cheap.
    t_end = duration + _PAD_S - 1.0
    t_beats = []
    tb = -_PAD_S + 1.0 + rng.uniform(0.0, 0.5)
    max_beats = int((t_end - tb) * 150.0 / 60.0) + 10
    jitter = rng.standard_normal(max_beats)
    for i in range(max_beats):
        if tb >= t_end:
            break
        t_beats.append(tb)
        hr_now = np.interp(tb, traj.t, traj.hr)
        tb += (60.0 / hr_now) * (1.0 + p.rr_jitter * jitter[i])
    t_r = np.asarray(t_beats)
    n = len(t_r)
    rr = np.diff(t_r, append=t_r[-1] + (t_r[-1] - t_r[-2]))
    rr_prev = np.concatenate([[rr[0]], rr[:-1]])
    hr = 60.0 / rr

    # Beat-to-beat pressure: trajectory + Frank-Starling (a longer filling time gives a
    # stronger beat) + a little irreducible variability.
    sbp = (np.interp(t_r, traj.t, traj.sbp) + 10.0 * (rr_prev - np.mean(rr))
           + 0.8 * rng.standard_normal(n))
    dbp = np.interp(t_r, traj.t, traj.dbp) + 0.5 * rng.standard_normal(n)
    dbp = np.minimum(dbp, sbp - 20.0)
    mapp = dbp + (sbp - dbp) / 3.0

    pep = (p.pep0_ms - 0.4 * (hr - p.hr0) + 0.15 * (dbp - p.dbp0)
           + 1.5 * rng.standard_normal(n)) / 1000.0
    pep = np.clip(pep, 0.04, 0.13)
    ptt = (p.ptt0_ms / 1000.0) * np.exp(-p.gamma * (mapp - MAP_REF)) * (1.0 + 0.008 * rng.standard_normal(n))
    ptt_abp = RADIAL_FRACTION * ptt * (1.0 + 0.005 * rng.standard_normal(n))
    return Beats(t_r=t_r, rr=rr, hr=hr, sbp=sbp, dbp=dbp, map=mapp, pep=pep, ptt=ptt,
                 ptt_abp=ptt_abp, resp=traj.resp(t_r), steps=list(traj.steps))
