"""Offline resampling: polyphase, anti-aliased, with NaN gaps kept as gaps at the new rate.

The streaming counterpart (chunk-exact, explicit state) is
:mod:`edgebp.processing.stream_resample`; this module is for whole recordings.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from edgebp.record import Channel, Record

# The smallest denominator whose ratio is within RATIO_TOL of the request wins: 1e-6 is 3.6 ms
# of drift per hour. The polyphase filter has ~20 * max(up, down) taps but each output sample
# uses only ~20 * max(up, down) / up of them, so even 3409/6815 (mixedsignals' 249.89 Hz ECG
# to 125 Hz) costs little; MAX_DENOMINATOR bounds the filter's memory.
RATIO_TOL = 1e-6
MAX_DENOMINATOR = 100_000
_EPS = 1e-9


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)``: the simplest fraction within 1e-6 (relative) of ``fs_out / fs_in``.

    Built with :meth:`fractions.Fraction.limit_denominator` at denominators 10, 100, ...,
    100000; the last is used if none is close enough.

    Examples
    --------
    >>> resample_ratio(250, 125)
    (1, 2)
    >>> resample_ratio(360, 125)
    (25, 72)
    >>> resample_ratio(62.4725 * 4, 125)
    (3409, 6815)
    """
    target = float(fs_out) / float(fs_in)
    exact = Fraction(target)
    frac = exact
    limit = 10
    while limit <= MAX_DENOMINATOR:
        frac = exact.limit_denominator(limit)
        if frac != 0 and abs(float(frac) / target - 1.0) <= RATIO_TOL:
            break
        limit *= 10
    if frac == 0:
        frac = Fraction(1, MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


def _fs_check(fs: float, name: str) -> float:
    value = float(fs)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite rate in Hz, got {fs!r}")
    return value


def _gap_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indices of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def signal_resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample a signal with a polyphase anti-aliasing filter; NaN gaps stay NaN.

    The ratio ``fs_out / fs_in`` is approximated by a fraction (see :func:`resample_ratio`)
    and applied with :func:`scipy.signal.resample_poly` (Kaiser-windowed FIR) to the signal
    minus its least-squares line, which is added back: an offset such as ABP's neither droops
    at the ends nor ripples. NaN samples are
    bridged by linear interpolation for the filtering only; afterwards every output sample
    whose interval ``[k, k+1) / fs_out`` overlaps a gap ``[a, b) / fs_in`` is NaN again, so a
    gap keeps its time span and even a one-sample gap survives downsampling.

    Parameters
    ----------
    x : array_like
        1-D signal; NaN (or inf) marks missing samples.
    fs_in, fs_out : float
        Input and output rates in Hz.

    Returns
    -------
    numpy.ndarray
        float64, length ``round(len(x) * fs_out / fs_in)``.

    Raises
    ------
    ValueError
        A rate that is not positive and finite, or ``x`` not 1-D.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(1000) / 250.0
    >>> x = np.sin(2 * np.pi * 5 * t)
    >>> x[250:500] = np.nan                       # a gap from 1.0 s to 2.0 s
    >>> y = signal_resample(x, 250, 125)
    >>> len(y), bool(np.isnan(y[125:250]).all()), int(np.isnan(y).sum())
    (500, True, 125)
    """
    fs_in = _fs_check(fs_in, "fs_in")
    fs_out = _fs_check(fs_out, "fs_out")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal_resample takes a 1-D signal, got shape {x.shape}")
    n = x.size
    n_out = int(round(n * fs_out / fs_in))
    if n == 0 or n_out == 0:
        return np.zeros(0)
    if fs_in == fs_out:
        return x.copy()

    gaps = ~np.isfinite(x)  # an inf is no more a sample than a NaN: both become a gap
    if gaps.all():
        return np.full(n_out, np.nan)
    if gaps.any():
        idx = np.arange(n)
        filled = x.copy()
        # Bridging (not zeroing) keeps the filter from ringing at gap edges; ends hold the
        # nearest valid value.
        filled[gaps] = np.interp(idx[gaps], idx[~gaps], x[~gaps])
    else:
        filled = x

    up, down = resample_ratio(fs_in, fs_out)
    if n < 2:
        y = np.repeat(filled, n_out)
    else:
        # The polyphase branches differ slightly in DC gain, so a large offset (ABP ~100 mmHg)
        # would come out with a ripple when upsampling; filter only the detrended residual and
        # add the least-squares line back at the output sample positions.
        idx_in = np.arange(n, dtype=np.float64)
        slope, intercept = np.polyfit(idx_in, filled, 1)
        residual = filled - (slope * idx_in + intercept)
        from scipy.signal import resample_poly  # offline only: keeps scipy off the runtime's imports

        y = resample_poly(residual, up, down, padtype="line")
        y += slope * (np.arange(y.size) * (down / up)) + intercept
    if y.size >= n_out:
        y = y[:n_out]
    else:
        # Only when up/down differs from the exact ratio (by <~1e-6) on very long signals.
        y = np.pad(y, (0, n_out - y.size), mode="edge")

    if gaps.any():
        starts, ends = _gap_runs(gaps)
        ratio = fs_out / fs_in
        for a, b in zip(starts, ends):
            k0 = int(math.floor(a * ratio + _EPS))
            k1 = int(math.ceil(b * ratio - _EPS))
            y[k0:max(k1, k0 + 1)] = np.nan
    return y


def record_resample(record: Record, fs_out: float) -> Record:
    """A new :class:`Record` with every channel resampled to ``fs_out`` (gaps kept as NaN).

    Names, labels, leads, units, ids and source are kept; the input record is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.record import Channel, Record
    >>> rec = Record("r", [Channel.from_label("II", np.zeros(500), fs=500.0, units="mV"),
    ...                    Channel.from_label("PLETH", np.zeros(125), fs=125.0)])
    >>> out = record_resample(rec, 250.0)
    >>> [(c.name, c.fs, len(c.signal)) for c in out.channels]
    [('ecg', 250.0, 250), ('ppg', 250.0, 250)]
    """
    fs_out = _fs_check(fs_out, "fs_out")
    channels = [
        Channel(
            name=c.name,
            signal=signal_resample(c.signal, c.fs, fs_out),
            fs=fs_out,
            units=c.units,
            label=c.label,
            lead=c.lead,
        )
        for c in record.channels
    ]
    return Record(record.record_id, channels, subject_id=record.subject_id, source=record.source)
