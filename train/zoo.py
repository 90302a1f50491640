"""Model zoo: the registry every other part of edgebp builds models through.

Five models, each in two presets:

* ``paper``: the published sizes (MSCA-CSSC-UNet / CBPE-Net 55.4 M parameters, Pulse2Pressure
  5.4 M, INN-PAR 0.37 M); edge-tcn has no publication and its ``paper`` preset is its ``edge`` one;
* ``edge``: <= 100 k parameters, for the wearable.

Every model takes ``x (B, C, T)`` float32, each channel already normalised, and returns either a
point-wise ABP waveform ``(B, 1, T)`` (``output == "waveform"``) or ``(B, 2)`` = (SBP, DBP)
(``output == "values"``). :func:`model_spec` says what each model needs and promises.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass

import torch
from torch import nn

from edgebp.train.models_innpar import INNPAR
from edgebp.train.models_lstm import Pulse2Pressure
from edgebp.train.models_tcn import EdgeTCN
from edgebp.train.models_unet import MSCACSSCUNet

log = logging.getLogger(__name__)

__all__ = ["MODEL_NAMES", "PRESETS", "ModelSpec", "model_spec", "model_build", "model_cost"]

MODEL_NAMES = ("msca-cssc-unet", "cbpe-net", "pulse2pressure", "inn-par", "edge-tcn")
PRESETS = ("edge", "paper", "lowlatency")  # lowlatency: edge-tcn only (docs/latency.md)


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs and promises.

    Attributes
    ----------
    name : str
        Registry name.
    output : str
        ``"waveform"``: point-wise ABP ``(B, 1, T)`` for input ``(B, C, T)``;
        ``"values"``: ``(B, 2)`` = (SBP, DBP) for the window.
    default_inputs : tuple of str
        Channels in input order when the user gives none (e.g. ``("ppg", "ecg")``).
    allowed_inputs : tuple of str
        Channel names the model may be given; ``max_inputs`` of them at most, in any order
        (the order used for training must be kept for inference).
    max_inputs : int
        Largest number of input channels.
    window : int
        Default window in samples at ``fs``.
    window_multiple : int
        Window lengths must be a multiple of this ...
    min_window : int
        ... and at least this long.
    fixed_window : bool
        True when the network is built for one window length and rejects others (the UNets'
        attention embeds the time axis); build a model per window with ``model_build(window=)``.
    causal : bool
        True when output sample ``n`` depends on no input sample after ``n`` (the network can
        run on a signal of any length and stream).
    delay : int or None
        Look-ahead in samples. Causal models: output sample ``n`` is trained against ABP at
        ``n - delay`` (a target shift; the network itself never looks ahead). Window models:
        0 when the used output refers to the last input sample; None when every output sample
        of the window is used, each with a different look-ahead (up to ``window - 1``).
    target_index : int or None
        For window models used as in their paper with a one-sample stride, the output sample
        kept per window (-1 = the last); None when the whole output is used.
    needs_gradient : bool
        True when the model uses the first difference of its input (INN-PAR). The gradient
        channel is computed inside the model by a fixed ``[-1, 0, 1]`` convolution, so callers
        give the plain input; for the training loss use
        :func:`edgebp.train.models_innpar.signal_gradient` on the ABP target.
    streamable : bool
        True when the model has ``stream_init`` / ``stream_step`` (O(1) work per sample).
    export_fixed_length : bool
        True when an ONNX export is tied to the length it was exported at: the LSTM (dynamo
        bakes the traced length) and the UNets (built per window). INN-PAR exports with a
        dynamic length that is a multiple of 4 (``4 * torch.export.Dim("q")``), edge-tcn with
        any dynamic length.
    fs : float
        Sampling rate the presets are designed for.
    description : str
        One line for reports.
    """

    name: str
    output: str
    default_inputs: tuple[str, ...]
    allowed_inputs: tuple[str, ...]
    max_inputs: int
    window: int
    window_multiple: int
    min_window: int
    fixed_window: bool
    causal: bool
    delay: int | None
    target_index: int | None
    needs_gradient: bool
    streamable: bool
    export_fixed_length: bool
    fs: float = 125.0
    description: str = ""


