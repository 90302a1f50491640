"""The loader's record of checked models (``<cache>/onnx-checked.json``, runtime/bundle.py):
the same bytes load again without ``onnx``; anything else is parsed and checked as before."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from edgebp.paths import ASSETS
from edgebp.runtime.bundle import BundleError, bundle_load, onnx_checked_path

_PROBE = """
import sys
from edgebp.runtime.bundle import bundle_load
b = bundle_load(sys.argv[1])
print("onnx" in sys.modules)
"""


def _probe(bundle, cache, **env):
    e = {**os.environ, "EDGEBP_CACHE": str(cache), **env}
    p = subprocess.run([sys.executable, "-c", _PROBE, str(bundle)], capture_output=True, text=True, timeout=120, env=e)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip() == "True"


def test_second_load_of_the_same_bytes_needs_no_onnx(tmp_path):
    cache = tmp_path / "cache"
    assert _probe("default", cache) is True  # the first load parses and checks every model
    rec = json.loads((cache / "onnx-checked.json").read_text())
    m = json.loads((ASSETS / "default_bundle" / "manifest.json").read_text())
    onnx_files = [rel for key, rel in m["files"].items() if rel.endswith(".onnx")]
    assert {m["sha256"][rel] for rel in onnx_files} <= set(rec["models"]) and len(onnx_files) >= 4
    assert _probe("default", cache) is False  # recorded: no onnx import
    # switched off: parsed every time, nothing written
    off = tmp_path / "off"
    assert _probe("default", off, EDGEBP_ONNX_CHECKED="0") is True and not (off / "onnx-checked.json").exists()


def test_a_swapped_model_with_a_fixed_hash_is_still_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBP_CACHE", str(tmp_path / "cache"))
    bundle_load("default")  # the shipped models are in the record now
    assert onnx_checked_path().is_file()
    b = tmp_path / "b"
    shutil.copytree(ASSETS / "default_bundle", b)
    m = json.loads((b / "manifest.json").read_text())
    rel = m["files"]["stream_int8"]
    bad = b"\x08\x07" + os.urandom(200)
    (b / rel).write_bytes(bad)
    m["sha256"][rel] = hashlib.sha256(bad).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="not a valid ONNX model"):
        bundle_load(b)


@pytest.mark.parametrize("record", ['{"version": 1, "models": {"xyz": 3}}', "not json", '{"version": 99, "models": {}}', "[]"])
def test_a_malformed_or_foreign_record_means_a_full_check(tmp_path, monkeypatch, record):
    monkeypatch.setenv("EDGEBP_CACHE", str(tmp_path))
    (tmp_path / "onnx-checked.json").write_text(record)
    b = bundle_load("default")
    assert b.inputs
    rec = json.loads((tmp_path / "onnx-checked.json").read_text())  # rewritten by the full check
    assert rec["version"] == 1 and len(rec["models"]) >= 4
