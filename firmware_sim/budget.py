"""Will this ONNX model fit on that microcontroller? Flash, RAM and compute from the graph.

What is counted, and how
------------------------
Weights (flash)
    Every initializer and ``Constant`` tensor: elements x bytes of its dtype (int8 = 1,
    float32 = 4, int32 bias = 4...). Split into parameters, quantisation parameters (scales
    and zero points) and shape constants (int64). A QDQ model's ``DequantizeLinear`` of an
    int8 weight is *not* counted again: tensors computed only from constants are folded.
Activations (RAM)
    Tensor lifetimes over the graph's node order (ONNX requires topological order): a buffer
    is live from the node that produces it (graph inputs: from the start) to the last node
    that consumes it (graph outputs: to the end). The peak is the largest sum of live bytes
    while one node runs (its inputs and outputs are both live; no in-place reuse is assumed).
    Shapes come from ``onnx.shape_inference`` with batch 1 and the window length substituted
    for the symbolic dimensions; tensors it leaves unknown are measured by one ONNX Runtime
    run on zeros. Two figures are given:

    - ``activation_peak_bytes`` (deployed view): ``QuantizeLinear``/``DequantizeLinear`` and
      the pure views ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Identity`` share
      one buffer with their input, whose size is that of its smallest member (so a QDQ
      model's activations count 1 byte per element, as int8 kernels such as CMSIS-NN or
      ESP-NN execute it);
    - ``activation_peak_bytes_unfused``: every tensor its own buffer at its graph dtype.
State (RAM, persistent)
    Inputs named ``state*`` (or listed by the caller) hold a streaming model's context
    between calls; their bytes are kept for the device's whole run and added to the peak.
MACs per inference (multiply-accumulates; biases, activations and element-wise ops are
not counted)
    - Conv, ConvInteger, QLinearConv: ``prod(output shape) * prod(W.shape[1:])``
      (``W.shape[1:] = (C_in/group, k...)``).
    - ConvTranspose: ``prod(input shape) * prod(W.shape[1:])`` (``(C_out/group, k...)``).
    - MatMul, MatMulInteger, QLinearMatMul: ``prod(output shape) * K`` (``K = A.shape[-1]``).
    - Gemm: ``M * N * K``.
    - LSTM / GRU / RNN (and ORT's DynamicQuantizeLSTM): per time step, batch item and
      direction ``g * H * (I + H)`` with ``g`` = 4 / 3 / 1 gates, ``I`` input size,
      ``H`` hidden size.

    A MAC is int8 when the op is an integer op (QLinear*, *Integer, DynamicQuantize*) or
    both its data inputs are 8-bit (directly or through ``DequantizeLinear`` of an 8-bit
    tensor); otherwise it is float. Ops not listed above are reported as uncounted.
Per second of signal
    ``inferences/s = fs / hop``; ``MACs/s = MACs per inference * fs / hop``. On an MCU,
    ``duty cycle = (int8 MACs/s / int8 MAC-per-cycle + fp32 MACs/s / fp32 MAC-per-cycle) /
    clock``; the check passes when the duty cycle is within the profile's limit (50 %).

Examples
--------
>>> import numpy as np, onnx
>>> from onnx import TensorProto, helper, numpy_helper
>>> w = numpy_helper.from_array(np.ones((4, 1, 3), np.float32), "w")
>>> g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "T"])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
>>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
>>> b = onnx_budget(m, window=10, fs=125.0, hop=10)
>>> b.weight_bytes, b.macs_per_inference, b.activation_peak_bytes
(48, 96, 168)
>>> b.macs_per_s
1200.0
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

from edgebp.firmware_sim.mcu_profiles import McuProfile

log = logging.getLogger(__name__)

ALIAS_OPS = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM",
               "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}
RNN_GATES = {"LSTM": 4, "DynamicQuantizeLSTM": 4, "GRU": 3, "RNN": 1}
# Ops whose compute is small next to the counted ones (element-wise, pooling, shape) are
# silently not counted; anything else with real arithmetic is listed as "uncounted".
CHEAP_OPS = {
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Clip", "Elu", "Selu",
    "Gelu", "Softplus", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Exp", "Log", "Sqrt", "Pow", "Reciprocal",
    "Max", "Min", "Sum", "Mean", "Concat", "Split", "Slice", "Gather", "Transpose", "Pad", "Shape", "Cast",
    "Constant", "ConstantOfShape", "Expand", "Tile", "Range", "Equal", "Less", "Greater", "Where", "Not",
    "And", "Or", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum",
    "ReduceMax", "ReduceMin", "BatchNormalization", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth",
    "Softmax", "LogSoftmax", "Erf", "Floor", "Ceil", "Round", "Sign", "ArgMax", "ArgMin", "Dropout",
    "InstanceNormalization", "LayerNormalization", "CumSum", "ScatterND", "ScatterElements", "NonZero",
    "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "DynamicQuantizeLinear",
} | ALIAS_OPS

# Indices of the (activation, weight) data inputs of the counted ops.
_DATA_INPUTS = {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1),
                "LSTM": (0, 1), "GRU": (0, 1), "RNN": (0, 1)}
# Inputs of integer ops that are scales / zero points (flash "quant" category).
_QUANT_PARAM_INPUTS = {
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2),
    "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "ConvInteger": (2, 3), "MatMulInteger": (2, 3),
    "QLinearAdd": (1, 2, 4, 5, 6, 7), "QLinearMul": (1, 2, 4, 5, 6, 7),
}


@dataclass
class ModelBudget:
    """Resources one ONNX model needs per inference and per second of signal."""

    model: str
    precision: str
    input_shapes: dict[str, list[int]]
    weight_bytes: int
    weight_bytes_by_kind: dict[str, int]
    weight_bytes_by_dtype: dict[str, int]
    n_params: int
    activation_peak_bytes: int
    activation_peak_node: str
    activation_peak_bytes_unfused: int
    state_bytes: int
    state_inputs: list[str]
    macs_per_inference: int
    macs_int8: int
    macs_fp32: int
    macs_by_op: dict[str, int]
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    fs: float | None = None
    hop: int | None = None

    @property
    def ram_bytes(self) -> int:
        """RAM for the model: activation peak (deployed view) plus persistent state."""
        return self.activation_peak_bytes + self.state_bytes

    @property
    def inferences_per_s(self) -> float | None:
        """``fs / hop``, or None when either is unknown."""
        if not self.fs or not self.hop:
            return None
        return float(self.fs) / float(self.hop)

    @property
    def macs_per_s(self) -> float | None:
        """MACs per second of signal, or None when fs/hop are unknown."""
        ips = self.inferences_per_s
        return None if ips is None else self.macs_per_inference * ips

    def to_dict(self) -> dict:
        """Plain dict (with the derived per-second figures), for JSON output."""
        d = asdict(self)
        d.update(ram_bytes=self.ram_bytes, inferences_per_s=self.inferences_per_s, macs_per_s=self.macs_per_s)
        return d


@dataclass
class McuCheck:
    """Pass/fail of one model on one MCU, per resource. ``compute_ok`` is None without fs/hop."""

    mcu: str
    flash_needed: int
    flash_budget: int
    flash_ok: bool
    ram_needed: int
    ram_budget: int
    ram_ok: bool
    cycles_per_s: float | None
    duty_cycle: float | None
    max_duty_cycle: float
    compute_ok: bool | None

    @property
    def ok(self) -> bool:
        """All resources pass (an unknown compute check counts as not passed)."""
        return bool(self.flash_ok and self.ram_ok and self.compute_ok)

    def to_dict(self) -> dict:
        """Plain dict, for JSON output."""
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _dtype_size(elem_type: int) -> int:
    if elem_type == onnx.TensorProto.STRING or elem_type == onnx.TensorProto.UNDEFINED:
        return 0
    return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def _dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def model_load(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load an ONNX model from a path (with external data beside it), or pass a proto through.

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ValueError
        When the file is not a readable ONNX model (the message names it).
    """
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(2, "no such ONNX file", str(path))
    # the loader bundles use: a regular file within the size cap (a FIFO or device is refused
    # without blocking), parsed and run through onnx.checker (an empty file is not a model)
    from edgebp.runtime.bundle import onnx_file_load

    return onnx_file_load(path)


