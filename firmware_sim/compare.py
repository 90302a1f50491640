"""Score a runtime's output against the simulator's truth file.

The runtime knows only what reached it: it places samples on a time axis that starts at the
first sample it parsed, counts every device sample it parsed or knows is missing (from
sequence gaps), and restarts after a device reset where the previous boot's last known
sample ended. The truth file knows every tick. This module maps the truth onto the
runtime's axis (per boot, the ticks from its first to its last intact frame, in order;
reboot ticks and frames no sequence gap reveals are not on it) and measures:

- point-wise ABP error wherever the runtime claimed a value;
- per-beat SBP/DBP error of the runtime's beats against the truth beats, paired by time
  (the truth beats' source times are mapped onto the runtime's axis through the true
  sample instants, so the device's clock error does not shift them);
- per fault: whether anything was claimed while the signal was wrong or missing, and how
  soon valid output resumed after the fault ended.

Fault classes in the table
--------------------------
``signal``  saturate, leadoff, flat: the samples arrive but carry no physiology; nothing may
            be claimed over them.
``lost``    runs of frames that never arrived intact (dropped, UART overflow, truncated,
            corrupted, lost at a reset) longer than the runtime's interpolation bridge;
            nothing may be claimed over them.
``bridged`` runs of at most ``bridge_samples`` lost frames: the runtime interpolates them
            (counted in its summary), so claims across them are expected; listed as a count.
``reset``   a device reboot: zero length on the runtime's axis; only the time to resume.
``motion``  an artefact burst: the samples are corrupted but look like signal. Reported
            (claims and error during it), not judged: the runtime has no motion detector
            unless its input gate catches the burst.

Examples
--------
>>> import numpy as np
>>> truth = {"status": np.array(["emitted"] * 6), "boot": np.zeros(6, int),
...          "t_true_s": np.arange(6) / 2.0, "abp_mmHg": np.arange(6) * 10.0,
...          "fault_bits": np.zeros(6, int)}
>>> out = RuntimeOutput(np.arange(6) / 2.0, np.arange(6) * 10.0 + 1.0, np.ones(6, bool))
>>> runtime_truth_compare(out, truth, fs=2.0)["pointwise"]["mae"]
1.0
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebp.firmware_sim.faults import FAULT_BITS

# faults after which the signal itself is wrong or missing: no BP may be claimed over them
SIGNAL_FAULTS = ("saturate", "leadoff", "flat")
# artefacts that look like signal: measured, not judged
ARTEFACT_FAULTS = ("motion",)
# statuses of ticks whose sample never reached the runtime intact
LOST_STATUSES = ("dropped", "overflow", "truncated", "corrupted", "reset_lost")
# the runtime bridges gaps of at most this many samples by interpolation
# (edgebp.runtime.run.MAX_INTERP_SAMPLES; repeated here so scoring needs no runtime import)
BRIDGE_SAMPLES = 2


@dataclass
class RuntimeOutput:
    """Point-wise output of ``edgebp run`` (times on the runtime's axis, s; ABP in mmHg)."""

    t: np.ndarray
    abp: np.ndarray
    valid: np.ndarray

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "RuntimeOutput":
        """Read ``bp.csv`` (``time,abp,valid,reason``) or ``bp.jsonl`` as written by ``edgebp run``."""
        if str(path).endswith(".jsonl"):
            return cls(*_jsonl_read(path)[0])
        t, a, v = [], [], []
        with open(path) as fh:
            header = None
            for line_no, ln in enumerate(fh, start=1):
                if not ln.strip() or ln.startswith("#"):
                    continue
                if header is None:
                    header = ln
                    if not ln.startswith("time,abp,valid"):
                        raise ValueError(f"{path}: line {line_no}: not an edgebp run CSV "
                                         "(expected the header time,abp,valid,reason)")
                    continue
                p = ln.rstrip("\n").split(",")
                try:
                    t.append(float(p[0]))
                    a.append(float(p[1]) if p[1] else np.nan)
                    v.append(p[2] == "1")
                except (ValueError, IndexError):
                    raise ValueError(f"{path}: line {line_no}: expected time,abp,valid,reason, got {ln.strip()!r}") from None
        if header is None:
            raise ValueError(f"{path}: empty (no time,abp,valid,reason header)")
        return cls(np.asarray(t, float), np.asarray(a, float), np.asarray(v, bool))


def runtime_beats_read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Beats of ``edgebp run``: ``bp.beats.csv`` beside ``bp.csv`` (or the beat rows of a
    ``.jsonl``). Returns arrays ``t``, ``sbp``, ``dbp``, ``map``.

    ``path`` may be the point-wise CSV itself; its beats file is then found beside it.
    """
    p = Path(path)
    if p.suffix == ".jsonl":
        return _jsonl_read(p)[1]
    if not p.name.endswith(".beats.csv"):
        p = p.with_suffix(".beats.csv")
    cols: dict[str, list[float]] = {"t": [], "sbp": [], "dbp": [], "map": []}
    with open(p) as fh:
        header = None
        for line_no, ln in enumerate(fh, start=1):
            if not ln.strip() or ln.startswith("#"):
                continue
            if header is None:
                header = ln.strip().split(",")
                if header[:4] != ["time", "sbp", "dbp", "map"]:
                    raise ValueError(f"{p}: line {line_no}: expected the header time,sbp,dbp,map")
                continue
            try:
                vals = [float(x) for x in ln.strip().split(",")[:4]]
            except ValueError:
                raise ValueError(f"{p}: line {line_no}: not four numbers: {ln.strip()!r}") from None
            if len(vals) != 4:
                raise ValueError(f"{p}: line {line_no}: expected time,sbp,dbp,map")
            for k, x in zip(cols, vals):
                cols[k].append(x)
    return {k: np.asarray(v, float) for k, v in cols.items()}


def _jsonl_read(path) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    t, a, v = [], [], []
    beats: dict[str, list[float]] = {"t": [], "sbp": [], "dbp": [], "map": []}
    with open(path) as fh:
        for line_no, ln in enumerate(fh, start=1):
            if not ln.strip():
                continue
            try:
                row = json.loads(ln)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_no}: not JSON ({exc.msg})") from None
            if row.get("type") == "sample":
                t.append(float(row["t"]))
                a.append(np.nan if row.get("abp") is None else float(row["abp"]))
                v.append(bool(row["valid"]))
            elif row.get("type") == "beat":
                for k in beats:
                    beats[k].append(float(row[k]))
    return (np.asarray(t, float), np.asarray(a, float), np.asarray(v, bool)), {k: np.asarray(x, float) for k, x in beats.items()}


def truth_axis(truth: dict, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the runtime puts each tick: ``(runtime-axis time s, tick index)``.

    Per boot, the runtime's axis runs from the first to the last frame that arrived intact
    (frames lost before the first or after the last one leave no sequence gap, so the
    runtime cannot know them), and the next boot continues where it ended.

    Examples
    --------
    >>> st = np.array(["dropped", "emitted", "dropped", "emitted", "reset_lost", "reboot", "emitted", "emitted"])
    >>> t, idx = truth_axis({"status": st, "boot": np.array([0, 0, 0, 0, 0, 1, 1, 1])}, fs=1.0)
    >>> idx.tolist(), t.tolist()
    ([1, 2, 3, 6, 7], [0.0, 1.0, 2.0, 3.0, 4.0])
    """
    status = np.asarray(truth["status"]).astype(str)
    boot = np.asarray(truth.get("boot", np.zeros(len(status), int)))
    sampled = status != "reboot"
    intact = status == "emitted"
    keep = []
    for b in np.unique(boot[sampled]):
        idx = np.flatnonzero(sampled & (boot == b))
        w = np.flatnonzero(intact[idx])
        if len(w):
            keep.append(idx[w[0] : w[-1] + 1])
    idx = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return np.arange(len(idx)) / fs, idx


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _stats(e: np.ndarray, ref: np.ndarray | None = None) -> dict:
    """ME/SD/MAE of errors; with ``ref``, also ``const_mae``: the MAE of predicting the mean of
    ``ref`` everywhere (an oracle constant: this subject's own mean, i.e. a perfectly
    calibrated "hold the mean" baseline; context for the MAE, not a calibration-free bar)."""
    e = np.asarray(e, float)
    out = {"n": int(len(e)), "me": float(e.mean()) if len(e) else None,
           "sd": float(e.std(ddof=1)) if len(e) > 1 else None, "mae": float(np.abs(e).mean()) if len(e) else None}
    if ref is not None:
        r = np.asarray(ref, float)
        out["const_mae"] = float(np.abs(r - r.mean()).mean()) if len(r) else None
    return out


def runtime_truth_compare(out: RuntimeOutput, truth: dict, fs: float, recover_window_s: float = 2.0,
                          bridge_samples: int = BRIDGE_SAMPLES) -> dict:
    """Point-wise error and fault behaviour of a runtime output against a truth file.

    Parameters
    ----------
    out : RuntimeOutput
    truth : dict
        From :func:`edgebp.firmware_sim.truth.truth_read` (or ``SimResult.truth``).
    fs : float
        The device's nominal sampling rate (the runtime's axis counts samples at it).
    recover_window_s : float
        A fault is *judged* for recovery when at least this much + 1 s of clean signal
        follows it (else another fault or the end of the stream interferes).
    bridge_samples : int
        Lost runs up to this length are bridged by the runtime's interpolation.

    Returns
    -------
    dict
        ``valid_share``; ``pointwise`` (n, me, sd, mae in mmHg over claimed outputs);
        ``pointwise_clean`` (the same outside every fault interval); ``faults``: one dict
        per fault interval with ``class`` (signal, lost, reset, motion), ``kinds``,
        ``start_s``/``end_s`` on the runtime's axis, ``outputs_during``,
        ``claimed_valid_during``, ``mae_during``, ``resume_s`` (first valid output at or
        after the end, minus the end) and ``judged``; ``bridged`` (count and samples of
        bridged lost runs); ``axis`` (ticks on the runtime's axis, how many were cut).

    Examples
    --------
    >>> st = np.array(["emitted"] * 10)
    >>> bits = np.zeros(10, int); bits[3:5] = FAULT_BITS["flat"]
    >>> truth = {"status": st, "t_true_s": np.arange(10.0), "abp_mmHg": np.full(10, 90.0), "fault_bits": bits}
    >>> valid = np.ones(10, bool); valid[3:6] = False
    >>> res = runtime_truth_compare(RuntimeOutput(np.arange(10.0), np.full(10, 92.0), valid), truth, 1.0, 1.0)
    >>> f = res["faults"][0]
    >>> f["class"], f["claimed_valid_during"], f["resume_s"], f["judged"]
    ('signal', 0, 1.0, True)
    """
    axis_t, ticks = truth_axis(truth, fs)
    n_ticks = len(np.asarray(truth["status"]))
    abp_true = np.asarray(truth["abp_mmHg"], dtype=float)[ticks]
    bits = np.asarray(truth.get("fault_bits", np.zeros(n_ticks, int)))[ticks]
    status = np.asarray(truth["status"]).astype(str)[ticks]
    boot = np.asarray(truth.get("boot", np.zeros(n_ticks, int)))[ticks]
    ref = np.full(len(out.t), np.nan)
    if len(axis_t):
        inside = (out.t >= axis_t[0]) & (out.t <= axis_t[-1])
        ref[inside] = np.interp(out.t[inside], axis_t, abp_true)
    claimed = out.valid & np.isfinite(out.abp)
    ok = claimed & np.isfinite(ref)
    err = out.abp - ref

    lost = np.isin(status, LOST_STATUSES)
    signal = np.zeros(len(ticks), bool)
    for name in SIGNAL_FAULTS:
        signal |= (bits & FAULT_BITS[name]) > 0
    motion = np.zeros(len(ticks), bool)
    for name in ARTEFACT_FAULTS:
        motion |= (bits & FAULT_BITS[name]) > 0
    bridged_runs = [(a, b) for a, b in _intervals(lost) if b - a <= bridge_samples and not signal[a:b].any()]
    bridged = np.zeros(len(ticks), bool)
    for a, b in bridged_runs:
        bridged[a:b] = True
    bad = (lost & ~bridged) | signal
    any_fault = bad | motion | bridged
    res: dict = {
        "valid_share": float(out.valid.mean()) if len(out.valid) else 0.0,
        "outputs": int(len(out.t)),
        "pointwise": _stats(err[ok], ref[ok]),
        "faults": [],
        "bridged": {"runs": len(bridged_runs), "samples": int(bridged.sum())},
        "axis": {"ticks": int(len(ticks)), "ticks_total": int(n_ticks),
                 "off_axis": int(np.sum(np.asarray(truth["status"]).astype(str) != "reboot") - len(ticks))},
    }
    fault_t = np.zeros(len(out.t), bool)
    after_n = int(round((recover_window_s + 1.0) * fs))

    def entry(cls: str, a: int, b: int, kinds: list[str]) -> dict:
        t0 = float(axis_t[a]) if a < len(axis_t) else float(len(axis_t) / fs)
        t1 = float(axis_t[b]) if b < len(axis_t) else float(len(axis_t) / fs)
        during = (out.t >= t0) & (out.t < t1)
        fault_t[during] = True
        nxt = np.flatnonzero((out.t >= t1) & out.valid)
        resume = float(out.t[nxt[0]] - t1) if len(nxt) else None
        # only faults followed by enough clean signal of the same boot can show recovery
        tail = slice(b, b + after_n)
        clean_after = (len(axis_t) - b) >= after_n and not bad[tail].any() and not motion[tail].any() \
            and (b >= len(boot) or (boot[tail] == boot[b]).all())
        e = err[during & ok]
        return {"class": cls, "kinds": kinds, "start_s": t0, "end_s": t1, "outputs_during": int(during.sum()),
                "claimed_valid_during": int(claimed[during].sum()),
                "mae_during": float(np.abs(e).mean()) if len(e) else None,
                "resume_s": resume, "judged": bool(clean_after)}

    def kinds_of(a: int, b: int) -> list[str]:
        # the state faults first, then what became of the frames (the frame-fault bits
        # drop/corrupt/truncate only repeat the statuses dropped/corrupted/truncated)
        names = [n for n in SIGNAL_FAULTS + ARTEFACT_FAULTS if ((bits[a:b] & FAULT_BITS[n]) > 0).any()]
        return names + [s for s in LOST_STATUSES if (status[a:b] == s).any()]

    for a, b in _intervals(bad):
        cls = "signal" if signal[a:b].any() else "lost"
        res["faults"].append(entry(cls, a, b, kinds_of(a, b)))
    for a, b in _intervals(motion & ~bad):
        res["faults"].append(entry("motion", a, b, kinds_of(a, b)))
    for j in np.flatnonzero(np.diff(boot) != 0) + 1:
        res["faults"].append(entry("reset", int(j), int(j), ["reset"]))
    res["faults"].sort(key=lambda f: (f["start_s"], f["class"]))
    # outputs clear of every fault: the runtime's accuracy on clean signal
    keep = ok.copy()
    if len(axis_t):
        near = np.clip(np.searchsorted(axis_t, out.t), 0, len(axis_t) - 1)
        keep &= ~any_fault[near]
    keep &= ~fault_t
    res["pointwise_clean"] = _stats(err[keep], ref[keep])
    return res


def truth_beats_on_axis(truth_beats: dict, truth: dict, fs: float) -> dict[str, np.ndarray]:
    """Truth beats (source times) placed on the runtime's axis; beats the device did not
    observe (before its first / after its last sample, or inside a reboot) are left out.

    Returns arrays ``t`` (runtime axis, s), ``sbp``, ``dbp``, ``map`` of valid beats.
    """
    axis_t, ticks = truth_axis(truth, fs)
    t_src = np.asarray(truth["t_true_s"], float)[ticks]
    ts = np.asarray(truth_beats["t_sys_s"], float)
    valid = np.asarray(truth_beats.get("valid", np.ones(len(ts), int))).astype(bool)
    keep = valid & np.isfinite(ts)
    if len(t_src) >= 2:
        keep &= (ts >= t_src[0]) & (ts <= t_src[-1])
        j = np.clip(np.searchsorted(t_src, ts), 1, len(t_src) - 1)
        # inside a stretch the runtime never saw (a reboot): the axis jumps over it
        keep &= (t_src[j] - t_src[j - 1]) < 1.5 / fs
    else:
        keep &= False
    t_axis = np.interp(ts[keep], t_src, axis_t) if keep.any() else np.zeros(0)
    return {"t": t_axis, "sbp": np.asarray(truth_beats["sbp_mmHg"], float)[keep],
            "dbp": np.asarray(truth_beats["dbp_mmHg"], float)[keep], "map": np.asarray(truth_beats["map_mmHg"], float)[keep]}


def beats_pair(pred_t: np.ndarray, ref_t: np.ndarray, max_dt_s: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Pair two beat-time lists one to one, nearest first, within ``max_dt_s``.

    Returns index arrays ``(i_pred, i_ref)`` sorted by the predicted beat's time.

    Examples
    --------
    >>> beats_pair(np.array([1.02, 1.9, 5.0]), np.array([1.0, 2.0, 3.0]))
    (array([0, 1]), array([0, 1]))
    """
    pred_t, ref_t = np.asarray(pred_t, float), np.asarray(ref_t, float)
    if not len(pred_t) or not len(ref_t):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(ref_t)
    rs = ref_t[order]
    cand = []
    for i, t in enumerate(pred_t):
        k = np.searchsorted(rs, t)
        for j in (k - 1, k):
            if 0 <= j < len(rs) and abs(rs[j] - t) <= max_dt_s:
                cand.append((abs(rs[j] - t), i, int(order[j])))
    cand.sort()
    used_p, used_r, pairs = set(), set(), []
    for _, i, j in cand:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
            pairs.append((i, j))
    pairs.sort()
    a = np.asarray(pairs, np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def beats_truth_compare(pred_beats: dict, truth_beats: dict, truth: dict, fs: float, max_dt_s: float = 0.3) -> dict:
    """Per-beat SBP/DBP/MAP error of the runtime's beats against the truth beats, paired by time.

    Parameters
    ----------
    pred_beats : dict
        ``t``, ``sbp``, ``dbp``, ``map`` (runtime axis), e.g. from :func:`runtime_beats_read`.
    truth_beats : dict
        The simulator's beat truth (``t_sys_s``, ``sbp_mmHg``, ... on the source axis).
    truth : dict
        The per-sample truth (to map source times onto the runtime's axis).
    fs : float
        The device's nominal rate.
    max_dt_s : float
        Largest systolic-time difference of a pair.

    Returns
    -------
    dict
        ``n_truth`` (observed valid truth beats), ``n_runtime``, ``n_paired``, ``dt_median_s``
        (runtime minus truth), and ``sbp``/``dbp``/``map`` error stats (n, me, sd, mae).
    """
    ref = truth_beats_on_axis(truth_beats, truth, fs)
    pt = np.asarray(pred_beats.get("t", []), float)
    ip, ir = beats_pair(pt, ref["t"], max_dt_s)
    res = {"n_truth": int(len(ref["t"])), "n_runtime": int(len(pt)), "n_paired": int(len(ip)),
           "max_dt_s": float(max_dt_s),
           "dt_median_s": float(np.median(pt[ip] - ref["t"][ir])) if len(ip) else None}
    for k in ("sbp", "dbp", "map"):
        res[k] = _stats(np.asarray(pred_beats[k], float)[ip] - ref[k][ir], ref[k][ir])
    return res


def _f(x, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def compare_report_text(pointwise: dict, beats: dict | None = None) -> str:
    """Plain-text report of :func:`runtime_truth_compare` (and :func:`beats_truth_compare`).

    Examples
    --------
    >>> st = np.array(["emitted"] * 4)
    >>> truth = {"status": st, "t_true_s": np.arange(4.0), "abp_mmHg": np.full(4, 90.0)}
    >>> res = runtime_truth_compare(RuntimeOutput(np.arange(4.0), np.full(4, 93.0), np.ones(4, bool)), truth, 1.0)
    >>> print(compare_report_text(res).splitlines()[1])
    point-wise ABP vs truth (claimed outputs): n 4  ME +3.0  SD 0.0  MAE 3.0 mmHg  [oracle constant (this subject's mean) MAE 0.0]
    """
    r = pointwise
    p, c = r["pointwise"], r["pointwise_clean"]
    lines = [f"valid share: {r['valid_share'] * 100:.1f} % of {r['outputs']} outputs; {r['axis']['ticks']} device samples on the "
             f"runtime's axis, {r['axis']['off_axis']} sampled frames off it (lost before/after a boot's first/last intact frame)",
             f"point-wise ABP vs truth (claimed outputs): n {p['n']}  ME {_f(p['me'], '{:+.1f}')}  SD {_f(p['sd'])}  MAE {_f(p['mae'])} mmHg"
             f"  [oracle constant (this subject's mean) MAE {_f(p['const_mae'])}]",
             f"point-wise ABP vs truth, clear of faults:  n {c['n']}  ME {_f(c['me'], '{:+.1f}')}  SD {_f(c['sd'])}  MAE {_f(c['mae'])} mmHg"]
    if beats is not None:
        b = beats
        lines.append(f"beats: {b['n_runtime']} from the runtime, {b['n_truth']} in the truth, {b['n_paired']} paired "
                     f"(within {b['max_dt_s']:g} s; median dt {_f(b['dt_median_s'], '{:+.3f}')} s)")
        for k in ("sbp", "dbp", "map"):
            s = b[k]
            lines.append(f"  {k.upper()}: n {s['n']}  ME {_f(s['me'], '{:+.1f}')}  SD {_f(s['sd'])}  MAE {_f(s['mae'])} mmHg"
                         f"  [oracle constant MAE {_f(s.get('const_mae'))}]")
    lines.append(f"bridged lost runs (<= {BRIDGE_SAMPLES} samples, interpolated by the runtime): "
                 f"{r['bridged']['runs']} ({r['bridged']['samples']} samples)")
    faults = r["faults"]
    if not faults:
        lines.append("faults: none on the runtime's axis")
        return "\n".join(lines)
    lines.append(f"faults ({len(faults)}): claims during signal faults and lost stretches must be 0; "
                 "resume = first valid output after the end")
    lines.append(f"  {'class':<7} {'kinds':<30} {'start s':>8} {'end s':>8} {'outputs':>7} {'claimed':>7} {'MAE':>6} {'resume s':>8}  judged")
    for f in faults:
        lines.append(f"  {f['class']:<7} {'|'.join(f['kinds'])[:30]:<30} {f['start_s']:8.2f} {f['end_s']:8.2f} "
                     f"{f['outputs_during']:7d} {f['claimed_valid_during']:7d} {_f(f['mae_during']):>6} "
                     f"{_f(f['resume_s'], '{:.2f}'):>8}  {'yes' if f['judged'] else 'no'}")
    judged = [f for f in faults if f["class"] in ("signal", "lost")]
    bad_claims = sum(f["claimed_valid_during"] for f in judged)
    res_j = [f["resume_s"] for f in faults if f["judged"] and f["class"] != "motion" and f["resume_s"] is not None]
    lines.append(f"claims during signal faults / lost stretches: {bad_claims}; "
                 f"worst resume of judged faults: {_f(max(res_j) if res_j else None, '{:.2f}')} s")
    return "\n".join(lines)
