"""The built-in synthetic cohort: subjects as edgebp Records and as WFDB records on disk.

Synthetic data are not clinical evidence. They exist so that the whole pipeline (training,
export, streaming, the device simulator) can run end to end with a known truth; only results
on real recordings say anything about blood pressure.

Each subject's parameters come from its own generator seeded by ``(seed, subject)``, so
subject ``k`` is the same whatever the cohort size. The clean waveforms
(:mod:`edgebp.synth.waveforms`) get realistic disturbances here: baseline wander, motion
bursts (mostly PPG), mains pick-up on the ECG, white noise and ADC quantisation. The ABP
stays clean but for quantisation: it is the label.

Ground truth (per-beat SBP/DBP/MAP, PEP, PTT, step changes, motion bursts) comes with
:func:`synth_subject`; the cohort writer stores it beside the records (``cohort.json`` and
``truth/<record>.csv``).

Examples
--------
>>> rec = synth_record(3, minutes=0.5, seed=0)
>>> sorted(rec.names), rec.get("abp").fs
(['abp', 'ecg', 'ppg', 'resp'], 250.0)
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgebp.record import Channel, Record
from edgebp.synth.params import SubjectParams, subject_params_draw
from edgebp.synth.physiology import Beats, beats_simulate, trajectory_simulate
from edgebp.synth.waveforms import abp_render, ecg_render, ppg_render

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
# The built-in default cohort (`--data synth`): more subjects beat longer records, since what
# must generalise is the across-subject mapping.
DEFAULT_SUBJECTS = 64
DEFAULT_MINUTES = 1.5
NOTICE = "synthetic: not clinical evidence"
# ADC models (range, bits): ECG 12 bit over +-5 mV, PPG 16 bit over 0..8 NU, ABP 0.01 mmHg steps
_ECG_ADC = (-5.0, 5.0, 12)
_PPG_ADC = (0.0, 8.0, 16)
_ABP_LSB = 0.01


def _rng(seed: int, subject: int, stream: str) -> np.random.Generator:
    key = hashlib.sha256(f"edgebp-synth:{GENERATOR_VERSION}:{seed}:{subject}:{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def _quantize(x: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    step = (hi - lo) / (2**bits - 1)
    return np.clip(np.round((x - lo) / step), 0, 2**bits - 1) * step + lo


def _wander(rng: np.random.Generator, t: np.ndarray, amp: float, resp: np.ndarray | None = None) -> np.ndarray:
    """Baseline wander: a few slow sinusoids plus breathing, amplitude ``amp``."""
    w = np.zeros_like(t)
    for f in rng.uniform(0.03, 0.3, size=3):
        w += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    w *= amp / 2.0
    if resp is not None:
        w += 0.4 * amp * resp
    return w


def _motion(rng: np.random.Generator, t: np.ndarray, rate_per_min: float,
            scale: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Motion-artefact bursts (0.5-3 s of band-limited jerks) and their (start, end) times in s."""
    out = np.zeros_like(t)
    spans: list[tuple[float, float]] = []
    duration = t[-1] - t[0] if len(t) else 0.0
    n = rng.poisson(rate_per_min * duration / 60.0)
    fs = 1.0 / (t[1] - t[0]) if len(t) > 1 else 1.0
    for _ in range(n):
        t0 = rng.uniform(t[0], t[-1])
        d = rng.uniform(0.5, 3.0)
        sel = (t >= t0) & (t < t0 + d)
        k = int(sel.sum())
        if k < 4:
            continue
        jerk = np.cumsum(rng.normal(size=k)) / np.sqrt(k)
        jerk += 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * np.arange(k) / fs)
        env = np.sin(np.linspace(0, np.pi, k))
        out[sel] += scale * rng.uniform(1.0, 4.0) * jerk * env
        idx = np.flatnonzero(sel)
        spans.append((float(t[idx[0]]), float(t[idx[-1]] + 1.0 / fs)))
    return out, spans


