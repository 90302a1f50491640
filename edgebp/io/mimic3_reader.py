"""MIMIC-III Waveform Database (matched subset) multi-segment WFDB records, read with ``wfdb``.

Layout on PhysioNet (``mimic3wdb-matched/1.0/p04/p042930/``): a master header
``p042930-2190-07-28-20-30.hea`` with a segment list (``wfdb`` "variable layout"): first the
layout header ``3544749_layout`` (0 samples, every signal the record ever has), then the segments
``3544749_0001``, ``3544749_0002`` ... and ``~`` for gaps (no signal recorded for that many
samples). Each segment has its own subset of the signals (``II``, ``V``, ``PLETH``, ``ABP``,
``RESP``...), all at 125 Hz. The record name starts with the MIMIC subject id (``p042930``),
the same in its directory name; the numerics record ``...n.hea`` beside it is not read here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import wfdb

from edgebp.io.checks import fs_validate
from edgebp.io.errors import ReadError
from edgebp.io.wfdb_reader import _header_read, wfdb_base
from edgebp.record import Channel, Record, channel_name_canonical

log = logging.getLogger(__name__)

__all__ = ["read_mimic3_multiseg", "mimic3_subject_id", "MIMIC3_METHODS", "MIMIC3_CHANNELS"]

MIMIC3_METHODS = ("segments", "m2s")
MIMIC3_CHANNELS = ("ecg", "ppg", "abp", "resp")
# pXXXXXX-YYYY-MM-DD-hh-mm: the matched subset's record names (dates shifted by MIMIC).
_MATCHED_NAME = re.compile(r"^(?P<subject>p\d{6})-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}n?$")
_SUBJECT_DIR = re.compile(r"^p\d{6}$")


def mimic3_subject_id(path: str | os.PathLike) -> str | None:
    """The MIMIC-III subject id of a matched-subset record (``"p042930"``), or None.

    Taken from the record name (``p042930-2190-07-28-20-30``), else from its directory
    (``.../p04/p042930/``).

    Examples
    --------
    >>> mimic3_subject_id("p04/p042930/p042930-2190-07-28-20-30.hea")
    'p042930'
    >>> mimic3_subject_id("p04/p042930/3544749_0001")  # from the directory
    'p042930'
    >>> mimic3_subject_id("data/a103l") is None
    True
    """
    p = Path(path)
    stem = p.stem if p.suffix.lower() == ".hea" else p.name
    m = _MATCHED_NAME.match(stem)
    if m:
        return m.group("subject")
    if _SUBJECT_DIR.match(p.parent.name):
        return p.parent.name
    return None


def is_mimic3_matched(path: str | os.PathLike) -> bool:
    """True when ``path`` names a record with the matched subset's ``pXXXXXX-YYYY-...`` name."""
    p = Path(path)
    stem = p.stem if p.suffix.lower() == ".hea" else p.name
    return bool(_MATCHED_NAME.match(stem)) and not stem.endswith("n")


def _wanted(channels: Sequence[str] | str | None) -> list[str] | None:
    if channels is None:
        return None
    names = [channels] if isinstance(channels, str) else list(channels)
    unknown = [c for c in names if c not in MIMIC3_CHANNELS]
    if unknown:
        raise ValueError(
            f"read_mimic3_multiseg: unknown channel name(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(MIMIC3_CHANNELS)} (or None for every signal)"
        )
    return names


def _keep(label: str, wanted: list[str] | None) -> bool:
    return wanted is None or channel_name_canonical(label)[0] in wanted


