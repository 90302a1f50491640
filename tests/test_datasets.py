"""Readers of the big public datasets: VitalDB ``.vital``, PulseDB subset ``.mat``, MIMIC-III
matched-subset multi-segment WFDB records.

How the fixtures are made (tests/fixtures/datasets/make_fixtures.py, README.md there): written
into tmp_path at test time by the datasets' own writers where they exist (vitaldb's
``VitalFile.to_vital``; wfdb's ``wrsamp`` and ``MultiRecord.wrheader``), otherwise to the
documented layout (the MIMIC layout header as text; the PulseDB subset as MATLAB v7.3 with
h5py, following PulseDB's ``Generate_Subsets.m``). Waveforms are edgebp's synthetic subjects.
Nothing binary is committed. Tolerances: VitalDB stores float32 and the reader must give those
samples back exactly; PulseDB stores float64, exact; MIMIC segments are 8-bit (format 80), so
a sample may be off by half a quantisation step, 0.5 / adc_gain of that segment's header.
"""

from __future__ import annotations

import doctest
import gzip
import importlib.util
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import wfdb
from click.testing import CliRunner

from edgebp.io import ReadError, read_record, read_records
from edgebp.io import mimic3_reader, pulsedb_reader, vitaldb_reader
from edgebp.io.mimic3_reader import read_mimic3_multiseg
from edgebp.io.pulsedb_reader import iter_pulsedb, pulsedb_labels, read_pulsedb
from edgebp.io.vitaldb_reader import read_vital, vital_tracks
from edgebp.processing.chain import preprocess_record

_spec = importlib.util.spec_from_file_location(
    "dataset_fixtures", Path(__file__).parent / "fixtures" / "datasets" / "make_fixtures.py"
)
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


def _read_error(path, *words):
    """A ReadError whose message starts with the path and contains every word."""

    class _Check:
        def __enter__(self):
            return self

        def __exit__(self, typ, exc, tb):
            assert typ is ReadError, f"expected ReadError, got {typ}"
            msg = str(exc)
            assert msg.startswith(str(path)), msg
            assert "\n" not in msg, msg
            for w in words:
                assert w in msg, (w, msg)
            return True

    return _Check()


@pytest.fixture(scope="module")
def vital_path(tmp_path_factory):
    return fx.vital_fixture(tmp_path_factory.mktemp("vital"))


@pytest.fixture(scope="module")
def pulsedb_path(tmp_path_factory):
    return fx.pulsedb_fixture(tmp_path_factory.mktemp("pulsedb"))


@pytest.fixture(scope="module")
def mimic_path(tmp_path_factory):
    return fx.mimic3_fixture(tmp_path_factory.mktemp("mimic"))


# ---- VitalDB -------------------------------------------------------------------------------


def test_vital_channels_fs_units_and_samples(vital_path):
    rec = read_vital(vital_path)
    assert rec.record_id == "0007" and rec.subject_id == "0007" and rec.source == str(vital_path)
    assert rec.names == ["ecg", "ppg", "abp"]
    assert [c.label for c in rec.channels] == ["SNUADC/ECG_II", "SNUADC/PLETH", "SNUADC/ART"]
    assert rec.get("ecg").lead == "II"
    assert {c.fs for c in rec.channels} == {fx.VITAL_FS}
    assert [c.units for c in rec.channels] == ["mV", "", "mmHg"]
    n = int(fx.VITAL_SECONDS * fx.VITAL_FS)
    assert all(len(c.signal) == n for c in rec.channels)  # one time base: the file's start to end
    truth = fx.vital_signals()
    # float32 in the file, float64 out: exact.
    np.testing.assert_array_equal(rec.get("ecg").signal, truth["ecg"].astype(np.float64))


def test_vital_gaps_are_nan(vital_path):
    rec = read_vital(vital_path)
    fs = fx.VITAL_FS
    ppg = rec.get("ppg").signal
    a, b = (int(t * fs) for t in fx.VITAL_PLETH_GAP_S)
    assert np.isnan(ppg[a:b]).all()
    assert not np.isnan(ppg[:a]).any() and not np.isnan(ppg[b:]).any()
    np.testing.assert_array_equal(ppg[b:], fx.vital_signals()["ppg"][b:])
    abp = rec.get("abp").signal
    k = int(fx.VITAL_ART_START_S * fs)
    assert np.isnan(abp[:k]).all() and not np.isnan(abp[k:]).any()  # the line starts late


