"""``edgebp bench --parts startup``: start-up and memory of ``edgebp run``, the kernels compiled
ahead of time against numba's JIT, side by side.

Per round and per kernel kind (``EDGEBP_KERNELS=aot`` then ``jit``, alternating), in its own
child process (:func:`edgebp.bench.streaming.child_run`, the kernel's peak RSS of exactly that
process):

- ``edgebp run BUNDLE --stream LOG`` on a 1 s log: the time from the interpreter's first line
  to the first output rows (the first ``StreamRuntime.push`` that returns rows), the whole
  process's wall time and peak RSS;
- the same on the long log (default 10 minutes): wall time, peak RSS and a hash of the rows,
  which must be the same for both kinds.

Warm: numba's cache and the loader's record of checked models are filled by a run of each
kind before the first timed round, and the result says whether edgebp's own bytecode is
cached (``bytecode_cached``): an installed package has it, and so does a checkout after
``make setup``; without it (``PYTHONDONTWRITEBYTECODE=1`` on an editable checkout) every start
compiles the package's modules, about 0.12 s more to the first output here. The AOT rows are
left out (and say why) where the AOT build is missing or stale.

    python -m edgebp.bench.startup --bundle default --log serial-10min.log --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

#: The child: times the first rows of `edgebp run` from its first line, then runs it.
_FIRST = """
import sys, time
T0 = time.perf_counter()
out = sys.argv.pop(1)
import edgebp.runtime.engine as E
_push = E.StreamRuntime.push
first = []
def push(self, *a, **k):
    o = _push(self, *a, **k)
    if not first and len(o.t):
        first.append(time.perf_counter() - T0)
        open(out, "w").write(repr(first[0]))
    return o
