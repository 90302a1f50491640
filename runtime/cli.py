"""``edgebp run``: stream a device's samples through a bundle and emit BP continuously."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import click

from edgebp.cli import CliError
from edgebp.cli_types import deprecated_alias, int_range, positive
from edgebp.variants import RUNTIME_VARIANTS, VariantChoice

# --read-size above this is no longer "a read" but a whole file in memory
MAX_READ_SIZE = 64 * 1024 * 1024


def _channel_map(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise CliError(f"--channel-map {text!r}: expected FIELD=NAME pairs, e.g. ir=ppg,red=ppg_red")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _input_check(path: str) -> None:
    """--stream FILE exists and is not a directory (a FIFO or a device is fine)."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"--stream {path}: file not found")
    if p.is_dir():
        raise CliError(f"--stream {path}: is a directory")
    if not os.access(p, os.R_OK):
        raise CliError(f"--stream {path}: not readable (permission denied)")


def _iter_live(path: str, chunk: int):
    """A FIFO or device given as --stream: opened once, and each read returns what has arrived
    (a buffered ``read(chunk)`` would wait for a whole chunk while the device keeps streaming)."""
    fd = os.open(path, os.O_RDONLY)  # a FIFO: waits here for its writer
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return
            yield data
    finally:
        os.close(fd)


def runtime_precision(variant: str | None, streaming: bool, where: str) -> str:
    """The precision the runtime runs (``int8``/``fp32``) for a variant of :mod:`edgebp.variants`:
    a streaming bundle runs its ``stream-*`` model, a window bundle its window model. ``int8`` or
    ``fp32`` on a streaming bundle (the names ``run`` took before the shared list) still run the
    streaming model, with a warning."""
    if variant is None:
        return "int8"
    if variant.startswith("stream-"):
        if not streaming:
            raise CliError(f"--variant {variant}: {where} has no streaming model; use --variant {variant.split('-', 1)[1]}")
        return variant.split("-", 1)[1]
    if streaming:
        click.echo(f"--variant {variant} on a streaming bundle runs its streaming model: say --variant stream-{variant} (the shared variant names)", err=True)
    return variant


@click.command(name="run")
@click.argument("bundle", required=False, default="default")
@click.option("--stream", "stream", default=None, help="A serial log file, or - for standard input.")
@click.option("--follow", is_flag=True, help="Keep reading a file that is still growing (like tail -f; survives truncation).")
@click.option("--port", default=None, help="A serial port (e.g. /dev/ttyUSB0 or a pseudo-terminal).")
@click.option("--baud", type=int_range(1, 20_000_000), default=115200, show_default=True, help="Serial port speed.")
@click.option("--format", "fmt", type=click.Choice(["auto", "text", "binary", "max3010x", "csv"]), default="auto", show_default=True, help="Stream encoding (auto-detected for edgebp's own).")
@click.option("--fs", type=positive(max=100_000), default=None, help="Sampling rate of a third-party log with no header (never guessed).")
@click.option("--channel-map", default=None, help="Map a log's fields to channels, e.g. ir=ppg,red=ppg_red.")
@click.option("--backend", type=click.Choice(["ort", "tensorrt", "torch"]), default="ort", show_default=True, help="Inference backend.")
@click.option("--variant", type=VariantChoice(RUNTIME_VARIANTS), default=None,
              help="Bundle model to run [default: stream-int8 for a streaming bundle, int8 for a window bundle].")
