"""``edgebp export``."""

from __future__ import annotations

import logging
import shlex
import sys

import click

from edgebp.cli import CliError
from edgebp.cli_types import Finite, int_range, non_negative

# kept in step with edgebp.export.pipeline (not imported here: that pulls in torch for --help)
_MAX_DELTA_MAE = 1.0
_MAX_P99_DIFF = 8.0


@click.command(name="export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write int8 models (ORT static QDQ; dynamic for LSTMs).")
@click.option("--prune", type=Finite(min=0.0, max=1.0, max_open=True), default=0.0, show_default=True, help="Structured pruning ratio (0 = none), then a short fine-tune.")
@click.option("--targets", default="ort,tensorrt", show_default=True, help="Comma-separated: ort, tensorrt.")
@click.option("--calib-windows", type=int_range(1, 100_000), default=128, show_default=True, help="Training windows for int8 calibration (window models).")
@click.option("--int8-keep-float", default="", show_default=True, metavar="LAYERS",
              help="Comma-separated layers of the window int8 model left in float: first-conv (the model input is then not "
                   "quantized), last-conv. Default: none (every Conv int8). Streaming and TensorRT int8 forms are unchanged; "
                   "the gates are the same.")
@click.option("--max-delta-mae", type=non_negative(), default=_MAX_DELTA_MAE, show_default=True,
              help="Gate: fail when an int8 model's MAE (SBP or DBP) is worse than its fp32 form's by more (mmHg); window int8 and stream-int8.")
@click.option("--max-p99-diff", type=non_negative(), default=_MAX_P99_DIFF, show_default=True,
              help="Gate: fail when the 99th percentile of the point-wise |int8 - fp32| difference exceeds this (mmHg); "
                   "window int8 vs fp32 and stream-int8 vs stream-fp32 through the runtime.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty OUT (it never keeps a bundle that fails a gate).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Bundle directory to write.")
def export_command(run_dir, int8, prune, targets, calib_windows, int8_keep_float, max_delta_mae, max_p99_diff, force, out_dir):
    """Export a trained run to a verified deployment bundle, validated against fp32.

    Writes model_fp32.onnx (single file, dynamic batch), optionally a pruned model
    (torch-pruning, channels removed, fine-tuned), model_int8.onnx for ONNX Runtime on CPU,
    the TensorRT int8 form with its build commands, the external-state streaming model for
    edge-tcn (fp32 and int8, the int8 calibrated on states met while streaming training
    records), report.md/report.json and manifest.json with the sha256 of every file.

    The report validates on the run's held-out records: the window models offline (fp32 vs
    pruned vs int8) and the deployed path, the streaming model through the runtime in 20 ms
    packets as `edgebp run` feeds it (stream-int8 vs stream-fp32 vs window-fp32): change in
    ME/SD/MAE, BHS/AAMI/IEEE grades, point-wise |difference| percentiles.

    Fails closed: when a gate (--max-delta-mae, --max-p99-diff) fails, OUT gets the report
    and manifest.rejected.json but no manifest.json (`edgebp run` refuses it), the error
    names the gate and its figures, and the exit status is 3 (1: other export failures,
    2: bad input). To accept a bundle anyway, loosen the limit explicitly; the limits used
    are recorded in the manifest's validation.

    \b
    Example:
        edgebp export runs/default --int8 --out bundles/default
        edgebp export runs/cbpe --int8 --prune 0.5 --out bundles/cbpe
        edgebp export runs/lowlatency/run --int8 --int8-keep-float first-conv --out bundles/lowlatency
    """
    from edgebp.export.pipeline import ExportError, ExportGateError, export_report_markdown, export_run

    logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
    tlist = tuple(t.strip() for t in targets.split(",") if t.strip())
    bad = [t for t in tlist if t not in ("ort", "tensorrt")]
    if bad or not tlist:
        raise CliError(f"--targets: {', '.join(map(repr, bad)) or 'nothing given'} is not valid; choose from: ort, tensorrt")
    keep = tuple(k.strip() for k in int8_keep_float.split(",") if k.strip())
    bad = [k for k in keep if k not in ("first-conv", "last-conv")]
    if bad:
        raise CliError(f"--int8-keep-float: {', '.join(map(repr, bad))} is not valid; choose from: first-conv, last-conv")
    if keep and not int8:
        raise CliError("--int8-keep-float needs --int8")
    from pathlib import Path

    from edgebp.train.loop import checkpoint_load

    for name in ("best.pt", "last.pt"):
        if (Path(run_dir) / name).is_file():
            try:
                checkpoint_load(Path(run_dir) / name)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            break
    else:
        raise CliError(f"{run_dir}: not a run directory (no best.pt or last.pt; train one with `edgebp train`)")
    cmd = "edgebp " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and sys.argv[0].endswith("edgebp") else ""
    try:
        report = export_run(run_dir, out_dir, int8=int8, prune=prune, targets=tlist, calib_windows=calib_windows,
                            max_delta_mae=max_delta_mae, max_p99_diff=max_p99_diff, force=force, command=cmd,
                            int8_keep_float=keep)
    except ExportGateError as exc:
        raise CliError(str(exc), exit_code=ExportGateError.exit_code) from exc
    except ExportError as exc:
        raise CliError(str(exc), exit_code=1) from exc
    click.echo(export_report_markdown(report))
    click.echo(f"bundle written to {out_dir}")
