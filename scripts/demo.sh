#!/usr/bin/env bash
# `make demo`: the main job on the built-in default, end to end, on a CPU.
# Synthetic results are not clinical evidence; see docs/results.md for the real-data figures.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEBP=.venv/bin/edgebp
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1. Synthesise a small cohort (WFDB) and grade what is usable in it"
$EDGEBP data synth --subjects 6 --minutes 2 --seed 7 --out "$OUT/cohort"
$EDGEBP data inspect "$OUT/cohort"

step "2. Train the default edge model (edge-tcn, PPG+ECG) on the synthetic cohort, subject-wise split"
$EDGEBP train --out "$OUT/run"

step "3. Evaluate it on the held-out subjects, beside the naive baselines"
$EDGEBP evaluate "$OUT/run" --report "$OUT/run/report"
