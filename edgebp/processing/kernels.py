"""The processing kernels: numba functions, compiled ahead of time where the build made them.

Every numba kernel of :mod:`edgebp.processing` is declared with :func:`kernel` (the
``njit`` those modules use). A kernel is one Python function with two ways to run, the same
machine code from the same source:

- **ahead of time** (AOT): ``python -m edgebp.processing.kernels_build`` (``make setup`` runs
  it) compiles the kernels the streaming runtime calls into one extension module,
  ``edgebp/processing/_kernels_aot*.so``, with numba's own compiler (``numba.pycc``). Loading
  it needs neither numba nor llvmlite: a single-stream ``edgebp run`` then never imports
  them (peak RSS 71.8 against 182.1 MiB, first output 0.50 against 1.09 s after start;
  ``edgebp bench --parts startup``, docs/benchmarks.md).
  The build records a digest of the kernels' source files; a module built from other sources
  is not used (stale after an edit: rebuild).
- **just in time** (JIT, numba's ``njit(cache=True)``): every other kernel, every call whose
  argument types the AOT build does not have, and everything when the module is absent,
  stale, or ``EDGEBP_KERNELS=jit`` is set.

An AOT function does not check its arguments (a float32 array where it was built for
float64 crashes the process), so each call is checked here first: arrays by dtype, number of
dimensions and C-contiguous, aligned, writeable memory, scalars by kind; a call that does not
match goes to numba. The outputs are the same bits either way (tests/test_kernels_aot.py).

``EDGEBP_KERNELS``: ``auto`` (default: AOT where available), ``aot`` (the same, but a missing
or stale module is an error) or ``jit``.

Examples
--------
>>> import numpy as np
>>> @kernel(cache=False)
... def _twice(x, y):
...     for i in range(x.shape[0]):
...         y[i] = 2.0 * x[i]
>>> y = np.zeros(3)
>>> _twice(np.arange(3.0), y)
>>> y.tolist()
[0.0, 2.0, 4.0]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

AOT_MODULE = "edgebp.processing._kernels_aot"
#: the modules whose source the AOT digest covers (every module holding a kernel)
KERNEL_MODULES = ("beats", "filters", "gradient", "normalize", "qrs_stream", "quality", "stream_resample")
MODES = ("auto", "aot", "jit")

_REGISTRY: dict[str, "Kernel"] = {}  # by qualified name (a module loaded twice: its latest)
_ALL: list["Kernel"] = []  # every kernel made, for _jit_all
_aot = None  # the loaded AOT module, False once found unusable
_aot_why = ""
_aot_specs: dict = {}  # the build's argument spec per export name (_kernels_aot.json)
_jitted = 0  # kernels given a dispatcher so far


def numba_import():
    """``import numba`` without numba's two scipy probes.

    Two lines of numba load scipy into every process that runs a numba kernel, neither for
    anything our kernels use:

    - ``numba/__init__.py`` runs ``try: import scipy`` only to refuse a scipy older than 1.0
      (the ``scipy`` package: 10 modules);
    - ``numba/np/arraymath.py``, imported at the first dispatch (compile or cache load), sets
      ``_HAVE_BLAS`` by importing ``scipy.linalg.cython_blas`` (85 modules, ~0.4 s, ~16 MB);
      the flag only picks BLAS for ``np.convolve``/``np.correlate`` inside kernels.

    The runtime path must import no scipy, so both imports run here, while
    ``sys.modules["scipy"]`` is ``None`` (``import scipy`` raises ImportError, which numba
    treats as "no scipy"); the entry is removed right after, and ``_HAVE_BLAS`` is set back
    to whether scipy is installed, as numba would have found it. A later ``import scipy``
    (offline code; numba's ``np.dot``/``np.linalg`` support, which imports
    ``scipy.linalg.cython_blas`` when such a kernel is compiled) works as usual, and
    numba's behaviour is unchanged. Nothing is masked when scipy or numba is already
    imported. Not thread-safe: meant for the first JIT call (another thread importing scipy
    during these lines would get ImportError).
    """
    if "numba" not in sys.modules and "scipy" not in sys.modules:
        import importlib.util

        have_scipy = importlib.util.find_spec("scipy") is not None  # finds, does not import
        sys.modules["scipy"] = None  # type: ignore[assignment]
        try:
            import numba  # noqa: F401,F811
            from numba.np import arraymath
        finally:
            if "scipy" in sys.modules and sys.modules["scipy"] is None:
                del sys.modules["scipy"]
        arraymath._HAVE_BLAS = have_scipy
    import numba  # noqa: F811

    return numba


def kernels_mode() -> str:
    """``EDGEBP_KERNELS`` (auto, aot or jit); an unknown value is an error naming the valid ones."""
    mode = os.environ.get("EDGEBP_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"EDGEBP_KERNELS={mode!r}: valid values are {', '.join(MODES)}")
    return mode


def kernels_digest() -> str:
    """sha256 of the kernel modules' source files (what an AOT build must have been made from)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for m in KERNEL_MODULES:
        h.update(m.encode() + b"\0" + (here / f"{m}.py").read_bytes() + b"\0")
    return h.hexdigest()


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read.
    The AOT build is compiled for the CPU it was built on (as numba's JIT compiles for its
    own), so a module carried to a CPU without those extensions is not loaded."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def aot_module():
    """The AOT extension module, or None (absent, stale, or ``EDGEBP_KERNELS=jit``); why not
    is in :func:`kernels_status`."""
    global _aot, _aot_why, _aot_specs
    if _aot is None:
        _aot = False
        mode = kernels_mode()
        if mode == "jit":
            _aot_why = "EDGEBP_KERNELS=jit"
        else:
            meta = Path(__file__).resolve().parent / "_kernels_aot.json"
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError):
                info = None
            if info is None:
                _aot_why = f"not built ({meta.name} absent: python -m edgebp.processing.kernels_build)"
            elif info.get("digest") != kernels_digest():
                _aot_why = "stale: built from other kernel sources (python -m edgebp.processing.kernels_build)"
            elif not set(info.get("cpu_flags") or ()) <= cpu_flags():
                _aot_why = "built for another CPU (its instruction set extensions are not all here)"
            else:
                try:
                    import importlib

                    _aot = importlib.import_module(AOT_MODULE)
                    _aot_specs = info.get("kernels") or {}
                    _aot_why = ""
                except ImportError as exc:
                    _aot_why = f"cannot be imported ({exc})"
            if _aot is False:
                if mode == "aot":
                    raise RuntimeError(f"EDGEBP_KERNELS=aot: the ahead-of-time kernels are {_aot_why}")
                logger.debug("ahead-of-time kernels unavailable: %s; numba compiles them", _aot_why)
    return _aot or None


