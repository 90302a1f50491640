"""Streaming benchmarks: the whole ``edgebp run`` path on a simulated 250 Hz ECG + PPG log.

Everything here runs in subprocesses with no torch loaded, and each child's own peak RSS is
the kernel's ``ru_maxrss`` of exactly that child:

* :func:`child_run`: any command, with its own peak RSS (see there why a launcher is used);
* :func:`run_measure`: ``edgebp run BUNDLE --stream serial.log`` as a user would run it;
  real-time factor and per-sample cost from its summary, peak RSS from the kernel, and the
  process's own wall time including interpreter start and imports;
* :func:`worker_measure`: :mod:`edgebp.bench.worker` with K streams interleaved in one process
  (concurrency, output latency at the device rate);
* :func:`sim_log`: the simulated device log, made once per length by ``edgebp sim`` and cached.

Examples
--------
>>> r = child_run([sys.executable, "-c", "print('hi')"])
>>> r["returncode"], r["stdout"].strip(), r["max_rss_mb"] > 0
(0, 'hi', True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import edgebp

log = logging.getLogger(__name__)

#: Default simulated device: a synthetic subject outside any synth training cohort's range.
SIM_SOURCE = "synth:901"


def command_text(argv: list[str]) -> str:
    """A shell command line for a report: ``python -m edgebp X`` shown as ``edgebp X``."""
    argv = list(argv)
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] == "edgebp":
        argv = ["edgebp"] + argv[3:]
    elif len(argv) >= 2 and argv[0] == sys.executable and argv[1] == "-m":
        argv = ["python", "-m"] + argv[2:]
    return shlex.join(str(a) for a in argv)


# A small interpreter runs the measured command as its own child and reports that child's
# rusage. Linux carries the RSS high-water mark of a forked process across exec, so a child
# forked straight from the bench (hundreds of MB, with ONNX Runtime and maybe torch loaded)
# would report at least the bench's size; forked from this ~10 MB launcher it reports its own.
_LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[2:])\n"
    "wall = time.perf_counter() - t0\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump({'maxrss': ru.ru_maxrss, 'utime': ru.ru_utime, 'stime': ru.ru_stime, 'wall': wall}, f)\n"
    "sys.exit(p.returncode)\n"
)


def child_run(argv: list[str], timeout_s: float = 3600.0, cwd: str | Path | None = None, env: dict | None = None) -> dict:
    """Run a command to the end; its exit code, wall time, output and its own peak RSS.

    The command runs as the child of a tiny launcher interpreter that reads
    ``getrusage(RUSAGE_CHILDREN)`` once the command has exited: the kernel's ``ru_maxrss`` of
    exactly that process (not inflated by the bench's own memory, which a direct fork would
    carry over). Output goes to temporary files, so no pipe can fill up and stall it.

    Returns
    -------
    dict
        ``returncode``, ``wall_seconds`` (the command alone), ``max_rss_mb``, ``user_seconds``,
        ``system_seconds``, ``stdout``, ``stderr``, ``command``.
    """
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, tempfile.TemporaryDirectory(prefix="edgebp-bench-") as tmp:
        usage = Path(tmp) / "rusage.json"
        p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(usage), *[str(a) for a in argv]], stdout=fo, stderr=fe, cwd=cwd, env=env)
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise TimeoutError(f"{command_text(argv)}: no result after {timeout_s:.0f} s") from None
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
        if not usage.exists():
            raise RuntimeError(f"{command_text(argv)}: the launcher did not report ({_last_line(err)})")
        ru = json.loads(usage.read_text())
    # Linux reports ru_maxrss in kB (macOS in bytes)
    rss_mb = ru["maxrss"] / (1024.0 * 1024.0) if sys.platform == "darwin" else ru["maxrss"] / 1024.0
    return {"returncode": p.returncode, "wall_seconds": ru["wall"], "max_rss_mb": rss_mb, "user_seconds": ru["utime"],
            "system_seconds": ru["stime"], "stdout": out, "stderr": err, "command": command_text(argv)}


def _edgebp(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgebp", *args]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def sim_log(minutes: float, cache_dir: str | Path, source: str = SIM_SOURCE, fmt: str = "text") -> tuple[Path, str]:
    """A simulated 250 Hz ECG + PPG serial log of ``minutes`` (made once, then cached).

    Parameters
    ----------
    minutes : float
        Length (a ``record:`` source gives at most the record's length).
    cache_dir : str or Path
        Where logs are kept, named by their ``edgebp sim`` arguments and the edgebp version.
    source : str
        ``edgebp sim --source``: ``synth:SUBJECT`` (default) or ``record:PATH``.

    Returns
    -------
    (Path, str)
        The log file and the ``edgebp sim`` command that made it.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    base = ["sim", "--source", source, "--minutes", f"{minutes:g}", "--format", fmt, "--baud", "0", "--quiet"]
    key = hashlib.sha1(("|".join(base) + edgebp.__version__).encode()).hexdigest()[:10]
    stem = f"sim-{minutes:g}min-{fmt}-{key}"
    out, truth = cache / f"{stem}.log", cache / f"{stem}.truth.csv"
    argv = _edgebp(*base, "--out", str(out), "--truth", str(truth))
    shown = command_text(_edgebp(*base, "--out", "serial.log", "--truth", "truth.csv"))
    if out.exists() and out.stat().st_size > 0:
        return out, shown
    tmp = cache / f"{stem}.partial.log"
    res = child_run(_edgebp(*base, "--out", str(tmp), "--truth", str(truth)), timeout_s=3600)
    if res["returncode"] != 0 or not tmp.exists():
        raise RuntimeError(f"{command_text(argv)} failed: {_last_line(res['stderr'])}")
    tmp.replace(out)
    return out, shown


def run_measure(bundle: str, log_path: Path, variant: str = "int8", threads: int = 1, log_shown: str = "serial.log",
                bundle_shown: str | None = None) -> dict:
    """``edgebp run`` on a log, in a child process: RTF, per-sample cost, peak RSS.

    Returns
    -------
    dict
        ``real_time_factor`` and ``per_sample_us`` (processing only, from the run's summary),
        ``process_real_time_factor`` (the child's whole wall time, start-up and imports
        included), ``peak_rss_mb`` (kernel), ``signal_seconds``, ``samples``, ``outputs``,
        ``valid_share``, ``chunk_latency_ms``, ``command``.
    """
    with tempfile.TemporaryDirectory(prefix="edgebp-bench-run-") as tmp:
        summary = Path(tmp) / "summary.json"
        argv = _edgebp("run", str(bundle), "--stream", str(log_path), "--variant", variant, "--backend", "ort",
                       "--threads", str(threads), "--out", str(Path(tmp) / "bp.csv"), "--summary", str(summary))
        res = child_run(argv)
        if res["returncode"] != 0 or not summary.exists():
            raise RuntimeError(f"{command_text(argv)} failed: {_last_line(res['stderr'])}")
        s = json.loads(summary.read_text())
        out_bytes = (Path(tmp) / "bp.csv").stat().st_size if (Path(tmp) / "bp.csv").exists() else 0
    d = s.get("decoder", {})
    samples = int(d.get("samples_parsed", 0) + d.get("samples_missing", 0))
    shown = command_text(_edgebp("run", bundle_shown or str(bundle), "--stream", log_shown, "--variant", variant,
                                 "--threads", str(threads), "--out", "bp.csv", "--summary", "summary.json"))
    return {
        "variant": variant, "threads": threads, "signal_seconds": s.get("signal_seconds"), "samples": samples,
        "wall_seconds": s.get("wall_seconds"), "real_time_factor": s.get("real_time_factor"),
        "per_sample_us": (s["wall_seconds"] / samples * 1e6) if samples and s.get("wall_seconds") else None,
        "process_wall_seconds": res["wall_seconds"],
        "process_real_time_factor": (s.get("signal_seconds") or 0) / res["wall_seconds"] if res["wall_seconds"] > 0 else None,
        "peak_rss_mb": res["max_rss_mb"], "cpu_seconds": res["user_seconds"] + res["system_seconds"],
        "outputs": s.get("outputs"), "valid_share": s.get("valid_share"), "beats": s.get("beats"),
        "chunk_latency_ms": s.get("chunk_latency_ms"), "model_calls": s.get("model_calls"), "output_bytes": out_bytes,
        "command": shown,
    }


def worker_measure(bundle: str, log_path: Path, variant: str = "int8", threads: int = 1, streams: int = 1, block: int = 250,
                   log_shown: str = "serial.log", bundle_shown: str | None = None) -> dict:
    """:mod:`edgebp.bench.worker` in a child process; its JSON plus the kernel's peak RSS.

    Raises
    ------
    RuntimeError
        The worker failed, or torch was loaded in it (the runtime must never need torch).
    """
    with tempfile.TemporaryDirectory(prefix="edgebp-bench-worker-") as tmp:
        out = Path(tmp) / "w.json"
        base = ["--variant", variant, "--threads", str(threads), "--streams", str(streams), "--block", str(block)]
        argv = [sys.executable, "-m", "edgebp.bench.worker", "--bundle", str(bundle), "--log", str(log_path), *base, "--out", str(out)]
        res = child_run(argv)
        if res["returncode"] != 0 or not out.exists():
            raise RuntimeError(f"{command_text(argv)} failed: {_last_line(res['stderr'])}")
        w = json.loads(out.read_text())
    if w.get("torch_loaded"):
        raise RuntimeError("the streaming worker loaded torch: the runtime path must stay torch-free")
    w["peak_rss_mb"] = res["max_rss_mb"]
    w["process_wall_seconds"] = res["wall_seconds"]
    w["command"] = command_text([sys.executable, "-m", "edgebp.bench.worker", "--bundle", bundle_shown or str(bundle),
                                 "--log", log_shown, *base])
    return w


def imports_rss() -> dict:
    """Peak RSS of a child that only imports the runtime (Python, numpy, numba, ONNX Runtime)."""
    argv = [sys.executable, "-m", "edgebp.bench.worker", "--imports-only"]
    res = child_run(argv, timeout_s=300)
    if res["returncode"] != 0:
        raise RuntimeError(f"{command_text(argv)} failed: {_last_line(res['stderr'])}")
    w = json.loads(res["stdout"])
    return {"peak_rss_mb": res["max_rss_mb"], "torch_loaded": w["torch_loaded"], "command": command_text(argv)}


def streaming_bench(bundle: str, variants: list[str], cache_dir: Path, minutes_main: float, lengths_min: list[float],
                    concurrency: list[int], threads: int = 1, block: int = 250, packet: int = 5,
                    bundle_shown: str | None = None, progress=None, sim_source: str = SIM_SOURCE) -> dict:
    """The streaming section of a bench, for one bundle.

    Parameters
    ----------
    bundle : str
        Bundle directory or ``"default"``.
    variants : list of str
        Runtime variants to stream (``int8``, ``fp32``).
    cache_dir : Path
        Where simulated logs are kept.
    minutes_main : float
        Log length for the per-variant runs, the output latency and the concurrency runs.
    lengths_min : list of float
        Log lengths for the cost-growth runs (``edgebp run``, first variant; a run of the
        main length and variant is reused, not repeated).
    concurrency : list of int
        Numbers of streams interleaved in one process.
    threads : int
        ONNX Runtime intra-op threads per stream.
    block : int
        Device samples per push in the concurrency runs (a gateway's read size).
    packet : int
        Device samples per push for the output-latency run (one radio/UART packet).

    Returns
    -------
    dict
        ``logs``, ``imports``, ``runs`` (per variant), ``output_latency`` (per variant),
        ``length_growth``, ``concurrency``, ``streams_per_core``.
    """
    say = progress or (lambda msg: None)
    res: dict = {"settings": {"minutes": minutes_main, "lengths_min": lengths_min, "concurrency": concurrency, "threads": threads,
                              "block_samples": block, "packet_samples": packet, "sim_source": sim_source}}
    logs = {}
    for m in sorted(set([minutes_main, *lengths_min])):
        say(f"simulating a {m:g} min device log")
        logs[m] = sim_log(m, cache_dir, sim_source)
    res["logs"] = {f"{m:g}": {"path": str(p), "bytes": p.stat().st_size, "command": c} for m, (p, c) in logs.items()}
    res["imports"] = imports_rss()
    main_log, main_cmd = logs[minutes_main]
    shown = f"serial-{minutes_main:g}min.log"
    res["runs"] = {}
    res["output_latency"] = {}
    for v in variants:
        say(f"edgebp run --variant {v} on {minutes_main:g} min")
        r = run_measure(bundle, main_log, v, threads, log_shown=shown, bundle_shown=bundle_shown)
        r["log_command"] = main_cmd.replace("serial.log", shown)
        res["runs"][v] = r
        say(f"output latency, {v}, {packet}-sample packets")
        w = worker_measure(bundle, main_log, v, threads, 1, packet, log_shown=shown, bundle_shown=bundle_shown)
        res["output_latency"][v] = w
    v0 = variants[0]
    growth = []
    for m in lengths_min:
        p, c = logs[m]
        if m == minutes_main:
            r = dict(res["runs"][v0])
        else:
            say(f"cost growth: edgebp run on {m:g} min")
            r = run_measure(bundle, p, v0, threads, log_shown=f"serial-{m:g}min.log", bundle_shown=bundle_shown)
            r["log_command"] = c.replace("serial.log", f"serial-{m:g}min.log")
        r["minutes"] = m
        growth.append(r)
    # the fixed start-up (session, cached kernels) is amortised over the stream: the marginal cost
    # between two lengths is the steady-state cost per sample
    for prev, cur in zip(growth, growth[1:]):
        ds = (cur["samples"] or 0) - (prev["samples"] or 0)
        dw = (cur["wall_seconds"] or 0) - (prev["wall_seconds"] or 0)
        cur["marginal_per_sample_us"] = dw / ds * 1e6 if ds > 0 else None
        cur["rss_growth_mb"] = cur["peak_rss_mb"] - prev["peak_rss_mb"]
    if growth:
        growth[0]["marginal_per_sample_us"] = None
        growth[0]["rss_growth_mb"] = None
    res["length_growth"] = growth
    conc = []
    for k in concurrency:
        say(f"concurrency: {k} streams in one process")
        w = worker_measure(bundle, main_log, v0, threads, k, block, log_shown=shown, bundle_shown=bundle_shown)
        conc.append(w)
    res["concurrency"] = conc
    rtf1 = res["runs"][v0]["real_time_factor"]
    sustained = [c["streams"] for c in conc if c["sustained"]]
    per_stream_mb = None
    if len(conc) >= 2:
        import numpy as np

        k = np.array([c["streams"] for c in conc], float)
        rss = np.array([c["peak_rss_mb"] for c in conc], float)
        per_stream_mb = float(np.polyfit(k, rss, 1)[0]) if np.ptp(k) > 0 else None
    res["streams_per_core"] = {
        "variant": v0,
        "from_real_time_factor": rtf1,
        "measured_max_sustained": max(sustained) if sustained else 0,
        "measured_levels": [c["streams"] for c in conc],
        "throughput_at_largest": conc[-1]["aggregate_real_time_factor"] if conc else None,
        "memory_per_stream_mb": per_stream_mb,
        "note": ("one core, one ONNX Runtime thread per stream: the real-time factor of one stream is the number of "
                 "device streams one core could serve; 'measured' interleaves K streams in one process"),
    }
    return res
