"""``edgebp serve``: serve several device streams from one process (see :mod:`edgebp.runtime.serve`)."""

from __future__ import annotations

import logging

import click

from edgebp.cli import CliError
from edgebp.cli_types import deprecated_alias, int_range, positive
from edgebp.variants import RUNTIME_VARIANTS, VariantChoice


@click.command(name="serve")
@click.argument("bundle", required=False, default="default")
@click.option("--source", "sources", multiple=True, required=True,
              help="A stream source (repeat for more): file:PATH, tcp:PORT (listen on 127.0.0.1; every connection is a stream; 0 = a free port), "
                   "pty:PATH or serial:DEV, stdin.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="(required) Where each stream's NAME.csv, NAME.beats.csv, NAME.summary.json and serve.summary.json go.")
@click.option("--max-streams", type=int_range(1, 10_000), default=None, help="Serve at most this many streams at once (more connections are refused).")
@click.option("--idle-timeout", type=positive(), default=None, help="End a TCP or serial stream after this many seconds without data.")
@click.option("--duration", type=positive(), default=None, help="Stop the server after this many seconds (every open stream writes its summary).")
@click.option("--backend", type=click.Choice(["ort", "tensorrt", "torch"]), default="ort", show_default=True, help="Inference backend.")
@click.option("--variant", type=VariantChoice(RUNTIME_VARIANTS), default=None,
              help="Bundle model to run [default: stream-int8 for a streaming bundle, int8 for a window bundle].")
@click.option("--threads", type=int_range(1, 256), default=1, show_default=True, help="Inference threads (per stream).")
@click.option("--baud", type=int_range(1, 20_000_000), default=115200, show_default=True, help="Serial port speed.")
@click.option("--no-batch", is_flag=True, help="Each stream makes its own batch-1 model calls (default with --backend ort: one batched call per round across streams).")
@deprecated_alias("--out-dir", "--out", "out_dir", type=click.Path(file_okay=False))
def serve_command(bundle, sources, out_dir, max_streams, idle_timeout, duration, backend, variant, threads, baud, no_batch):
    """Serve N device streams from one process, each with its own decoder, state and outputs.

    \b
    Every stream gets DIR/NAME.csv (point-wise), DIR/NAME.beats.csv and DIR/NAME.summary.json
    (the same accounting as edgebp run, plus why it ended and its CPU seconds); DIR/serve.summary.json
    lists them all. Names: file-STEM, pty-NAME / serial-NAME, stdin, and tcp-PORT-N for the
    N-th connection to a tcp:PORT listener (a disconnect ends that stream; a reconnect is a new one).
    Without --duration the server runs until its sources end (files, ports) or Ctrl-C (with tcp:).

    \b
    NOT implemented: inference batching across streams. The streaming ONNX model has a fixed
    batch of 1, so each stream runs its own model calls (CPU grows linearly with streams);
    batching needs a dynamic-batch export and engine hooks.

    \b
    Example:
        edgebp serve --source tcp:9000 --source file:serial.log --out served/ --idle-timeout 30
        edgebp sim --source synth:3 --minutes 1 --out - --truth t.csv | nc 127.0.0.1 9000
    """
    from edgebp.runtime.bundle import BundleError, bundle_load
    from edgebp.runtime.cli import runtime_precision
    from edgebp.runtime.serve import Server, ServeError, ServeOptions, parse_spec

    if out_dir is None:
        raise click.MissingParameter(param_hint="'--out'", param_type="option")
    try:
        specs = [parse_spec(s) for s in sources]
    except ServeError as exc:
        raise CliError(str(exc)) from exc
    if sum(s.kind == "stdin" for s in specs) > 1:
        raise CliError("--source stdin: at most once")
    if backend == "tensorrt":
        from edgebp.runtime.backends import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            raise CliError(f"--backend tensorrt: TensorRT is not usable here: {why}; use --backend ort")
    if backend == "torch":
        raise CliError("--backend torch: not for edgebp serve (it needs a training run; use edgebp run --backend torch --run-dir)")
    for s in specs:
        if s.kind == "file":
            from pathlib import Path

            if not Path(s.arg).is_file():
                raise CliError(f"--source {s.text}: file not found")
    try:
        b = bundle_load(bundle)
    except BundleError as exc:
        raise CliError(str(exc)) from exc
    variant = runtime_precision(variant, bool(b.manifest.get("streaming")), str(b.path))
    slog = logging.getLogger("edgebp.runtime.serve")  # per-stream start/end lines even without -v
    if slog.getEffectiveLevel() > logging.INFO:
        slog.setLevel(logging.INFO)
    opts = ServeOptions(variant=variant, backend=backend, threads=threads, max_streams=max_streams,
                        idle_timeout=idle_timeout, duration=duration, baud=baud, batch=not no_batch)
    from edgebp.paths import numba_compile_announce
    from edgebp.processing.kernels import aot_module

    numba_compile_announce(echo=lambda line: click.echo(line, err=True), aot=aot_module() is not None)
    server = Server(b, specs, out_dir, opts)
    # SIGTERM, SIGHUP and SIGINT stop the server the way --duration does: every open stream
    # writes its summary, then serve.summary.json; the exit status is then 128 + the signal
    # (143, 129, 130), as for edgebp run. A signal ignored at start (nohup's SIGHUP) stays so.
    from edgebp.runtime.run import SignalStop

    with SignalStop(on_stop=server.request_stop, interrupt=False) as sig:
        try:
            overall = server.run()
        except ServeError as exc:
            raise CliError(str(exc)) from exc
    click.echo(f"served {len(overall['streams'])} stream(s) in {overall['wall_seconds']:.1f} s "
               f"(process CPU {overall['process_cpu_seconds']:.2f} s); summaries in {out_dir}/serve.summary.json", err=True)
    for s in overall["streams"]:
        click.echo(f"  {s['name']}: {s['end_reason']}; parsed {s['samples_parsed']} rejected {s['samples_rejected']} "
                   f"missing {s['samples_missing']} beats {s['beats']}" + (f" error {s['error']}" if s.get("error") else ""), err=True)
    if sig.signum is not None:
        click.echo(f"stopped by {sig.name}: every stream's summary written; exit status {sig.exit_code}", err=True)
        raise click.exceptions.Exit(sig.exit_code)
