"""Per-beat features from the streaming front end, for the calibrated estimator.

A cuffless device that is calibrated with a cuff reading has to tell how far BP has moved
since then. The literature's surrogates of that change are the pulse arrival time (PAT: the
ECG R peak to the PPG foot or peak; shorter when pressure rises), the heart rate and the PPG
pulse shape (rise time, width, the share of the pulse after its peak), besides the edge
network's own reading of the beat. This module measures them beat by beat on the runtime's
own preprocessed inputs (the band-passed, z-scored PPG and ECG the model sees, at the model
rate), with the pulses the beat keyer found, so the features exist exactly where a beat
reading does and nothing is computed twice.

All features are plain arithmetic on a few hundred samples per beat: a Cortex-M4F does them
in well under a millisecond. A feature that cannot be measured on a beat (no R peak before the
PPG foot, a flat pulse) is NaN; the estimator then leaves its running summary unchanged.

Examples
--------
>>> import numpy as np
>>> fs = 125.0
>>> t = np.arange(int(10 * fs)) / fs
>>> ppg = np.sin(2 * np.pi * 1.0 * t)
>>> f = BeatFeatureBuffer(fs)
>>> f.push(ppg, None)
>>> row = f.features(250, 375, 312, r_peaks=[220])
>>> sorted(row)[:3], round(row["pat_peak"], 3)
(['area_ratio', 'pat_foot', 'pat_peak'], 0.736)
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURES", "WAVE_FEATURES", "BeatFeatureBuffer"]

# measured on the inputs; the estimator adds hr and the model's own beat values
WAVE_FEATURES = ("pat_foot", "pat_peak", "rise", "width50", "area_ratio")
FEATURES = ("hr", *WAVE_FEATURES, "pred_sbp", "pred_dbp", "pred_map")

PAT_RANGE_S = (0.08, 0.70)  # an R peak this long before the PPG foot can have caused the pulse
KEEP_S = 12.0  # a beat is read at most a few seconds after its pulse ended


class BeatFeatureBuffer:
    """The recent PPG (and ECG R peaks) at the model rate, and the per-beat features.

    Parameters
    ----------
    fs : float
        Model rate (Hz).

    Indices are the runtime's model input index (the PPG's own axis, before the keyer moves
    a pulse onto the arterial one).
    """

    def __init__(self, fs: float):
        self.fs = float(fs)
        self.reset()

    def reset(self) -> None:
        self.m0 = 0
        self.ppg = np.zeros(0)
        self.r_peaks: list[int] = []

    def push(self, ppg: np.ndarray | None, r_peaks: list[int] | None) -> None:
        """Append the next model-rate PPG samples (NaN where invalid) and R peaks found."""
        if ppg is not None and len(ppg):
            self.ppg = np.concatenate([self.ppg, np.asarray(ppg, np.float64)])
        if r_peaks:
            self.r_peaks.extend(int(r) for r in r_peaks)
        keep = int(KEEP_S * self.fs)
        if len(self.ppg) > 2 * keep:
            cut = len(self.ppg) - keep
            self.ppg = self.ppg[cut:]
            self.m0 += cut
        lo = self.m0
        if self.r_peaks and self.r_peaks[0] < lo:
            self.r_peaks = [r for r in self.r_peaks if r >= lo]

    def features(self, a: int, b: int, p: int, r_peaks: list[int] | None = None) -> dict:
        """Features of the PPG pulse from trough ``a`` over peak ``p`` to trough ``b``.

        Returns ``pat_foot``, ``pat_peak`` (s, from the last R peak before the foot),
        ``rise`` (foot to peak, s), ``width50`` (time above half the pulse amplitude, s) and
        ``area_ratio`` (area after the peak over area before it, above the foot level).
        """
        out = {k: float("nan") for k in WAVE_FEATURES}
        i, j, q = a - self.m0, b - self.m0, p - self.m0
        if i < 1 or j > len(self.ppg) or not i < q < j - 1:
            return out
        x = self.ppg[i:j]
        if not np.isfinite(x).all():
            return out
        k = q - i
        base = float(x[0])
        amp = float(x[k] - base)
        if not amp > 0:
            return out
        # foot: where the tangent at the steepest upstroke meets the trough level (the
        # intersecting-tangent method; steadier than the trough itself, which wanders)
        d = np.diff(x[: k + 1])
        s = int(np.argmax(d)) if len(d) else 0
        slope = float(d[s]) if len(d) else 0.0
        foot = (s + 0.5) - (float(x[s] + x[s + 1]) / 2.0 - base) / slope if slope > 0 else 0.0
        foot = min(max(foot, 0.0), float(k))
        # peak refined by a parabola through its neighbours (sub-sample)
        peak = float(k)
        if 0 < k < len(x) - 1:
            den = x[k - 1] - 2 * x[k] + x[k + 1]
            if den < 0:
                peak += 0.5 * float(x[k - 1] - x[k + 1]) / float(den)
        out["rise"] = (peak - foot) / self.fs
        out["width50"] = float(np.count_nonzero(x > base + 0.5 * amp)) / self.fs
        up = float(np.sum(x[: k + 1] - base))
        down = float(np.sum(x[k:] - base))
        if up > 0:
            out["area_ratio"] = down / up
        rs = self.r_peaks if r_peaks is None else r_peaks
        foot_abs = a + foot
        lo, hi = PAT_RANGE_S
        cand = [r for r in rs if lo * self.fs <= foot_abs - r <= hi * self.fs]
        if cand:
            r = max(cand)
            out["pat_foot"] = (foot_abs - r) / self.fs
            out["pat_peak"] = (a + peak - r) / self.fs
        return out
