"""Score what a wearable deploys: a bundle's streaming model through :class:`StreamRuntime`
itself, fed the record's own device-rate samples in device-sized packets (default 20 ms).

This is the path ``edgebp run`` takes (preprocessing chain, input gates, the external-state
model stepped in its fixed chunk, beats keyed to the input's own pulses), without the byte
decoder: the record's samples are pushed as the decoder would hand them over. Per record:

* the runtime's point-wise ABP is placed on the prepared record's index axis (output time
  ``t`` is model index ``t * fs + resampler delay``, the axis the offline chain and the
  reference ABP share), so window and stream variants are compared sample by sample;
* the runtime's valid beats are paired one to one with the reference beats (the same beat
  detector and masks as offline scoring, :func:`edgebp.scoring.beats_pair`) by nearest
  systolic time within ``tolerance_s``; a usable reference beat with no runtime beat but
  valid predictions over its interval is read from the prediction over that interval, as
  offline scoring does, so a model is never flattered by beats it did not report.

No torch here: this module runs where ``edgebp run`` runs.

Examples
--------
>>> from edgebp.runtime.stream_score import STREAM_VARIANTS
>>> STREAM_VARIANTS
('stream-int8', 'stream-fp32', 'stream-pruned', 'stream-pruned-int8')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edgebp.runtime.bundle import Bundle, BundleError

log = logging.getLogger(__name__)

STREAM_VARIANTS = ("stream-int8", "stream-fp32", "stream-pruned", "stream-pruned-int8")
DEFAULT_PACKET_S = 0.02


@dataclass
class StreamScore:
    """One record through the runtime: its pairs (:class:`edgebp.scoring.BeatPairs`), the
    prediction on the prepared axis (mmHg, NaN where not valid) and the beat accounting."""

    record_id: str
    pairs: object
    pred_wave: np.ndarray
    counts: dict = field(default_factory=dict)
    #: the runtime's valid beat rows (time order) and, per reference beat of ``pairs``, the
    #: index of the row paired with it (-1: none) and its time on the runtime's axis (s)
    beats: list = field(default_factory=list)
    pair_index: np.ndarray | None = None
    ref_t: np.ndarray | None = None


def stream_variant_key(variant: str) -> str:
    """``stream-int8`` -> ``int8`` (the runtime's variant name); anything else is an error."""
    if variant not in STREAM_VARIANTS:
        raise ValueError(f"unknown stream variant {variant!r}; valid: {', '.join(STREAM_VARIANTS)}")
    return variant.split("-", 1)[1]


def record_device_samples(record, inputs: list[str]) -> tuple[np.ndarray, float]:
    """The record's input channels as a device would send them: ``(n, len(inputs))`` at the
    highest of their rates (a slower channel is linearly interpolated onto it), and that rate.
    Channels are picked as the offline chain picks them (``record.get``: ECG prefers lead II)."""
    chans = []
    for name in inputs:
        if not record.has(name):
            raise ValueError(f"record {record.record_id}: no {name} channel (the model needs {', '.join(inputs)})")
        chans.append(record.get(name))
    fs = max(float(c.fs) for c in chans)
    n = min(int(np.floor(len(c.signal) * fs / float(c.fs))) for c in chans)
    cols = []
    for c in chans:
        x = np.asarray(c.signal, np.float64)
        if float(c.fs) == fs:
            cols.append(x[:n])
        else:
            cols.append(np.interp(np.arange(n) / fs, np.arange(len(x)) / float(c.fs), x))
    return np.stack(cols, axis=1), fs


def stream_record(bundle: Bundle, record, variant: str = "int8", packet_s: float = DEFAULT_PACKET_S,
                  backend: str = "ort", threads: int = 1, features: bool = False) -> dict:
    """Push one record through a fresh :class:`StreamRuntime` in packets of ``packet_s``
    seconds; returns ``t``, ``abp``, ``valid``, ``reason`` (point-wise), ``beats`` (rows;
    with ``features`` each valid one carries the calibrated estimator's features),
    ``res_delay`` (model samples) and ``stats``. No cuff reading is given: the beats are the
    model's own absolute values."""
    from edgebp.runtime.engine import StreamRuntime

    if not packet_s > 0:
        raise ValueError(f"packet size must be positive, got {packet_s!r} s")
    if not bundle.manifest.get("streaming"):
        raise BundleError(f"{bundle.path}: this bundle has no streaming model; score a window variant (int8, fp32) instead")
    vals, fs = record_device_samples(record, bundle.inputs)
    from edgebp.runtime.engine import Calibration

    # no reading is given, so the method only decides whether beat features are measured:
    # "offset" needs none, so they are on only when asked for (the estimator is applied afterwards)
    rt = StreamRuntime(bundle, fs, {c: i for i, c in enumerate(bundle.inputs)}, backend=backend, variant=variant, threads=threads,
                       calibration=Calibration([], "offset"), features=features)
    step = max(1, int(round(packet_s * fs)))
    outs = [rt.push(vals[i:i + step]) for i in range(0, len(vals), step)]
    outs.append(rt.flush())
    cat = lambda key: np.concatenate([getattr(o, key) for o in outs])  # noqa: E731
    return {"t": cat("t"), "abp": cat("abp"), "valid": cat("valid"), "reason": cat("reason"),
            "beats": [b for o in outs for b in o.beats], "res_delay": int(rt.res_delay), "fs": rt.fs,
            "stats": dict(rt.stats, step_latency_s=None), "packet_samples": step, "device_fs": fs}


def stream_score_record(bundle: Bundle, record, prepared, variant: str = "int8", packet_s: float = DEFAULT_PACKET_S,
                        tolerance_s: float = 0.3, features: bool = False, backend: str = "ort") -> StreamScore:
    """Stream ``record`` and pair its beats with the reference of ``prepared`` (the same
    record prepared offline: reference ABP and usable mask at the model rate)."""
    from edgebp.pairing import beat_times_pair
    from edgebp.scoring import BeatPairs, interval_read, reference_beats_scored

    s = stream_record(bundle, record, variant=variant, packet_s=packet_s, features=features, backend=backend)
    fs = float(prepared.fs)
    n = len(prepared.abp)
    wave = np.full(n, np.nan)
    j = np.rint(s["t"] * fs).astype(np.int64) + s["res_delay"]
    ok = (j >= 0) & (j < n) & s["valid"]
    wave[j[ok]] = s["abp"][ok]
    usable = np.asarray(prepared.usable, bool)
    # reference beats detected on the usable stretches only (as the labels are made)
    rb, idx = reference_beats_scored(wave, np.where(usable, np.asarray(prepared.abp, np.float64), np.nan), fs, usable)
    beats = [b for b in s["beats"] if b.get("valid", True) and np.isfinite(b["sbp"])]
    bt = np.array([b["t"] for b in beats], float)
    # reference beat times on the runtime's axis: prepared index i <-> t = (i - res_delay) / fs
    rt_ref = (np.asarray(rb.i_sys)[idx] - s["res_delay"]) / fs
    ip, ir = beat_times_pair(bt, rt_ref, tolerance_s)
    m = len(idx)
    ps, pd, pm = np.empty(m), np.empty(m), np.empty(m)
    by_det = np.zeros(m, bool)
    for q, k in enumerate(idx):
        ps[q], pd[q], pm[q] = interval_read(wave, rb, k)
    for i, r in zip(ip.tolist(), ir.tolist()):
        ps[r], pd[r], pm[r], by_det[r] = beats[i]["sbp"], beats[i]["dbp"], beats[i]["map"], True
    pairs = BeatPairs(t=np.asarray(rb.t_sys)[idx], ref_sbp=np.asarray(rb.sbp)[idx], ref_dbp=np.asarray(rb.dbp)[idx],
                      ref_map=np.asarray(rb.map)[idx], pred_sbp=ps, pred_dbp=pd, pred_map=pm, by_detector=by_det)
    counts = {"runtime_beats": len(s["beats"]), "runtime_valid_beats": len(beats), "reference_beats": int(m),
              "paired": int(len(ip)), "reference_read_from_interval": int(m - len(ip)),
              "runtime_unpaired": int(len(beats) - len(ip)), "outputs": int(len(s["t"])), "valid_outputs": int(s["valid"].sum()),
              "packet_samples": s["packet_samples"], "device_fs": s["device_fs"]}
    pair_index = np.full(m, -1, np.int64)
    pair_index[np.asarray(ir, np.int64)] = np.asarray(ip, np.int64)
    return StreamScore(record.record_id, pairs, wave, counts, beats=beats, pair_index=pair_index, ref_t=np.asarray(rt_ref, float))


def stream_score_records(bundle: Bundle, items, variant: str = "int8", packet_s: float = DEFAULT_PACKET_S,
                         keep_waves: int | None = None, progress=None, features: bool = False,
                         streamed: list | None = None, backend: str = "ort") -> tuple[list, list[dict]]:
    """:func:`stream_score_record` over ``items`` (``(record, prepared)`` pairs): returns the
    :class:`edgebp.evaluation.ScoredRecord` list (waveforms kept for the first ``keep_waves``
    records, all when ``None``) and the per-record beat counts (with ``record``).
    ``progress(k, record_id)`` is called after each record. With ``features`` the beats carry
    the calibrated estimator's features; ``streamed`` (a list) receives each
    :class:`StreamScore` (its waveform dropped) for :mod:`edgebp.runtime.calibrated_score`."""
    from edgebp.evaluation import ScoredRecord

    scored, counts = [], []
    for k, (rec, p) in enumerate(items):
        sc = stream_score_record(bundle, rec, p, variant=variant, packet_s=packet_s, features=features, backend=backend)
        keep = keep_waves is None or k < keep_waves
        if streamed is not None:
            streamed.append(StreamScore(sc.record_id, sc.pairs, None, sc.counts, sc.beats, sc.pair_index, sc.ref_t))
        scored.append(ScoredRecord(p.record_id, p.subject_id, sc.pairs, sc.pred_wave if keep else None))
        counts.append({"record": p.record_id} | sc.counts)
        if progress is not None:
            progress(k + 1, p.record_id)
    return scored, counts