def _input_shapes_fix(
    graph: onnx.GraphProto,
    init_names: set[str],
    window: int | None,
    input_shapes: dict[str, list[int]] | None,
) -> dict[str, list[int]]:
    """Concrete shape of every graph input: batch 1, symbolic time dims = window."""
    out: dict[str, list[int]] = {}
    for vi in graph.input:
        if vi.name in init_names:
            continue
        if input_shapes and vi.name in input_shapes:
            out[vi.name] = [int(d) for d in input_shapes[vi.name]]
            continue
        dims = []
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(1)
            elif window is not None:
                dims.append(int(window))
            else:
                raise ValueError(
                    f"input {vi.name!r} dimension {i} ({d.dim_param or '?'}) is symbolic: "
                    "give the window length (--window N) or the input shape"
                )
        out[vi.name] = dims
    return out


def _shapes_infer(model: onnx.ModelProto, shapes_in: dict[str, list[int]]) -> dict[str, tuple[list[int] | None, int]]:
    """Shape and elem_type of every named tensor, via onnx shape inference."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in shapes_in:
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in shapes_in[vi.name]:
                shape.dim.add().dim_value = int(d)
    try:
        m = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception as exc:  # a model ORT runs but onnx cannot fully infer: fall back later
        log.warning("onnx shape inference failed (%s); measuring shapes with ONNX Runtime", exc)
    out: dict[str, tuple[list[int] | None, int]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        tt = vi.type.tensor_type
        dims: list[int] | None = []
        if not tt.HasField("shape"):
            dims = None
        else:
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value >= 0 and not d.dim_param:
                    dims.append(int(d.dim_value))
                else:
                    dims = None
                    break
        prev = out.get(vi.name)
        if prev is not None and prev[0] is not None and dims is None:
            continue  # keep the inferred concrete shape over a symbolic declaration
        out[vi.name] = (dims, int(tt.elem_type) or (prev[1] if prev else 0))
    return out


def _shapes_measure(model: onnx.ModelProto, names: list[str], shapes_in: dict[str, list[int]]) -> dict[str, tuple[list[int], int]]:
    """Shapes of ``names`` from one ONNX Runtime run on zero inputs (graph optimisations off)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    # onnx.helper writes the newest IR version, which a released ORT may not accept yet;
    # IR 10 covers every opset ORT runs.
    m.ir_version = min(m.ir_version, 10)
    existing = {o.name for o in m.graph.output}
    for n in names:
        if n not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                 "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
                 "tensor(float16)": np.float16, "tensor(bool)": np.bool_}.get(i.type, np.float32)
        feeds[i.name] = np.zeros(shapes_in[i.name], dtype=dtype)
    outs = sess.run(names, feeds)
    res = {}
    for n, a in zip(names, outs):
        a = np.asarray(a)
        res[n] = (list(a.shape), int(helper.np_dtype_to_tensor_dtype(a.dtype)))
    return res


