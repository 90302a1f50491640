"""The benchmark suite behind ``edgebp bench``: latency, streaming, memory, accuracy, anchors.

:func:`bench_run` measures everything a :class:`BenchConfig` asks for and returns one dict (the
content of ``bench.json``). Each figure carries the command that reproduces it.

Order matters for honest timings: all ONNX Runtime measurements run first, the streaming ones
in torch-free subprocesses, and anything that needs torch (the ``torch-fp32`` variant) comes
last, so torch's thread pools never share a process with an ONNX Runtime timing.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shlex
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import edgebp
from edgebp.bench.accuracy import variant_source_key
from edgebp.bench.latency import LatencyPlan

log = logging.getLogger(__name__)

SCHEMA = "edgebp-bench/1"
PARTS = ("latency", "streaming", "live", "memory", "accuracy", "anchors")
DEFAULT_VARIANTS = ("stream-int8", "torch-fp32", "ort-fp32", "ort-int8", "pruned", "tensorrt")
#: bench variant -> ``edgebp run --variant`` (the streaming runtime runs these two)
RUNTIME_VARIANTS = {"ort-int8": "int8", "ort-fp32": "fp32"}


@dataclass
class BenchConfig:
    """What one ``edgebp bench`` measures. See ``edgebp bench --help`` for each option."""

    bundles: list[str] = field(default_factory=lambda: ["default"])
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    threads: int = 1
    batch: int = 32
    repeat: int | None = None
    quick: bool = False
    data: str | None = None
    split: str = "auto"
    include_training: bool = False
    runs: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    anchors: list[str] = field(default_factory=lambda: ["msca-cssc-unet", "inn-par"])
    anchor_preset: str = "paper"
    stream_minutes: float | None = None
    lengths: list[float] | None = None
    concurrency: list[int] | None = None
    mcu: str = "nrf52832"
    sim_source: str = "synth:901"
    cache_dir: str | None = None
    report_dir: str = "bench"
    command: str = ""

    def __post_init__(self) -> None:
        for v in self.variants:
            variant_source_key(v)
        bad = [p for p in self.parts if p not in PARTS]
        if bad:
            raise ValueError(f"unknown part(s) {', '.join(bad)}; valid parts: {', '.join(PARTS)}")
        if self.split not in ("auto", "test", "all"):
            raise ValueError(f"split {self.split!r} is not valid; choose one of: auto, test, all")
        if self.include_training and self.split == "test":
            raise ValueError("--include-training goes with --split all or auto, not test")
        if self.threads < 1 or self.batch < 2:
            raise ValueError("threads must be >= 1 and batch >= 2 (batch 1 is always measured)")
        if self.repeat is not None and self.repeat < 1:
            raise ValueError("repeat must be >= 1")
        if self.repeat is None:
            self.repeat = 2 if self.quick else 5
        if self.stream_minutes is None:
            self.stream_minutes = 1.0 if self.quick else 10.0
        if self.lengths is None:
            self.lengths = [0.5, 1.0] if self.quick else [1.0, 10.0, 60.0]
        if self.concurrency is None:
            self.concurrency = [4] if self.quick else [1, 4, 16, 64]
        if any(k < 1 for k in self.concurrency):
            raise ValueError("concurrency levels must be >= 1")
        if any(m <= 0 for m in self.lengths) or self.stream_minutes <= 0:
            raise ValueError("stream lengths must be > 0 minutes")

    @property
    def plan(self) -> LatencyPlan:
        return LatencyPlan.quick(self.repeat) if self.quick else LatencyPlan(repeats=self.repeat)

    @property
    def thread_levels(self) -> list[int]:
        return sorted({self.threads, os.cpu_count() or 1})

    @property
    def cache(self) -> Path:
        from edgebp.bench.anchor import bench_cache_dir

        return Path(self.cache_dir) if self.cache_dir else bench_cache_dir()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thread_levels"] = self.thread_levels
        d["latency_plan"] = self.plan.to_dict()
        return d


class _Log:
    def __init__(self, progress):
        self.progress = progress or (lambda msg: None)
        self.errors: list[dict] = []

    def say(self, msg: str) -> None:
        log.info(msg)
        self.progress(msg)

    def error(self, where: str, exc: BaseException) -> dict:
        msg = f"{type(exc).__name__}: {exc}"
        log.warning("%s failed: %s", where, msg)
        log.debug("%s", traceback.format_exc())
        self.errors.append({"where": where, "error": msg})
        self.progress(f"FAILED {where}: {msg}")
        return {"error": msg}


def _rerun(cfg: BenchConfig, bundle: str | None, parts: str, variants: list[str] | None = None, threads: int | None = None) -> str:
    """The ``edgebp bench`` command that measures one row again."""
    argv = ["edgebp", "bench", *([bundle] if bundle else []), "--parts", parts]
    if variants:
        argv += ["--variants", ",".join(variants)]
    argv += ["--threads", str(threads or cfg.threads)]
    if parts == "latency":
        argv += ["--batch", str(cfg.batch), "--repeat", str(cfg.repeat)]
    if parts == "accuracy":
        if cfg.data:
            argv += ["--data", cfg.data]
        if cfg.split != "auto":
            argv += ["--split", cfg.split]
        if cfg.include_training:
            argv.append("--include-training")
    if parts == "anchors":
        argv += ["--anchors", ",".join(cfg.anchors), "--anchor-preset", cfg.anchor_preset]
    if "torch-fp32" in (variants or []) and cfg.runs:
        for r in cfg.runs:
            argv += ["--run", r]
    if cfg.quick:
        argv.append("--quick")
    argv += ["--report", "bench-rerun"]
    return shlex.join(argv)


def run_for_bundle(bundle, runs: list[str]) -> str | None:
    """The run directory a bundle was exported from: the one whose config.json and test split
    match the manifest (read as JSON, no torch), or the only one given."""
    m = bundle.manifest
    rc = (m["model"].get("run_config") or {})
    test = sorted((m.get("split") or {}).get("test", []))
    for r in runs:
        p = Path(r)
        try:
            cfg = json.loads((p / "config.json").read_text())
            split = json.loads((p / "split.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if cfg == rc and sorted(split.get("test", [])) == test:
            return r
    return runs[0] if len(runs) == 1 else None


# --------------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------------
def _latency_row(res: dict, *, variant: str, kind: str, batch: int, threads: int, window: int, hop: int, fs: float,
                 file: str | None, command: str) -> dict:
    p50_s = res["p50_ms"]["median"] * 1e-3
    outs = batch * hop
    row = {"variant": variant, "kind": kind, "batch": batch, "threads": threads, "window": window, "hop": hop, "fs": fs,
           "file": file, **{k: res[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "pooled", "repeats", "n_total")},
           "input_shapes": res.get("input_shapes"),
           "per_output_sample_us": p50_s / outs * 1e6,
           "real_time_factor": (outs / fs) / p50_s if p50_s > 0 else None,
           "samples_ms": res["samples_ms"], "command": command}
    return row


def latency_bundle(cfg: BenchConfig, b, shown: str, L: _Log, skipped: dict) -> list[dict]:
    """Per-inference latency of every ONNX variant of one bundle."""
    from edgebp.bench.latency import ort_latency
    from edgebp.runtime.backends import tensorrt_available

    m = b.manifest
    fs, window, hop = float(m["fs"]), int(m["window"]), int(m["hop"])
    st = m.get("streaming") or {}
    rows = []
    for v in cfg.variants:
        if v == "torch-fp32":
            continue  # measured last (imports torch)
        if v == "tensorrt":
            ok, why = tensorrt_available()
            if not ok:
                skipped[v] = f"TensorRT: {why}"
                continue
            if not b.has("trt_int8"):
                skipped[v] = "TensorRT: this bundle has no trt_int8 model (export with --targets tensorrt)"
                continue
            L.say(f"{shown}: latency tensorrt")
            try:
                rows += _tensorrt_rows(cfg, b, shown)
            except Exception as exc:  # noqa: BLE001
                skipped[v] = L.error(f"{shown} latency tensorrt", exc)["error"]
            continue
        if v.startswith("stream-"):
            # its per-chunk cost is the "stream step" rows of ort-int8/ort-fp32 below, and the
            # live path's cost is the streaming part: no separate window latency exists
            continue
        key = variant_source_key(v)
        if not b.has(key):
            skipped[v] = f"this bundle has no {key} model" + (" (export with --prune R)" if v == "pruned" else "")
            continue
        path = b.file(key)
        for t in cfg.thread_levels:
            for batch in (1, cfg.batch):
                L.say(f"{shown}: latency {v} batch {batch} threads {t}")
                try:
                    res = ort_latency(path, batch, t, window, cfg.plan)
                except ValueError as exc:  # a graph with a fixed batch
                    skipped[f"{v}/batch{batch}"] = str(exc)
                    continue
                except Exception as exc:  # noqa: BLE001
                    L.error(f"{shown} latency {v} batch {batch} threads {t}", exc)
                    continue
                rows.append(_latency_row(res, variant=v, kind="window", batch=batch, threads=t, window=window, hop=hop, fs=fs,
                                         file=path.name, command=_rerun(cfg, shown, "latency", [v], t)))
        # the external-state streaming step: what the runtime actually runs per chunk
        skey = (st.get("file_keys") or {}).get(RUNTIME_VARIANTS.get(v, ""))
        if skey and b.has(skey):
            chunk = int(st["chunk"])
            for t in cfg.thread_levels:
                L.say(f"{shown}: latency {v} stream step (chunk {chunk}) threads {t}")
                try:
                    res = ort_latency(b.file(skey), 1, t, chunk, cfg.plan)
                except Exception as exc:  # noqa: BLE001
                    L.error(f"{shown} latency {v} stream step threads {t}", exc)
                    continue
                rows.append(_latency_row(res, variant=v, kind="stream-step", batch=1, threads=t, window=chunk, hop=chunk, fs=fs,
                                         file=b.file(skey).name, command=_rerun(cfg, shown, "latency", [v], t)))
    return rows


def _tensorrt_rows(cfg: BenchConfig, b, shown: str) -> list[dict]:
    import numpy as np

    from edgebp.bench.latency import latency_measure
    from edgebp.runtime.backends import TensorRTBackend

    m = b.manifest
    fs, window, hop = float(m["fs"]), int(m["window"]), int(m["hop"])
    be = TensorRTBackend(b.file("trt_int8"), precision="int8", max_batch=cfg.batch, streaming=False, window=window)
    rows = []
    c = len(m["inputs"])
    for batch in (1, cfg.batch):
        x = np.random.default_rng(0).standard_normal((batch, c, window)).astype(np.float32)
        feeds = {be.input_names[0]: x}
        res = latency_measure(lambda: be.run(feeds), **cfg.plan.kwargs())
        rows.append(_latency_row(res, variant="tensorrt", kind="window", batch=batch, threads=1, window=window, hop=hop, fs=fs,
                                 file=b.file("trt_int8").name, command=_rerun(cfg, shown, "latency", ["tensorrt"])))
    return rows


# --------------------------------------------------------------------------------------------
# one bundle
# --------------------------------------------------------------------------------------------
def bench_bundle(cfg: BenchConfig, shown: str, L: _Log, deferred: list) -> tuple[dict, dict]:
    """Everything but torch for one bundle; torch work is appended to ``deferred``.

    Returns (bundle result, Bland-Altman pairs per variant)."""
    from edgebp.bench.memory import budget_measure, bundle_files
    from edgebp.runtime.bundle import bundle_load

    b = bundle_load(shown)
    m = b.manifest
    res: dict = {
        "name": f"{m['model']['name']}/{m['model']['preset']}" + ("" if shown == "default" else f" ({Path(shown).name})"),
        "bundle": shown, "path": str(b.path),
        "model": {k: m["model"].get(k) for k in ("name", "preset", "params", "macs_per_window")},
        "inputs": m["inputs"], "fs": m["fs"], "window": m["window"], "hop": m["hop"], "delay": m["delay"],
        "causal": m["causal"], "streamable": bool(m.get("streaming")), "output": m["output"],
        "files": bundle_files(b), "skipped": {}, "latency": [], "streaming": None, "live": None, "memory": None, "accuracy": {},
    }
    pairs: dict = {}
    run_dir = run_for_bundle(b, cfg.runs)
    res["run_dir"] = run_dir
    if "torch-fp32" in cfg.variants and run_dir is None:
        res["skipped"]["torch-fp32"] = ("the manifest's run_config holds no weights: give the run directory with --run RUN_DIR"
                                        if not cfg.runs else "none of the --run directories matches this bundle's config and split")

    clock = time.perf_counter()
    res["seconds"] = {}

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        res["seconds"][part] = now - clock
        clock = now

    if "latency" in cfg.parts:
        res["latency"] = latency_bundle(cfg, b, shown, L, res["skipped"])
        lap("latency")

    if "streaming" in cfg.parts:
        from edgebp.bench.streaming import streaming_bench

        # int8 first: what `edgebp run` runs by default, so the quick bench and the growth runs use it
        rv = [RUNTIME_VARIANTS[v] for v in ("ort-int8", "ort-fp32") if v in cfg.variants and b.has(variant_source_key(v))]
        if cfg.quick:
            rv = rv[:1]
        if not rv:
            res["skipped"]["streaming"] = "no ort-int8 or ort-fp32 variant asked for (edgebp run runs those)"
        else:
            try:
                res["streaming"] = streaming_bench(shown, rv, cfg.cache / "logs", cfg.stream_minutes, cfg.lengths, cfg.concurrency,
                                                   threads=cfg.threads, bundle_shown=shown, progress=lambda s: L.say(f"{shown}: {s}"),
                                                   sim_source=cfg.sim_source)
            except Exception as exc:  # noqa: BLE001
                res["streaming"] = L.error(f"{shown} streaming", exc)
        lap("streaming")

    if "live" in cfg.parts:
        from edgebp.bench.live import live_bench

        rv = [RUNTIME_VARIANTS[v] for v in ("ort-int8", "ort-fp32") if v in cfg.variants and b.has(variant_source_key(v))]
        if not rv:
            res["skipped"]["live"] = "no ort-int8 or ort-fp32 variant asked for (edgebp run runs those)"
        elif not m.get("streaming"):
            res["skipped"]["live"] = "this bundle has no streaming model (the live part measures edgebp run's streaming path)"
        else:
            try:
                res["live"] = live_bench(shown, cfg.cache / "logs", min(cfg.stream_minutes, 5.0), cfg.sim_source, 1 if cfg.quick else 3,
                                         threads=cfg.threads, variants=rv, bundle_shown=shown, progress=lambda s: L.say(f"{shown}: {s}"))
            except Exception as exc:  # noqa: BLE001
                res["live"] = L.error(f"{shown} live", exc)
        lap("live")

    if "memory" in cfg.parts:
        L.say(f"{shown}: memory and the {cfg.mcu} budget")
        mem: dict = {"model_bytes": {k: v["bytes"] for k, v in res["files"].items()}}
        try:
            mem["budget"] = budget_measure(b, cfg.mcu, bundle_shown=shown)
        except Exception as exc:  # noqa: BLE001
            mem["budget"] = L.error(f"{shown} budget", exc)
        s = res.get("streaming") or {}
        if s.get("runs"):
            mem["runtime_peak_rss_mb"] = {v: r["peak_rss_mb"] for v, r in s["runs"].items()}
            mem["imports_peak_rss_mb"] = s["imports"]["peak_rss_mb"]
        else:
            from edgebp.bench.streaming import imports_rss

            mem["imports_peak_rss_mb"] = imports_rss()["peak_rss_mb"]
        res["memory"] = mem
        lap("memory")

    if "accuracy" in cfg.parts:
        from edgebp.bench.accuracy import accuracy_measure

        split = cfg.split if cfg.split != "auto" else ("test" if cfg.data is None and not cfg.include_training else "all")
        for v in cfg.variants:
            if v in ("torch-fp32", "tensorrt"):
                if v == "tensorrt":
                    res["skipped"].setdefault("tensorrt", "TensorRT is not available here")
                continue
            if not b.has(variant_source_key(v)):
                continue
            L.say(f"{shown}: accuracy {v}")
            try:
                summary, pr = accuracy_measure(shown, v, cfg.data, split, include_training=cfg.include_training)
                summary["command"] = _rerun(cfg, shown, "accuracy", [v])
                summary["evaluate_command"] = shlex.join(["edgebp", "evaluate", shown, "--variant", v if v.startswith("stream-") else variant_source_key(v), "--split", split]
                                                         + (["--data", cfg.data] if cfg.data else [])
                                                         + (["--include-training"] if cfg.include_training else []))
                res["accuracy"][v] = summary
                pairs[v] = pr
            except FileNotFoundError as exc:  # the records are not on this machine: say so, do not fail the bench
                res["skipped"][f"accuracy {v}"] = f"data not found: {exc.filename or exc} (give --data)"
                L.say(f"{shown}: accuracy {v} skipped: data not found ({exc.filename or exc})")
            except Exception as exc:  # noqa: BLE001
                res["accuracy"][v] = L.error(f"{shown} accuracy {v}", exc)
        lap("accuracy")
    if "torch-fp32" in cfg.variants and run_dir is not None:
        deferred.append((shown, run_dir))
    return res, pairs


def bench_torch(cfg: BenchConfig, res: dict, run_dir: str, L: _Log, pairs: dict) -> None:
    """The torch-fp32 variant of one bundle (imports torch; run after everything else)."""
    shown = res["bundle"]
    fs, window, hop = float(res["fs"]), int(res["window"]), int(res["hop"])
    t0 = time.perf_counter()
    if "latency" in cfg.parts:
        from edgebp.bench.latency import torch_latency

        for t in cfg.thread_levels:
            L.say(f"{shown}: latency torch-fp32 batch 1 and {cfg.batch}, threads {t} (a torch subprocess)")
            try:
                results = torch_latency(run_dir, [1, cfg.batch], t, window, cfg.plan)
            except Exception as exc:  # noqa: BLE001
                L.error(f"{shown} latency torch-fp32 threads {t}", exc)
                continue
            for batch, r in zip((1, cfg.batch), results):
                res["latency"].append(_latency_row(r, variant="torch-fp32", kind="window", batch=batch, threads=t, window=window,
                                                   hop=hop, fs=fs, file=str(Path(run_dir) / "best.pt"),
                                                   command=_rerun(cfg, shown, "latency", ["torch-fp32"], t)))
    if "accuracy" in cfg.parts:
        from edgebp.bench.accuracy import accuracy_measure

        split = cfg.split if cfg.split != "auto" else ("test" if cfg.data is None and not cfg.include_training else "all")
        L.say(f"{shown}: accuracy torch-fp32")
        try:
            summary, pr = accuracy_measure(shown, "torch-fp32", cfg.data, split, run_dir=run_dir, include_training=cfg.include_training)
            summary["command"] = _rerun(cfg, shown, "accuracy", ["torch-fp32"])
            summary["evaluate_command"] = shlex.join(["edgebp", "evaluate", run_dir, "--split", split] + (["--data", cfg.data] if cfg.data else [])
                                                     + (["--include-training"] if cfg.include_training else []))
            res["accuracy"]["torch-fp32"] = summary
            pairs["torch-fp32"] = pr
        except Exception as exc:  # noqa: BLE001
            res["accuracy"]["torch-fp32"] = L.error(f"{shown} accuracy torch-fp32", exc)
    res.setdefault("seconds", {})["torch-fp32"] = time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# anchors and ratios
# --------------------------------------------------------------------------------------------
def bench_anchors(cfg: BenchConfig, L: _Log) -> list[dict]:
    """The seeds' paradigms at their published size, timed like the bundles (batch 1)."""
    from edgebp.bench.anchor import ANCHORS, anchors_onnx
    from edgebp.bench.latency import ort_latency

    out = []
    L.say(f"anchors: exporting {', '.join(cfg.anchors)} ({cfg.anchor_preset}) once into the cache (needs a minute the first time)")
    try:
        built = anchors_onnx(cfg.anchors, cfg.anchor_preset, cfg.cache / "anchors")
    except Exception as exc:  # noqa: BLE001
        L.error("anchors export", exc)
        return out
    for name in cfg.anchors:
        path, info = built[name]
        spec = ANCHORS[name]
        a = {"name": name, "preset": cfg.anchor_preset, "paradigm": spec.paradigm, "inputs": list(spec.inputs), "window": spec.window,
             "hop": spec.hop, "fs": spec.fs, "params": info["params"], "macs_per_window": info["macs_per_window"],
             "macs_per_second": info["macs_per_second"], "onnx_bytes": path.stat().st_size, "weights": info["weights"],
             "export_command": f"python -m edgebp.bench.anchor --model {name} --preset {cfg.anchor_preset}",
             "latency": []}
        for t in cfg.thread_levels:
            L.say(f"anchor {name}: latency batch 1 threads {t}")
            try:
                r = ort_latency(path, 1, t, spec.window, cfg.plan)
            except Exception as exc:  # noqa: BLE001
                L.error(f"anchor {name} latency threads {t}", exc)
                continue
            row = _latency_row(r, variant="ort-fp32", kind="window", batch=1, threads=t, window=spec.window, hop=spec.hop,
                               fs=spec.fs, file=path.name, command=_rerun(cfg, None, "anchors", None, t))
            row["output_latency_ms"] = anchor_output_latency(spec.window, spec.hop, spec.fs, row["p50_ms"]["median"], row["real_time_factor"])
            a["latency"].append(row)
        out.append(a)
    return out


