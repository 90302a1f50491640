"""The one preprocessing chain, shared by training (whole records) and the streaming runtime.

Stages, in order, each a numba kernel with explicit state (any chunking of the input gives the
same output as one call on the whole record, bit for bit):

1. resample ``fs_in -> fs_out`` (:class:`~edgebp.processing.stream_resample.StreamResampler`,
   causal polyphase FIR, integer delay);
2. one Butterworth SOS cascade at ``fs_out``: band-pass when both ``highpass_hz`` and
   ``lowpass_hz`` are set, else high-pass or low-pass, else none
   (:class:`~edgebp.processing.filters.StreamFilter`: warm start, gaps held);
3. running z-score (``norm="running"``, :class:`~edgebp.processing.normalize.RunningNorm`);
4. optionally the gradient channel (:class:`~edgebp.processing.gradient.StreamGradient`): the
   output becomes ``(2, n)`` = (signal, central difference), both delayed one more sample.

Gaps (NaN) are carried through as NaN at their (delay-compensated) position; no stage is
poisoned by them. :attr:`Preprocessor.delay` is the delay of the output in output samples: the
resampler's exact integer delay + the group delay at 1 Hz of the filter and of the running
mean removal (a small lead) + 1 with the gradient. The IIR part is an approximation: its delay
depends on frequency.

Examples
--------
>>> import numpy as np
>>> cfg = chain_config("ppg", fs_in=250.0)
>>> (cfg.highpass_hz, cfg.lowpass_hz, cfg.fs_out)
(0.5, 8.0, 125.0)
>>> pre = Preprocessor(cfg)
>>> x = np.sin(2 * np.pi * 1.2 * np.arange(2500) / 250.0)
>>> y, state = pre.process(x[:1000], pre.init_state())
>>> y2, state = pre.process(x[1000:], state)
>>> bool(np.array_equal(np.concatenate([y, y2]), preprocess(x, cfg)))
True
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from edgebp.config_base import StrictConfig, check_choice
from edgebp.processing.filters import FilterState, StreamFilter, filter_design
from edgebp.processing.gradient import StreamGradient
from edgebp.processing.normalize import RunningNorm
from edgebp.processing.stream_resample import RESAMPLER_KINDS, ResamplerState, StreamResampler

logger = logging.getLogger(__name__)

NORM_METHODS = ("running", "none")
FS_RANGE = (0.1, 100_000.0)
DELAY_FREQ_HZ = 1.0  # the IIR stages' delay is quoted at a typical heart rate


@dataclass(frozen=True)
class ChainConfig(StrictConfig):
    """Parameters of one channel's chain.

    Parameters
    ----------
    fs_in : float
        Rate of the incoming channel (Hz).
    fs_out : float
        Rate of the output (Hz), the model's rate.
    highpass_hz, lowpass_hz : float or None
        Filter edges at ``fs_out``; ``None`` leaves that side open (both None: no filter).
    norm : str
        ``"running"`` (moving z-score) or ``"none"``.
    norm_tau_s : float
        Time constant of the running normalisation (s).
    gradient : bool
        Append the central-difference channel (output ``(2, n)``).
    filter_order : int
        Butterworth order (a band-pass of order 2 has 4 poles).
    resampler : str
        The resampler's anti-alias FIR (:data:`~edgebp.processing.stream_resample.RESAMPLER_KINDS`):
        ``"kaiser"`` (default; 250 -> 125 Hz: 19 samples = 152 ms), ``"short"`` (2 samples =
        16 ms) or ``"decimate"`` (integer factors only, 0 ms, no anti-alias filter); see
        ``docs/latency.md``. :meth:`to_dict` leaves the default out, so the dict form of every
        existing config (bundle manifests, cache keys) is unchanged.

    Examples
    --------
    >>> ChainConfig.from_dict({"fs_in": 250.0, "lowpass": 40})
    Traceback (most recent call last):
    ...
    ValueError: ChainConfig: unknown key(s) lowpass; valid keys: fs_in, fs_out, highpass_hz, lowpass_hz, norm, norm_tau_s, gradient, filter_order, resampler
    >>> "resampler" in ChainConfig(250.0).to_dict(), ChainConfig(250.0, resampler="short").to_dict()["resampler"]
    (False, 'short')
    """

    fs_in: float
    fs_out: float = 125.0
    highpass_hz: float | None = 0.5
    lowpass_hz: float | None = None
    norm: str = "running"
    norm_tau_s: float = 4.0
    gradient: bool = False
    filter_order: int = 2
    resampler: str = "kaiser"

    def __post_init__(self) -> None:
        # ints from JSON/TOML become floats so to_dict round-trips with one type per field
        for name in ("fs_in", "fs_out", "highpass_hz", "lowpass_hz", "norm_tau_s"):
            value = getattr(self, name)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
                object.__setattr__(self, name, float(value))
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "ChainConfig") -> "ChainConfig":
        """Build from a mapping; unknown keys are rejected, naming them and the valid ones."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
        return cls(**data)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of range."""
        lo, hi = FS_RANGE
        for name in ("fs_in", "fs_out"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
                raise ValueError(f"ChainConfig.{name}={value!r}: must be a sampling rate in Hz within {lo}..{hi}")
        nyq = self.fs_out / 2.0
        for name in ("highpass_hz", "lowpass_hz"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < nyq):
                raise ValueError(
                    f"ChainConfig.{name}={value!r}: must be None or a frequency in (0, fs_out/2 = {nyq:g}) Hz"
                )
        if self.highpass_hz is not None and self.lowpass_hz is not None and self.highpass_hz >= self.lowpass_hz:
            raise ValueError(
                f"ChainConfig: highpass_hz={self.highpass_hz!r} must be below lowpass_hz={self.lowpass_hz!r}"
            )
        check_choice(self.norm, NORM_METHODS, "ChainConfig.norm")
        check_choice(self.resampler, RESAMPLER_KINDS, "ChainConfig.resampler")
        tau = self.norm_tau_s
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (0.0 < tau <= 3600.0):
            raise ValueError(f"ChainConfig.norm_tau_s={tau!r}: must be a time in (0, 3600] s")
        if not isinstance(self.gradient, bool):
            raise ValueError(f"ChainConfig.gradient={self.gradient!r}: must be true or false")
        order = self.filter_order
        if isinstance(order, bool) or not isinstance(order, int) or not (1 <= order <= 8):
            raise ValueError(f"ChainConfig.filter_order={order!r}: must be an integer in 1..8")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping (floats, None, str, bool, int) that :meth:`from_dict` reads back.
        ``resampler`` is left out when it is the default ``"kaiser"`` (the form every config
        had before the key existed)."""
        out = dataclasses.asdict(self)
        if out["resampler"] == "kaiser":
            del out["resampler"]
        return out


