"""The bench report: ``bench.json`` (every figure), ``report.md`` and ``report.html`` (tables with
the command beside each row, and the plots), and the short table printed at the end.

Examples
--------
>>> bench_missing({"schema": "edgebp-bench/1"})[:3]
['edgebp_version', 'created', 'command']
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Fields every bench.json has (dotted paths; ``[]`` = every item of a list).
REQUIRED_FIELDS = (
    "schema", "edgebp_version", "created", "command", "settings", "machine.cpu.model", "machine.cpu.logical_cores",
    "machine.cpu.isa", "machine.libraries", "machine.thread_env", "machine.torch", "load_average_before", "load_average_after",
    "bundles", "anchors", "ratios", "errors", "seconds",
)
BUNDLE_FIELDS = ("name", "bundle", "model", "files", "skipped", "latency", "streaming", "memory", "accuracy")
LATENCY_FIELDS = ("variant", "kind", "batch", "threads", "p50_ms.median", "p50_ms.min", "p50_ms.max", "p99_ms.median",
                  "p99_ms.min", "p99_ms.max", "n_total", "repeats", "per_output_sample_us", "real_time_factor", "samples_ms", "command")
STREAM_FIELDS = ("runs", "output_latency", "length_growth", "concurrency", "streams_per_core", "imports", "logs")
RUN_FIELDS = ("real_time_factor", "per_sample_us", "peak_rss_mb", "signal_seconds", "command")
OUTLAT_FIELDS = ("output_latency_ms.p50", "output_latency_ms.p99", "beat_latency_ms.p50", "algorithmic_latency_ms", "command")
CONC_FIELDS = ("streams", "aggregate_real_time_factor", "per_stream_real_time_factor", "sustained", "peak_rss_mb", "command")
MEMORY_FIELDS = ("model_bytes", "budget.mcu", "budget.models", "imports_peak_rss_mb")
ACC_FIELDS = ("n_pairs", "sbp.me", "sbp.sd", "sbp.mae", "sbp.bhs_grade", "sbp.aami_criterion1", "sbp.ieee1708",
              "dbp.me", "dbp.sd", "dbp.mae", "dbp.bhs_grade", "dbp.aami_criterion1", "dbp.ieee1708",
              "baselines.training_mean", "command")
ANCHOR_FIELDS = ("name", "preset", "params", "onnx_bytes", "macs_per_window", "window", "hop", "latency")
RATIO_FIELDS = ("bundle", "anchor", "speed_ratio", "size_ratio", "params_ratio")


#: How the bench writes sizes, stated once in every report (binary prefixes, as the kernel
#: reports RSS and as microcontroller memories are sized).
UNITS_LINE = ("sizes in binary units: 1 KiB = 1024 bytes, 1 MiB = 1024 KiB (peak RSS, file sizes, flash and RAM); "
              "ms = milliseconds, us = microseconds; RTF = seconds of signal per second of compute.")


def _get(d, path: str):
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def _check(d: dict, fields, where: str, out: list[str]) -> None:
    for f in fields:
        try:
            _get(d, f)
        except KeyError:
            out.append(f"{where}{f}" if where else f)


def bench_missing(bench: dict) -> list[str]:
    """Dotted names of the fields ``bench`` lacks (empty when complete). Parts that were not
    asked for (``settings.parts``) and variants reported as skipped are not required."""
    out: list[str] = []
    _check(bench, REQUIRED_FIELDS, "", out)
    if out:
        return out
    parts = set(bench["settings"].get("parts", []))
    for i, b in enumerate(bench["bundles"]):
        w = f"bundles[{i}]."
        if "error" in b:
            continue
        _check(b, BUNDLE_FIELDS, w, out)
        if "latency" in parts:
            if not b["latency"]:
                out.append(w + "latency[] (no row)")
            for j, r in enumerate(b["latency"]):
                _check(r, LATENCY_FIELDS, f"{w}latency[{j}].", out)
        s = b.get("streaming")
        if "streaming" in parts and s is not None and "streaming" not in b.get("skipped", {}):
            if "error" in s:
                out.append(w + "streaming (error)")
            else:
                _check(s, STREAM_FIELDS, w + "streaming.", out)
                for v, r in s.get("runs", {}).items():
                    _check(r, RUN_FIELDS, f"{w}streaming.runs.{v}.", out)
                for v, r in s.get("output_latency", {}).items():
                    _check(r, OUTLAT_FIELDS, f"{w}streaming.output_latency.{v}.", out)
                for j, r in enumerate(s.get("length_growth", [])):
                    _check(r, RUN_FIELDS + ("minutes",), f"{w}streaming.length_growth[{j}].", out)
                for j, r in enumerate(s.get("concurrency", [])):
                    _check(r, CONC_FIELDS, f"{w}streaming.concurrency[{j}].", out)
        if "memory" in parts:
            _check(b.get("memory") or {}, MEMORY_FIELDS, w + "memory.", out)
        if "accuracy" in parts:
            for v, a in b["accuracy"].items():
                if "error" in a:
                    out.append(f"{w}accuracy.{v} (error)")
                else:
                    _check(a, ACC_FIELDS, f"{w}accuracy.{v}.", out)
    if "anchors" in parts:
        for i, a in enumerate(bench["anchors"]):
            _check(a, ANCHOR_FIELDS, f"anchors[{i}].", out)
            for j, r in enumerate(a["latency"]):
                _check(r, LATENCY_FIELDS, f"anchors[{i}].latency[{j}].", out)
        for i, r in enumerate(bench["ratios"]):
            _check(r, RATIO_FIELDS, f"ratios[{i}].", out)
    return out


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def _f(x, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)) and spec == ".3g":
        return str(int(x))
    return format(x, spec)


def _spread(s: dict | None, spec: str = ".3g") -> str:
    """``median [min-max]`` of a per-repeat figure."""
    if not s:
        return "-"
    return f"{_f(s['median'], spec)} [{_f(s['min'], spec)}-{_f(s['max'], spec)}]"


def _bytes(n) -> str:
    from edgebp.bench.memory import describe_bytes

    return describe_bytes(n)


def _c1(x) -> str:
    return "-" if x is None else ("pass" if x else "fail")


def _primary_rows(b: dict, threads: int) -> dict:
    """Per variant: the batch-1 row at ``threads`` (the streaming step first)."""
    out: dict = {}
    for r in sorted(b.get("latency") or [], key=lambda r: 0 if r["kind"] == "stream-step" else 1):
        if r["batch"] == 1 and r["threads"] == threads and r["variant"] not in out:
            out[r["variant"]] = r
    return out


def summary_rows(bench: dict) -> list[list]:
    """The short table: one row per bundle variant, then the anchors."""
    t = int(bench["settings"]["threads"])
    key_of = {"stream-int8": "stream_int8", "stream-fp32": "stream_fp32", "ort-fp32": "fp32", "ort-int8": "int8", "pruned": "pruned",
              "pruned-int8": "pruned_int8", "torch-fp32": "fp32", "tensorrt": "trt_int8"}
    # a stream variant's cost is its window variant's streaming step and `edgebp run` itself
    stream_alias = {"stream-int8": "ort-int8", "stream-fp32": "ort-fp32"}
    rows = [["model / variant", "size", "p50 ms", "p99 ms", "RTF model", "RTF edgebp run", "SBP MAE", "DBP MAE",
             "BHS S/D", "AAMI c1 S/D", "IEEE S/D"]]
    for b in bench["bundles"]:
        if "error" in b:
            rows.append([b["name"], "error: " + b["error"]] + [""] * 9)
            continue
        prim = _primary_rows(b, t)
        runs = (b.get("streaming") or {}).get("runs") or {}
        variants = list(dict.fromkeys(list(prim) + list(b.get("accuracy") or {}) + [{"int8": "ort-int8", "fp32": "ort-fp32"}[v] for v in runs]))
        for v in variants:
            r = prim.get(v)
            if r is None and v in stream_alias:
                r = prim.get(stream_alias[v])
                r = r if r and r["kind"] == "stream-step" else None
            a = (b.get("accuracy") or {}).get(v) or {}
            run = runs.get({"ort-int8": "int8", "ort-fp32": "fp32", "stream-int8": "int8", "stream-fp32": "fp32"}.get(v, ""), {})
            size = (b["files"].get(key_of.get(v, ""), {}) or {}).get("bytes") if v != "torch-fp32" else None
            ok = "error" not in a and "sbp" in a
            rows.append([f"{b['name']} {v}" + (" (step)" if r and r["kind"] == "stream-step" else ""),
                         _bytes(size) if size else "-",
                         _f(r["p50_ms"]["median"]) if r else "-", _f(r["p99_ms"]["median"]) if r else "-",
                         _rtf(r["real_time_factor"]) if r else "-", _rtf(run.get("real_time_factor")),
                         _f(a["sbp"]["mae"], ".2f") if ok else "-", _f(a["dbp"]["mae"], ".2f") if ok else "-",
                         f"{a['sbp']['bhs_grade']}/{a['dbp']['bhs_grade']}" if ok else "-",
                         f"{_c1(a['sbp']['aami_criterion1'])}/{_c1(a['dbp']['aami_criterion1'])}" if ok else "-",
                         f"{a['sbp']['ieee1708']}/{a['dbp']['ieee1708']}" if ok else "-"])
        base = None
        for a in (b.get("accuracy") or {}).values():
            base = ((a.get("baselines") or {}).get("training_mean")) if "error" not in a else None
            if base:
                break
        if base and base.get("sbp"):
            rows.append([f"{b['name']} naive training mean", "-", "-", "-", "-", "-", _f(base["sbp"]["mae"], ".2f"),
                         _f(base["dbp"]["mae"], ".2f"), f"{base['sbp']['bhs_grade']}/{base['dbp']['bhs_grade']}",
                         f"{_c1(base['sbp']['aami_criterion1'])}/{_c1(base['dbp']['aami_criterion1'])}",
                         f"{base['sbp']['ieee1708']}/{base['dbp']['ieee1708']}"])
    for a in bench.get("anchors", []):
        r = next((x for x in a["latency"] if x["threads"] == t), None)
        rows.append([f"anchor {a['name']} ({a['preset']})", _bytes(a["onnx_bytes"]), _f(r["p50_ms"]["median"]) if r else "-",
                     _f(r["p99_ms"]["median"]) if r else "-", _rtf(r["real_time_factor"]) if r else "-", "-", "-", "-", "-", "-", "-"])
    return rows


def table_text(rows: list[list]) -> str:
    """A fixed-width text table (first row = header)."""
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _times(x: float | None, more: str, less: str) -> str:
    if x is None or not math.isfinite(x) or x <= 0:
        return "-"
    if abs(x - 1.0) < 0.02:
        return f"about the same ({x:.3g}x)"
    return f"{x:.3g}x {more}" if x >= 1 else f"{1 / x:.3g}x {less}"


def ratio_text(r: dict) -> str:
    """``"compute per output sample 250x faster, file 2900x smaller, parameters 10x fewer"``.

    Examples
    --------
    >>> ratio_text({"speed_ratio": 0.5, "size_ratio": 100.0, "params_ratio": 1.0})
    'compute per output sample 2x slower, file 100x smaller, parameters about the same (1x)'
    """
    return (f"compute per output sample {_times(r['speed_ratio'], 'faster', 'slower')}, "
            f"file {_times(r['size_ratio'], 'smaller', 'larger')}, parameters {_times(r['params_ratio'], 'fewer', 'more')}")


def _rtf(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def accuracy_includes_training(bench: dict) -> bool:
    """True when any accuracy figure of ``bench`` was scored with training or validation records."""
    return any(((a.get("data") or {}).get("include_training")) for b in bench.get("bundles", [])
               for a in (b.get("accuracy") or {}).values() if isinstance(a, dict))


def accuracy_records_lines(bench: dict) -> list[str]:
    """Per bundle, which records its accuracy figures scored and how many training and
    validation records were excluded (or, with ``--include-training``, included)."""
    from edgebp.record_identity import selection_line

    out = []
    for b in bench.get("bundles", []):
        seen = set()
        for a in (b.get("accuracy") or {}).values():
            sel = ((a.get("data") or {}).get("selection")) if isinstance(a, dict) else None
            if sel:
                line = selection_line(sel)
                if line not in seen:
                    seen.add(line)
                    out.append(f"{b.get('name')} accuracy: {line}")
    return out


def bench_short_table(bench: dict) -> str:
    """The short latency / accuracy table printed at the end of ``edgebp bench``."""
    t = bench["settings"]["threads"]
    where = ("accuracy calibration-free, INCLUDES TRAINING RECORDS (not a held-out result)" if accuracy_includes_training(bench)
             else "accuracy calibration-free on held-out records")
    head = (f"edgebp bench: batch 1, {t} thread(s); p50/p99 = medians over {bench['settings']['repeat']} repeats; "
            f"RTF = seconds of signal per second of compute; sizes in KiB/MiB (1 KiB = 1024 B); {where}")
    lines = [head, table_text(summary_rows(bench))]
    lines += accuracy_records_lines(bench)
    for r in bench.get("ratios", []):
        lines.append(f"{r['bundle']} {r['variant']} vs {r['anchor']} ({r['anchor_preset']}): {ratio_text(r)}")
    for b in bench.get("bundles", []):
        for v, why in (b.get("skipped") or {}).items():
            lines.append(f"skipped {b['name']} {v}: {why}")
    if bench.get("errors"):
        lines.append(f"{len(bench['errors'])} part(s) failed: " + "; ".join(f"{e['where']}: {e['error']}" for e in bench["errors"]))
    return "\n".join(lines)


def live_rows(bench: dict) -> list[list]:
    """The live part's table: CPU per device sample by packet size, and whether the outputs matched."""
    rows = [["model", "variant", "read", "us CPU / device sample (median) [min]", "real-time factor (one core)", "outputs identical to the other reads",
             "load average (1/5/15 min)", "command"]]
    for b in bench.get("bundles", []):
        lv = b.get("live")
        if not isinstance(lv, dict) or "error" in lv:
            continue
        load = " / ".join(f"{x:.2f}" for x in (lv.get("load_average") or []))
        for r in lv["rows"]:
            k = r["packet_samples"]
            rows.append([b["name"], r["variant"], r["read"], f"{_f(r['per_sample_us'])} [{_f(r['per_sample_us_min'])}]", _rtf(r["real_time_factor"]),
                         "yes" if lv["identical_across_packets"].get(r["variant"]) else "NO", load,
                         lv["edgebp_run_commands"].get(str(k) if k else "bulk", "") if isinstance(lv.get("edgebp_run_commands"), dict) else ""])
    return rows


