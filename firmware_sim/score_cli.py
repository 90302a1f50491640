"""``edgebp score``: score an ``edgebp run`` output against the ``edgebp sim`` truth it was fed.

The scoring lives in :mod:`edgebp.firmware_sim.compare`; this module reads the files, checks
them, prints the report and writes the JSON. No torch on this path.

Examples
--------
>>> from click.testing import CliRunner
>>> res = CliRunner().invoke(score_command, ["missing-bp.csv", "missing-truth.csv"])
>>> res.exit_code, res.output.strip()
(2, 'Error: missing-bp.csv: file not found')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgebp.cli import CliError
from edgebp.cli_types import deprecated_alias, non_negative, positive
from edgebp.firmware_sim.compare import (
    beats_truth_compare,
    compare_report_text,
    runtime_beats_path,
    runtime_beats_read,
    runtime_output_kind,
    runtime_truth_compare,
    RuntimeOutput,
)
from edgebp.firmware_sim.simulate import sim_output_paths
from edgebp.firmware_sim.truth import truth_read
from edgebp.jsonsafe import json_default

log = logging.getLogger(__name__)

TRUTH_COLUMNS = ("status", "t_true_s", "abp_mmHg")
TRUTH_BEAT_COLUMNS = ("t_sys_s", "sbp_mmHg", "dbp_mmHg", "map_mmHg")


def _file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"{path}: file not found")
    if p.is_dir():
        raise CliError(f"{path}: is a directory, expected {what}")
    return p


def _columns_check(cols: dict, need: tuple[str, ...], path: Path, what: str) -> None:
    missing = [c for c in need if c not in cols]
    if missing:
        raise CliError(f"{path}: not {what} (missing column{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(repr(c) for c in missing)})")


def score_files(bp: str, truth: str, fs: float | None = None, beats_truth: str | None = None,
                tolerance: float = 0.3, recover: float = 2.0, include_invalid: bool = False,
                device_bp: str | None = None, device_bp_truth: str | None = None) -> dict:
    """Read an ``edgebp run`` output and an ``edgebp sim`` truth and score one against the other.

    Parameters
    ----------
    bp : str
        ``bp.csv`` (point-wise; its beats in ``bp.beats.csv`` beside it), ``bp.jsonl``, or a
        beats file alone (``bp.beats.csv``, or what ``edgebp run`` without ``--out`` printed):
        then only the beats are scored.
    truth : str
        ``edgebp sim --truth`` file; its beats truth and summary are found beside it.
    fs : float, optional
        Device sampling rate (Hz); default from the truth summary, else 250.
    beats_truth : str, optional
        The truth beats file; default ``TRUTH_beats.csv`` beside ``truth``.
    tolerance : float
        Largest systolic-time difference of a runtime/truth beat pair (s).
    recover : float
        Recovery window after a fault (s), see :func:`runtime_truth_compare`.
    include_invalid : bool
        Also score runtime beats marked invalid.
    device_bp : str, optional
        The stream ``edgebp sim --firmware`` wrote (the one ``bp`` was computed from): its
        device-BP records are scored against the truth and against ``bp``
        (:mod:`edgebp.firmware_sim.device_bp_score`).
    device_bp_truth : str, optional
        What the device computed; default ``TRUTH_device_bp.csv`` beside ``truth``.

    Returns
    -------
    dict
        ``files``, ``fs``, ``pointwise`` (None for a beats file alone), ``beats`` and, with
        ``device_bp``, ``device_bp``.

    Raises
    ------
    CliError
        One line naming the file: missing, not a run output / truth file, no beats file.
    """
    bp_path = _file(bp, "an edgebp run output file")
    try:
        kind = runtime_output_kind(bp_path)
        out = RuntimeOutput.from_csv(bp_path) if kind != "beats" else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    truth_path = _file(truth, "an edgebp sim truth CSV")
    beats_path, summary_path = sim_output_paths(truth_path)
    if beats_truth:
        beats_path = Path(beats_truth)
    if not beats_path.exists():
        raise CliError(f"{truth}: its beats truth {beats_path} not found (edgebp sim writes it beside the truth; "
                       "or give --beats-truth FILE)")
    run_beats = runtime_beats_path(bp_path) if kind == "pointwise" else bp_path
    if not run_beats.exists():
        raise CliError(f"{bp}: its beats file {run_beats} not found (edgebp run --out {bp_path.name} writes it beside; "
                       "a bp.jsonl holds both)")
    if fs is None:
        fs = 250.0
        if summary_path.exists():
            try:
                fs = float(json.loads(summary_path.read_text())["fs"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CliError(f"{summary_path}: no sampling rate 'fs' in the truth summary ({exc}); give --fs") from None
        else:
            log.warning("%s not found: assuming a device rate of 250 Hz (give --fs)", summary_path)
    try:
        t = truth_read(truth_path)
        _columns_check(t, TRUTH_COLUMNS, truth_path, "an edgebp sim truth file")
        tb = truth_read(beats_path)
        _columns_check(tb, TRUTH_BEAT_COLUMNS, beats_path, "an edgebp sim beats truth file")
        rb = runtime_beats_read(run_beats)
    except (ValueError, KeyError) as exc:
        raise CliError(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)) from None
    pointwise = runtime_truth_compare(out, t, fs, recover_window_s=recover) if out is not None else None
    beats = beats_truth_compare(rb, tb, t, fs, max_dt_s=tolerance, include_invalid=include_invalid)
    res = {"files": {"bp": str(bp_path), "bp_beats": str(run_beats), "truth": str(truth_path),
                     "truth_beats": str(beats_path)},
           "fs": fs, "pointwise": pointwise, "beats": beats}
    if device_bp is not None:
        res["device_bp"] = _device_bp_score(device_bp, device_bp_truth, truth_path, t, fs, out)
        res["files"]["device_bp"] = device_bp
    return res


def _device_bp_score(stream: str, dev_truth: str | None, truth_path: Path, truth: dict, fs: float,
                     out: RuntimeOutput | None) -> dict:
    from edgebp.firmware_sim.device_bp_score import device_bp_compare, device_bp_stream_read
    from edgebp.firmware_sim.simulate import sim_device_bp_path

    stream_path = _file(stream, "the stream edgebp sim --firmware wrote")
    dt_path = Path(dev_truth) if dev_truth else sim_device_bp_path(truth_path)
    if not dt_path.exists():
        raise CliError(f"{truth_path}: its device-BP truth {dt_path} not found (edgebp sim --firmware writes it beside "
                       "the truth; or give --device-bp-truth FILE)")
    try:
        dt = truth_read(dt_path)
        _columns_check(dt, ("boot", "k", "abp_mmHg", "status"), dt_path, "an edgebp sim device-BP truth file")
        records, counts = device_bp_stream_read(stream_path)
        if not records:
            raise ValueError(f"{stream}: no device-BP record in the stream (was it written by edgebp sim --firmware?)")
        res = device_bp_compare(records, dt, truth, fs, gateway=out)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    res["decoder"] = {k: counts[k] for k in ("samples_parsed", "samples_rejected", "samples_missing",
                                             "device_bp_records", "device_bp_values", "device_bp_rejected",
                                             "device_bp_rejected_reasons")}
    return res


@click.command("score")
@click.argument("bp", metavar="BP.csv")
@click.argument("truth", metavar="TRUTH.csv")
@click.option("--fs", type=positive(max=100_000), default=None,
              help="Device sampling rate (Hz) [default: from TRUTH_summary.json, else 250].")
@click.option("--beats-truth", type=click.Path(dir_okay=False), default=None,
              help="Truth beats CSV [default: TRUTH_beats.csv beside TRUTH.csv].")
@click.option("--tolerance", "--max-dt", "tolerance", type=positive(max=60), default=0.3, show_default=True,
              help="Largest systolic-time difference (s) of a runtime/truth beat pair (--max-dt: the old name).")
@click.option("--recover", type=non_negative(max=3600), default=2.0, show_default=True,
              help="Recovery window after a fault (s): a fault is judged when this + 1 s of clean signal follows.")
@click.option("--include-invalid", is_flag=True,
              help="Also score runtime beats marked valid=0 (by default they are only counted).")
@click.option("--summary", "json_out", default=None, metavar="FILE",
              help="Also write the results as JSON to FILE (- : print only the JSON, on stdout).")
@click.option("--device-bp", "device_bp", default=None, metavar="STREAM",
              help="The stream edgebp sim --firmware wrote: score the device's own BP in it against the truth "
                   "and against BP.csv (p50/p99/max |device - gateway|).")
@click.option("--device-bp-truth", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="What the device computed [default: TRUTH_device_bp.csv beside TRUTH.csv].")
@deprecated_alias("--json", "--summary", "json_out", metavar="OUT")
def score_command(bp, truth, fs, beats_truth, tolerance, recover, include_invalid, device_bp, device_bp_truth, json_out):
    """Score `edgebp run` output against the `edgebp sim` truth it was fed.

    BP.csv is `edgebp run --out bp.csv` (its beats read from bp.beats.csv beside it), a
    bp.jsonl (both inside), or a beats file alone (bp.beats.csv, or the standard output of
    `edgebp run` without --out): then only beats are scored. TRUTH.csv is
    `edgebp sim --truth truth.csv`; its beats (truth_beats.csv) and summary
    (truth_summary.json) are found beside it.

    \b
    Prints:
      - the valid share and the point-wise ABP error where the runtime claimed a value;
      - beats: runtime rows (valid / invalid by reason) against the observed valid truth
        beats, the count difference in %, how many were paired one to one by nearest
        systolic time within --tolerance and how many stayed unpaired on each side;
      - heart rate: the runtime's mean (its hr column, else 60 / beat interval) against
        the truth's (60 / interval of consecutive valid truth beats < 2 s apart);
      - per-beat SBP/DBP/MAP error of the paired valid beats;
      - the fault table (claims during faults, time to resume);
      - with --device-bp STREAM: the device's own BP (edgebp sim --firmware) against the
        truth and against BP.csv.
    Only valid runtime beats are scored unless --include-invalid.

    \b
    Example:
        edgebp sim --source synth:3 --minutes 1 --faults leadoff@20s+3s --out s.log --truth truth.csv
        edgebp run --stream s.log --out bp.csv
        edgebp score bp.csv truth.csv --summary score.json
    """
    if tolerance <= 0:
        raise CliError(f"--tolerance must be positive, got {tolerance:g}")
    if recover < 0:
        raise CliError(f"--recover must be >= 0, got {recover:g}")
    if fs is not None and fs <= 0:
        raise CliError(f"--fs must be positive, got {fs:g}")
    if device_bp_truth is not None and device_bp is None:
        raise CliError("--device-bp-truth needs --device-bp STREAM")
    res = score_files(bp, truth, fs=fs, beats_truth=beats_truth, tolerance=tolerance, recover=recover,
                      include_invalid=include_invalid, device_bp=device_bp, device_bp_truth=device_bp_truth)
    text = json.dumps(res, indent=2, default=json_default) + "\n"
    if json_out == "-":
        click.echo(text, nl=False)
        return
    click.echo(f"{bp} vs {truth} (device {res['fs']:g} Hz)")
    click.echo(compare_report_text(res["pointwise"], res["beats"]))
    if "device_bp" in res:
        from edgebp.firmware_sim.device_bp_score import device_bp_report_lines

        click.echo("\n".join(device_bp_report_lines(res["device_bp"])))
    if json_out:
        try:
            Path(json_out).write_text(text)
        except OSError as exc:
            raise CliError(f"{json_out}: cannot write: {exc.strerror or exc}") from None
