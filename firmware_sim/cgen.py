"""C99 firmware from an edge-tcn bundle: the streaming int8 model with integer-only kernels.

The bundle's streaming int8 model is a QDQ graph (ONNX Runtime's static quantiser: uint8
activations, int8 symmetric per-channel weights, int32 biases) with its streaming state as
extra graph inputs and outputs. :func:`lower_qdq` walks that graph once and turns it into a
short list of integer kernels, the way CMSIS-NN's s8 kernels run a TFLite model:

* ``Conv`` (1-D, causal, dilated, no padding): int8 weights, int32 accumulator, the input
  zero point folded into the bias (CMSIS-NN's ``input_offset`` trick, exact in integers) and
  requantisation by a 31-bit fixed-point multiplier and shift per output channel (TFLite's
  ``QuantizeMultiplier``, CMSIS-NN's ``arm_nn_requantize``);
* ``Add`` (the residual): CMSIS-NN's ``arm_elementwise_add_s8`` scheme (left shift 20,
  one multiplier per input, one for the output);
* ``Concat``/``Slice`` along time (the streaming state) and every Q->DQ->Q change of
  scale: copies, or a 256-entry table computed here from the float scales, so the device
  runs integer table look-ups only;
* the model's input is quantised (one float division per value, correctly rounded in IEEE
  single precision on both the host and the Cortex-M4F's FPU) and its output dequantised.

The shape arithmetic the exporter left (Shape/Gather/Sub/Unsqueeze feeding Slice) is
evaluated here at the bundle's streaming chunk: every buffer is sized at generation. Any
other op, or a form of these ops the kernels do not cover, is refused with one line naming
the op and the node (:class:`UnsupportedModel`).

No torch: the generator reads the graph with ``onnx`` and numpy only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# CMSIS-NN / TFLite's left shift for int8 add: headroom for the two rescaled inputs
ADD_LEFT_SHIFT = 20


class UnsupportedModel(ValueError):
    """The bundle or graph holds something the generator cannot express (one line)."""


@dataclasses.dataclass(frozen=True)
class QParams:
    """Per-tensor affine quantisation of an activation (uint8 or int8)."""

    scale: np.float32
    zp: int
    signed: bool

    @property
    def lo(self) -> int:
        return -128 if self.signed else 0

    @property
    def hi(self) -> int:
        return 127 if self.signed else 255

    def same(self, other: "QParams") -> bool:
        return bool(self.scale == other.scale) and self.zp == other.zp and self.signed == other.signed


@dataclasses.dataclass
class QTensor:
    """A quantised activation buffer, [channels][time] (ONNX's NCW without the batch)."""

    buf: str
    q: QParams
    c: int
    t: int
    # a state input read in place: the buffer holds codes of ``via`` (the carried state) and
    # the value is Q_q(DQ_via(code)); consumers fold the extra step into their copy/table
    via: QParams | None = None


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: ``real ~= m * 2**(shift - 31)`` with ``m`` in [2**30, 2**31)."""
    if real <= 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    m = int(round(frac * (1 << 31)))
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return m, shift


def _round_half_even(v: np.ndarray) -> np.ndarray:
    return np.rint(v)  # numpy's rint: round half to even, as ORT's MLAS quantiser


def requant_lut(src: QParams, dst: QParams) -> np.ndarray:
    """dst = Q(DQ(src)) for every src code, in float32 as ONNX Runtime computes it."""
    codes = np.arange(src.lo, src.hi + 1, dtype=np.int32)
    real = (codes - np.int32(src.zp)).astype(np.float32) * np.float32(src.scale)
    q = _round_half_even(real / np.float32(dst.scale)) + dst.zp
    return np.clip(q, dst.lo, dst.hi).astype(np.int32)


def affine_of_table(table: np.ndarray, width: int = 8192) -> tuple[int, int, int, int, int] | None:
    """(m, r, s, lo, hi) with ``min(max((q * m + r) >> s, lo), hi) == table[q]`` for every code
    q (int32 arithmetic, |q * m + r| < 2^31), or None. A requantisation table Q(DQ(q)) is
    monotone and close to affine; the form is checked on all 256 codes, so it is the table,
    exactly, in 4 integers instead of 256 bytes of flash."""
    tbl = np.asarray(table, np.int64)
    q = np.arange(tbl.size, dtype=np.int64)
    tlo, thi = int(tbl.min()), int(tbl.max())
    if tbl.size < 2 or np.any(np.diff(tbl) < 0):
        return None
    inner = (tbl > tlo) & (tbl < thi)
    if inner.sum() < 2:
        return None
    slope = float(np.polyfit(q[inner], tbl[inner], 1)[0])
    for sh in range(23, 7, -1):
        m0 = int(round(slope * 2**sh))
        ms = np.arange(max(1, m0 - width), m0 + width + 1, dtype=np.int64)[:, None]
        qm = q[None, :] * ms
        # bounds on r from every code: the exact value inside the clamp, at or past it outside
        lo = np.where(tbl == tlo, -(2**62), tbl * 2**sh - qm).max(axis=1)
        hi = np.where(tbl == thi, 2**62, (tbl + 1) * 2**sh - 1 - qm).min(axis=1)
        for i in np.nonzero(lo <= hi)[0]:
            m, r = int(ms[i, 0]), int((lo[i] + hi[i]) // 2)
            v = q * m + r
            if np.abs(v).max() < 2**31 - 1 and np.array_equal(np.clip(v >> sh, tlo, thi), tbl):
                return m, r, sh, tlo, thi
    return None


def _qparams(scale: np.ndarray, zp: np.ndarray, where: str) -> QParams:
    if np.asarray(scale).size != 1 or np.asarray(zp).size != 1:
        raise UnsupportedModel(f"per-channel activation quantisation at node {where}: only per-tensor activations are supported")
    if zp.dtype not in (np.uint8, np.int8):
        raise UnsupportedModel(f"activation type {zp.dtype} at node {where}: only uint8/int8 activations are supported")
    return QParams(np.float32(np.asarray(scale).reshape(())), int(np.asarray(zp).reshape(())), zp.dtype == np.int8)


@dataclasses.dataclass
class Program:
    """The lowered model: buffers, constant tables and the kernel calls of one step."""

    chunk: int
    in_name: str
    in_shape: tuple[int, int]
    in_q: QParams
    in_buf: str
    out_q: QParams
    out_buf: str
    out_len: int
    buffers: dict[str, int] = dataclasses.field(default_factory=dict)   # name -> bytes (uint8/int8)
    signed_bufs: set[str] = dataclasses.field(default_factory=set)
    states: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {name, buf, q, c, t}
    consts: list[str] = dataclasses.field(default_factory=list)         # C definitions
    calls: list[str] = dataclasses.field(default_factory=list)          # C statements of one step
    macs: int = 0
    weight_bytes: int = 0
    conv_tout_max: int = 0


class _Lowering:
    def __init__(self, model: Any, chunk: int, state_names: list[str]) -> None:
        from onnx import numpy_helper

        self.g = model.graph
        self.chunk = int(chunk)
        self.state_names = list(state_names)
        self.np = numpy_helper
        self.const: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.wdq: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}   # DQ of a constant
        self.fa: dict[str, QTensor] = {}       # float tensor == DQ(a quantised buffer)
        self.qt: dict[str, QTensor] = {}       # output of a QuantizeLinear
        self.pending: dict[str, tuple[str, Any]] = {}   # float result awaiting its Q
        self.finput: dict[str, tuple[int, ...]] = {}
        self.n_buf = 0
        self.n_const = 0
        self.written_states: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def _new_buf(self, prog: Program, c: int, t: int, signed: bool, name: str | None = None) -> str:
        name = name or f"b{self.n_buf}"
        self.n_buf += 1
        prog.buffers[name] = c * t
        if signed:
            prog.signed_bufs.add(name)
        return name

    def _table(self, prog: Program, ctype: str, values: np.ndarray, prefix: str) -> str:
        name = f"{prefix}{self.n_const}"
        self.n_const += 1
        vals = ", ".join(str(int(v)) for v in np.asarray(values).ravel())
        prog.consts.append(f"static const {ctype} {name}[{np.asarray(values).size}] = {{{vals}}};")
        return name

    def _copy_or_lut(self, prog: Program, src: QTensor, src_off: int, src_stride: int, dst: QTensor, dst_off: int,
                     c: int, t: int) -> None:
        """dst[:, off:off+t] = requant(src[:, off:off+t]): a copy when the scales agree, else a table."""
        if src.buf in self.written_states:
            raise UnsupportedModel(f"state {src.buf} is read after this step overwrote it")
        if src.via is not None:
            if src.q.signed or dst.q.signed or src.via.signed:
                raise UnsupportedModel(f"int8 activations at buffer {dst.buf}: only uint8 activations are supported")
            first = requant_lut(src.via, src.q)
            if src.via.same(src.q) and src.q.same(dst.q):
                prog.calls.append(f"copy_u8({src.buf} + {src_off}, {src_stride}, {dst.buf} + {dst_off}, {dst.t}, {c}, {t});")
            else:
                self._emit_lut(prog, requant_lut(src.q, dst.q)[first], f"{src.buf} + {src_off}, {src_stride}, "
                               f"{dst.buf} + {dst_off}, {dst.t}, {c}, {t}")
        elif src.q.same(dst.q):
            prog.calls.append(f"copy_u8({src.buf} + {src_off}, {src_stride}, {dst.buf} + {dst_off}, {dst.t}, {c}, {t});")
        else:
            if src.q.signed or dst.q.signed:
                raise UnsupportedModel(f"int8 activations at buffer {dst.buf}: only uint8 activations are supported")
            self._emit_lut(prog, requant_lut(src.q, dst.q), f"{src.buf} + {src_off}, {src_stride}, "
                           f"{dst.buf} + {dst_off}, {dst.t}, {c}, {t}")

    def _emit_lut(self, prog: Program, table: np.ndarray, args: str) -> None:
        """A change of scale: the exact fixed-point form of the table when one exists (no table
        in flash), else the 256-byte table."""
        aff = affine_of_table(table)
        if aff is not None:
            m, r, sh, lo, hi = aff
            prog.calls.append(f"affine_u8({args}, {m}, {r}, {sh}, {lo}, {hi});")
        else:
            name = self._table(prog, "uint8_t", table, "lut")
            prog.calls.append(f"lut_u8({args}, {name});")

    def _shape_of(self, name: str, node: Any) -> tuple[int, ...]:
        if name in self.fa:
            return (1, self.fa[name].c, self.fa[name].t)
        if name in self.finput:
            return self.finput[name]
        raise UnsupportedModel(f"op Shape at node {node.name}: shape of {name!r} is not known at generation")

    # ------------------------------------------------------------------ the walk
    def run(self) -> Program:
        g = self.g
        inputs = [i for i in g.input if i.name not in self.const]
        names = [i.name for i in inputs]
        data_in = [n for n in names if n not in self.state_names]
        if len(data_in) != 1:
            raise UnsupportedModel(f"the streaming model has inputs {names}: expected one data input beside the states {self.state_names}")
        in_name = data_in[0]
        for i in inputs:
            dims = [d.dim_value if d.dim_value > 0 else None for d in i.type.tensor_type.shape.dim]
            if len(dims) != 3:
                raise UnsupportedModel(f"input {i.name} has rank {len(dims)}: only [1, C, T] inputs are supported")
            if i.name == in_name:
                dims[2] = self.chunk
            if any(d is None for d in dims) or dims[0] != 1:
                raise UnsupportedModel(f"input {i.name} has shape {dims}: batch 1 and fixed channels expected")
            self.finput[i.name] = tuple(int(d) for d in dims)
        out_names = [o.name for o in g.output]
        # the carried state: the quantisation of each new_state output's own DQ
        carried: dict[str, QParams] = {}
        for n in g.node:
            if n.op_type == "DequantizeLinear" and n.output[0] in out_names[1:]:
                carried[n.output[0]] = _qparams(self.const[n.input[1]], self.const[n.input[2]], n.name)
        if len(out_names) != 1 + len(self.state_names):
            raise UnsupportedModel(f"the streaming model has outputs {out_names}: expected y and one new state per state input")
        state_out = dict(zip(self.state_names, out_names[1:]))
        for s, o in state_out.items():
            if o not in carried:
                raise UnsupportedModel(f"state output {o} is not the DequantizeLinear of a quantised tensor")
        c_in, t_in = self.finput[in_name][1], self.chunk
        prog = Program(chunk=self.chunk, in_name=in_name, in_shape=(c_in, t_in), in_q=QParams(np.float32(1), 0, False),
                       in_buf="", out_q=QParams(np.float32(1), 0, False), out_buf="", out_len=0)
        self.state_buf: dict[str, QTensor] = {}
        for s in self.state_names:
            _, c, t = self.finput[s]
            q = carried[state_out[s]]
            buf = self._new_buf(prog, c, t, q.signed, name=f"st_{s}")
            self.state_buf[s] = QTensor(buf, q, c, t)
            prog.states.append({"name": s, "buf": buf, "q": q, "c": c, "t": t})
        self.out_writes: dict[str, QTensor] = {}  # new_state output name -> the carried buffer
        for s, o in state_out.items():
            self.out_writes[o] = self.state_buf[s]
        self.state_out = state_out
        self.out_names = out_names
        self.prog = prog
        # state inputs first: they read the carried buffers before any op of this step writes them
        order = sorted(g.node, key=lambda n: 0 if (n.op_type == "QuantizeLinear" and n.input[0] in self.state_names) else 1)
        for node in order:
            self._node(node)
        y = out_names[0]
        if y not in self.fa:
            raise UnsupportedModel(f"output {y} is not the DequantizeLinear of a quantised tensor")
        yt = self.fa[y]
        if yt.c != 1:
            raise UnsupportedModel(f"output {y} has {yt.c} channels: only a one-channel waveform output is supported")
        prog.out_q, prog.out_buf, prog.out_len = yt.q, yt.buf, yt.t
        for o, qt in self.out_writes.items():
            if o not in self.fa or self.fa[o].buf != qt.buf:
                raise UnsupportedModel(f"state output {o} was not produced by a Slice of a quantised tensor")
        if not prog.in_buf:
            raise UnsupportedModel(f"input {in_name} never reaches a QuantizeLinear")
        return prog

    def _node(self, n: Any) -> None:
        op = n.op_type
        if op == "Constant":
            self.const[n.output[0]] = self.np.to_array(self._attr(n, "value"))
        elif op == "Shape":
            self.const[n.output[0]] = np.asarray(self._shape_of(n.input[0], n), np.int64)
        elif op in ("Gather", "Sub", "Unsqueeze", "Add") and all(i in self.const for i in n.input if i):
            a = [self.const[i] for i in n.input]
            if op == "Gather":
                r = np.take(a[0], a[1], axis=int(self._attr(n, "axis", 0)))
            elif op == "Sub":
                r = a[0] - a[1]
            elif op == "Add":
                r = a[0] + a[1]
            else:
                axes = a[1] if len(a) > 1 else self._attr(n, "axes")
                r = np.expand_dims(a[0], tuple(int(x) for x in np.asarray(axes).ravel()))
            self.const[n.output[0]] = np.asarray(r)
        elif op == "DequantizeLinear":
            x = n.input[0]
            if x in self.const:
                scale, zp = self.const[n.input[1]], self.const[n.input[2]] if len(n.input) > 2 else np.zeros((), np.int8)
                self.wdq[n.output[0]] = (self.const[x], scale, zp, int(self._attr(n, "axis", 1)))
            elif x in self.qt:
                self.fa[n.output[0]] = self.qt[x]
            else:
                raise UnsupportedModel(f"op DequantizeLinear at node {n.name}: input {x!r} is neither a constant nor a quantised tensor")
        elif op == "QuantizeLinear":
            self._quantize(n)
        elif op == "Conv":
            self._conv(n)
        elif op == "Add":
            a, b = n.input
            if a not in self.fa or b not in self.fa:
                raise UnsupportedModel(f"op Add at node {n.name}: only the sum of two quantised activations is supported")
            ta, tb = self.fa[a], self.fa[b]
            if (ta.c, ta.t) != (tb.c, tb.t):
                raise UnsupportedModel(f"op Add at node {n.name}: broadcasting {ta.c}x{ta.t} + {tb.c}x{tb.t} is not supported")
            self.pending[n.output[0]] = ("add", (ta, tb, n.name))
        elif op == "Concat":
            axis = int(self._attr(n, "axis", 0))
            if axis not in (-1, 2) or not all(i in self.fa for i in n.input):
                raise UnsupportedModel(f"op Concat at node {n.name}: only a time-axis concat of quantised activations is supported")
            parts = [self.fa[i] for i in n.input]
            if len({p.c for p in parts}) != 1:
                raise UnsupportedModel(f"op Concat at node {n.name}: inputs differ in channels")
            self.pending[n.output[0]] = ("concat", (parts, n.name))
        elif op == "Slice":
            self._slice(n)
        else:
            raise UnsupportedModel(f"unsupported op {op} at node {n.name or '(unnamed)'}")

    def _quantize(self, n: Any) -> None:
        prog = self.prog
        x, out = n.input[0], n.output[0]
        q = _qparams(self.const[n.input[1]], self.const[n.input[2]], n.name)
        if x == prog.in_name:
            c, t = prog.in_shape
            prog.in_q = q
            buf = self._new_buf(prog, c, t, q.signed)
            prog.in_buf = buf
            self.qt[out] = QTensor(buf, q, c, t)
            prog.calls.append(f"quantize_input(x, {buf}, {c * t});")
            self._trace(out, self.qt[out])
        elif x in self.state_names:
            st = self.state_buf[x]
            # the float state fed back is DQ(carried); this Q re-quantises it at the input's
            # scale: read in place by its consumer (a Concat), the two tables composed
            self.qt[out] = QTensor(st.buf, q, st.c, st.t, via=st.q)
        elif x in self.pending:
            kind, args = self.pending.pop(x)
            getattr(self, f"_emit_{kind}")(out, q, *args)
        else:
            raise UnsupportedModel(f"op QuantizeLinear at node {n.name}: input {x!r} is not produced by a supported op")

    def _conv(self, n: Any) -> None:
        x, w = n.input[0], n.input[1]
        b = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if x not in self.fa or w not in self.wdq or (b is not None and b not in self.wdq):
            raise UnsupportedModel(f"op Conv at node {n.name}: needs a quantised input and constant quantised weights and bias")
        ks = list(self._attr(n, "kernel_shape", []))
        pads = list(self._attr(n, "pads", [0, 0]))
        strides = list(self._attr(n, "strides", [1]))
        dil = list(self._attr(n, "dilations", [1]))
        group = int(self._attr(n, "group", 1))
        if len(ks) != 1 or any(pads) or strides != [1] or group != 1 or len(dil) != 1:
            raise UnsupportedModel(f"op Conv at node {n.name}: only 1-D, unpadded, stride-1, group-1 convolutions are supported "
                                   f"(kernel {ks}, pads {pads}, strides {strides}, group {group})")
        wq, ws, wzp, axis = self.wdq[w]
        if wq.dtype != np.int8 or np.any(np.asarray(wzp) != 0) or axis != 0:
            raise UnsupportedModel(f"op Conv at node {n.name}: weights must be symmetric int8, per output channel")
        self.pending[n.output[0]] = ("conv", (self.fa[x], wq, np.broadcast_to(np.asarray(ws, np.float32), (wq.shape[0],)),
                                              self.wdq[b] if b is not None else None, int(dil[0]), n.name))

    def _slice(self, n: Any) -> None:
        data = n.input[0]
        rest = [i for i in n.input[1:]]
        if data not in self.fa or not all(i in self.const for i in rest if i):
            raise UnsupportedModel(f"op Slice at node {n.name}: only a constant-bounds slice of a quantised activation is supported")
        src = self.fa[data]
        starts, ends = (int(np.asarray(self.const[i]).ravel()[0]) for i in rest[:2])
        axes = int(np.asarray(self.const[rest[2]]).ravel()[0]) if len(rest) > 2 and rest[2] else 0
        steps = int(np.asarray(self.const[rest[3]]).ravel()[0]) if len(rest) > 3 and rest[3] else 1
        if axes not in (-1, 2) or steps != 1:
            raise UnsupportedModel(f"op Slice at node {n.name}: only a unit-step slice along time is supported")
        lo, hi, _ = slice(starts, ends).indices(src.t)
        self.pending[n.output[0]] = ("slice", (src, lo, hi, n.name))

    def _trace(self, name: str, t: QTensor) -> None:
        # EDGEBP_TRACE is empty unless a debug build defines it (the harness's trace mode)
        self.prog.calls.append(f'EDGEBP_TRACE("{name}", {t.buf}, {t.c * t.t});')

    # ------------------------------------------------------------------ emitters (at the Q)
    def _out_tensor(self, out: str, q: QParams, c: int, t: int) -> QTensor:
        # a Q whose DQ is a state output writes straight into the carried buffer
        for nn in self.g.node:
            if nn.op_type == "DequantizeLinear" and nn.input[0] == out and nn.output[0] in self.out_writes:
                st = self.out_writes[nn.output[0]]
                if (st.c, st.t) != (c, t) or not st.q.same(q):
                    raise UnsupportedModel(f"state output {nn.output[0]}: {c}x{t} does not match its input {st.c}x{st.t}")
                return st
        return QTensor(self._new_buf(self.prog, c, t, q.signed), q, c, t)

    def _emit_conv(self, out: str, q: QParams, x: QTensor, wq: np.ndarray, ws: np.ndarray, bias: Any, dil: int, where: str) -> None:
        prog = self.prog
        cout, cin, k = wq.shape
        if x.via is not None:
            raise UnsupportedModel(f"op Conv at node {where}: reads a state input directly (only a Concat may)")
        if cin != x.c:
            raise UnsupportedModel(f"op Conv at node {where}: weight expects {cin} channels, input has {x.c}")
        tout = x.t - (k - 1) * dil
        if tout <= 0:
            raise UnsupportedModel(f"op Conv at node {where}: receptive field {(k - 1) * dil + 1} exceeds the {x.t} input samples")
        if x.q.signed or q.signed:
            raise UnsupportedModel(f"op Conv at node {where}: only uint8 activations are supported (ORT's QUInt8 default)")
        acc_scale = np.float64(x.q.scale) * ws.astype(np.float64)
        if bias is not None:
            bq, bs, bzp, _ = bias
            bf = (bq.astype(np.float64) - np.asarray(bzp, np.float64)) * np.asarray(bs, np.float64)
            b32 = np.rint(bf / acc_scale).astype(np.int64)
        else:
            b32 = np.zeros(cout, np.int64)
        # the input zero point folded into the bias: sum((x - zp) * w) = sum(x * w) - zp * sum(w)
        b32 = b32 - int(x.q.zp) * wq.astype(np.int64).reshape(cout, -1).sum(axis=1)
        if np.abs(b32).max() >= 2**31:
            raise UnsupportedModel(f"op Conv at node {where}: bias does not fit int32")
        mults = [quantize_multiplier(float(acc_scale[o] / np.float64(q.scale))) for o in range(cout)]
        yt = self._out_tensor(out, q, cout, tout)
        # the kernel's weight order: [cout][k][cin rounded up to 4], zeros in the padding
        cinp, coutp = (cin + 3) & ~3, cout + (cout & 1)
        wk = np.zeros((coutp, k, cinp), np.int8)
        wk[:cout, :, :cin] = wq.transpose(0, 2, 1)
        # per pair of output channels: [k][cinp / 4][2 channels][4 input channels]
        wk = wk.reshape(coutp // 2, 2, k, cinp // 4, 4).transpose(0, 2, 3, 1, 4)
        # the gathered input of g samples (passes of three, widened to 16 bits): this call's
        # scratch; three passes at a time where that is at most 2 kB
        g = 3 * max(1, min(3, 2048 // (6 * k * cinp), (tout + 2) // 3))
        xt = self._new_buf(prog, g, k * cinp * 2, False)
        wn = self._table(prog, "int8_t", wk, "w")
        prog.consts[-1] = prog.consts[-1].replace(f"{wn}[", f"EDGEBP_ALIGN4 {wn}[", 1)  # doubleword loads
        bn = self._table(prog, "int32_t", b32, "bias")
        mn = self._table(prog, "int32_t", [m for m, _ in mults], "mult")
        sn = self._table(prog, "int8_t", [s for _, s in mults], "shift")  # -31..30: one byte each
        cfg = f"conv{self.n_const}"
        self.n_const += 1
        prog.consts.append(f"static const conv_cfg {cfg} = {{{wn}, {bn}, {mn}, {sn}, {x.c}, {x.t}, {cout}, {k}, {dil}, {q.zp}, {g}}};")
        prog.calls.append(f"conv1d_u8s8(&{cfg}, {x.buf}, {yt.buf}, {xt}); /* {where} */")
        self._trace(out, yt)
        prog.macs += cout * cin * k * tout
        prog.conv_tout_max = max(prog.conv_tout_max, tout)
        prog.weight_bytes += wk.size + 9 * cout
        self.qt[out] = yt

    def _emit_add(self, out: str, q: QParams, a: QTensor, b: QTensor, where: str) -> None:
        prog = self.prog
        if a.via is not None or b.via is not None:
            raise UnsupportedModel(f"op Add at node {where}: reads a state input directly (only a Concat may)")
        if a.q.signed or b.q.signed or q.signed:
            raise UnsupportedModel(f"op Add at node {where}: only uint8 activations are supported")
        twice_max = 2.0 * max(float(a.q.scale), float(b.q.scale))
        m1, s1 = quantize_multiplier(float(a.q.scale) / twice_max)
        m2, s2 = quantize_multiplier(float(b.q.scale) / twice_max)
        mo, so = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(q.scale)))
        yt = self._out_tensor(out, q, a.c, a.t)
        prog.calls.append(f"add_u8({a.buf}, {a.t}, {-a.q.zp}, {m1}, {s1}, {b.buf}, {b.t}, {-b.q.zp}, {m2}, {s2}, "
                          f"{yt.buf}, {q.zp}, {mo}, {so}, {a.c}, {a.t}); /* {where} */")
        self._trace(out, yt)
        self.qt[out] = yt

    def _emit_concat(self, out: str, q: QParams, parts: list[QTensor], where: str) -> None:
        t = sum(p.t for p in parts)
        yt = self._out_tensor(out, q, parts[0].c, t)
        off = 0
        for p in parts:
            self._copy_or_lut(self.prog, p, 0, p.t, yt, off, p.c, p.t)
            off += p.t
        self._trace(out, yt)
        self.qt[out] = yt

    def _emit_slice(self, out: str, q: QParams, src: QTensor, lo: int, hi: int, where: str) -> None:
        yt = self._out_tensor(out, q, src.c, hi - lo)
        if yt.buf == src.buf:
            raise UnsupportedModel(f"op Slice at node {where}: slices in place are not supported")
        self._copy_or_lut(self.prog, src, lo, src.t, yt, 0, src.c, hi - lo)
        if yt.buf.startswith("st_"):
            self.written_states.add(yt.buf)
        self._trace(out, yt)
        self.qt[out] = yt


def lower_qdq(model: Any, chunk: int, state_names: list[str]) -> Program:
    """The QDQ streaming graph as integer kernels at one fixed chunk (see the module doc)."""
    return _Lowering(model, chunk, state_names).run()


# ---------------------------------------------------------------------------- C emission
C_KERNELS = r"""
/* ---- integer kernels (CMSIS-NN semantics, portable C99) ---- */

/* the hot loops are compiled at -O2 even in an -Os build (GCC's -Os spilled their operands
   to the stack); the convolution's multiply-accumulate loop is inline assembly on the
   Cortex-M4 (conv_passes) */
#if defined(__GNUC__) && !defined(__clang__)
#define EDGEBP_HOT __attribute__((noinline, optimize("O2")))
#else
#define EDGEBP_HOT
#endif
#if defined(__GNUC__)
#define EDGEBP_INLINE __inline__ __attribute__((always_inline))
#define EDGEBP_ALIGN4 __attribute__((aligned(4)))
#else
#define EDGEBP_INLINE
#define EDGEBP_ALIGN4
#endif

/* arm_nn_requantize as CMSIS-NN builds it with CMSIS_NN_USE_SINGLE_ROUNDING (TFLite's
   TFLITE_SINGLE_ROUNDING): x * m * 2^(shift - 31) rounded once, half up. The default
   double-rounding form (a rounding doubling high multiply, then a rounding shift) rounds
   twice and gives one code more or less for about 1 value in 600 of this model; ONNX
   Runtime rounds once (half to even, in float) */
static EDGEBP_INLINE int32_t requantize(int32_t x, int32_t m, int32_t shift)
{
    const int32_t total_shift = 31 - shift;
    const int64_t v = (int64_t)x * (int64_t)m;
    /* the same value, (v + 2^(total_shift - 1)) >> total_shift, without a 64-bit variable
       shift (about 12 instructions on a Cortex-M4): for total_shift 33..62 the rounding term
       is a multiple of 2^32 and only the high word counts (floor(floor(a / b) / c) =
       floor(a / (b c)); |high word| <= 2^30, the term <= 2^29: no overflow); for 32 it is
       the high word plus the low word's top bit; 31 (a multiplier of 0.5 to 1) by constant
       shifts */
    if (total_shift > 32 && total_shift < 63) {
        return ((int32_t)(v >> 32) + ((int32_t)1 << (total_shift - 33))) >> (total_shift - 32);
    }
    if (total_shift == 32) {
        return (int32_t)(v >> 32) + (int32_t)((uint32_t)v >> 31);
    }
    if (total_shift == 31) { /* constant shifts: a few instructions */
        return (int32_t)((v + ((int64_t)1 << 30)) >> 31);
    }
    return (int32_t)(((v >> (total_shift - 1)) + 1) >> 1);
}

static EDGEBP_INLINE uint8_t clamp_u8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT)
    return (uint8_t)__usat(v, 8); /* USAT: the same clamp to 0..255 in one instruction */
