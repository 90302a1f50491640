"""VitalDB ``.vital`` files, read offline through the ``vitaldb`` package's own file reader.

A ``.vital`` file (VitalRecorder's format, one surgical case per file in the VitalDB open
dataset, ``0001.vital`` ...) is a gzip stream of packets: devices, tracks and records. A track is
named ``DEVICE/TRACK`` (``SNUADC/ECG_II``, ``SNUADC/PLETH``, ``SNUADC/ART``); wave tracks carry a
sampling rate (500 Hz on the SNUADC converter), numeric tracks (``Solar8000/ART_SBP``) one value
per record. Only wave tracks become channels; each is laid on the file's time base from its start
to its end with :meth:`vitaldb.VitalFile.get_track_samples`, so time not covered by a record (a
monitor unplugged, a track starting late) is NaN and every channel has the same duration.

``vitaldb`` is an optional dependency (``pip install edgebp[datasets]``); it is imported only when
a ``.vital`` file is read. Nothing here touches the network: a local path is required.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgebp.io.checks import fs_validate
from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record, channel_name_canonical

log = logging.getLogger(__name__)

__all__ = ["read_vital", "vital_tracks", "VITAL_CHANNELS"]

# The canonical names read_vital can deliver from a VitalDB file's default track names.
VITAL_CHANNELS = ("ecg", "ppg", "abp")

# Track name (after the device) -> canonical name; ECG_<lead> is handled by _track_canonical.
# FEM (femoral arterial pressure) is deliberately not mapped to abp: it is a different site
# from the radial ART line, so taking it must be an explicit choice (tracks={"SNUADC/FEM": "abp"}).
_VITAL_TRACK_NAMES = {"PLETH": "ppg", "ART": "abp", "ABP": "abp", "ART1": "abp"}
_ECG_TRACK = re.compile(r"^ECG_?(?P<lead>[A-Za-z0-9]+)$")
# The 500 Hz analog converter of VitalDB's operating rooms is preferred over monitor re-exports.
_PREFERRED_DEVICE = "SNUADC"

_VITAL_TYPE_WAVE = 1  # vitaldb.utils.TYPE_WAV


def _vitaldb():
    try:
        import vitaldb  # noqa: PLC0415 - optional extra, imported on use only
    except ImportError:
        raise ImportError(
            "reading VitalDB .vital files needs the vitaldb package: pip install edgebp[datasets]"
        ) from None
    return vitaldb


def _track_canonical(track: str) -> tuple[str, str | None] | None:
    """``("ecg", "II")`` for ``ECG_II``, ``("ppg", None)`` for ``PLETH``...; None if not mapped."""
    m = _ECG_TRACK.match(track)
    if m:
        name, lead = channel_name_canonical(m.group("lead"))
        return ("ecg", lead) if name == "ecg" else None
    name = _VITAL_TRACK_NAMES.get(track.upper())
    return (name, None) if name else None


def _signature_check(path: Path) -> None:
    """A clear error for what vitaldb would silently read as an empty file (or print about)."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReadError(path, f"not a VitalDB .vital file (not gzip-compressed: {exc})") from None
    if head != b"VITA":
        raise ReadError(path, f"not a VitalDB .vital file (signature {head!r}, expected b'VITA')")


def _open(path: Path, track_names: list[str] | None, header_only: bool):
    vitaldb = _vitaldb()
    out = io.StringIO()
    try:
        # vitaldb prints (not raises) what goes wrong inside a packet and returns what it has read.
        with contextlib.redirect_stdout(out):
            vf = vitaldb.VitalFile(str(path), track_names=track_names, header_only=header_only)
    except Exception as exc:  # corrupt gzip members surface as OSError/EOFError/struct.error
        raise ReadError(path, f"cannot read the .vital file ({type(exc).__name__}: {exc})") from None
    printed = out.getvalue().strip()
    if printed:
        raise ReadError(path, f"cannot read the .vital file (vitaldb: {printed.splitlines()[-1]})")
    return vf


