"""From records to model-ready arrays: preprocessing, quality gating, splits and windows.

Inputs pass through :func:`edgebp.processing.chain.preprocess_record`, the very chain the
streaming runtime runs chunk by chunk, so a device sees exactly what the model was trained on.
Only samples where the inputs and the ABP reference are usable (quality masks) are trained
on or scored.
"""

from __future__ import annotations

import hashlib
import json
import time
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edgebp
from edgebp.record import Record
from edgebp.record_identity import RecordIdentity, samples_sha256
from edgebp.synth.cohort import DEFAULT_MINUTES, DEFAULT_SUBJECTS

log = logging.getLogger(__name__)

# Unusable stretches are widened by this margin (s): filter and resampler transients
# around a gap must not be learned as if they were physiology.
MASK_MARGIN_S = 0.5


@dataclass
class PreparedRecord:
    """One record at the model rate: inputs (C, n), ABP (n,) mmHg and the usable-sample mask.

    ``sha256`` is :func:`edgebp.record_identity.samples_sha256` of the record as read (before
    cropping or preprocessing): with ``record_id`` it is the record's identity, by which runs
    and bundles remember their split.
    """

    record_id: str
    subject_id: str
    X: np.ndarray
    abp: np.ndarray
    usable: np.ndarray
    fs: float
    median_map: float = float("nan")
    source: str = ""
    extras: dict = field(default_factory=dict)
    sha256: str = ""

    @property
    def identity(self) -> RecordIdentity:
        """``RecordIdentity(record_id, sha256)``."""
        return RecordIdentity(self.record_id, self.sha256)

    @property
    def usable_fraction(self) -> float:
        return float(self.usable.mean()) if len(self.usable) else 0.0


def cache_dir() -> Path:
    """``$EDGEBP_CACHE`` or ``~/.cache/edgebp``."""
    from edgebp.paths import cache_root

    return cache_root()


def data_source_path(data: str, synth_subjects: int = DEFAULT_SUBJECTS, synth_minutes: float = DEFAULT_MINUTES, seed: int = 0) -> Path:
    """Resolve ``--data``: ``synth`` (the built-in cohort, cached) or a path.

    A run or bundle records ``--data`` as given (relative, e.g. ``../shared/data/challenge2015``
    from the repository root); :func:`edgebp.paths.data_path_resolve` finds it from another
    directory, from a checkout or under ``$EDGEBP_DATA`` on an installed package, and raises a
    one-line :class:`FileNotFoundError` listing what it tried.
    """
    if data == "synth":
        from edgebp.synth import synth_cohort_cached

        return Path(synth_cohort_cached(synth_subjects, synth_minutes, seed=seed))
    from edgebp.paths import data_path_resolve

    return data_path_resolve(data)


def _mask_to_rate(mask: np.ndarray, fs_in: float, fs_out: float, n_out: int) -> np.ndarray:
    idx = np.minimum((np.arange(n_out) * fs_in / fs_out).astype(np.int64), len(mask) - 1)
    return mask[idx] if len(mask) else np.zeros(n_out, dtype=bool)


def _widen_bad(usable: np.ndarray, margin: int) -> np.ndarray:
    if margin <= 0 or usable.all():
        return usable
    bad = (~usable).astype(np.int64)
    c = np.concatenate([[0], np.cumsum(bad)])
    n = len(usable)
    i = np.arange(n)
    lo = np.maximum(i - margin, 0)
    hi = np.minimum(i + margin + 1, n)
    return (c[hi] - c[lo]) == 0


def record_prepare(record: Record, inputs: tuple[str, ...], fs: float = 125.0, chain_overrides: dict | None = None) -> tuple[PreparedRecord | None, str]:
    """Preprocess one record for the model; returns ``(prepared, "")`` or ``(None, reason)``.
    ``chain_overrides``: per channel, ChainConfig overrides of the presets (``preprocess_record``'s ``configs``)."""
    from edgebp.processing.beats import abp_beats
    from edgebp.processing.chain import preprocess_record
    from edgebp.processing.quality import abp_quality, ecg_quality, ppg_quality

    missing = [c for c in (*inputs, "abp") if not record.has(c)]
    if missing:
        return None, f"no {'/'.join(missing)} channel"
    X, abp = preprocess_record(record, inputs=inputs, fs_out=fs, configs=chain_overrides)
    n = X.shape[1]
    usable = np.isfinite(X).all(axis=0) & np.isfinite(abp)
    usable &= abp_quality(abp, fs).mask[:n]
    for name in inputs:
        ch = record.get(name)
        if name == "ppg":
            ecg = record.get("ecg") if record.has("ecg") else None
            q = ppg_quality(ch.signal, ch.fs, ecg=None if ecg is None else ecg.signal, ecg_fs=None if ecg is None else ecg.fs)
        else:
            q = ecg_quality(ch.signal, ch.fs)
        usable &= _mask_to_rate(np.asarray(q.mask, bool), ch.fs, fs, n)
    usable = _widen_bad(usable, int(MASK_MARGIN_S * fs))
    if usable.sum() < 10 * fs:
        return None, f"less than 10 s usable ({usable.sum() / fs:.1f} s)"
    b = abp_beats(np.where(usable, abp, np.nan), fs)
    valid = np.asarray(b.valid, bool)
    med = float(np.median(np.asarray(b.map)[valid])) if valid.any() else float("nan")
    return (
        PreparedRecord(
            record_id=record.record_id,
            subject_id=str(record.subject_id),
            X=X.astype(np.float32),
            abp=abp.astype(np.float32),
            usable=usable,
            fs=fs,
            median_map=med,
            source=record.source,
        ),
        "",
    )


