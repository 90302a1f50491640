"""Per-beat values from a predicted ABP waveform, paired with the reference beats (no torch).

The predicted waveform goes through the very beat detector used for the reference labels
(:func:`edgebp.processing.beats.abp_beats`); each valid reference beat is paired with the
predicted beat whose systolic peak is nearest, within a third of the reference beat's length.
A reference beat with no predicted partner (a flat prediction has no beats) is read from the
prediction over the reference beat's own interval (max, min, mean) and counted as such, so a
model that collapses to a constant is scored, and visibly bad, instead of silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebp.processing.beats import abp_beats


@dataclass
class BeatPairs:
    """Paired per-beat readings of one record (mmHg, times in s from the record start)."""

    t: np.ndarray
    ref_sbp: np.ndarray
    ref_dbp: np.ndarray
    ref_map: np.ndarray
    pred_sbp: np.ndarray
    pred_dbp: np.ndarray
    pred_map: np.ndarray
    by_detector: np.ndarray  # True: paired with a detected predicted beat; False: interval read

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def concat(cls, parts: list["BeatPairs"]) -> "BeatPairs":
        if not parts:
            e = np.zeros(0)
            return cls(e, e, e, e, e, e, e, np.zeros(0, bool))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def reference_beats_scored(pred_abp: np.ndarray, ref_abp: np.ndarray, fs: float,
                           ref_mask: np.ndarray | None = None):
    """The reference beats a prediction is scored on: valid beats of ``ref_abp`` (the labels'
    detector) lying wholly in usable reference samples and wholly under a finite prediction.
    Returns ``(beats, indices of the scored beats)``."""
    rb = abp_beats(ref_abp, fs)
    keep = np.asarray(rb.valid, dtype=bool).copy()
    if ref_mask is not None:
        bad_cum = np.concatenate([[0], np.cumsum(~np.asarray(ref_mask, bool))])
        keep &= (bad_cum[rb.i_end + 1] - bad_cum[rb.i_dia]) == 0
    nan_cum = np.concatenate([[0], np.cumsum(~np.isfinite(pred_abp))])
    keep &= (nan_cum[rb.i_end + 1] - nan_cum[rb.i_dia]) == 0
    return rb, np.flatnonzero(keep)


def interval_read(pred_abp: np.ndarray, rb, k: int) -> tuple[float, float, float]:
    """SBP, DBP, MAP of the prediction over reference beat ``k``'s own interval (max, min, mean):
    how a reference beat with no predicted partner is scored."""
    seg = pred_abp[int(rb.i_dia[k]) : int(rb.i_end[k]) + 1]
    return float(seg.max()), float(seg.min()), float(seg.mean())


def beats_pair(pred_abp: np.ndarray, ref_abp: np.ndarray, fs: float, ref_mask: np.ndarray | None = None) -> BeatPairs:
    """Pair per-beat SBP/DBP/MAP of a predicted waveform with the reference's beats.

    Parameters
    ----------
    pred_abp, ref_abp : ndarray
        Same length, mmHg; NaN where no prediction exists or the reference is missing.
    fs : float
        Sampling rate of both.
    ref_mask : ndarray of bool, optional
        Usable reference samples; beats touching an unusable sample are not scored.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 20, 1 / 125)
    >>> ref = 95 + 25 * np.sin(2 * np.pi * 1.2 * t)
    >>> p = beats_pair(ref + 3.0, ref, 125.0)
    >>> bool(np.allclose(p.pred_sbp - p.ref_sbp, 3.0, atol=0.5))
    True
    """
    pred_abp = np.asarray(pred_abp, dtype=np.float64)
    ref_abp = np.asarray(ref_abp, dtype=np.float64)
    if pred_abp.shape != ref_abp.shape:
        raise ValueError(f"prediction and reference differ in length ({pred_abp.shape} vs {ref_abp.shape})")
    rb, idx = reference_beats_scored(pred_abp, ref_abp, fs, ref_mask)
    n = len(idx)
    out_sbp, out_dbp, out_map = np.empty(n), np.empty(n), np.empty(n)
    by_det = np.zeros(n, dtype=bool)
    pb = abp_beats(np.where(np.isfinite(pred_abp), pred_abp, np.nan), fs)
    p_t = np.asarray(pb.t_sys)[np.asarray(pb.valid, bool)] if len(pb) else np.zeros(0)
    p_s = np.asarray(pb.sbp)[np.asarray(pb.valid, bool)] if len(pb) else np.zeros(0)
    p_d = np.asarray(pb.dbp)[np.asarray(pb.valid, bool)] if len(pb) else np.zeros(0)
    p_m = np.asarray(pb.map)[np.asarray(pb.valid, bool)] if len(pb) else np.zeros(0)
    for j, k in enumerate(idx):
        a, b = int(rb.i_dia[k]), int(rb.i_end[k])
        tol = (b - a) / fs / 3.0
        if len(p_t):
            m = int(np.argmin(np.abs(p_t - rb.t_sys[k])))
            if abs(p_t[m] - rb.t_sys[k]) <= tol:
                out_sbp[j], out_dbp[j], out_map[j], by_det[j] = p_s[m], p_d[m], p_m[m], True
                continue
        out_sbp[j], out_dbp[j], out_map[j] = interval_read(pred_abp, rb, k)
    return BeatPairs(
        t=np.asarray(rb.t_sys)[idx],
        ref_sbp=np.asarray(rb.sbp)[idx],
        ref_dbp=np.asarray(rb.dbp)[idx],
        ref_map=np.asarray(rb.map)[idx],
        pred_sbp=out_sbp,
        pred_dbp=out_dbp,
        pred_map=out_map,
        by_detector=by_det,
    )