# Per-kind defaults (everything but fs_in). Read-only: use chain_config(kind, fs, **overrides).
CHAIN_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "ecg": MappingProxyType({"highpass_hz": 0.5, "lowpass_hz": 40.0, "norm": "running"}),
        "ppg": MappingProxyType({"highpass_hz": 0.5, "lowpass_hz": 8.0, "norm": "running"}),
        # ABP is the label: resample only, so it stays in mmHg and aligned with the inputs
        "abp": MappingProxyType({"highpass_hz": None, "lowpass_hz": None, "norm": "none", "gradient": False}),
    }
)


def chain_config(kind: str, fs_in: float, **overrides: Any) -> ChainConfig:
    """The preset chain for a channel kind at its own rate, with optional overrides.

    Parameters
    ----------
    kind : str
        ``"ecg"``, ``"ppg"`` or ``"abp"``.
    fs_in : float
        The channel's sampling rate (Hz).
    **overrides
        Any :class:`ChainConfig` field (``fs_out``, ``gradient``...).

    Examples
    --------
    >>> chain_config("ecg", 250.0, gradient=True).gradient
    True
    >>> chain_config("resp", 250.0)
    Traceback (most recent call last):
    ...
    ValueError: chain kind 'resp' is not valid; choose one of: ecg, ppg, abp
    """
    if kind not in CHAIN_PRESETS:
        raise ValueError(f"chain kind {kind!r} is not valid; choose one of: {', '.join(CHAIN_PRESETS)}")
    return ChainConfig.from_dict({**CHAIN_PRESETS[kind], **overrides, "fs_in": fs_in}, where=f"chain_config({kind!r})")


