"""edgebp bench: the measuring tools (real timers, real child processes, real ONNX Runtime) and
a quick bench of a tiny bundle end to end. Nothing here asserts a speed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.bench import plots
from edgebp.bench.latency import latency_measure, onnx_feeds
from edgebp.bench.machine import machine_describe, machine_summary
from edgebp.bench.report import bench_missing, bench_short_table, summary_rows
from edgebp.bench.streaming import child_run, command_text
from edgebp.bench.suite import BenchConfig, _rerun, bench_ratios, primary_latency
from edgebp.cli import cli


# ------------------------------------------------------------------------------------ tools
def test_latency_measure_statistics_are_consistent():
    r = latency_measure(lambda: np.linalg.norm(np.ones(2000)), warmup=2, repeats=3, target_s=0.01, min_runs=7, max_runs=50)
    assert len(r["repeats"]) == 3
    assert r["n_total"] == sum(p["n"] for p in r["repeats"]) == len(r["samples_ms"])
    assert all(7 <= p["n"] <= 50 for p in r["repeats"])
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
        s = r[key]
        assert s["min"] <= s["median"] <= s["max"]
    for p in r["repeats"]:
        assert p["min_ms"] <= p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"] <= p["max_ms"]
    assert r["pooled"]["min_ms"] == pytest.approx(min(r["samples_ms"]), abs=1e-5)


def test_latency_measure_make_builds_one_callable_per_repeat():
    made = []

    def make(i):
        made.append(i)
        return lambda: None

    r = latency_measure(make=make, warmup=1, repeats=4, target_s=0.0, min_runs=3, max_runs=3)
    assert made == [0, 1, 2, 3] and r["n_total"] == 12
    with pytest.raises(ValueError, match="give call or make"):
        latency_measure()


def test_onnx_feeds_fill_symbolic_dims_and_refuse_fixed_batch():
    class Inp:
        def __init__(self, name, shape, type_="tensor(float)"):
            self.name, self.shape, self.type = name, shape, type_

    f = onnx_feeds([Inp("x", ["batch", 2, "time"]), Inp("state_0", [1, 24, 2])], batch=4, length=100)
    assert f["x"].shape == (4, 2, 100) and f["x"].dtype == np.float32
    assert f["state_0"].shape == (1, 24, 2)
    with pytest.raises(ValueError, match="fixed batch"):
        onnx_feeds([Inp("x", [1, 2, 25])], batch=8, length=25)


def test_child_run_reads_the_childs_own_peak_rss():
    small = child_run([sys.executable, "-c", "pass"])
    big = child_run([sys.executable, "-c", "a = bytearray(120 * 2**20); a[::4096] = b'x' * len(a[::4096]); print(len(a))"])
    assert small["returncode"] == 0 and big["returncode"] == 0
    assert big["stdout"].strip() == str(120 * 2**20)
    assert big["max_rss_mb"] >= 120 > small["max_rss_mb"]
    # the bench's own memory is not counted in a child's (a direct fork would carry it over)
    ballast = np.ones(40 * 2**20)  # 320 MB here
    after = child_run([sys.executable, "-c", "pass"])
    assert after["max_rss_mb"] < 100 and ballast.sum() > 0
    bad = child_run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert bad["returncode"] == 3 and "boom" in bad["stderr"]


def test_command_text_shows_the_user_command():
    assert command_text([sys.executable, "-m", "edgebp", "run", "a b"]) == "edgebp run 'a b'"
    assert command_text([sys.executable, "-m", "edgebp.bench.worker", "--streams", "4"]) == "python -m edgebp.bench.worker --streams 4"


def test_machine_describe_without_torch_import():
    code = "import sys, json; from edgebp.bench.machine import machine_describe; m = machine_describe(); print(json.dumps({'t': 'torch' in sys.modules, 'cores': m['cpu']['logical_cores'], 'torch': m['torch']}))"
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["t"] is False  # asked of a subprocess, never imported
    assert out["cores"] == os.cpu_count()
    assert "importable" in out["torch"]
    m = machine_describe(torch=False)
    assert {"avx2", "avx512", "vnni", "isa", "model"} <= set(m["cpu"])
    assert m["libraries"]["onnxruntime"] and "OPENBLAS_NUM_THREADS" in m["thread_env"]
    assert "logical cores" in machine_summary(m)


def test_bench_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="valid variants"):
        BenchConfig(variants=["ort-fp16"])
    with pytest.raises(ValueError, match="valid parts"):
        BenchConfig(parts=["speed"])
    with pytest.raises(ValueError, match="batch"):
        BenchConfig(batch=1)
    q = BenchConfig(quick=True)
    assert q.repeat == 2 and q.concurrency == [4] and max(q.lengths) <= 1
    full = BenchConfig()
    assert full.lengths == [1.0, 10.0, 60.0] and full.repeat == 5
    assert full.thread_levels == sorted({1, os.cpu_count()})


def test_cli_bad_variant_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgebp", "bench", "--variants", "onnx", "--report", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "valid variants" in res.stderr and "Traceback" not in res.stderr


def test_bench_missing_names_the_absent_fields():
    assert "machine.cpu.model" in bench_missing({"schema": "x"})
    assert not any("anchors" in f for f in bench_missing({"schema": "x"})[:1])


def test_pareto_front_keeps_only_undominated_points():
    xs = np.array([1.0, 2.0, 3.0, 4.0])
    ys = np.array([5.0, 6.0, 3.0, 3.5])
    assert plots._pareto(xs, ys).tolist() == [0, 2]


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny(shared_data, tmp_path_factory):
    """A tiny edge-tcn bundle trained for one epoch on a few real ICU records, and its run."""
    root = tmp_path_factory.mktemp("bench")
    src = shared_data / "challenge2015"
    data = root / "data"
    data.mkdir()
    names = (src / "RECORDS").read_text().split()[:16]
    for n in names:
        for ext in (".hea", ".mat"):
            (data / f"{n}{ext}").symlink_to(src / f"{n}{ext}")
    (data / "RECORDS").write_text("\n".join(names) + "\n")
    runner = CliRunner()
    run, bundle = root / "run", root / "bundle"
    # batch 8: the 30 training windows of these records made 0 batches of 32, an untrained model
    r = runner.invoke(cli, ["train", "--data", str(data), "--set", "max_minutes=1", "--set", "batch_size=8", "--epochs", "1", "--out", str(run)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["export", str(run), "--int8", "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    return {"root": root, "run": run, "bundle": bundle, "record": data / names[2]}


@pytest.fixture(scope="module")
def quick_bench(tiny):
    out = tiny["root"] / "report"
    # torch's OpenMP pool can stall for hundreds of ms per call on a loaded 2-core machine when
    # OMP_WAIT_POLICY is unset; the bench records the variable (machine.thread_env) either way
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_WAIT_POLICY", "PASSIVE")
    args = ["bench", str(tiny["bundle"]), "--run", str(tiny["run"]), "--quick", "--anchors", "inn-par", "--anchor-preset", "edge",
            "--variants", "torch-fp32,ort-fp32,ort-int8,pruned,tensorrt", "--batch", "4",
            "--stream-minutes", "0.5", "--lengths", "0.25,0.5", "--streams", "2",
            "--report", str(out)]
    try:
        r = CliRunner().invoke(cli, args)
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    return {"out": out, "stdout": r.stdout, "bench": json.loads((out / "bench.json").read_text())}


def test_quick_bench_json_holds_every_field(quick_bench, tiny):
    b = quick_bench["bench"]
    assert bench_missing(b) == []
    assert b["errors"] == []
    assert b["settings"]["quick"] is True and b["command"].startswith("edgebp bench ")
    assert b["machine"]["thread_env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    (bd,) = b["bundles"]
    # latency: every ONNX variant the bundle has, batch 1 and 4, one thread and all cores
    got = {(r["variant"], r["kind"], r["batch"], r["threads"]) for r in bd["latency"]}
    for v in ("ort-fp32", "ort-int8", "torch-fp32"):
        for t in sorted({1, os.cpu_count()}):
            assert (v, "window", 1, t) in got and (v, "window", 4, t) in got
    assert ("ort-int8", "stream-step", 1, 1) in got  # the bundle streams: its step is timed too
    for r in bd["latency"]:
        assert r["p50_ms"]["median"] <= r["p99_ms"]["median"] * (1 + 1e-9)
        assert len(r["repeats"]) == 2 and len(r["samples_ms"]) == r["n_total"] > 0
        assert r["real_time_factor"] > 0 and r["command"].startswith("edgebp bench ")
    assert "--run" in next(r["command"] for r in bd["latency"] if r["variant"] == "torch-fp32")
    # skipped with reasons, not silently
    from edgebp.runtime.backends import tensorrt_available

    ok, why = tensorrt_available()
    assert ok or why in bd["skipped"]["tensorrt"]
    assert "pruned" in bd["skipped"]["pruned"]
    # streaming: the whole edgebp run path, torch-free, kernel-measured RSS
    s = bd["streaming"]
    run = s["runs"]["int8"]
    assert run["real_time_factor"] > 0 and run["peak_rss_mb"] > 10 and 25 < run["signal_seconds"] <= 31
    assert run["command"].startswith("edgebp run ")
    lat = s["output_latency"]["int8"]
    assert lat["torch_loaded"] is False and lat["block_samples"] == 5
    # the worker sets the runtime up as `edgebp run` does: the same share of valid outputs
    assert lat["valid_share"] > 0.5 and abs(lat["valid_share"] - run["valid_share"]) < 0.05
    assert lat["output_latency_ms"]["p50"] >= lat["algorithmic_latency_ms"]["model_delay"]
    assert [g["minutes"] for g in s["length_growth"]] == [0.25, 0.5]
    assert s["length_growth"][1]["marginal_per_sample_us"] is not None
    (c,) = s["concurrency"]
    assert c["streams"] == 2 and c["aggregate_real_time_factor"] > 0 and c["torch_loaded"] is False
    assert s["streams_per_core"]["from_real_time_factor"] == run["real_time_factor"]
    # memory and the Cortex-M4F budget
    mem = bd["memory"]
    assert mem["budget"]["mcu"]["core"] == "Cortex-M4F"
    assert {"int8", "fp32", "stream_int8"} <= set(mem["budget"]["models"])
    assert mem["budget"]["models"]["int8"]["command"].startswith("edgebp budget ")
    assert mem["model_bytes"]["int8"] == (tiny["bundle"] / "model_int8.onnx").stat().st_size
    # accuracy beside the naive baseline, per variant
    for v in ("ort-fp32", "ort-int8", "torch-fp32"):
        a = bd["accuracy"][v]
        assert a["n_pairs"] > 0 and math.isfinite(a["sbp"]["mae"]) and a["sbp"]["bhs_grade"] in "ABCD"
        assert a["baselines"]["training_mean"]["sbp"]["mae"] > 0
        assert a["data"]["split"] == "test"
    # torch-fp32 and ort-fp32 score the same model: same readings
    assert bd["accuracy"]["torch-fp32"]["n_pairs"] == bd["accuracy"]["ort-fp32"]["n_pairs"]
    # anchors and ratios
    # (only the lighter anchor here, to keep the test short; the paper-size UNet takes the same path)
    (inn,) = b["anchors"]
    assert inn["name"] == "inn-par" and inn["preset"] == "edge" and inn["hop"] == inn["window"] == 625 and inn["latency"]
    assert inn["params"] > 0 and inn["onnx_bytes"] > 0 and inn["macs_per_window"] > 0
    assert {r["anchor"] for r in b["ratios"]} == {"inn-par"}
    assert all(r["speed_ratio"] > 0 and r["size_ratio"] > 0 for r in b["ratios"])


def test_quick_bench_report_and_plots_hold_data(quick_bench):
    out, b = quick_bench["out"], quick_bench["bench"]
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for heading in ("Machine", "Latency per inference", "Streaming", "Output latency", "Cost growth with stream length",
                    "Cost growth with concurrent streams", "Memory and the device budget", "Accuracy on held-out records",
                    "Anchors", "Bland-Altman"):
        assert heading in md and heading in html
    assert "edgebp run " in md and "edgebp budget " in md and "python -m edgebp.bench.worker" in md
    for png in ("latency_box.png", "rtf.png", "growth.png", "pareto_size.png", "pareto_latency.png"):
        assert (out / png).stat().st_size > 5000
    assert len(list(out.glob("bland_altman_*.png"))) == 3
    # the figures rebuilt from bench.json alone carry the data
    fig = plots.plot_latency_box(b)
    assert len([p for p in fig.axes[0].patches if p.get_gid() == "box"]) == len(plots.latency_series(b)) >= 5
    fig = plots.plot_pareto(b, "size")
    pts = [c for c in fig.axes[0].collections if c.get_gid() == "point"]
    assert len(pts) == len(plots.accuracy_points(b, "size")) >= 2
    assert all(np.isfinite(c.get_offsets()).all() for c in pts)
    fig = plots.plot_rtf(b)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == len(plots.rtf_bars(b)) and all(p.get_width() > 0 for p in bars)
    fig = plots.plot_growth(b)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if ln.get_gid()}
    assert len(lines["length_cost"].get_xdata()) == 2 and len(lines["streams_rss"].get_xdata()) == 1
    # bench.json and pairs.npz redraw the same report
    from edgebp.bench.report import bench_load, bench_write

    again, pairs = bench_load(out)
    assert set(pairs[again["bundles"][0]["bundle"]]) == {"ort-fp32", "ort-int8", "torch-fp32"}
    redo = bench_write(out.parent / "redrawn", again, pairs)
    assert sorted(p.name for p in redo["figures"]) == sorted(p.name for p in out.glob("*.png"))
    # the short table printed at the end
    text = quick_bench["stdout"]
    assert "ort-int8" in text and "anchor inn-par" in text and "naive training mean" in text
    assert text.strip() == bench_short_table(b).strip()


def test_primary_row_and_ratios_from_rows():
    rows = [{"variant": "ort-fp32", "kind": "window", "batch": 1, "threads": 1, "per_output_sample_us": 10.0, "real_time_factor": 800.0},
            {"variant": "ort-int8", "kind": "stream-step", "batch": 1, "threads": 1, "per_output_sample_us": 2.0, "real_time_factor": 4000.0},
            {"variant": "ort-int8", "kind": "window", "batch": 1, "threads": 1, "per_output_sample_us": 5.0, "real_time_factor": 1600.0}]
    assert primary_latency(rows, 1)["kind"] == "stream-step"
    bundles = [{"name": "m", "latency": rows, "files": {"int8": {"bytes": 1000, "params": 100}}}]
    anchors = [{"name": "a", "preset": "paper", "onnx_bytes": 10**6, "params": 10**5,
                "latency": [{"threads": 1, "per_output_sample_us": 8000.0, "real_time_factor": 1.0}]}]
    (r,) = bench_ratios(bundles, anchors, 1)
    assert r["speed_ratio"] == 4000.0 and r["size_ratio"] == 1000.0 and r["params_ratio"] == 1000.0
    rows_text = summary_rows({"settings": {"threads": 1}, "bundles": [], "anchors": []})
    assert rows_text[0][0] == "model / variant"


def test_anchor_paradigms_are_the_seeds():
    from edgebp.bench.anchor import ANCHORS

    assert (ANCHORS["msca-cssc-unet"].window, ANCHORS["msca-cssc-unet"].hop, ANCHORS["msca-cssc-unet"].inputs) == (88, 1, ("ecg",))
    assert (ANCHORS["inn-par"].window, ANCHORS["inn-par"].hop) == (625, 625)


def test_rerun_commands_name_the_row():
    cfg = BenchConfig(quick=True, runs=["runs/x"], data="synth")
    assert _rerun(cfg, "b", "latency", ["ort-int8"], 2) == (
        "edgebp bench b --parts latency --variants ort-int8 --threads 2 --batch 32 --repeat 2 --quick --report bench-rerun")
    assert "--data synth" in _rerun(cfg, "b", "accuracy", ["torch-fp32"]) and "--run runs/x" in _rerun(cfg, "b", "accuracy", ["torch-fp32"])
    assert _rerun(cfg, None, "anchors").startswith("edgebp bench --parts anchors")


def test_command_line_records_only_what_was_given():
    from edgebp.bench.cli import _command_line, bench_command

    ctx = bench_command.make_context("bench", ["b1", "--report", "r"])
    assert _command_line(ctx) == "edgebp bench b1 --report r"
    ctx = bench_command.make_context("bench", ["b1", "--quick", "--streams", "2", "--report", "r"])
    assert _command_line(ctx) == "edgebp bench b1 --quick --streams 2 --report r"


def test_quick_bench_live_part(quick_bench):
    """The live part: every packet size and bulk per variant, outputs the same for every read
    size, ONNX Runtime's step int8 vs fp32, the plain reference; or a stated reason it was skipped."""
    b = quick_bench["bench"]["bundles"][0]
    lv = b.get("live")
    if lv is None:
        assert "live" in b["skipped"], b["skipped"]
        return
    assert "error" not in lv, lv
    assert lv["torch_loaded"] is False and lv["peak_rss_mb"] > 0
    got = {(r["variant"], r["packet_samples"]) for r in lv["rows"]}
    assert got == {(v, k) for v in lv["variants"] for k in (1, 5, 25, 250, None)}
    assert all(lv["identical_across_packets"].values())
    assert all(r["per_sample_us"] > 0 and r["real_time_factor"] > 0 and r["counts"]["rows"] == r["counts"]["outputs"] for r in lv["rows"])
    assert set(lv["step"]["cpu_us_per_call"]) == set(lv["variants"])
    assert all(p["per_sample_us"] > 0 and p["edgebp_bulk_over_plain"] > 0 for p in lv["plain"].values())
    md = (quick_bench["out"] / "report.md").read_text()
    assert "Live path: CPU per device sample by packet size" in md and (quick_bench["out"] / "live.png").stat().st_size > 5000


def test_live_packets_cut_at_line_ends():
    from edgebp.bench.live import bulk_reads, log_packets

    data = b"#EDGEBP v=1\n" + b"".join(b"%d,1,2\n" % i for i in range(11))
    p5 = log_packets(data, 5)
    assert [c.count(b"\n") for c in p5] == [6, 5, 1] and b"".join(p5) == data
    assert b"".join(bulk_reads(data, 7)) == data
    with pytest.raises(ValueError):
        log_packets(data, 0)
