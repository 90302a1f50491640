"""int8 through ONNX Runtime's own quantizer (never a home-made one).

- CPU form: static QDQ, uint8 activations, int8 per-channel weights in 7 bits
  (``reduce_range``, see :data:`REDUCE_RANGE`), MinMax calibration on training windows; Softmax
  left in float (quantized Softmax costs 20-30 % of int8 time here).
  LSTM models get dynamic int8 instead (weights int8, activations quantized on the fly).
- TensorRT form: symmetric int8 activations and weights (zero point 0), float bias, QDQ only
  (no QLinear*/Integer/DynamicQuantize ops), which TensorRT's explicit quantization expects.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

log = logging.getLogger(__name__)

INT8_OP_PREFIXES = ("QLinear", "ConvInteger", "MatMulInteger", "DynamicQuantize", "QGemm", "QAttention")
TRT_FORBIDDEN_PREFIXES = ("QLinear", "ConvInteger", "MatMulInteger", "DynamicQuantize", "QGemm", "QAttention")


class WindowReader(CalibrationDataReader):
    """Feeds calibration windows (N, C, T) one batch at a time."""

    def __init__(self, input_name: str, windows: np.ndarray, batch: int = 16):
        self.input_name, self.windows, self.batch = input_name, windows.astype(np.float32), batch
        self.k = 0

    def get_next(self):
        if self.k >= len(self.windows):
            return None
        b = self.windows[self.k : self.k + self.batch]
        self.k += self.batch
        return {self.input_name: b}

    def rewind(self) -> None:
        self.k = 0


def calibration_hash(windows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(windows, dtype=np.float32).tobytes()).hexdigest()


def _op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference, graph optimisation) before quantizing."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return dst
    except Exception as exc:  # noqa: BLE001 - quantizing the raw graph still works
        log.info("quant_pre_process skipped for %s (%s)", src.name, exc)
        return src


#: Weights in 7 bits (|w| <= 64, ORT's symmetric reduced range) for the CPU form. Without it, ONNX Runtime's u8s8 Conv kernels on
#: x86 CPUs without VNNI (AVX2 only, like this project's machines) add pairs of u8 x s8 products
#: in int16 (``vpmaddubsw``) and saturate: on the default bundle's streaming int8 model
#: ``ORT_ENABLE_ALL`` (what ``edgebp run`` uses) differed from the QDQ graph itself
#: (``ORT_DISABLE_ALL``, what the C firmware and a VNNI or ARM CPU compute) by up to 11 output
#: codes (7.3 mmHg, p99 2.0 mmHg). With 7-bit weights a pair sum fits in int16 (2 x 255 x 64).
#: Measured side by side on 4 validation records streamed (9,600 steps;
#: ``python scripts/int8_saturation.py``, docs/latency.md): optimised vs QDQ graph p99 0.0 mmHg, max 0.67 (one code, rounding); vs
#: fp32 p99 3.65 mmHg with 7-bit weights against 3.68 with 8-bit; 240 vs 232 us per step. u8u8
#: (the other remedy) was exact too but 30 % slower.
REDUCE_RANGE = True


#: Layers :func:`quantize_int8_cpu` can be told to leave in float (``keep_float``; the export's
#: ``--int8-keep-float``): the graph's first / last Conv in node order. ``first-conv`` leaves
#: the model input unquantized (the first conv reads the normalised ECG/PPG directly). Measured
#: on the low-latency edge-tcn run (runs/lowlatency, its 13 *validation* records, 128 MinMax
#: windows): all layers int8 |int8 - fp32| p99 12.7 mmHg (SBP MAE +0.23); first conv float
#: p99 3.1 (SBP -0.13, DBP -0.05); last conv float 12.8; 512 windows 12.0; percentile
#: (99.999) 13.5; moving-average MinMax 11.5 (docs/latency.md).
KEEP_FLOAT_CHOICES = ("first-conv", "last-conv")


def keep_float_nodes(model_path: Path, keep: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Names of the nodes ``keep`` (a subset of :data:`KEEP_FLOAT_CHOICES`) selects in the graph
    at ``model_path``; ValueError for an unknown choice or a graph without a Conv."""
    bad = [k for k in keep if k not in KEEP_FLOAT_CHOICES]
    if bad:
        raise ValueError(f"keep-float: {', '.join(map(repr, bad))} is not valid; choose from: {', '.join(KEEP_FLOAT_CHOICES)}")
    if not keep:
        return []
    convs = [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type == "Conv"]
    if not convs:
        raise ValueError(f"keep-float {', '.join(keep)}: {Path(model_path).name} has no Conv node")
    out = []
    for k in keep:
        name = convs[0] if k == "first-conv" else convs[-1]
        if name not in out:
            out.append(name)
    return out


