"""Scoring a model on prepared records, the same way for a torch run and an exported bundle.

A *runner* maps a float32 batch ``(B, C, T)`` of preprocessed input to the model's output in
normalised units; :func:`records_score` turns its predictions into paired per-beat (waveform
models) or per-window (value models) readings, in mmHg, and :func:`score_report` grades them
beside the naive baselines. No torch here: the runtime and the bundle path use it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgebp.inference import waveform_predict_causal, waveform_predict_windows
from edgebp.scoring import BeatPairs, beats_pair

log = logging.getLogger(__name__)


@dataclass
class ModelGeometry:
    """What the scorer needs to know about a model (from a run's meta or a bundle manifest)."""

    output: str  # "waveform" or "values"
    window: int
    fs: float
    delay: int = 0
    causal: bool = False
    receptive_field: int = 0
    norm: dict = field(default_factory=dict)


@dataclass
class ScoredRecord:
    record_id: str
    subject_id: str
    pairs: BeatPairs
    pred_wave: np.ndarray | None = None  # mmHg at the model rate (waveform models)


def waveform_predict_record(runner: Callable, X: np.ndarray, geo: ModelGeometry, hop: int | None = None) -> np.ndarray:
    """Point-wise ABP (mmHg) for a whole record, aligned to the reference (delay removed)."""
    if geo.causal:
        y = waveform_predict_causal(runner, X, max(geo.receptive_field, 1))
    else:
        y = waveform_predict_windows(runner, X, geo.window, hop or max(1, geo.window // 2))
    y = y * geo.norm["abp_std"] + geo.norm["abp_mean"]
    if geo.delay:
        # output at t estimates ABP at t - delay: shift it back onto the reference's time axis
        y = np.concatenate([y[geo.delay :], np.full(geo.delay, np.nan)])
    return y


def values_predict_record(runner: Callable, X: np.ndarray, abp: np.ndarray, usable: np.ndarray, geo: ModelGeometry) -> BeatPairs:
    """Per-window SBP/DBP for value models (non-overlapping windows), paired with the reference
    median of the valid beats inside each window."""
    from edgebp.processing.beats import abp_beats

    W, n = geo.window, X.shape[1]
    starts = [s for s in range(0, n - W + 1, W) if usable[s : s + W].all() and np.isfinite(X[:, s : s + W]).all()]
    rows = []
    if starts:
        xb = np.stack([X[:, s : s + W] for s in starts]).astype(np.float32)
        out = np.asarray(runner(xb), dtype=np.float64).reshape(len(starts), -1)
        for s, o in zip(starts, out):
            b = abp_beats(abp[s : s + W].astype(np.float64), geo.fs)
            v = np.asarray(b.valid, bool)
            if not v.any():
                continue
            rs, rd, rm = (float(np.median(np.asarray(getattr(b, k))[v])) for k in ("sbp", "dbp", "map"))
            ps = o[0] * geo.norm["sbp_std"] + geo.norm["sbp_mean"]
            pd = o[1] * geo.norm["dbp_std"] + geo.norm["dbp_mean"]
            rows.append(((s + W) / geo.fs, rs, rd, rm, ps, pd, (ps + 2 * pd) / 3.0))
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return BeatPairs(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], a[:, 6], np.ones(len(a), bool))


def records_score(runner: Callable, prepared: list, geo: ModelGeometry, hop: int | None = None, keep_waves: int = 3, progress=None) -> list[ScoredRecord]:
    """Predict and pair every prepared record (see :class:`edgebp.train.data.PreparedRecord`)."""
    out = []
    for k, p in enumerate(prepared):
        if geo.output == "values":
            pairs = values_predict_record(runner, p.X, p.abp, p.usable, geo)
            wave = None
        else:
            wave = waveform_predict_record(runner, p.X, geo, hop)
            pairs = beats_pair(wave, p.abp.astype(np.float64), geo.fs, ref_mask=p.usable)
        out.append(ScoredRecord(p.record_id, p.subject_id, pairs, wave if k < keep_waves else None))
        if progress is not None:
            progress(k + 1, p.record_id)
    return out


def calibrate_offsets(scored: list[ScoredRecord], seconds: float) -> tuple[list[ScoredRecord], dict]:
    """Per-subject offset from the first ``seconds`` of each record; only later beats are kept.

    Returns the calibrated records and, per record, the calibration values (reference means
    over the calibration period) for the hold-the-calibration-value baseline.
    """
    out, calib = [], {}
    for s in scored:
        p = s.pairs
        early = p.t < seconds
        late = ~early
        if early.sum() < 1 or late.sum() < 1:
            continue
        off_s = float(np.mean(p.ref_sbp[early] - p.pred_sbp[early]))
        off_d = float(np.mean(p.ref_dbp[early] - p.pred_dbp[early]))
        off_m = float(np.mean(p.ref_map[early] - p.pred_map[early]))
        calib[s.record_id] = {"sbp": float(np.mean(p.ref_sbp[early])), "dbp": float(np.mean(p.ref_dbp[early])), "map": float(np.mean(p.ref_map[early]))}
        q = BeatPairs(p.t[late], p.ref_sbp[late], p.ref_dbp[late], p.ref_map[late], p.pred_sbp[late] + off_s, p.pred_dbp[late] + off_d, p.pred_map[late] + off_m, p.by_detector[late])
        out.append(ScoredRecord(s.record_id, s.subject_id, q, s.pred_wave))
    return out, calib


def mase_bootstrap(scored: list[ScoredRecord], naive: dict, key: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """MASE (model MAE / naive-mean MAE) with a record-bootstrap 95 % interval."""
    per = []
    for s in scored:
        ref = getattr(s.pairs, f"ref_{key}")
        pred = getattr(s.pairs, f"pred_{key}")
        if len(ref):
            per.append((np.abs(pred - ref).sum(), np.abs(naive[key] - ref).sum()))
    if not per:
        return {"mase": float("nan"), "ci95": [float("nan"), float("nan")], "n_records": 0}
    a = np.asarray(per)
    point = float(a[:, 0].sum() / a[:, 1].sum())
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(a), len(a))
        boots.append(a[idx, 0].sum() / max(a[idx, 1].sum(), 1e-12))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mase": point, "ci95": [float(lo), float(hi)], "n_records": len(a)}


def prediction_spread(scored: list[ScoredRecord], key: str = "sbp") -> dict:
    """SD of the predictions beside the SD of the reference, over all readings and between
    records (SD of per-record means): a model collapsed to the population mean shows a
    between-record prediction SD near 0 however small its error looks."""
    pred = [getattr(s.pairs, f"pred_{key}") for s in scored if len(s.pairs)]
    ref = [getattr(s.pairs, f"ref_{key}") for s in scored if len(s.pairs)]
    if not pred:
        nan = float("nan")
        return {"pred_sd": nan, "ref_sd": nan, "pred_sd_between_records": nan, "ref_sd_between_records": nan, "n_records": 0}
    pa, ra = np.concatenate(pred), np.concatenate(ref)
    pm, rm = np.array([p.mean() for p in pred]), np.array([r.mean() for r in ref])
    between = len(pm) > 1
    return {"pred_sd": float(pa.std(ddof=1)) if len(pa) > 1 else float("nan"), "ref_sd": float(ra.std(ddof=1)) if len(ra) > 1 else float("nan"),
            "pred_sd_between_records": float(pm.std(ddof=1)) if between else float("nan"),
            "ref_sd_between_records": float(rm.std(ddof=1)) if between else float("nan"), "n_records": int(len(pm))}


def tracking_by_change(scored: list[ScoredRecord], calib: dict, key: str = "sbp", edges=(0, 5, 10, 20, np.inf)) -> list[dict]:
    """Calibrated error binned by how far the reference moved from its calibration value:
    does the model track changes the hold baseline misses?"""
    rows = []
    d_all, em_all, eh_all = [], [], []
    for s in scored:
        if s.record_id not in calib:
            continue
        ref = getattr(s.pairs, f"ref_{key}")
        pred = getattr(s.pairs, f"pred_{key}")
        c = calib[s.record_id][key]
        d_all.append(np.abs(ref - c))
        em_all.append(np.abs(pred - ref))
        eh_all.append(np.abs(c - ref))
    if not d_all:
        return rows
    d, em, eh = (np.concatenate(v) for v in (d_all, em_all, eh_all))
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (d >= lo) & (d < hi)
        rows.append({"change_mmHg": f"{lo}-{hi if np.isfinite(hi) else 'inf'}", "n": int(sel.sum()),
                     "model_mae": float(em[sel].mean()) if sel.any() else None,
                     "hold_mae": float(eh[sel].mean()) if sel.any() else None})
    return rows


def score_report(scored: list[ScoredRecord], norm: dict, calib: dict | None = None, unit: str = "beat") -> dict:
    """Grade the paired readings with :func:`edgebp.metrics.bp_report` beside the baselines."""
    from edgebp.metrics import bp_report

    allp = BeatPairs.concat([s.pairs for s in scored])
    subjects = np.concatenate([[s.subject_id] * len(s.pairs) for s in scored]) if scored else np.zeros(0, str)
    calib_values = None
    if calib:
        calib_values = {
            "sbp": np.concatenate([[calib[s.record_id]["sbp"]] * len(s.pairs) for s in scored]),
            "dbp": np.concatenate([[calib[s.record_id]["dbp"]] * len(s.pairs) for s in scored]),
        }
    train_ref = {"sbp": norm["sbp_mean"], "dbp": norm["dbp_mean"]}
    if "map_mean" in norm:
        train_ref["map"] = norm["map_mean"]
    rep = bp_report(allp.pred_sbp, allp.ref_sbp, allp.pred_dbp, allp.ref_dbp, subjects=subjects, train_ref=train_ref,
                    calib_values=calib_values, pred_map=allp.pred_map, ref_map=allp.ref_map, unit=f"{unit} (records treated as subjects)",
                    calibrated=bool(calib))
    rep["n_records"] = len(scored)
    rep["paired_by_detector_share"] = float(allp.by_detector.mean()) if len(allp) else float("nan")
    naive = {"sbp": norm["sbp_mean"], "dbp": norm["dbp_mean"]}
    rep["mase_bootstrap"] = {k: mase_bootstrap(scored, naive, k) for k in ("sbp", "dbp")}
    rep["spread"] = {k: prediction_spread(scored, k) for k in ("sbp", "dbp")}
    if calib:
        rep["tracking"] = {k: tracking_by_change(scored, calib, k) for k in ("sbp", "dbp")}
    return rep
