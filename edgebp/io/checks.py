"""Checks shared by the readers: a plausible sampling rate and a user's channel map."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from edgebp.io.errors import ReadError
from edgebp.record import Channel, Record, channel_name_canonical

# Same bounds as edgebp.record.Channel: below 0.1 Hz or above 100 kHz is a typo, not a signal.
FS_MIN = 0.1
FS_MAX = 100_000.0


def fs_validate(path: str | os.PathLike, fs: object, what: str = "sampling rate") -> float:
    """Return ``fs`` as a float, or raise :class:`ReadError` naming ``path`` when it is absurd.

    Examples
    --------
    >>> fs_validate("x.csv", 125)
    125.0
    >>> fs_validate("x.csv", -1)
    Traceback (most recent call last):
    ...
    edgebp.io.errors.ReadError: x.csv: sampling rate -1 Hz is absurd (expected 0.1 to 100000 Hz)
    """
    try:
        value = float(fs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ReadError(path, f"{what} {fs!r} is not a number") from None
    if not math.isfinite(value) or not (FS_MIN <= value <= FS_MAX):
        raise ReadError(path, f"{what} {fs!r} Hz is absurd (expected {FS_MIN:g} to {FS_MAX:g} Hz)")
    return value


def channel_rename(channel: Channel, target: str) -> Channel:
    """The same channel under the canonical name ``target`` (original label and units kept).

    ``target`` may be a canonical name (``"ppg"``) or an ECG lead (``"II"``); mapping a column
    to ``"ecg"`` keeps the lead its own label names, if any.
    """
    name, lead = channel_name_canonical(target)
    if name == "ecg" and lead is None:
        own_name, own_lead = channel_name_canonical(channel.label)
        lead = own_lead if own_name == "ecg" else None
    return Channel(name=name, signal=channel.signal, fs=channel.fs, units=channel.units, label=channel.label, lead=lead)


def channel_map_apply(path: str | os.PathLike, record: Record, channel_map: Mapping[str, str] | None) -> Record:
    """Rename channels by their original label: ``{"IR": "ppg", "chest": "II"}``.

    A key matches a label exactly, else case-insensitively. A key that matches no channel is
    an error (a silent no-op would hide a typo).
    """
    if not channel_map:
        return record
    labels = [c.label for c in record.channels]
    targets: dict[int, str] = {}
    unknown = []
    for key, target in channel_map.items():
        if not isinstance(target, str) or not target.strip():
            raise ReadError(path, f"channel_map[{key!r}] must be a channel name such as 'ppg', got {target!r}")
        hits = [i for i, lab in enumerate(labels) if lab == key]
        if not hits:
            hits = [i for i, lab in enumerate(labels) if lab.strip().lower() == str(key).strip().lower()]
        if not hits:
            unknown.append(key)
        for i in hits:
            targets[i] = target
    if unknown:
        raise ReadError(
            path,
            f"channel_map names channel(s) not in the file: {', '.join(map(repr, unknown))} "
            f"(the file has: {', '.join(map(repr, labels)) or 'none'})",
        )
    channels = [channel_rename(c, targets[i]) if i in targets else c for i, c in enumerate(record.channels)]
    return Record(record.record_id, channels, subject_id=record.subject_id, source=record.source)