def onnx_budget(
    model: str | os.PathLike | onnx.ModelProto,
    fs: float | None = None,
    hop: int | None = None,
    window: int | None = None,
    state_inputs: list[str] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
) -> ModelBudget:
    """Weights, peak activations, streaming state and MACs of an ONNX graph.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
        The model (fp32, QDQ int8 or QOperator int8).
    fs : float, optional
        Sampling rate of the model input (Hz), for the per-second figures.
    hop : int, optional
        Samples between two inferences (a streaming model's chunk, or a window's stride).
    window : int, optional
        Length substituted for every symbolic non-batch input dimension.
    state_inputs : list of str, optional
        Names of inputs that carry streaming state; by default the inputs whose name
        starts with ``state``.
    input_shapes : dict, optional
        Explicit shape per input name, overriding the batch/window rule.

    Returns
    -------
    ModelBudget

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> W = numpy_helper.from_array(np.zeros((16, 8), np.float32), "W")
    >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [W])
    >>> b = onnx_budget(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    >>> b.macs_per_inference, b.weight_bytes, b.precision
    (128, 512, 'fp32')
    """
    m = model_load(model)
    name = str(model) if not isinstance(model, onnx.ModelProto) else (m.graph.name or "model")
    g = m.graph
    n_nodes = len(g.node)
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for nd in g.node for a in nd.attribute):
        log.warning("%s: control-flow subgraphs (If/Loop/Scan) are not analysed", name)

    inits = {t.name: t for t in g.initializer}
    init_names = set(inits)
    shapes_in = _input_shapes_fix(g, init_names, window, input_shapes)
    state_set = set(state_inputs or [n for n in shapes_in if n.lower().startswith("state")])
    unknown_state = state_set - set(shapes_in)
    if unknown_state:
        raise ValueError(f"state input(s) {sorted(unknown_state)} not among the model inputs {sorted(shapes_in)}")

    # Constant tensors: initializers, Constant nodes, and anything computed only from them.
    const_tensors: dict[str, onnx.TensorProto] = dict(inits)
    const: set[str] = set(init_names)
    for nd in g.node:
        if nd.op_type == "Constant":
            for a in nd.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    t = onnx.TensorProto()
                    t.CopyFrom(a.t)
                    const_tensors[nd.output[0]] = t
            const.update(o for o in nd.output if o)
        elif nd.input and all((not i) or i in const for i in nd.input) and nd.op_type not in (
            "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"
        ):
            const.update(o for o in nd.output if o)

    info = _shapes_infer(m, shapes_in)
    for n, t in const_tensors.items():
        info.setdefault(n, (list(t.dims), int(t.data_type)))

    # Every non-constant tensor needs a shape; measure the ones inference left open.
    produced = [o for nd in g.node for o in nd.output if o]
    missing = [n for n in produced if n not in const and (n not in info or info[n][0] is None or info[n][1] == 0)]
    if missing:
        log.info("%s: %d tensor shape(s) unknown after inference; measuring with ONNX Runtime", name, len(missing))
        try:
            info.update(_shapes_measure(m, missing, shapes_in))
        except Exception as exc:
            log.warning("%s: could not measure %d tensor shape(s) with ONNX Runtime (%s); they count as 0 bytes",
                        name, len(missing), exc)

    def nbytes(n: str) -> int:
        shp, et = info.get(n, (None, 0))
        if shp is None:
            return 0
        return int(np.prod(shp, dtype=np.int64)) * _dtype_size(et)

    def shape(n: str) -> list[int] | None:
        return info.get(n, (None, 0))[0]

    # --- weights (flash) ---
    quant_params: set[str] = set()
    for nd in g.node:
        for idx in _QUANT_PARAM_INPUTS.get(nd.op_type, ()):
            if idx < len(nd.input) and nd.input[idx] in const_tensors:
                quant_params.add(nd.input[idx])
    by_kind = {"params": 0, "quant": 0, "shape": 0}
    by_dtype: dict[str, int] = {}
    n_params = 0
    for n, t in const_tensors.items():
        numel = int(np.prod(list(t.dims), dtype=np.int64))
        b = numel * _dtype_size(t.data_type)
        kind = "quant" if n in quant_params else "shape" if t.data_type == onnx.TensorProto.INT64 else "params"
        by_kind[kind] += b
        by_dtype[_dtype_name(t.data_type)] = by_dtype.get(_dtype_name(t.data_type), 0) + b
        if kind == "params":
            n_params += numel
    weight_bytes = sum(by_kind.values())

    # --- which tensors hold 8-bit data (directly or via DequantizeLinear / views) ---
    producer: dict[str, onnx.NodeProto] = {o: nd for nd in g.node for o in nd.output if o}

    def is_8bit(n: str, depth: int = 0) -> bool:
        et = info.get(n, (None, 0))[1]
        if et in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            return True
        nd = producer.get(n)
        if nd is None or depth > 8:
            return False
        if nd.op_type in ALIAS_OPS:
            return is_8bit(nd.input[0], depth + 1)
        return False

    # --- MACs ---
    macs_by_op: dict[str, int] = {}
    uncounted: dict[str, int] = {}
    unknown_shape: dict[str, int] = {}
    macs_int8 = macs_fp32 = 0
    for nd in g.node:
        op = nd.op_type
        macs = _node_macs(nd, shape)
        if macs is None:
            if op not in CHEAP_OPS:
                uncounted[op] = uncounted.get(op, 0) + 1
            continue
        if macs < 0:
            unknown_shape[op] = unknown_shape.get(op, 0) + 1
            continue
        macs_by_op[op] = macs_by_op.get(op, 0) + macs
        if op in INTEGER_OPS:
            int8 = True
        else:
            idx = _DATA_INPUTS.get(op, (0, 1))
            int8 = all(i < len(nd.input) and is_8bit(nd.input[i]) for i in idx)
        if int8:
            macs_int8 += macs
        else:
            macs_fp32 += macs
    if uncounted:
        log.warning("%s: no MAC formula for these ops, not counted: %s", name, uncounted)
    if unknown_shape:
        log.warning("%s: shapes unknown, MACs not counted for: %s", name, unknown_shape)
        for op, k in unknown_shape.items():
            uncounted[f"{op} (shape unknown)"] = k
    total = macs_int8 + macs_fp32
    precision = "fp32" if total == 0 or macs_int8 <= 0.05 * total else "int8" if macs_fp32 <= 0.05 * total else "mixed"
    if total == 0 and by_dtype.get("int8", 0) + by_dtype.get("uint8", 0) > by_dtype.get("float", 0):
        precision = "int8"

    # --- activations (RAM) ---
    graph_inputs = [n for n in shapes_in if n not in state_set]
    acts = [n for n in graph_inputs] + [o for o in produced if o not in const]
    act_set = set(acts)
    start = {n: -1 for n in graph_inputs}
    for i, nd in enumerate(g.node):
        for o in nd.output:
            if o in act_set:
                start[o] = i
    end = dict(start)
    for i, nd in enumerate(g.node):
        for inp in nd.input:
            if inp in act_set:
                end[inp] = max(end[inp], i)
    for o in g.output:
        if o.name in act_set:
            end[o.name] = n_nodes

    peak_unfused, _ = _peak({n: (start[n], end[n], nbytes(n)) for n in acts}, n_nodes)

    parent = {n: n for n in acts}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for nd in g.node:
        if nd.op_type in ALIAS_OPS and nd.input and nd.input[0] in act_set and nd.output[0] in act_set:
            parent[find(nd.output[0])] = find(nd.input[0])
    groups: dict[str, tuple[int, int, int]] = {}
    for n in acts:
        r = find(n)
        s, e, b = start[n], end[n], nbytes(n)
        if r in groups:
            s0, e0, b0 = groups[r]
            groups[r] = (min(s0, s), max(e0, e), min(b0, b) if b else b0)
        else:
            groups[r] = (s, e, b)
    peak, peak_i = _peak(groups, n_nodes)
    peak_node = ""
    if 0 <= peak_i < n_nodes:
        nd = g.node[peak_i]
        peak_node = f"{nd.name or nd.op_type} ({nd.op_type})"

    def state_elem_bytes(n: str) -> int:
        # deployed view: a state whose only consumers quantize it is kept quantized on the
        # device (the ring buffer holds the int8 activations), as activations are above
        users = [nd for nd in g.node if n in nd.input]
        if users and all(nd.op_type == "QuantizeLinear" for nd in users):
            zp = users[0].input[2] if len(users[0].input) > 2 else ""
            if zp in const_types:
                return _dtype_size(const_types[zp])
            return 1
        return _dtype_size(info.get(n, (None, 1))[1] or 1)

    const_types = {t.name: t.data_type for t in g.initializer}
    state_bytes = sum(int(np.prod(shapes_in[n], dtype=np.int64)) * state_elem_bytes(n) for n in state_set)
    budget = ModelBudget(
        model=name, precision=precision, input_shapes=shapes_in,
        weight_bytes=int(weight_bytes), weight_bytes_by_kind=by_kind, weight_bytes_by_dtype=by_dtype,
        n_params=int(n_params), activation_peak_bytes=int(peak), activation_peak_node=peak_node,
        activation_peak_bytes_unfused=int(peak_unfused), state_bytes=int(state_bytes),
        state_inputs=sorted(state_set), macs_per_inference=int(total), macs_int8=int(macs_int8),
        macs_fp32=int(macs_fp32), macs_by_op=macs_by_op, uncounted_ops=uncounted,
        fs=None if fs is None else float(fs), hop=None if hop is None else int(hop),
    )
    log.info("%s: %d weight bytes, peak activations %d B, %d MACs/inference", name, budget.weight_bytes,
             budget.activation_peak_bytes, budget.macs_per_inference)
    return budget


