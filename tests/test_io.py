"""edgebp.io: WFDB (real ICU records), UCI part_N.mat (v5 and v7.3), CSV, and every error path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import wfdb

from edgebp.io import ReadError, read_csv, read_record, read_records, read_uci_mat, read_wfdb
from edgebp.record import CANONICAL_NAMES

MAT73_USERBLOCK = 512


def raises_read_error(path, *reason_parts):
    """Context: a ReadError whose message starts with the path and holds each reason part."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(ReadError)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._ctx.__exit__(*exc)
            msg = str(self.info.value)
            assert isinstance(self.info.value, ValueError)
            assert msg.startswith(str(path)), f"message does not start with {path}: {msg}"
            for part in reason_parts:
                assert part.lower() in msg.lower(), f"{part!r} not in {msg!r}"
            return handled

    return _Check()


# --------------------------------------------------------------------------- challenge2015


@pytest.fixture(scope="module")
def challenge_summary(shared_data):
    """Every challenge2015 record read once through read_records; keep a summary, drop samples."""
    directory = shared_data / "challenge2015"
    summary = []
    for rec in read_records(directory):
        summary.append(
            {
                "id": rec.record_id,
                "source": rec.source,
                "channels": [(c.name, c.label, c.lead, c.fs, c.units, len(c.signal)) for c in rec.channels],
                "nan": [int(np.isnan(c.signal).sum()) for c in rec.channels],
                "duration": rec.duration,
                "ecg_lead": rec.get("ecg").lead,
            }
        )
    return directory, summary


def test_challenge2015_all_records_load(challenge_summary):
    directory, summary = challenge_summary
    names = [n.strip() for n in (directory / "RECORDS").read_text().splitlines() if n.strip()]
    assert len(names) == 268
    assert [s["id"] for s in summary] == names
    for s in summary:
        assert Path(s["source"]).name == f"{s['id']}.hea"
        expected = 330.0 if s["id"].endswith("l") else 300.0
        assert abs(s["duration"] - expected) <= 1.0, s["id"]
        for name, label, lead, fs, units, n in s["channels"]:
            assert name in CANONICAL_NAMES, f"{s['id']}: label {label!r} not mapped ({name!r})"
            assert fs == 250.0
            assert n == round(expected * 250)
            if name == "ecg":
                assert lead == label and units == "mV"
            if name == "abp":
                assert units == "mmHg"
        kinds = [c[0] for c in s["channels"]]
        assert kinds.count("ecg") >= 2, s["id"]  # every record has two ECG leads
        if any(c[1] == "II" for c in s["channels"]):
            assert s["ecg_lead"] == "II"


def test_challenge2015_label_mapping_covers_what_the_data_holds(challenge_summary):
    _, summary = challenge_summary
    by_label = {}
    for s in summary:
        for name, label, *_ in s["channels"]:
            by_label[label] = name
    assert by_label["PLETH"] == "ppg" and by_label["ABP"] == "abp" and by_label["RESP"] == "resp"
    for lead in ("I", "II", "III", "V", "MCL", "aVL", "aVR"):
        assert by_label.get(lead, "ecg") == "ecg"
    assert sum(1 for s in summary for c in s["channels"] if c[0] == "ppg") >= 150


def test_challenge2015_nan_gaps_are_kept(challenge_summary, shared_data):
    _, summary = challenge_summary
    with_nan = [s for s in summary if sum(s["nan"]) > 0]
    assert with_nan, "challenge2015 has invalid samples; the reader must keep them as NaN"
    s = with_nan[0]
    raw = wfdb.rdrecord(str(shared_data / "challenge2015" / s["id"]), smooth_frames=False)
    assert s["nan"] == [int(np.isnan(x).sum()) for x in raw.e_p_signal]


def test_wfdb_path_forms_give_the_same_record(shared_data):
    base = shared_data / "challenge2015" / "a123l"
    ref = read_wfdb(base)
    for form in (Path(f"{base}.hea"), Path(f"{base}.mat"), str(base)):
        rec = read_record(form)
        assert rec.record_id == "a123l" and rec.names == ref.names
        np.testing.assert_array_equal(rec.channels[2].signal, ref.channels[2].signal)
    assert [c.label for c in ref.channels] == ["II", "V", "PLETH", "ABP"]
    assert [c.units for c in ref.channels] == ["mV", "mV", "NU", "mmHg"]


# --------------------------------------------------------------------------- wfdb_samples


