"""The bad-CLI table: every command given bad options, bad inputs or an unwritable output.

Each case runs the real entry point (:func:`edgebp.cli.main`, the function behind the
``edgebp`` script, in-process for speed) and must end with a non-zero exit status, exactly one
``Error:`` line that names the option, file or field, no traceback, no "unexpected" catch-all,
and no hang (an alarm fails the case after ``HANG_S``). A few cases need a real process: an
installed-like copy of the package whose numba cache and HOME are not writable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgebp.cli import main

ROOT = Path(__file__).resolve().parent.parent
# no case does real work: each fails on its options or its first bytes. 60 s leaves room for
# the first torch import on a loaded 2-core machine (measured 12 s for `train --set lr=abc`)
HANG_S = 60


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in the CLI hides it."""


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    def alarm(*_):
        raise Hang(f"edgebp {' '.join(argv)}: no result within {HANG_S} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Inputs for the table: a short real text log (edgebp sim), empty/garbage/header-less logs,
    bad cuff CSVs, a non-empty directory, a run directory with a junk checkpoint."""
    d = tmp_path_factory.mktemp("badcli")
    code = subprocess.run([sys.executable, "-m", "edgebp", "sim", "--source", "synth:2", "--minutes", "0.2", "--out", str(d / "serial.log"),
                           "--truth", str(d / "truth.csv"), "--quiet"], cwd=d, capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    (d / "empty.log").write_bytes(b"")
    (d / "garbage.log").write_bytes(bytes(range(256)) * 8)
    (d / "nohead.log").write_text("1,2\n3,4\n5,6\n")
    for name, row in {"nan": "10,nan,80", "inf": "10,inf,80", "huge": "10,1e308,80", "neg": "10,-745,80",
                      "dbp_over": "10,80,120", "low": "10,30,20", "text": "10,abc,80"}.items():
        (d / f"cal_{name}.csv").write_text(f"time,sbp,dbp\n{row}\n")
    (d / "cal_cols.csv").write_text("t,s,d\n10,120,80\n")
    (d / "used").mkdir()
    (d / "used" / "notes.txt").write_text("an earlier run\n")
    (d / "emptydir").mkdir()
    (d / "junkrun").mkdir()
    (d / "junkrun" / "best.pt").write_bytes(b"this is not a checkpoint" * 10)
    (d / "pred.csv").write_text("subject,time,sbp,dbp\na,1,120,80\n")
    for name in ("full.csv", "full.jsonl", "fullsum.json", "full.log"):
        (d / name).symlink_to("/dev/full")
    return d


S = "{d}/serial.log"
# (argv, a fragment the one Error: line must contain)
CASES: list[tuple[list[str], str]] = [
    # --- run: streams that yield no sample
    (["run", "--stream", "{d}/empty.log"], "no samples decoded: the stream is empty"),
    (["run", "--stream", "{d}/garbage.log"], "no samples decoded"),
    (["run", "--stream", "{d}/nohead.log"], "no header"),
    (["run", "--stream", S, "--format", "binary"], "no samples decoded: no header found"),
    (["run", "--stream", "{d}/nohead.log", "--format", "max3010x"], "give fs (edgebp run --fs"),
    # --- run: options
    (["run", "--stream", S, "--hop", "0"], "'--hop'"),
    (["run", "--stream", S, "--hop", "-5"], "'--hop'"),
    (["run", "--stream", S, "--hop", "999999"], "--hop"),
    (["run", "--stream", S, "--threads", "0"], "'--threads'"),
    (["run", "--stream", S, "--threads", "-3"], "'--threads'"),
    (["run", "--stream", S, "--follow", "--idle-timeout", "nan"], "'--idle-timeout': nan"),
    (["run", "--stream", S, "--follow", "--idle-timeout", "0"], "'--idle-timeout'"),
    (["run", "--stream", S, "--follow", "--idle-timeout", "-1"], "'--idle-timeout'"),
    (["run", "--stream", S, "--follow", "--idle-timeout", "inf"], "'--idle-timeout'"),
    (["run", "--stream", S, "--idle-timeout", "5"], "--idle-timeout needs --follow or --port"),
    (["run", "--stream", S, "--fs", "nan"], "'--fs'"),
    (["run", "--stream", S, "--fs", "0"], "'--fs'"),
    (["run", "--stream", S, "--fs", "-250"], "'--fs'"),
    (["run", "--stream", S, "--read-size", "0"], "'--read-size'"),
    (["run", "--port", "/dev/null", "--baud", "0"], "'--baud'"),
    (["run", "--stream", S, "--format", "hex"], "'--format'"),
    (["run", "--stream", S, "--variant", "int4"], "'--variant'"),
    (["run", "--stream", S, "--backend", "torch"], "--backend torch needs --run-dir"),
    (["run", "--stream", S, "--run-dir", "{d}/emptydir"], "--run-dir is only for --backend torch"),
    (["run", "--stream", S, "--channel-map", "ir"], "--channel-map"),
    (["run", "--stream", S, "--channel-map", "ir=ppg,red=ppg"], "--channel-map"),
    (["run", "--stream", "{d}/missing.log"], "missing.log: file not found"),
    (["run", "--stream", "{d}/emptydir"], "is a directory"),
    (["run"], "give exactly one input"),
    (["run", "--stream", S, "--port", "/dev/null"], "give exactly one input"),
    (["run", "--stream", "-", "--follow"], "--follow"),
    (["run", "{d}/emptydir", "--stream", S], "emptydir"),
    (["run", "{d}/nosuchbundle", "--stream", S], "nosuchbundle"),
    # --- run: cuff calibration
    (["run", "--stream", S, "--calibration", "{d}/cal_nan.csv"], "cal_nan.csv: line 2: column 'sbp': 'nan' is not a finite number"),
    (["run", "--stream", S, "--calibration", "{d}/cal_inf.csv"], "cal_inf.csv: line 2"),
    (["run", "--stream", S, "--calibration", "{d}/cal_huge.csv"], "outside 40-300 mmHg"),
    (["run", "--stream", S, "--calibration", "{d}/cal_neg.csv"], "outside 40-300 mmHg"),
    (["run", "--stream", S, "--calibration", "{d}/cal_low.csv"], "outside 40-300 mmHg"),
    (["run", "--stream", S, "--calibration", "{d}/cal_dbp_over.csv"], "is not below SBP"),
    (["run", "--stream", S, "--calibration", "{d}/cal_text.csv"], "is not a number"),
    (["run", "--stream", S, "--calibration", "{d}/cal_cols.csv"], "cal_cols.csv: line 1: missing column 'time'"),
    (["run", "--stream", S, "--calibration-method", "magic"], "'--calibration-method'"),
    # --- run: outputs
    # (full.csv, full.jsonl, fullsum.json: symbolic links to /dev/full, whose every write fails with ENOSPC)
    (["run", "--stream", S, "--out", "{d}/full.csv"], "full.csv: No space left on device [ENOSPC]"),
    (["run", "--stream", S, "--out", "{d}/full.jsonl"], "full.jsonl: No space left on device [ENOSPC]"),
    (["run", "--stream", S, "--summary", "{d}/fullsum.json"], "fullsum.json: No space left on device [ENOSPC]"),
    (["run", "--stream", S, "--out", "{d}/nodir/bp.jsonl"], "does not exist"),
    (["run", "--stream", S, "--summary", "{d}/nodir/s.json"], "does not exist"),
    (["run", "--stream", S, "--out", "{d}/nodir/bp.csv"], "does not exist"),
    (["run", "--stream", S, "--out", "{d}/emptydir"], "emptydir"),
    # --- serve
    (["serve", "--source", "file:{d}/missing.log", "--out", "{d}/served"], "missing.log: no such file"),
    (["serve", "--source", "bogus:1", "--out", "{d}/served"], "bogus"),
    (["serve", "--source", "file:" + S, "--out", "{d}/served", "--max-streams", "0"], "'--max-streams'"),
    (["serve", "--source", "file:" + S, "--out", "{d}/served", "--idle-timeout", "nan"], "'--idle-timeout'"),
    (["serve", "--source", "file:" + S, "--out", "{d}/served", "--duration", "-1"], "'--duration'"),
    (["serve", "--source", "file:" + S, "--out", "{d}/served", "--threads", "0"], "'--threads'"),
    (["serve", "--source", "file:" + S, "--out", "{d}/served", "--backend", "torch"], "--backend torch"),
    (["serve", "--source", "stdin", "--source", "stdin", "--out", "{d}/served"], "stdin"),
    (["serve", "--out", "{d}/served"], "'--source'"),
    # --- sim
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "motion=1e9"], "motion is events per second"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "reset=inf"], "reset=inf"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "drop=2"], "per-frame probability"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "wobble=1"], "unknown fault"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "leadoff@10s"], "needs a duration"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--faults", "reset@1e999s"], "finite"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--frame-rate", "nan"], "'--frame-rate': nan"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--frame-rate", "0"], "'--frame-rate'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--minutes", "nan"], "'--minutes'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--minutes", "0"], "'--minutes'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--speed", "inf"], "'--speed'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--jitter-us", "-1"], "'--jitter-us'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--clock-ppm", "nan"], "'--clock-ppm'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--ecg-bits", "4"], "'--ecg-bits'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--baud", "-1"], "'--baud'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--buffer", "0"], "'--buffer'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--seed", "-1"], "'--seed'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--cuff-every", "30", "--cuff-noise", "nan"], "'--cuff-noise'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--cuff-every", "0"], "'--cuff-every'"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/xt.csv", "--pty"], "--out and --pty"),
    (["sim", "--source", "synth:1", "--out", "{d}/x.log", "--truth", "{d}/nodir/t.csv"], "directory does not exist"),
    (["sim", "--source", "nothing", "--out", "{d}/x.log", "--truth", "{d}/xt.csv"], "--source"),
    (["sim", "--source", "record:{d}/norecord", "--out", "{d}/x.log", "--truth", "{d}/xt.csv"], "norecord"),
    (["sim", "--source", "synth:1", "--minutes", "0.05", "--out", "{d}/full.log", "--truth", "{d}/xt.csv", "--quiet"], "full.log: No space left on device"),
    # --- score, grade
    (["score", "{d}/missing.csv", "{d}/truth.csv"], "missing.csv: file not found"),
    (["score", "{d}/pred.csv", "{d}/truth.csv", "--tolerance", "nan"], "'--tolerance'"),
    (["score", "{d}/pred.csv", "{d}/truth.csv", "--tolerance", "0"], "'--tolerance'"),
    (["score", "{d}/pred.csv", "{d}/truth.csv", "--recover", "-1"], "'--recover'"),
    (["score", "{d}/pred.csv", "{d}/truth.csv", "--fs", "inf"], "'--fs'"),
    (["grade", "{d}/pred.csv", "{d}/pred.csv", "--tolerance", "nan"], "'--tolerance'"),
    (["grade", "{d}/pred.csv", "{d}/pred.csv", "--train-mean", "nan", "80"], "'--train-mean'"),
    (["grade", "{d}/missing.csv", "{d}/pred.csv"], "missing.csv"),
    # --- train (issue 16: safe defaults)
    (["train", "--out", "{d}/t1", "--set", "lr=abc"], "lr: expected a number (float), got 'abc'"),
    (["train", "--out", "{d}/t1", "--set", "epochs=2.5"], "epochs: expected a whole number (int)"),
    (["train", "--out", "{d}/t1", "--set", "amp=1"], "amp: expected true or false (bool)"),
    (["train", "--out", "{d}/t1", "--set", "lr=NaN"], "lr: expected a finite number"),
    (["train", "--out", "{d}/t1", "--set", "lr=-1"], "lr: must be > 0"),
    (["train", "--out", "{d}/t1", "--set", "inputs=[1]"], "inputs: expected a list of strings"),
    (["train", "--out", "{d}/t1", "--set", "nosuch=1"], "unknown key(s) nosuch"),
    (["train", "--out", "{d}/t1", "--set", "lr"], "expected KEY=VALUE"),
    (["train", "--out", "{d}/t1", "--epochs", "0"], "'--epochs'"),
    (["train", "--out", "{d}/t1", "--seed", "-1"], "'--seed'"),
    (["train", "--out", "{d}/t1", "--model", "bogus"], "model: 'bogus' is not valid"),
    (["train", "--out", "{d}/used"], "not empty"),
    (["train", "--out", "{d}/emptydir", "--resume"], "no last.pt"),
    (["train", "--out", "{d}/used", "--resume", "--force"], "exclude each other"),
    (["train", "--out", "{d}/tiny", "--set", "synth_subjects=3", "--set", "synth_minutes=0.5"], "no training batch"),
    # --- export, evaluate
    (["export", "{d}/junkrun", "--out", "{d}/b1"], "junkrun/best.pt: not a readable edgebp checkpoint"),
    (["export", "{d}/emptydir", "--out", "{d}/b1"], "not a run directory"),
    (["export", "{d}/junkrun", "--out", "{d}/b1", "--prune", "1.5"], "'--prune'"),
    (["export", "{d}/junkrun", "--out", "{d}/b1", "--prune", "nan"], "'--prune'"),
    (["export", "{d}/junkrun", "--out", "{d}/b1", "--calib-windows", "0"], "'--calib-windows'"),
    (["export", "{d}/junkrun", "--out", "{d}/b1", "--max-delta-mae", "nan"], "'--max-delta-mae'"),
    (["evaluate", "{d}/junkrun"], "junkrun/best.pt: not a readable edgebp checkpoint"),
    (["run", "--stream", S, "--backend", "torch", "--run-dir", "{d}/junkrun"], "junkrun/best.pt: not a readable edgebp checkpoint"),
    (["run", "--stream", S, "--backend", "torch", "--run-dir", "{d}/emptydir"], "not a run directory"),
    (["evaluate", "default", "--cuff-from-reference", "-5"], "'--cuff-from-reference'"),
    (["evaluate", "default", "--cuff-from-reference", "nan"], "'--cuff-from-reference'"),
    (["evaluate", "default", "--packet-ms", "0"], "'--packet-ms'"),
    (["evaluate", "default", "--hop", "0"], "'--hop'"),
    (["evaluate", "default", "--recalibrate-every", "inf"], "'--recalibrate-every'"),
    # --- bench (options only; nothing is measured)
    (["bench", "--threads", "0", "--report", "{d}/bench"], "'--threads'"),
    (["bench", "--repeat", "0", "--report", "{d}/bench"], "'--repeat'"),
    (["bench", "--stream-minutes", "nan", "--report", "{d}/bench"], "'--stream-minutes'"),
    (["bench", "--lengths", "0,1", "--report", "{d}/bench"], "--lengths"),
    (["bench", "--streams", "4,nan", "--report", "{d}/bench"], "--streams"),
    (["bench", "--report", " "], "--report"),
    (["nosuchcommand"], "No such command"),
    # --- the shared vocabulary (edgebp.variants; old spellings are hidden aliases)
    (["run", "--stream", S, "--variant", "pruned"], "'--variant'"),
    (["run", "--stream", S, "--summary", "{d}/a.json", "--summary-json", "{d}/b.json"], "same option"),
    (["bench", "--variants", "stream-int8,onnx", "--report", "{d}/bench"], "valid variants: stream-int8"),
    (["budget", "default", "--variant", "torch-fp32"], "'--variant'"),
    (["evaluate", "default", "--variant", "torch-fp32"], "'--variant'"),
    (["grade", "{d}/pred.csv", "{d}/pred.csv", "--calibration", "{d}/cal_cols.csv"], "cal_cols.csv: line 1: missing column 'time'"),
]


def _ids():
    return [f"{i:03d}-" + "_".join(a.replace("{d}/", "") for a in argv)[:60] for i, (argv, _) in enumerate(CASES)]


@pytest.mark.parametrize("argv,expect", CASES, ids=_ids())
def test_bad_invocation(argv, expect, d, capsys, monkeypatch):
    if "tensorrt" in argv:
        pytest.skip("n/a")
    monkeypatch.chdir(d)
    args = [a.replace("{d}", str(d)) for a in argv]
    code, out, err = _main(args, capsys)
    text = out + err
    errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert code != 0, f"exit 0 for {args}: {text[-500:]}"
    assert "Traceback" not in text, text
    assert "unexpected" not in text, text  # the catch-all line means an error was not handled where it arose
    assert len(errors) == 1, f"expected one Error: line, got {errors} in {text[-800:]}"
    assert expect.replace("{d}", str(d)) in errors[0], errors[0]


def test_bad_cli_table_size():
    """The figure docs/reliability.md quotes: how many bad invocations the table runs."""
    assert len(CASES) >= 120


def test_tensorrt_without_tensorrt(d, capsys):
    from edgebp.runtime.backends import tensorrt_available

    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is usable here: the refusal path is not reachable")
    code, out, err = _main(["run", "--stream", str(d / "serial.log"), "--backend", "tensorrt"], capsys)
    assert code == 2 and err.count("Error:") == 1 and "TensorRT is not usable here" in err and "Traceback" not in err


def test_jsonl_and_summary_are_strict_json(d, capsys, tmp_path):
    """`--out bp.jsonl` and `--summary`: every line parses as strict JSON (no bare NaN),
    and every row claimed valid has a finite ABP."""
    import json
    import math

    out, summ = tmp_path / "bp.jsonl", tmp_path / "s.json"
    code, _, err = _main(["run", "--stream", str(d / "serial.log"), "--out", str(out), "--summary", str(summ)], capsys)
    assert code == 0, err

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))

    recs = [strict(ln) for ln in out.read_text().splitlines()]
    samples = [r for r in recs if r["type"] == "sample"]
    assert samples and all(math.isfinite(r["abp"]) for r in samples if r["valid"])
    s = strict(summ.read_text())
    assert s["decoder"]["samples_parsed"] > 0 and s["exit_code"] == 0


def _installed_copy(dst: Path) -> Path:
    """The package laid out as `pip install .` lays it out, in ``dst``, with the kernels'
    ``__pycache__`` made unwritable (a regular file where numba wants its directory): what a
    read-only site-packages is to numba, even for root."""
    site = dst / "site"
    ign = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "edgebp", site / "edgebp", ignore=ign)
    for sub in ("train", "export", "runtime", "firmware_sim"):
        shutil.copytree(ROOT / sub, site / "edgebp" / sub, ignore=ign)
    for pkg in (site / "edgebp").rglob("*"):
        if pkg.is_dir() and (pkg / "__init__.py").exists() or pkg == site / "edgebp" / "processing":
            (pkg / "__pycache__").write_text("not a directory\n")
    return site


def test_service_user_without_writable_home(tmp_path):
    """A service user: package not writable, HOME not writable, no XDG_CACHE_HOME. numba's
    cache=True kernels raise there (numba's JIT: EDGEBP_KERNELS=jit; the ahead-of-time
    kernels need no cache, see the next test); edgebp points NUMBA_CACHE_DIR at a writable
    temporary directory instead and runs (here: to its one-line "no samples" error)."""
    site = _installed_copy(tmp_path)
    home_file = tmp_path / "homefile"
    home_file.write_text("HOME below a regular file: nothing can be created there\n")
    tmpd = tmp_path / "tmp"
    tmpd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update({"PYTHONPATH": str(site), "HOME": str(home_file / "home"), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmpd),
                "EDGEBP_KERNELS": "jit"})
    (tmp_path / "empty.log").write_bytes(b"")
    # the environment really is hostile: numba alone fails at the first kernel (so this test can fail)
    bare = subprocess.run([sys.executable, "-c", _FIRST_KERNEL], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "cannot cache function" in bare.stderr, bare.stderr[-400:]
    p = subprocess.run([sys.executable, "-m", "edgebp", "run", "--stream", "empty.log"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=180)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1 and "no samples decoded: the stream is empty" in p.stderr, p.stderr
    cache = tmpd / f"edgebp-numba-{os.getuid()}"
    assert cache.is_dir()
    # a cold cache is announced in one line before the run, naming where the kernels go
    assert f"compiling numba kernels (first run, ~" in p.stderr and f"cached in {cache})" in p.stderr, p.stderr


_FIRST_KERNEL = "import numpy as np; from edgebp.processing.normalize import RunningNorm; RunningNorm(125.0).process(np.ones(10), RunningNorm(125.0).init_state())"


def test_service_user_runs_the_ahead_of_time_kernels(tmp_path):
    """The same hostile service user with the kernels compiled ahead of time (what `make setup`
    builds): nothing to cache, so no NUMBA_CACHE_DIR, no announcement, and numba never loads."""
    from edgebp.processing.kernels import aot_module, kernels_status

    if aot_module() is None:
        pytest.skip(f"the ahead-of-time kernels are {kernels_status()['why']}")
    site = _installed_copy(tmp_path)
    home_file = tmp_path / "homefile"
    home_file.write_text("HOME below a regular file: nothing can be created there\n")
    tmpd = tmp_path / "tmp"
    tmpd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "EDGEBP_KERNELS"))}
    env.update({"PYTHONPATH": str(site), "HOME": str(home_file / "home"), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmpd)})
    (tmp_path / "empty.log").write_bytes(b"")
    probe = _FIRST_KERNEL + "; import sys; print('numba' in sys.modules)"
    bare = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0 and bare.stdout.strip() == "False", bare.stderr[-400:]
    p = subprocess.run([sys.executable, "-m", "edgebp", "run", "--stream", "empty.log"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=180)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1 and "no samples decoded: the stream is empty" in p.stderr, p.stderr
    assert "compiling numba kernels" not in p.stderr


@pytest.mark.parametrize("sbp,dbp,why", [(float("nan"), 80.0, "not a number"), (float("inf"), 80.0, "not a number"),
                                         (1e308, 80.0, "outside 40-300"), (-745.0, 80.0, "outside 40-300"),
                                         (120.0, 130.0, "not below SBP"), (120.0, 30.0, "outside 40-300")])
def test_calibration_api_checks_readings(sbp, dbp, why):
    """The Python entry (Calibration built by hand) gets the same check as the CSV and the
    stream: an implausible cuff reading is refused, naming where it came from."""
    from edgebp.runtime.calibrated import CuffReading
    from edgebp.runtime.engine import Calibration

    with pytest.raises(ValueError, match=why) as info:
        Calibration([CuffReading(10.0, sbp, dbp, None, "api reading")])
    assert str(info.value).startswith("api reading: cuff reading rejected")
    assert Calibration([CuffReading(10.0, 120.0, 80.0, None, "ok")]).readings  # a plausible one passes


def test_deprecated_spellings_warn_and_behave_the_same(d, capsys, tmp_path):
    """run --summary-json, score --json OUT, serve --out-dir, sim --fs and run --variant int8 (on a streaming
    bundle) are the old spellings: each prints a one-line deprecation warning on stderr and
    gives exactly what the new spelling gives."""
    import json

    log = str(d / "serial.log")
    outs = {}
    for opt in ("--summary", "--summary-json"):
        code, _, err = _main(["run", "--stream", log, "--out", str(tmp_path / f"bp{opt}.csv"), opt, str(tmp_path / f"s{opt}.json")], capsys)
        assert code == 0, err
        assert ("--summary-json is deprecated; use --summary" in err) == (opt == "--summary-json")
        s = json.loads((tmp_path / f"s{opt}.json").read_text())
        outs[opt] = (s["decoder"], s["outputs"] if "outputs" in s else None, (tmp_path / f"bp{opt}.csv").read_text())
    assert outs["--summary"] == outs["--summary-json"]
    for opt in ("--summary", "--json"):  # score's results JSON: --json OUT before the shared names
        code, _, err = _main(["score", str(tmp_path / "bp--summary.csv"), str(d / "truth.csv"), opt, str(tmp_path / f"score{opt}.json")], capsys)
        assert code == 0, err
        assert ("--json is deprecated; use --summary" in err) == (opt == "--json")
    assert (tmp_path / "score--json.json").read_text() == (tmp_path / "score--summary.json").read_text()
    code, _, err = _main(["run", "--stream", log, "--variant", "int8", "--out", str(tmp_path / "old.csv")], capsys)
    assert code == 0 and "say --variant stream-int8" in err
    assert (tmp_path / "old.csv").read_text() == outs["--summary"][2]
    for opt in ("--out", "--out-dir"):
        code, _, err = _main(["serve", "--source", f"file:{log}", opt, str(tmp_path / f"served{opt}")], capsys)
        assert code == 0, err
        assert ("--out-dir is deprecated; use --out" in err) == (opt == "--out-dir")
    assert (tmp_path / "served--out" / "file-serial.csv").read_bytes() == (tmp_path / "served--out-dir" / "file-serial.csv").read_bytes()
    for opt in ("--frame-rate", "--fs"):
        code, _, err = _main(["sim", "--source", "synth:2", "--minutes", "0.05", opt, "200", "--quiet", "--out", str(tmp_path / f"x{opt}.log"),
                              "--truth", str(tmp_path / f"t{opt}.csv")], capsys)
        assert code == 0, err
        assert ("--fs is deprecated; use --frame-rate" in err) == (opt == "--fs")
    assert (tmp_path / "x--fs.log").read_bytes() == (tmp_path / "x--frame-rate.log").read_bytes()
