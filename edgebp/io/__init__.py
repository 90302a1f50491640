"""Readers: WFDB records, UCI ``part_N.mat`` files, CSV and the big public datasets, each into :class:`edgebp.record.Record`.

One entry point per job: :func:`read_record` for one recording, :func:`read_records` for a
directory or a file holding many; the format readers :func:`read_wfdb`, :func:`read_uci_mat`
and :func:`read_csv` are public too, and so are the dataset readers (``docs/datasets.md``):
:func:`read_vital` (VitalDB ``.vital``, needs ``edgebp[datasets]``), :func:`read_pulsedb` /
:func:`iter_pulsedb` (PulseDB subset ``.mat``) and :func:`read_mimic3_multiseg` (MIMIC-III
matched-subset multi-segment records). Every failure is a :class:`ReadError` (a ``ValueError``)
whose message starts with the file it is about.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from edgebp.io import read_record
>>> f = Path(tempfile.mkdtemp()) / "log.csv"
>>> _ = f.write_text("Pleth,II\\n1,0.1\\n2,0.2\\n")
>>> rec = read_record(f, fs=125)
>>> rec.names, rec.get("ecg").lead
(['ppg', 'ecg'], 'II')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from edgebp.io.checks import channel_map_apply
from edgebp.io.csv_reader import read_csv
from edgebp.io.errors import ReadError
from edgebp.io.mimic3_reader import is_mimic3_matched, read_mimic3_multiseg
from edgebp.io.pulsedb_reader import is_pulsedb, iter_pulsedb, read_pulsedb
from edgebp.io.uci import read_uci_mat, uci_mat_iter
from edgebp.io.vitaldb_reader import read_vital
from edgebp.io.wfdb_reader import read_wfdb, wfdb_base, wfdb_segment_names
from edgebp.record import Record

__all__ = [
    "ReadError", "read_record", "read_records", "read_wfdb", "read_uci_mat", "read_csv",
    "read_vital", "read_pulsedb", "iter_pulsedb", "read_mimic3_multiseg",
]

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
VITAL_SUFFIX = ".vital"


def _wfdb_read(path: Path) -> Record:
    """A WFDB record; a MIMIC-III matched-subset multi-segment one goes to its own reader (subject id)."""
    base = wfdb_base(path)
    if base is not None and is_mimic3_matched(base) and wfdb_segment_names(Path(f"{base}.hea")):
        return read_mimic3_multiseg(path)
    return read_wfdb(path)


def _mat_iter(path: Path) -> Iterator[Record]:
    """The records of a ``.mat`` without a WFDB header: a PulseDB subset or a UCI part file."""
    return iter_pulsedb(path) if is_pulsedb(path) else uci_mat_iter(path)


def _fs_agrees(path: Path, record: Record, fs: float | None) -> None:
    """A file that states its own rate wins; an ``fs`` that disagrees with it is an error."""
    if fs is None:
        return
    rates = sorted({c.fs for c in record.channels})
    if not any(abs(r - float(fs)) <= 1e-6 * r for r in rates):
        raise ReadError(
            path,
            f"fs={fs:g} Hz was given but the file states {', '.join(f'{r:g}' for r in rates)} Hz; "
            "fs is only needed for CSV files (resample with edgebp.processing.resample.record_resample)",
        )


def read_record(
    path: str | os.PathLike, fs: float | None = None, channel_map: Mapping[str, str] | None = None
) -> Record:
    """Read one recording, choosing the reader from the file.

    Parameters
    ----------
    path : str or os.PathLike
        A WFDB record (with or without ``.hea``, or its signal file; a MIMIC-III matched
        multi-segment record goes through :func:`read_mimic3_multiseg`), a CSV/TSV file, a
        VitalDB ``.vital`` file, or a UCI or PulseDB ``.mat`` holding exactly one cell or
        segment (use :func:`read_records` for a whole part or subset file).
    fs : float, optional
        Sampling rate in Hz; required for CSV. For formats that state their rate it may be
        given only if it agrees with the file.
    channel_map : dict, optional
        Original label -> canonical name or ECG lead (``{"IR": "ppg"}``), for any format.

    Returns
    -------
    Record

    Raises
    ------
    ReadError
        Whatever makes the file unreadable, with the path and the reason.

    Examples
    --------
    >>> from edgebp.paths import shared_data_dir
    >>> rec = read_record(shared_data_dir() / "wfdb_samples" / "041s")  # doctest: +SKIP
    >>> rec.names  # doctest: +SKIP
    ['ecg', 'ecg', 'ecg', 'abp', 'pap', 'ppg', 'resp']
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return read_csv(p, fs, channel_map=channel_map)
    if p.is_dir():
        raise ReadError(p, "is a directory; use read_records to read the records in it")
    base = wfdb_base(p)
    if base is not None:
        record = _wfdb_read(p)
    elif suffix == VITAL_SUFFIX:
        record = read_vital(p)
    elif suffix == ".mat" and is_pulsedb(p):
        records = read_pulsedb(p, stop=2)
        if len(records) != 1:
            raise ReadError(p, "holds several 10-s segments (PulseDB subset); use read_records or read_pulsedb")
        record = records[0]
    elif suffix == ".mat":
        records = read_uci_mat(p)
        if len(records) != 1:
            raise ReadError(p, f"holds {len(records)} records (UCI cell array); use read_records or read_uci_mat")
        record = records[0]
    elif not p.exists():
        raise ReadError(p, "no such file or WFDB record (no .hea beside it)")
    else:
        raise ReadError(
            p,
            f"unknown format {suffix or '(no extension)'!r}: expected a WFDB record (.hea), "
            "a UCI or PulseDB .mat, a VitalDB .vital or a CSV",
        )
    _fs_agrees(p, record, fs)
    return channel_map_apply(p, record, channel_map)