def test_041s_multisegment(shared_data):
    rec = read_record(shared_data / "wfdb_samples" / "041s")
    assert rec.record_id == "041s"
    assert [c.label for c in rec.channels] == ["III", "I", "V", "ABP", "PAP", "PLETH", "RESP"]
    assert set(rec.names) == {"ecg", "abp", "pap", "ppg", "resp"}
    # Frame rate 125 Hz; the ECG leads are stored 4 samples per frame (500 Hz) in this MIMIC excerpt.
    for c in rec.channels:
        assert c.fs == (500.0 if c.name == "ecg" else 125.0), c.label
        assert c.duration == pytest.approx(16.0)
    assert rec.get("abp").units == "mmHg" and rec.get("pap").units == "mmHg"
    # The two segments are concatenated in order, sample for sample.
    seg1 = read_wfdb(shared_data / "wfdb_samples" / "041s01")
    seg2 = read_wfdb(shared_data / "wfdb_samples" / "041s02")
    for i in range(len(rec.channels)):
        np.testing.assert_array_equal(
            rec.channels[i].signal, np.concatenate([seg1.channels[i].signal, seg2.channels[i].signal])
        )


def test_mixedsignals_each_channel_keeps_its_rate(shared_data):
    rec = read_record(shared_data / "wfdb_samples" / "mixedsignals")
    rates = {c.label: c.fs for c in rec.channels}
    frame = 62.4725
    assert rates == pytest.approx({"II": 4 * frame, "III": 4 * frame, "V": 4 * frame,
                                   "ABP": 2 * frame, "Pleth": 2 * frame, "Resp": frame})
    assert rec.get("ecg").lead == "II" and rec.get("ppg").label == "Pleth"
    assert rec.get("ppg").units == "NU" and rec.get("resp").units == "Ohm"
    durations = {round(c.duration, 6) for c in rec.channels}
    assert len(durations) == 1 and durations.pop() == pytest.approx(14400 / frame)
    # Multi-rate must not be averaged: the ECG has 4x the frames' samples and real detail.
    ecg = rec.get("ecg").signal
    assert len(ecg) == 4 * 14400 and np.nanstd(np.diff(ecg[: 4 * 1000])) > 0


def test_directory_listing_without_records_file(shared_data, tmp_path):
    for f in (shared_data / "wfdb_samples").iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert not (tmp_path / "RECORDS").exists()
    records = read_records(tmp_path)
    assert isinstance(records, Iterator)
    # The segments 041s01/041s02 belong to 041s and are not records of their own.
    assert [r.record_id for r in records] == ["041s", "mixedsignals"]


def test_wfdb_nan_written_invalid_comes_back_nan(tmp_path):
    x = np.column_stack([np.sin(np.arange(500) / 10.0), np.linspace(60, 120, 500)])
    x[100:140, 1] = np.nan
    wfdb.wrsamp("gap", fs=250, units=["mV", "mmHg"], sig_name=["II", "ART"], p_signal=x,
                fmt=["16", "16"], write_dir=str(tmp_path))
    rec = read_wfdb(tmp_path / "gap.hea")
    abp = rec.get("abp")
    assert abp.label == "ART" and abp.units == "mmHg"
    np.testing.assert_array_equal(np.isnan(abp.signal), np.isnan(x[:, 1]))
    np.testing.assert_allclose(abp.signal[:100], x[:100, 1], atol=0.01)


def test_read_records_is_lazy(tmp_path):
    x = np.zeros((250, 1))
    wfdb.wrsamp("good", fs=250, units=["mV"], sig_name=["II"], p_signal=x, fmt=["16"], write_dir=str(tmp_path))
    (tmp_path / "RECORDS").write_text("good\nmissing\n")
    records = read_records(tmp_path)
    assert next(records).record_id == "good"  # read before the bad entry is reached
    with raises_read_error(tmp_path / "RECORDS", "line 2", "missing"):
        next(records)


def test_unknown_label_keeps_its_name_and_channel_map_applies_to_wfdb(shared_data):
    rec = read_record(shared_data / "wfdb_samples" / "041s", channel_map={"PAP": "abp_pulmonary"})
    assert rec.has("abp_pulmonary") and not rec.has("pap")
    assert rec.get("abp_pulmonary").label == "PAP"


# --------------------------------------------------------------------------- UCI part_N.mat