def _peak(buffers: dict[str, tuple[int, int, int]], n_nodes: int) -> tuple[int, int]:
    """Largest sum of live bytes over node steps; buffers = name -> (start, end, bytes)."""
    if n_nodes == 0:
        return sum(b for _, _, b in buffers.values()), -1
    delta = np.zeros(n_nodes + 2, dtype=np.int64)
    for s, e, b in buffers.values():
        s = max(s, 0)
        e = min(max(e, s), n_nodes - 1)
        delta[s] += b
        delta[e + 1] -= b
    live = np.cumsum(delta)[:n_nodes]
    i = int(np.argmax(live))
    return int(live[i]), i


def _attr(nd: onnx.NodeProto, name: str, default=None):
    for a in nd.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_macs(nd: onnx.NodeProto, shape) -> int | None:
    """MACs of one node: None when the op has no formula, -1 when its shapes are unknown."""
    op = nd.op_type

    def prod(s):
        return int(np.prod(s, dtype=np.int64))

    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape(nd.input[3 if op == "QLinearConv" else 1])
        y = shape(nd.output[0])
        return -1 if w is None or y is None else prod(y) * prod(w[1:])
    if op == "ConvTranspose":
        w, x = shape(nd.input[1]), shape(nd.input[0])
        return -1 if w is None or x is None else prod(x) * prod(w[1:])
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        a, y = shape(nd.input[0]), shape(nd.output[0])
        return -1 if a is None or y is None else prod(y) * int(a[-1])
    if op in ("Gemm", "QGemm"):
        a, y = shape(nd.input[0]), shape(nd.output[0])
        if a is None or y is None:
            return -1
        k = a[0] if _attr(nd, "transA", 0) else a[1]
        return prod(y) * int(k)
    if op in RNN_GATES:
        x = shape(nd.input[0])
        hidden = _attr(nd, "hidden_size")
        if x is None or hidden is None:
            return -1
        layout = _attr(nd, "layout", 0)
        seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
        direction = _attr(nd, "direction", b"forward")
        if isinstance(direction, bytes):
            direction = direction.decode()
        n_dir = 2 if direction == "bidirectional" else 1
        return int(seq) * int(batch) * n_dir * RNN_GATES[op] * int(hidden) * (int(x[2]) + int(hidden))
    return None