def test_vital_channels_tracks_and_subject(vital_path):
    assert read_vital(vital_path, channels=["ppg"]).names == ["ppg"]
    assert read_vital(vital_path, subject_id="patient-42").subject_id == "patient-42"
    # FEM is not abp unless asked for; the numeric track never becomes a channel.
    assert "SNUADC/FEM" not in [c.label for c in read_vital(vital_path).channels]
    rec = read_vital(vital_path, channels=["ecg"], tracks={"SNUADC/FEM": "abp"})
    assert rec.names == ["ecg", "abp"] and rec.get("abp").label == "SNUADC/FEM"
    tracks = vital_tracks(vital_path)
    assert tracks["Solar8000/ART_SBP"]["type"] == "numeric" and tracks["SNUADC/ART"]["fs"] == fx.VITAL_FS
    with pytest.raises(ValueError, match=r"unknown channel name\(s\) 'bp'; valid: ecg, ppg, abp"):
        read_vital(vital_path, channels=["bp"])
    with _read_error(vital_path, "'SNUADC/CVP'", "wave tracks:", "SNUADC/ART"):
        read_vital(vital_path, tracks={"SNUADC/CVP": "abp"})


def test_vital_malformed_files(tmp_path):
    junk = tmp_path / "junk.vital"
    junk.write_bytes(b"hello, not a vital file")
    with _read_error(junk, "not a VitalDB .vital file", "gzip"):
        read_vital(junk)
    wrong = tmp_path / "wrong.vital"
    wrong.write_bytes(gzip.compress(b"NOPE" + b"\0" * 40))
    with _read_error(wrong, "signature", "VITA"):
        read_vital(wrong)
    with _read_error(tmp_path / "absent.vital", "no such file"):
        read_vital(tmp_path / "absent.vital")
    # A well-formed file with only a numeric track: nothing to read, and it says what it has.
    import vitaldb

    vf = vitaldb.VitalFile()
    vf.dtstart, vf.dtend = 1.7e9, 1.7e9 + 10
    vf.add_track("Solar8000/HR", [{"dt": 1.7e9 + 1, "val": 70.0}], unit="/min")
    numeric = tmp_path / "numeric.vital"
    vf.to_vital(str(numeric))
    with _read_error(numeric, "no ecg/ppg/abp wave track", "wave tracks: none"):
        read_vital(numeric)


def test_vital_missing_package_says_what_to_install(vital_path, monkeypatch):
    # sys.modules[name] = None is how Python itself reports a module as not installed.
    monkeypatch.setitem(sys.modules, "vitaldb", None)
    with pytest.raises(ImportError, match=r"pip install edgebp\[datasets\]"):
        read_vital(vital_path)


def test_core_io_does_not_import_vitaldb():
    import subprocess

    code = "import sys, edgebp.io; print('vitaldb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- PulseDB -------------------------------------------------------------------------------


def test_pulsedb_segments_channels_fs(pulsedb_path):
    recs = read_pulsedb(pulsedb_path)
    sig = fx.pulsedb_signals()
    assert len(recs) == len(fx.PULSEDB_SUBJECTS) == sig.shape[0]
    r = recs[3]
    assert r.record_id == "VitalDB_CalBased_Test_Subset_0000003"
    assert r.names == ["ecg", "ppg", "abp"] and [c.label for c in r.channels] == ["ECG_F", "PPG_F", "ABP_Raw"]
    assert {c.fs for c in r.channels} == {125.0} and r.duration == 10.0
    assert r.get("abp").units == "mmHg"
    for k, name in enumerate(("ecg", "ppg", "abp")):  # MATLAB N x 3 x 1250, row order ECG, PPG, ABP
        np.testing.assert_array_equal(r.get(name).signal, sig[3, k])


def test_pulsedb_subject_ids_and_subject_wise_split(pulsedb_path):
    recs = read_pulsedb(pulsedb_path)
    assert [r.subject_id for r in recs] == fx.PULSEDB_SUBJECTS
    # The project's group splitter (train/splits.py) never puts one subject in two splits.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from train.splits import split_groups

    idx = split_groups([r.subject_id for r in recs], val_frac=0.34, test_frac=0.33, seed=0)
    where = {}
    for split, members in idx.items():
        for i in members:
            where.setdefault(recs[i].subject_id, set()).add(split)
    assert len(where) == 3 and all(len(v) == 1 for v in where.values()), where
    chosen = read_pulsedb(pulsedb_path, channels=["ppg"], subjects=["p0004561"])
    assert [r.record_id[-1] for r in chosen] == ["1", "4"] and chosen[0].names == ["ppg"]


