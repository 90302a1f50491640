"""The microcontroller budget check: hand-checked tiny graphs, an exported int8 model, the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgebp.firmware_sim.budget import ModelBudget, bundle_resolve, mcu_check, onnx_budget
from edgebp.firmware_sim.budget_cli import budget_command
from edgebp.firmware_sim.mcu_profiles import MCU_PROFILES, mcu_profile, mcu_profiles_select


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _f(name, shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


@pytest.fixture()
def tiny():
    """Conv 1->4 k=3 (+bias) -> Relu -> Conv 4->1 k=1 (+bias), input [1, 1, T].

    Worked out by hand for T = 10 (no padding, so the first conv gives length 8):
      weights: W1 4*1*3 = 12 + b1 4 = 16 floats = 64 B; W2 1*4*1 = 4 + b2 1 = 5 floats = 20 B
               -> 84 B, 21 parameters.
      MACs:    conv1 out 4*8 = 32 values x (1*3) = 96; conv2 out 1*8 = 8 values x (4*1) = 32 -> 128.
      tensors: x [1,1,10] 40 B live start..node0; c [1,4,8] 128 B node0..node1;
               r [1,4,8] 128 B node1..node2; y [1,1,8] 32 B node2..end.
      live per node: node0 x+c = 168, node1 c+r = 256, node2 r+y = 160 -> peak 256 B at the Relu.
      at fs 125 Hz, hop 10: 12.5 inferences/s -> 1600 MACs/s.
    """
    nodes = [
        helper.make_node("Conv", ["x", "W1", "b1"], ["c"], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W2", "b2"], ["y"], name="conv2"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "l"])],
        [_f("W1", (4, 1, 3)), _f("b1", (4,)), _f("W2", (1, 4, 1)), _f("b2", (1,))],
    )


def test_tiny_graph_by_hand(tiny):
    b = onnx_budget(tiny, fs=125.0, hop=10, window=10)
    assert b.weight_bytes == 84
    assert b.n_params == 21
    assert b.macs_per_inference == 128
    assert b.macs_by_op == {"Conv": 128}
    assert b.activation_peak_bytes == 256
    assert b.activation_peak_bytes_unfused == 256
    assert b.activation_peak_node == "relu (Relu)"
    assert b.state_bytes == 0
    assert b.precision == "fp32"
    assert b.inferences_per_s == 12.5
    assert b.macs_per_s == 1600.0
    assert b.input_shapes == {"x": [1, 1, 10]}


def test_window_scales_macs_and_symbolic_dim_needs_it(tiny):
    b = onnx_budget(tiny, window=20)  # conv1 out length 18: 4*18*3 + 18*4 = 288
    assert b.macs_per_inference == 288
    assert b.macs_per_s is None
    with pytest.raises(ValueError, match="window"):
        onnx_budget(tiny)


def test_state_input_and_lifetimes():
    """Concat(state [1,1,2], x [1,1,8]) -> [1,1,10] -> Conv 1->4 k=3 -> y [1,4,8].

    state: 2 floats = 8 B (persistent). x 32 B live start..node0, cat 40 B node0..node1,
    y 128 B node1..end: node0 72 B, node1 168 B -> peak 168 B; RAM = 168 + 8 = 176 B.
    """
    m = _model(
        [helper.make_node("Concat", ["state_in", "x"], ["cat"], axis=2, name="cat"),
         helper.make_node("Conv", ["cat", "W"], ["y"], name="conv")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8]),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "l"])],
        [_f("W", (4, 1, 3))],
    )
    b = onnx_budget(m)
    assert b.state_inputs == ["state_in"]
    assert b.state_bytes == 8
    assert b.activation_peak_bytes == 168
    assert b.ram_bytes == 176
    assert b.macs_per_inference == 4 * 8 * 3
    with pytest.raises(ValueError, match="not among the model inputs"):
        onnx_budget(m, state_inputs=["nope"])


def test_lstm_gemm_matmul_formulas():
    """LSTM I=3, H=5 over 7 steps: 7 * 4 * 5 * (3 + 5) = 1120; Gemm [1,5]x[5,2]: 10;
    MatMul [1,2]x[2,4]: 8."""
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "h"], hidden_size=5, name="lstm"),
        helper.make_node("Reshape", ["h", "shape"], ["h2"], name="flat"),
        helper.make_node("Gemm", ["h2", "G"], ["g"], name="gemm"),
        helper.make_node("MatMul", ["g", "M"], ["y"], name="mm"),
    ]
    inits = [_f("W", (1, 20, 3)), _f("R", (1, 20, 5)), _f("B", (1, 40)), _f("G", (5, 2)), _f("M", (2, 4)),
             numpy_helper.from_array(np.array([1, 5], np.int64), "shape")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 1, 3])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "m"])], inits)
    b = onnx_budget(m)
    assert b.macs_by_op == {"LSTM": 1120, "Gemm": 10, "MatMul": 8}
    assert b.weight_bytes_by_kind["shape"] == 16
    assert b.n_params == 60 + 100 + 40 + 10 + 8


def test_unknown_shapes_are_measured_with_onnxruntime(caplog):
    """TopK with k computed at run time: onnx inference cannot know the output length, ORT measures it.

    T = 12: x 48 B (start..node2), s int64[3] 24 B (node0..1), k int64[1] 8 B (node1..2),
    v [1,1,12] 48 B (node2..3), i int64 [1,1,12] 96 B (node2 only, unused), y [1,2,8] 64 B.
    node2 holds x + k + v + i = 200 B, the peak. MACs: conv 2*8 outputs x 5 = 80.
    """
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ReduceMax", ["s"], ["k"], keepdims=1),
        helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),
        helper.make_node("Conv", ["v", "W"], ["y"], name="conv"),
    ]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "T"])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "l"])], [_f("W", (2, 1, 5))])
    with caplog.at_level("INFO", logger="edgebp.firmware_sim.budget"):
        b = onnx_budget(m, window=12)
    assert "measuring with ONNX Runtime" in caplog.text
    assert b.macs_per_inference == 80
    assert b.activation_peak_bytes == 200
    assert b.uncounted_ops == {"TopK": 1}


def test_mcu_check_pass_fail_and_duty():
    big = ModelBudget("m", "int8", {}, 200 * 1024, {}, {}, 0, 20 * 1024, "", 0, 0, [], 10_000_000,
                      10_000_000, 0, {}, fs=125.0, hop=125)
    samd = mcu_check(big, mcu_profile("samd21"))
    assert not samd.flash_ok and samd.flash_budget == 128 * 1024
    assert not samd.ram_ok  # 20 kB > 16 kB
    # 10 M int8 MACs/s at 0.25 MAC/cycle = 40 M cycles/s on 48 MHz
    assert samd.duty_cycle == pytest.approx(40e6 / 48e6)
    assert samd.compute_ok is False and not samd.ok
    m7 = mcu_check(big, mcu_profile("m7"))
    assert m7.flash_ok and m7.ram_ok and m7.duty_cycle == pytest.approx(5e6 / 480e6) and m7.ok
    fp = ModelBudget("m", "fp32", {}, 0, {}, {}, 0, 0, "", 0, 0, [], 1000, 0, 1000, {}, fs=100.0, hop=1)
    # float MACs use the fp32 rate: 1e5 MACs/s / 0.33 MAC/cycle / 64 MHz
    assert mcu_check(fp, mcu_profile("nrf52832")).duty_cycle == pytest.approx(1e5 / 0.33 / 64e6)
    nofs = ModelBudget("m", "fp32", {}, 0, {}, {}, 0, 0, "", 0, 0, [], 1000, 0, 1000, {})
    c = mcu_check(nofs, mcu_profile("esp32s3"))
    assert c.duty_cycle is None and c.compute_ok is None and not c.ok


def test_profiles_table_is_the_stated_hardware():
    p = mcu_profile("nrf52832")
    assert (p.ram_bytes, p.flash_bytes, p.clock_hz) == (64 * 1024, 512 * 1024, 64e6)
    assert mcu_profile("stm32h743").ram_bytes == 1024 * 1024 and mcu_profile("esp32s3").clock_hz == 240e6
    assert mcu_profile("samd21").clock_hz == 48e6 and mcu_profile("samd21").core == "Cortex-M0+"
    assert len(mcu_profiles_select("all")) == len(MCU_PROFILES)
    with pytest.raises(ValueError, match="valid: esp32s3"):
        mcu_profile("avr")


def test_torch_exported_int8_qdq_counts_weights_as_one_byte(tmp_path):
    torch = pytest.importorskip("torch")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(1, 8, 5), torch.nn.ReLU(), torch.nn.Conv1d(8, 8, 5), torch.nn.ReLU(), torch.nn.Conv1d(8, 1, 1)
    ).eval()
    fp32 = tmp_path / "fp32.onnx"
    int8 = tmp_path / "int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices
        torch.onnx.export(net, (torch.randn(1, 1, 64),), str(fp32), input_names=["x"], output_names=["y"],
                          dynamo=False, opset_version=17)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter([{"x": rng.normal(size=(1, 1, 64)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    bf = onnx_budget(fp32, fs=125.0, hop=64)
    bq = onnx_budget(int8, fs=125.0, hop=64)
    n_w = 1 * 8 * 5 + 8 * 8 * 5 + 8 * 1 * 1  # conv weights
    n_b = 8 + 8 + 1  # biases
    assert bf.n_params == bq.n_params == n_w + n_b
    assert bf.weight_bytes == 4 * (n_w + n_b)
    # int8 weights 1 byte each, biases int32 (4 bytes), per-channel scales and zero points apart
    assert bq.weight_bytes_by_kind["params"] == n_w + 4 * n_b
    # MACs: 8*60*5 + 8*56*(8*5) + 1*56*8
    assert bf.macs_per_inference == bq.macs_per_inference == 2400 + 17920 + 448
    assert bq.precision == "int8" and bq.macs_int8 == bq.macs_per_inference
    assert bf.precision == "fp32" and bf.macs_fp32 == bf.macs_per_inference
    # fp32 peak: conv1 out and relu out, [1,8,60] float each; int8 deployed: [1,8,60] + [1,8,56] bytes
    assert bf.activation_peak_bytes == 2 * 8 * 60 * 4
    assert bq.activation_peak_bytes == 8 * 60 + 8 * 56
    assert bq.activation_peak_bytes_unfused > bq.activation_peak_bytes
    samd = mcu_check(bq, mcu_profile("samd21"))
    assert samd.duty_cycle == pytest.approx(bq.macs_per_inference * 125 / 64 / 0.25 / 48e6)


def test_cli_table_json_and_errors(tmp_path, tiny):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny, str(path))
    runner = CliRunner()
    r = runner.invoke(budget_command, [str(path), "--window", "10", "--model-fs", "125", "--hop", "10", "--mcu", "all"])
    assert r.exit_code == 0, r.output
    assert "MACs per inference: 128" in r.output
    for name in MCU_PROFILES:
        assert name in r.output
    r = runner.invoke(budget_command, [str(path), "--window", "10", "--model-fs", "125", "--hop", "10",
                                       "--mcu", "nrf52832", "--json"])
    assert r.exit_code == 0, r.output
    # --fs, budget's old spelling of the model rate: a warning, then the same result
    old = runner.invoke(budget_command, [str(path), "--window", "10", "--fs", "125", "--hop", "10", "--mcu", "nrf52832", "--json"])
    assert old.exit_code == 0 and old.stdout == r.stdout
    assert "--fs is deprecated; use --model-fs" in old.stderr and "deprecated" not in r.stderr
    d = json.loads(r.output)
    assert d["budget"]["macs_per_s"] == 1600.0 and d["budget"]["weight_bytes"] == 84
    assert [c["mcu"] for c in d["checks"]] == ["nrf52832"] and d["checks"][0]["ok"] is True
    r = runner.invoke(budget_command, [str(path), "--window", "10", "--mcu", "z80"])
    assert r.exit_code != 0 and "valid:" in str(r.exception or r.output)
    r = runner.invoke(budget_command, [str(path), "--mcu", "m4f"])
    assert r.exit_code != 0 and "--window" in str(r.exception)
    r = runner.invoke(budget_command, [str(path), "--input-shape", "x=1x1x10", "--input-shape", "bad"])
    assert r.exit_code != 0 and "NAME=DxDxD" in r.output


def _manifest_write(path, files, **over):
    """A full manifest (the default bundle's, with this geometry and files), hashed: budget
    opens bundles with bundle_load, as edgebp run does, so a partial manifest is refused."""
    from edgebp.paths import ASSETS
    from edgebp.runtime.bundle import bundle_write_manifest

    m = json.loads((ASSETS / "default_bundle" / "manifest.json").read_text())
    m.update({"fs": 125, "window": 10, "hop": 5, "delay": 0, "files": files, "streaming": None}, **over)
    bundle_write_manifest(path, m)


def test_bundle_manifest_is_read(tmp_path, tiny):
    onnx.save(tiny, str(tmp_path / "model_int8.onnx"))
    onnx.save(tiny, str(tmp_path / "model_fp32.onnx"))
    _manifest_write(tmp_path, {"fp32": "model_fp32.onnx", "int8": "model_int8.onnx"})
    path, meta = bundle_resolve(tmp_path)
    assert path.name == "model_int8.onnx"
    assert meta == {"fs": 125.0, "variant": "int8", "window": 10, "hop": 5}
    r = CliRunner().invoke(budget_command, [str(tmp_path), "--mcu", "m7", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["budget"]["inferences_per_s"] == 25.0
    # a streaming int8 model in the bundle is the one a device runs: chunk = hop, states from the manifest
    stream = _model(
        [helper.make_node("Concat", ["state_0", "x"], ["cat"], axis=2), helper.make_node("Conv", ["cat", "W"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "T"]),
         helper.make_tensor_value_info("state_0", TensorProto.FLOAT, [1, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "l"])], [_f("W", (4, 1, 3))])
    onnx.save(stream, str(tmp_path / "model_stream_int8.onnx"))
    _manifest_write(tmp_path, {"fp32": "model_fp32.onnx", "int8": "model_int8.onnx", "stream_int8": "model_stream_int8.onnx"},
                    streaming={"chunk": 8, "states": [{"name": "state_0", "shape": [1, 1, 2]}], "file_keys": {"int8": "stream_int8"}})
    r = CliRunner().invoke(budget_command, [str(tmp_path), "--mcu", "m7", "--json"])
    assert r.exit_code == 0, r.output
    b = json.loads(r.output)["budget"]
    assert b["inferences_per_s"] == 125 / 8 and b["state_inputs"] == ["state_0"] and b["state_bytes"] == 8
    assert b["macs_per_inference"] == 4 * 8 * 3  # chunk 8 + 2 state samples, conv k=3
    r = CliRunner().invoke(budget_command, [str(tmp_path), "--variant", "pruned", "--json"])
    assert r.exit_code == 2 and "this bundle has" in r.output and "Traceback" not in r.output
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        bundle_resolve(tmp_path)


def test_edge_bundle_fits_a_cortex_m4f_and_the_paper_seed_does_not(tiny_bundle_factory, tmp_path):
    """The int8 edge-tcn bundle passes the nRF52832 (Cortex-M4F, 64 MHz); the paper-size
    MSCA-CSSC-UNet at the seeds' one-sample stride is far beyond every profile."""
    torch = pytest.importorskip("torch")
    from edgebp.firmware_sim.budget import bundle_resolve, mcu_check, onnx_budget
    from edgebp.firmware_sim.mcu_profiles import MCU_PROFILES, mcu_profile
    from edgebp.train.zoo import model_build

    path, meta = bundle_resolve(tiny_bundle_factory("edge-tcn"))
    b = onnx_budget(path, fs=meta["fs"], hop=meta["hop"], window=meta.get("window"), state_inputs=meta.get("state_inputs"))
    assert mcu_check(b, mcu_profile("nrf52832")).ok

    paper = model_build("msca-cssc-unet", "paper", in_channels=1).eval()
    onnx_path = tmp_path / "paper.onnx"
    torch.onnx.export(paper, (torch.zeros(1, 1, 88),), str(onnx_path), dynamo=True, external_data=False, opset_version=18)
    pb = onnx_budget(onnx_path, fs=125.0, hop=1)
    profiles = MCU_PROFILES.values() if isinstance(MCU_PROFILES, dict) else MCU_PROFILES
    for mcu in profiles:
        c = mcu_check(pb, mcu)
        assert not c.ok
    assert pb.weight_bytes > 100 * 2**20  # ~220 MB of fp32 weights
    assert pb.macs_per_inference * 125 > 1e11  # > 100 G MAC per second of signal
