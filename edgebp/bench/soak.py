"""The live soak: a long simulated device stream through the real runtime, memory watched.

:func:`edgebp.firmware_sim.simulate.device_stream` generates the stream segment by segment
(bounded memory, whatever its length) in a child process that writes it to a pipe, as a
serial line would (its memory, one segment at a time, stays out of the RSS measured here); its
bytes are read in packets of ``packet`` sample lines, what a gateway hands over every
``packet / fs`` seconds, and fed in this process
through :func:`edgebp.runtime.run.stream_process` (the path of ``edgebp run``: decoder,
gates, preprocessing, the model, beats, the calibrated estimator, with cuff readings in the
stream). The outputs are counted (a 24 h point-wise CSV would be ~270 MB of disk).

Sampled along the way, every ``sample_every_s`` of stream time: the process RSS, and the size
of every container reachable from the stream's runtime and decoder (lists, deques, dicts,
sets, arrays, bytes; :func:`container_sizes`). Reported: RSS growth from the 10-minute mark to
the end, and every container that grew after that mark (:func:`growing`): a per-stream
structure that grows without bound shows up there by name.

Run by ``edgebp bench --parts soak --soak-hours 24``; by hand::

    nice python -m edgebp.bench.soak --hours 24 --out soak.json
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import subprocess
import sys
import time

import numpy as np

from edgebp.jsonsafe import json_emit

log = logging.getLogger(__name__)

#: The mark after which growth counts: start-up (imports, numba kernels, first allocations) is over.
SETTLE_S = 600.0


# the goal, 5 MB (SI), in the MiB edgebp states every size in
SOAK_GOAL_MIB = 5e6 / 2**20


def rss_mb() -> float:
    """This process's resident set now (MiB, 1 MiB = 2**20 B, as every size in edgebp), from /proc (Linux)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def container_sizes(root, name: str = "rt", max_depth: int = 5) -> dict[str, int]:
    """``path -> size`` of every container reachable from ``root`` through attributes, dict
    values and the elements of small sequences, up to ``max_depth`` steps: ``len()`` of
    lists, tuples, deques (not those with a ``maxlen``: bounded by construction), dicts, sets,
    bytes and bytearrays, ``.size`` of numpy arrays.
    Modules, classes, functions and ONNX Runtime sessions are not entered.

    Examples
    --------
    >>> class A:
    ...     def __init__(self):
    ...         self.xs, self.d = [1, 2, 3], {"k": [0] * 5}
    >>> sorted(container_sizes(A(), "a").items())
    [('a.d', 1), ("a.d['k']", 5), ('a.xs', 3)]
    """
    out: dict[str, int] = {}
    seen: set[int] = set()
    stack = [(root, name, 0)]
    while stack:
        obj, path, depth = stack.pop()
        if id(obj) in seen or depth > max_depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            out[path] = int(obj.size)
            continue
        if isinstance(obj, (bytes, bytearray, str)):
            if not isinstance(obj, str):
                out[path] = len(obj)
            continue
        if isinstance(obj, dict):
            out[path] = len(obj)
            for k, v in list(obj.items())[:64]:
                stack.append((v, f"{path}[{k!r}]", depth + 1))
            continue
        if isinstance(obj, (list, tuple, collections.deque, set, frozenset)):
            if path != name and not (isinstance(obj, collections.deque) and obj.maxlen is not None):
                out[path] = len(obj)  # a deque with a maxlen is bounded by construction
            items = list(obj)[:8] if not isinstance(obj, (set, frozenset)) else []
            for i, v in enumerate(items):
                stack.append((v, f"{path}[{i}]", depth + 1))
            continue
        mod = type(obj).__module__ or ""
        if not (mod.startswith("edgebp") or mod == "__main__" or mod.startswith("test")) or isinstance(obj, type):
            continue  # numba dispatchers, ORT sessions, loggers, numbers: not per-stream data
        attrs = getattr(obj, "__dict__", None)
        if attrs is None and hasattr(obj, "__slots__"):
            attrs = {s: getattr(obj, s, None) for s in obj.__slots__}
        if dataclass_fields := getattr(obj, "__dataclass_fields__", None):
            attrs = {**(attrs or {}), **{f: getattr(obj, f, None) for f in dataclass_fields}}
        for k, v in (attrs or {}).items():
            if k in ("bundle", "m", "manifest", "backend", "batcher", "session", "pre", "gate"):
                continue  # shared or configuration, not per-stream state that can grow
            stack.append((v, f"{path}.{k}", depth + 1))
    return out


