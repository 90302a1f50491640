"""The prepared-data cache opens its records' sources from any working directory.

The cache key is cwd-independent (the data path is resolved), so the stored source must be
too: a relative path written from the repository root broke ``edgebp evaluate`` run elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgebp.train.data import PreparedRecord, _cache_load, _cache_save


def test_cached_source_opens_from_another_directory(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "r1.hea").write_text("r1 1 125 10\n")
    monkeypatch.chdir(tmp_path)
    p = PreparedRecord("r1", "r1", np.zeros((1, 10), np.float32), np.zeros(10, np.float32), np.ones(10, bool), 125.0,
                       source="data/r1", sha256="0" * 64)
    _cache_save(tmp_path / "c.shards", [p], [])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (q,), _ = _cache_load(tmp_path / "c.shards")
    assert os.path.isabs(q.source)
    assert Path(q.source + ".hea").is_file()