def mcu_check(budget: ModelBudget, mcu: McuProfile) -> McuCheck:
    """Pass/fail per resource of a model budget on one MCU profile.

    Parameters
    ----------
    budget : ModelBudget
        From :func:`onnx_budget`.
    mcu : McuProfile
        From :func:`edgebp.firmware_sim.mcu_profiles.mcu_profile`.

    Returns
    -------
    McuCheck
        ``duty_cycle = cycles per second / clock``, with int8 and float MACs at the profile's
        respective MAC-per-cycle rates.

    Examples
    --------
    >>> from edgebp.firmware_sim.mcu_profiles import mcu_profile
    >>> b = ModelBudget("m", "int8", {}, 1000, {}, {}, 1000, 2000, "", 4000, 0, [], 6400, 6400, 0, {},
    ...                 fs=125.0, hop=125)
    >>> c = mcu_check(b, mcu_profile("nrf52832"))
    >>> c.flash_ok, c.ram_ok, c.duty_cycle, c.compute_ok
    (True, True, 0.0001, True)
    """
    cycles = None
    duty = None
    ok_compute = None
    ips = budget.inferences_per_s
    if ips is not None:
        cycles = (budget.macs_int8 / mcu.int8_macs_per_cycle + budget.macs_fp32 / mcu.fp32_macs_per_cycle) * ips
        duty = cycles / mcu.clock_hz
        ok_compute = duty <= mcu.max_duty_cycle
    return McuCheck(
        mcu=mcu.name,
        flash_needed=budget.weight_bytes, flash_budget=mcu.flash_for_model,
        flash_ok=budget.weight_bytes <= mcu.flash_for_model,
        ram_needed=budget.ram_bytes, ram_budget=mcu.ram_for_model, ram_ok=budget.ram_bytes <= mcu.ram_for_model,
        cycles_per_s=cycles, duty_cycle=duty, max_duty_cycle=mcu.max_duty_cycle, compute_ok=ok_compute,
    )


