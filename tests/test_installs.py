"""Installs: what works without the `train` extra, the metadata matches the code, the cache commands.

"Without torch" is a real interpreter in which ``import torch`` (and onnxscript, torch_pruning)
fails with the ModuleNotFoundError an environment without them raises: a folder first on
PYTHONPATH holds packages of those names whose import raises it. The commands run as
``python -m edgebp`` subprocesses, as a user would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TRAIN_EXTRA = ("torch", "onnxscript", "torch_pruning")
INSTALL_HINT = "pip install 'edgebp[train]'"


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    """Environment for a subprocess in which the train extra is not installed."""
    hide = tmp_path_factory.mktemp("no-train-extra")
    for name in TRAIN_EXTRA:
        (hide / name).mkdir()
        (hide / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(hide) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _edgebp(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgebp", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_record(shared_data, tmp_path_factory):
    """A folder holding one real held-out record (a527l, in the default bundle's test split)."""
    d = tmp_path_factory.mktemp("one-record")
    for ext in ("hea", "mat"):
        (d / f"a527l.{ext}").symlink_to(shared_data / "challenge2015" / f"a527l.{ext}")
    (d / "RECORDS").write_text("a527l\n")
    return d


def test_the_hook_hides_torch(no_torch_env):
    for name in TRAIN_EXTRA:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], env=no_torch_env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and f"ModuleNotFoundError: No module named '{name}'" in r.stderr, r.stderr


def test_train_and_export_say_what_to_install(no_torch_env, tmp_path):
    r = _edgebp(["--help"], no_torch_env, 120)
    assert r.returncode == 0 and "train" in r.stdout and "export" in r.stdout, r.stderr
    for args in (["train", "--out", str(tmp_path / "run")], ["export", str(tmp_path), "--out", str(tmp_path / "bundle")]):
        r = _edgebp(args, no_torch_env, 120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1, r.stderr
        assert len(lines) == 1 and INSTALL_HINT in lines[0] and f"`edgebp {args[0]}`" in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    # a run directory holds a torch checkpoint: evaluating one says the same
    (tmp_path / "best.pt").write_bytes(b"")
    r = _edgebp(["evaluate", str(tmp_path)], no_torch_env, 120)
    assert r.returncode == 1 and INSTALL_HINT in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_evaluate_a_bundle_without_torch(no_torch_env, one_record):
    r = _edgebp(["evaluate", "default", "--split", "all", "--data", str(one_record), "--json"], no_torch_env)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["scored"]["file"] == "model_stream_int8.onnx" and rep["data"]["records"] == ["a527l"]
    # a 5.5-minute record at ~60 bpm: a few hundred beats (measured 280-300); finite errors
    assert rep["n_pairs"] > 100 and 0 < rep["sbp"]["mae"] < 100 and 0 < rep["dbp"]["mae"] < 100


def test_bench_a_bundle_without_torch(no_torch_env, tmp_path):
    """The suite, its report and the memory part (8 s). Its accuracy part goes through
    evaluate's model_open, tested above; latency and accuracy were also run by hand without
    torch (`edgebp bench default --quick --parts latency,memory,accuracy ...`: exit 0)."""
    out = tmp_path / "bench"
    r = _edgebp(["bench", "default", "--quick", "--parts", "memory", "--variants", "stream-int8", "--anchors", "none",
                 "--report", str(out)], no_torch_env)
    assert r.returncode == 0, r.stderr[-2000:]
    b = json.loads((out / "bench.json").read_text())
    assert not b.get("errors"), b.get("errors")
    assert b["bundles"][0]["memory"] and (out / "report.html").exists()


def test_requires_python_matches_the_code():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = meta["requires-python"]
    assert spec.startswith(">="), spec
    floor = tuple(int(x) for x in spec[2:].split("."))
    uses_tomllib = [p for d in ("edgebp", "train", "export", "runtime", "firmware_sim") for p in (REPO / d).rglob("*.py")
                    if "import tomllib" in p.read_text(errors="replace")]
    if uses_tomllib:  # tomllib is in the standard library from 3.11 on
        assert floor >= (3, 11), f"{spec} but {uses_tomllib[0].relative_to(REPO)} imports tomllib"
    assert sys.version_info[:2] >= floor
    classifiers = meta.get("classifiers", [])
    stated = [c.rsplit(":: ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]
    assert stated and all(tuple(int(x) for x in v.split(".")) >= floor for v in stated), stated


def test_license_file_matches_metadata():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (REPO / "LICENSE").read_text()
    assert meta["license"] == "MIT" and text.startswith("MIT License") and "the edgebp authors" in text
    assert "LICENSE" in meta.get("license-files", [])


# ------------------------------------------------------------------------------------ cache
def _files_bytes(d: Path) -> tuple[int, int]:
    fs = [p for p in d.rglob("*") if p.is_file()]
    return len(fs), sum(p.stat().st_size for p in fs)


def test_cache_info_and_clean(tmp_path):
    from edgebp.synth import synth_cohort_cached

    cache, nb = tmp_path / "cache", tmp_path / "numba"
    env = dict(os.environ, EDGEBP_CACHE=str(cache), NUMBA_CACHE_DIR=str(nb))
    old = {k: os.environ.get(k) for k in ("EDGEBP_CACHE",)}
    os.environ["EDGEBP_CACHE"] = str(cache)
    try:
        synth = synth_cohort_cached(2, 0.1)  # the real writer of the synthetic cohort
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.update({k: v})
    (cache / "prepared").mkdir()
    (cache / "prepared" / "0123abcd.npz").write_bytes(b"\0" * 5000)
    nb.mkdir()
    (nb / "filters._k-1.py311.nbi").write_bytes(b"\0" * 300)
    (nb / "other-program.txt").write_text("not numba's")
    (cache / "mine.txt").write_text("a user's file in a shared cache folder")

    r = _edgebp(["cache", "info", "--json"], env, 120)
    assert r.returncode == 0, r.stderr
    info = {e["what"]: e for e in json.loads(r.stdout)["entries"]}
    assert (info["synth"]["files"], info["synth"]["bytes"]) == _files_bytes(synth)
    assert (info["prepared"]["files"], info["prepared"]["bytes"]) == (1, 5000)
    assert (info["numba"]["files"], info["numba"]["bytes"]) == (1, 300)
    assert info["bench"]["files"] == 0
    text = _edgebp(["cache", "info"], env, 120).stdout
    assert "prepared" in text and "4.9 KiB" in text  # 5000 B in binary units

    # off a terminal, nothing is removed without --yes
    r = _edgebp(["cache", "clean", "--what", "prepared"], env, 120)
    assert r.returncode == 2 and "--yes" in r.stderr and (cache / "prepared" / "0123abcd.npz").exists()
    r = _edgebp(["cache", "clean", "--what", "prepared", "--yes"], env, 120)
    assert r.returncode == 0 and not (cache / "prepared").exists() and synth.exists(), r.stderr
    r = _edgebp(["cache", "clean", "--what", "all", "--yes"], env, 120)
    assert r.returncode == 0, r.stderr
    assert not synth.exists() and not (nb / "filters._k-1.py311.nbi").exists()
    # only what edgebp wrote goes
    assert (cache / "mine.txt").exists() and (nb / "other-program.txt").exists()
    r = _edgebp(["cache", "clean", "--yes"], env, 120)
    assert r.returncode == 0 and "nothing cached" in r.stdout
