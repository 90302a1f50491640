"""The built-in synthetic cohort: subjects as edgebp Records and as WFDB records on disk.

Synthetic data are not clinical evidence. They exist so that the whole pipeline (training,
export, streaming, the device simulator) can run end to end with a known truth; only results
on real recordings say anything about blood pressure.

Each subject's parameters come from its own generator seeded by ``(seed, subject)``, so
subject ``k`` is the same whatever the cohort size. The clean waveforms
(:mod:`edgebp.synth.waveforms`) get realistic disturbances here: baseline wander, motion
bursts (mostly PPG), mains pick-up on the ECG, white noise and ADC quantisation. The ABP
stays clean but for quantisation: it is the label.

Examples
--------
>>> rec = synth_record(3, minutes=0.5, seed=0)
>>> sorted(rec.names), rec.get("abp").fs
(['abp', 'ecg', 'ppg', 'resp'], 250.0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgebp.record import Channel, Record
from edgebp.synth.params import SubjectParams, subject_params_draw
from edgebp.synth.physiology import beats_simulate, trajectory_simulate
from edgebp.synth.waveforms import abp_render, ecg_render, ppg_render

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
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


def _motion(rng: np.random.Generator, t: np.ndarray, rate_per_min: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Motion-artefact bursts (0.5-3 s of band-limited jerks) and their mask."""
    out = np.zeros_like(t)
    mask = np.zeros(t.shape, bool)
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
        mask |= sel
    return out, mask


def synth_subject_params(subject: int, seed: int = 0) -> SubjectParams:
    """The parameters of subject ``subject`` of the cohort made with ``seed``."""
    return subject_params_draw(_rng(seed, subject, "params"))


def synth_record(subject: int, minutes: float, seed: int = 0, fs: float = 250.0) -> Record:
    """One synthetic subject as a :class:`~edgebp.record.Record` (ECG lead II, PPG, ABP, RESP).

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

    Examples
    --------
    >>> r = synth_record(0, minutes=0.25)
    >>> r.subject_id, round(r.duration)
    ('synth-000', 15)
    """
    if subject < 0:
        raise ValueError(f"subject must be >= 0, got {subject}")
    if not 0 < minutes <= 24 * 60:
        raise ValueError(f"minutes must be within (0, 1440], got {minutes}")
    if not 50.0 <= fs <= 2000.0:
        raise ValueError(f"fs must be within 50..2000 Hz, got {fs}")
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
    ecg = ecg + _wander(nrng, t, 0.15, resp) + p.powerline_mv * np.sin(2 * np.pi * p.powerline_hz * t + nrng.uniform(0, 2 * np.pi))
    ecg = ecg + nrng.normal(0.0, p.ecg_noise_mv, n)
    m_ecg, _ = _motion(nrng, t, p.motion_rate_per_min * 0.3, 0.2)
    ecg = _quantize(ecg + m_ecg, *_ECG_ADC)

    ppg = ppg_render(beats, p, t)
    ppg = ppg + 2.0 + _wander(nrng, t, 0.12 * p.ppg_amp, resp)  # DC level of the photodiode
    ppg = ppg + nrng.normal(0.0, p.ppg_noise_rel * p.ppg_amp, n)
    m_ppg, _ = _motion(nrng, t, p.motion_rate_per_min, 0.4 * p.ppg_amp)
    ppg = _quantize(ppg + m_ppg, *_PPG_ADC)

    abp = np.round(abp_render(beats, p, t) / _ABP_LSB) * _ABP_LSB
    sid = f"synth-{subject:03d}"
    chans = [
        Channel("ecg", ecg, fs, units="mV", label="II", lead="II"),
        Channel("ppg", ppg, fs, units="NU", label="PLETH"),
        Channel("abp", abp, fs, units="mmHg", label="ABP"),
        Channel("resp", resp, fs, units="NU", label="RESP"),
    ]
    return Record(sid, chans, subject_id=sid, source=f"synth:{subject} (seed {seed}, generator {GENERATOR_VERSION})")


def synth_cohort_write(out_dir: str | os.PathLike, n_subjects: int, minutes: float, seed: int = 0, fs: float = 250.0,
                       first_subject: int = 0, progress=None) -> list[Path]:
    """Write ``n_subjects`` WFDB records, a RECORDS file and cohort.json into ``out_dir``.

    Examples
    --------
    >>> import tempfile
    >>> paths = synth_cohort_write(tempfile.mkdtemp(), 2, minutes=0.2)
    >>> [p.name for p in paths]
    ['synth-000', 'synth-001']
    """
    import wfdb

    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, meta = [], []
    for k in range(first_subject, first_subject + n_subjects):
        rec = synth_record(k, minutes, seed=seed, fs=fs)
        sig = np.stack([c.signal for c in rec.channels], axis=1)
        wfdb.wrsamp(rec.record_id, fs=fs, units=[c.units for c in rec.channels], sig_name=[c.label for c in rec.channels],
                    p_signal=sig, fmt=["16"] * len(rec.channels), write_dir=str(out),
                    comments=[f"edgebp synthetic cohort, generator {GENERATOR_VERSION}, seed {seed}: not clinical evidence"])
        paths.append(out / rec.record_id)
        abp = rec.get("abp").signal
        meta.append({"record": rec.record_id, "params": synth_subject_params(k, seed).to_dict(),
                     "abp_p5": float(np.percentile(abp, 5)), "abp_p95": float(np.percentile(abp, 95))})
        if progress is not None:
            progress(k - first_subject + 1, n_subjects, rec)
    (out / "RECORDS").write_text("".join(p.name + "\n" for p in paths))
    (out / "cohort.json").write_text(json.dumps({"generator": GENERATOR_VERSION, "seed": seed, "fs": fs, "minutes": minutes,
                                                 "note": "synthetic: not clinical evidence", "subjects": meta}, indent=2))
    return paths


def synth_cohort_cached(n_subjects: int, minutes: float, seed: int = 0, fs: float = 250.0) -> Path:
    """The cohort written once into ``$EDGEBP_CACHE`` (or ``~/.cache/edgebp``); its directory."""
    base = Path(os.environ.get("EDGEBP_CACHE", Path.home() / ".cache" / "edgebp"))
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
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