# bump when what the cache holds changes (2: each record's samples sha256; 3: memory-mapped shards)
CACHE_FORMAT = 3


def _cache_key(path: Path, inputs: tuple[str, ...], fs: float, max_minutes: float, chain_overrides: dict | None = None) -> str:
    from edgebp.processing.chain import CHAIN_PRESETS

    try:
        presets = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in CHAIN_PRESETS.items()}
    except Exception:  # noqa: BLE001 - the key only needs to change when presets change
        presets = repr(CHAIN_PRESETS)
    stat = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(path.glob("*"))[:2000]] if path.is_dir() else [(path.name, path.stat().st_size)]
    key = [CACHE_FORMAT, str(path.resolve()), inputs, fs, max_minutes, edgebp.__version__, presets, stat]
    if chain_overrides:  # only then: the default chain keeps the key it always had
        key.append(chain_overrides)
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def stderr_progress(stream=None):
    """A ``progress(k, record_id, why)`` for :func:`dataset_prepare` that rewrites one line on
    standard error per record (``preparing records: 12 done, last a123l (ok)``), or None when
    standard error is not a terminal (a log file or a pipe stays quiet)."""
    import sys

    err = stream if stream is not None else sys.stderr
    if not (hasattr(err, "isatty") and err.isatty()):
        return None
    t0 = time.monotonic()

    def progress(k: int, record_id: str, why: str) -> None:
        err.write(f"\rpreparing records: {k} done, last {record_id} ({why}), {time.monotonic() - t0:.0f} s".ljust(100))
        err.flush()

    def done() -> None:
        err.write("\n")
        err.flush()

    progress.done = done  # type: ignore[attr-defined]
    return progress


def dataset_prepare(path: Path, inputs: tuple[str, ...], fs: float = 125.0, max_minutes: float = 0.0, use_cache: bool = True, progress=None,
                    chain_overrides: dict | None = None) -> tuple[list[PreparedRecord], list[tuple[str, str]]]:
    """Read and prepare every record under ``path``; returns (prepared, skipped with reasons).
    ``chain_overrides``: per channel, ChainConfig overrides of the presets (``TrainConfig.chain_overrides``).

    Prepared records are written once into memory-mapped shards (:mod:`edgebp.train.shards`)
    under ``<cache>/prepared/<key>.shards/``, the key covering the data, inputs, rate and the
    preprocessing presets, so repeated runs skip the work; the records returned are views of
    those files, so a cohort far larger than memory can be trained on. Records are prepared
    and written one at a time: memory holds one record and one shard, whatever the cohort's
    size. ``use_cache=False`` keeps everything in memory and writes nothing.
    """
    from edgebp.io import read_records
    from edgebp.train.shards import ShardWriter, shards_open

    key = _cache_key(Path(path), tuple(inputs), fs, max_minutes, chain_overrides)
    sdir = cache_dir() / "prepared" / f"{key}.shards"
    if use_cache and sdir.is_dir():
        try:
            return shards_open(sdir)
        except Exception as exc:  # noqa: BLE001 - a broken cache is rebuilt, not fatal
            log.warning("prepared-data shards %s unreadable (%s); rebuilding", sdir, exc)
            shutil.rmtree(sdir, ignore_errors=True)
    prepared, skipped = [], []
    writer = ShardWriter(sdir) if use_cache else None
    n_ok = 0
    t_last = time.monotonic()
    try:
        for k, rec in enumerate(read_records(path)):
            digest = samples_sha256(rec)  # of the record as read: cropping must not change who it is
            if max_minutes > 0:
                rec = _record_crop(rec, max_minutes * 60.0)
            p, why = record_prepare(rec, tuple(inputs), fs, chain_overrides)
            if p is None:
                skipped.append((rec.record_id, why))
            else:
                p.sha256 = digest
                n_ok += 1
                if writer is not None:
                    writer.add(p)  # to disk now: memory does not grow with the cohort
                else:
                    prepared.append(p)
            if progress is not None:
                progress(k + 1, rec.record_id, why or "ok")
            elif time.monotonic() - t_last > 30.0:  # no terminal to redraw: a log line every 30 s
                t_last = time.monotonic()
                log.info("preparing records: %d done (%d usable), last %s", k + 1, n_ok, rec.record_id)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        return prepared, skipped
    if n_ok == 0:  # nothing worth caching; the caller reports it
        writer.abort()
        return [], skipped
    return shards_open(writer.close(skipped))