def _uci_matrices(rng, lengths):
    out = []
    for n in lengths:
        t = np.arange(n) / 125.0
        out.append(np.vstack([
            1.5 + 0.5 * np.sin(2 * np.pi * 1.2 * t),            # PPG
            95 + 25 * np.sin(2 * np.pi * 1.2 * t - 0.3),        # ABP, mmHg
            0.1 * rng.standard_normal(n),                       # ECG II
        ]))
    return out


def write_uci_v5(path, matrices, var="p"):
    cells = np.empty((1, len(matrices)), dtype=object)
    for i, m in enumerate(matrices):
        cells[0, i] = m
    scipy.io.savemat(path, {var: cells})


def write_uci_v73(path, matrices, var="p"):
    """Write the way MATLAB -v7.3 does: a 512-byte userblock header, a K x 1 reference dataset
    (MATLAB's 1 x K, column-major) with MATLAB_class 'cell', matrices (N x 3 on disk, i.e.
    transposed) in the '#refs#' group with MATLAB_class 'double'."""
    with h5py.File(path, "w", userblock_size=MAT73_USERBLOCK) as f:
        refs_group = f.create_group("#refs#")
        refs = np.empty((len(matrices), 1), dtype=h5py.ref_dtype)
        for i, m in enumerate(matrices):
            ds = refs_group.create_dataset(f"c{i}", data=np.asarray(m).T)
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            refs[i, 0] = ds.ref
        cell = f.create_dataset(var, data=refs, dtype=h5py.ref_dtype)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


@pytest.mark.parametrize("writer", [write_uci_v5, write_uci_v73], ids=["v5", "v7.3"])
def test_uci_roundtrip(tmp_path, writer):
    rng = np.random.default_rng(3)
    mats = _uci_matrices(rng, [300, 1000, 8 * 125])
    path = tmp_path / "part_1.mat"
    writer(path, mats)
    recs = read_uci_mat(path)
    assert [r.record_id for r in recs] == ["part_1_0000", "part_1_0001", "part_1_0002"]
    for rec, m in zip(recs, mats):
        assert rec.names == ["ppg", "abp", "ecg"]
        assert rec.source == str(path)
        assert rec.get("ecg").lead == "II" and rec.get("abp").units == "mmHg"
        assert all(c.fs == 125.0 for c in rec.channels)
        for row, name in enumerate(("ppg", "abp", "ecg")):
            np.testing.assert_array_equal(rec.get(name).signal, m[row])
    # read_records yields the same, lazily; read_record refuses a many-cell file.
    lazy = read_records(path)
    assert isinstance(lazy, Iterator)
    assert [r.record_id for r in lazy] == [r.record_id for r in recs]
    with raises_read_error(path, "3 records", "read_records"):
        read_record(path)


def test_uci_v73_original_variable_name_and_nan(tmp_path):
    mats = _uci_matrices(np.random.default_rng(0), [500])
    mats[0][1, 10:20] = np.nan
    path = tmp_path / "Part_1.mat"
    write_uci_v73(path, mats, var="Part_1")
    rec = read_record(path)  # one cell: read_record returns it
    assert rec.record_id == "Part_1_0000"
    assert np.isnan(rec.get("abp").signal).sum() == 10


def test_uci_in_directory_listing(tmp_path):
    write_uci_v5(tmp_path / "part_2.mat", _uci_matrices(np.random.default_rng(1), [200, 200]))
    assert [r.record_id for r in read_records(tmp_path)] == ["part_2_0000", "part_2_0001"]


@pytest.mark.parametrize("writer", [write_uci_v5, write_uci_v73], ids=["v5", "v7.3"])
def test_uci_errors(tmp_path, writer):
    path = tmp_path / "part_3.mat"
    writer(path, _uci_matrices(np.random.default_rng(0), [100]), var="signals")
    with raises_read_error(path, "no variable 'p'", "signals"):
        read_uci_mat(path)
    bad = tmp_path / "part_4.mat"
    writer(bad, [np.zeros((3, 50)), np.zeros((2, 50))])
    with raises_read_error(bad, "cell 1", "3 x N"):
        read_uci_mat(bad)


def test_uci_not_a_cell_array_and_not_a_mat(tmp_path):
    path = tmp_path / "part_5.mat"
    scipy.io.savemat(path, {"p": np.zeros((3, 100))})
    with raises_read_error(path, "not a cell array"):
        read_uci_mat(path)
    junk = tmp_path / "part_6.mat"
    junk.write_bytes(b"this is not a MATLAB file at all" * 10)
    with raises_read_error(junk, "not a MATLAB file"):
        read_uci_mat(junk)
    empty = tmp_path / "part_7.mat"
    empty.write_bytes(b"")
    with raises_read_error(empty, "empty file"):
        read_records(empty).__next__()