# Model files of a bundle in the order a device would run them: the streaming int8 model
# (state carried between chunks) first, then the windowed int8 model, then float ones.
BUNDLE_VARIANTS = ("stream_int8", "int8", "pruned_int8", "stream_fp32", "fp32", "pruned")


def _state_names(states) -> list[str]:
    if isinstance(states, dict):
        return [str(k) for k in states]
    if isinstance(states, list):
        out = []
        for s in states:
            if isinstance(s, str):
                out.append(s)
            elif isinstance(s, dict) and "name" in s:
                out.append(str(s["name"]))
        return out
    return []


def bundle_resolve(path: str | os.PathLike, variant: str = "auto") -> tuple[Path, dict]:
    """The ONNX file to check and what the bundle's manifest says about it.

    A plain ``.onnx`` path is returned as is with an empty dict. A bundle directory
    (``manifest.json``) is opened by :func:`edgebp.runtime.bundle.bundle_load`, the same
    loader ``edgebp run`` uses (schema, paths inside the bundle, sizes, hashes, every model
    parsed): ``files[variant]`` is the model; with ``variant="auto"`` the first present of
    :data:`BUNDLE_VARIANTS` (the streaming int8 model first). ``fs`` comes from the manifest;
    for a streaming model ``hop`` and ``window`` are ``streaming.chunk`` and the state inputs
    are the names in ``streaming.states``; for a windowed model they are ``hop`` and
    ``window``. A directory without a valid manifest is refused (give a bare model as its
    ``.onnx`` file).

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ValueError
        (:class:`edgebp.runtime.bundle.BundleError`) when the bundle does not load, or lacks ``variant``.

    Examples
    --------
    >>> p, meta = bundle_resolve("default")
    >>> p.name, meta
    ('model_stream_int8.onnx', {'fs': 125.0, 'variant': 'stream_int8', 'hop': 25, 'window': 25, 'state_inputs': ['state_0', 'state_1', 'state_2', 'state_3', 'state_4', 'state_5', 'state_6', 'state_7', 'state_8', 'state_9', 'state_10', 'state_11']})
    >>> bundle_resolve("default", "int8")[1]
    {'fs': 125.0, 'variant': 'int8', 'hop': 25, 'window': 1012}
    """
    model, meta, _ = bundle_resolve_loaded(path, variant)
    return model, meta


