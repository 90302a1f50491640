"""The TensorRT forms on the CPU: written from the shipped low-latency bundle's fp32 models,
checked by the rule check, run in ONNX Runtime and held to the export's int8 gates against
fp32; the runtime picks the TensorRT-form file for every variant; the backend's profile and
splitting logic; the engine cache's keys and `edgebp cache`; the missing-package error.

Nothing here needs a GPU: the engines themselves are built in tests/test_gpu.py (marked gpu)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgebp.export import quantize, tensorrt_form
from edgebp.paths import ASSETS
from edgebp.runtime.backends import OrtBackend
from edgebp.runtime.bundle import Bundle, bundle_load

LOWLAT = ASSETS / "lowlatency_bundle"
# the export's int8 gates (edgebp.export.pipeline.MAX_DELTA_MAE_MMHG / MAX_P99_DIFF_MMHG),
# stated here so this file needs no torch; test_gpu checks gpu_check's copies against pipeline's
MAX_DELTA_MAE, MAX_P99 = 1.0, 8.0


@pytest.fixture(scope="module")
def records(shared_data):
    """Real records of the bundle's own split (its model was trained on challenge2015), two
    minutes each, at the bundle's rate and chain: training records to calibrate on, then one
    held-out test record (the last item)."""
    from edgebp.io import read_records
    from edgebp.train.data import _record_crop, record_prepare

    b = bundle_load(LOWLAT)
    m = b.manifest
    overrides = {c: {"resampler": m["preprocessing"][c]["resampler"]} for c in b.inputs if "resampler" in m["preprocessing"][c]}

    def take(names, n):
        out = []
        for rid in names:
            if not (shared_data / "challenge2015" / f"{rid}.hea").exists():
                continue
            for rec in read_records(shared_data / "challenge2015" / rid):
                rec = _record_crop(rec, 120.0)
                p, _ = record_prepare(rec, tuple(b.inputs), float(m["fs"]), chain_overrides=overrides or None)
                if p is not None:
                    out.append((rec, p))
            if len(out) == n:
                return out
        pytest.skip(f"fewer than {n} usable records of the bundle's split under {shared_data}")

    return take(m["split"]["train"], 4) + take(m["split"]["test"], 1)


@pytest.fixture(scope="module")
def forms(records, tmp_path_factory):
    """The four TensorRT forms of the low-latency bundle's fp32 models, in a copy of it."""
    b = bundle_load(LOWLAT)
    d = tmp_path_factory.mktemp("trt-forms")
    for rel in b.manifest["files"].values():
        shutil.copy(LOWLAT / rel, d / rel)
    m = json.loads(json.dumps(b.manifest))
    st = m["streaming"]
    train = [p for _, p in records[:-1]]
    W = int(m["window"])
    calib = np.concatenate([np.stack([np.nan_to_num(p.X[:, s:s + W]).astype(np.float32) for s in range(0, p.X.shape[1] - W, W)]) for p in train])
    files = dict(m["files"])
    info = tensorrt_form.tensorrt_artefacts(d, calib, files, True, streaming=st, prepared_train=train, window=W)
    m["files"] = files
    m["tensorrt"] = info
    return Bundle(d, m)


def test_forms_written_and_pass_the_rule_check(forms):
    t = forms.manifest["tensorrt"]
    assert set(t["forms"]) == {"trt_int8", "trt_fp16", "stream_trt_int8", "stream_trt_fp16"}
    for key, f in t["forms"].items():
        assert f["written"]["status"] == "ok" and forms.has(key), f
        prec = "int8" if key.endswith("int8") else "fp16"
        c = tensorrt_form.trt_form_check(forms.file(key), prec)
        assert c["ok"], (key, c["problems"])
        ops = {n.op_type for n in onnx.load(str(forms.file(key))).graph.node}
        assert not any(o.startswith(quantize.TRT_FORBIDDEN_PREFIXES) for o in ops)
        if prec == "int8":
            assert quantize.tensorrt_rule_check(forms.file(key))["ok"]  # the project's own rule check too
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        else:
            assert "QuantizeLinear" not in ops and "Cast" in ops
    assert t["rule_check"]["ok"] and "STRONGLY_TYPED" in t["network"]
    assert any("--stronglyTyped" in c and "model_stream_trt_int8.onnx" in c for c in t["build_commands"])