def quantize_int8_cpu(fp32_path: Path, out_path: Path, windows: np.ndarray, softmax_float: bool = True,
                      keep_float: tuple[str, ...] = (), reduce_range: bool = REDUCE_RANGE) -> dict:
    """Static QDQ int8 for ORT on CPU (or dynamic int8 when the graph holds an LSTM).

    ``keep_float``: layers left in float (:data:`KEEP_FLOAT_CHOICES`; static form only)."""
    ops = _op_types(fp32_path)
    tmp = out_path.with_suffix(".pre.onnx")
    if "LSTM" in ops or "GRU" in ops:
        # dynamic quantization needs no calibration; the exporter bakes traced shapes into the
        # LSTM's value_info, which ONNX shape inference then contradicts: drop them first
        m = onnx.load(str(fp32_path))
        m.graph.ClearField("value_info")
        src = tmp
        onnx.save(m, str(src))
        # MatMulInteger's u8s8 kernels saturate alike without VNNI: 7-bit weights here too
        quantize_dynamic(str(src), str(out_path), weight_type=QuantType.QInt8, per_channel=False, reduce_range=reduce_range)
        mode = "dynamic (LSTM: int8 weights, activations quantized at run time)"
        kept: list[str] = []
        if keep_float:
            raise ValueError("keep-float applies to the static (non-LSTM) int8 form only")
    else:
        src = _preprocess(fp32_path, tmp)
        name = onnx.load(str(src)).graph.input[0].name
        exclude = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Softmax"] if softmax_float else []
        kept = keep_float_nodes(src, keep_float)
        exclude += [n for n in kept if n not in exclude]
        quantize_static(
            str(src), str(out_path), WindowReader(name, windows),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
        )
        n_soft = len(exclude) - len(kept)
        bits = "7-bit" if reduce_range else "8-bit"
        mode = f"static QDQ (u8 activations, s8 per-channel {bits} weights, MinMax on {len(windows)} windows; {n_soft} Softmax left in float"
        mode += f"; kept in float: {', '.join(f'{k} ({n})' for k, n in zip(keep_float, kept))})" if kept else ")"
    if tmp.exists():
        tmp.unlink()
    return {"path": str(out_path), "mode": mode, "calibration_windows": int(len(windows)), "calibration_sha256": calibration_hash(windows),
            "keep_float": list(keep_float), "kept_float_nodes": kept, "reduce_range": bool(reduce_range)}


def quantize_int8_tensorrt(fp32_path: Path, out_path: Path, windows: np.ndarray) -> dict:
    """Symmetric int8 QDQ (zero point 0), float bias: the ONNX form TensorRT wants."""
    ops = _op_types(fp32_path)
    if "LSTM" in ops:
        # TensorRT quantizes LSTMs itself from an fp32 graph; the QDQ form only covers conv/matmul
        log.info("%s holds an LSTM: the TensorRT int8 form keeps it in float", fp32_path.name)
    name = onnx.load(str(fp32_path)).graph.input[0].name
    quantize_static(
        str(fp32_path), str(out_path), WindowReader(name, windows),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        per_channel=True, calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return {"path": str(out_path), "mode": "symmetric int8 QDQ, zero point 0, float bias, Conv/MatMul/Gemm"}


def int8_kernels_check(int8_path: Path, optimized_out: Path) -> dict:
    """Does ORT really run integer kernels? Optimise the graph as ORT does and list its ops."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(optimized_out)
    ort.InferenceSession(str(int8_path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(optimized_out)).graph.node]
    int_ops = sorted({o for o in ops if o.startswith(INT8_OP_PREFIXES)})
    float_ops = sorted({o for o in ops if o in ("Conv", "MatMul", "Gemm", "LSTM", "ConvTranspose")})
    optimized_out.unlink(missing_ok=True)
    return {"integer_ops": int_ops, "float_compute_ops_left": float_ops, "runs_int8": bool(int_ops)}


def tensorrt_rule_check(path: Path) -> dict:
    """CPU-side check that a graph is in the form TensorRT's explicit quantization accepts."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    problems = []
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{n.name or n.op_type}: non-standard domain {n.domain!r}")
        if n.op_type.startswith(TRT_FORBIDDEN_PREFIXES):
            problems.append(f"{n.name or n.op_type}: {n.op_type} is not accepted by TensorRT")
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zp = onnx.numpy_helper.to_array(inits[n.input[2]])
            if zp.dtype != np.int8:
                problems.append(f"{n.name}: zero point is {zp.dtype}, TensorRT needs int8")
            elif np.any(zp != 0):
                problems.append(f"{n.name}: non-zero zero point (TensorRT needs symmetric quantization)")
        if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] in inits:
            if inits[n.input[2]].data_type != onnx.TensorProto.FLOAT:
                problems.append(f"{n.name}: bias is not float")
    return {"ok": not problems, "problems": problems[:20], "n_problems": len(problems)}


