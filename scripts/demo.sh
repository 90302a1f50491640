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
$EDGEBP data synth --subjects 4 --minutes 1 --seed 7 --out "$OUT/cohort"
$EDGEBP data inspect "$OUT/cohort"

step "2. Train the default edge model (edge-tcn, PPG+ECG) on the built-in synthetic cohort, subject-wise split"
$EDGEBP train --out "$OUT/run"

step "3. Evaluate it on the held-out synthetic subjects, beside the naive baselines (report with plots)"
$EDGEBP evaluate "$OUT/run" --report "$OUT/run/report"

step "4. Export it: ONNX fp32, int8 (ONNX Runtime), TensorRT form; validated against fp32"
$EDGEBP export "$OUT/run" --int8 --out "$OUT/bundle"

step "5. Simulate a wearable's serial stream (250 Hz ECG+PPG) with faults, and its truth"
$EDGEBP sim --source synth:101 --minutes 1 --format text --faults "drop=0.002,corrupt=1e-4,leadoff@20s+3s,reset@40s" --seed 1 \
    --out "$OUT/serial.log" --truth "$OUT/truth.csv"

step "6. Stream it through the shipped default bundle (int8 edge-tcn trained on the real recordings), no torch"
$EDGEBP run default --stream "$OUT/serial.log" --out "$OUT/bp.csv" --summary-json "$OUT/run-summary.json"
.venv/bin/python scripts/compare_truth.py "$OUT/bp.csv" "$OUT/truth.csv"

step "7. Device budget of the default bundle on a Cortex-M4F (nRF52832) and the other profiles"
$EDGEBP budget default --mcu all

step "8. Quick benchmark: latency and accuracy per variant"
$EDGEBP bench default --quick --report "$OUT/bench"
