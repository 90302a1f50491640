"""Score calibrated BP against holding the cuff value, on the same beats, the deployed path.

Each record goes through the runtime once (:func:`edgebp.runtime.stream_score.stream_score_record`
with the beat features); the cuff readings a protocol would take are then made from the
record's reference (the mean reference SBP/DBP over the ``window`` seconds before each
reading's time, as an averaging cuff reports) and the calibrated estimator
(:class:`edgebp.runtime.calibrated.CalibratedEstimator`, the very object ``edgebp run`` uses) is
run over the runtime's beat rows with them. Every reference beat after the first reading is
scored, for both the estimator and hold:

* a reference beat paired with a runtime beat gets that beat's calibrated values;
* one without gets what the device shows at that time: the latest calibrated beat before it
  (the cuff value itself before the first one), so no beat is dropped in the model's favour;
* hold is the latest reading applied before the beat.

:func:`calibrated_report` gives MAE/ME/SD of both, the difference with a record-bootstrap 95 %
interval, errors by how far the reference moved from its calibration value, and the
correlation of predicted with true change. No torch here.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from edgebp.runtime.calibrated import TARGETS, CalibratedEstimator, CuffReading, EstimatorParams, cuff_check

log = logging.getLogger(__name__)

__all__ = ["CHANGE_BINS", "readings_from_reference", "calibrated_apply", "calibrated_report", "GOALS"]

CHANGE_BINS = (0.0, 5.0, 10.0, 20.0, np.inf)
#: issue goals: upper 95 % bound of (model - hold) MAE, and the MAE ratio on beats that moved > 10 mmHg
GOALS = {"diff_upper_max": 0.3, "moved_ratio_max": 0.85}


def readings_from_reference(score, seconds: float, every_s: float | None = None, window_s: float | None = None) -> list[CuffReading]:
    """Cuff readings at ``seconds`` (then every ``every_s``) from the reference beats: each the
    mean SBP/DBP of the reference beats in the ``window_s`` (default ``seconds``) before it.
    A mean a cuff could not report (outside 40-300 mmHg, DBP not below SBP) gives no reading;
    a record with none is not scored (:func:`calibrated_report` counts the records scored)."""
    t = np.asarray(score.ref_t, float)
    p = score.pairs
    w = float(seconds if window_s is None else window_s)
    times = [float(seconds)]
    if every_s:
        while times[-1] + every_s < (t.max() if len(t) else 0.0):
            times.append(times[-1] + float(every_s))
    out = []
    for tc in times:
        sel = (t >= tc - w) & (t <= tc)
        if sel.sum() < 1:
            continue
        s_, d_ = float(np.mean(p.ref_sbp[sel])), float(np.mean(p.ref_dbp[sel]))
        why = cuff_check(s_, d_)
        if why:  # a cuff would not report it either (e.g. an ICU DBP below 40): no reading there
            log.info("%s@%gs: no cuff reading: %s", score.record_id, tc, why)
            continue
        out.append(CuffReading(tc, s_, d_, w, where=f"{score.record_id}@{tc:g}s"))
    return out


def calibrated_apply(score, params: EstimatorParams, readings: list[CuffReading], keep_z: bool = False) -> dict:
    """The estimator over one record's runtime beats with ``readings``; per reference beat
    after the first reading: ``ref_*``, ``est_*``, ``hold_*`` (arrays), ``t`` and, with
    ``keep_z``, the paired beats' raw feature changes (``dz``: target -> (n, k), NaN rows
    where unpaired) for fitting."""
    est = CalibratedEstimator(params)
    for r in readings:
        est.reading_add(r.t, r.sbp, r.dbp, r.window_s, r.where)
    rows = [copy.copy(b) for b in score.beats]
    dz = {tg: [] for tg in TARGETS}
    for r in rows:
        est.update(r)
        if keep_z:
            for tg in TARGETS:
                dz[tg].append(est.last_dz.get(tg) if r.get("calibrated") and est.last_dz else None)
    t_ref = np.asarray(score.ref_t, float)
    if not readings:
        return {"t": t_ref[:0]}
    first = readings[0].t
    use = t_ref > first
    idx = np.flatnonzero(use)
    row_t = np.array([r["t"] for r in rows], float)
    cal = np.array([bool(r.get("calibrated")) for r in rows], bool)
    rt = np.array([r.t for r in readings])
    out = {"t": t_ref[idx], "record": score.record_id}
    p = score.pairs
    for tg in TARGETS:
        ref = np.asarray(getattr(p, f"ref_{tg}"), float)[idx]
        cuff = np.array([getattr(r, tg) if tg != "map" else r.map for r in readings])
        hold = cuff[np.searchsorted(rt, t_ref[idx], side="left") - 1]
        vals = np.array([r[tg] for r in rows], float)
        e = np.empty(len(idx))
        for q, j in enumerate(idx):
            i = int(score.pair_index[j])
            if i >= 0 and cal[i]:
                e[q] = vals[i]
                continue
            # what the device shows: the latest calibrated beat before this one
            k = np.searchsorted(row_t, t_ref[j], side="right") - 1
            while k >= 0 and not cal[k]:
                k -= 1
            e[q] = vals[k] if k >= 0 and row_t[k] > rt[np.searchsorted(rt, t_ref[j], side="left") - 1] else hold[q]
        out[f"ref_{tg}"], out[f"est_{tg}"], out[f"hold_{tg}"] = ref, e, hold
        if keep_z:
            k = len(params.features)
            Z = np.full((len(idx), k), np.nan)
            for q, j in enumerate(idx):
                i = int(score.pair_index[j])
                if i >= 0 and dz[tg][i] is not None:
                    Z[q] = dz[tg][i]
            out[f"dz_{tg}"] = Z
    return out


def _boot_diff(per: list[tuple[float, float, int]], n_boot: int = 2000, seed: int = 0) -> list[float]:
    a = np.asarray(per, float)
    rng = np.random.default_rng(seed)
    bs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(a), len(a))
        n = a[i, 2].sum()
        bs.append((a[i, 0].sum() - a[i, 1].sum()) / max(n, 1))
    return [float(x) for x in np.percentile(bs, [2.5, 97.5])]


def calibrated_report(results: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Model (calibrated estimator) against hold on the same beats, per target."""
    res = [r for r in results if len(r.get("t", [])) > 0]
    rep: dict = {"records": len(res), "beats": int(sum(len(r["t"]) for r in res)), "targets": {}}
    for tg in TARGETS:
        ref = np.concatenate([r[f"ref_{tg}"] for r in res]) if res else np.zeros(0)
        est = np.concatenate([r[f"est_{tg}"] for r in res]) if res else np.zeros(0)
        hold = np.concatenate([r[f"hold_{tg}"] for r in res]) if res else np.zeros(0)
        if not len(ref):
            continue
        em, eh = est - ref, hold - ref
        per = [(np.abs(r[f"est_{tg}"] - r[f"ref_{tg}"]).sum(), np.abs(r[f"hold_{tg}"] - r[f"ref_{tg}"]).sum(), len(r["t"])) for r in res]
        diff = float(np.abs(em).mean() - np.abs(eh).mean())
        ci = _boot_diff(per, n_boot, seed) if len(per) > 1 else [float("nan"), float("nan")]
        moved = np.abs(ref - hold)
        bins = []
        for lo, hi in zip(CHANGE_BINS[:-1], CHANGE_BINS[1:]):
            s = (moved >= lo) & (moved < hi)
            bins.append({"change_mmHg": f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}", "n": int(s.sum()),
                         "model_mae": float(np.abs(em[s]).mean()) if s.any() else None,
                         "hold_mae": float(np.abs(eh[s]).mean()) if s.any() else None})
        big = moved > 10.0
        true_d, pred_d = ref - hold, est - hold
        corr = float(np.corrcoef(true_d, pred_d)[0, 1]) if len(ref) > 2 and np.std(pred_d) > 0 and np.std(true_d) > 0 else float("nan")
        ratio = float(np.abs(em[big]).mean() / np.abs(eh[big]).mean()) if big.any() else float("nan")
        rep["targets"][tg] = {
            "model": {"mae": float(np.abs(em).mean()), "me": float(em.mean()), "sd": float(em.std(ddof=1)) if len(em) > 1 else float("nan")},
            "hold": {"mae": float(np.abs(eh).mean()), "me": float(eh.mean()), "sd": float(eh.std(ddof=1)) if len(eh) > 1 else float("nan")},
            "mae_diff": diff, "mae_diff_ci95": ci, "by_change": bins,
            "moved_over_10": {"n": int(big.sum()), "share": float(big.mean()), "model_mae": float(np.abs(em[big]).mean()) if big.any() else None,
                              "hold_mae": float(np.abs(eh[big]).mean()) if big.any() else None, "ratio": ratio},
            "change_corr": corr,
            "goals": {"no_worse_than_hold": bool(np.isfinite(ci[1]) and ci[1] <= GOALS["diff_upper_max"]),
                      "tracks_moves": bool(np.isfinite(ratio) and ratio <= GOALS["moved_ratio_max"])},
        }
    return rep


