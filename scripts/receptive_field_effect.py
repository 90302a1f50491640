#!/usr/bin/env python
"""How far back does the streaming model still look? (docs/reliability.md, the recovery floor)

The runtime claims an output only when its whole receptive field (2.02 s for the default
bundle) is clean input, so valid output resumes 1.82 s (receptive field minus look-ahead)
after any gated stretch. Could a shorter wait be claimed? This streams validation records
through the bundle's fp32 streaming model twice, once as they are and once with a stretch of
input set to 0 (what the runtime feeds for gated samples: the normalised mean), and prints the
largest |difference| of the outputs in the 0.5 s that start ``lag`` seconds after the stretch
ended (in input time), over records, stretch positions and lengths.

    .venv/bin/python scripts/receptive_field_effect.py --records 6
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from edgebp.paths import shared_data_dir
from edgebp.runtime.backends import OrtBackend
from edgebp.runtime.bundle import bundle_load
from edgebp.train.data import dataset_prepare

LAGS_S = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--records", type=int, default=6, help="validation records (default 6)")
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    b = bundle_load(a.bundle)
    m = b.manifest
    prepared, _ = dataset_prepare(shared_data_dir() / "challenge2015", tuple(m["inputs"]), float(m["fs"]))
    val = [p for p in prepared if p.record_id in set(m["split"]["val"])][: a.records]
    be = OrtBackend(b.file("stream_fp32"), threads=1)
    names = be.input_names
    shapes = [tuple(s["shape"]) for s in m["streaming"]["states"]]
    chunk, fs, delay = int(m["streaming"]["chunk"]), float(m["fs"]), int(m["delay"])
    std = float(m["normalisation"]["abp_std"])

    def run(x: np.ndarray) -> np.ndarray:
        st = [np.zeros(s, np.float32) for s in shapes]
        ys = []
        for k in range(x.shape[1] // chunk):
            r = be.run({names[0]: np.ascontiguousarray(x[None, :, k * chunk:(k + 1) * chunk])} | dict(zip(names[1:], st)))
            ys.append(r[0].reshape(-1))
            st = r[1:]
        return np.concatenate(ys) * std

    worst: dict[float, list[float]] = {lag: [] for lag in LAGS_S}
    for p in val:
        x = np.nan_to_num(np.asarray(p.X[:, : int(fs * a.seconds)], np.float32))
        y0 = run(x)
        for t0 in (30.0, 60.0, 90.0):
            for dur in (1.0, 4.0):
                xb = x.copy()
                s0, e = int(t0 * fs), int((t0 + dur) * fs)
                xb[:, s0:e] = 0.0
                y1 = run(xb)
                for lag in LAGS_S:
                    i = e - delay + int(lag * fs)  # output i has seen input up to i + delay
                    d = np.abs(y1[i:i + int(0.5 * fs)] - y0[i:i + int(0.5 * fs)])
                    worst[lag].append(float(d.max()))
    out = {"bundle": a.bundle, "records": [p.record_id for p in val], "receptive_field_s": int(m["receptive_field"]) / fs,
           "look_ahead_s": delay / fs,
           "max_abs_diff_mmHg_by_lag_s": {f"{lag:g}": {"median": round(float(np.median(v)), 2), "p90": round(float(np.percentile(v, 90)), 2),
                                                       "max": round(max(v), 2)} for lag, v in worst.items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
