"""``edgebp grade``: grade BP estimates in a CSV against reference readings in another CSV."""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import click
import numpy as np

from edgebp.cli import CliError
from edgebp.metrics import bp_report, format_report_table

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("subject", "time", "sbp", "dbp")
OPTIONAL_COLUMNS = ("map",)
_MS = Decimal("0.001")


@dataclass
class BpTable:
    """Rows of one BP CSV, keyed by (subject, time rounded to the nearest ms)."""

    path: str
    has_map: bool
    rows: dict[tuple[str, int], dict] = field(default_factory=dict)


def _time_key(text: str) -> int | None:
    """Time in whole milliseconds, rounded half-up from the decimal text (no binary rounding)."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return int((d.quantize(_MS, rounding=ROUND_HALF_UP) * 1000).to_integral_value())


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"{path}: line {line}: column '{column}': {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CliError(f"{path}: line {line}: column '{column}': {text!r} is not a finite number")
    return value


def bp_csv_read(path: str | Path) -> BpTable:
    """Read a ``subject,time,sbp,dbp[,map]`` CSV (time in seconds, BP in mmHg).

    Raises :class:`edgebp.cli.CliError` naming the file (and line or column) for a missing file,
    an empty file, a missing column, a non-numeric / NaN value or a duplicate (subject, time).
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise CliError(f"{name}: file not found")
    if p.is_dir():
        raise CliError(f"{name}: is a directory, expected a CSV file")
    try:
        fh = p.open("r", newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"{name}: cannot open: {exc.strerror or exc}") from None
    with fh:
        reader = csv.reader(fh)
        header = None
        for row in reader:
            if any(cell.strip() for cell in row):
                header = [cell.strip().lower() for cell in row]
                break
        if header is None:
            raise CliError(f"{name}: empty file (expected a header {','.join(REQUIRED_COLUMNS)})")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CliError(
                f"{name}: missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} (header: {','.join(header)})"
            )
        dup_cols = sorted({c for c in header if c and header.count(c) > 1})
        if dup_cols:
            raise CliError(f"{name}: column {dup_cols[0]!r} appears more than once in the header")
        idx = {c: header.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header}
        table = BpTable(path=name, has_map="map" in idx)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise CliError(f"{name}: line {line}: {len(row)} fields, header has {len(header)}")
            subject = row[idx["subject"]].strip()
            if not subject:
                raise CliError(f"{name}: line {line}: column 'subject' is empty")
            t_text = row[idx["time"]].strip()
            t_ms = _time_key(t_text)
            if t_ms is None:
                raise CliError(f"{name}: line {line}: column 'time': {t_text!r} is not a finite number")
            values = {"line": line, "time": float(t_text)}
            for col in ("sbp", "dbp", "map"):
                if col in idx:
                    values[col] = _number(row[idx[col]].strip(), name, line, col)
            key = (subject, t_ms)
            if key in table.rows:
                raise CliError(
                    f"{name}: line {line}: duplicate row for subject {subject!r} at time {t_text} s "
                    f"(first at line {table.rows[key]['line']})"
                )
            table.rows[key] = values
    if not table.rows:
        raise CliError(f"{name}: no data rows after the header")
    return table


def bp_csv_pair(pred: BpTable, ref: BpTable) -> tuple[list[tuple[str, int]], dict]:
    """Keys present in both tables (sorted by subject, time) and the unpaired counts."""
    common = sorted(pred.rows.keys() & ref.rows.keys())
    unpaired = {
        "pred_only": len(pred.rows.keys() - ref.rows.keys()),
        "ref_only": len(ref.rows.keys() - pred.rows.keys()),
    }
    return common, unpaired


