"""The simulated wearable's hardware: sample clock, analogue front-ends and ADCs.

Framing of several rates
------------------------
The device has one frame clock at ``fs`` (default 250 Hz) and sends one frame per tick
holding one code per channel. A channel with a lower rate of its own (``ppg_fs``, e.g.
125 Hz; it must divide ``fs``) is sampled on every ``fs/ppg_fs``-th tick and its code is
held (sample-and-hold) on the ticks in between, the way a firmware that reads a slower
sensor's FIFO repeats the last value. The stream header states ``fs`` only.

Clock
-----
Tick ``k`` is taken at the true time ``start + k / (fs * (1 + ppm * 1e-6)) + e_k``, with a
constant frequency error ``ppm`` per device (a crystal's tolerance; drawn uniformly from
+-50 ppm by the seed unless given) and white timing jitter ``e_k ~ N(0, jitter)``. The
source is interpolated (linearly) at those true instants, and the truth file records them,
so the true ABP of every sample is exact whatever the clock does.

Front-ends
----------
ECG: the source (mV) plus an electrode DC offset and white noise, converted by an ADC of
``ecg_bits`` over ``+-ecg_range_mv`` (input-referred; an AD8232 with gain 100 on a 3.3 V
ADC gives about +-16 mV, an ADS1292 at gain 6 about +-400 mV). Codes are two's complement,
as ECG converters (ADS129x) deliver them: the stream header's map ``physical = (code -
offset) * gain`` has ``gain = range / 2**(bits-1)`` mV per LSB and ``offset = 0``; inputs
beyond the range clip at the rails (``-2**(bits-1)`` and ``2**(bits-1) - 1``).

PPG: the source pleth is scaled robustly (its 5th..95th percentile over the simulated
span maps to the pulse's trough..peak) onto a photodiode signal of DC level ``ppg_dc`` of
full scale with a pulsatile part ``ppg_perfusion * DC`` peak to peak, plus an ambient-light
offset ``ppg_ambient`` of full scale and white noise, then an ``ppg_bits`` ADC (18 bits as
on the MAX3010x; at most 23 so that codes fit the binary encoding's int24) in unsigned
counts (gain 1, offset 0). ``ppg_polarity="raw"`` inverts the pulse
as a photodiode sees it (more blood, less light); the default "pleth" sends it the way a
pulse oximeter displays it. In MAX3010x mode the red and IR channels are both made from
the source pleth, IR with ``ppg_perfusion`` and red with half of it (ratio R = 0.5,
roughly SpO2 97-98 %).

Examples
--------
>>> import numpy as np
>>> cfg = DeviceConfig(clock_ppm=100.0, jitter_us=0.0)
>>> t = clock_ticks(cfg, 3, seed=0)
>>> np.round(t * 250, 6).tolist()
[0.0, 0.9999, 1.9998]
>>> ch = adc_channels(cfg)[0]
>>> ch.name, ch.units, ch.bits, round(ch.gain * 1e6, 3), ch.offset, ch.code_min, ch.code_max
('ecg', 'mV', 16, 152.588, 0.0, -32768, 32767)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import signal as sps

from edgebp.firmware_sim.faults import fault_rng


@dataclass(frozen=True)
class DeviceConfig:
    """Everything about the simulated hardware (see the module docstring for the models)."""

    fs: float = 250.0
    channels: tuple[str, ...] = ("ecg", "ppg")
    ppg_fs: float | None = None
    ecg_bits: int = 16
    ecg_range_mv: float = 5.0
    ecg_offset_mv: float = 0.0
    ecg_noise_uv: float = 10.0
    ppg_bits: int = 18
    ppg_dc: float = 0.5
    ppg_perfusion: float = 0.02
    ppg_ambient: float = 0.05
    ppg_noise: float = 2e-5
    ppg_polarity: str = "pleth"
    leadoff_mode: str = "rail"
    clock_ppm: float | None = None
    jitter_us: float = 20.0
    device: str = "edgebp-sim"

    def __post_init__(self) -> None:
        if not (1.0 <= self.fs <= 10_000.0):
            raise ValueError(f"device fs must be in 1..10000 Hz, got {self.fs}")
        valid = ("ecg", "ppg", "red", "ir")
        chans = tuple(c.strip().lower() for c in self.channels)
        bad = [c for c in chans if c not in valid]
        if bad or not chans or len(set(chans)) != len(chans):
            raise ValueError(f"device channels {self.channels!r}: choose distinct names from {', '.join(valid)}")
        object.__setattr__(self, "channels", chans)
        if not (8 <= self.ecg_bits <= 24):
            raise ValueError(f"ecg_bits must be 8..24, got {self.ecg_bits}")
        if not (8 <= self.ppg_bits <= 23):
            raise ValueError(f"ppg_bits must be 8..23 (unsigned codes must fit int24), got {self.ppg_bits}")
        if self.ecg_range_mv <= 0:
            raise ValueError(f"ecg_range_mv must be positive, got {self.ecg_range_mv}")
        if self.ppg_polarity not in ("pleth", "raw"):
            raise ValueError(f"ppg_polarity must be 'pleth' or 'raw', got {self.ppg_polarity!r}")
        if self.leadoff_mode not in ("rail", "flat"):
            raise ValueError(f"leadoff_mode must be 'rail' or 'flat', got {self.leadoff_mode!r}")
        if not (0 < self.ppg_dc and self.ppg_dc + self.ppg_ambient < 1 and self.ppg_ambient >= 0):
            raise ValueError("ppg_dc + ppg_ambient must be inside (0, 1) of full scale")
        if self.ppg_fs is not None:
            ratio = self.fs / self.ppg_fs
            if self.ppg_fs <= 0 or abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                raise ValueError(f"ppg_fs {self.ppg_fs} Hz must divide the frame rate {self.fs} Hz")
        if self.jitter_us < 0 or self.jitter_us * 1e-6 > 0.1 / self.fs:
            raise ValueError(f"jitter_us {self.jitter_us} must be >= 0 and below a tenth of the frame period")
        if self.clock_ppm is not None and abs(self.clock_ppm) > 10_000:
            raise ValueError(f"clock_ppm {self.clock_ppm} is not plausible (|ppm| <= 10000)")

    def to_dict(self) -> dict:
        """Plain dict, for the summary JSON."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


