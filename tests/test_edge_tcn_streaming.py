"""Edge-TCN: causal, streaming equal to offline for every chunk size, external-state ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgebp.train.models_tcn import EdgeTCN, EdgeTCNStreaming
from edgebp.train.zoo import model_build

torch.set_num_threads(1)


def _model(in_channels: int = 2, seed: int = 0) -> EdgeTCN:
    torch.manual_seed(seed)
    m = model_build("edge-tcn", in_channels=in_channels).eval()
    with torch.no_grad():  # larger weights than at init, so the residual branches matter
        for p in m.parameters():
            p.mul_(1.5)
    return m


def _stream(m: EdgeTCN, x: torch.Tensor, chunk: int) -> torch.Tensor:
    states = m.stream_init(x.shape[0])
    ys = []
    with torch.no_grad():
        for s in range(0, x.shape[-1], chunk):
            y, states = m.stream_step(x[..., s : s + chunk], states)
            ys.append(y)
    return torch.cat(ys, dim=-1)


@pytest.mark.parametrize("chunk", [1, 7, 125, 700])
def test_streaming_equals_offline(chunk):
    # float32 throughout: the difference is rounding of identical sums in another order
    m = _model()
    x = torch.randn(2, 2, 700)
    with torch.no_grad():
        ref = m(x)
    out = _stream(m, x, chunk)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=0), float((out - ref).abs().max())
    assert float(ref.std()) > 1e-3  # the comparison is not between two near-zero signals


def test_streaming_float64_is_tight():
    m = _model(in_channels=1).double()
    x = torch.randn(1, 1, 400, dtype=torch.float64)
    with torch.no_grad():
        ref = m(x)
    assert torch.allclose(_stream(m, x, 13), ref, atol=1e-12, rtol=0)


def test_causal_and_receptive_field():
    m = _model()
    rf = m.receptive_field
    assert rf == 253  # 2.02 s at 125 Hz
    x = torch.randn(1, 2, 600, requires_grad=True)
    t = 500
    m(x)[0, 0, t].backward()
    touched = torch.nonzero(x.grad.abs().sum(dim=1)[0]).flatten()
    assert int(touched.max()) == t  # nothing after the output sample
    assert t - int(touched.min()) <= rf - 1  # nothing older than the receptive field
    assert t - int(touched.min()) > rf // 2
    # changing the future leaves the past untouched
    x2 = x.detach().clone()
    x2[..., 300:] += 5.0
    with torch.no_grad():
        assert torch.equal(m(x.detach())[..., :300], m(x2)[..., :300])


def test_stream_state_shapes_and_errors():
    m = _model()
    states = m.stream_init(batch=3)
    assert len(states) == 12
    assert [tuple(s.shape) for s in states] == [(3, 24, 2 * d) for d in (1, 2, 4, 8, 16, 32) for _ in range(2)]
    assert EdgeTCNStreaming(m).state_shapes == [(24, 2 * d) for d in (1, 2, 4, 8, 16, 32) for _ in range(2)]
    with pytest.raises(ValueError, match="expected 12 states"):
        m.stream_step(torch.zeros(1, 2, 4), states[:-1])


def test_streaming_wrapper_onnx_external_state(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = _model()
    w = EdgeTCNStreaming(m).eval()
    chunk = 25
    states = m.stream_init(1)
    names_in = ["x"] + [f"state_{i}" for i in range(len(states))]
    names_out = ["y"] + [f"state_{i}_out" for i in range(len(states))]
    path = tmp_path / "edge_tcn_stream.onnx"
    torch.onnx.export(
        w, (torch.randn(1, 2, chunk), *states), str(path), dynamo=True, external_data=False, opset_version=18,
        input_names=names_in, output_names=names_out,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 2, 20 * chunk)
    with torch.no_grad():
        ref = m(x).numpy()
    st = [s.numpy() for s in states]
    ys = []
    for s in range(0, x.shape[-1], chunk):
        out = sess.run(None, {"x": x[..., s : s + chunk].numpy(), **dict(zip(names_in[1:], st))})
        ys.append(out[0])
        st = out[1:]
    np.testing.assert_allclose(np.concatenate(ys, axis=-1), ref, atol=1e-4, rtol=0)