#else
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
#endif
}

/* round half to even without libm (ORT's quantiser rounds with nearbyint) */
static int32_t round_half_even(float v)
{
    int32_t i;
    float frac;
    if (v >= 2147483520.0f) {
        return 2147483647;
    }
    if (v <= -2147483520.0f) {
        return -2147483647 - 1;
    }
    i = (int32_t)v; /* truncates toward zero */
    frac = v - (float)i;
    if (frac > 0.5f || (frac == 0.5f && (i & 1))) {
        i++;
    } else if (frac < -0.5f || (frac == -0.5f && (i & 1))) {
        i--;
    }
    return i;
}

static void quantize_input(const float *x, uint8_t *q, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        const float v = x[i];
        /* NaN never reaches here: the caller feeds 0 for missing input, as the runtime does */
        q[i] = clamp_u8(round_half_even(v / EDGEBP_IN_SCALE) + EDGEBP_IN_ZP);
    }
}

static void copy_u8(const uint8_t *src, int src_stride, uint8_t *dst, int dst_stride, int c, int t)
{
    int ch;
    for (ch = 0; ch < c; ch++) {
        memcpy(dst + ch * dst_stride, src + ch * src_stride, (size_t)t);
    }
}

@@SCALE_KERNELS@@
/* causal dilated 1-D convolution. x is [cin][tin]; g output samples at a time (9 where the
   scratch allows), in passes of three. Their inputs are first gathered into xt (im2col,
   widened to 16 bits), pass after pass: per step of four input channels i..i+3 of tap j
   (step j * cinp / 4 + i / 4; cinp: cin rounded up to 4, the padding lanes zero and meeting
   zero weights), per sample c of the three, two words, x[i] | x[i + 2] << 16 and
   x[i + 1] | x[i + 3] << 16 at time t + c + j * dil (a pass past the last sample repeats
   the last one). Then per pair of output channels six int32 accumulators (two channels
   times three samples): w is, per pair, [k][cinp / 4][2][4] (reordered and zero-padded at
   generation, an odd cout padded with a zero channel, 4-byte aligned); bias holds
   b - zp_in * sum(w). On a core with the DSP extension (Cortex-M4) a step is one doubleword
   load of the pair's weights, four SXTB16 (int8 pairs to int16), three doubleword loads of
   the samples and twelve SMLAD (dual 16 x 16 multiply-accumulate): 20 instructions for 24
   MACs (a pass with one sample left: 10 for 8); elsewhere the same sums in plain C. Integer
   sums are exact in any order: every path gives the same bits. */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
