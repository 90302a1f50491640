"""The GPU check (``scripts/gpu_check.sh``): on a machine with an NVIDIA GPU and the tensorrt
extra, prove the TensorRT path end to end and exit non-zero when it is not good enough.

1. What is there: driver, CUDA (driver and runtime), TensorRT, torch and its CUDA.
2. Engines for the bundle's TensorRT forms (window and streaming, int8 and fp16), built strongly
   typed and cached (:mod:`edgebp.runtime.tensorrt_backend`); build time per engine.
3. A real record streamed through the runtime with ``--backend tensorrt`` (stream-int8 and
   stream-fp16, 20 ms packets) beside ONNX Runtime fp32 on the CPU (the reference): change in
   SBP/DBP MAE against the record's reference beats and point-wise |difference| percentiles,
   judged by the export's int8 gates (:data:`edgebp.export.pipeline.MAX_DELTA_MAE_MMHG`,
   :data:`~edgebp.export.pipeline.MAX_P99_DIFF_MMHG`).
4. Latency and throughput of the streaming step for 1 stream and for 64 streams (one batched
   call per step), TensorRT int8/fp16 and ORT fp32 (CPU) for scale.
5. One epoch of the synthetic default training on the GPU with AMP.

The comparison and gate logic (:func:`compare_runs`, :func:`gates_judge`) and the argument
handling run on any machine (tests/test_gpu.py runs them on ORT outputs on the CPU).

Examples
--------
>>> a = parse_args(["--streams", "1,64", "--skip-train"])
>>> a.streams, a.skip_train
([1, 64], True)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: The export's int8 gates (mmHg), repeated here so the argument parser needs no torch; a test
#: checks they equal edgebp.export.pipeline's.
MAX_DELTA_MAE_MMHG = 1.0
MAX_P99_DIFF_MMHG = 8.0
TRT_VARIANTS = ("int8", "fp16")


def _stream_counts(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--streams {text!r}: comma-separated positive integers, e.g. 1,64") from None
    if not vals or any(v < 1 or v > 4096 for v in vals):
        raise argparse.ArgumentTypeError(f"--streams {text!r}: each count must be within 1..4096")
    return vals


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The check's options; a bad value exits 2 with one ``error:`` line (argparse)."""
    p = argparse.ArgumentParser(prog="gpu_check", description="TensorRT and GPU training check (needs an NVIDIA GPU and edgebp[tensorrt]).")
    p.add_argument("--bundle", default="default", help="Bundle to check (default: the shipped one).")
    p.add_argument("--record", default=None, help="A record to stream (default: the first usable record of challenge2015 under the shared data).")
    p.add_argument("--minutes", type=_positive, default=5.0, help="Minutes of the record to stream (default 5).")
    p.add_argument("--streams", type=_stream_counts, default=[1, 64], help="Concurrent stream counts timed (default 1,64).")
    p.add_argument("--steps", type=int, default=500, help="Timed steps per latency figure (default 500).")
    p.add_argument("--max-delta-mae", type=_positive, default=MAX_DELTA_MAE_MMHG, help="Gate: largest MAE change (mmHg) vs ORT fp32.")
    p.add_argument("--max-p99-diff", type=_positive, default=MAX_P99_DIFF_MMHG, help="Gate: largest p99 |difference| (mmHg) vs ORT fp32.")
    p.add_argument("--skip-train", action="store_true", help="Do not run the one-epoch GPU training.")
    p.add_argument("--report", default=None, help="Write the results as JSON here.")
    a = p.parse_args(argv)
    if a.steps < 10:
        p.error("--steps must be at least 10")
    return a


# ----------------------------------------------------------------------------- what is there


