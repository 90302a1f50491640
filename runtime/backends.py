"""Inference backends behind one small interface: ONNX Runtime (CPU, fp32/int8), TensorRT
(GPU; imported lazily, used when present) and torch (development only; imported lazily).

Every backend takes named float32 arrays and returns the outputs in graph order.

Examples
--------
>>> backend_names()
('ort', 'tensorrt', 'torch')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("ort", "tensorrt", "torch")


def backend_names() -> tuple[str, ...]:
    return BACKENDS


class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class OrtBackend:
    """ONNX Runtime on the CPU."""

    name = "ort"

    def __init__(self, onnx_path: str | Path, threads: int = 1, optimized_model_path: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimized_model_path:
            so.optimized_model_filepath = str(optimized_model_path)
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


class TensorRTBackend:
    """TensorRT engine built from the bundle's TensorRT-form ONNX (needs tensorrt and a GPU).

    Written against the TensorRT 10 Python API (``tensorrt``) with ``cuda-python`` for device
    memory; both are imported only here, so a CPU machine never needs them.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, precision: str = "int8", max_batch: int = 64):
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:  # the normal case on CPU machines
            raise RuntimeError(f"TensorRT backend unavailable: {exc}. Install tensorrt and cuda-python on a machine with an NVIDIA GPU, or use --backend ort") from exc
        self._trt, self._cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(Path(onnx_path).read_bytes()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the model: {errs}")
        config = builder.create_builder_config()
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: Q/DQ nodes carry the scales
        elif precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = list(t.shape)
            lo = [1 if d == -1 else d for d in shape]
            hi = [max_batch if (d == -1 and k == 0) else (4096 if d == -1 else d) for k, d in enumerate(shape)]
            profile.set_shape(t.name, lo, lo, hi)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"{onnx_path}: TensorRT engine build failed")
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        _, self.stream = cudart.cudaStreamCreate()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cudart = self._cudart
        kind_h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ptrs = []
        for name in self.input_names:
            a = np.ascontiguousarray(feeds[name], dtype=np.float32)
            self.context.set_input_shape(name, a.shape)
            _, d = cudart.cudaMalloc(a.nbytes)
            cudart.cudaMemcpyAsync(d, a.ctypes.data, a.nbytes, kind_h2d, self.stream)
            self.context.set_tensor_address(name, d)
            ptrs.append(d)
        outs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=np.float32)
            _, d = cudart.cudaMalloc(host.nbytes)
            self.context.set_tensor_address(name, d)
            ptrs.append(d)
            outs.append((host, d))
        self.context.execute_async_v3(self.stream)
        for host, d in outs:
            cudart.cudaMemcpyAsync(host.ctypes.data, d, host.nbytes, kind_d2h, self.stream)
        cudart.cudaStreamSynchronize(self.stream)
        for d in ptrs:
            cudart.cudaFree(d)
        return [h for h, _ in outs]


def backend_open(kind: str, path: str | Path, threads: int = 1, precision: str = "int8") -> Backend:
    """Open a backend by name; ``kind`` is one of :data:`BACKENDS`."""
    if kind == "ort":
        return OrtBackend(path, threads=threads)
    if kind == "tensorrt":
        return TensorRTBackend(path, precision=precision)
    if kind == "torch":
        # development only: the torch backend lives on the training side, so nothing in the
        # runtime package imports torch
        from importlib import import_module

        return import_module("edgebp.train.torch_backend").TorchBackend(path)
    raise ValueError(f"backend {kind!r} is not valid; choose one of: {', '.join(BACKENDS)}")


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT and a CUDA device can be used here, and why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt package is not installed (it cannot be installed on this CPU-only machine)"
    try:
        from cuda.bindings import runtime as cudart

        err, n = cudart.cudaGetDeviceCount()
        if int(err) != 0 or n < 1:
            return False, "no CUDA device"
    except ImportError:
        return False, "cuda-python is not installed"
    return True, ""