/* one weight step's unpacking and its first column (shared by both passes) */
#define MAC2_COL0                                                                          \
    "sxtb16 %[wb], %[wa], ror #8\n\t"                                                      \
    "sxtb16 %[wa], %[wa]\n\t"                                                              \
    "sxtb16 %[wd], %[wc], ror #8\n\t"                                                      \
    "sxtb16 %[wc], %[wc]\n\t"                                                              \
    "smlad %[a0], %[wa], %[u], %[a0]\n\t"                                                  \
    "smlad %[a3], %[wc], %[u], %[a3]\n\t"                                                  \
    "smlad %[a0], %[wb], %[v], %[a0]\n\t"                                                  \
    "smlad %[a3], %[wd], %[v], %[a3]\n\t"
#define MAC2X3_STEP                                                                        \
    "ldrd %[wa], %[wc], [%[wp]], #8\n\t"                                                   \
    "ldrd %[u], %[v], [%[xp]], #8\n\t"                                                     \
    MAC2_COL0                                                                              \
    "ldrd %[u], %[v], [%[xp]], #8\n\t"                                                     \
    "smlad %[a1], %[wa], %[u], %[a1]\n\t"                                                  \
    "smlad %[a4], %[wc], %[u], %[a4]\n\t"                                                  \
    "smlad %[a1], %[wb], %[v], %[a1]\n\t"                                                  \
    "smlad %[a4], %[wd], %[v], %[a4]\n\t"                                                  \
    "ldrd %[u], %[v], [%[xp]], #8\n\t"                                                     \
    "smlad %[a2], %[wa], %[u], %[a2]\n\t"                                                  \
    "smlad %[a5], %[wc], %[u], %[a5]\n\t"                                                  \
    "smlad %[a2], %[wb], %[v], %[a2]\n\t"                                                  \
    "smlad %[a5], %[wd], %[v], %[a5]\n\t"
/* the same for a pass with one sample left: the other two columns skipped */
#define MAC2X1_STEP                                                                        \
    "ldrd %[wa], %[wc], [%[wp]], #8\n\t"                                                   \
    "ldrd %[u], %[v], [%[xp]], #24\n\t"                                                    \
    MAC2_COL0
#define MAC2X1_OPERANDS                                                                    \
    [a0] "+r"(a0), [a3] "+r"(a3), [xp] "+r"(xp), [wp] "+r"(wp), [wa] "=&r"(wa), [wb] "=&r"(wb), \
    [wc] "=&r"(wc), [wd] "=&r"(wd), [u] "=&r"(u), [v] "=&r"(v)
#define MAC2X3_OPERANDS                                                                    \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4), [a5] "+r"(a5), \
    [xp] "+r"(xp), [wp] "+r"(wp), [wa] "=&r"(wa), [wb] "=&r"(wb), [wc] "=&r"(wc),            \
    [wd] "=&r"(wd), [u] "=&r"(u), [v] "=&r"(v)
#endif

/* one convolution's constants (in flash): fewer arguments per call, less code; g: samples
   gathered at a time (passes of three), as the scratch xt allows */
typedef struct {
    const int8_t *w;
    const int32_t *bias, *mult;
    const int8_t *shift;
    int16_t cin, tin, cout, k, dil, out_zp, g;
} conv_cfg;

/* the outputs at samples t..t + ncols - 1 of every output channel from the gathered input
   xp (conv1d_u8s8), three samples per pass, two output channels at a time: per pass six
   accumulators (channel 0 at t, t + 1, t + 2, channel 1 at t, t + 1, t + 2) start at the
   biases, take n4 steps of the samples and the pair's weights, and are requantised and
   stored (fast: every channel's total shift in 33..62, requantize's high-word form with its
   rounding term and shift hoisted: the same values). On the Cortex-M4 the steps are inline
   assembly: six accumulators, four weight operands, two sample words and two pointers take
   every register but sp (the loop's end is read from the stack). An odd cout's padding
   channel is stored first at the real channel's place and then overwritten */