def kernels_status() -> dict:
    """Whether the AOT module is in use (``aot``), why not (``why``), the mode, and per kernel
    called so far which way it ran: ``aot`` or ``jit`` (``unused``: not called yet)."""
    mod = aot_module()
    ks = {name: ("unused" if k._impl is None else "jit" if k._impl is k._jit else "aot") for name, k in _REGISTRY.items()}
    return {"aot": mod is not None, "why": _aot_why, "mode": kernels_mode(), "kernels": ks}


def _jit_all() -> None:
    """numba dispatchers for every kernel, bound in their modules: a kernel that calls another
    must find a dispatcher there when numba compiles it (the AOT build needs this too)."""
    global _jitted
    if _jitted == len(_ALL):
        return
    nb = numba_import()
    for k in _ALL[_jitted:]:
        k._jit = nb.njit(**k.options)(k.py_func)
        k.py_func.__globals__[k.py_func.__name__] = k._jit
    _jitted = len(_ALL)


# The call of an AOT kernel, generated per kernel from the build's argument spec: the checks
# inline (a generic loop over check functions cost ~3 us a call, more than many kernels),
# then the compiled function. Scalars must be exactly the kinds the build compiled for:
# numba would compile another specialisation for an int where a float was built (or an int32
# for an int64), whose arithmetic can differ, so such a call goes to numba too.
_SCALAR_TESTS = {"f8": "isinstance({a}, float)",  # float and np.float64
                 "i8": "({a}.__class__ is int or {a}.__class__ is _i8)",
                 "b1": "({a}.__class__ is bool or {a}.__class__ is _b1)"}


def _aot_caller(spec: list, name: str):
    """``__call__(self, *args)`` for an AOT kernel of argument spec ``spec``."""
    names = [f"a{i}" for i in range(len(spec))]
    env = {"_nd": np.ndarray, "_i8": np.int64, "_b1": np.bool_}
    tests = []
    for a, sp in zip(names, spec):
        if isinstance(sp, (list, tuple)):
            dt = f"_dt_{sp[0]}"
            env[dt] = np.dtype(sp[0])
            tests.append(f"{a}.__class__ is _nd and {a}.ndim == {int(sp[1])} and {a}.dtype == {dt} and {a}.flags.carray")
        else:
            tests.append(_SCALAR_TESTS[sp].format(a=a))
    arglist = ", ".join(names)
    src = (f"def __call__(self, {arglist}, *more):\n"
           f"    if not more and {' and '.join(f'({t})' for t in tests)}:\n"
           f"        return self._impl({arglist})\n"
           f"    return self._fallback(({arglist}, *more))\n")
    exec(compile(src, f"<edgebp kernel call {name}>", "exec"), env)  # noqa: S102 - our own generated checks
    return env["__call__"]


class Kernel:
    """One numba kernel: its Python function and how it runs (see the module docstring)."""

    def __init__(self, func, options: dict):
        self.py_func = func
        self.options = dict(options)
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        self._impl = None  # the AOT function (or the dispatcher) calls go to
        self._jit = None
        _REGISTRY[self.name] = self
        _ALL.append(self)

    def _resolve(self):
        mod = aot_module()
        exp = _aot_name(self.name)
        f = getattr(mod, exp, None) if mod is not None else None
        spec = _aot_specs.get(exp) if f is not None else None
        if f is None or spec is None:
            _jit_all()
            self._impl = self._jit
            return self._jit
        self._impl = f
        # this kernel's own class, whose __call__ checks the arguments inline then calls f
        self.__class__ = type(f"Kernel_{self.__name__}", (Kernel,), {"__call__": _aot_caller(spec, self.name)})
        return f

    def __call__(self, *args):
        # the first call (or a JIT kernel's every call made through this object)
        f = self._impl or self._resolve()
        if f is self._jit:
            return f(*args)
        return self(*args)  # the AOT class's checked call

    def _fallback(self, args):
        _jit_all()
        logger.debug("%s: argument types not in the ahead-of-time build; numba runs it", self.name)
        return self._jit(*args)


def _aot_name(name: str) -> str:
    """The AOT module's export name of a kernel: ``edgebp.processing.quality._guard_block`` ->
    ``quality___guard_block``."""
    mod, _, fn = name.rpartition(".")
    return f"{mod.rsplit('.', 1)[-1]}__{fn}"


def kernel(func=None, **options):
    """``@kernel(cache=True)`` or ``@kernel``: a :class:`Kernel` (numba ``njit`` options)."""
    if func is not None and callable(func) and not options:
        return Kernel(func, {})
    return lambda f: Kernel(f, options)


def kernels_registry() -> dict[str, Kernel]:
    """Every kernel declared so far, by qualified name."""
    return dict(_REGISTRY)
