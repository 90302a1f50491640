"""One JSON encoder fallback for every report edgebp writes (numpy scalars and arrays, paths),
and strict JSON text (NaN/inf as null) for summaries and JSON-lines outputs."""

from __future__ import annotations

import json
import math
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


def json_clean(o):
    """``o`` with every non-finite float (NaN, inf; Python or numpy) replaced by ``None``,
    numpy types as Python ones, tuples as lists: what strict JSON can hold.

    Examples
    --------
    >>> json_clean({"a": float("nan"), "b": [1.5, np.float32("inf")], "c": (np.int64(2),)})
    {'a': None, 'b': [1.5, None], 'c': [2]}
    """
    if isinstance(o, dict):
        return {str(k) if not isinstance(k, str) else k: json_clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_clean(o.tolist())
    if isinstance(o, (float, np.floating)):
        x = float(o)
        return x if math.isfinite(x) else None
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def json_text(o, **kwargs) -> str:
    """Strict JSON text of ``o``: NaN and inf written as ``null`` (never the bare ``NaN`` that
    JSON readers reject), numpy types and paths converted; ``allow_nan=False`` guards it.

    Examples
    --------
    >>> json_text({"x": float("nan"), "p": Path("a/b"), "n": np.int32(3)})
    '{"x": null, "p": "a/b", "n": 3}'
    """
    kwargs.setdefault("default", json_default)
    return json.dumps(json_clean(o), allow_nan=False, **kwargs)


def json_emit(o, path: str | None = None, indent: int = 1) -> None:
    """Strict JSON of ``o`` (:func:`json_text`) to the file ``path``, or to standard output when
    ``path`` is None: what the benchmarks' ``python -m`` entry points print or write."""
    text = json_text(o, indent=indent)
    if path:
        with open(path, "w") as f:
            f.write(text)
    else:
        print(text)
