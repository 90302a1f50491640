"""Running z-score for streams: exponential moving mean and variance, numba, explicit state.

``z[n] = (x[n] - mean[n]) / sqrt(max(var[n], var_floor))`` where ``mean`` and ``var`` are
exponential moving averages with time constant ``tau_s`` (seconds) at the rate ``fs``, i.e. the
smoothing factor ``alpha = 1 - exp(-1 / (tau_s * fs))``, updated with the current sample first.

Warm start: the ``k``-th valid sample is weighted ``max(1/k, alpha)``. For the first
``~tau_s * fs`` samples mean and variance are therefore the exact running mean and (population)
variance of everything seen so far, and then turn smoothly into exponential averages. The first
sample gives ``z = 0`` (variance 0 -> floor), the ``k``-th is bounded by ``sqrt(k - 1)``: no
start-up spike, no guessed initial scale.

Gaps: a non-finite input gives a NaN output and leaves the state unchanged, so a gap never
poisons the averages and normalisation resumes with the statistics from before the gap.
A finite input whose update overflows (``|x| ~ 1e154`` or more: the variance would be inf
for ever after) also gives NaN, and the statistics restart from the next sample (the
streaming runtime gates absurd values before they get here; this keeps the normaliser itself
from being poisoned, offline as in streaming).

``var_floor`` (default 1e-12, in squared input units) only keeps a flat line from dividing by
zero; a flat or disconnected sensor must be caught by a quality gate, not here.

Examples
--------
>>> import numpy as np
>>> norm = RunningNorm(fs=125.0, tau_s=4.0)
>>> x = 3.0 + 2.0 * np.random.default_rng(0).normal(size=5000)
>>> z, state = norm.process(x, norm.init_state())
>>> float(z[0])
0.0
>>> bool(abs(z[1000:].std() - 1.0) < 0.1)
True
>>> z2, state2 = norm.process(np.array([np.nan, 1.0]), state)
>>> bool(np.isnan(z2[0]))
True
>>> z3, _ = norm.process(np.concatenate([[1e308], x[:3000]]), state)
>>> bool(np.isnan(z3[0])), bool(abs(z3[2000:].std() - 1.0) < 0.1)
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
from edgebp.processing.filters import group_delay_at, njit  # njit: numba's, without its scipy probe

VAR_FLOOR = 1e-12


@njit(cache=True)
def _running_norm_kernel(x, alpha, var_floor, count_cap, st, y):  # pragma: no cover - compiled
    # st = [mean, var, count of valid samples (capped)]
    mean = st[0]
    var = st[1]
    cnt = st[2]
    for n in range(x.shape[0]):
        v = x[n]
        if not np.isfinite(v):
            y[n] = np.nan
            continue
        if cnt < count_cap:
            cnt += 1.0
        a = 1.0 / cnt
        if a < alpha:
            a = alpha
        d = v - mean
        m2 = mean + a * d
        v2 = (1.0 - a) * (var + a * d * d)
        if not (np.isfinite(m2) and np.isfinite(v2)):
            # a value whose square overflows (1e308 from a log): it would hold the variance
            # at inf forever (every later z = 0); it is a gap instead and the statistics
            # start afresh from the next sample
            y[n] = np.nan
            mean = 0.0
            var = 0.0
            cnt = 0.0
            continue
        mean = m2
        var = v2
        den = var if var > var_floor else var_floor
        y[n] = (v - mean) / np.sqrt(den)
    st[0] = mean
    st[1] = var
    st[2] = cnt


class RunningNorm:
    """Running z-score with exponential moving mean and variance (see the module notes).

    Parameters
    ----------
    fs : float
        Rate of the signal it runs on (Hz).
    tau_s : float
        Time constant of the moving averages in seconds.
    var_floor : float
        Smallest variance used in the division.
    """

    def __init__(self, fs: float, tau_s: float = 4.0, var_floor: float = VAR_FLOOR) -> None:
        if not (fs > 0 and tau_s > 0 and var_floor > 0):
            raise ValueError(f"RunningNorm: fs={fs!r}, tau_s={tau_s!r}, var_floor={var_floor!r} must all be > 0")
        self.fs = float(fs)
        self.tau_s = float(tau_s)
        self.var_floor = float(var_floor)
        self.alpha = 1.0 - math.exp(-1.0 / (self.tau_s * self.fs))
        # once 1/k < alpha the count no longer matters: cap it so the state stays bounded
        self.count_cap = float(math.ceil(1.0 / self.alpha) + 1)

    def group_delay(self, freq: float = 1.0) -> float:
        """Group delay in samples at ``freq`` Hz of the steady-state mean removal.

        Linearised (the slowly varying scale ignored), ``x - mean`` is the filter
        ``(1 - a)(1 - z^-1) / (1 - (1 - a) z^-1)``.
        """
        b = (1.0 - self.alpha) * np.array([1.0, -1.0])
        a = np.array([1.0, -(1.0 - self.alpha)])
        return group_delay_at(b, a, freq, self.fs)  # scipy.signal.group_delay, without scipy

    def init_state(self) -> np.ndarray:
        """``[mean, var, count]`` before any sample."""
        return np.zeros(3)

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalise one block; returns ``(z, new_state)`` and leaves ``state`` untouched."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        new = np.array(state, dtype=np.float64, copy=True)
        y = np.empty_like(x)
        _running_norm_kernel(x, self.alpha, self.var_floor, self.count_cap, new, y)
        return y, new