# --------------------------------------------------------------------------- CSV


def test_csv_read_with_time_units_gaps_and_map(tmp_path):
    f = tmp_path / "wrist.csv"
    rows = ["# exported by a test", "time,IR,Red,ABP (mmHg),II"]
    for i in range(50):
        abp = "" if 10 <= i < 15 else f"{90 + i % 7}"
        rows.append(f"{i / 50:.2f},{1000 + i},{2000 + i},{abp},{0.01 * i:.2f}")
    f.write_text("\n".join(rows) + "\n")
    rec = read_csv(f, fs=50, channel_map={"IR": "ppg", "Red": "red_led"})
    assert rec.record_id == "wrist" and rec.source == str(f)
    assert [c.label for c in rec.channels] == ["IR", "Red", "ABP", "II"]  # time is not a channel
    assert rec.names == ["ppg", "red_led", "abp", "ecg"]
    assert all(c.fs == 50.0 for c in rec.channels)
    abp = rec.get("abp")
    assert abp.units == "mmHg" and np.isnan(abp.signal).sum() == 5 and np.isnan(abp.signal[10:15]).all()
    np.testing.assert_array_equal(rec.get("ppg").signal, 1000 + np.arange(50))
    assert rec.get("ecg").lead == "II"
    # read_record dispatches on the extension and passes fs and the map through.
    again = read_record(f, fs=50, channel_map={"IR": "ppg"})
    assert again.names[0] == "ppg"


def test_csv_tsv_and_semicolon(tmp_path):
    for name, sep in (("a.tsv", "\t"), ("b.csv", ";")):
        f = tmp_path / name
        f.write_text(sep.join(["PLETH", "ABP"]) + "\n" + "\n".join(f"{i}{sep}{80 + i}" for i in range(10)) + "\n")
        rec = read_record(f, fs=125)
        assert rec.names == ["ppg", "abp"] and len(rec.get("abp").signal) == 10


def test_csv_in_directory_needs_fs(tmp_path, caplog):
    (tmp_path / "x.csv").write_text("PPG\n1\n2\n")
    assert list(read_records(tmp_path)) == []
    assert "pass fs" in caplog.text and "x.csv" in caplog.text
    assert [r.record_id for r in read_records(tmp_path, fs=100)] == ["x"]


def test_csv_errors(tmp_path):
    f = tmp_path / "sig.csv"
    f.write_text("time,PPG,ABP\n0,1,80\n0.01,2,81\n")
    with raises_read_error(f, "pass fs"):
        read_csv(f, None)
    with raises_read_error(f, "pass fs"):
        read_record(f)
    with raises_read_error(f, "pass fs"):
        read_records(f)
    for fs in (0, -125, float("nan"), 1e9):
        with raises_read_error(f, "absurd"):
            read_csv(f, fs)
    with raises_read_error(f, "not in the file", "'IR'", "'PPG'"):
        read_csv(f, 100, channel_map={"IR": "ppg"})

    cases = {
        "dup.csv": ("PPG,PPG\n1,2\n", "duplicate"),
        "nohead.csv": ("1,2\n3,4\n", "channel labels"),
        "onlytime.csv": ("time\n0\n1\n", "no signal columns"),
        "width.csv": ("PPG,ABP\n1,2\n3\n", "line 3"),
        "text.csv": ("PPG,ABP\n1,2\n3,high\n", "line 3, column 'ABP'"),
        "norows.csv": ("PPG,ABP\n", "no data rows"),
        "empty.csv": ("", "empty file"),
    }
    for name, (text, reason) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        with raises_read_error(p, reason):
            read_csv(p, 100)
    missing = tmp_path / "absent.csv"
    with raises_read_error(missing, "no such file"):
        read_record(missing, fs=100)


# --------------------------------------------------------------------------- WFDB and dispatch errors


