"""``edgebp bench``: what a wearable engineer reads before choosing a model."""

from __future__ import annotations

import math
import shlex
import sys

import click

from edgebp.cli import CliError
from edgebp.cli_types import int_range, positive


def _bench_variants(text: str) -> list[str]:
    """--variants in the shared names (edgebp.variants), as the bench's own labels: its window
    models under ONNX Runtime are ort-fp32 / ort-int8 in every table and plot."""
    from edgebp.variants import BENCH_VARIANTS, variants_list

    try:
        names = variants_list(text, BENCH_VARIANTS)
    except click.BadParameter as exc:
        raise CliError(exc.format_message()) from None
    return [{"fp32": "ort-fp32", "int8": "ort-int8"}.get(n, n) for n in names]


def _list(text: str | None, what: str, cast=str) -> list | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        out = [cast(x) for x in items]
    except ValueError:
        raise CliError(f"{what} {text!r}: expected a comma-separated list of numbers") from None
    if cast is not str and not all(math.isfinite(x) and x > 0 for x in out):
        raise CliError(f"{what} {text!r}: every number must be finite and > 0")
    return out


def _command_line(ctx: click.Context) -> str:
    """The command as given: the arguments, then every option that differs from its default."""
    argv = ["edgebp", "bench", *ctx.params.get("bundles", ())]
    for p in ctx.command.params:
        if not isinstance(p, click.Option):
            continue
        value = ctx.params.get(p.name)
        flag = p.opts[0]
        if p.is_flag:
            if value:
                argv.append(flag)
            continue
        if value is None or value == p.default or (p.multiple and not value):
            continue
        elif p.multiple:
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return shlex.join(argv)


@click.command(name="bench")
@click.argument("bundles", nargs=-1, metavar="[BUNDLE ...]")
@click.option("--data", default=None, help="Records to score accuracy on: 'synth' or a path (default: each bundle's own training data, its held-out test split).")
@click.option("--split", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="auto: the bundle's test split on its own data, every record not used for training or validation on other --data "
                   "(recognised by sample sha256 and name, whatever the path).")
@click.option("--include-training", is_flag=True,
              help="Accuracy on every record (--split auto becomes all), training and validation ones included; every accuracy table then says so.")
@click.option("--variants", default="stream-int8,torch-fp32,fp32,int8,pruned,tensorrt", show_default=True,
              help="Comma-separated names of edgebp.variants: stream-int8 (accuracy of what `edgebp run` deploys: the streaming int8 model through the runtime in 20 ms packets), stream-fp32, torch-fp32 (needs --run), fp32, int8 (the window models under ONNX Runtime; the report labels them ort-fp32, ort-int8), pruned, tensorrt (skipped without a GPU).")
@click.option("--run", "runs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Training run directory of a bundle, for torch-fp32 (repeatable; matched to bundles by config and split).")
@click.option("--threads", type=int_range(1, 256), default=1, show_default=True, help="The single-thread setting; all cores are measured too.")
@click.option("--batch", type=int_range(1, 4096), default=None, help="The larger batch measured beside batch 1 [default: 32, 8 with --quick].")
@click.option("--repeat", type=int_range(1, 1000), default=None, help="Independent repeats per latency figure [default: 5, 2 with --quick].")
@click.option("--quick", is_flag=True, help="Small repeats, short streams, one concurrency level (tests, make demo).")
@click.option("--parts", default="latency,streaming,live,memory,accuracy,anchors", show_default=True,
              help="Which parts to measure. live: edgebp run's CPU per device sample in packets of 1, 5, 25, 250 samples and in bulk, "
                   "int8 vs fp32 at the runtime's step, and the plain reference (scripts/plain_reference.py). "
                   "Also (not in the default): serve (edgebp serve's CPU and RSS per stream at 1, 8, 64 streams, batched), "
                   "soak (a simulated live stream of --soak-hours through the runtime, RSS over time), "
                   "startup (edgebp run's first output and peak RSS, kernels compiled ahead of time against numba's JIT).")
@click.option("--soak-hours", type=float, default=24.0, show_default=True, help="Length of the soak part's simulated live stream.")
@click.option("--anchors", "anchors", default="msca-cssc-unet,inn-par", show_default=True,
              help="Seed paradigms timed beside the bundles ('none' for none).")
@click.option("--anchor-preset", type=click.Choice(["paper", "edge"]), default="paper", show_default=True,
              help="Anchor size: paper = as published (the comparison); edge only to exercise the path quickly.")
@click.option("--stream-minutes", type=positive(max=24 * 60), default=None, help="Device log length for the streaming runs [default: 10, 1 with --quick].")
@click.option("--lengths", default=None, help="Stream lengths (min) for the cost-growth runs [default: 1,10,60; 0.5,1 with --quick].")
@click.option("--streams", "concurrency", default=None, help="Concurrent stream counts [default: 1,4,16,64; 4 with --quick].")
@click.option("--sim-source", default="synth:901", show_default=True,
              help="The simulated device's source (edgebp sim --source): synth:SUBJECT or record:PATH.")
