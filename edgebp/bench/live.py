"""The live path's cost: a device log replayed as a device sends it, through ``edgebp run``'s own
:func:`edgebp.runtime.run.stream_process`, in packets of 1, 5, 25 and 250 samples and in bulk.

A packet of ``k`` samples is ``k`` whole sample lines (header and cuff lines travel with the
samples after them), what a UART or BLE gateway hands over every ``k / fs`` seconds; bulk is
64 kB reads of the file (``edgebp run --stream FILE``). For each packet size and variant the
CPU time of the whole run (``time.process_time``: decoding, gates, preprocessing, the model,
beats, accounting, the ONNX Runtime session's creation) is divided by the device samples, and
the outputs (every point-wise row, every beat, the summary's counts) are hashed: they must be
the same for every packet size.

In the same process, interleaved with those runs so that the machine's load falls on all of
them alike:

* ``step``: ONNX Runtime alone on the runtime's step (the streaming model's chunk), int8
  against fp32, CPU per call, as the runtime calls it (``OrtBackend.step``, the states in
  bound buffers) and as a plain ``session.run``;
* ``plain``: :mod:`edgebp.bench.plain_reference` (numpy decode, scipy filters, ONNX Runtime in
  blocks of the same step, no quality handling) on the same log.

Run by ``edgebp bench --parts live`` in a torch-free child process; by hand::

    python -m edgebp.bench.live --bundle default --log serial.log --packets 1,5,25,250 --out live.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from edgebp.jsonsafe import json_emit

PACKETS = (1, 5, 25, 250)
BULK_BYTES = 65536


def log_packets(data: bytes, k: int) -> list[bytes]:
    """``data`` cut into reads of ``k`` sample lines each; ``#`` lines go with the samples after them.

    Examples
    --------
    >>> log_packets(b"#EDGEBP v=1\\n0,1\\n1,2\\n#CUFF sbp=1 dbp=0\\n2,3\\n", 2)
    [b'#EDGEBP v=1\\n0,1\\n1,2\\n', b'#CUFF sbp=1 dbp=0\\n2,3\\n']
    """
    if k < 1:
        raise ValueError(f"packets hold at least one sample, got {k}")
    out: list[bytes] = []
    buf: list[bytes] = []
    n = 0
    for line in data.splitlines(keepends=True):
        buf.append(line)
        if not line.startswith(b"#"):
            n += 1
            if n == k:
                out.append(b"".join(buf))
                buf, n = [], 0
    if buf:
        out.append(b"".join(buf))
    return out


def bulk_reads(data: bytes, size: int = BULK_BYTES) -> list[bytes]:
    """``data`` in reads of ``size`` bytes (what ``edgebp run --stream FILE`` reads)."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def outputs_digest(summary: dict) -> tuple[str, dict]:
    """A hash of everything a run gives: point-wise rows, beat rows, and the summary's counts."""
    h = hashlib.sha256()
    outs = summary.get("_outputs", [])
    n_rows = sum(len(o.t) for o in outs)
    for name, dt in (("t", np.float64), ("abp", np.float64), ("valid", np.bool_), ("reason", np.int8)):
        # the concatenation: how the rows were cut into blocks does not enter the hash
        h.update(np.concatenate([np.asarray(getattr(o, name), dtype=dt) for o in outs] or [np.zeros(0, dt)]).tobytes())
    for o in outs:
        for b in o.beats:
            h.update(repr(sorted((k, float(v).hex() if isinstance(v, (float, np.floating)) else v) for k, v in b.items())).encode())
    counts = {"decoder": summary.get("decoder"), **{k: summary.get(k) for k in ("outputs", "valid", "invalid_reasons", "beats", "model_calls",
                                                                               "resets", "interpolated_samples", "cuff_readings", "cuff_rejected")}}
    h.update(json.dumps(counts, sort_keys=True, default=str).encode())
    counts["rows"] = n_rows
    return h.hexdigest()[:16], counts