def _by_segments(header: Path, base: Path, hdr, wanted: list[str] | None) -> list[Channel]:
    """Read segment by segment, only the wanted signals; absent signals and gaps are NaN."""
    seg_names, seg_lens = list(hdr.seg_name), [int(n) for n in hdr.seg_len]
    fs_frame = fs_validate(header, hdr.fs, what="frame rate")
    # Signal order and units: the layout header (0 samples) when there is one, else the segments.
    order: list[str] = []
    units: dict[str, str] = {}
    spf: dict[str, int] = {}
    seg_hdrs = {}
    for seg, n in zip(seg_names, seg_lens):
        if seg == "~":
            continue
        sh = _header_read(base.parent / seg, base.parent / f"{seg}.hea")
        seg_hdrs[seg] = sh
        for k, label in enumerate(sh.sig_name or []):
            if label not in units:
                order.append(label)
                units[label] = (sh.units or [""] * sh.n_sig)[k] or ""
                spf[label] = int((sh.samps_per_frame or [1] * sh.n_sig)[k] or 1)
            elif not units[label] and sh.units:
                units[label] = sh.units[k] or ""
    keep = [label for label in order if _keep(label, wanted)]
    if not keep:
        raise ReadError(header, f"no {'/'.join(wanted or [])} signal in any segment (signals: {', '.join(order) or 'none'})")
    parts: dict[str, list[np.ndarray]] = {label: [] for label in keep}
    for seg, n in zip(seg_names, seg_lens):
        if n == 0:
            continue  # the layout segment
        present = [] if seg == "~" else [lab for lab in keep if lab in (seg_hdrs[seg].sig_name or [])]
        got: dict[str, np.ndarray] = {}
        if present:
            try:
                rec = wfdb.rdrecord(str(base.parent / seg), channel_names=present, smooth_frames=False)
            except FileNotFoundError as exc:
                missing = Path(exc.filename).name if exc.filename else str(exc)
                raise ReadError(header, f"segment {seg}: signal file {missing} is missing") from None
            except Exception as exc:  # a truncated or corrupt segment
                raise ReadError(header, f"segment {seg}: cannot read the signals ({type(exc).__name__}: {exc})") from None
            for label, sig in zip(rec.sig_name, rec.e_p_signal):
                got[label] = np.asarray(sig, dtype=np.float64)
        for label in keep:
            want_len = n * spf[label]
            sig = got.get(label)
            if sig is None:
                sig = np.full(want_len, np.nan)
            elif len(sig) != want_len:
                raise ReadError(header, f"segment {seg}: signal {label!r} has {len(sig)} samples, the header says {want_len}")
            parts[label].append(sig)
    channels = []
    for label in keep:
        fs = fs_validate(header, fs_frame * spf[label], what=f"rate of channel {label!r}")
        signal = np.concatenate(parts[label]) if parts[label] else np.zeros(0)
        channels.append(Channel.from_label(label, signal, fs=fs, units=units[label]))
    return channels


def _by_m2s(header: Path, base: Path, wanted: list[str] | None) -> list[Channel]:
    """wfdb's own multi-to-single conversion (the whole record, all signals, then filtered)."""
    try:
        rec = wfdb.rdrecord(str(base), m2s=True, smooth_frames=False)
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if exc.filename else str(exc)
        raise ReadError(header, f"signal file {missing} is missing") from None
    except Exception as exc:
        raise ReadError(header, f"cannot read the signals ({type(exc).__name__}: {exc})") from None
    units = rec.units if rec.units and len(rec.units) == len(rec.sig_name) else [""] * len(rec.sig_name)
    spf = rec.samps_per_frame or [1] * len(rec.sig_name)
    fs_frame = fs_validate(header, rec.fs, what="frame rate")
    channels = [
        Channel.from_label(label, np.asarray(sig, dtype=np.float64), fs=fs_frame * int(k or 1), units=u or "")
        for label, sig, u, k in zip(rec.sig_name, rec.e_p_signal, units, spf)
        if _keep(label, wanted)
    ]
    if not channels:
        raise ReadError(header, f"no {'/'.join(wanted or [])} signal (signals: {', '.join(rec.sig_name) or 'none'})")
    return channels


