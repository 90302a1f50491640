"""PulseDB subset files (``Train_Subset.mat``, ``VitalDB_CalBased_Test_Subset.mat`` ...): one Record per 10-s segment.

Layout, as written by ``Generate_Subsets.m`` of the public PulseDB repository
(github.com/pulselabteam/PulseDB) with ``save(Save_Name, 'Subset', '-v7.3')``: one MATLAB
struct ``Subset`` with the fields

- ``Signals``: double, N x 3 x 1250; row 1 ``ECG_F``, row 2 ``PPG_F`` (band-pass filtered, the
  amplitudes normalised by PulseDB), row 3 ``ABP_Raw`` (mmHg, unmodified); 10 s at 125 Hz;
- ``Subject``: N x 1 cell of char, ``Subj_Name``: ``"p"`` + the 6-digit subject id of the source
  database + one digit for the source (``0`` MIMIC-III matched subset, ``1`` VitalDB);
- ``SBP``, ``DBP`` (segment averages, mmHg), ``Age``, ``Height``, ``Weight``, ``BMI``: N x 1
  double (Height/Weight/BMI NaN for MIMIC subjects); ``Gender``: N x 1 cell of char (``'M'``/``'F'``).

MATLAB v7.3 is HDF5: the struct is a group (attribute ``MATLAB_class = "struct"``), every array
is stored transposed (``Signals`` reads as 1250 x 3 x N), and a cell array is a dataset of object
references into the ``#refs#`` group, each pointing to a ``uint16`` char array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

__all__ = ["read_pulsedb", "iter_pulsedb", "pulsedb_labels", "is_pulsedb", "PULSEDB_FS", "PULSEDB_CHANNELS"]

PULSEDB_FS = 125.0
# The three rows of Subset.Signals, in order: (canonical name, label, units).
PULSEDB_ROWS = (("ecg", "ECG_F", "NU"), ("ppg", "PPG_F", "NU"), ("abp", "ABP_Raw", "mmHg"))
PULSEDB_CHANNELS = tuple(name for name, _, _ in PULSEDB_ROWS)
PULSEDB_VARIABLE = "Subset"
# Numeric per-segment fields of a subset and the name pulsedb_labels gives them.
_NUMERIC_FIELDS = {"SBP": "sbp", "DBP": "dbp", "Age": "age", "Height": "height", "Weight": "weight", "BMI": "bmi"}
_CHAR_FIELDS = {"Subject": "subject", "Gender": "gender"}
# Segments per HDF5 read: 1024 x 3 x 1250 doubles = 30 MB, a bounded working set for 900k-segment files.
_CHUNK = 1024


def _matlab_class(obj: h5py.HLObject) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _struct_find(f: h5py.File, variable: str | None) -> tuple[str, h5py.Group] | None:
    """The struct holding ``Signals``: ``variable`` if given, else ``Subset``, else the only one."""
    names = [variable] if variable else [PULSEDB_VARIABLE] + [k for k in f.keys() if k != PULSEDB_VARIABLE]
    for name in names:
        obj = f.get(name)
        if isinstance(obj, h5py.Group) and not name.startswith("#") and "Signals" in obj:
            return name, obj
    return None


def is_pulsedb(path: str | os.PathLike) -> bool:
    """True when ``path`` is a MATLAB v7.3 file holding a PulseDB-style struct with ``Signals``.

    Used by :func:`edgebp.io.read_record` to tell a PulseDB subset from a UCI ``part_N.mat``.

    Examples
    --------
    >>> is_pulsedb("no/such/file.mat")
    False
    """
    p = Path(path)
    try:
        if not p.is_file() or not h5py.is_hdf5(str(p)):
            return False
        with h5py.File(p, "r") as f:
            return _struct_find(f, None) is not None
    except OSError:
        return False


def _open(path: Path, variable: str | None) -> tuple[h5py.File, str, h5py.Group]:
    if not path.is_file():
        raise ReadError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file")
    if not h5py.is_hdf5(str(path)):
        raise ReadError(path, "not a MATLAB v7.3 (HDF5) file; PulseDB subsets are saved with save(..., '-v7.3')")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise ReadError(path, f"not a readable MATLAB v7.3 (HDF5) file ({type(exc).__name__}: {exc})") from None
    found = _struct_find(f, variable)
    if found is None:
        shown = ", ".join(repr(k) for k in f.keys() if not k.startswith("#")) or "none"
        f.close()
        want = repr(variable or PULSEDB_VARIABLE)
        raise ReadError(path, f"no struct {want} with a field 'Signals' (a PulseDB subset; variables found: {shown})")
    return f, found[0], found[1]


def _signals(path: Path, var: str, group: h5py.Group) -> h5py.Dataset:
    ds = group["Signals"]
    if not isinstance(ds, h5py.Dataset) or not np.issubdtype(ds.dtype, np.number):
        raise ReadError(path, f"field {var}.Signals is not a numeric array (MATLAB class {_matlab_class(ds) or '?'})")
    # h5py sees MATLAB's N x 3 x L array transposed, as L x 3 x N.
    if ds.ndim != 3 or ds.shape[1] != len(PULSEDB_ROWS):
        shown = " x ".join(map(str, ds.shape[::-1]))
        raise ReadError(path, f"field {var}.Signals is {shown}; expected N x 3 x 1250 (rows ECG, PPG, ABP)")
    if ds.shape[0] == 0 or ds.shape[2] == 0:
        raise ReadError(path, f"field {var}.Signals is empty")
    return ds


def _chars(path: Path, f: h5py.File, var: str, field: str, n: int) -> np.ndarray:
    """A MATLAB cell array of char (N x 1) as an array of N str.

    Each cell is its own dataset in ``#refs#``, so this opens N objects: the low-level h5py
    calls are used because the high-level ones cost about twice as much per object.
    """
    ds = f[var][field]
    where = f"field {var}.{field}"
    if not isinstance(ds, h5py.Dataset) or ds.dtype != h5py.ref_dtype:
        raise ReadError(path, f"{where} is not a cell array (MATLAB class {_matlab_class(ds) or 'group'})")
    refs = ds[()].ravel()  # MATLAB N x 1 is 1 x N here; column-major ravel keeps cell order
    if refs.size != n:
        raise ReadError(path, f"{where} has {refs.size} entries but Signals has {n} segments")
    out = []
    for i, ref in enumerate(refs):
        if not ref:
            raise ReadError(path, f"{where}{{{i + 1}}} is a null reference")
        try:
            oid = h5py.h5r.dereference(ref, f.id)
        except Exception as exc:
            raise ReadError(path, f"{where}{{{i + 1}}} points nowhere ({exc})") from None
        if not isinstance(oid, h5py.h5d.DatasetID):
            raise ReadError(path, f"{where}{{{i + 1}}} is not a char array")
        if oid.dtype == np.uint16:  # MATLAB char: UTF-16 code units
            codes = np.empty(oid.shape, dtype="<u2")
            oid.read(h5py.h5s.ALL, h5py.h5s.ALL, codes)
            out.append(codes.tobytes().decode("utf-16-le", errors="replace"))
            continue
        obj = h5py.Dataset(oid)
        if obj.attrs.get("MATLAB_empty", 0):  # '' is stored as its dimensions, flagged empty
            out.append("")
            continue
        raise ReadError(path, f"{where}{{{i + 1}}} is not text (MATLAB class {_matlab_class(obj) or '?'}, {obj.dtype})")
    return np.asarray(out, dtype=str)


def _numeric(path: Path, f: h5py.File, var: str, field: str, n: int) -> np.ndarray:
    ds = f[var][field]
    if not isinstance(ds, h5py.Dataset) or not np.issubdtype(ds.dtype, np.number):
        raise ReadError(path, f"field {var}.{field} is not numeric (MATLAB class {_matlab_class(ds) or '?'})")
    v = np.asarray(ds[()], dtype=np.float64).ravel()
    if v.size != n:
        raise ReadError(path, f"field {var}.{field} has {v.size} entries but Signals has {n} segments")
    return v


def pulsedb_labels(path: str | os.PathLike, variable: str | None = None) -> dict[str, np.ndarray]:
    """The per-segment fields of a PulseDB subset, without the signals.

    Parameters
    ----------
    path : str or os.PathLike
        The subset ``.mat`` file (MATLAB v7.3).
    variable : str, optional
        The struct's name; ``Subset`` by default (as ``Generate_Subsets.m`` saves it).

    Returns
    -------
    dict
        Of the fields present: ``subject`` and ``gender`` (str arrays), ``sbp``, ``dbp``,
        ``age``, ``height``, ``weight``, ``bmi`` (float64 arrays), each of length N, plus
        ``n_segments`` and ``segment_length`` (samples) as 0-d arrays. Useful for subject-wise
        splits and label statistics without reading the waveforms.

    Raises
    ------
    ReadError
        Naming the file and the field (``Subset.Subject has 3 entries but Signals has 4``).
    """
    p = Path(path)
    f, var, group = _open(p, variable)
    with f:
        ds = _signals(p, var, group)
        n = ds.shape[2]
        out: dict[str, np.ndarray] = {"n_segments": np.asarray(n), "segment_length": np.asarray(ds.shape[0])}
        for field, key in _CHAR_FIELDS.items():
            if field in group:
                out[key] = _chars(p, f, var, field, n)
        for field, key in _NUMERIC_FIELDS.items():
            if field in group:
                out[key] = _numeric(p, f, var, field, n)
    return out


def _channels_check(channels: Sequence[str] | str | None) -> list[int]:
    if channels is None:
        return list(range(len(PULSEDB_ROWS)))
    names = [channels] if isinstance(channels, str) else list(channels)
    unknown = [c for c in names if c not in PULSEDB_CHANNELS]
    if unknown:
        raise ValueError(
            f"read_pulsedb: unknown channel name(s) {', '.join(map(repr, unknown))}; valid: {', '.join(PULSEDB_CHANNELS)}"
        )
    if not names:
        raise ValueError(f"read_pulsedb: channels is empty; name at least one of {', '.join(PULSEDB_CHANNELS)}")
    return [PULSEDB_CHANNELS.index(c) for c in names]


def iter_pulsedb(
    path: str | os.PathLike,
    channels: Sequence[str] | None = PULSEDB_CHANNELS,
    subjects: Iterable[str] | None = None,
    start: int = 0,
    stop: int | None = None,
    variable: str | None = None,
) -> Iterator[Record]:
    """Yield the segments of a PulseDB subset one Record at a time, reading the file in blocks.

    Same parameters and records as :func:`read_pulsedb`; memory stays bounded (about 30 MB of
    signal per block) however large the file (a segment is 3 x 1250 doubles, 30 kB: a million
    segments are 30 GB). The ``Subject`` cell is read whole first (one reference per segment).
    File-level errors are raised on the first ``next()``.
    """
    rows = _channels_check(channels)
    p = Path(path)
    f, var, group = _open(p, variable)
    with f:
        ds = _signals(p, var, group)
        n_total = ds.shape[2]
        if "Subject" not in group:
            raise ReadError(p, f"field {var}.Subject is missing (fields: {', '.join(group.keys())})")
        subject = _chars(p, f, var, "Subject", n_total)
        lo, hi = max(0, int(start)), n_total if stop is None else min(int(stop), n_total)
        index = np.arange(lo, hi)
        if subjects is not None:
            wanted = {str(s) for s in ([subjects] if isinstance(subjects, str) else subjects)}
            index = index[np.isin(subject[lo:hi], list(wanted))]
            absent = wanted - set(subject[index].tolist())
            if absent:
                log.warning("%s: no segments of subject(s) %s", p, ", ".join(sorted(absent)[:5]))
        width = max(7, len(str(n_total - 1)))
        for b in range(0, len(index), _CHUNK):
            block = index[b:b + _CHUNK]
            contiguous = block[-1] - block[0] + 1 == len(block)
            # h5py reads one increasing index list per axis; a contiguous block is a plain slice.
            sel = slice(int(block[0]), int(block[-1]) + 1) if contiguous else block.tolist()
            data = np.asarray(ds[:, :, sel], dtype=np.float64)  # L x 3 x k
            for j, i in enumerate(block):
                chans = [
                    Channel(name=PULSEDB_ROWS[r][0], signal=data[:, r, j].copy(), fs=PULSEDB_FS,
                            units=PULSEDB_ROWS[r][2], label=PULSEDB_ROWS[r][1])
                    for r in rows
                ]
                yield Record(record_id=f"{p.stem}_{int(i):0{width}d}", channels=chans,
                             subject_id=str(subject[i]), source=str(p))


def read_pulsedb(
    path: str | os.PathLike,
    channels: Sequence[str] | None = PULSEDB_CHANNELS,
    subjects: Iterable[str] | None = None,
    start: int = 0,
    stop: int | None = None,
    variable: str | None = None,
) -> list[Record]:
    """Read the 10-s segments of a PulseDB subset ``.mat`` (MATLAB v7.3) as Records.

    Parameters
    ----------
    path : str or os.PathLike
        A subset file made by PulseDB's ``Generate_Subsets.m`` (``Train_Subset.mat``,
        ``CalBased_Test_Subset.mat``, ``VitalDB_CalFree_Test_Subset.mat`` ...).
    channels : sequence of str or None
        Which rows to keep, of :data:`PULSEDB_CHANNELS` (``ecg``, ``ppg``, ``abp``); ``None``
        for all. Other names are an error listing the valid ones.
    subjects : iterable of str, optional
        Keep only the segments of these subject ids (``Subset.Subject`` values).
    start, stop : int
        Segment index range (0-based, ``stop`` exclusive), applied before ``subjects``.
    variable : str, optional
        The struct's name, ``Subset`` by default.

    Returns
    -------
    list of Record
        One per segment: ``record_id`` ``"<file stem>_<segment index, 0-based, 7 digits>"``,
        ``subject_id`` the segment's ``Subset.Subject`` entry verbatim (``"p0001230"``: MIMIC
        subject p000123; a trailing ``1`` marks a VitalDB subject), so all segments of one
        subject share it; channels ``ecg`` [``ECG_F``], ``ppg`` [``PPG_F``] (normalised units,
        ``NU``) and ``abp`` [``ABP_Raw``] (mmHg), all at 125 Hz. Use :func:`iter_pulsedb` for
        files that do not fit in memory, :func:`pulsedb_labels` for SBP/DBP/Age/Gender.

    Raises
    ------
    ReadError
        Not an HDF5 (v7.3) file, no struct with ``Signals``, a field of the wrong shape or
        class, ``Subject`` missing or of another length than ``Signals``; the message names
        the file and the field.
    ValueError
        An unknown channel name.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from edgebp.io.pulsedb_reader import pulsedb_subset_write
    >>> path = Path(tempfile.mkdtemp()) / "CalBased_Test_Subset.mat"
    >>> sig = np.zeros((4, 3, 1250)); sig[:, 2] = 100.0
    >>> pulsedb_subset_write(path, sig, subjects=["p0001230", "p0001230", "p0004561", "p0004561"])
    >>> recs = read_pulsedb(path)
    >>> [(r.record_id, r.subject_id) for r in recs[:2]]
    [('CalBased_Test_Subset_0000000', 'p0001230'), ('CalBased_Test_Subset_0000001', 'p0001230')]
    >>> recs[0].names, recs[0].get("abp").fs, recs[0].duration
    (['ecg', 'ppg', 'abp'], 125.0, 10.0)
    >>> len(read_pulsedb(path, channels=["ppg"], subjects=["p0004561"]))
    2
    """
    records = list(iter_pulsedb(path, channels=channels, subjects=subjects, start=start, stop=stop, variable=variable))
    log.debug("read %s: %d segments", path, len(records))
    return records


def _char_write(f: h5py.File, refs_group: h5py.Group, key: str, text: str) -> h5py.Reference:
    if text:
        ds = refs_group.create_dataset(key, data=np.array([[ord(c)] for c in text], dtype=np.uint16))
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
    else:  # MATLAB writes an empty array as its dimensions, flagged MATLAB_empty
        ds = refs_group.create_dataset(key, data=np.array([0, 0], dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    return ds.ref


def pulsedb_subset_write(
    path: str | os.PathLike,
    signals: np.ndarray,
    subjects: Sequence[str],
    sbp: Sequence[float] | None = None,
    dbp: Sequence[float] | None = None,
    age: Sequence[float] | None = None,
    gender: Sequence[str] | None = None,
) -> None:
    """Write a subset file in the layout MATLAB's ``save(..., 'Subset', '-v7.3')`` produces.

    For tests, examples and converting other data to PulseDB's layout. ``signals`` is the
    MATLAB-side N x 3 x L array (rows ECG, PPG, ABP); it is stored transposed (L x 3 x N) as
    MATLAB does, the cells as references into ``#refs#``, each field with its ``MATLAB_class``,
    the struct with ``MATLAB_fields``, and the file with MATLAB's 512-byte header block. Height,
    Weight and BMI are written as NaN (as for MIMIC subjects); SBP/DBP default to the
    segment-mean of the ABP row's maxima and minima. See ``tests/fixtures/datasets/README.md``.
    """
    sig = np.asarray(signals, dtype=np.float64)
    if sig.ndim != 3 or sig.shape[1] != 3:
        raise ValueError(f"pulsedb_subset_write: signals must be N x 3 x L, got {sig.shape}")
    n = sig.shape[0]
    if len(subjects) != n:
        raise ValueError(f"pulsedb_subset_write: {len(subjects)} subjects for {n} segments")
    sbp = np.nanmax(sig[:, 2], axis=1) if sbp is None else np.asarray(sbp, dtype=np.float64)
    dbp = np.nanmin(sig[:, 2], axis=1) if dbp is None else np.asarray(dbp, dtype=np.float64)
    age = np.full(n, np.nan) if age is None else np.asarray(age, dtype=np.float64)
    gender = ["M"] * n if gender is None else list(gender)
    p = Path(path)
    fields = ["Subject", "Signals", "SBP", "DBP", "Age", "Gender", "Height", "Weight", "BMI"]
    with h5py.File(p, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        g = f.create_group("Subset")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        g.attrs.create("MATLAB_fields", [np.array(list(k), dtype="S1") for k in fields],
                       dtype=h5py.vlen_dtype(np.dtype("S1")))
        for field, texts in (("Subject", list(subjects)), ("Gender", gender)):
            cell = np.array([[_char_write(f, refs, f"{field[0]}{i}", str(t)) for i, t in enumerate(texts)]],
                            dtype=h5py.ref_dtype)  # MATLAB N x 1 -> 1 x N
            ds = g.create_dataset(field, data=cell)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
        ds = g.create_dataset("Signals", data=np.ascontiguousarray(sig.transpose(2, 1, 0)))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        for field, v in (("SBP", sbp), ("DBP", dbp), ("Age", age), ("Height", np.full(n, np.nan)),
                         ("Weight", np.full(n, np.nan)), ("BMI", np.full(n, np.nan))):
            ds = g.create_dataset(field, data=np.asarray(v, dtype=np.float64).reshape(1, n))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    # MATLAB's v7.3 header: 116 bytes of text, subsystem offset, version 0x0200, endian "IM".
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(p, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))