def test_pulsedb_blocks_ranges_and_labels(pulsedb_path, monkeypatch):
    # Blocks of 2 segments: a subject filter then reads non-contiguous indices per block.
    monkeypatch.setattr(pulsedb_reader, "_CHUNK", 2)
    got = [r.record_id for r in iter_pulsedb(pulsedb_path, subjects=["p0001230"])]
    assert got == [f"VitalDB_CalBased_Test_Subset_{i:07d}" for i in (0, 2, 5)]
    sig = fx.pulsedb_signals()
    for r, i in zip(iter_pulsedb(pulsedb_path, subjects=["p0001230"]), (0, 2, 5)):
        np.testing.assert_array_equal(r.get("abp").signal, sig[i, 2])
    assert [r.record_id[-1] for r in read_pulsedb(pulsedb_path, start=2, stop=4)] == ["2", "3"]
    labels = pulsedb_labels(pulsedb_path)
    assert labels["subject"].tolist() == fx.PULSEDB_SUBJECTS
    assert labels["gender"].tolist() == ["M", "F", "M", "F", "F", "M"]
    np.testing.assert_array_equal(labels["sbp"], sig[:, 2].max(axis=1))
    assert np.isnan(labels["height"]).all() and int(labels["segment_length"]) == 1250
    with pytest.raises(ValueError, match=r"unknown channel name\(s\) 'ABP'; valid: ecg, ppg, abp"):
        read_pulsedb(pulsedb_path, channels=["ABP"])


def test_pulsedb_layout_is_matlab_v73(pulsedb_path):
    """What the reader relies on, checked on the file itself: MATLAB's header block, the struct,
    the transposed array and the cell references."""
    assert pulsedb_path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(pulsedb_path, "r") as f:
        g = f["Subset"]
        assert g.attrs["MATLAB_class"] == b"struct"
        assert g["Signals"].shape == (1250, 3, 6)  # MATLAB 6 x 3 x 1250, transposed
        assert g["Subject"].dtype == h5py.ref_dtype and g["Subject"].shape == (1, 6)
        first = f[g["Subject"][0, 0]]
        assert first.attrs["MATLAB_class"] == b"char" and first.name.startswith("/#refs#/")


def test_pulsedb_mat73_reads_fixture_like_pulsedb_readme(pulsedb_path):
    """PulseDB's README loads subsets with mat73; when it is installed, it must see our fixture
    as the README expects (Signals N x 3 x 1250, Subject an N x 1 cell)."""
    mat73 = pytest.importorskip("mat73")
    s = mat73.loadmat(str(pulsedb_path))["Subset"]
    np.testing.assert_array_equal(s["Signals"], fx.pulsedb_signals())
    assert [x[0] for x in s["Subject"]] == fx.PULSEDB_SUBJECTS


def _pulsedb_broken(path: Path, drop: str | None = None, subject_n: int | None = None, signals=None) -> Path:
    sig = fx.pulsedb_signals() if signals is None else signals
    pulsedb_reader.pulsedb_subset_write(path, sig, [f"p{i:06d}0" for i in range(sig.shape[0])])
    with h5py.File(path, "r+") as f:
        if drop:
            del f["Subset"][drop]
        if subject_n is not None:
            refs = f["Subset"]["Subject"][()][:, :subject_n]
            del f["Subset"]["Subject"]
            f["Subset"].create_dataset("Subject", data=refs)
    return path


def test_pulsedb_malformed_files_name_file_and_field(tmp_path):
    p = _pulsedb_broken(tmp_path / "no_subject.mat", drop="Subject")
    with _read_error(p, "Subset.Subject is missing"):
        read_pulsedb(p)
    p = _pulsedb_broken(tmp_path / "short_subject.mat", subject_n=4)
    with _read_error(p, "Subset.Subject has 4 entries but Signals has 6 segments"):
        read_pulsedb(p)
    p = _pulsedb_broken(tmp_path / "two_rows.mat")
    with h5py.File(p, "r+") as f:
        del f["Subset"]["Signals"]
        f["Subset"].create_dataset("Signals", data=np.zeros((1250, 2, 6)))
    with _read_error(p, "Subset.Signals is 6 x 2 x 1250", "expected N x 3 x 1250"):
        read_pulsedb(p)
    p = _pulsedb_broken(tmp_path / "no_signals.mat", drop="Signals")
    with _read_error(p, "no struct 'Subset' with a field 'Signals'"):
        read_pulsedb(p)
    v5 = tmp_path / "v5.mat"
    import scipy.io

    scipy.io.savemat(v5, {"Subset": {"Signals": np.zeros((2, 3, 1250))}})
    with _read_error(v5, "not a MATLAB v7.3 (HDF5) file"):
        read_pulsedb(v5)


