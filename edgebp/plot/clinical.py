"""Clinical plots of BP estimates: Bland-Altman, scatter, error CDF, waveforms, latency.

Every function draws on a :class:`matplotlib.figure.Figure` made here (with the Agg canvas) or
on the ``ax`` given, never through ``pyplot``, so no global figure state is created or leaked,
and returns the Figure. Errors are ``estimate - reference`` (mmHg); NaN pairs are left out and
their number is written in the title.

Examples
--------
>>> import numpy as np
>>> from edgebp.plot.clinical import plot_bland_altman
>>> ref = np.array([120.0, 130.0, 140.0, 150.0])
>>> fig = plot_bland_altman(ref + [2.0, -1.0, 3.0, 0.0], ref, label="SBP")
>>> fig.axes[0].get_xlabel()
'mean of estimate and reference SBP (mmHg)'
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgebp.metrics import BHS_REQUIREMENTS_PCT, BHS_THRESHOLDS_MMHG, bhs_grade, bp_pairs_finite

logger = logging.getLogger(__name__)

#: z for 95 % limits of agreement (Bland & Altman 1986).
LOA_Z = 1.96

_GRADE_COLORS = {"A": "tab:green", "B": "tab:olive", "C": "tab:orange"}


def _figure(figsize: tuple[float, float], **kwargs) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.5)) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _figure(figsize)
        return fig, fig.add_subplot()
    return ax.get_figure(root=True), ax


def _pairs(pred: Any, ref: Any, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    p, r, n_bad = bp_pairs_finite(pred, ref)
    if p.size == 0:
        raise ValueError(f"{what}: no pair with a finite estimate and reference to plot")
    if n_bad:
        logger.info("%s: %d NaN/inf pairs left out", what, n_bad)
    return p, r, n_bad


def _excluded_note(n_bad: int) -> str:
    return f", {n_bad} NaN pairs left out" if n_bad else ""


def plot_bland_altman(pred: Any, ref: Any, ax: Axes | None = None, label: str = "SBP") -> Figure:
    """Bland-Altman plot: x = mean of estimate and reference, y = estimate - reference.

    Draws the bias (mean difference) and the 95 % limits of agreement, bias +/- 1.96 SD (sample
    SD, ddof=1), each annotated with its value.

    Parameters
    ----------
    pred, ref : array-like
        Estimates and references (mmHg), paired by position.
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    label : str
        The quantity ("SBP", "DBP", "MAP"), used in the labels.

    Returns
    -------
    Figure
        The scatter has gid ``"points"``; the lines have gids ``"bias"``, ``"loa_upper"`` and
        ``"loa_lower"``.

    Examples
    --------
    >>> fig = plot_bland_altman([121.0, 118.0, 133.0], [120.0, 120.0, 130.0], label="SBP")
    >>> [ln.get_gid() for ln in fig.axes[0].lines]
    ['bias', 'loa_upper', 'loa_lower']
    """
    p, r, n_bad = _pairs(pred, ref, "plot_bland_altman")
    fig, ax = _axes(ax)
    mean = (p + r) / 2.0
    diff = p - r
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size >= 2 else 0.0
    hi, lo = bias + LOA_Z * sd, bias - LOA_Z * sd
    ax.scatter(mean, diff, s=10, alpha=0.5, color="tab:blue", gid="points",
               label=f"{diff.size} readings")
    ax.axhline(bias, color="black", lw=1.2, gid="bias", label=f"bias {bias:+.2f}")
    ax.axhline(hi, color="tab:red", ls="--", lw=1.0, gid="loa_upper", label=f"+1.96 SD {hi:+.2f}")
    ax.axhline(lo, color="tab:red", ls="--", lw=1.0, gid="loa_lower", label=f"-1.96 SD {lo:+.2f}")
    trans = ax.get_yaxis_transform()  # x in axes fraction, y in data: labels stay at the right edge
    for y, text in ((bias, f"bias {bias:+.1f}"), (hi, f"+1.96 SD {hi:+.1f}"), (lo, f"-1.96 SD {lo:+.1f}")):
        ax.annotate(text, xy=(1.0, y), xycoords=trans, xytext=(-4, 3), textcoords="offset points",
                    ha="right", va="bottom", fontsize=8)
    ax.set_xlabel(f"mean of estimate and reference {label} (mmHg)")
    ax.set_ylabel(f"estimate - reference {label} (mmHg)")
    ax.set_title(f"Bland-Altman {label}: bias {bias:+.2f}, SD {sd:.2f} (ddof=1), "
                 f"LoA [{lo:.1f}, {hi:.1f}] mmHg{_excluded_note(n_bad)}", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def plot_scatter(pred: Any, ref: Any, ax: Axes | None = None, label: str = "SBP") -> Figure:
    """Estimate (y) against reference (x) with the identity line and Pearson r.

    Returns
    -------
    Figure
        The scatter has gid ``"points"`` (offsets = (ref, pred)); the identity line ``"identity"``.

    Examples
    --------
    >>> fig = plot_scatter([121.0, 118.0, 133.0], [120.0, 120.0, 130.0])
    >>> fig.axes[0].get_ylabel()
    'estimate SBP (mmHg)'
    """
    p, r, n_bad = _pairs(pred, ref, "plot_scatter")
    fig, ax = _axes(ax, (5.0, 5.0))
    rr = None
    if p.size >= 2 and p.std() > 0 and r.std() > 0:
        rr = float(np.corrcoef(p, r)[0, 1])
    ax.scatter(r, p, s=10, alpha=0.5, color="tab:blue", gid="points", label=f"{p.size} readings")
    lo = float(min(p.min(), r.min()))
    hi = float(max(p.max(), r.max()))
    pad = max(1.0, 0.05 * (hi - lo))
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=1.0, gid="identity",
            label="identity")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"reference {label} (mmHg)")
    ax.set_ylabel(f"estimate {label} (mmHg)")
    r_text = "r undefined" if rr is None else f"r = {rr:.3f}"
    ax.set_title(f"{label}: {r_text}, n = {p.size}{_excluded_note(n_bad)}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_error_cdf(pred: Any, ref: Any = None, ax: Axes | None = None, label: str = "SBP") -> Figure:
    """Cumulative share of ``|estimate - reference|`` with the BHS thresholds and requirements.

    Vertical lines at 5, 10 and 15 mmHg (gids ``"bhs_5"``, ``"bhs_10"``, ``"bhs_15"``); for each
    BHS grade the shares it needs at those thresholds are drawn as markers (gids ``"bhs_req_A"``
    etc.). The curve (gid ``"cdf"``) starts at (0, 0) and then steps through the sorted
    ``|error|`` values: y = 100 * k / n at the k-th smallest.

    Parameters
    ----------
    pred, ref : array-like
        Estimates and references (mmHg). With ``ref=None``, ``pred`` is taken to be the errors
        (``estimate - reference``) themselves.
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    label : str
        The quantity ("SBP", "DBP", "MAP").

    Examples
    --------
    >>> fig = plot_error_cdf([121.0, 118.0, 133.0], [120.0, 120.0, 130.0])
    >>> [float(ln.get_xdata()[0]) for ln in fig.axes[0].lines
    ...  if ln.get_gid() in ("bhs_5", "bhs_10", "bhs_15")]
    [5.0, 10.0, 15.0]
    >>> fig = plot_error_cdf([1.0, -3.0, 12.0], label="DBP")  # errors only
    """
    if ref is None:
        errors = np.asarray(pred, dtype=np.float64).ravel()
        p, r, n_bad = _pairs(errors, np.zeros_like(errors), "plot_error_cdf")
    else:
        p, r, n_bad = _pairs(pred, ref, "plot_error_cdf")
    fig, ax = _axes(ax)
    a = np.sort(np.abs(p - r))
    n = a.size
    x = np.concatenate([[0.0], a])
    y = np.concatenate([[0.0], 100.0 * np.arange(1, n + 1) / n])
    ax.plot(x, y, drawstyle="steps-post", color="tab:blue", lw=1.5, gid="cdf",
            label=f"{label}, n = {n}")
    for t in BHS_THRESHOLDS_MMHG:
        ax.axvline(t, color="grey", ls=":", lw=1.0, gid=f"bhs_{t:g}")
    for grade, req in BHS_REQUIREMENTS_PCT.items():
        ax.plot(BHS_THRESHOLDS_MMHG, req, ls="none", marker="_", markersize=14, mew=2,
                color=_GRADE_COLORS[grade], gid=f"bhs_req_{grade}", label=f"BHS {grade} needs")
    shares = [100.0 * np.count_nonzero(a <= t + 1e-9) / n for t in BHS_THRESHOLDS_MMHG]
    ax.set_xlim(0.0, max(20.0, float(np.percentile(a, 99)) * 1.05))
    ax.set_ylim(0.0, 101.0)
    ax.set_xlabel(f"|estimate - reference| {label} (mmHg)")
    ax.set_ylabel("cumulative share of readings (%)")
    ax.set_title(f"{label}: within 5/10/15 mmHg {shares[0]:.0f}/{shares[1]:.0f}/{shares[2]:.0f} %, "
                 f"BHS grade {bhs_grade(p - r)}{_excluded_note(n_bad)}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_waveforms(t: Any, ref_abp: Any, pred_abp: Any = None, ppg: Any = None, ecg: Any = None,
                   title: str | None = None) -> Figure:
    """Stacked panels sharing the time axis: ABP (reference and estimate), then PPG, then ECG.

    Parameters
    ----------
    t : array-like
        Time (s) of every sample; all signals must have its length.
    ref_abp, pred_abp : array-like
        Reference and estimated arterial pressure (mmHg); ``pred_abp`` may be None.
    ppg, ecg : array-like, optional
        Input signals, each drawn in its own panel.

    Returns
    -------
    Figure
        Lines have gids ``"ref_abp"``, ``"pred_abp"``, ``"ppg"``, ``"ecg"``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(250) / 125.0
    >>> fig = plot_waveforms(t, 100 + 20 * np.sin(t), 100 + 18 * np.sin(t), ppg=np.cos(t))
    >>> len(fig.axes)
    2
    """
    tt = np.asarray(t, dtype=np.float64)
    if tt.ndim != 1 or tt.size == 0:
        raise ValueError("plot_waveforms: t must be a non-empty 1-D array of times (s)")
    signals = {"ref_abp": ref_abp, "pred_abp": pred_abp, "ppg": ppg, "ecg": ecg}
    arrays = {}
    for name, x in signals.items():
        if x is None:
            continue
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape != tt.shape:
            raise ValueError(f"plot_waveforms: {name} has shape {arr.shape}, t has {tt.shape}")
        arrays[name] = arr
    panels = ["abp"] + [k for k in ("ppg", "ecg") if k in arrays]
    fig = _figure((9.0, 2.2 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.plot(tt, arrays["ref_abp"], color="black", lw=1.0, gid="ref_abp", label="reference ABP")
    if "pred_abp" in arrays:
        ax.plot(tt, arrays["pred_abp"], color="tab:red", lw=1.0, gid="pred_abp", label="estimated ABP")
    ax.set_ylabel("ABP (mmHg)")
    ax.legend(loc="upper right", fontsize=8)
    units = {"ppg": "PPG (a.u.)", "ecg": "ECG (mV)"}
    for ax_i, name in zip(axes[1:], panels[1:]):
        ax_i.plot(tt, arrays[name], color="tab:blue" if name == "ppg" else "tab:green", lw=0.8, gid=name)
        ax_i.set_ylabel(units[name])
    for a in axes:
        a.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_latency_hist(latencies_ms: Any, label: str, ax: Axes | None = None, bins: int = 50,
                      marks: dict[str, float] | None = None, marks_note: str = "") -> Figure:
    """Histogram of latencies (ms) with the median, 95th and 99th percentiles marked.

    Parameters
    ----------
    latencies_ms : array-like
        Every timed call (ms).
    label : str
        What was timed, for the title.
    marks : dict, optional
        The lines to draw instead of the percentiles of ``latencies_ms``, e.g. ``{"p50": 1.2,
        "p99": 1.9}``: the figures a table prints (a bench's p50 is the median over repeats of
        each repeat's p50, not the percentile of all calls pooled), so the plot and the table
        show the same number. ``marks_note`` says what they are, in the title.

    Returns
    -------
    Figure
        Percentile lines have gids ``"p50"``, ``"p95"``, ``"p99"`` (the keys of ``marks``).

    Examples
    --------
    >>> fig = plot_latency_hist([1.0, 1.2, 1.1, 5.0], "onnxruntime int8")
    >>> fig.axes[0].get_xlabel()
    'latency (ms)'
    >>> fig = plot_latency_hist([1.0, 1.2, 1.1, 5.0], "ort", marks={"p50": 1.15, "p99": 4.0})
    >>> [ln.get_gid() for ln in fig.axes[0].lines]
    ['p50', 'p99']
    """
    x = np.asarray(latencies_ms, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        raise ValueError("plot_latency_hist: no finite latency to plot")
    fig, ax = _axes(ax, (6.0, 3.5))
    ax.hist(finite, bins=bins, color="tab:blue", alpha=0.7, gid="hist")
    if marks:
        pct = {k: float(v) for k, v in marks.items()}
    else:
        pct = {f"p{q}": float(np.percentile(finite, q)) for q in (50, 95, 99)}
    styles = {"p50": ("black", "-"), "p95": ("tab:orange", "--"), "p99": ("tab:red", ":")}
    for q, v in pct.items():
        color, ls = styles.get(q, ("tab:gray", "-."))
        ax.axvline(v, color=color, ls=ls, lw=1.2, gid=q, label=f"{q} {v:.3g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("count")
    dropped = x.size - finite.size
    figs = ", ".join(("median" if q == "p50" else q) + f" {v:.3g} ms" for q, v in pct.items())
    ax.set_title(f"{label}: n = {finite.size}, {figs}" + (f" ({marks_note})" if marks and marks_note else "")
                 + (f", {dropped} non-finite left out" if dropped else ""), fontsize=9, wrap=True)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_calibrated_vs_hold(by_change: dict, title: str = "") -> Figure:
    """Calibrated model against hold, MAE per bin of how far BP moved from the cuff value.

    ``by_change``: target -> list of ``{"change_mmHg", "n", "model_mae", "hold_mae"}`` (the
    ``by_change`` rows of :func:`edgebp.runtime.calibrated_score.calibrated_report`).

    Examples
    --------
    >>> rows = [{"change_mmHg": "0-5", "n": 10, "model_mae": 2.0, "hold_mae": 2.1},
    ...         {"change_mmHg": ">20", "n": 0, "model_mae": None, "hold_mae": None}]
    >>> fig = plot_calibrated_vs_hold({"sbp": rows})
    >>> fig.axes[0].get_ylabel()
    'MAE (mmHg)'
    """
    keys = list(by_change)
    if not keys:
        raise ValueError("plot_calibrated_vs_hold: nothing to plot")
    fig = _figure((4.2 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        rows = by_change[key]
        x = np.arange(len(rows))
        m = [r["model_mae"] if r["model_mae"] is not None else np.nan for r in rows]
        h = [r["hold_mae"] if r["hold_mae"] is not None else np.nan for r in rows]
        ax.bar(x - 0.2, m, 0.4, label="calibrated model", color="tab:blue", gid="model")
        ax.bar(x + 0.2, h, 0.4, label="hold the cuff value", color="tab:gray", gid="hold")
        ax.set_xticks(x, [f"{r['change_mmHg']}\nn={r['n']}" for r in rows], fontsize=8)
        ax.set_xlabel(f"|{key.upper()} change from the cuff value| (mmHg)")
        ax.set_ylabel("MAE (mmHg)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
