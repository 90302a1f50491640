"""fp32 vs int8: every zoo model (edge preset, tiny training) exported, quantized, compared,
with the export gates on (their defaults)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgebp.export.pipeline import ExportGateError
from edgebp.runtime.bundle import BundleError, bundle_load

# INN-PAR's int8 fails the export gates: measured on the tiny run below (1 epoch, the 8-subject
# tiny cohort, held-out record synth-002), window int8 vs fp32 MAE SBP +16.9 / DBP -7.1 mmHg,
# point-wise p99 34.0 mmHg. Leaving Conv-only, Exp/Mul/Sigmoid or its 1x1 invertible convs in
# float does not bring it under 14 mmHg: the export rejects it (no manifest.json), as it must.
# strict: the day its int8 passes, these tests XPASS and fail, so the mark gets removed.
INN_PAR_REJECTED = pytest.mark.xfail(raises=ExportGateError, strict=True,
                                     reason="INN-PAR int8 fails the export gates (window p99 34 mmHg vs fp32 on the tiny run)")
ZOO = ["edge-tcn", "msca-cssc-unet", "cbpe-net", "pulse2pressure", pytest.param("inn-par", marks=INN_PAR_REJECTED)]

# int8 tolerance vs fp32 on the same windows, in mmHg after de-normalisation. Stated here so a
# reader knows what "close" means: relative RMSE (RMSE of the difference / SD of the training
# reference, i.e. the model's own output scale) below 0.10 and the 99th percentile of
# |difference| below 10 mmHg. (Relative to the fp32 output's own SD would be ill-posed: a
# barely trained model's output is nearly constant.)
REL_RMSE_MAX = 0.10
P99_MAX_MMHG = 10.0

# int8 vs fp32 on the held-out records of each tiny run (report.json "validation"): largest
# |change in MAE| (SBP or DBP) and p99 of the point-wise |difference|, mmHg. Measured on these
# very runs (conftest TINY_TRAIN, tiny cohort seed 3, calib_windows=16; held-out record
# synth-002) with `edgebp.export.pipeline.export_run`: edge-tcn |dMAE| 0.62 (DBP), p99 0.54;
# msca-cssc-unet 0.004, 0.095; cbpe-net 0.004, 0.005; pulse2pressure 0.02, 0.019 (per-window
# values). Limits are about 2-3x those (at least 0.05): they fail when quantization breaks.
INT8_TOL = {"edge-tcn": (1.0, 1.5), "msca-cssc-unet": (0.05, 0.3), "cbpe-net": (0.05, 0.05), "pulse2pressure": (0.1, 0.1),
            "inn-par": (1.0, 1.5)}
# The deployed path of the tiny edge-tcn (report.json "deployed", 20 ms packets through
# StreamRuntime), measured the same way: stream-int8 vs stream-fp32 |dMAE| 0.70 (DBP), p99 0.58,
# max 1.67 mmHg; stream-fp32 vs window-fp32 identical at every compared point (p99 0.0).
STREAM_INT8_TOL = (1.0, 1.5)
STREAM_FP32_VS_WINDOW_P99 = 0.05


@pytest.fixture(scope="module")
def bundles(tiny_bundle_factory):
    """The conftest factory, remembering a rejected export (ExportGateError) so it runs once."""
    failed: dict = {}

    def get(model):
        if model in failed:
            raise failed[model]
        try:
            return tiny_bundle_factory(model)
        except ExportGateError as exc:
            failed[model] = exc
            raise

    return get


def _windows(bundle_dir, n=8):
    from edgebp.runtime.bundle import bundle_load

    b = bundle_load(bundle_dir)
    rng = np.random.default_rng(0)
    m = b.manifest
    C = len(m["inputs"])
    W = m["window"]
    # realistic inputs: the preprocessing chain output is a running z-score (unit variance)
    t = np.arange(W) / m["fs"]
    base = np.stack([np.sin(2 * np.pi * 1.2 * t + k) + 0.3 * np.sin(2 * np.pi * 2.4 * t) for k in range(C)])
    return b, (base[None] + 0.2 * rng.normal(size=(n, C, W))).astype(np.float32)


@pytest.mark.parametrize("model", ZOO)
def test_int8_close_to_fp32_and_smaller(model, bundles):
    b, x = _windows(bundles(model))
    m = b.manifest
    scale = m["normalisation"]["abp_std"] if m["output"] == "waveform" else m["normalisation"]["sbp_std"]
    f = ort.InferenceSession(str(b.file("fp32")), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(b.file("int8")), providers=["CPUExecutionProvider"])
    name = f.get_inputs()[0].name
    yf = f.run(None, {name: x})[0] * scale
    yq = q.run(None, {q.get_inputs()[0].name: x})[0] * scale
    d = np.abs(yq - yf)
    rel = np.sqrt(np.mean((yq - yf) ** 2)) / scale
    assert rel < REL_RMSE_MAX, f"relative RMSE {rel:.3f}"
    assert np.percentile(d, 99) < P99_MAX_MMHG
    # quantized ops really present, and the file smaller
    ops = {n.op_type for n in onnx.load(str(b.file("int8"))).graph.node}
    assert ops & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"}
    assert b.file("int8").stat().st_size < b.file("fp32").stat().st_size


@pytest.mark.parametrize("model", ZOO)
def test_int8_matches_fp32_on_held_out_records_within_measured_tolerance(model, bundles):
    b = bundle_load(bundles(model))
    report = json.loads((b.path / "report.json").read_text())
    v = report["validation"]
    mae_tol, p99_tol = INT8_TOL[model]
    d = v["int8"]["delta_vs_fp32"]
    for k in ("sbp", "dbp"):
        assert abs(d[k]["mae"]) <= mae_tol, (k, d[k], v["int8"][k]["mae"], v["fp32"][k]["mae"])
        assert d[k]["mae"] == pytest.approx(v["int8"][k]["mae"] - v["fp32"][k]["mae"])
    assert v["int8"]["vs_fp32"]["n"] > 0 and v["int8"]["vs_fp32"]["p99_abs_mmHg"] <= p99_tol, v["int8"]["vs_fp32"]
    w = v["int8"]["vs_fp32"]
    assert w["p50_abs_mmHg"] <= w["p95_abs_mmHg"] <= w["p99_abs_mmHg"] <= w["max_abs_mmHg"]
    # accepted: every gate passed, and the manifest says so
    assert report["accepted"] and all(g["passed"] for g in report["gates"])
    names = {g["name"] for g in b.manifest["validation"]["gates"]}
    assert {"int8_delta_mae", "int8_p99_abs_diff"} <= names and b.manifest["validation"]["accepted"] is True
    assert not (b.path / "manifest.rejected.json").exists()


def test_deployed_path_validated_through_the_runtime(bundles):
    """Export scores what `edgebp run` deploys: stream-int8 and stream-fp32 through StreamRuntime
    in 20 ms packets, beside window-fp32, with deltas, grades and point-wise percentiles."""
    b = bundle_load(bundles("edge-tcn"))
    report = json.loads((b.path / "report.json").read_text())
    d = report["deployed"]
    assert d["packet_s"] == 0.02 and d["records"] == report["validation_records"] and d["records"]
    assert set(d["table"]) == {"stream-int8", "stream-fp32", "window-fp32"}
    for row in d["table"].values():
        assert row["n_pairs"] > 0
        for k in ("sbp", "dbp"):
            assert {"me", "sd", "mae", "bhs", "aami", "ieee1708"} <= set(row[k]) and row[k]["bhs"]["grade"] in "ABCD"
    # window-fp32 in the deployed table is the window validation's fp32, not a re-run
    assert d["table"]["window-fp32"]["sbp"]["mae"] == report["validation"]["fp32"]["sbp"]["mae"]
    mae_tol, p99_tol = STREAM_INT8_TOL
    delta = d["delta"]["stream-int8 - stream-fp32"]
    for k in ("sbp", "dbp"):
        assert abs(delta[k]["mae"]) <= mae_tol, delta
        assert delta[k]["me"] == pytest.approx(d["table"]["stream-int8"][k]["me"] - d["table"]["stream-fp32"][k]["me"])
    q = d["pointwise"]["stream-int8 vs stream-fp32"]
    assert q["n"] > 0 and 0 < q["p99_abs_mmHg"] <= p99_tol, q  # int8 really differs, but little
    assert d["pointwise"]["stream-fp32 vs window-fp32"]["p99_abs_mmHg"] <= STREAM_FP32_VS_WINDOW_P99, d["pointwise"]
    # the files scored are the bundle's, by hash
    sha = b.manifest["sha256"]
    assert d["files"]["stream-int8"] == {"file": "model_stream_int8.onnx", "sha256": sha["model_stream_int8.onnx"]}
    assert d["files"]["stream-fp32"]["sha256"] == sha["model_stream_fp32.onnx"]
    # gates on the stream, in the report and in the manifest
    gates = {g["name"]: g for g in b.manifest["validation"]["gates"]}
    assert gates["stream_int8_p99_abs_diff"]["passed"] and gates["stream_int8_p99_abs_diff"]["value"] == pytest.approx(q["p99_abs_mmHg"])
    assert gates["stream_int8_p99_abs_diff"]["limit"] == 8.0 and gates["stream_int8_delta_mae"]["limit"] == 1.0
    assert b.manifest["validation"]["deployed"]["pointwise"]["stream-int8 vs stream-fp32"]["p99_abs_mmHg"] == pytest.approx(q["p99_abs_mmHg"])
    md = (b.path / "report.md").read_text()
    assert "## Deployed path: stream-int8 vs stream-fp32 vs window-fp32" in md and "stream_int8_p99_abs_diff" in md
    # the stream int8 was calibrated on streamed training records from zero states
    sc = b.manifest["calibration"]["stream"]
    run_split = b.manifest["split"]
    assert sc["steps"] > 0 and sc["records"] and set(sc["records"]) <= set(run_split["train"]) and len(sc["sha256"]) == 64


def test_bundle_manifest_and_streaming_form(bundles):
    b = bundle_load(bundles("edge-tcn"))
    m = b.manifest
    assert m["inputs"] == ["ppg", "ecg"] and m["opset"] >= 17 and m["causal"]
    assert m["streaming"]["states"] and b.has("stream_int8")
    assert not list(b.path.glob("*.onnx.data"))
    assert m["reference"]["sbp_mean"] > 0 and m["calibration"]["sha256"]
    # the external-state model steps chunk by chunk
    s = ort.InferenceSession(str(b.file("stream_fp32")), providers=["CPUExecutionProvider"])
    feeds = {"x": np.zeros((1, 2, m["streaming"]["chunk"]), np.float32)} | {st["name"]: np.zeros(st["shape"], np.float32) for st in m["streaming"]["states"]}
    out = s.run(None, feeds)
    assert out[0].shape[-1] == m["streaming"]["chunk"] and len(out) == 1 + len(m["streaming"]["states"])
    # TensorRT artefacts and the CPU-side checks
    assert b.has("trt_int8") and m["tensorrt"]["rule_check"]["ok"], m["tensorrt"]["rule_check"]
    assert any("trtexec" in c for c in m["tensorrt"]["build_commands"])


def test_tampered_or_incomplete_bundle_is_refused(bundles, tmp_path):
    src = bundles("edge-tcn")
    bad = tmp_path / "b"
    shutil.copytree(src, bad)
    data = bytearray((bad / "model_int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model_int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model_int8.onnx does not match its sha256"):
        bundle_load(bad)
    shutil.rmtree(bad)
    shutil.copytree(src, bad)
    (bad / "model_fp32.onnx").unlink()
    with pytest.raises(BundleError, match="incomplete bundle, model_fp32.onnx is missing"):
        bundle_load(bad)
    m = json.loads((src / "manifest.json").read_text())
    m["surprise"] = 1
    shutil.rmtree(bad)
    shutil.copytree(src, bad)
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="unknown manifest key.*surprise"):
        bundle_load(bad)


@pytest.mark.gpu
def test_tensorrt_engine_matches_ort(bundles):
    from edgebp.runtime.backends import TensorRTBackend, tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT engine building needs tensorrt and a GPU: {why}")
    b, x = _windows(bundles("edge-tcn"))
    ref = ort.InferenceSession(str(b.file("fp32")), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    be = TensorRTBackend(b.file("trt_int8"), precision="int8")
    got = be.run({be.input_names[0]: x})[0]
    assert np.sqrt(np.mean((got - ref) ** 2)) < REL_RMSE_MAX


def test_evaluate_accepts_a_bundle(bundles):
    from edgebp.runtime.bundle_model import BundleModel
    from edgebp.train.evaluate_cli import evaluation_run

    src = BundleModel.open(bundles("edge-tcn"), variant="int8")
    report, _, _ = evaluation_run(src, None, "test", 0.0, progress=False)
    assert report["model"]["variant"] == "int8" and report["n_pairs"] > 0
