"""``edgebp data inspect`` and ``inspect_record`` on real challenge2015 records.

How the records were chosen: a throwaway survey script read every challenge2015 record with
wfdb and printed, per channel, the 5/50/95th percentiles of ABP, the median and the share of
2 s windows whose SD was below 0.5 mmHg (ABP) or exactly zero (PLETH); the candidates were then
plotted and checked by eye, and `edgebp data inspect` was run on the whole directory.

- a555l, v292s: clean ECG, PLETH and ABP (~179/86 and ~110/60 mmHg): usable for both pairs.
- a345l: ABP reads a flat ~0 mmHg for the whole record (line disconnected).
- v119l: ABP is pulsatile but reads ~22/14 mmHg (the "25/13" kind of record).
- a167l: ABP ~30/22 mmHg, damped and flat half the time; PLETH flat at 2.54 NU (76 %).
- b387l: PLETH exactly flat (zero SD) 58 % of the record; ABP and ECG clean.
- v759l: PLETH flat at 0 for 84 % of the record; ABP and ECG clean.
- v531l: PLETH all zeros, ABP all NaN, both ECG leads mostly flat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.inspect import inspect_command, inspect_record
from edgebp.record import Channel, Record

EXPECTED = {
    # record: (verdict, usable_for, substring expected in the "missing" text)
    "a555l": ("usable", ["ppg+abp", "ecg+abp"], None),
    "v292s": ("usable", ["ppg+abp", "ecg+abp"], None),
    "a345l": ("unusable", [], "flat"),
    "v119l": ("unusable", [], "no usable ABP"),
    "a167l": ("unusable", [], "no usable ABP"),
    "b387l": ("usable", ["ecg+abp"], None),
    "v759l": ("usable", ["ecg+abp"], None),
    "v531l": ("unusable", [], "no usable PPG or ECG"),
}


@pytest.fixture(scope="module")
def infos(shared_data):
    from edgebp.io import read_record

    return {name: inspect_record(read_record(shared_data / "challenge2015" / name)) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdicts_on_known_records(infos, name):
    info = infos[name]
    verdict, usable_for, missing = EXPECTED[name]
    assert info["verdict"] == verdict, info["missing"]
    assert info["usable_for"] == usable_for
    if missing:
        assert any(missing in m for m in info["missing"]), info["missing"]
    else:
        assert info["missing"] == []


def test_reasons_and_numbers(infos):
    clean = infos["a555l"]
    assert [c["name"] for c in clean["channels"]] == ["ecg", "ecg", "ppg", "abp"]
    assert all(c["fs"] == 250.0 for c in clean["channels"])
    assert clean["duration_s"] == pytest.approx(330.0)
    a = clean["abp"]
    assert 150 < a["sbp"]["median"] < 200 and 70 < a["dbp"]["median"] < 100
    assert a["sbp"]["p5"] <= a["sbp"]["median"] <= a["sbp"]["p95"]
    assert 45 < a["hr_bpm"] < 75 and a["valid_beats"] > 250
    r = infos["v119l"]["abp"]
    assert r["usable"] == 0.0 and r["valid_beats"] == 0 and r["sbp"] is None
    abp_v119 = next(c for c in infos["v119l"]["channels"] if c["name"] == "abp")
    assert abp_v119["beats"] > 100                            # pulsatile, but implausible
    assert abp_v119["reasons"]["implausible_beat"] > 0.9
    ppg_b387 = next(c for c in infos["b387l"]["channels"] if c["name"] == "ppg")
    assert ppg_b387["usable"] < 0.5 and ppg_b387["reasons"]["flat"] > 0.5
    abp_a345 = next(c for c in infos["a345l"]["channels"] if c["name"] == "abp")
    assert abp_a345["reasons"]["flat"] > 0.95


def test_synthetic_record_without_inputs():
    fs = 125.0
    ph = (np.arange(int(60 * fs)) / fs * 1.2) % 1.0
    abp = 80 + 40 * np.exp(-((ph - 0.2) / 0.08) ** 2) + 8 * (1 - ph)
    info = inspect_record(Record("r", [Channel.from_label("ABP", abp, fs, "mmHg")]))
    assert info["verdict"] == "unusable"
    assert info["missing"] == ["no usable PPG or ECG channel"]
    assert info["abp"]["usable"] > 0.9
    info = inspect_record(Record("empty", []))
    assert info["missing"][0] == "no ABP channel"
    # an ECG at a rate too low for QRS detection is reported, not a crash
    ecg = Channel.from_label("II", np.zeros(300), 10.0, "mV")
    info = inspect_record(Record("slow", [ecg]))
    assert "error" in info["channels"][0] and "too low" in info["channels"][0]["error"]


def _subset(tmp_path, shared_data, names):
    src = shared_data / "challenge2015"
    for n in names:
        for ext in (".hea", ".mat"):
            os.symlink(src / f"{n}{ext}", tmp_path / f"{n}{ext}")
    (tmp_path / "RECORDS").write_text("\n".join(names) + "\n")
    return tmp_path


def test_cli_text_and_json(tmp_path, shared_data):
    from edgebp.cli import cli

    d = _subset(tmp_path, shared_data, ["a555l", "a345l", "b387l"])
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "inspect", str(d)])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "ecg[II] 250 Hz" in out and "abp[ABP]" in out
    assert "verdict: usable for ppg+abp, ecg+abp" in out
    assert "verdict: unusable: no usable ABP" in out
    assert out.strip().splitlines()[-1] == "3 records, 1 usable for ppg+abp, 2 for ecg+abp (1 unusable)"
    assert "[3] b387l" in res.stderr                         # progress (stdout is not a terminal)

    res = runner.invoke(inspect_command, [str(d / "a555l"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert isinstance(data, list) and len(data) == 1
    assert data[0]["record_id"] == "a555l" and data[0]["usable_for"] == ["ppg+abp", "ecg+abp"]
    assert "1 records, 1 usable for ppg+abp" in res.stderr


def test_cli_missing_path_is_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgebp", "data", "inspect", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("Error:") and "nope" in res.stderr
    assert "Traceback" not in res.stderr
