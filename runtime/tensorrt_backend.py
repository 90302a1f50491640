"""The TensorRT backend: engines built strongly typed from a bundle's TensorRT-form ONNX, cached
on disk, run with buffers allocated once per shape in pinned host memory.

Written against the TensorRT 10 Python API (``tensorrt>=10,<11``) and the CUDA runtime
bindings of ``cuda-python`` (``cuda.bindings.runtime``, which exists from cuda-python 12.6.1).
Both are imported only inside the functions that need them, so this module imports on any
machine (no GPU, no TensorRT) and the CPU-side parts (profiles, splitting, the cache's keys and
files) are tested there.

- **Strongly typed.** The network is created with
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: the precision of every layer comes from the
  graph (the Q/DQ nodes of the int8 form, the fp16 tensors of the fp16 form), never from the
  weakly typed ``BuilderFlag.INT8``/``FP16`` (deprecated since TensorRT 10.12, gone in 11).
- **Engine cache.** ``<cache>/tensorrt/`` (``$EDGEBP_CACHE``, default ``~/.cache/edgebp``),
  keyed by the model's sha256, the TensorRT version, the GPU's name and compute capability,
  the precision and the optimisation profile: an engine is only valid for the TensorRT
  version and GPU that built it. ``edgebp cache info`` / ``clean --what tensorrt`` know it.
- **Profiles** cover the shapes the runtime uses: batch 1..``max_batch`` and, for a window
  model, its window length; for a streaming model, step lengths 1..``max_step`` around the
  manifest's chunk. An input beyond the profile is split (batch pieces; time pieces carrying
  the states of a streaming model), never refused; an input below it is an error naming it.
- **Every return value is checked**: a failed CUDA call or a ``False`` from TensorRT raises
  :class:`TensorRTError` naming the call and the model file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

#: What to install; the one line ``--backend tensorrt`` prints without it.
INSTALL_HINT = "pip install 'edgebp[tensorrt]' (tensorrt>=10,<11 and cuda-python>=12.6.1) on a machine with an NVIDIA GPU and driver"
#: TensorRT major version the code is written and pinned for.
TRT_MAJOR = 10
#: Largest batch a profile covers by default: the 64 concurrent streams the serve and GPU
#: checks measure (bigger calls are split).
MAX_BATCH = 64
#: Longest stream step (samples) a streaming profile covers: 256 steps of the default 5-sample
#: chunk, 10 s at 125 Hz. Longer calls are split into pieces that carry the states.
MAX_STEP = 1280
#: Engine files kept in memory per process (each stream's backend shares its engine).
ENGINE_CACHE_SUBDIR = "tensorrt"
#: Different input shape sets whose buffers a backend keeps (each set: device + pinned host).
MAX_SHAPE_SETS = 8
#: Builder workspace limit: the models here need a few MiB; 1 GiB leaves tactics room on a
#: Jetson's shared memory without taking it all.
WORKSPACE_BYTES = 1 << 30


class TensorRTError(RuntimeError):
    """A TensorRT or CUDA call failed; the message names the call and the model file."""


def cache_dir() -> Path:
    """``$EDGEBP_CACHE/tensorrt`` (default ``~/.cache/edgebp/tensorrt``): the same root every
    edgebp cache uses (:func:`edgebp.paths.cache_root`)."""
    from edgebp.paths import cache_root

    return cache_root() / ENGINE_CACHE_SUBDIR


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT 10 and a CUDA device can be used here, and if not, why (one line that
    says what to install)."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, f"the tensorrt package is not installed; install it with: {INSTALL_HINT}"
    major = str(getattr(trt, "__version__", "0")).split(".")[0]
    if major != str(TRT_MAJOR):
        return False, f"tensorrt {getattr(trt, '__version__', '?')} is installed; edgebp's TensorRT backend is written for tensorrt>={TRT_MAJOR},<{TRT_MAJOR + 1}: {INSTALL_HINT}"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False, f"cuda-python (cuda.bindings, 12.6.1 or later) is not installed; install it with: {INSTALL_HINT}"
    err, n = cudart.cudaGetDeviceCount()
    if int(err) != 0 or n < 1:
        return False, f"no CUDA device is visible ({_err_name(cudart, err)}); the TensorRT backend needs an NVIDIA GPU and its driver"
    return True, ""


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its name and dims (an int, or a str naming a symbolic dim)."""

    name: str
    dims: tuple