E.StreamRuntime.push = push
sys.argv[0] = "edgebp"
from edgebp.cli import main
main()
"""

KINDS = ("aot", "jit")


def bytecode_cached() -> bool:
    """Whether every module of the runtime path that is loaded from source has a current .pyc
    (written by ``make setup`` or an install); a stale one counts as missing."""
    import importlib
    import importlib.util

    for name in ("edgebp.runtime.engine", "edgebp.runtime.run"):  # what `edgebp run` loads first
        importlib.import_module(name)

    ok = True
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not name.startswith("edgebp") or not f or not f.endswith(".py"):
            continue
        pyc = Path(importlib.util.cache_from_source(f))
        ok &= pyc.exists() and pyc.stat().st_mtime >= Path(f).stat().st_mtime
    return bool(ok)


def short_log_write(log: str | Path, out: Path, samples: int = 250) -> Path:
    """The head of ``log``: its first header line and its first ``samples`` sample lines."""
    lines = Path(log).read_bytes().splitlines(keepends=True)
    head = [ln for ln in lines[:50] if ln.startswith(b"#")][:1]
    out.write_bytes(b"".join(head + [ln for ln in lines if not ln.startswith(b"#")][:samples]))
    return out


def _one(kind: str, bundle: str, log: Path, out_dir: Path) -> dict:
    from edgebp.bench.streaming import child_run

    env = {**os.environ, "EDGEBP_KERNELS": kind}
    first = out_dir / f"first-{kind}.txt"
    rows = out_dir / f"rows-{kind}.csv"
    first.unlink(missing_ok=True)
    r = child_run([sys.executable, "-c", _FIRST, str(first), "run", bundle, "--stream", str(log), "--out", str(rows)], timeout_s=3600, env=env)
    if r["returncode"] != 0:
        raise RuntimeError(f"edgebp run ({kind}) failed: {(r['stderr'].strip().splitlines() or ['no output'])[-1]}")
    return {"first_output_s": float(first.read_text()) if first.exists() else None, "wall_s": r["wall_seconds"],
            "cpu_s": r["user_seconds"] + r["system_seconds"], "max_rss_mb": r["max_rss_mb"],
            "rows_sha256": hashlib.sha256(rows.read_bytes()).hexdigest()[:16]}


def startup_measure(bundle: str, log: str | Path, rounds: int = 5, short_samples: int = 250, progress=None) -> dict:
    """Every round runs both kinds on the 1 s head of ``log`` and on the whole ``log``."""
    from edgebp.processing.kernels import aot_module, kernels_status

    say = progress or (lambda msg: None)
    log = Path(log)
    kinds = KINDS if aot_module() is not None else ("jit",)
    res: dict = {"bundle": bundle, "log": str(log), "rounds": rounds, "kinds": list(kinds),
                 "aot_unavailable": None if "aot" in kinds else kernels_status()["why"], "bytecode_cached": bytecode_cached()}
    with tempfile.TemporaryDirectory(prefix="edgebp-startup-") as tmp:
        tmp = Path(tmp)
        short = short_log_write(log, tmp / "short.log", short_samples)
        for k in kinds:  # warm: numba's cache, the record of checked models
            _one(k, bundle, short, tmp)
        runs: dict = {k: {"short": [], "long": []} for k in kinds}
        for i in range(rounds):
            say(f"startup: round {i + 1}/{rounds}")
            for k in kinds:
                runs[k]["short"].append(_one(k, bundle, short, tmp))
                runs[k]["long"].append(_one(k, bundle, log, tmp))
    med = lambda xs: float(statistics.median(xs)) if xs else None  # noqa: E731
    res["rows"] = []
    for k in kinds:
        s, lg = runs[k]["short"], runs[k]["long"]
        res["rows"].append({"kernels": k, "first_output_s_median": med([r["first_output_s"] for r in s if r["first_output_s"] is not None]),
                            "first_output_s_all": [r["first_output_s"] for r in s], "short_wall_s_median": med([r["wall_s"] for r in s]),
                            "long_wall_s_median": med([r["wall_s"] for r in lg]), "long_cpu_s_median": med([r["cpu_s"] for r in lg]),
                            "max_rss_mb_median": med([r["max_rss_mb"] for r in lg]), "max_rss_mb_all": [r["max_rss_mb"] for r in lg],
                            "rows_sha256": sorted({r["rows_sha256"] for r in lg})})
    by = {r["kernels"]: r for r in res["rows"]}
    if "aot" in by:
        a, j = by["aot"], by["jit"]
        res["aot_over_jit"] = {"first_output": a["first_output_s_median"] / j["first_output_s_median"],
                               "max_rss": a["max_rss_mb_median"] / j["max_rss_mb_median"],
                               "long_cpu": a["long_cpu_s_median"] / j["long_cpu_s_median"]}
        res["outputs_identical"] = a["rows_sha256"] == j["rows_sha256"] and len(a["rows_sha256"]) == 1
    try:
        res["load_average"] = list(os.getloadavg())
    except OSError:
        res["load_average"] = None
    res["goals"] = {"peak_rss_at_most_150_mb": (by.get("aot") or by["jit"])["max_rss_mb_median"] * 1.048576 <= 150.0,
                    "first_output_at_most_0_5_s": (by.get("aot") or by["jit"])["first_output_s_median"] <= 0.5}
    return res


def startup_text(r: dict) -> str:
    lines = []
    for row in r["rows"]:
        lines.append(f"startup {row['kernels']}: first output {row['first_output_s_median']:.3f} s (median of {r['rounds']}), "
                     f"peak RSS {row['max_rss_mb_median']:.1f} MiB, long log {row['long_wall_s_median']:.2f} s wall")
    if not r.get("bytecode_cached", True):
        lines.append("startup: edgebp's bytecode is not cached (make setup writes it), so every start compiles its modules")
    if r.get("aot_unavailable"):
        lines.append(f"startup: no AOT rows: the ahead-of-time kernels are {r['aot_unavailable']}")
    if "aot_over_jit" in r:
        x = r["aot_over_jit"]
        lines.append(f"startup aot/jit: first output {x['first_output']:.2f}x, peak RSS {x['max_rss']:.2f}x, CPU {x['long_cpu']:.2f}x; "
                     f"outputs identical: {r['outputs_identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--log", required=True, help="An edgebp text log (edgebp sim); its first 250 samples make the 1 s log.")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None, help="Write the result as JSON here.")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    r = startup_measure(a.bundle, a.log, a.rounds, progress=lambda m: print(m, file=sys.stderr))
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=1) + "\n")
    print(startup_text(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
