"""Fault specifications for the device simulator: parse, schedule, and turn into masks.

Syntax
------
A comma-separated list of items; each item is one of

``NAME=RATE[+D]``
    Random faults. For the *per-frame* faults ``drop``, ``corrupt``, ``truncate`` and
    ``dup`` the rate is a probability in [0, 1] applied independently to every frame the
    device generates. For the *event* faults ``reset``, ``leadoff``, ``flat``, ``saturate``
    and ``motion`` it is an event rate in events per second (a Poisson process over the
    simulated time); each event lasts ``D`` when given, else a random duration drawn
    uniformly from the fault's default range (:data:`FAULT_DURATIONS`). For ``reset`` the
    duration is the reboot time (no samples are taken), default 0.5 s.
``NAME@T[+D]``
    A scheduled fault at time ``T`` after the start of the simulation, lasting ``D``.
    Per-frame faults without ``+D`` hit the one frame sampled at or after ``T``; with
    ``+D`` they hit every frame in ``[T, T+D)`` (``drop@30s+2s`` is a 2 s radio outage).
    ``leadoff``, ``flat``, ``saturate`` and ``motion`` need a duration. ``reset@T`` reboots
    at ``T`` (reboot time ``D``, default 0.5 s).

Times and durations take a unit: ``ms``, ``s`` (the default when none is given), ``min``
(or ``m``), ``h``. Example: ``drop=0.01,corrupt=1e-4,reset@120s,leadoff@30s+5s,motion=0.02``.

What each fault does
--------------------
=========  ===========================================================================
drop       the frame is generated (it uses a sequence number) but never transmitted
corrupt    one byte of the frame, on the wire, is replaced by a different random byte
truncate   the frame is cut after a random number of bytes (at least one byte is lost)
dup        the frame is transmitted twice
reset      the firmware reboots: bytes still in the UART buffer are lost (a frame being
           sent is cut), no samples during the reboot, then the header is sent again and
           sequence numbers restart at 0
saturate   every channel's input is driven beyond the top rail (reads full scale)
leadoff    ECG electrodes off: the ECG goes to the rail (or flat at mid-scale, see
           ``leadoff_mode``); without an ECG channel, the PPG sensor is off the skin and
           reads ambient light only
motion     motion-artefact burst: band-limited baseline swings on the PPG (several times
           the pulse amplitude) and baseline wander plus muscle noise on the ECG
flat       the front-end freezes: every channel repeats the code sampled just before
=========  ===========================================================================

Examples
--------
>>> spec = faults_parse("drop=0.01,reset@2min,leadoff@30s+5s")
>>> [(r.name, r.rate) for r in spec.rates]
[('drop', 0.01)]
>>> [(e.name, e.start_s, e.duration_s) for e in spec.events]
[('reset', 120.0, None), ('leadoff', 30.0, 5.0)]
>>> faults_parse("wobble=1")
Traceback (most recent call last):
...
ValueError: --faults item 'wobble=1': unknown fault 'wobble'; valid: drop, corrupt, truncate, dup, reset, saturate, leadoff, motion, flat
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

FRAME_FAULTS = ("drop", "corrupt", "truncate", "dup")
EVENT_FAULTS = ("reset", "saturate", "leadoff", "motion", "flat")
STATE_FAULTS = ("saturate", "leadoff", "motion", "flat")
FAULT_NAMES = FRAME_FAULTS + EVENT_FAULTS

# Bits of the truth file's fault_bits column. "reboot" marks ticks with no sample (device
# rebooting after a reset); "source_gap" marks samples where the source recording had no value.
FAULT_BITS: dict[str, int] = {
    "drop": 1, "corrupt": 2, "truncate": 4, "dup": 8, "reboot": 16,
    "saturate": 32, "leadoff": 64, "motion": 128, "flat": 256, "source_gap": 512,
}

# Default (min, max) duration in seconds of random events without "+D".
FAULT_DURATIONS: dict[str, tuple[float, float]] = {
    "reset": (0.5, 0.5),
    "saturate": (0.5, 3.0),
    "leadoff": (2.0, 10.0),
    "motion": (1.0, 5.0),
    "flat": (1.0, 5.0),
}
DEFAULT_REBOOT_S = 0.5

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_TIME_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class FaultRate:
    """A random fault: per-frame probability or events per second (see the module doc)."""

    name: str
    rate: float
    duration_s: float | None = None


@dataclass(frozen=True)
class FaultEvent:
    """A fault at a given time (s from the simulation start), lasting ``duration_s``."""

    name: str
    start_s: float
    duration_s: float | None = None

    @property
    def end_s(self) -> float:
        """End of the interval (equal to the start for an instantaneous fault)."""
        return self.start_s + (self.duration_s or 0.0)


@dataclass(frozen=True)
class FaultSpec:
    """A parsed ``--faults`` specification."""

    rates: tuple[FaultRate, ...] = ()
    events: tuple[FaultEvent, ...] = ()
    text: str = ""

    def rate(self, name: str) -> float:
        """Summed rate of a fault (0.0 when absent)."""
        return float(sum(r.rate for r in self.rates if r.name == name))

    def to_dict(self) -> dict:
        """Plain dict, for the summary JSON."""
        return {
            "text": self.text,
            "rates": [{"name": r.name, "rate": r.rate, "duration_s": r.duration_s} for r in self.rates],
            "events": [{"name": e.name, "start_s": e.start_s, "duration_s": e.duration_s} for e in self.events],
        }


@dataclass
class FaultSchedule:
    """Concrete fault events over one simulation (random ones drawn), ready to be applied."""

    events: list[FaultEvent] = field(default_factory=list)
    frame_rates: dict[str, float] = field(default_factory=dict)


def _time_parse(text: str, item: str, what: str) -> float:
    m = _TIME_RE.match(text.lower())
    if not m or m.group(2) not in ("", *_UNITS):
        raise ValueError(
            f"--faults item {item!r}: bad {what} {text!r}; use a number with an optional unit "
            f"({', '.join(_UNITS)}), e.g. 30s or 2min"
        )
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0)


def faults_parse(text: str | None) -> FaultSpec:
    """Parse a ``--faults`` specification (syntax in the module docstring).

    Parameters
    ----------
    text : str or None
        E.g. ``"drop=0.01,corrupt=1e-4,reset@120s,leadoff@30s+5s"``; empty/None = no faults.

    Returns
    -------
    FaultSpec

    Raises
    ------
    ValueError
        Naming the bad item and, for an unknown fault, listing the valid names.

    Examples
    --------
    >>> faults_parse("motion=0.02+3s").rates[0]
    FaultRate(name='motion', rate=0.02, duration_s=3.0)
    >>> faults_parse("drop=1.5")
    Traceback (most recent call last):
    ...
    ValueError: --faults item 'drop=1.5': drop is a per-frame probability and must be in [0, 1], got 1.5
    """
    rates: list[FaultRate] = []
    events: list[FaultEvent] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        m = re.match(r"^([A-Za-z_]+)\s*([=@])\s*(.+)$", item)
        if not m:
            raise ValueError(
                f"--faults item {item!r}: expected NAME=RATE[+D] or NAME@TIME[+D] "
                f"(valid names: {', '.join(FAULT_NAMES)})"
            )
        name, op, rest = m.group(1).lower(), m.group(2), m.group(3)
        if name not in FAULT_NAMES:
            raise ValueError(f"--faults item {item!r}: unknown fault {name!r}; valid: {', '.join(FAULT_NAMES)}")
        value_text, plus, dur_text = rest.partition("+")
        # "1e+3" style exponents would be split at the "+": rejoin them.
        if plus and re.search(r"[eE]$", value_text.strip()):
            exp, plus2, dur_text = dur_text.partition("+")
            value_text, plus = value_text + "+" + exp, plus2
        duration = _time_parse(dur_text, item, "duration") if plus else None
        if duration is not None and duration <= 0:
            raise ValueError(f"--faults item {item!r}: duration must be positive")
        if op == "=":
            try:
                rate = float(value_text)
            except ValueError:
                raise ValueError(f"--faults item {item!r}: rate {value_text!r} is not a number") from None
            if not np.isfinite(rate) or rate < 0:
                raise ValueError(f"--faults item {item!r}: rate must be a finite number >= 0, got {value_text}")
            if name in FRAME_FAULTS:
                if rate > 1:
                    raise ValueError(
                        f"--faults item {item!r}: {name} is a per-frame probability and must be in [0, 1], got {rate:g}"
                    )
                if duration is not None:
                    raise ValueError(f"--faults item {item!r}: a per-frame probability takes no duration")
            rates.append(FaultRate(name, rate, duration))
        else:
            start = _time_parse(value_text, item, "time")
            if name in STATE_FAULTS and duration is None:
                raise ValueError(f"--faults item {item!r}: {name} needs a duration, e.g. {name}@{value_text}+5s")
            events.append(FaultEvent(name, start, duration))
    return FaultSpec(tuple(rates), tuple(events), text or "")


def fault_rng(seed: int, *keys: str) -> np.random.Generator:
    """An independent random stream per purpose, so that adding one fault does not move the others.

    Examples
    --------
    >>> float(fault_rng(1, "drop").random()) == float(fault_rng(1, "drop").random())
    True
    """
    return np.random.default_rng([int(seed) & 0xFFFFFFFF] + [zlib.crc32(k.encode()) for k in keys])


def faults_schedule(spec: FaultSpec, duration_s: float, seed: int = 0) -> FaultSchedule:
    """Draw the random event faults of ``spec`` over ``[0, duration_s)`` and list every event.

    Parameters
    ----------
    spec : FaultSpec
        From :func:`faults_parse`.
    duration_s : float
        Length of the simulation (device time, s).
    seed : int
        Same seed, same schedule.

    Returns
    -------
    FaultSchedule
        ``events`` sorted by start time (scheduled and drawn); ``frame_rates`` the per-frame
        probabilities by name.

    Examples
    --------
    >>> s = faults_schedule(faults_parse("reset=0.01,flat@5s+1s"), 600.0, seed=3)
    >>> s.events == faults_schedule(faults_parse("reset=0.01,flat@5s+1s"), 600.0, seed=3).events
    True
    >>> all(e.duration_s == 0.5 for e in s.events if e.name == "reset")
    True
    """
    events = list(spec.events)
    frame_rates: dict[str, float] = {}
    for r in spec.rates:
        if r.name in FRAME_FAULTS:
            # independent per-frame probabilities combine as 1 - prod(1 - p)
            prev = frame_rates.get(r.name, 0.0)
            frame_rates[r.name] = 1.0 - (1.0 - prev) * (1.0 - r.rate)
            continue
        if r.rate <= 0:
            continue
        rng = fault_rng(seed, "event", r.name, repr(r.rate))
        t = 0.0
        while True:
            t += rng.exponential(1.0 / r.rate)
            if t >= duration_s:
                break
            lo, hi = FAULT_DURATIONS[r.name]
            d = r.duration_s if r.duration_s is not None else float(rng.uniform(lo, hi))
            events.append(FaultEvent(r.name, float(t), d))
    events.sort(key=lambda e: (e.start_s, e.name))
    return FaultSchedule(events, frame_rates)


def faults_state_mask(events: list[FaultEvent], name: str, t: np.ndarray) -> np.ndarray:
    """Frames (at device times ``t``) inside any ``[start, start+D)`` interval of fault ``name``.

    Examples
    --------
    >>> t = np.arange(10) * 0.5
    >>> faults_state_mask([FaultEvent("flat", 1.0, 1.5)], "flat", t).nonzero()[0].tolist()
    [2, 3, 4]
    """
    mask = np.zeros(len(t), dtype=bool)
    for e in events:
        if e.name != name or not e.duration_s:
            continue
        i0, i1 = np.searchsorted(t, [e.start_s, e.end_s], side="left")
        mask[i0:i1] = True
    return mask


def faults_frame_mask(schedule: FaultSchedule, name: str, t: np.ndarray, seed: int,
                      eligible: np.ndarray | None = None) -> np.ndarray:
    """Frames hit by per-frame fault ``name``: random draws plus scheduled instants/intervals.

    ``eligible`` (bool per frame) restricts the result to frames that exist (not rebooting).
    One uniform draw per frame, from a stream of its own, so the draw for frame ``k`` does not
    depend on the other faults.

    Examples
    --------
    >>> sch = faults_schedule(faults_parse("drop@1s"), 10.0)
    >>> faults_frame_mask(sch, "drop", np.arange(10) * 0.4, seed=0).nonzero()[0].tolist()
    [3]
    """
    n = len(t)
    p = schedule.frame_rates.get(name, 0.0)
    mask = fault_rng(seed, "frame", name).random(n) < p if p > 0 else np.zeros(n, dtype=bool)
    for e in schedule.events:
        if e.name != name:
            continue
        if e.duration_s:
            i0, i1 = np.searchsorted(t, [e.start_s, e.end_s], side="left")
            mask[i0:i1] = True
        else:
            idx = np.searchsorted(t, e.start_s, side="left")
            if eligible is not None:
                while idx < n and not eligible[idx]:
                    idx += 1
            if idx < n:
                mask[idx] = True
    if eligible is not None:
        mask &= eligible
    return mask
