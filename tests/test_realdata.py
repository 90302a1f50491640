"""Real-data results plumbing: relative --data paths, the validation split, the shipped bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgebp.paths import ASSETS, REPO_ROOT


def test_relative_data_path_resolves_from_any_directory(tmp_path, shared_data):
    from edgebp.train.data import data_source_path

    rel = os.path.relpath(shared_data / "challenge2015", REPO_ROOT)
    here = os.getcwd()
    os.chdir(tmp_path)  # the relative path means nothing here, but does beside the repository
    try:
        got = data_source_path(rel)
        assert got.resolve() == (shared_data / "challenge2015").resolve()
        with pytest.raises(FileNotFoundError, match="--data"):
            data_source_path("no/such/dir")
    finally:
        os.chdir(here)


def test_evaluation_on_the_validation_split_scores_only_validation_records(tiny_run_factory):
    from edgebp.train.evaluate_cli import evaluation_run
    from edgebp.train.predict import RunDir

    run = tiny_run_factory("edge-tcn")
    split = json.loads((run / "split.json").read_text())
    report, _, _ = evaluation_run(RunDir(run), None, "val", 0.0, progress=False)
    assert report["data"]["records"] == split["val"]
    assert not set(report["data"]["records"]) & set(split["train"])
    assert report["n_pairs"] > 0


BUNDLE = ASSETS / "default_bundle"


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built (scripts/build_default_bundle.sh)")
def test_default_bundle_is_small_verified_and_trained_on_real_records():
    from edgebp.runtime.bundle import bundle_load

    b = bundle_load("default")
    m = b.manifest
    assert m["model"]["name"] == "edge-tcn" and m["inputs"] == ["ppg", "ecg"]
    assert "challenge2015" in m["model"]["run_config"]["data"]
    assert not Path(m["model"]["run_config"]["data"]).is_absolute()
    # shipped as package data: ONNX and JSON/markdown only, a few hundred kB
    names = {p.name for p in BUNDLE.iterdir()}
    assert names <= set(m["files"].values()) | {"manifest.json"}
    assert sum(p.stat().st_size for p in BUNDLE.iterdir()) < 600_000
    # the held-out records never appear among the training ones
    assert m["split"]["test"] and not set(m["split"]["test"]) & set(m["split"]["train"])
    assert m["validation"]["int8_delta_mae"] is not None


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built (scripts/build_default_bundle.sh)")
def test_default_bundle_int8_runs_and_stays_close_to_fp32():
    from edgebp.runtime.bundle_model import BundleModel

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 1000)).astype(np.float32)
    y32 = BundleModel.open("default", variant="fp32").runner(x)
    y8 = BundleModel.open("default", variant="int8").runner(x)
    assert y32.shape == y8.shape == (1, 1, 1000)
    assert np.all(np.isfinite(y8))
    # normalised units: an int8 error of a tenth of the ABP spread would be several mmHg
    assert float(np.median(np.abs(y32 - y8))) < 0.1
