"""The TensorRT forms of a bundle's models, written and checked on the CPU.

TensorRT's explicit quantization takes a different int8 ONNX than ONNX Runtime's CPU kernels:
signed, symmetric Q/DQ (int8 zero point 0) on activations and weights, per-channel weight
scales (axis 0 of a Conv weight), float bias, and standard-domain ops only (no QLinear*,
*Integer or DynamicQuantize*). The ORT CPU form (u8 activations with non-zero zero points,
int32-bias Q/DQ) is rejected by :func:`trt_form_check`. Files written here:

- ``model_trt_int8.onnx`` / ``model_stream_trt_int8.onnx``: symmetric int8 Q/DQ through ORT's
  own quantizer (MinMax), the window model calibrated on the export's training windows, the
  streaming model on steps met while streaming training records from zero states
  (:func:`edgebp.export.quantize.stream_calibration_feeds`, the ORT stream int8's calibration);
- ``model_trt_fp16.onnx`` / ``model_stream_trt_fp16.onnx``: fp16 weights and activations with
  float32 inputs and outputs (the runtime feeds float32 and carries float32 states).

All four run under ONNX Runtime on the CPU (the export validates them against fp32 through the
same gates as the ORT int8 models); a TensorRT engine is built from them strongly typed on the
GPU (:mod:`edgebp.runtime.tensorrt_backend`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from edgebp.export import quantize

log = logging.getLogger(__name__)

#: Op types given Q/DQ in the int8 form: the compute layers TensorRT runs in int8. The rest
#: (Add, Relu, Concat, Slice...) stays float between them; TensorRT fuses Q/DQ into the convs.
TRT_INT8_OPS = ["Conv", "MatMul", "Gemm"]
#: ORT quantizer options for TensorRT's form: zero point 0 on both sides, bias left float.
TRT_EXTRA_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
#: Layers the int8 forms leave in float (TensorRT then runs them in float; choices of
#: edgebp.export.quantize.KEEP_FLOAT_CHOICES). None by default. Measured on the shipped
#: low-latency bundle's fp32 models, MinMax on 4 of its training records, checked on its
#: held-out record a527l (2 min each): every Conv int8, p99 |int8 - fp32| 8.20 mmHg (window) /
#: 8.24 (stream); first Conv in float 8.34 / 8.17: no gain, unlike the ORT u8 form.
TRT_KEEP_FLOAT: tuple[str, ...] = ()


def _quantize_trt(fp32_path: Path, out_path: Path, reader, keep_float: tuple[str, ...] = TRT_KEEP_FLOAT) -> list[str]:
    kept = quantize.keep_float_nodes(fp32_path, keep_float) if keep_float else []
    quantize_static(str(fp32_path), str(out_path), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=TRT_INT8_OPS, nodes_to_exclude=kept, extra_options=dict(TRT_EXTRA_OPTIONS))
    return kept


def window_int8(fp32_path: Path, out_path: Path, windows: np.ndarray, keep_float: tuple[str, ...] = TRT_KEEP_FLOAT) -> dict:
    """Symmetric int8 Q/DQ form of a window model, MinMax on ``windows`` (N, C, T)."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    ops = {n.op_type for n in onnx.load(str(fp32_path)).graph.node}
    if "LSTM" in ops or "GRU" in ops:
        # TensorRT takes recurrent layers from the float graph; the Q/DQ form covers conv/matmul
        log.info("%s holds a recurrent layer: its TensorRT int8 form keeps it in float", fp32_path.name)
    name = onnx.load(str(fp32_path)).graph.input[0].name
    kept = _quantize_trt(fp32_path, out_path, quantize.WindowReader(name, windows), keep_float)
    return {"file": out_path.name, "precision": "int8", "source": fp32_path.name, "keep_float": list(keep_float), "kept_float_nodes": kept,
            "mode": f"symmetric int8 Q/DQ (zero point 0), per-channel weights, float bias, {'/'.join(TRT_INT8_OPS)}; MinMax on {len(windows)} training windows",
            "calibration_sha256": quantize.calibration_hash(windows)}


