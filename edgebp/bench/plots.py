"""Bench figures, drawn from the ``bench.json`` dict alone (so any saved bench can be re-plotted).

Every function returns a :class:`matplotlib.figure.Figure` made with the Agg canvas (no
pyplot state) and raises ``ValueError`` when the bench holds nothing to draw. Artists that
carry data have a ``gid`` so tests can check what was drawn.

Examples
--------
>>> bench = {"bundles": [{"name": "m", "latency": [{"variant": "ort-int8", "kind": "window", "batch": 1,
...     "threads": 1, "samples_ms": [1.0, 1.1, 1.2], "p50_ms": {"median": 1.1}, "p99_ms": {"median": 1.2},
...     "per_output_sample_us": 8.0, "real_time_factor": 1000.0}]}],
...     "anchors": [], "settings": {"threads": 1}}
>>> fig = plot_latency_box(bench)
>>> len(fig.axes[0].get_yticklabels())
1
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

log = logging.getLogger(__name__)

_COLORS = {"torch-fp32": "tab:purple", "ort-fp32": "tab:blue", "ort-int8": "tab:green", "pruned": "tab:orange",
           "tensorrt": "tab:red", "anchor": "tab:gray"}


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_number(x: float) -> str:
    """A figure as the report's tables write it (3 significant digits): a plot's annotation
    and the table cell of the same figure are the same string.

    Examples
    --------
    >>> figure_number(44.4619), figure_number(0.2430357)
    ('44.5', '0.243')
    """
    return format(float(x), ".3g")


def latency_p50(row: dict) -> float:
    """The p50 latency of a bench row: the median over the repeats of each repeat's p50 (what
    the tables print). Not the median of all calls pooled: repeats time different numbers of
    calls, so pooling weights the fastest repeat most and gives another number."""
    return float(row["p50_ms"]["median"])


def latency_p99(row: dict) -> float:
    """The p99 latency of a bench row: the median over the repeats of each repeat's p99."""
    return float(row["p99_ms"]["median"])


def _plain_number(x: float, _pos=None) -> str:
    # whole numbers in full (2048, not 2.05e+03); others with 3 significant digits
    return f"{x:.0f}" if abs(x) >= 1000 and float(x).is_integer() else f"{x:.3g}"