def live_sections(bench: dict) -> list[dict]:
    """Report sections of the live part (see :mod:`edgebp.bench.live`)."""
    from edgebp.bench import plots

    rows = live_rows(bench)
    if len(rows) == 1:
        return []
    notes = ["`edgebp run`'s own stream_process on a device log replayed in packets of k whole sample lines (what a gateway hands "
             "over every k / 250 Hz) and in 64 KiB reads; CPU time (time.process_time) of the whole run over the device samples, "
             "median over the rounds, all configurations interleaved in one torch-free process. The outputs (every point-wise row, "
             "every beat, the summary's counts) are hashed per run and must agree for every read size."]
    for b in bench.get("bundles", []):
        lv = b.get("live")
        if not isinstance(lv, dict) or "error" in lv:
            continue
        notes.append(f"- {b['name']}: log `{lv.get('log_command', '')}` ({lv.get('source', '')}); reproduce: `{lv.get('command', '')}`; "
                     f"peak RSS of the child {_f(lv.get('peak_rss_mb'), '.1f')} MiB.")
        st = lv.get("step")
        if st:
            c = st["cpu_us_per_call"]
            notes.append(f"- ONNX Runtime alone on the runtime's step ({st['chunk']} model samples, state carried): "
                         + ", ".join(f"{v} {_f(x)} us per call" for v, x in c.items())
                         + (f"; int8 / fp32 = {_f(st['int8_over_fp32'], '.2f')}" if st.get("int8_over_fp32") else ""))
        for v, p in (lv.get("plain") or {}).items():
            notes.append(f"- Plain reference ({v}; numpy decode, scipy filters, ONNX Runtime in blocks of {p['step']}, no quality handling, "
                         f"`{p['command']}`): {_f(p['per_sample_us'])} us per device sample; edgebp in bulk / plain = "
                         f"{_f(p['edgebp_bulk_over_plain'], '.2f')}")
    out = [_sec("Live path: CPU per device sample by packet size", "\n".join(notes), rows)]
    try:
        out.append(_sec("Live path cost by packet size", "", None, plots.plot_live(bench), "live.png"))
    except ValueError as exc:
        log.info("live plot: %s", exc)
    return out


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
def _sec(heading: str, text: str = "", table=None, figure=None, figure_name: str = "") -> dict:
    return {"heading": heading, "text": text, "table": table, "figure": figure, "figure_name": figure_name}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._") or "x"


def bench_sections(bench: dict, pairs: dict | None = None) -> list[dict]:
    """Report sections (for :func:`edgebp.plot.report.report_write`): method, machine, summary,
    latency, streaming, memory, accuracy, anchors; each table row ends with its command."""
    from edgebp.bench import plots
    from edgebp.bench.machine import machine_summary
    from edgebp.plot.clinical import plot_latency_hist

    pairs = pairs or {}
    st = bench["settings"]
    t = int(st["threads"])
    lp = st["latency_plan"]
    secs = []
    secs.append(_sec("How this was measured", "\n".join([
        f"Command: `{bench['command']}` (edgebp {bench['edgebp_version']}, {bench['created']}, {bench['seconds']:.0f} s).",
        "",
        f"- Latency: a fresh ONNX Runtime session per repeat ({lp['repeats']} repeats), {lp['warmup']} untimed warm-up calls, then "
        f"about {lp['target_s']:g} s of timed calls ({lp['min_runs']}-{lp['max_runs']}) one by one; p50/p99 are the medians over "
        "the repeats with their range [min-max]. Inputs are seeded noise (the cost of these networks does not depend on values).",
        f"- Threads: {', '.join(str(x) for x in st['thread_levels'])} intra-op thread(s); batch 1 and batch {st['batch']}.",
        "- Streaming: `edgebp run` as a subprocess on a simulated 250 Hz ECG + PPG log (`edgebp sim`), no torch loaded; peak RSS "
        "is the kernel's ru_maxrss of that child (read by a small launcher process, so the bench's own memory is not counted). Output latency and concurrency come from `python -m edgebp.bench.worker`.",
        "- Accuracy: `edgebp evaluate`'s scoring, per beat, calibration-free, on held-out records (split by record/subject).",
        "- Anchors: the seeds' networks at their published size with initial weights: speed and size only.",
        f"- Load average (1/5/15 min) before: {bench.get('load_average_before')}, after: {bench.get('load_average_after')}. "
        "The machine may be shared: the ranges show how much the figures moved between repeats.",
        f"- Units: {UNITS_LINE}",
    ])))
    m = bench["machine"]
    secs.append(_sec("Machine", machine_summary(m), [["item", "value"], ["CPU", m["cpu"]["model"]],
                     ["cores (logical / usable)", f"{m['cpu']['logical_cores']} / {m['cpu']['usable_cores']}"],
                     ["AVX2 / AVX-512 / VNNI", f"{_f(m['cpu']['avx2'])} / {_f(m['cpu']['avx512'])} / {_f(m['cpu']['vnni'])}"],
                     ["ISA flags", " ".join(m["cpu"]["isa"])]]
                     + [[k, v or "-"] for k, v in m["libraries"].items()]
                     + [["torch threads (subprocess)", str((m.get("torch") or {}).get("threads", "-"))]]
                     + [[k, v] for k, v in m["thread_env"].items() if v is not None]))
    secs.append(_sec("Summary", f"Batch 1, {t} thread(s). RTF model = the model alone per output sample; RTF edgebp run = the "
                     "whole runtime path (decode, preprocessing, model, beats, writing) on the simulated device log."
                     + "".join(f"\n\n{line}" for line in accuracy_records_lines(bench)),
                     summary_rows(bench)))

    # ---- latency
    rows = [["model", "variant", "kind", "batch", "threads", "p50 ms [range]", "p99 ms [range]", "us / output sample", "RTF", "n", "command"]]
    for b in bench["bundles"]:
        for r in b.get("latency") or []:
            rows.append([b["name"], r["variant"], r["kind"], r["batch"], r["threads"], _spread(r["p50_ms"]), _spread(r["p99_ms"]),
                         _f(r["per_output_sample_us"]), _rtf(r["real_time_factor"]), r["n_total"], r["command"]])
    for a in bench.get("anchors", []):
        for r in a["latency"]:
            rows.append([f"anchor {a['name']} ({a['preset']})", r["variant"], r["kind"], r["batch"], r["threads"], _spread(r["p50_ms"]),
                         _spread(r["p99_ms"]), _f(r["per_output_sample_us"]), _rtf(r["real_time_factor"]), r["n_total"], r["command"]])
    if len(rows) > 1:
        secs.append(_sec("Latency per inference", "kind `window`: the bundle's window model, run every `hop` samples; `stream-step`: "
                         "the external-state streaming model on one chunk (what `edgebp run` runs). us / output sample = p50 / "
                         "(batch x hop).", rows))
        try:
            secs.append(_sec("Latency distribution (batch 1)", "", None, plots.plot_latency_box(bench), "latency_box.png"))
        except ValueError as exc:
            log.info("latency box plot: %s", exc)
        for label, _key, samples, r in plots.latency_series(bench):
            # the lines are the row's own p50/p99 (as the table prints them), not percentiles of the pooled calls
            secs.append(_sec(f"Latency histogram: {label}", f"Reproduce: `{r['command']}`", None,
                             plot_latency_hist(samples, label, marks={"p50": plots.latency_p50(r), "p99": plots.latency_p99(r)},
                                               marks_note="medians over the repeats"),
                             f"latency_{_safe(label)}.png"))
    skipped = [[b["name"], v, why] for b in bench["bundles"] for v, why in (b.get("skipped") or {}).items()]
    if skipped:
        secs.append(_sec("Skipped", "Variants or parts not measured, and why.", [["model", "variant / part", "reason"]] + skipped))

    # ---- streaming
    srows = [["model", "variant", "signal s", "RTF", "us / device sample", "process RTF (with start-up)", "peak RSS MiB", "valid share", "command"]]
    lrows = [["model", "variant", "packet (samples)", "output latency p50 / p99 / max ms", "beat latency p50 / p99 ms",
              "model delay + resampler + step ms", "push p99 ms", "command"]]
    grows = [["model", "minutes", "signal s", "RTF", "us / device sample", "marginal us / sample", "peak RSS MiB", "RSS change MiB", "command", "log"]]
    crows = [["model", "streams", "block (samples)", "aggregate RTF", "RTF per stream", "sustained", "us / sample", "peak RSS MiB",
              "output latency p50 / p99 ms", "command"]]
    notes = []
    log_cmds: set[str] = set()
    for b in bench["bundles"]:
        s = b.get("streaming")
        if not isinstance(s, dict) or "error" in s:
            continue
        for v, r in s["runs"].items():
            srows.append([b["name"], v, _f(r["signal_seconds"], ".1f"), _f(r["real_time_factor"], ".0f"), _f(r["per_sample_us"]),
                          _f(r["process_real_time_factor"], ".0f"), _f(r["peak_rss_mb"], ".1f"), _f(r["valid_share"], ".3f"), r["command"]])
        for v, w in s["output_latency"].items():
            ol, bl, al = w["output_latency_ms"], w["beat_latency_ms"], w["algorithmic_latency_ms"]
            lrows.append([b["name"], v, w["block_samples"], f"{_f(ol['p50'])} / {_f(ol['p99'])} / {_f(ol['max'])}",
                          f"{_f(bl['p50'])} / {_f(bl['p99'])}", f"{_f(al['model_delay'])} + {_f(al['resampler_delay'])} + {_f(al['model_step'])}",
                          _f(w["push_ms"]["p99"]), w["command"]])
        for r in s["length_growth"]:
            grows.append([b["name"], _f(r["minutes"]), _f(r["signal_seconds"], ".1f"), _rtf(r["real_time_factor"]), _f(r["per_sample_us"]),
                          _f(r.get("marginal_per_sample_us")), _f(r["peak_rss_mb"], ".1f"), _f(r.get("rss_growth_mb"), "+.1f"),
                          r["command"], r.get("log_command", "")])
        for r in s["concurrency"]:
            crows.append([b["name"], r["streams"], r["block_samples"], _rtf(r["aggregate_real_time_factor"]), _rtf(r["per_stream_real_time_factor"]),
                          _f(r["sustained"]), _f(r["per_sample_us"]), _f(r["peak_rss_mb"], ".1f"),
                          f"{_f(r['output_latency_ms']['p50'])} / {_f(r['output_latency_ms']['p99'])}", r["command"]])
        spc = s["streams_per_core"]
        notes.append(f"- {b['name']}: one core sustains about {_f(spc['from_real_time_factor'], '.0f')} device streams by its real-time "
                     f"factor at one thread ({spc['variant']}); measured interleaved in one process: all of {spc['measured_levels']} "
                     f"streams tested, largest sustained {spc['measured_max_sustained']} (aggregate {_f(spc['throughput_at_largest'], '.0f')}x real time "
                     f"at the largest level); memory per extra stream {_f(spc.get('memory_per_stream_mb'), '.2f')} MiB. Runtime imports alone "
                     f"(Python, numpy, numba, ONNX Runtime): {_f(s['imports']['peak_rss_mb'], '.1f')} MiB.")
        log_cmds.update(v["command"] for v in s["logs"].values())
    if log_cmds:
        notes.append("- Device logs (250 Hz ECG + PPG, text protocol): " + "; ".join(f"`{c}`" for c in sorted(log_cmds)))
    if len(srows) > 1:
        secs.append(_sec("Streaming: the whole edgebp run path", "\n".join(notes), srows))
        secs.append(_sec("Output latency (sample arrival to BP out) at the device rate",
                         "Virtual device clock: a packet is complete when its last sample arrives (at 250 Hz); its processing "
                         "starts then (or when the previous push ends) and ends after its measured compute time. Latency = that end "
                         "minus the time the estimate refers to. Beat latency is to the systolic peak.", lrows))
        secs.append(_sec("Cost growth with stream length", "Flat cost per sample and flat memory are expected (O(1) state per stream). "
                         "The first length carries the fixed start-up (ONNX Runtime session, cached numba kernels); the marginal cost "
                         "between two lengths is the steady-state cost per device sample.", grows))
        secs.append(_sec("Cost growth with concurrent streams", "K streams interleaved round-robin in one process, one core, one ONNX "
                         "Runtime thread each; sustained = all K kept up with real time.", crows))
        try:
            secs.append(_sec("Real-time factor per variant", "", None, plots.plot_rtf(bench), "rtf.png"))
        except ValueError as exc:
            log.info("rtf plot: %s", exc)
        try:
            secs.append(_sec("Cost growth", "", None, plots.plot_growth(bench), "growth.png"))
        except ValueError as exc:
            log.info("growth plot: %s", exc)
    elif plots.rtf_bars(bench):
        secs.append(_sec("Real-time factor per variant", "", None, plots.plot_rtf(bench), "rtf.png"))

    # ---- live path
    secs += live_sections(bench)

    # ---- memory
    mrows = [["model", "model", "file", "bytes", "weights (flash)", "RAM (activations + state)", "MACs/s", "duty cycle", "fits", "command"]]
    for b in bench["bundles"]:
        mem = b.get("memory") or {}
        bud = mem.get("budget") or {}
        for key, x in (bud.get("models") or {}).items():
            if "skipped" in x:
                mrows.append([b["name"], key, "-", "-", "-", "-", "-", "-", x["skipped"], x["command"]])
                continue
            mrows.append([b["name"], key, x["file"], mem["model_bytes"].get(key), _bytes(x["weight_bytes"]), _bytes(x["ram_bytes"]),
                          _f(x["macs_per_s"], ".3g"), f"{x['duty_cycle'] * 100:.2f} %" if x["duty_cycle"] is not None else "-",
                          "yes" if x["ok"] else f"no (flash {_f(x['flash_ok'])}, RAM {_f(x['ram_ok'])}, compute {_f(x['compute_ok'])})", x["command"]])
    if len(mrows) > 1:
        mcu = next(((b.get("memory") or {}).get("budget") or {}).get("mcu") for b in bench["bundles"] if (b.get("memory") or {}).get("budget", {}).get("mcu"))
        rss = [f"- {b['name']}: edgebp run peak RSS " + ", ".join(f"{v} {_f(x, '.1f')} MiB" for v, x in (b['memory'].get('runtime_peak_rss_mb') or {}).items())
               + f"; runtime imports alone {_f(b['memory'].get('imports_peak_rss_mb'), '.1f')} MiB"
               for b in bench["bundles"] if b.get("memory")]
        secs.append(_sec("Memory and the device budget", f"Device: {mcu['name']} ({mcu['core']}, {mcu['example']}, {mcu['clock_hz'] / 1e6:.0f} MHz, "
                         f"{_bytes(mcu['ram_bytes'])} RAM, {_bytes(mcu['flash_bytes'])} flash; the model may use "
                         f"{mcu['ram_fraction']:.0%} of RAM and flash and {mcu['max_duty_cycle']:.0%} of the CPU).\n\n" + "\n".join(rss), mrows))

    # ---- accuracy
    arows = [["model", "variant", "pairs", "records", "SBP ME", "SBP SD", "SBP MAE", "SBP BHS", "SBP AAMI c1", "SBP IEEE",
              "DBP ME", "DBP SD", "DBP MAE", "DBP BHS", "DBP AAMI c1", "DBP IEEE", "naive MAE S/D", "MASE S/D", "command"]]
    for b in bench["bundles"]:
        for v, a in (b.get("accuracy") or {}).items():
            if "error" in a:
                arows.append([b["name"], v, "error: " + a["error"]] + [""] * 16)
                continue
            s, d = a["sbp"], a["dbp"]
            base = a["baselines"]["training_mean"] or {}
            arows.append([b["name"], v, a["n_pairs"], a["n_records"], _f(s["me"], ".2f"), _f(s["sd"], ".2f"), _f(s["mae"], ".2f"), s["bhs_grade"],
                          _c1(s["aami_criterion1"]), s["ieee1708"], _f(d["me"], ".2f"), _f(d["sd"], ".2f"), _f(d["mae"], ".2f"), d["bhs_grade"],
                          _c1(d["aami_criterion1"]), d["ieee1708"],
                          f"{_f((base.get('sbp') or {}).get('mae'), '.2f')} / {_f((base.get('dbp') or {}).get('mae'), '.2f')}",
                          f"{_f((base.get('sbp') or {}).get('model_mase'), '.3f')} / {_f((base.get('dbp') or {}).get('model_mase'), '.3f')}",
                          a["command"]])
            c = a.get("calibrated")
            if c and c.get("sbp") and c.get("dbp"):
                cs, cd = c["sbp"], c["dbp"]
                arows.append([b["name"], f"{v} calibrated ({c['method']}, cuff at {c['calibrate_s']:g} s)", c["beats"], c["records"], "", "",
                              _f(cs["model_mae"], ".2f"), "", "", "", "", "", _f(cd["model_mae"], ".2f"), "", "", "",
                              f"hold {_f(cs['hold_mae'], '.2f')} / {_f(cd['hold_mae'], '.2f')}",
                              f"diff {_f(cs['diff'], '+.2f')} [{_f(cs['diff_ci95'][0], '+.2f')}, {_f(cs['diff_ci95'][1], '+.2f')}] / "
                              f"{_f(cd['diff'], '+.2f')} [{_f(cd['diff_ci95'][0], '+.2f')}, {_f(cd['diff_ci95'][1], '+.2f')}]",
                              a["command"] + f" (calibrated: edgebp evaluate {b['name']} --cuff-from-reference {c['calibrate_s']:g})"])
    if len(arows) > 1:
        unit = next((a.get("analysis_unit") for b in bench["bundles"] for a in (b.get("accuracy") or {}).values() if a.get("analysis_unit")), "")
        data = next((a.get("data") for b in bench["bundles"] for a in (b.get("accuracy") or {}).values() if a.get("data")), {}) or {}
        heading = ("Accuracy, INCLUDES TRAINING RECORDS (not a held-out result)" if accuracy_includes_training(bench)
                   else "Accuracy on held-out records")
        records = "\n\n".join(accuracy_records_lines(bench))
        secs.append(_sec(heading, f"Analysis unit: {unit}. Data: {data.get('source')}, split {data.get('split')}, "
                         f"{len(data.get('records') or [])} records. Naive = always the training-set mean; MASE = model MAE / naive MAE. "
                         "A 'calibrated' row: the bundle's calibrated estimator after one cuff reading (the reference mean over the "
                         "first 60 s), scored on every later beat; there the naive column is hold (the cuff value held) on the same "
                         "beats and the MASE column the MAE difference model - hold with its record-bootstrap 95 % interval."
                         + (f"\n\n{records}" if records else ""), arows))
        for x in ("size", "latency"):
            try:
                secs.append(_sec(f"Accuracy vs {x} (Pareto view)", "", None, plots.plot_pareto(bench, x), f"pareto_{x}.png"))
            except ValueError as exc:
                log.info("pareto plot (%s): %s", x, exc)
        for b in bench["bundles"]:
            for v, pr in (pairs.get(b.get("bundle")) or {}).items():
                if len(pr.get("pred_sbp", [])) == 0:
                    continue
                label = f"{b['name']} {v}"
                try:
                    secs.append(_sec(f"Bland-Altman: {label}", f"Reproduce: `{b['accuracy'][v]['evaluate_command']}`", None,
                                     plots.plot_bland_altman_pair(pr, label), f"bland_altman_{_safe(label)}.png"))
                except ValueError as exc:
                    log.info("Bland-Altman %s: %s", label, exc)

    # ---- anchors
    if bench.get("anchors"):
        rows = [["anchor", "preset", "paradigm", "params", "ONNX size", "MACs / window", "p50 ms / window [range]", "us / output sample",
                 "RTF", "output latency ms (min-max)", "threads", "command"]]
        for a in bench["anchors"]:
            for r in a["latency"]:
                ol = r.get("output_latency_ms") or {}
                olt = f"{_f(ol.get('min'))}-{_f(ol.get('max'))}" if ol.get("bounded") else "unbounded (slower than real time)"
                rows.append([a["name"], a["preset"], a["paradigm"], a["params"], _bytes(a["onnx_bytes"]), _f(a["macs_per_window"], ".3g"),
                             _spread(r["p50_ms"]), _f(r["per_output_sample_us"]), _rtf(r["real_time_factor"]), olt, r["threads"], r["command"]])
        text = ["The seeds' networks at the sizes given, exported once to ONNX (" + "; ".join(f"`{a['export_command']}`" for a in bench["anchors"])
                + f"); weights: {bench['anchors'][0]['weights']}. Output latency of a window model on a live stream: from the compute "
                "alone (newest sample of a window) to the hop plus the compute (oldest); unbounded when slower than real time.", ""]
        for r in bench.get("ratios", []):
            text.append(f"- {r['bundle']} ({r['variant']}, {r['kind']}): {_f(r['bundle_per_output_sample_us'])} us per output sample "
                        f"(real-time factor {_rtf(r['bundle_real_time_factor'])}) vs {_f(r['anchor_per_output_sample_us'])} us for {r['anchor']} "
                        f"({r['anchor_preset']}, real-time factor {_rtf(r['anchor_real_time_factor'])}); file {_bytes(r['bundle_bytes'])} vs "
                        f"{_bytes(r['anchor_bytes'])}; parameters {_f(r['bundle_params'])} vs {_f(r['anchor_params'])}: **{ratio_text(r)}**. "
                        f"Output latency: {_f(r.get('bundle_output_latency_ms_p50'))} ms median, {_f(r.get('bundle_output_latency_ms_max'))} ms "
                        f"at most (measured, whole runtime) vs " + (f"up to {_f(r.get('anchor_output_latency_ms_max'))} ms (window + compute)."
                                                                    if r.get("anchor_keeps_up") else "unbounded (the anchor is slower than real time)."))
        secs.append(_sec("Anchors: the seeds' paradigms beside edgebp", "\n".join(text), rows))
    if bench.get("errors"):
        secs.append(_sec("Errors", "Parts that failed (the rest of the bench is valid).",
                         [["where", "error"]] + [[e["where"], e["error"]] for e in bench["errors"]]))
    return secs