def test_wfdb_errors(tmp_path, shared_data):
    with raises_read_error(tmp_path / "nothere", "no such file"):
        read_record(tmp_path / "nothere")
    with raises_read_error(tmp_path / "nothere", "no such file"):
        read_records(tmp_path / "nothere")
    with raises_read_error(tmp_path / "nothere.hea", "no such file"):
        read_wfdb(tmp_path / "nothere.hea")

    junk = tmp_path / "junk.hea"
    junk.write_text("this is not a header\n")
    with raises_read_error(junk, "not a WFDB header"):
        read_record(junk)
    empty = tmp_path / "empty.hea"
    empty.write_text("")
    with raises_read_error(empty, "empty file"):
        read_record(tmp_path / "empty")

    # A real header whose signal file is not there.
    shutil.copy(shared_data / "challenge2015" / "a123l.hea", tmp_path / "a123l.hea")
    with raises_read_error(tmp_path / "a123l.hea", "a123l.mat", "missing"):
        read_record(tmp_path / "a123l")
    # A truncated signal file.
    shutil.copy(shared_data / "challenge2015" / "a123l.hea", tmp_path / "cut.hea")
    (tmp_path / "cut.hea").write_text((tmp_path / "cut.hea").read_text().replace("a123l", "cut"))
    (tmp_path / "cut.mat").write_bytes((shared_data / "challenge2015" / "a123l.mat").read_bytes()[:1000])
    with raises_read_error(tmp_path / "cut.hea", "cannot read the signals"):
        read_record(tmp_path / "cut")
    # An absurd sampling rate in the header.
    (tmp_path / "fast.dat").write_bytes(b"\x00" * 20)
    for fs in ("5000000", "0", "0.001"):
        (tmp_path / "fast.hea").write_text(f"fast 1 {fs} 10\nfast.dat 16 200/mV 16 0 0 0 0 II\n")
        with raises_read_error(tmp_path / "fast.hea", "absurd"):
            read_record(tmp_path / "fast.hea")
    # A multi-segment header whose segment is missing.
    (tmp_path / "multi.hea").write_text("multi/2 1 125 20\nmultiA 10\nmultiB 10\n")
    with raises_read_error(tmp_path / "multi.hea", "multiA.hea", "missing"):
        read_record(tmp_path / "multi")


def test_dispatch_errors(tmp_path, shared_data):
    with raises_read_error(tmp_path, "directory", "read_records"):
        read_record(tmp_path)
    other = tmp_path / "notes.xyz"
    other.write_text("hello")
    with raises_read_error(other, "unknown format"):
        read_record(other)
    mixed = shared_data / "wfdb_samples" / "mixedsignals"
    with raises_read_error(mixed, "fs=125", "states"):
        read_record(mixed, fs=125)
    assert read_record(mixed, fs=62.4725 * 2).record_id == "mixedsignals"  # agrees with ABP's rate


def test_wfdb_variable_layout_multisegment(tmp_path):
    """MIMIC-style variable layout: a signal absent from a segment is NaN there, and a channel
    absent from every segment is kept as an all-NaN channel (not an error, not dropped)."""
    n1, n2 = 250, 125
    ecg1, abp1 = np.sin(np.arange(n1) / 5.0), 80.0 + np.arange(n1) % 40
    wfdb.wrsamp("lay_s1", fs=125, units=["mV", "mmHg"], sig_name=["II", "ABP"],
                p_signal=np.column_stack([ecg1, abp1]), fmt=["16", "16"], write_dir=str(tmp_path))
    wfdb.wrsamp("lay_s2", fs=125, units=["mV"], sig_name=["II"],
                p_signal=np.sin(np.arange(n2) / 5.0)[:, None], fmt=["16"], write_dir=str(tmp_path))
    (tmp_path / "lay_layout.hea").write_text(
        "lay_layout 3 125 0\n~ 0 200/mV 16 0 0 0 0 II\n~ 0 1/mmHg 16 0 0 0 0 ABP\n~ 0 1/NU 16 0 0 0 0 PLETH\n"
    )
    (tmp_path / "lay.hea").write_text(f"lay/3 3 125 {n1 + n2}\nlay_layout 0\nlay_s1 {n1}\nlay_s2 {n2}\n")
    rec = read_record(tmp_path / "lay")
    assert rec.names == ["ecg", "abp", "ppg"]
    abp = rec.get("abp").signal
    assert len(abp) == n1 + n2 and np.isnan(abp[n1:]).all()
    np.testing.assert_allclose(abp[:n1], abp1, atol=0.01)
    assert np.isnan(rec.get("ppg").signal).all()
    # Listing the directory gives the one record, not its layout or segments.
    assert [r.record_id for r in read_records(tmp_path)] == ["lay"]