def vital_tracks(path: str | os.PathLike) -> dict[str, dict]:
    """The tracks of a ``.vital`` file: ``{"SNUADC/ART": {"type": "wave", "fs": 500.0, "units": "mmHg"}, ...}``.

    ``type`` is ``"wave"``, ``"numeric"`` or ``"string"``; ``fs`` is 0 for non-wave tracks.

    Raises
    ------
    ReadError
        A missing file, a file that is not gzip-compressed or lacks the ``VITA`` signature.
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError(p, "no such file" if not p.exists() else "not a regular file")
    _signature_check(p)
    vf = _open(p, None, header_only=True)
    kinds = {1: "wave", 2: "numeric", 5: "string"}
    return {
        dtname: {"type": kinds.get(trk.type, str(trk.type)), "fs": float(trk.srate), "units": trk.unit or ""}
        for dtname, trk in vf.trks.items()
    }


def _order_key(dtname: str, name: str) -> tuple[bool, int, str]:
    """SNUADC first, then ECG, PPG, ABP, others; by track name within that."""
    device = dtname.split("/", 1)[0] if "/" in dtname else ""
    rank = VITAL_CHANNELS.index(name) if name in VITAL_CHANNELS else len(VITAL_CHANNELS)
    return (device != _PREFERRED_DEVICE, rank, dtname)


def read_vital(
    path: str | os.PathLike,
    channels: Sequence[str] | None = VITAL_CHANNELS,
    tracks: Mapping[str, str] | None = None,
    subject_id: str | None = None,
) -> Record:
    """Read the ECG, PPG and ABP wave tracks of one VitalDB ``.vital`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A local ``.vital`` file (the open dataset names them by case id: ``0001.vital``).
    channels : sequence of str or None
        Canonical names to keep, a subset of :data:`VITAL_CHANNELS` (``("ecg", "ppg", "abp")``
        by default); ``None`` keeps every mapped wave track. A name not in that list is an
        error that lists the valid ones. A requested name the file has no track for is left
        out with a logged warning (``Record.has`` tells), not an error: VitalDB cases differ
        in their monitoring.
    tracks : mapping, optional
        Explicit ``{"DEVICE/TRACK": canonical name or ECG lead}`` for tracks the default map
        leaves out (``{"SNUADC/FEM": "abp"}``, ``{"SNUADC/ECG_V5": "V5"}``); these are read in
        addition to the default ones and are not filtered by ``channels``. A track that is not
        a wave track of the file is an error listing the file's wave tracks.
    subject_id : str, optional
        The subject id; by default the file stem (the case id). VitalDB's clinical table maps
        cases to patients (``subjectid``): one patient may have several cases, so pass it for
        subject-wise splits across cases of the same patient.

    Returns
    -------
    Record
        ``record_id`` the file stem, ``source`` the path. Default track map: ``*/ECG_<lead>``
        -> ``ecg`` with that lead, ``*/PLETH`` -> ``ppg``, ``*/ART`` and ``*/ABP`` -> ``abp``;
        channels of the SNUADC device come first, then ECG, PPG, ABP (``Record.get`` takes the
        first of a name). Each
        channel has its track's rate and units and spans the file's start to end, NaN where
        the track has no samples.

    Raises
    ------
    ReadError
        A missing file, not a ``.vital`` file, a file vitaldb cannot parse, no wave track to
        read, an unknown track in ``tracks``.
    ValueError
        A name in ``channels`` that is not one of :data:`VITAL_CHANNELS`.
    ImportError
        When the ``vitaldb`` package is missing (``pip install edgebp[datasets]``).

    Examples
    --------
    >>> import tempfile, numpy as np, vitaldb
    >>> from pathlib import Path
    >>> vf = vitaldb.VitalFile()
    >>> vf.dtstart = 1.6e9; vf.dtend = vf.dtstart + 4.0
    >>> ecg = np.sin(np.arange(2000) / 20).astype(np.float32)
    >>> _ = vf.add_track("SNUADC/ECG_II", [{"dt": vf.dtstart, "val": ecg}], srate=500, unit="mV")
    >>> path = Path(tempfile.mkdtemp()) / "0001.vital"
    >>> vf.to_vital(str(path))
    True
    >>> rec = read_vital(path)
    >>> rec.record_id, rec.names, rec.get("ecg").lead, rec.get("ecg").fs, rec.duration
    ('0001', ['ecg'], 'II', 500.0, 4.0)
    """
    p = Path(path)
    if channels is not None:
        channels = [channels] if isinstance(channels, str) else list(channels)
        unknown = [c for c in channels if c not in VITAL_CHANNELS]
        if unknown:
            raise ValueError(
                f"read_vital: unknown channel name(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(VITAL_CHANNELS)} (map other tracks with tracks=)"
            )
    if not p.is_file():
        raise ReadError(p, "no such file" if not p.exists() else "not a regular file")
    _signature_check(p)

    header = _open(p, None, header_only=True)
    waves = {dt: trk for dt, trk in header.trks.items() if trk.type == _VITAL_TYPE_WAVE}
    chosen: dict[str, tuple[str, str | None]] = {}
    for dtname in waves:
        mapped = _track_canonical(dtname.rsplit("/", 1)[-1])
        if mapped and (channels is None or mapped[0] in channels):
            chosen[dtname] = mapped
    for dtname, target in (tracks or {}).items():
        if dtname not in waves:
            raise ReadError(
                p,
                f"tracks names {dtname!r}, not a wave track of the file "
                f"(wave tracks: {', '.join(sorted(waves)) or 'none'})",
            )
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"read_vital: tracks[{dtname!r}] must be a channel name such as 'abp', got {target!r}")
        chosen[dtname] = channel_name_canonical(target)
    if not chosen:
        raise ReadError(
            p,
            f"no {'/'.join(channels or VITAL_CHANNELS)} wave track (wave tracks: {', '.join(sorted(waves)) or 'none'}; "
            "map one with tracks={'DEVICE/TRACK': 'ppg'})",
        )
    missing = [c for c in (channels or []) if c not in {name for name, _ in chosen.values()}]
    if missing:
        log.warning("%s: no %s track (wave tracks: %s)", p, "/".join(missing), ", ".join(sorted(waves)))

    vf = _open(p, sorted(chosen), header_only=False)
    out = []
    for dtname in sorted(chosen, key=lambda dt: _order_key(dt, chosen[dt][0])):
        trk = vf.trks.get(dtname)
        if trk is None:  # listed in the header pass but not read back: a damaged file
            raise ReadError(p, f"track {dtname!r} is listed but could not be read")
        fs = fs_validate(p, trk.srate, what=f"rate of track {dtname!r}")
        signal = np.asarray(vf.get_track_samples(dtname, 1.0 / fs), dtype=np.float64)
        if signal.size == 0 or np.isnan(signal).all():
            log.warning("%s: track %s has no samples", p, dtname)
        name, lead = chosen[dtname]
        out.append(Channel(name=name, signal=signal, fs=fs, units=trk.unit or "", label=dtname, lead=lead))
    record = Record(record_id=p.stem, channels=out, subject_id=subject_id, source=str(p))
    log.debug("read %s: %s, %.1f s", p, ", ".join(f"{c.name}[{c.label}]" for c in out), record.duration)
    return record