def anchor_output_latency(window: int, hop: int, fs: float, compute_ms: float, rtf: float | None) -> dict:
    """Sample arrival to estimate out for a window model run every ``hop`` samples on a live
    stream: the newest sample waits only for the compute, the oldest of a hop's outputs also
    for the ``hop - 1`` samples after it; a model slower than real time falls further behind
    with every window (unbounded).

    Examples
    --------
    >>> anchor_output_latency(625, 625, 125.0, 1.0, 4000.0)["max"]
    4993.0
    >>> anchor_output_latency(88, 1, 125.0, 33.0, 0.24)["bounded"]
    False
    """
    bounded = bool(rtf is not None and rtf >= 1.0)
    return {"min": compute_ms if bounded else None, "max": (hop - 1) / fs * 1e3 + compute_ms if bounded else None,
            "bounded": bounded, "note": "" if bounded else "slower than real time: the backlog grows without bound"}


def primary_latency(rows: list[dict], threads: int, variants: tuple[str, ...] = ("ort-int8", "ort-fp32", "pruned", "torch-fp32")) -> dict | None:
    """The row that stands for a bundle's deployed cost: the streaming step if there is one, else
    the window model; batch 1, the given thread count; int8 first."""
    for v in variants:
        for kind in ("stream-step", "window"):
            for r in rows:
                if r["variant"] == v and r["kind"] == kind and r["batch"] == 1 and r["threads"] == threads:
                    return r
    return None


