"""Score a runtime's output against the simulator's truth file.

The runtime knows only what reached it: it places samples on a time axis that counts every
device sample it parsed or knows is missing (from sequence gaps), restarting after a device
reset where the previous boot ended. The truth file knows every tick. This module maps the
truth onto the runtime's axis (ticks of each boot, in order, skipping reboot ticks) and
measures: point-wise ABP error where the runtime claimed a value, whether anything was
claimed during a fault that corrupts the signal, and how soon valid output resumed after
each such fault ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# faults after which the signal itself is wrong or missing: no BP may be claimed over them
SIGNAL_FAULTS = ("saturate", "leadoff", "flat")
# statuses of ticks whose sample never reached the runtime intact
LOST_STATUSES = ("dropped", "overflow", "truncated", "corrupted", "reset_lost")


@dataclass
class RuntimeOutput:
    """Point-wise output of ``edgebp run`` (times on the runtime's axis)."""

    t: np.ndarray
    abp: np.ndarray
    valid: np.ndarray

    @classmethod
    def from_csv(cls, path: str) -> "RuntimeOutput":
        rows = [ln for ln in open(path) if ln and not ln.startswith("#")]
        if not rows or not rows[0].startswith("time,abp,valid"):
            raise ValueError(f"{path}: not an edgebp run CSV (expected the header time,abp,valid,reason)")
        t, a, v = [], [], []
        for ln in rows[1:]:
            p = ln.rstrip("\n").split(",")
            t.append(float(p[0]))
            a.append(float(p[1]) if p[1] else np.nan)
            v.append(p[2] == "1")
        return cls(np.asarray(t), np.asarray(a), np.asarray(v, bool))


def truth_axis(truth: dict, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(runtime-axis time, tick index) of every tick that carried a sample (not rebooting)."""
    status = np.asarray(truth["status"]).astype(str)
    has_sample = status != "reboot"
    idx = np.flatnonzero(has_sample)
    return np.arange(len(idx)) / fs, idx


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def runtime_truth_compare(out: RuntimeOutput, truth: dict, fs: float, recover_window_s: float = 2.0) -> dict:
    """Point-wise error and fault behaviour of a runtime output against a truth file.

    Parameters
    ----------
    out : RuntimeOutput
    truth : dict
        From :func:`edgebp.firmware_sim.truth.truth_read`.
    fs : float
        The device's nominal sampling rate.
    recover_window_s : float
        Valid output must resume within this many seconds after a fault ends.

    Returns
    -------
    dict
        ``pointwise`` (n, me, sd, mae in mmHg), ``faults`` (per signal fault: claimed-valid
        share during it, seconds to the first valid output after it), ``valid_share``.
    """
    axis_t, ticks = truth_axis(truth, fs)
    abp_true = np.asarray(truth["abp_mmHg"], dtype=float)[ticks]
    bits = np.asarray(truth.get("fault_bits", np.zeros(len(truth["status"]), int)))[ticks]
    status = np.asarray(truth["status"]).astype(str)[ticks]
    inside = (out.t >= axis_t[0]) & (out.t <= axis_t[-1])
    ref = np.full(len(out.t), np.nan)
    ref[inside] = np.interp(out.t[inside], axis_t, abp_true)
    ok = out.valid & np.isfinite(ref) & np.isfinite(out.abp)
    e = out.abp[ok] - ref[ok]
    res = {
        "valid_share": float(out.valid.mean()) if len(out.valid) else 0.0,
        "pointwise": {"n": int(ok.sum()), "me": float(e.mean()) if len(e) else None, "sd": float(e.std(ddof=1)) if len(e) > 1 else None,
                      "mae": float(np.abs(e).mean()) if len(e) else None},
        "faults": [],
    }
    from edgebp.firmware_sim.faults import FAULT_BITS

    bad_mask = np.isin(status, LOST_STATUSES)
    for name in SIGNAL_FAULTS:
        bad_mask |= (bits & FAULT_BITS[name]) > 0
    for a, b in _intervals(bad_mask):
        t0, t1 = axis_t[a], axis_t[min(b, len(axis_t) - 1)]
        during = (out.t >= t0) & (out.t < t1)
        after = np.flatnonzero((out.t >= t1) & out.valid)
        resume = float(out.t[after[0]] - t1) if len(after) else None
        # only faults followed by enough clean signal can show recovery
        clean_after = not bad_mask[b : b + int((recover_window_s + 1.0) * fs)].any() and (len(axis_t) - b) > (recover_window_s + 1.0) * fs
        kinds = sorted({n for n, bit in FAULT_BITS.items() if ((bits[a:b] & bit) > 0).any()} | set(status[a:b][np.isin(status[a:b], LOST_STATUSES)]))
        res["faults"].append({"start_s": float(t0), "end_s": float(t1), "kinds": kinds, "claimed_valid_during": int(out.valid[during].sum()),
                              "outputs_during": int(during.sum()), "resume_s": resume, "judged": bool(clean_after)})
    return res
