"""One JSON encoder fallback for every report edgebp writes (numpy scalars and arrays, paths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def json_default(o):
    """``json.dumps(obj, default=json_default)``: numpy types to Python, paths to strings.

    Examples
    --------
    >>> import json
    >>> json.dumps({"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2)}, default=json_default)
    '{"n": 3, "x": 0.5, "a": [0, 1]}'
    """
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
