"""Subject-wise splits: by record, with likely same-patient records kept together.

The challenge-2015 records do not name patients, and up to three alarms of one patient may
appear; consecutively numbered records (across alarm types: ``b495l`` and ``t496s``) whose
median blood pressure is nearly the same very likely share a patient. Such records form one
group, and a group is never split across train/validation/test.
"""

from __future__ import annotations

import re

import numpy as np

_NUM = re.compile(r"(\d+)")


def record_number(record_id: str) -> int | None:
    """The number inside a record name (``"b495l"`` -> 495), or None."""
    m = _NUM.search(record_id)
    return int(m.group(1)) if m else None


def records_group(record_ids: list[str], median_map: list[float] | None = None, max_gap: int = 1, max_map_diff: float = 5.0) -> list[str]:
    """Group id per record: consecutive numbers with near-equal median MAP share a group.

    Parameters
    ----------
    record_ids : list of str
    median_map : list of float, optional
        Median MAP per record (mmHg); without it, consecutive numbers alone group records.
    max_gap : int
        Largest difference of record numbers still called consecutive.
    max_map_diff : float
        Largest difference of median MAP (mmHg) for a likely same patient.

    Examples
    --------
    >>> records_group(["b495l", "t496s", "a600s"], [90.0, 91.5, 70.0])
    ['b495l', 'b495l', 'a600s']
    """
    n = len(record_ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    nums = [record_number(r) for r in record_ids]
    order = sorted((k for k in range(n) if nums[k] is not None), key=lambda k: nums[k])
    for a, b in zip(order, order[1:]):
        if nums[b] - nums[a] <= max_gap:
            ok = True
            if median_map is not None:
                ma, mb = median_map[a], median_map[b]
                ok = bool(np.isfinite(ma) and np.isfinite(mb) and abs(ma - mb) <= max_map_diff)
            if ok:
                parent[find(b)] = find(a)
    first = {}
    for k in range(n):
        first.setdefault(find(k), record_ids[k])
    return [first[find(k)] for k in range(n)]


def split_groups(groups: list[str], val_frac: float, test_frac: float, seed: int) -> dict[str, list[int]]:
    """Assign whole groups to train/val/test, deterministically from ``seed``.

    Returns indices into ``groups`` per split; each split has at least one group when there
    are three or more groups.
    """
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    perm = [uniq[i] for i in rng.permutation(len(uniq))]
    n = len(uniq)
    n_test = max(1, int(round(test_frac * n))) if n >= 3 else 0
    n_val = max(1, int(round(val_frac * n))) if n >= 3 else 0
    test_g = set(perm[:n_test])
    val_g = set(perm[n_test : n_test + n_val])
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, g in enumerate(groups):
        out["test" if g in test_g else "val" if g in val_g else "train"].append(i)
    return out