def bench_ratios(bundles: list[dict], anchors: list[dict], threads: int) -> list[dict]:
    """Speed and size of each bundle's deployed model against each anchor (one thread, batch 1)."""
    out = []
    for b in bundles:
        mine = primary_latency(b.get("latency") or [], threads)
        if mine is None:
            continue
        key = {"ort-int8": "int8", "ort-fp32": "fp32", "pruned": "pruned"}.get(mine["variant"], "fp32")
        size = (b["files"].get(key) or {}).get("bytes")
        params = (b["files"].get(key) or {}).get("params")
        for a in anchors:
            theirs = next((r for r in a["latency"] if r["threads"] == threads), None)
            if theirs is None:
                continue
            runv = {"ort-int8": "int8", "ort-fp32": "fp32"}.get(mine["variant"])
            ol = ((((b.get("streaming") or {}).get("output_latency") or {}).get(runv) or {}).get("output_latency_ms") or {})
            aol = theirs.get("output_latency_ms") or {}
            out.append({
                "bundle_output_latency_ms_p50": ol.get("p50"), "bundle_output_latency_ms_max": ol.get("max"),
                "anchor_output_latency_ms_max": aol.get("max"), "anchor_keeps_up": aol.get("bounded"),
                "bundle": b["name"], "variant": mine["variant"], "kind": mine["kind"], "anchor": a["name"], "anchor_preset": a["preset"],
                "bundle_per_output_sample_us": mine["per_output_sample_us"], "anchor_per_output_sample_us": theirs["per_output_sample_us"],
                "speed_ratio": theirs["per_output_sample_us"] / mine["per_output_sample_us"],
                "bundle_real_time_factor": mine["real_time_factor"], "anchor_real_time_factor": theirs["real_time_factor"],
                "bundle_bytes": size, "anchor_bytes": a["onnx_bytes"], "size_ratio": (a["onnx_bytes"] / size) if size else None,
                "bundle_params": params, "anchor_params": a["params"],
                "params_ratio": (a["params"] / params) if params else None, "threads": threads,
            })
    return out