@click.option("--mcu", default="nrf52832", show_default=True, help="Device profile for the budget (a Cortex-M4F by default; see edgebp budget).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None, help="Where device logs and anchor ONNX files are kept [default: $EDGEBP_CACHE/bench].")
@click.option("--report", "report_dir", required=True, type=click.Path(file_okay=False), help="Write bench.json, report.md, report.html and plots here.")
def bench_command(bundles, data, split, include_training, variants, runs, threads, batch, repeat, quick, parts, anchors, anchor_preset, stream_minutes,
                  lengths, concurrency, sim_source, mcu, cache_dir, report_dir, soak_hours):
    """Benchmark bundles: latency, streaming, memory, accuracy, beside the seeds' paradigms.

    For each BUNDLE (default: the bundle shipped in the package) and variant: p50/p99 latency
    per inference at batch 1 and a larger batch, one thread and all cores, medians and ranges
    over repeated runs after warm-up; the whole `edgebp run` path on a simulated 250 Hz ECG +
    PPG log (real-time factor, cost per sample, output latency at the device rate, peak RSS
    of a torch-free runtime process, growth with stream length and with concurrent streams);
    the `edgebp budget` figures for a Cortex-M4F; accuracy on held-out records (ME, SD, MAE,
    BHS, AAMI criterion 1, IEEE 1708) beside the naive baseline; and the seeds' MSCA-CSSC-UNet
    (point-wise, hop 1) and INN-PAR at their published sizes, with the speed and size ratios.
    Every table row carries the command that reproduces it. Ends with a short table.

    \b
    Example:
        edgebp bench --quick --report bench-quick
        edgebp bench default bundles/inn-par --run runs/default --report bench
        edgebp bench bundles/mine --variants int8 --parts latency --threads 1 --report b2
    """
    from edgebp.bench.report import bench_missing, bench_short_table, bench_write
    from edgebp.bench.suite import BenchConfig, bench_run

    if not report_dir.strip():
        raise CliError("--report must name a directory")
    anchor_list = [] if anchors.strip().lower() in ("", "none") else _list(anchors, "--anchors")
    # serve, soak and startup run outside the suite (edgebp.bench.soak.extra_parts_run)
    from edgebp.bench.soak import EXTRA_PARTS, extra_parts_run, extra_parts_text

    extra = [p for p in _list(parts, "--parts") if p in EXTRA_PARTS]
    parts = ",".join(p for p in _list(parts, "--parts") if p not in EXTRA_PARTS)
    if extra:
        if soak_hours <= 0:
            raise CliError(f"--soak-hours {soak_hours:g}: must be > 0")
        try:
            done = extra_parts_run(extra, report_dir, bundle=(list(bundles) or ["default"])[0], soak_hours=soak_hours,
                                   repeats=1 if quick else 3, sim_source=sim_source,
                                   cache_dir=cache_dir, progress=lambda msg: click.echo(f"bench: {msg}", err=True))
        except RuntimeError as exc:
            raise CliError(str(exc)) from exc
        click.echo(extra_parts_text(done))
        if not parts:
            return
    try:
        cfg = BenchConfig(
            bundles=list(bundles) or ["default"], variants=_bench_variants(variants), threads=threads,
            batch=batch or (8 if quick else 32), repeat=repeat, quick=quick, data=data, split=split, include_training=include_training, runs=list(runs),
            parts=_list(parts, "--parts"), anchors=anchor_list, anchor_preset=anchor_preset, stream_minutes=stream_minutes,
            lengths=_list(lengths, "--lengths", float), concurrency=_list(concurrency, "--streams", int), mcu=mcu,
            sim_source=sim_source,
            cache_dir=cache_dir, report_dir=report_dir, command=_command_line(click.get_current_context()),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    from edgebp.firmware_sim.mcu_profiles import mcu_profile

    try:
        cfg.mcu = mcu_profile(mcu).name
    except (KeyError, ValueError) as exc:
        raise CliError(f"--mcu {mcu!r}: {exc}") from exc

    result, pairs = bench_run(cfg, progress=lambda msg: click.echo(f"bench: {msg}", err=True))
    paths = bench_write(report_dir, result, pairs)
    missing = bench_missing(result)
    click.echo(f"bench: wrote {paths['json']}, {paths['markdown']}, {paths['html']} ({len(paths['figures'])} figures)", err=True)
    click.echo(bench_short_table(result))
    if missing:
        click.echo(f"bench: incomplete results: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else ""), err=True)
    if result["errors"] or missing:
        sys.exit(1)
