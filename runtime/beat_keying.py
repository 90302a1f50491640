"""Beats keyed to the input's own pulses: one BP reading per heartbeat the sensors saw.

Peaks of the predicted waveform are not beats: its beat-to-beat noise makes extra peaks
(the default bundle reported 530 beats on a record whose arterial line had 345). Here each
beat comes from the runtime's streaming detectors on its own preprocessed inputs, the PPG
pulse tracker (:class:`edgebp.processing.beats.BeatDetector`, preferred when the model has
a PPG input: a pulse wave, like the arterial one, has no electrical-only beats) or the
causal R-peak detector (:class:`edgebp.processing.qrs_stream.QrsDetector`) for ECG-only
models. Beat ``i`` spans the interval from its anchor to the next one, shifted onto the
arterial pulse by a fixed lead; SBP, DBP and MAP are the maximum, minimum and mean of the
predicted ABP over that interval, its time is the time of the maximum, and the heart rate
is 60 / interval.

The leads were measured on 25 training records of challenge2015 (`scripts/beat_lead.py`):
the arterial foot follows the R peak by 0.136 s (median; p10-p90 0.120-0.144 s), and reading
the *reference* ABP over PPG pulse intervals moved back by 0.15 s reproduced the reference
beats' SBP exactly at the median (|DBP error| p90 0.8 mmHg; 2.2 mmHg at 0.30 s).

A beat is valid only when every prediction over its interval is valid and its interval is a
plausible heart period (0.27-2.5 s); otherwise it is still written, with ``valid`` false and
a ``reason``: the first invalid output's reason, ``rr`` for an implausible interval, ``end``
when the stream ended inside it.
"""

from __future__ import annotations

import numpy as np

from edgebp.processing.beats import INTERVAL_RANGE, BeatDetector
from edgebp.processing.qrs_stream import QrsDetector
from edgebp.runtime.beat_features import WAVE_FEATURES, BeatFeatureBuffer

PPG_LEAD_S = 0.15
ECG_LAG_S = 0.09  # the window starts 0.05 s before the median arterial foot after the R peak



def _median_int(xs: list[int]) -> float:
    """``float(np.median(xs))`` of a short list of Python ints, bit for bit (the middle value,
    or the mean of the two middle values, exact for these sample counts), without numpy's
    ~20 us per call: it runs for every pulse and every beat."""
    s = sorted(xs)
    n = len(s)
    h = n // 2
    return float(s[h]) if n % 2 else (s[h - 1] + s[h]) / 2

