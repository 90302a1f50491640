"""Input scaling inside a network: what the paper recipes do to the inputs before the model.

The seeds scale their inputs in their data loaders (min-max with the data set's extremes, or a
z-score of each window). edgebp puts that step inside the network instead, as the first layer,
so that ``edgebp evaluate``, the exported ONNX models and the runtime apply exactly what training
applied, with the statistics saved in the checkpoint (as buffers) rather than in a side file.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SCALE_CHOICES = ("none", "minmax", "window-zscore")


class InputScale(nn.Module):
    """``minmax``: ``(x - lo) / (hi - lo)`` per channel, ``lo``/``hi`` fitted on the training
    records (:func:`edgebp.train.recipes.minmax_fit`) and stored as buffers; ``window-zscore``:
    each window's channels to zero mean and unit standard deviation (no parameters).

    Examples
    --------
    >>> s = InputScale("minmax", 1)
    >>> s.set_range([2.0], [4.0])
    >>> s(torch.tensor([[[2.0, 3.0, 4.0]]]))
    tensor([[[0.0000, 0.5000, 1.0000]]])
    >>> InputScale("window-zscore", 1)(torch.tensor([[[1.0, 3.0]]]))
    tensor([[[-1.,  1.]]])
    """

    def __init__(self, mode: str, channels: int):
        super().__init__()
        if mode not in INPUT_SCALE_CHOICES[1:]:
            raise ValueError(f"input_scale: choose one of {', '.join(INPUT_SCALE_CHOICES)}, got {mode!r}")
        self.mode = mode
        if mode == "minmax":
            # persistent: the statistics travel with the weights (checkpoint and ONNX constants)
            self.register_buffer("lo", torch.zeros(1, channels, 1))
            self.register_buffer("span", torch.ones(1, channels, 1))

    def set_range(self, lo, hi) -> None:
        """Set the min-max statistics (one value per channel); a flat channel keeps span 1."""
        lo_t = torch.as_tensor(lo, dtype=torch.float32).reshape(1, -1, 1)
        span = torch.as_tensor(hi, dtype=torch.float32).reshape(1, -1, 1) - lo_t
        self.lo.copy_(lo_t)
        self.span.copy_(torch.where(span > 0, span, torch.ones_like(span)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "minmax":
            return (x - self.lo) / self.span
        mean = x.mean(dim=-1, keepdim=True)
        # population SD as numpy's np.std in the public data loader; eps for a flat window
        std = x.var(dim=-1, keepdim=True, unbiased=False).add(1e-12).sqrt()
        return (x - mean) / std


def input_scale_build(mode: str, channels: int) -> InputScale | None:
    """The scaling layer for ``mode``, or None for ``"none"`` (no layer, no state-dict keys)."""
    if mode == "none":
        return None
    return InputScale(mode, channels)