def live_once(bundle, chunks: list[bytes], variant: str = "int8", threads: int = 1) -> dict:
    """One run of ``stream_process`` over ``chunks``; CPU seconds and the outputs' hash."""
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.runtime.run import stream_process

    dec = StreamDecoder(fmt="auto")
    t0 = time.process_time()
    s = stream_process(iter(chunks), bundle, dec, variant=variant, threads=threads, collect=True)
    cpu = time.process_time() - t0
    d = s["decoder"]
    n = int(d.get("samples_parsed", 0) + d.get("samples_missing", 0))
    digest, counts = outputs_digest(s)
    return {"cpu_seconds": cpu, "device_samples": n, "signal_seconds": s.get("signal_seconds"), "digest": digest, "counts": counts,
            "chunk_latency_ms": s.get("chunk_latency_ms")}


def step_cpu(bundle, variant: str, threads: int = 1, calls: int = 400, bound: bool = True) -> float:
    """CPU seconds per ONNX Runtime call of the streaming model on one runtime step (state
    carried): as the runtime calls it (``OrtBackend.step``, the states in bound buffers), or
    with ``bound=False`` as a plain ``session.run`` with the states as feeds (and the time
    axis left free, as a plain session has it)."""
    from edgebp.runtime.backends import STREAM_TIME_DIM, backend_open

    m = bundle.manifest
    st = m["streaming"]
    be = backend_open("ort", bundle.file(st["file_keys"][variant]), threads=threads, precision=variant,
                      dims={STREAM_TIME_DIM: int(st["chunk"])} if bound else None)
    names = [s["name"] for s in st["states"]]
    states = [np.zeros(s["shape"], np.float32) for s in st["states"]]
    x = np.random.default_rng(0).standard_normal((1, len(m["inputs"]), int(st["chunk"]))).astype(np.float32)

    def call(states):
        if bound:
            return be.step(x, states, names)[1]
        return be.run({be.input_names[0]: x} | dict(zip(names, states)))[1:]

    for _ in range(20):
        states = call(states)
    t0 = time.process_time()
    for _ in range(calls):
        states = call(states)
    return (time.process_time() - t0) / calls