def _records_file_iter(directory: Path, records_file: Path, fs, channel_map) -> Iterator[Record]:
    lines = records_file.read_text().splitlines()
    for lineno, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        target = directory / name
        if name.endswith("/"):
            # PhysioNet databases list sub-directories that hold their own RECORDS.
            if not target.is_dir():
                raise ReadError(records_file, f"line {lineno}: directory {name!r} does not exist")
            yield from read_records(target, fs=fs, channel_map=channel_map)
            continue
        if wfdb_base(target) is None and not target.exists():
            raise ReadError(records_file, f"line {lineno}: record {name!r} has no header {name}.hea")
        yield from read_records(target, fs=fs, channel_map=channel_map)


def _listing_iter(directory: Path, fs, channel_map) -> Iterator[Record]:
    headers = sorted(directory.glob("*.hea"))
    # Segments (and layouts) of a multi-segment record are part of it, not records of their own.
    segments = {seg for h in headers for seg in wfdb_segment_names(h)}
    stems = set()
    for h in headers:
        if h.stem in segments:
            continue
        stems.add(h.stem)
        yield _wfdb_read(h)
    for mat in sorted(directory.glob("*.mat")):
        if mat.stem not in stems and mat.stem not in segments:
            yield from _mat_iter(mat)
    for vital in sorted(directory.glob(f"*{VITAL_SUFFIX}")):
        yield read_vital(vital)
    csvs = sorted(f for f in directory.iterdir() if f.suffix.lower() in (".csv", ".tsv"))
    if csvs and fs is None:
        log.warning(
            "%s: skipping %d CSV file(s) (%s%s): pass fs to read them",
            directory, len(csvs), ", ".join(f.name for f in csvs[:3]), ", ..." if len(csvs) > 3 else "",
        )
    elif csvs:
        for f in csvs:
            yield read_csv(f, fs, channel_map=channel_map)


def read_records(
    path: str | os.PathLike, fs: float | None = None, channel_map: Mapping[str, str] | None = None
) -> Iterator[Record]:
    """Yield the records in a directory or a file, one at a time (lazily).

    Parameters
    ----------
    path : str or os.PathLike
        A directory (its ``RECORDS`` file, or without one every ``*.hea`` record — segments of
        multi-segment records excluded — then UCI or PulseDB ``*.mat`` files without a header,
        then ``*.vital`` files, then ``*.csv``/``*.tsv`` if ``fs`` is given), a WFDB record, a
        UCI ``part_N.mat`` (one Record per cell), a PulseDB subset ``.mat`` (one Record per
        10-s segment, read in blocks), a ``.vital`` file or a CSV file.
    fs : float, optional
        Sampling rate for CSV files. Without it CSV files in a directory are skipped with a
        logged warning, and a CSV path is an error.
    channel_map : dict, optional
        Original label -> canonical name, applied to every record.

    Yields
    ------
    Record

    Raises
    ------
    ReadError
        At once for a path that does not exist; for an unreadable record when it is reached.

    Examples
    --------
    >>> from edgebp.paths import shared_data_dir
    >>> recs = read_records(shared_data_dir() / "challenge2015")  # doctest: +SKIP
    >>> next(recs).record_id  # doctest: +SKIP
    'a123l'
    """
    p = Path(path)
    if p.is_dir():
        records_file = p / "RECORDS"
        if records_file.is_file():
            return _records_file_iter(p, records_file, fs, channel_map)
        return _listing_iter(p, fs, channel_map)
    if p.suffix.lower() == ".mat" and wfdb_base(p) is None:
        if not p.exists():
            raise ReadError(p, "no such file")
        return (channel_map_apply(p, r, channel_map) for r in _mat_iter(p))
    if p.suffix.lower() not in CSV_SUFFIXES and wfdb_base(p) is None and not p.exists():
        raise ReadError(p, "no such file, directory or WFDB record")
    return iter([read_record(p, fs=fs, channel_map=channel_map)])