static EDGEBP_HOT void conv_passes(const conv_cfg *c, const uint32_t *xw, uint8_t *y, int t, int ncols, int fast)
{
    const int cout = c->cout, k = c->k, tout = c->tin - (c->k - 1) * c->dil, zp = c->out_zp;
    const int n4 = k * (((int)c->cin + 3) & ~3) / 4;
    int o;
    for (o = 0; o < cout; o += 2) {
        const int o1 = o + 1 < cout ? o + 1 : o;
        const int32_t m0 = c->mult[o], m1 = c->mult[o1], s0 = c->shift[o], s1 = c->shift[o1];
        const int32_t e0 = -1 - s0, e1 = -1 - s1;
        const int32_t r0 = fast ? (int32_t)1 << (e0 - 1) : 0, r1 = fast ? (int32_t)1 << (e1 - 1) : 0;
        const int32_t b0 = c->bias[o], b1 = c->bias[o1];
        const int8_t *const w = c->w + 8 * n4 * (o / 2);
        uint8_t *y0 = y + o * tout + t, *y1 = y + o1 * tout + t;
        const uint32_t *xp = xw;
        int left = ncols;
        for (;;) {
            int32_t a0 = b0, a1 = b0, a2 = b0, a3 = b1, a4 = b1, a5 = b1;
            const int8_t *wp = w;
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
            uint32_t wa, wb, wc, wd, u, v;
            const uint32_t *const end = xp + 6 * n4;
            if (left == 1) { /* the last sample alone: a third of the work */
                if (n4 & 1) {
                    __asm__(MAC2X1_STEP : MAC2X1_OPERANDS : : "memory");
                }
                if (n4 > 1) {
                    __asm__("1:\n\t" MAC2X1_STEP MAC2X1_STEP
                            "ldr %[u], %[end]\n\t"
                            "cmp %[xp], %[u]\n\t"
                            "bne 1b\n\t"
                            : MAC2X1_OPERANDS
                            : [end] "m"(end)
                            : "cc", "memory");
                }
            } else {
                int rest;
                for (rest = n4 % 3; rest > 0; rest--) {
                    __asm__(MAC2X3_STEP : MAC2X3_OPERANDS : : "memory");
                }
                if (n4 > 2) { /* three steps per iteration */
                    __asm__("1:\n\t" MAC2X3_STEP MAC2X3_STEP MAC2X3_STEP
                            "ldr %[u], %[end]\n\t"
                            "cmp %[xp], %[u]\n\t"
                            "bne 1b\n\t"
                            : MAC2X3_OPERANDS
                            : [end] "m"(end)
                            : "cc", "memory");
                }
            }
#else
            int st;
            for (st = 0; st < n4; st++, xp += 6, wp += 8) {
                int32_t sum[6];
                int cc;
                for (cc = 0; cc < 3; cc++) {
                    const uint32_t u = xp[2 * cc], v = xp[2 * cc + 1];
                    const int32_t x0 = (int32_t)(u & 0xFFFFu), x2 = (int32_t)(u >> 16);
                    const int32_t x1 = (int32_t)(v & 0xFFFFu), x3 = (int32_t)(v >> 16);
                    sum[cc] = wp[0] * x0 + wp[1] * x1 + wp[2] * x2 + wp[3] * x3;
                    sum[3 + cc] = wp[4] * x0 + wp[5] * x1 + wp[6] * x2 + wp[7] * x3;
                }
                a0 += sum[0];
                a1 += sum[1];
                a2 += sum[2];
                a3 += sum[3];
                a4 += sum[4];
                a5 += sum[5];
            }
#endif
            if (fast && left >= 3) {
                y1[0] = clamp_u8((((int32_t)(((int64_t)a3 * m1) >> 32) + r1) >> e1) + zp);
                y1[1] = clamp_u8((((int32_t)(((int64_t)a4 * m1) >> 32) + r1) >> e1) + zp);
                y1[2] = clamp_u8((((int32_t)(((int64_t)a5 * m1) >> 32) + r1) >> e1) + zp);
                y0[0] = clamp_u8((((int32_t)(((int64_t)a0 * m0) >> 32) + r0) >> e0) + zp);
                y0[1] = clamp_u8((((int32_t)(((int64_t)a1 * m0) >> 32) + r0) >> e0) + zp);
                y0[2] = clamp_u8((((int32_t)(((int64_t)a2 * m0) >> 32) + r0) >> e0) + zp);
            } else {
                const int32_t acc[6] = {a0, a1, a2, a3, a4, a5};
                int n;
                for (n = 0; n < 3 && n < left; n++) {
                    y1[n] = clamp_u8(requantize(acc[3 + n], m1, s1) + zp);
                    y0[n] = clamp_u8(requantize(acc[n], m0, s0) + zp);
                }
            }
            left -= 3;
            if (left <= 0) {
                break;
            }
            y0 += 3;
            y1 += 3;
        }
    }
}
#undef MAC2X3_STEP
#undef MAC2X3_OPERANDS
#undef MAC2X1_STEP
#undef MAC2X1_OPERANDS

static EDGEBP_HOT void conv1d_u8s8(const conv_cfg *c, const uint8_t *x, uint8_t *y, uint8_t *xt)
{
    const int cin = c->cin, tin = c->tin, k = c->k, dil = c->dil, g = c->g;
    const int tout = tin - (k - 1) * dil;
    uint32_t *const xw = (uint32_t *)(void *)xt; /* word-aligned: an arena buffer */
    int i, j, t, n, b, fast = 1;
    for (i = 0; i < c->cout; i++) {
        fast = fast && c->shift[i] < -1 && c->shift[i] > -32;
    }
    for (t = 0; t < tout; t += g) {
        const int ncols = tout - t < g ? tout - t : g;
        uint32_t *d = xw;
        for (b = 0; 3 * b < ncols; b++) { /* the gather, pass by pass */
            const int c0 = 3 * b, c1 = c0 + 1 < ncols ? c0 + 1 : ncols - 1, c2 = c0 + 2 < ncols ? c0 + 2 : ncols - 1;
            for (j = 0; j < k; j++) {
                const uint8_t *p0 = x + j * dil + t;
                i = 0;
                if (c0 + 3 <= ncols) { /* a full pass: three samples in a row */
                    const uint8_t *q0 = p0 + c0, *q1 = q0 + tin, *q2 = q1 + tin, *q3 = q2 + tin;
                    for (; i + 4 <= cin; i += 4, q0 += 4 * tin, q1 += 4 * tin, q2 += 4 * tin, q3 += 4 * tin, d += 6) {
                        d[0] = (uint32_t)q0[0] | ((uint32_t)q2[0] << 16);
                        d[1] = (uint32_t)q1[0] | ((uint32_t)q3[0] << 16);
                        d[2] = (uint32_t)q0[1] | ((uint32_t)q2[1] << 16);
                        d[3] = (uint32_t)q1[1] | ((uint32_t)q3[1] << 16);
                        d[4] = (uint32_t)q0[2] | ((uint32_t)q2[2] << 16);
                        d[5] = (uint32_t)q1[2] | ((uint32_t)q3[2] << 16);
                    }
                    p0 += i * tin;
                }
                for (; i + 4 <= cin; i += 4, p0 += 4 * tin, d += 6) {
                    const uint8_t *const p1 = p0 + tin, *const p2 = p1 + tin, *const p3 = p2 + tin;
                    d[0] = (uint32_t)p0[c0] | ((uint32_t)p2[c0] << 16);
                    d[1] = (uint32_t)p1[c0] | ((uint32_t)p3[c0] << 16);
                    d[2] = (uint32_t)p0[c1] | ((uint32_t)p2[c1] << 16);
                    d[3] = (uint32_t)p1[c1] | ((uint32_t)p3[c1] << 16);
                    d[4] = (uint32_t)p0[c2] | ((uint32_t)p2[c2] << 16);
                    d[5] = (uint32_t)p1[c2] | ((uint32_t)p3[c2] << 16);
                }
                if (i < cin) { /* the last, partial group: zeros in the padding lanes */
                    const int cols[3] = {c0, c1, c2};
                    int cc;
                    for (cc = 0; cc < 3; cc++, d += 2) {
                        uint32_t v[4];
                        for (n = 0; n < 4; n++) {
                            v[n] = i + n < cin ? (uint32_t)p0[n * tin + cols[cc]] : 0u;
                        }
                        d[0] = v[0] | (v[2] << 16);
                        d[1] = v[1] | (v[3] << 16);
                    }
                }
            }
        }
        conv_passes(c, xw, y, t, ncols, fast);
    }
}

/* arm_elementwise_add_s8's scheme for uint8 tensors */
static EDGEBP_HOT void add_u8(const uint8_t *a, int a_stride, int32_t a_off, int32_t a_m, int32_t a_s, const uint8_t *b, int b_stride,
                   int32_t b_off, int32_t b_m, int32_t b_s, uint8_t *y, int32_t y_zp, int32_t y_m, int32_t y_s, int c, int t)
{
    int ch, k;
    for (ch = 0; ch < c; ch++) {
        for (k = 0; k < t; k++) {
            int32_t va = ((int32_t)a[ch * a_stride + k] + a_off) * (1 << EDGEBP_ADD_LEFT_SHIFT);
            int32_t vb = ((int32_t)b[ch * b_stride + k] + b_off) * (1 << EDGEBP_ADD_LEFT_SHIFT);
            va = requantize(va, a_m, a_s);
            vb = requantize(vb, b_m, b_s);
            y[ch * t + k] = clamp_u8(requantize(va + vb, y_m, y_s) + y_zp);
        }
    }
}
"""

# the change-of-scale kernels, each emitted only where a model calls it
C_SCALE_KERNELS = {
    "affine_u8": r"""/* a change of scale in fixed point: min(max((q * m + r) >> s, lo), hi), checked at generation
   to equal the 256-entry table on every code (the generator falls back to lut_u8 otherwise) */
static EDGEBP_HOT void affine_u8(const uint8_t *src, int src_stride, uint8_t *dst, int dst_stride, int c, int t, int32_t m,
                      int32_t r, int32_t s, int32_t lo, int32_t hi)
{
    int ch, k;
    for (ch = 0; ch < c; ch++) {
        for (k = 0; k < t; k++) {
            const int32_t v = ((int32_t)src[ch * src_stride + k] * m + r) >> s;
            dst[ch * dst_stride + k] = (uint8_t)(v < lo ? lo : (v > hi ? hi : v));
        }
    }
}

""",
    "lut_u8": r"""/* a change of scale: a 256-entry table computed at generation from the two float scales */
static void lut_u8(const uint8_t *src, int src_stride, uint8_t *dst, int dst_stride, int c, int t, const uint8_t *lut)
{
    int ch, k;
    for (ch = 0; ch < c; ch++) {
        for (k = 0; k < t; k++) {
            dst[ch * dst_stride + k] = lut[src[ch * src_stride + k]];
        }
    }
}

""",
}



def _arena(prog: Program) -> tuple[dict[str, int], int]:
    """Offsets of the step's temporaries in one arena: buffers whose lives (first to last
    call) do not overlap share bytes (greedy, largest first)."""
    import re

    life: dict[str, list[int]] = {}
    for i, call in enumerate(prog.calls):
        for b in set(re.findall(r"\bb\d+\b", call.split("/*")[0])):
            life.setdefault(b, [i, i])[1] = i
    placed: list[tuple[int, int, int, int]] = []  # (off, size, first, last)
    offs: dict[str, int] = {}
    for b in sorted(life, key=lambda n: -prog.buffers[n]):
        size, (f, l) = prog.buffers[b], life[b]
        size = (size + 3) & ~3
        off = 0
        for po, ps, pf, pl in sorted(placed):
            if pf <= l and f <= pl and off < po + ps and po < off + size:
                off = po + ps
        # a second pass: the first gap may have been skipped past an earlier placement
        changed = True
        while changed:
            changed = False
            for po, ps, pf, pl in placed:
                if pf <= l and f <= pl and off < po + ps and po < off + size:
                    off, changed = po + ps, True
        placed.append((off, size, f, l))
        offs[b] = off
    total = max((o + s for o, s, _, _ in placed), default=0)
    return offs, total


def _cfloat(v: float) -> str:
    # 9 significant digits round-trip a float32 exactly
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise UnsupportedModel(f"a non-finite constant {f!r} cannot be generated")
    text = f"{f:.9g}"
    return (text if any(ch in text for ch in ".e") else text + ".0") + "f"


def _kernels_used(prog: Program) -> str:
    """C_KERNELS with the change-of-scale kernels this model calls (-Werror: an unused static
    function is a warning)."""
    used = "".join(k for fn, k in C_SCALE_KERNELS.items() if any(c.startswith(f"{fn}(") for c in prog.calls))
    return C_KERNELS.replace("@@SCALE_KERNELS@@\n", used)


def emit_model_c(prog: Program, prefix: str = "edgebp") -> tuple[str, str, dict[str, int]]:
    """(header, source, sizes) of the model for one bundle; sizes in bytes."""
    offs, arena = _arena(prog)
    state_bytes = sum(s["c"] * s["t"] for s in prog.states)
    c_in, t_in = prog.in_shape
    h = f"""/* Generated by `edgebp firmware generate`: the streaming int8 model. Do not edit. */
#ifndef EDGEBP_MODEL_H
#define EDGEBP_MODEL_H
#include <stdint.h>

#define EDGEBP_MODEL_IN_CH {c_in}
#define EDGEBP_MODEL_CHUNK {t_in}
#define EDGEBP_MODEL_OUT_LEN {prog.out_len}
#define EDGEBP_MODEL_ARENA_BYTES {arena}
#define EDGEBP_MODEL_STATE_BYTES {state_bytes}
#define EDGEBP_MODEL_N_STATES {len(prog.states)}
#define EDGEBP_MODEL_MACS_PER_STEP {prog.macs}
#define EDGEBP_OUT_SCALE {_cfloat(prog.out_q.scale)}
#define EDGEBP_OUT_ZP {prog.out_q.zp}

/* zero state (the float state 0 of ONNX Runtime's first call) */
void edgebp_model_reset(void);
/* one step: x[{c_in}][{t_in}] float (the preprocessed input, channel-major) -> y_q[{prog.out_len}]
   (uint8 codes; the normalised output is (y_q - EDGEBP_OUT_ZP) * EDGEBP_OUT_SCALE) */
void edgebp_model_step(const float *x, uint8_t *y_q);
/* load state k (0..EDGEBP_MODEL_N_STATES-1) from its float form, ONNX Runtime's new_state_k
   [channels][time]: q = round(v / scale) + zp (exact for a state ORT produced) */
void edgebp_model_load_state(int k, const float *v);

