"""Butterworth design and a streaming biquad cascade: numba kernels with explicit state.

Two kernels share one recursion (the one of :func:`scipy.signal.sosfilt`, same operation order,
so results are bit-identical):

- :func:`sosfilt_block` is the plain filter, ``(y, zi_out) = sosfilt_block(sos, x, zi)``.
- :class:`StreamFilter` is the filter the preprocessing chain uses. It adds two things a
  device stream needs:

  * **gaps**: a non-finite input (NaN, +-inf) is replaced *for the filter* by the last valid
    input value and the output for that sample is NaN. The recursion is never poisoned, the
    gap stays visible downstream, and the output recovers right after the gap (with the
    filter's own settling after a step from the held value to the new value).
  * **warm start**: on the first valid sample the state is set to the steady state of a step
    of that height (``scipy.signal.sosfilt_zi(sos) * x0``), so a DC offset (a PPG in ADC
    counts) does not ring through the high-pass for seconds.

Feeding a signal in any chunking gives bit-identical output: the state carries everything.

Examples
--------
>>> import numpy as np
>>> from edgebp.processing.filters import filter_design, sosfilt_block
>>> sos = filter_design(125.0, "bandpass", low=0.5, high=40.0)
>>> x = np.sin(np.arange(500) / 10.0)
>>> y1, zi = sosfilt_block(sos, x[:200], np.zeros((sos.shape[0], 2)))
>>> y2, _ = sosfilt_block(sos, x[200:], zi)
>>> y, _ = sosfilt_block(sos, x, np.zeros((sos.shape[0], 2)))
>>> bool(np.array_equal(np.concatenate([y1, y2]), y))
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.signal
from numba import njit

logger = logging.getLogger(__name__)

FILTER_KINDS = ("bandpass", "highpass", "lowpass")


def filter_design(
    fs: float,
    kind: str = "bandpass",
    low: float | None = None,
    high: float | None = None,
    order: int = 2,
) -> np.ndarray:
    """Design a Butterworth filter as second-order sections.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz of the signal the filter will run on.
    kind : str
        ``"bandpass"`` (needs ``low`` and ``high``), ``"highpass"`` (needs ``low``, the cutoff)
        or ``"lowpass"`` (needs ``high``, the cutoff).
    low, high : float or None
        Lower and upper edges in Hz.
    order : int
        Butterworth order (a band-pass of order 2 has 4 poles).

    Returns
    -------
    np.ndarray
        ``sos`` of shape ``(n_sections, 6)``, float64, as from ``scipy.signal.butter(output="sos")``.

    Examples
    --------
    >>> filter_design(125.0, "highpass", low=0.5).shape
    (1, 6)
    >>> filter_design(125.0, "notch", low=50.0)
    Traceback (most recent call last):
    ...
    ValueError: filter kind 'notch' is not valid; choose one of: bandpass, highpass, lowpass
    """
    if kind not in FILTER_KINDS:
        raise ValueError(f"filter kind {kind!r} is not valid; choose one of: {', '.join(FILTER_KINDS)}")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"filter_design: sampling rate fs={fs!r} must be a positive number of Hz")
    if int(order) != order or order < 1:
        raise ValueError(f"filter_design: order={order!r} must be a positive integer")
    nyq = fs / 2.0

    def _edge(name: str, value: float | None) -> float:
        if value is None:
            raise ValueError(f"filter_design: kind={kind!r} needs {name}= (Hz)")
        value = float(value)
        if not (0.0 < value < nyq):
            raise ValueError(f"filter_design: {name}={value!r} Hz must lie in (0, fs/2={nyq!r}) Hz")
        return value

    if kind == "bandpass":
        lo, hi = _edge("low", low), _edge("high", high)
        if lo >= hi:
            raise ValueError(f"filter_design: low={lo!r} Hz must be below high={hi!r} Hz")
        wn: float | list[float] = [lo, hi]
    elif kind == "highpass":
        if high is not None:
            raise ValueError("filter_design: kind='highpass' takes its cutoff as low=, not high=")
        wn = _edge("low", low)
    else:
        if low is not None:
            raise ValueError("filter_design: kind='lowpass' takes its cutoff as high=, not low=")
        wn = _edge("high", high)
    sos = scipy.signal.butter(int(order), wn, btype=kind, fs=fs, output="sos")
    return np.ascontiguousarray(sos, dtype=np.float64)


def filter_group_delay(sos: np.ndarray, fs: float, freq: float = 1.0) -> float:
    """Group delay of an SOS cascade at ``freq`` Hz, in samples (sum over the sections).

    Examples
    --------
    >>> sos = filter_design(125.0, "lowpass", high=40.0)
    >>> 0.0 < filter_group_delay(sos, 125.0, 1.0) < 2.0
    True
    """
    total = 0.0
    for section in np.atleast_2d(sos):
        _, gd = scipy.signal.group_delay((section[:3], section[3:]), w=[float(freq)], fs=float(fs))
        total += float(gd[0])
    return total


def _check_sos(sos: np.ndarray) -> np.ndarray:
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.all(sos[:, 3] == 1.0):
        raise ValueError("sos[:, 3] (a0 of every section) must be 1, as scipy.signal.sosfilt requires")
    return sos


@njit(cache=True)
def _sosfilt_kernel(sos, x, zi, y):  # pragma: no cover - compiled
    # Same recursion and operation order as scipy's _sosfilt: bit-identical results.
    n_sec = sos.shape[0]
    for n in range(x.shape[0]):
        x_n = x[n]
        for s in range(n_sec):
            x_c = sos[s, 0] * x_n + zi[s, 0]
            zi[s, 0] = sos[s, 1] * x_n - sos[s, 4] * x_c + zi[s, 1]
            zi[s, 1] = sos[s, 2] * x_n - sos[s, 5] * x_c
            x_n = x_c
        y[n] = x_n


@njit(cache=True)
def _sosfilt_hold_kernel(sos, zi_step, x, zi, hold, y):  # pragma: no cover - compiled
    # hold[0]: last valid input; hold[1]: 1.0 once a valid input was seen.
    n_sec = sos.shape[0]
    for n in range(x.shape[0]):
        x_n = x[n]
        gap = not np.isfinite(x_n)
        if gap:
            if hold[1] == 0.0:
                # nothing valid yet: nothing to hold, the state stays at rest
                y[n] = np.nan
                continue
            x_n = hold[0]
        else:
            if hold[1] == 0.0:
                for s in range(n_sec):
                    zi[s, 0] = zi_step[s, 0] * x_n
                    zi[s, 1] = zi_step[s, 1] * x_n
                hold[1] = 1.0
            hold[0] = x_n
        for s in range(n_sec):
            x_c = sos[s, 0] * x_n + zi[s, 0]
            zi[s, 0] = sos[s, 1] * x_n - sos[s, 4] * x_c + zi[s, 1]
            zi[s, 1] = sos[s, 2] * x_n - sos[s, 5] * x_c
            x_n = x_c
        y[n] = np.nan if gap else x_n


def sosfilt_block(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filter one block through an SOS cascade with explicit state.

    Bit-identical to ``scipy.signal.sosfilt(sos, x, zi=zi)`` (output and final state), for any
    split of ``x`` into blocks. NaN propagates exactly as in scipy (it poisons the state);
    use :class:`StreamFilter` for signals with gaps.

    Parameters
    ----------
    sos : np.ndarray
        ``(n_sections, 6)`` second-order sections.
    x : np.ndarray
        1-D block (converted to float64).
    zi : np.ndarray
        ``(n_sections, 2)`` state; not modified.

    Returns
    -------
    tuple
        ``(y, zi_out)``: filtered block (float64) and the state after it.

    Examples
    --------
    >>> import numpy as np, scipy.signal
    >>> sos = filter_design(250.0, "lowpass", high=30.0, order=4)
    >>> x = np.random.default_rng(0).normal(size=300)
    >>> zi = scipy.signal.sosfilt_zi(sos)
    >>> y, zf = sosfilt_block(sos, x, zi)
    >>> y_ref, zf_ref = scipy.signal.sosfilt(sos, x, zi=zi)
    >>> bool(np.array_equal(y, y_ref) and np.array_equal(zf, zf_ref))
    True
    """
    sos = _check_sos(sos)
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"sosfilt_block: x must be 1-D, got shape {x.shape}")
    zi_out = np.array(zi, dtype=np.float64, order="C", copy=True)
    if zi_out.shape != (sos.shape[0], 2):
        raise ValueError(f"sosfilt_block: zi must have shape ({sos.shape[0]}, 2), got {zi_out.shape}")
    y = np.empty_like(x)
    _sosfilt_kernel(sos, x, zi_out, y)
    return y, zi_out


