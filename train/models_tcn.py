"""Edge-TCN: the edge-first, streaming, causal dilated-convolution ABP model.

Designed for the wearable from the start rather than shrunk afterwards:

* only ``Conv1d``, ``ReLU`` and residual adds (no normalisation layer, no softmax), so it maps
  onto int8 kernels (CMSIS-NN, ORT QDQ) without float islands;
* every convolution is causal (left padding only), so output sample ``n`` depends on input
  samples ``<= n`` only. Look-ahead is obtained *outside* the network by the training target
  shift: with ``delay = D`` the output sample ``n`` is trained against ABP at ``n - D``. The
  network itself never sees the future, so streaming needs no extra buffering beyond the
  convolution states;
* streaming costs O(1) work per new sample: each convolution with kernel ``k`` and dilation
  ``d`` keeps the last ``d * (k - 1)`` input samples as state (the kws_streaming /
  cached-conv "external state" form, which survives ONNX export).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["CausalConv1d", "EdgeTCN", "EdgeTCNStreaming"]


class CausalConv1d(nn.Conv1d):
    """``Conv1d`` with left zero-padding of ``dilation * (kernel_size - 1)`` samples.

    The same weights serve offline (:meth:`forward`) and streaming (:meth:`stream`) use; a zero
    initial state in streaming equals the zero left padding offline, so both give the same
    output sample for sample.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, padding=0)
        self.buffer_len = dilation * (kernel_size - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.buffer_len:
            x = F.pad(x, (self.buffer_len, 0))
        return super().forward(x)

    def stream(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Process a chunk ``(B, C, L)`` (any ``L >= 1``) given the last ``buffer_len`` inputs."""
        if not self.buffer_len:
            return super().forward(x), None
        full = torch.cat([state, x], dim=-1)
        return super().forward(full), full[..., full.shape[-1] - self.buffer_len :]


class _ResidualBlock(nn.Module):
    """``relu(x + conv2(relu(conv1(x))))`` with two causal dilated convolutions."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(channels, channels, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))

    def stream(self, x, s1, s2):
        h, s1 = self.conv1.stream(x, s1)
        h, s2 = self.conv2.stream(F.relu(h), s2)
        return F.relu(x + h), s1, s2


class EdgeTCN(nn.Module):
    """Causal dilated TCN mapping ECG and/or PPG to a point-wise ABP waveform.

    Parameters
    ----------
    in_channels : int
        Number of input channels (1: PPG or ECG; 2: PPG and ECG).
    channels : int
        Width of every residual block.
    kernel_size : int
        Kernel of the dilated convolutions.
    dilations : tuple of int
        One residual block (two convolutions) per dilation.
    head_channels : int
        Hidden width of the 1x1 output head (0: a single 1x1 conv).
    delay : int
        Look-ahead in samples, realised by the training target shift (output sample ``n`` is
        trained against ABP at ``n - delay``); stored here so that every consumer reads it from
        the model. It changes nothing in the computation.
    window : int
        Default training window (samples); the network itself runs on any length >= 1.

    Notes
    -----
    Receptive field ``1 + 2 * (kernel_size - 1) * sum(dilations)`` samples; with the defaults
    (k=3, dilations 1..32) 253 samples = 2.02 s at 125 Hz, enough for a whole beat plus the
    ECG-to-PPG delay. The second convolution of every block starts at a tenth of its default
    initial scale, so the stack begins close to identity and trains without normalisation layers.

    Examples
    --------
    >>> import torch
    >>> m = EdgeTCN(in_channels=2)
    >>> m(torch.zeros(1, 2, 500)).shape
    torch.Size([1, 1, 500])
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 24,
        kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
        head_channels: int = 16,
        delay: int = 25,
        window: int = 1000,
    ):
        super().__init__()
        if in_channels < 1 or channels < 1 or kernel_size < 1 or not dilations:
            raise ValueError("EdgeTCN: in_channels, channels, kernel_size must be >= 1 and dilations non-empty")
        if delay < 0:
            raise ValueError(f"EdgeTCN: delay must be >= 0 samples, got {delay}")
        self.in_channels = int(in_channels)
        self.delay = int(delay)
        self.window = int(window)
        self.inp = CausalConv1d(in_channels, channels, 1)
        self.blocks = nn.ModuleList(_ResidualBlock(channels, kernel_size, int(d)) for d in dilations)
        if head_channels:
            self.head = nn.ModuleList([CausalConv1d(channels, head_channels, 1), CausalConv1d(head_channels, 1, 1)])
        else:
            self.head = nn.ModuleList([CausalConv1d(channels, 1, 1)])
        self.receptive_field = 1 + sum(2 * (kernel_size - 1) * int(d) for d in dilations)
        with torch.no_grad():
            for b in self.blocks:
                b.conv2.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, 1, T)``; output sample ``n`` sees input samples ``<= n`` only."""
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        for i, conv in enumerate(self.head):
            h = conv(F.relu(h) if i else h)
        return h

    # -- streaming -------------------------------------------------------------------------------

    def _stateful_convs(self) -> list[CausalConv1d]:
        return [c for c in self.modules() if isinstance(c, CausalConv1d) and c.buffer_len]

    def stream_init(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero states, one ``(batch, C_in, dilation*(k-1))`` tensor per stateful convolution.

        Examples
        --------
        >>> m = EdgeTCN(in_channels=1)
        >>> len(m.stream_init())
        12
        """
        p = next(self.parameters())
        return [torch.zeros(batch, c.in_channels, c.buffer_len, dtype=p.dtype, device=p.device) for c in self._stateful_convs()]

    def stream_step(self, x: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Process one chunk ``(B, C, L)``, ``L >= 1``; returns ``(y (B, 1, L), new_states)``.

        Feeding a signal chunk by chunk from :meth:`stream_init` gives the same output as
        :meth:`forward` on the whole signal (up to float rounding).

        Examples
        --------
        >>> import torch
        >>> m = EdgeTCN(in_channels=1).eval()
        >>> s = m.stream_init()
        >>> y, s = m.stream_step(torch.zeros(1, 1, 7), s)
        >>> y.shape
        torch.Size([1, 1, 7])
        """
        states = list(states)
        if len(states) != len(self._stateful_convs()):
            raise ValueError(f"EdgeTCN.stream_step: expected {len(self._stateful_convs())} states, got {len(states)}")
        new: list[torch.Tensor] = []
        h, _ = self.inp.stream(x, None)
        i = 0
        for b in self.blocks:
            h, s1, s2 = b.stream(h, states[i], states[i + 1])
            new += [s1, s2]
            i += 2
        for j, conv in enumerate(self.head):
            h, _ = conv.stream(F.relu(h) if j else h, None)
        return h, new


class EdgeTCNStreaming(nn.Module):
    """External-state streaming wrapper of an :class:`EdgeTCN` for ONNX export.

    ``forward(x_chunk, *states) -> (y_chunk, *new_states)``: the convolution buffers are model
    inputs and outputs, so the exported graph is stateless and the caller (runtime, firmware)
    owns the ring buffers. Export it with a fixed chunk length; initial states are zeros of the
    shapes in :attr:`state_shapes`.

    Examples
    --------
    >>> import torch
    >>> w = EdgeTCNStreaming(EdgeTCN(in_channels=2).eval())
    >>> states = w.model.stream_init(1)
    >>> out = w(torch.zeros(1, 2, 5), *states)
    >>> out[0].shape, len(out) == 1 + len(states)
    (torch.Size([1, 1, 5]), True)
    """

    def __init__(self, model: EdgeTCN):
        super().__init__()
        self.model = model

    @property
    def state_shapes(self) -> list[tuple[int, int]]:
        """``(channels, length)`` of each state tensor (batch dimension excluded)."""
        return [(c.in_channels, c.buffer_len) for c in self.model._stateful_convs()]

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, new = self.model.stream_step(x, list(states))
        return (y, *new)