#endif
"""
    lines = ["/* Generated by `edgebp firmware generate`: the streaming int8 model. Do not edit. */",
             "#include <stdint.h>", "#include <string.h>", "#if defined(__ARM_FEATURE_DSP)", "#include <arm_acle.h>", "#endif",
             f'#include "{prefix}_model.h"', "",
             f"#define EDGEBP_IN_SCALE {_cfloat(prog.in_q.scale)}", f"#define EDGEBP_IN_ZP {prog.in_q.zp}",
             f"#define EDGEBP_ADD_LEFT_SHIFT {ADD_LEFT_SHIFT}",
             "#ifndef EDGEBP_TRACE", "#define EDGEBP_TRACE(name, buf, n) ((void)0)", "#else",
             "void edgebp_trace(const char *name, const uint8_t *buf, int n);", "#endif", _kernels_used(prog), "/* ---- constants ---- */", *prog.consts, "",
             "/* ---- buffers: the carried state (persistent) and one arena for the step's temporaries ---- */"]
    for s in prog.states:
        lines.append(f"static uint8_t {s['buf']}[{s['c'] * s['t']}]; /* {s['name']}: scale {float(s['q'].scale):.9g}, zp {s['q'].zp} */")
    lines.append(f"static uint32_t arena_words[{max(1, (arena + 3) // 4)}]; /* word-aligned */")
    lines.append("")
    # one table of the carried states (buffer, scale, length, zero point) for reset and load
    lines.append("typedef struct {\n    uint8_t *buf;\n    float scale;\n    int16_t n;\n    uint8_t zp;\n} state_cfg;\n")
    lines.append(f"static const state_cfg states[{max(1, len(prog.states))}] = {{")
    for s in prog.states:
        lines.append(f"    {{{s['buf']}, {_cfloat(s['q'].scale)}, {s['c'] * s['t']}, {s['q'].zp}}},")
    if not prog.states:
        lines.append("    {0, 1.0f, 0, 0},")
    lines.append("};\n")
    lines.append("void edgebp_model_reset(void)\n{\n    int k, i;\n"
                 f"    for (k = 0; k < {len(prog.states)}; k++) {{\n"
                 "        for (i = 0; i < states[k].n; i++) {\n            states[k].buf[i] = states[k].zp;\n        }\n    }\n}\n")
    lines.append("static void load_q(uint8_t *q, const float *v, int n, float scale, int32_t zp)\n{\n    int i;\n"
                 "    for (i = 0; i < n; i++) {\n        q[i] = clamp_u8(round_half_even(v[i] / scale) + zp);\n    }\n}\n")
    lines.append("void edgebp_model_load_state(int k, const float *v)\n{\n"
                 f"    if (k >= 0 && k < {len(prog.states)}) {{\n"
                 "        load_q(states[k].buf, v, states[k].n, states[k].scale, states[k].zp);\n    }\n}\n")
    lines.append("void edgebp_model_step(const float *x, uint8_t *y_q)\n{\n    uint8_t *const arena = (uint8_t *)arena_words;")
    for b, o in sorted(offs.items(), key=lambda kv: int(kv[0][1:])):
        lines.append(f"    uint8_t *const {b} = arena + {o}; /* {prog.buffers[b]} bytes */")
    for call in prog.calls:
        lines.append(f"    {call}")
    lines.append(f"    copy_u8({prog.out_buf}, {prog.out_len}, y_q, {prog.out_len}, 1, {prog.out_len});")
    lines.append("}")
    sizes = {"arena": arena, "state": state_bytes, "weights": prog.weight_bytes, "macs_per_step": prog.macs}
    return h, "\n".join(lines) + "\n", sizes


C_HARNESS_MODEL = r"""/* Generated by `edgebp firmware generate`: a test harness (host or semihosted target).
   edgebp_harness model IN OUT: IN holds float32 steps [n][EDGEBP_MODEL_IN_CH][EDGEBP_MODEL_CHUNK]
   (little-endian); OUT gets the uint8 output codes [n][EDGEBP_MODEL_OUT_LEN]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "edgebp_model.h"

#ifdef EDGEBP_BOARD_TICKS
/* the board's SysTick (startup_cm4.c): with QEMU's -icount shift=0, 1 ns per instruction */
extern uint64_t edgebp_board_ticks(void);
#define TICKS() edgebp_board_ticks()
#else
#define TICKS() ((uint64_t)0)
#endif

static float x_step[EDGEBP_MODEL_IN_CH * EDGEBP_MODEL_CHUNK];
static uint8_t y_step[EDGEBP_MODEL_OUT_LEN];

/* teacher-forced: per step, the states ORT carried into it (float, new_state_k order) then x */
static float st_step[EDGEBP_MODEL_STATE_BYTES];
static const int st_len[EDGEBP_MODEL_N_STATES] = {EDGEBP_STATE_LENS};

static int run_model_tf(FILE *in, FILE *out)
{
    long steps = 0;
    edgebp_model_reset();
    for (;;) {
        int k, off = 0;
        if (fread(st_step, sizeof(float), EDGEBP_MODEL_STATE_BYTES, in) != (size_t)EDGEBP_MODEL_STATE_BYTES) {
            break;
        }
        if (fread(x_step, sizeof(float), EDGEBP_MODEL_IN_CH * EDGEBP_MODEL_CHUNK, in) !=
            (size_t)(EDGEBP_MODEL_IN_CH * EDGEBP_MODEL_CHUNK)) {
            break;
        }
        for (k = 0; k < EDGEBP_MODEL_N_STATES; k++) {
            edgebp_model_load_state(k, st_step + off);
            off += st_len[k];
        }
        edgebp_model_step(x_step, y_step);
        if (fwrite(y_step, 1, EDGEBP_MODEL_OUT_LEN, out) != (size_t)EDGEBP_MODEL_OUT_LEN) {
            return 1;
        }
        steps++;
    }
    fprintf(stderr, "edgebp_harness: %ld teacher-forced model steps\n", steps);
    return 0;
}

static int run_model(FILE *in, FILE *out)
{
    long steps = 0;
    uint64_t ticks = 0;
    edgebp_model_reset();
    while (fread(x_step, sizeof(float), EDGEBP_MODEL_IN_CH * EDGEBP_MODEL_CHUNK, in) ==
           (size_t)(EDGEBP_MODEL_IN_CH * EDGEBP_MODEL_CHUNK)) {
        {
            const uint64_t t0 = TICKS();
            edgebp_model_step(x_step, y_step);
            ticks += TICKS() - t0;
        }
        if (fwrite(y_step, 1, EDGEBP_MODEL_OUT_LEN, out) != (size_t)EDGEBP_MODEL_OUT_LEN) {
            return 1;
        }
        steps++;
    }
    fprintf(stderr, "edgebp_harness: %ld model steps\n", steps);
    fprintf(stderr, "edgebp_harness: model ticks %lu %lu\n", (unsigned long)(ticks >> 32), (unsigned long)(ticks & 0xFFFFFFFFu));
    return 0;
}
"""


def bundle_program(bundle: Any) -> Program:
    """The lowered streaming int8 model of a loaded bundle; :class:`UnsupportedModel` when the
    bundle is not a streaming edge-tcn int8 bundle this generator can express."""
    import onnx

    m = bundle.manifest
    streaming = m.get("streaming")
    if not streaming or not m.get("causal"):
        raise UnsupportedModel(f"{bundle.path}: a window model (no streaming state): only streaming causal bundles can be generated")
    if m.get("output") != "waveform":
        raise UnsupportedModel(f"{bundle.path}: output {m.get('output')!r}: only waveform models can be generated")
    key = streaming.get("file_keys", {}).get("int8")
    if key is None:
        raise UnsupportedModel(f"{bundle.path}: no streaming int8 model (it has: {', '.join(streaming.get('file_keys', {}))})")
    model = onnx.load(str(bundle.file(key)))
    prog = lower_qdq(model, int(streaming["chunk"]), [s["name"] for s in streaming["states"]])
    if prog.in_shape[0] != len(m["inputs"]):
        raise UnsupportedModel(f"{bundle.path}: the model takes {prog.in_shape[0]} channels, the manifest names {len(m['inputs'])} inputs")
    return prog


# ---------------------------------------------------------------------------- the preprocessor
C_PRE = r"""
/* ---- the streaming preprocessor: float32 (a polyphase FIR as arm_fir_decimate_f32/
   arm_fir_interpolate_f32 compute it, one accumulator; the running normaliser), the biquads'
   recursion (transposed direct form II, as arm_biquad_cascade_df2T_f32/_f64) in float-float;
   the gap rules of edgebp.processing ---- */

/* Float-float arithmetic: a value is hi + lo, two float32s with |lo| <= ulp(hi) / 2, about 48
   significant bits (Dekker 1971; Knuth's TwoSum; a product's rounding error exactly from one
   fused multiply-add, VFMA.F32 on the Cortex-M4F's FPU, fmaf elsewhere). Every operation is a
   correctly rounded IEEE 754 float32 operation, so every target computes the same bits, and
   none needs double (software-emulated on a Cortex-M4F: the soft-double routines alone are
   about 2 kB of flash). Why: a low high-pass edge puts poles near z = 1 (the default bundle's
   0.5 Hz at 125 Hz: a1 = -1.965); the section's states are about the size of the input while
   its output is small, and in float32 their rounding, fed back through the recursion, moved
   the preprocessed signal by up to 1e-3 (normalised units) from the runtime's float64 chain
   (docs/firmware.md); in float-float the float32 stages around it set the difference. */
static ffloat ff_sum(float a, float b) /* a + b exactly (TwoSum) */
{
    ffloat r;
    float bb;
    r.hi = a + b;
    bb = r.hi - a;
    r.lo = (a - (r.hi - bb)) + (b - bb);
    return r;
}

static ffloat ff_add(ffloat a, ffloat b)
{
    const ffloat t = ff_sum(a.hi, b.hi);
    return ff_sum(t.hi, t.lo + (a.lo + b.lo));
}

static ffloat ff_mul(ffloat a, ffloat b) /* lo x lo left out: below the result's own rounding */
{
    const float p = a.hi * b.hi;
    return ff_sum(p, fmaf(a.hi, b.hi, -p) + (a.hi * b.lo + a.lo * b.hi));
}

static ffloat ff_neg(ffloat a)
{
    a.hi = -a.hi;
    a.lo = -a.lo;
    return a;
}

typedef struct {
    const ffloat *sos;      /* [n_sec][6]: b0 b1 b2 a0 a1 a2 (a0 = 1) */
    const ffloat *zi_step;  /* [n_sec][2]: the steady state of a unit step (warm start) */
    int n_sec;
} biquad_cfg;

typedef struct {
    /* resampler */
    /* the last EDGEBP_RS_K inputs, oldest first, are hist[pos .. pos + K - 1]: a ring written
       twice (slots j and j + K), so the window is contiguous and a push moves nothing */
    float hist[2 * EDGEBP_RS_K];
    uint8_t flag[2 * EDGEBP_RS_K];  /* 1: a gap (held value) */
    int pos;
    int started;
    float held;
    /* biquads (transposed direct form II), float-float states */
    ffloat zi[EDGEBP_MAX_SEC][2];
    float hold;
    int hold_started;
    /* running normaliser */
    float mean, var, cnt;
    /* the channel's first valid sample, taken off every input where the filter's DC gain is 0 */
    float dc;
    int dc_set;
} chan_state;

static chan_state chans[EDGEBP_N_IN];
/* the resampler's output clock, shared by the channels: q = m*down div up, r = m*down mod up */
static int32_t rs_q_minus_n;  /* q - (inputs seen): the next output's newest input, relative */
static int32_t rs_r;

#if !EDGEBP_RS_IDENTITY
static int32_t floordiv(int32_t a, int32_t b)
{
    int32_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}
#endif

static void pre_reset(void)
{
    int c, j;
    for (c = 0; c < EDGEBP_N_IN; c++) {
        chan_state *s = &chans[c];
        for (j = 0; j < 2 * EDGEBP_RS_K; j++) {
            s->hist[j] = 0.0f;
            s->flag[j] = 0;
        }
        s->pos = 0;
        s->started = 0;
        s->held = 0.0f;
        s->dc = 0.0f;
        s->dc_set = 0;
        for (j = 0; j < EDGEBP_MAX_SEC; j++) {
            s->zi[j][0].hi = s->zi[j][0].lo = 0.0f;
            s->zi[j][1].hi = s->zi[j][1].lo = 0.0f;
        }
        s->hold = 0.0f;
        s->hold_started = 0;
        s->mean = 0.0f;
        s->var = 0.0f;
        s->cnt = 0.0f;
    }
    rs_q_minus_n = 0;
    rs_r = 0;
}