def test_rule_check_rejects_the_ort_cpu_int8_forms():
    """The ORT CPU forms (u8 activations, int32 bias Q/DQ) are what TensorRT cannot take."""
    for rel in ("model_int8.onnx", "model_stream_int8.onnx"):
        c = tensorrt_form.trt_form_check(LOWLAT / rel, "int8")
        assert not c["ok"] and c["n_problems"] > 10, (rel, c)
        assert any("zero point" in p for p in c["problems"])


def test_int8_form_is_symmetric_per_channel_with_float_bias(forms):
    m = onnx.load(str(forms.file("stream_trt_int8")))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    n_conv = 0
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        n_conv += 1
        w = prod[n.input[1]]
        assert w.op_type == "DequantizeLinear"
        scale, zp = inits[w.input[1]], inits[w.input[2]]
        assert scale.size == inits[w.input[0]].shape[0] and zp.dtype == np.int8 and not zp.any()
        if len(n.input) > 2:
            assert n.input[2] in inits and inits[n.input[2]].dtype == np.float32
    assert n_conv >= 10


def _gates(name, ref, got, norm):
    from edgebp.evaluation import score_report

    def summ(sc):
        r = score_report(sc, norm)
        return {k: r[k] for k in ("sbp", "dbp")}

    a, b = summ(ref), summ(got)
    dmae = max(b[k]["mae"] - a[k]["mae"] for k in ("sbp", "dbp"))
    d = np.concatenate([np.abs(x.pred_wave - y.pred_wave)[np.isfinite(x.pred_wave) & np.isfinite(y.pred_wave)] for x, y in zip(ref, got)])
    return dmae, float(np.percentile(d, 99)), d


# Measured (this file's fixture: MinMax on 4 training records of the low-latency bundle, its
# held-out record a527l, 2 min each): symmetric int8 p99 |int8 - fp32| 8.20 mmHg (window) and
# 8.24 (stream), over the 8 mmHg gate (MAE change -0.32 / +0.65, within 1.0); the first Conv in
# float gives 8.34 / 8.17. The export would reject these forms; strict, so the day a better
# calibration passes, the mark must go. (The tiny export of test_export passes every TensorRT
# gate: p99 4.6 window, 3.5 stream.)
INT8_OVER_GATE = pytest.mark.xfail(strict=True, reason="symmetric int8 of the low-latency model: p99 8.2 mmHg vs fp32 on a527l, over the 8 mmHg gate")
WINDOW_FORMS = ["trt_fp16", pytest.param("trt_int8", marks=INT8_OVER_GATE)]
STREAM_FORMS = ["stream_trt_fp16", pytest.param("stream_trt_int8", marks=INT8_OVER_GATE)]


@pytest.mark.parametrize("key", WINDOW_FORMS)
def test_window_forms_match_fp32_in_ort_within_the_int8_gates(key, forms, records):
    from edgebp.evaluation import ModelGeometry, records_score

    m = forms.manifest
    geo = ModelGeometry(output=m["output"], window=m["window"], fs=float(m["fs"]), delay=m["delay"], causal=m["causal"],
                        receptive_field=m["receptive_field"], norm=m["normalisation"])
    held = [records[-1][1]]

    def runner(key):
        be = OrtBackend(forms.file(key))
        return lambda x: be.run({be.input_names[0]: np.ascontiguousarray(x, np.float32)})[0]

    ref = records_score(runner("fp32"), held, geo, keep_waves=1)
    got = records_score(runner(key), held, geo, keep_waves=1)
    dmae, p99, d = _gates(key, ref, got, m["normalisation"])
    assert d.size > 1000 and d.max() > 0  # really a different model, and compared on many points
    assert dmae <= MAX_DELTA_MAE and p99 <= MAX_P99, (key, dmae, p99)


@pytest.fixture(scope="module")
def stream_fp32_scored(forms, records):
    from edgebp.runtime.stream_score import stream_score_records

    rec, p = records[-1]
    return stream_score_records(forms, [(rec, p)], variant="fp32")[0]


@pytest.mark.parametrize("key", STREAM_FORMS)
def test_stream_forms_match_fp32_through_the_runtime_within_the_int8_gates(key, forms, records, stream_fp32_scored):
    from edgebp.runtime.stream_score import stream_score_records

    rec, p = records[-1]
    m2 = json.loads(json.dumps(forms.manifest))
    m2["streaming"]["file_keys"] = {"int8": key}  # the runtime streams this file under ORT
    got, _ = stream_score_records(Bundle(forms.path, m2), [(rec, p)], variant="int8")
    dmae, p99, d = _gates(key, stream_fp32_scored, got, forms.manifest["normalisation"])
    assert d.size > 1000 and d.max() > 0
    assert dmae <= MAX_DELTA_MAE and p99 <= MAX_P99, (key, dmae, p99)


