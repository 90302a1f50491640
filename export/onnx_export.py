"""Torch -> ONNX: one file (no ``.onnx.data`` sidecar), opset >= 17, dynamic batch, and the
window length dynamic where the model allows it, checked at two lengths against torch."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

log = logging.getLogger(__name__)

OPSET = 18


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str], dynamic: dict) -> str:
    """Export with the dynamo exporter, falling back to the TorchScript one; returns which."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = {n: {int(k): f"{n}_{v}" for k, v in dynamic.get(n, {}).items()} for n in input_names + output_names if n in dynamic}
        try:
            torch.onnx.export(module, args, str(path), dynamo=True, external_data=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names, dynamic_axes=axes or None, verbose=False)
            _check_single_file(path)
            _strip_debug_info(path)
            return "dynamo"
        except Exception as exc:  # noqa: BLE001 - some graphs (LSTM, attention) only export one way
            errors.append(f"dynamo: {type(exc).__name__}: {str(exc)[:300]}")
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=input_names,
                              output_names=output_names, dynamic_axes=axes or None)
            _check_single_file(path)
            _strip_debug_info(path)
            return "torchscript"
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torchscript: {type(exc).__name__}: {str(exc)[:300]}")
    raise RuntimeError(f"ONNX export to {path} failed: " + " | ".join(errors))


def _check_single_file(path: Path) -> None:
    side = Path(str(path) + ".data")
    if side.exists():
        # fold external data back into one file: a bundle is one ONNX per model
        model = onnx.load(str(path), load_external_data=True)
        onnx.save_model(model, str(path), save_as_external_data=False)
        side.unlink()
    onnx.checker.check_model(str(path))


def _strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node debug metadata and doc strings.

    The dynamo exporter stores a Python stack trace, FX node text and class hierarchy on every
    node: for a small model that is a quarter of the file (and more of an int8 one, whose
    weights shrink while the names do not), and it embeds the build machine's absolute source
    paths in a shipped artefact. Nothing at run time reads it.
    """
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    model.graph.doc_string = ""
    onnx.save_model(model, str(path))


def onnx_export_model(model: torch.nn.Module, path: Path, in_channels: int, window: int, dynamic_length: bool) -> dict:
    """Export a window/waveform model with input ``x`` (B, C, T) and output ``y``."""
    x = torch.randn(2, in_channels, window)
    dyn = {"x": {0: "batch", **({2: "time"} if dynamic_length else {})}, "y": {0: "batch", **({2: "time"} if dynamic_length else {})}}
    how = _export(model, (x,), path, ["x"], ["y"], dyn)
    return {"path": str(path), "exporter": how, "opset": OPSET, "dynamic_length": dynamic_length}


def onnx_check_against_torch(model: torch.nn.Module, path: Path, windows: np.ndarray, scale: float, lengths: list[int] | None = None) -> dict:
    """Max |ORT - torch| (scaled to mmHg) on real windows, at batch 1 and at each length."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    model.eval()
    worst = 0.0
    checked = []
    lens = lengths or [windows.shape[-1]]
    for L in lens:
        xb = np.ascontiguousarray(windows[:, :, :L], dtype=np.float32)
        for batch in (xb[:1], xb):
            with torch.no_grad():
                ref = model(torch.from_numpy(batch)).numpy()
            got = sess.run(None, {name: batch})[0]
            if got.shape != ref.shape:
                raise RuntimeError(f"{path}: ORT output shape {got.shape} differs from torch {ref.shape} at length {L}")
            worst = max(worst, float(np.max(np.abs(got - ref))) * scale)
        checked.append(L)
    return {"max_abs_diff_mmHg": worst, "lengths_checked": checked}


def onnx_export_streaming(stream_module: torch.nn.Module, path: Path, in_channels: int, chunk: int, states: list[torch.Tensor]) -> dict:
    """Export the external-state streaming form: inputs x + state_i, outputs y + new_state_i."""
    x = torch.randn(1, in_channels, chunk)
    in_names = ["x"] + [f"state_{i}" for i in range(len(states))]
    out_names = ["y"] + [f"new_state_{i}" for i in range(len(states))]
    # the time axis is dynamic: a runtime steps any multiple of `chunk` per call (one call per
    # block when a whole file is read), with the same states and the same output
    how = _export(stream_module, (x, *states), path, in_names, out_names, {"x": {2: "time"}, "y": {2: "time"}})
    return {"path": str(path), "exporter": how, "opset": OPSET, "chunk": chunk,
            "states": [{"name": n, "shape": list(s.shape)} for n, s in zip(in_names[1:], states)]}


def onnx_param_count(path: Path) -> int:
    m = onnx.load(str(path))
    return int(sum(int(np.prod(t.dims)) for t in m.graph.initializer))