@dataclass
class ChainState:
    """State of a :class:`Preprocessor`: one entry per stage (``None`` for an absent stage).

    Plain numpy arrays in dataclasses: ``copy.deepcopy`` and ``pickle`` work.
    """

    resample: ResamplerState
    filter: FilterState | None
    norm: np.ndarray | None
    gradient: np.ndarray | None

    def copy(self) -> "ChainState":
        return ChainState(
            self.resample.copy(),
            None if self.filter is None else self.filter.copy(),
            None if self.norm is None else self.norm.copy(),
            None if self.gradient is None else self.gradient.copy(),
        )

    @property
    def n_in(self) -> int:
        """Input samples consumed so far."""
        return self.resample.n_in

    @property
    def n_out(self) -> int:
        """Output samples produced so far."""
        return self.resample.n_out


class Preprocessor:
    """One channel's chain (see the module notes).

    Parameters
    ----------
    config : ChainConfig

    Attributes
    ----------
    delay : float
        Output delay in output samples: resampler (exact) + group delay at 1 Hz of the filter
        and the running mean removal (approximate) + 1 with the gradient.
    n_channels : int
        1, or 2 with the gradient.

    Examples
    --------
    >>> pre = Preprocessor(chain_config("abp", 250.0))
    >>> pre.delay
    19.0
    >>> import numpy as np
    >>> y, _ = pre.process(np.full(500, 90.0), pre.init_state())
    >>> y.shape, bool(np.allclose(y, 90.0))
    ((250,), True)
    """

    def __init__(self, config: ChainConfig) -> None:
        if not isinstance(config, ChainConfig):
            raise TypeError(f"Preprocessor needs a ChainConfig, got {type(config).__name__}")
        self.config = config
        self.resampler = StreamResampler(config.fs_in, config.fs_out, kind=config.resampler)
        hp, lp = config.highpass_hz, config.lowpass_hz
        if hp is not None and lp is not None:
            sos = filter_design(config.fs_out, "bandpass", low=hp, high=lp, order=config.filter_order)
        elif hp is not None:
            sos = filter_design(config.fs_out, "highpass", low=hp, order=config.filter_order)
        elif lp is not None:
            sos = filter_design(config.fs_out, "lowpass", high=lp, order=config.filter_order)
        else:
            sos = None
        self.filter = None if sos is None else StreamFilter(sos)
        self.norm = RunningNorm(config.fs_out, config.norm_tau_s) if config.norm == "running" else None
        self.gradient = StreamGradient() if config.gradient else None
        self.n_channels = 2 if self.gradient is not None else 1
        filter_delay = 0.0 if self.filter is None else self.filter.group_delay(config.fs_out, DELAY_FREQ_HZ)
        norm_delay = 0.0 if self.norm is None else self.norm.group_delay(DELAY_FREQ_HZ)
        grad_delay = 0 if self.gradient is None else self.gradient.delay
        self.delay = float(self.resampler.delay_out) + filter_delay + norm_delay + grad_delay

    def __repr__(self) -> str:
        return f"Preprocessor({self.config!r})"

    def init_state(self) -> ChainState:
        """A fresh state for a new stream."""
        return ChainState(
            self.resampler.init_state(),
            None if self.filter is None else self.filter.init_state(),
            None if self.norm is None else self.norm.init_state(),
            None if self.gradient is None else self.gradient.init_state(),
        )

    def n_out(self, n_in: int) -> int:
        """Output samples after ``n_in`` input samples (any chunking)."""
        return self.resampler.n_out(n_in)

    def process(self, x: np.ndarray, state: ChainState) -> tuple[np.ndarray, ChainState]:
        """Run one block through the chain.

        Parameters
        ----------
        x : np.ndarray
            1-D block at ``fs_in`` (NaN = gap).
        state : ChainState
            From :meth:`init_state` or the previous call; not modified.

        Returns
        -------
        tuple
            ``(y, new_state)``; ``y`` is float64 ``(n_out,)``, or ``(2, n_out)`` with the gradient.
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"Preprocessor.process: x must be 1-D, got shape {x.shape}")
        y, rs = self.resampler.process(x, state.resample)
        fs = ns = gs = None
        if self.filter is not None:
            y, fs = self.filter.process(y, state.filter)
        if self.norm is not None:
            y, ns = self.norm.process(y, state.norm)
        if self.gradient is not None:
            y, gs = self.gradient.process(y, state.gradient)
        return y, ChainState(rs, fs, ns, gs)


def preprocess(x: np.ndarray, config: ChainConfig) -> np.ndarray:
    """Offline preprocessing of a whole signal: one :meth:`Preprocessor.process` call.

    Examples
    --------
    >>> import numpy as np
    >>> y = preprocess(np.random.default_rng(1).normal(size=1000), chain_config("ecg", 250.0, gradient=True))
    >>> y.shape
    (2, 500)
    """
    pre = Preprocessor(config)
    y, _ = pre.process(x, pre.init_state())
    return y


def _channel_config(
    name: str, fs_in: float, fs_out: float, configs: Mapping[str, Any] | None
) -> ChainConfig:
    given = None if configs is None else configs.get(name)
    if given is None:
        return chain_config(name, fs_in, fs_out=fs_out)
    if isinstance(given, ChainConfig):
        if given.fs_in != fs_in or given.fs_out != fs_out:
            raise ValueError(
                f"configs[{name!r}] has fs_in={given.fs_in}, fs_out={given.fs_out} but the channel is at "
                f"{fs_in} Hz and fs_out={fs_out}; pass a dict of overrides instead"
            )
        return given
    if isinstance(given, Mapping):
        overrides = dict(given)
        for key in ("fs_in", "fs_out"):
            if key in overrides:
                raise ValueError(f"configs[{name!r}]: {key} is set by the record and fs_out=, not by overrides")
        return chain_config(name, fs_in, fs_out=fs_out, **overrides)
    raise ValueError(f"configs[{name!r}] must be a ChainConfig or a dict of overrides, got {type(given).__name__}")


def preprocess_record(
    record: Any,
    inputs: Sequence[str] = ("ecg", "ppg"),
    fs_out: float = 125.0,
    configs: Mapping[str, Any] | None = None,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocess a record's input channels and its ABP onto one time base.

    Each channel runs through its own chain from its own rate (records may mix rates). ABP goes
    through the ``"abp"`` chain (resampler only) and stays in mmHg. Resamplers of different
    ratios have different (integer) delays: each channel is advanced by its delay minus the
    smallest one, so all outputs carry the same resampler delay (when all channels share one
    rate nothing is shifted and the rows equal the streaming :class:`Preprocessor` output).
    The filter delay of the inputs (see :attr:`Preprocessor.delay`) is not removed: it is the
    same offline and on the device. All rows are cut to the common length.

    Parameters
    ----------
    record : edgebp.record.Record
    inputs : sequence of str
        Channel names, in row order (``record.get(name)``; ECG prefers lead II).
    fs_out : float
        Output rate (Hz).
    configs : mapping, optional
        Per channel name (``"ecg"``, ``"ppg"``, ``"abp"``): a dict of :class:`ChainConfig`
        overrides for the preset, or a full ChainConfig (its rates must match).
    dtype : numpy dtype
        Of ``X`` (float64 by default; float32 halves the memory for training).

    Returns
    -------
    tuple
        ``(X, abp)``: ``X`` of shape ``(n_rows, n)``, one row per input plus a gradient row
        right after every input whose chain has ``gradient=True``; ``abp`` float64 ``(n,)``,
        or ``None`` when the record has no ABP channel.

    Raises
    ------
    KeyError
        When an input channel is missing (the message names the record and its channels).

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.record import Channel, Record
    >>> t = np.arange(2500) / 250.0
    >>> rec = Record("r", [Channel.from_label("II", np.sin(2 * np.pi * t), 250.0),
    ...                    Channel.from_label("PLETH", np.cos(2 * np.pi * t), 250.0),
    ...                    Channel.from_label("ABP", 100 + 20 * np.sin(2 * np.pi * t), 250.0)])
    >>> X, abp = preprocess_record(rec, configs={"ppg": {"gradient": True}})
    >>> X.shape, abp.shape
    ((3, 1250), (1250,))
    """
    fs_out = float(fs_out)
    names = list(inputs)
    if not names:
        raise ValueError("preprocess_record: inputs is empty; name at least one channel (ecg, ppg)")
    outputs: list[tuple[str, np.ndarray, int]] = []
    for name in names:
        ch = record.get(name)
        pre = Preprocessor(_channel_config(name, ch.fs, fs_out, configs))
        y, _ = pre.process(ch.signal, pre.init_state())
        outputs.append((name, np.atleast_2d(y), pre.resampler.delay_out))
    abp_out = None
    if record.has("abp"):
        ch = record.get("abp")
        pre = Preprocessor(_channel_config("abp", ch.fs, fs_out, configs))
        y, _ = pre.process(ch.signal, pre.init_state())
        if y.ndim != 1:
            raise ValueError("preprocess_record: the abp chain must give one row (gradient=False)")
        abp_out = (y[None, :], pre.resampler.delay_out)
    delays = [d for _, _, d in outputs] + ([abp_out[1]] if abp_out else [])
    d_min = min(delays)
    rows = [y[:, d - d_min:] for _, y, d in outputs]
    abp_row = abp_out[0][:, abp_out[1] - d_min:] if abp_out else None
    n = min(r.shape[1] for r in rows + ([abp_row] if abp_row is not None else []))
    X = np.concatenate([r[:, :n] for r in rows], axis=0).astype(dtype, copy=False)
    abp = None if abp_row is None else np.ascontiguousarray(abp_row[0, :n])
    logger.debug(
        "preprocess_record %s: rows=%d n=%d resampler delays=%s (aligned to %d)",
        getattr(record, "record_id", "?"), X.shape[0], n, delays, d_min,
    )
    return X, abp


