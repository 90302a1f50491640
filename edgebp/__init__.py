"""edgebp: cuffless, continuous blood-pressure models from the training GPU to the wearable.

The Python API (:mod:`edgebp.api`) is reached from here and loaded on first use (PEP 562), so
``import edgebp`` imports neither numpy nor the runtime, ONNX Runtime, numba or torch:

>>> import edgebp
>>> [n for n in ('read_record', 'load_bundle', 'stream', 'grade') if n in edgebp.__all__]
['read_record', 'load_bundle', 'stream', 'grade']
>>> model = edgebp.load_bundle("default")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it; the only registry of the lazy exports
_LAZY = {
    "read_record": "edgebp.api",
    "load_bundle": "edgebp.api",
    "stream": "edgebp.api",
    "grade": "edgebp.api",
    "grade_table": "edgebp.api",
    "Bundle": "edgebp.api",
    "Prediction": "edgebp.api",
    "BlockStream": "edgebp.api",
    "Record": "edgebp.record",
    "Channel": "edgebp.record",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs only; never executed
    from edgebp.api import BlockStream, Bundle, Prediction, grade, grade_table, load_bundle, read_record, stream
    from edgebp.record import Channel, Record


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgebp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
