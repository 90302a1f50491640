"""Model zoo: registry, shapes, training signal, INN-PAR invertibility, ONNX export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgebp.train.models_innpar import signal_gradient
from edgebp.train.zoo import MODEL_NAMES, ModelSpec, model_build, model_cost, model_spec

torch.set_num_threads(1)

# windows each edge model is exercised at (UNets are built per window)
WINDOWS = {
    "msca-cssc-unet": (88, 64),
    "cbpe-net": (88, 32),
    "pulse2pressure": (250, 125),
    "inn-par": (625, 256, 101),
    "edge-tcn": (300, 1),
}


def _build(name: str, window: int | None = None, preset: str = "edge", seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return model_build(name, preset, window=window if model_spec(name).fixed_window else None, **kw)


def _expected_shape(name: str, batch: int, window: int) -> tuple[int, ...]:
    return (batch, 2) if model_spec(name).output == "values" else (batch, 1, window)


# -- registry -------------------------------------------------------------------------------------


def test_registry_names_and_specs():
    assert MODEL_NAMES == ("msca-cssc-unet", "cbpe-net", "pulse2pressure", "inn-par", "edge-tcn")
    for name in MODEL_NAMES:
        spec = model_spec(name)
        assert isinstance(spec, ModelSpec) and spec.name == name
        assert spec.output in ("waveform", "values")
        assert set(spec.default_inputs) <= set(spec.allowed_inputs)
        assert len(spec.default_inputs) <= spec.max_inputs
        assert spec.window >= spec.min_window and spec.window % spec.window_multiple == 0
    assert model_spec("cbpe-net").default_inputs == ("ecg", "ppg")
    assert model_spec("edge-tcn").default_inputs == ("ppg", "ecg")
    assert model_spec("edge-tcn").streamable and model_spec("edge-tcn").causal
    assert model_spec("inn-par").needs_gradient and model_spec("inn-par").allowed_inputs == ("ppg",)
    assert model_spec("pulse2pressure").output == "values" and model_spec("pulse2pressure").export_fixed_length
    assert model_spec("msca-cssc-unet").target_index == -1 and model_spec("msca-cssc-unet").fixed_window


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="edge-tcn"):
        model_build("no-such-model")
    with pytest.raises(ValueError, match="valid models"):
        model_spec("unet")
    with pytest.raises(ValueError, match="edge, paper"):
        model_build("edge-tcn", "tiny")
    with pytest.raises(ValueError, match="'chanels'.*channels"):
        model_build("edge-tcn", chanels=8)
    with pytest.raises(ValueError, match="in_channels=2"):
        model_build("inn-par", in_channels=2)
    with pytest.raises(ValueError, match="window=16"):
        model_build("msca-cssc-unet", window=16)
    with pytest.raises(ValueError, match=r"\(B, 1, 88\)"):
        model_build("msca-cssc-unet")(torch.zeros(1, 1, 64))


def test_build_attributes_and_overrides():
    m = model_build("edge-tcn", delay=0, channels=16)
    assert m.delay == 0 and m.spec.delay == 0 and m.in_channels == 2 and m.name == "edge-tcn"
    assert model_build("edge-tcn").spec.delay == model_spec("edge-tcn").delay == 25
    assert m.receptive_field == 1 + 2 * 2 * (1 + 2 + 4 + 8 + 16 + 32)
    u = model_build("cbpe-net", window=64, in_channels=1)
    assert u.window == 64 and u.spec.window == 64 and u.in_channels == 1
    assert u.deep_supervision_weights == (0.7, 0.8, 0.9, 1.0)
    assert model_build("pulse2pressure", "paper").spec.window == 1250


# -- shapes, lengths, batch sizes -----------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_edge_forward_shapes(name):
    for window in WINDOWS[name]:
        m = _build(name, window).eval()
        for batch in (1, 3):
            x = torch.randn(batch, m.in_channels, window)
            with torch.no_grad():
                y = m(x)
            assert y.shape == _expected_shape(name, batch, window), (name, window, batch)
            assert y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_edge_preset_budget(name):
    m = _build(name)
    cost = model_cost(m)
    assert cost["params"] == sum(p.numel() for p in m.parameters())
    assert cost["params"] <= 100_000, cost
    assert cost["macs_per_window"] > 0 and cost["macs_per_second"] > 0
    if not model_spec(name).target_index:
        # back-to-back windows / streaming: a few M MAC per second of signal
        assert cost["macs_per_second"] < 5e6, cost


def test_model_cost_counts_known_layers():
    # edge-tcn: exact per-sample MACs of its convolutions
    m = model_build("edge-tcn")
    c = model_cost(m, window=100)
    ch, hc = 24, 16
    per_sample = 2 * ch + 12 * ch * ch * 3 + ch * hc + hc
    assert c["macs_per_window"] == 100 * per_sample
    assert c["macs_per_second"] == pytest.approx(125 * per_sample)
    # an LSTM is counted by hooks: 4 H (I + H) per step, plus the MLP
    p = model_build("pulse2pressure", hidden=8, layers=1, mlp=(4,))
    c = model_cost(p, window=10)
    assert c["macs_per_window"] == 10 * 4 * 8 * (1 + 8) + 8 * 4 + 4 * 2
    # the UNets as published: one window per output sample
    u = model_cost(model_build("msca-cssc-unet"))
    assert u["hop"] == 1 and u["macs_per_second"] == pytest.approx(125 * u["macs_per_window"])


def test_unet_batch_one_training_mode_and_deep_supervision():
    m = _build("msca-cssc-unet", 32).train()
    outs = m.forward_train(torch.randn(1, 1, 32))
    assert len(outs) == 4 and all(o.shape == (1, 1, 32) for o in outs)
    m.eval()
    x = torch.randn(2, 1, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m.forward_train(x)[-1])


def test_unet_heads_divide_attention_dims():
    m = model_build("msca-cssc-unet", "paper", window=88)
    heads = {att.length: att.heads for mods in m.attn.values() for att in mods}
    assert heads == {88: 4, 44: 4, 22: 2, 11: 1}  # the published head counts


# -- INN-PAR ------------------------------------------------------------------------------------


def test_innpar_inverse_is_exact():
    m = _build("inn-par").eval()
    with torch.no_grad():
        for p in m.parameters():  # move away from the initial point, as after training
            p.add_(0.05 * torch.randn_like(p))
        z = torch.randn(3, 2, 628)
        y = m.forward_pair(z)
        back = m.inverse(y)
    assert not torch.allclose(y, z, atol=1e-2)
    assert torch.allclose(back, z, atol=1e-5, rtol=0), float((back - z).abs().max())


def test_innpar_gradient_channel_inside():
    m = _build("inn-par").eval()
    x = torch.randn(2, 1, 256)
    with torch.no_grad():
        abp, grad = m.forward_full(x)
        pair = m.forward_pair(torch.cat([x, signal_gradient(x)], dim=1))
    assert torch.allclose(abp, pair[:, :1]) and torch.allclose(grad, pair[:, 1:])
    assert torch.allclose(m(x), abp)
    g = signal_gradient(torch.arange(6.0).view(1, 1, 6) ** 2)
    assert g.flatten().tolist() == [1.0, 4.0, 8.0, 12.0, 16.0, -16.0]
    # a length that is not a multiple of 4 is zero-padded inside and cropped back
    assert m.forward_full(torch.randn(1, 1, 625))[1].shape == (1, 1, 625)
    with pytest.raises(ValueError, match="multiple of 4"):
        m.inverse(torch.zeros(1, 2, 625))


# -- a few training steps reduce the loss -------------------------------------------------------


def _toy_batch(name: str, window: int, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(window, dtype=torch.float32) / 125.0
    phase = torch.rand(4, 1, 1, generator=g) * 6.28
    rate = 1.0 + torch.rand(4, 1, 1, generator=g)
    x = torch.sin(6.28 * rate * t + phase).repeat(1, in_channels, 1)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    if model_spec(name).output == "values":
        y = torch.cat([rate.view(4, 1), x.std(dim=-1)[:, :1]], dim=1)
    else:
        y = 0.5 * torch.sin(6.28 * rate * t + phase - 0.5) + rate
    return x, y


def _loss(m, x, y) -> torch.Tensor:
    if hasattr(m, "forward_train"):
        outs = m.forward_train(x)
        return sum(w * (o - y).abs().mean() for o, w in zip(outs, m.deep_supervision_weights))
    if hasattr(m, "forward_full"):
        abp, grad = m.forward_full(x)
        return (abp - y).abs().mean() + (grad - signal_gradient(y)).abs().mean()
    return (m(x) - y).abs().mean()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_steps_reduce_loss(name):
    window = {"pulse2pressure": 125, "inn-par": 128, "edge-tcn": 256}.get(name, 64)
    m = _build(name, window).train()
    x, y = _toy_batch(name, window, m.in_channels)
    # the thin (4-channel) top level of the edge UNets wants a larger step
    opt = torch.optim.Adam(m.parameters(), lr=1e-2 if model_spec(name).fixed_window else 3e-3)
    with torch.no_grad():
        m.eval()
        before = float(_loss(m, x, y))
        m.train()
    for _ in range(40):
        opt.zero_grad()
        loss = _loss(m, x, y)
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        after = float(_loss(m, x, y))
    assert after < 0.7 * before, (name, before, after)


# -- paper presets ------------------------------------------------------------------------------

PAPER_PARAMS = {
    "msca-cssc-unet": (54e6, 57e6),  # published 55.4 M
    "cbpe-net": (54e6, 57e6),
    "pulse2pressure": (5.2e6, 5.6e6),  # published ~5.4 M
    "inn-par": (0.35e6, 0.39e6),  # published 0.37 M
    "edge-tcn": (1, 100_000),  # no publication: paper == edge
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_paper_preset_builds_and_runs(name):
    spec = model_spec(name)
    window = {"pulse2pressure": 125, "inn-par": 64}.get(name, spec.min_window)
    torch.manual_seed(0)
    m = model_build(name, "paper", window=window).eval()
    n = sum(p.numel() for p in m.parameters())
    lo, hi = PAPER_PARAMS[name]
    assert lo <= n <= hi, (name, n)
    with torch.no_grad():
        y = m(torch.randn(1, m.in_channels, window))
    assert y.shape == _expected_shape(name, 1, window) and torch.isfinite(y).all()


def test_paper_cost_matches_publications():
    # MSCA-CSSC-UNet: ~2.4 GFLOP per 88-sample window; INN-PAR: ~157 MFLOP per 5 s
    u = model_cost(model_build("msca-cssc-unet", "paper"))
    assert 1.1e9 < u["macs_per_window"] < 1.3e9
    i = model_cost(model_build("inn-par", "paper"))
    assert 70e6 < i["macs_per_window"] < 85e6


# -- ONNX export ---------------------------------------------------------------------------------


def onnx_export_check(model: torch.nn.Module, shape: tuple[int, ...], path, time_dim=None, lengths=(), atol: float = 1e-4) -> None:
    """Export with dynamo (opset 18, one file, dynamic batch; dynamic time when ``time_dim`` is given)
    and compare ONNX Runtime with torch at batch 1 and 3 (and at each of ``lengths``)."""
    ort = pytest.importorskip("onnxruntime")
    model = model.eval()
    dims = {0: torch.export.Dim("batch")} | ({2: time_dim} if time_dim is not None else {})
    torch.onnx.export(
        model,
        (torch.randn(2, *shape[1:]),),
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=18,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes={"x": dims},
    )
    assert not (path.parent / (path.name + ".data")).exists()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in [(1, shape[2]), (3, shape[2])] + [(1, n) for n in lengths]:
        x = torch.randn(batch, shape[1], length)
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run(None, {"x": x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_edge_onnx_export_matches_torch(name, tmp_path):
    # the LSTM export unrolls the trace length (export time grows with it; the graph is tied to it)
    window = {"pulse2pressure": 50, "inn-par": 628, "edge-tcn": 500}.get(name, 88)
    m = _build(name, window)
    time_dim, lengths = None, ()
    if not model_spec(name).export_fixed_length:
        # the convolutional models export with a dynamic length (INN-PAR: a multiple of 4)
        time_dim = 4 * torch.export.Dim("quarter") if name == "inn-par" else torch.export.Dim("time")
        lengths = (256, 1000) if name == "inn-par" else (1, 777)
    onnx_export_check(m, (1, m.in_channels, window), tmp_path / f"{name}.onnx", time_dim, lengths)


@pytest.mark.slow
def test_paper_unet_onnx_export(tmp_path):
    """The 55 M-parameter MSCA-CSSC-UNet exports as one ~220 MB file (about 20 s, 1.5 GB RAM)."""
    torch.manual_seed(0)
    m = model_build("msca-cssc-unet", "paper")
    onnx_export_check(m, (1, 1, 88), tmp_path / "paper.onnx")


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        model_spec("edge-tcn").window = 5
