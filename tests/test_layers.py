"""The import layering holds (import-linter's contracts in pyproject.toml), and the check can fail.

Real import-linter runs (``lint-imports`` in a subprocess) on the package laid out as installed
(scripts/lint_layers.py), once on the checkout as it is and once with a deliberate violation
added to a copy of that layout, which must be reported as a broken contract.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "lint_layers.py"
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists() and shutil.which("lint-imports") is None,
                                reason="import-linter not installed (pip install 'edgebp[dev]')")


def _script():
    spec = importlib.util.spec_from_file_location("lint_layers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lint(stage: Path, *contracts: str) -> subprocess.CompletedProcess:
    exe = str(LINT) if LINT.exists() else shutil.which("lint-imports")
    cmd = [exe, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")] + [a for c in contracts for a in ("--contract", c)]
    return subprocess.run(cmd, cwd=stage, capture_output=True, text=True, timeout=300)


def test_contracts_kept():
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "0 broken" in out
    # every contract ran (a contract that silently disappeared would not show)
    for name in ("Layers: orchestration", "The core knows no models", "The runtime path", "edgebp.cli reaches"):
        assert name in out, out
    # the layout really held the separately-foldered packages (else the contracts on them would
    # error, not pass; this keeps the count honest): 150+ files analysed
    n = int(out.split("Analyzed ")[1].split(" files")[0])
    assert n > 150, out


def test_layout_matches_packages(tmp_path):
    stage = _script().installed_layout(tmp_path)
    for sub in ("train", "export", "runtime", "firmware_sim", "bench", "io"):
        assert (stage / "edgebp" / sub / "__init__.py").exists(), sub
    assert (stage / "edgebp" / "runtime" / "engine.py").resolve() == (REPO / "runtime" / "engine.py").resolve()


@pytest.mark.parametrize("where, code, contract", [
    # the core importing training code
    ("edgebp/processing/_violation.py", "import edgebp.train.loop\n", "core-knows-no-models"),
    # the runtime importing torch, through a core module it uses
    ("edgebp/runtime/_violation.py", "import edgebp.scoring\nimport torch\n", "runtime-no-torch"),
    # a lower layer importing a higher one
    ("edgebp/runtime/_violation.py", "from edgebp.bench import suite\n", "layers"),
])
def test_a_violation_breaks_the_contract(tmp_path, where, code, contract):
    stage = _script().installed_layout(tmp_path)
    target = stage / where
    target.write_text(code)  # a real file in the copy of the layout, never in the checkout
    r = _lint(stage, contract)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 broken" in out and "_violation" in out, out


def test_unplaced_module_is_reported(tmp_path):
    """exhaustive: a new top-level module must be given a layer."""
    stage = _script().installed_layout(tmp_path)
    (stage / "edgebp" / "newthing.py").write_text("X = 1\n")
    r = _lint(stage, "layers")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "newthing" in out, out
