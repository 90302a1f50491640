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

step "5. Simulate a wearable's serial stream (250 Hz ECG+PPG) of a new synthetic subject, with faults, and its truth"
$EDGEBP sim --source synth:101 --minutes 1 --format text --faults "drop=0.002,corrupt=1e-4,leadoff@20s+3s,reset@40s" --seed 1 \
    --out "$OUT/serial.log" --truth "$OUT/truth.csv"

step "6. Stream it through the bundle exported in step 4 (edgebp run: no torch) and score it against the truth"
$EDGEBP run "$OUT/bundle" --stream "$OUT/serial.log" --out "$OUT/bp.csv" --summary "$OUT/run-summary.json"
$EDGEBP score "$OUT/bp.csv" "$OUT/truth.csv"

step "6b. The shipped default bundle (int8 edge-tcn trained on the real ICU recordings) on a simulated device"
echo "    streaming one of its held-out real records (binary protocol, a few dropped frames)"
DATA=$(.venv/bin/python -c 'from edgebp.paths import shared_data_dir; print(shared_data_dir())')
# the first held-out record whose ECG fits the simulated front end's +-5 mV range (some ICU
# records carry +-60 mV artefacts that a real wearable's ADC would clip)
REC=$(.venv/bin/python - "$DATA" <<'PY'
import json, sys
import numpy as np
from edgebp.io import read_record
from edgebp.paths import ASSETS
test = json.load(open(ASSETS / "default_bundle" / "manifest.json"))["split"]["test"]
for rid in test:
    try:
        lo, hi = np.nanpercentile(read_record(f"{sys.argv[1]}/challenge2015/{rid}").get("ecg").signal, [0.5, 99.5])
    except Exception:
        continue
    if -4.5 < lo and hi < 4.5:
        print(rid)
        break
else:
    print(test[0])
PY
)
if [ -e "$DATA/challenge2015/$REC.hea" ]; then
    $EDGEBP sim --source "record:$DATA/challenge2015/$REC" --minutes 2 --format binary --faults "drop=0.001" --seed 2 \
        --out "$OUT/real.bin" --truth "$OUT/real-truth.csv"
    $EDGEBP run default --stream "$OUT/real.bin" --out "$OUT/real-bp.csv" --summary "$OUT/real-run-summary.json"
    $EDGEBP score "$OUT/real-bp.csv" "$OUT/real-truth.csv"

    step "6c. Calibrated: the same record with a cuff reading in the stream at 60 s (the truth's 30 s mean, +-3 mmHg cuff noise)"
    echo "    the bundle's calibrated estimator against holding the cuff value, on the same beats"
    $EDGEBP sim --source "record:$DATA/challenge2015/$REC" --minutes 4 --format binary --cuff-at 60 --cuff-noise 3 --seed 3 \
        --cuff-csv "$OUT/cuff.csv" --out "$OUT/cal.bin" --truth "$OUT/cal-truth.csv"
    cat "$OUT/cuff.csv"
    $EDGEBP run default --stream "$OUT/cal.bin" --out "$OUT/cal-bp.csv"
    $EDGEBP run default --stream "$OUT/cal.bin" --calibration-method hold --out "$OUT/hold-bp.csv"
    .venv/bin/python scripts/calibrated_vs_hold.py "$OUT/cal-bp.beats.csv" "$OUT/hold-bp.beats.csv" "$OUT/cal-truth_beats.csv"
else
    echo "    (skipped: $DATA/challenge2015/$REC not found; set EDGEBP_DATA)"
fi

step "7. Device budget of the default bundle on a Cortex-M4F (nRF52832) and the other profiles"
$EDGEBP budget default --mcu all

step "8. Quick benchmark: latency and accuracy per variant"
$EDGEBP bench default --quick --report "$OUT/bench"
