"""Build the ahead-of-time kernels: ``python -m edgebp.processing.kernels_build``.

Compiles the kernels the streaming runtime calls (:data:`AOT_KERNELS`) with numba's AOT
compiler (``numba.pycc``) into ``edgebp/processing/_kernels_aot*.so``, beside which it
writes ``_kernels_aot.json``: the digest of the kernel sources it was built from and each
export's argument spec (what :class:`edgebp.processing.kernels.Kernel` checks before a call).
``make setup`` runs it (about 20 s); without it the kernels run under numba's JIT as before.

The signatures are the ones the runtime calls with (C-contiguous float64 arrays, the
scalars' kinds); tests/test_kernels_aot.py runs a live stream with the AOT module and checks
that numba was never imported and that the outputs are the bits numba's JIT gives.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

A1, A2 = 1, 2
#: kernel -> (argument spec, return spec). An array is (dtype, ndim), C-contiguous, writeable;
#: a scalar "f8" (float), "i8" (int) or "b1" (bool). A return is None, a spec, or a tuple of specs.
AOT_KERNELS: dict[str, tuple[tuple, object]] = {
    "edgebp.processing.filters._sosfilt_hold_kernel": ((("f8", A2), ("f8", A2), ("f8", A1), ("f8", A2), ("f8", A1), ("f8", A1)), None),
    "edgebp.processing.normalize._running_norm_kernel": ((("f8", A1), "f8", "f8", "f8", ("f8", A1), ("f8", A1)), None),
    "edgebp.processing.stream_resample._resample_kernel": (
        (("f8", A2), "i8", "i8", "i8", ("f8", A1), ("f8", A1), ("u1", A1), ("i8", A1), ("f8", A1), ("f8", A1)), "i8"),
    "edgebp.processing.beats._reset": ((("f8", A1),), None),
    "edgebp.processing.beats._track_block": (
        (("f8", A1), ("f8", A1), "f8", "f8", "f8", "f8", "i8", "f8", "b1"), (("f8", A2), ("f8", A1))),
    "edgebp.processing.quality._flatclip_block": (
        (("f8", A1), ("f8", A1), "i8", "f8", "f8", "f8", "f8", "f8", "f8"), (("u1", A1), ("f8", A1))),
    "edgebp.processing.quality.stuck_block": ((("f8", A2), ("f8", A1), ("i8", A1), "i8"), ("b1", A1)),
    "edgebp.processing.quality._guard_block": (
        (("f8", A1), ("f8", A1), *(["f8"] * 11), "b1", "f8", "f8", "f8", "f8"), (("u1", A1), ("f8", A1))),
    "edgebp.processing.qrs_stream._restart": ((("f8", A1),), None),
    "edgebp.processing.qrs_stream._qrs_block": ((("f8", A1), ("f8", A1), "i8", "f8", "i8", "f8"), (("i8", A1), ("f8", A1))),
}


def _numba_type(spec):
    from numba.core import types

    scal = {"f8": types.float64, "i8": types.int64, "b1": types.boolean, "u1": types.uint8}
    if spec is None:
        return types.none
    if isinstance(spec, str):
        return scal[spec]
    if isinstance(spec[0], str):  # an array
        return types.Array(scal[spec[0]], int(spec[1]), "C")
    return types.Tuple(tuple(_numba_type(s) for s in spec))


def kernels_build(out_dir: str | Path | None = None) -> Path:
    """Compile :data:`AOT_KERNELS` into ``out_dir`` (default: this package's directory);
    returns the path of the JSON written beside the module."""
    import importlib

    from edgebp.processing import kernels as K

    for m in K.KERNEL_MODULES:  # every kernel registered, then bound as numba dispatchers
        importlib.import_module(f"edgebp.processing.{m}")
    K._jit_all()
    from numba.pycc import CC

    out = Path(out_dir) if out_dir is not None else Path(K.__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    reg = K.kernels_registry()
    missing = [n for n in AOT_KERNELS if n not in reg]
    if missing:
        raise ValueError(f"AOT_KERNELS names kernels that do not exist: {', '.join(missing)}")
    cc = CC(K.AOT_MODULE.rsplit(".", 1)[-1])
    cc.output_dir = str(out)
    cc.verbose = False
    cc.target_cpu = "host"
    specs = {}
    for name, (args, ret) in AOT_KERNELS.items():
        sig = _numba_type(ret)(*(_numba_type(a) for a in args))
        exp = K._aot_name(name)
        cc.export(exp, sig)(reg[name].py_func)
        specs[exp] = [list(a) if isinstance(a, tuple) else a for a in args]
    meta = out / "_kernels_aot.json"
    meta.unlink(missing_ok=True)  # never a digest beside a half-built module
    t0 = time.perf_counter()
    cc.compile()
    import numba

    meta.write_text(json.dumps({"digest": K.kernels_digest(), "numba": numba.__version__, "cpu_flags": sorted(K.cpu_flags()),
                                "kernels": specs}, indent=1) + "\n")
    logger.info("built %d ahead-of-time kernels in %.1f s into %s", len(specs), time.perf_counter() - t0, out)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="Directory for the module (default: the installed edgebp/processing).")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        meta = kernels_build(a.out)
    except Exception as exc:  # noqa: BLE001 - a build without a C compiler: one line, and the JIT stays
        print(f"edgebp kernels_build: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    print(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
