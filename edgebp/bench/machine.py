"""Describe the machine a benchmark ran on: CPU, cores, instruction sets, libraries, threads.

A latency figure means nothing without the machine it was measured on, so every bench report
starts with this. Nothing here imports torch: its version is asked of a subprocess, so the
benchmark process keeps the memory and thread pools of a torch-free runtime.

Examples
--------
>>> from edgebp.bench.machine import machine_describe
>>> m = machine_describe(torch=False)
>>> m["cpu"]["logical_cores"] >= 1
True
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment variables that change how many threads the numeric libraries use.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                   "OPENBLAS_VERBOSE", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "ORT_NUM_THREADS",
                   "OMP_PROC_BIND", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_AFFINITY")

#: /proc/cpuinfo flags that decide which int8 / fp32 kernels ONNX Runtime can use.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp")

LIBRARIES = ("numpy", "scipy", "numba", "onnx", "onnxruntime", "matplotlib", "click", "torch")


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """Model name and flags of the first processor in ``/proc/cpuinfo`` (Linux)."""
    info: dict = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = Path(path).read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and info["model"] in ("", platform.machine(), platform.processor()):
            info["model"] = value.strip()
        elif key in ("flags", "features") and not info["flags"]:
            info["flags"] = value.split()
        elif key == "cpu mhz" and "mhz" not in info:
            try:
                info["mhz"] = float(value)
            except ValueError:
                pass
        elif key == "cache size" and "cache" not in info:
            info["cache"] = value.strip()
    return info


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_probe(timeout_s: float = 120.0) -> dict:
    """torch's version and thread settings, asked of a fresh interpreter (never imported here)."""
    code = ("import json, torch; print(json.dumps({'version': torch.__version__, 'threads': torch.get_num_threads(), "
            "'interop_threads': torch.get_num_interop_threads(), 'parallel_info': torch.__config__.parallel_info().splitlines()[:12]}))")
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"importable": False, "reason": f"{type(exc).__name__}: {exc}"}
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["unknown error"])[-1]
        return {"importable": False, "reason": last}
    try:
        return {"importable": True, **json.loads(res.stdout.strip().splitlines()[-1])}
    except (json.JSONDecodeError, IndexError):
        return {"importable": False, "reason": f"unexpected output: {res.stdout[:200]!r}"}


def _numba_info() -> dict:
    try:
        import numba
    except ImportError as exc:
        return {"importable": False, "reason": str(exc)}
    return {"importable": True, "version": numba.__version__, "num_threads": int(numba.config.NUMBA_NUM_THREADS),
            "threading_layer_config": str(numba.config.THREADING_LAYER)}


def _numpy_blas() -> dict:
    import numpy as np

    out: dict = {"version": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.26
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        out["blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration") if k in blas}
        simd = cfg.get("SIMD Extensions", {})
        out["simd_found"] = simd.get("found")
    except Exception as exc:  # noqa: BLE001 - descriptive only; never fail a benchmark on it
        out["blas"] = f"unknown ({type(exc).__name__})"
    return out


def _ort_info() -> dict:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"importable": False, "reason": str(exc)}
    return {"importable": True, "version": ort.__version__, "providers": ort.get_available_providers(), "device": ort.get_device()}


def machine_describe(torch: bool = True) -> dict:
    """Everything about this machine that moves a latency figure.

    Parameters
    ----------
    torch : bool
        Ask a subprocess for torch's version and thread settings (a few seconds). The
        calling process never imports torch.

    Returns
    -------
    dict
        ``cpu`` (model, logical cores, cores usable by this process, MHz, cache, the ISA
        flags that matter for int8 and fp32 kernels: AVX2, AVX-512, VNNI...), ``os``,
        ``python``, ``libraries`` (installed versions), ``numpy``, ``numba``,
        ``onnxruntime``, ``torch``, ``thread_env`` (OMP/MKL/OPENBLAS/NUMBA variables as set),
        ``load_average`` (1, 5, 15 min) and ``memory_total_mb``.

    Examples
    --------
    >>> m = machine_describe(torch=False)
    >>> sorted(m["cpu"]["isa"])[:2]  # doctest: +SKIP
    ['avx', 'avx2']
    """
    ci = _cpuinfo()
    flags = set(ci.get("flags", []))
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) / 1024.0
                break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": {
            "model": ci.get("model"),
            "logical_cores": os.cpu_count() or 1,
            "usable_cores": usable,
            "mhz": ci.get("mhz"),
            "cache": ci.get("cache"),
            "isa": sorted(f for f in ISA_FLAGS if f in flags),
            "avx2": "avx2" in flags,
            "avx512": "avx512f" in flags,
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
            "machine": platform.machine(),
        },
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "numpy": _numpy_blas(),
        "numba": _numba_info(),
        "onnxruntime": _ort_info(),
        "torch": _torch_probe() if torch else {"importable": None, "reason": "not probed"},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "load_average": load,
        "memory_total_mb": mem_total,
    }


def machine_summary(m: dict) -> str:
    """One paragraph for a report.

    Examples
    --------
    >>> s = machine_summary(machine_describe(torch=False))
    >>> "cores" in s
    True
    """
    cpu = m["cpu"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    env = ", ".join(f"{k}={v}" for k, v in m["thread_env"].items() if v is not None) or "none set"
    load = ", ".join(f"{x:.2f}" for x in m["load_average"]) if m.get("load_average") else "unknown"
    return (f"CPU: {cpu['model']} ({cpu['machine']}), {cpu['logical_cores']} logical cores "
            f"({cpu['usable_cores']} usable by this process), ISA: {' '.join(cpu['isa']) or 'unknown'} "
            f"(AVX2 {'yes' if cpu['avx2'] else 'no'}, AVX-512 {'yes' if cpu['avx512'] else 'no'}, "
            f"VNNI {'yes' if cpu['vnni'] else 'no'}). Memory {m['memory_total_mb'] or 0:.0f} MiB. "
            f"{m['os']}, Python {m['python']}. Libraries: {libs}. Thread variables: {env}. "
            f"Load average (1/5/15 min) when described: {load}.")
