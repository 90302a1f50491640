"""MSCA-CSSC-UNet and CBPE-Net: the UNet++ family with cross-scale skips and channel cross-attention.

Written from the published description and the public code of ``abin7777/MSCA-CSSC-UNet`` and
``abin7777/CBPE-Net`` (the two networks are the same; CBPE-Net takes ECG and PPG as two input
channels). The public code's defects are fixed here:

* batch size 1 works (no ``squeeze()`` of the batch axis; the output is ``(B, 1, T)``);
* any window length works: pooling uses ``ceil_mode`` (the trailing samples, which hold the
  sample the model is asked about, are never dropped) and every upsampling goes to the exact
  size of its target level (a fixed interpolation matrix built for the level lengths) instead of
  hard-coded scale factors such as 2.2 or 17.6.

``pool="floor"`` builds the public network's own geometry instead (floor pooling: the deepest
level of an 88-sample window has 5 samples, not 6); the exact-size upsampling then equals the
public scale factors (5 -> 11 is x2.2, 5 -> 88 is x17.6), so at 88 samples it computes what the
public network computes (docs/models.md). The ceil form stays the default.

``input_scale`` puts the paper recipes' input scaling inside the network, so that evaluation
and export see exactly what training saw (:class:`edgebp.train.input_scale.InputScale`).

Window rule: the cross-attention embeds each channel's time series, so its embedding size is the
time length at that level; the network is therefore built for one window length ``window``
(level ``i`` has ``ceil(window / 2**i)`` samples) and ``forward`` rejects other lengths. Any
``window >= 2**depth`` can be built (the deepest level then keeps >= 2 samples, which batch norm
needs when training at batch size 1). Head counts are ``gcd(heads, length)`` per level, which
gives the seed's 4/4/2/1 heads at the 88-sample window.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["MSCACSSCUNet", "ChannelCrossAttention", "level_lengths"]


POOL_CHOICES = ("ceil", "floor")


def level_lengths(window: int, depth: int, pool: str = "ceil") -> list[int]:
    """Time length of each UNet level for ``window`` input samples (pooling by 2).

    ``pool="ceil"`` (the default, length-robust form) keeps the trailing odd sample, which at
    the top level is the sample the model is asked about; ``"floor"`` drops it as the public
    code's ``nn.MaxPool1d(2, 2)`` does.

    Examples
    --------
    >>> level_lengths(88, 5)
    [88, 44, 22, 11, 6]
    >>> level_lengths(88, 5, pool="floor")
    [88, 44, 22, 11, 5]
    """
    if pool not in POOL_CHOICES:
        raise ValueError(f"pool: choose one of {', '.join(POOL_CHOICES)}, got {pool!r}")
    out = [int(window)]
    for _ in range(depth - 1):
        out.append(-(-out[-1] // 2) if pool == "ceil" else out[-1] // 2)
    return out


def _sinusoid_table(n_pos: int, dim: int) -> torch.Tensor:
    """Transformer sinusoidal positions ``(n_pos, dim)``; an odd ``dim`` drops the last cosine."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table.float()