# ---- MIMIC-III -----------------------------------------------------------------------------


def _tolerance(seg_dir: Path, label: str) -> float:
    """Half the coarsest quantisation step of ``label`` over the segments that carry it."""
    steps = []
    for seg, _, present in fx.MIMIC_SEGMENTS:
        if seg != "~" and label in present:
            h = wfdb.rdheader(str(seg_dir / seg))
            steps.append(1.0 / h.adc_gain[h.sig_name.index(label)])
    return 0.5 * max(steps) * (1 + 1e-9)


def test_mimic3_channels_subject_gaps(mimic_path):
    rec = read_mimic3_multiseg(mimic_path)
    assert rec.record_id == fx.MIMIC_RECORD and rec.subject_id == fx.MIMIC_SUBJECT
    assert [c.label for c in rec.channels] == fx.MIMIC_LAYOUT
    assert rec.names == ["ecg", "ecg", "ppg", "abp", "resp"]
    assert rec.get("ecg").label == "II" and rec.get("ecg", lead="V").label == "V"
    assert [c.units for c in rec.channels] == ["mV", "mV", "NU", "mmHg", "pm"]
    assert {c.fs for c in rec.channels} == {125.0}
    fs = fx.MIMIC_FS
    n = int(sum(s for _, s, _ in fx.MIMIC_SEGMENTS) * fs)
    assert all(len(c.signal) == n for c in rec.channels)
    truth = fx.mimic3_signals()
    pos = 0
    for seg, seconds, present in fx.MIMIC_SEGMENTS:
        k = int(seconds * fs)
        for c in rec.channels:
            part = c.signal[pos:pos + k]
            if c.label in present:
                tol = _tolerance(mimic_path.parent, c.label)
                np.testing.assert_allclose(part, truth[c.label][pos:pos + k], rtol=0, atol=tol)
            else:  # the gap "~", or a segment without that signal
                assert np.isnan(part).all(), (seg, c.label)
        pos += k


def test_mimic3_methods_agree_and_channels(mimic_path):
    by_seg = read_mimic3_multiseg(mimic_path, method="segments")
    by_m2s = read_mimic3_multiseg(mimic_path, method="m2s")
    assert [c.label for c in by_m2s.channels] == [c.label for c in by_seg.channels]
    for a, b in zip(by_seg.channels, by_m2s.channels):
        np.testing.assert_array_equal(a.signal, b.signal)
    sel = read_mimic3_multiseg(mimic_path, channels=["ppg", "abp"])
    assert sel.names == ["ppg", "abp"]
    np.testing.assert_array_equal(sel.get("abp").signal, by_seg.get("abp").signal)
    with pytest.raises(ValueError, match=r"method 'rdsamp' is not valid; choose one of: segments, m2s"):
        read_mimic3_multiseg(mimic_path, method="rdsamp")
    with pytest.raises(ValueError, match=r"unknown channel name\(s\) 'PLETH'; valid: ecg, ppg, abp, resp"):
        read_mimic3_multiseg(mimic_path, channels=["PLETH"])


def test_mimic3_dispatch_and_listing(mimic_path):
    rec = read_record(mimic_path)
    assert rec.subject_id == fx.MIMIC_SUBJECT and rec.names == ["ecg", "ecg", "ppg", "abp", "resp"]
    assert read_record(f"{mimic_path}.hea").subject_id == fx.MIMIC_SUBJECT
    # The directory is one record: the layout and segments are parts of it.
    assert [r.record_id for r in read_records(mimic_path.parent)] == [fx.MIMIC_RECORD]


