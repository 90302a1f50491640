"""Structured pruning of every zoo model: channels (and LSTM hidden units) are physically removed
(not masked), then a short fine-tune on the run's own training split recovers accuracy
(:func:`edgebp.export.pipeline._finetune`).

The ratio
---------
``--prune R`` (``0 < R < 1``) removes the fraction ``R`` of the channels of **every prunable
group**: a group of ``n`` channels keeps ``max(1, round(n * (1 - R)))`` of them, the ones with the
largest weight magnitude (per-member L2 norm of each channel's slices, each member scaled by its
mean so that producers and consumers weigh alike, averaged over the group's members). A group is
a set of channels that must go together for the network to stay well formed:

* **edge-tcn**: the residual stream (the input projection's outputs, every block's second
  convolution's outputs and every first convolution's and the head's inputs: the residual adds
  couple them), each block's inner channels, the head's hidden channels;
* **msca-cssc-unet / cbpe-net**: each UNet++ node's output channels together with every place
  they are read (the next encoder level after pooling, the concatenations of later nodes as the
  attention query slice or the upsampled slice, the cross-scale skips' 1x1 reductions, the
  deep-supervision heads), each conv block's inner channels, each cross-scale skip's channels
  (its refine output is a concatenation slice of its node). The attention's projections act on
  the time axis (their size is the level's length, not a channel count) and are not pruned; a
  pruned channel is one attention token fewer;
* **pulse2pressure**: LSTM hidden units, gate-coupled: unit ``i`` of a layer leaves the rows
  ``i, H+i, 2H+i, 3H+i`` (gates i, f, g, o) of ``weight_ih``/``weight_hh``/both biases, column
  ``i`` of ``weight_hh`` and of the next layer's ``weight_ih`` (or of the head's first linear
  layer, after the mean over time); every layer keeps the same count (``nn.LSTM`` has one
  ``hidden_size``); and the head's hidden widths;
* **inn-par**: inside the coupling subnetworks only (each MSCM F, G, H of every invertible
  block): the invertible 1x1 convolutions and the coupling's 1 + 1 channel split are kept
  exactly, so the pruned network is still invertible. The MSCM's squeezes (time phases become
  channels) couple channel ``k`` of a layer before a squeeze with channels ``2k, 2k+1`` after
  it, and an unsqueeze needs its channels in pairs: those are the groups.

The layers that meet the model's input and its output are never pruned (the input channels and
the ABP or SBP/DBP outputs stay). So a pruned model has, up to the rounding of each group, the
parameters of the same architecture **built at widths x (1 - R)**: a layer between two pruned
groups keeps about ``(1 - R)**2`` of its weights, so ``--prune 0.5`` removes about 70-75 % of
the parameters (tests/test_prune.py checks each zoo model's reduction against that model built at
the reduced widths, within 10 %). Models outside the zoo go through torch-pruning's MetaPruner
(``round_to=None``) with the layers of :func:`prune_ignored_layers` left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


def prune_ratio_check(ratio: float) -> float:
    """``ratio`` when it is a number within (0, 1); else ValueError (one line)."""
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"--prune: ratio must be a number within (0, 1), got {ratio!r}") from None
    if not 0.0 < r < 1.0:  # also refuses NaN
        raise ValueError(f"--prune: ratio must be within (0, 1) (the share of each group's channels removed), got {ratio}")
    return r


# --------------------------------------------------------------------------- groups


@dataclass
class _Member:
    """One tensor slice a group's channel ``k`` owns: ``index(k)`` along ``dim`` of ``module.name``."""

    module: nn.Module
    name: str
    dim: int
    index: Callable[[int], list[int]]
    score: bool = True  # weights count in the importance; biases and BN statistics do not


@dataclass
class _Group:
    label: str
    n: int
    members: list[_Member] = field(default_factory=list)

    def add(self, module: nn.Module, name: str, dim: int, index: Callable[[int], list[int]] | None = None, score: bool = True) -> "_Group":
        self.members.append(_Member(module, name, dim, index or (lambda k: [k]), score))
        return self


def _offset(o: int) -> Callable[[int], list[int]]:
    return lambda k: [o + k]


