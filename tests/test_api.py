"""The Python API: the README's example runs as written, on a real record, and its parts agree
with the commands they stand for.

The README block is executed as is (its own ``serial.log`` made by the ``edgebp sim`` command its
comment names); the record is real (PhysioNet Challenge 2015, ../shared/data), the bundle the
shipped one, ONNX Runtime and the numba kernels real.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_api_block() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    from markdown_it import MarkdownIt

    text = (REPO / "README.md").read_text()
    tokens = MarkdownIt().parse(text)
    in_section = False
    for t in tokens:
        if t.type == "heading_open" and t.tag == "h2":
            in_section = False
        if t.type == "inline" and t.content.strip() == "Python API":
            in_section = True
        if in_section and t.type == "fence" and t.info.strip() == "python":
            return t.content
    raise AssertionError("README.md has no ```python block under '## Python API'")


@pytest.fixture(scope="module")
def readme_run(shared_data, tmp_path_factory):
    """Execute the README block in a fresh folder, after making the log its comment names."""
    code = readme_api_block()
    m = re.search(r"^#\s*(edgebp sim .*--out serial\.log.*)$", code, re.M)
    assert m, "the README block should say how its serial.log is made"
    cwd = tmp_path_factory.mktemp("readme")
    sim = subprocess.run([sys.executable, "-m", "edgebp", *shlex.split(m.group(1))[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    ns: dict = {}
    import contextlib
    import io
    import os

    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md:Python API", "exec"), ns)
    finally:
        os.chdir(old)
    return {"ns": ns, "stdout": out.getvalue(), "cwd": cwd}


def test_readme_example_outputs(readme_run):
    ns = readme_run["ns"]
    rec, pred, g, beats = ns["rec"], ns["pred"], ns["g"], ns["beats"]
    assert rec.record_id == "a527l" and abs(rec.duration - 120.0) < 1e-9
    # 120 s at the model's 125 Hz: one output per model sample
    n = len(pred.t)
    assert pred.fs == 125.0 and abs(n - 120 * 125) <= 125
    assert pred.abp.shape == pred.valid.shape == pred.reason.shape == (n,)
    assert np.all(np.diff(pred.t) > 0)
    v = pred.valid
    # measured 88 % valid on the first 90 s (warm-up and gated stretches are not)
    assert 0.5 < v.mean() < 1.0
    assert np.isfinite(pred.abp[v]).all() and np.isnan(pred.abp[~v]).all()
    assert 20 < np.median(pred.abp[v]) < 200
    assert set(np.unique(pred.reason)) <= {"ok", "warmup", "gap", "flat", "clipped", "reset", "artefact", "range"}
    assert (pred.reason[v] == "ok").all()
    vb = pred.valid_beats
    assert len(vb["time"]) > 60  # a ~62 bpm record: ~120 reference beats in 2 min
    assert np.isfinite(vb["sbp"]).all() and (vb["sbp"] > vb["dbp"]).all()
    for key in ("sbp", "dbp"):
        c = g[key]
        assert all(k in c for k in ("me", "sd", "mae", "rmse", "bhs", "aami", "ieee1708")), sorted(c)
        assert np.isfinite(c["mae"]) and c["bhs"]["grade"] in "ABCD" and c["ieee1708"] in "ABCD"
        tm = g["baselines"]["training_mean"][key]
        assert np.isfinite(tm["mae"]) and tm["value"] == pytest.approx(pred.train_mean[key])
    assert g["n_pairs"] > 50 and g["n_pairs"] + g["unpaired"]["pred_only"] == len(vb["time"])
    assert "BHS" in readme_run["stdout"] and "train-mean" in readme_run["stdout"]
    assert len(beats) > 10 and all(np.isfinite(b["sbp"]) for b in beats)


def test_predict_is_what_evaluate_scores(readme_run):
    """predict == edgebp.runtime.stream_score.stream_record, the function `edgebp evaluate
    --variant stream-int8` streams each record through (same sample values bit for bit)."""
    from edgebp.runtime.stream_score import stream_record

    ns = readme_run["ns"]
    ref = stream_record(ns["model"].runtime_bundle, ns["rec"], variant="int8", packet_s=0.02)
    assert np.array_equal(ns["pred"].t, ref["t"])
    assert np.array_equal(ns["pred"].abp[ns["pred"].valid], ref["abp"][ref["valid"]])
    assert len(ns["pred"].beats["time"]) == len(ref["beats"])


def test_stream_is_edgebp_run(readme_run):
    """stream() gives `edgebp run`'s beats, row for row, from a path, a file object and chunks."""
    import edgebp
    from edgebp.runtime.run import beat_csv_row

    cwd = readme_run["cwd"]
    r = subprocess.run([sys.executable, "-m", "edgebp", "run", "--stream", "serial.log", "--out", "bp.csv"], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cli_rows = [ln for ln in (cwd / "bp.beats.csv").read_text().splitlines() if not ln.startswith("#")][1:]
    model = readme_run["ns"]["model"]
    data = (cwd / "serial.log").read_bytes()
    with open(cwd / "serial.log", "rb") as fh:
        for src in (cwd / "serial.log", fh, (data[i:i + 87] for i in range(0, len(data), 87))):
            s = edgebp.stream(model, src)
            rows = [beat_csv_row(b) for blk in s for b in blk.beats]
            assert rows == cli_rows
            assert s.summary["decoder"]["samples_parsed"] == 7500  # 30 s at 250 Hz, every sample accounted for


def test_stream_closes_early_and_reports_errors(readme_run, tmp_path):
    import edgebp

    model = readme_run["ns"]["model"]
    with edgebp.stream(model, readme_run["cwd"] / "serial.log", read_size=1000) as s:
        first = next(s)
        assert len(first.t) > 0
    assert s.summary is None  # closed before the end: no summary claimed
    with pytest.raises(FileNotFoundError):
        edgebp.stream(model, tmp_path / "absent.log")
    # a CSV log and no fs: the decoder's one-line error (the rate is never guessed)
    with pytest.raises(ValueError, match="sampling rate"):
        list(edgebp.stream(model, [b"ppg,ecg\n", b"1,2\n"] * 10, fmt="csv"))
    # a chunk that is not bytes: raised in the caller, from the worker
    with pytest.raises(TypeError, match="must be bytes"):
        list(edgebp.stream(model, [b"#EDGEBP v=1 fs=250 ch=ecg,ppg\n", 42]))


def test_grade_agrees_with_the_grade_command(readme_run, tmp_path):
    """grade() on two beat tables == `edgebp grade --match nearest` on the same tables as CSV."""
    import edgebp
    from edgebp.api import _reference_beats

    ns = readme_run["ns"]
    pb, rb = ns["pred"].valid_beats, _reference_beats(ns["rec"])
    for name, t in (("pred.csv", pb), ("ref.csv", rb)):
        lines = ["time,sbp,dbp"] + [f"{a:.3f},{b:.4f},{c:.4f}" for a, b, c in zip(t["time"], t["sbp"], t["dbp"])]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    tm = ns["pred"].train_mean
    r = subprocess.run([sys.executable, "-m", "edgebp", "grade", str(tmp_path / "pred.csv"), str(tmp_path / "ref.csv"), "--match", "nearest",
                        "--unit", "beat", "--train-mean", str(tm["sbp"]), str(tm["dbp"]), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    api = edgebp.grade(tmp_path / "pred.csv", tmp_path / "ref.csv", train_mean=(tm["sbp"], tm["dbp"]))
    assert api["n_pairs"] == cli["n_pairs"] and api["unpaired"] == cli["unpaired"]
    for key in ("sbp", "dbp"):
        for stat in ("me", "sd", "mae"):
            assert api[key][stat] == pytest.approx(cli[key][stat], abs=1e-9)
        assert api[key]["bhs"] == cli[key]["bhs"]
        assert api["baselines"]["training_mean"][key]["mae"] == pytest.approx(cli["baselines"]["training_mean"][key]["mae"])
    # the in-memory tables (full precision) give the same grades as their 3-4 decimal CSVs
    direct = edgebp.grade(ns["pred"], ns["rec"])
    assert direct["n_pairs"] == api["n_pairs"]
    assert direct["sbp"]["mae"] == pytest.approx(api["sbp"]["mae"], abs=1e-3)


def test_bad_input_is_one_clear_error(readme_run, tmp_path):
    import edgebp

    model, rec = readme_run["ns"]["model"], readme_run["ns"]["rec"]
    from edgebp.record import Record

    no_ppg = Record("x", [c for c in rec.channels if c.name != "ppg"])
    with pytest.raises(ValueError, match="no ppg channel"):
        model.predict(no_ppg)
    with pytest.raises(ValueError, match="no abp channel"):
        edgebp.grade(readme_run["ns"]["pred"], no_ppg.__class__("y", [c for c in rec.channels if c.name != "abp"]))
    with pytest.raises(ValueError, match="no estimated beat"):
        edgebp.grade({"time": [1000.0], "sbp": [120.0], "dbp": [80.0]}, rec)
    with pytest.raises(ValueError, match="not a bundle"):
        edgebp.load_bundle(tmp_path)
    with pytest.raises(ValueError, match="start_s"):
        edgebp.read_record(Path(rec.source) if rec.source else tmp_path, start_s=5, stop_s=1)
    (tmp_path / "bad.csv").write_text("time,sbp\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv"):
        edgebp.grade(tmp_path / "bad.csv", rec)


def test_import_edgebp_is_light():
    """`import edgebp` loads none of the runtime, numpy, ONNX Runtime, numba or torch; the first
    API name does, and still no torch."""
    code = ("import sys, json, edgebp\n"
            "heavy = ('numpy', 'onnxruntime', 'numba', 'torch', 'scipy', 'edgebp.runtime', 'edgebp.api', 'edgebp.train')\n"
            "before = [m for m in heavy if m in sys.modules]\n"
            "edgebp.load_bundle\n"
            "after = [m for m in heavy if m in sys.modules]\n"
            "b = edgebp.load_bundle('default')\n"
            "print(json.dumps({'before': before, 'after': after, 'torch': 'torch' in sys.modules, 'inputs': b.inputs}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["before"] == []
    assert "edgebp.api" in res["after"] and "torch" not in res["after"]
    assert res["torch"] is False and res["inputs"] == ["ppg", "ecg"]
    r = subprocess.run([sys.executable, "-c", "import edgebp; edgebp.nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "has no attribute 'nope'" in r.stderr


def test_load_bundle_names(tmp_path):
    import edgebp

    low = edgebp.load_bundle("lowlatency")
    assert low.path.name == "lowlatency_bundle" and low.manifest["model"]["preset"] == "lowlatency"
    assert edgebp.load_bundle(low.path).manifest == low.manifest  # a directory works the same
    assert set(low.train_mean) >= {"sbp", "dbp"} and all(40 < v < 200 for v in low.train_mean.values())