class SizeTracker:
    """Running maxima of every container's size up to the settling mark and after it: what
    :func:`growing` needs, in memory that does not grow with the stream (the soak must not
    measure its own bookkeeping: a list of every sample's sizes grew ~1.4 MB an hour)."""

    def __init__(self, settle_s: float = SETTLE_S):
        self.settle_s = settle_s
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}

    def update(self, t_s: float, sizes: dict[str, int]) -> None:
        d = self.before if t_s <= self.settle_s else self.after
        for k, v in sizes.items():
            if v > d.get(k, -1):
                d[k] = v

    def growing(self, slack: int = 64, factor: float = 1.5) -> dict[str, list[int]]:
        return {k: [self.before.get(k, 0), v] for k, v in self.after.items() if v > factor * self.before.get(k, 0) + slack}


def growing(samples: list[dict], settle_s: float = SETTLE_S, slack: int = 64, factor: float = 1.5) -> dict[str, list[int]]:
    """Containers that grew after ``settle_s``: those whose largest size after the mark is more
    than ``factor`` x their largest size up to it plus ``slack`` (or that appeared after it
    with more than ``slack`` elements). A bounded buffer that fills and then holds (a ring, a
    queue that drains) stays within that; a list that gains an entry per step, beat or
    reading does not, once the stream is long enough. ``samples``: dicts with ``t_s`` and
    ``sizes``. Returns ``path -> [size before, size after]``.
    """
    tr = SizeTracker(settle_s)
    for smp in samples:
        tr.update(smp["t_s"], smp["sizes"])
    return tr.growing(slack, factor)


def rss_figures(series: np.ndarray) -> dict:
    """RSS at the 10-minute mark, at the end, the largest after the mark, and the growth;
    ``series`` rows are (stream s, RSS MB, CPU s)."""
    after = series[series[:, 0] >= SETTLE_S]
    at_mark = after[0] if len(after) else series[0]
    end = series[-1]
    growth = float(end[1] - at_mark[1])
    return {"rss_at_10min_mb": float(at_mark[1]), "rss_end_mb": float(end[1]),
            "rss_max_after_10min_mb": float(after[:, 1].max()) if len(after) else None,
            "rss_growth_mb": growth, "rss_max_growth_mb": float(after[:, 1].max() - at_mark[1]) if len(after) else None,
            # a stream shorter than the mark has no settled figure: growth is then from the first sample
            "goal_mb": SOAK_GOAL_MIB, "met": (growth < SOAK_GOAL_MIB) if len(after) > 1 else None, "settled_mark_reached": len(after) > 1,
            "stream_hours_measured": float(end[0]) / 3600}


class CountingWriter:
    """What a soak writes: counts, not rows (``write``/``close`` as :class:`~edgebp.runtime.run.OutputWriter`)."""

    def __init__(self):
        self.rows = self.valid = self.beats = 0
        self.closed = False

    def write(self, out) -> None:
        self.rows += len(out.t)
        self.valid += int(np.count_nonzero(out.valid))
        self.beats += len(out.beats)

    def close(self) -> None:
        pass


