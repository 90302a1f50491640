"""Batch-1, one-thread ONNX Runtime latency of a bundle's fp32 and int8 models.

fp32 and int8 repeats alternate (each repeat a fresh session, warm-up, then about a second
of timed calls), so load from other processes on a shared machine falls on both alike.
Prints one JSON object: per variant the median over repeats of the per-repeat median
(p50), its range, the calls timed, and the int8/fp32 ratio.

Usage: .venv/bin/python scripts/int8_latency.py BUNDLE [--repeats 15] [--length N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgebp.bench.latency import latency_measure, onnx_feeds, ort_session
from edgebp.runtime.bundle import bundle_load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", help="bundle directory, or 'default'")
    ap.add_argument("--repeats", type=int, default=15, help="alternating repeats per variant")
    ap.add_argument("--length", type=int, default=0, help="input length in samples (default: the manifest's window)")
    ap.add_argument("--target-s", type=float, default=1.0, help="timed seconds per repeat")
    args = ap.parse_args()
    b = bundle_load(args.bundle)
    length = args.length or int(b.manifest["window"])
    files = {v: b.file(v) for v in ("fp32", "int8")}
    p50: dict[str, list[float]] = {v: [] for v in files}
    calls = {v: 0 for v in files}
    for r in range(args.repeats):
        for v, path in files.items():
            sess = ort_session(path, threads=1)
            feeds = onnx_feeds(sess.get_inputs(), batch=1, length=length, seed=r)
            res = latency_measure(lambda: sess.run(None, feeds), warmup=20, repeats=1, target_s=args.target_s, min_runs=50, max_runs=5000)
            p50[v].append(res["p50_ms"]["median"])
            calls[v] += res["n_total"]
    out = {
        "bundle": str(Path(b.path)),
        "input_length": length,
        "batch": 1,
        "threads": 1,
        "repeats": args.repeats,
        "file_bytes": {v: Path(p).stat().st_size for v, p in files.items()},
    }
    for v in files:
        a = np.asarray(p50[v])
        out[v] = {"p50_ms_median": float(np.median(a)), "p50_ms_min": float(a.min()), "p50_ms_max": float(a.max()), "calls": calls[v]}
    out["int8_over_fp32_latency"] = out["int8"]["p50_ms_median"] / out["fp32"]["p50_ms_median"]
    # the ratio within each alternating pair, so drifts in machine load cancel
    ratios = np.asarray(p50["int8"]) / np.asarray(p50["fp32"])
    out["int8_over_fp32_latency_paired"] = {"median": float(np.median(ratios)), "min": float(ratios.min()), "max": float(ratios.max())}
    out["int8_over_fp32_size"] = out["file_bytes"]["int8"] / out["file_bytes"]["fp32"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