class _ConvBlock(nn.Sequential):
    """Two (Conv1d k=3, BatchNorm, ReLU)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv1d(cin, cout, 3, padding=1),
            nn.BatchNorm1d(cout),
            nn.ReLU(inplace=True),
            nn.Conv1d(cout, cout, 3, padding=1),
            nn.BatchNorm1d(cout),
            nn.ReLU(inplace=True),
        )


class _Upsample(nn.Module):
    """Linear interpolation from ``n_in`` to ``n_out`` samples as a fixed ``(n_in, n_out)`` matrix.

    Equal to ``F.interpolate(..., size=n_out, mode="linear")``, but exported to ONNX as one
    MatMul with a constant (the dynamo exporter otherwise decomposes 1-D linear interpolation
    into index arithmetic and GatherND, which int8 tool chains and MCUs handle badly).
    """

    def __init__(self, n_in: int, n_out: int, align_corners: bool):
        super().__init__()
        eye = torch.eye(n_in, dtype=torch.float64)[None]
        mat = F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0]
        self.register_buffer("mat", mat.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.mat)


class _CrossScaleSkip(nn.Module):
    """CSSC: a deeper node through 1x1 conv, linear upsampling to the target size, k=3 conv."""

    def __init__(self, cin: int, cout: int, n_in: int, n_out: int):
        super().__init__()
        self.reduce = nn.Conv1d(cin, cout, 1)
        self.up = _Upsample(n_in, n_out, align_corners=False)
        self.refine = nn.Conv1d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.up(self.reduce(x)))


class ChannelCrossAttention(nn.Module):
    """MSCA unit: multi-head attention where each channel is a token and its time series the embedding.

    Queries come from a same-level node ``(B, Cq, T)``, keys and values from the upsampled
    deeper node ``(B, Ck, T)``; sinusoidal positions over the channel index are added to both.
    The output has the query's shape.

    Parameters
    ----------
    length : int
        ``T``, the embedding size (time length at this level).
    n_tokens : int
        Largest channel count the positions must cover.
    heads : int
        Requested heads; ``gcd(heads, d)`` are used so that they divide the projected size ``d``.
    attn_dim : int or None
        None: the paper's form, q/k/v/out projections ``Linear(T, T)``. An int ``d``: a light form
        for small models, q/k projected to ``d`` and the values being the (position-free) deeper
        node itself, without output projection (2 T d parameters instead of 4 T^2).
    """

    def __init__(self, length: int, n_tokens: int, heads: int = 4, attn_dim: int | None = None):
        super().__init__()
        self.length = int(length)
        d = self.length if attn_dim is None else int(attn_dim)
        self.heads = math.gcd(int(heads), d) if attn_dim is None else math.gcd(math.gcd(int(heads), d), self.length)
        self.q = nn.Linear(self.length, d)
        self.k = nn.Linear(self.length, d)
        self.v = nn.Linear(self.length, self.length) if attn_dim is None else None
        self.o = nn.Linear(self.length, self.length) if attn_dim is None else None
        self.scale = 1.0 / math.sqrt(d // self.heads)
        self.register_buffer("pos", _sinusoid_table(n_tokens, self.length), persistent=False)

    def forward(self, xq: torch.Tensor, xkv: torch.Tensor) -> torch.Tensor:
        b, cq, t = xq.shape
        ck = xkv.shape[1]
        h = self.heads
        q = self.q(xq + self.pos[:cq]).reshape(b, cq, h, -1).transpose(1, 2)
        k = self.k(xkv + self.pos[:ck]).reshape(b, ck, h, -1).transpose(1, 2)
        v = self.v(xkv + self.pos[:ck]) if self.v is not None else xkv
        v = v.reshape(b, ck, h, -1).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, cq, t)
        return self.o(out) if self.o is not None else out


class MSCACSSCUNet(nn.Module):
    """UNet++ with multi-scale cross-attention (MSCA) and cross-scale skip connections (CSSC).

    Node ``(i, j)`` (level ``i``, column ``j``): ``(i, 0) = block(pool(i-1, 0))``; for ``j >= 1``
    ``(i, j) = block(cat[MSCA((i,k), up(i+1, j-1)) for k < j; up(i+1, j-1); CSSC(i+k, j-k) for
    k = j..2])``. Heads on ``(0, 1) .. (0, depth-1)`` give the deep-supervision outputs.

    Parameters
    ----------
    in_channels : int
        1 (ECG, MSCA-CSSC-UNet) or 2 (ECG and PPG, CBPE-Net).
    widths : tuple of int
        Channels per level; its length is the depth (the paper: 128, 256, 512, 1024, 2048).
    window : int
        The one window length the network runs at (see the module docstring).
    heads : int
        Attention heads requested per unit.
    attn_dim : int or None
        None for the paper's full attention projections; an int for the light form.
    pool : {"ceil", "floor"}
        Pooling rounding (see the module docstring): ``"floor"`` is the public network's.
    input_scale : str
        Input scaling inside the network (``"none"``, ``"minmax"``, ``"window-zscore"``).

    Notes
    -----
    Used as in the paper, the model runs on a sliding window with a stride of one sample and
    only the last output sample is kept: the estimate at time ``t`` uses the ``window`` samples
    ending at ``t`` (no look-ahead), and the cost per second is the cost of 125 windows.
    ``forward`` returns the whole ``(B, 1, T)`` output so that a trainer may also supervise
    every sample.

    Examples
    --------
    >>> import torch
    >>> m = MSCACSSCUNet(in_channels=1, widths=(4, 8, 16, 32, 64), window=88, attn_dim=8).eval()
    >>> m(torch.zeros(1, 1, 88)).shape
    torch.Size([1, 1, 88])
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (128, 256, 512, 1024, 2048),
        window: int = 88,
        heads: int = 4,
        attn_dim: int | None = None,
        pool: str = "ceil",
        input_scale: str = "none",
    ):
        super().__init__()
        from edgebp.train.input_scale import input_scale_build

        widths = tuple(int(w) for w in widths)
        depth = len(widths)
        if depth < 2:
            raise ValueError(f"MSCACSSCUNet: widths needs at least 2 levels, got {widths}")
        if window < 2**depth:
            raise ValueError(f"MSCACSSCUNet: window must be >= 2**depth = {2**depth} samples for depth {depth}, got {window}")
        self.in_channels = int(in_channels)
        self.widths = widths
        self.depth = depth
        self.window = int(window)
        self.delay = 0
        self.pool = pool
        self.lengths = level_lengths(window, depth, pool)
        if min(self.lengths) < 2:
            raise ValueError(f"MSCACSSCUNet: window {window} leaves {min(self.lengths)} sample(s) at the deepest level with {pool} pooling; need >= 2")
        scale = input_scale_build(input_scale, in_channels)
        if scale is not None:  # only then: checkpoints without input scaling keep their keys
            self.input_scale = scale
        self.encoder = nn.ModuleList(
            _ConvBlock(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)
        )
        self.nodes = nn.ModuleDict()
        self.attn = nn.ModuleDict()
        self.cssc = nn.ModuleDict()
        for i in range(depth - 1):
            for j in range(1, depth - i):
                key = f"{i}_{j}"
                cin = (2 * j - 1) * widths[i] + widths[i + 1]
                self.nodes[key] = _ConvBlock(cin, widths[i])
                n_tok = max(widths[i], widths[i + 1])
                self.attn[key] = nn.ModuleList(
                    ChannelCrossAttention(self.lengths[i], n_tok, heads, attn_dim) for _ in range(j)
                )
                # deepest source first, as in the published concatenation order
                self.cssc[key] = nn.ModuleList(
                    _CrossScaleSkip(widths[i + k], widths[i], self.lengths[i + k], self.lengths[i]) for k in range(j, 1, -1)
                )
        # the nested x2 upsampling (align_corners=True as published), one per level transition
        self.up = nn.ModuleList(_Upsample(self.lengths[i + 1], self.lengths[i], align_corners=True) for i in range(depth - 1))
        self.heads = nn.ModuleList(nn.Conv1d(widths[0], 1, 1) for _ in range(depth - 1))
        n = depth - 1
        self.deep_supervision_weights = tuple(round(max(0.1, 1.0 - 0.1 * (n - 1 - k)), 2) for k in range(n))

    def _top_nodes(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 3 or x.shape[1] != self.in_channels or x.shape[-1] != self.window:
            raise ValueError(
                f"MSCACSSCUNet: expected input (B, {self.in_channels}, {self.window}), got {tuple(x.shape)}; "
                "the attention is built for one window length (build another model for another window)"
            )
        if hasattr(self, "input_scale"):
            x = self.input_scale(x)
        nodes: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.encoder[0](x)}
        ceil = self.pool == "ceil"
        for s in range(1, self.depth):
            nodes[(s, 0)] = self.encoder[s](F.max_pool1d(nodes[(s - 1, 0)], 2, 2, ceil_mode=ceil))
            for j in range(1, s + 1):
                i = s - j
                key = f"{i}_{j}"
                up = self.up[i](nodes[(i + 1, j - 1)])
                parts = [att(nodes[(i, k)], up) for k, att in enumerate(self.attn[key])]
                parts.append(up)
                parts += [sk(nodes[(i + k, j - k)]) for k, sk in zip(range(j, 1, -1), self.cssc[key])]
                nodes[(i, j)] = self.nodes[key](torch.cat(parts, dim=1))
        return [nodes[(0, j)] for j in range(1, self.depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, window) -> (B, 1, window)`` from the final node; the paper uses sample ``-1``."""
        return self.heads[-1](self._top_nodes(x)[-1])

    def forward_train(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Deep-supervision outputs, shallowest first, each ``(B, 1, window)``.

        Weight them with :attr:`deep_supervision_weights` (0.7, 0.8, 0.9, 1.0 at depth 5); the
        last one is what :meth:`forward` returns.
        """
        return [head(node) for head, node in zip(self.heads, self._top_nodes(x))]
