"""First output of `edgebp run` with and without edgebp's own bytecode cached, alternating.

Each round removes the package's ``__pycache__`` folders and runs ``edgebp run`` on a 1 s
log (what a checkout under ``PYTHONDONTWRITEBYTECODE=1`` without ``make setup``'s bytecode
does), then compiles them (``python -m compileall``, what ``make setup`` and ``pip install``
do) and runs it again. The timing is :mod:`edgebp.bench.startup`'s child (interpreter start
to the first output rows). It leaves the bytecode compiled.

    python scripts/startup_bytecode.py serial-10min.log --rounds 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["edgebp", "train", "export", "runtime", "firmware_sim"]


def bytecode_drop() -> None:
    for p in PACKAGES:
        for d in (ROOT / p).rglob("__pycache__"):
            shutil.rmtree(d)


def bytecode_compile() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    from edgebp.bench.startup import _one, short_log_write

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="an edgebp text log; its header and first 250 samples make the 1 s log")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgebp-bytecode-") as tmp:
        tmp = Path(tmp)
        short = short_log_write(a.log, tmp / "short.log")
        bytecode_compile()
        _one("aot", a.bundle, short, tmp)  # warm: numba's cache, the record of checked models
        res: dict[str, list[float]] = {"without bytecode": [], "with bytecode": []}
        for i in range(a.rounds):
            for label in res:
                bytecode_drop() if label == "without bytecode" else bytecode_compile()
                res[label].append(_one("aot", a.bundle, short, tmp)["first_output_s"])
        bytecode_compile()
    for label, xs in res.items():
        print(f"{label}: first output median {statistics.median(xs):.3f} s ({', '.join(f'{x:.3f}' for x in xs)})")
    ratio = statistics.median(res["with bytecode"]) / statistics.median(res["without bytecode"])
    print(f"with / without: {ratio:.2f}x; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
