"""Inference backends behind one small interface: ONNX Runtime (CPU, fp32/int8), TensorRT
(GPU; :mod:`edgebp.runtime.tensorrt_backend`, which imports tensorrt lazily) and torch
(development only; imported lazily).

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

# The name export/onnx_export.py gives a streaming model's time axis (input ``x``, axis
# ``time``). The runtime steps such a model at one fixed length, and fixing the axis at that
# length lets ONNX Runtime fold each state's Shape/Gather/Sub/Unsqueeze chain into a constant
# slice: 157 -> 97 nodes int8, 99 -> 51 fp32, the same bits (tests/test_ort_step.py).
STREAM_TIME_DIM = "x_time"


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

    def __init__(self, onnx_path: str | Path, threads: int = 1, optimized_model_path: str | None = None,
                 dims: dict[str, int] | None = None):
        """``dims``: symbolic input dimensions fixed at these sizes (a name the graph lacks
        changes nothing); a call of any other size is then an error."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimized_model_path:
            so.optimized_model_filepath = str(optimized_model_path)
        for dim, size in (dims or {}).items():
            so.add_free_dimension_override_by_name(dim, int(size))
        self.path = Path(onnx_path)
        try:
            self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises InvalidProtobuf, InvalidGraph, Fail, NoSuchFile...: one line naming the file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{onnx_path}: ONNX Runtime cannot load this model ({type(exc).__name__}: {first[:300]})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._step: dict | None = None  # the IOBinding of step(), made on its first call

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def step(self, x: np.ndarray, states: list[np.ndarray], names: list[str] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step of a streaming (external-state) model: ``(y, new_states)``.

        ``names``: the state inputs in the order of ``states`` (default: the graph's order);
        the new states come in the order of the graph's outputs after ``y``, as from
        :meth:`run`.

        The same bits as :meth:`run` with ``x`` and the states as feeds (tested), at 0.80-0.94x
        its cost per call on the runtime's 25-sample step (docs/benchmarks.md): the states stay
        in two sets of buffers bound to the session once (ONNX Runtime's IOBinding), the
        outputs of one call being the inputs of the next, so a call converts and allocates
        nothing but the copy of ``y`` it returns. The returned states are those buffers: valid
        until the call after next, and passed back as they are they are not copied (a state
        the caller made, e.g. zeros after a reset, is copied in). A shape not seen before (the
        padded last step of a stream) takes :meth:`run`.
        """
        if names is None:
            names = self.input_names[1:]
        st = self._step
        # the caller's own list of names each step (the engine's): compared once, then by identity
        if st is None or (names is not st["given"] and list(names) != st["names"]):
            st = self._step_bind(x, states, list(names))
            st["given"] = names
        if st["shape"] != x.shape:  # a one-off length, or a model it cannot bind: the plain call
            res = self.run({self.input_names[0]: x} | dict(zip(names, states)))
            return res[0], list(res[1:])
        p = st["p"]
        cur = st["bufs"][p]
        for b, s in zip(cur, states):
            if s is not b:
                np.copyto(b, s)
        np.copyto(st["x"], x)
        self.session.run_with_iobinding(st["binds"][p])
        st["p"] = 1 - p
        return st["y"].copy(), st["bufs"][1 - p]

    def _step_bind(self, x: np.ndarray, states: list[np.ndarray], names: list[str]) -> dict:
        """The bound buffers for steps shaped like ``x``; ``shape`` None: this model takes :meth:`run`."""
        import onnxruntime as ort

        self._step = {"shape": None, "names": names}
        if sorted(names) != sorted(self.input_names[1:]) or len(self.output_names) != len(states) + 1 or len(names) != len(states):
            return self._step
        # the new states must have the shapes of the old (checked on a real call; a model
        # whose state grows or shrinks per step keeps the plain path)
        res = self.run({self.input_names[0]: x} | dict(zip(names, states)))
        if any(np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.float32 for a, b in zip(res[1:], states)):
            return self._step
        names = [self.input_names[0], *names]
        if np.asarray(res[0]).dtype != np.float32:
            return self._step
        yb = np.zeros(np.shape(res[0]), np.float32)  # the output's shape follows the input's: fixed per bound shape
        yv = ort.OrtValue.ortvalue_from_numpy(yb)
        xb = np.zeros(x.shape, np.float32)
        bufs = [[np.zeros(np.shape(s), np.float32) for s in states] for _ in range(2)]
        xv = ort.OrtValue.ortvalue_from_numpy(xb)
        vals = [[ort.OrtValue.ortvalue_from_numpy(b) for b in bb] for bb in bufs]
        binds = []
        for p in range(2):
            b = self.session.io_binding()
            b.bind_ortvalue_input(names[0], xv)
            for nm, v in zip(names[1:], vals[p]):
                b.bind_ortvalue_input(nm, v)
            b.bind_ortvalue_output(self.output_names[0], yv)
            for nm, v in zip(self.output_names[1:], vals[1 - p]):
                b.bind_ortvalue_output(nm, v)
            binds.append(b)
        self._step = {"shape": x.shape, "names": names[1:], "x": xb, "y": yb, "bufs": bufs, "vals": vals, "xv": xv, "yv": yv,
                      "binds": binds, "p": 0}
        return self._step


# The TensorRT backend lives in its own module (lazy imports of tensorrt and cuda-python);
# its names are re-exported here, where every caller has always looked for them.
from edgebp.runtime.tensorrt_backend import TensorRTBackend, TensorRTError, tensorrt_available  # noqa: E402,F401


def backend_open(kind: str, path: str | Path, threads: int = 1, precision: str = "int8", dims: dict[str, int] | None = None) -> Backend:
    """Open a backend by name; ``kind`` is one of :data:`BACKENDS`. ``dims``: symbolic
    dimensions an ONNX Runtime session fixes (see :class:`OrtBackend`)."""
    if isinstance(kind, BatchedBackend):
        b = kind.batcher(path)
        return _BatchedStream(b) if b is not None else OrtBackend(path, threads=threads, dims=dims)
    if kind == "ort":
        return OrtBackend(path, threads=threads, dims=dims)
    if kind == "tensorrt":
        # the precision names the form (int8 Q/DQ, fp16, fp32) for the engine cache; the layer
        # types come from the graph (strongly typed)
        return TensorRTBackend(path, precision=precision if precision in ("int8", "fp16") else "fp32")
    if kind == "torch":
        # development only: the torch backend lives on the training side, so nothing in the
        # runtime package imports torch
        from importlib import import_module

        return import_module("edgebp.train.torch_backend").TorchBackend(path)
    raise ValueError(f"backend {kind!r} is not valid; choose one of: {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------- batching
# Ops whose batch-1 graph is batch-agnostic when axis 0 is never touched: the streaming TCN's
# graph (Conv, the state Concat/Slice along time, Q/DQ per tensor) has nothing else. A graph
# with any other op (Reshape/Flatten/Expand with constant shapes, MatMul over a flattened
# batch, ...) is refused rather than guessed at.
_BATCH_SAFE_OPS = {"Conv", "ConvTranspose", "Concat", "Slice", "Shape", "Gather", "Sub", "Add", "Mul", "Div", "Unsqueeze", "Squeeze",
                   "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Constant", "QuantizeLinear", "DequantizeLinear", "Identity",
                   "QLinearConv", "Pad", "BatchNormalization",
                   # the fp16 TensorRT form casts at its float32 inputs and outputs
                   "Cast"}


class BatchRewriteError(ValueError):
    """The graph cannot be given a symbolic batch axis safely (the reason says why)."""


def _node_axes(node, inits: dict) -> list[int]:
    """The axes a Concat/Slice/Gather/Squeeze/Unsqueeze/Pad node works on, as far as the graph
    states them; ``[0]`` (unsafe) when they cannot be read."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op in ("Concat", "Gather"):
        return [int(attrs.get("axis", 0))]
    if op == "Slice":
        if len(node.input) < 4 or not node.input[3]:
            return [0]  # no axes: every axis from 0 is sliced
        name = node.input[3]
        if name in inits:
            return [int(a) for a in numpy_helper.to_array(inits[name]).reshape(-1)]
        return [0]
    if op in ("Squeeze", "Unsqueeze"):
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        if len(node.input) > 1 and node.input[1] in inits:
            return [int(a) for a in numpy_helper.to_array(inits[node.input[1]]).reshape(-1)]
        return [0]
    return []


def batch_dynamic_model(onnx_path: str | Path) -> bytes:
    """The batch-1 streaming ONNX at ``onnx_path`` with its batch axis made symbolic (``batch``).

    Checked before rewriting: every op is batch-agnostic (:data:`_BATCH_SAFE_OPS`), every graph
    input and output has a leading dimension of 1, and no Concat/Slice/Gather/Squeeze/Unsqueeze
    works on axis 0 (the Gather after Shape reads an index, not an axis, and is checked on the
    data it indexes: Shape outputs are 1-D, so their Gathers are allowed). The numbers are
    checked by :class:`StepBatcher` on load (batch-B rows against batch-1 calls).

    Raises
    ------
    BatchRewriteError
        Naming the node or tensor that prevents it.
    """
    import onnx

    m = onnx.load(str(onnx_path))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    inits_all = {**inits, **consts}
    # shape arithmetic (Shape -> Gather -> Sub -> Unsqueeze -> a Slice's bounds) works on small
    # index vectors, not on the batch: nodes fed only by shapes and constants are not checked
    meta = set(inits_all)
    for n in g.node:
        if n.op_type == "Shape" or (n.input and all((not i) or i in meta for i in n.input)):
            meta.update(n.output)
    for n in g.node:
        if n.op_type not in _BATCH_SAFE_OPS:
            raise BatchRewriteError(f"{onnx_path}: node {n.name or n.op_type} ({n.op_type}) may fix the batch size")
        if n.op_type == "Constant" or (n.input and n.input[0] in meta):
            continue
        if n.op_type == "Pad":
            continue  # pads of a conv stream are on time; checked numerically anyway
        if 0 in _node_axes(n, inits_all):
            raise BatchRewriteError(f"{onnx_path}: node {n.name or n.op_type} ({n.op_type}) works on axis 0 (the batch)")
    for vi in [*g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if not dims or (dims[0].HasField("dim_value") and dims[0].dim_value != 1):
            raise BatchRewriteError(f"{onnx_path}: {vi.name} has no leading batch dimension of 1")
        dims[0].ClearField("dim_value")
        dims[0].dim_param = "batch"
    for vi in g.value_info:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return m.SerializeToString()


class _BusyCount:
    """A counter shared across threads."""

    def __init__(self):
        import threading

        self.n = 0
        self._lock = threading.Lock()

    def add(self, d: int) -> None:
        with self._lock:
            self.n += d


class _Slot:
    """One stream's pending step: its feeds, then its outputs (or the error)."""

    __slots__ = ("feeds", "result", "error", "done")

    def __init__(self, feeds: dict):
        import threading

        self.feeds = feeds
        self.result = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released when the batch holding this step has run


class StepBatcher:
    """One ONNX Runtime session at a dynamic batch, shared by the streams of one process.

    Each stream's runtime calls :meth:`run` with its batch-1 feeds (its step input and its
    states), as it would call an :class:`OrtBackend`; the call returns that stream's row of
    a batched call. A round runs when every stream that is busy (between taking a chunk of
    input and finishing it: :meth:`busy_enter` / :meth:`busy_exit`) is waiting on a step,
    or when the oldest waiting step has waited ``max_wait_s``: a stream that is not ready
    (waiting for input) does not hold the others up; its step joins a later round. The
    thread whose step completes the round runs it (no extra thread). Batch-B row i is
    checked on load to be bit-identical to a batch-1 call of the same session for the
    same feeds (:meth:`verify`); a graph that fails the check is not batched.
    """

    def __init__(self, onnx_path: str | Path, threads: int = 1, max_wait_s: float = 0.005, max_batch: int = 256, busy=None):
        import threading

        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(batch_dynamic_model(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.max_wait_s = float(max_wait_s)
        self.max_batch = int(max_batch)
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        # how many streams have input in hand: a shared counter (``.n``) from the server, or
        # this batcher's own (busy_enter/busy_exit)
        self._busy = busy if busy is not None else _BusyCount()
        self.stats = {"rounds": 0, "steps": 0, "timeouts": 0, "max_batch": 0}

    def verify(self, lengths=(1, 5, 25), batch: int = 5, seed: int = 0) -> float:
        """Max |batch-B row i - the original batch-1 session's call i| over every output, for
        ``batch`` random inputs at each step length in ``lengths`` (the symbolic time axes).
        0.0 when bit-identical."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        one = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(seed)
        worst = 0.0
        for n in lengths:
            shapes = {i.name: [1 if k == 0 else (d if isinstance(d, int) else n) for k, d in enumerate(i.shape)]
                      for i in self.session.get_inputs()}
            rows = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(batch)]
            big = self.session.run(None, {k: np.concatenate([r[k] for r in rows]) for k in shapes})
            for i, r in enumerate(rows):
                for a, b in zip(one.run(None, r), big):
                    if np.size(a):
                        worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)[i:i + 1]))))
        return worst

    # -- which streams are busy (have input in hand): set by the server around each chunk
    def busy_enter(self) -> None:
        self._busy.add(1)

    def busy_exit(self) -> None:
        self._busy.add(-1)
        self.poke()

    def poke(self) -> None:
        """A stream stopped being busy: the steps waiting may now be a full round."""
        with self._lock:
            batch = self._take_if_full()
        if batch:
            self._run_batch(batch)

    def _take_if_full(self) -> list[_Slot] | None:
        # under the lock: every busy stream waits on a step (or the batch is at its cap)
        if self._pending and len(self._pending) >= min(max(self._busy.n, 1), self.max_batch):
            batch, self._pending = self._pending, []
            return batch
        return None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One stream's step (batch-1 feeds); blocks until its round has run."""
        slot = _Slot(feeds)
        with self._lock:
            self._pending.append(slot)
            batch = self._take_if_full()
        if batch:
            self._run_batch(batch)
        elif not slot.done.acquire(timeout=self.max_wait_s):
            with self._lock:
                if slot in self._pending:  # not taken yet: run what waits now
                    batch, self._pending = self._pending, []
                    self.stats["timeouts"] += 1
            if batch:
                self._run_batch(batch)
            else:
                slot.done.acquire()  # another thread is running the round that holds it
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run_batch(self, batch: list[_Slot]) -> None:
        try:
            if len(batch) == 1:
                outs = self.session.run(None, batch[0].feeds)
                batch[0].result = [np.asarray(o) for o in outs]
            else:
                names = list(batch[0].feeds)
                outs = self.session.run(None, {k: np.concatenate([s.feeds[k] for s in batch]) for k in names})
                for i, s in enumerate(batch):
                    # copies: a stream's state must not keep the whole batch's arrays alive
                    s.result = [np.array(o[i:i + 1]) for o in outs]
            self.stats["rounds"] += 1
            self.stats["steps"] += len(batch)
            self.stats["max_batch"] = max(self.stats["max_batch"], len(batch))
        except BaseException as exc:  # every waiting stream gets the error, none hangs
            for s in batch:
                s.error = exc
        finally:
            for s in batch:
                if s.done.locked():
                    s.done.release()


class _BatchedStream:
    """What one stream's runtime holds instead of its own session: the shared batcher."""

    name = "ort"

    def __init__(self, batcher: StepBatcher):
        self.batcher = batcher
        self.input_names = batcher.input_names
        self.output_names = batcher.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.batcher.run(feeds)


class BatchedBackend(str):
    """A backend name (``"ort"``) that carries a :class:`StepBatcher` per model file: passed
    as ``backend=`` through :func:`edgebp.runtime.run.stream_process` to the runtime, where
    :func:`backend_open` hands out the shared batcher instead of a session of its own. It is a
    ``str`` so that summaries and checks that read the backend's name see ``"ort"``."""

    def __new__(cls, threads: int = 1, max_wait_s: float = 0.005):
        self = super().__new__(cls, "ort")
        import threading

        self.threads, self.max_wait_s = int(threads), float(max_wait_s)
        self.batchers: dict[str, StepBatcher] = {}
        self.refused: dict[str, str] = {}  # model file -> why it is not batched
        self.busy = _BusyCount()
        self._lock = threading.Lock()
        return self

    def batcher(self, path: str | Path) -> StepBatcher | None:
        """The shared batcher of the model at ``path``; None (with the reason in
        :attr:`refused`) when its graph cannot be batched or batching changes its numbers."""
        key = str(Path(path).resolve())
        with self._lock:
            if key in self.refused:
                return None
            b = self.batchers.get(key)
            if b is None:
                try:
                    b = StepBatcher(path, threads=self.threads, max_wait_s=self.max_wait_s, busy=self.busy)
                    worst = b.verify()
                    if worst != 0.0:
                        raise BatchRewriteError(f"{path}: batched rows differ from batch-1 calls by up to {worst:.3g}")
                except Exception as exc:  # a graph ORT cannot run batched is refused, not fatal
                    self.refused[key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    log.warning("not batching across streams: %s", exc)
                    return None
                self.batchers[key] = b
            return b

    def busy_enter(self) -> None:
        self.busy.add(1)

    def busy_exit(self) -> None:
        self.busy.add(-1)
        for b in list(self.batchers.values()):
            b.poke()

    def describe(self) -> dict:
        return {"batched_models": {Path(k).name: dict(b.stats, mean_batch=b.stats["steps"] / max(b.stats["rounds"], 1))
                                   for k, b in self.batchers.items()},
                "refused": {Path(k).name: v for k, v in self.refused.items()}, "max_wait_ms": self.max_wait_s * 1e3}