@dataclass
class ProfilePlan:
    """The optimisation profile of one engine: per input (min, opt, max) shapes, and how an
    input beyond ``max`` is split: along axis 0 (``batch``), and for a streaming model along
    the signal's time axis (``time_axis``, carrying states output i+1 -> input i+1)."""

    shapes: dict[str, tuple[tuple, tuple, tuple]]
    streaming: bool
    signal: str
    time_axis: int | None = None
    batch_dynamic: bool = True

    def key(self) -> str:
        return json.dumps({k: [list(s) for s in v] for k, v in sorted(self.shapes.items())}, separators=(",", ":"))

    @property
    def max_batch(self) -> int:
        return int(self.shapes[self.signal][2][0])

    @property
    def max_time(self) -> int | None:
        return None if self.time_axis is None else int(self.shapes[self.signal][2][self.time_axis])

    def check(self, feeds: dict[str, np.ndarray], where: str) -> None:
        """ValueError naming the input when a shape is below the profile or has a fixed
        dimension wrong (above the profile is split, not refused)."""
        for name, (lo, _, hi) in self.shapes.items():
            if name not in feeds:
                raise ValueError(f"{where}: input {name!r} missing (the graph takes {', '.join(self.shapes)})")
            s = tuple(np.shape(feeds[name]))
            if len(s) != len(lo):
                raise ValueError(f"{where}: input {name!r} has shape {s}, the engine takes rank {len(lo)}")
            for ax, (d, a, b) in enumerate(zip(s, lo, hi)):
                splittable = ax == 0 or (self.streaming and name == self.signal and ax == self.time_axis)
                if d < a or (d > b and not splittable):
                    raise ValueError(f"{where}: input {name!r} has shape {s}; axis {ax} must be within {a}..{b} (the engine's profile)")


def onnx_inputs(onnx: "object") -> list[InputSpec]:
    """The graph inputs of a loaded ONNX model (initializers excluded)."""
    inits = {i.name for i in onnx.graph.initializer}
    out = []
    for i in onnx.graph.input:
        if i.name in inits:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim)
        out.append(InputSpec(i.name, dims))
    return out