def soak_run(hours: float, bundle_path: str = "default", source: str = "synth:901", packet: int = 25, segment_minutes: float = 10.0,
             faults: str | None = "drop=0.001,corrupt=0.0005", cuff_every_s: float | None = 300.0, sample_every_s: float = 60.0,
             seed: int = 0, progress=None, on_sample=None, partial=None) -> dict:
    """Feed ``hours`` of a simulated device stream through the runtime; see the module docstring.

    ``on_sample(t_s, rt, decoder)`` is called at every sample (tests use it to look inside);
    ``partial(result)`` every stream hour with the RSS figures so far (``"partial": True``),
    so that a soak stopped early still leaves what it measured.
    """
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.engine import StreamRuntime
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.runtime.run import stream_process

    say = progress or (lambda msg: None)
    bundle = bundle_load(bundle_path)
    dec = StreamDecoder()
    writer = CountingWriter()
    # (stream s, RSS MB, CPU s) per sample, allocated once: nothing here grows with the stream
    series = np.zeros((int(hours * 3600.0 / sample_every_s) + 8, 3))
    tracker = SizeTracker()
    state = {"rt": None, "next": 0.0, "fs": None, "lines": 0, "k": 0}
    old = {id(o) for o in gc.get_objects() if isinstance(o, StreamRuntime)}  # runtimes of earlier streams in this process
    t_cpu0, t_wall0 = time.process_time(), time.perf_counter()

    def sample(t_s: float) -> None:
        gc.collect()
        rt = state["rt"]
        tracker.update(t_s, {**(container_sizes(rt, "rt") if rt is not None else {}), **container_sizes(dec, "decoder")})
        k = min(state["k"], len(series) - 1)
        series[k] = (t_s, rss_mb(), time.process_time() - t_cpu0)
        state["k"] = k + 1
        if on_sample is not None:
            on_sample(t_s, rt, dec)

    def chunks():
        # the device runs in its own process and writes the stream to a pipe, as a serial
        # line would: the simulator's own memory (one segment at a time, tens of MB that come
        # and go) stays out of the RSS measured here
        argv = [sys.executable, "-m", "edgebp.bench.soak", "gen", "--hours", repr(hours), "--source", source,
                "--segment-minutes", repr(segment_minutes), "--seed", str(seed), "--faults", faults or "",
                "--cuff-every", repr(cuff_every_s or 0.0)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1 << 16)
        fs = None
        try:
            f = proc.stdout
            while True:
                buf, n = [], 0
                while n < packet:
                    ln = f.readline()
                    if not ln:
                        break
                    buf.append(ln)
                    if ln.startswith(b"#"):
                        if fs is None and b" fs=" in ln:
                            fs = state["fs"] = float(ln.split(b" fs=")[1].split()[0])
                        continue
                    n += 1
                if not buf:
                    break
                yield b"".join(buf)
                state["lines"] += n
                t_s = state["lines"] / (fs or 250.0)
                if t_s >= state["next"]:
                    if state["rt"] is None:  # the runtime stream_process made for this stream
                        state["rt"] = next((o for o in gc.get_objects() if isinstance(o, StreamRuntime) and id(o) not in old), None)
                    sample(t_s)
                    if int(t_s) % 3600 < sample_every_s:
                        say(f"soak: {t_s / 3600:.2f} h of {hours:g} h, RSS {series[state['k'] - 1, 1]:.1f} MiB")
                        if partial is not None and t_s > SETTLE_S:
                            partial({**rss_figures(series[:state["k"]]), "partial": True, "hours_done": t_s / 3600, "hours": hours,
                                     "cpu_seconds": time.process_time() - t_cpu0, "packet_samples": packet,
                                     "growing_containers": tracker.growing()})
                    state["next"] += sample_every_s
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:
                raise RuntimeError(f"the soak's device simulator failed: {(err.strip().splitlines() or ['no output'])[-1]}")

    summary = stream_process(chunks(), bundle, dec, writer=writer)
    sample(state["lines"] / (state["fs"] or 250.0))
    cpu, wall = time.process_time() - t_cpu0, time.perf_counter() - t_wall0
    rows = series[:state["k"]]
    grew = tracker.growing()
    d = summary["decoder"]
    res = {"hours": hours, "bundle": bundle_path, "source": source, "packet_samples": packet, "segment_minutes": segment_minutes,
           "faults": faults, "cuff_every_s": cuff_every_s, "signal_seconds": summary.get("signal_seconds"),
           "cpu_seconds": cpu, "wall_seconds": wall,
           "real_time_factor": (summary.get("signal_seconds") or 0.0) / cpu if cpu > 0 else None,
           **rss_figures(rows), "partial": False,
           "growing_containers": grew,
           "largest_containers_after_10min": dict(sorted(tracker.after.items(), key=lambda kv: -kv[1])[:12]),
           "outputs": {"rows": writer.rows, "valid": writer.valid, "beats": writer.beats},
           "accounting": {"samples_parsed": d.get("samples_parsed"), "samples_rejected": d.get("samples_rejected"),
                          "samples_missing": d.get("samples_missing"), "outputs": summary.get("outputs"),
                          "cuff_readings": summary.get("cuff_readings"), "calibration_history_kept": len(summary.get("calibration_history", []))},
           "rss_series": [[round(float(r[0]), 1), round(float(r[1]), 2), round(float(r[2]), 2)] for r in rows],
           "torch_loaded": "torch" in sys.modules}
    return res


