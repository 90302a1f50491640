"""Re-quantize an exported bundle's int8 models from its own fp32 models, and validate the
result through the export's gates (no retraining, no torch)::

    python -m edgebp.export.requantize default --out runs/default-rq

Why: the int8 form of a bundle can be improved without touching its trained model. The shipped
default bundle's int8 models were made before the CPU form used 7-bit weights
(:data:`edgebp.export.quantize.REDUCE_RANGE`), so on an AVX2 machine what ``edgebp run``
computed was not what its QDQ graph says. This writes ``--out``: a copy of the bundle whose fp32
models (and every other file) stay byte for byte, with the window int8 model calibrated as
``edgebp export`` calibrates it (the same windows of the same training records, chosen by the
run's seed) and the streaming int8 model calibrated on streamed training records
(:func:`edgebp.export.quantize.stream_int8_quantize`). The new models go through the very
validation ``edgebp export`` runs (:func:`edgebp.export.pipeline.bundle_validate_write`): the
held-out records offline and through the runtime in 20 ms packets, the same gates, a new
report.md/report.json; the manifest is written only when every gate passes.

A fitted calibrated estimator (``estimator.json``) was fitted on the old int8 model's outputs:
it is dropped from the copy (the log says so); refit it with ``edgebp train --model beat-delta
--bundle OUT``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import shutil
import sys
from pathlib import Path

from edgebp.evaluation import ModelGeometry
from edgebp.export import quantize
from edgebp.export.pipeline import (
    MAX_DELTA_MAE_MMHG,
    MAX_P99_DIFF_MMHG,
    STREAM_PACKET_S,
    ExportError,
    _windows,
    bundle_validate_write,
)
from edgebp.runtime.bundle import bundle_load

log = logging.getLogger(__name__)

#: Files a re-quantized copy does not carry over: they describe or derive from the old int8
#: models (the report and manifest are rewritten; the estimator was fitted on int8 outputs).
_REPLACED = ("int8", "pruned_int8", "stream_int8", "stream_pruned_int8", "report_json", "report_md", "estimator")


def bundle_requantize(bundle: str | Path, out_dir: str | Path, data: str | None = None, force: bool = False,
                      reduce_range: bool = quantize.REDUCE_RANGE, max_delta_mae: float = MAX_DELTA_MAE_MMHG,
                      max_p99_diff: float = MAX_P99_DIFF_MMHG, stream_packet_s: float = STREAM_PACKET_S,
                      command: str = "") -> dict:
    """Write ``out_dir``: ``bundle`` with its int8 models re-quantized from its fp32 models and
    validated through the export's gates; returns the validation report.

    ``data``: where the bundle's records are (default: the ``--data`` its training recorded).
    Raises :class:`edgebp.export.pipeline.ExportGateError` when a gate fails, ExportError when
    the data do not hold the bundle's training or held-out records."""
    from edgebp.record_identity import split_select
    from edgebp.train.data import data_source_path, dataset_prepare

    b = bundle_load(bundle)
    m = json.loads(json.dumps(b.manifest))
    rc = m["model"]["run_config"]
    if "int8" not in m["files"]:
        raise ExportError(f"{b.path}: the bundle has no int8 model to re-quantize (files: {', '.join(sorted(m['files']))})")
    out = Path(out_dir)
    if out.exists():
        if not force and any(out.iterdir()):
            raise ExportError(f"{out}: exists and is not empty (use --force to overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    src = data_source_path(data or rc["data"], rc.get("synth_subjects", 64), rc.get("synth_minutes", 1.5), seed=int(rc.get("seed", 0)))
    inputs = tuple(m["inputs"])
    prepared, _ = dataset_prepare(src, inputs, float(m["fs"]), float(rc.get("max_minutes", 0.0)))
    train_p = [p for p in prepared if p.record_id in set(m["split"]["train"])]
    ids = {e["record"]: e["sha256"] for e in m["split"].get("identity", [])}
    train_p = [p for p in train_p if ids.get(p.record_id) in (None, p.sha256)]
    if not train_p:
        raise ExportError(f"{src}: none of the bundle's training records found (by name and sample sha256)")
    test_p, _ = split_select(prepared, m["split"], "test")
    val_p, _ = split_select(prepared, m["split"], "val")
    held_split = "test" if test_p else "val"
    held_out = test_p or val_p
    if not held_out:
        raise ExportError(f"{src}: none of the bundle's held-out (test or validation) records found")
    log.info("re-quantizing %s: %d training records for calibration, %d %s records for validation", b.path, len(train_p), len(held_out), held_split)

    keep = {k: v for k, v in m["files"].items() if k not in _REPLACED}
    for rel in sorted(set(keep.values())):
        shutil.copy2(b.path / rel, out / rel)
    if "estimator" in m["files"]:
        log.warning("%s: its calibrated estimator was fitted on the old int8 model's outputs and is not carried over; "
                    "refit it: edgebp train --model beat-delta --bundle %s --out DIR", b.path, out)
    files = dict(keep)
    # the bundle as named (``default`` or a relative path): no machine path in a shipped report
    report: dict = {"run_dir": f"{bundle} (re-quantized)", "model": m["model"]["name"], "preset": m["model"]["preset"], "steps": []}
    if "report_json" in m["files"]:
        # what the export measured of its pruning (ratio, counts, fine-tune) stays true
        old = json.loads((b.path / m["files"]["report_json"]).read_text())
        if old.get("pruning"):
            report["pruning"] = {k: v for k, v in old["pruning"].items() if k != "deployed"}

    # the window int8 model: the windows edgebp export draws (same records, length and seed)
    W = int(m["window"])
    calib = _windows(train_p, W, int(m["calibration"]["windows"]), int(rc.get("seed", 0)))
    want = m["calibration"].get("sha256")
    same = want == quantize.calibration_hash(calib)
    log.info("window int8 calibration: %d windows of %d samples; %s the export's", len(calib), W, "the same as" if same else "NOT the same as")
    keep_float = tuple(m["calibration"].get("keep_float", {}).get("layers", ()))
    q = quantize.quantize_int8_cpu(out / files["fp32"], out / "model_int8.onnx", calib, keep_float=keep_float, reduce_range=reduce_range)
    q["kernels"] = quantize.int8_kernels_check(out / "model_int8.onnx", out / "_opt.onnx")
    q["calibration_as_exported"] = bool(same)
    files["int8"] = "model_int8.onnx"
    report["int8"] = q
    if "pruned" in files:
        quantize.quantize_int8_cpu(out / files["pruned"], out / "model_pruned_int8.onnx", calib, keep_float=keep_float, reduce_range=reduce_range)
        files["pruned_int8"] = "model_pruned_int8.onnx"
    calibration = dict(m["calibration"], sha256=quantize.calibration_hash(calib), windows=int(len(calib)))

    streaming = m.get("streaming")
    if streaming and "int8" in streaming.get("file_keys", {}):
        shapes = [tuple(s["shape"]) for s in streaming["states"]]
        sq = quantize.stream_int8_quantize(out / files["stream_fp32"], out / "model_stream_int8.onnx", train_p, int(streaming["chunk"]), shapes,
                                           reduce_range=reduce_range)
        files["stream_int8"] = "model_stream_int8.onnx"
        report["streaming"] = {"int8": sq}
        calibration["stream"] = {"steps": sq["calibration_steps"], "records": sq["records"], "description": sq["mode"], "sha256": sq["calibration_sha256"]}
    if streaming and "stream_pruned_fp32" in files and "pruned-int8" in streaming.get("file_keys", {}):
        pshapes = [tuple(s["shape"]) for s in streaming["pruned_states"]]
        pq = quantize.stream_int8_quantize(out / files["stream_pruned_fp32"], out / "model_stream_pruned_int8.onnx", train_p,
                                           int(streaming["chunk"]), pshapes, reduce_range=reduce_range)
        files["stream_pruned_int8"] = "model_stream_pruned_int8.onnx"
        report.setdefault("streaming", {})["pruned_int8"] = pq

    files["report_json"] = "report.json"
    files["report_md"] = "report.md"
    cmd = command or f"python -m edgebp.export.requantize {bundle} --out {out}"
    m.update(files=files, calibration=calibration, validation=None, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             commands=[c for c in m.get("commands", []) if "beat-delta" not in c and "requantize" not in c] + [cmd])
    m.pop("sha256", None)
    norm = m["normalisation"]
    vgeo = ModelGeometry(output=m["output"], window=W, fs=float(m["fs"]), delay=int(m["delay"]), causal=bool(m["causal"]),
                         receptive_field=int(m["receptive_field"]), norm=norm)
    return bundle_validate_write(out, m, report, held_out, held_split, src, norm, vgeo, max_delta_mae=max_delta_mae,
                                 max_p99_diff=max_p99_diff, stream_packet_s=stream_packet_s, max_minutes=float(rc.get("max_minutes", 0.0)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.export.requantize", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="a bundle directory, or 'default'")
    ap.add_argument("--out", required=True, help="the directory to write (must be empty or absent, or --force)")
    ap.add_argument("--data", default=None, help="where the bundle's records are (default: the --data its training recorded)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--full-range", action="store_true", help="8-bit weights instead of 7 (saturates on x86 without VNNI)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rep = bundle_requantize(a.bundle, a.out, a.data, force=a.force, reduce_range=not a.full_range)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    print(f"bundle written to {a.out}; gates: " + ", ".join(f"{g['name']} {'ok' if g['passed'] else 'FAILED'}" for g in rep["gates"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
