"""Score a runtime's output against the simulator's truth file.

The runtime knows only what reached it: it places samples on a time axis that starts at the
first sample it parsed, counts every device sample it parsed or knows is missing (from
sequence gaps), and restarts after a device reset where the previous boot's last known
sample ended. The truth file knows every tick. This module maps the truth onto the
runtime's axis (per boot, the ticks from its first to its last intact frame, in order;
reboot ticks and frames no sequence gap reveals are not on it) and measures:

- point-wise ABP error wherever the runtime claimed a value;
- per-beat SBP/DBP/MAP error of the runtime's valid beats against the truth beats, paired
  one to one by nearest time (the truth beats' source times are mapped onto the runtime's
  axis through the true sample instants, so the device's clock error does not shift them),
  with the beat counts (valid, invalid by reason, paired, unpaired on each side) and the
  mean heart rate of both;
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
from edgebp.pairing import beat_times_pair as beats_pair  # re-exported: the one beat pairing

# faults after which the signal itself is wrong or missing: no BP may be claimed over them
SIGNAL_FAULTS = ("saturate", "leadoff", "flat")
# artefacts that look like signal: measured, not judged
ARTEFACT_FAULTS = ("motion",)
# statuses of ticks whose sample never reached the runtime intact
LOST_STATUSES = ("dropped", "overflow", "truncated", "corrupted", "reset_lost")
# the runtime bridges gaps of at most this many samples by interpolation
# (edgebp.runtime.run.MAX_INTERP_SAMPLES; repeated here so scoring needs no runtime import)
BRIDGE_SAMPLES = 2


# the beats file of ``edgebp run`` (``bp.beats.csv``, or its standard output): this header,
# NaN as an empty cell, valid 1/0. Files written before hr/valid/reason existed carry only
# the first four columns; they are read as all valid, reason ok, hr unknown.
BEAT_COLUMNS = ("time", "sbp", "dbp", "map", "hr", "valid", "reason")
POINTWISE_HEADER = "time,abp,valid,reason"


@dataclass
class RuntimeOutput:
    """Point-wise output of ``edgebp run`` (times on the runtime's axis, s; ABP in mmHg)."""

    t: np.ndarray
    abp: np.ndarray
    valid: np.ndarray

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "RuntimeOutput":
        """Read ``bp.csv`` (``time,abp,valid,reason``) or ``bp.jsonl`` as written by ``edgebp run``.

        Raises ``ValueError`` naming the file and line for anything else (a beats file
        included: it has no point-wise rows; see :func:`runtime_output_kind`).
        """
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
                        what = " (it is a beats file: no point-wise rows)" if _is_beats_header(ln) else ""
                        raise ValueError(f"{path}: line {line_no}: not an edgebp run CSV "
                                         f"(expected the header {POINTWISE_HEADER}){what}")
                    continue
                p = ln.rstrip("\n").split(",")
                try:
                    t.append(float(p[0]))
                    a.append(float(p[1]) if p[1] else np.nan)
                    v.append(p[2] == "1")
                except (ValueError, IndexError):
                    raise ValueError(f"{path}: line {line_no}: expected {POINTWISE_HEADER}, got {ln.strip()!r}") from None
        if header is None:
            raise ValueError(f"{path}: empty (no {POINTWISE_HEADER} header)")
        return cls(np.asarray(t, float), np.asarray(a, float), np.asarray(v, bool))


def _is_beats_header(line: str) -> bool:
    cols = [c.strip() for c in line.strip().split(",")]
    return all(c in cols for c in BEAT_COLUMNS[:4])


def runtime_output_kind(path: str | os.PathLike) -> str:
    """What an ``edgebp run`` output file holds: ``"jsonl"`` (samples and beats),
    ``"pointwise"`` (``bp.csv``; its beats are in ``bp.beats.csv``) or ``"beats"`` (a beats
    file, e.g. the standard output of ``edgebp run`` without ``--out``).

    Raises ``ValueError`` naming the file and line when the first line that is not a ``#``
    comment is neither header.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "beats.csv")
    >>> _ = open(p, "w").write("# edgebp run\\ntime,sbp,dbp,map,hr,valid,reason\\n")
    >>> runtime_output_kind(p)
    'beats'
    """
    if str(path).endswith(".jsonl"):
        return "jsonl"
    with open(path) as fh:
        for line_no, ln in enumerate(fh, start=1):
            if not ln.strip() or ln.startswith("#"):
                continue
            if ln.startswith("time,abp,valid"):
                return "pointwise"
            if _is_beats_header(ln):
                return "beats"
            raise ValueError(f"{path}: line {line_no}: not an edgebp run CSV (expected the header "
                             f"{POINTWISE_HEADER} or {','.join(BEAT_COLUMNS)})")
    raise ValueError(f"{path}: empty (no {POINTWISE_HEADER} or {','.join(BEAT_COLUMNS)} header)")


def runtime_beats_path(path: str | os.PathLike) -> Path:
    """The beats file of an ``edgebp run`` output: ``bp.csv`` -> ``bp.beats.csv``; a
    ``.jsonl`` or a ``.beats.csv`` is its own.

    Examples
    --------
    >>> runtime_beats_path("out/bp.csv").name, runtime_beats_path("out/bp.beats.csv").name
    ('bp.beats.csv', 'bp.beats.csv')
    """
    p = Path(path)
    if p.suffix == ".jsonl" or p.name.endswith(".beats.csv"):
        return p
    return p.with_suffix(".beats.csv")


def _beats_arrays(cols: dict[str, list]) -> dict[str, np.ndarray]:
    out = {k: np.asarray(cols[k], float) for k in ("t", "sbp", "dbp", "map", "hr")}
    out["valid"] = np.asarray(cols["valid"], bool)
    out["reason"] = np.asarray(cols["reason"], dtype=object)
    return out


def _beats_new() -> dict[str, list]:
    return {"t": [], "sbp": [], "dbp": [], "map": [], "hr": [], "valid": [], "reason": []}


def _valid_parse(text: str) -> bool | None:
    t = text.strip().lower()
    return True if t in ("1", "true") else False if t in ("0", "false") else None


def runtime_beats_read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Beats of ``edgebp run``: ``bp.beats.csv`` beside ``bp.csv``, a beats file itself (the
    standard output of ``edgebp run`` without ``--out``), or the beat rows of a ``.jsonl``.

    Reads both the current columns ``time,sbp,dbp,map,hr,valid,reason`` and the older
    ``time,sbp,dbp,map`` (read as valid, reason ``ok``, ``hr`` NaN); ``#`` lines are
    comments, an empty cell is NaN. ``path`` may be the point-wise CSV; its beats file is
    then found beside it (:func:`runtime_beats_path`); a file whose header is a beats
    header is read itself, whatever its name.

    Returns
    -------
    dict
        Arrays ``t`` (s, runtime axis), ``sbp``, ``dbp``, ``map`` (mmHg, NaN when invalid),
        ``hr`` (bpm, NaN when unknown), ``valid`` (bool), ``reason`` (str), one per beat row.

    Raises
    ------
    FileNotFoundError
        No beats file.
    ValueError
        Naming the file and line: a wrong header, a non-number, a valid beat without BP.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "bp.beats.csv")
    >>> _ = open(p, "w").write("time,sbp,dbp,map,hr,valid,reason\\n1.0,120,80,93,60,1,ok\\n2.0,,,,,0,gap\\n")
    >>> b = runtime_beats_read(p)
    >>> b["valid"].tolist(), b["reason"].tolist(), b["hr"].tolist()[:1]
    ([True, False], ['ok', 'gap'], [60.0])
    """
    p = Path(path)
    if p.suffix == ".jsonl":
        return _jsonl_read(p)[1]
    if not (p.name.endswith(".beats.csv") or (p.is_file() and runtime_output_kind(p) == "beats")):
        p = runtime_beats_path(p)
    cols = _beats_new()
    with open(p) as fh:
        idx: dict[str, int] | None = None
        for line_no, ln in enumerate(fh, start=1):
            if not ln.strip() or ln.startswith("#"):
                continue
            cells = [c.strip() for c in ln.rstrip("\n").split(",")]
            if idx is None:
                if not _is_beats_header(ln):
                    raise ValueError(f"{p}: line {line_no}: expected the header {','.join(BEAT_COLUMNS)} "
                                     f"(or the older time,sbp,dbp,map), got {ln.strip()!r}")
                idx = {c: cells.index(c) for c in BEAT_COLUMNS if c in cells}
                continue
            if len(cells) <= max(idx.values()):
                raise ValueError(f"{p}: line {line_no}: {len(cells)} fields, expected {len(idx)} ({ln.strip()!r})")
            valid = True
            if "valid" in idx:
                valid = _valid_parse(cells[idx["valid"]])
                if valid is None:
                    raise ValueError(f"{p}: line {line_no}: column 'valid': {cells[idx['valid']]!r} is not 1 or 0")
            row = {}
            for key, col in (("t", "time"), ("sbp", "sbp"), ("dbp", "dbp"), ("map", "map"), ("hr", "hr")):
                text = cells[idx[col]] if col in idx else ""
                try:
                    row[key] = float(text) if text else np.nan
                except ValueError:
                    raise ValueError(f"{p}: line {line_no}: column '{col}': {text!r} is not a number") from None
            if not np.isfinite(row["t"]):
                raise ValueError(f"{p}: line {line_no}: column 'time' is empty or not finite")
            if valid and not (np.isfinite(row["sbp"]) and np.isfinite(row["dbp"])):
                raise ValueError(f"{p}: line {line_no}: a valid beat without sbp/dbp")
            for k, x in row.items():
                cols[k].append(x)
            cols["valid"].append(valid)
            cols["reason"].append(cells[idx["reason"]] if "reason" in idx else ("ok" if valid else ""))
    if idx is None:
        raise ValueError(f"{p}: empty (no {','.join(BEAT_COLUMNS)} header)")
    return _beats_arrays(cols)


def _num(x) -> float:
    return np.nan if x is None else float(x)


def _jsonl_read(path) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    t, a, v = [], [], []
    beats = _beats_new()
    with open(path) as fh:
        for line_no, ln in enumerate(fh, start=1):
            if not ln.strip():
                continue
            try:
                row = json.loads(ln)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_no}: not JSON ({exc.msg})") from None
            try:
                if row.get("type") == "sample":
                    t.append(float(row["t"]))
                    a.append(_num(row.get("abp")))
                    v.append(bool(row["valid"]))
                elif row.get("type") == "beat":
                    valid = bool(row.get("valid", True))
                    for k in ("t", "sbp", "dbp", "map", "hr"):
                        beats[k].append(_num(row.get(k)) if k != "t" else float(row["t"]))
                    beats["valid"].append(valid)
                    beats["reason"].append(str(row.get("reason", "ok" if valid else "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: line {line_no}: bad {row.get('type')} record ({exc})") from None
    return (np.asarray(t, float), np.asarray(a, float), np.asarray(v, bool)), _beats_arrays(beats)


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


def _truth_beats_observed(truth_beats: dict, truth: dict, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keep, t_src, t_axis)``: which truth beats are valid and observed by the device, their
    source times, and (for the kept ones) their times on the runtime's axis."""
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
    return keep, ts, t_axis


