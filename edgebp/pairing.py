"""Pair two lists of beat times one to one, nearest first, within a tolerance (numpy only).

Used by ``edgebp grade --match nearest`` and by the simulator scorer
(:mod:`edgebp.firmware_sim.compare`, which re-exports it as ``beats_pair``), so both pair
beats the same way.
"""

from __future__ import annotations

import numpy as np


def beat_times_pair(pred_t: np.ndarray, ref_t: np.ndarray, max_dt_s: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Pair two beat-time lists one to one, nearest first, within ``max_dt_s``.

    Every candidate pair (a predicted beat and one of the two reference beats either side of
    it, at most ``max_dt_s`` apart) is taken in order of increasing time difference; a beat
    already used on either side is not used again. Unpaired beats on either side are simply
    absent from the result (count them as ``len(pred_t) - len(i_pred)`` and
    ``len(ref_t) - len(i_ref)``).

    Parameters
    ----------
    pred_t, ref_t : array-like
        Beat times (s) on the same axis; any order; NaN times never pair.
    max_dt_s : float
        Largest time difference of a pair (s, inclusive).

    Returns
    -------
    (ndarray, ndarray)
        Index arrays ``(i_pred, i_ref)`` into ``pred_t`` and ``ref_t``, sorted by ``i_pred``.

    Examples
    --------
    >>> import numpy as np
    >>> beat_times_pair(np.array([1.02, 1.9, 5.0]), np.array([1.0, 2.0, 3.0]))
    (array([0, 1]), array([0, 1]))
    >>> beat_times_pair(np.array([2.05, 2.1]), np.array([2.0]))  # one to one: the nearer wins
    (array([0]), array([0]))
    """
    pred_t, ref_t = np.asarray(pred_t, float), np.asarray(ref_t, float)
    if not len(pred_t) or not len(ref_t):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(ref_t)
    rs = ref_t[order]
    cand = []
    for i, t in enumerate(pred_t):
        if not np.isfinite(t):
            continue
        k = np.searchsorted(rs, t)
        for j in (k - 1, k):
            if 0 <= j < len(rs) and abs(rs[j] - t) <= max_dt_s:
                cand.append((abs(rs[j] - t), i, int(order[j])))
    cand.sort()
    used_p, used_r, pairs = set(), set(), []
    for _, i, j in cand:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
            pairs.append((i, j))
    pairs.sort()
    a = np.asarray(pairs, np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]
