"""The kernels compiled ahead of time (edgebp.processing.kernels, built by ``make setup``) are
the numba kernels: the same outputs, bit for bit, on a whole ``edgebp run``, and that run
loads neither numba nor llvmlite; a call the build does not cover goes to numba instead of
crashing; a stale or foreign build is not used.

The run: a 30 s simulated ECG+PPG log with motion and a lead-off (so the gates, chains,
beat and QRS kernels all run), through ``edgebp run`` with the default bundle, once with
``EDGEBP_KERNELS=aot`` and once with ``EDGEBP_KERNELS=jit``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgebp.processing import kernels as K
from edgebp.processing.kernels_build import AOT_KERNELS

_RUN = """
import atexit, json, sys
out = sys.argv.pop(1)
def _dump():
    from edgebp.processing.kernels import kernels_status
    st = kernels_status()
    with open(out, "w") as f:
        json.dump({"numba": "numba" in sys.modules, "llvmlite": "llvmlite" in sys.modules, "status": st}, f)
atexit.register(_dump)
sys.argv[0] = "edgebp"
from edgebp.cli import main
main()
"""


def _aot_or_skip():
    if K.aot_module() is None:
        pytest.skip(f"the ahead-of-time kernels are {K.kernels_status()['why']} (make setup builds them)")


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    d = tmp_path_factory.mktemp("aot-log")
    p = subprocess.run([sys.executable, "-m", "edgebp", "sim", "--source", "synth:3", "--minutes", "0.5", "--out", str(d / "serial.log"),
                        "--truth", str(d / "truth.csv"), "--faults", "motion@8s+2s,leadoff@18s+2s", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return d / "serial.log"


def _run(log, tmp_path, kernels: str):
    dump = tmp_path / f"{kernels}.json"
    env = {**os.environ, "EDGEBP_KERNELS": kernels}
    p = subprocess.run([sys.executable, "-c", _RUN, str(dump), "run", "--stream", str(log), "--out", str(tmp_path / f"{kernels}.csv")],
                       capture_output=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(dump.read_text()), (tmp_path / f"{kernels}.csv").read_bytes(), (tmp_path / f"{kernels}.beats.csv").read_bytes()


def test_edgebp_run_with_aot_kernels_equals_numba_and_loads_no_numba(log, tmp_path):
    _aot_or_skip()
    got, rows, beats = _run(log, tmp_path, "aot")
    assert not got["numba"] and not got["llvmlite"], "the AOT run imported numba"
    ran = {k.rsplit(".", 1)[-1]: v for k, v in got["status"]["kernels"].items() if v != "unused"}
    # every kernel the build exports ran, and ran ahead of time
    assert set(ran) == {n.rsplit(".", 1)[-1] for n in AOT_KERNELS} and set(ran.values()) == {"aot"}, ran
    jit, rows_jit, beats_jit = _run(log, tmp_path, "jit")
    assert jit["numba"] and not jit["status"]["aot"]
    assert rows.count(b"\n") > 3000 and beats.count(b"\n") > 10
    # the comparison can fail: the run has valid rows and rows refused by the gates
    assert b",1,ok\n" in rows and b",0,artefact\n" in rows and b",0,clipped\n" in rows
    assert rows == rows_jit and beats == beats_jit


def test_a_call_outside_the_build_goes_to_numba():
    """float32 input where the build has float64 (an AOT function would read it as float64
    and crash): the kernel runs under numba, with numba's result."""
    _aot_or_skip()
    from edgebp.processing.quality import stuck_block

    vals = np.array([[1, 2], [1, 3], [1, 3], [1, 3], [2, 3]], np.float32)
    last, run = np.full(2, np.nan), np.zeros(2, np.int64)
    got = stuck_block(vals, last.copy(), run.copy(), 3)
    K._jit_all()
    ref = K.kernels_registry()["edgebp.processing.quality.stuck_block"]._jit(vals, last.copy(), run.copy(), 3)
    assert got.tolist() == ref.tolist() and got.any()
    # and the float64 call, the one the runtime makes, takes the AOT function
    f64 = stuck_block(vals.astype(np.float64), last.copy(), run.copy(), 3)
    assert f64.tolist() == got.tolist()


def test_a_stale_or_foreign_build_is_not_used(monkeypatch):
    _aot_or_skip()
    monkeypatch.setattr(K, "_aot", None)
    monkeypatch.setattr(K, "kernels_digest", lambda: "0" * 64)
    assert K.aot_module() is None and K.kernels_status()["why"].startswith("stale")
    monkeypatch.setattr(K, "_aot", None)
    monkeypatch.setattr(K, "kernels_digest", lambda: json.loads((K.Path(K.__file__).parent / "_kernels_aot.json").read_text())["digest"])
    monkeypatch.setattr(K, "cpu_flags", lambda: {"fpu"})
    assert K.aot_module() is None and "another CPU" in K.kernels_status()["why"]
    monkeypatch.setenv("EDGEBP_KERNELS", "aot")
    monkeypatch.setattr(K, "_aot", None)
    with pytest.raises(RuntimeError, match="EDGEBP_KERNELS=aot: the ahead-of-time kernels are built for another CPU"):
        K.aot_module()
    monkeypatch.setattr(K, "_aot", None)  # restored by monkeypatch afterwards


def test_kernels_mode_names_the_valid_values(monkeypatch):
    monkeypatch.setenv("EDGEBP_KERNELS", "fast")
    with pytest.raises(ValueError, match="valid values are auto, aot, jit"):
        K.kernels_mode()


def test_the_build_covers_what_it_says():
    """Every kernel the build exports exists and its spec has one entry per parameter."""
    import inspect

    reg = K.kernels_registry()
    import importlib

    for m in K.KERNEL_MODULES:
        importlib.import_module(f"edgebp.processing.{m}")
    reg = K.kernels_registry()
    for name, (args, _) in AOT_KERNELS.items():
        assert name in reg, name
        assert len(inspect.signature(reg[name].py_func).parameters) == len(args), name


def test_bench_startup_part_measures_both_kinds(log):
    """`edgebp bench --parts startup`'s measurement on a short log: both kinds, the same rows,
    the AOT process the smaller (numba and llvmlite not loaded: about 100 MiB less, measured
    88.8 against 196.9 MiB on the 10-minute log)."""
    _aot_or_skip()
    from edgebp.bench.startup import startup_measure, startup_text

    r = startup_measure("default", log, rounds=1)
    by = {row["kernels"]: row for row in r["rows"]}
    assert set(by) == {"aot", "jit"} and r["outputs_identical"]
    assert by["aot"]["max_rss_mb_median"] < by["jit"]["max_rss_mb_median"] - 50.0
    assert all(row["first_output_s_median"] > 0 for row in r["rows"])
    assert "startup aot/jit" in startup_text(r)
    assert isinstance(r["bytecode_cached"], bool)  # said beside the figures (make setup writes it)