def truth_beats_on_axis(truth_beats: dict, truth: dict, fs: float) -> dict[str, np.ndarray]:
    """Truth beats (source times) placed on the runtime's axis; beats the device did not
    observe (before its first / after its last sample, or inside a reboot) are left out.

    Returns arrays ``t`` (runtime axis, s), ``sbp``, ``dbp``, ``map`` of valid beats.
    """
    keep, _, t_axis = _truth_beats_observed(truth_beats, truth, fs)
    return {"t": t_axis, "sbp": np.asarray(truth_beats["sbp_mmHg"], float)[keep],
            "dbp": np.asarray(truth_beats["dbp_mmHg"], float)[keep], "map": np.asarray(truth_beats["map_mmHg"], float)[keep]}


# consecutive beats further apart than this are not a heart-rate interval (a missed beat or a gap)
HR_MAX_INTERVAL_S = 2.0


def _interval_hr(t: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """60 / interval (bpm) of consecutive beats (in the given order) that are both ``ok`` and
    less than :data:`HR_MAX_INTERVAL_S` apart."""
    t = np.asarray(t, float)
    ok = np.asarray(ok, bool)
    if len(t) < 2:
        return np.zeros(0)
    dt = np.diff(t)
    use = ok[:-1] & ok[1:] & (dt > 0) & (dt < HR_MAX_INTERVAL_S)
    return 60.0 / dt[use]


def heart_rate_truth(truth_beats: dict, truth: dict, fs: float) -> dict:
    """Mean heart rate of the truth beats the device observed: 60 / interval of consecutive
    valid truth beats (source times) less than 2 s apart.

    Returns ``{"mean_bpm", "n_intervals"}`` (``mean_bpm`` None without an interval).

    Examples
    --------
    >>> truth = {"status": np.array(["emitted"] * 1000), "t_true_s": np.arange(1000) / 100.0}
    >>> tb = {"t_sys_s": np.array([1.0, 1.8, 2.6, 3.4, 6.0]), "valid": np.array([1, 1, 1, 1, 1])}
    >>> heart_rate_truth(tb, truth, 100.0)  # the 2.6 s interval before 6.0 is not counted
    {'mean_bpm': 75.0, 'n_intervals': 3}
    """
    keep, ts, _ = _truth_beats_observed(truth_beats, truth, fs)
    hr = _interval_hr(ts, keep)
    return {"mean_bpm": float(np.mean(hr)) if len(hr) else None, "n_intervals": int(len(hr))}


def heart_rate_runtime(pred_beats: dict, use: np.ndarray | None = None) -> dict:
    """Mean heart rate of runtime beats: their ``hr`` column (bpm) where it has values, else
    60 / interval of consecutive beats (both in ``use``) less than 2 s apart.

    Returns ``{"mean_bpm", "n", "source"}`` (source ``"hr column"`` or ``"beat intervals"``).

    Examples
    --------
    >>> heart_rate_runtime({"t": np.array([0.0, 1.0, 2.0]), "hr": np.array([60.0, 66.0, np.nan])})
    {'mean_bpm': 63.0, 'n': 2, 'source': 'hr column'}
    >>> heart_rate_runtime({"t": np.array([0.0, 0.5, 1.0])})
    {'mean_bpm': 120.0, 'n': 2, 'source': 'beat intervals'}
    """
    t = np.asarray(pred_beats.get("t", []), float)
    use = np.ones(len(t), bool) if use is None else np.asarray(use, bool)
    hr = np.asarray(pred_beats.get("hr", np.full(len(t), np.nan)), float)
    col = hr[use & np.isfinite(hr)]
    if len(col):
        return {"mean_bpm": float(np.mean(col)), "n": int(len(col)), "source": "hr column"}
    order = np.argsort(t, kind="stable")
    iv = _interval_hr(t[order], use[order])
    return {"mean_bpm": float(np.mean(iv)) if len(iv) else None, "n": int(len(iv)), "source": "beat intervals"}


def beats_truth_compare(pred_beats: dict, truth_beats: dict, truth: dict, fs: float, max_dt_s: float = 0.3,
                        include_invalid: bool = False) -> dict:
    """Per-beat SBP/DBP/MAP error of the runtime's beats against the truth beats, paired by time,
    with beat counts and heart rate.

    Parameters
    ----------
    pred_beats : dict
        ``t``, ``sbp``, ``dbp``, ``map`` (runtime axis) and optionally ``hr``, ``valid``,
        ``reason``, e.g. from :func:`runtime_beats_read` (without ``valid`` all are valid).
    truth_beats : dict
        The simulator's beat truth (``t_sys_s``, ``sbp_mmHg``, ... on the source axis).
    truth : dict
        The per-sample truth (to map source times onto the runtime's axis).
    fs : float
        The device's nominal rate.
    max_dt_s : float
        Largest systolic-time difference of a pair.
    include_invalid : bool
        Also score runtime beats marked invalid (those with SBP/DBP values); by default only
        valid beats are scored, the others counted.

    Returns
    -------
    dict
        ``n_truth`` (observed valid truth beats), ``n_runtime`` (all runtime beat rows),
        ``n_runtime_valid``, ``n_runtime_invalid``, ``invalid_reasons``, ``count_diff_pct``
        (100 * (n_runtime - n_truth) / n_truth), ``n_scored`` (runtime beats paired against
        the truth), ``n_paired``, ``unpaired_runtime`` and ``unpaired_truth``,
        ``dt_median_s`` (runtime minus truth), ``hr`` (``runtime`` and ``truth`` mean bpm,
        ``diff_bpm``) and ``sbp``/``dbp``/``map`` error stats (n, me, sd, mae, const_mae).

    Examples
    --------
    >>> truth = {"status": np.array(["emitted"] * 500), "t_true_s": np.arange(500) / 100.0}
    >>> tb = {"t_sys_s": np.array([0.5, 1.5, 2.5, 3.5]), "valid": np.ones(4, int),
    ...       "sbp_mmHg": np.full(4, 120.0), "dbp_mmHg": np.full(4, 80.0), "map_mmHg": np.full(4, 93.0)}
    >>> rb = {"t": np.array([0.52, 1.49, 2.6, 4.9]), "sbp": np.array([122.0, 118.0, np.nan, 121.0]),
    ...       "dbp": np.array([80.0, 80.0, np.nan, 81.0]), "map": np.array([94.0, 93.0, np.nan, 94.0]),
    ...       "valid": np.array([True, True, False, True]), "reason": np.array(["ok", "ok", "gap", "ok"])}
    >>> r = beats_truth_compare(rb, tb, truth, 100.0)
    >>> r["n_paired"], r["unpaired_runtime"], r["unpaired_truth"], r["n_runtime_invalid"], r["sbp"]["mae"]
    (2, 1, 2, 1, 2.0)
    """
    ref = truth_beats_on_axis(truth_beats, truth, fs)
    pt = np.asarray(pred_beats.get("t", []), float)
    valid = np.asarray(pred_beats.get("valid", np.ones(len(pt), bool)), bool)
    reasons = np.asarray(pred_beats.get("reason", np.where(valid, "ok", "")), dtype=object)
    sbp = np.asarray(pred_beats["sbp"], float)
    scored = (valid | include_invalid) & np.isfinite(pt) & np.isfinite(sbp)
    idx = np.flatnonzero(scored)
    ip, ir = beats_pair(pt[idx], ref["t"], max_dt_s)
    n_truth = int(len(ref["t"]))
    invalid_reasons: dict[str, int] = {}
    for r in reasons[~valid]:
        invalid_reasons[str(r) or "?"] = invalid_reasons.get(str(r) or "?", 0) + 1
    hr_rt = heart_rate_runtime(pred_beats, use=scored)
    hr_tr = heart_rate_truth(truth_beats, truth, fs)
    res = {"n_truth": n_truth, "n_runtime": int(len(pt)), "n_runtime_valid": int(valid.sum()),
           "n_runtime_invalid": int((~valid).sum()), "invalid_reasons": invalid_reasons,
           "count_diff_pct": 100.0 * (len(pt) - n_truth) / n_truth if n_truth else None,
           "include_invalid": bool(include_invalid), "n_scored": int(len(idx)), "n_paired": int(len(ip)),
           "unpaired_runtime": int(len(idx) - len(ip)), "unpaired_truth": int(n_truth - len(ir)),
           "max_dt_s": float(max_dt_s),
           "dt_median_s": float(np.median(pt[idx][ip] - ref["t"][ir])) if len(ip) else None,
           "hr": {"runtime": hr_rt, "truth": hr_tr,
                  "diff_bpm": (hr_rt["mean_bpm"] - hr_tr["mean_bpm"])
                  if hr_rt["mean_bpm"] is not None and hr_tr["mean_bpm"] is not None else None}}
    for k in ("sbp", "dbp", "map"):
        res[k] = _stats(np.asarray(pred_beats[k], float)[idx][ip] - ref[k][ir], ref[k][ir])
    return res


def _f(x, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def beats_report_lines(b: dict) -> list[str]:
    """Plain-text lines of :func:`beats_truth_compare`: counts, pairing, heart rate, errors."""
    inv = ", ".join(f"{k} {v}" for k, v in sorted(b["invalid_reasons"].items()))
    lines = [f"beats: {b['n_runtime']} from the runtime ({b['n_runtime_valid']} valid, {b['n_runtime_invalid']} invalid"
             + (f": {inv}" if inv else "") + f"), {b['n_truth']} in the truth (valid, observed by the device); "
             f"count difference {_f(b['count_diff_pct'], '{:+.1f}')} %",
             f"  paired {b['n_paired']} of {b['n_scored']} scored runtime beats "
             f"({'all with BP' if b['include_invalid'] else 'valid only'}; within {b['max_dt_s']:g} s; "
             f"median dt {_f(b['dt_median_s'], '{:+.3f}')} s); unpaired: {b['unpaired_runtime']} runtime, "
             f"{b['unpaired_truth']} truth"]
    h = b["hr"]
    lines.append(f"  heart rate: runtime {_f(h['runtime']['mean_bpm'])} bpm ({h['runtime']['source']}, n {h['runtime']['n']}), "
                 f"truth {_f(h['truth']['mean_bpm'])} bpm ({h['truth']['n_intervals']} intervals < {HR_MAX_INTERVAL_S:g} s); "
                 f"difference {_f(h['diff_bpm'], '{:+.1f}')} bpm")
    for k in ("sbp", "dbp", "map"):
        s = b[k]
        lines.append(f"  {k.upper()}: n {s['n']}  ME {_f(s['me'], '{:+.1f}')}  SD {_f(s['sd'])}  MAE {_f(s['mae'])} mmHg"
                     f"  [oracle constant MAE {_f(s.get('const_mae'))}]")
    return lines


def compare_report_text(pointwise: dict | None, beats: dict | None = None) -> str:
    """Plain-text report of :func:`runtime_truth_compare` (and :func:`beats_truth_compare`);
    ``pointwise`` may be None when only a beats file was scored.

    Examples
    --------
    >>> st = np.array(["emitted"] * 4)
    >>> truth = {"status": st, "t_true_s": np.arange(4.0), "abp_mmHg": np.full(4, 90.0)}
    >>> res = runtime_truth_compare(RuntimeOutput(np.arange(4.0), np.full(4, 93.0), np.ones(4, bool)), truth, 1.0)
    >>> print(compare_report_text(res).splitlines()[1])
    point-wise ABP vs truth (claimed outputs): n 4  ME +3.0  SD 0.0  MAE 3.0 mmHg  [oracle constant (this subject's mean) MAE 0.0]
    """
    if pointwise is None:
        lines = ["point-wise: none (a beats file only: no point-wise ABP, no fault table)"]
        if beats is not None:
            lines += beats_report_lines(beats)
        return "\n".join(lines)
    r = pointwise
    p, c = r["pointwise"], r["pointwise_clean"]
    lines = [f"valid share: {r['valid_share'] * 100:.1f} % of {r['outputs']} outputs; {r['axis']['ticks']} device samples on the "
             f"runtime's axis, {r['axis']['off_axis']} sampled frames off it (lost before/after a boot's first/last intact frame)",
             f"point-wise ABP vs truth (claimed outputs): n {p['n']}  ME {_f(p['me'], '{:+.1f}')}  SD {_f(p['sd'])}  MAE {_f(p['mae'])} mmHg"
             f"  [oracle constant (this subject's mean) MAE {_f(p['const_mae'])}]",
             f"point-wise ABP vs truth, clear of faults:  n {c['n']}  ME {_f(c['me'], '{:+.1f}')}  SD {_f(c['sd'])}  MAE {_f(c['mae'])} mmHg"]
    if beats is not None:
        lines += beats_report_lines(beats)
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
