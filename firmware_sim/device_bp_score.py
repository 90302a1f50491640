"""Score the device's own BP (``edgebp sim --firmware``) carried in a stream: against the
truth, and against the gateway's ``edgebp run`` output.

The records are read from the stream with the project's decoder
(``StreamDecoder(device_bp=True)``), i.e. as a gateway receives them. Each one holds the
device's outputs ``first .. first + n - 1`` since it booted, at the model rate ``fs``;
output ``k`` estimates the ABP ``lag`` model samples earlier, at ``(k - lag) / fs`` s after
the boot's first device sample, i.e. at tick ``i0 + (k - lag) * device_fs / fs`` (``i0``: the
boot's first sampled tick in the truth). Boots are told apart by the output number starting
again (it counts from 0 at every boot; within a boot it only grows), and matched in order to
the boots of ``TRUTH_device_bp.csv`` whose records reached the wire intact.

- **device vs truth**: the truth ABP interpolated at that tick, wherever the device claimed
  a value (ME/SD/MAE, as the runtime's point-wise score);
- **device vs gateway**: the point of ``edgebp run``'s output at the same time on the
  runtime's axis (:func:`edgebp.firmware_sim.compare.truth_axis`; within a quarter of a
  model period, else not paired), over the points both claim valid: the p50, p99 and max
  of ``|device - gateway|`` and the mean signed difference.

Examples
--------
>>> np.round(_abs_stats(np.array([0.0, 0.0, 0.5, -1.0]))["p99"], 3)
0.985
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgebp.firmware_sim.compare import RuntimeOutput, _stats, truth_axis

log = logging.getLogger(__name__)

#: Decoded values carry 0.01 mmHg; the device truth file 6 significant digits.
WIRE_STEP_MMHG = 0.01


def device_bp_stream_read(path: str | Path, chunk: int = 1 << 16) -> tuple[list[dict], dict]:
    """The device-BP records of a stream file as the decoder reports them, with the
    decoder's counters: ``([{"boot", "first", "fs", "lag", "abp", "at_sample"}], counts)``.
    ``boot`` counts restarts of the output number; ``at_sample`` is the record's position
    among the samples the decoder returned."""
    from edgebp.runtime.protocol import DeviceBPEvent, StreamDecoder, decode_stream

    dec = StreamDecoder(device_bp=True)

    def chunks():
        with open(path, "rb") as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    return
                yield b

    recs: list[dict] = []
    pos, boot, end = 0, 0, None
    for block in decode_stream(chunks(), decoder=dec):
        for ev in block.events:
            if isinstance(ev, DeviceBPEvent):
                if end is not None and ev.first < end:
                    boot += 1  # output numbers start again at a boot
                end = ev.first + len(ev.abp)
                recs.append({"boot": boot, "first": ev.first, "fs": ev.fs, "lag": ev.lag, "abp": ev.abp,
                             "at_sample": pos + ev.at_index})
        pos += len(block)
    return recs, dec.counts


def _abs_stats(d: np.ndarray) -> dict:
    a = np.abs(np.asarray(d, float))
    if not len(a):
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None, "equal_share": None}
    return {"n": int(len(a)), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "mean": float(np.mean(d)), "equal_share": float(np.mean(a < WIRE_STEP_MMHG / 2))}


def device_bp_compare(records: list[dict], device_truth: dict, truth: dict, fs: float,
                      gateway: RuntimeOutput | None = None) -> dict:
    """Device BP from the stream against the truth and the gateway (see module docstring).

    Parameters
    ----------
    records : list of dict
        From :func:`device_bp_stream_read`.
    device_truth : dict
        ``TRUTH_device_bp.csv`` (``boot``, ``k``, ``abp_mmHg``, ``status``): what the device
        computed, and which of its records reached the wire.
    truth : dict
        The per-tick truth.
    fs : float
        The device's sampling rate.
    gateway : RuntimeOutput, optional
        ``edgebp run``'s point-wise output of the same stream.
    """
    status = np.asarray(truth["status"]).astype(str)
    tboot = np.asarray(truth.get("boot", np.zeros(len(status), int)))
    abp_true = np.asarray(truth["abp_mmHg"], float)
    sampled = status != "reboot"
    dt_boot = np.asarray(device_truth["boot"], np.int64)
    dt_k = np.asarray(device_truth["k"], np.int64)
    dt_abp = np.asarray(device_truth["abp_mmHg"], float)
    emitted_boots = np.unique(dt_boot[np.asarray(device_truth["status"]).astype(str) == "emitted"]).tolist()
    axis_t, axis_ticks = truth_axis(truth, fs)

    n_boots = 1 + max((r["boot"] for r in records), default=-1)
    if n_boots > len(emitted_boots):
        raise ValueError(f"the stream holds {n_boots} boots of device-BP records, the device truth only "
                         f"{len(emitted_boots)} with records on the wire: not the stream of this simulation")
    cols: dict[str, list] = {k: [] for k in ("boot", "k", "abp", "tick", "axis_t", "wire_delta")}
    unknown = 0
    for r in records:
        b = emitted_boots[r["boot"]]
        ticks = np.flatnonzero(sampled & (tboot == b))
        k = r["first"] + np.arange(len(r["abp"]))
        pos = ticks[0] + (k - r["lag"]) * fs / r["fs"]
        sel = (dt_boot == b)
        mine = np.searchsorted(dt_k[sel], k)
        ok = (mine < sel.sum())
        ok[ok] &= dt_k[sel][mine[ok]] == k[ok]
        unknown += int((~ok).sum())
        dev = np.full(len(k), np.nan)
        dev[ok] = dt_abp[sel][mine[ok]]
        on_axis = np.flatnonzero(np.isin(axis_ticks, ticks))
        at = np.full(len(k), np.nan)
        if len(on_axis):
            lo, hi = axis_ticks[on_axis[0]], axis_ticks[on_axis[-1]]
            inside = (pos >= lo) & (pos <= hi)
            at[inside] = np.interp(pos[inside], axis_ticks[on_axis], axis_t[on_axis])
        cols["boot"].append(np.full(len(k), b))
        cols["k"].append(k)
        cols["abp"].append(r["abp"])
        cols["tick"].append(pos)
        cols["axis_t"].append(at)
        cols["wire_delta"].append(np.abs(r["abp"] - dev))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    abp, pos = cat["abp"], cat["tick"]
    ref = np.full(len(abp), np.nan)
    for b in np.unique(cat["boot"]).tolist():
        ticks = np.flatnonzero(sampled & (tboot == b))
        m = (cat["boot"] == b) & (pos >= ticks[0]) & (pos <= ticks[-1])
        ref[m] = np.interp(pos[m], ticks, abp_true[ticks])
    claimed = np.isfinite(abp)
    ok = claimed & np.isfinite(ref)
    wd = cat["wire_delta"][np.isfinite(cat["wire_delta"])]
    res: dict = {
        "records": len(records),
        "values": int(len(abp)),
        "values_claimed": int(claimed.sum()),
        "device_values": int(len(dt_k)),
        "device_values_claimed": int(np.isfinite(dt_abp).sum()),
        "values_not_in_device_truth": unknown,
        # what the wire did to the values: 0.01 mmHg rounding (and the truth file's 6 digits)
        "wire_delta_max_mmHg": float(wd.max()) if len(wd) else None,
        "vs_truth": _stats(abp[ok] - ref[ok], ref[ok]),
    }
    if gateway is not None:
        g_ok = gateway.valid & np.isfinite(gateway.abp)
        at = cat["axis_t"]
        paired = np.zeros(len(abp), bool)
        d = np.full(len(abp), np.nan)
        if len(gateway.t):
            order = np.argsort(gateway.t, kind="stable")
            gt = gateway.t[order]
            fin = np.isfinite(at)
            j = np.clip(np.searchsorted(gt, at[fin]), 1, len(gt) - 1) if len(gt) > 1 else np.zeros(fin.sum(), int)
            if len(gt) > 1:
                left = np.abs(gt[j - 1] - at[fin]) <= np.abs(gt[j] - at[fin])
                j = np.where(left, j - 1, j)
            fs_model = float(records[0]["fs"]) if records else 1.0
            near = np.abs(gt[j] - at[fin]) <= 0.25 / fs_model
            gi = order[j]
            idx = np.flatnonzero(fin)
            paired[idx[near]] = True
            both = near & claimed[idx] & g_ok[gi]
            d[idx[both]] = abp[idx[both]] - gateway.abp[gi[both]]
        both = np.isfinite(d)
        res["vs_gateway"] = {
            "paired": int(paired.sum()),
            "not_paired": int(len(abp) - paired.sum()),
            "both_valid": int(both.sum()),
            "device_only": int(np.sum(paired & claimed & ~both)),
            "abs_delta_mmHg": _abs_stats(d[both]),
        }
    return res


def device_bp_report_lines(r: dict) -> list[str]:
    """Text lines of :func:`device_bp_compare`'s result for ``edgebp score``."""
    def f(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    t = r["vs_truth"]
    lines = [f"device BP (firmware, from the stream): {r['records']} records, {r['values']} values "
             f"({r['values_claimed']} claimed; the device computed {r['device_values']}, "
             f"{r['device_values_claimed']} claimed)",
             f"  vs truth:   n {t['n']}  ME {f(t['me'])}  SD {f(t['sd'])}  MAE {f(t['mae'])} mmHg "
             f"(subject's own mean as constant: MAE {f(t.get('const_mae'))})"]
    g = r.get("vs_gateway")
    if g is not None:
        a = g["abs_delta_mmHg"]
        lines.append(f"  vs gateway: {g['both_valid']} points both valid (of {g['paired']} paired; device only "
                     f"{g['device_only']}): |device - gateway| p50 {f(a['p50'])} p99 {f(a['p99'])} max {f(a['max'])} "
                     f"mmHg, mean signed {f(a['mean'], '{:+.3f}')}, equal {f(a['equal_share'], '{:.1%}')}")
    return lines
