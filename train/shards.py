"""Prepared records as memory-mapped shards on disk: prepared once, streamed from by training.

A shard set is one directory (in the prepared-record cache, ``<cache>/prepared/<key>.shards/``,
see :func:`edgebp.train.data.dataset_prepare` and ``edgebp cache info``)::

    index.json                 format, channels, rate, every record (id, subject, shard, offset,
                               length, median MAP, source, samples sha256) and the skipped records
    shard-0000.X.npy           (C, n) float32: the records' inputs, one after the other
    shard-0000.abp.npy         (n,) float32: ABP in mmHg
    shard-0000.usable.npy      (n,) bool: the usable-sample mask
    shard-0001.X.npy ...

Writing keeps at most one shard (``shard_samples`` samples, ~48 MB for two inputs at the
default) and one record in memory; reading maps the files (``np.load(mmap_mode="r")``), so a
record's arrays are views that cost no memory until a window is read from them, and pages
already read belong to the page cache, which the kernel reclaims under pressure. The set is
written into a temporary directory and renamed into place: a crash or a concurrent writer
never leaves half a set behind (the loser of a race discards its copy and opens the winner's).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

log = logging.getLogger(__name__)

SHARD_FORMAT = 1
# samples per shard: 4 M samples x (2 inputs + ABP) x 4 bytes ~ 48 MB, a few records of hours
SHARD_SAMPLES = 4_000_000


class ShardWriter:
    """Append prepared records; :meth:`close` writes the index and renames the set into place.

    Parameters
    ----------
    final : Path
        The shard set's directory (must not exist yet, or it is left as it is).
    shard_samples : int
        A shard is written once it holds this many samples (a longer record is one shard).
    """

    def __init__(self, final: Path, shard_samples: int = SHARD_SAMPLES):
        self.final = Path(final)
        # unique per writer: two processes (or two writers in one) never share a folder
        self.tmp = self.final.with_name(self.final.name + f".tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.tmp.mkdir(parents=True)
        self.shard_samples = int(shard_samples)
        self.records: list[dict] = []
        self._buf: list = []
        self._n = 0
        self._shard = 0
        self.channels: int | None = None

    def add(self, p) -> None:
        """Append one :class:`~edgebp.train.data.PreparedRecord` (its arrays are copied out)."""
        if self.channels is None:
            self.channels = int(p.X.shape[0])
        elif p.X.shape[0] != self.channels:
            raise ValueError(f"{p.record_id}: {p.X.shape[0]} input channels, the shard set has {self.channels}")
        n = int(len(p.abp))
        self.records.append({"record_id": p.record_id, "subject_id": p.subject_id, "fs": float(p.fs), "median_map": float(p.median_map),
                             # absolute: the cache key is cwd-independent, so a relative source written from
                             # the repo root would not open when the cache is read from another directory
                             "source": os.path.abspath(p.source) if p.source else "", "sha256": p.sha256,
                             "shard": self._shard, "offset": self._n, "length": n})
        self._buf.append((np.asarray(p.X, np.float32), np.asarray(p.abp, np.float32), np.asarray(p.usable, bool)))
        self._n += n
        if self._n >= self.shard_samples:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        stem = self.tmp / f"shard-{self._shard:04d}"
        np.save(f"{stem}.X.npy", np.concatenate([b[0] for b in self._buf], axis=1))
        np.save(f"{stem}.abp.npy", np.concatenate([b[1] for b in self._buf]))
        np.save(f"{stem}.usable.npy", np.concatenate([b[2] for b in self._buf]))
        self._buf, self._n = [], 0
        self._shard += 1

    def close(self, skipped: Iterable[tuple[str, str]] = ()) -> Path:
        """Write the last shard and the index, and move the set into place; returns its directory."""
        self._flush()
        index = {"format": SHARD_FORMAT, "channels": self.channels, "shards": self._shard, "records": self.records,
                 "skipped": [list(s) for s in skipped]}
        (self.tmp / "index.json").write_text(json.dumps(index))
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            # another process finished the same set first (same key, same content): keep theirs
            if not (self.final / "index.json").is_file():
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def shards_write(final: Path, prepared: Iterable, skipped: Iterable[tuple[str, str]] = (), shard_samples: int = SHARD_SAMPLES) -> Path:
    """Write ``prepared`` records as a shard set at ``final``; returns ``final``."""
    w = ShardWriter(final, shard_samples)
    try:
        for p in prepared:
            w.add(p)
        return w.close(skipped)
    except BaseException:
        w.abort()
        raise


def shards_open(final: Path) -> tuple[list, list[tuple[str, str]]]:
    """The records of a shard set as :class:`~edgebp.train.data.PreparedRecord` whose ``X``,
    ``abp`` and ``usable`` are read-only views of memory-mapped files, and the skipped list.

    Raises ValueError for a set that is not complete or of another format.
    """
    from edgebp.train.data import PreparedRecord

    final = Path(final)
    try:
        index = json.loads((final / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{final}: no readable index.json ({exc})") from None
    if index.get("format") != SHARD_FORMAT:
        raise ValueError(f"{final}: shard format {index.get('format')!r}, expected {SHARD_FORMAT}")
    maps = []
    for k in range(int(index["shards"])):
        stem = final / f"shard-{k:04d}"
        # plain ndarray views of the maps: still file-backed, but slicing a np.memmap subclass
        # costs ~90 us more per training window (measured: 126 vs 34 us on the tiny cohort)
        maps.append(tuple(np.load(f"{stem}.{part}.npy", mmap_mode="r").view(np.ndarray) for part in ("X", "abp", "usable")))
    out = []
    for m in index["records"]:
        X, abp, use = maps[m["shard"]]
        a, n = int(m["offset"]), int(m["length"])
        if a + n > len(abp):
            raise ValueError(f"{final}: record {m['record_id']} runs past the end of shard {m['shard']}")
        out.append(PreparedRecord(m["record_id"], m["subject_id"], X[:, a : a + n], abp[a : a + n], use[a : a + n], m["fs"],
                                  m["median_map"], m["source"], sha256=m["sha256"]))
    return out, [tuple(s) for s in index["skipped"]]
