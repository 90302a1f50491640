"""The UCI "Cuff-Less Blood Pressure Estimation" files (``part_N.mat``): one Record per cell.

Layout: a variable ``p`` (the original v7.3 release names it after the file, ``Part_1``...)
holding a 1 x K cell array; each cell a 3 x N double matrix, row 0 PPG, row 1 ABP in mmHg,
row 2 ECG lead II, all at 125 Hz. MATLAB v5 files are read with :func:`scipy.io.loadmat`,
v7.3 (HDF5) files with :mod:`h5py`, where the cell array is an array of object references and
every matrix is stored transposed (N x 3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

UCI_FS = 125.0
# (label, units) of the three rows, in order; the labels map to ppg, abp and ecg lead II.
UCI_ROWS = (("PPG", "NU"), ("ABP", "mmHg"), ("II", "mV"))


def _variable_choose(path: Path, names: list[str]) -> str:
    """``p`` if present, else the variable named after the file (``Part_1`` in ``Part_1.mat``)."""
    if "p" in names:
        return "p"
    for name in names:
        if name.lower() == path.stem.lower():
            return name
    shown = ", ".join(repr(n) for n in names if not n.startswith("#")) or "none"
    raise ReadError(path, f"no variable 'p' (a UCI part_N.mat holds a cell array 'p'; variables found: {shown})")


def _cell_record(path: Path, index: int, matrix: object) -> Record:
    record_id = f"{path.stem}_{index:04d}"
    m = np.asarray(matrix)
    if m.dtype == object or not np.issubdtype(m.dtype, np.number):
        raise ReadError(path, f"cell {index} of the cell array is not a numeric matrix (dtype {m.dtype})")
    if m.ndim != 2 or m.shape[0] != len(UCI_ROWS):
        raise ReadError(path, f"cell {index} has shape {m.shape}; expected 3 x N (rows PPG, ABP, ECG)")
    if m.shape[1] == 0:
        raise ReadError(path, f"cell {index} is empty (3 x 0)")
    channels = [
        Channel.from_label(label, m[row].astype(np.float64), fs=UCI_FS, units=units)
        for row, (label, units) in enumerate(UCI_ROWS)
    ]
    return Record(record_id=record_id, channels=channels, source=str(path))


def _iter_v5(path: Path) -> Iterator[Record]:
    try:
        names = [entry[0] for entry in scipy.io.whosmat(str(path))]
    except Exception as exc:  # scipy raises ValueError/MatReadError/TypeError on non-MAT bytes
        raise ReadError(path, f"not a MATLAB file ({type(exc).__name__}: {exc})") from None
    var = _variable_choose(path, names)
    try:
        cells = scipy.io.loadmat(str(path), variable_names=[var])[var]
    except Exception as exc:
        raise ReadError(path, f"cannot read variable {var!r} ({type(exc).__name__}: {exc})") from None
    if cells.dtype != object:
        raise ReadError(path, f"variable {var!r} is a {cells.dtype} array of shape {cells.shape}, not a cell array")
    if cells.ndim != 2 or min(cells.shape) > 1:
        raise ReadError(path, f"cell array {var!r} has shape {cells.shape}; expected 1 x K")
    if cells.size == 0:
        raise ReadError(path, f"cell array {var!r} is empty")
    for i, matrix in enumerate(cells.ravel()):
        yield _cell_record(path, i, matrix)


def _iter_v73(path: Path) -> Iterator[Record]:
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise ReadError(path, f"not a readable MATLAB v7.3 (HDF5) file ({type(exc).__name__}: {exc})") from None
    with f:
        var = _variable_choose(path, list(f.keys()))
        cells = f[var]
        if not isinstance(cells, h5py.Dataset) or cells.dtype != h5py.ref_dtype:
            cls = cells.attrs.get("MATLAB_class", b"?") if isinstance(cells, h5py.Dataset) else b"group"
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            raise ReadError(path, f"variable {var!r} is not a cell array (MATLAB class {cls})")
        refs = cells[()]
        if refs.ndim != 2 or min(refs.shape) > 1:
            raise ReadError(path, f"cell array {var!r} has shape {refs.shape[::-1]}; expected 1 x K")
        if refs.size == 0:
            raise ReadError(path, f"cell array {var!r} is empty")
        # MATLAB stores column-major, so the 1 x K cell array is K x 1 here; ravel is cell order.
        for i, ref in enumerate(refs.ravel()):
            if not ref:
                raise ReadError(path, f"cell {i} of {var!r} is a null reference")
            try:
                obj = f[ref]
            except Exception as exc:
                raise ReadError(path, f"cell {i} of {var!r} points nowhere ({exc})") from None
            if not isinstance(obj, h5py.Dataset):
                raise ReadError(path, f"cell {i} of {var!r} is not a matrix")
            if obj.attrs.get("MATLAB_empty", 0):
                raise ReadError(path, f"cell {i} is empty")
            yield _cell_record(path, i, np.asarray(obj[()]).T)


def uci_mat_iter(path: str | os.PathLike) -> Iterator[Record]:
    """Yield the records of a UCI ``part_N.mat`` one by one (v7.3 cells are read on demand).

    Errors in the file as a whole are raised on the first ``next()``; see :func:`read_uci_mat`.
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError(p, "no such file" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise ReadError(p, "empty file")
    if h5py.is_hdf5(str(p)):
        yield from _iter_v73(p)
    else:
        yield from _iter_v5(p)


def read_uci_mat(path: str | os.PathLike) -> list[Record]:
    """Read every record of a UCI Cuff-Less BP ``part_N.mat`` (MATLAB v5 or v7.3).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mat`` file. The cell array is the variable ``p``, or the variable named after
        the file (``Part_1`` in the original ``Part_1.mat``).

    Returns
    -------
    list of Record
        One per cell, ``record_id`` ``"<file stem>_<cell index, 0-based, 4 digits>"``
        (``part_1_0007`` is the eighth cell), channels ``ppg`` (NU), ``abp`` (mmHg) and
        ``ecg`` lead II (mV), all at 125 Hz.

    Raises
    ------
    ReadError
        Missing or empty file, not a MATLAB file, no variable ``p``, not a cell array, a cell
        that is not a 3 x N numeric matrix.

    Examples
    --------
    >>> import tempfile, numpy as np, scipy.io
    >>> from pathlib import Path
    >>> tmp = Path(tempfile.mkdtemp()) / "part_1.mat"
    >>> cells = np.empty((1, 2), dtype=object)
    >>> cells[0, 0] = np.ones((3, 250)); cells[0, 1] = np.ones((3, 500))
    >>> scipy.io.savemat(tmp, {"p": cells})
    >>> recs = read_uci_mat(tmp)
    >>> [(r.record_id, r.names, r.duration) for r in recs]
    [('part_1_0000', ['ppg', 'abp', 'ecg'], 2.0), ('part_1_0001', ['ppg', 'abp', 'ecg'], 4.0)]
    """
    records = list(uci_mat_iter(path))
    log.debug("read %s: %d records", path, len(records))
    return records