def profile_plan(inputs: list[InputSpec], streaming: bool, window: int | None = None, chunk: int | None = None,
                 max_batch: int = MAX_BATCH, max_step: int = MAX_STEP, where: str = "model") -> ProfilePlan:
    """The profile that covers what the runtime feeds ``inputs``.

    - axis 0 (batch): 1..``max_batch`` where the graph's batch is symbolic, else its value;
    - a window model's symbolic time axis: exactly ``window`` (the runtime always feeds whole
      windows; a minimum of 1 would be invalid for models whose reshapes need a multiple of
      their pooling factor, such as INN-PAR's);
    - a streaming model's signal time axis: 1..``max_step`` with ``chunk`` as the optimum (the
      runtime steps ``chunk`` samples; a longer call is split);
    - any other dim must be fixed in the graph (the states are).

    Examples
    --------
    >>> p = profile_plan([InputSpec("x", ("b", 2, "t"))], streaming=False, window=1012)
    >>> p.shapes["x"]
    ((1, 2, 1012), (1, 2, 1012), (64, 2, 1012))
    >>> s = profile_plan([InputSpec("x", (1, 2, "t")), InputSpec("state_0", (1, 24, 2))], streaming=True, chunk=5)
    >>> s.shapes["x"], s.max_time, s.batch_dynamic
    (((1, 2, 1), (1, 2, 5), (1, 2, 1280)), 1280, False)
    """
    if not inputs:
        raise ValueError(f"{where}: the graph has no inputs")
    sig = inputs[0]
    shapes: dict = {}
    time_axis = None
    batch_dynamic = True  # only when every input's axis 0 is symbolic
    for spec in inputs:
        lo, opt, hi = [], [], []
        for ax, d in enumerate(spec.dims):
            if ax == 0:
                if isinstance(d, int) and d > 0:
                    lo.append(d), opt.append(d), hi.append(d)
                    batch_dynamic = False
                else:
                    lo.append(1), opt.append(1), hi.append(int(max_batch))
                continue
            if isinstance(d, int) and d > 0:
                lo.append(d), opt.append(d), hi.append(d)
                continue
            if spec is not sig:
                raise ValueError(f"{where}: input {spec.name!r} axis {ax} is symbolic ({d}); only the signal's batch and time may be")
            if streaming:
                if not chunk or chunk < 1:
                    raise ValueError(f"{where}: a streaming profile needs the manifest's chunk")
                time_axis = ax
                lo.append(1), opt.append(int(min(chunk, max_step))), hi.append(int(max(max_step, chunk)))
            else:
                if not window or window < 1:
                    raise ValueError(f"{where}: the input's time axis is symbolic; a window model's profile needs the manifest's window")
                time_axis = ax
                lo.append(int(window)), opt.append(int(window)), hi.append(int(window))
        shapes[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return ProfilePlan(shapes, streaming, sig.name, time_axis if streaming else None, batch_dynamic)


# ----------------------------------------------------------------------------- splitting


def split_run(feeds: dict[str, np.ndarray], plan: ProfilePlan, run_one: Callable[[dict], list[np.ndarray]],
              n_outputs: int) -> list[np.ndarray]:
    """Run ``feeds`` through ``run_one`` in pieces that fit ``plan``: batch pieces of at most
    ``plan.max_batch`` rows (outputs concatenated on axis 0), and for a streaming model time
    pieces of at most ``plan.max_time`` samples, each piece fed the states the previous one
    returned (outputs 1.. are the new states of inputs 1.., in order; the signal's output is
    concatenated on its time axis). Exact for a causal streaming model: a long step is the same
    computation as its pieces in turn."""
    sig = plan.signal
    b = int(np.shape(feeds[sig])[0])
    mb = plan.max_batch
    if b > mb:
        if not plan.batch_dynamic:
            raise ValueError(f"input {sig!r}: batch {b} but the engine's batch is fixed at {mb}")
        parts = [split_run({k: v[i:i + mb] for k, v in feeds.items()}, plan, run_one, n_outputs) for i in range(0, b, mb)]
        return [np.concatenate([p[j] for p in parts], axis=0) for j in range(n_outputs)]
    mt = plan.max_time
    if plan.streaming and mt is not None and np.shape(feeds[sig])[plan.time_axis] > mt:
        names = list(plan.shapes)
        if n_outputs != len(names):
            raise ValueError(f"a streaming step longer than the profile ({mt}) can only be split when the graph returns one new state per state input")
        x = feeds[sig]
        T = x.shape[plan.time_axis]
        states = [feeds[n] for n in names[1:]]
        ys = []
        for t0 in range(0, T, mt):
            piece = np.take(x, np.arange(t0, min(T, t0 + mt)), axis=plan.time_axis)
            out = run_one({sig: piece} | dict(zip(names[1:], states)))
            ys.append(out[0])
            states = list(out[1:])
        return [np.concatenate(ys, axis=plan.time_axis)] + states
    return run_one(feeds)


# ----------------------------------------------------------------------------- the engine cache


def _err_name(cudart, err) -> str:
    try:
        e, name = cudart.cudaGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - naming an error must not raise another
        return str(err)


def _cuda_check(cudart, result, call: str, where: str):
    """``result`` of a cuda.bindings call is ``(err, *values)``: raise on an error, return the
    values (one value bare, several as a tuple, none as None)."""
    err, *vals = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        raise TensorRTError(f"{where}: {call} failed: {_err_name(cudart, err)}")
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else tuple(vals)


def _trt_check(ok, call: str, where: str) -> None:
    """TensorRT's Python calls return ``False`` (or None for objects) on failure."""
    if ok is False or ok is None:
        raise TensorRTError(f"{where}: TensorRT {call} failed (see the TensorRT log lines above)")


def _handle(obj) -> int:
    """The integer handle of a CUDA object (``cudaStream_t``) as TensorRT takes it."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle  # cuda-python 12.9.1+

        return int(get_cuda_native_handle(obj))
    except (ImportError, TypeError):
        return int(obj)


def gpu_identity() -> dict:
    """The current GPU's name and compute capability, the driver and CUDA runtime versions
    (needs cuda-python; raises TensorRTError when a call fails)."""
    from cuda.bindings import runtime as cudart

    dev = _cuda_check(cudart, cudart.cudaGetDevice(), "cudaGetDevice", "GPU")
    prop = _cuda_check(cudart, cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties", "GPU")
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else str(prop.name)
    drv = _cuda_check(cudart, cudart.cudaDriverGetVersion(), "cudaDriverGetVersion", "GPU")
    rtv = _cuda_check(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion", "GPU")
    return {"device": int(dev), "name": name, "compute_capability": f"{prop.major}.{prop.minor}",
            "driver_cuda": f"{drv // 1000}.{(drv % 1000) // 10}", "runtime_cuda": f"{rtv // 1000}.{(rtv % 1000) // 10}"}


def engine_key(model_sha256: str, trt_version: str, gpu_name: str, compute_capability: str, precision: str, profile_key: str) -> dict:
    """What an engine depends on, and its cache file's stem (``<precision>-<digest>``).

    Examples
    --------
    >>> k = engine_key("ab" * 32, "10.13.0", "NVIDIA H100", "9.0", "int8", "{}")
    >>> k["file"].startswith("int8-") and len(k["digest"]) == 32
    True
    """
    fields = {"model_sha256": model_sha256, "tensorrt": trt_version, "gpu": gpu_name, "compute_capability": compute_capability,
              "precision": precision, "profile": profile_key, "network": "strongly-typed"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return dict(fields, digest=digest, file=f"{precision}-{digest}.engine")


def cached_engines(root: Path | None = None) -> list[dict]:
    """The engines in the cache with their key files (for ``edgebp cache info``)."""
    root = cache_dir() if root is None else Path(root)
    out = []
    for f in sorted(root.glob("*.engine")) if root.is_dir() else []:
        meta = f.with_suffix(".json")
        info = {}
        if meta.is_file():
            try:
                info = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                info = {}
        out.append({"file": f, "meta": meta if meta.exists() else None, "bytes": f.stat().st_size, "key": info})
    return out


# the deserialised engines of this process: every stream's backend of one model shares one
_ENGINES: dict[str, object] = {}
_ENGINES_LOCK = threading.Lock()


def _build_plan(trt, logger, model_bytes: bytes, plan: ProfilePlan, precision: str, where: str) -> bytes:
    builder = trt.Builder(logger)
    _trt_check(builder, "Builder()", where)
    # strongly typed: layer precisions come from the graph (Q/DQ int8, fp16 tensors), so no
    # BuilderFlag.INT8/FP16 (weakly typed, deprecated since 10.12, removed in TensorRT 11)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    _trt_check(network, "create_network(STRONGLY_TYPED)", where)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"{where}: TensorRT cannot parse the model: {errs or 'no error given'}")
    config = builder.create_builder_config()
    _trt_check(config, "create_builder_config", where)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # fp32 means fp32: TF32 tensor-core math (on by default on Ampere and later) rounds
        # products to 10 mantissa bits, which would make "fp32" differ from ORT's fp32
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    _trt_check(profile, "create_optimization_profile", where)
    graph_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    missing = sorted(set(plan.shapes) - graph_inputs)
    if missing:
        raise TensorRTError(f"{where}: the profile names inputs the network lacks: {', '.join(missing)}")
    for name, (lo, opt, hi) in plan.shapes.items():
        profile.set_shape(name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
    idx = config.add_optimization_profile(profile)
    if idx is None or int(idx) < 0:
        raise TensorRTError(f"{where}: TensorRT refused the optimisation profile {plan.key()}")
    serialized = builder.build_serialized_network(network, config)
    _trt_check(serialized, "build_serialized_network", where)
    return bytes(serialized)


def engine_get(onnx_path: str | Path, plan: ProfilePlan, precision: str, model_bytes: bytes | None = None,
               root: Path | None = None) -> tuple[object, dict]:
    """The engine for ``onnx_path`` under ``plan``: from this process, else from the disk
    cache (key checked), else built and written there. Returns (ICudaEngine, key)."""
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    where = str(onnx_path)
    data = model_bytes if model_bytes is not None else onnx_path.read_bytes()
    gpu = gpu_identity()
    key = engine_key(hashlib.sha256(data).hexdigest(), trt.__version__, gpu["name"], gpu["compute_capability"], precision, plan.key())
    with _ENGINES_LOCK:
        if key["digest"] in _ENGINES:
            return _ENGINES[key["digest"]], key
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        _trt_check(runtime, "Runtime()", where)
        root = cache_dir() if root is None else Path(root)
        f = root / key["file"]
        meta = f.with_suffix(".json")
        engine = None
        if f.is_file() and meta.is_file():
            try:
                stored = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                stored = {}
            if all(stored.get(k) == v for k, v in key.items() if k != "file"):
                engine = runtime.deserialize_cuda_engine(f.read_bytes())
                if engine is None:
                    log.warning("%s: cached engine %s does not deserialise; rebuilding", where, f)
                else:
                    log.info("%s: TensorRT engine from the cache (%s)", where, f)
        if engine is None:
            log.info("%s: building the TensorRT engine (%s, strongly typed; cached in %s)", where, precision, root)
            blob = _build_plan(trt, logger, data, plan, precision, where)
            engine = runtime.deserialize_cuda_engine(blob)
            _trt_check(engine, "deserialize_cuda_engine", where)
            root.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".engine.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, f)  # atomic: a reader never sees half an engine
            meta.write_text(json.dumps(dict(key, source=onnx_path.name, gpu_info=gpu), indent=2))
        _ENGINES[key["digest"]] = engine
        return engine, key


# ----------------------------------------------------------------------------- the backend


@dataclass
class _Buffers:
    """Device and pinned host buffers for one set of input shapes."""

    in_shapes: dict
    out_shapes: dict
    dev: dict = field(default_factory=dict)  # name -> device pointer
    host: dict = field(default_factory=dict)  # name -> numpy view of pinned host memory
    host_ptr: dict = field(default_factory=dict)


class TensorRTBackend:
    """One model file as a TensorRT engine (needs tensorrt 10, cuda-python and a GPU).

    ``precision`` (int8/fp16/fp32) names the form for the cache key and the TF32 setting; the
    layers' types come from the graph (strongly typed). ``streaming``/``window``/``chunk``
    shape the profile (:func:`profile_plan`); a batch-1 streaming graph is given a symbolic
    batch when its ops allow it (:func:`edgebp.runtime.backends.batch_dynamic_model`), so 64
    streams can share one call.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, precision: str = "int8", max_batch: int = MAX_BATCH, streaming: bool | None = None,
                 window: int | None = None, chunk: int | None = None, max_step: int = MAX_STEP, cache_root: Path | None = None):
        ok, why = tensorrt_available()
        if not ok:
            raise RuntimeError(f"TensorRT backend unavailable: {why}")
        import onnx
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        from edgebp.runtime.backends import BatchRewriteError, batch_dynamic_model

        self._trt, self._cudart = trt, cudart
        self.path = Path(onnx_path)
        self.where = str(self.path)
        self.precision = precision
        data = self.path.read_bytes()
        model = onnx.load_from_string(data)
        inputs = onnx_inputs(model)
        if streaming is None:
            streaming = len(inputs) > 1
        if streaming and max_batch > 1 and inputs and inputs[0].dims and inputs[0].dims[0] == 1:
            try:
                data = batch_dynamic_model(self.path)
                inputs = onnx_inputs(onnx.load_from_string(data))
            except BatchRewriteError as exc:
                log.info("%s: streaming engine kept at batch 1 (%s)", self.where, exc)
        if window is None and not streaming and inputs:
            t = inputs[0].dims[-1]
            window = t if isinstance(t, int) else None
        self.plan = profile_plan(inputs, streaming, window=window, chunk=chunk, max_batch=max_batch, max_step=max_step, where=self.where)
        self.engine, self.key = engine_get(self.path, self.plan, precision, model_bytes=data, root=cache_root)
        self.context = self.engine.create_execution_context()
        _trt_check(self.context, "create_execution_context", self.where)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = _cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate", self.where)
        self._buffers: dict[tuple, _Buffers] = {}
        self._bound: tuple | None = None
        self._lock = threading.Lock()

    # -- buffers
    def _alloc(self, shapes: dict) -> _Buffers:
        cudart, where = self._cudart, self.where
        for name in self.input_names:
            _trt_check(self.context.set_input_shape(name, shapes[name]), f"set_input_shape({name}, {shapes[name]})", where)
        unresolved = self.context.infer_shapes()
        if unresolved:
            raise TensorRTError(f"{where}: TensorRT cannot infer the shapes of {', '.join(unresolved)} for inputs {shapes}")
        out_shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.output_names}
        bad = {n: s for n, s in out_shapes.items() if any(d < 0 for d in s)}
        if bad:
            raise TensorRTError(f"{where}: output shapes unresolved after set_input_shape: {bad}")
        buf = _Buffers(dict(shapes), out_shapes)
        for name, shape in list(shapes.items()) + list(out_shapes.items()):
            nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize)
            buf.dev[name] = _cuda_check(cudart, cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})", where)
            hp = _cuda_check(cudart, cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})", where)
            buf.host_ptr[name] = hp
            import ctypes

            raw = (ctypes.c_byte * nbytes).from_address(int(hp))
            buf.host[name] = np.frombuffer(raw, dtype=self._dtypes[name], count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
        return buf

    def _free(self, buf: _Buffers) -> None:
        cudart = self._cudart
        for p in buf.dev.values():
            _cuda_check(cudart, cudart.cudaFree(p), "cudaFree", self.where)
        for p in buf.host_ptr.values():
            _cuda_check(cudart, cudart.cudaFreeHost(p), "cudaFreeHost", self.where)
        buf.dev.clear(), buf.host_ptr.clear(), buf.host.clear()

    def _buffers_for(self, shapes: dict) -> _Buffers:
        key = tuple(shapes[n] for n in self.input_names)
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) >= MAX_SHAPE_SETS:  # drop the oldest shape set
                old_key = next(iter(self._buffers))
                self._free(self._buffers.pop(old_key))
                if self._bound == old_key:
                    self._bound = None
            buf = self._alloc(shapes)
            self._buffers[key] = buf
            self._bound = None
        if self._bound != key:
            # shapes and addresses are per context: set them when the shape set changes
            for name in self.input_names:
                _trt_check(self.context.set_input_shape(name, shapes[name]), f"set_input_shape({name})", self.where)
            for name, ptr in buf.dev.items():
                _trt_check(self.context.set_tensor_address(name, int(ptr)), f"set_tensor_address({name})", self.where)
            self._bound = key
        return buf

    # -- inference
    def _run_one(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cudart, where = self._cudart, self.where
        shapes = {n: tuple(int(d) for d in np.shape(feeds[n])) for n in self.input_names}
        buf = self._buffers_for(shapes)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            np.copyto(buf.host[name], feeds[name], casting="same_kind")
            nbytes = buf.host[name].nbytes
            _cuda_check(cudart, cudart.cudaMemcpyAsync(buf.dev[name], buf.host_ptr[name], nbytes, h2d, self.stream), f"cudaMemcpyAsync H2D {name}", where)
        _trt_check(self.context.execute_async_v3(_handle(self.stream)), "execute_async_v3", where)
        for name in self.output_names:
            nbytes = buf.host[name].nbytes
            _cuda_check(cudart, cudart.cudaMemcpyAsync(buf.host_ptr[name], buf.dev[name], nbytes, d2h, self.stream), f"cudaMemcpyAsync D2H {name}", where)
        _cuda_check(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize", where)
        # copies: the pinned buffers are reused by the next call
        return [np.array(buf.host[n], dtype=np.float32) for n in self.output_names]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        self.plan.check(feeds, self.where)
        with self._lock:  # one context, one stream: calls from several threads take turns
            return split_run(feeds, self.plan, self._run_one, len(self.output_names))

    def close(self) -> None:
        """Free the buffers and the stream (the engine stays cached for other backends)."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for buf in list(getattr(self, "_buffers", {}).values()):
            self._free(buf)
        self._buffers = {}
        if getattr(self, "stream", None) is not None:
            _cuda_check(cudart, cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy", self.where)
            self.stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit CUDA may already be gone
            pass


def tensorrt_precision(file_key: str) -> str:
    """The precision of a bundle file key's TensorRT build: ``trt_int8``/``stream_trt_int8`` ->
    int8, ``*_fp16`` -> fp16, everything else (fp32 forms) fp32."""
    if file_key.endswith("int8"):
        return "int8"
    if file_key.endswith("fp16"):
        return "fp16"
    return "fp32"


def bundle_backend(bundle, file_key: str, max_batch: int = MAX_BATCH) -> TensorRTBackend:
    """The TensorRT backend of a bundle's file ``file_key`` (see
    :func:`edgebp.variants.tensorrt_file_key`), its profile shaped by the manifest (window,
    streaming chunk). A bundle without that file is a one-line error saying how to get it."""
    from edgebp.runtime.bundle import BundleError

    if not bundle.has(file_key):
        raise BundleError(f"{bundle.path}: this bundle has no TensorRT-form model {file_key!r} (it has: {', '.join(sorted(bundle.manifest['files']))}); "
                          "re-export it with edgebp export (the default --targets include tensorrt)")
    m = bundle.manifest
    st = m.get("streaming") or {}
    streaming = file_key.startswith("stream")
    return TensorRTBackend(bundle.file(file_key), precision=tensorrt_precision(file_key), max_batch=max_batch, streaming=streaming,
                           window=None if streaming else int(m["window"]), chunk=int(st["chunk"]) if streaming else None)
