"""Bench figures, drawn from the ``bench.json`` dict alone (so any saved bench can be re-plotted).

Every function returns a :class:`matplotlib.figure.Figure` made with the Agg canvas (no
pyplot state) and raises ``ValueError`` when the bench holds nothing to draw. Artists that
carry data have a ``gid`` so tests can check what was drawn.

Examples
--------
>>> bench = {"bundles": [{"name": "m", "latency": [{"variant": "ort-int8", "kind": "window", "batch": 1,
...     "threads": 1, "samples_ms": [1.0, 1.1, 1.2], "per_output_sample_us": 8.0, "real_time_factor": 1000.0}]}],
...     "anchors": [], "settings": {"threads": 1}}
>>> fig = plot_latency_box(bench)
>>> len(fig.axes[0].get_yticklabels())
1
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_COLORS = {"torch-fp32": "tab:purple", "ort-fp32": "tab:blue", "ort-int8": "tab:green", "pruned": "tab:orange",
           "tensorrt": "tab:red", "anchor": "tab:gray"}


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _threads(bench: dict) -> int:
    return int((bench.get("settings") or {}).get("threads", 1))


def latency_series(bench: dict, batch: int = 1) -> list[tuple[str, str, list[float], dict]]:
    """(label, colour key, samples in ms, row) of every batch-``batch`` row at the bench's
    single-thread setting, bundles first, then anchors."""
    t = _threads(bench)
    out = []
    for b in bench.get("bundles", []):
        for r in b.get("latency") or []:
            if r["batch"] == batch and r["threads"] == t and r.get("samples_ms"):
                label = f"{b['name']} {r['variant']}" + (" step" if r["kind"] == "stream-step" else "")
                out.append((label, r["variant"], r["samples_ms"], r))
    for a in bench.get("anchors", []):
        for r in a.get("latency") or []:
            if r["batch"] == batch and r["threads"] == t and r.get("samples_ms"):
                out.append((f"anchor {a['name']} ({a['preset']})", "anchor", r["samples_ms"], r))
    return out


def plot_latency_box(bench: dict, batch: int = 1) -> Figure:
    """Latency distribution of every variant (batch 1, one thread): box = quartiles, whiskers
    = p1..p99, the median written beside each box. Log scale."""
    series = latency_series(bench, batch)
    if not series:
        raise ValueError("plot_latency_box: the bench holds no latency samples")
    fig = _figure(8.0, 0.45 * len(series) + 1.6)
    ax = fig.add_subplot()
    data = [np.asarray(s[2], dtype=float) for s in series]
    bp = ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, patch_artist=True)
    for patch, s in zip(bp["boxes"], series):
        patch.set_facecolor(_COLORS.get(s[1], "tab:gray"))
        patch.set_alpha(0.6)
        patch.set_gid("box")
    for i, d in enumerate(data, start=1):
        ax.annotate(f"{np.median(d):.3g} ms", (np.percentile(d, 99), i), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.set_yticks(range(1, len(series) + 1), [s[0] for s in series], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms, log scale)")
    ax.set_title(f"Latency per inference, batch {batch}, {_threads(bench)} thread(s): box = quartiles, whiskers = p1-p99", fontsize=9)
    ax.grid(alpha=0.3, which="both", axis="x")
    return fig


def accuracy_points(bench: dict, x: str = "size") -> list[dict]:
    """One point per bundle variant with accuracy: size (bytes) or cost per output sample (us),
    SBP and DBP MAE, and the training-mean baseline MAE."""
    t = _threads(bench)
    key_of = {"ort-fp32": "fp32", "ort-int8": "int8", "pruned": "pruned", "torch-fp32": "fp32"}
    out = []
    for b in bench.get("bundles", []):
        for v, acc in (b.get("accuracy") or {}).items():
            if "error" in acc or acc.get("sbp", {}).get("mae") is None:
                continue
            if x == "size":
                if v == "torch-fp32":  # the same weights as ort-fp32: one point per file
                    continue
                xv = (b.get("files", {}).get(key_of.get(v, ""), {}) or {}).get("bytes")
            else:
                rows = [r for r in b.get("latency") or [] if r["variant"] == v and r["batch"] == 1 and r["threads"] == t]
                rows.sort(key=lambda r: 0 if r["kind"] == "stream-step" else 1)
                xv = rows[0]["per_output_sample_us"] if rows else None
            if xv is None:
                continue
            base = (acc.get("baselines") or {}).get("training_mean") or {}
            out.append({"label": f"{b['name']} {v}", "variant": v, "x": float(xv),
                        "sbp": acc["sbp"]["mae"], "dbp": acc["dbp"]["mae"],
                        "base_sbp": (base.get("sbp") or {}).get("mae"), "base_dbp": (base.get("dbp") or {}).get("mae")})
    return out


def _pareto(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both x and y (lower is better), by x."""
    order = np.argsort(xs, kind="stable")
    keep, best = [], np.inf
    for i in order:
        if ys[i] < best:
            keep.append(i)
            best = ys[i]
    return np.asarray(keep, dtype=int)