def _jd(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _finite(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def bench_write(out_dir: str | Path, bench: dict, pairs: dict | None = None) -> dict:
    """Write ``bench.json``, ``report.md``, ``report.html`` and the figures into ``out_dir``.

    Returns
    -------
    dict
        ``json``, ``markdown``, ``html`` paths and ``figures`` (list of paths).
    """
    from edgebp.plot.report import report_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath = out / "bench.json"
    jpath.write_text(json.dumps(_finite(json.loads(json.dumps(bench, default=_jd))), indent=1))
    arrays = {f"{b}|{v}|{k}": np.asarray(a, dtype=np.float64) for b, per in (pairs or {}).items() for v, pr in per.items() for k, a in pr.items()}
    if arrays:  # the paired beats behind the Bland-Altman plots, so the report can be redrawn
        np.savez_compressed(out / "pairs.npz", **arrays)
    paths = report_write(out, "edgebp bench", bench_sections(bench, pairs))
    return {"json": jpath, "markdown": paths.markdown, "html": paths.html, "figures": paths.figures}


def bench_load(out_dir: str | Path) -> tuple[dict, dict]:
    """A written bench back: ``(bench dict, Bland-Altman pairs)``; ``bench_write`` of the two
    redraws the same report."""
    out = Path(out_dir)
    bench = json.loads((out / "bench.json").read_text())
    pairs: dict = {}
    if (out / "pairs.npz").exists():
        with np.load(out / "pairs.npz") as z:
            for key in z.files:
                b, v, k = key.split("|")
                pairs.setdefault(b, {}).setdefault(v, {})[k] = z[key]
    return bench, pairs