#: The parts of ``edgebp bench`` run here rather than by the suite.
EXTRA_PARTS = ("serve", "soak", "startup")


def extra_parts_run(parts: list[str], report_dir: str, bundle: str = "default", soak_hours: float = 24.0, serve_minutes: float = 0.5,
                    serve_streams=(1, 8, 64), repeats: int = 3, cache_dir: str | None = None, sim_source: str = "synth:901",
                    progress=None) -> dict:
    """``edgebp bench --parts serve,soak,startup``: each in a torch-free child process; writes
    ``serve.json`` / ``soak.json`` / ``startup.json`` into ``report_dir`` and returns ``{part: result}``."""
    from pathlib import Path

    from edgebp.bench.anchor import bench_cache_dir
    from edgebp.bench.streaming import child_run, command_text, sim_log

    say = progress or (lambda msg: None)
    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    logs = (Path(cache_dir) if cache_dir else bench_cache_dir()) / "logs"

    def child_part(name: str, argv: list[str], timeout_s: float, shown: list[str], log_cmd: str | None = None) -> None:
        """Run one part's child; its JSON (``--out``, the last two arguments) with the command
        as a reader would type it (``shown``) goes into ``results`` and back to the file."""
        out = Path(argv[-1])
        r = child_run(argv, timeout_s=timeout_s)
        if r["returncode"] != 0 or not out.exists():
            raise RuntimeError(f"{command_text(argv)} failed: {(r['stderr'].strip().splitlines() or ['no output'])[-1]}")
        res = json.loads(out.read_text())
        if log_cmd is not None:
            res["log_command"] = log_cmd
        res["command"] = command_text(shown)
        out.write_text(json.dumps(res, indent=1))
        results[name] = res

    if "serve" in parts:
        log_path, log_cmd = sim_log(serve_minutes, logs, sim_source)
        argv = [sys.executable, "-m", "edgebp.bench.live", "serve", "--bundle", bundle, "--log", str(log_path),
                "--streams", ",".join(map(str, serve_streams)), "--repeats", str(repeats), "--out", str(out_dir / "serve.json")]
        say(f"serve: {', '.join(map(str, serve_streams))} streams of a {serve_minutes:g}-min log in 5-sample packets, {repeats} rounds")
        child_part("serve", argv, 7200, argv[:7] + ["serial.log"] + argv[8:-2], log_cmd)
    if "soak" in parts:
        argv = [sys.executable, "-m", "edgebp.bench.soak", "--hours", repr(soak_hours), "--packet", "250", "--bundle", bundle,
                "--out", str(out_dir / "soak.json")]
        say(f"soak: {soak_hours:g} h of a simulated live stream through the runtime")
        child_part("soak", argv, max(3600.0, soak_hours * 3600.0), argv[:-2])
    if "startup" in parts:
        log_path, log_cmd = sim_log(10.0, logs, sim_source)
        n = max(repeats, 3) + 2
        argv = [sys.executable, "-m", "edgebp.bench.startup", "--bundle", bundle, "--log", str(log_path), "--rounds", str(n),
                "--out", str(out_dir / "startup.json")]
        say(f"startup: edgebp run's first output and peak RSS, ahead-of-time kernels against numba's JIT, {n} rounds")
        child_part("startup", argv, 7200, argv[:6] + ["serial.log"] + argv[7:-2], log_cmd)
    return results