def bundle_resolve_loaded(path: str | os.PathLike, variant: str = "auto") -> tuple[Path, dict, object]:
    """:func:`bundle_resolve` plus the loaded :class:`edgebp.runtime.bundle.Bundle` (None for
    a plain model file)."""
    from edgebp.runtime.bundle import BundleError, bundle_load

    if str(path) == "default":
        from edgebp.paths import ASSETS

        path = ASSETS / "default_bundle"
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "no such model file or bundle directory", str(p))
    if not p.is_dir():
        return p, {}, None
    # a directory is a bundle, checked in full (a bundle whose manifest was removed is not
    # budgeted from whatever .onnx files are left in it); a bare model is given as its file
    b = bundle_load(p)
    manifest = p / "manifest.json"
    data = b.manifest
    onnx_files = {k: v for k, v in data["files"].items() if v.lower().endswith(".onnx")}
    if variant == "auto":
        chosen = next((k for k in BUNDLE_VARIANTS if k in onnx_files), None)
        if chosen is None:
            raise BundleError(f"{manifest}: no ONNX model of {', '.join(BUNDLE_VARIANTS)} among files {sorted(onnx_files)}")
    elif variant in onnx_files:
        chosen = variant
    else:
        raise BundleError(f"{manifest}: no {variant!r} model; this bundle has: {', '.join(sorted(onnx_files)) or 'none'}")
    meta: dict = {"fs": float(data["fs"]), "variant": chosen}
    streaming = data.get("streaming") or {}
    if chosen.startswith("stream") and streaming:
        meta["hop"] = int(streaming["chunk"])
        meta["window"] = int(streaming["chunk"])
        names = _state_names(streaming.get("states"))
        if names:
            meta["state_inputs"] = names
    else:
        meta["hop"] = int(data["hop"])
        meta["window"] = int(data["window"])
    return b.file(chosen), meta, b


#: The unit line ``edgebp budget`` prints first: binary units, as everywhere in edgebp
#: (microcontroller memories are powers of two: a "64 kB" RAM is 64 KiB = 65536 B).
UNITS_LINE = "units: B = bytes, 1 KiB = 1024 B; allowed = the share of the device's flash / RAM the model may use"


def _kib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f}"


