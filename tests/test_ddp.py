"""DDP under torchrun with two CPU ranks (gloo): first every rank sampling all windows (the
loss curve follows a single process), then ``--resume`` with each rank reading only its own
records, so that one rank has fewer windows than the other (it must neither hang nor drift).

Each rank runs in its own working directory and ``--out`` is relative, so a rank other than 0
that wrote anything would leave a run directory in its own folder: only rank 0's may exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN


def _torchrun(base: Path, args: list[str]) -> subprocess.CompletedProcess:
    wrapper = base / "rank.sh"
    wrapper.write_text('#!/bin/sh\ncd "$RANK_BASE/rank$RANK" && exec "$PY" -m edgebp train "$@"\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK_BASE": str(base), "PY": sys.executable}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python", "sh", str(wrapper), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def ddp_runs(tiny_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    for r in (0, 1):
        (base / f"rank{r}").mkdir()
    # 8 records: 2 val, 1 test, 5 training records of equal length; by records 2 ranks get 3 and 2
    params = {**TINY_TRAIN, "data": str(tiny_cohort), "epochs": 1, "batch_size": 8, "max_windows_per_record": 5, "device": "cpu",
              "max_minutes": 0.5, "val_frac": 0.25}
    (base / "cfg.json").write_text(json.dumps(params))
    first = _torchrun(base, ["--config", str(base / "cfg.json"), "--out", "run"])
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = json.loads((base / "rank0" / "run" / "summary.json").read_text())
    second = _torchrun(base, ["--config", str(base / "cfg.json"), "--resume", "--epochs", "2", "--set", "ddp_split=records", "--out", "run"])
    assert second.returncode == 0, second.stderr[-3000:]
    return base, params, first, second, after_first


def test_two_ranks_follow_a_single_process(ddp_runs, tmp_path):
    from edgebp.train.config import TrainConfig
    from edgebp.train.loop import train_run

    base, params, _, _, after_first = ddp_runs
    single = train_run(TrainConfig.from_dict({**params, "epochs": 1}), tmp_path / "single", show_progress=False)
    ddp = after_first["history"]
    assert len(ddp) == len(single["history"]) == 1
    for a, b in zip(ddp, single["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=0.05)
    d = after_first["rank_weights_sha256"]
    assert after_first["world_size"] == 2 and len(d) == 2 and d[0] == d[1]


def test_a_rank_with_fewer_windows_neither_hangs_nor_drifts(ddp_runs):
    _, _, _, second, _ = ddp_runs
    # the ranks really held different numbers of windows, and the smaller one was padded
    lines = [x for x in second.stderr.splitlines() if "training window(s) of" in x]
    counts = sorted(int(x.split("training window(s)")[0].split(":")[-1].strip()) for x in lines)
    assert len(counts) == 2 and counts[0] < counts[1], second.stderr[-2000:]
    assert all(f"padded to {counts[1]}" in x for x in lines)


def test_resume_under_torchrun_continues_and_only_rank_0_writes(ddp_runs):
    from edgebp.train.loop import weights_digest
    from edgebp.train.zoo import model_build

    base, _, _, second, after_first = ddp_runs
    run = base / "rank0" / "run"
    assert "resumed from" in second.stderr
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["world_size"] == 2
    d = summary["rank_weights_sha256"]
    assert d[0] == d[1] and d[0] != after_first["rank_weights_sha256"][0]  # it trained on, and both ranks agree
    # what rank 0 wrote is the weights both ranks ended with
    ck = torch.load(run / "last.pt", weights_only=True)
    m = model_build(ck["config"]["model"], ck["config"]["preset"], in_channels=len(ck["meta"]["inputs"]))
    m.load_state_dict(ck["state_dict"])
    assert weights_digest(m) == d[0]
    # rank 1 wrote nothing: no run directory in its working directory
    assert not any((base / "rank1").iterdir())
