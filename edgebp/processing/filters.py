"""Butterworth design and a streaming biquad cascade: numba kernels with explicit state.

No scipy here (the runtime must not import it: ~525 modules and ~75 MB): the design
(:func:`butter_sos`, a port of ``scipy.signal.butter(..., output="sos")``), the warm-start
state (:func:`sosfilt_zi`) and the group delay (:func:`group_delay_at`) are plain numpy with
the same operations in the same order as scipy 1.17, so they give the same float64 values;
``tests/test_startup.py`` checks them against scipy on a grid of designs.

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

logger = logging.getLogger(__name__)


# every kernel of edgebp.processing is declared with this njit: numba's JIT, or the same
# kernel compiled ahead of time where the build made it (edgebp.processing.kernels)
from edgebp.processing.kernels import kernel as njit  # noqa: E402


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
    sos = butter_sos(int(order), wn, kind, fs)
    return np.ascontiguousarray(sos, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Butterworth design without scipy: scipy.signal.iirfilter(ftype="butter", output="sos") for
# a digital filter, step by step (buttap, lp2lp/lp2hp/lp2bp_zpk, bilinear_zpk, zpk2sos with
# pairing="nearest"), same numpy operations in the same order.
# --------------------------------------------------------------------------------------------


def butter_sos(order: int, wn: float | list[float], kind: str, fs: float) -> np.ndarray:
    """Digital Butterworth filter as second-order sections, like
    ``scipy.signal.butter(order, wn, btype=kind, fs=fs, output="sos")``, in numpy only.

    ``wn`` is the cutoff (``"lowpass"``/``"highpass"``) or ``[low, high]`` (``"bandpass"``)
    in Hz; the caller validates the ranges (see :func:`filter_design`).

    Examples
    --------
    >>> butter_sos(2, 40.0, "lowpass", 125.0).shape
    (1, 6)
    >>> butter_sos(2, [0.5, 8.0], "bandpass", 125.0).shape
    (2, 6)
    """
    n = int(order)
    wn_arr = np.asarray(wn, dtype=np.float64) / (float(fs) / 2)
    # analog low-pass prototype (buttap); the middle value of m is 0: an exactly real pole
    z = np.asarray([], dtype=np.float64)
    m = np.arange(-n + 1, n, 2, dtype=np.float64)
    p = -np.exp(1j * np.pi * m / (2 * n))
    k = 1.0
    # pre-warp for the bilinear transform at fs = 2 (normalised frequencies)
    fs2 = 2.0
    warped = 2 * fs2 * np.tan(np.pi * wn_arr / fs2)
    if kind == "lowpass":
        wo = float(warped)
        degree = p.shape[0] - z.shape[0]
        z, p, k = wo * z, wo * p, k * wo**degree
    elif kind == "highpass":
        wo = float(warped)
        degree = p.shape[0] - z.shape[0]
        z_hp = np.concatenate((wo / z, np.zeros(degree)))
        k = k * np.real(np.prod(-z) / np.prod(-p))
        z, p = z_hp, wo / p
    elif kind == "bandpass":
        bw = float(warped[1] - warped[0])
        wo = float(np.sqrt(warped[0] * warped[1]))
        degree = p.shape[0] - z.shape[0]
        z_lp = (z.astype(np.complex128) * bw / 2).astype(np.complex128)
        p_lp = (p * bw / 2).astype(np.complex128)
        z = np.concatenate((np.concatenate((z_lp + np.sqrt(z_lp**2 - wo**2), z_lp - np.sqrt(z_lp**2 - wo**2))),
                            np.zeros(degree)))
        p = np.concatenate((p_lp + np.sqrt(p_lp**2 - wo**2), p_lp - np.sqrt(p_lp**2 - wo**2)))
        k = k * bw**degree
    else:
        raise ValueError(f"filter kind {kind!r} is not valid; choose one of: {', '.join(FILTER_KINDS)}")
    # bilinear_zpk at fs = 2
    degree = p.shape[0] - z.shape[0]
    f2 = 2.0 * fs2
    z_z = np.concatenate(((f2 + z) / (f2 - z), -np.ones(degree)))
    p_z = (f2 + p) / (f2 - p)
    k_z = k * np.real(np.prod(f2 - z) / np.prod(f2 - p))
    return _zpk2sos_nearest(z_z, p_z, k_z)


def _poly(roots: np.ndarray) -> np.ndarray:
    """``scipy.signal._polyutils.poly`` (numpy's ``np.poly`` for 1-D roots)."""
    roots = np.atleast_1d(np.asarray(roots))
    if roots.shape[0] == 0:
        return np.asarray(1.0, dtype=np.real(roots).dtype)
    a = np.ones((1,), dtype=roots.dtype)
    one = np.ones_like(roots[0])
    for zero in roots:
        a = np.convolve(a, np.stack((one, -zero)), mode="full")
    if np.iscomplexobj(a):
        r = np.asarray(roots, dtype=np.complex128)
        if np.all(np.sort(np.imag(r)) == np.sort(np.imag(np.conj(r)))):
            a = np.array(np.real(a), copy=True)
    return a


def _single_zpksos(z: list, p: list) -> np.ndarray:
    """One section from up to two zeros and poles, gain 1 (scipy's ``_single_zpksos``)."""
    sos = np.zeros(6)
    z_arr, p_arr = np.asarray(z), np.asarray(p)
    k = np.asarray(1, dtype=np.result_type(np.real(z_arr), np.real(p_arr), 1))
    if np.issubdtype(k.dtype, np.integer):
        k = k.astype(np.float64)
    b = np.multiply(np.atleast_1d(k), _poly(z_arr))
    a = np.atleast_1d(_poly(p_arr))
    sos[3 - len(b):3] = b
    sos[6 - len(a):6] = a
    return sos


def _nearest_idx(fro: np.ndarray, to: complex, which: str) -> int:
    order = np.argsort(np.abs(fro - to))
    if which == "any":
        return order[0]
    mask = np.isreal(fro[order])
    if which == "complex":
        mask = ~mask
    return order[np.nonzero(mask)[0][0]]


def _cplxreal(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complex roots (one of each conjugate pair) and real roots, as scipy's ``_cplxreal``."""
    z = np.atleast_1d(z)
    if z.size == 0:
        return z, z
    tol = 100 * np.finfo((1.0 * z).dtype).eps
    z = z[np.lexsort((abs(z.imag), z.real))]
    real_indices = abs(z.imag) <= tol * abs(z)
    zr = z[real_indices].real
    if len(zr) == len(z):
        return np.array([]), zr
    z = z[~real_indices]
    zp = z[z.imag > 0]
    zn = z[z.imag < 0]
    if len(zp) != len(zn):
        raise ValueError("Array contains complex value with no matching conjugate.")
    same_real = np.diff(zp.real) <= tol * abs(zp[:-1])
    diffs = np.diff(np.concatenate(([0], same_real, [0])))
    run_starts = np.nonzero(diffs > 0)[0]
    run_stops = np.nonzero(diffs < 0)[0]
    for i in range(len(run_starts)):
        start, stop = run_starts[i], run_stops[i] + 1
        for chunk in (zp[start:stop], zn[start:stop]):
            chunk[...] = chunk[np.lexsort([abs(chunk.imag)])]
    if any(abs(zp - zn.conj()) > tol * abs(zn)):
        raise ValueError("Array contains complex value with no matching conjugate.")
    return (zp + zn.conj()) / 2, zr


def _zpk2sos_nearest(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """``scipy.signal.zpk2sos(z, p, k, pairing="nearest")`` for a digital filter."""
    z, p = np.asarray(z), np.asarray(p)
    k = np.asarray(k)
    if len(z) == len(p) == 0:
        return np.asarray([[k, 0.0, 0.0, 1.0, 0.0, 0.0]])
    p = np.concatenate((p, np.zeros(max(len(z) - len(p), 0))))
    z = np.concatenate((z, np.zeros(max(len(p) - len(z), 0))))
    n_sections = (max(len(p), len(z)) + 1) // 2
    if len(p) % 2 == 1:
        p = np.concatenate((p, [0.0]))
        z = np.concatenate((z, [0.0]))
    z = np.concatenate(_cplxreal(z))
    p = np.concatenate(_cplxreal(p))
    if not np.isreal(k):
        raise ValueError("k must be real")
    k = k.real

    def idx_worst(q: np.ndarray) -> int:  # digital: the closest to the unit circle
        return np.argmin(np.abs(1 - np.abs(q)))

    sos = np.zeros((n_sections, 6))
    for si in range(n_sections - 1, -1, -1):
        p1_idx = idx_worst(p)
        p1 = p[p1_idx]
        p = np.delete(p, p1_idx)
        if np.isreal(p1) and np.isreal(p).sum() == 0:
            z1_idx = _nearest_idx(z, p1, "real")
            z1 = z[z1_idx]
            z = np.delete(z, z1_idx)
            sos[si] = _single_zpksos([z1, 0], [p1, 0])
        elif len(p) + 1 == len(z) and not np.isreal(p1) and np.isreal(p).sum() == 1 and np.isreal(z).sum() == 1:
            z1_idx = _nearest_idx(z, p1, "complex")
            z1 = z[z1_idx]
            z = np.delete(z, z1_idx)
            sos[si] = _single_zpksos([z1, z1.conj()], [p1, p1.conj()])
        else:
            if np.isreal(p1):
                prealidx = np.flatnonzero(np.isreal(p))
                p2_idx = prealidx[idx_worst(p[prealidx])]
                p2 = p[p2_idx]
                p = np.delete(p, p2_idx)
            else:
                p2 = p1.conj()
            if len(z) > 0:
                z1_idx = _nearest_idx(z, p1, "any")
                z1 = z[z1_idx]
                z = np.delete(z, z1_idx)
                if not np.isreal(z1):
                    sos[si] = _single_zpksos([z1, z1.conj()], [p1, p2])
                elif len(z) > 0:
                    z2_idx = _nearest_idx(z, p1, "real")
                    z2 = z[z2_idx]
                    z = np.delete(z, z2_idx)
                    sos[si] = _single_zpksos([z1, z2], [p1, p2])
                else:
                    sos[si] = _single_zpksos([z1], [p1, p2])
            else:
                sos[si] = _single_zpksos([], [p1, p2])
    sos[0][:3] *= k
    return sos


def _lfilter_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``scipy.signal.lfilter_zi`` (steady state of a unit step) in numpy."""
    b = np.atleast_1d(np.asarray(b))
    a = np.atleast_1d(np.asarray(a))
    while a.shape[0] > 1 and a[0] == 0.0:
        a = a[1:]
    if a.size < 1:
        raise ValueError("There must be at least one nonzero `a` coefficient.")
    if a[0] != 1.0:
        b = b / a[0]
        a = a / a[0]
    n = max(a.shape[0], b.shape[0])
    if a.shape[0] < n:
        a = np.concatenate((a, np.zeros(n - a.shape[0], dtype=a.dtype)))
    elif b.shape[0] < n:
        b = np.concatenate((b, np.zeros(n - b.shape[0], dtype=b.dtype)))
    dt = np.result_type(a, b)
    # scipy.linalg.companion(a): first row -a[1:]/a[0], ones on the first sub-diagonal
    companion = np.zeros((n - 1, n - 1), dtype=(-a[1:] / (1.0 * a[0:1])).dtype)
    companion[0, :] = -a[1:] / (1.0 * a[0:1])
    companion[np.arange(1, n - 1), np.arange(0, n - 2)] = 1
    i_minus_a = np.asarray(np.eye(n - 1) - companion.T, dtype=dt)
    rhs = b[1:] - a[1:] * b[0]
    return np.linalg.solve(i_minus_a, rhs)


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt_zi(sos)``: the state of a unit step's steady state, in numpy.

    Examples
    --------
    >>> import numpy as np
    >>> sos = filter_design(125.0, "lowpass", high=8.0)
    >>> y, _ = sosfilt_block(sos, np.ones(5), sosfilt_zi(sos))
    >>> bool(np.allclose(y, 1.0))
    True
    """
    sos = np.asarray(sos)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError("sos must be shape (n_sections, 6)")
    if np.issubdtype(sos.dtype, np.integer) or sos.dtype == np.bool_:
        sos = sos.astype(np.float64)
    zi = np.empty((sos.shape[0], 2), dtype=sos.dtype)
    scale = 1.0
    for section in range(sos.shape[0]):
        b = sos[section, :3]
        a = sos[section, 3:]
        zi[section, ...] = scale * _lfilter_zi(b, a)
        scale *= np.sum(b) / np.sum(a)
    return zi


def group_delay_at(b: np.ndarray, a: np.ndarray, freq: float, fs: float) -> float:
    """Group delay (samples) of ``b/a`` at ``freq`` Hz: ``scipy.signal.group_delay`` at one
    frequency, in numpy (the same polynomial evaluation; a singular point gives 0).

    Examples
    --------
    >>> group_delay_at([0.25, 0.5, 0.25], [1.0, 0.0, 0.0], 1.0, 125.0)
    1.0
    """
    b, a = np.atleast_1d(np.asarray(b)), np.atleast_1d(np.asarray(a))
    w = 2 * np.pi * np.atleast_1d(np.asarray(float(freq))) / float(fs)
    c = np.convolve(b, np.conjugate(a[::-1]))
    cr = c * np.arange(c.size)
    z = np.exp(-1j * w)
    num = np.polyval(cr[::-1], z)
    den = np.polyval(c[::-1], z)
    with np.errstate(divide="ignore", invalid="ignore"):
        gd = np.real(num / den) - a.size + 1
    gd[~np.isfinite(gd)] = 0
    return float(gd[0])


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
        total += group_delay_at(section[:3], section[3:], freq, fs)
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
            self.zi_step = np.ascontiguousarray(sosfilt_zi(self.sos), dtype=np.float64)
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