def live_measure(bundle_path: str, log: str, packets=PACKETS, variants=("int8", "fp32"), repeats: int = 3, threads: int = 1,
                 plain: bool = True, warmup_s: float = 20.0) -> dict:
    """Every packet size and variant, ``repeats`` rounds interleaved; see the module docstring."""
    from edgebp.runtime.bundle import bundle_load

    bundle = bundle_load(bundle_path)
    m = bundle.manifest
    data = open(log, "rb").read()
    configs = [(v, k) for v in variants for k in [*packets, 0]]  # 0 = bulk
    chunks = {k: (log_packets(data, k) if k else bulk_reads(data)) for k in [*packets, 0]}
    # warm-up: numba's cached kernels load, ONNX Runtime allocates; not timed
    head = data[: int(warmup_s * float(m["fs"]) * 18)]
    head = head[: head.rfind(b"\n") + 1]  # whole lines: no truncated last line to warn about
    for v in variants:
        live_once(bundle, log_packets(head, 5), v, threads)
    runs: dict = {c: [] for c in configs}
    steps: dict = {v: [] for v in variants} if m.get("streaming") else {}
    plain_steps: dict = {v: [] for v in variants}
    plains: dict = {v: [] for v in variants}
    for _ in range(repeats):
        for c in configs:
            runs[c].append(live_once(bundle, chunks[c[1]], c[0], threads))
        for v in steps:
            steps[v].append(step_cpu(bundle, v, threads))
            plain_steps[v].append(step_cpu(bundle, v, threads, bound=False))
        if plain and m.get("streaming"):
            from edgebp.bench.plain_reference import plain_measure

            for v in variants:
                plains[v].append(plain_measure(log, bundle_path, v, threads))
    fs = None
    rows = []
    for (v, k), rs in runs.items():
        cpu = np.array([r["cpu_seconds"] for r in rs])
        n = rs[0]["device_samples"]
        sig = rs[0]["signal_seconds"] or 0.0
        fs = n / sig if sig else fs
        med = float(np.median(cpu))
        rows.append({"variant": v, "packet_samples": k or None, "read": f"{k} samples" if k else f"{BULK_BYTES} bytes (bulk)",
                     "device_samples": n, "signal_seconds": sig, "cpu_seconds": cpu.tolist(),
                     "per_sample_us": med / n * 1e6 if n else None, "per_sample_us_min": float(cpu.min()) / n * 1e6 if n else None,
                     "real_time_factor": sig / med if med > 0 else None,
                     "digest": rs[0]["digest"], "digests_same_over_repeats": len({r["digest"] for r in rs}) == 1,
                     "counts": rs[0]["counts"], "chunk_latency_ms": rs[0]["chunk_latency_ms"]})
    identical = {v: len({r["digest"] for r in rows if r["variant"] == v}) == 1 for v in variants}
    res: dict = {"bundle": str(bundle.path), "log": log, "log_bytes": len(data), "variants": list(variants), "packets": list(packets),
                 "repeats": repeats, "threads": threads, "device_fs": fs, "rows": rows, "identical_across_packets": identical,
                 "torch_loaded": "torch" in sys.modules}
    if steps:
        st = {v: float(np.median(x)) for v, x in steps.items()}
        res["step"] = {"chunk": int(m["streaming"]["chunk"]), "cpu_us_per_call": {v: x * 1e6 for v, x in st.items()},
                       "cpu_us_per_call_all": {v: [y * 1e6 for y in x] for v, x in steps.items()},
                       "int8_over_fp32": st["int8"] / st["fp32"] if "int8" in st and "fp32" in st and st["fp32"] > 0 else None,
                       "plain_run_us_per_call": {v: float(np.median(x)) * 1e6 for v, x in plain_steps.items() if x}}
    if any(plains.values()):
        res["plain"] = {}
        for v, ps in plains.items():
            us = float(np.median([p["per_sample_us"] for p in ps]))
            mine = next(r for r in rows if r["variant"] == v and r["packet_samples"] is None)
            res["plain"][v] = {"per_sample_us": us, "runs_us": [p["per_sample_us"] for p in ps], "step": ps[0]["step"],
                               "edgebp_bulk_over_plain": mine["per_sample_us"] / us if us > 0 else None,
                               "command": f"python scripts/plain_reference.py serial.log --variant {v}"}
    try:
        import os

        res["load_average"] = list(os.getloadavg())
    except OSError:
        res["load_average"] = None
    return res


# ----------------------------------------------------------------------------- serve
SERVE_STREAMS = (1, 8, 64)