@dataclass
class FilterState:
    """State of a :class:`StreamFilter`: biquad memories and the gap hold.

    ``zi`` is ``(n_sections, 2)``; ``hold`` is ``[last valid input, started (0/1)]``.
    """

    zi: np.ndarray
    hold: np.ndarray

    def copy(self) -> "FilterState":
        return FilterState(self.zi.copy(), self.hold.copy())


class StreamFilter:
    """Gap-tolerant, warm-starting SOS filter for streams (see the module notes).

    Parameters
    ----------
    sos : np.ndarray
        ``(n_sections, 6)`` from :func:`filter_design`.
    warm_start : bool
        Start from the steady state of the first valid sample (default) instead of rest.

    Examples
    --------
    >>> import numpy as np
    >>> f = StreamFilter(filter_design(125.0, "highpass", low=0.5))
    >>> x = np.r_[np.ones(5), np.nan, np.ones(5)] + 1000.0
    >>> y, state = f.process(x, f.init_state())
    >>> bool(np.isnan(y[5])), bool(np.all(np.abs(y[~np.isnan(y)]) < 1e-9))
    (True, True)
    """

    def __init__(self, sos: np.ndarray, warm_start: bool = True) -> None:
        self.sos = _check_sos(sos)
        if warm_start:
            self.zi_step = np.ascontiguousarray(scipy.signal.sosfilt_zi(self.sos), dtype=np.float64)
        else:
            self.zi_step = np.zeros((self.sos.shape[0], 2))

    def init_state(self) -> FilterState:
        """A state at rest, waiting for the first valid sample."""
        return FilterState(np.zeros((self.sos.shape[0], 2)), np.zeros(2))

    def process(self, x: np.ndarray, state: FilterState) -> tuple[np.ndarray, FilterState]:
        """Filter one block; returns ``(y, new_state)`` and leaves ``state`` untouched."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        new = state.copy()
        y = np.empty_like(x)
        _sosfilt_hold_kernel(self.sos, self.zi_step, x, new.zi, new.hold, y)
        return y, new

    def group_delay(self, fs: float, freq: float = 1.0) -> float:
        """Group delay at ``freq`` Hz in samples (an approximation of an IIR filter's delay)."""
        return filter_group_delay(self.sos, fs, freq)