def stream_int8(fp32_path: Path, out_path: Path, prepared_train: list, chunk: int, state_shapes: list,
                max_records: int = quantize.STREAM_CALIB_RECORDS, max_chunks: int = quantize.STREAM_CALIB_CHUNKS,
                every: int | None = None, keep_float: tuple[str, ...] = TRT_KEEP_FLOAT) -> dict:
    """Symmetric int8 Q/DQ form of an external-state streaming model, calibrated on the
    inputs and states met while streaming training records (the same feeds as the ORT
    stream int8: :func:`edgebp.export.quantize.stream_calibration_feeds`)."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    feeds, info = quantize.stream_calibration_feeds(fp32_path, prepared_train, chunk, state_shapes, max_records, max_chunks, every)
    t0 = time.monotonic()
    kept = _quantize_trt(fp32_path, out_path, quantize.FeedsReader(feeds), keep_float)
    log.info("stream TensorRT int8: %s written from %d streamed steps (%.0f s)", out_path.name, len(feeds), time.monotonic() - t0)
    return {"file": out_path.name, "precision": "int8", "source": fp32_path.name, "keep_float": list(keep_float), "kept_float_nodes": kept,
            "mode": (f"symmetric int8 Q/DQ (zero point 0), per-channel weights, float bias, {'/'.join(TRT_INT8_OPS)}; MinMax on "
                     f"{len(feeds)} streamed steps (one in {info['every']} of up to {max_chunks} chunks of {chunk} samples) from "
                     f"{info['n_records']} training records, zero initial states"),
            "calibration": {k: info[k] for k in ("records", "n_records", "steps_streamed", "calibration_steps", "every")},
            "calibration_sha256": quantize.stream_feeds_hash(feeds)}


def fp16_form(fp32_path: Path, out_path: Path) -> dict:
    """fp16 weights and activations, float32 graph inputs and outputs (Casts at the edges), by
    ONNX Runtime's float16 converter."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    m = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    _topo_sort(m.graph)  # the converter appends its input Casts at the end; ONNX needs node order
    onnx.checker.check_model(m)
    onnx.save(m, str(out_path))
    return {"file": out_path.name, "precision": "fp16", "source": fp32_path.name,
            "mode": "fp16 weights and activations, float32 inputs and outputs (Cast at the graph's edges)"}


def _topo_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable:
    nodes already in order keep it)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes = list(graph.node)
    done: list = []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in known for i in n.input):
                done.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            raise ValueError(f"graph has a cycle or an undefined input near node {rest[0].name or rest[0].op_type}")
        nodes = rest
    del graph.node[:]
    graph.node.extend(done)