static float biquads(chan_state *s, const biquad_cfg *f, float in)
{
    int k;
    ffloat x;
    const int gap = !isfinite(in);
    if (gap) {
        if (!s->hold_started) {
            return NAN;
        }
        in = s->hold; /* the filter runs on the last valid input through a gap */
    }
    x.hi = in;
    x.lo = 0.0f;
    if (!gap) {
        if (!s->hold_started) {
            for (k = 0; k < f->n_sec; k++) {
                s->zi[k][0] = ff_mul(f->zi_step[2 * k], x);
                s->zi[k][1] = ff_mul(f->zi_step[2 * k + 1], x);
            }
            s->hold_started = 1;
        }
        s->hold = in;
    }
    for (k = 0; k < f->n_sec; k++) {
        const ffloat *c = f->sos + 6 * k;
        const ffloat y = ff_add(ff_mul(c[0], x), s->zi[k][0]);
        s->zi[k][0] = ff_add(ff_add(ff_mul(c[1], x), ff_neg(ff_mul(c[4], y))), s->zi[k][1]);
        s->zi[k][1] = ff_add(ff_mul(c[2], x), ff_neg(ff_mul(c[5], y)));
        x = y;
    }
    return gap ? NAN : x.hi + x.lo;
}

static float running_norm(chan_state *s, float v)
{
    float a, d, m2, v2, den;
    if (!isfinite(v)) {
        return NAN;
    }
    if (s->cnt < EDGEBP_NORM_COUNT_CAP) {
        s->cnt += 1.0f;
    }
    a = 1.0f / s->cnt;
    if (a < EDGEBP_NORM_ALPHA) {
        a = EDGEBP_NORM_ALPHA;
    }
    d = v - s->mean;
    m2 = s->mean + a * d;
    v2 = (1.0f - a) * (s->var + a * d * d);
    if (!(isfinite(m2) && isfinite(v2))) {
        s->mean = 0.0f; /* an overflowing value is a gap; the statistics start afresh */
        s->var = 0.0f;
        s->cnt = 0.0f;
        return NAN;
    }
    s->mean = m2;
    s->var = v2;
    den = s->var > EDGEBP_NORM_VAR_FLOOR ? s->var : EDGEBP_NORM_VAR_FLOOR;
    return (v - s->mean) / sqrtf(den);
}

/* Why: an 18-bit PPG in counts sits near 2^17; float32 carries 24 bits, so a resampler and
   biquads run on it round at ~0.01 count where the pulse is a few hundred counts. Where the
   filter's DC gain is exactly 0 (a high-pass section), taking a constant off the input
   changes nothing in exact arithmetic (the resampler's taps sum to 1, the warm start and the
   edge hold move with it, the filter removes it) and keeps the float32 values small. The
   subtraction is exact for integer codes (both below 2^24). */
static float dc_off(chan_state *s, int c, float v)
{
    if (!dc_remove[c]) {
        return v;
    }
    if (isfinite(v) && !s->dc_set) {
        s->dc = v;
        s->dc_set = 1;
    }
    return v - s->dc;
}

#if !EDGEBP_RS_IDENTITY
static void rs_push(chan_state *s, float v)
{
    int j;
    if (isfinite(v)) {
        if (!s->started) {
            for (j = 0; j < 2 * EDGEBP_RS_K; j++) {
                s->hist[j] = v; /* edge hold: the first valid value fills the history */
            }
            s->started = 1;
        }
        s->held = v;
    }
    /* the oldest slot takes the newest input; the window starts one on */
    j = s->pos;
    s->hist[j] = s->hist[j + EDGEBP_RS_K] = isfinite(v) ? v : s->held;
    s->flag[j] = s->flag[j + EDGEBP_RS_K] = (uint8_t)!isfinite(v);
    s->pos = j + 1 < EDGEBP_RS_K ? j + 1 : 0;
}

static float rs_output(const chan_state *s, int32_t phase)
{
    int32_t k, lo, hi;
    float acc = 0.0f;
    const float *taps = rs_table + phase * EDGEBP_RS_K;
    const float *hist = s->hist + s->pos;
    const uint8_t *flag = s->flag + s->pos;
    if (!s->started) {
        return NAN;
    }
    for (k = 0; k < EDGEBP_RS_K; k++) {
        acc += taps[k] * hist[EDGEBP_RS_K - 1 - k];
    }
    /* gap: a flagged input within w of the delay-compensated centre (relative to the newest) */
    lo = floordiv(phase - EDGEBP_RS_DELAY * EDGEBP_RS_DOWN - EDGEBP_RS_W, EDGEBP_RS_UP) + 1;
    hi = -floordiv(-(phase - EDGEBP_RS_DELAY * EDGEBP_RS_DOWN + EDGEBP_RS_W), EDGEBP_RS_UP) - 1;
    if (hi > 0) {
        hi = 0;
    }
    if (lo < 1 - EDGEBP_RS_K) {
        lo = 1 - EDGEBP_RS_K;
    }
    for (k = lo; k <= hi; k++) {
        if (flag[EDGEBP_RS_K - 1 + k]) {
            return NAN;
        }
    }
    return acc;
}
#endif

int edgebp_preprocess(const float *frame, float *x_out)
{
#if EDGEBP_RS_IDENTITY
    int c;
    for (c = 0; c < EDGEBP_N_IN; c++) {
        x_out[c] = running_norm(&chans[c], biquads(&chans[c], &bq_cfg[c], dc_off(&chans[c], c, frame[c])));
    }
    return 1;
#else
    int c, n = 0;
    for (c = 0; c < EDGEBP_N_IN; c++) {
        rs_push(&chans[c], dc_off(&chans[c], c, frame[c]));
    }
    /* at most one output per input when down >= up; up outputs at most otherwise */
    while (rs_q_minus_n <= 0) {
        for (c = 0; c < EDGEBP_N_IN; c++) {
            x_out[n * EDGEBP_N_IN + c] = running_norm(&chans[c], biquads(&chans[c], &bq_cfg[c], rs_output(&chans[c], rs_r)));
        }
        n++;
        rs_r += EDGEBP_RS_DOWN;
        rs_q_minus_n += rs_r / EDGEBP_RS_UP;
        rs_r %= EDGEBP_RS_UP;
    }
    rs_q_minus_n -= 1; /* the next input */
    return n;
#endif
}
"""

C_API = r"""
/* ---- the API ---- */
static float chunk_x[EDGEBP_N_IN * EDGEBP_MODEL_CHUNK]; /* channel-major, as the model takes it */
static uint8_t chunk_bad[EDGEBP_MODEL_CHUNK];
static int chunk_n;
static uint8_t y_q[EDGEBP_MODEL_OUT_LEN];
static float out_ring[EDGEBP_OUT_CAP];
static int out_head, out_count;
static uint32_t n_model_in, since_bad, dropped;

void edgebp_init(void)
{
    pre_reset();
    edgebp_model_reset();
    chunk_n = 0;
    out_head = 0;
    out_count = 0;
    n_model_in = 0;
    since_bad = 0;
    dropped = 0;
}

static void out_put(float v)
{
    if (out_count == EDGEBP_OUT_CAP) {
        out_head = (out_head + 1) % EDGEBP_OUT_CAP; /* the oldest is lost: pop more often */
        out_count--;
        dropped++;
    }
    out_ring[(out_head + out_count) % EDGEBP_OUT_CAP] = v;
    out_count++;
}

static void model_run(void)
{
    int t;
    edgebp_model_step(chunk_x, y_q);
    for (t = 0; t < EDGEBP_MODEL_CHUNK; t++) {
        float abp = ((float)((int32_t)y_q[t] - EDGEBP_OUT_ZP) * EDGEBP_OUT_SCALE) * EDGEBP_ABP_STD + EDGEBP_ABP_MEAN;
        /* a value is claimed only when its whole receptive field is clean input, after warm-up */
        since_bad = chunk_bad[t] ? 0u : since_bad + 1u;
        if (chunk_bad[t] || since_bad < (uint32_t)EDGEBP_RF || n_model_in + (uint32_t)t + 1u < (uint32_t)EDGEBP_RF) {
            abp = NAN;
        }
        out_put(abp);
    }
    n_model_in += EDGEBP_MODEL_CHUNK;
    chunk_n = 0;
}

int edgebp_push(const float *samples, int n)
{
    static float x[EDGEBP_N_IN * EDGEBP_RS_MAX_OUT];
    int i, k, c;
    for (i = 0; i < n; i++) {
        const int got = edgebp_preprocess(samples + i * EDGEBP_N_IN, x);
        for (k = 0; k < got; k++) {
            int bad = 0;
            for (c = 0; c < EDGEBP_N_IN; c++) {
                float v = x[k * EDGEBP_N_IN + c];
                if (!isfinite(v)) {
                    bad = 1;
                }
            }
            for (c = 0; c < EDGEBP_N_IN; c++) {
                float v = x[k * EDGEBP_N_IN + c];
                /* the runtime feeds 0 where any input is missing */
                chunk_x[c * EDGEBP_MODEL_CHUNK + chunk_n] = bad ? 0.0f : v;
            }
            chunk_bad[chunk_n] = (uint8_t)bad;
            chunk_n++;
            if (chunk_n == EDGEBP_MODEL_CHUNK) {
                model_run();
            }
        }
    }
    return out_count;
}

int edgebp_pop(float *out, int max)
{
    int i = 0;
    while (i < max && out_count > 0) {
        out[i++] = out_ring[out_head];
        out_head = (out_head + 1) % EDGEBP_OUT_CAP;
        out_count--;
    }
    return i;
}

uint32_t edgebp_dropped(void)
{
    return dropped;
}
"""


def _farr(name: str, values: np.ndarray) -> str:
    vals = ", ".join(_cfloat(v) for v in np.asarray(values, np.float64).ravel())
    return f"static const float {name}[{max(1, np.asarray(values).size)}] = {{{vals or '0.0f'}}};"


def ff_split(v: float) -> tuple[float, float]:
    """A float64 as a float-float pair (hi, lo): hi the nearest float32, lo the float32
    nearest the rest (v - hi is exact in float64); hi + lo carries about 48 bits of v."""
    hi = float(np.float32(v))
    return hi, float(np.float32(float(v) - hi))


def _ffarr(name: str, values: np.ndarray) -> str:
    pairs = [ff_split(v) for v in np.asarray(values, np.float64).ravel()] or [(0.0, 0.0)]
    vals = ", ".join(f"{{{_cfloat(h)}, {_cfloat(lo)}}}" for h, lo in pairs)
    return f"static const ffloat {name}[{len(pairs)}] = {{{vals}}};"


def preprocessor_tables(bundle: Any, device_fs: float) -> dict[str, Any]:
    """The preprocessing chain of each input at ``device_fs`` as the runtime builds it
    (edgebp.runtime.engine.StreamRuntime), reduced to the tables the C needs."""
    from edgebp.processing.chain import ChainConfig, Preprocessor

    m = bundle.manifest
    chans = []
    for c in m["inputs"]:
        pre = Preprocessor(ChainConfig.from_dict({**m["preprocessing"][c], "fs_in": float(device_fs), "fs_out": float(m["fs"])}))
        if pre.gradient is not None:
            raise UnsupportedModel(f"{bundle.path}: input {c}: the gradient channel is not supported by the generator")
        if pre.norm is None or pre.filter is None:
            raise UnsupportedModel(f"{bundle.path}: input {c}: a chain without its filter or running normaliser is not supported")
        chans.append(pre)
    rs = chans[0].resampler
    for p in chans[1:]:
        if (p.resampler.up, p.resampler.down, p.resampler.kind) != (rs.up, rs.down, rs.kind):
            raise UnsupportedModel(f"{bundle.path}: the inputs resample differently; one shared resampler clock is generated")
    norms = {(p.norm.alpha, p.norm.var_floor, p.norm.count_cap) for p in chans}
    if len(norms) != 1:
        raise UnsupportedModel(f"{bundle.path}: the inputs' running normalisers differ (tau); one setting is generated")
    alpha, floor, cap = norms.pop()
    return {"pre": chans, "rs": rs, "alpha": alpha, "var_floor": floor, "count_cap": cap}


def _dc_gain_zero(sos: np.ndarray) -> bool:
    """Whether a biquad cascade's gain at DC is exactly 0: a section whose numerator sums to
    0 (a high-pass), so a constant added to the input leaves the output unchanged."""
    return any(float(np.sum(np.asarray(s, np.float64)[:3])) == 0.0 for s in np.atleast_2d(sos))


def emit_firmware(bundle: Any, device_fs: float | None = None, out_cap: int | None = None) -> dict[str, str]:
    """Every generated file (name -> text) for a loaded bundle; see :func:`firmware_generate`."""
    m = bundle.manifest
    prog = bundle_program(bundle)
    fs_dev = float(device_fs if device_fs is not None else m["fs"])
    tabs = preprocessor_tables(bundle, fs_dev)
    rs = tabs["rs"]
    mh, mc, sizes = emit_model_c(prog)
    n_in = len(m["inputs"])
    out_cap = int(out_cap or 4 * prog.chunk)
    if out_cap < prog.chunk:
        raise UnsupportedModel(f"--out-cap {out_cap}: at least one model step ({prog.chunk} outputs) is needed")
    k = 1 if rs.identity else int(rs.taps.shape[1])
    max_sec = max(p.filter.sos.shape[0] for p in tabs["pre"])
    inputs = ", ".join(m["inputs"])
    h = f"""/* Generated by `edgebp firmware generate` for the bundle's model {m['model']['name']!r}. Do not edit.
   Device samples: {n_in} channels interleaved in this order: {inputs}; at {fs_dev:g} Hz.
   Outputs: ABP in mmHg at {float(m['fs']):g} Hz (NaN: warm-up or missing input in the receptive field),
   {int(m['delay'])} + {rs.delay_out} samples behind the input (the model's delay + the resampler's). */