def log_axis(ax: Axes, which: str = "x", fmt=_plain_number, base: float = 10) -> None:
    """Readable ticks on a log axis: few major ticks, plain labels (``fmt``), minor ticks
    unlabelled. On a narrow span (under one and a half decades) log-spaced ticks would be
    one or none, and matplotlib then labels every minor tick in scientific notation, which
    overlaps into a smear: there linearly spaced round ticks (at most 5) are used instead."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    if lo > 0 and hi / lo < base ** 1.5:
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3))
        axis.set_minor_locator(ticker.NullLocator())
    else:
        axis.set_major_locator(ticker.LogLocator(base=base, numticks=7))
        axis.set_minor_locator(ticker.LogLocator(base=base, subs="auto", numticks=12) if base == 10 else ticker.NullLocator())
    axis.set_major_formatter(ticker.FuncFormatter(fmt))
    axis.set_minor_formatter(ticker.NullFormatter())


def _layout(fig: Figure) -> None:
    # positions (constrained layout, ticks, text) without rasterising: text extents are then
    # those of the final image, at a fraction of a full draw's cost
    fig.draw_without_rendering()


def overlapping(fig: Figure, texts, pad: float = 1.0, layout: bool = True) -> list[tuple[int, int]]:
    """Pairs of indices into the visible, non-empty ``texts`` whose rendered boxes overlap (by
    the Agg renderer's text extents in pixels, each box grown by ``pad``)."""
    if layout:
        _layout(fig)
    r = fig.canvas.get_renderer()
    items = [t for t in texts if t.get_visible() and t.get_text()]
    boxes = [t.get_window_extent(r).padded(pad) for t in items]
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def tick_labels(ax: Axes, which: str = "x") -> list:
    """The tick labels matplotlib draws on ``ax`` (major and minor, inside the view)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for t in axis.get_major_ticks() + axis.get_minor_ticks():
        lab = t.label1
        if lab.get_visible() and lab.get_text() and lo <= t.get_loc() <= hi:
            out.append(lab)
    return out


def declutter_ticks(fig: Figure, *axes: tuple[Axes, str]) -> None:
    """Thin the tick labels of each ``(ax, "x" | "y")`` until none overlaps another (keep
    every 2nd label, then every 4th ...): one layout pass per round, at most 4 rounds."""
    for _ in range(4):
        _layout(fig)
        crowded = [(ax, w) for ax, w in axes if overlapping(fig, tick_labels(ax, w), layout=False)]
        if not crowded:
            return
        for ax, w in crowded:
            axis = ax.xaxis if w == "x" else ax.yaxis
            lo, hi = sorted(axis.get_view_interval())
            locs = [v for v in axis.get_majorticklocs() if lo <= v <= hi]
            axis.set_major_locator(ticker.FixedLocator(locs[::2]))
            axis.set_minor_formatter(ticker.NullFormatter())
    log.info("tick labels still overlap after thinning")


# where a point label may go, in order of preference: (dx, dy) in points, ha, va
_LABEL_SPOTS = ((5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"), (-5, -3, "right", "top"))


def place_labels(fig: Figure, *panels: tuple[Axes, list]) -> None:
    """Put each point label (an annotation of its point) where it overlaps no point and no
    label placed before it and stays inside the axes: the first free one of four spots
    around its point (right-above, right-below, left-above, left-below; left first for a
    point in the right half), then the same spots moved away from the point one label height
    at a time. ``panels``: ``(axes, its labels)`` pairs. Extents come from the Agg renderer
    after one layout pass."""
    _layout(fig)
    r = fig.canvas.get_renderer()
    for ax, labels in panels:
        _place_labels(fig, ax, labels, r)


def _place_labels(fig: Figure, ax: Axes, labels: list, r) -> None:
    inside = ax.get_window_extent(r)
    px = fig.dpi / 72.0
    marks = []
    for t in labels:  # each point's marker as a small box (scatter s=40: radius about 3.2 pt)
        x, y = ax.transData.transform(t.xy)
        marks.append(Bbox.from_extents(x - 3.5 * px, y - 3.5 * px, x + 3.5 * px, y + 3.5 * px))
    placed: list = list(marks)
    xlo, xhi = ax.get_xlim()
    mid = (xlo + xhi) / 2 if ax.get_xscale() == "linear" else float(np.sqrt(xlo * xhi))
    for t in labels:
        spots = _LABEL_SPOTS if t.xy[0] <= mid else _LABEL_SPOTS[2:] + _LABEL_SPOTS[:2]
        step = 1.2 * t.get_fontsize()
        tried = [(dx, dy + (k * step if dy > 0 else -k * step), ha, va) for k in range(12) for dx, dy, ha, va in spots]
        for dx, dy, ha, va in tried:
            t.xyann = (dx, dy)
            t.set(ha=ha, va=va)
            box = t.get_window_extent(r).padded(1.0)
            if (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
                    and not any(box.overlaps(b) for b in placed)):
                break
        else:
            t.xyann = spots[0][:2]
            t.set(ha=spots[0][2], va=spots[0][3])
            log.info("no free spot for the label %r", t.get_text())
        placed.append(t.get_window_extent(r).padded(1.0))


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
    # The box is the distribution of all timed calls (quartiles, p1); the median line and the
    # upper whisker are the figures the tables print (median over the repeats of each repeat's
    # p50 and p99), so the plot and the tables show the same numbers.
    stats = [{"label": s[0], "q1": float(np.percentile(d, 25)), "q3": float(np.percentile(d, 75)),
              "med": latency_p50(s[3]), "whislo": float(np.percentile(d, 1)), "whishi": latency_p99(s[3]), "fliers": []}
             for s, d in zip(series, data)]
    bp = ax.bxp(stats, orientation="horizontal", showfliers=False, patch_artist=True)
    for patch, s in zip(bp["boxes"], series):
        patch.set_facecolor(_COLORS.get(s[1], "tab:gray"))
        patch.set_alpha(0.6)
        patch.set_gid("box")
    for med in bp["medians"]:
        med.set_gid("median")
    for i, st in enumerate(stats, start=1):
        ax.annotate(f"{figure_number(st['med'])} ms", (max(st["whishi"], st["q3"]), i), xytext=(4, -3), textcoords="offset points",
                    fontsize=7, gid="median_text")
    ax.set_yticks(range(1, len(series) + 1), [s[0] for s in series], fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.12)
    log_axis(ax, "x")
    ax.set_xlabel("latency per inference (ms, log scale)")
    ax.set_title(f"Latency per inference, batch {batch}, {_threads(bench)} thread(s): line and number = p50, right whisker = p99 "
                 "(medians over the repeats, as in the tables); box = quartiles, left whisker = p1 of all calls", fontsize=8, wrap=True)
    ax.grid(alpha=0.3, which="both", axis="x")
    declutter_ticks(fig, (ax, "x"))
    return fig


def accuracy_points(bench: dict, x: str = "size") -> list[dict]:
    """One point per bundle variant with accuracy: size (bytes) or cost per output sample (us),
    SBP and DBP MAE, and the training-mean baseline MAE."""
    t = _threads(bench)
    key_of = {"ort-fp32": "fp32", "ort-int8": "int8", "pruned": "pruned", "torch-fp32": "fp32",
              "stream-int8": "stream_int8", "stream-fp32": "stream_fp32"}
    # a stream variant's cost is its window variant's streaming step, as in the summary table
    step_of = {"stream-int8": "ort-int8", "stream-fp32": "ort-fp32"}
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
                rows = [r for r in b.get("latency") or [] if r["variant"] == step_of.get(v, v) and r["batch"] == 1 and r["threads"] == t
                        and (v not in step_of or r["kind"] == "stream-step")]
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
    fig = _figure(10.0, 4.4)
    # sizes drawn in KiB (the project's unit; the figures themselves stay bytes in bench.json),
    # so the ticks fall on round KiB values
    scale = 1024.0 if x == "size" else 1.0
    xs = np.array([p["x"] for p in pts]) / scale
    panels = []
    for k, comp in enumerate(("sbp", "dbp")):
        ax = fig.add_subplot(1, 2, k + 1)
        ys = np.array([p[comp] for p in pts], dtype=float)
        labels = []
        for p, xv, yv in zip(pts, xs, ys):
            ax.scatter([xv], [yv], color=_COLORS.get(p["variant"], "tab:gray"), s=40, gid="point", zorder=3)
            labels.append(ax.annotate(p["label"], (xv, yv), xytext=(5, 3), textcoords="offset points", fontsize=7, gid="point_label"))
        front = _pareto(xs, ys)
        ax.plot(xs[front], ys[front], color="black", lw=1, ls="--", gid="pareto", label="Pareto front")
        bases = [p[f"base_{comp}"] for p in pts if p[f"base_{comp}"] is not None]
        if bases:
            ax.axhline(float(np.median(bases)), color="tab:red", ls=":", gid="baseline", label="naive training mean")
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.12)
        log_axis(ax, "x")
        ax.set_xlabel("model file size (KiB, log scale)" if x == "size" else "cost per output sample (us, batch 1, log scale)")
        ax.set_ylabel(f"{comp.upper()} MAE (mmHg)")
        ax.set_title(f"{comp.upper()} accuracy vs {'size' if x == 'size' else 'latency'}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        panels.append((ax, labels))
    declutter_ticks(fig, *[(ax, "x") for ax, _ in panels])
    place_labels(fig, *panels)
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
    ax.margins(x=0.1)
    log_axis(ax, "x")
    ax.set_xlabel("real-time factor (seconds of signal per second of compute, one thread; log scale)")
    ax.set_title("Real-time factor per variant", fontsize=9)
    ax.grid(alpha=0.3, which="both", axis="x")
    ax.legend(fontsize=7)
    declutter_ticks(fig, (ax, "x"))
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
    for ax in (axs[1, 0], axs[1, 1]):
        ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_plain_number))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    log_axis(axs[1, 0], "y")
    declutter_ticks(fig, *[(ax, w) for ax in axs.ravel() for w in ("x", "y")])
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
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.set_xlabel("packet (device samples per read; dotted: 64 KiB reads)")
    ax.set_ylabel("us CPU per device sample (one core)")
    ax.set_title("edgebp run on a live stream: cost by packet size", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    declutter_ticks(fig, (ax, "x"), (ax, "y"))
    return fig
