"""Check edgebp's import layering (the contracts in pyproject.toml) with import-linter.

edgebp.train, .export, .runtime and .firmware_sim live in their own folders of the checkout
(``package-dir`` in pyproject.toml), so ``lint-imports`` run in the checkout sees only
``edgebp/``. This script lays the package out as it is installed (a temporary tree of links to
the checkout's ``.py`` files) and runs ``lint-imports`` there against the checkout's
pyproject.toml. Exit status: 0 when every contract is kept, 1 when one is broken, 2 when the
check could not run (import-linter missing, bad config).

Usage (from anywhere)::

    .venv/bin/python scripts/lint_layers.py            # all contracts
    .venv/bin/python scripts/lint_layers.py --contract layers
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

log = logging.getLogger("lint_layers")

REPO = Path(__file__).resolve().parent.parent


def installed_layout(dest: Path, repo: Path = REPO) -> Path:
    """Link every ``.py`` file of the packages under ``dest`` as setuptools installs them
    (``[tool.setuptools.package-dir]``); returns ``dest``."""
    conf = tomllib.loads((repo / "pyproject.toml").read_text())
    package_dir = conf["tool"]["setuptools"].get("package-dir", {})
    packages = conf["tool"]["setuptools"]["packages"]
    for pkg in packages:
        # a package's folder: its own package-dir entry, else its parent's folder + its name
        parts = pkg.split(".")
        for k in range(len(parts), 0, -1):
            head = ".".join(parts[:k])
            if head in package_dir:
                src = repo / package_dir[head] / Path(*parts[k:])
                break
        else:
            src = repo / Path(*parts)
        dst = dest / Path(*parts)
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            link = dst / f.name
            if not link.exists():
                os.symlink(f, link)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contract", action="append", default=[], help="Check only this contract id (repeatable).")
    args = ap.parse_args(argv)
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        print("lint_layers: lint-imports not found: pip install 'edgebp[dev]' (import-linter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgebp-layers-") as tmp:
        stage = installed_layout(Path(tmp))
        cmd = [exe, "--no-cache", str(REPO / "pyproject.toml")] + [a for c in args.contract for a in ("--contract", c)]
        # run in the laid-out tree: lint-imports puts the working directory first on sys.path,
        # so this tree's edgebp is the one analysed (not the checkout's, nor the editable hook)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.call(cmd, cwd=stage, env=env)


if __name__ == "__main__":
    sys.exit(main())
