"""The commands chain: `edgebp sim` -> `edgebp run` -> `edgebp score` / `edgebp grade`.

The files are written by the real commands (installed `edgebp` in subprocesses): 30 s of
synthetic subject 3 through the shipped default bundle. Expected numbers are recomputed
here from the files themselves (not through the code under test), or worked out by hand
for the small CSVs written in the tests.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.cli import cli

EXE = os.path.join(os.path.dirname(sys.executable), "edgebp")
ROOT = Path(__file__).resolve().parents[1]
BEAT_HEADER = "time,sbp,dbp,map,hr,valid,reason,calibrated"


def _edgebp(*args, cwd=None, timeout=120, **kw):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """sim (no faults, 30 s) -> run --out bp.csv; the paths of everything written."""
    d = tmp_path_factory.mktemp("chain")
    p = _edgebp("sim", "--source", "synth:3", "--minutes", "0.5", "--seed", "1", "--out", d / "s.log",
                "--truth", d / "truth.csv", "--quiet")
    assert p.returncode == 0, p.stderr
    p = _edgebp("run", "default", "--stream", d / "s.log", "--out", d / "bp.csv")
    assert p.returncode == 0, p.stderr
    return {"dir": d, "log": d / "s.log", "truth": d / "truth.csv", "truth_beats": d / "truth_beats.csv",
            "bp": d / "bp.csv", "beats": d / "bp.beats.csv"}


def _rows(path: Path) -> list[dict]:
    """A CSV's data rows as dicts, `#` lines skipped."""
    with open(path) as fh:
        return list(csv.DictReader(ln for ln in fh if not ln.startswith("#")))


def _one_line_error(res) -> str:
    msg = res.output.strip() if hasattr(res, "output") else res.stderr.strip()
    assert res.exit_code != 0 if hasattr(res, "exit_code") else res.returncode != 0
    assert msg.count("\n") == 0 and "Traceback" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- edgebp score
def test_score_counts_pairs_and_heart_rate(chain, tmp_path):
    js = tmp_path / "score.json"
    p = _edgebp("score", chain["bp"], chain["truth"], "--summary", js)
    assert p.returncode == 0, p.stderr
    for needle in ("point-wise ABP vs truth", "from the runtime", "in the truth", "count difference",
                   "unpaired:", "heart rate: runtime", "SBP: n", "DBP: n", "faults: none"):
        assert needle in p.stdout, (needle, p.stdout)
    b = json.loads(js.read_text())["beats"]

    # recomputed from the files: the run's beats file and the simulator's beat truth
    run = _rows(chain["beats"])
    assert list(run[0]) == BEAT_HEADER.split(",")
    valid = [r for r in run if r["valid"] == "1"]
    assert b["n_runtime"] == len(run) and b["n_runtime_valid"] == len(valid) > 10
    assert b["n_runtime_invalid"] == len(run) - len(valid) == sum(b["invalid_reasons"].values())
    tb = _rows(chain["truth_beats"])
    t_true = np.array([float(r["t_true_s"]) for r in _rows(chain["truth"])])
    ts = np.array([float(r["t_sys_s"]) for r in tb])
    tvalid = np.array([r["valid"] == "1" for r in tb]) & (ts >= t_true[0]) & (ts <= t_true[-1])
    assert b["n_truth"] == int(tvalid.sum())
    assert b["count_diff_pct"] == pytest.approx(100 * (len(run) - b["n_truth"]) / b["n_truth"])
    # every scored (valid) runtime beat and every truth beat is either paired or unpaired
    assert b["n_scored"] == len(valid)
    assert b["n_paired"] + b["unpaired_runtime"] == len(valid)
    assert b["n_paired"] + b["unpaired_truth"] == b["n_truth"]
    assert b["n_paired"] > 0.8 * b["n_truth"]
    # heart rate of the truth: 60 / interval of consecutive valid truth beats < 2 s apart
    dt = np.diff(ts)
    ok = tvalid[:-1] & tvalid[1:] & (dt < 2.0)
    assert b["hr"]["truth"]["n_intervals"] == int(ok.sum())
    assert b["hr"]["truth"]["mean_bpm"] == pytest.approx(np.mean(60.0 / dt[ok]))
    hr_col = np.array([float(r["hr"]) for r in valid if r["hr"]])
    if len(hr_col):
        assert b["hr"]["runtime"]["source"] == "hr column"
        assert b["hr"]["runtime"]["mean_bpm"] == pytest.approx(hr_col.mean(), abs=0.06)  # hr written to 0.1 bpm
    else:
        tv = np.array([float(r["time"]) for r in valid])
        d = np.diff(tv)
        assert b["hr"]["runtime"]["mean_bpm"] == pytest.approx(np.mean(60.0 / d[d < 2.0]))
    assert b["hr"]["diff_bpm"] == pytest.approx(b["hr"]["runtime"]["mean_bpm"] - b["hr"]["truth"]["mean_bpm"])
    # the paired SBP error, by hand: nearest valid runtime beat per paired truth beat is not
    # reconstructible without the axis mapping, but MAE >= |ME| and n match the pair count
    assert b["sbp"]["n"] == b["dbp"]["n"] == b["n_paired"]
    assert b["sbp"]["mae"] >= abs(b["sbp"]["me"])