def polygraphy_lint(path: Path) -> dict:
    """``polygraphy check lint`` where Polygraphy is installed (ONNX-only; works on a CPU)."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    exe = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    if not Path(exe).exists():
        return {"ran": False, "reason": "polygraphy is not installed"}
    with tempfile.TemporaryDirectory() as td:
        report = Path(td) / "lint.json"
        proc = subprocess.run([exe, "check", "lint", str(path), "-o", str(report)], capture_output=True, text=True, timeout=300)
        summary = {}
        if report.exists():
            try:
                summary = json.loads(report.read_text()).get("summary", {})
            except json.JSONDecodeError:
                summary = {}
        tail = proc.stdout.strip().splitlines()[-3:] + proc.stderr.strip().splitlines()[-3:]
        # the tail goes into the manifest and report: no machine paths in a shipped bundle
        tail = [_paths_portable(ln, td) for ln in tail]
    return {"ran": True, "exit_code": proc.returncode, "summary": summary, "tail": tail}


def _paths_portable(text: str, temp_dir: str) -> str:
    """``text`` with the temporary directory as ``<tmp>`` and the working directory's prefix
    removed (paths relative to where the export ran).

    Examples
    --------
    >>> import os, tempfile
    >>> td = tempfile.mkdtemp()
    >>> _paths_portable(f"{os.getcwd()}/runs/b/m.onnx -o {td}/lint.json", td)
    'runs/b/m.onnx -o <tmp>/lint.json'
    """
    import os

    return text.replace(temp_dir, "<tmp>").replace(os.getcwd().rstrip("/") + "/", "")


def sqnr_worst_layers(fp32_path: Path, int8_path: Path, windows: np.ndarray, top: int = 5) -> list[dict]:
    """Per-tensor SQNR (dB) of the worst layers, with ORT's qdq_loss_debug helpers."""
    import tempfile

    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    name = onnx.load(str(fp32_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as td:
        f_aug, q_aug = Path(td) / "f.onnx", Path(td) / "q.onnx"
        modify_model_output_intermediate_tensors(str(fp32_path), str(f_aug))
        modify_model_output_intermediate_tensors(str(int8_path), str(q_aug))
        fa = collect_activations(str(f_aug), WindowReader(name, windows[:16]))
        qa = collect_activations(str(q_aug), WindowReader(name, windows[:16]))
    match = create_activation_matching(qa, fa)
    err = compute_activation_error(match)
    rows = []
    for tensor, e in err.items():
        v = e.get("xmodel_err")
        if v is not None and np.isfinite(v):
            rows.append({"tensor": tensor, "sqnr_db": float(v)})
    rows.sort(key=lambda r: r["sqnr_db"])
    return rows[:top]


# Streaming int8: calibration defaults. Measured on the shipped default bundle's
# model_stream_fp32.onnx (validation record f362s, 20 ms packets through StreamRuntime):
# 4 records x 200 chunks (every 4th step) gave |stream-int8 - stream-fp32| p99 42.8 mmHg;
# 12 records x up to 1200 chunks (every 8th step) gave p99 3.5 mmHg. Activation ranges of a
# TCN's later layers and states only settle after minutes of streaming, so calibrate long.
STREAM_CALIB_RECORDS = 16
STREAM_CALIB_CHUNKS = 1200
STREAM_CALIB_EVERY = 8
# The calibrator sees only the kept steps (25 samples each): with little training data, keeping
# every 8th step left a 1-epoch model on 2 one-minute records with 37 steps and its stream int8
# 13 mmHg (MAE) from fp32, while its window int8 passed. So the step is lowered until about
# this many steps are kept (the default bundle's 16 x 1200 chunks keep every 8th, as before).
STREAM_CALIB_TARGET_FEEDS = 2400


class FeedsReader(CalibrationDataReader):
    """Feeds a prepared list of ORT feed dicts, one at a time."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.feeds)


def _spread(items: list, n: int) -> list:
    """Up to ``n`` of ``items``, evenly spread over the list (not just its first ones)."""
    if n <= 0 or len(items) <= n:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def stream_calibration_feeds(fp32_path: Path, prepared_train: list, chunk: int, state_shapes: list,
                             max_records: int = STREAM_CALIB_RECORDS, max_chunks: int = STREAM_CALIB_CHUNKS,
                             every: int | None = None) -> tuple[list[dict], dict]:
    """Feeds met while streaming: each chosen training record is stepped through the fp32
    external-state model chunk by chunk from zero states (as the runtime starts), and every
    ``every``-th step's inputs (samples and carried states) is kept.

    ``prepared_train``: prepared records (``.X`` (C, n) at the model rate, ``.record_id``).
    Returns ``(feeds, info)``; info names the records and counts."""
    import time

    from edgebp.runtime.backends import OrtBackend

    fp32_path = Path(fp32_path)
    names = [i.name for i in onnx.load(str(fp32_path)).graph.input]
    shapes = [tuple(int(d) for d in s) for s in state_shapes]
    if len(names) != 1 + len(shapes):
        raise ValueError(f"{fp32_path.name}: {len(names)} inputs, expected 1 + {len(shapes)} states")
    be = OrtBackend(fp32_path, threads=1)
    chosen = _spread([p for p in prepared_train if p.X.shape[1] >= chunk], max_records)
    if not chosen:
        raise ValueError(f"no training record holds a whole chunk ({chunk} samples) for streaming calibration")
    total = sum(min(p.X.shape[1] // chunk, max_chunks) if max_chunks > 0 else p.X.shape[1] // chunk for p in chosen)
    if every is None:  # the default: every STREAM_CALIB_EVERY-th step, fewer when data are short
        every = max(1, min(STREAM_CALIB_EVERY, total // STREAM_CALIB_TARGET_FEEDS))
    feeds: list[dict] = []
    steps = 0
    t0 = time.monotonic()
    for r, p in enumerate(chosen):
        x = np.nan_to_num(np.asarray(p.X, np.float32))
        states = [np.zeros(s, np.float32) for s in shapes]
        n = min(x.shape[1] // chunk, max_chunks) if max_chunks > 0 else x.shape[1] // chunk
        for k in range(n):
            f = {names[0]: np.ascontiguousarray(x[None, :, k * chunk:(k + 1) * chunk])} | dict(zip(names[1:], states))
            if k % every == 0:
                feeds.append(f)
            states = [np.asarray(s, np.float32) for s in be.run(f)[1:]]
        steps += n
        log.info("stream int8 calibration: record %d/%d (%s), %d steps, %d feeds so far (%.0f s)",
                 r + 1, len(chosen), p.record_id, n, len(feeds), time.monotonic() - t0)
    info = {"records": [p.record_id for p in chosen], "n_records": len(chosen), "steps_streamed": int(steps),
            "calibration_steps": len(feeds), "every": int(every), "max_chunks": int(max_chunks), "chunk": int(chunk),
            "initial_states": "zeros (manifest streaming state shapes)"}
    return feeds, info


def stream_feeds_hash(feeds: list[dict]) -> str:
    h = hashlib.sha256()
    for f in feeds:
        for k in sorted(f):
            h.update(np.ascontiguousarray(f[k], dtype=np.float32).tobytes())
    return h.hexdigest()


def stream_int8_quantize(fp32_path: Path, out_path: Path, prepared_train: list, chunk: int, state_shapes: list,
                         max_records: int = STREAM_CALIB_RECORDS, max_chunks: int = STREAM_CALIB_CHUNKS,
                         every: int | None = None, reduce_range: bool = REDUCE_RANGE) -> dict:
    """Static int8 (QDQ, u8 activations, s8 per-channel weights, MinMax) of an external-state
    streaming model, calibrated on inputs and states met while streaming training records
    (:func:`stream_calibration_feeds`). Needs only the fp32 ONNX file, not torch: it can
    re-quantize a bundle's ``model_stream_fp32.onnx``."""
    import time

    feeds, info = stream_calibration_feeds(fp32_path, prepared_train, chunk, state_shapes, max_records, max_chunks, every)
    t0 = time.monotonic()
    log.info("stream int8: quantizing %s on %d calibration steps from %d training records", Path(fp32_path).name, len(feeds), info["n_records"])
    quantize_static(str(fp32_path), str(out_path), FeedsReader(feeds), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax)
    log.info("stream int8: %s written (%.0f s)", Path(out_path).name, time.monotonic() - t0)
    bits = "7-bit" if reduce_range else "8-bit"
    info["reduce_range"] = bool(reduce_range)
    info["mode"] = (f"static QDQ (u8 activations, s8 per-channel {bits} weights, MinMax) on {len(feeds)} streamed steps "
                    f"(every {info['every']}th of up to {max_chunks} chunks of {chunk} samples) from {info['n_records']} training records, zero initial states")
    info["calibration_sha256"] = stream_feeds_hash(feeds)
    return info