@dataclass(frozen=True)
class AdcChannel:
    """One converter; the stream header's map ``physical = (code - offset) * gain``.

    Signed converters give two's complement codes ``-2**(bits-1) .. 2**(bits-1) - 1``,
    unsigned ones ``0 .. 2**bits - 1``.
    """

    name: str
    units: str
    bits: int
    gain: float
    offset: float = 0.0
    signed: bool = False
    hold: int = 1  # frames per own sample (sample-and-hold factor)

    @property
    def code_min(self) -> int:
        """The bottom rail."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def code_max(self) -> int:
        """The top rail."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def code_mid(self) -> int:
        """Mid-scale code (what a shorted input reads)."""
        return 0 if self.signed else (1 << (self.bits - 1))

    def to_code(self, x: np.ndarray) -> np.ndarray:
        """Quantise physical values to codes, clipping at the rails (NaN -> mid-scale).

        Examples
        --------
        >>> AdcChannel("x", "V", 8, 0.1).to_code(np.array([-1.0, 0.04, 0.06, 99.0])).tolist()
        [0, 0, 1, 255]
        >>> AdcChannel("x", "V", 8, 0.1, signed=True).to_code(np.array([-99.0, -0.06, 99.0])).tolist()
        [-128, -1, 127]
        """
        code = np.rint(np.asarray(x, dtype=np.float64) / self.gain + self.offset)
        code = np.where(np.isfinite(code), code, self.code_mid)
        return np.clip(code, self.code_min, self.code_max).astype(np.int64)

    def to_physical(self, code: np.ndarray) -> np.ndarray:
        """Codes back to physical units, as a decoder does."""
        return (np.asarray(code, dtype=np.float64) - self.offset) * self.gain