def _conv_out(g: _Group, conv: nn.Module, bn: nn.Module | None = None) -> _Group:
    """The output channels of a conv (and of the batch norm after it)."""
    g.add(conv, "weight", 0)
    if conv.bias is not None:
        g.add(conv, "bias", 0, score=False)
    if bn is not None:
        g.add(bn, "weight", 0)
        g.add(bn, "bias", 0, score=False)
        g.add(bn, "running_mean", 0, score=False)
        g.add(bn, "running_var", 0, score=False)
    return g


def _tcn_groups(model) -> list[_Group]:
    ch = model.inp.out_channels
    res = _conv_out(_Group("residual stream", ch), model.inp)
    groups = [res]
    for i, b in enumerate(model.blocks):
        res.add(b.conv1, "weight", 1)
        _conv_out(res, b.conv2)
        groups.append(_conv_out(_Group(f"blocks.{i} inner", b.conv1.out_channels), b.conv1).add(b.conv2, "weight", 1))
    res.add(model.head[0], "weight", 1)
    for j in range(len(model.head) - 1):
        groups.append(_conv_out(_Group(f"head.{j} hidden", model.head[j].out_channels), model.head[j]).add(model.head[j + 1], "weight", 1))
    return groups


def _block_inner(label: str, block: nn.Sequential) -> _Group:
    """A UNet conv block's first conv + BN outputs, read by its second conv."""
    return _conv_out(_Group(f"{label} inner", block[0].out_channels), block[0], block[1]).add(block[3], "weight", 1)


def _unet_groups(model) -> list[_Group]:
    """Every node's output channels coupled with all their readers (module docstring)."""
    w, depth = model.widths, model.depth
    out: dict[tuple[int, int], _Group] = {}
    groups: list[_Group] = []

    def block_of(i, j):
        return model.encoder[i] if j == 0 else model.nodes[f"{i}_{j}"]

    for i in range(depth):
        for j in range(depth - i):
            blk = block_of(i, j)
            out[(i, j)] = _conv_out(_Group(f"node {i},{j} output", blk[3].out_channels), blk[3], blk[4])
            groups.append(_block_inner(f"node {i},{j}", blk))
    for i in range(depth - 1):
        out[(i, 0)].add(model.encoder[i + 1][0], "weight", 1)  # after max pooling
    for i in range(depth - 1):
        for j in range(1, depth - i):
            key = f"{i}_{j}"
            conv0 = model.nodes[key][0]
            # concatenation order of MSCACSSCUNet._top_nodes: attention(query (i,k)) for k < j,
            # the upsampled (i+1, j-1), the cross-scale skips from the deepest (k = j) up
            for k in range(j):
                out[(i, k)].add(conv0, "weight", 1, _offset(k * w[i]))
            out[(i + 1, j - 1)].add(conv0, "weight", 1, _offset(j * w[i]))
            base = j * w[i] + w[i + 1]
            for n_sk, (k, sk) in enumerate(zip(range(j, 1, -1), model.cssc[key])):
                out[(i + k, j - k)].add(sk.reduce, "weight", 1)
                groups.append(_conv_out(_Group(f"cssc {key}.{n_sk} reduce", sk.reduce.out_channels), sk.reduce).add(sk.refine, "weight", 1))
                o = base + n_sk * w[i]
                groups.append(_conv_out(_Group(f"cssc {key}.{n_sk} refine", sk.refine.out_channels), sk.refine).add(conv0, "weight", 1, _offset(o)))
    for j in range(1, depth):
        out[(0, j)].add(model.heads[j - 1], "weight", 1)
    return list(out.values()) + groups


def _lstm_groups(model) -> list[_Group]:
    lstm = model.lstm
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("pruning: bidirectional or projected LSTMs are not supported")
    h = lstm.hidden_size
    gates = lambda k: [g * h + k for g in range(4)]  # noqa: E731 - rows of unit k in the i, f, g, o blocks
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    groups = []
    for layer in range(lstm.num_layers):
        g = _Group(f"lstm layer {layer} hidden units", h)
        g.add(lstm, f"weight_ih_l{layer}", 0, gates).add(lstm, f"weight_hh_l{layer}", 0, gates).add(lstm, f"weight_hh_l{layer}", 1)
        if lstm.bias:
            g.add(lstm, f"bias_ih_l{layer}", 0, gates, score=False).add(lstm, f"bias_hh_l{layer}", 0, gates, score=False)
        if layer + 1 < lstm.num_layers:
            g.add(lstm, f"weight_ih_l{layer + 1}", 1)
        else:
            g.add(linears[0], "weight", 1)  # the mean over time keeps the hidden units as features
        groups.append(g)
    for j, lin in enumerate(linears[:-1]):
        groups.append(_conv_out(_Group(f"head linear {j} outputs", lin.out_features), lin).add(linears[j + 1], "weight", 1))
    return groups


