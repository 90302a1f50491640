"""Backend-agnostic offline inference over whole records (no torch).

The same windowing serves ``edgebp evaluate`` (offline) and the streaming runtime: a window
model is run every ``hop`` samples on the newest ``window`` samples and the newest ``hop``
outputs are kept. ``hop=1`` is the seeds' point-wise paradigm (one window per output sample).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(1, 500))
>>> y = waveform_predict_windows(lambda b: b[:, :1, :] * 2.0, x, window=100, hop=50)
>>> bool(np.allclose(y[100:], 2 * x[0, 100:]))
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], np.ndarray]


def waveform_predict_windows(
    run_fn: RunFn, X: np.ndarray, window: int, hop: int, batch: int = 256
) -> np.ndarray:
    """Point-wise prediction by sliding windows, keeping the newest ``hop`` outputs of each.

    Parameters
    ----------
    run_fn : callable
        Maps a float32 batch ``(B, C, window)`` to ``(B, 1, window)`` (normalised units).
    X : ndarray
        ``(C, n)`` preprocessed input; NaN marks a gap.
    window, hop : int
        Window length and hop in samples (``1 <= hop <= window``).

    Returns
    -------
    ndarray
        ``(n,)`` float64; NaN where no full gap-free window ended (the first ``window - hop``
        samples, and every output whose window touched a gap).
    """
    if not 1 <= hop <= window:
        raise ValueError(f"hop must be within 1..window ({window}), got {hop}")
    C, n = X.shape
    out = np.full(n, np.nan)
    if n < window:
        return out
    # window k ends at sample e_k = window - 1 + k*hop and emits samples e_k-hop+1 .. e_k
    ends = np.arange(window - 1, n, hop)
    finite = np.isfinite(X).all(axis=0)
    bad_cum = np.concatenate([[0], np.cumsum(~finite)])
    for start in range(0, len(ends), batch):
        e = ends[start : start + batch]
        ok = (bad_cum[e + 1] - bad_cum[e + 1 - window]) == 0
        if not ok.any():
            continue
        e_ok = e[ok]
        idx = e_ok[:, None] - window + 1 + np.arange(window)[None, :]
        xb = np.ascontiguousarray(X[:, idx].transpose(1, 0, 2), dtype=np.float32)
        yb = np.asarray(run_fn(xb), dtype=np.float64).reshape(len(e_ok), -1)
        keep = yb[:, window - hop :]
        tgt = e_ok[:, None] - hop + 1 + np.arange(hop)[None, :]
        out[tgt.ravel()] = keep.ravel()
    return out


def waveform_predict_causal(run_fn: RunFn, X: np.ndarray, receptive_field: int) -> np.ndarray:
    """Point-wise prediction by one causal pass over the whole record (streamable models).

    Gaps (NaN) are fed as zeros so the causal state stays finite, and every output whose
    receptive field touched a gap is NaN: no value is claimed from invented input.
    """
    C, n = X.shape
    finite = np.isfinite(X).all(axis=0)
    x = np.where(finite[None, :], X, 0.0).astype(np.float32)[None]
    y = np.asarray(run_fn(x), dtype=np.float64).reshape(-1)[:n]
    bad_cum = np.concatenate([[0], np.cumsum(~finite)])
    lo = np.maximum(np.arange(n) - receptive_field + 1, 0)
    touched = (bad_cum[np.arange(n) + 1] - bad_cum[lo]) > 0
    y[touched] = np.nan
    y[: max(receptive_field - 1, 0)] = np.nan
    return y
