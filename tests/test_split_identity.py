"""Leak-proof evaluation: record identity (name + samples sha256), split selection by identity,
``--include-training``, and finding a manifest's data on an installed package."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebp.paths import ASSETS
from edgebp.record_identity import (
    RecordIdentity,
    record_identity,
    samples_sha256,
    selection_line,
    split_index,
    split_select,
    split_with_identity,
)

BUNDLE = ASSETS / "default_bundle"
TRAIN_REC, VAL_REC, TEST_REC = "a170s", "a363l", "a382s"  # of the default bundle's split


def _copy_records(src: Path, dest: Path, names) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        for f in src.glob(f"{n}.*"):
            shutil.copy(f, dest / f.name)
    return dest


# ---------------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------------
def test_identity_is_the_same_through_a_copy_a_symlink_and_the_csv_reader(shared_data, tmp_path):
    from edgebp.io import read_csv, read_record

    src = shared_data / "challenge2015"
    orig = read_record(src / TRAIN_REC)
    copy = read_record(_copy_records(src, tmp_path / "copy", [TRAIN_REC]) / TRAIN_REC)
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    linked = read_record(tmp_path / "link" / TRAIN_REC)
    ident = record_identity(orig)
    assert ident == record_identity(copy) == record_identity(linked)
    assert ident.record == TRAIN_REC and len(ident.sha256) == 16
    # another reader: the same samples written as CSV (labels, column order differ) read back
    chans = list(reversed(orig.channels))
    csv = tmp_path / "csv" / f"{TRAIN_REC}.csv"
    csv.parent.mkdir()
    cols = np.column_stack([c.signal for c in chans])
    lines = [",".join(c.label.lower() if c.name == "ppg" else c.label for c in chans)]
    lines += [",".join("" if not np.isfinite(v) else repr(float(v)) for v in row) for row in cols]
    csv.write_text("\n".join(lines) + "\n")
    via_csv = read_csv(csv, fs=orig.channels[0].fs)
    assert [c.label for c in via_csv.channels] != [c.label for c in orig.channels]
    assert record_identity(via_csv) == ident


def test_identity_changes_with_the_samples_not_with_the_name(shared_data):
    from edgebp.io import read_record
    from edgebp.record import Channel, Record

    rec = read_record(shared_data / "challenge2015" / TRAIN_REC)
    digest = samples_sha256(rec)
    renamed = Record("elsewhere-01", rec.channels, source="/other/place.hea")
    assert samples_sha256(renamed) == digest and record_identity(renamed).record == "elsewhere-01"
    changed = [Channel(c.name, c.signal.copy(), c.fs, c.units, c.label, c.lead) for c in rec.channels]
    abp = next(c for c in changed if c.name == "abp")
    abp.signal[1000] += 1.0  # one sample, 1 mmHg
    assert samples_sha256(Record(TRAIN_REC, changed)) != digest
    cropped = Record(TRAIN_REC, [Channel(c.name, c.signal[:-1], c.fs, c.units, c.label, c.lead) for c in rec.channels])
    assert samples_sha256(cropped) != digest
    # below the stated rounding (1e-4 of the unit) is the same record
    tiny = Record(TRAIN_REC, [Channel(c.name, c.signal + 1e-9, c.fs, c.units, c.label, c.lead) for c in rec.channels])
    assert samples_sha256(tiny) == digest


# ---------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------
def _fake():
    ids = {n: RecordIdentity(n, f"{i:016x}") for i, n in enumerate(["t1", "t2", "t3", "v1", "s1", "s2"])}
    split = split_with_identity({"train": ["t1", "t2", "t3"], "val": ["v1"], "test": ["s1", "s2"]}, ids.values())
    return ids, split


def test_split_select_excludes_training_and_validation_records_by_hash_and_name():
    ids, split = _fake()
    new = RecordIdentity("n1", "f" * 16)
    renamed_train = RecordIdentity("copy-of-t1", ids["t1"].sha256)  # the same samples under another name
    other_reader_t2 = RecordIdentity("t2", "e" * 16)  # a training name, other samples
    data = [ids["t1"], renamed_train, other_reader_t2, ids["v1"], ids["s1"], new]
    chosen, sel = split_select(data, split, "all")
    assert [c.record for c in chosen] == ["s1", "n1"]
    assert sel["excluded"] == {"train": 3, "val": 1}
    assert sel["n_records"] == 6 and sel["n_chosen"] == 2 and sel["matched_by"] == "sha256"
    assert any("another name" in w for w in sel["warnings"]) and any("other samples" in w for w in sel["warnings"])
    assert "excluded 3 train + 1 val" in selection_line(sel)
    # --split test finds the held-out records by hash too, under another name
    chosen, sel = split_select([RecordIdentity("moved-s1", ids["s1"].sha256), ids["s2"], ids["t1"], new], split, "test")
    assert [c.record for c in chosen] == ["moved-s1", "s2"]
    assert sel["excluded"] == {"train": 1, "val": 0} and sel["not_in_split"] == 1
    chosen, _ = split_select(list(ids.values()), split, "val")
    assert [c.record for c in chosen] == ["v1"]


def test_split_select_include_training_and_old_splits_without_hashes():
    ids, split = _fake()
    chosen, sel = split_select(list(ids.values()), split, "all", include_training=True)
    assert len(chosen) == 6 and sel["included_training"] == {"train": 3, "val": 1} and sel["excluded"] == {"train": 0, "val": 0}
    assert selection_line(sel) == "INCLUDES TRAINING RECORDS: 3 train + 1 val of 6; not a held-out result"
    with pytest.raises(ValueError, match="--split all"):
        split_select(list(ids.values()), split, "test", include_training=True)
    old = {k: split[k] for k in ("train", "val", "test")}  # a bundle made before identities
    chosen, sel = split_select([ids["t1"], RecordIdentity("copy-of-t1", ids["t1"].sha256), ids["s1"]], old, "all")
    assert [c.record for c in chosen] == ["copy-of-t1", "s1"]  # by name only: the renamed copy is not recognised
    assert sel["matched_by"] == "name" and any("by name only" in w for w in sel["warnings"])
    assert "matched by name only" in selection_line(sel)
    with pytest.raises(ValueError, match="identity"):
        split_index({"train": ["a"], "identity": [{"record": "a"}]}, where="m.json")


# ---------------------------------------------------------------------------------------------
# runs and bundles carry identities
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built")
def test_default_bundle_records_its_split_by_identity(shared_data):
    from edgebp.io import read_record
    from edgebp.runtime.bundle import BundleError, manifest_validate

    m = json.loads((BUNDLE / "manifest.json").read_text())
    sp = m["split"]
    ident = {e["record"]: e["sha256"] for e in sp["identity"]}
    assert set(ident) == set(sp["train"]) | set(sp["val"]) | set(sp["test"])
    for n in (TRAIN_REC, VAL_REC, TEST_REC):
        assert ident[n] == samples_sha256(read_record(shared_data / "challenge2015" / n))
    old = dict(m, split={k: sp[k] for k in ("train", "val", "test")})
    manifest_validate(old, "old")  # manifests without identities still load
    with pytest.raises(BundleError, match="split.identity"):
        manifest_validate(dict(m, split={**sp, "identity": [{"record": "a170s"}]}), "bad")
    with pytest.raises(BundleError, match="unknown key"):
        manifest_validate(dict(m, split={**sp, "paths": []}), "bad")


def test_a_run_records_its_split_by_identity(tiny_run_factory, tiny_cohort):
    import torch

    from edgebp.io import read_records

    run = tiny_run_factory("edge-tcn")
    split = json.loads((run / "split.json").read_text())
    truth = {r.record_id: samples_sha256(r) for r in read_records(tiny_cohort)}
    ident = {e["record"]: e["sha256"] for e in split["identity"]}
    assert set(ident) == set(split["train"]) | set(split["val"]) | set(split["test"])
    assert all(ident[n] == truth[n] for n in ident)
    ck = torch.load(run / "best.pt", weights_only=True)
    assert ck["split"]["identity"] == split["identity"]


def test_an_exported_bundle_records_its_split_by_identity(tiny_bundle_factory, tiny_run_factory):
    from edgebp.runtime.bundle import bundle_load

    run_split = json.loads((tiny_run_factory("edge-tcn") / "split.json").read_text())
    m = bundle_load(tiny_bundle_factory("edge-tcn")).manifest
    assert m["split"]["identity"] == run_split["identity"] and m["split"]["test"] == run_split["test"]


# ---------------------------------------------------------------------------------------------
# evaluate on data given through another path
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def copied_records(shared_data, tmp_path_factory):
    """One training, one validation and one test record of the default bundle, copied elsewhere."""
    return _copy_records(shared_data / "challenge2015", tmp_path_factory.mktemp("copy") / "challenge2015", [TRAIN_REC, VAL_REC, TEST_REC])


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built")
def test_evaluate_all_on_a_copy_excludes_training_records_and_says_so(copied_records):
    from click.testing import CliRunner

    from edgebp.cli import cli

    res = CliRunner().invoke(cli, ["evaluate", "default", "--split", "all", "--data", str(copied_records.resolve()), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["data"]["records"] == [TEST_REC]
    assert rep["data"]["excluded"] == {"train": 1, "val": 1}
    assert rep["data"]["include_training"] is False and rep["data"]["selection"]["matched_by"] == "sha256"

    res = CliRunner().invoke(cli, ["evaluate", "default", "--split", "all", "--data", str(copied_records), "--include-training"])
    assert res.exit_code == 0, res.output
    assert "INCLUDES TRAINING RECORDS: 1 train + 1 val of 3; not a held-out result" in res.stdout
    assert res.stdout.count("INCLUDES TRAINING RECORDS") == 2  # above and below the table

    res = CliRunner().invoke(cli, ["evaluate", "default", "--split", "test", "--include-training"])
    assert res.exit_code == 2 and "--split all" in res.output


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built")
def test_installed_package_finds_the_manifest_data_under_edgebp_data(copied_records, tmp_path, monkeypatch):
    import edgebp.paths as paths
    from edgebp.runtime.bundle_model import BundleModel
    from edgebp.train.evaluate_cli import records_choose

    monkeypatch.setattr(paths, "in_checkout", lambda: False)  # as after a non-editable pip install
    monkeypatch.chdir(tmp_path)
    ref = "../shared/data/challenge2015"  # what the default bundle's run_config says
    monkeypatch.delenv("EDGEBP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="EDGEBP_DATA") as err:
        paths.data_path_resolve(ref)
    assert "tried" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("EDGEBP_DATA", str(copied_records.parent))  # the folder holding challenge2015
    assert paths.data_path_resolve(ref) == copied_records.parent / "challenge2015"
    monkeypatch.setenv("EDGEBP_DATA", str(copied_records))  # the challenge2015 folder itself
    assert paths.data_path_resolve(ref) == copied_records
    chosen, info = records_choose(BundleModel.open("default", variant="fp32"), None, "all")
    assert [p.record_id for p in chosen] == [TEST_REC] and info["excluded"] == {"train": 1, "val": 1}
    assert info["path"] == str(copied_records)
    chosen, info = records_choose(BundleModel.open("default", variant="fp32"), None, "test")
    assert [p.record_id for p in chosen] == [TEST_REC]


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="default bundle not built")
def test_bench_accuracy_excludes_training_records_and_its_tables_say_so(copied_records):
    from edgebp.bench.accuracy import accuracy_measure
    from edgebp.bench.report import accuracy_includes_training, accuracy_records_lines

    held, _ = accuracy_measure("default", "ort-fp32", data=str(copied_records.resolve()), split="all")
    assert held["data"]["records"] == [TEST_REC] and held["data"]["excluded"] == {"train": 1, "val": 1}
    bench = {"bundles": [{"name": "edge-tcn/edge", "accuracy": {"ort-fp32": held}}]}
    assert not accuracy_includes_training(bench)
    assert accuracy_records_lines(bench) == ["edge-tcn/edge accuracy: Records: 1 of 3 scored (split all); "
                                             "excluded 1 train + 1 val records (matched by sha256 and name)"]
    inc, _ = accuracy_measure("default", "ort-fp32", data=str(copied_records), split="all", include_training=True)
    assert inc["n_records"] == 3 and inc["data"]["include_training"]
    bench["bundles"][0]["accuracy"]["ort-int8"] = inc
    assert accuracy_includes_training(bench)
    assert any("INCLUDES TRAINING RECORDS: 1 train + 1 val of 3" in line for line in accuracy_records_lines(bench))


def test_records_with_a_known_subject_split_by_subject() -> None:
    """PulseDB-style segments (record id per segment, one subject id for several) never put one
    subject in two splits; without the subject rule 6 subjects x 4 segments scatter."""
    import numpy as np

    from edgebp.train.config import TrainConfig
    from edgebp.train.data import PreparedRecord
    from edgebp.train.loop import _split_records

    prepared = [PreparedRecord(f"seg{s}_{k}", f"p00000{s}", np.zeros((1, 4), np.float32), np.zeros(4, np.float32),
                               np.ones(4, bool), 125.0, median_map=80.0 + s + k, sha256=f"{s}{k}".ljust(64, "0"))
                for s in range(6) for k in range(4)]
    split = _split_records(prepared, TrainConfig())
    where = {}
    for name in ("train", "val", "test"):
        for rid in split[name]:
            where.setdefault(rid.split("_")[0], set()).add(name)
    assert len(where) == 6 and all(len(v) == 1 for v in where.values()), where
    assert split["test"] and split["val"]