_SPECS: dict[str, ModelSpec] = {
    "msca-cssc-unet": ModelSpec(
        name="msca-cssc-unet", output="waveform", default_inputs=("ecg",), allowed_inputs=("ecg", "ppg"), max_inputs=2,
        window=88, window_multiple=1, min_window=32, fixed_window=True, causal=False, delay=0, target_index=-1,
        needs_gradient=False, streamable=False, export_fixed_length=True,
        description="UNet++ with multi-scale cross-attention and cross-scale skips, single-lead ECG (Chen et al.)",
    ),
    "cbpe-net": ModelSpec(
        name="cbpe-net", output="waveform", default_inputs=("ecg", "ppg"), allowed_inputs=("ecg", "ppg"), max_inputs=2,
        window=88, window_multiple=1, min_window=32, fixed_window=True, causal=False, delay=0, target_index=-1,
        needs_gradient=False, streamable=False, export_fixed_length=True,
        description="the MSCA-CSSC-UNet network on ECG and PPG (Zhang et al.)",
    ),
    "pulse2pressure": ModelSpec(
        name="pulse2pressure", output="values", default_inputs=("ppg",), allowed_inputs=("ppg", "ecg"), max_inputs=2,
        window=1250, window_multiple=1, min_window=1, fixed_window=False, causal=True, delay=0, target_index=None,
        needs_gradient=False, streamable=False, export_fixed_length=True,
        description="unidirectional LSTM, mean over time, MLP to (SBP, DBP) per 10 s PPG window",
    ),
    "inn-par": ModelSpec(
        name="inn-par", output="waveform", default_inputs=("ppg",), allowed_inputs=("ppg",), max_inputs=1,
        window=625, window_multiple=1, min_window=4, fixed_window=False, causal=False, delay=None, target_index=None,
        needs_gradient=True, streamable=False, export_fixed_length=False,
        description="invertible network from PPG and its gradient to ABP and its gradient, 5 s windows (Kundu et al.)",
    ),
    "edge-tcn": ModelSpec(
        name="edge-tcn", output="waveform", default_inputs=("ppg", "ecg"), allowed_inputs=("ppg", "ecg"), max_inputs=2,
        window=1000, window_multiple=1, min_window=1, fixed_window=False, causal=True, delay=25, target_index=None,
        needs_gradient=False, streamable=True, export_fixed_length=False,
        description="causal dilated TCN, int8-friendly, streaming with O(1) work per sample (edgebp's own)",
    ),
}

_CLASSES: dict[str, type[nn.Module]] = {
    "msca-cssc-unet": MSCACSSCUNet,
    "cbpe-net": MSCACSSCUNet,
    "pulse2pressure": Pulse2Pressure,
    "inn-par": INNPAR,
    "edge-tcn": EdgeTCN,
}

_EDGE_TCN = dict(channels=24, kernel_size=3, dilations=(1, 2, 4, 8, 16, 32), head_channels=16, delay=25)
# the same network with 7 samples (56 ms at 125 Hz) of trained look-ahead instead of 25 (200 ms)
_EDGE_TCN_LOWLAT = {**_EDGE_TCN, "delay": 7}
_UNET_PAPER = dict(widths=(128, 256, 512, 1024, 2048), heads=4, attn_dim=None)
_UNET_EDGE = dict(widths=(4, 8, 16, 32, 64), heads=4, attn_dim=8)

_PRESET_KWARGS: dict[str, dict[str, dict]] = {
    "msca-cssc-unet": {"paper": _UNET_PAPER, "edge": _UNET_EDGE},
    "cbpe-net": {"paper": _UNET_PAPER, "edge": _UNET_EDGE},
    "pulse2pressure": {
        "paper": dict(hidden=512, layers=3, mlp=(256, 128, 64), dropout=0.2),
        "edge": dict(hidden=64, layers=1, mlp=(32, 16), dropout=0.1),
    },
    "inn-par": {
        "paper": dict(blocks=4, feats=16, kernel_size=5, clamp=0.8),
        "edge": dict(blocks=4, feats=6, kernel_size=5, clamp=0.8),
    },
    "edge-tcn": {"paper": _EDGE_TCN, "edge": _EDGE_TCN, "lowlatency": _EDGE_TCN_LOWLAT},
}