def budget_format(budget: ModelBudget, checks: list[McuCheck]) -> str:
    """Human-readable report: the model's figures, then one row per MCU with PASS/FAIL.

    Examples
    --------
    >>> from edgebp.firmware_sim.mcu_profiles import mcu_profile
    >>> b = ModelBudget("m", "int8", {"x": [1, 1, 125]}, 1000, {}, {}, 1000, 2000, "", 4000, 0, [],
    ...                 6400, 6400, 0, {}, fs=125.0, hop=125)
    >>> text = budget_format(b, [mcu_check(b, mcu_profile("samd21"))]).splitlines()
    >>> print(text[0])
    units: B = bytes, 1 KiB = 1024 B; allowed = the share of the device's flash / RAM the model may use
    >>> print(text[-2])
    mcu          flash KiB (used / allowed)   ram KiB (used / allowed)     compute (duty) overall
    >>> print(text[-1])
    samd21       PASS    1.0 /  128.0         PASS    2.0 /   16.0         PASS   0.05%   PASS
    """
    ips = budget.inferences_per_s
    lines = [
        UNITS_LINE,
        f"model: {budget.model} ({budget.precision}); inputs {budget.input_shapes}",
        f"weights (flash): {budget.weight_bytes} B ({_kib(budget.weight_bytes)} KiB); {budget.n_params} parameters; "
        f"by dtype {budget.weight_bytes_by_dtype}",
        f"activations (RAM, peak): {budget.activation_peak_bytes} B deployed view "
        f"({budget.activation_peak_bytes_unfused} B as in the graph) at {budget.activation_peak_node or '-'}",
        f"state (RAM, persistent): {budget.state_bytes} B {budget.state_inputs or ''}".rstrip(),
        f"MACs per inference: {budget.macs_per_inference} (int8 {budget.macs_int8}, float {budget.macs_fp32})",
    ]
    if ips is None:
        lines.append("MACs per second: n/a (give --fs and --hop)")
    else:
        lines.append(f"inferences per second: {ips:g} (fs {budget.fs:g} Hz / hop {budget.hop}); "
                     f"MACs per second: {budget.macs_per_s:,.0f}")
    if budget.uncounted_ops:
        lines.append(f"not counted (ops without a MAC formula): {budget.uncounted_ops}")
    lines.append("")
    lines.append(f"{'mcu':<12} {'flash KiB (used / allowed)':<28} {'ram KiB (used / allowed)':<28} {'compute (duty)':<14} overall")
    for c in checks:
        flash = f"{'PASS' if c.flash_ok else 'FAIL'} {_kib(c.flash_needed):>6} / {_kib(c.flash_budget):>6}"
        ram = f"{'PASS' if c.ram_ok else 'FAIL'} {_kib(c.ram_needed):>6} / {_kib(c.ram_budget):>6}"
        if c.duty_cycle is None:
            comp = "n/a"
        else:
            comp = f"{'PASS' if c.compute_ok else 'FAIL'} {100 * c.duty_cycle:6.2f}%"
        overall = "PASS" if c.ok else ("?" if c.compute_ok is None and c.flash_ok and c.ram_ok else "FAIL")
        lines.append(f"{c.mcu:<12} {flash:<28} {ram:<28} {comp:<14} {overall}")
    return "\n".join(lines)


def estimator_budget(params, fs: float) -> dict:
    """Flash, RAM and arithmetic of the calibrated per-beat estimator
    (:class:`edgebp.runtime.calibrated.EstimatorParams`) on a device, float32.

    Counted as a C port would hold it: the parameters (weights, scales, alpha, tau per
    target), the state (per target the smoothed features, the calibration summary, the cuff
    values), the beats of one calibration window (at most 3.3 beats/s, 220 bpm) for the
    summary, and one beat's PPG (the longest plausible beat, 2.5 s) for the shape features.
    Operations per beat: the shape features touch each PPG sample of the beat about 8 times;
    the estimate is one dot product per target.

    Examples
    --------
    >>> from edgebp.runtime.calibrated import estimator_params_offset
    >>> estimator_budget(estimator_params_offset(), 125.0)["flash_bytes"]
    96
    """
    from edgebp.runtime.beat_features import FEATURES
    from edgebp.processing.beats import INTERVAL_RANGE

    k, n_t = len(params.features), 3
    flash = 4 * (n_t * (2 * k + 2))  # weights + scale per target, alpha and tau per target
    window_beats = int(np.ceil(params.window_s * 220 / 60.0))
    state = 4 * (n_t * k + len(FEATURES) + 3 + 2)  # ema per target, f_cal, cuff values, counters
    ring = 4 * window_beats * (len(FEATURES) + 1)  # (time, features) of the window's beats
    beat_ppg = 4 * int(np.ceil(INTERVAL_RANGE[1] * fs))
    ops_per_beat = 8 * int(np.ceil(INTERVAL_RANGE[1] * fs)) + n_t * (4 * k)
    return {"flash_bytes": flash, "ram_bytes": state + ring + beat_ppg, "ram_state_bytes": state, "ram_window_bytes": ring,
            "ram_beat_ppg_bytes": beat_ppg, "ops_per_beat_max": ops_per_beat, "ops_per_s_max": ops_per_beat * 220 / 60.0,
            "method": params.method, "features": list(params.features)}