def environment() -> dict:
    """Driver, CUDA, TensorRT and torch as found (a missing piece is stated, not raised)."""
    env: dict = {"python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
        env["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    else:
        env["nvidia_smi"] = "not found"
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError as exc:
        env["tensorrt"] = f"not installed ({exc})"
    try:
        from edgebp.runtime.tensorrt_backend import gpu_identity

        env["gpu"] = gpu_identity()
    except Exception as exc:  # noqa: BLE001 - reported, the check then stops on availability
        env["gpu"] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["torch_cuda_available"] = bool(torch.cuda.is_available())
    except ImportError:
        env["torch"] = "not installed"
    return env


# ----------------------------------------------------------------------------- comparison


def compare_runs(ref, got, norm: dict) -> dict:
    """``got`` (scored records of a variant) against ``ref`` (the same records, ORT fp32):
    per-component MAE of each and their change, and the point-wise |difference| percentiles
    (the export's own summaries: edgebp.export.pipeline)."""
    from edgebp.evaluation import score_report
    from edgebp.export.pipeline import _delta, _summary, _wave_diffs

    a, b = _summary(score_report(ref, norm)), _summary(score_report(got, norm))
    return {"mae": {k: b[k]["mae"] for k in ("sbp", "dbp")}, "ref_mae": {k: a[k]["mae"] for k in ("sbp", "dbp")},
            "delta": _delta(b, a), "pointwise": _wave_diffs(ref, got), "n_pairs": b["n_pairs"]}


def gates_judge(name: str, cmp: dict, max_delta_mae: float = MAX_DELTA_MAE_MMHG, max_p99: float = MAX_P99_DIFF_MMHG) -> list[dict]:
    """The export's two int8 gates on one comparison: |MAE change| (the larger of SBP and DBP;
    a worsening, as export judges it) and the p99 of the point-wise |difference|. A figure that
    could not be measured fails."""
    from edgebp.export.pipeline import _gate, _mae_gate

    return [_mae_gate(f"{name}_delta_mae", f"{name} MAE - ORT fp32 MAE", cmp["delta"], max_delta_mae),
            _gate(f"{name}_p99_abs_diff", f"p99 of |{name} - ORT fp32|", cmp["pointwise"]["p99_abs_mmHg"], max_p99)]


# ----------------------------------------------------------------------------- the record


def default_record() -> Path:
    """The first record listed in challenge2015/RECORDS under the shared data."""
    from edgebp.paths import shared_data_dir

    d = shared_data_dir() / "challenge2015"
    names = (d / "RECORDS").read_text().split() if (d / "RECORDS").exists() else []
    if not names:
        raise FileNotFoundError(f"{d}: no RECORDS; give --record PATH")
    return d / names[0]


def record_load(path: str | Path, bundle, minutes: float):
    """The record (cropped to ``minutes``) and its prepared form at the bundle's rate/chain."""
    from edgebp.io import read_records
    from edgebp.train.data import _record_crop, record_prepare

    m = bundle.manifest
    overrides = {c: {"resampler": m["preprocessing"][c]["resampler"]} for c in bundle.inputs if "resampler" in m["preprocessing"][c]}
    for rec in read_records(Path(path)):
        rec = _record_crop(rec, minutes * 60.0)
        p, why = record_prepare(rec, tuple(bundle.inputs), float(m["fs"]), chain_overrides=overrides or None)
        if p is not None:
            return rec, p
        log.info("%s: not usable (%s)", rec.record_id, why)
    raise ValueError(f"{path}: no record with {', '.join(bundle.inputs)} and a usable reference")


def stream_scored(bundle, rec, prepared, variant: str, backend: str):
    """One record through the runtime (StreamRuntime, 20 ms packets) as a ScoredRecord list."""
    from edgebp.runtime.stream_score import stream_score_records

    scored, _ = stream_score_records(bundle, [(rec, prepared)], variant=variant, backend=backend)
    return scored


# ----------------------------------------------------------------------------- timing


def step_timing(backend, feeds: dict, steps: int) -> dict:
    """p50/p99 wall time of ``backend.run(feeds)`` over ``steps`` calls (after 10 warm-up)."""
    for _ in range(10):
        backend.run(feeds)
    t = np.empty(steps)
    for i in range(steps):
        t0 = time.perf_counter()
        backend.run(feeds)
        t[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3), "calls": int(steps)}


def stream_feeds(bundle, batch: int) -> dict:
    m = bundle.manifest
    st = m["streaming"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((batch, len(m["inputs"]), int(st["chunk"]))).astype(np.float32)}
    for s in st["states"]:
        feeds[s["name"]] = np.zeros((batch, *s["shape"][1:]), np.float32)
    return feeds


def latency_throughput(bundle, counts: list[int], steps: int) -> list[dict]:
    """Per-step latency and samples/s for each stream count: TensorRT int8/fp16 (one batched
    call per step for N streams) and ORT fp32 on the CPU (batch-1 calls, N in turn)."""
    from edgebp.runtime.backends import OrtBackend
    from edgebp.runtime.tensorrt_backend import bundle_backend
    from edgebp.variants import tensorrt_file_key

    m = bundle.manifest
    chunk, fs = int(m["streaming"]["chunk"]), float(m["fs"])
    rows = []
    for prec in TRT_VARIANTS:
        be = bundle_backend(bundle, tensorrt_file_key(prec, streaming=True), max_batch=max(counts))
        sig = be.plan.signal
        for n in counts:
            if n > 1 and not be.plan.batch_dynamic:
                rows.append({"backend": "tensorrt", "precision": prec, "streams": n, "skipped": "the streaming graph keeps batch 1 (not batch-safe)"})
                continue
            f = stream_feeds(bundle, n)
            f = {sig: f.pop("x")} | f
            r = step_timing(be, f, steps)
            rows.append({"backend": "tensorrt", "precision": prec, "streams": n, **r,
                         "samples_per_s": n * chunk / (r["p50_ms"] / 1e3), "real_time_x_per_stream": chunk / fs / (r["p50_ms"] / 1e3)})
        be.close()
    ort = OrtBackend(bundle.file(m["streaming"]["file_keys"]["fp32"]))
    f1 = stream_feeds(bundle, 1)
    f1 = {ort.input_names[0]: f1.pop("x")} | f1
    r = step_timing(ort, f1, steps)
    for n in counts:
        per_step = r["p50_ms"] * n
        rows.append({"backend": "ort-cpu", "precision": "fp32", "streams": n, "p50_ms": per_step, "p99_ms": r["p99_ms"] * n, "calls": r["calls"],
                     "samples_per_s": n * chunk / (per_step / 1e3), "note": "batch-1 calls, N in turn, one thread"})
    return rows


# ----------------------------------------------------------------------------- training


def train_one_epoch(out: Path) -> dict:
    """``edgebp train`` of the synthetic default, one epoch, on CUDA with AMP; wall time."""
    cmd = [sys.executable, "-m", "edgebp", "train", "--data", "synth", "--epochs", "1", "--device", "cuda", "--set", "amp=true",
           "--out", str(out), "--force"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    res = {"command": " ".join(cmd[2:]), "exit_code": r.returncode, "seconds": round(time.monotonic() - t0, 1)}
    if r.returncode != 0:
        res["error"] = (r.stderr.strip().splitlines() or ["no output"])[-1][:400]
    return res


# ----------------------------------------------------------------------------- main


def run_check(a: argparse.Namespace, echo=print) -> tuple[dict, list[dict]]:
    """Every step above; returns (results, gates). Raises RuntimeError when TensorRT is not
    usable (the shell script turns that into one line and exit 2)."""
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.tensorrt_backend import bundle_backend, tensorrt_available
    from edgebp.variants import tensorrt_file_key

    res: dict = {"environment": environment()}
    for k, v in res["environment"].items():
        echo(f"{k}: {v}")
    ok, why = tensorrt_available()
    if not ok:
        raise RuntimeError(f"TensorRT is not usable here: {why}")
    b = bundle_load(a.bundle)
    if not b.manifest.get("streaming"):
        raise RuntimeError(f"{b.path}: the GPU check streams a record; this bundle has no streaming model")
    # 2. engines (built or taken from the cache), timed
    res["engines"] = {}
    for streaming in (False, True):
        for prec in TRT_VARIANTS:
            key = tensorrt_file_key(prec, streaming)
            t0 = time.monotonic()
            be = bundle_backend(b, key)
            res["engines"][key] = {"seconds": round(time.monotonic() - t0, 2), "cache_file": be.key["file"]}
            be.close()
            echo(f"engine {key}: {res['engines'][key]['seconds']} s ({be.key['file']})")
    # 3. a real record through the runtime
    rec_path = Path(a.record) if a.record else default_record()
    rec, prepared = record_load(rec_path, b, a.minutes)
    norm = b.manifest["normalisation"]
    ref = stream_scored(b, rec, prepared, "fp32", "ort")
    gates: list[dict] = []
    res["record"] = {"record": rec.record_id, "minutes": a.minutes, "compare": {}}
    for prec in TRT_VARIANTS:
        got = stream_scored(b, rec, prepared, prec, "tensorrt")
        cmp = compare_runs(ref, got, norm)
        res["record"]["compare"][f"stream-{prec}"] = cmp
        gates += gates_judge(f"tensorrt_stream_{prec}", cmp, a.max_delta_mae, a.max_p99_diff)
        pw = cmp["pointwise"]
        echo(f"stream-{prec} (TensorRT) vs stream-fp32 (ORT) on {rec.record_id}: MAE change SBP {cmp['delta']['sbp']['mae']:+.3f} / "
             f"DBP {cmp['delta']['dbp']['mae']:+.3f} mmHg; |diff| p50 {pw['p50_abs_mmHg']:.3f} p99 {pw['p99_abs_mmHg']:.3f} max {pw['max_abs_mmHg']:.3f} mmHg")
    # 4. latency and throughput
    res["latency"] = latency_throughput(b, a.streams, a.steps)
    for r in res["latency"]:
        if "skipped" in r:
            echo(f"{r['backend']} {r['precision']} {r['streams']} streams: skipped ({r['skipped']})")
        else:
            echo(f"{r['backend']} {r['precision']} {r['streams']} streams: step p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms, {r['samples_per_s']:.0f} samples/s")
    # 5. training
    if not a.skip_train:
        with tempfile.TemporaryDirectory() as td:
            res["train"] = train_one_epoch(Path(td) / "run")
        echo(f"train 1 epoch (cuda, AMP): exit {res['train']['exit_code']} in {res['train']['seconds']} s")
        gates.append({"name": "gpu_train_epoch", "figure": "one synthetic epoch on CUDA with AMP", "value": float(res["train"]["exit_code"]),
                      "limit": 0.0, "unit": "exit code", "passed": res["train"]["exit_code"] == 0, "detail": res["train"].get("error", "")})
    return res, gates


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every gate passed, 1 when one failed, 2 when the check cannot run here."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    a = parse_args(argv)
    try:
        res, gates = run_check(a)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"gpu_check: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    res["gates"] = gates
    failed = [g for g in gates if not g["passed"]]
    for g in gates:
        v = "not measured" if g["value"] is None else f"{g['value']:.3f}"
        print(f"gate {g['name']}: {v} (limit {g['limit']:g}) {'pass' if g['passed'] else 'FAIL'}" + (f" [{g['detail']}]" if g.get("detail") else ""))
    if a.report:
        Path(a.report).write_text(json.dumps(res, indent=2, default=str))
    print("gpu_check: " + ("every gate passed" if not failed else f"{len(failed)} gate(s) failed: {', '.join(g['name'] for g in failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