def _rss_mb() -> float:
    """This process's resident set now (MiB, 1 MiB = 2**20 B, as every size in edgebp), from /proc (Linux)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def serve_once(bundle_path: str, log: str, n: int, packet: int = 5, batch: bool = True, warm: bool = True) -> dict:
    """``n`` file streams of ``log`` through one :class:`~edgebp.runtime.serve.Server`, each read
    ``packet`` sample lines' worth of bytes at a time (what a device delivers every
    ``packet / fs`` s); the process CPU of the serving alone (imports, the bundle's load and a
    warm-up stream are before it), and the RSS sampled every 20 ms during it against the RSS
    just before it. Every stream's outputs must hash the same (they read the same bytes)."""
    import tempfile
    import threading
    from pathlib import Path

    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.serve import Server, ServeOptions, parse_spec

    bundle = bundle_load(bundle_path)
    data = open(log, "rb").read()
    lines = [ln for ln in data.splitlines() if ln and not ln.startswith(b"#")]
    read_size = max(1, round(packet * sum(len(ln) + 1 for ln in lines[:2000]) / min(len(lines), 2000)))
    with tempfile.TemporaryDirectory(prefix="edgebp-bench-serve-") as tmp:
        if warm:  # numba's cached kernels, ONNX Runtime's first allocations: not measured
            head = Path(tmp) / "warm.log"
            cut = data[:200_000]
            head.write_bytes(cut[: cut.rfind(b"\n") + 1])
            warm_server = Server(bundle, [parse_spec(f"file:{head}")], Path(tmp) / "warm", ServeOptions(read_size=read_size, batch=batch))
            warm_server.run()
        import gc

        gc.collect()
        rss0 = _rss_mb()
        peak = [rss0]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.02):
                peak[0] = max(peak[0], _rss_mb())

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        out = Path(tmp) / "out"
        server = Server(bundle, [parse_spec(f"file:{log}") for _ in range(n)], out, ServeOptions(read_size=read_size, batch=batch))
        if warm and batch:
            # the batched session (made, and checked against batch 1, once per server) is a
            # start-up cost like the imports: the warm server's is reused
            server.batched = warm_server.batched
            for b in server.batched.batchers.values():
                b.stats = dict.fromkeys(b.stats, 0)
        t0, w0 = time.process_time(), time.perf_counter()
        overall = server.run()
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        stop.set()
        th.join()
        peak[0] = max(peak[0], _rss_mb())
        digests, samples = set(), 0
        for st in overall["streams"]:
            h = hashlib.sha256()
            for name in (st["outputs"], st["outputs"][:-4] + ".beats.csv"):
                h.update(b"".join(ln for ln in (out / name).read_bytes().splitlines(keepends=True) if not ln.startswith(b"#")))
            digests.add(h.hexdigest()[:16])
            samples += int((st["samples_parsed"] or 0) + (st["samples_missing"] or 0))
            if st.get("error"):
                raise RuntimeError(f"stream {st['name']}: {st['error']}")
    return {"streams": n, "packet_samples": packet, "read_bytes": read_size, "batch": batch, "cpu_seconds": cpu, "wall_seconds": wall,
            "device_samples": samples, "per_stream_cpu_s": cpu / n, "per_sample_us": cpu / max(samples, 1) * 1e6,
            "rss_before_mb": rss0, "rss_peak_mb": peak[0], "rss_growth_mb": peak[0] - rss0,
            "outputs_identical_across_streams": len(digests) == 1, "digest": sorted(digests)[0] if digests else None,
            "inference_batching": overall["inference_batching"]}