@dataclass
class SynthSubject:
    """A synthetic subject: its record and everything known about how it was made.

    Attributes
    ----------
    record : Record
        ECG lead II (mV), PPG (NU), ABP (mmHg), RESP (NU), exactly as :func:`synth_record`.
    params : SubjectParams
        The subject's physiological and measurement parameters.
    beats : Beats
        Per-beat ground truth; includes beats just outside the record, select with
        ``beats.within(0, record.duration)``.
    motion_ppg, motion_ecg : list of (start_s, end_s)
        Motion-artefact bursts added to the PPG and to the ECG.
    """

    record: Record
    params: SubjectParams
    beats: Beats
    motion_ppg: list = field(default_factory=list)
    motion_ecg: list = field(default_factory=list)

    def summary(self) -> dict:
        """True mean and range of HR, SBP, DBP and MAP over the beats inside the record.

        Examples
        --------
        >>> s = synth_subject(1, minutes=0.5).summary()
        >>> s["sbp_min"] <= s["sbp_mean"] <= s["sbp_max"], s["n_beats"] > 20
        (True, True)
        """
        b = self.beats
        m = b.within(0.0, self.record.duration)
        out: dict = {"n_beats": int(m.sum()), "hr_mean": float(np.mean(b.hr[m]))}
        for key, arr in (("sbp", b.sbp), ("dbp", b.dbp), ("map", b.map)):
            out[f"{key}_mean"] = float(np.mean(arr[m]))
            out[f"{key}_min"] = float(np.min(arr[m]))
            out[f"{key}_max"] = float(np.max(arr[m]))
        out["pep_ms_mean"] = 1000.0 * float(np.mean(b.pep[m]))
        out["ptt_ms_mean"] = 1000.0 * float(np.mean(b.ptt[m]))
        out["pat_ms_mean"] = 1000.0 * float(np.mean(b.pat[m]))
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def synth_subject_params(subject: int, seed: int = 0) -> SubjectParams:
    """The parameters of subject ``subject`` of the cohort made with ``seed``."""
    return subject_params_draw(_rng(seed, subject, "params"))


def _check_args(subject: int, minutes: float, seed: int, fs: float) -> None:
    for name, v in (("subject", subject), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if not np.isfinite(minutes) or not 0 < minutes <= 24 * 60:
        raise ValueError(f"minutes must be within (0, 1440], got {minutes}")
    if not np.isfinite(fs) or not 50.0 <= fs <= 2000.0:
        raise ValueError(f"fs must be within 50..2000 Hz, got {fs}")
    if int(round(minutes * 60.0 * fs)) < 2:
        raise ValueError(f"minutes={minutes} at fs={fs} Hz gives fewer than 2 samples")


def synth_subject(subject: int, minutes: float, seed: int = 0, fs: float = 250.0) -> SynthSubject:
    """One synthetic subject with its ground truth (the record is :func:`synth_record`'s).

    Parameters
    ----------
    subject : int
        Subject index (>= 0); subject ``k`` does not depend on the cohort size.
    minutes : float
        Record length.
    seed : int
        Cohort seed.
    fs : float
        Sampling rate of every channel (Hz).

    Returns
    -------
    SynthSubject

    Examples
    --------
    >>> s = synth_subject(0, minutes=0.25)
    >>> b = s.beats
    >>> m = b.within(0, s.record.duration)
    >>> bool(abs(s.record.get("abp").signal.max() - b.sbp[m].max()) < 3)  # ABP peaks are the true SBP
    True
    """
    _check_args(subject, minutes, seed, fs)
    p = synth_subject_params(subject, seed)
    duration = minutes * 60.0
    rng = _rng(seed, subject, "physiology")
    traj = trajectory_simulate(p, duration, rng)
    beats = beats_simulate(p, duration, rng, traj=traj)
    n = int(round(duration * fs))
    t = np.arange(n) / fs
    resp = traj.resp(t)
    nrng = _rng(seed, subject, "noise")

    ecg = ecg_render(beats, p, t, nrng)
    # Mains pick-up only where the rate can carry it: a real front end's anti-alias filter
    # removes it below that (the phase is drawn regardless, so the other noise stays the same).
    mains = p.powerline_mv if fs > 2.5 * p.powerline_hz else 0.0
    ecg = ecg + _wander(nrng, t, 0.15, resp) + mains * np.sin(2 * np.pi * p.powerline_hz * t + nrng.uniform(0, 2 * np.pi))
    ecg = ecg + nrng.normal(0.0, p.ecg_noise_mv, n)
    m_ecg, spans_ecg = _motion(nrng, t, p.motion_rate_per_min * 0.3, 0.2)
    ecg = _quantize(ecg + m_ecg, *_ECG_ADC)

    ppg = ppg_render(beats, p, t)
    ppg = ppg + 2.0 + _wander(nrng, t, 0.12 * p.ppg_amp, resp)  # DC level of the photodiode
    ppg = ppg + nrng.normal(0.0, p.ppg_noise_rel * p.ppg_amp, n)
    m_ppg, spans_ppg = _motion(nrng, t, p.motion_rate_per_min, 0.4 * p.ppg_amp)
    ppg = _quantize(ppg + m_ppg, *_PPG_ADC)

    abp = np.round(abp_render(beats, p, t) / _ABP_LSB) * _ABP_LSB
    sid = f"synth-{subject:03d}"
    chans = [
        Channel("ecg", ecg, fs, units="mV", label="II", lead="II"),
        Channel("ppg", ppg, fs, units="NU", label="PLETH"),
        Channel("abp", abp, fs, units="mmHg", label="ABP"),
        Channel("resp", resp, fs, units="NU", label="RESP"),
    ]
    record = Record(sid, chans, subject_id=sid, source=f"synth:{subject} (seed {seed}, generator {GENERATOR_VERSION})")
    return SynthSubject(record=record, params=p, beats=beats, motion_ppg=spans_ppg, motion_ecg=spans_ecg)


def synth_record(subject: int, minutes: float, seed: int = 0, fs: float = 250.0) -> Record:
    """One synthetic subject as a :class:`~edgebp.record.Record` (ECG lead II, PPG, ABP, RESP).

    Deterministic for ``(subject, minutes, seed, fs)``; subject ``k`` does not depend on how
    many subjects a cohort has. Synthetic results are not clinical evidence.

    Parameters
    ----------
    subject : int
        Subject index (>= 0); ``record_id == subject_id == "synth-{subject:03d}"``.
    minutes : float
        Record length.
    seed : int
        Cohort seed.
    fs : float
        Sampling rate of every channel (Hz).

    Returns
    -------
    Record

    Examples
    --------
    >>> r = synth_record(0, minutes=0.25)
    >>> r.subject_id, round(r.duration), r.get("ecg").lead, r.get("abp").units
    ('synth-000', 15, 'II', 'mmHg')
    """
    return synth_subject(subject, minutes, seed=seed, fs=fs).record


_TRUTH_COLUMNS = ("t_r_s", "rr_s", "hr_bpm", "sbp_mmhg", "dbp_mmhg", "map_mmhg", "pep_s", "ptt_s",
                  "ptt_abp_s", "pat_s", "t_ppg_foot_s", "t_abp_foot_s")


def _truth_write(path: Path, s: SynthSubject) -> None:
    """Per-beat ground truth of the beats inside the record, one CSV row per beat."""
    b = s.beats
    m = b.within(0.0, s.record.duration)
    cols = (b.t_r, b.rr, b.hr, b.sbp, b.dbp, b.map, b.pep, b.ptt, b.ptt_abp, b.pat, b.t_ppg_foot, b.t_abp_foot)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_TRUTH_COLUMNS)
        for row in zip(*(c[m] for c in cols)):
            w.writerow([f"{x:.6f}" for x in row])


