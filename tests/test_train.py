"""Training, splits and evaluation on a tiny synthetic cohort (edge presets, a few steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgebp.train.splits import records_group, split_groups

ZOO = ["edge-tcn", "msca-cssc-unet", "cbpe-net", "pulse2pressure", "inn-par"]


def test_records_group_keeps_likely_same_patient_together():
    # b495l and t496s: consecutive numbers, median MAP 90 vs 91.5 -> one patient;
    # a600s: number 600 is far -> its own group; v497l: consecutive but MAP 120 -> different patient
    ids = ["b495l", "t496s", "v497l", "a600s"]
    groups = records_group(ids, [90.0, 91.5, 120.0, 70.0])
    assert groups[0] == groups[1]
    assert groups[2] != groups[1]
    assert groups[3] not in (groups[0], groups[2])


def test_split_groups_is_deterministic_and_disjoint():
    groups = [f"g{i // 2}" for i in range(40)]  # 20 groups of two records
    a = split_groups(groups, 0.15, 0.15, seed=5)
    b = split_groups(groups, 0.15, 0.15, seed=5)
    assert a == b
    sets = {k: {groups[i] for i in v} for k, v in a.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sum(len(v) for v in a.values()) == 40
    assert split_groups(groups, 0.15, 0.15, seed=6) != a


@pytest.mark.parametrize("model", ZOO)
def test_every_zoo_model_trains_and_evaluates(model, tiny_run_factory):
    from edgebp.train.evaluate_cli import evaluation_run
    from edgebp.train.predict import RunDir

    run = tiny_run_factory(model)
    for f in ("config.json", "split.json", "norm.json", "metrics.jsonl", "best.pt", "last.pt", "summary.json"):
        assert (run / f).exists(), f
    ck = torch.load(run / "best.pt", weights_only=True)  # no pickled objects
    assert {"state_dict", "config", "norm", "split"} <= set(ck)
    split = json.loads((run / "split.json").read_text())
    # split by record: no record on two sides
    assert not (set(split["train"]) & set(split["test"])) and not (set(split["val"]) & set(split["test"]))
    src = RunDir(run)
    report, scored, _ = evaluation_run(src, None, "test", 0.0, progress=False)
    assert report["n_pairs"] > 0
    for k in ("sbp", "dbp"):
        assert np.isfinite(report[k]["mae"]) and report[k]["bhs"]["grade"] in "ABCD"
    assert "baselines" in report and report["data"]["records"] == split["test"]


def test_normalisation_is_fit_on_training_records_only(tiny_run_factory, tiny_cohort):
    from edgebp.train.data import dataset_prepare, norm_stats_fit

    run = tiny_run_factory("edge-tcn")
    norm = json.loads((run / "norm.json").read_text())
    split = json.loads((run / "split.json").read_text())
    prepared, _ = dataset_prepare(tiny_cohort, ("ppg", "ecg"), 125.0)
    by_id = {p.record_id: p for p in prepared}
    expect = norm_stats_fit([by_id[i] for i in split["train"]])
    everything = norm_stats_fit(prepared)
    assert norm["abp_mean"] == pytest.approx(expect["abp_mean"])
    assert norm["abp_mean"] != pytest.approx(everything["abp_mean"])


def test_resume_continues_the_run(tiny_cohort, tmp_path):
    from edgebp.train.config import TrainConfig
    from edgebp.train.loop import train_run

    from conftest import TINY_TRAIN

    cfg = TrainConfig.from_dict({**TINY_TRAIN, "data": str(tiny_cohort), "epochs": 1})
    train_run(cfg, tmp_path, show_progress=False)
    cfg2 = cfg.replace(epochs=2)
    (tmp_path / "config.json").write_text(json.dumps(cfg2.to_dict()))
    s = train_run(cfg2, tmp_path, resume=True, show_progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    assert s["epochs_run"] == 1  # only the missing epoch ran


def test_config_rejects_unknown_keys_and_bad_choices():
    from edgebp.train.config import TrainConfig

    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig.from_dict({"model": "resnet"})


def test_train_cli_bad_input_gives_one_line_error(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "edgebp")
    p = subprocess.run([exe, "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert p.returncode != 0
    assert "nope" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([exe, "train", "--model", "resnet", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert p.returncode != 0 and "choose one of" in p.stderr and "Traceback" not in p.stderr


# DDP under torchrun (two gloo ranks, single-process equivalence, --resume, uneven ranks): tests/test_ddp.py
