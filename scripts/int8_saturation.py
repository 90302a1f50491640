#!/usr/bin/env python
"""Does ONNX Runtime's optimised int8 graph compute what the QDQ graph says? (docs/latency.md)

ONNX Runtime's u8s8 Conv kernels on x86 CPUs without VNNI add pairs of products in int16 and
saturate. This streams validation records of a bundle through its fp32 streaming model (states
carried in fp32), feeds the very same inputs and states to the bundle's streaming int8 model
under ``ORT_ENABLE_ALL`` (what ``edgebp run`` uses) and ``ORT_DISABLE_ALL`` (the QDQ graph as
written: what the C firmware and a VNNI or ARM CPU compute), and prints one JSON object: the
optimised-vs-graph difference in mmHg and output codes, each against fp32, and the time per
step. ``--requantize`` also re-quantizes the fp32 streaming model with 8-bit weights, 7-bit
weights (``reduce_range``) and u8u8 on the same calibration feeds, and measures each alike.

Usage: .venv/bin/python scripts/int8_saturation.py [--bundle default] [--records 4] [--requantize]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from edgebp.export.quantize import FeedsReader, stream_calibration_feeds
from edgebp.paths import shared_data_dir
from edgebp.runtime.bundle import bundle_load
from edgebp.train.data import dataset_prepare


def _session(path: Path, level: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _measure(path: Path, feeds: list[dict], ref: np.ndarray, abp_std: float) -> dict:
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    scale = float(init["y_scale"]) if "y_scale" in init else None
    res: dict = {}
    ys = {}
    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        s = _session(path, level)
        t0 = time.perf_counter()
        ys[level] = np.concatenate([s.run(None, f)[0].reshape(-1) for f in feeds])
        res[f"{level}_us_per_step"] = round((time.perf_counter() - t0) / len(feeds) * 1e6, 1)
        d = np.abs(ys[level] - ref) * abp_std
        res[f"{level}_vs_fp32_p99_mmHg"] = round(float(np.percentile(d, 99)), 3)
        res[f"{level}_vs_fp32_mean_mmHg"] = round(float(d.mean()), 4)
    d = np.abs(ys["ORT_ENABLE_ALL"] - ys["ORT_DISABLE_ALL"])
    res["optimised_vs_graph_p99_mmHg"] = round(float(np.percentile(d, 99) * abp_std), 3)
    res["optimised_vs_graph_max_mmHg"] = round(float(d.max() * abp_std), 3)
    if scale:
        codes = np.rint(d / scale).astype(int)
        res["optimised_vs_graph_max_codes"] = int(codes.max())
        res["outputs_differing"] = int((codes != 0).sum())
    res["outputs"] = int(d.size)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--records", type=int, default=4, help="validation records streamed (default 4)")
    ap.add_argument("--chunks", type=int, default=2400, help="model steps per record at most (default 2400)")
    ap.add_argument("--requantize", action="store_true", help="also compare 8-bit, 7-bit and u8u8 weights")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    b = bundle_load(a.bundle)
    m = b.manifest
    prepared, _ = dataset_prepare(shared_data_dir() / "challenge2015", tuple(m["inputs"]), float(m["fs"]))
    shapes = [tuple(s["shape"]) for s in m["streaming"]["states"]]
    chunk = int(m["streaming"]["chunk"])
    fp32 = b.file("stream_fp32")
    val = [p for p in prepared if p.record_id in set(m["split"]["val"])]
    if not val:
        sys.exit(f"{a.bundle}: none of its validation records found in {shared_data_dir() / 'challenge2015'}")
    feeds, info = stream_calibration_feeds(fp32, val, chunk, shapes, max_records=a.records, max_chunks=a.chunks, every=1)
    s32 = _session(fp32, "ORT_ENABLE_ALL")
    ref = np.concatenate([s32.run(None, f)[0].reshape(-1) for f in feeds])
    std = float(m["normalisation"]["abp_std"])
    out: dict = {"bundle": str(a.bundle), "records": info["records"], "steps": len(feeds),
                 "cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")})
                 if Path("/proc/cpuinfo").exists() else [],
                 "shipped": _measure(b.file("stream_int8"), feeds, ref, std)}
    if a.requantize:
        train = [p for p in prepared if p.record_id in set(m["split"]["train"])]
        cal, _ = stream_calibration_feeds(fp32, train, chunk, shapes)
        forms = {"8-bit weights": {}, "7-bit weights (reduce_range)": {"reduce_range": True}, "u8u8": {"weight_type": QuantType.QUInt8}}
        with tempfile.TemporaryDirectory() as td:
            for name, kw in forms.items():
                p = Path(td) / "q.onnx"
                args = {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
                        "per_channel": True, "calibrate_method": CalibrationMethod.MinMax} | kw
                quantize_static(str(fp32), str(p), FeedsReader(cal), **args)
                out[name] = _measure(p, feeds, ref, std)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
