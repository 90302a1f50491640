"""Drive a stream end to end: bytes -> decoder -> :class:`StreamRuntime` -> writer, with the
accounting and the summary. Used by ``edgebp run`` and by the tests and benchmarks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgebp.runtime.bundle import Bundle
from edgebp.runtime.engine import REASONS, Calibration, OutputBlock, StreamRuntime

log = logging.getLogger(__name__)


class OutputWriter:
    """Point-wise rows to CSV (beats to ``<stem>.beats.csv``) or everything to JSONL."""

    def __init__(self, path: str | None, header_lines: list[str]):
        self.path = path
        self.jsonl = bool(path) and str(path).endswith(".jsonl")
        self.f = self.fb = None
        if path:
            self.f = open(path, "w")
            if self.jsonl:
                self.f.write(json.dumps({"type": "header", "lines": header_lines}) + "\n")
            else:
                for h in header_lines:
                    self.f.write(f"# {h}\n")
                self.f.write("time,abp,valid,reason\n")
                bpath = Path(path).with_suffix(".beats.csv")
                self.fb = open(bpath, "w")
                for h in header_lines:
                    self.fb.write(f"# {h}\n")
                self.fb.write("time,sbp,dbp,map\n")

    def write(self, out: OutputBlock) -> None:
        if self.f is None:
            return
        if self.jsonl:
            lines = [json.dumps({"type": "sample", "t": round(float(t), 4), "abp": None if not v else round(float(a), 2), "valid": bool(v), "reason": REASONS[r]})
                     for t, a, v, r in zip(out.t, out.abp, out.valid, out.reason)]
            lines += [json.dumps({"type": "beat", **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in b.items()}}) for b in out.beats]
            if lines:
                self.f.write("\n".join(lines) + "\n")
            return
        if len(out.t):
            reasons = np.asarray(REASONS, dtype=object)[out.reason]
            abp_s = np.where(out.valid, np.char.mod("%.2f", np.nan_to_num(out.abp)), "")
            rows = np.char.add(np.char.add(np.char.add(np.char.mod("%.4f,", out.t), abp_s), np.where(out.valid, ",1,", ",0,")), reasons.astype(str))
            self.f.write("\n".join(rows.tolist()) + "\n")
        for b in out.beats:
            self.fb.write(f"{b['t']:.3f},{b['sbp']:.2f},{b['dbp']:.2f},{b['map']:.2f}\n")

    def close(self) -> None:
        for f in (self.f, self.fb):
            if f is not None:
                f.close()


# Gaps of at most this many samples (8 ms at 250 Hz: one lost or corrupted frame) are bridged
# by linear interpolation between the samples either side, and counted as interpolated; a
# longer gap is NaN (no BP is claimed over it or the receptive field after it).
MAX_INTERP_SAMPLES = 2


def _layout(h) -> tuple:
    # StreamHeader.layout is a method; comparing the bound methods themselves is never equal
    lay = h.layout
    return lay() if callable(lay) else lay


def stream_process(chunks: Iterable[bytes], bundle: Bundle, decoder, backend: str = "ort", variant: str = "int8",
                   hop: int | None = None, threads: int = 1, calibration: Calibration | None = None,
                   writer: OutputWriter | None = None, collect: bool = False, stop=None,
                   max_interp: int = MAX_INTERP_SAMPLES, run_dir: str | None = None) -> dict:
    """Run a byte stream through the bundle; returns the summary (and the outputs if ``collect``)."""
    from edgebp.runtime.protocol import GapEvent, HeaderEvent, ResetEvent

    t_wall = time.perf_counter()
    rt: StreamRuntime | None = None
    kept: list[OutputBlock] = []
    dev_samples = 0  # device samples placed on the time axis (parsed + missing), since the last reset
    t_dev_base = 0.0
    last_row = None  # the last real sample pushed (for bridging a short gap)
    held_gap = 0  # a short gap at the end of a block waits for the next sample
    interpolated = 0
    header_seen = None

    def ensure_runtime():
        nonlocal rt
        if rt is None:
            h = decoder.header
            if h is None:
                raise ValueError("stream: no header yet and no --fs given; cannot know the sampling rate")
            index = {name: i for i, name in enumerate(h.channels)}
            gains = {name: float(g) for name, g in zip(h.channels, h.gain)}
            rt = StreamRuntime(bundle, h.fs, index, backend=backend, variant=variant, hop=hop, threads=threads, calibration=calibration, gains=gains, run_dir=run_dir)
        return rt

    def emit(out: OutputBlock):
        if writer is not None:
            writer.write(out)
        if collect:
            kept.append(out)

    def consume(block, final: bool = False):
        nonlocal dev_samples, t_dev_base, last_row, interpolated, header_seen, held_gap
        n = len(block.seq)
        # split the block at events (gaps insert NaN rows; resets restart the time axis)
        cuts = []
        for ev in block.events:
            if isinstance(ev, HeaderEvent):
                if header_seen is not None and rt is not None and _layout(ev.header) != _layout(header_seen):
                    raise ValueError(f"stream: the device changed its layout mid-stream ({_layout(header_seen)} -> {_layout(ev.header)})")
                header_seen = ev.header
            elif isinstance(ev, (GapEvent, ResetEvent)):
                cuts.append((int(getattr(ev, "index", getattr(ev, "at_index", 0))), ev))
        cuts.sort(key=lambda c: c[0])
        if held_gap:
            # the short gap that ended the previous block, now that its next sample is known
            cuts.insert(0, (0, GapEvent(after_seq=-1, n_missing=held_gap, at_index=0)))
            held_gap = 0
        pos = 0
        for at, ev in cuts + [(n, None)]:
            if at > pos and n:
                r = ensure_runtime()
                emit(r.push(block.values[pos:at]))
                dev_samples += at - pos
                last_row = block.values[at - 1]
            pos = max(pos, at)
            if isinstance(ev, GapEvent) and ev.n_missing > 0:
                r = ensure_runtime()
                m = int(ev.n_missing)
                n_ch = block.values.shape[1] if block.values.ndim == 2 else len(decoder.header.channels)
                if m <= max_interp and last_row is not None and at >= n and not final:
                    held_gap = m
                    continue
                if m <= max_interp and last_row is not None and at < n:
                    w = (np.arange(1, m + 1) / (m + 1))[:, None]
                    rows = last_row[None, :] * (1 - w) + block.values[at][None, :] * w
                    interpolated += m
                else:
                    rows = np.full((m, n_ch), np.nan)
                emit(r.push(rows))
                dev_samples += m
            elif isinstance(ev, ResetEvent):
                r = ensure_runtime()
                emit(r.flush())
                t_dev_base += dev_samples / r.fs_dev
                dev_samples = 0
                last_row = None
                r.device_reset(t_dev_base)

    from edgebp.runtime.sources import SourceError

    source_error = None
    try:
        for data in chunks:
            consume(decoder.feed(data))
            if stop is not None and stop():
                break
    except KeyboardInterrupt:
        log.warning("interrupted: writing the summary of what was processed")
    except SourceError as exc:
        # a device unplugged (or a pseudo-terminal closed) mid-stream: what arrived is still
        # processed, flushed and summarised, and the summary says why the stream ended
        source_error = str(exc)
        log.error("%s: writing the summary of what was processed", exc)
    consume(decoder.finish(), final=True)
    if held_gap and rt is not None:  # a short gap at the very end: nothing after it to bridge to
        emit(rt.push(np.full((held_gap, len(decoder.header.channels)), np.nan)))
    if rt is not None:
        emit(rt.flush())
    wall = time.perf_counter() - t_wall
    counts = dict(decoder.counts)
    summary = {"decoder": counts, "interpolated_samples": interpolated}
    if source_error is not None:
        summary["source_error"] = source_error
    if rt is not None:
        lat = np.asarray(rt.stats["step_latency_s"]) * 1e3
        audio_s = (counts.get("samples_parsed", 0) + counts.get("samples_missing", 0)) / rt.fs_dev
        summary.update({
            "device_fs": rt.fs_dev, "model_fs": rt.fs, "model": bundle.manifest["model"]["name"], "variant": variant, "backend": backend,
            "outputs": rt.stats["outputs"], "valid": rt.stats["valid"], "valid_share": rt.stats["valid"] / max(rt.stats["outputs"], 1),
            "invalid_reasons": rt.stats["reasons"], "beats": rt.stats["beats"], "model_calls": rt.stats["model_calls"],
            "resets": rt.stats["resets"], "signal_seconds": audio_s, "wall_seconds": wall,
            "real_time_factor": audio_s / wall if wall > 0 else float("inf"),
            "chunk_latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None, "p99": float(np.percentile(lat, 99)) if len(lat) else None},
            "calibration": calibration.describe() if calibration else "none",
        })
    if collect:
        summary["_outputs"] = kept
    return summary


def summary_text(s: dict) -> str:
    d = s["decoder"]
    lines = [f"samples in: {d.get('samples_parsed', 0) + d.get('samples_rejected', 0) + d.get('samples_missing', 0)}  "
             f"parsed: {d.get('samples_parsed', 0)}  rejected: {d.get('samples_rejected', 0)} {dict(d.get('rejected_reasons', {}))}  "
             f"missing: {d.get('samples_missing', 0)} (bridged by interpolation: {s.get('interpolated_samples', 0)})  duplicates dropped: {d.get('duplicates_dropped', 0)}  resets: {d.get('resets', 0)}"]
    if "outputs" in s:
        lines.append(f"outputs: {s['outputs']} at {s['model_fs']:g} Hz  valid: {s['valid_share'] * 100:.1f} %  invalid by reason: {s['invalid_reasons']}  beats: {s['beats']}")
        lines.append(f"per-chunk latency p50 {s['chunk_latency_ms']['p50'] or 0:.3f} ms, p99 {s['chunk_latency_ms']['p99'] or 0:.3f} ms; "
                     f"{s['signal_seconds']:.1f} s of signal in {s['wall_seconds']:.2f} s = {s['real_time_factor']:.0f} x real time ({s['model']} {s['variant']} on {s['backend']})")
        lines.append(f"calibration: {s['calibration']}")
    if s.get("source_error"):
        lines.append(f"stream ended early: {s['source_error']}")
    return "\n".join(lines)