def _check_name(name: str) -> str:
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    return name


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model.

    Examples
    --------
    >>> model_spec("edge-tcn").default_inputs
    ('ppg', 'ecg')
    """
    return _SPECS[_check_name(name)]


def _override_keys(name: str) -> tuple[str, ...]:
    params = inspect.signature(_CLASSES[name].__init__).parameters
    return tuple(k for k in params if k not in ("self", "in_channels", "window"))


def model_build(
    name: str, preset: str = "edge", in_channels: int | None = None, window: int | None = None, **overrides
) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    preset : {"edge", "paper"}
        Sizes: ``paper`` = published, ``edge`` = <= 100 k parameters.
    in_channels : int, optional
        Number of input channels (default: ``len(spec.default_inputs)``).
    window : int, optional
        Window length in samples (default: ``spec.window``); checked against the spec's rule.
    **overrides
        Constructor arguments replacing the preset's (e.g. ``channels=32`` for edge-tcn);
        an unknown key raises ValueError naming it.

    Returns
    -------
    torch.nn.Module
        With attributes ``spec`` (the ModelSpec, with this window and delay), ``name``,
        ``preset``, ``in_channels``, ``window`` and ``delay``.

    Examples
    --------
    >>> import torch
    >>> m = model_build("edge-tcn", "edge", in_channels=2)
    >>> m(torch.zeros(1, 2, 250)).shape
    torch.Size([1, 1, 250])
    """
    spec = model_spec(name)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if preset not in _PRESET_KWARGS[name]:
        raise ValueError(f"{name}: no {preset!r} preset; its presets: {', '.join(_PRESET_KWARGS[name])}")
    valid = _override_keys(name)
    for key in overrides:
        if key not in valid:
            raise ValueError(f"{name}: unknown override {key!r}; valid overrides: {', '.join(valid)}")
    in_channels = len(spec.default_inputs) if in_channels is None else int(in_channels)
    if not 1 <= in_channels <= spec.max_inputs:
        raise ValueError(
            f"{name}: in_channels={in_channels} not allowed; it takes 1 to {spec.max_inputs} of {', '.join(spec.allowed_inputs)}"
        )
    window = spec.window if window is None else int(window)
    if window < spec.min_window or window % spec.window_multiple:
        raise ValueError(
            f"{name}: window={window} not allowed; it must be >= {spec.min_window} and a multiple of {spec.window_multiple}"
        )
    kwargs = {**_PRESET_KWARGS[name][preset], **overrides}
    model = _CLASSES[name](in_channels=in_channels, window=window, **kwargs)
    model.name = name
    model.preset = preset
    model.spec = dataclasses.replace(spec, window=window, delay=getattr(model, "delay", spec.delay))
    n_params = sum(p.numel() for p in model.parameters())
    log.debug("built %s (%s): %d parameters, window %d, in_channels %d", name, preset, n_params, window, in_channels)
    return model


def _lstm_macs(module: nn.LSTM, seq_len: int, batch: int) -> int:
    h = module.hidden_size
    dirs = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        inp = module.input_size if layer == 0 else h * dirs
        total += dirs * 4 * h * (inp + h)
    return total * seq_len * batch


def model_cost(
    model: nn.Module, window: int | None = None, in_channels: int | None = None, hop: int | None = None, fs: float = 125.0
) -> dict:
    """Parameters and multiply-accumulates of one forward pass at batch size 1.

    Convolutions, linear layers and attention matmuls are counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2); LSTMs, which it does not see,
    by forward hooks (``4 H (I + H)`` per layer and time step). Element-wise work (activations,
    norms, softmax, interpolation) is not counted.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`model_build`.
    window, in_channels : int, optional
        Input length and channels (default: the model's).
    hop : int, optional
        Samples between successive windows, giving ``macs_per_second = macs_per_window * fs / hop``.
        Default: 1 for models used at a one-sample stride (``spec.target_index`` set, the UNets
        as published), else ``window`` (back-to-back windows; for causal convolutional models
        this equals the per-sample streaming cost).
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    dict
        ``params``, ``macs_per_window``, ``macs_per_second``, ``window``, ``hop``, ``fs``.

    Examples
    --------
    >>> c = model_cost(model_build("edge-tcn"))
    >>> c["params"] < 100_000
    True
    """
    from torch.utils.flop_counter import FlopCounterMode

    spec = getattr(model, "spec", None)
    window = int(window or getattr(model, "window"))
    in_channels = int(in_channels or getattr(model, "in_channels"))
    if hop is None:
        hop = 1 if spec is not None and spec.target_index is not None else window
    p = next(model.parameters())
    x = torch.zeros(1, in_channels, window, dtype=p.dtype, device=p.device)
    lstm_macs = [0]

    def hook(mod, args, _out):
        lstm_macs[0] += _lstm_macs(mod, args[0].shape[1] if mod.batch_first else args[0].shape[0], 1)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.LSTM)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    counted = counter.get_total_flops() // 2
    # if a future torch counts LSTMs itself, do not count them twice
    lstm_names = [n for n, m in model.named_modules() if isinstance(m, nn.LSTM)]
    lstm_counted = sum(
        sum(v.values())
        for k, v in counter.get_flop_counts().items()
        if any(n and (k == n or k.endswith("." + n)) for n in lstm_names)
    )
    macs = int(counted + (0 if lstm_counted else lstm_macs[0]))
    return {
        "params": int(sum(q.numel() for q in model.parameters())),
        "macs_per_window": macs,
        "macs_per_second": macs * fs / hop,
        "window": window,
        "hop": int(hop),
        "fs": float(fs),
    }