def trt_form_check(path: Path, precision: str) -> dict:
    """CPU-side check that ``path`` is in the form TensorRT's strongly typed build takes: the
    rules of :func:`edgebp.export.quantize.tensorrt_rule_check` (standard domain, no integer
    ops, int8 zero point 0, float Conv bias; fp16 bias allowed in the fp16 form) plus, for ``int8``: every QuantizeLinear has an int8 zero
    point (none means uint8 in ONNX), a Conv weight's Q/DQ is per-channel on axis 0 with one
    scale per output channel, no int32 (bias) DequantizeLinear, at least one Q/DQ pair; for
    ``fp16``: no Q/DQ, float32 graph inputs and outputs. Returns ok, problems (first 20),
    n_problems and the checks made."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    producers = {o: node for node in m.graph.node for o in node.output}
    problems: list[str] = []
    checks = ["standard-domain ops only", "no QLinear*/Integer/DynamicQuantize ops", "Q/DQ zero points int8 and 0",
              "Conv bias float32 (int8 form) or fp16/float32 (fp16 form)"]

    def bad(msg: str) -> None:
        problems.append(msg)

    # the rules of quantize.tensorrt_rule_check, with the bias rule by precision: a strongly
    # typed fp16 Conv takes an fp16 bias (ONNX Conv has one type for X, W and B)
    bias_ok = (onnx.TensorProto.FLOAT,) if precision != "fp16" else (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    for x in m.graph.node:
        label = x.name or x.op_type
        if x.domain not in ("", "ai.onnx"):
            bad(f"{label}: non-standard domain {x.domain!r}")
        if x.op_type.startswith(quantize.TRT_FORBIDDEN_PREFIXES):
            bad(f"{label}: {x.op_type} is not accepted by TensorRT")
        if x.op_type in ("QuantizeLinear", "DequantizeLinear") and len(x.input) > 2 and x.input[2] in inits:
            zp = onnx.numpy_helper.to_array(inits[x.input[2]])
            if zp.dtype != np.int8:
                bad(f"{label}: zero point is {zp.dtype}, TensorRT needs int8")
            elif np.any(zp != 0):
                bad(f"{label}: non-zero zero point (TensorRT needs symmetric quantization)")
        if x.op_type == "Conv" and len(x.input) > 2 and x.input[2] in inits and inits[x.input[2]].data_type not in bias_ok:
            bad(f"{label}: bias is {onnx.TensorProto.DataType.Name(inits[x.input[2]].data_type)}, not "
                + " or ".join(onnx.TensorProto.DataType.Name(t) for t in bias_ok))

    f32 = onnx.TensorProto.FLOAT
    for vi in [*m.graph.input, *m.graph.output]:
        if vi.name not in inits and vi.type.tensor_type.elem_type != f32:
            bad(f"graph {'input' if vi in m.graph.input else 'output'} {vi.name} is not float32 (the runtime feeds and reads float32)")
    checks.append("graph inputs and outputs float32")
    qdq = [x for x in m.graph.node if x.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if precision == "int8":
        checks += ["every QuantizeLinear has an int8 zero point", "Conv weights per-channel (axis 0, one scale per output channel)",
                   "no int32 DequantizeLinear (bias stays float)", "Q/DQ present"]
        if not qdq:
            bad("no QuantizeLinear/DequantizeLinear nodes: not an int8 Q/DQ graph")
        for x in qdq:
            if x.op_type == "QuantizeLinear" and (len(x.input) < 3 or not x.input[2]):
                bad(f"{x.name}: QuantizeLinear without a zero point (uint8 by the ONNX default; TensorRT needs int8)")
            if x.op_type == "DequantizeLinear" and x.input[0] in inits and inits[x.input[0]].data_type == onnx.TensorProto.INT32:
                bad(f"{x.name}: int32 DequantizeLinear (a quantized bias; TensorRT needs a float bias)")
        for conv in (x for x in m.graph.node if x.op_type == "Conv"):
            w = producers.get(conv.input[1]) if len(conv.input) > 1 else None
            if w is None or w.op_type != "DequantizeLinear":
                continue  # a Conv left in float is allowed (TensorRT runs it in float)
            scale = inits.get(w.input[1])
            weight = inits.get(w.input[0])
            axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
            if scale is None or weight is None:
                bad(f"{conv.name}: weight Q/DQ scale or weight is not a constant")
                continue
            n_out = weight.dims[0] if weight.dims else 0
            n_scale = int(np.prod(scale.dims)) if scale.dims else 1
            if n_scale != n_out or (n_scale > 1 and axis != 0):
                bad(f"{conv.name}: weight scales {n_scale} on axis {axis}, expected per-channel ({n_out} on axis 0)")
    elif precision == "fp16":
        checks.append("no Q/DQ (fp16 form)")
        if qdq:
            bad(f"{len(qdq)} Q/DQ nodes in the fp16 form")
    return {"ok": not problems, "problems": problems[:20], "n_problems": len(problems), "checks": checks}


def lint_status(path: Path) -> dict:
    """``polygraphy check lint`` on ``path`` as a status: ``ok``, ``failed`` (with the reason)
    or ``not run`` (with why: Polygraphy, or its onnx_graphsurgeon dependency, missing).
    Never ``ok`` unless the lint ran and exited 0."""
    res = quantize.polygraphy_lint(Path(path))
    if not res.get("ran"):
        return {"status": "not run", "detail": res.get("reason", "polygraphy did not run")} | {"raw": res}
    tail = " ".join(res.get("tail") or [])
    if "could not be imported" in tail or "No module named" in tail:
        # Polygraphy loads its dependencies on demand: the lint itself never ran
        mod = re.search(r"Module: '([^']+)'|No module named '([^']+)'", tail)
        name = next((g for g in mod.groups() if g), "a module") if mod else "a module"
        return {"status": "not run", "detail": f"polygraphy check lint needs {name}, which is not installed", "raw": res}
    if res.get("exit_code") == 0:
        return {"status": "ok", "detail": "polygraphy check lint exited 0", "raw": res}
    last = next((ln for ln in reversed(res.get("tail") or []) if ln.strip()), "")
    return {"status": "failed", "detail": f"polygraphy check lint exited {res.get('exit_code')}: {last[:300]}", "raw": res}


def ort_self_check(fp32_path: Path, form_path: Path, feeds: list[dict]) -> dict:
    """Max and p99 |form - fp32| of the first output under ONNX Runtime on ``feeds`` (model
    units, before de-normalisation): a quick sanity figure; the gates are on held-out records."""
    from edgebp.runtime.backends import OrtBackend

    a, b = OrtBackend(fp32_path), OrtBackend(form_path)
    d = []
    for f in feeds:
        ya, yb = a.run(f)[0], b.run(f)[0]
        d.append(np.abs(np.asarray(ya, np.float64) - np.asarray(yb, np.float64)).reshape(-1))
    dd = np.concatenate(d) if d else np.zeros(0)
    return {"n": int(dd.size), "max_abs": float(dd.max()) if dd.size else None,
            "p99_abs": float(np.percentile(dd, 99)) if dd.size else None, "unit": "model output units (normalised)"}


def build_commands(out_dir: Path, files: dict, window: int, chunk: int | None) -> list[str]:
    """``trtexec`` lines that build the same engines by hand (strongly typed; the shapes of the
    runtime's profiles: :func:`edgebp.runtime.tensorrt_backend.profile_plan`)."""
    from edgebp.runtime.tensorrt_backend import MAX_BATCH, MAX_STEP, onnx_inputs, profile_plan

    out = []
    for key, rel in files.items():
        streaming = key.startswith("stream")
        try:
            plan = profile_plan(onnx_inputs(onnx.load(str(Path(out_dir) / rel))), streaming, window=window, chunk=chunk,
                                max_batch=1 if streaming else MAX_BATCH, max_step=MAX_STEP, where=rel)
        except ValueError as exc:
            out.append(f"# {rel}: no trtexec line ({exc})")
            continue

        def shp(i: int) -> str:
            return ",".join(f"{n}:" + "x".join(str(d) for d in v[i]) for n, v in plan.shapes.items())

        out.append(f"trtexec --onnx={rel} --stronglyTyped --minShapes={shp(0)} --optShapes={shp(1)} --maxShapes={shp(2)} "
                   f"--saveEngine={Path(rel).with_suffix('.plan').name}")
    return out


# ----------------------------------------------------------------------------- export steps

#: bundle file key -> (file name, precision, source key, streaming)
FORMS = {
    "trt_int8": ("model_trt_int8.onnx", "int8", "fp32", False),
    "trt_fp16": ("model_trt_fp16.onnx", "fp16", "fp32", False),
    "stream_trt_int8": ("model_stream_trt_int8.onnx", "int8", "stream_fp32", True),
    "stream_trt_fp16": ("model_stream_trt_fp16.onnx", "fp16", "stream_fp32", True),
}


def _status(ok: bool | None, detail: str = "") -> dict:
    """ok / failed (reason) / not run (why) as one record."""
    s = "ok" if ok else ("not run" if ok is None else "failed")
    return {"status": s, "detail": detail}


def status_text(st: dict | None) -> str:
    """``ok``, ``failed: REASON`` or ``not run: WHY`` (``not run: not recorded`` for None)."""
    if not st:
        return "not run: not recorded"
    return st["status"] + (f": {st['detail']}" if st.get("detail") and st["status"] != "ok" else "")


def tensorrt_artefacts(out: Path, calib: np.ndarray, files: dict, int8: bool, streaming: dict | None = None,
                       prepared_train: list | None = None, stream_calib_records: int = quantize.STREAM_CALIB_RECORDS,
                       window: int | None = None) -> dict:
    """Write the TensorRT forms into ``out`` (and their keys into ``files``), check each on the
    CPU (:func:`trt_form_check`, :func:`lint_status`), and, where TensorRT and a GPU exist,
    build their engines and compare the window forms with ORT fp32. Returns the manifest's
    ``tensorrt`` section; every check is recorded as ok / failed (reason) / not run (why)."""
    out = Path(out)
    forms: dict = {}
    todo = ["trt_fp16"] + (["trt_int8"] if int8 else [])
    if streaming and "stream_fp32" in files:
        todo += ["stream_trt_fp16"] + (["stream_trt_int8"] if int8 else [])
    for key in todo:
        fname, prec, src, is_stream = FORMS[key]
        t0 = time.monotonic()
        try:
            if prec == "fp16":
                info = fp16_form(out / files[src], out / fname)
            elif not is_stream:
                info = window_int8(out / files[src], out / fname, calib)
            else:
                info = stream_int8(out / files[src], out / fname, prepared_train or [], int(streaming["chunk"]),
                                   [s["shape"] for s in streaming["states"]], max_records=stream_calib_records)
        except Exception as exc:  # noqa: BLE001 - recorded as failed; the validation gate then fails closed
            log.warning("TensorRT form %s not written: %s: %s", fname, type(exc).__name__, exc)
            forms[key] = {"file": fname, "precision": prec, "written": _status(False, f"{type(exc).__name__}: {str(exc)[:300]}")}
            (out / fname).unlink(missing_ok=True)
            files.pop(key, None)  # an older bundle's file of that name is not this export's
            continue
        files[key] = fname
        check = trt_form_check(out / fname, prec)
        info["written"] = _status(True)
        info["rule_check"] = check | _status(check["ok"], "; ".join(check["problems"][:3]) + (f" ({check['n_problems']} problems)" if check["n_problems"] > 3 else ""))
        info["polygraphy_lint"] = {k: v for k, v in lint_status(out / fname).items() if k != "raw"}
        info["seconds"] = round(time.monotonic() - t0, 2)
        forms[key] = info
        log.info("TensorRT form %s: rule check %s, polygraphy lint %s", fname, status_text(info["rule_check"]), status_text(info["polygraphy_lint"]))
    written = {k: files[k] for k in forms if k in files}
    rule_ok = all(forms[k]["rule_check"]["ok"] for k in written) and len(written) == len(forms)
    tinfo: dict = {
        "forms": forms,
        # the combined rule check (every form written and clean), as older readers look for it
        "rule_check": {"ok": bool(rule_ok), "n_problems": int(sum(forms[k]["rule_check"]["n_problems"] for k in written)),
                       "problems": [p for k in written for p in forms[k]["rule_check"]["problems"]][:20]},
        "build_commands": build_commands(out, written, int(window or 0), int(streaming["chunk"]) if streaming else None),
        "network": "strongly typed (NetworkDefinitionCreationFlag.STRONGLY_TYPED; no INT8/FP16 builder flags)",
        "fp32_source": {"window": "model_fp32.onnx", "stream": files.get("stream_fp32")},
    }
    from edgebp.runtime.tensorrt_backend import tensorrt_available

    ok, why = tensorrt_available()
    tinfo["engines"] = _status(None, why) if not ok else _engines_check(out, files, written, calib, window, streaming)
    if not ok:
        log.warning("TensorRT engines not built here: %s", why)
    return tinfo


def _engines_check(out: Path, files: dict, written: dict, calib: np.ndarray, window: int | None, streaming: dict | None) -> dict:
    """On a GPU: build every written form's engine and compare the window forms with ORT fp32
    on calibration windows (max |difference|, model units)."""
    from edgebp.runtime.backends import OrtBackend
    from edgebp.runtime.tensorrt_backend import TensorRTBackend

    res: dict = {}
    x = np.ascontiguousarray(calib[:8], np.float32)
    fp32 = OrtBackend(out / files["fp32"])
    ref = fp32.run({fp32.input_names[0]: x})[0]
    failed = []
    for key, rel in written.items():
        prec = FORMS[key][1]
        try:
            be = TensorRTBackend(out / rel, precision=prec, streaming=key.startswith("stream"), window=window,
                                 chunk=int(streaming["chunk"]) if streaming else None)
            row = {"built": True, "cache_file": be.key["file"]}
            if not key.startswith("stream"):
                row["max_abs_vs_ort_fp32"] = float(np.max(np.abs(be.run({be.input_names[0]: x})[0] - ref)))
            be.close()
        except Exception as exc:  # noqa: BLE001 - recorded per form
            row = {"built": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            failed.append(key)
        res[key] = row
    return _status(not failed, "; ".join(f"{k}: {res[k]['error']}" for k in failed)) | {"per_form": res}


def tensorrt_validate(out: Path, manifest: dict, report: dict, held_out: list, scored_window: dict, scored_stream: dict | None,
                      raw: dict | None, vgeo, packet_s: float, max_delta_mae: float, max_p99_diff: float) -> list[dict]:
    """The TensorRT forms under ONNX Runtime on the held-out records, by the gates of the ORT
    int8 models: window forms offline against window fp32 (``scored_window["fp32"]``), stream
    forms through the runtime in ``packet_s`` packets against stream-fp32 (``scored_stream``).
    Writes ``validation`` into ``report["tensorrt"]`` and ``manifest["tensorrt"]``; returns the
    gates (a form that could not be written, or was not validated, fails its gate)."""
    from edgebp.evaluation import records_score, score_report
    from edgebp.export.pipeline import _delta, _gate, _mae_gate, _ort_runner, _summary, _wave_diffs
    from edgebp.runtime.bundle import Bundle, file_sha256
    from edgebp.runtime.stream_score import stream_score_records

    out = Path(out)
    tinfo = manifest.get("tensorrt") or {}
    forms = tinfo.get("forms") or {}
    files = manifest["files"]
    norm = vgeo.norm
    gates: list[dict] = []
    val: dict = {"window": {}, "stream": {}, "packet_s": float(packet_s)}
    n_problems = int(sum(f.get("rule_check", {}).get("n_problems", 0) for f in forms.values()))
    unwritten = [k for k, f in forms.items() if k not in files]
    gates.append({"name": "trt_form_rule_check", "figure": "TensorRT-form rule problems over every form", "value": float(n_problems + len(unwritten)),
                  "limit": 0.0, "unit": "problems", "passed": n_problems == 0 and not unwritten,
                  "detail": ("not written: " + ", ".join(unwritten)) if unwritten else ""})
    fp32_table = _summary(score_report(scored_window["fp32"], norm)) if scored_window.get("fp32") else None
    for key, f in forms.items():
        name = key.replace("_", "-")
        is_stream = key.startswith("stream")
        if is_stream and scored_stream is None:
            gates.append(_gate(f"{key}_validated", f"{name} through the runtime", None, 0, "no held-out records streamed"))
            continue
        if key not in files:
            gates.append(_gate(f"{key}_validated", f"{name} under ONNX Runtime", None, 0, "the form was not written: " + status_text(f.get("written"))))
            continue
        if is_stream:
            m2 = json.loads(json.dumps(manifest))
            m2["streaming"]["file_keys"] = {"int8": key}  # the runtime runs this file as its stream model
            sc, _ = stream_score_records(Bundle(out, m2), ((raw[p.record_id], p) for p in held_out), variant="int8", packet_s=packet_s)
            ref_name, ref = "stream-fp32", scored_stream
        else:
            sc = records_score(_ort_runner(out / files[key]), held_out, vgeo, keep_waves=len(held_out))
            ref_name, ref = "window-fp32", scored_window["fp32"]
        row = _summary(score_report(sc, norm))
        ref_row = _summary(score_report(ref, norm)) if is_stream else fp32_table
        row["delta_vs_ref"] = _delta(row, ref_row)
        row["vs_ref"] = _wave_diffs(ref, sc)
        row["ref"] = ref_name
        row["file"] = {"file": files[key], "sha256": file_sha256(out / files[key])}
        (val["stream"] if is_stream else val["window"])[name] = row
        gates.append(_mae_gate(f"{key}_delta_mae", f"{name} MAE - {ref_name} MAE (ONNX Runtime, CPU)", row["delta_vs_ref"], max_delta_mae))
        gates.append(_gate(f"{key}_p99_abs_diff", f"p99 of |{name} - {ref_name}| (ONNX Runtime, CPU)", row["vs_ref"]["p99_abs_mmHg"], max_p99_diff))
        log.info("%s (ONNX Runtime) vs %s: MAE change SBP %s / DBP %s, p99 |diff| %s mmHg", name, ref_name,
                 *(f"{row['delta_vs_ref'][k]['mae']:+.3f}" if row["delta_vs_ref"][k]["mae"] is not None else "n/a" for k in ("sbp", "dbp")),
                 f"{row['vs_ref']['p99_abs_mmHg']:.3f}")
    val = json.loads(json.dumps(val, default=_json_default))
    for d in (report.get("tensorrt"), manifest.get("tensorrt")):
        if d is not None:
            d["validation"] = val
    return gates


def _json_default(o):
    from edgebp.jsonsafe import json_default

    return json_default(o)


def report_lines(t: dict, gates: list[dict]) -> list[str]:
    """The report.md section of the TensorRT forms: per form its file, each check's real
    result (ok / failed: reason / not run: why) and its validation against fp32."""
    lines = ["", "## TensorRT forms", "",
             "Written for TensorRT's strongly typed build (symmetric int8 Q/DQ, zero point 0, per-channel weights, float bias; fp16 with "
             "float32 inputs and outputs), validated here under ONNX Runtime on the CPU against fp32 by the int8 gates.", "",
             "| form | file | written | rule check | polygraphy lint | MAE change vs fp32 (SBP / DBP) | p99 abs diff (mmHg) | gates |",
             "|---|---|---|---|---|---|---|---|"]
    val = t.get("validation") or {}
    rows = {**(val.get("window") or {}), **(val.get("stream") or {})}
    by_gate = {g["name"]: g for g in gates}
    for key, f in (t.get("forms") or {}).items():
        name = key.replace("_", "-")
        r = rows.get(name)
        mae = p99 = "not run: " + ("form not written" if f.get("written", {}).get("status") != "ok" else "not validated")
        if r:
            d = r["delta_vs_ref"]
            mae = " / ".join(f"{d[k]['mae']:+.2f}" if d[k]["mae"] is not None else "n/a" for k in ("sbp", "dbp")) + f" (vs {r['ref']})"
            p99 = f"{r['vs_ref']['p99_abs_mmHg']:.3f}" if r["vs_ref"]["p99_abs_mmHg"] is not None else "n/a"
        gs = [g for n, g in by_gate.items() if n.startswith(key + "_")]
        gtxt = ", ".join(("pass" if g["passed"] else "**FAIL**") + f" {g['name']}" for g in gs) or "none"
        cells = [name, f.get("file", ""), status_text(f.get("written")), status_text(f.get("rule_check")), status_text(f.get("polygraphy_lint")), mae, p99, gtxt]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for key, why in (t.get("not_shipped") or {}).items():
        lines += ["", f"**Not shipped: {key.replace('_', '-')}** (its file was removed from the bundle): {why}."]
    lines += ["", f"TensorRT engines: {status_text(t.get('engines'))}", "Build by hand (the runtime builds and caches them itself):"]
    lines += [f"    {c}" for c in t.get("build_commands", [])]
    return lines
