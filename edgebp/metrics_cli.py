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
from edgebp.cli_types import Finite, deprecated_alias, positive
from edgebp.metrics import bp_report, format_report_table

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("subject", "time", "sbp", "dbp")
OPTIONAL_COLUMNS = ("map", "valid")
# Other spellings read as the canonical columns when those are absent: the beats truth that
# `edgebp sim` writes (t_dia_s,t_sys_s,t_end_s,sbp_mmHg,dbp_mmHg,map_mmHg,valid).
COLUMN_ALIASES = {"time": ("t_sys_s",), "sbp": ("sbp_mmhg",), "dbp": ("dbp_mmhg",), "map": ("map_mmhg",)}
# the subject of rows when neither file has a subject column (and no --subject is given)
SINGLE_SUBJECT = "all"
MATCH_MODES = ("exact", "nearest")
_MS = Decimal("0.001")


@dataclass
class BpTable:
    """Rows of one BP CSV, keyed by (subject, time rounded to the nearest ms).

    ``invalid``: rows with ``valid`` 0 (read, not graded); ``other_subjects``: rows of other
    subjects than the one selected with ``subject=``; ``aliases``: column spellings read as
    the canonical names (e.g. ``{"time": "t_sys_s"}``).
    """

    path: str
    has_map: bool
    rows: dict[tuple[str, int], dict] = field(default_factory=dict)
    invalid: int = 0
    other_subjects: int = 0
    has_subject: bool = True
    aliases: dict[str, str] = field(default_factory=dict)


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


class _Lines:
    """The lines of a file without ``#`` comment lines, counting physical lines (``n``)."""

    def __init__(self, fh):
        self.fh = fh
        self.n = 0

    def __iter__(self):
        for ln in self.fh:
            self.n += 1
            if ln.lstrip().startswith("#"):
                continue
            yield ln


def _valid_cell(text: str, path: str, line: int) -> bool:
    t = text.strip().lower()
    if t in ("1", "true"):
        return True
    if t in ("0", "false"):
        return False
    raise CliError(f"{path}: line {line}: column 'valid': {text!r} is not 1 or 0")