def synth_cohort_write(out_dir: str | os.PathLike, n_subjects: int, minutes: float, seed: int = 0, fs: float = 250.0,
                       first_subject: int = 0,
                       progress: Callable[[int, int, SynthSubject], None] | None = None) -> list[Path]:
    """Write ``n_subjects`` WFDB records, a RECORDS file, cohort.json and truth/ into ``out_dir``.

    Every channel is stored as WFDB format 16; ``wfdb.wrsamp`` picks each channel's ADC gain
    to span its range, a step finer than the generator's own quantisation (ECG 12 bit over
    +-5 mV, PPG 16 bit over 0..8 NU, ABP 0.01 mmHg), so reading back loses nothing that
    matters. ``cohort.json`` holds the generator version, each subject's parameters, its true
    HR/SBP/DBP/MAP summary, BP step changes and motion bursts; ``truth/<record>.csv`` the
    per-beat ground truth. Existing files of the same names are overwritten.

    Parameters
    ----------
    out_dir : path
        Directory, created if missing.
    n_subjects : int
        How many subjects (>= 1).
    minutes, seed, fs
        As for :func:`synth_record`.
    first_subject : int
        Number of the first subject (the cohort is ``first_subject .. first_subject+n-1``).
    progress : callable, optional
        Called after each subject as ``progress(i, n_subjects, subject)`` with ``i`` counting
        from 1 and ``subject`` the :class:`SynthSubject` just written.

    Returns
    -------
    list of Path
        WFDB record paths without extension (``out_dir/synth-000`` ...), as
        ``wfdb.rdrecord`` and ``edgebp.io.read_record`` take them.

    Examples
    --------
    >>> import tempfile
    >>> paths = synth_cohort_write(tempfile.mkdtemp(), 2, minutes=0.2)
    >>> [p.name for p in paths]
    ['synth-000', 'synth-001']
    """
    import wfdb

    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    _check_args(first_subject, minutes, seed, fs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)
    paths, meta = [], []
    for k in range(first_subject, first_subject + n_subjects):
        subj = synth_subject(k, minutes, seed=seed, fs=fs)
        rec = subj.record
        sig = np.stack([c.signal for c in rec.channels], axis=1)
        wfdb.wrsamp(rec.record_id, fs=fs, units=[c.units for c in rec.channels], sig_name=[c.label for c in rec.channels],
                    p_signal=sig, fmt=["16"] * len(rec.channels), write_dir=str(out),
                    comments=[f"edgebp synthetic cohort, generator {GENERATOR_VERSION}, seed {seed}: not clinical evidence"])
        paths.append(out / rec.record_id)
        _truth_write(out / "truth" / f"{rec.record_id}.csv", subj)
        abp = rec.get("abp").signal
        dur = rec.duration
        meta.append({"record": rec.record_id, "subject_id": rec.subject_id, "params": subj.params.to_dict(),
                     "truth": subj.summary(),
                     "steps": [{"t_s": round(tk, 3), "delta_sbp_mmhg": round(dv, 3)}
                               for tk, dv in subj.beats.steps if 0.0 <= tk < dur],
                     "motion_ppg_s": [[round(a, 3), round(b, 3)] for a, b in subj.motion_ppg],
                     "motion_ecg_s": [[round(a, 3), round(b, 3)] for a, b in subj.motion_ecg],
                     "abp_p5": float(np.percentile(abp, 5)), "abp_p95": float(np.percentile(abp, 95))})
        log.info("wrote %s (%d/%d)", rec.record_id, k - first_subject + 1, n_subjects)
        if progress is not None:
            progress(k - first_subject + 1, n_subjects, subj)
    (out / "RECORDS").write_text("".join(p.name + "\n" for p in paths))
    (out / "cohort.json").write_text(json.dumps({"generator": GENERATOR_VERSION, "seed": seed, "fs": fs, "minutes": minutes,
                                                 "note": NOTICE,
                                                 "truth_files": "truth/<record>.csv: per-beat ground truth "
                                                                "(columns " + ", ".join(_TRUTH_COLUMNS) + ")",
                                                 "subjects": meta}, indent=2))
    return paths


