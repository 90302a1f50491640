"""Clean waveforms of the synthetic cohort, rendered beat by beat from the ground truth.

* ECG: each beat is a sum of Gaussians (P, Q, R, S, T), the time-domain form of the
  McSharry et al. (2003) dynamical model; P and T positions scale with sqrt(RR) (QT rate
  dependence), the R peak sits exactly at the beat's R time.
* ABP (radial) and PPG (finger): each beat is a template that starts at that beat's pulse
  foot: a systolic wave, a reflected wave whose delay shortens and whose amplitude grows with
  stiffness and pressure, a dicrotic wave after the end of ejection (clear on ABP, faint on
  PPG) and a Windkessel diastolic decay. ABP is scaled to the beat's DBP..SBP; the PPG pulse
  amplitude shrinks when pressure rises (vasoconstriction).

Synthetic data are not clinical evidence.

Examples
--------
>>> import numpy as np
>>> from edgebp.synth.params import subject_params_draw
>>> from edgebp.synth.physiology import beats_simulate
>>> from edgebp.synth.waveforms import abp_render
>>> rng = np.random.default_rng(0)
>>> p = subject_params_draw(rng)
>>> beats = beats_simulate(p, 20.0, rng)
>>> abp = abp_render(beats, p, np.arange(5000) / 250.0)
>>> bool(abs(abp.max() - beats.sbp[beats.within(0, 20)].max()) < 3.0)
True
"""

from __future__ import annotations

import numpy as np

from edgebp.synth.params import MAP_REF, SubjectParams
from edgebp.synth.physiology import Beats

_NORM_GRID = 256  # points per beat used to find each template's peak


def gaussians_render(n: int, fs: float, centers: np.ndarray, amps: np.ndarray,
                     widths: np.ndarray) -> np.ndarray:
    """Sum of Gaussians ``amp * exp(-(t - center)^2 / (2 width^2))`` sampled at ``k / fs``.

    Each Gaussian is evaluated only within +-5 widths of its centre (vectorised scatter-add),
    so the cost is proportional to the number of beats, not beats x samples.

    Examples
    --------
    >>> x = gaussians_render(100, 100.0, np.array([0.5]), np.array([2.0]), np.array([0.01]))
    >>> int(np.argmax(x)), round(float(x.max()), 6)
    (50, 2.0)
    """
    centers = np.asarray(centers, float).ravel()
    amps = np.asarray(amps, float).ravel()
    widths = np.asarray(widths, float).ravel()
    out = np.zeros(n)
    if centers.size == 0:
        return out
    half = int(np.ceil(5.0 * widths.max() * fs)) + 1
    offs = np.arange(-half, half + 1)
    idx = np.rint(centers * fs).astype(np.int64)[:, None] + offs[None, :]
    t = idx / fs
    vals = amps[:, None] * np.exp(-0.5 * ((t - centers[:, None]) / widths[:, None]) ** 2)
    keep = (idx >= 0) & (idx < n)
    out += np.bincount(idx[keep], weights=vals[keep], minlength=n)
    return out


