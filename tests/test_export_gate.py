"""The export fails closed, its figures are the ones a hand computation gives, and the stream
int8 quantizer runs from a bundle's fp32 streaming model without torch."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.evaluation import ScoredRecord, score_report
from edgebp.runtime.bundle import BundleError, bundle_load
from edgebp.scoring import BeatPairs


def _pairs(ref_s, err_s, ref_d, err_d, t0=0.0):
    ref_s, ref_d = np.asarray(ref_s, float), np.asarray(ref_d, float)
    ps, pd = ref_s + np.asarray(err_s, float), ref_d + np.asarray(err_d, float)
    n = len(ref_s)
    return BeatPairs(t=t0 + np.arange(n, dtype=float), ref_sbp=ref_s, ref_dbp=ref_d, ref_map=(ref_s + 2 * ref_d) / 3,
                     pred_sbp=ps, pred_dbp=pd, pred_map=(ps + 2 * pd) / 3, by_detector=np.ones(n, bool))


def test_score_report_matches_a_hand_computed_case():
    """Two records (subjects), five beats: every figure the export and evaluate tables show."""
    a = ScoredRecord("r1", "r1", _pairs([120, 130, 140], [2, -4, 6], [80, 85, 90], [1, -1, 3]))
    b = ScoredRecord("r2", "r2", _pairs([150, 160], [-8, 12], [70, 75], [-3, 0]))
    norm = {"sbp_mean": 140.0, "dbp_mean": 80.0, "sbp_std": 10.0, "dbp_std": 5.0}
    rep = score_report([a, b], norm)
    assert rep["n_pairs"] == 5 and rep["n_records"] == 2
    s, d = rep["sbp"], rep["dbp"]
    # SBP errors 2, -4, 6, -8, 12: ME 8/5; deviations .4 -5.6 4.4 -9.6 10.4, squares sum 251.2,
    # SD sqrt(251.2/4); MAE 32/5; within 5/10/15 mmHg: 2/5, 4/5, 5/5 -> BHS C (40/65/85),
    # IEEE 1708 C (MAE <= 7), AAMI criterion 1 (|ME| <= 5, SD <= 8) passes
    assert s["me"] == pytest.approx(1.6, abs=1e-12)
    assert s["sd"] == pytest.approx(math.sqrt(62.8), abs=1e-12)
    assert s["mae"] == pytest.approx(6.4, abs=1e-12)
    assert (s["bhs"]["within5"], s["bhs"]["within10"], s["bhs"]["within15"]) == (40.0, 80.0, 100.0)
    assert s["bhs"]["grade"] == "C" and s["ieee1708"] == "C" and s["aami"]["criterion1"] is True
    # DBP errors 1, -1, 3, -3, 0: ME 0, SD sqrt(20/4), MAE 8/5, all within 5 -> BHS A, IEEE A
    assert d["me"] == pytest.approx(0.0, abs=1e-12)
    assert d["sd"] == pytest.approx(math.sqrt(5.0), abs=1e-12)
    assert d["mae"] == pytest.approx(1.6, abs=1e-12)
    assert d["bhs"]["grade"] == "A" and d["ieee1708"] == "A" and d["aami"]["criterion1"] is True
    # naive training mean 140 / 80: SBP |ref - 140| = 20, 10, 0, 10, 20 -> MAE 12, MASE 6.4 / 12
    assert rep["mase_bootstrap"]["sbp"]["mase"] == pytest.approx(6.4 / 12.0)
    # per subject (AAMI criterion 2 input): SBP mean errors r1 4/3, r2 2
    assert rep["per_subject"]["sbp"]["mean_error_per_subject"] == pytest.approx([4 / 3, 2.0])


def test_export_deltas_and_pointwise_percentiles_by_hand():
    from edgebp.export.pipeline import _delta, _gate, _mae_gate, _wave_diffs, gate_message

    w = np.arange(101, dtype=float)
    a = ScoredRecord("r", "r", _pairs([120], [0], [80], [0]), pred_wave=np.r_[w, np.nan])
    b = ScoredRecord("r", "r", _pairs([120], [0], [80], [0]), pred_wave=np.r_[np.zeros(101), 5.0])
    d = _wave_diffs([a], [b])  # |differences| 0..100 (the NaN point is not compared)
    assert d["n"] == 101 and d["basis"] == "point-wise"
    assert (d["p50_abs_mmHg"], d["p95_abs_mmHg"], d["p99_abs_mmHg"], d["max_abs_mmHg"], d["mean_abs_mmHg"]) == (50.0, 95.0, 99.0, 100.0, 50.0)
    x = {"sbp": {"me": 1.0, "sd": 5.0, "mae": 7.5}, "dbp": {"me": -1.0, "sd": 3.0, "mae": 4.0}}
    y = {"sbp": {"me": 0.5, "sd": 5.5, "mae": 7.0}, "dbp": {"me": -1.0, "sd": 2.0, "mae": None}}
    assert _delta(x, y) == {"sbp": {"me": 0.5, "sd": -0.5, "mae": 0.5}, "dbp": {"me": 0.0, "sd": 1.0, "mae": None}}
    # gates fail closed: an unmeasured figure fails; the message names the gate and the figures
    g = _mae_gate("int8_delta_mae", "window int8 MAE - window fp32 MAE", _delta(x, y), 1.0)
    assert not g["passed"] and g["value"] is None
    g = _gate("stream_int8_p99_abs_diff", "p99 of |stream-int8 - stream-fp32|", 42.8, 8.0)
    assert not g["passed"] and gate_message(g) == "gate stream_int8_p99_abs_diff failed: 42.80 mmHg > 8 (p99 of |stream-int8 - stream-fp32|)"
    assert _gate("x", "", 8.0, 8.0)["passed"] and not _gate("x", "", float("nan"), 8.0)["passed"]


def test_a_failed_gate_leaves_no_loadable_bundle_and_exits_non_zero(tiny_bundle_factory, tiny_run_factory, tmp_path):
    """A strict p99 limit (1e-6 mmHg: int8 always differs more) must reject the export, even over
    an accepted bundle (--force): no manifest.json, exit status 3, the gate and figures named."""
    from edgebp.cli import cli

    good = tiny_bundle_factory("edge-tcn")
    out = tmp_path / "bundle"
    shutil.copytree(good, out)
    assert bundle_load(out)  # an accepted bundle is there before
    res = CliRunner().invoke(cli, ["export", str(tiny_run_factory("edge-tcn")), "--out", str(out), "--force", "--targets", "ort",
                                   "--calib-windows", "16", "--max-p99-diff", "1e-6"])
    assert res.exit_code == 3, res.output
    msg = res.output
    assert "gate stream_int8_p99_abs_diff failed:" in msg and "> 1e-06" in msg and "gate int8_p99_abs_diff failed:" in msg
    assert "gate int8_delta_mae" not in msg  # only the gates that failed are named
    assert not (out / "manifest.json").exists()
    with pytest.raises(BundleError, match="no manifest.json"):
        bundle_load(out)
    report = json.loads((out / "report.json").read_text())
    assert report["accepted"] is False
    failed = {g["name"]: g for g in report["gates"] if not g["passed"]}
    assert set(failed) == {"int8_p99_abs_diff", "stream_int8_p99_abs_diff"}
    assert failed["stream_int8_p99_abs_diff"]["value"] == pytest.approx(report["deployed"]["pointwise"]["stream-int8 vs stream-fp32"]["p99_abs_mmHg"])
    assert f"{failed['stream_int8_p99_abs_diff']['value']:.2f} mmHg" in msg
    rejected = json.loads((out / "manifest.rejected.json").read_text())
    assert rejected["validation"]["accepted"] is False and rejected["validation"]["gates"] == report["gates"]
    assert "REJECTED" in (out / "report.md").read_text()


def test_cli_gate_defaults_match_the_pipeline():
    from edgebp.export import cli as ecli
    from edgebp.export import pipeline

    assert (ecli._MAX_DELTA_MAE, ecli._MAX_P99_DIFF) == (pipeline.MAX_DELTA_MAE_MMHG, pipeline.MAX_P99_DIFF_MMHG) == (1.0, 8.0)
    params = {p.name: p.default for p in ecli.export_command.params}
    assert params["max_delta_mae"] == 1.0 and params["max_p99_diff"] == 8.0


def test_stream_int8_quantize_runs_from_a_bundle_without_torch(tiny_bundle_factory, tmp_path):
    """Re-quantize a bundle's model_stream_fp32.onnx with torch made unimportable."""
    b = bundle_load(tiny_bundle_factory("edge-tcn"))
    m = b.manifest
    code = f"""
import sys, json
sys.modules["torch"] = None  # any 'import torch' now fails
from types import SimpleNamespace
import numpy as np
from edgebp.export.quantize import stream_int8_quantize
rng = np.random.default_rng(0)
recs = [SimpleNamespace(record_id=f"r{{k}}", X=rng.normal(size=({len(m['inputs'])}, 30 * {m['streaming']['chunk']})).astype(np.float32)) for k in range(3)]
shapes = {json.dumps([s['shape'] for s in m['streaming']['states']])}
info = stream_int8_quantize({str(b.file('stream_fp32'))!r}, {str(tmp_path / 'q.onnx')!r}, recs, {m['streaming']['chunk']}, shapes,
                            max_records=2, max_chunks=20, every=4)
print(json.dumps({{k: info[k] for k in ("records", "calibration_steps", "steps_streamed")}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    # 2 of 3 records, spread (first and last); 20 steps each, every 4th kept
    assert info == {"records": ["r0", "r2"], "calibration_steps": 10, "steps_streamed": 40}
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_bundle_load_refuses_a_renamed_rejected_manifest(tmp_path):
    """A rejected manifest renamed to manifest.json is still refused, naming the gate."""
    import json
    import shutil

    from edgebp.runtime.bundle import BundleError, bundle_load, bundle_write_manifest

    d = tmp_path / "b"
    shutil.copytree(bundle_load("default").path, d)
    m = json.loads((d / "manifest.json").read_text())
    m["validation"] = {"accepted": False, "gates": [{"name": "stream_int8_p99_abs_diff", "value": 42.8, "limit": 8.0, "passed": False}]}
    bundle_write_manifest(d, m)
    with pytest.raises(BundleError, match="stream_int8_p99_abs_diff failed"):
        bundle_load(d)
