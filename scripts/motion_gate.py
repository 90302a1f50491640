#!/usr/bin/env python
"""The motion gate against simulated motion bursts (the figures of docs/reliability.md 2).

Each run: a simulated subject's 24 s stream (the fault-matrix setup of
tests/test_fault_matrix.py: default bundle, int8 streaming model, text format) with one motion
burst of each length at 10 s, through the real decoder and runtime, scored against the
simulator's truth: the share of the burst's outputs refused (the goal is at least 90 %) and the
time from the burst's end to the first valid output (the goal is at most 2 s). Prints one JSON
object with the runs and their medians/minima/maxima.

    .venv/bin/python scripts/motion_gate.py --subjects 3,5,7 --seeds 1,2 --bursts 1,2,4,5

``--set NAME=VALUE`` overrides an :class:`edgebp.processing.quality.InputGuard` parameter for a
sweep (e.g. ``--set short_s=0.2``); without it the shipped gate is measured. Tune on the
simulator only (no real record is read).
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from edgebp.firmware_sim.compare import RuntimeOutput, runtime_truth_compare
from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
from edgebp.runtime import engine, protocol
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.run import stream_process

FS = 250.0
MINUTES = 0.4


def _one(bundle, subject: int, seed: int, burst_s: float) -> dict:
    src = sim_source_load(f"synth:{subject}", minutes=MINUTES)
    sim = device_simulate(src, fmt="text", seed=seed, minutes=MINUTES, faults=f"motion@10s+{burst_s:g}s")
    data = sim.stream
    s = stream_process((data[i:i + 4096] for i in range(0, len(data), 4096)), bundle, protocol.StreamDecoder(), collect=True)
    outs = s.pop("_outputs")
    cat = lambda k: np.concatenate([getattr(o, k) for o in outs])  # noqa: E731
    res = runtime_truth_compare(RuntimeOutput(cat("t"), cat("abp"), cat("valid")), sim.truth, FS, recover_window_s=2.0)
    (f,) = [f for f in res["faults"] if f["class"] == "motion"]
    return {"subject": subject, "seed": seed, "burst_s": burst_s, "outputs_during": int(f["outputs_during"]),
            "caught": round(1.0 - f["claimed_valid_during"] / max(1, f["outputs_during"]), 4),
            "resume_s": None if f["resume_s"] is None else round(float(f["resume_s"]), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", default="3,5,7")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--bursts", default="1,2,4,5", help="burst lengths in seconds")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="InputGuard parameter override")
    a = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    overrides = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    if overrides:
        base = engine.InputGuard

        class Guard(base):  # the runtime builds its gates from engine.InputGuard
            def __init__(self, fs, **kw):
                super().__init__(fs, **{**kw, **overrides})

        engine.InputGuard = Guard
    bundle = bundle_load("default")
    runs = [_one(bundle, su, se, float(b)) for b in a.bursts.split(",") for su in map(int, a.subjects.split(",")) for se in map(int, a.seeds.split(","))]
    summary = {}
    for b in sorted({r["burst_s"] for r in runs}):
        rr = [r for r in runs if r["burst_s"] == b]
        caught = sum(r["caught"] * r["outputs_during"] for r in rr) / sum(r["outputs_during"] for r in rr)
        res = [r["resume_s"] for r in rr if r["resume_s"] is not None]
        summary[f"{b:g} s"] = {"caught": round(caught, 4), "resume_s_max": max(res) if res else None,
                               "resume_s_median": float(np.median(res)) if res else None, "runs": len(rr)}
    print(json.dumps({"overrides": overrides, "summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