def adc_channels(cfg: DeviceConfig) -> list[AdcChannel]:
    """The converters of the configured channels, in frame order."""
    out = []
    ppg_hold = 1 if cfg.ppg_fs is None else int(round(cfg.fs / cfg.ppg_fs))
    for name in cfg.channels:
        if name == "ecg":
            out.append(AdcChannel("ecg", "mV", cfg.ecg_bits, cfg.ecg_range_mv / (1 << (cfg.ecg_bits - 1)), 0.0,
                                  signed=True))
        else:
            out.append(AdcChannel(name, "counts", cfg.ppg_bits, 1.0, 0.0, signed=False, hold=ppg_hold))
    return out


def clock_ppm_resolve(cfg: DeviceConfig, seed: int) -> float:
    """The device's frequency error: the configured one, or one drawn from +-50 ppm by the seed."""
    if cfg.clock_ppm is not None:
        return float(cfg.clock_ppm)
    return float(fault_rng(seed, "clock_ppm").uniform(-50.0, 50.0))


def clock_ticks(cfg: DeviceConfig, n: int, seed: int = 0, start_s: float = 0.0) -> np.ndarray:
    """True times (s) of the first ``n`` ticks of the device's frame clock.

    Examples
    --------
    >>> t = clock_ticks(DeviceConfig(clock_ppm=0.0, jitter_us=20.0), 1000, seed=1)
    >>> bool(np.all(np.diff(t) > 0)), abs(float(np.std(t - np.arange(1000) / 250.0)) - 20e-6) < 3e-6
    (True, True)
    """
    ppm = clock_ppm_resolve(cfg, seed)
    period = 1.0 / (cfg.fs * (1.0 + ppm * 1e-6))
    t = start_s + np.arange(n, dtype=np.float64) * period
    if cfg.jitter_us > 0:
        t = t + fault_rng(seed, "jitter").normal(0.0, cfg.jitter_us * 1e-6, n)
        # the device powers up at start_s: no sample before it
        t = np.maximum(t, start_s)
    return t