def _record_crop(rec: Record, seconds: float) -> Record:
    from edgebp.record import Channel

    chans = [Channel(c.name, c.signal[: int(seconds * c.fs)], c.fs, c.units, c.label, c.lead) for c in rec.channels]
    return Record(rec.record_id, chans, rec.subject_id, rec.source)


def _cache_save(sdir: Path, prepared: list[PreparedRecord], skipped: list[tuple[str, str]]) -> None:
    """Write ``prepared`` as the shard set ``sdir`` (:func:`edgebp.train.shards.shards_write`)."""
    from edgebp.train.shards import shards_write

    Path(sdir).parent.mkdir(parents=True, exist_ok=True)
    shards_write(Path(sdir), prepared, skipped)


def _cache_load(sdir: Path) -> tuple[list[PreparedRecord], list[tuple[str, str]]]:
    """The records of the shard set ``sdir``, memory-mapped (:func:`edgebp.train.shards.shards_open`)."""
    from edgebp.train.shards import shards_open

    return shards_open(Path(sdir))


def windows_index(prepared: list[PreparedRecord], window: int, stride: int, max_per_record: int, seed: int, min_usable: float = 1.0) -> np.ndarray:
    """``(k, 2)`` array of (record index, start) for windows whose samples are usable.

    ``min_usable`` is the share of usable samples a window needs (1.0: all of them).
    At most ``max_per_record`` windows per record (a deterministic random subset), so long
    records do not outweigh short ones; ``max_per_record <= 0`` keeps every window.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for r, p in enumerate(prepared):
        n = len(p.usable)
        if n < window:
            continue
        starts = np.arange(0, n - window + 1, stride)
        c = np.concatenate([[0], np.cumsum(p.usable)])
        share = (c[starts + window] - c[starts]) / window
        starts = starts[share >= min_usable - 1e-9]
        if 0 < max_per_record < len(starts):
            starts = np.sort(rng.choice(starts, max_per_record, replace=False))
        rows.extend((r, int(s)) for s in starts)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def norm_stats_fit(prepared: list[PreparedRecord]) -> dict[str, float]:
    """Target normalisation and naive-baseline figures from the TRAINING records only."""
    from edgebp.processing.beats import abp_beats

    vals = np.concatenate([p.abp[p.usable] for p in prepared]) if prepared else np.zeros(1)
    sbp, dbp, mapv = [], [], []
    for p in prepared:
        b = abp_beats(np.where(p.usable, p.abp, np.nan).astype(np.float64), p.fs)
        v = np.asarray(b.valid, bool)
        sbp.append(np.asarray(b.sbp)[v])
        dbp.append(np.asarray(b.dbp)[v])
        mapv.append(np.asarray(b.map)[v])
    sbp_a = np.concatenate(sbp) if sbp else np.zeros(0)
    dbp_a = np.concatenate(dbp) if dbp else np.zeros(0)
    map_a = np.concatenate(mapv) if mapv else np.zeros(0)
    return {
        "abp_mean": float(np.mean(vals)),
        "abp_std": float(max(np.std(vals), 1e-3)),
        "sbp_mean": float(np.mean(sbp_a)) if len(sbp_a) else float("nan"),
        "sbp_std": float(np.std(sbp_a)) if len(sbp_a) else float("nan"),
        "dbp_mean": float(np.mean(dbp_a)) if len(dbp_a) else float("nan"),
        "dbp_std": float(np.std(dbp_a)) if len(dbp_a) else float("nan"),
        "map_mean": float(np.mean(map_a)) if len(map_a) else float("nan"),
        "map_std": float(np.std(map_a)) if len(map_a) else float("nan"),
        "n_train_beats": int(len(sbp_a)),
    }


def minmax_fit(prepared: list[PreparedRecord]) -> tuple[list[float], list[float]]:
    """Per input channel, the smallest and largest usable, finite sample of the TRAINING
    records (the paper recipes' min-max scaling; the seeds took the extremes of every record,
    test records included).

    Examples
    --------
    >>> p = PreparedRecord("r", "r", np.array([[0.0, 5.0, -2.0, 9.0]], np.float32), np.zeros(4, np.float32),
    ...                    np.array([True, True, True, False]), 125.0)
    >>> minmax_fit([p])
    ([-2.0], [5.0])
    """
    if not prepared:
        raise ValueError("minmax_fit: no training records")
    C = prepared[0].X.shape[0]
    lo, hi = np.full(C, np.inf), np.full(C, -np.inf)
    for p in prepared:  # record by record: memory-mapped shards are read once, not gathered
        x = np.asarray(p.X)[:, np.asarray(p.usable, bool)]
        for c in range(C):
            v = x[c][np.isfinite(x[c])]
            if len(v):
                lo[c], hi[c] = min(lo[c], float(v.min())), max(hi[c], float(v.max()))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("minmax_fit: a channel has no usable finite sample in the training records")
    return [float(v) for v in lo], [float(v) for v in hi]