#ifndef EDGEBP_H
#define EDGEBP_H
#include <stdint.h>

#define EDGEBP_N_IN {n_in}
#define EDGEBP_DEVICE_FS {_cfloat(fs_dev)}
#define EDGEBP_MODEL_FS {_cfloat(m['fs'])}
#define EDGEBP_OUT_CAP {out_cap}

/* fresh state: preprocessing, model state and the output queue */
void edgebp_init(void);
/* n frames of EDGEBP_N_IN interleaved device samples (NaN: a missing sample); returns the
   outputs waiting; the queue keeps EDGEBP_OUT_CAP, older ones are dropped (edgebp_dropped) */
int edgebp_push(const float *samples, int n);
/* up to max outputs (ABP mmHg), oldest first; returns how many */
int edgebp_pop(float *out, int max);
uint32_t edgebp_dropped(void);
/* the preprocessor alone: one device frame in, 0..EDGEBP_RS_MAX_OUT model-rate frames out
   (x_out[k * EDGEBP_N_IN + channel]); returns how many */
int edgebp_preprocess(const float *frame, float *x_out);

#endif
"""
    bq = []
    for j, p in enumerate(tabs["pre"]):
        sos = np.zeros((max_sec, 6))
        sos[: p.filter.sos.shape[0]] = p.filter.sos
        zi = np.zeros((max_sec, 2))
        zi[: p.filter.zi_step.shape[0]] = p.filter.zi_step
        bq.append(_ffarr(f"sos{j}", sos))
        bq.append(_ffarr(f"zi_step{j}", zi))
    cfgs = ", ".join(f"{{sos{j}, zi_step{j}, {p.filter.sos.shape[0]}}}" for j, p in enumerate(tabs["pre"]))
    norm = m["normalisation"]
    defs = [
        f"#define EDGEBP_RS_IDENTITY {1 if rs.identity else 0}",
        f"#define EDGEBP_RS_UP {rs.up}", f"#define EDGEBP_RS_DOWN {rs.down}", f"#define EDGEBP_RS_K {k}",
        f"#define EDGEBP_RS_DELAY {rs.delay_out}", f"#define EDGEBP_RS_W {max(rs.up, rs.down)}",
        f"#define EDGEBP_RS_MAX_OUT {-(-rs.up // rs.down)}",
        f"#define EDGEBP_MAX_SEC {max_sec}",
        f"#define EDGEBP_NORM_ALPHA {_cfloat(tabs['alpha'])}",
        f"#define EDGEBP_NORM_VAR_FLOOR {_cfloat(tabs['var_floor'])}",
        f"#define EDGEBP_NORM_COUNT_CAP {_cfloat(tabs['count_cap'])}",
        f"#define EDGEBP_ABP_MEAN {_cfloat(norm['abp_mean'])}", f"#define EDGEBP_ABP_STD {_cfloat(norm['abp_std'])}",
        f"#define EDGEBP_RF {max(int(m['receptive_field']), 1)}",
    ]
    c = "\n".join([
        "/* Generated by `edgebp firmware generate`: preprocessor and API. Do not edit. */",
        "#include <math.h>", "#include <stdint.h>", '#include "edgebp.h"', '#include "edgebp_model.h"', "", *defs, "",
        "typedef struct { float hi, lo; } ffloat; /* a float-float value hi + lo (see the biquads) */",
        *bq, "typedef struct biquad_cfg_s biquad_cfg_unused;",
    ])
    c = c.replace("typedef struct biquad_cfg_s biquad_cfg_unused;", "")
    rs_tab = "" if rs.identity else _farr("rs_table", rs.taps)
    # the input offset is taken off only where the cascade's DC gain is exactly zero (see dc_off)
    dc0 = ", ".join("1" if _dc_gain_zero(p.filter.sos) else "0" for p in tabs["pre"])
    pre_src = C_PRE.replace("static chan_state chans[EDGEBP_N_IN];",
                            f"static chan_state chans[EDGEBP_N_IN];\nstatic const biquad_cfg bq_cfg[EDGEBP_N_IN] = {{{cfgs}}};\n"
                            f"static const uint8_t dc_remove[EDGEBP_N_IN] = {{{dc0}}};\n{rs_tab}")
    c = c + pre_src + C_API
    lens = ", ".join(str(s["c"] * s["t"]) for s in prog.states)
    harness = (C_HARNESS_MODEL.replace('#include "edgebp_model.h"', '#include "edgebp_model.h"\n#include "edgebp.h"')
               .replace("{EDGEBP_STATE_LENS}", "{" + lens + "}") + C_HARNESS_STREAM)
    sizes.update({"out_cap": out_cap, "rs_taps": k})
    # what a host of the firmware (edgebp sim --firmware) must know to feed it and place its
    # outputs in time: output k estimates the ABP lag model samples before it
    info = {"model": m["model"]["name"], "inputs": list(m["inputs"]),
            "device_fs": fs_dev, "model_fs": float(m["fs"]), "delay": int(m["delay"]),
            "resampler_delay": int(rs.delay_out), "lag": int(m["delay"]) + int(rs.delay_out),
            "chunk": int(prog.chunk), "out_cap": out_cap}
    return {"edgebp_model.h": mh, "edgebp_model.c": mc, "edgebp.h": h, "edgebp.c": c, "edgebp_harness.c": harness,
            "Makefile": C_MAKEFILE, "startup_cm4.c": C_STARTUP, "mps2_an386.ld": C_LINKER, "firmware.json": json_dumps(info), "_sizes": json_dumps(sizes)}


def json_dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


C_HARNESS_STREAM = r"""
/* edgebp_harness stream IN OUT [PACKET]: IN holds float32 device frames [n][EDGEBP_N_IN];
   pushed PACKET frames at a time (default 50), every output popped; OUT gets float32 ABP.
   edgebp_harness pre IN OUT: the preprocessor alone; OUT gets float32 [m][EDGEBP_N_IN]. */
#define PACKET_MAX 512
static float frames[PACKET_MAX * EDGEBP_N_IN];
static float outs[EDGEBP_OUT_CAP];

static int run_stream(FILE *in, FILE *out, int packet)
{
    size_t got;
    long n_out = 0;
    uint64_t ticks = 0;
    edgebp_init();
    while ((got = fread(frames, sizeof(float) * EDGEBP_N_IN, (size_t)packet, in)) > 0) {
        int k;
        const uint64_t t0 = TICKS();
        edgebp_push(frames, (int)got);
        ticks += TICKS() - t0;
        while ((k = edgebp_pop(outs, EDGEBP_OUT_CAP)) > 0) {
            if (fwrite(outs, sizeof(float), (size_t)k, out) != (size_t)k) {
                return 1;
            }
            n_out += k;
        }
    }
    fprintf(stderr, "edgebp_harness: %ld outputs, %lu dropped\n", n_out, (unsigned long)edgebp_dropped());
    fprintf(stderr, "edgebp_harness: push ticks %lu %lu\n", (unsigned long)(ticks >> 32), (unsigned long)(ticks & 0xFFFFFFFFu));
    return 0;
}

#ifdef EDGEBP_BOARD_TICKS
/* calib N: a loop of exactly 2N instructions, timed, for the ticks-per-instruction ratio */
static int run_calib(long n)
{
    uint32_t k = (uint32_t)n;
    const uint64_t t0 = TICKS();
    __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(k) : : "cc");
    {
        const uint64_t t = TICKS() - t0;
        fprintf(stderr, "edgebp_harness: calib ticks %lu %lu\n", (unsigned long)(t >> 32), (unsigned long)(t & 0xFFFFFFFFu));
    }
    return 0;
}
#endif

/* edgebp_harness frames IN OUT: as a device's sample interrupt does, one frame pushed at a
   time and every output popped after it; OUT gets one (uint32 frame index, float32 ABP) pair
   per output, the index of the frame whose push produced it (edgebp sim --firmware). */
static int run_frames(FILE *in, FILE *out)
{
    float frame[EDGEBP_N_IN];
    uint32_t i = 0;
    int k, j;
    edgebp_init();
    while (fread(frame, sizeof(float), EDGEBP_N_IN, in) == (size_t)EDGEBP_N_IN) {
        edgebp_push(frame, 1);
        while ((k = edgebp_pop(outs, EDGEBP_OUT_CAP)) > 0) {
            for (j = 0; j < k; j++) {
                if (fwrite(&i, sizeof i, 1, out) != 1 || fwrite(&outs[j], sizeof(float), 1, out) != 1) {
                    return 1;
                }
            }
        }
        i++;
    }
    return edgebp_dropped() == 0 ? 0 : 3;
}

