"""Prepared records as memory-mapped shards: written once, equal to the in-memory preparation,
read back as views of the files (no copy in memory), split over several shards when large,
safe against a broken index and a concurrent writer, and the windows training streams from
them equal the in-memory ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgebp.train.data import PreparedRecord, cache_dir, dataset_prepare
from edgebp.train.shards import ShardWriter, shards_open, shards_write


def _records(n: int, length: int, seed: int = 0) -> list[PreparedRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        X = rng.standard_normal((2, length)).astype(np.float32)
        X[0, 5] = np.nan  # gaps survive the round trip
        out.append(PreparedRecord(f"r{i}", f"s{i}", X, rng.uniform(60, 140, length).astype(np.float32), rng.random(length) > 0.1, 125.0,
                                  median_map=90.0 + i, source="", sha256=f"{i:064x}"))
    return out


def _same(a: PreparedRecord, b: PreparedRecord) -> bool:
    return (a.record_id == b.record_id and a.subject_id == b.subject_id and a.sha256 == b.sha256 and a.fs == b.fs
            and np.array_equal(a.X, b.X, equal_nan=True) and np.array_equal(a.abp, b.abp, equal_nan=True)
            and np.array_equal(a.usable, b.usable) and a.median_map == b.median_map)


def _is_file_view(a: np.ndarray) -> bool:
    base = a
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    return isinstance(base, np.memmap) or isinstance(a, np.memmap)


def test_records_split_over_shards_and_reopen_as_file_views(tmp_path):
    recs = _records(7, 1000)
    # 2500 samples per shard: records never straddle a shard, a shard closes once it is full
    sdir = shards_write(tmp_path / "set.shards", recs, [("bad1", "no abp channel")], shard_samples=2500)
    index = json.loads((sdir / "index.json").read_text())
    assert index["shards"] == 3 and [r["shard"] for r in index["records"]] == [0, 0, 0, 1, 1, 1, 2]
    got, skipped = shards_open(sdir)
    assert skipped == [("bad1", "no abp channel")]
    assert len(got) == 7 and all(_same(a, b) for a, b in zip(recs, got))
    for p in got:
        assert _is_file_view(p.X) and _is_file_view(p.abp) and _is_file_view(p.usable)
        assert not p.X.flags.writeable  # read-only: no code path may change the cache
    assert not list(tmp_path.glob("*.tmp*"))  # the temporary directory was renamed into place


def test_a_concurrent_writer_keeps_the_first_complete_set(tmp_path):
    final = tmp_path / "set.shards"
    a, b = ShardWriter(final), ShardWriter(final)  # as two processes would: two temporary folders
    assert a.tmp != b.tmp
    first, second = _records(2, 100, seed=1), _records(2, 100, seed=2)
    for p in first:
        a.add(p)
    for p in second:
        b.add(p)
    a.close()
    assert b.close() == final  # the loser discards its copy instead of failing
    got, _ = shards_open(final)
    assert all(_same(x, y) for x, y in zip(first, got))
    assert not b.tmp.exists()


def test_broken_index_is_refused(tmp_path):
    sdir = shards_write(tmp_path / "s.shards", _records(1, 50))
    (sdir / "index.json").write_text("{")
    with pytest.raises(ValueError, match="index.json"):
        shards_open(sdir)


def test_dataset_prepare_writes_shards_once_and_streams_the_same_windows(tiny_cohort):
    from edgebp.train.loop import WindowDataset
    from edgebp.train.data import windows_index, norm_stats_fit

    inputs = ("ppg", "ecg")
    mem, _ = dataset_prepare(tiny_cohort, inputs, 125.0, 0.5, use_cache=False)
    shard, _ = dataset_prepare(tiny_cohort, inputs, 125.0, 0.5)
    sets = [d for d in (cache_dir() / "prepared").glob("*.shards") if (d / "index.json").is_file()]
    assert sets, "no shard set in the prepared-record cache"
    assert len(mem) == len(shard) == 8 and all(_same(a, b) for a, b in zip(mem, shard))
    assert all(_is_file_view(p.X) for p in shard)
    # the second call opens the same files (nothing rewritten)
    stamp = {d: (d / "index.json").stat().st_mtime_ns for d in sets}
    again, _ = dataset_prepare(tiny_cohort, inputs, 125.0, 0.5)
    assert {d: (d / "index.json").stat().st_mtime_ns for d in sets} == stamp and all(_same(a, b) for a, b in zip(mem, again))
    # windows read from the maps are the windows read from memory
    norm = norm_stats_fit(mem[:5])
    idx = windows_index(mem, 500, 250, 6, 0)
    a, b = WindowDataset(mem, idx, 500, "waveform", norm), WindowDataset(shard, idx, 500, "waveform", norm)
    for k in range(0, len(idx), 7):
        for u, v in zip(a[k], b[k]):
            np.testing.assert_array_equal(u, v)