def _mscm_groups(label: str, m) -> list[_Group]:
    pair = lambda k: [2 * k, 2 * k + 1]  # noqa: E731 - channel k before a squeeze x2 is channels 2k, 2k+1 after it
    return [
        _conv_out(_Group(f"{label}.inp", m.inp.out_channels), m.inp).add(m.c2, "weight", 1, pair),
        _conv_out(_Group(f"{label}.c2", m.c2.out_channels), m.c2).add(m.c4, "weight", 1, pair),
        # the unsqueeze folds c4's channels 2k, 2k+1 into c2b's input k: pruned in pairs
        _Group(f"{label}.c4 (pairs)", m.c4.out_channels // 2).add(m.c4, "weight", 0, pair).add(m.c4, "bias", 0, pair, score=False).add(m.c2b, "weight", 1),
        _Group(f"{label}.c2b (pairs)", m.c2b.out_channels // 2).add(m.c2b, "weight", 0, pair).add(m.c2b, "bias", 0, pair, score=False).add(m.out, "weight", 1),
    ]


def _innpar_groups(model) -> list[_Group]:
    groups = []
    for i, b in enumerate(model.blocks):
        for name in ("F", "G", "H"):
            groups += _mscm_groups(f"blocks.{i}.{name}", getattr(b, name))
    return groups


def prune_groups(model: nn.Module) -> tuple[str, list[_Group]] | None:
    """(kind, groups) for a zoo architecture, recognised by its module types; None otherwise."""
    from edgebp.train.models_innpar import INNPAR
    from edgebp.train.models_lstm import Pulse2Pressure
    from edgebp.train.models_tcn import EdgeTCN
    from edgebp.train.models_unet import MSCACSSCUNet

    for cls, kind, fn in ((EdgeTCN, "edge-tcn channel groups (residual adds coupled)", _tcn_groups),
                          (MSCACSSCUNet, "UNet++ channel groups (skip concatenations coupled)", _unet_groups),
                          (Pulse2Pressure, "LSTM hidden units (gate-coupled) and head widths", _lstm_groups),
                          (INNPAR, "coupling subnetwork channels (invertible split kept)", _innpar_groups)):
        if isinstance(model, cls):
            return kind, fn(model)
    return None


# --------------------------------------------------------------------------- applying


def _importance(g: _Group) -> torch.Tensor:
    """Per channel: the mean over the group's weight members of the channel's L2 norm, each
    member divided by its mean norm (a consumer's columns and a producer's rows weigh alike)."""
    score = torch.zeros(g.n, dtype=torch.float64)
    used = 0
    for mem in g.members:
        if not mem.score:
            continue
        t = getattr(mem.module, mem.name).detach().double()
        t = t.movedim(mem.dim, 0)
        norms = torch.stack([t[mem.index(k)].pow(2).sum().sqrt() for k in range(g.n)])
        score += norms / norms.mean().clamp_min(1e-12)
        used += 1
    return score / max(used, 1)


def _keep_count(n: int, ratio: float) -> int:
    return max(1, int(round(n * (1.0 - ratio))))


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        # setattr keeps nn.LSTM's _flat_weights in step (RNNBase.__setattr__)
        setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:
        module._buffers[name] = value.contiguous()


def _groups_apply(groups: list[_Group], ratio: float) -> list[dict]:
    """Select each group's kept channels, then cut every tensor once with all its masks
    (a tensor such as a node's concatenating conv belongs to several groups: cutting it group
    by group would shift the offsets of the others)."""
    masks: dict[tuple[int, str], dict] = {}
    done = []
    for g in groups:
        keep_n = _keep_count(g.n, ratio)
        order = torch.argsort(_importance(g), descending=True, stable=True)
        drop = sorted(int(k) for k in order[keep_n:])
        for mem in g.members:
            t = getattr(mem.module, mem.name)
            entry = masks.setdefault((id(mem.module), mem.name), {"module": mem.module, "name": mem.name, "dims": {}})
            mask = entry["dims"].setdefault(mem.dim, torch.ones(t.shape[mem.dim], dtype=torch.bool))
            for k in drop:
                mask[mem.index(k)] = False
        done.append({"group": g.label, "channels": g.n, "kept": keep_n})
    with torch.no_grad():
        for entry in masks.values():
            t = getattr(entry["module"], entry["name"]).detach()
            for dim, mask in entry["dims"].items():
                t = t.index_select(dim, torch.nonzero(mask).flatten())
            _set_tensor(entry["module"], entry["name"], t.clone())
    return done


def _attributes_fix(model: nn.Module) -> None:
    """Channel-count attributes from the cut tensors (what the forward passes and ONNX read)."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            m.out_channels, m.in_channels = int(m.weight.shape[0]), int(m.weight.shape[1]) * m.groups
        elif isinstance(m, nn.BatchNorm1d):
            m.num_features = int(m.weight.shape[0])
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = int(m.weight.shape[0]), int(m.weight.shape[1])
        elif isinstance(m, nn.LSTM):
            sizes = {int(getattr(m, f"weight_hh_l{k}").shape[1]) for k in range(m.num_layers)}
            if len(sizes) != 1:
                raise RuntimeError(f"pruning left LSTM layers with different hidden sizes {sorted(sizes)}")
            m.hidden_size = sizes.pop()
            m.input_size = int(m.weight_ih_l0.shape[1])
            m._init_flat_weights()
            m.flatten_parameters()


def prune_ignored_layers(model: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """For models outside the zoo (torch-pruning): layers that cannot be pruned safely, and
    their names. The output layer keeps its outputs; attention reshapes channels into heads;
    invertible couplings must keep their split; recurrent layers have gate-coupled weights."""
    ignored, names = [], []
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Linear)):
            last = (name, mod)
        kind = type(mod).__name__.lower()
        if isinstance(mod, (nn.MultiheadAttention, nn.LSTM, nn.GRU)) or any(k in kind for k in ("attention", "coupling", "invertible", "invconv", "head")):
            ignored.append(mod)
            names.append(f"{name} ({type(mod).__name__})")
    if last is not None and last[1] not in ignored:
        ignored.append(last[1])
        names.append(f"{last[0]} ({type(last[1]).__name__}, output layer)")
    return ignored, names


def model_prune(model: nn.Module, example: torch.Tensor, ratio: float) -> dict:
    """Remove ``ratio`` of the channels of every prunable group (module docstring), in place.

    Returns a report: ratio, method, parameters and MACs per window before and after, each
    group's channels kept, and what was left alone."""
    ratio = prune_ratio_check(ratio)
    from edgebp.train.zoo import model_cost

    model.eval()

    def cost():
        c = model_cost(model, window=example.shape[-1], in_channels=example.shape[1])
        return c["macs_per_window"], c["params"]

    macs0, params0 = cost()
    found = prune_groups(model)
    if found is not None:
        method, groups = found
        kept = _groups_apply(groups, ratio)
        _attributes_fix(model)
        left = ["the input layer's inputs and the output layer's outputs"]
        if "UNet" in method:
            left.append("attention projections (they act on the time axis)")
        if "coupling" in method:
            left.append("invertible 1x1 convolutions and the coupling's channel split")
    else:
        import torch_pruning as tp

        ignored, left = prune_ignored_layers(model)
        method = f"torch-pruning {tp.__version__} MetaPruner, L2 magnitude"
        pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=ignored)
        pruner.step()
        kept = []
    with torch.no_grad():
        model(example[:1])  # the pruned network must still run
    macs1, params1 = cost()
    log.info("pruned %.0f %% of each group's channels (%s): %d -> %d parameters, %d -> %d MACs per window",
             ratio * 100, method, params0, params1, macs0, macs1)
    return {"ratio": ratio, "method": method, "params_before": int(params0), "params_after": int(params1),
            "macs_before": int(macs0), "macs_after": int(macs1), "groups": kept, "left_alone": left}