def test_runtime_picks_the_tensorrt_form_for_every_variant(forms, records, monkeypatch):
    """--backend tensorrt: StreamRuntime asks the TensorRT backend for each variant's form; here
    the engine is stood in by a real ORT session of the file it was asked for, which then runs."""
    import edgebp.runtime.tensorrt_backend as tb
    from edgebp.runtime.cli import runtime_precision
    from edgebp.runtime.engine import StreamRuntime
    from edgebp.variants import RUNTIME_VARIANTS, tensorrt_file_key

    asked = []

    def fake_bundle_backend(bundle, key, max_batch=64):
        asked.append(key)
        return OrtBackend(bundle.file(key))

    monkeypatch.setattr(tb, "bundle_backend", fake_bundle_backend)
    window = Bundle(forms.path, dict(forms.manifest, streaming=None))
    want = {"stream-int8": "stream_trt_int8", "stream-fp32": "stream_fp32", "stream-fp16": "stream_trt_fp16",
            "int8": "trt_int8", "fp32": "fp32", "fp16": "trt_fp16"}
    # every runtime variant has a TensorRT form except the pruned ones (export --prune writes none)
    assert set(want) == {v for v in RUNTIME_VARIANTS if "pruned" not in v}
    rec, _ = records[-1]
    vals = np.stack([rec.get(c).signal[:2000] for c in forms.inputs], axis=1)
    fs = float(rec.get(forms.inputs[0]).fs)
    for v in want:
        streaming = v.startswith("stream-")
        b = forms if streaming else window
        prec = v.split("-", 1)[1] if streaming else v
        assert runtime_precision(v, streaming, "b") == prec
        assert tensorrt_file_key(prec, streaming) == want[v]
        rt = StreamRuntime(b, fs, {c: i for i, c in enumerate(b.inputs)}, backend="tensorrt", variant=prec)
        assert asked[-1] == want[v] and rt.backend.path == b.file(want[v])
        out = rt.push(vals)
        assert len(out.t) > 0  # the chosen file ran
    with pytest.raises(ValueError, match="no TensorRT form"):
        tensorrt_file_key("pruned-int8", streaming=False)


def test_profile_split_is_exact_on_a_streaming_model():
    """An input beyond the profile is split, not failed: a 700-sample step in pieces of at most
    256 (states carried) and a batch of 5 in pieces of 2 give the one-call result (ORT)."""
    from edgebp.runtime.backends import StepBatcher
    from edgebp.runtime.tensorrt_backend import InputSpec, onnx_inputs, profile_plan, split_run

    b = bundle_load(LOWLAT)
    st = b.manifest["streaming"]
    path = b.file("stream_fp32")
    plan = profile_plan(onnx_inputs(onnx.load(str(path))), True, chunk=int(st["chunk"]), max_step=256)
    assert plan.max_time == 256 and not plan.batch_dynamic
    be = OrtBackend(path)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, 2, 700)).astype(np.float32)} | {s["name"]: rng.standard_normal(s["shape"]).astype(np.float32) for s in st["states"]}
    whole = be.run(feeds)
    calls = []
    parts = split_run(feeds, plan, lambda f: calls.append(f["x"].shape[2]) or be.run(f), len(whole))
    assert calls == [256, 256, 188]
    for a, c in zip(whole, parts):
        np.testing.assert_allclose(c, a, atol=2e-5)
    # batch: the batch-dynamic form of the same graph, pieces of 2 rows
    sb = StepBatcher(path)
    bplan = profile_plan(onnx_inputs(onnx.load_from_string(__import__("edgebp.runtime.backends", fromlist=["x"]).batch_dynamic_model(path))),
                         True, chunk=5, max_batch=2)
    assert bplan.batch_dynamic and bplan.max_batch == 2
    f5 = {k: np.concatenate([v] * 5) + (np.arange(5, dtype=np.float32)[:, None, None] if k == "x" else 0) for k, v in feeds.items()}
    f5 = {k: v[..., :25] if k == "x" else v for k, v in f5.items()}
    one = sb.session.run(None, f5)
    rows = []
    got = split_run(f5, bplan, lambda f: rows.append(f["x"].shape[0]) or sb.session.run(None, f), len(one))
    assert rows == [2, 2, 1]
    for a, c in zip(one, got):
        np.testing.assert_allclose(c, a, atol=1e-6)
    # below the profile, or a wrong fixed dim: one error naming the input
    with pytest.raises(ValueError, match="input 'state_0'"):
        plan.check(feeds | {"state_0": np.zeros((1, 24, 3), np.float32)}, "m.onnx")
    wplan = profile_plan([InputSpec("x", ("b", 2, "t"))], False, window=1012)
    with pytest.raises(ValueError, match="axis 2 must be within 1012..1012"):
        wplan.check({"x": np.zeros((1, 2, 500), np.float32)}, "w.onnx")