static int run_pre(FILE *in, FILE *out)
{
    float frame[EDGEBP_N_IN];
    float x[EDGEBP_N_IN * 8];
    edgebp_init();
    while (fread(frame, sizeof(float), EDGEBP_N_IN, in) == (size_t)EDGEBP_N_IN) {
        const int n = edgebp_preprocess(frame, x);
        if (n > 0 && fwrite(x, sizeof(float) * EDGEBP_N_IN, (size_t)n, out) != (size_t)n) {
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    int rc = 2, packet = 50;
#ifdef EDGEBP_BOARD_TICKS
    if (argc == 3 && strcmp(argv[1], "calib") == 0) {
        return run_calib(atol(argv[2]));
    }
#endif
    if (argc < 4) {
        fprintf(stderr, "usage: %s model|model_tf|stream|pre|frames IN OUT [PACKET]\n", argv[0]);
        return 2;
    }
    if (argc > 4) {
        packet = atoi(argv[4]);
        if (packet < 1 || packet > PACKET_MAX) {
            fprintf(stderr, "edgebp_harness: PACKET must be 1..%d\n", PACKET_MAX);
            return 2;
        }
    }
    in = fopen(argv[2], "rb");
    out = fopen(argv[3], "wb");
    if (!in || !out) {
        fprintf(stderr, "edgebp_harness: cannot open %s or %s\n", argv[2], argv[3]);
        return 2;
    }
    if (strcmp(argv[1], "model") == 0) {
        rc = run_model(in, out);
    } else if (strcmp(argv[1], "model_tf") == 0) {
        rc = run_model_tf(in, out);
    } else if (strcmp(argv[1], "stream") == 0) {
        rc = run_stream(in, out, packet);
    } else if (strcmp(argv[1], "pre") == 0) {
        rc = run_pre(in, out);
    } else if (strcmp(argv[1], "frames") == 0) {
        rc = run_frames(in, out);
    }
    fclose(in);
    if (fclose(out) != 0) {
        rc = 1;
    }
    return rc;
}
"""

C_MAKEFILE = """# Generated by `edgebp firmware generate`: the host build of the test harness, and the
# Cortex-M4F build run on QEMU's mps2-an386 with semihosting (make arm; make qemu-check).
# -ffp-contract=off: no fused multiply-add, so the host and the Cortex-M4F round alike.
CC ?= gcc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror -ffp-contract=off -fno-math-errno
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
ARM_ARCH = -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
ARM_CFLAGS ?= -std=c99 -Os -Wall -Wextra -Werror -ffp-contract=off -fno-math-errno -fstack-usage -fcallgraph-info=su
QEMU ?= qemu-system-arm
comma := ,
empty :=
space := $(empty) $(empty)
# the virtual clock advances 1 ns per instruction: SysTick counts instructions
QEMU_ICOUNT = -icount shift=0,align=off,sleep=off
QEMU_ARGS = $(subst $(space),,$(patsubst %,$(comma)arg=%,$(ARGS)))

edgebp_harness: edgebp_harness.c edgebp.c edgebp_model.c edgebp.h edgebp_model.h
\t$(CC) $(CFLAGS) -o $@ edgebp_harness.c edgebp.c edgebp_model.c -lm

arm: edgebp_harness.elf

arm/%.o: %.c edgebp.h edgebp_model.h
\t@mkdir -p arm
\t$(ARM_CC) $(ARM_ARCH) $(ARM_CFLAGS) -c $< -o $@

# the harness times edgebp_push with the board's SysTick (and gets a calib mode)
arm/edgebp_harness.o: edgebp_harness.c edgebp.h edgebp_model.h
\t@mkdir -p arm
\t$(ARM_CC) $(ARM_ARCH) $(ARM_CFLAGS) -DEDGEBP_BOARD_TICKS -c $< -o $@

# the firmware's own objects (arm/edgebp.o, arm/edgebp_model.o) are what a device links;
# the harness and the start-up are the test rig
edgebp_harness.elf: arm/edgebp.o arm/edgebp_model.o arm/edgebp_harness.o arm/startup_cm4.o mps2_an386.ld
\t$(ARM_CC) $(ARM_ARCH) --specs=rdimon.specs -nostartfiles -T mps2_an386.ld -o $@ \\
\t    arm/startup_cm4.o arm/edgebp_harness.o arm/edgebp.o arm/edgebp_model.o -lm
\t$(ARM_SIZE) arm/edgebp.o arm/edgebp_model.o

# make qemu-run ARGS="model in.bin out.bin"
qemu-run: edgebp_harness.elf
\t$(QEMU) -M mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial none $(QEMU_ICOUNT) \\
\t    -semihosting-config enable=on,target=native,arg=edgebp_harness$(QEMU_ARGS) -kernel edgebp_harness.elf

clean:
\trm -rf edgebp_harness edgebp_harness.elf arm
"""


C_STARTUP = r"""/* Minimal Cortex-M4F start-up for QEMU's mps2-an386 with semihosting: vector table, FPU on,
   .bss zeroed, the command line read by SYS_GET_CMDLINE, main, SYS_EXIT. */
#include <stdint.h>
#include <string.h>

extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);
extern uint32_t __bss_start__, __bss_end__, __stack_top__;

static int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static volatile uint32_t systick_wraps;

void SysTick_Handler(void)
{
    systick_wraps++;
}

/* SysTick on the processor clock, 24 bits, wraps counted: with QEMU's -icount shift=0 the
   virtual clock advances 1 ns per instruction, so ticks * (1e9 / SYSCLK) = instructions */
uint64_t edgebp_board_ticks(void)
{
    uint32_t w, v, pend;
    do {
        w = systick_wraps;
        v = *(volatile uint32_t *)0xE000E018u;
        pend = *(volatile uint32_t *)0xE000ED04u & (1u << 26);
    } while (w != systick_wraps);
    if (pend && v > 0x800000u) {
        w++; /* wrapped, interrupt not yet taken */
    }
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

static char cmdline[512];
static char *argv_buf[16];

void Reset_Handler(void)
{
    uint32_t *p;
    int argc = 0;
    char *s;
    struct { char *buf; int len; } cl;
    /* CP10/CP11 full access: the FPU before any float instruction */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n isb" ::: "memory");
    for (p = &__bss_start__; p < &__bss_end__; p++) {
        *p = 0;
    }
    *(volatile uint32_t *)0xE000E014u = 0xFFFFFFu; /* SYST_RVR */
    *(volatile uint32_t *)0xE000E018u = 0u;        /* SYST_CVR */
    *(volatile uint32_t *)0xE000E010u = 7u;        /* SYST_CSR: processor clock, interrupt, on */
    initialise_monitor_handles();
    cl.buf = cmdline;
    cl.len = (int)sizeof(cmdline) - 1;
    if (semihost(0x15, &cl) == 0) {
        cmdline[cl.len] = 0;
        for (s = cmdline; *s && argc < 15;) {
            while (*s == ' ') *s++ = 0;
            if (!*s) break;
            argv_buf[argc++] = s;
            while (*s && *s != ' ') s++;
        }
    }
    argv_buf[argc] = 0;
    {
        int rc = main(argc, argv_buf);
        semihost(0x18, (void *)(uintptr_t)(rc == 0 ? 0x20026 : 0x20023));
    }
    for (;;) {
    }
}

static void Default_Handler(void)
{
    semihost(0x18, (void *)(uintptr_t)0x20023);
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &__stack_top__, (void *)Reset_Handler, (void *)Default_Handler, (void *)Default_Handler,
    (void *)Default_Handler, (void *)Default_Handler, (void *)Default_Handler, 0, 0, 0, 0,
    (void *)Default_Handler, (void *)Default_Handler, 0, (void *)Default_Handler, (void *)SysTick_Handler,
};
"""

C_LINKER = """/* QEMU mps2-an386 (Cortex-M4): 4 MB ZBT SSRAM at 0 (code, loaded by QEMU), 4 MB at 0x20000000 */
MEMORY
{
  CODE (rwx) : ORIGIN = 0x00000000, LENGTH = 4M
  RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(Reset_Handler)
SECTIONS
{
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) KEEP(*(.init)) KEEP(*(.fini)) } > CODE
  .ARM.exidx : { *(.ARM.exidx*) } > CODE
  .data : { *(.data*) } > RAM
  .bss (NOLOAD) : { __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .; } > RAM
  . = ALIGN(8);
  end = .;
  __end__ = .;
  __stack_top__ = ORIGIN(RAM) + LENGTH(RAM);
}
"""


def firmware_generate(bundle_path: str, out_dir: str | Path, device_fs: float | None = None,
                      out_cap: int | None = None) -> dict[str, Any]:
    """Write the firmware's C for a bundle into ``out_dir``; returns the sizes (bytes) and files."""
    from edgebp.runtime.bundle import bundle_load

    bundle = bundle_load(bundle_path)
    files = emit_firmware(bundle, device_fs, out_cap)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = files.pop("_sizes")
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "sizes.json").write_text(sizes)
    log.info("wrote %d files to %s", len(files) + 1, out)
    import json

    return {"files": sorted([*files, "sizes.json"]), "sizes": json.loads(sizes)}


# ---------------------------------------------------------------------------- measured on the ELF
FIRMWARE_OBJECTS = ("arm/edgebp.o", "arm/edgebp_model.o")
API_ROOTS = ("edgebp_init", "edgebp_push", "edgebp_pop", "edgebp_preprocess", "edgebp_model_step",
             "edgebp_model_reset", "edgebp_model_load_state", "edgebp_dropped")


def arm_tools_missing() -> str | None:
    """Why the Cortex-M4F build cannot run here (None: it can)."""
    import shutil

    for tool in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi; or `make firmware-tools`)"
    return None


def _callgraph_peak(ci_files: list[Path]) -> tuple[int, list[str], list[str]]:
    """Deepest stack over the API's call chains from gcc's -fcallgraph-info=su graphs:
    (bytes, the chain, functions called whose frames are not known: library code)."""
    import re

    frames: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    for f in ci_files:
        text = f.read_text()
        for m in re.finditer(r'node: \{ title: "([^"]+)" label: "([^"]*)"', text):
            b = re.search(r"(\d+) bytes \((static|dynamic[^)]*)\)", m.group(2))
            if b:
                frames[m.group(1)] = max(frames.get(m.group(1), 0), int(b.group(1)))
        for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text):
            edges.setdefault(m.group(1), set()).add(m.group(2))
    unknown: set[str] = set()

    def deepest(fn: str, seen: frozenset[str]) -> tuple[int, list[str]]:
        if fn in seen:
            raise UnsupportedModel(f"recursion through {fn}: no static stack bound")
        if fn not in frames:
            unknown.add(fn)
            return 0, []
        best, path = 0, []
        for callee in sorted(edges.get(fn, ())):
            d, p = deepest(callee, seen | {fn})
            if d > best:
                best, path = d, p
        return frames[fn] + best, [fn, *path]

    peak, chain = 0, []
    for root in API_ROOTS:
        if root in frames:
            d, p = deepest(root, frozenset())
            if d > peak:
                peak, chain = d, p
    return peak, chain, sorted(unknown)


def firmware_measure(fw_dir: str | Path) -> dict[str, Any]:
    """Build the Cortex-M4F objects of a generated firmware (make arm) and measure them:
    .text/.data/.bss of the firmware's own objects (arm-none-eabi-size; the test harness and
    the C library are not counted) and the peak stack of the API's deepest call chain
    (gcc -fstack-usage frames along -fcallgraph-info's graph)."""
    import shutil
    import subprocess

    why = arm_tools_missing()
    if why is not None:
        raise RuntimeError(why)
    d = Path(fw_dir)
    if not (d / "Makefile").is_file() or not (d / "edgebp_model.c").is_file():
        raise FileNotFoundError(f"{d}: not a generated firmware directory (edgebp firmware generate BUNDLE --out DIR)")
    b = subprocess.run(["make", "-s", "-C", str(d), *FIRMWARE_OBJECTS], capture_output=True, text=True)
    if b.returncode != 0:
        last = (b.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the Cortex-M4F build failed: {last}")
    r = subprocess.run(["arm-none-eabi-size", *FIRMWARE_OBJECTS], cwd=d, check=True, capture_output=True, text=True)
    objs: dict[str, dict[str, int]] = {}
    for line in r.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6:
            objs[parts[5]] = {"text": int(parts[0]), "data": int(parts[1]), "bss": int(parts[2])}
    tot = {k: sum(o[k] for o in objs.values()) for k in ("text", "data", "bss")}
    peak, chain, unknown = _callgraph_peak([d / o.replace(".o", ".ci") for o in FIRMWARE_OBJECTS])
    res = {"objects": objs, **tot, "flash_bytes": tot["text"] + tot["data"], "ram_static_bytes": tot["data"] + tot["bss"],
            "stack_peak_bytes": peak, "stack_chain": chain, "stack_not_counted": unknown,
            "ram_bytes": tot["data"] + tot["bss"] + peak,
            "build": "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard -Os"}
    res["instructions"] = firmware_instructions(d) if shutil.which("qemu-system-arm") else None
    return res


# Cycles per instruction assumed for the duty cycle: a Cortex-M4 runs most data-processing
# instructions (MLA included) in 1 cycle, loads in 2 (1 when pipelined), taken branches in 2-4;
# zero-wait-state fetch (the nRF52's cache) is assumed. 1.5 is the figure used, 1 to 2 the range.
CPI_ASSUMED = 1.5
CPI_RANGE = (1.0, 2.0)


def _qemu_ticks(d: Path, *args: str) -> dict[str, int]:
    import re
    import subprocess

    cfg = "enable=on,target=native,arg=edgebp_harness," + ",".join(f"arg={a}" for a in args)
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
                        "-serial", "none", "-icount", "shift=0,align=off,sleep=off", "-semihosting-config", cfg,
                        "-kernel", str(d / "edgebp_harness.elf")], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"QEMU run failed: {(r.stdout + r.stderr).strip()[-200:]}")
    return {m.group(1): (int(m.group(2)) << 32) + int(m.group(3))
            for m in re.finditer(r"(push|calib|model) ticks (\d+) (\d+)", r.stdout + r.stderr)}


def firmware_instructions(fw_dir: str | Path, seconds: float = 10.0, seed: int = 0) -> dict[str, Any]:
    """Instructions the Cortex-M4F build executes in ``edgebp_push`` per second of signal,
    counted by QEMU (``-icount shift=0``: the virtual clock advances 1 ns per instruction, the
    board's SysTick reads it; the ticks-per-instruction ratio is calibrated on a loop of known
    length). The signal is synthetic (pulses plus noise, seeded): the kernels' work does not
    depend on the values."""
    import re
    import subprocess
    import tempfile

    d = Path(fw_dir)
    b = subprocess.run(["make", "-s", "-C", str(d), "edgebp_harness.elf"], capture_output=True, text=True)
    if b.returncode != 0:
        raise RuntimeError(f"the Cortex-M4F build failed: {(b.stderr.strip().splitlines() or ['?'])[-1]}")
    h = (d / "edgebp.h").read_text()
    fs = float(re.search(r"#define EDGEBP_DEVICE_FS ([0-9.e+-]+)f", h).group(1))
    n_in = int(re.search(r"#define EDGEBP_N_IN (\d+)", h).group(1))
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    sig = np.stack([np.sin(2 * np.pi * 1.2 * t * (1 + 0.1 * c)) ** 7 + 0.05 * rng.standard_normal(n) for c in range(n_in)], axis=1)
    loops = 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        np.ascontiguousarray(sig, "<f4").tofile(src)
        push = _qemu_ticks(d, "stream", str(src), str(dst), "50")["push"]
    calib = _qemu_ticks(d, "calib", str(loops))["calib"]
    per_tick = 2.0 * loops / calib
    ips = push * per_tick / seconds
    return {"seconds": seconds, "device_fs": fs, "instructions_per_s": ips, "instructions_per_tick": per_tick,
            "cpi_assumed": CPI_ASSUMED, "cpi_range": list(CPI_RANGE),
            "method": "qemu-system-arm -M mps2-an386 -icount shift=0; SysTick around edgebp_push, calibrated"}