def source_sample(signal: np.ndarray, fs: float, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of a uniformly sampled signal at times ``t`` (NaN outside or in gaps).

    Examples
    --------
    >>> source_sample(np.array([0.0, 2.0, 4.0]), 1.0, np.array([0.5, 1.25, 3.0])).tolist()
    [1.0, 2.5, nan]
    """
    x = np.asarray(signal, dtype=np.float64)
    pos = np.asarray(t, dtype=np.float64) * fs
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    ok = (i0 >= 0) & (i0 < len(x) - 1)
    out = np.full(len(pos), np.nan)
    j = i0[ok]
    out[ok] = x[j] * (1.0 - frac[ok]) + x[j + 1] * frac[ok]
    exact_end = (i0 == len(x) - 1) & (frac == 0)
    out[exact_end] = x[-1]
    return out


def _bandlimited_noise(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    """Unit-RMS band-limited Gaussian noise (Butterworth band-pass of white noise)."""
    if n == 0:
        return np.zeros(0)
    hi = min(hi, 0.45 * fs)
    sos = sps.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    y = sps.sosfilt(sos, rng.normal(size=n + int(2 * fs)))[int(2 * fs):]
    s = float(np.std(y))
    return y / s if s > 0 else y


def _smooth_mask(mask: np.ndarray, fs: float, ramp_s: float = 0.2) -> np.ndarray:
    """Bursts fade in and out over ``ramp_s`` instead of switching in one sample."""
    k = max(1, int(ramp_s * fs))
    if not mask.any():
        return mask.astype(np.float64)
    win = np.ones(k) / k
    return np.clip(np.convolve(mask.astype(np.float64), win, mode="same"), 0.0, 1.0)


@dataclass
class FrontEndInput:
    """What the front-ends see, per tick: source values at the true times and fault masks."""

    ecg: np.ndarray | None
    ppg: np.ndarray | None
    ppg_scale: tuple[float, float] = (0.0, 1.0)  # robust (low, high) of the source pleth
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def frontend_convert(cfg: DeviceConfig, inp: FrontEndInput, n: int, seed: int = 0) -> np.ndarray:
    """Analogue front-ends + ADCs: codes ``(n, n_channels)`` int64 for the configured channels.

    Applies, in this order: noise and motion artefacts to the analogue signals, lead-off and
    saturation, quantisation with clipping at the rails, sample-and-hold of slower channels,
    then ``flat`` (and source gaps) as a frozen front-end repeating the last code.

    Examples
    --------
    >>> cfg = DeviceConfig(channels=("ecg",), jitter_us=0.0, ecg_noise_uv=0.0)
    >>> codes = frontend_convert(cfg, FrontEndInput(ecg=np.array([0.0, 1.0, 9.0]), ppg=None), 3)
    >>> codes[:, 0].tolist()
    [0, 6554, 32767]
    """
    chans = adc_channels(cfg)
    masks = inp.masks
    zeros = np.zeros(n, dtype=bool)
    motion = _smooth_mask(masks.get("motion", zeros), cfg.fs)
    leadoff = masks.get("leadoff", zeros)
    saturate = masks.get("saturate", zeros)
    flat = masks.get("flat", zeros) | masks.get("source_gap", zeros)
    has_ecg = "ecg" in cfg.channels
    codes = np.zeros((n, len(chans)), dtype=np.int64)
    for j, ch in enumerate(chans):
        rng = fault_rng(seed, "noise", ch.name)
        if ch.name == "ecg":
            x = np.array(inp.ecg, dtype=np.float64, copy=True)
            x += cfg.ecg_offset_mv + rng.normal(0.0, cfg.ecg_noise_uv * 1e-3, n)
            if motion.any():
                mrng = fault_rng(seed, "motion", ch.name)
                wander = 0.8 * _bandlimited_noise(mrng, n, cfg.fs, 0.3, 3.0)
                emg = 0.15 * _bandlimited_noise(mrng, n, cfg.fs, 20.0, 120.0)
                x += motion * (wander + emg)
            x = np.where(np.isfinite(x), x, 0.0)
            c = ch.to_code(x)
            if leadoff.any():
                c[leadoff] = ch.code_max if cfg.leadoff_mode == "rail" else ch.code_mid
        else:
            fsc = float(ch.code_max)
            lo, hi = inp.ppg_scale
            u = (np.asarray(inp.ppg, dtype=np.float64) - lo) / (hi - lo if hi > lo else 1.0)
            u = np.where(np.isfinite(u), u, 0.5)
            perf = cfg.ppg_perfusion * (0.5 if ch.name == "red" else 1.0)
            dc = cfg.ppg_dc * (0.6 if ch.name == "red" else 1.0)
            sign = -1.0 if cfg.ppg_polarity == "raw" else 1.0
            x = fsc * (dc + cfg.ppg_ambient) + sign * fsc * dc * perf * (u - 0.5)
            x += rng.normal(0.0, cfg.ppg_noise * fsc, n)
            if motion.any():
                mrng = fault_rng(seed, "motion", ch.name)
                swing = 3.0 * fsc * dc * perf * _bandlimited_noise(mrng, n, cfg.fs, 0.2, 4.0)
                x += motion * swing
            if leadoff.any() and not has_ecg:
                # sensor off the skin: no reflected LED light, ambient only
                x[leadoff] = fsc * cfg.ppg_ambient + rng.normal(0.0, cfg.ppg_noise * fsc, int(leadoff.sum()))
            c = ch.to_code(x)
        if saturate.any():
            c[saturate] = ch.code_max
        if ch.hold > 1:
            c = c[(np.arange(n) // ch.hold) * ch.hold]
        codes[:, j] = c
    if flat.any():
        idx = np.where(flat, 0, np.arange(n))
        idx = np.maximum.accumulate(idx)
        codes = codes[idx]
    return codes