def test_score_tolerance_and_old_script_name(chain, tmp_path):
    """A tighter --tolerance pairs fewer beats; scripts/compare_truth.py is the same command."""
    wide = json.loads(_edgebp("score", chain["bp"], chain["truth"], "--summary", "-").stdout)["beats"]
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_truth.py"), str(chain["bp"]), str(chain["truth"]),
                        "--max-dt", "0.01", "--summary", "-"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    tight = json.loads(p.stdout)["beats"]
    assert tight["max_dt_s"] == 0.01 and wide["max_dt_s"] == 0.3
    assert tight["n_paired"] < wide["n_paired"]
    assert tight["n_truth"] == wide["n_truth"] and tight["n_runtime"] == wide["n_runtime"]


def test_score_a_beats_file_alone(chain):
    """What `edgebp run` prints without --out can be scored directly (beats only)."""
    res = CliRunner().invoke(cli, ["score", str(chain["beats"]), str(chain["truth"]), "--summary", "-"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    full = json.loads(CliRunner().invoke(cli, ["score", str(chain["bp"]), str(chain["truth"]), "--summary", "-"]).stdout)
    assert got["pointwise"] is None and full["pointwise"] is not None
    assert got["beats"] == full["beats"]


def test_score_bad_input_is_one_line(chain, tmp_path):
    # a truth file whose beats truth is not beside it: the installed command, exit 2
    lonely = tmp_path / "lonely.csv"
    shutil.copy(chain["truth"], lonely)
    p = _edgebp("score", chain["bp"], lonely)
    assert p.returncode == 2
    msg = _one_line_error(p)
    assert "lonely.csv" in msg and "beats truth" in msg and "lonely_beats.csv" in msg
    # ... unless it is given
    runner = CliRunner()
    res = runner.invoke(cli, ["score", str(chain["bp"]), str(lonely), "--beats-truth", str(chain["truth_beats"])])
    assert res.exit_code == 0, res.output
    # a run output without its beats file
    alone = tmp_path / "alone.csv"
    shutil.copy(chain["bp"], alone)
    res = runner.invoke(cli, ["score", str(alone), str(chain["truth"])])
    msg = _one_line_error(res)
    assert res.exit_code == 2 and "alone.beats.csv" in msg and "not found" in msg
    # a missing file
    res = runner.invoke(cli, ["score", str(tmp_path / "nope.csv"), str(chain["truth"])])
    assert "nope.csv: file not found" in _one_line_error(res)
    # the truth given as the run output
    res = runner.invoke(cli, ["score", str(chain["truth"]), str(chain["truth"])])
    assert "not an edgebp run CSV" in _one_line_error(res)
    # the run output given as the truth (it has a beats file of its own name pattern missing)
    shutil.copy(chain["truth_beats"], tmp_path / "alone_beats.csv")
    res = runner.invoke(cli, ["score", str(chain["bp"]), str(alone)])
    assert "not an edgebp sim truth file" in _one_line_error(res)
    res = runner.invoke(cli, ["score", str(chain["bp"]), str(chain["truth"]), "--tolerance", "0"])
    assert "--tolerance" in _one_line_error(res)


def test_beats_files_old_and_new_formats(tmp_path):
    """The reader takes the older time,sbp,dbp,map files and the current columns."""
    from edgebp.firmware_sim.compare import beats_truth_compare, runtime_beats_read

    old = tmp_path / "old.beats.csv"
    old.write_text("# x\ntime,sbp,dbp,map\n0.5,120,80,93\n1.5,121,81,94\n")
    new = tmp_path / "new.beats.csv"
    new.write_text("# x\n" + BEAT_HEADER + "\n0.5,120,80,93,60.0,1,ok\n1.0,,,,,0,gap\n1.5,121,81,94,62.0,1,ok\n")
    a, b = runtime_beats_read(old), runtime_beats_read(new)
    assert a["valid"].tolist() == [True, True] and np.isnan(a["hr"]).all() and a["reason"].tolist() == ["ok", "ok"]
    assert b["valid"].tolist() == [True, False, True] and b["reason"].tolist() == ["ok", "gap", "ok"]
    assert np.isnan(b["sbp"][1]) and b["hr"][2] == 62.0
    # scored against a truth of two beats at 0.5 and 1.5 s (120/80, 120/80): the invalid row is counted, not scored
    truth = {"status": np.array(["emitted"] * 500), "t_true_s": np.arange(500) / 250.0}
    tb = {"t_sys_s": np.array([0.5, 1.5]), "valid": np.ones(2, int), "sbp_mmHg": np.array([120.0, 120.0]),
          "dbp_mmHg": np.array([80.0, 80.0]), "map_mmHg": np.array([93.0, 93.0])}
    r = beats_truth_compare(b, tb, truth, 250.0)
    assert (r["n_runtime"], r["n_runtime_invalid"], r["n_paired"], r["unpaired_truth"]) == (3, 1, 2, 0)
    assert r["sbp"]["mae"] == 0.5 and r["hr"]["runtime"] == {"mean_bpm": 61.0, "n": 2, "source": "hr column"}
    r_old = beats_truth_compare(a, tb, truth, 250.0)
    assert r_old["hr"]["runtime"]["source"] == "beat intervals" and r_old["hr"]["runtime"]["mean_bpm"] == 60.0
    bad = tmp_path / "bad.beats.csv"
    bad.write_text(BEAT_HEADER + "\n0.5,120,80,93,60,maybe,ok\n")
    with pytest.raises(ValueError, match=r"bad.beats.csv: line 2: column 'valid'"):
        runtime_beats_read(bad)


def test_writer_fills_fields_missing_from_older_engine_rows(tmp_path):
    """Beat rows without hr/valid/reason: hr empty (null), valid 1, reason ok; NaN as empty/null."""
    from edgebp.runtime.engine import OutputBlock
    from edgebp.runtime.run import OutputWriter

    blk = OutputBlock.empty()
    blk.beats = [{"t": 1.0, "sbp": 120.0, "dbp": 80.0, "map": 93.3},
                 {"t": 2.0, "sbp": float("nan"), "dbp": float("nan"), "map": float("nan"), "hr": 70.0,
                  "valid": False, "reason": "flat"}]
    w = OutputWriter(str(tmp_path / "bp.csv"), ["test"])
    w.write(blk)
    w.close()
    lines = [ln for ln in (tmp_path / "bp.beats.csv").read_text().splitlines() if not ln.startswith("#")]
    assert lines == [BEAT_HEADER, "1.000,120.00,80.00,93.30,,1,ok,0", "2.000,,,,70.0,0,flat,0"]
    w = OutputWriter(str(tmp_path / "bp.jsonl"), ["test"])
    w.write(blk)
    w.close()
    recs = [json.loads(ln) for ln in (tmp_path / "bp.jsonl").read_text().splitlines()]
    beats = [r for r in recs if r["type"] == "beat"]
    assert beats[0] == {"type": "beat", "t": 1.0, "sbp": 120.0, "dbp": 80.0, "map": 93.3, "hr": None,
                        "valid": True, "reason": "ok"}
    assert beats[1]["sbp"] is None and beats[1]["hr"] == 70.0 and beats[1]["reason"] == "flat"


def test_writer_pointwise_rows_golden(tmp_path):
    """The point-wise CSV rows, byte for byte. Expected lines written by hand from the format
    (time %.4f, ABP %.2f or empty, valid 0/1, reason name): a valid row, -0.0, rounding at the
    last digit, every invalid reason, and a row marked valid with a NaN ABP (written invalid,
    "artefact"). The writer formats with Python's f-strings since this session; the lines are
    those np.char.mod gave before (checked on 90,000 rows of two logs)."""
    import numpy as np

    from edgebp.runtime.engine import REASONS, OutputBlock
    from edgebp.runtime.run import POINTWISE_HEADER, OutputWriter

    t = np.array([0.0, 0.008, 1.23456, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1e6, -0.0])
    abp = np.array([120.0, -0.0, 2.675, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 99.999])
    valid = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    reason = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0, 0], np.int8)
    w = OutputWriter(str(tmp_path / "bp.csv"), ["test"], flush_s=0.0)
    w.write(OutputBlock(t, abp, valid, reason, []))
    w.write(OutputBlock.empty())
    w.close()
    lines = [ln for ln in (tmp_path / "bp.csv").read_text().splitlines() if not ln.startswith("#")]
    assert lines[0] == POINTWISE_HEADER
    assert lines[1:] == ["0.0000,120.00,1,ok", "0.0080,-0.00,1,ok", "1.2346,2.67,1,ok",
                         "2.5000,,0,warmup", "3.0000,,0,gap", "4.0000,,0,flat", "5.0000,,0,clipped", "6.0000,,0,reset",
                         "7.0000,,0,artefact", "8.0000,,0,range",
                         "1000000.0000,,0,artefact", "-0.0000,100.00,1,ok"]
    assert [ln.split(",")[3] for ln in lines[4:11]] == list(REASONS[1:])  # every invalid reason by name


