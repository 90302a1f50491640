"""Structured pruning of every zoo model (edgebp.export.prune) and the pruned bundle.

The ratio, as ``edgebp export --prune R`` defines it: every prunable group (channels that must
go together: residual adds, skip concatenations, LSTM gates, the INN-PAR squeezes) keeps
``round(n * (1 - R))`` of its ``n`` channels; the layers meeting the model's input and output
keep their inputs and outputs. So the pruned model should have the parameters of the same
architecture built at widths x (1 - R), and the expected parameter reduction is
``1 - params(model at widths x (1 - R)) / params(model)`` (about 75 % for R = 0.5 where most
weights sit between two pruned groups). Each zoo model's measured reduction must be within
10 % (relative) of that expectation, and the pruned model, exported to ONNX, must run in ONNX
Runtime and match its torch model.

Small models built in-process keep this fast; one end-to-end tiny export with --prune of
edge-tcn checks the bundle (files, hashes, pruned streaming states, gates), the shared variant
names and ``edgebp run --variant pruned-int8``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebp.export import onnx_export
from edgebp.export.prune import _keep_count, model_prune, prune_groups
from edgebp.train.zoo import model_build

#: name -> (window, small build kwargs, the same built at half widths, at 3/4 widths)
CASES = {
    "edge-tcn": (64, dict(channels=8, dilations=(1, 2), head_channels=8), dict(channels=4, head_channels=4), dict(channels=6, head_channels=6)),
    "msca-cssc-unet": (32, dict(widths=(4, 8, 16)), dict(widths=(2, 4, 8)), dict(widths=(3, 6, 12))),
    "cbpe-net": (32, dict(widths=(4, 8, 16)), dict(widths=(2, 4, 8)), dict(widths=(3, 6, 12))),
    "pulse2pressure": (48, dict(hidden=16, layers=2, mlp=(8, 4)), dict(hidden=8, mlp=(4, 2)), dict(hidden=12, mlp=(6, 3))),
    "inn-par": (64, dict(blocks=1, feats=4), dict(feats=2), dict(feats=3)),
}
#: ORT vs torch, fp32, on unit-variance input: measured max |diff| 2.4e-7 .. 1.2e-6 over
#: these five models (outputs of order 0.1-1); 1e-4 leaves room for other CPUs' kernels
#: and still catches a mis-sliced channel (differences of order the output itself)
ORT_ATOL = 1e-4


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _build(name: str, **kw) -> torch.nn.Module:
    window, base = CASES[name][0], CASES[name][1]
    torch.manual_seed(0)
    return model_build(name, "edge", window=window, **{**base, **kw}).eval()


@pytest.mark.parametrize("name", list(CASES))
def test_parameters_fall_by_the_ratio_and_onnx_matches(name, tmp_path):
    window, _, half, three_q = CASES[name]
    for ratio, reduced in ((0.5, half), (0.25, three_q)):
        m = _build(name)
        p0 = _params(m)
        x = torch.randn(4, m.in_channels, window, generator=torch.Generator().manual_seed(1))
        rep = model_prune(m, x[:2], ratio)
        expected = 1.0 - _params(_build(name, **reduced)) / p0
        measured = 1.0 - _params(m) / p0
        assert rep["params_before"] == p0 and rep["params_after"] == _params(m)
        assert abs(measured - expected) <= 0.10 * expected, (name, ratio, measured, expected)
        assert all(g["kept"] == _keep_count(g["channels"], ratio) for g in rep["groups"])
    # the last pruned model (0.25) through ONNX Runtime
    # the TorchScript exporter (export's fallback; ~0.5 s against ~9 s for dynamo here): the
    # end-to-end test below goes through export's own dynamo path
    # (INN-PAR's gradient kernel is built in forward, which only dynamo exports)
    path = tmp_path / "pruned.onnx"
    if name == "inn-par":
        onnx_export.onnx_export_model(m, path, m.in_channels, window, dynamic_length=False)
    else:
        torch.onnx.export(m, (x[:1],), str(path), dynamo=False, opset_version=onnx_export.OPSET, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = m(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < ORT_ATOL, np.max(np.abs(got - ref))


@pytest.mark.parametrize("name", ["edge-tcn", "pulse2pressure", "inn-par"])
def test_dead_channels_are_removed_exactly(name):
    """A model whose channels-to-go are dead (every slice of them zero) computes the same
    after pruning: the groups remove exactly the coupled slices (a wrong index, a missed
    consumer or a broken gate block changes the output). Not for the UNets: their attention
    adds channel-position encodings and normalises over channel tokens, so removing a token is
    never exact there."""
    m = _build(name)
    ratio = 0.5
    _, groups = prune_groups(m)
    with torch.no_grad():
        for g in groups:
            for k in range(_keep_count(g.n, ratio), g.n):
                for mem in g.members:
                    getattr(mem.module, mem.name).index_fill_(mem.dim, torch.tensor(mem.index(k)), 0.0)
    x = torch.randn(3, m.in_channels, CASES[name][0], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y0 = m(x)
    model_prune(m, x[:2], ratio)
    with torch.no_grad():
        y1 = m(x)
    torch.testing.assert_close(y1, y0, atol=2e-6, rtol=1e-5)


def test_lstm_units_are_gate_coupled():
    """Pulse2Pressure: every layer and every gate block shrinks together (not the head alone)."""
    m = _build("pulse2pressure")
    model_prune(m, torch.randn(2, 1, 48), 0.5)
    assert m.lstm.hidden_size == 8
    for k in range(m.lstm.num_layers):
        assert getattr(m.lstm, f"weight_ih_l{k}").shape[0] == 4 * 8 and getattr(m.lstm, f"weight_hh_l{k}").shape == (32, 8)
    assert m.head[0].in_features == 8


@pytest.mark.parametrize("bad", ["1", "1.5", "-0.2", "nan"])
def test_prune_ratio_outside_0_1_is_one_line(bad, tmp_path):
    from click.testing import CliRunner

    from edgebp.export.cli import export_command
    from edgebp.export.prune import prune_ratio_check

    r = CliRunner().invoke(export_command, [str(tmp_path), "--prune", bad, "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--prune" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    with pytest.raises(ValueError, match=r"within \(0, 1\)"):
        prune_ratio_check(float(bad) if bad != "nan" else float("nan"))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pruned_bundle(tiny_run_factory, tmp_path_factory):
    from edgebp.export.pipeline import export_run

    out = tmp_path_factory.mktemp("bundle-tcn-pruned")
    report = export_run(tiny_run_factory("edge-tcn"), out, int8=True, prune=0.5, targets=("ort",), calib_windows=16, force=True,
                        finetune_epochs=1, max_records=2, stream_calib_records=2)
    return out, report


def test_pruned_edge_tcn_bundle(pruned_bundle, tiny_cohort, tmp_path):
    from edgebp.runtime.bundle import bundle_load, file_sha256, manifest_validate
    from edgebp.runtime.cli import runtime_precision
    from edgebp.variants import BENCH_VARIANTS, EVALUATE_VARIANTS, RUNTIME_VARIANTS

    out, report = pruned_bundle
    b = bundle_load(out)
    m = b.manifest
    f = m["files"]
    for key, name in (("pruned", "model_pruned.onnx"), ("pruned_int8", "model_pruned_int8.onnx"),
                      ("stream_pruned_fp32", "model_stream_pruned_fp32.onnx"), ("stream_pruned_int8", "model_stream_pruned_int8.onnx")):
        assert f[key] == name and m["sha256"][name] == file_sha256(out / name)
    s = m["streaming"]
    assert s["file_keys"]["pruned"] == "stream_pruned_fp32" and s["file_keys"]["pruned-int8"] == "stream_pruned_int8"
    assert [x["name"] for x in s["pruned_states"]] == [x["name"] for x in s["states"]]
    # half the channels of every state (the residual stream and each block's inner channels)
    assert [x["shape"][1] for x in s["pruned_states"]] == [x["shape"][1] // 2 for x in s["states"]]
    # the same gates as the other int8 models, passed
    gates = {g["name"]: g for g in m["validation"]["gates"]}
    for g in ("pruned_int8_delta_mae", "pruned_int8_p99_abs_diff", "stream_pruned_int8_delta_mae", "stream_pruned_int8_p99_abs_diff"):
        assert gates[g]["passed"] and gates[g]["value"] is not None, gates.get(g)
    p = m["pruning"]
    assert 0.6 < 1 - p["params_after"] / p["params_before"] < 0.85  # 0.5 of the channels: ~75 % of the weights
    for ft in (p["finetune"], p["finetune_unpruned"]):
        losses = [e["val_loss"] for e in ft["epochs"]]
        assert [e["epoch"] for e in ft["epochs"]] == [0, 1] and ft["best_epoch"] == int(np.argmin(losses))
    assert len(p["comparison"]) == 3 and p["onnx"]["check"]["max_abs_diff_mmHg"] < 0.01
    md = (out / "report.md").read_text()
    assert "## Pruning" in md and "unpruned, fine-tuned 1 epochs" in md and "stream-pruned-int8" in md
    # a pruned variant without its states is refused
    bad = json.loads((out / "manifest.json").read_text())
    del bad["streaming"]["pruned_states"]
    with pytest.raises(ValueError, match="pruned_states"):
        manifest_validate(bad, "manifest.json")
    # the shared variant names
    for names in (RUNTIME_VARIANTS, EVALUATE_VARIANTS):
        assert {"pruned", "pruned-int8", "stream-pruned-int8"} <= set(names)
    assert "pruned-int8" in BENCH_VARIANTS
    assert runtime_precision("stream-pruned-int8", True, "b") == "pruned-int8"

    # edgebp run --variant pruned-int8 on the streaming bundle: the pruned int8 streaming model
    from edgebp.io import read_records
    from edgebp.runtime.protocol import StreamHeader, header_encode_text, samples_encode_text

    rec = next(iter(read_records(tiny_cohort)))
    chans = list(m["inputs"])
    fs = rec.get(chans[0]).fs
    n = int(20 * fs)
    gains = {"ecg": 2.0**-12, "ppg": 2.0**-14}
    raw = np.stack([np.round(rec.get(c).signal[:n] / gains[c]).astype(np.int64) for c in chans], axis=1)
    h = StreamHeader(fs, chans, ["NU"] * len(chans), [24] * len(chans), [gains[c] for c in chans], [0.0] * len(chans), device="test")
    log = tmp_path / "serial.log"
    log.write_bytes(header_encode_text(h) + samples_encode_text(np.arange(n) % 65536, raw))
    summ = tmp_path / "s.json"
    exe = str(Path(sys.executable).with_name("edgebp"))
    r = subprocess.run([exe, "run", str(out), "--variant", "pruned-int8", "--stream", str(log), "--out", str(tmp_path / "bp.csv"),
                        "--summary", str(summ)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sm = json.loads(summ.read_text())
    assert sm["variant"] == "pruned-int8" and sm["outputs"] > 0


def test_requantize_covers_the_pruned_models(pruned_bundle, tmp_path):
    """``python -m edgebp.export.requantize`` on a pruned bundle re-quantizes the pruned window
    and streaming int8 models too (7-bit weights) and validates them by the pruned gates."""
    import onnx
    from onnx import numpy_helper

    from edgebp.export.requantize import bundle_requantize
    from edgebp.runtime.bundle import bundle_load

    src, _ = pruned_bundle
    rep = bundle_requantize(src, tmp_path / "rq")
    names = {g["name"] for g in rep["gates"]}
    assert rep["accepted"] and {"pruned_int8_p99_abs_diff", "stream_pruned_int8_p99_abs_diff"} <= names
    b = bundle_load(tmp_path / "rq")
    for k in ("pruned_int8", "stream_pruned_int8"):
        m = onnx.load(str(b.file(k)))
        init = {t.name: t for t in m.graph.initializer}
        w = [numpy_helper.to_array(init[n.input[0]]) for n in m.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].data_type == onnx.TensorProto.INT8]
        w = [a for a in w if a.size > 1]
        assert w and max(int(abs(a).max()) for a in w) <= 64, k


def test_evaluate_scores_the_window_pruned_int8_model(pruned_bundle, tiny_cohort):
    """``edgebp evaluate BUNDLE --variant pruned-int8`` scores model_pruned_int8.onnx (the report
    names the file); it used to end in a KeyError for that variant."""
    from click.testing import CliRunner

    from edgebp.cli import cli

    out, _ = pruned_bundle
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--variant", "pruned-int8", "--data", str(tiny_cohort), "--split", "test"])
    assert r.exit_code == 0, r.output[-2000:]
    assert "model_pruned_int8.onnx" in r.output