def serve_measure(bundle_path: str, log: str, streams=SERVE_STREAMS, repeats: int = 3, packet: int = 5, unbatched: bool = True,
                  timeout_s: float = 3600.0) -> dict:
    """:func:`serve_once` for every stream count (and unbatched at the largest), each in its own
    torch-free child process, the configurations interleaved round by round so the machine's
    load falls on all of them alike; medians over ``repeats``."""
    import os
    import subprocess
    import tempfile

    configs = [(n, True) for n in streams] + ([(max(streams), False)] if unbatched else [])
    runs: dict = {c: [] for c in configs}
    for _ in range(repeats):
        for n, b in configs:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
            argv = [sys.executable, "-m", "edgebp.bench.live", "serve-child", "--bundle", bundle_path, "--log", log, "--streams", str(n),
                    "--packet", str(packet), "--out", path] + ([] if b else ["--no-batch"])
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
            if r.returncode != 0:
                raise RuntimeError(f"serve bench child (N={n}) failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
            runs[(n, b)].append(json.loads(open(path).read()))
            os.unlink(path)
    rows = []
    for (n, b), rs in runs.items():
        per = [r["per_stream_cpu_s"] for r in rs]
        rows.append({"streams": n, "batch": b, "per_stream_cpu_s": float(np.median(per)), "per_stream_cpu_s_all": per,
                     "per_sample_us": float(np.median([r["per_sample_us"] for r in rs])),
                     "rss_growth_mb": float(np.median([r["rss_growth_mb"] for r in rs])), "rss_growth_mb_all": [r["rss_growth_mb"] for r in rs],
                     "rss_before_mb": float(np.median([r["rss_before_mb"] for r in rs])),
                     "process_cpu_per_stream_s": float(np.median([r["process_cpu_seconds"] / n for r in rs])),
                     "device_samples": rs[0]["device_samples"], "read_bytes": rs[0]["read_bytes"],
                     "outputs_identical_across_streams": all(r["outputs_identical_across_streams"] for r in rs),
                     "digest": rs[0]["digest"], "inference_batching": rs[0]["inference_batching"]})
    base = next(r for r in rows if r["streams"] == min(streams) and r["batch"])
    for r in rows:
        r["per_stream_over_n1"] = r["per_stream_cpu_s"] / base["per_stream_cpu_s"]
        r["process_per_stream_over_n1"] = r["process_cpu_per_stream_s"] / base["process_cpu_per_stream_s"]
        r["mb_per_extra_stream"] = (r["rss_growth_mb"] - base["rss_growth_mb"]) / (r["streams"] - base["streams"]) if r["streams"] > base["streams"] else None
    big = next(r for r in rows if r["streams"] == max(streams) and r["batch"])
    res = {"bundle": bundle_path, "log": log, "packet_samples": packet, "repeats": repeats, "rows": rows,
           "outputs_identical_across_configs": len({r["digest"] for r in rows}) == 1,
           "goals": {"per_stream_at_max_over_n1": big["per_stream_over_n1"], "per_stream_goal": 0.25,
                     "process_per_stream_at_max_over_n1": big["process_per_stream_over_n1"],
                     "per_stream_met": big["per_stream_over_n1"] <= 0.25,
                     "mb_per_extra_stream": big["mb_per_extra_stream"], "mb_goal": 1e6 / 2**20,  # the 1 MB (SI) in MiB
                     "mb_met": big["mb_per_extra_stream"] is not None and big["mb_per_extra_stream"] <= 1e6 / 2**20},
           "torch_loaded": "torch" in sys.modules}
    try:
        res["load_average"] = list(os.getloadavg())
    except OSError:
        res["load_average"] = None
    return res


def serve_child_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.live serve-child")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--log", required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--packet", type=int, default=5)
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    res = serve_once(a.bundle, a.log, a.streams, a.packet, batch=not a.no_batch)
    # the whole process: interpreter start, imports, the bundle, the warm-up stream, serving:
    # what N streams cost in one `edgebp serve` against N `edgebp run` processes
    res["process_cpu_seconds"] = time.process_time()
    res["torch_loaded"] = "torch" in sys.modules
    with open(a.out, "w") as f:
        json.dump(res, f)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-child"]:
        return serve_child_main(argv[1:])
    if argv[:1] == ["serve"]:
        ap = argparse.ArgumentParser(prog="python -m edgebp.bench.live serve", description="edgebp serve's CPU and RSS per stream at N streams.")
        ap.add_argument("--bundle", default="default")
        ap.add_argument("--log", required=True)
        ap.add_argument("--streams", default=",".join(map(str, SERVE_STREAMS)))
        ap.add_argument("--packet", type=int, default=5)
        ap.add_argument("--repeats", type=int, default=3)
        ap.add_argument("--no-unbatched", action="store_true", help="Leave out the unbatched run at the largest N.")
        ap.add_argument("--out", default=None)
        a = ap.parse_args(argv[1:])
        res = serve_measure(a.bundle, a.log, [int(x) for x in a.streams.split(",")], a.repeats, a.packet, unbatched=not a.no_unbatched)
        json_emit(res, a.out)
        return 0
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.live", description="edgebp run's cost per device sample, packet by packet.")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--log", required=True, help="An edgebp text log (edgebp sim).")
    ap.add_argument("--packets", default=",".join(map(str, PACKETS)), help="Samples per read, comma-separated (bulk is always added).")
    ap.add_argument("--variants", default="int8,fp32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-plain", action="store_true", help="Leave out the plain reference.")
    ap.add_argument("--out", default=None, help="Write the JSON here (default: stdout).")
    a = ap.parse_args(argv)
    packets = [int(x) for x in a.packets.split(",") if x.strip()]
    if any(k < 1 for k in packets) or a.repeats < 1:
        ap.error("--packets and --repeats must be >= 1")
    res = live_measure(a.bundle, a.log, packets, [v.strip() for v in a.variants.split(",") if v.strip()], a.repeats, a.threads,
                       plain=not a.no_plain)
    json_emit(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())


#: The real record the live part replays when it is on this machine (else the bench's --sim-source).
LIVE_RECORD = "challenge2015/f362s"


def live_source(default: str) -> str:
    """``record:PATH`` of :data:`LIVE_RECORD` under the data directories edgebp knows, else ``default``."""
    from pathlib import Path

    for base in (Path("data"), Path("../shared/data"), Path(__file__).resolve().parents[2] / "data",
                 Path(__file__).resolve().parents[3] / "shared" / "data"):
        p = base / LIVE_RECORD
        if p.with_suffix(".hea").exists():
            return f"record:{p}"
    return default


def live_bench(bundle: str, cache_dir, minutes: float, sim_source: str, repeats: int, threads: int = 1,
               packets=PACKETS, variants=("int8", "fp32"), bundle_shown: str | None = None, progress=None) -> dict:
    """The live part of ``edgebp bench`` for one bundle: a device log (made once by ``edgebp sim``),
    then :func:`live_measure` in a torch-free child process; the child's peak RSS beside it."""
    from pathlib import Path
    import tempfile

    from edgebp.bench.streaming import _last_line, child_run, command_text, sim_log

    say = progress or (lambda msg: None)
    src = live_source(sim_source)
    say(f"live: simulating a device log from {src}")
    log_path, log_cmd = sim_log(minutes, cache_dir, src)
    with tempfile.TemporaryDirectory(prefix="edgebp-bench-live-") as tmp:
        out = Path(tmp) / "live.json"
        base = ["--packets", ",".join(map(str, packets)), "--variants", ",".join(variants), "--repeats", str(repeats), "--threads", str(threads)]
        argv = [sys.executable, "-m", "edgebp.bench.live", "--bundle", str(bundle), "--log", str(log_path), *base, "--out", str(out)]
        say(f"live: packets of {', '.join(map(str, packets))} samples and bulk, {', '.join(variants)}, {repeats} rounds")
        r = child_run(argv, timeout_s=7200)
        if r["returncode"] != 0 or not out.exists():
            raise RuntimeError(f"{command_text(argv)} failed: {_last_line(r['stderr'])}")
        res = json.loads(out.read_text())
    if res.get("torch_loaded"):
        raise RuntimeError("the live bench loaded torch: the runtime path must stay torch-free")
    res["peak_rss_mb"] = r["max_rss_mb"]
    res["source"] = src
    res["log_command"] = log_cmd
    res["command"] = command_text([sys.executable, "-m", "edgebp.bench.live", "--bundle", bundle_shown or str(bundle), "--log", "serial.log", *base])
    line = res["log_bytes"] / max(sum(r["device_samples"] for r in res["rows"][:1]), 1)  # bytes per sample line
    res["edgebp_run_commands"] = {str(k or "bulk"): f"edgebp run {bundle_shown or bundle} --stream serial.log --read-size "
                                  + (f"{round(k * line)}  # about {k} sample(s) per read" if k else str(BULK_BYTES)) for k in [*packets, 0]}
    return res