def test_writer_flushes_what_it_wrote_and_skips_empty_flushes(tmp_path):
    """flush_s=0 (live sources): a block with rows reaches the file at once; the blocks of
    packets that complete no step flush nothing (they used to flush both files each time)."""
    import numpy as np

    from edgebp.runtime.engine import OutputBlock
    from edgebp.runtime.run import OutputWriter

    w = OutputWriter(str(tmp_path / "bp.csv"), ["test"], flush_s=0.0)
    flushes = []
    real = w.flush
    w.flush = lambda: (flushes.append(1), real())[1]
    for _ in range(9):
        w.write(OutputBlock.empty())
    assert flushes == []
    w.write(OutputBlock(np.array([1.0]), np.array([90.0]), np.array([True]), np.array([0], np.int8), []))
    assert flushes == [1]
    assert (tmp_path / "bp.csv").read_text().endswith("1.0000,90.00,1,ok\n")  # on disk before close
    w.write(OutputBlock.empty())
    assert flushes == [1]
    w.close()


# ----------------------------------------------------------------------------- edgebp run to stdout
def test_run_without_out_prints_beats_csv(chain):
    p = _edgebp("run", "default", "--stream", chain["log"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == BEAT_HEADER
    # the same beats, line for line, as the beats file of `--out bp.csv` on the same stream
    file_lines = [ln for ln in chain["beats"].read_text().splitlines() if not ln.startswith("#")]
    assert lines == file_lines and len(lines) > 10
    for ln in lines[1:]:
        cells = ln.split(",")
        assert len(cells) == 8 and cells[5] in ("0", "1") and cells[6] and cells[7] in ("0", "1"), ln
    assert "samples in:" in p.stderr and "samples in:" not in p.stdout


def test_run_to_a_closed_pipe_ends_quietly(chain):
    """`edgebp run ... | head -1`: the reader leaves after the header; exit 0, no traceback."""
    proc = subprocess.Popen([EXE, "run", "default", "--stream", str(chain["log"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # before the first beat: the header is written before the model starts
        err = proc.stderr.read()
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first.strip() == BEAT_HEADER
    assert rc == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert "stopped early: standard output closed by the reader" in err


# ----------------------------------------------------------------------------- edgebp grade
REF5 = "time,sbp,dbp\n1.00,120,80\n2.00,122,81\n3.00,118,79\n4.00,125,82\n5.00,121,80\n"
# 4 estimates within 0.3 s of a reference beat, one (5.50) 0.5 s from the nearest -> 4 paired,
# 1 estimate and 1 reference (5.00) unpaired.
# SBP errors: 124-120 = +4, 120-122 = -2, 121-118 = +3, 125-125 = 0 -> ME 1.25, MAE 2.25
# DBP errors:  80-80  =  0,  83-81  = +2,  78-79  = -1,  84-82  = +2 -> ME 0.75, MAE 1.25
PRED5 = "time,sbp,dbp\n1.05,124,80\n1.90,120,83\n3.20,121,78\n4.10,125,84\n5.50,100,60\n"


def _grade(*args):
    return CliRunner().invoke(cli, ["grade", *map(str, args)])


def test_grade_nearest_pairs_by_hand(tmp_path):
    pred, ref = tmp_path / "pred.csv", tmp_path / "ref.csv"
    pred.write_text(PRED5)
    ref.write_text(REF5)
    res = _grade(pred, ref, "--match", "nearest", "--json")  # neither file has a subject column
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_pairs"] == 4 and out["unpaired"] == {"pred_only": 1, "ref_only": 1}
    assert out["match"] == {"mode": "nearest", "tolerance_s": 0.3}
    assert out["sbp"]["me"] == 1.25 and out["sbp"]["mae"] == 2.25
    assert out["dbp"]["me"] == 0.75 and out["dbp"]["mae"] == 1.25
    # tighter: 3.20 is 0.2 s off -> also unpaired
    out = json.loads(_grade(pred, ref, "--match", "nearest", "--tolerance", "0.15", "--json").stdout)
    assert out["n_pairs"] == 3 and out["unpaired"] == {"pred_only": 2, "ref_only": 2}
    # exact (the default) pairs none of them: equal times only
    res = _grade(pred, ref)
    assert res.exit_code != 0 and "no rows pair up" in res.output
    # the table says how many were paired and unpaired
    res = _grade(pred, ref, "--match", "nearest")
    assert "Paired readings: 4" in res.stdout and "1 only in estimates, 1 only in reference" in res.stdout
    assert "nearest time per subject within 0.3 s" in res.stdout
    # one to one: two estimates near the same reference beat -> one pair, the nearer
    two = tmp_path / "two.csv"
    two.write_text("time,sbp,dbp\n0.95,130,80\n1.02,121,80\n")
    out = json.loads(_grade(two, ref, "--match", "nearest", "--json").stdout)
    assert out["n_pairs"] == 1 and out["sbp"]["me"] == 1.0 and out["unpaired"] == {"pred_only": 1, "ref_only": 4}
    res = _grade(pred, ref, "--match", "nearest", "--tolerance", "-1")
    assert "--tolerance" in _one_line_error(res)


def test_grade_reads_run_beats_and_sim_truth(chain, tmp_path):
    """`grade` on `run`'s beats file (# lines, no subject column, valid/reason) against the
    simulator's beats truth (t_sys_s, sbp_mmHg, ...), with --subject and --match nearest."""
    run = _rows(chain["beats"])
    n_valid = sum(r["valid"] == "1" for r in run)
    n_truth_valid = sum(r["valid"] == "1" for r in _rows(chain["truth_beats"]))
    res = _grade(chain["beats"], chain["truth_beats"], "--subject", "s3", "--match", "nearest", "--unit", "beat", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["not_graded"]["invalid"] == {"pred": len(run) - n_valid, "ref": len(_rows(chain["truth_beats"])) - n_truth_valid}
    assert out["n_pairs"] + out["unpaired"]["pred_only"] == n_valid
    assert out["n_pairs"] + out["unpaired"]["ref_only"] == n_truth_valid
    assert out["n_pairs"] > 0.8 * n_valid
    assert out["columns_mapped"]["ref"] == {"time": "t_sys_s", "sbp": "sbp_mmhg", "dbp": "dbp_mmhg", "map": "map_mmhg"}
    assert out["per_subject"]["subjects"] == ["s3"]
    # the run's beats against themselves, exact times: every valid beat pairs, zero error
    out = json.loads(_grade(chain["beats"], chain["beats"], "--json").stdout)
    assert out["n_pairs"] == n_valid and out["sbp"]["mae"] == 0.0 and out["unpaired"] == {"pred_only": 0, "ref_only": 0}

    # a multi-subject reference: --subject keeps s3's rows and names the run file's rows s3
    multi = tmp_path / "multi.csv"
    truth_rows = [r for r in _rows(chain["truth_beats"]) if r["valid"] == "1"]
    with open(multi, "w") as fh:
        fh.write("subject,time,sbp,dbp\n")
        for r in truth_rows:
            fh.write(f"s3,{r['t_sys_s']},{r['sbp_mmHg']},{r['dbp_mmHg']}\n")
        fh.write("s9,1.0,120,80\ns9,2.0,121,80\n")
    out = json.loads(_grade(chain["beats"], multi, "--subject", "s3", "--match", "nearest", "--json").stdout)
    assert out["not_graded"]["other_subjects"] == {"pred": 0, "ref": 2}
    assert out["n_pairs"] + out["unpaired"]["ref_only"] == len(truth_rows)
    # ... and without --subject the run file's missing subject column is named
    res = _grade(chain["beats"], multi, "--match", "nearest")
    msg = _one_line_error(res)
    assert "bp.beats.csv" in msg and "'subject'" in msg and "--subject" in msg
