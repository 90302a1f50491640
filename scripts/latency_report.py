#!/usr/bin/env python
"""Latency and accuracy of bundles through the streaming runtime (docs/latency.md).

For each bundle and split: every record of the split streamed through ``StreamRuntime`` (as
``edgebp run`` / ``edgebp evaluate`` do: the bundle's chain at the record's 250 Hz, stream-int8
stepped in its chunk, 20 ms packets), beats paired with the reference (edgebp.runtime.stream_score)
and scored with edgebp.evaluation.score_report, plus:

* sample-to-estimate latency, measured end to end: for every output row, the device time of
  the newest sample pushed when the row came out, minus the device time the row estimates
  (its ``t``); p50/p95 over all rows of the first 3 records of the split;
* the timing check: the lag (model samples) that best aligns the streamed ABP with the
  reference ABP (median over records): 0 when ``t`` is what the runtime claims.

The reference data are prepared with the bundle's own input chain (its manifest's
``preprocessing``: the resampler kind), so the prepared axis and the runtime share one
resampler delay, which :func:`edgebp.runtime.stream_score.stream_score_record` assumes.

With several bundles, each one after the first is compared with the first (the reference,
e.g. ``default``): SBP/DBP MAE change in per cent and whether the goals of docs/latency.md
hold (latency p50 <= 100 ms; MAE at most 10 % worse than the reference). The load average
(``os.getloadavg``) before and after each bundle is printed and kept in the JSON.

Usage: .venv/bin/python scripts/latency_report.py BUNDLE [BUNDLE...] --split val [--data DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgebp.evaluation import ScoredRecord, score_report
from edgebp.io import read_record
from edgebp.record_identity import split_select
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.stream_score import record_device_samples, stream_score_record
from edgebp.train.data import dataset_prepare

PACKET_S = 0.02
LATENCY_RECORDS = 3
GOAL_P50_MS = 100.0
GOAL_MAE_WORSE = 0.10


def chain_overrides(manifest: dict) -> dict | None:
    out = {c: {"resampler": d["resampler"]} for c, d in manifest["preprocessing"].items() if d.get("resampler", "kaiser") != "kaiser"}
    return out or None


def emission_latency(bundle, record, packet_s: float = PACKET_S) -> np.ndarray:
    """Per output row: (device time of the newest sample pushed when it came out) - (its t), s."""
    from edgebp.runtime.engine import Calibration, StreamRuntime

    vals, fs = record_device_samples(record, bundle.inputs)
    rt = StreamRuntime(bundle, fs, {c: i for i, c in enumerate(bundle.inputs)}, variant="int8", calibration=Calibration([], "offset"))
    step = max(1, int(round(packet_s * fs)))
    lat = []
    for i in range(0, len(vals), step):
        out = rt.push(vals[i:i + step])
        newest = (min(i + step, len(vals)) - 1) / fs
        lat.append(newest - np.asarray(out.t))
    return np.concatenate(lat)


def xcorr_lag(wave: np.ndarray, ref: np.ndarray, max_lag: int = 40) -> float:
    ok = np.isfinite(wave) & np.isfinite(ref)
    best, arg = -np.inf, np.nan
    for lag in range(-max_lag, max_lag + 1):
        a = wave[max(lag, 0):len(wave) + min(lag, 0)]
        b = ref[max(-lag, 0):len(ref) - max(lag, 0)]
        m = ok[max(lag, 0):len(ok) + min(lag, 0)] & ok[max(-lag, 0):len(ok) - max(lag, 0)]
        if m.sum() < 1000:
            continue
        c = np.corrcoef(a[m], b[m])[0, 1]
        if c > best:
            best, arg = c, lag
    return float(arg)  # > 0: the streamed wave is late by that many samples


def bundle_report(path: str, split: str, data: str | None) -> dict:
    b = bundle_load(path)
    m = b.manifest
    cfg = m["model"]["run_config"]
    src = Path(data or cfg["data"])
    t0 = time.time()
    prepared, _ = dataset_prepare(src, tuple(m["inputs"]), float(m["fs"]), float(cfg.get("max_minutes", 0.0)),
                                  chain_overrides=chain_overrides(m))
    chosen, _ = split_select(prepared, m["split"], split)
    scored, lats, lags = [], [], []
    for k, p in enumerate(chosen):
        rec = read_record(p.source)
        sc = stream_score_record(b, rec, p, variant="int8", packet_s=PACKET_S)
        scored.append(ScoredRecord(p.record_id, p.subject_id, sc.pairs, None))
        lags.append(xcorr_lag(sc.pred_wave, np.where(p.usable, np.asarray(p.abp, float), np.nan)))
        if k < LATENCY_RECORDS:  # the latency depends on the stepping, not on the record
            lats.append(emission_latency(b, rec))
    rep = score_report(scored, m["normalisation"])
    lat = np.concatenate(lats) * 1e3
    from edgebp.processing.chain import ChainConfig, Preprocessor

    res = Preprocessor(ChainConfig.from_dict({**m["preprocessing"][m["inputs"][0]], "fs_in": 250.0})).resampler.delay_out
    chunk = int(m["streaming"]["chunk"])
    return {
        "bundle": str(b.path), "split": split, "records": [p.record_id for p in chosen],
        "sbp_mae": rep["sbp"]["mae"], "dbp_mae": rep["dbp"]["mae"], "n_beats": rep.get("n_beats", rep["sbp"].get("n")),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p5": float(np.percentile(lat, 5)), "p95": float(np.percentile(lat, 95)),
                       "mean": float(lat.mean()), "rows": int(len(lat))},
        "computed_ms": {"lookahead": 1e3 * m["delay"] / m["fs"], "resampler_250hz": 1e3 * res / m["fs"],
                        "mean_step_wait": 1e3 * (chunk - 1) / 2 / m["fs"],
                        "total": 1e3 * (m["delay"] + res + (chunk - 1) / 2) / m["fs"]},
        "timing_lag_samples_median": float(np.nanmedian(lags)), "timing_lags": lags,
        "seconds": round(time.time() - t0, 1),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--split", required=True, choices=["val", "test"])
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    out = []
    for path in a.bundles:
        load0 = os.getloadavg()
        r = bundle_report(path, a.split, a.data)
        r["loadavg_before_after"] = [list(load0), list(os.getloadavg())]
        out.append(r)
        print(f"{r['bundle']} [{a.split}, {len(r['records'])} records]: SBP MAE {r['sbp_mae']:.2f}, DBP MAE {r['dbp_mae']:.2f} mmHg; "
              f"latency p50 {r['latency_ms']['p50']:.1f} ms (p5 {r['latency_ms']['p5']:.1f}, p95 {r['latency_ms']['p95']:.1f}; "
              f"computed {r['computed_ms']['total']:.1f}); timing lag {r['timing_lag_samples_median']:+.1f} samples; {r['seconds']} s",
              flush=True)
    ref = out[0]
    for r in out[1:]:
        ch = {k: (r[f"{k}_mae"] / ref[f"{k}_mae"] - 1.0) for k in ("sbp", "dbp")}
        r["vs_first"] = {"reference": ref["bundle"], "mae_change": ch, "p50_ms": r["latency_ms"]["p50"],
                         "goal_p50_met": bool(r["latency_ms"]["p50"] <= GOAL_P50_MS),
                         "goal_mae_met": bool(max(ch.values()) <= GOAL_MAE_WORSE)}
        v = r["vs_first"]
        print(f"{r['bundle']} vs {ref['bundle']} [{a.split}]: SBP MAE {100 * ch['sbp']:+.1f} %, DBP MAE {100 * ch['dbp']:+.1f} % "
              f"(goal <= +{100 * GOAL_MAE_WORSE:.0f} %: {'met' if v['goal_mae_met'] else 'NOT met'}); latency p50 {v['p50_ms']:.1f} ms "
              f"(goal <= {GOAL_P50_MS:.0f} ms: {'met' if v['goal_p50_met'] else 'NOT met'})", flush=True)
    print("load average (1/5/15 min) before/after each bundle: " + "; ".join(
        f"{Path(r['bundle']).name} {' '.join(f'{x:.2f}' for x in r['loadavg_before_after'][0])} / "
        f"{' '.join(f'{x:.2f}' for x in r['loadavg_before_after'][1])}" for r in out), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