def _calib_read(path: str) -> dict[str, dict]:
    """``subject,sbp,dbp[,map][,time]``: one calibration cuff reading per subject."""
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise CliError(f"{name}: file not found")
    with p.open("r", newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next((r for r in reader if any(c.strip() for c in r)), None)
        if header is None:
            raise CliError(f"{name}: empty file (expected a header subject,sbp,dbp)")
        header = [c.strip().lower() for c in header]
        missing = [c for c in ("subject", "sbp", "dbp") if c not in header]
        if missing:
            raise CliError(f"{name}: missing column {', '.join(repr(c) for c in missing)}")
        idx = {c: header.index(c) for c in ("subject", "sbp", "dbp", "map", "time") if c in header}
        out: dict[str, dict] = {}
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise CliError(f"{name}: line {line}: {len(row)} fields, header has {len(header)}")
            subject = row[idx["subject"]].strip()
            if not subject:
                raise CliError(f"{name}: line {line}: column 'subject' is empty")
            if subject in out:
                raise CliError(f"{name}: line {line}: second calibration row for subject {subject!r}")
            out[subject] = {c: _number(row[i].strip(), name, line, c)
                            for c, i in idx.items() if c != "subject"}
            out[subject]["line"] = line
    if not out:
        raise CliError(f"{name}: no data rows after the header")
    return out


@click.command(name="grade")
@click.argument("pred_csv", metavar="PRED.csv", type=click.Path(dir_okay=True))
@click.argument("ref_csv", metavar="REF.csv", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--train-mean", nargs=2, type=float, default=None, metavar="SBP DBP",
              help="Training-set mean SBP and DBP: adds the naive training-mean baseline and MASE.")
@click.option("--calib", "calib_csv", type=click.Path(dir_okay=False), default=None,
              help="CSV subject,sbp,dbp[,time] with each subject's calibration cuff reading: marks "
                   "the result as calibrated and adds the hold-the-calibration-value baseline. "
                   "With a time column, every graded reading must come after it.")
@click.option("--unit", default="reading", show_default=True,
              help="What one row is (reading, beat, window), for the stated analysis unit.")
def grade_command(pred_csv: str, ref_csv: str, as_json: bool, train_mean, calib_csv, unit: str) -> None:
    """Grade BP estimates against reference readings (BHS, AAMI/ISO 81060-2, IEEE 1708).

    Both CSVs have a header with columns subject,time,sbp,dbp (time in seconds, BP in mmHg;
    a map column is graded when both files have one). Rows are paired by subject and time
    (equal after rounding to 1 ms); unpaired rows are counted and reported. Errors are
    estimate - reference; SD is the sample SD (ddof=1); shares are percentages.

    \b
    Example:
        edgebp grade estimates.csv cuff.csv
        edgebp grade estimates.csv cuff.csv --train-mean 127.5 68.0 --json > grade.json
        edgebp grade estimates.csv cuff.csv --calib calibration.csv
    """
    pred = bp_csv_read(pred_csv)
    ref = bp_csv_read(ref_csv)
    keys, unpaired = bp_csv_pair(pred, ref)
    if not keys:
        raise CliError(
            f"no rows pair up between {pred.path} ({len(pred.rows)} rows) and {ref.path} "
            f"({len(ref.rows)} rows): subject and time (1 ms) must match"
        )
    if unpaired["pred_only"] or unpaired["ref_only"]:
        logger.warning("unpaired rows: %d only in %s, %d only in %s",
                       unpaired["pred_only"], pred.path, unpaired["ref_only"], ref.path)

    def col(table: BpTable, name: str) -> np.ndarray:
        return np.array([table.rows[k][name] for k in keys], dtype=np.float64)

    subjects = [k[0] for k in keys]
    with_map = pred.has_map and ref.has_map
    calib_values = None
    if calib_csv is not None:
        calib = _calib_read(calib_csv)
        lacking = sorted({s for s in subjects if s not in calib})
        if lacking:
            raise CliError(f"{calib_csv}: no calibration row for subject {lacking[0]!r}"
                           + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""))
        times = col(ref, "time")
        for s, t in zip(subjects, times):
            if "time" in calib[s] and t <= calib[s]["time"]:
                raise CliError(
                    f"{calib_csv}: line {calib[s]['line']}: subject {s!r} is calibrated at "
                    f"{calib[s]['time']:g} s but is graded at {t:g} s: test readings must come after "
                    "the calibration"
                )
        calib_values = {c: np.array([calib[s][c] for s in subjects]) for c in ("sbp", "dbp")}
        if with_map and all("map" in calib[s] for s in set(subjects)):
            calib_values["map"] = np.array([calib[s]["map"] for s in subjects])

    report = bp_report(
        col(pred, "sbp"), col(ref, "sbp"), col(pred, "dbp"), col(ref, "dbp"),
        subjects=subjects,
        train_ref={"sbp": train_mean[0], "dbp": train_mean[1]} if train_mean else None,
        calib_values=calib_values,
        pred_map=col(pred, "map") if with_map else None,
        ref_map=col(ref, "map") if with_map else None,
        unit=unit,
        calibrated=calib_csv is not None,
    )
    out = {"n_pairs": report.pop("n_pairs"), "unpaired": unpaired,
           "files": {"pred": pred.path, "ref": ref.path}}
    out.update(report)
    if as_json:
        click.echo(json.dumps(out, allow_nan=False))
    else:
        click.echo(format_report_table(out))
