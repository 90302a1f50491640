"""Causal central difference for streams (the gradient channel of INN-PAR), explicit state.

``g[n] = (x[n] - x[n-2]) / 2`` is the central difference at ``n - 1``; it is delayed by one
sample. So that both channels describe the same instant, the signal channel is delayed by
one sample too: the output is ``(x[n-1], g[n])``, and the whole stage has a delay of exactly
one sample. Warm start: before the first sample the history is the first sample itself, so
the first gradient is 0 and there is no start-up step. NaN propagates: a gap of ``k`` samples
gives ``k`` NaN samples in the signal channel and ``k + 2`` in the gradient channel (the
difference reaches two samples back), then both recover.

Examples
--------
>>> import numpy as np
>>> g = StreamGradient()
>>> y, state = g.process(np.array([0.0, 1.0, 2.0, 3.0, 5.0]), g.init_state())
>>> y
array([[0. , 0. , 1. , 2. , 3. ],
       [0. , 0.5, 1. , 1. , 1.5]])
"""

from __future__ import annotations

import numpy as np
from edgebp.processing.filters import njit  # numba's njit, or the kernel compiled ahead of time

GRADIENT_DELAY = 1


@njit(cache=True)
def _gradient_kernel(x, st, y):  # pragma: no cover - compiled
    # st = [x[n-1], x[n-2], started]
    z1 = st[0]
    z2 = st[1]
    started = st[2]
    for n in range(x.shape[0]):
        v = x[n]
        if started == 0.0:
            z1 = v
            z2 = v
            started = 1.0
        y[0, n] = z1
        y[1, n] = 0.5 * (v - z2)
        z2 = z1
        z1 = v
    st[0] = z1
    st[1] = z2
    st[2] = started


class StreamGradient:
    """Signal delayed by one sample plus its central difference (see the module notes)."""

    delay = GRADIENT_DELAY

    def init_state(self) -> np.ndarray:
        """``[x[n-1], x[n-2], started]`` before any sample."""
        return np.zeros(3)

    def process(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(y, new_state)`` with ``y`` of shape ``(2, n)``: delayed signal, gradient."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        new = np.array(state, dtype=np.float64, copy=True)
        y = np.empty((2, x.shape[0]))
        _gradient_kernel(x, new, y)
        return y, new
