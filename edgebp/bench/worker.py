"""The streaming benchmark worker: K device streams interleaved in one torch-free process.

Run by ``edgebp bench`` as a subprocess (so its peak RSS is that of a runtime with no torch
loaded), and runnable by hand to reproduce a figure::

    python -m edgebp.bench.worker --bundle BUNDLE --log serial.log --variant int8 --streams 4 --block 250 --out w.json

What it does
------------
1. Decodes the whole serial log once (``StreamDecoder``; gaps become NaN rows so the time axis
   stays right). Decoding is timed apart: it is not what K streams multiply.
2. Warms one runtime up on the first seconds (numba's cached kernels load, ONNX Runtime
   allocates) and drops it.
3. Opens K :class:`edgebp.runtime.engine.StreamRuntime` (one per device stream, each its own
   ONNX Runtime session with ``--threads`` intra-op threads) and feeds them the log in
   blocks of ``--block`` device samples, round robin, as a gateway serving K wearables would.
4. Output latency (sample arrival to BP out) at the device rate, on a virtual clock: the
   block whose last sample is ``e`` arrives at ``e / fs``; each push starts when both the
   block has arrived and the previous push has finished, and ends after its measured compute
   time. An output estimating ABP at time ``t`` is out at the end of the push that produced
   it: latency = end - t. When the K streams need more than one core's time the queue grows
   and so does the latency: nothing is hidden by the fast, unpaced replay.

Output: one JSON object (``--out``, else stdout). ``torch_loaded`` says whether torch was in
``sys.modules`` at the end (it must be False).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from edgebp.jsonsafe import json_emit


def _rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


_RSS_AT_START = _rss_mb()


def log_decode(path: str) -> tuple[np.ndarray, object, dict, float]:
    """All samples of a serial log: (values (n, n_ch), the stream header, decoder counts, seconds)."""
    from edgebp.runtime.protocol import GapEvent, StreamDecoder
    from edgebp.runtime.sources import iter_file

    t0 = time.perf_counter()
    dec = StreamDecoder(fmt="auto")
    parts = []
    n_ch = None

    def take(block):
        nonlocal n_ch
        if block.header is not None:
            n_ch = block.header.n_channels
        if not len(block) and not block.events:
            return
        cuts = sorted((ev.at_index, ev.n_missing) for ev in block.events if isinstance(ev, GapEvent) and ev.n_missing > 0)
        pos = 0
        for at, missing in cuts:
            parts.append(block.values[pos:at])
            parts.append(np.full((missing, block.values.shape[1]), np.nan))
            pos = at
        parts.append(block.values[pos:])

    for data in iter_file(path):
        take(dec.feed(data))
    take(dec.finish())
    seconds = time.perf_counter() - t0
    if dec.header is None:
        raise ValueError(f"{path}: no stream header decoded; the bench needs an edgebp text or binary log (edgebp sim)")
    values = np.concatenate([p for p in parts if len(p)]) if parts else np.zeros((0, n_ch or 0))
    return values, dec.header, dict(dec.counts), seconds


def runtime_open(bundle, header, variant: str, threads: int):
    """A :class:`StreamRuntime` set up from the stream header exactly as ``edgebp run`` sets it
    up (:func:`edgebp.runtime.run.stream_process`): channel columns and ADC gains (the flat-input
    gate's threshold is in LSBs)."""
    from edgebp.runtime.engine import StreamRuntime

    index = {name: i for i, name in enumerate(header.channels)}
    gains = {name: float(g) for name, g in zip(header.channels, header.gain)}
    return StreamRuntime(bundle, float(header.fs), index, backend="ort", variant=variant, threads=threads, gains=gains)


def _pct(a, qs=(50, 99)) -> dict:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return {f"p{q}": None for q in qs} | {"max": None, "min": None, "n": 0}
    return {f"p{q}": float(np.percentile(a, q)) for q in qs} | {"max": float(a.max()), "min": float(a.min()), "n": int(a.size)}


def streams_run(bundle_path: str, log: str, variant: str = "int8", threads: int = 1, streams: int = 1, block: int = 250,
                warmup_s: float = 5.0) -> dict:
    """K streams of the same log through K runtimes, interleaved; see the module docstring."""
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.engine import StreamRuntime  # noqa: F401 - counted with the imports
    from edgebp.runtime.protocol import StreamDecoder  # noqa: F401 - counted with the imports

    import onnxruntime  # noqa: F401 - counted with the imports (the backend imports it lazily)

    rss_imports = _current_rss_mb()
    bundle = bundle_load(bundle_path)
    values, header, counts, decode_s = log_decode(log)
    fs, channels = float(header.fs), list(header.channels)
    n = len(values)
    if n == 0:
        raise ValueError(f"{log}: no samples decoded")
    rss_decoded = _current_rss_mb()

    # warm-up: numba kernels load from their cache, ONNX Runtime allocates; not timed
    t0 = time.perf_counter()
    warm = runtime_open(bundle, header, variant, threads)
    nw = min(n, int(warmup_s * fs))
    for s in range(0, nw, block):
        warm.push(values[s:s + block])
    warm.flush()
    warmup_seconds = time.perf_counter() - t0
    del warm

    t0 = time.perf_counter()
    rts = [runtime_open(bundle, header, variant, threads) for _ in range(streams)]
    open_s = time.perf_counter() - t0
    rss_open = _current_rss_mb()

    lat_wave: list[np.ndarray] = []
    lat_beat: list[float] = []
    push_ms: list[float] = []
    clock = 0.0  # virtual time (s) on the device's axis
    outputs = valid = beats = 0
    t_loop = time.perf_counter()
    for s in range(0, n, block):
        e = min(n, s + block)
        chunk = values[s:e]
        clock = max(clock, (e - 1) / fs)  # the block is complete when its last sample arrives
        for rt in rts:
            t1 = time.perf_counter()
            out = rt.push(chunk)
            dt = time.perf_counter() - t1
            clock += dt
            push_ms.append(dt * 1e3)
            if len(out.t):
                outputs += len(out.t)
                ok = np.asarray(out.valid, bool)
                valid += int(ok.sum())
                if ok.any():
                    lat_wave.append(clock - np.asarray(out.t)[ok])
            for b in out.beats:
                beats += 1
                lat_beat.append(clock - float(b["t"]))
    for rt in rts:
        t1 = time.perf_counter()
        out = rt.flush()
        clock += time.perf_counter() - t1
        outputs += len(out.t)
        valid += int(np.asarray(out.valid, bool).sum())
        beats += len(out.beats)
    loop_s = time.perf_counter() - t_loop
    signal_s = n / fs
    lw = np.concatenate(lat_wave) * 1e3 if lat_wave else np.zeros(0)
    rt0 = rts[0]
    result = {
        "bundle": str(bundle.path), "model": bundle.manifest["model"]["name"], "variant": variant, "threads": threads,
        "streams": streams, "block_samples": block, "device_fs": fs, "model_fs": rt0.fs, "channels": channels,
        "samples_per_stream": n, "signal_seconds_per_stream": signal_s,
        "decode_seconds": decode_s, "decode_samples_per_s": n / decode_s if decode_s > 0 else None, "decoder": counts,
        "warmup_seconds": warmup_seconds, "open_seconds": open_s, "loop_seconds": loop_s,
        "aggregate_real_time_factor": streams * signal_s / loop_s if loop_s > 0 else None,
        "per_stream_real_time_factor": signal_s / loop_s if loop_s > 0 else None,
        "per_sample_us": loop_s / (streams * n) * 1e6,
        "sustained": bool(loop_s <= signal_s),
        "push_ms": _pct(push_ms),
        "output_latency_ms": _pct(lw),
        "beat_latency_ms": _pct(np.asarray(lat_beat) * 1e3),
        "algorithmic_latency_ms": {
            "model_delay": rt0.delay / rt0.fs * 1e3, "resampler_delay": rt0.res_delay / rt0.fs * 1e3,
            "model_step": rt0.chunk / rt0.fs * 1e3, "device_block": block / fs * 1e3,
        },
        "streamable": bool(rt0.streamable), "model_step_samples": int(rt0.chunk),
        "outputs": outputs, "valid_outputs": valid, "valid_share": valid / outputs if outputs else None, "beats": beats,
        "rss_mb": {"interpreter_and_numpy": _RSS_AT_START, "after_imports": rss_imports, "after_decode": rss_decoded,
                   "after_open": rss_open, "peak": _rss_mb()},
        "torch_loaded": "torch" in sys.modules,
    }
    return result


def imports_only() -> dict:
    """RSS of the runtime's imports alone (the floor under every figure of ``streams_run``)."""
    import edgebp.runtime.engine  # noqa: F401
    import edgebp.runtime.protocol  # noqa: F401
    import onnxruntime  # noqa: F401

    return {"rss_mb": {"interpreter_and_numpy": _RSS_AT_START, "peak": _rss_mb(), "current": _current_rss_mb()},
            "torch_loaded": "torch" in sys.modules}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.worker",
                                 description="K device streams through a bundle, interleaved in one torch-free process (edgebp bench).")
    ap.add_argument("--bundle", help="Bundle directory (or 'default').")
    ap.add_argument("--log", help="Serial log from `edgebp sim`.")
    ap.add_argument("--variant", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--block", type=int, default=250, help="Device samples per push (a gateway's read size).")
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--imports-only", action="store_true", help="Only import the runtime and report RSS.")
    ap.add_argument("--out", default=None, help="Write the JSON here (default: stdout).")
    a = ap.parse_args(argv)
    if a.imports_only:
        res = imports_only()
    else:
        if not a.bundle or not a.log:
            ap.error("--bundle and --log are required")
        if a.streams < 1 or a.block < 1:
            ap.error("--streams and --block must be >= 1")
        res = streams_run(a.bundle, a.log, a.variant, a.threads, a.streams, a.block, a.warmup_s)
    json_emit(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