def plot_pareto(bench: dict, x: str = "size") -> Figure:
    """Accuracy (MAE, lower is better) against model size or latency, SBP and DBP panels, with
    the Pareto front and the naive training-mean baseline.

    Parameters
    ----------
    x : {"size", "latency"}
        Model file size (bytes) or cost per output sample (us, batch 1, one thread).
    """
    if x not in ("size", "latency"):
        raise ValueError(f"plot_pareto: x must be 'size' or 'latency', not {x!r}")
    pts = accuracy_points(bench, x)
    if not pts:
        raise ValueError(f"plot_pareto: no variant has both accuracy and {x}")
    fig = _figure(10.0, 4.2)
    xs = np.array([p["x"] for p in pts])
    for k, comp in enumerate(("sbp", "dbp")):
        ax = fig.add_subplot(1, 2, k + 1)
        ys = np.array([p[comp] for p in pts], dtype=float)
        for p, yv in zip(pts, ys):
            ax.scatter([p["x"]], [yv], color=_COLORS.get(p["variant"], "tab:gray"), s=40, gid="point", zorder=3)
            ax.annotate(p["label"], (p["x"], yv), xytext=(4, 3), textcoords="offset points", fontsize=7)
        front = _pareto(xs, ys)
        ax.plot(xs[front], ys[front], color="black", lw=1, ls="--", gid="pareto", label="Pareto front")
        bases = [p[f"base_{comp}"] for p in pts if p[f"base_{comp}"] is not None]
        if bases:
            ax.axhline(float(np.median(bases)), color="tab:red", ls=":", gid="baseline", label="naive training mean")
        ax.set_xscale("log")
        ax.set_xlabel("model file size (bytes)" if x == "size" else "cost per output sample (us, batch 1)")
        ax.set_ylabel(f"{comp.upper()} MAE (mmHg)")
        ax.set_title(f"{comp.upper()} accuracy vs {'size' if x == 'size' else 'latency'}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig


def rtf_bars(bench: dict) -> list[tuple[str, str, float, str]]:
    """(label, colour key, real-time factor, basis) bars: model only (batch 1, one thread),
    the whole ``edgebp run`` path, and the anchors."""
    t = _threads(bench)
    out = []
    for b in bench.get("bundles", []):
        seen = set()
        for r in sorted(b.get("latency") or [], key=lambda r: 0 if r["kind"] == "stream-step" else 1):
            if r["batch"] == 1 and r["threads"] == t and r["variant"] not in seen and r.get("real_time_factor"):
                seen.add(r["variant"])
                out.append((f"{b['name']} {r['variant']} model", r["variant"], float(r["real_time_factor"]), f"model only ({r['kind']})"))
        s = b.get("streaming") or {}
        for v, run in (s.get("runs") or {}).items():
            if run.get("real_time_factor"):
                key = {"int8": "ort-int8", "fp32": "ort-fp32"}.get(v, v)
                out.append((f"{b['name']} {key} edgebp run", key, float(run["real_time_factor"]), "whole edgebp run path"))
    for a in bench.get("anchors", []):
        for r in a.get("latency") or []:
            if r["threads"] == t and r.get("real_time_factor"):
                out.append((f"anchor {a['name']} ({a['preset']})", "anchor", float(r["real_time_factor"]), a["paradigm"]))
    return out


def plot_rtf(bench: dict) -> Figure:
    """Real-time factor per variant (log scale; 1 = just real time, a device at 125 Hz)."""
    bars = rtf_bars(bench)
    if not bars:
        raise ValueError("plot_rtf: the bench holds no real-time factor")
    fig = _figure(8.0, 0.4 * len(bars) + 1.6)
    ax = fig.add_subplot()
    y = np.arange(len(bars))
    ax.barh(y, [b[2] for b in bars], color=[_COLORS.get(b[1], "tab:gray") for b in bars], alpha=0.8, gid="bars")
    for i, b in enumerate(bars):
        ax.annotate(f"{b[2]:.3g}x", (b[2], i), xytext=(3, -3), textcoords="offset points", fontsize=7)
    ax.axvline(1.0, color="tab:red", ls="--", lw=1, gid="realtime", label="real time")
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("real-time factor (seconds of signal per second of compute, one thread; log scale)")
    ax.set_title("Real-time factor per variant", fontsize=9)
    ax.grid(alpha=0.3, which="both", axis="x")
    ax.legend(fontsize=7)
    return fig


def plot_growth(bench: dict) -> Figure:
    """Cost growth: per-sample cost and peak RSS against stream length (``edgebp run``) and
    against the number of concurrent streams in one process."""
    rows = [(b["name"], b["streaming"]) for b in bench.get("bundles", []) if isinstance(b.get("streaming"), dict) and "error" not in b["streaming"]]
    if not rows:
        raise ValueError("plot_growth: the bench holds no streaming result")
    fig = _figure(10.0, 7.0)
    axs = fig.subplots(2, 2)
    for name, s in rows:
        g = s.get("length_growth") or []
        if g:
            m = [r["minutes"] for r in g]
            axs[0, 0].plot(m, [r["per_sample_us"] for r in g], "o-", label=name, gid="length_cost")
            axs[0, 1].plot(m, [r["peak_rss_mb"] for r in g], "o-", label=name, gid="length_rss")
        c = s.get("concurrency") or []
        if c:
            k = [r["streams"] for r in c]
            axs[1, 0].plot(k, [r["per_stream_real_time_factor"] for r in c], "o-", label=name, gid="streams_rtf")
            axs[1, 1].plot(k, [r["peak_rss_mb"] for r in c], "o-", label=name, gid="streams_rss")
    axs[0, 0].set(xlabel="stream length (min)", ylabel="cost per device sample (us)", title="edgebp run: cost per sample vs length")
    axs[0, 1].set(xlabel="stream length (min)", ylabel="peak RSS (MB)", title="edgebp run: peak memory vs length")
    axs[1, 0].set(xlabel="concurrent streams in one process", ylabel="real-time factor per stream", title="K streams, one core")
    axs[1, 0].axhline(1.0, color="tab:red", ls="--", lw=1, gid="realtime")
    axs[1, 1].set(xlabel="concurrent streams in one process", ylabel="peak RSS (MB)", title="K streams: peak memory")
    for ax in axs.ravel():
        ax.grid(alpha=0.3, which="both")
        ax.title.set_fontsize(9)
        if ax.lines:
            ax.legend(fontsize=7)
    for ax in (axs[1, 0], axs[1, 1]):
        ax.set_xscale("log", base=2)
    axs[1, 0].set_yscale("log")
    axs[0, 0].set_ylim(bottom=0)
    axs[0, 1].set_ylim(bottom=0)
    axs[1, 1].set_ylim(bottom=0)
    return fig


def plot_bland_altman_pair(pairs: dict, label: str) -> Figure:
    """SBP and DBP Bland-Altman panels of one variant (``pairs``: pred_sbp, ref_sbp, pred_dbp, ref_dbp)."""
    from edgebp.plot.clinical import plot_bland_altman

    fig = _figure(11.0, 4.2)
    for k, comp in enumerate(("sbp", "dbp")):
        ax = fig.add_subplot(1, 2, k + 1)
        plot_bland_altman(pairs[f"pred_{comp}"], pairs[f"ref_{comp}"], ax=ax, label=comp.upper())
        ax.set_title(f"{label}: {ax.get_title()}", fontsize=8)
    return fig


def live_series(bench: dict) -> list[tuple[str, list[int], list[float], float | None]]:
    """Per bundle and variant: (label, packet sizes, us per device sample, bulk us) from the live part."""
    out = []
    for b in bench.get("bundles", []):
        lv = b.get("live")
        if not isinstance(lv, dict) or "error" in lv:
            continue
        for v in lv.get("variants", []):
            rows = [r for r in lv["rows"] if r["variant"] == v]
            pk = [r for r in rows if r["packet_samples"]]
            bulk = next((r["per_sample_us"] for r in rows if not r["packet_samples"]), None)
            if pk:
                out.append((f"{b['name']} {v}", [r["packet_samples"] for r in pk], [r["per_sample_us"] for r in pk], bulk))
    return out


def plot_live(bench: dict) -> Figure:
    """CPU per device sample against packet size (log-log), bulk as a dotted line per series."""
    series = live_series(bench)
    if not series:
        raise ValueError("plot_live: the bench holds no live part")
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    for i, (label, k, us, bulk) in enumerate(series):
        color = f"C{i}"
        ax.plot(k, us, "o-", color=color, label=label, gid=f"live-{i}")
        if bulk:
            ax.axhline(bulk, color=color, ls=":", lw=1, gid=f"live-bulk-{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("packet (device samples per read; dotted: 64 kB reads)")
    ax.set_ylabel("us CPU per device sample (one core)")
    ax.set_title("edgebp run on a live stream: cost by packet size", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig
