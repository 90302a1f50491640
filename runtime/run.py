"""Drive a stream end to end: bytes -> decoder -> :class:`StreamRuntime` -> writer, with the
accounting and the summary. Used by ``edgebp run`` and by the tests and benchmarks."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from edgebp.runtime.bundle import Bundle
from edgebp.runtime.engine import REASONS, Calibration, OutputBlock, StreamRuntime

log = logging.getLogger(__name__)


# A signal that ends a run exits with 128 + its number, the shell's convention for "killed by
# it" (a supervisor such as systemd then sees that the run was stopped, not that it finished):
# SIGINT 130, SIGTERM 143, SIGHUP 129.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class StreamStopped(Exception):
    """Raised by :class:`SignalStop` inside a read that waits for data (stdin, a FIFO)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalStop:
    """SIGINT, SIGTERM and SIGHUP end a stream the way the end of its input does.

    While installed (``with SignalStop() as sig:``), the first of these signals sets
    :attr:`signum` and calls ``on_stop`` (e.g. a :class:`threading.Event`'s ``set``, which the
    sources that wait for data watch); :func:`stream_process` then stops after the chunk in
    hand, flushes the runtime and the writer and returns the summary. A read that blocks
    (standard input, a FIFO) is interrupted: the handler raises :class:`StreamStopped` only
    while :attr:`waiting` is set, i.e. never halfway through the decoder, the engine or a
    writer. A second signal raises at once. A signal ignored when entering (``nohup``'s SIGHUP)
    stays ignored. Outside the main thread nothing is installed.
    """

    def __init__(self, on_stop: Callable[[], None] | None = None, names: tuple[str, ...] = STOP_SIGNALS, interrupt: bool = True):
        self.on_stop = on_stop
        self.interrupt = interrupt  # False: only record and call on_stop (a server's loop stops by itself)
        self.names = tuple(n for n in names if hasattr(signal, n))
        self.signum: int | None = None
        self.waiting = False
        self._old: dict[int, object] = {}

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (0 when no signal stopped the stream)."""
        return 0 if self.signum is None else 128 + int(self.signum)

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self.on_stop is not None:
                self.on_stop()
            if not self.waiting:
                return
        if self.interrupt:
            raise StreamStopped(signum)

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is threading.main_thread():
            for n in self.names:
                num = getattr(signal, n)
                if signal.getsignal(num) is signal.SIG_IGN:
                    continue  # ignored on purpose (nohup's SIGHUP, a background job's SIGINT): stays so
                self._old[num] = signal.signal(num, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for num, old in self._old.items():
            signal.signal(num, old)
        self._old.clear()


# columns of the beats file (``<stem>.beats.csv``, or standard output without --out)
BEAT_COLUMNS = ("time", "sbp", "dbp", "map", "hr", "valid", "reason", "calibrated")
BEAT_HEADER = ",".join(BEAT_COLUMNS)
POINTWISE_HEADER = "time,abp,valid,reason"


def _num(x, fmt: str) -> str:
    """A number for a CSV cell: empty for None / NaN / inf."""
    if x is None:
        return ""
    x = float(x)
    return fmt % x if np.isfinite(x) else ""


def _json_num(x, nd: int):
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if np.isfinite(x) else None


def _dumps(rec: dict) -> str:
    # allow_nan=False: a NaN that slipped past _json_num is a bug to see, never "NaN" in a
    # file that JSON readers must parse
    return json.dumps(rec, allow_nan=False)


def beat_fields(b: dict) -> dict:
    """One beat row of the engine as the fields every writer writes: ``t``, ``sbp``, ``dbp``,
    ``map`` (mmHg), ``hr`` (bpm), ``valid`` (bool), ``reason`` (str), plus ``calibrated``
    when the row has it. Rows without ``hr`` / ``valid`` / ``reason`` (older engines) get
    ``hr`` NaN, ``valid`` True and ``reason`` "ok"; NaN values stay NaN.

    Examples
    --------
    >>> beat_fields({"t": 1.0, "sbp": 120.0, "dbp": 80.0, "map": 93.3})
    {'t': 1.0, 'sbp': 120.0, 'dbp': 80.0, 'map': 93.3, 'hr': nan, 'valid': True, 'reason': 'ok'}
    """
    def num(k: str) -> float:
        x = b.get(k)
        return float("nan") if x is None else float(x)

    valid = bool(b.get("valid", True))
    out = {"t": float(b["t"]), "sbp": num("sbp"), "dbp": num("dbp"), "map": num("map"), "hr": num("hr"),
           "valid": valid, "reason": str(b.get("reason", "ok" if valid else ""))}
    if "calibrated" in b:
        out["calibrated"] = bool(b["calibrated"])
    return out


def beat_csv_row(b: dict) -> str:
    """One line of the beats CSV (``time,sbp,dbp,map,hr,valid,reason,calibrated``; NaN as an
    empty cell; ``calibrated`` 1 once a cuff reading calibrates the values, else 0).

    Examples
    --------
    >>> beat_csv_row({"t": 1.0, "sbp": 120.0, "dbp": 80.0, "map": 93.3, "hr": 61.0, "valid": True, "reason": "ok"})
    '1.000,120.00,80.00,93.30,61.0,1,ok,0'
    >>> beat_csv_row({"t": 2.0, "sbp": float("nan"), "dbp": float("nan"), "map": float("nan"), "valid": False, "reason": "gap"})
    '2.000,,,,,0,gap,0'
    """
    f = beat_fields(b)
    return (f"{f['t']:.3f},{_num(f['sbp'], '%.2f')},{_num(f['dbp'], '%.2f')},{_num(f['map'], '%.2f')},"
            f"{_num(f['hr'], '%.1f')},{1 if f['valid'] else 0},{f['reason']},{1 if f.get('calibrated') else 0}")


R_ARTEFACT = REASONS.index("artefact")


def _finite_valid(out: OutputBlock) -> tuple[np.ndarray, np.ndarray]:
    """The rows' validity and reason as written: a row the engine marks valid whose ABP is
    not finite (NaN, inf) is written invalid ("artefact"), never as a number such as 0.00 or
    1.8e308 claimed valid."""
    valid = np.asarray(out.valid, bool)
    bad = valid & ~np.isfinite(np.asarray(out.abp, np.float64))
    if not bad.any():
        return valid, out.reason
    log.warning("%d output row(s) marked valid had a non-finite ABP: written as invalid (artefact)", int(bad.sum()))
    reason = np.asarray(out.reason).copy()
    reason[bad] = R_ARTEFACT
    return valid & ~bad, reason


class OutputWriter:
    """Where ``edgebp run`` writes its outputs.

    - ``path`` ending ``.jsonl``: everything to one JSON-lines file (a header record, then
      ``{"type": "sample", "t", "abp", "valid", "reason"}`` and ``{"type": "beat", "t",
      "sbp", "dbp", "map", "hr", "valid", "reason"[, "calibrated"]}``; NaN as null).
    - another ``path`` (``bp.csv``): point-wise rows ``time,abp,valid,reason`` there, beats
      ``time,sbp,dbp,map,hr,valid,reason,calibrated`` to ``bp.beats.csv``; both start with ``#`` lines.
    - ``"-"``: beats only, to standard output: the beats header line first, then one line per
      beat as it is produced, flushed. When the reader closes the pipe (``| head``) the
      writer stops writing and sets :attr:`closed` (pass ``stop=lambda: writer.closed`` to
      :func:`stream_process` to end the run there).
    - ``None``: nothing is written.

    Examples
    --------
    >>> import os, tempfile
    >>> from edgebp.runtime.engine import OutputBlock
    >>> path = os.path.join(tempfile.mkdtemp(), "bp.csv")
    >>> w = OutputWriter(path, ["demo"])
    >>> blk = OutputBlock.empty()
    >>> blk.beats = [{"t": 1.0, "sbp": 120.0, "dbp": 80.0, "map": 93.3}]
    >>> w.write(blk); w.close()
    >>> open(path[:-4] + ".beats.csv").read().splitlines()[1:]
    ['time,sbp,dbp,map,hr,valid,reason,calibrated', '1.000,120.00,80.00,93.30,,1,ok,0']
    """

    def __init__(self, path: str | None, header_lines: list[str], flush_s: float | None = 1.0):
        self.path = path
        # files are flushed at most flush_s after a write (0: after every write; None: only
        # at close), so a reader of a live run, or a run killed by SIGKILL, loses at most
        # that much; standard output is flushed after every write anyway
        self.flush_s = flush_s
        self._flushed_at = time.monotonic()
        self._dirty = False  # written since the last flush
        self.stdout = path == "-"
        self.jsonl = bool(path) and not self.stdout and str(path).endswith(".jsonl")
        self.closed = False  # standard output: the reader closed the pipe
        self.f = self.fb = None
        if self.stdout:
            import sys

            self.fb = sys.stdout
            self._out(BEAT_HEADER + "\n")
        elif path:
            self.f = open(path, "w")
            if self.jsonl:
                self.f.write(_dumps({"type": "header", "lines": header_lines}) + "\n")
            else:
                for h in header_lines:
                    self.f.write(f"# {h}\n")
                self.f.write(POINTWISE_HEADER + "\n")
                bpath = Path(path).with_suffix(".beats.csv")
                self.fb = open(bpath, "w")
                for h in header_lines:
                    self.fb.write(f"# {h}\n")
                self.fb.write(BEAT_HEADER + "\n")
            # the header reaches the disk now: a full disk or an unwritable file is said
            # before any work starts, not a second into the stream
            self.flush()

    def _out(self, text: str) -> None:
        """Standard output: write and flush; a closed pipe ends the writing quietly."""
        if self.closed:
            return
        try:
            self.fb.write(text)
            self.fb.flush()
        except BrokenPipeError:
            self.closed = True
            log.info("standard output closed by the reader: stopping")
            # what is still buffered can never be written: point stdout at /dev/null so the
            # interpreter's final flush does not fail again
            import os

            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.fb.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def _named(self, exc: OSError) -> OSError:
        # a failed write (ENOSPC, EIO) carries no file name: name the output it was for
        if exc.filename is None and exc.errno is not None:
            err = OSError(exc.errno, exc.strerror, "standard output" if self.stdout else str(self.path))
            err.__cause__ = exc
            return err
        return exc

    def write(self, out: OutputBlock) -> None:
        """Write one block's rows and beats (a failed write raises OSError naming the file)."""
        try:
            self._write(out)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._named(exc) from None

    def _write(self, out: OutputBlock) -> None:
        if self.stdout:
            if out.beats:
                self._out("".join(beat_csv_row(b) + "\n" for b in out.beats))
            return
        if self.f is None:
            return
        if self.jsonl:
            valid, reason = _finite_valid(out)
            lines = [_dumps({"type": "sample", "t": round(float(t), 4), "abp": _json_num(a, 2) if v else None, "valid": bool(v), "reason": REASONS[r]})
                     for t, a, v, r in zip(out.t, out.abp, valid, reason)]
            for b in out.beats:
                f = beat_fields(b)
                rec = {"type": "beat", "t": round(f["t"], 3), **{k: _json_num(f[k], 2) for k in ("sbp", "dbp", "map")},
                       "hr": _json_num(f["hr"], 1), "valid": f["valid"], "reason": f["reason"]}
                if "calibrated" in f:
                    rec["calibrated"] = f["calibrated"]
                lines.append(_dumps(rec))
            if lines:
                self.f.write("\n".join(lines) + "\n")
                self._dirty = True
            self._flush_due()
            return
        if len(out.t):
            valid, reason = _finite_valid(out)
            # Python's own formatting of each row: the same text as "%.4f" / "%.2f", about 4x
            # faster than np.char on a 25-row step (the writer had cost 4-5 us per device
            # sample at 20 ms packets, as much as the model call)
            names = REASONS
            self.f.write("".join([f"{t:.4f},{a:.2f},1,{names[r]}\n" if v else f"{t:.4f},,0,{names[r]}\n"
                                  for t, a, v, r in zip(out.t.tolist(), np.asarray(out.abp, np.float64).tolist(), valid.tolist(),
                                                        np.asarray(reason).tolist())]))
            self._dirty = True
        if out.beats:
            self.fb.write("".join(beat_csv_row(b) + "\n" for b in out.beats))
            self._dirty = True
        self._flush_due()

    def _flush_due(self) -> None:
        # nothing written since the last flush (most 20 ms packets complete no model step):
        # nothing to flush
        if self._dirty and self.flush_s is not None and time.monotonic() - self._flushed_at >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered to the files now."""
        try:
            for f in (self.f, self.fb):
                if f is not None and not self.stdout and not f.closed:
                    f.flush()
        except OSError as exc:
            raise self._named(exc) from None
        self._flushed_at = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        if self.stdout:
            self._out("")
            return
        first = None
        for f in (self.f, self.fb):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError as exc:  # close the other file too, then say which failed
                    first = first or self._named(exc)
        if first is not None:
            raise first


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
                   max_interp: int = MAX_INTERP_SAMPLES, run_dir: str | None = None, beat_source: str = "auto",
                   signals: SignalStop | None = None) -> dict:
    """Run a byte stream through the bundle; returns the summary (and the outputs if ``collect``).

    ``stop``: a callable checked after every chunk (True ends the stream). ``signals``: an
    installed :class:`SignalStop`; a signal ends the stream like ``stop`` (a read blocked
    waiting for data is interrupted) and the summary's ``stopped`` names it. Either way the
    rest is processed as at the end of the input: decoder and runtime flushed, summary built.
    """
    from edgebp.runtime import protocol as _protocol
    from edgebp.runtime.protocol import GapEvent, HeaderEvent, ResetEvent

    CuffEvent = getattr(_protocol, "CuffEvent", None)

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
            # the ADC step only where the header knows the converter (bits > 0): a CSV or
            # third-party log says gain 1 for values in unknown units, not a step of 1
            gains = {name: float(g) for name, g, b in zip(h.channels, h.gain, h.adc_bits) if b > 0}
            rt = StreamRuntime(bundle, h.fs, index, backend=backend, variant=variant, hop=hop, threads=threads, calibration=calibration, gains=gains, run_dir=run_dir,
                              beat_source=beat_source)
        return rt

    def emit(out: OutputBlock):
        if writer is not None:
            writer.write(out)
        if collect:
            kept.append(out)

    def consume(block, final: bool = False):
        nonlocal dev_samples, t_dev_base, last_row, interpolated, header_seen, held_gap
        n = len(block.seq)
        if not block.events and not held_gap:  # the usual live packet: samples, nothing else
            if n:
                emit(ensure_runtime().push(block.values))
                dev_samples += n
                last_row = block.values[n - 1]
            return
        # split the block at events (gaps insert NaN rows; resets restart the time axis)
        cuts = []
        for ev in block.events:
            if isinstance(ev, HeaderEvent):
                if header_seen is not None and rt is not None and _layout(ev.header) != _layout(header_seen):
                    raise ValueError(f"stream: the device changed its layout mid-stream ({_layout(header_seen)} -> {_layout(ev.header)})")
                header_seen = ev.header
            elif isinstance(ev, (GapEvent, ResetEvent)) or (CuffEvent is not None and isinstance(ev, CuffEvent)):
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
            elif CuffEvent is not None and isinstance(ev, CuffEvent):
                # the reading applies at the time of the next device sample (after any held gap)
                r = ensure_runtime()
                t_next = r.t_base + (r.samples_in + held_gap) / r.fs_dev
                r.cuff_reading(float(ev.sbp), float(ev.dbp), t=t_next, where=str(getattr(ev, "where", "") or "stream"))
            elif isinstance(ev, ResetEvent):
                r = ensure_runtime()
                emit(r.flush())
                t_dev_base += dev_samples / r.fs_dev
                dev_samples = 0
                last_row = None
                r.device_reset(t_dev_base)

    from edgebp.runtime.sources import SourceError

    source_error = None
    stopped = None
    it = iter(chunks)
    try:
        while True:
            if signals is not None:
                # waiting first, then the check: a signal that came just before the flag was
                # set returned without raising, and the read below could then block for ever
                # on a FIFO whose writer stays silent (seen under load with SIGINT)
                signals.waiting = True  # a signal now may interrupt the read
                if signals.signum is not None:
                    signals.waiting = False
                    break
            try:
                data = next(it)
            except StopIteration:
                break
            finally:
                if signals is not None:
                    signals.waiting = False
            consume(decoder.feed(data))
            if stop is not None and stop():
                break
    except StreamStopped:
        pass  # the summary names the signal (below)
    except KeyboardInterrupt:
        stopped = "interrupted"
        log.warning("interrupted: writing the summary of what was processed")
    except SourceError as exc:
        # a device unplugged (or a pseudo-terminal closed) mid-stream: what arrived is still
        # processed, flushed and summarised, and the summary says why the stream ended
        source_error = str(exc)
        log.error("%s: writing the summary of what was processed", exc)
    finally:
        close = getattr(it, "close", None)
        if close is not None:  # a port or file left by a stop is closed now, not at GC
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the summary
                log.debug("closing the source: %s", exc)
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
    if signals is not None and signals.signum is not None:
        stopped = f"signal {signals.name}"
        log.warning("stopped by %s: the summary covers what was processed", signals.name)
    if stopped is not None:
        summary["stopped"] = stopped
    if rt is not None:
        lat = np.asarray(rt.stats["step_latency_s"]) * 1e3
        audio_s = (counts.get("samples_parsed", 0) + counts.get("samples_missing", 0)) / rt.fs_dev
        summary.update({
            "device_fs": rt.fs_dev, "model_fs": rt.fs, "model": bundle.manifest["model"]["name"], "variant": variant, "backend": backend,
            "outputs": rt.stats["outputs"], "valid": rt.stats["valid"], "valid_share": rt.stats["valid"] / max(rt.stats["outputs"], 1),
            "invalid_reasons": rt.stats["reasons"], "beats": rt.stats["beats"], "beats_invalid": rt.stats.get("beats_invalid", 0), "model_calls": rt.stats["model_calls"],
            "resets": rt.stats["resets"], "signal_seconds": audio_s, "wall_seconds": wall,
            "real_time_factor": audio_s / wall if wall > 0 else float("inf"),
            "chunk_latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None, "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                                 "over_last_steps": int(len(lat))},
            "calibration": rt.estimator.describe(), "cuff_readings": rt.stats["cuff_readings"], "cuff_rejected": rt.stats["cuff_rejected"],
            "calibration_history": list(rt.estimator.history),
        })
    if collect:
        summary["_outputs"] = kept
    return summary


def no_samples_reason(counts: dict, fmt: str = "auto") -> str | None:
    """Why a stream yielded no sample, in one phrase (None when it yielded some).

    Examples
    --------
    >>> no_samples_reason({"bytes_in": 0, "samples_parsed": 0})
    'no samples decoded: the stream is empty (0 bytes)'
    >>> no_samples_reason({"bytes_in": 1234, "samples_parsed": 0, "format": "binary", "bytes_skipped": 1234, "headers": 0})
    'no samples decoded: no header found (1234 bytes skipped as binary)'
    >>> no_samples_reason({"bytes_in": 20, "samples_parsed": 0, "format": "text", "samples_rejected": 2,
    ...                    "rejected_reasons": {"no_header": 2}, "headers": 0})
    'no samples decoded: 2 record(s) rejected (no_header: 2); no header found (give --fs and --channel-map for a log without one)'
    """
    if counts.get("samples_parsed", 0) > 0:
        return None
    n = int(counts.get("bytes_in", 0))
    if n == 0:
        return "no samples decoded: the stream is empty (0 bytes)"
    parts = []
    rej = int(counts.get("samples_rejected", 0))
    if rej:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(dict(counts.get("rejected_reasons", {})).items()))
        parts.append(f"{rej} record(s) rejected ({why})")
    kind = counts.get("format")
    if not counts.get("headers", 0):
        skipped = int(counts.get("bytes_skipped", 0))
        ignored = int(counts.get("lines_ignored", 0))
        if kind is None:
            parts.append(f"format not recognised in {n} bytes" + ("" if fmt == "auto" else f" as --format {fmt}"))
        elif rej:
            parts.append("no header found (give --fs and --channel-map for a log without one)")
        else:
            what = f"{skipped} bytes skipped as {kind}" if skipped else f"{ignored} line(s) ignored as {kind}" if ignored else f"{n} bytes read as {kind}"
            parts.append(f"no header found ({what})")
    elif not rej:
        parts.append(f"a header but no sample in {n} bytes")
    return "no samples decoded: " + "; ".join(parts)


def summary_text(s: dict) -> str:
    """The end-of-stream summary of :func:`stream_process` as a few plain-text lines.

    Examples
    --------
    >>> print(summary_text({"decoder": {"samples_parsed": 10}, "stopped": "standard output closed by the reader"}))
    samples in: 10  parsed: 10  rejected: 0 {}  missing: 0 (bridged by interpolation: 0)  duplicates dropped: 0  resets: 0
    stopped early: standard output closed by the reader
    """
    d = s["decoder"]
    lines = [f"samples in: {d.get('samples_parsed', 0) + d.get('samples_rejected', 0) + d.get('samples_missing', 0)}  "
             f"parsed: {d.get('samples_parsed', 0)}  rejected: {d.get('samples_rejected', 0)} {dict(d.get('rejected_reasons', {}))}  "
             f"missing: {d.get('samples_missing', 0)} (bridged by interpolation: {s.get('interpolated_samples', 0)})  duplicates dropped: {d.get('duplicates_dropped', 0)}  resets: {d.get('resets', 0)}"]
    if "outputs" in s:
        lines.append(f"outputs: {s['outputs']} at {s['model_fs']:g} Hz  valid: {s['valid_share'] * 100:.1f} %  invalid by reason: {s['invalid_reasons']}  beats: {s['beats']}"
                     + (f" valid, {s['beats_invalid']} invalid" if "beats_invalid" in s else ""))
        lines.append(f"per-chunk latency p50 {s['chunk_latency_ms']['p50'] or 0:.3f} ms, p99 {s['chunk_latency_ms']['p99'] or 0:.3f} ms; "
                     f"{s['signal_seconds']:.1f} s of signal in {s['wall_seconds']:.2f} s = {s['real_time_factor']:.0f} x real time ({s['model']} {s['variant']} on {s['backend']})")
        lines.append(f"calibration: {s['calibration']}")
    if s.get("source_error"):
        lines.append(f"stream ended early: {s['source_error']}")
    if s.get("stopped"):
        lines.append(f"stopped early: {s['stopped']}")
    return "\n".join(lines)