@click.option("--hop", type=int_range(1, None), default=None, help="Window models: run every HOP samples (1 = the seeds' point-wise paradigm).")
@click.option("--threads", type=int_range(1, 256), default=1, show_default=True, help="Inference threads.")
@click.option("--run-dir", type=click.Path(exists=True, file_okay=False), default=None, help="With --backend torch (development only): the training run the bundle was exported from.")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Cuff readings CSV time,sbp,dbp[,subject][,window] (time in s on the stream's axis; one subject). Readings inside the stream (#CUFF lines, 'C' frames) are used too.")
@click.option("--calibration-method", type=click.Choice(["auto", "estimator", "offset", "hold"]), default="auto", show_default=True,
              help="How cuff readings calibrate: the bundle's calibrated estimator (auto, when it has one), the model shifted by the cuff (offset), or the cuff value held.")
@click.option("--out", "out_path", default=None,
              help="bp.csv (point-wise; beats to bp.beats.csv) or bp.jsonl [default, or -: beats as CSV on stdout, summary on stderr].")
@click.option("--summary", "summary_json", type=click.Path(dir_okay=False), default=None, help="Write the end-of-stream summary (JSON) here.")
@click.option("--idle-timeout", type=positive(), default=None, help="With --follow or --port: stop after this many seconds without data.")
@click.option("--read-size", type=int_range(1, MAX_READ_SIZE), default=65536, show_default=True,
              help="Bytes per read of --stream/--follow/stdin: 87 reads a text log as a device sends it (20 ms packets). "
                   "The outputs are bit-identical for every read size.")
@click.option("--beat-source", type=click.Choice(["auto", "ppg", "ecg"]), default="auto", show_default=True,
              help="Which input's beats key the BP readings (auto: PPG pulses when the model has a PPG input, else ECG R peaks).")
@deprecated_alias("--summary-json", "--summary", "summary_json", type=click.Path(dir_okay=False))
def run_command(bundle, stream, follow, port, baud, fmt, fs, channel_map, backend, variant, hop, threads, run_dir, calibration, calibration_method,
                out_path, summary_json, idle_timeout, read_size, beat_source):
    """Run a bundle on a device stream: point-wise ABP with validity, and beat SBP/DBP/MAP.

    BUNDLE defaults to the bundle shipped in the package (an int8 edge-tcn trained and
    exported by edgebp itself; see its manifest). Input: a file, a growing file, a serial
    port, or standard input, in edgebp's text or binary protocol (docs/serial-protocol.md)
    or a third-party log with --fs and --channel-map. At the end (and on Ctrl-C) a summary:
    samples in / parsed / rejected / missing, outputs, valid share, latency, real-time factor.

    \b
    Output: with --out bp.csv, point-wise rows time,abp,valid,reason there and beats
    time,sbp,dbp,map,hr,valid,reason,calibrated in bp.beats.csv (both after # comment lines); with
    --out bp.jsonl, both as JSON lines. Without --out (or --out -), the beats go to standard
    output as CSV: the header line, then one line per beat as it is produced (flushed), the
    summary to standard error; a reader that closes the pipe (| head) ends the run (exit 0).
    Empty cells are NaN; valid is 1/0; reason is ok or why the beat is not valid.

    \b
    Example:
        edgebp sim --source synth:3 --minutes 1 --out serial.log --truth truth.csv
        edgebp run --stream serial.log --out bp.csv
        edgebp run --stream serial.log | head
        edgebp run bundles/mine --port /dev/pts/5 --out bp.jsonl
    """
    from edgebp.paths import numba_cache_configure, numba_compile_announce

    numba_cache_configure()  # before the first kernel module is imported (edgebp.cli.main does it too)
    from edgebp.runtime import sources
    from edgebp.runtime.bundle import BundleError, bundle_load
    from edgebp.runtime.engine import Calibration
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.jsonsafe import json_text
    from edgebp.runtime.run import OutputWriter, SignalStop, no_samples_reason, stream_process, summary_text

    if sum(x is not None for x in (stream, port)) != 1:
        raise CliError("give exactly one input: --stream FILE (or -) or --port DEV")
    if follow and (port or stream == "-"):
        raise CliError("--follow reads a growing file: not with --port or --stream -")
    if idle_timeout is not None and not (follow or port):
        raise CliError("--idle-timeout needs --follow or --port (a file or standard input ends by itself)")
    cmap = _channel_map(channel_map)
    if backend == "tensorrt":
        from edgebp.runtime.backends import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            raise CliError(f"--backend tensorrt: TensorRT is not usable here: {why}; use --backend ort")
    if backend == "torch" and not run_dir:
        raise CliError("--backend torch needs --run-dir RUN_DIR: a bundle holds ONNX models, not the torch weights")
    if run_dir and backend != "torch":
        raise CliError("--run-dir is only for --backend torch")
    if backend == "torch":
        # development only: the checkpoint reader lives on the training side (torch); by name, as
        # backends.py opens the torch backend, so nothing in the runtime package imports torch
        from importlib import import_module

        checkpoint_load = import_module("edgebp.train.loop").checkpoint_load

        ck = Path(run_dir) / "best.pt"
        if not ck.is_file():
            raise CliError(f"--run-dir {run_dir}: not a run directory (no best.pt)")
        try:
            checkpoint_load(ck)
        except ValueError as exc:
            raise CliError(f"--run-dir: {exc}") from None
    try:
        b = bundle_load(bundle)
    except BundleError as exc:
        raise CliError(str(exc)) from exc
    if stream not in (None, "-"):
        _input_check(stream)
    for opt, path in (("--out", None if out_path in (None, "-") else out_path), ("--summary", summary_json)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise CliError(f"{opt} {path}: the directory {Path(path).parent} does not exist")
        if path is not None and Path(path).is_dir():
            raise CliError(f"{opt} {path}: is a directory")
    m = b.manifest
    variant = runtime_precision(variant, bool(m.get("streaming")), str(b.path))
    if backend != "tensorrt":  # (TensorRT picks each precision's own form and says when one is missing)
        from edgebp.variants import bundle_file_key

        streams = (m.get("streaming") or {}).get("file_keys", {}) if m.get("streaming") and m.get("causal") else None
        have = list(streams) if streams is not None else [k for k in ("int8", "fp32", "pruned", "pruned-int8") if bundle_file_key(k) in m["files"]]
        if variant not in have:
            hint = " (pruned models come from `edgebp export --prune R`)" if "pruned" in variant else ""
            raise CliError(f"Invalid value for '--variant': {b.path} has no {variant} {'streaming ' if streams is not None else ''}model{hint}; "
                           f"it has: {', '.join(('stream-' + v) if streams is not None else v for v in have)}")
    if hop is not None and not (bool(m.get("streaming")) and m.get("causal")) and not 1 <= hop <= int(m["window"]):
        raise CliError(f"--hop {hop}: must be within 1..{int(m['window'])} (the model window)")
    if hop is not None and bool(m.get("streaming")) and m.get("causal"):
        raise CliError(f"--hop: {b.path} is a streaming model (it steps every {m.get('hop', '?')} samples by itself); --hop is for window models")
    try:
        decoder = StreamDecoder(fmt=fmt, fs=fs, channel_map=cmap)
    except ValueError as exc:
        raise CliError(f"--channel-map {channel_map}: {exc}" if channel_map and "channel_map" in str(exc) else str(exc)) from exc
    stop = threading.Event()
    if port:
        chunks = sources.iter_serial(port, baud=baud, stop=stop, idle_timeout_s=idle_timeout) if "idle_timeout_s" in sources.iter_serial.__code__.co_varnames else sources.iter_serial(port, baud=baud, stop=stop)
    elif stream == "-":
        chunks = sources.iter_stdin(chunk=read_size)
    elif follow:
        chunks = sources.iter_follow(stream, stop=stop, idle_timeout_s=idle_timeout, chunk=read_size)
    elif not Path(stream).is_file():
        chunks = _iter_live(stream, read_size)  # a FIFO or a character device: data as it arrives
    else:
        chunks = sources.iter_file(stream, chunk=read_size)
    try:
        cal = Calibration.from_csv(calibration, calibration_method) if calibration else Calibration([], calibration_method)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    method = calibration_method if calibration_method != "auto" else ("estimator" if b.has("estimator") else "offset")
    header = [f"edgebp run: bundle={b.path} model={m['model']['name']}/{m['model']['preset']} variant={variant} backend={backend}",
              f"inputs={','.join(m['inputs'])} model_fs={m['fs']} delay={m['delay']} units=mmHg",
              f"calibration: {method}; " + (f"{len(cal.readings)} cuff reading(s) from {calibration}" if calibration else "cuff readings from the stream only")
              + "; beats are uncalibrated (calibrated=0, absolute model values) until a reading applies"]
    to_stdout = out_path in (None, "-")
    live = bool(port or follow or stream == "-" or (stream and not Path(stream).is_file()))  # a FIFO or device is live too
    # live sources: every block is flushed as written (a reader tailing bp.csv sees each
    # packet's rows); a file: at most 1 s after a write
    writer = OutputWriter("-" if to_stdout else out_path, header, flush_s=0.0 if live else 1.0)

    def stop_requested() -> bool:
        # standard output closed by its reader (| head): end the stream; sources that wait
        # for data (--follow, --port) watch the same event
        if writer.closed:
            stop.set()
        return writer.closed

    from edgebp.processing.kernels import aot_module

    numba_compile_announce(echo=lambda line: click.echo(line, err=True), aot=aot_module() is not None)
    with SignalStop(on_stop=stop.set) as sig:
        try:
            summary = stream_process(chunks, b, decoder, backend=backend, variant=variant, hop=hop, threads=threads, calibration=cal,
                                     writer=writer, run_dir=run_dir, stop=stop_requested, beat_source=beat_source, signals=sig)
        finally:
            writer.close()
        if to_stdout and writer.closed:
            summary["stopped"] = "standard output closed by the reader"
        summary["exit_code"] = sig.exit_code
        click.echo(summary_text(summary), err=to_stdout)
        if summary_json:
            try:
                with open(summary_json, "w") as f:
                    f.write(json_text(summary, indent=2))
            except OSError as exc:
                raise CliError(f"{summary_json}: {exc.strerror or exc}" + (f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno else ""),
                               exit_code=1) from None
    if sig.signum is not None:
        click.echo(f"stopped by {sig.name}: outputs flushed, summary written; exit status {sig.exit_code}", err=True)
        raise click.exceptions.Exit(sig.exit_code)
    why = no_samples_reason(summary["decoder"], fmt)
    if why is not None and not (to_stdout and writer.closed):
        raise CliError(f"{'standard input' if stream == '-' else stream or port}: {why}", exit_code=1)
