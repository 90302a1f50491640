"""Per-inference latency: warm-up, then repeated runs, each a fresh session; medians and ranges.

One *repeat* opens a new session (ONNX Runtime) or re-seeds the inputs (torch), runs the
warm-up calls, then times ``runs`` calls one by one with :func:`time.perf_counter_ns`. The
number of calls per repeat is chosen from the warm-up so that a repeat lasts about
``target_s`` (bounded by ``min_runs`` / ``max_runs``): a 0.2 ms model gets thousands of calls,
a 200 ms model a handful. Per repeat: p50, p90, p99, mean, min, max. Across repeats: the
median of each percentile and its range (min, max), so the spread between runs is reported,
never hidden. Inputs are seeded normal noise: the networks here have no data-dependent
control flow, so their cost does not depend on the values.

torch is imported only in the subprocess :func:`torch_latency` starts.

Examples
--------
>>> import numpy as np
>>> r = latency_measure(lambda: np.sum(np.ones(1000)), warmup=2, repeats=2, target_s=0.01, min_runs=5)
>>> sorted(r)[:3]
['mean_ms', 'n_total', 'p50_ms']
>>> r["p50_ms"]["min"] <= r["p50_ms"]["median"] <= r["p50_ms"]["max"]
True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyPlan:
    """How many calls: ``warmup`` untimed calls, then ``repeats`` repeats of ``runs`` timed calls
    where ``runs`` is chosen so that a repeat lasts ``target_s`` within ``[min_runs, max_runs]``."""

    warmup: int = 10
    repeats: int = 5
    target_s: float = 1.0
    min_runs: int = 20
    max_runs: int = 2000
    warmup_s: float = 1.0

    @classmethod
    def quick(cls, repeats: int = 2) -> "LatencyPlan":
        return cls(warmup=3, repeats=repeats, target_s=0.1, min_runs=5, max_runs=200, warmup_s=0.2)

    def to_dict(self) -> dict:
        return {"warmup": self.warmup, "repeats": self.repeats, "target_s": self.target_s,
                "min_runs": self.min_runs, "max_runs": self.max_runs, "warmup_s": self.warmup_s}

    def kwargs(self) -> dict:
        return {"warmup": self.warmup, "repeats": self.repeats, "target_s": self.target_s, "min_runs": self.min_runs,
                "max_runs": self.max_runs, "warmup_s": self.warmup_s}


def _spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def latency_measure(call: Callable[[], Any] | None = None, warmup: int = 10, repeats: int = 5, target_s: float = 1.0,
                    min_runs: int = 20, max_runs: int = 2000, make: Callable[[int], Callable[[], Any]] | None = None,
                    warmup_s: float = 0.0) -> dict:
    """Time ``call()`` after warm-up, in repeated runs.

    Parameters
    ----------
    call : callable, optional
        The work to time (no arguments). Give ``make`` instead to start each repeat afresh.
    warmup : int
        Untimed calls at the start of every repeat (at least; see ``warmup_s``).
    repeats : int
        Independent repeats.
    target_s, min_runs, max_runs : float, int, int
        Timed calls per repeat: about ``target_s`` worth, within ``[min_runs, max_runs]``
        (estimated from the fastest of the last warm-up calls). A repeat stops early, after
        ``min_runs`` calls, once it has taken ``3 * target_s``: a pathological stall cannot make
        the bench run for ever, and the stalls it did see stay in the figures.
    make : callable, optional
        ``make(repeat_index) -> call``: builds a new callable for each repeat (a new session).
    warmup_s : float
        Keep warming up until this much time has passed too (thread pools, JIT kernels and
        caches can take several calls to settle).

    Returns
    -------
    dict
        ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``: each ``{median, min, max}`` over the
        repeats; ``pooled`` (p50/p90/p99/mean/min/max of all timed calls); ``repeats`` (one
        dict per repeat with its own percentiles and ``n``); ``n_total``; ``samples_ms`` (every
        timed call, for histograms).

    Examples
    --------
    >>> r = latency_measure(lambda: sum(range(100)), warmup=1, repeats=3, target_s=0.001, min_runs=5, max_runs=5)
    >>> r["n_total"], len(r["repeats"])
    (15, 3)
    """
    if call is None and make is None:
        raise ValueError("latency_measure: give call or make")
    if repeats < 1 or min_runs < 1 or max_runs < min_runs:
        raise ValueError(f"latency_measure: need repeats >= 1 and 1 <= min_runs <= max_runs (got {repeats}, {min_runs}, {max_runs})")
    per_repeat = []
    samples: list[np.ndarray] = []
    for r in range(repeats):
        fn = make(r) if make is not None else call
        warm = []
        w0 = time.perf_counter()
        while len(warm) < max(1, warmup) or (time.perf_counter() - w0 < warmup_s and len(warm) < 100 * max(1, warmup)):
            t0 = time.perf_counter_ns()
            fn()
            warm.append(time.perf_counter_ns() - t0)
        est_s = float(np.min(warm[-3:])) * 1e-9
        runs = int(min(max_runs, max(min_runs, math.ceil(target_s / max(est_s, 1e-7)))))
        t = np.empty(runs, dtype=np.float64)
        r0 = time.perf_counter()
        for i in range(runs):
            t0 = time.perf_counter_ns()
            fn()
            t[i] = time.perf_counter_ns() - t0
            if i + 1 >= min_runs and time.perf_counter() - r0 > 3 * target_s:
                t = t[: i + 1]
                runs = i + 1
                break
        ms = t * 1e-6
        samples.append(ms)
        per_repeat.append({"n": runs, "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                           "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
                           "max_ms": float(ms.max())})
    allms = np.concatenate(samples)
    out = {k: _spread([p[k] for p in per_repeat]) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")}
    out["pooled"] = {"p50_ms": float(np.percentile(allms, 50)), "p90_ms": float(np.percentile(allms, 90)),
                     "p99_ms": float(np.percentile(allms, 99)), "mean_ms": float(allms.mean()),
                     "min_ms": float(allms.min()), "max_ms": float(allms.max())}
    out["repeats"] = per_repeat
    out["n_total"] = int(allms.size)
    out["samples_ms"] = [round(float(x), 6) for x in allms]
    return out


def onnx_feeds(inputs: list, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded float32 noise for every graph input.

    A symbolic (or unknown) first dimension becomes ``batch``, any other symbolic dimension
    ``length``; fixed dimensions are kept.

    Raises
    ------
    ValueError
        When ``batch > 1`` is asked of a graph whose batch dimension is fixed at another value.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in inputs:
        shape = []
        for k, d in enumerate(inp.shape):
            if isinstance(d, int) and d > 0:
                if k == 0 and d != batch and not inp.name.startswith("state"):
                    raise ValueError(f"input {inp.name!r} has a fixed batch of {d}; batch {batch} cannot be timed")
                shape.append(d)
            else:
                shape.append(batch if k == 0 else length)
        dtype = np.float32 if "float" in inp.type else np.int64
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype) if dtype is np.float32 else np.zeros(shape, dtype)
    return feeds


def ort_session(path: str | Path, threads: int):
    """An ONNX Runtime CPU session configured as the edgebp runtime configures it."""
    from edgebp.runtime.backends import OrtBackend

    return OrtBackend(path, threads=threads).session


def ort_latency(path: str | Path, batch: int, threads: int, length: int, plan: LatencyPlan, seed: int = 0) -> dict:
    """Latency of one ONNX model on ONNX Runtime (CPU) at a batch size and thread count.

    Each repeat opens a new session (the same options as :class:`edgebp.runtime.backends.OrtBackend`).

    Returns
    -------
    dict
        :func:`latency_measure`'s figures plus ``input_shapes``.
    """
    shapes: dict = {}

    def make(r: int):
        sess = ort_session(path, threads)
        feeds = onnx_feeds(sess.get_inputs(), batch, length, seed + r)
        shapes.update({k: list(v.shape) for k, v in feeds.items()})
        return lambda: sess.run(None, feeds)

    res = latency_measure(make=make, **plan.kwargs())
    res["input_shapes"] = shapes
    return res


def torch_latency(run_dir: str | Path, batches: list[int], threads: int, length: int, plan: LatencyPlan, seed: int = 0,
                  timeout_s: float = 1800.0) -> list[dict]:
    """Latency of a run directory's torch model (fp32, eval mode, ``torch.inference_mode``),
    one result per batch size.

    Measured in a fresh subprocess per thread count (``python -m edgebp.bench.latency``), with
    the thread count set before torch does any work, as a user's process would: the bench
    process never imports torch for it, and torch's OpenMP pool never shares a process with
    ONNX Runtime's.
    """
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgebp-bench-torch-") as tmp:
        out = Path(tmp) / "latency.json"
        argv = [sys.executable, "-m", "edgebp.bench.latency", "--torch-run", str(run_dir), "--batch", ",".join(str(b) for b in batches),
                "--threads", str(threads), "--length", str(length), "--seed", str(seed), "--plan", json.dumps(plan.to_dict()),
                "--out", str(out)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        if res.returncode != 0 or not out.exists():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"torch latency ({run_dir}, {threads} thread(s)) failed: {last}")
        return json.loads(out.read_text())


def _torch_latency_here(run_dir: str | Path, batch: int, threads: int, length: int, plan: LatencyPlan, seed: int = 0) -> dict:
    import torch

    torch.set_num_threads(max(1, int(threads)))
    from edgebp.train.predict import RunDir

    run = RunDir(run_dir)
    model = run.model.eval()
    c = len(run.inputs)

    def make(r: int):
        x = torch.from_numpy(np.random.default_rng(seed + r).standard_normal((batch, c, length)).astype(np.float32))

        def call():
            with torch.inference_mode():
                return model(x)

        return call

    res = latency_measure(make=make, **plan.kwargs())
    res["input_shapes"] = {"x": [batch, c, length]}
    res["torch_threads"] = torch.get_num_threads()
    res["torch_version"] = torch.__version__
    return res


def main(argv: list[str] | None = None) -> int:
    """``python -m edgebp.bench.latency --torch-run RUN ...``: one torch latency figure as JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.latency", description="Time a run directory's torch model (edgebp bench).")
    ap.add_argument("--torch-run", required=True)
    ap.add_argument("--batch", default="1", help="Batch size(s), comma-separated.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plan", default=None, help="LatencyPlan fields as JSON (default: the full plan).")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    plan = LatencyPlan(**json.loads(a.plan)) if a.plan else LatencyPlan()
    res = [_torch_latency_here(a.torch_run, int(b), a.threads, a.length, plan, a.seed) for b in a.batch.split(",")]
    text = json.dumps(res)
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