def synth_cohort_cached(n_subjects: int, minutes: float, seed: int = 0, fs: float = 250.0) -> Path:
    """The cohort written once into ``$EDGEBP_CACHE`` (or ``~/.cache/edgebp``); its directory.

    The cohort is written into a temporary directory beside the cache entry and renamed
    into place, so a crash or a concurrent caller never leaves a half-written cohort behind.

    Parameters
    ----------
    n_subjects, minutes, seed, fs
        As for :func:`synth_cohort_write`.

    Returns
    -------
    Path
        ``<cache>/synth-<hash>/`` with RECORDS, cohort.json, the WFDB files and truth/.

    Examples
    --------
    >>> import os, tempfile
    >>> old = os.environ.get("EDGEBP_CACHE")
    >>> os.environ["EDGEBP_CACHE"] = tempfile.mkdtemp()
    >>> d = synth_cohort_cached(2, 0.1)
    >>> d == synth_cohort_cached(2, 0.1), (d / "RECORDS").read_text().split()
    (True, ['synth-000', 'synth-001'])
    >>> _ = os.environ.pop("EDGEBP_CACHE") if old is None else os.environ.update(EDGEBP_CACHE=old)
    """
    from edgebp.paths import cache_root

    base = cache_root()  # the one rule ($EDGEBP_CACHE, ~ expanded)
    key = hashlib.sha256(f"{GENERATOR_VERSION}:{n_subjects}:{minutes}:{seed}:{fs}".encode()).hexdigest()[:12]
    final = base / f"synth-{key}"
    if (final / "RECORDS").exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=base))
    try:
        log.info("synthesising %d subjects x %g min into %s", n_subjects, minutes, final)
        synth_cohort_write(tmp, n_subjects, minutes, seed=seed, fs=fs)
        try:
            os.replace(tmp, final)
        except OSError:
            # Another process won the race (the target exists, not empty): use its copy.
            if not (final / "RECORDS").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