def extra_parts_text(results: dict) -> str:
    """A few lines for the terminal."""
    lines = []
    if "serve" in results:
        r = results["serve"]
        for row in r["rows"]:
            lines.append(f"serve N={row['streams']:<3} {'batched' if row['batch'] else 'unbatched'}: {row['per_sample_us']:.1f} us CPU per device sample, "
                         f"per stream {row['per_stream_over_n1']:.2f}x N=1 (whole process {row['process_per_stream_over_n1']:.2f}x), "
                         f"RSS +{row['rss_growth_mb']:.1f} MiB" + (f" ({row['mb_per_extra_stream']:.2f} MiB per extra stream)" if row["mb_per_extra_stream"] is not None else ""))
    if "soak" in results:
        r = results["soak"]
        lines.append(f"soak {r['hours']:g} h: RSS {r['rss_at_10min_mb']:.1f} MiB at 10 min -> {r['rss_end_mb']:.1f} MiB at the end "
                     f"({r['rss_growth_mb']:+.2f} MiB; goal < 4.77 MiB (5 MB): {'met' if r['met'] else 'not judged: shorter than 10 min' if r['met'] is None else 'NOT met'}); "
                     f"growing containers: {r['growing_containers'] or 'none'}")
    if "startup" in results:
        from edgebp.bench.startup import startup_text

        lines.append(startup_text(results["startup"]))
    return "\n".join(lines)


def gen_main(argv: list[str]) -> int:
    """The simulated device of a soak: :func:`device_stream`'s bytes to standard output."""
    from edgebp.firmware_sim.cuff import CuffSpec
    from edgebp.firmware_sim.simulate import device_stream, sim_source_load

    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.soak gen")
    ap.add_argument("--hours", type=float, required=True)
    ap.add_argument("--source", default="synth:901")
    ap.add_argument("--segment-minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faults", default="")
    ap.add_argument("--cuff-every", type=float, default=0.0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    record = sim_source_load(a.source, a.segment_minutes)
    cuff = CuffSpec(every_s=a.cuff_every) if a.cuff_every > 0 else None
    out = sys.stdout.buffer
    try:
        for seg in device_stream(record, a.hours * 3600.0, a.segment_minutes * 60.0, faults=a.faults or None, baud=0, seed=a.seed, cuff=cuff):
            out.write(seg.stream)
        out.flush()
    except BrokenPipeError:  # the reader stopped early
        return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gen"]:
        return gen_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.soak", description="A long simulated live stream through the runtime; RSS over time.")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--source", default="synth:901", help="The simulator's source (edgebp sim --source).")
    ap.add_argument("--packet", type=int, default=250, help="Sample lines per read (250 = 1 s packets at 250 Hz, a gateway batching a device).")
    ap.add_argument("--segment-minutes", type=float, default=10.0)
    ap.add_argument("--sample-every", type=float, default=60.0, help="Stream seconds between RSS samples.")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.hours <= 0 or a.packet < 1:
        ap.error("--hours must be > 0 and --packet >= 1")
    logging.basicConfig(level=logging.WARNING)
    def partial(res: dict) -> None:
        if a.out:
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1, default=float)

    res = soak_run(a.hours, a.bundle, a.source, a.packet, a.segment_minutes, sample_every_s=a.sample_every,
                   progress=lambda m: print(m, file=sys.stderr, flush=True), partial=partial)
    json_emit(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
