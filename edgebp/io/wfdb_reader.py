"""WFDB records (PhysioNet, MIMIC) through the ``wfdb`` package: one :class:`Record` each.

Frames are read with ``smooth_frames=False`` so a channel stored at several samples per frame
keeps its own rate (a plain ``rdrecord`` averages the frame and reports the frame rate for
every channel). Invalid samples come back from ``wfdb`` as NaN in physical units and stay NaN.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import wfdb

from edgebp.io.checks import fs_validate
from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

# WFDB signal files that may sit beside a header under the same name (challenge2015 uses .mat).
WFDB_DATA_SUFFIXES = (".dat", ".mat")


def wfdb_base(path: str | os.PathLike) -> Path | None:
    """The record path without extension if ``path`` names a WFDB record, else ``None``.

    ``path`` may be the record name, its ``.hea`` header, or a signal file whose header sits
    beside it (``a103l.mat`` next to ``a103l.hea``).

    Examples
    --------
    >>> wfdb_base("no/such/record") is None
    True
    """
    p = Path(path)
    if p.suffix.lower() == ".hea":
        return p.with_suffix("")
    if Path(f"{p}.hea").is_file():
        return p
    if p.suffix.lower() in WFDB_DATA_SUFFIXES and p.with_suffix(".hea").is_file():
        return p.with_suffix("")
    return None


def _header_read(base: Path, header: Path):
    if header.stat().st_size == 0:
        raise ReadError(header, "empty file")
    try:
        return wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises IndexError, HeaderSyntaxError, ValueError... for junk
        raise ReadError(header, f"not a WFDB header ({type(exc).__name__}: {exc})") from None


def read_wfdb(path: str | os.PathLike) -> Record:
    """Read one WFDB record (single- or multi-segment, single- or multi-rate).

    Parameters
    ----------
    path : str or os.PathLike
        The record path with or without ``.hea`` (``"data/041s"``, ``"data/041s.hea"``), or a
        signal file with its header beside it.

    Returns
    -------
    Record
        ``record_id`` is the record name, ``source`` the header path. Each channel has its own
        rate (frame rate times samples per frame), its units and original label; invalid
        samples are NaN.

    Raises
    ------
    ReadError
        Missing header or segment header, not a WFDB header, a signal file missing or too
        short, an absurd sampling rate, a record without signals.

    Examples
    --------
    >>> from edgebp.paths import shared_data_dir
    >>> rec = read_wfdb(shared_data_dir() / "wfdb_samples" / "mixedsignals")  # doctest: +SKIP
    >>> {c.label: round(c.fs, 2) for c in rec.channels}  # doctest: +SKIP
    {'II': 249.89, 'III': 249.89, 'V': 249.89, 'ABP': 124.94, 'Pleth': 124.94, 'Resp': 62.47}
    """
    p = Path(path)
    base = wfdb_base(p)
    if base is None:
        if p.is_dir():
            raise ReadError(p, "is a directory, not a WFDB record (use read_records for a directory)")
        if p.exists():
            raise ReadError(p, f"not a WFDB record: no header {p.with_suffix('.hea').name} beside it")
        raise ReadError(p, "no such file (looked for a WFDB header with .hea)")
    header = Path(f"{base}.hea")
    if not header.is_file():
        raise ReadError(header, "no such file")

    hdr = _header_read(base, header)
    fs_frame = fs_validate(header, hdr.fs, what="frame rate")
    if not hdr.n_sig:
        raise ReadError(header, "the record has no signals")

    seg_names = getattr(hdr, "seg_name", None)
    if seg_names:
        # Check segments up front: wfdb's own error would name a segment without its directory.
        for seg in seg_names:
            if seg != "~" and not (base.parent / f"{seg}.hea").is_file():
                raise ReadError(header, f"segment header {seg}.hea is missing")

    try:
        rec = wfdb.rdrecord(str(base), smooth_frames=False)
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if exc.filename else str(exc)
        raise ReadError(header, f"signal file {missing} is missing") from None
    except Exception as exc:  # truncated or corrupt signal files surface as ValueError/IndexError
        raise ReadError(header, f"cannot read the signals ({type(exc).__name__}: {exc})") from None

    signals = rec.e_p_signal
    if signals is None:  # smooth_frames=False always fills e_p_signal; guard a wfdb change
        signals = [rec.p_signal[:, i] for i in range(rec.p_signal.shape[1])]
        spf = [1] * len(signals)
    else:
        spf = list(rec.samps_per_frame or [1] * len(signals))
    names = rec.sig_name or []
    units = rec.units or [""] * len(signals)
    if len(names) != len(signals):
        raise ReadError(header, f"{len(signals)} signals but {len(names)} signal names")

    channels = []
    for label, sig, n_per_frame, unit in zip(names, signals, spf, units):
        fs = fs_validate(header, fs_frame * int(n_per_frame or 1), what=f"rate of channel {label!r}")
        channels.append(Channel.from_label(str(label), np.asarray(sig, dtype=np.float64), fs=fs, units=unit or ""))
    log.debug("read %s: %d channels, %.1f s", header, len(channels), max(c.duration for c in channels))
    return Record(record_id=str(hdr.record_name), channels=channels, source=str(header))


def wfdb_segment_names(header: Path) -> list[str]:
    """Names a multi-segment header refers to (segments and layout), for directory listings.

    A plain (single-segment) header gives ``[]``; an unreadable one raises :class:`ReadError`.
    """
    hdr = _header_read(header.with_suffix(""), header)
    return [s for s in (getattr(hdr, "seg_name", None) or []) if s != "~"]
