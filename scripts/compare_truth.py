#!/usr/bin/env python
"""Score `edgebp run` output against the `edgebp sim` truth it was fed.

    scripts/compare_truth.py BP_CSV TRUTH_CSV [--fs 250] [--json OUT.json]

BP_CSV is `edgebp run --out bp.csv` (its beats are read from bp.beats.csv beside it; a
bp.jsonl holds both). TRUTH_CSV is `edgebp sim --truth truth.csv`; its beats file and
summary are found beside it (truth_beats.csv, truth_summary.json). Prints the point-wise ABP
error, the per-beat SBP/DBP error (beats paired by time), the valid share and the fault
table (claims during faults, time to resume). The scoring lives in
edgebp.firmware_sim.compare; this script only reads the files and prints.

Example:
    edgebp sim --source synth:3 --minutes 1 --faults leadoff@20s+3s --out s.log --truth truth.csv
    edgebp run --stream s.log --out bp.csv
    scripts/compare_truth.py bp.csv truth.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgebp.firmware_sim.compare import (
    RuntimeOutput,
    beats_truth_compare,
    compare_report_text,
    runtime_beats_read,
    runtime_truth_compare,
)
from edgebp.firmware_sim.simulate import sim_output_paths
from edgebp.firmware_sim.truth import truth_read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("bp", help="edgebp run output: bp.csv (beats in bp.beats.csv) or bp.jsonl")
    ap.add_argument("truth", help="edgebp sim --truth file (truth.csv)")
    ap.add_argument("--fs", type=float, default=None,
                    help="device sampling rate (Hz) [default: from the truth summary, else 250]")
    ap.add_argument("--beats-truth", default=None, help="truth beats CSV [default: TRUTH_beats.csv]")
    ap.add_argument("--max-dt", type=float, default=0.3, help="largest systolic-time gap of a beat pair (s)")
    ap.add_argument("--recover", type=float, default=2.0, help="recovery window after a fault (s)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    a = ap.parse_args(argv)

    try:
        beats_path, summary_path = sim_output_paths(a.truth)
        if a.beats_truth:
            beats_path = Path(a.beats_truth)
        fs = a.fs
        if fs is None:
            fs = float(json.loads(summary_path.read_text())["fs"]) if summary_path.exists() else 250.0
        truth = truth_read(a.truth)
        out = RuntimeOutput.from_csv(a.bp)
        res = runtime_truth_compare(out, truth, fs, recover_window_s=a.recover)
        beats = None
        if beats_path.exists():
            beats = beats_truth_compare(runtime_beats_read(a.bp), truth_read(beats_path), truth, fs, max_dt_s=a.max_dt)
        else:
            print(f"note: {beats_path} not found: no per-beat comparison", file=sys.stderr)
    except (OSError, ValueError, KeyError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.bp} vs {a.truth} (device {fs:g} Hz)")
    print(compare_report_text(res, beats))
    if a.json:
        Path(a.json).write_text(json.dumps({"pointwise": res, "beats": beats}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