class BeatKeyer:
    """Per-beat BP from a stream of predictions, keyed to the input's detected beats.

    Parameters
    ----------
    fs : float
        Model rate (Hz).
    source : {"ppg", "ecg"}
        Which input's beats key the readings.
    reasons : sequence of str
        Names of the runtime's reason codes (index = code).
    features : bool
        Also measure each valid beat's features (:mod:`edgebp.runtime.beat_features`: pulse
        arrival time from the ECG given to :meth:`push_input`, PPG shape) into its row.

    Indices are the runtime's aligned model index ``m``: input sample ``m`` of the model and
    the prediction of ABP at that sample.
    """

    def __init__(self, fs: float, source: str, reasons: tuple[str, ...], features: bool = False):
        if source not in ("ppg", "ecg"):
            raise ValueError(f"beat source must be one of ppg, ecg; got {source!r}")
        self.fs, self.source, self.reasons = float(fs), source, tuple(reasons)
        self.features = bool(features)
        self.feat = BeatFeatureBuffer(self.fs) if self.features and source == "ppg" else None
        self.qrs = QrsDetector(self.fs) if self.feat is not None else None
        if source == "ppg":
            # the preprocessed PPG is z-scored: a pulse spans about 3 units
            self.det = BeatDetector(self.fs, frac=0.2, floor=0.15, init_pp=3.0)
            self.shift = -int(round(PPG_LEAD_S * self.fs))
        else:
            self.det = QrsDetector(self.fs)
            self.shift = int(round(ECG_LAG_S * self.fs))
        self.rr_lo, self.rr_hi = INTERVAL_RANGE
        self.reset()

    def reset(self) -> None:
        self.state = self.det.init_state()
        self.last_anchor: int | None = None
        self.queue: list[tuple[int, int]] = []  # (start, end) in aligned model index
        self.m0 = 0  # aligned index of buf[0]
        self.abp = np.zeros(0)
        self.code = np.zeros(0, np.int8)
        self.pushed = False
        self.held: list | None = None  # the last PPG pulse, waiting for the next (see _intervals)
        self.steps: list[int] = []  # recent peak-to-peak intervals of accepted pulses (samples)
        self.lags: list[int] = []  # recent (smoothed systolic maximum - anchor point), samples
        self.last_point: int | None = None
        self.m_first = 0
        if getattr(self, "feat", None) is not None:
            self.feat.reset()
            self.qrs_state = self.qrs.init_state()

    # -------------------------------------------------------------- inputs
    def push_input(self, x: np.ndarray, ecg: np.ndarray | None = None) -> None:
        """The key channel at the model rate (NaN where the input was invalid), and with
        ``features`` the ECG at the same samples for the pulse arrival time (or None)."""
        x = np.asarray(x, np.float64)
        if self.feat is not None:
            r = None
            if ecg is not None:
                r, self.qrs_state = self.qrs.process(np.asarray(ecg, np.float64), self.qrs_state)
                r = r.tolist()
            self.feat.push(x, r)
        if self.source == "ppg":
            b, self.state = self.det.process(x, self.state)
            if len(b):  # most steps complete no pulse
                self._intervals(zip(b.i_dia.tolist(), b.i_end.tolist(), b.i_sys.tolist(), (b.sbp - b.dbp).tolist()))
        else:
            r, self.state = self.det.process(x, self.state)
            self._anchors(r.tolist())

    def _anchors(self, r: list[int]) -> None:
        for a in r:
            if self.last_anchor is not None:
                self.queue.append((self.last_anchor + self.shift, a + self.shift, self.last_anchor))
            self.last_anchor = a

    def _intervals(self, pulses) -> None:
        """PPG pulses (start trough, end trough, peak, pulse amplitude). A pulse whose peak
        comes sooner than 0.55 of the recent median peak-to-peak interval after the one
        before, and whose amplitude is under 0.6 of its neighbour's, is the dicrotic wave (or
        noise) of that beat, not a beat: it is merged into it (a fast but full-sized pulse
        stays a beat, so a falling median cannot swallow real beats). So each pulse waits
        for the next before it is queued."""
        for a, b, p, v in pulses:
            new = [int(a) + self.shift, int(b) + self.shift, int(p) + self.shift, float(v)]
            h = self.held
            if h is None:
                self.held = new
                continue
            step = new[2] - h[2]
            med = _median_int(self.steps) if len(self.steps) >= 5 else None
            small = min(h[3], new[3]) < 0.6 * max(h[3], new[3])
            if med is not None and 0 < step < 0.55 * med and small and new[0] <= h[1] + 1:
                # one beat: its span runs on to the merged pulse's end; the higher peak stays
                self.held = [h[0], new[1], h[2] if h[3] >= new[3] else new[2], max(h[3], new[3])]
                continue
            if self.rr_lo * self.fs <= step <= self.rr_hi * self.fs:
                self.steps = (self.steps + [step])[-9:]
            self.queue.append((h[0], h[1], h[2]))
            self.held = new

    def release_held(self) -> None:
        """End of stream: the last pulse is queued without waiting for a next one."""
        if self.held is not None:
            self.queue.append(tuple(self.held[:3]))
            self.held = None

    # -------------------------------------------------------------- predictions
    def push_outputs(self, m: np.ndarray, abp: np.ndarray, code: np.ndarray) -> None:
        """Predictions at aligned indices ``m`` (consecutive), mmHg (NaN if invalid), codes."""
        if not len(m):
            return
        start = int(m[0])
        if not len(self.abp) and not self.pushed:
            self.m0 = self.m_first = start
        self.pushed = True
        if start > self.m0 + len(self.abp):  # nothing can be known between: mark it unknown
            gap = start - (self.m0 + len(self.abp))
            self.abp = np.concatenate([self.abp, np.full(gap, np.nan)])
            self.code = np.concatenate([self.code, np.full(gap, 1, np.int8)])
        self.abp = np.concatenate([self.abp, np.asarray(abp, np.float64)])
        self.code = np.concatenate([self.code, np.asarray(code, np.int8)])

    # -------------------------------------------------------------- beats
    def pop(self, final: bool = False) -> list[dict]:
        """Beats whose whole interval has a prediction (all queued beats when ``final``).

        Rows: ``m`` (aligned index of the systolic maximum, or of the interval's start when
        invalid), ``sbp``, ``dbp``, ``map`` (NaN when invalid), ``hr``, ``valid``, ``reason``.
        """
        rows = []
        end_known = self.m0 + len(self.abp)
        keep = []
        for a, b, p in self.queue:
            if b > end_known and not final:
                keep.append((a, b, p))
                continue
            rows.append(self._beat(a, b, p))
        self.queue = keep
        # keep the buffer from the earliest interval still waiting (or ~3 s back)
        # pulses not yet reported (the tracker confirms one ~0.3 s after it ends, and a pulse
        # waits for the next one) start up to a few seconds back: keep 5 s
        lo = min([a for a, _, _ in keep] + ([self.held[0]] if self.held else []) + [end_known - int(5 * self.fs)])
        cut = max(0, min(lo, end_known) - self.m0)
        if cut:
            self.abp, self.code = self.abp[cut:], self.code[cut:]
            self.m0 += cut
        return rows

    def _beat(self, a: int, b: int, p: int) -> dict:
        # heart rate from consecutive anchor points (PPG systolic peaks or R peaks): steadier
        # than the pulse's own trough-to-trough span, whose ends the tracker may move
        step = p - self.last_point if self.last_point is not None else b - a
        if not 0 < step <= self.rr_hi * self.fs:
            step = b - a
        self.last_point = p
        hr = 60.0 * self.fs / step if step > 0 else float("nan")
        row = {"m": a, "sbp": float("nan"), "dbp": float("nan"), "map": float("nan"), "hr": hr, "valid": False, "reason": "ok"}
        period = (b - a) / self.fs
        if not self.rr_lo <= period <= self.rr_hi:
            row["reason"] = "rr"
            return row
        i, j = a - self.m0, b - self.m0
        if i < 0:
            row["reason"] = "warmup" if a < self.m_first else "gap"
            return row
        if j > len(self.abp):
            row["reason"] = "end"
            return row
        seg, code = self.abp[i:j], self.code[i:j]
        bad = np.flatnonzero((code > 0) | ~np.isfinite(seg))
        if len(bad):
            c = int(code[bad[0]])
            row["reason"] = self.reasons[c] if 0 < c < len(self.reasons) else "gap"
            return row
        # the beat's time: the anchor point moved by the running median of (systolic maximum
        # of the 80 ms-smoothed prediction - anchor point) over the last 30 valid beats, so
        # each subject's own transit time is followed while one noisy beat cannot move it
        w = max(1, int(round(0.08 * self.fs)))
        sm = np.convolve(seg, np.ones(w) / w, mode="same")
        self.lags = (self.lags + [a + int(np.argmax(sm)) - p])[-30:]
        m = p + int(_median_int(self.lags)) if len(self.lags) >= 3 else a + int(np.argmax(sm))
        row.update(m=m, sbp=float(seg.max()), dbp=float(seg.min()), map=float(seg.mean()), valid=True)
        if self.feat is not None:
            row.update(self.feat.features(a - self.shift, b - self.shift, p - self.shift))
        elif self.features:
            row.update({k: float("nan") for k in WAVE_FEATURES})
        return row
