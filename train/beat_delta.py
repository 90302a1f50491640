"""Fit the calibrated per-beat estimator (model kind ``beat-delta``) for a bundle.

The estimator (:mod:`edgebp.runtime.calibrated`) turns a cuff reading plus the change of the
beat features since it into calibrated SBP/DBP/MAP. Fitting it:

1. every training and validation record goes through the bundle's deployed streaming model
   in 20 ms packets with the beat features on (:func:`edgebp.runtime.stream_score.stream_score_record`),
   so the features are exactly those the device computes;
2. calibration episodes are drawn on each record: a cuff reading at ``t`` = 60, 120, 180 s
   (the reference mean over the 60 s before it), scored on the beats of the next
   ``EPISODE_S`` seconds;
3. per smoothing ``tau`` (beats) the feature changes ``dz`` of the training episodes are
   scaled by their SD and a ridge regression of the reference's change from the cuff value
   is solved per target and penalty;
4. on the validation episodes only, ``tau``, the penalty and the shrinkage ``alpha`` (0 =
   hold ... 1) are chosen per target by the mean absolute error; ``alpha = 0`` is a valid
   choice, so the estimator is never chosen worse than hold on validation.

No test record is read. numpy only (torch is not needed).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebp.runtime.beat_features import FEATURES
from edgebp.runtime.calibrated import TARGETS, CuffReading, EstimatorParams, cuff_check, estimator_save
from edgebp.runtime.calibrated_score import calibrated_apply, calibrated_report

log = logging.getLogger(__name__)

__all__ = ["FitConfig", "episodes_make", "beat_delta_fit", "scores_collect"]

CAL_WINDOW_S = 60.0
EPISODE_STARTS_S = (60.0, 120.0, 180.0)
EPISODE_S = 120.0


@dataclass
class FitConfig:
    """Grids searched on the validation records."""

    taus: tuple = (1.0, 4.0, 16.0, 48.0, 128.0)
    lambdas: tuple = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    alphas: tuple = tuple(np.round(np.arange(0.0, 1.0001, 0.05), 2).tolist())
    window_s: float = CAL_WINDOW_S
    starts: tuple = EPISODE_STARTS_S
    episode_s: float = EPISODE_S
    max_delta: float = 40.0

    @classmethod
    def from_dict(cls, d: dict, where: str = "beat-delta config") -> "FitConfig":
        """Keys of this class only (an unknown key is an error listing the valid ones);
        sequences become tuples, numbers floats."""
        import dataclasses

        valid = [f.name for f in dataclasses.fields(cls)]
        bad = sorted(set(d) - set(valid))
        if bad:
            raise ValueError(f"{where}: unknown key(s) {', '.join(bad)}; valid: {', '.join(valid)}")
        out = {}
        for k, v in d.items():
            try:
                out[k] = tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {k}={v!r} must be a number or a list of numbers") from None
            if isinstance(out[k], tuple) and not out[k]:
                raise ValueError(f"{where}: {k} must not be empty")
        cfg = cls(**out)
        if any(a < 0 or a > 1 for a in cfg.alphas) or any(t < 1 for t in cfg.taus) or any(x <= 0 for x in cfg.lambdas):
            raise ValueError(f"{where}: alphas must lie in 0..1, taus be at least 1 beat and lambdas positive")
        if not (cfg.window_s > 0 and cfg.episode_s > 0 and cfg.max_delta > 0 and all(t > 0 for t in cfg.starts)):
            raise ValueError(f"{where}: window_s, episode_s, max_delta and starts must be positive")
        return cfg


def scores_collect(bundle, items, variant: str = "int8", progress=None) -> list:
    """Each ``(record, prepared)`` through the runtime with features; StreamScore list."""
    from edgebp.runtime.stream_score import stream_score_record

    out = []
    for k, (rec, p) in enumerate(items):
        out.append(stream_score_record(bundle, rec, p, variant=variant, features=True))
        if progress is not None:
            progress(k + 1, p.record_id)
    return out


def episodes_make(score, cfg: FitConfig) -> list[list[CuffReading]]:
    """One single-reading episode per start time the record is long enough for."""
    t, p = np.asarray(score.ref_t, float), score.pairs
    eps = []
    for tc in cfg.starts:
        sel = (t >= tc - cfg.window_s) & (t <= tc)
        if sel.sum() < 5 or not (t > tc).any():
            continue
        s_, d_ = float(np.mean(p.ref_sbp[sel])), float(np.mean(p.ref_dbp[sel]))
        if cuff_check(s_, d_) is None:  # what a cuff could report
            eps.append([CuffReading(tc, s_, d_, cfg.window_s)])
    return eps


def _probe_params(tau: float, cfg: FitConfig) -> EstimatorParams:
    k = len(FEATURES)
    return EstimatorParams(features=list(FEATURES), scale={tg: [1.0] * k for tg in TARGETS}, weights={tg: [0.0] * k for tg in TARGETS},
                           alpha={tg: 0.0 for tg in TARGETS}, tau={tg: tau for tg in TARGETS}, window_s=cfg.window_s,
                           max_delta=cfg.max_delta)


def _episode_rows(scores: list, tau: float, cfg: FitConfig) -> list[dict]:
    """Per episode: the scored beats (within ``episode_s`` of the reading) with their raw dz."""
    rows = []
    pp = _probe_params(tau, cfg)
    for s in scores:
        for eps in episodes_make(s, cfg):
            r = calibrated_apply(s, pp, eps, keep_z=True)
            if not len(r["t"]):
                continue
            keep = r["t"] <= eps[0].t + cfg.episode_s
            rows.append({k: (v[keep] if isinstance(v, np.ndarray) and len(v) == len(keep) else v) for k, v in r.items()} | {"record": s.record_id})
    return rows


def _stack(rows: list[dict], tg: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Z = np.concatenate([r[f"dz_{tg}"] for r in rows])
    y = np.concatenate([r[f"ref_{tg}"] - r[f"hold_{tg}"] for r in rows])
    return Z, y, np.isfinite(Z).all(axis=1)


def beat_delta_fit(train_scores: list, val_scores: list, cfg: FitConfig | None = None, progress=None) -> tuple[EstimatorParams, dict]:
    """Fit on ``train_scores``, choose on ``val_scores``; returns the params and a report."""
    cfg = cfg or FitConfig()
    t0 = time.perf_counter()
    best = {tg: None for tg in TARGETS}
    grid = []
    for ti, tau in enumerate(cfg.taus):
        tr = _episode_rows(train_scores, tau, cfg)
        va = _episode_rows(val_scores, tau, cfg)
        for tg in TARGETS:
            Z, y, ok = _stack(tr, tg)
            if ok.sum() < 50:
                raise ValueError(f"beat-delta fit: only {int(ok.sum())} training beats with features; need at least 50")
            scale = np.nanstd(Z[ok], axis=0)
            scale[~(scale > 1e-9)] = 1.0
            Zs = np.clip(Z[ok] / scale, -4, 4)
            Zv, yv, okv = _stack(va, tg)
            Zvs = np.clip(np.where(np.isfinite(Zv), Zv, 0.0) / scale, -4, 4)
            hold_err = np.abs(yv)  # hold predicts no change
            for lam in cfg.lambdas:
                A = Zs.T @ Zs + lam * np.eye(Zs.shape[1])
                w = np.linalg.solve(A, Zs.T @ y[ok])
                d = np.clip(Zvs @ w, -cfg.max_delta, cfg.max_delta)
                d[~okv] = 0.0  # unpaired beats: approximated by hold in the choice
                maes = [float(np.abs(yv - a * d).mean()) for a in cfg.alphas]
                j = int(np.argmin(maes))
                cand = {"tau": tau, "lambda": lam, "alpha": cfg.alphas[j], "val_mae": maes[j], "val_hold_mae": float(hold_err.mean()),
                        "weights": w.tolist(), "scale": scale.tolist()}
                grid.append({"target": tg, "tau": tau, "lambda": lam, "alpha": cfg.alphas[j], "val_mae": round(maes[j], 4),
                             "val_hold_mae": round(float(hold_err.mean()), 4), "train_beats": int(ok.sum()), "val_beats": int(len(yv))})
                if best[tg] is None or cand["val_mae"] < best[tg]["val_mae"] - 1e-9:
                    best[tg] = cand
        if progress is not None:
            progress(ti + 1, len(cfg.taus), {tg: (best[tg]["val_mae"], best[tg]["val_hold_mae"]) for tg in TARGETS})
    weights = {tg: best[tg]["weights"] for tg in TARGETS}
    scale = {tg: best[tg]["scale"] for tg in TARGETS}
    fit = {"method": "ridge on the change of the beat features from calibration, per target; tau, lambda, alpha chosen on validation",
           "train_records": [s.record_id for s in train_scores], "val_records": [s.record_id for s in val_scores],
           "episodes": {"starts_s": list(cfg.starts), "window_s": cfg.window_s, "scored_s": cfg.episode_s},
           "chosen": {tg: {k: best[tg][k] for k in ("tau", "lambda", "alpha", "val_mae", "val_hold_mae")} for tg in TARGETS},
           "grid": grid, "seconds": round(time.perf_counter() - t0, 1)}
    params = EstimatorParams(features=list(FEATURES), scale=scale, weights=weights,
                             alpha={tg: float(best[tg]["alpha"]) for tg in TARGETS}, tau={tg: float(best[tg]["tau"]) for tg in TARGETS},
                             window_s=30.0, max_delta=cfg.max_delta, fit=fit)
    return params, fit


def val_report(params: EstimatorParams, scores: list, seconds: float = 60.0, every_s: float | None = None,
               window_s: float | None = None) -> dict:
    """:func:`calibrated_report` of ``params`` on ``scores`` with readings from the reference."""
    from edgebp.runtime.calibrated_score import readings_from_reference

    res = [calibrated_apply(s, params, readings_from_reference(s, seconds, every_s, window_s)) for s in scores]
    return calibrated_report(res)


def params_write(params: EstimatorParams, path: str | Path) -> Path:
    return estimator_save(params, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def report_write(fit: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(fit, indent=1, default=_json_default))
