"""Pulse2Pressure: a unidirectional LSTM regressor from a PPG window to (SBP, DBP).

Written from the public notebook of ``kaleem126/pulse2pressure``: LSTM (1 -> 512, 3 layers,
dropout 0.2 between layers), the mean of the hidden states over time, then an MLP
256-128-64 with ReLU and dropout 0.2/0.15/0.1. The seed predicted SBP only; here the head has
two outputs by default (``outputs=2``), SBP and DBP, in that order, in whatever (normalised) units the trainer's targets use.

ONNX note: the network itself runs on any length, but a dynamo export of an LSTM bakes the traced
length into the graph, so an exported model is tied to the window it was exported at.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["Pulse2Pressure"]


class Pulse2Pressure(nn.Module):
    """LSTM over the window, mean over time, MLP to ``(B, 2)`` = (SBP, DBP).

    Parameters
    ----------
    in_channels : int
        Input channels (1: PPG).
    hidden : int
        LSTM hidden size (paper: 512).
    layers : int
        LSTM layers (paper: 3).
    mlp : tuple of int
        Hidden widths of the head (paper: 256, 128, 64).
    dropout : float
        Dropout between LSTM layers and after the first MLP layer; later MLP layers use
        0.75x and 0.5x of it (the paper's 0.2 / 0.15 / 0.1).
    window : int
        Default window in samples (paper: 1250 = 10 s at 125 Hz).
    outputs : int
        2: (SBP, DBP), what edgebp trains and scores; 1: SBP alone, the public notebook's head
        (64 x 1 + 1 = 65 parameters fewer), for comparing with it.
    input_scale : str
        Input scaling inside the network (:class:`edgebp.train.input_scale.InputScale`).

    Examples
    --------
    >>> import torch
    >>> m = Pulse2Pressure(hidden=16, layers=1, mlp=(8,)).eval()
    >>> m(torch.zeros(1, 1, 250)).shape
    torch.Size([1, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 512,
        layers: int = 3,
        mlp: tuple[int, ...] = (256, 128, 64),
        dropout: float = 0.2,
        window: int = 1250,
        outputs: int = 2,
        input_scale: str = "none",
    ):
        super().__init__()
        from edgebp.train.input_scale import input_scale_build

        if in_channels < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"Pulse2Pressure: in_channels, hidden, layers must be >= 1, got {in_channels}, {hidden}, {layers}")
        self.in_channels = int(in_channels)
        self.window = int(window)
        self.delay = 0
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        seq: list[nn.Module] = []
        width = hidden
        drops = [dropout, 0.75 * dropout, 0.5 * dropout]
        for k, w in enumerate(mlp):
            seq += [nn.Linear(width, int(w)), nn.ReLU(), nn.Dropout(drops[min(k, 2)])]
            width = int(w)
        if outputs not in (1, 2):
            raise ValueError(f"Pulse2Pressure: outputs must be 1 (SBP, the public notebook) or 2 (SBP, DBP), got {outputs}")
        seq.append(nn.Linear(width, int(outputs)))
        self.head = nn.Sequential(*seq)
        scale = input_scale_build(input_scale, in_channels)
        if scale is not None:  # only then: checkpoints without input scaling keep their keys
            self.input_scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, 2)``: (SBP, DBP) for the window."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"Pulse2Pressure: expected input (B, {self.in_channels}, T), got {tuple(x.shape)}")
        if hasattr(self, "input_scale"):
            x = self.input_scale(x)
        h, _ = self.lstm(x.transpose(1, 2))
        return self.head(h.mean(dim=1))
