"""``edgebp export``."""

from __future__ import annotations

import logging
import shlex
import sys

import click

from edgebp.cli import CliError


@click.command(name="export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write int8 models (ORT static QDQ; dynamic for LSTMs).")
@click.option("--prune", type=float, default=0.0, show_default=True, help="Structured pruning ratio (0 = none), then a short fine-tune.")
@click.option("--targets", default="ort,tensorrt", show_default=True, help="Comma-separated: ort, tensorrt.")
@click.option("--calib-windows", type=int, default=128, show_default=True, help="Training windows for int8 calibration.")
@click.option("--max-delta-mae", type=float, default=1.0, show_default=True, help="Fail when int8 MAE is worse than fp32 by more (mmHg).")
@click.option("--force", is_flag=True, help="Overwrite OUT and keep an int8 model that fails --max-delta-mae.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Bundle directory to write.")
def export_command(run_dir, int8, prune, targets, calib_windows, max_delta_mae, force, out_dir):
    """Export a trained run to a verified deployment bundle, validated against fp32.

    Writes model_fp32.onnx (single file, dynamic batch), optionally a pruned model
    (torch-pruning, channels removed, fine-tuned), model_int8.onnx for ONNX Runtime on CPU,
    the TensorRT int8 form with its build commands, the external-state streaming model for
    edge-tcn, report.md/report.json (fp32 vs pruned vs int8 on the held-out records), and
    manifest.json with the sha256 of every file.

    \b
    Example:
        edgebp export runs/default --int8 --out bundles/default
        edgebp export runs/cbpe --int8 --prune 0.5 --out bundles/cbpe
    """
    from edgebp.export.pipeline import ExportError, export_run, export_report_markdown

    logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
    tlist = tuple(t.strip() for t in targets.split(",") if t.strip())
    cmd = "edgebp " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and sys.argv[0].endswith("edgebp") else ""
    try:
        report = export_run(run_dir, out_dir, int8=int8, prune=prune, targets=tlist, calib_windows=calib_windows,
                            max_delta_mae=max_delta_mae, force=force, command=cmd)
    except ExportError as exc:
        raise CliError(str(exc), exit_code=1) from exc
    click.echo(export_report_markdown(report))
    click.echo(f"bundle written to {out_dir}")