def test_mimic3_malformed(mimic_path, tmp_path):
    import shutil

    d = tmp_path / fx.MIMIC_SUBJECT
    shutil.copytree(mimic_path.parent, d)
    (d / "3000001_0002.dat").unlink()
    master = d / fx.MIMIC_RECORD
    with _read_error(f"{master}.hea", "segment 3000001_0002", "3000001_0002.dat", "missing"):
        read_mimic3_multiseg(master)
    (d / "3000001_0003.hea").unlink()
    with _read_error(f"{master}.hea", "segment header 3000001_0003.hea is missing"):
        read_mimic3_multiseg(master)
    single = tmp_path / "single"
    wfdb.wrsamp("single", fs=125, units=["mV"], sig_name=["II"], p_signal=np.zeros((10, 1)), fmt=["16"],
                write_dir=str(tmp_path))
    with _read_error(f"{single}.hea", "not a multi-segment header"):
        read_mimic3_multiseg(single)


# ---- through the project's pipeline --------------------------------------------------------


def test_dispatch_and_listing_of_vital_and_pulsedb(vital_path, pulsedb_path):
    assert read_record(vital_path).names == ["ecg", "ppg", "abp"]
    with _read_error(pulsedb_path, "several 10-s segments", "read_records"):
        read_record(pulsedb_path)
    recs = list(read_records(pulsedb_path, channel_map={"PPG_F": "ppg"}))
    assert len(recs) == 6 and recs[1].subject_id == "p0004561"  # the map keeps subject ids
    d = vital_path.parent
    (d / pulsedb_path.name).write_bytes(pulsedb_path.read_bytes())
    ids = [r.record_id for r in read_records(d)]
    assert ids[-1] == "0007" and len(ids) == 7


@pytest.mark.parametrize("which", ["vital", "pulsedb", "mimic"])
def test_records_go_through_preprocessing(which, vital_path, pulsedb_path, mimic_path):
    rec = {"vital": lambda: read_vital(vital_path), "pulsedb": lambda: read_pulsedb(pulsedb_path)[0],
           "mimic": lambda: read_mimic3_multiseg(mimic_path)}[which]()
    X, abp = preprocess_record(rec, inputs=("ecg", "ppg"), fs_out=125.0)
    n_expected = round(rec.duration * 125.0)
    assert X.shape[0] == 2 and abp is not None
    # All channels of each record share one rate, so nothing is trimmed (measured: 5000, 1250
    # and 7500 columns for the three fixtures, exactly duration x 125 Hz).
    assert X.shape[1] == n_expected, (X.shape, n_expected)
    if which != "pulsedb":  # a gap in the input stays a gap (NaN) after preprocessing
        assert np.isnan(X[1]).any()
    assert np.isfinite(X[0, -100:]).all()


def test_inspect_lists_the_datasets(vital_path, pulsedb_path, mimic_path):
    from edgebp.inspect import inspect_command, inspect_record

    info = inspect_record(read_mimic3_multiseg(mimic_path))
    assert info["subject_id"] == fx.MIMIC_SUBJECT and info["abp"]["valid_beats"] > 10
    runner = CliRunner()
    out = runner.invoke(inspect_command, [str(vital_path)])
    assert out.exit_code == 0, out.output
    assert "0007" in out.output and "ppg[SNUADC/PLETH] 500 Hz" in out.output
    out = runner.invoke(inspect_command, [str(pulsedb_path), "--json"])
    assert out.exit_code == 0, out.output
    assert "6 records" in out.output
    bad = vital_path.parent / "bad.vital"
    bad.write_bytes(b"junk")
    import subprocess

    res = subprocess.run([sys.executable, "-m", "edgebp", "data", "inspect", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:") and f"{bad}: not a VitalDB .vital file" in err[0], err


@pytest.mark.parametrize("module", [vitaldb_reader, pulsedb_reader, mimic3_reader])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _doc_blocks(lang: str) -> list[str]:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_docs_examples_run():
    """docs/datasets.md: its bash block (fixtures + edgebp data inspect) and Python block run."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    (bash,) = [b for b in _doc_blocks("bash") if "make_fixtures" in b]  # the other one is pip install
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", bash], cwd=repo, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "7 records," in res.stdout and "1 records," in res.stdout and "p000123-2150-01-01-00-00" in res.stdout
    (py,) = _doc_blocks("python")
    res = subprocess.run([sys.executable, "-"], input=py, cwd=repo, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0] == "['ppg', 'abp'] 500.0 (1, 5000)"
    assert lines[1] == "VitalDB_CalBased_Test_Subset_0000000 p0001230 10.0" and len(lines) == 8
    assert lines[-1] == "p000123 ['ecg', 'ecg', 'ppg', 'abp']"