# --------------------------------------------------------------------------------------------
# the whole bench
# --------------------------------------------------------------------------------------------
def bench_run(cfg: BenchConfig, progress=None) -> tuple[dict, dict]:
    """Run the bench; returns (bench dict = bench.json, Bland-Altman pairs per bundle and variant).

    Examples
    --------
    >>> cfg = BenchConfig(bundles=["default"], quick=True, report_dir="bench")  # doctest: +SKIP
    >>> result, pairs = bench_run(cfg)  # doctest: +SKIP
    """
    from edgebp.bench.machine import machine_describe

    L = _Log(progress)
    L.say("describing the machine")
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    result: dict = {"schema": SCHEMA, "edgebp_version": edgebp.__version__, "created": started.isoformat(timespec="seconds"),
                    "command": cfg.command, "settings": cfg.to_dict(), "machine": machine_describe(torch=True)}
    result["load_average_before"] = result["machine"].get("load_average")
    result["machine_seconds"] = time.perf_counter() - t0
    bundles, all_pairs, deferred = [], {}, []
    bundle_parts = set(cfg.parts) - {"anchors"}
    for shown in (cfg.bundles if bundle_parts else []):
        L.say(f"bundle {shown}")
        try:
            res, pairs = bench_bundle(cfg, shown, L, deferred)
        except Exception as exc:  # noqa: BLE001 - e.g. a bundle that does not verify
            res, pairs = {"name": shown, "bundle": shown, **L.error(f"bundle {shown}", exc)}, {}
        bundles.append(res)
        all_pairs[shown] = pairs
    t0 = time.perf_counter()
    anchors = bench_anchors(cfg, L) if "anchors" in cfg.parts and cfg.anchors else []
    result["anchors_seconds"] = time.perf_counter() - t0
    for shown, run_dir in deferred:  # torch last
        res = next(b for b in bundles if b.get("bundle") == shown)
        bench_torch(cfg, res, run_dir, L, all_pairs[shown])
    result["bundles"] = bundles
    result["anchors"] = anchors
    result["ratios"] = bench_ratios([b for b in bundles if "error" not in b], anchors, cfg.threads)
    try:
        result["load_average_after"] = list(os.getloadavg())
    except OSError:
        result["load_average_after"] = None
    result["seconds"] = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    result["errors"] = L.errors
    return result, all_pairs