def read_mimic3_multiseg(
    path: str | os.PathLike,
    channels: Sequence[str] | None = None,
    method: str = "segments",
    subject_id: str | None = None,
) -> Record:
    """Read a MIMIC-III matched-subset multi-segment WFDB record into one Record.

    Parameters
    ----------
    path : str or os.PathLike
        The master record (``.../p042930/p042930-2190-07-28-20-30`` with or without ``.hea``);
        its layout and segment headers and signal files sit beside it.
    channels : sequence of str or None
        Canonical names to keep, of :data:`MIMIC3_CHANNELS` (``ecg``, ``ppg``, ``abp``,
        ``resp``); ``None`` (default) keeps every signal. With ``method="segments"`` only
        those signals are read from disk, which matters for records that run for days.
        Unknown names are an error listing the valid ones.
    method : str
        ``"segments"`` (default): read segment by segment (only the wanted signals, units from
        the segments); ``"m2s"``: ``wfdb.rdrecord(..., m2s=True)``, wfdb's own conversion of the
        whole record. Both give the same samples; see ``tests/test_datasets.py``.
    subject_id : str, optional
        Defaults to :func:`mimic3_subject_id` (``"p042930"``), else the record name.

    Returns
    -------
    Record
        Channels in layout order, labels mapped to the project's names (``II`` -> ``ecg``
        lead II, ``PLETH`` -> ``ppg``, ``ABP`` -> ``abp``, ``RESP`` -> ``resp``, others kept
        lower-case: ``cvp``, ``pap``...). A signal absent from a segment and every ``~`` gap
        is NaN, so each channel spans the whole record and sample ``i`` of every channel is
        the same instant.

    Raises
    ------
    ReadError
        Not a multi-segment header, a missing segment header or signal file, a segment
        shorter than its header says, none of the wanted signals; the message names the
        master header (and the segment).
    ValueError
        An unknown ``method`` or channel name.

    Examples
    --------
    >>> import tempfile, numpy as np, wfdb
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp()) / "p000123"; d.mkdir()
    >>> wfdb.wrsamp("3000001_0001", fs=125, units=["mV", "mmHg"], sig_name=["II", "ABP"],
    ...             p_signal=np.column_stack([np.zeros(250), np.full(250, 90.0)]), fmt=["16", "16"],
    ...             adc_gain=[200, 10], baseline=[0, 0], write_dir=str(d))
    >>> _ = (d / "3000001_layout.hea").write_text(
    ...     "3000001_layout 3 125 0\\n~ 0 200/mV 16 0 0 0 0 II\\n~ 0 1000/NU 16 0 0 0 0 PLETH\\n"
    ...     "~ 0 10/mmHg 16 0 0 0 0 ABP\\n")
    >>> m = wfdb.io.record.MultiRecord(record_name="p000123-2150-01-01-00-00", n_sig=3, fs=125,
    ...     sig_len=375, seg_name=["3000001_layout", "3000001_0001", "~"], seg_len=[0, 250, 125],
    ...     layout="variable")
    >>> m.n_seg = 3; m.wrheader(write_dir=str(d))
    >>> rec = read_mimic3_multiseg(d / "p000123-2150-01-01-00-00", channels=["ppg", "abp"])
    >>> rec.subject_id, rec.names, rec.duration
    ('p000123', ['ppg', 'abp'], 3.0)
    >>> int(np.isnan(rec.get("abp").signal).sum()), bool(np.isnan(rec.get("ppg").signal).all())
    (125, True)
    """
    if method not in MIMIC3_METHODS:
        raise ValueError(f"read_mimic3_multiseg: method {method!r} is not valid; choose one of: {', '.join(MIMIC3_METHODS)}")
    wanted = _wanted(channels)
    p = Path(path)
    base = wfdb_base(p)
    if base is None:
        raise ReadError(p, "no such WFDB record (looked for a header with .hea)")
    header = Path(f"{base}.hea")
    hdr = _header_read(base, header)
    seg_names = getattr(hdr, "seg_name", None)
    if not seg_names:
        raise ReadError(header, "not a multi-segment header (no segment list); read it with read_wfdb")
    for seg in seg_names:
        if seg != "~" and not (base.parent / f"{seg}.hea").is_file():
            raise ReadError(header, f"segment header {seg}.hea is missing")
    chans = _by_segments(header, base, hdr, wanted) if method == "segments" else _by_m2s(header, base, wanted)
    if subject_id is None:
        subject_id = mimic3_subject_id(header)
        if subject_id is None:
            log.info("%s: no MIMIC-III subject id in the name or directory; using the record name", header)
    gaps = sum(int(n) for s, n in zip(seg_names, hdr.seg_len) if s == "~")
    log.debug("read %s: %d segments, %d gap samples, %s", header, len(seg_names), gaps,
              ", ".join(f"{c.name}[{c.label}]" for c in chans))
    return Record(record_id=str(hdr.record_name), channels=chans, subject_id=subject_id, source=str(header))