def csv_header(path: str | Path) -> list[str] | None:
    """The lower-cased header of a CSV (after ``#`` comment lines), or None if unreadable."""
    try:
        with Path(path).open("r", newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(_Lines(fh)):
                if any(cell.strip() for cell in row):
                    return [cell.strip().lower() for cell in row]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def bp_csv_read(path: str | Path, subject: str | None = None, default_subject: str | None = None) -> BpTable:
    """Read a ``subject,time,sbp,dbp[,map][,valid]`` CSV (time in seconds, BP in mmHg).

    Lines starting with ``#`` are comments (``edgebp run`` writes its settings there). Rows
    with ``valid`` 0 are counted (``invalid``) and not read further (their BP cells may be
    empty). The beats truth of ``edgebp sim`` is read through :data:`COLUMN_ALIASES`
    (``t_sys_s`` as ``time``, ``sbp_mmHg`` as ``sbp``, ...).

    Parameters
    ----------
    path : str or Path
    subject : str, optional
        Keep only this subject's rows of a file with a subject column (the others are
        counted in ``other_subjects``); the subject of every row of a file without one.
    default_subject : str, optional
        The subject of the rows of a file without a subject column when ``subject`` is not
        given; without either, a missing subject column is an error.

    Raises :class:`edgebp.cli.CliError` naming the file (and line or column) for a missing file,
    an empty file, a missing column, a non-numeric / NaN value or a duplicate (subject, time).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "beats.csv")
    >>> _ = open(p, "w").write("# edgebp run\\ntime,sbp,dbp,map,hr,valid,reason\\n1.0,120,80,93,60,1,ok\\n2.0,,,,,0,gap\\n")
    >>> t = bp_csv_read(p, subject="s1")
    >>> sorted(t.rows), t.invalid
    ([('s1', 1000)], 1)
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
        src = _Lines(fh)
        reader = csv.reader(src)
        header = None
        for row in reader:
            if any(cell.strip() for cell in row):
                header = [cell.strip().lower() for cell in row]
                break
        if header is None:
            raise CliError(f"{name}: empty file (expected a header {','.join(REQUIRED_COLUMNS)})")
        aliases = {}
        for canon, alts in COLUMN_ALIASES.items():
            if canon not in header:
                alt = next((a for a in alts if a in header), None)
                if alt is not None:
                    aliases[canon] = alt
        if aliases:
            logger.info("%s: reading column(s) %s", name, ", ".join(f"{a} as {c}" for c, a in aliases.items()))
        has_subject = "subject" in header
        need = [c for c in REQUIRED_COLUMNS if not (c == "subject" and (subject is not None or default_subject is not None))]
        missing = [c for c in need if c not in header and c not in aliases]
        if missing:
            hint = " (a single-subject file: give --subject NAME)" if "subject" in missing else ""
            raise CliError(
                f"{name}: missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} (header: {','.join(header)}){hint}"
            )
        dup_cols = sorted({c for c in header if c and header.count(c) > 1})
        if dup_cols:
            raise CliError(f"{name}: column {dup_cols[0]!r} appears more than once in the header")
        idx = {c: header.index(aliases.get(c, c)) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
               if c in header or c in aliases}
        table = BpTable(path=name, has_map="map" in idx, has_subject=has_subject, aliases=aliases)
        fixed_subject = subject if subject is not None else default_subject
        for row in reader:
            line = src.n
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise CliError(f"{name}: line {line}: {len(row)} fields, header has {len(header)}")
            if has_subject:
                subj = row[idx["subject"]].strip()
                if not subj:
                    raise CliError(f"{name}: line {line}: column 'subject' is empty")
                if subject is not None and subj != subject:
                    table.other_subjects += 1
                    continue
            else:
                subj = fixed_subject
            if "valid" in idx and not _valid_cell(row[idx["valid"]], name, line):
                table.invalid += 1
                continue
            t_text = row[idx["time"]].strip()
            t_ms = _time_key(t_text)
            if t_ms is None:
                raise CliError(f"{name}: line {line}: column '{aliases.get('time', 'time')}': {t_text!r} is not a finite number")
            values = {"line": line, "time": float(t_text)}
            for col in ("sbp", "dbp", "map"):
                if col in idx:
                    values[col] = _number(row[idx[col]].strip(), name, line, aliases.get(col, col))
            key = (subj, t_ms)
            if key in table.rows:
                raise CliError(
                    f"{name}: line {line}: duplicate row for subject {subj!r} at time {t_text} s "
                    f"(first at line {table.rows[key]['line']})"
                )
            table.rows[key] = values
    if not table.rows:
        why = ""
        if table.other_subjects:
            why = f" for subject {subject!r} ({table.other_subjects} rows of other subjects)"
        elif table.invalid:
            why = f" with valid=1 ({table.invalid} invalid rows)"
        raise CliError(f"{name}: no data rows after the header{why}")
    return table


def bp_csv_pair(pred: BpTable, ref: BpTable, match: str = "exact",
                tolerance_s: float = 0.3) -> tuple[list[tuple[tuple[str, int], tuple[str, int]]], dict]:
    """Pair the rows of two tables by subject and time; returns ``(pairs, unpaired)``.

    ``pairs``: ``(pred_key, ref_key)`` sorted by subject and predicted time; ``unpaired``:
    ``{"pred_only", "ref_only"}`` counts. ``match="exact"`` pairs equal times (after
    rounding to 1 ms); ``"nearest"`` pairs each predicted row with the nearest reference row
    of its subject within ``tolerance_s``, one to one, nearest first
    (:func:`edgebp.pairing.beat_times_pair`).

    Examples
    --------
    >>> a = BpTable("a", False, {("s", 1000): {"time": 1.0}, ("s", 2100): {"time": 2.1}})
    >>> b = BpTable("b", False, {("s", 1050): {"time": 1.05}, ("s", 3000): {"time": 3.0}})
    >>> bp_csv_pair(a, b, "nearest", 0.3)
    ([(('s', 1000), ('s', 1050))], {'pred_only': 1, 'ref_only': 1})
    """
    if match == "exact":
        common = sorted(pred.rows.keys() & ref.rows.keys())
        pairs = [(k, k) for k in common]
    elif match == "nearest":
        from edgebp.pairing import beat_times_pair

        by_subject: dict[str, tuple[list, list]] = {}
        for k in pred.rows:
            by_subject.setdefault(k[0], ([], []))[0].append(k)
        for k in ref.rows:
            by_subject.setdefault(k[0], ([], []))[1].append(k)
        pairs = []
        for subj in sorted(by_subject):
            pk, rk = by_subject[subj]
            if not pk or not rk:
                continue
            pk.sort(key=lambda k: k[1])
            ip, ir = beat_times_pair(np.array([pred.rows[k]["time"] for k in pk]),
                                     np.array([ref.rows[k]["time"] for k in rk]), tolerance_s)
            pairs += [(pk[i], rk[j]) for i, j in zip(ip.tolist(), ir.tolist())]
    else:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    unpaired = {"pred_only": len(pred.rows) - len(pairs), "ref_only": len(ref.rows) - len(pairs)}
    return pairs, unpaired


def _calib_read(path: str, default_subject: str | None = None) -> dict[str, dict]:
    """Each subject's calibration cuff reading from a calibration CSV (:mod:`edgebp.calibration_csv`,
    ``time,sbp,dbp[,subject][,map]``): its earliest reading. Rows without a subject column are
    ``default_subject``'s (a single-subject grade, or ``--subject``)."""
    from edgebp.calibration_csv import calibration_csv_read

    name = str(path)
    if not Path(path).exists():
        raise CliError(f"{name}: file not found")
    try:
        rows = calibration_csv_read(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    out: dict[str, dict] = {}
    for r in rows:  # time order: the first reading of a subject calibrates it
        who = r.subject if r.subject is not None else default_subject
        if who is None:
            raise CliError(f"{name}: line {r.line}: no 'subject' column; the graded files have several subjects")
        if who not in out:
            out[who] = {"sbp": r.sbp, "dbp": r.dbp, "time": r.time, "line": r.line}
            if r.map is not None:
                out[who]["map"] = r.map
    return out


@click.command(name="grade")
@click.argument("pred_csv", metavar="PRED.csv", type=click.Path(dir_okay=True))
@click.argument("ref_csv", metavar="REF.csv", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--train-mean", nargs=2, type=Finite(min=0, max=400), default=None, metavar="SBP DBP",
              help="Training-set mean SBP and DBP: adds the naive training-mean baseline and MASE.")
@click.option("--calibration", "calib_csv", type=click.Path(dir_okay=False), default=None,
              help="Calibration CSV time,sbp,dbp[,subject][,map] (each subject's earliest row is its calibration cuff reading): marks "
                   "the result as calibrated and adds the hold-the-calibration-value baseline. "
                   "With a time column, every graded reading must come after it.")
@click.option("--unit", default="reading", show_default=True,
              help="What one row is (reading, beat, window), for the stated analysis unit.")
@click.option("--subject", default=None, metavar="NAME",
              help="Grade one subject: the subject of every row of a file without a subject column, "
                   "and the only subject kept from a file with one.")
@click.option("--match", type=click.Choice(MATCH_MODES), default="exact", show_default=True,
              help="Pair rows at equal times (1 ms) or each estimate with the nearest reference row "
                   "within --tolerance, one to one.")
@click.option("--tolerance", type=positive(max=60), default=0.3, show_default=True,
              help="With --match nearest: largest time difference of a pair (s).")
@deprecated_alias("--calib", "--calibration", "calib_csv", type=click.Path(dir_okay=False))
def grade_command(pred_csv: str, ref_csv: str, as_json: bool, train_mean, calib_csv, unit: str,
                  subject: str | None = None, match: str = "exact", tolerance: float = 0.3) -> None:
    """Grade BP estimates against reference readings (BHS, AAMI/ISO 81060-2, IEEE 1708).

    Both CSVs have a header with columns subject,time,sbp,dbp (time in seconds, BP in mmHg;
    a map column is graded when both files have one). Lines starting with # are comments.
    The subject column may be left out of a single-subject file when --subject NAME is
    given, or of both files (one subject then). Rows are paired by subject and time: equal
    after rounding to 1 ms (--match exact), or each estimate with the nearest reference row
    of its subject within --tolerance seconds, one to one, nearest first (--match nearest,
    for beats whose times differ slightly). Paired and unpaired rows are counted and
    reported. Rows with valid=0 (where a valid column exists) are counted, not graded.
    Errors are estimate - reference; SD is the sample SD (ddof=1); shares are percentages.

    \b
    Read directly (columns mapped when time,sbp,dbp are absent):
      edgebp run's beats (bp.beats.csv, or its stdout): time,sbp,dbp,map,hr,valid,reason
      edgebp sim's beats truth (truth_beats.csv): t_sys_s as time, sbp_mmHg as sbp,
        dbp_mmHg as dbp, map_mmHg as map, valid. Its times are on the simulated
        source's axis; edgebp run's start at its first parsed sample, so they agree only
        for a stream without resets or frames lost before the first intact one (edgebp
        score maps the truth onto the runtime's axis exactly; use it for faulty streams).

    \b
    Example:
        edgebp grade estimates.csv cuff.csv
        edgebp grade estimates.csv cuff.csv --train-mean 127.5 68.0 --json > grade.json
        edgebp grade estimates.csv cuff.csv --calibration calibration.csv
        edgebp grade bp.beats.csv truth_beats.csv --subject s3 --match nearest --unit beat
    """
    if match == "nearest" and not (tolerance > 0 and math.isfinite(tolerance)):
        raise CliError(f"--tolerance must be a positive number of seconds, got {tolerance:g}")
    # a subject column may be missing from both files (one subject) or, with --subject, from either
    default_subject = None
    if subject is None:
        hp, hr = csv_header(pred_csv), csv_header(ref_csv)
        if hp is not None and hr is not None and "subject" not in hp and "subject" not in hr:
            default_subject = SINGLE_SUBJECT
    pred = bp_csv_read(pred_csv, subject=subject, default_subject=default_subject)
    ref = bp_csv_read(ref_csv, subject=subject, default_subject=default_subject)
    pairs, unpaired = bp_csv_pair(pred, ref, match=match, tolerance_s=tolerance)
    if not pairs:
        how = "subject and time (1 ms) must match" if match == "exact" else \
            f"no estimate within {tolerance:g} s of a reference row of its subject"
        raise CliError(
            f"no rows pair up between {pred.path} ({len(pred.rows)} rows) and {ref.path} "
            f"({len(ref.rows)} rows): {how}"
        )
    if unpaired["pred_only"] or unpaired["ref_only"]:
        logger.warning("unpaired rows: %d only in %s, %d only in %s",
                       unpaired["pred_only"], pred.path, unpaired["ref_only"], ref.path)
    keys = [pk for pk, _ in pairs]
    ref_keys = [rk for _, rk in pairs]

    def col(table: BpTable, name: str) -> np.ndarray:
        ks = keys if table is pred else ref_keys
        return np.array([table.rows[k][name] for k in ks], dtype=np.float64)

    subjects = [k[0] for k in keys]
    with_map = pred.has_map and ref.has_map
    calib_values = None
    if calib_csv is not None:
        calib = _calib_read(calib_csv, subject if subject is not None else default_subject)
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
           "not_graded": {"invalid": {"pred": pred.invalid, "ref": ref.invalid},
                          "other_subjects": {"pred": pred.other_subjects, "ref": ref.other_subjects}},
           "match": {"mode": match, "tolerance_s": tolerance if match == "nearest" else None},
           "files": {"pred": pred.path, "ref": ref.path}}
    if pred.aliases or ref.aliases:
        out["columns_mapped"] = {"pred": pred.aliases, "ref": ref.aliases}
    out.update(report)
    if as_json:
        click.echo(json.dumps(out, allow_nan=False))
    else:
        click.echo(format_report_table(out))
