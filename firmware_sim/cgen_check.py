"""Measure the generated firmware against the runtime on a real record (the figures of
docs/firmware.md)::

    python -m edgebp.firmware_sim.cgen_check --record f362s --seconds 60

Builds the C with the host's gcc in a temporary directory, streams the record through the
runtime (ONNX Runtime as ``edgebp run`` runs it, ``ORT_ENABLE_ALL``, and the QDQ graph as
written, ``ORT_DISABLE_ALL``) and through the C model, preprocessor and API; prints one JSON
object of the deltas.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fno-math-errno"]


def record_device(record: str, seconds: float, inputs: list[str]) -> tuple[np.ndarray, float]:
    """``seconds`` of a challenge2015 record as a device sends it."""
    from edgebp.io import read_record
    from edgebp.paths import shared_data_dir
    from edgebp.record import Channel, Record
    from edgebp.runtime.stream_score import record_device_samples

    rec = read_record(shared_data_dir() / "challenge2015" / record)
    rec = Record(rec.record_id, [Channel(c.name, c.signal[: int(seconds * c.fs)], c.fs, c.units, c.label, c.lead)
                                 for c in rec.channels], rec.subject_id, rec.source)
    return record_device_samples(rec, inputs)


def runtime_stream(bundle: Any, vals: np.ndarray, fs: float, level: str, packet: int = 50) -> dict[str, np.ndarray]:
    """The runtime on ``vals`` with its ONNX Runtime session at ``level``: the ABP and every
    model call's input and output."""
    import onnxruntime as ort

    from edgebp.runtime.engine import StreamRuntime

    rt = StreamRuntime(bundle, fs, {c: i for i, c in enumerate(bundle.inputs)})
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = 1
    rt.backend.session = ort.InferenceSession(str(bundle.file("stream_int8")), so, providers=["CPUExecutionProvider"])
    feeds, ys = [], []
    rt._step = None  # every model call through backend.run, recorded below
    run = rt.backend.run

    def recording(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = run(feed)
        feeds.append(np.array(feed[rt.in_name], np.float32)[0])
        ys.append(np.asarray(res[0]).reshape(-1))
        return res

    rt.backend.run = recording
    abp = np.concatenate([rt.push(vals[i:i + packet]).abp for i in range(0, len(vals), packet)])
    return {"abp": abp, "x": np.stack(feeds), "y": np.concatenate(ys)}


def harness(exe: Path, mode: str, data: np.ndarray, work: Path, dtype: Any, *extra: str) -> np.ndarray:
    src, dst = work / f"{mode}.in", work / f"{mode}.out"
    np.ascontiguousarray(data, "<f4").tofile(src)
    subprocess.run([str(exe), mode, str(src), str(dst), *extra], check=True, capture_output=True)
    return np.fromfile(dst, dtype)


def measure(record: str = "f362s", seconds: float = 60.0) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    from edgebp.firmware_sim.cgen import firmware_generate
    from edgebp.runtime.bundle import bundle_load

    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found on PATH")
    bundle = bundle_load("default")
    vals, fs = record_device(record, seconds, bundle.inputs)
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(bundle.file("stream_int8"))).graph.initializer}
    scale, zp = np.float32(init["y_scale"]), int(init["y_zero_point"])
    step = float(scale) * bundle.manifest["normalisation"]["abp_std"]
    out: dict[str, Any] = {"record": record, "seconds": seconds, "device_fs": fs, "abp_step_mmHg": step}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        firmware_generate("default", work, device_fs=fs)
        subprocess.run([gcc, *CFLAGS, "-o", "edgebp_harness", "edgebp_harness.c", "edgebp.c", "edgebp_model.c", "-lm"],
                       cwd=work, check=True, capture_output=True)
        exe = work / "edgebp_harness"
        abp_c = harness(exe, "stream", vals, work, np.float32, "50").astype(np.float64)
        for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL"):
            r = runtime_stream(bundle, vals, fs, level)
            q_ort = np.rint(r["y"] / scale).astype(np.int64) + zp
            q_c = harness(exe, "model", r["x"], work, np.uint8).astype(np.int64)
            d = np.abs(q_c - q_ort)
            n = len(r["abp"])
            both = np.isfinite(r["abp"]) & np.isfinite(abp_c[:n])
            e = np.abs(abp_c[:n][both] - r["abp"][both])
            out[level] = {
                "model_outputs": int(d.size),
                "model_codes_differing": int((d != 0).sum()),
                "model_code_delta_max": int(d.max()),
                "model_abp_delta_p99_mmHg": float(np.percentile(d * step, 99)),
                "stream_outputs_compared": int(both.sum()),
                "stream_abp_delta_p99_mmHg": float(np.percentile(e, 99)),
                "stream_abp_delta_max_mmHg": float(e.max()),
                "stream_abp_delta_mean_mmHg": float(e.mean()),
            }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", default="f362s")
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(measure(a.record, a.seconds), indent=2))


if __name__ == "__main__":
    main()