def calibrated_table(rep: dict, title: str = "") -> str:
    """A plain-text table of :func:`calibrated_report`."""
    lines = [title] if title else []
    lines.append(f"{rep['records']} records, {rep['beats']} beats after the first cuff reading")
    lines.append(f"{'':5} {'model MAE':>9} {'hold MAE':>9} {'diff':>6} {'95% CI':>15} {'r(change)':>9} {'>10 mmHg: n':>12} {'model':>6} {'hold':>6} {'ratio':>6}")
    for tg, r in rep["targets"].items():
        mv = r["moved_over_10"]
        ci = r["mae_diff_ci95"]
        lines.append(f"{tg.upper():5} {r['model']['mae']:9.2f} {r['hold']['mae']:9.2f} {r['mae_diff']:+6.2f} [{ci[0]:+6.2f},{ci[1]:+6.2f}] {r['change_corr']:9.2f} "
                     f"{mv['n']:12d} {mv['model_mae'] or float('nan'):6.2f} {mv['hold_mae'] or float('nan'):6.2f} {mv['ratio']:6.2f}")
    for tg, r in rep["targets"].items():
        cells = "  ".join(f"{b['change_mmHg']}: {b['model_mae'] if b['model_mae'] is not None else float('nan'):.1f}/{b['hold_mae'] if b['hold_mae'] is not None else float('nan'):.1f} (n={b['n']})"
                          for b in r["by_change"])
        lines.append(f"{tg.upper()} by change from the cuff value, model/hold MAE: {cells}")
    return "\n".join(lines)