def chain_throughput(
    n: int = 2_000_000,
    kind: str = "ecg",
    fs_in: float = 250.0,
    fs_out: float = 125.0,
    block: int = 65_536,
    repeats: int = 3,
) -> float:
    """Measure the chain's block path in input samples per second (best of ``repeats``).

    The kernels are compiled (or loaded from the numba cache) before timing. The signal is fed
    in blocks of ``block`` samples through :meth:`Preprocessor.process`, as the runtime does.

    Examples
    --------
    >>> rate = chain_throughput(n=20_000, repeats=1)
    >>> rate > 0
    True
    """
    n = int(n)
    if n <= 0 or block <= 0 or repeats <= 0:
        raise ValueError(f"chain_throughput: n={n}, block={block}, repeats={repeats} must all be > 0")
    pre = Preprocessor(chain_config(kind, fs_in, fs_out=fs_out))
    rng = np.random.default_rng(0)
    t = np.arange(n) / fs_in
    x = np.sin(2 * np.pi * 1.2 * t) + 0.1 * rng.normal(size=n)
    pre.process(x[: min(n, 4096)], pre.init_state())  # compile / load the cache
    best = float("inf")
    for _ in range(int(repeats)):
        state = pre.init_state()
        t0 = time.perf_counter()
        for i in range(0, n, block):
            _, state = pre.process(x[i : i + block], state)
        best = min(best, time.perf_counter() - t0)
    rate = n / best
    logger.info("chain_throughput %s %g->%g Hz: %.1f M samples/s (block %d)", kind, fs_in, fs_out, rate / 1e6, block)
    return rate