def test_engine_cache_key_and_cache_command(tmp_path):
    from edgebp.runtime.tensorrt_backend import cache_dir, cached_engines, engine_key

    base = engine_key("ab" * 32, "10.13.0", "NVIDIA H100", "9.0", "int8", "{}")
    for change in ({"model_sha256": "cd" * 32}, {"trt_version": "10.14.1"}, {"gpu_name": "Orin"}, {"precision": "fp16"}, {"profile_key": "{x}"}):
        args = dict(model_sha256="ab" * 32, trt_version="10.13.0", gpu_name="NVIDIA H100", compute_capability="9.0", precision="int8", profile_key="{}")
        args.update(change)
        assert engine_key(**args)["digest"] != base["digest"], change
    env_cache = tmp_path / "c"
    import os

    old = os.environ.get("EDGEBP_CACHE")
    os.environ["EDGEBP_CACHE"] = str(env_cache)
    try:
        d = cache_dir()
        assert d == env_cache / "tensorrt"
        d.mkdir(parents=True)
        (d / base["file"]).write_bytes(b"\0" * 1000)
        (d / base["file"]).with_suffix(".json").write_text(json.dumps(base))
        assert [e["bytes"] for e in cached_engines()] == [1000]
        env = dict(os.environ)
        r = subprocess.run([sys.executable, "-m", "edgebp", "cache", "info", "--json"], capture_output=True, text=True, env=env, timeout=120)
        info = {e["what"]: e for e in json.loads(r.stdout)["entries"]}
        assert (info["tensorrt"]["files"], info["tensorrt"]["bytes"]) == (2, 1000 + len(json.dumps(base)))
        r = subprocess.run([sys.executable, "-m", "edgebp", "cache", "clean", "--what", "tensorrt", "--yes"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and not d.exists(), r.stderr
    finally:
        os.environ.pop("EDGEBP_CACHE") if old is None else os.environ.update(EDGEBP_CACHE=old)


def test_without_tensorrt_one_line_saying_what_to_install(tmp_path):
    from edgebp.runtime.backends import tensorrt_available

    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is usable here: the missing-package path is not reachable")
    log = tmp_path / "s.log"
    log.write_text("")
    for argv in (["run", "--stream", str(log), "--backend", "tensorrt"], ["serve", "--source", f"file:{log}", "--out", str(tmp_path / "o"), "--backend", "tensorrt"],
                 ["evaluate", "default", "--backend", "tensorrt"]):
        r = subprocess.run([sys.executable, "-m", "edgebp", *argv], capture_output=True, text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode != 0 and len(lines) == 1, (argv, r.stderr)
        assert "pip install 'edgebp[tensorrt]'" in lines[0] and "tensorrt>=10,<11" in lines[0] and "Traceback" not in r.stderr
    r = subprocess.run(["bash", "scripts/gpu_check.sh", "--skip-train"], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "pip install 'edgebp[tensorrt]'" in lines[0], r.stderr


def test_lint_status_is_honest(tmp_path, monkeypatch):
    """polygraphy missing, or its onnx_graphsurgeon missing, is "not run", never "ok"."""
    src = LOWLAT / "model_trt_int8.onnx"
    monkeypatch.setattr(quantize, "polygraphy_lint", lambda p: {"ran": False, "reason": "polygraphy is not installed"})
    assert tensorrt_form.lint_status(src) | {"raw": None} == {"status": "not run", "detail": "polygraphy is not installed", "raw": None}
    monkeypatch.undo()
    st = tensorrt_form.lint_status(src)  # the real tool, as installed here
    assert st["status"] in ("ok", "failed", "not run")
    if st["status"] == "ok":
        assert st["raw"]["exit_code"] == 0
    else:
        assert st["detail"]
    assert tensorrt_form.status_text({"status": "not run", "detail": "why"}) == "not run: why"


def test_evaluate_backend_tensorrt_scores_the_tensorrt_forms(tiny_bundle_factory):
    """``edgebp evaluate --backend tensorrt`` names (and would run) each variant's TensorRT form,
    the file ``edgebp run --backend tensorrt`` picks; the ORT default still scores the ORT file.
    The TensorRT session itself needs a GPU; what is checked here is the selection."""
    from edgebp.train.evaluate_cli import model_open, scored_file

    b = tiny_bundle_factory("edge-tcn")
    src = model_open(str(b), "stream-int8", "ort")
    assert scored_file(src, "stream-int8", 20.0)["file"] == "model_stream_int8.onnx"
    src.stream_backend = "tensorrt"  # as model_open(..., "tensorrt") sets it
    f = scored_file(src, "stream-int8", 20.0)
    assert f["file"] == "model_stream_trt_int8.onnx" and "backend tensorrt" in f["kind"]
    assert scored_file(src, "stream-fp16", 20.0)["file"] == "model_stream_trt_fp16.onnx"


def test_evaluate_backend_tensorrt_refuses_a_run_directory(tiny_run_factory):
    from edgebp.cli import CliError
    from edgebp.train.evaluate_cli import model_open

    with pytest.raises(CliError, match="a run directory holds the torch model; export a bundle"):
        model_open(str(tiny_run_factory("edge-tcn")), None, "tensorrt")


def test_a_tensorrt_form_that_fails_its_gates_is_not_shipped(tiny_bundle_factory, tmp_path):
    """Fail closed per form: the export's step that follows a failed TensorRT gate removes that
    form's file and manifest entry, marks the gate non-blocking, says why in the manifest and
    the report, and the bundle (its ONNX Runtime models passed) still verifies; the gates of
    the forms that passed stay blocking-free and shipped."""
    import shutil

    from edgebp.export.pipeline import _tensorrt_drop_failed, export_report_markdown
    from edgebp.runtime.bundle import bundle_load, bundle_write_manifest

    src = tiny_bundle_factory("edge-tcn")
    out = tmp_path / "b"
    shutil.copytree(src, out)
    m = json.loads((out / "manifest.json").read_text())
    m.pop("sha256", None)
    report = json.loads((out / "report.json").read_text())
    gates = [g for g in report["gates"] if g["name"].startswith(("trt_", "stream_trt_"))]
    assert gates and all(g["passed"] for g in gates)  # the tiny model's forms pass as exported
    failing = next(g for g in gates if g["name"] == "trt_int8_p99_abs_diff")
    failing.update(passed=False, value=10.2)
    dropped = _tensorrt_drop_failed(out, m, report, gates)
    assert dropped == ["trt_int8"] and "trt_int8" not in m["files"] and not (out / "model_trt_int8.onnx").exists()
    assert "stream_trt_int8" in m["files"] and all(g["blocking"] is False for g in gates)
    assert "trt_int8_p99_abs_diff failed: 10.20" in m["tensorrt"]["not_shipped"]["trt_int8"]
    # the manifest's validation carries the failed (non-blocking) gate, as the export writes it
    m["validation"]["gates"] = [g for g in m["validation"]["gates"] if not g["name"].startswith(("trt_", "stream_trt_"))] + gates
    bundle_write_manifest(out, m)
    b = bundle_load(out)
    assert not b.has("trt_int8") and b.has("stream_trt_int8")
    # "blocking": false on a gate whose form is still in the bundle (or on an ORT gate) is refused
    from edgebp.runtime.bundle import BundleError

    for name in ("stream_trt_int8_p99_abs_diff", "stream_int8_p99_abs_diff"):
        m2 = json.loads(json.dumps(m))
        g = next(g for g in m2["validation"]["gates"] if g["name"] == name)
        g.update(passed=False, blocking=False)
        bundle_write_manifest(out, m2)
        with pytest.raises(BundleError, match=f"gate {name} failed"):
            bundle_load(out)
    report["gates"] = [g for g in report["gates"] if not g["name"].startswith(("trt_", "stream_trt_"))] + gates
    md = export_report_markdown(report)
    assert "**FAIL** (form not shipped)" in md and "Not shipped: trt-int8" in md and "every blocking gate passed" in md
