"""The one record type of edgebp: named channels, each with its own rate and units.

Every reader (WFDB, UCI ``part_N.mat``, CSV) and the synthetic cohort produce a
:class:`Record`; everything downstream (labels, quality, training, the simulator) consumes it.

Examples
--------
>>> import numpy as np
>>> from edgebp.record import Channel, Record
>>> rec = Record("r1", [Channel.from_label("PLETH", np.zeros(250), fs=125.0, units="NU")])
>>> rec.get("ppg").label
'PLETH'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

CANONICAL_NAMES = ("ecg", "ppg", "abp", "resp")

# Explicit maps only: a label that is not listed keeps its own (lower-cased) name, never a guess.
_PPG_LABELS = {"pleth", "ppg", "ppg_ir", "ir", "red", "ppg_red", "ppg_green", "green"}
_ABP_LABELS = {"abp", "art", "art1", "abp1", "bp", "arterial", "ibp", "abpraw"}
_RESP_LABELS = {"resp", "respiration", "imp", "resp_imp"}
_ECG_LEADS = {
    "i", "ii", "iii", "avr", "avl", "avf", "v", "v1", "v2", "v3", "v4", "v5", "v6",
    "mlii", "mli", "mliii", "mcl", "mcl1", "mv", "ecg", "ecg1", "ecg2", "ekg",
}


def channel_name_canonical(label: str) -> tuple[str, str | None]:
    """Map a channel label from a file to ``(canonical_name, ecg_lead)``.

    Parameters
    ----------
    label : str
        The label as written in the file (``"PLETH"``, ``"II"``, ``"ABP"``...).

    Returns
    -------
    tuple
        ``("ppg", None)``, ``("ecg", "II")``, ``("abp", None)``, ``("resp", None)``, or
        ``(label.lower(), None)`` for a label edgebp does not know.

    Examples
    --------
    >>> channel_name_canonical("Pleth")
    ('ppg', None)
    >>> channel_name_canonical("MLII")
    ('ecg', 'MLII')
    >>> channel_name_canonical("PAP")
    ('pap', None)
    """
    key = re.sub(r"[\s\-]+", "", label.strip()).lower()
    if key in _PPG_LABELS:
        return "ppg", None
    if key in _ABP_LABELS:
        return "abp", None
    if key in _RESP_LABELS:
        return "resp", None
    if key in _ECG_LEADS:
        lead = None if key.startswith(("ecg", "ekg")) else label.strip()
        return "ecg", lead
    return key or label, None


@dataclass
class Channel:
    """One signal: samples (float64, NaN marks a gap), its own rate and units."""

    name: str
    signal: np.ndarray
    fs: float
    units: str = ""
    label: str = ""
    lead: str | None = None

    def __post_init__(self) -> None:
        self.signal = np.asarray(self.signal, dtype=np.float64)
        if self.signal.ndim != 1:
            raise ValueError(f"channel {self.label or self.name!r}: signal must be 1-D, got shape {self.signal.shape}")
        if not np.isfinite(self.fs) or not (0.1 <= float(self.fs) <= 100_000.0):
            raise ValueError(f"channel {self.label or self.name!r}: sampling rate {self.fs!r} Hz is not plausible (0.1..100000)")
        self.fs = float(self.fs)
        if not self.label:
            self.label = self.name

    @classmethod
    def from_label(cls, label: str, signal: np.ndarray, fs: float, units: str = "") -> "Channel":
        """Build a channel from a file's label, mapping it to its canonical name."""
        name, lead = channel_name_canonical(label)
        return cls(name=name, signal=signal, fs=fs, units=units, label=label, lead=lead)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.signal) / self.fs

    @property
    def time(self) -> np.ndarray:
        """Sample times in seconds from the record start."""
        return np.arange(len(self.signal)) / self.fs


@dataclass
class Record:
    """A recording: channels by canonical name plus record/subject id and source."""

    record_id: str
    channels: list[Channel] = field(default_factory=list)
    subject_id: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.subject_id is None:
            self.subject_id = self.record_id

    @property
    def names(self) -> list[str]:
        """Canonical names of the channels, in file order (repeats possible, e.g. two ECG leads)."""
        return [c.name for c in self.channels]

    def has(self, name: str) -> bool:
        """True when a channel of that canonical name exists."""
        return any(c.name == name for c in self.channels)

    def all(self, name: str) -> list[Channel]:
        """Every channel of that canonical name (e.g. all ECG leads)."""
        return [c for c in self.channels if c.name == name]

    def get(self, name: str, lead: str | None = None) -> Channel:
        """The channel of that canonical name; for ECG lead II is preferred unless ``lead`` is given.

        Raises
        ------
        KeyError
            Naming the record, the channel asked for and the ones it has.
        """
        found = self.all(name)
        if lead is not None:
            found = [c for c in found if (c.lead or "").lower() == lead.lower()]
        if not found:
            raise KeyError(
                f"record {self.record_id!r} has no {name!r} channel"
                + (f" with lead {lead!r}" if lead else "")
                + f" (it has: {', '.join(f'{c.name}[{c.label}]' for c in self.channels) or 'none'})"
            )
        if name == "ecg" and lead is None:
            for c in found:
                if (c.lead or "").upper() in ("II", "MLII"):
                    return c
        return found[0]

    @property
    def duration(self) -> float:
        """Length of the longest channel in seconds."""
        return max((c.duration for c in self.channels), default=0.0)
