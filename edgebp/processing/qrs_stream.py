"""Streaming R-peak detector (causal Pan-Tompkins) with explicit state, for the live runtime.

:func:`edgebp.processing.beats.ecg_findpeaks` is the offline detector (zero-phase filters,
search-back over the whole record). A device stream needs a causal one that decides with a
bounded delay and carries its state across packets: this module. It runs on the runtime's
own preprocessed ECG (band-passed and z-scored by the training chain, at the model rate):

* derivative ``d[n] = x[n] - x[n-2]``, squared, moving-window integrated over 150 ms;
* a 2 s learning stretch after every start or gap sets the signal and noise levels
  (``spk`` = half the largest integrated value, ``npk`` = half its mean);
* a QRS starts when the integrated energy crosses ``npk + 0.25 (spk - npk)`` outside the
  200 ms refractory period, and is confirmed when the energy has fallen to half its peak;
  the R peak is placed half the integration window before that peak (the causal integrator
  lags the QRS by that much);
* more than 1.66 mean R-R intervals without a QRS halve the threshold until the next one
  (the causal stand-in for the offline search-back); such a long interval spans a missed
  beat and is not averaged into the mean R-R (Pan-Tompkins' RR-limit rule);
* NaN (a gap or a gated stretch) restarts the detector, so no interval spans a gap.

``process`` is a pure function of ``(x, state)``: any chunking gives exactly the peaks of one
call on the whole array (tests/test_beat_keying.py proves it for several chunk sizes).

Examples
--------
>>> import numpy as np
>>> fs = 125.0
>>> t = np.arange(int(20 * fs)) / fs
>>> ecg = sum(np.exp(-0.5 * ((t - r) / 0.012) ** 2) for r in np.arange(0.5, 20, 0.8))
>>> det = QrsDetector(fs)
>>> r, st = det.process(ecg, det.init_state())
>>> len(r), bool(np.all(np.abs(np.diff(r) / fs - 0.8) < 0.02))
(23, True)
"""

from __future__ import annotations

import numpy as np
from edgebp.processing.filters import njit  # numba.njit, imported without its scipy probe

__all__ = ["QrsDetector"]

# state vector layout (float64); the integration ring buffer follows at _RING
_N, _X1, _X2, _NV, _SUM, _POS, _LEARN, _SPK, _NPK, _LSUM, _INQ, _CV, _CI, _LASTR, _RR, _NMAX, _HAVE = range(17)
_RING = 17


@njit(cache=True)
def _restart(st):
    st[_NV] = 0.0
    st[_SUM] = 0.0
    st[_POS] = 0.0
    st[_LEARN] = 0.0
    st[_SPK] = 0.0
    st[_NPK] = 0.0
    st[_LSUM] = 0.0
    st[_INQ] = 0.0
    st[_LASTR] = -1e18
    st[_NMAX] = 0.0
    st[_HAVE] = 0.0
    st[_RING:] = 0.0


@njit(cache=True)
def _qrs_block(x, st_in, w, n_learn, refr, rr0):
    st = st_in.copy()
    out = np.empty(x.shape[0] // max(refr, 1) + 2, np.int64)
    k = 0
    for j in range(x.shape[0]):
        v = x[j]
        i = st[_N]
        st[_N] = i + 1.0
        if not np.isfinite(v):
            _restart(st)
            continue
        nv = st[_NV]
        st[_NV] = nv + 1.0
        if nv < 2.0:
            # the derivative needs two earlier samples of this stretch
            st[_X2] = st[_X1] if nv > 0.0 else v
            st[_X1] = v
            continue
        d = v - st[_X2]
        st[_X2] = st[_X1]
        st[_X1] = v
        e = d * d
        pos = int(st[_POS])
        st[_SUM] += e - st[_RING + pos]
        st[_RING + pos] = e
        st[_POS] = float((pos + 1) % w)
        if nv < w + 2.0:
            continue
        m = st[_SUM] / w
        if m < 0.0:  # rounding of the running sum
            m = 0.0
        if st[_LEARN] < n_learn:
            st[_LEARN] += 1.0
            if m > st[_SPK]:
                st[_SPK] = m
            st[_LSUM] += m
            if st[_LEARN] >= n_learn:
                st[_SPK] = 0.5 * st[_SPK]
                st[_NPK] = 0.5 * st[_LSUM] / n_learn
                st[_RR] = rr0
            continue
        thr = st[_NPK] + 0.25 * (st[_SPK] - st[_NPK])
        since = i - st[_LASTR]
        if st[_HAVE] > 0.0 and since > 1.66 * st[_RR]:
            thr = 0.5 * thr
        if st[_INQ] > 0.0:
            if m > st[_CV]:
                st[_CV] = m
                st[_CI] = i
            elif m < 0.5 * st[_CV]:
                r = st[_CI] - 0.5 * w
                if st[_HAVE] > 0.0:
                    rr = st[_CI] - st[_LASTR]
                    # an interval past the search-back limit spans a missed beat, not one
                    # heart period: averaged in, it would push the limit out and miss more
                    if rr <= 1.66 * st[_RR]:
                        st[_RR] = 0.875 * st[_RR] + 0.125 * rr
                st[_SPK] = 0.125 * st[_CV] + 0.875 * st[_SPK]
                st[_NPK] = 0.125 * st[_NMAX] + 0.875 * st[_NPK]
                st[_NMAX] = 0.0
                st[_LASTR] = st[_CI]
                st[_HAVE] = 1.0
                st[_INQ] = 0.0
                out[k] = int(r)
                k += 1
        elif m > thr and since > refr:
            st[_INQ] = 1.0
            st[_CV] = m
            st[_CI] = i
        elif since > refr and m > st[_NMAX]:
            st[_NMAX] = m
    return out[:k], st


class QrsDetector:
    """Causal streaming R-peak detector on a preprocessed (band-passed, normalised) ECG.

    Parameters
    ----------
    fs : float
        Sampling rate (Hz), at least 50.
    window_s : float
        Moving-integration window (s).
    learn_s : float
        Learning stretch after a start or a gap (s); no peaks are reported in it.
    refractory_s : float
        Shortest R-R interval (s).
    rr_init_s : float
        R-R interval assumed until the first two peaks (s).

    Notes
    -----
    Indices count every sample ever given to this state (NaN included), so they line up with
    the caller's own sample counter.
    """

    def __init__(self, fs: float, window_s: float = 0.15, learn_s: float = 2.0, refractory_s: float = 0.2,
                 rr_init_s: float = 0.8):
        if not np.isfinite(fs) or fs < 50:
            raise ValueError(f"QrsDetector: fs={fs!r} Hz is too low for QRS detection (need >= 50 Hz)")
        self.fs = float(fs)
        self.w = max(2, int(round(window_s * fs)))
        self.n_learn = float(max(1, int(round(learn_s * fs))))
        self.refr = max(1, int(round(refractory_s * fs)))
        self.rr0 = float(rr_init_s * fs)

    def init_state(self) -> np.ndarray:
        """A fresh state: nothing seen yet."""
        st = np.zeros(_RING + self.w)
        _restart(st)
        return st

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed samples (NaN = gap); returns (R-peak indices confirmed in this block, new state)."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if state.shape != (_RING + self.w,):
            raise ValueError(f"QrsDetector: state must have shape ({_RING + self.w},), got {state.shape}")
        return _qrs_block(x, state, self.w, self.n_learn, self.refr, self.rr0)
