#!/usr/bin/env python
"""Re-quantize the shipped default bundle's streaming int8 model from its own fp32 streaming model.

The shipped `model_stream_int8.onnx` had been calibrated on the first 40 s of 4 training
records; streamed through the runtime it was 22 mmHg (median) away from its fp32 streaming
model (validation record f362s; docs/results.md). This re-runs the export's calibration
(`edgebp.export.quantize.stream_int8_quantize`: up to 16 training records, zero initial
states, states carried by the fp32 stream) on the bundle's own training records, found by
sample sha256, writes the new file and updates the manifest's hashes and commands. No torch
and no retraining: the fp32 models and everything else stay byte for byte.

Usage: .venv/bin/python scripts/requantize_default_stream.py [DATA_DIR]
       (DATA_DIR default: ../shared/data/challenge2015 beside the repository)
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from edgebp.export.quantize import stream_int8_quantize
from edgebp.paths import ASSETS, shared_data_dir
from edgebp.runtime.bundle import bundle_load, bundle_write_manifest
from edgebp.train.data import dataset_prepare


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = Path(argv[1]) if len(argv) > 1 else shared_data_dir() / "challenge2015"
    dest = ASSETS / "default_bundle"
    b = bundle_load(dest)
    m = b.manifest
    prepared, _ = dataset_prepare(data, tuple(m["inputs"]), float(m["fs"]))
    ids = {e["record"]: e["sha256"] for e in m["split"].get("identity", [])}
    train = [p for p in prepared if p.record_id in set(m["split"]["train"]) and ids.get(p.record_id) in (None, p.sha256)]
    if not train:
        sys.exit(f"{data}: none of the bundle's training records found")
    shapes = [tuple(s["shape"]) for s in m["streaming"]["states"]]
    out = dest / m["files"]["stream_int8"]
    info = stream_int8_quantize(b.file("stream_fp32"), out, train, int(m["streaming"]["chunk"]), shapes)
    cmd = "scripts/requantize_default_stream.py  # stream int8 re-calibrated: " + info["mode"]
    m = dict(m)
    m["commands"] = [c for c in m["commands"] if not c.startswith("scripts/requantize_default_stream.py")] + [cmd]
    bundle_write_manifest(dest, m)
    bundle_load(dest)
    print(f"wrote {out} ({out.stat().st_size} bytes); {info['mode']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
