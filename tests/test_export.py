"""fp32 vs int8: every zoo model (edge preset, tiny training) exported, quantized, compared."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgebp.runtime.bundle import BundleError, bundle_load

ZOO = ["edge-tcn", "msca-cssc-unet", "cbpe-net", "pulse2pressure", "inn-par"]

# int8 tolerance vs fp32 on the same windows, in mmHg after de-normalisation. Stated here so a
# reader knows what "close" means: relative RMSE (RMSE of the difference / SD of the training
# reference, i.e. the model's own output scale) below 0.10 and the 99th percentile of
# |difference| below 10 mmHg. (Relative to the fp32 output's own SD would be ill-posed: a
# barely trained model's output is nearly constant.)
REL_RMSE_MAX = 0.10
P99_MAX_MMHG = 10.0


@pytest.fixture(scope="module")
def bundles(tiny_bundle_factory):
    return tiny_bundle_factory


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
def test_bhs_grade_unchanged_by_int8_on_test_records(model, bundles):
    report = json.loads((bundles(model) / "report.json").read_text())
    v = report["validation"]
    for k in ("sbp", "dbp"):
        assert v["int8"][k]["bhs"]["grade"] == v["fp32"][k]["bhs"]["grade"], (k, v["int8"][k]["mae"], v["fp32"][k]["mae"])


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