def ecg_render(beats: Beats, p: SubjectParams, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clean lead-II ECG in mV at sample times ``t`` (uniform, starting at 0).

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.synth.params import subject_params_draw
    >>> from edgebp.synth.physiology import beats_simulate
    >>> rng = np.random.default_rng(0)
    >>> p = subject_params_draw(rng)
    >>> b = beats_simulate(p, 10.0, rng)
    >>> ecg = ecg_render(b, p, np.arange(2500) / 250.0, rng)
    >>> r = b.t_r[b.within(0.1, 9.9)]
    >>> bool(np.all(np.abs(ecg[np.rint(r * 250).astype(int)] - ecg.max()) < 0.5))
    True
    """
    fs = 1.0 / (t[1] - t[0])
    n_b = len(beats)
    q = np.sqrt(beats.rr / 0.8)  # rate scaling of P and T positions (Bazett-like)
    # QRS amplitude breathes with the heart axis; small beat-to-beat variation.
    r_amp = p.ecg_r_mv * (1.0 + 0.06 * beats.resp) * (1.0 + 0.02 * rng.standard_normal(n_b))
    waves = (
        # (offset from R, width, amplitude)
        (-0.16 - 0.015 * (q - 1.0), np.full(n_b, 0.024), p.ecg_p_rel * r_amp),
        (np.full(n_b, -0.032), np.full(n_b, 0.009), -0.12 * r_amp),
        (np.zeros(n_b), np.full(n_b, 0.010), r_amp),
        (np.full(n_b, 0.034), np.full(n_b, 0.011), -0.22 * r_amp),
        (0.27 * q, 0.055 * q, p.ecg_t_rel * r_amp),
    )
    centers = np.concatenate([beats.t_r + w[0] for w in waves])
    widths = np.concatenate([w[1] for w in waves])
    amps = np.concatenate([w[2] for w in waves])
    return gaussians_render(len(t), fs, centers - t[0], amps, widths)


def _gamma_pulse(u: np.ndarray, tp: np.ndarray, k: float) -> np.ndarray:
    """Unit-peak pulse ``(u/tp)^k exp(k (1 - u/tp))`` for u > 0, zero before: a foot, then a peak at tp."""
    x = np.where(u > 0, u / tp, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(u > 0, x ** k * np.exp(k * (1.0 - x)), 0.0)


def _template(u: np.ndarray, sp: dict, i: np.ndarray | slice) -> np.ndarray:
    """Un-normalised pulse template at time ``u`` after the foot, with beat parameters ``sp[..][i]``."""
    g = lambda key: sp[key][i]  # noqa: E731 - per-beat parameter gather
    x = (_gamma_pulse(u, g("tp"), sp["k"])
         + g("r") * _gamma_pulse(u - g("dr"), g("tp_r"), sp["k"])
         + g("d") * _gamma_pulse(u - g("dn"), g("tp_d"), 2.0)
         # Windkessel run-off: pressure stored during systole drains exponentially.
         + g("w") * (1.0 - np.exp(-(np.maximum(u, 0.0) / g("tp")) ** 2)) * np.exp(-np.maximum(u, 0.0) / g("tau")))
    return x


def pulse_train_render(t: np.ndarray, feet: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                       shape: dict) -> np.ndarray:
    """Concatenate one template per beat between consecutive feet.

    Beat ``i`` spans ``feet[i] .. feet[i+1]``; its template is forced to 0 at both ends and
    scaled so that its peak is exactly 1, then mapped to ``lo[i] .. hi[i]``; the floor ramps
    linearly to ``lo[i+1]`` so the signal is continuous across beats.

    Parameters
    ----------
    t : ndarray
        Sample times, s.
    feet : ndarray
        Increasing foot times, s; must cover ``t`` (first foot <= t[0], last > t[-1]).
    lo, hi : ndarray
        Per-beat floor and peak values.
    shape : dict
        Per-beat template parameters (arrays ``tp, r, dr, tp_r, d, dn, tp_d, w, tau``) and
        the scalar exponent ``k``.

    Returns
    -------
    ndarray
    """
    if feet[0] > t[0] or feet[-1] <= t[-1]:
        raise ValueError("pulse feet do not cover the sample times (need beats before and after)")
    period = np.diff(feet)
    # Per-beat normalisation on a fixed grid: value at the next foot and the peak.
    frac = np.linspace(0.0, 1.0, _NORM_GRID)
    ug = frac[None, :] * period[:, None]
    sl = slice(0, len(period))
    grid = _template(ug, {k: (v[sl, None] if isinstance(v, np.ndarray) else v) for k, v in shape.items()}, slice(None))
    end_val = grid[:, -1]
    grid = grid - end_val[:, None] * frac[None, :]
    peak = grid.max(axis=1)

    i = np.searchsorted(feet, t, side="right") - 1
    u = t - feet[i]
    tv = _template(u, shape, i)
    f = (tv - end_val[i] * u / period[i]) / peak[i]
    return lo[i] + (hi[i] - lo[i]) * f + (lo[i + 1] - lo[i]) * (u / period[i])


def _stiff_law(beats: Beats, p: SubjectParams) -> np.ndarray:
    """Time-scale factor of wave travel: 1/sqrt(stiffness), shortened as MAP rises (same law as PTT)."""
    return p.body / np.sqrt(p.stiffness) * np.exp(-p.gamma * (beats.map - MAP_REF))


def abp_shape(beats: Beats, p: SubjectParams) -> dict:
    """Per-beat template parameters of the radial ABP pulse.

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.synth.params import subject_params_draw
    >>> from edgebp.synth.physiology import beats_simulate
    >>> rng = np.random.default_rng(0)
    >>> p = subject_params_draw(rng)
    >>> sorted(abp_shape(beats_simulate(p, 10.0, rng), p))
    ['d', 'dn', 'dr', 'k', 'r', 'tau', 'tp', 'tp_d', 'tp_r', 'w']
    """
    n = len(beats)
    hr = beats.hr
    lvet = np.clip(0.413 - 0.0017 * hr, 0.2, 0.36)  # Weissler: ejection shortens with HR
    travel = _stiff_law(beats, p)
    rr_q = (beats.rr / 0.8) ** 0.2
    return {
        "k": 2.5,
        "tp": 0.085 * rr_q,
        "r": np.clip(0.55 * p.stiffness * (1.0 + 0.01 * (beats.map - MAP_REF)), 0.2, 1.1),
        "dr": 0.13 * travel,
        "tp_r": 0.09 * rr_q,
        "d": np.full(n, 0.22),
        "dn": lvet,
        "tp_d": np.full(n, 0.06),
        "w": np.full(n, 0.55),
        "tau": np.full(n, 1.1 / np.sqrt(p.stiffness)),
    }


def ppg_shape(beats: Beats, p: SubjectParams) -> dict:
    """Per-beat template parameters of the finger PPG pulse.

    The reflected (diastolic) wave arrives ``dr`` after the foot; ``dr`` shortens and the
    reflection grows with stiffness and pressure, the classic stiffness-index behaviour.

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.synth.params import subject_params_draw
    >>> from edgebp.synth.physiology import beats_simulate
    >>> rng = np.random.default_rng(0)
    >>> p = subject_params_draw(rng)
    >>> s = ppg_shape(beats_simulate(p, 10.0, rng), p)
    >>> bool(np.all((s["dr"] > 0.1) & (s["dr"] < 0.5)))
    True
    """
    n = len(beats)
    travel = _stiff_law(beats, p)
    rr_q = (beats.rr / 0.8) ** 0.3
    lvet = np.clip(0.413 - 0.0017 * beats.hr, 0.2, 0.36)
    return {
        "k": 2.0,
        "tp": p.ppg_rise_s * rr_q,
        "r": np.clip(p.ppg_reflect0 * p.stiffness * (1.0 + 0.012 * (beats.map - MAP_REF)), 0.15, 1.0),
        "dr": 0.27 * travel,
        "tp_r": 0.16 * rr_q,
        "d": np.full(n, 0.05),
        "dn": lvet + 0.05,
        "tp_d": np.full(n, 0.08),
        "w": np.full(n, 0.35),
        "tau": np.full(n, 0.9 / np.sqrt(p.stiffness)),
    }


def abp_render(beats: Beats, p: SubjectParams, t: np.ndarray) -> np.ndarray:
    """Clean radial ABP in mmHg at sample times ``t``: each beat spans its DBP..SBP."""
    return pulse_train_render(t, beats.t_abp_foot, beats.dbp, beats.sbp, abp_shape(beats, p))


def ppg_amplitude(beats: Beats, p: SubjectParams) -> np.ndarray:
    """Per-beat PPG pulse amplitude (NU): smaller when pressure rises, breathing-modulated."""
    return p.ppg_amp * np.exp(-0.008 * (beats.map - (p.dbp0 + (p.sbp0 - p.dbp0) / 3.0))) * (1.0 + 0.06 * beats.resp)


def ppg_render(beats: Beats, p: SubjectParams, t: np.ndarray) -> np.ndarray:
    """Clean finger PPG (NU, pulse upwards) at sample times ``t``; floor at 0."""
    amp = ppg_amplitude(beats, p)
    return pulse_train_render(t, beats.t_ppg_foot, np.zeros(len(beats)), amp, ppg_shape(beats, p))
