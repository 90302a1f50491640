"""Calibrated beats of `edgebp run` beside hold, against the simulator's truth beats.

Usage: python scripts/calibrated_vs_hold.py CAL.beats.csv HOLD.beats.csv TRUTH_beats.csv

Both runs are paired with the truth beats by nearest systolic time (0.3 s); only beats that
both runs report as calibrated and valid are compared, so the two columns are the same beats.
"""

from __future__ import annotations

import csv
import sys

import numpy as np

from edgebp.pairing import beat_times_pair


def _beats(path: str) -> dict:
    rows = [r for r in csv.DictReader(ln for ln in open(path) if not ln.startswith("#"))]
    ok = [r for r in rows if r["valid"] == "1" and r.get("calibrated") == "1"]
    return {k: np.array([float(r[k]) for r in ok]) for k in ("time", "sbp", "dbp")}


def main(cal: str, hold: str, truth: str) -> None:
    c, h = _beats(cal), _beats(hold)
    tr = [r for r in csv.DictReader(open(truth)) if r["valid"] == "1"]
    tt = np.array([float(r["t_sys_s"]) for r in tr])
    ts, td = np.array([float(r["sbp_mmHg"]) for r in tr]), np.array([float(r["dbp_mmHg"]) for r in tr])
    ic, jc = beat_times_pair(c["time"], tt, 0.3)
    ih, jh = beat_times_pair(h["time"], tt, 0.3)
    both = sorted(set(jc.tolist()) & set(jh.tolist()))
    mc, mh = dict(zip(jc.tolist(), ic.tolist())), dict(zip(jh.tolist(), ih.tolist()))
    print(f"{len(both)} truth beats with a calibrated beat from both runs")
    for key, ref in (("sbp", ts), ("dbp", td)):
        ec = np.array([c[key][mc[j]] - ref[j] for j in both])
        eh = np.array([h[key][mh[j]] - ref[j] for j in both])
        print(f"{key.upper()}: estimator MAE {np.abs(ec).mean():.2f} (ME {ec.mean():+.2f})   hold MAE {np.abs(eh).mean():.2f} (ME {eh.mean():+.2f})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
