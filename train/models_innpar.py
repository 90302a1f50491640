"""INN-PAR: invertible network from PPG (and its gradient) to ABP (and its gradient).

Written from the ICASSP 2025 paper and the public code of ``soumitra1992/INNPAR-PPG2ABP``.
A stack of invertible blocks maps the 2-channel signal ``[PPG, dPPG]`` to ``[ABP, dABP]``;
every block is an invertible 1x1 convolution (LU-decomposed) followed by an affine coupling

    y1 = x1 + F(x2);   s = 0.8 * (2 * sigmoid(H(y1)) - 1);   y2 = x2 * exp(s) + G(y1)

with F, G, H multi-scale convolution modules (MSCM). The gradient channel is computed *inside*
the model by the fixed ``[-1, 0, 1]`` kernel, so the model's input is PPG alone ``(B, 1, T)``.

Lengths: the MSCM squeezes time by 2 and 4, so the network runs on a multiple of 4 samples.
``forward`` accepts any length: it zero-pads on the right to the next multiple of 4 (the rule of
the seed's data loader, which padded 625 to 628) and crops the output back. Exact invertibility
(:meth:`INNPAR.inverse`) holds on the padded length, i.e. for ``T % 4 == 0`` directly.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["INNPAR", "signal_gradient"]

_GRAD_KERNEL = (-1.0, 0.0, 1.0)


def signal_gradient(x: torch.Tensor) -> torch.Tensor:
    """The INN-PAR gradient channel: ``g[n] = x[n+1] - x[n-1]`` with zero padding, per channel.

    Use it on the ABP target too, so that the model's gradient output and its target agree.

    Examples
    --------
    >>> import torch
    >>> signal_gradient(torch.tensor([[[0.0, 1.0, 4.0, 9.0]]]))
    tensor([[[ 1.,  4.,  8., -4.]]])
    """
    c = x.shape[1]
    w = torch.tensor(_GRAD_KERNEL, dtype=x.dtype, device=x.device).view(1, 1, 3).repeat(c, 1, 1)
    return F.conv1d(x, w, padding=1, groups=c)


def _squeeze(x: torch.Tensor, f: int) -> torch.Tensor:
    """``(B, C, L) -> (B, C*f, L/f)``: time phases become channels (pixel-shuffle style)."""
    b, c, n = x.shape
    return x.reshape(b, c, n // f, f).permute(0, 1, 3, 2).reshape(b, c * f, n // f)


def _unsqueeze(x: torch.Tensor, f: int) -> torch.Tensor:
    b, c, n = x.shape
    return x.reshape(b, c // f, f, n).permute(0, 1, 3, 2).reshape(b, c // f, n * f)


class _MSCM(nn.Module):
    """Multi-scale conv module: conv k, ReLU; squeeze x2, conv; squeeze x2, conv; unsqueeze, conv; unsqueeze; conv k.

    As in the published code, only the input projection is followed by a non-linearity.
    """

    def __init__(self, cin: int, cout: int, feats: int, kernel_size: int):
        super().__init__()
        p = kernel_size // 2
        self.inp = nn.Conv1d(cin, feats, kernel_size, padding=p)
        self.c2 = nn.Conv1d(2 * feats, 2 * feats, kernel_size, padding=p)
        self.c4 = nn.Conv1d(4 * feats, 4 * feats, kernel_size, padding=p)
        self.c2b = nn.Conv1d(2 * feats, 2 * feats, kernel_size, padding=p)
        self.out = nn.Conv1d(feats, cout, kernel_size, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        h = self.c2(_squeeze(h, 2))
        h = self.c4(_squeeze(h, 2))
        h = self.c2b(_unsqueeze(h, 2))
        return self.out(_unsqueeze(h, 2))


class _InvConv1x1(nn.Module):
    """Invertible 1x1 convolution, ``W = P L (U + diag(sign * exp(log_s)))`` (Glow's LU form)."""

    def __init__(self, channels: int):
        super().__init__()
        w0 = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.lu_unpack(*torch.linalg.lu_factor(w0))
        s = torch.diag(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.transpose(0, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight().unsqueeze(-1))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return F.conv1d(y, w_inv.unsqueeze(-1))


class _InvBlock(nn.Module):
    def __init__(self, feats: int, kernel_size: int, clamp: float):
        super().__init__()
        self.clamp = float(clamp)
        self.invconv = _InvConv1x1(2)
        self.F = _MSCM(1, 1, feats, kernel_size)
        self.G = _MSCM(1, 1, feats, kernel_size)
        self.H = _MSCM(1, 1, feats, kernel_size)

    def _scale(self, y1: torch.Tensor) -> torch.Tensor:
        return self.clamp * (2.0 * torch.sigmoid(self.H(y1)) - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.invconv(x)
        x1, x2 = x[:, :1], x[:, 1:]
        y1 = x1 + self.F(x2)
        y2 = x2 * torch.exp(self._scale(y1)) + self.G(y1)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, :1], y[:, 1:]
        x2 = (y2 - self.G(y1)) * torch.exp(-self._scale(y1))
        x1 = y1 - self.F(x2)
        return self.invconv.inverse(torch.cat([x1, x2], dim=1))


class INNPAR(nn.Module):
    """INN-PAR: PPG ``(B, 1, T)`` -> ABP ``(B, 1, T)`` through invertible blocks.

    Parameters
    ----------
    in_channels : int
        Must be 1 (PPG); the gradient channel is made inside.
    blocks : int
        Number of invertible blocks (paper: 4).
    feats : int
        MSCM width (paper: 16, giving ~0.37 M parameters with 4 blocks).
    kernel_size : int
        MSCM kernel (paper: 5).
    clamp : float
        Bound of the coupling log-scale (paper: 0.8).
    window : int
        Default window (paper: 625 samples = 5 s); the network runs on any length.
    input_scale : str
        Input scaling inside the network (:class:`edgebp.train.input_scale.InputScale`).

    Examples
    --------
    >>> import torch
    >>> m = INNPAR(blocks=2, feats=4).eval()
    >>> m(torch.zeros(1, 1, 625)).shape
    torch.Size([1, 1, 625])
    """

    def __init__(
        self, in_channels: int = 1, blocks: int = 4, feats: int = 16, kernel_size: int = 5, clamp: float = 0.8, window: int = 625,
        input_scale: str = "none",
    ):
        super().__init__()
        from edgebp.train.input_scale import input_scale_build

        if in_channels != 1:
            raise ValueError(f"INNPAR: input is PPG alone (in_channels=1; the gradient is made inside), got in_channels={in_channels}")
        if blocks < 1 or feats < 1 or kernel_size % 2 == 0:
            raise ValueError(f"INNPAR: blocks and feats must be >= 1 and kernel_size odd, got {blocks}, {feats}, {kernel_size}")
        self.in_channels = 1
        self.window = int(window)
        self.delay = None
        self.blocks = nn.ModuleList(_InvBlock(feats, kernel_size, clamp) for _ in range(blocks))
        # the published initialisation: Xavier-normal convolutions, zero biases
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
        scale = input_scale_build(input_scale, 1)
        if scale is not None:  # only then: checkpoints without input scaling keep their keys
            self.input_scale = scale

    def _run(self, z: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            z = b(z)
        return z

    def forward_full(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, T) -> (abp (B, 1, T), abp_gradient (B, 1, T))`` for the L1 loss on both.

        Compare the gradient output with :func:`signal_gradient` of the ABP target.
        """
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"INNPAR: expected input (B, 1, T) PPG, got {tuple(x.shape)}")
        t = x.shape[-1]
        if hasattr(self, "input_scale"):
            x = self.input_scale(x)
        z = torch.cat([x, signal_gradient(x)], dim=1)
        pad = (-t) % 4
        if pad:
            z = F.pad(z, (0, pad))
        y = self._run(z)[..., :t]
        return y[:, :1], y[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T) -> (B, 1, T)`` ABP waveform."""
        return self.forward_full(x)[0]

    def forward_pair(self, z: torch.Tensor) -> torch.Tensor:
        """The invertible map itself: ``[PPG, dPPG] (B, 2, T) -> [ABP, dABP] (B, 2, T)``, ``T % 4 == 0``."""
        if z.dim() != 3 or z.shape[1] != 2 or z.shape[-1] % 4:
            raise ValueError(f"INNPAR.forward_pair: expected (B, 2, T) with T a multiple of 4, got {tuple(z.shape)}")
        return self._run(z)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`forward_pair`: ``[ABP, dABP] (B, 2, T) -> [PPG, dPPG]``, ``T % 4 == 0``.

        Examples
        --------
        >>> import torch
        >>> m = INNPAR(blocks=2, feats=4).eval()
        >>> z = torch.randn(1, 2, 64)
        >>> bool(torch.allclose(m.inverse(m.forward_pair(z)), z, atol=1e-5))
        True
        """
        if y.dim() != 3 or y.shape[1] != 2 or y.shape[-1] % 4:
            raise ValueError(f"INNPAR.inverse: expected (B, 2, T) with T a multiple of 4, got {tuple(y.shape)}")
        for b in reversed(self.blocks):
            y = b.inverse(y)
        return y
