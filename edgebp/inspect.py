"""``edgebp data inspect``: what in a set of recordings is usable for blood-pressure work.

For every record: its channels, rates and duration, the share of usable signal per channel
(:mod:`edgebp.processing.quality`), beat counts, SBP/DBP from the valid arterial beats, and a
verdict. A record is usable for BP work when its ABP is usable for at least
``MIN_USABLE_ABP`` of the time with at least ``MIN_VALID_BEATS`` valid beats, and at least one
PPG or ECG channel is usable for ``MIN_USABLE_INPUT`` of the time; the verdict names what is
missing otherwise.

Examples
--------
>>> import numpy as np
>>> from edgebp.record import Channel, Record
>>> fs = 125.0
>>> ph = (np.arange(int(60 * fs)) / fs * 1.2) % 1.0
>>> abp = 80 + 40 * np.exp(-((ph - 0.2) / 0.08) ** 2) + 8 * (1 - ph)
>>> rec = Record("demo", [Channel.from_label("ABP", abp, fs, "mmHg"),
...                       Channel.from_label("PLETH", np.zeros_like(abp), fs, "NU")])
>>> info = inspect_record(rec)
>>> info["verdict"], info["missing"]
('unusable', ['no usable PPG or ECG (ppg[PLETH] 0 % usable: flat)'])
>>> info["abp"]["sbp"]["median"], info["abp"]["dbp"]["median"]
(126.4, 80.0)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

from edgebp.processing.beats import abp_beats, ecg_findpeaks, ppg_findpeaks
from edgebp.processing.quality import QualityMask, abp_quality, ecg_quality, ppg_quality
from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

__all__ = ["inspect_record", "inspect_command", "MIN_USABLE_ABP", "MIN_USABLE_INPUT", "MIN_VALID_BEATS"]

MIN_USABLE_ABP = 0.5
MIN_USABLE_INPUT = 0.5
MIN_VALID_BEATS = 10


def _tag(c: Channel) -> str:
    return f"{c.name}[{c.label}]"


def _why(q: QualityMask, n: int = 2) -> str:
    """The main reasons as 'flat 60 %, damped 12 %'."""
    total = max(len(q.mask), 1)
    return ", ".join(f"{r} {100.0 * q.reasons[r] / total:.0f} %" for r in q.top_reasons(n))


def _stats(v: np.ndarray) -> dict | None:
    if len(v) == 0:
        return None
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"median": round(float(p50), 1), "p5": round(float(p5), 1), "p95": round(float(p95), 1),
            "min": round(float(v.min()), 1), "max": round(float(v.max()), 1)}


def _channel_entry(c: Channel) -> dict:
    return {"name": c.name, "label": c.label, "lead": c.lead, "fs": c.fs, "units": c.units,
            "duration_s": round(c.duration, 3)}


def _quality_entry(q: QualityMask) -> dict:
    return {"usable": round(q.usable_fraction, 4),
            "reasons": {k: round(v / max(len(q.mask), 1), 4) for k, v in q.reasons.items() if v > 0}}


def inspect_record(record: Record) -> dict:
    """Usability of one record for BP work, as a JSON-ready dict.

    Parameters
    ----------
    record : Record

    Returns
    -------
    dict
        ``record_id``, ``subject_id``, ``source``, ``duration_s``; ``channels`` (one entry per
        channel: name, label, lead, fs, units, duration, and for ECG/PPG/ABP ``usable``
        fraction, ``reasons`` (fraction of samples per reason) and ``beats``); ``abp`` (the
        assessed arterial channel: ``beats``, ``valid_beats``, ``hr_bpm``, ``sbp``/``dbp``
        median, 5-95 % and min-max over valid beats in usable signal), ``ppg``/``ecg`` (label
        and usable fraction of the best channel of each kind), ``usable_for`` (subset of
        ``["ppg+abp", "ecg+abp"]``), ``verdict`` (``"usable"``/``"unusable"``) and ``missing``
        (what keeps it from being usable, in words).
    """
    out: dict = {"record_id": record.record_id, "subject_id": record.subject_id, "source": record.source,
                 "duration_s": round(record.duration, 3), "channels": []}
    entries: dict[int, dict] = {}
    for k, c in enumerate(record.channels):
        entries[k] = _channel_entry(c)
        out["channels"].append(entries[k])

    def fail(k: int, exc: Exception) -> None:
        entries[k].update({"usable": 0.0, "reasons": {}, "error": str(exc)})
        log.warning("record %s, channel %s: not assessed: %s", record.record_id, record.channels[k].label, exc)

    # ECG leads first: the best one serves as the beat-count reference of PPG and ABP.
    best_ecg: tuple[float, int] | None = None
    for k, c in enumerate(record.channels):
        if c.name != "ecg":
            continue
        try:
            q = ecg_quality(c.signal, c.fs)
            entries[k].update(_quality_entry(q))
            entries[k]["beats"] = int(len(ecg_findpeaks(c.signal, c.fs)))
        except ValueError as exc:
            fail(k, exc)
            continue
        if best_ecg is None or q.usable_fraction > best_ecg[0]:
            best_ecg = (q.usable_fraction, k)
    ref = record.channels[best_ecg[1]] if best_ecg and best_ecg[0] > 0 else None
    ecg_kw = {"ecg": ref.signal, "ecg_fs": ref.fs} if ref is not None else {}

    best_ppg: tuple[float, int] | None = None
    best_abp: tuple[float, int, dict] | None = None
    for k, c in enumerate(record.channels):
        try:
            if c.name == "ppg":
                q = ppg_quality(c.signal, c.fs, **ecg_kw)
                entries[k].update(_quality_entry(q))
                entries[k]["beats"] = int(len(ppg_findpeaks(c.signal, c.fs)[1]))
                if best_ppg is None or q.usable_fraction > best_ppg[0]:
                    best_ppg = (q.usable_fraction, k)
            elif c.name == "abp":
                b = abp_beats(c.signal, c.fs)
                q = abp_quality(c.signal, c.fs, beats=b, **ecg_kw)
                entries[k].update(_quality_entry(q))
                entries[k]["beats"] = int(len(b))
                use = b.valid & q.mask[np.clip(b.i_sys, 0, len(q.mask) - 1)] if len(b) else np.zeros(0, bool)
                info = {"label": c.label, "usable": round(q.usable_fraction, 4), "beats": int(len(b)),
                        "valid_beats": int(use.sum()),
                        "hr_bpm": round(float(60.0 / np.median(b.interval[use])), 1) if use.any() else None,
                        "sbp": _stats(b.sbp[use]), "dbp": _stats(b.dbp[use]), "why": _why(q)}
                if best_abp is None or q.usable_fraction > best_abp[0]:
                    best_abp = (q.usable_fraction, k, info)
        except ValueError as exc:
            fail(k, exc)

    out["abp"] = best_abp[2] if best_abp else None
    out["ppg"] = ({"label": record.channels[best_ppg[1]].label, "usable": round(best_ppg[0], 4)}
                  if best_ppg else None)
    out["ecg"] = ({"label": record.channels[best_ecg[1]].label, "usable": round(best_ecg[0], 4)}
                  if best_ecg else None)

    missing: list[str] = []
    abp_ok = False
    if best_abp is None:
        missing.append("no ABP channel")
    else:
        info = best_abp[2]
        abp_ok = info["usable"] >= MIN_USABLE_ABP and info["valid_beats"] >= MIN_VALID_BEATS
        if not abp_ok:
            why = info["why"] or "no valid beats"
            missing.append(f"no usable ABP (abp[{info['label']}] {100 * info['usable']:.0f} % usable: {why})")
    ppg_ok = best_ppg is not None and best_ppg[0] >= MIN_USABLE_INPUT
    ecg_ok = best_ecg is not None and best_ecg[0] >= MIN_USABLE_INPUT
    if not (ppg_ok or ecg_ok):
        parts = []
        for k, c in enumerate(record.channels):
            if c.name in ("ppg", "ecg"):
                e = entries[k]
                why = e.get("error") or ", ".join(
                    r for r, _ in sorted(e.get("reasons", {}).items(), key=lambda kv: -kv[1])[:2])
                parts.append(f"{_tag(c)} {100 * e.get('usable', 0.0):.0f} % usable: {why or 'no beats'}")
        missing.append("no usable PPG or ECG" + (f" ({'; '.join(parts)})" if parts else " channel"))
    out["usable_for"] = [name for name, ok in (("ppg+abp", ppg_ok), ("ecg+abp", ecg_ok)) if ok and abp_ok]
    out["verdict"] = "usable" if out["usable_for"] else "unusable"
    out["missing"] = missing
    return out


def _format_text(info: dict) -> str:
    """The human-readable block of one record."""
    chans = ", ".join(f"{c['name']}[{c['label']}] {c['fs']:g} Hz" for c in info["channels"])
    lines = [f"{info['record_id']}  {info['duration_s']:.1f} s  {chans or 'no channels'}"]
    for c in info["channels"]:
        if "usable" not in c:
            continue
        unit = {"ecg": "R peaks", "ppg": "pulses", "abp": "beats"}.get(c["name"], "beats")
        top = sorted(c["reasons"].items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{r} {100 * v:.0f} %" for r, v in top)
        extra = f"  error: {c['error']}" if "error" in c else (f"  ({why})" if why else "")
        lines.append(f"  {c['name'] + '[' + c['label'] + ']':<14} usable {100 * c['usable']:5.1f} %"
                     f"  {unit} {c.get('beats', 0)}{extra}")
    a = info["abp"]
    if a and a["sbp"]:
        s, d = a["sbp"], a["dbp"]
        lines.append(f"  BP (valid beats {a['valid_beats']}, HR {a['hr_bpm']} bpm): "
                     f"SBP median {s['median']:.0f} (5-95 % {s['p5']:.0f}-{s['p95']:.0f}) mmHg, "
                     f"DBP median {d['median']:.0f} (5-95 % {d['p5']:.0f}-{d['p95']:.0f}) mmHg")
    verdict = info["verdict"]
    if info["usable_for"]:
        verdict += " for " + ", ".join(info["usable_for"])
    if info["missing"]:
        verdict += ("; " if info["usable_for"] else ": ") + "; ".join(info["missing"])
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)


def _summary(infos: list[dict]) -> dict:
    return {"records": len(infos),
            "usable_ppg_abp": sum("ppg+abp" in i["usable_for"] for i in infos),
            "usable_ecg_abp": sum("ecg+abp" in i["usable_for"] for i in infos),
            "usable_any": sum(bool(i["usable_for"]) for i in infos)}


@click.command(name="inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per record.")
@click.option("--fs", type=float, default=None, help="Sampling rate (Hz) for CSV files (WFDB, UCI, PulseDB and .vital files state their own).")
def inspect_command(path: Path, as_json: bool, fs: float | None) -> None:
    """Tell which recordings are usable for blood-pressure work, and why not.

    For each record: channels (canonical[label]), rates, duration, share of usable signal per
    channel, beat counts, SBP/DBP median and 5-95 % range from valid arterial beats, and a
    verdict. Usable means ABP usable >= 50 % of the time (>= 10 valid beats) and a PPG or ECG
    usable >= 50 %. Ends with a summary line. Progress goes to stderr.

    \b
    Examples:
        edgebp data inspect ../shared/data/challenge2015
        edgebp data inspect ../shared/data/challenge2015/a170s --json
        edgebp data inspect log.csv --fs 125
        edgebp data inspect 0001.vital                    (VitalDB; needs edgebp[datasets])
        edgebp data inspect VitalDB_CalBased_Test_Subset.mat   (PulseDB: one record per 10-s segment)
        edgebp data inspect p04/p042930                   (MIMIC-III matched, multi-segment)
    """
    from edgebp.io import read_records

    records = read_records(path) if fs is None else read_records(path, fs=fs)
    progress = as_json or not sys.stdout.isatty()
    infos: list[dict] = []
    for n, record in enumerate(records, start=1):
        t0 = time.perf_counter()
        info = inspect_record(record)
        infos.append(info)
        if progress:
            click.echo(f"[{n}] {info['record_id']}: {info['verdict']} ({time.perf_counter() - t0:.1f} s)", err=True)
        if not as_json:
            click.echo(_format_text(info))
    s = _summary(infos)
    line = (f"{s['records']} records, {s['usable_ppg_abp']} usable for ppg+abp, "
            f"{s['usable_ecg_abp']} for ecg+abp ({s['records'] - s['usable_any']} unusable)")
    if as_json:
        click.echo(json.dumps(infos, indent=1))
        click.echo(line, err=True)
    else:
        click.echo(line)
