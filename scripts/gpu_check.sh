#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU and `pip install 'edgebp[tensorrt]'`, build the
# default bundle's TensorRT engines, stream a real record through `--backend tensorrt` (fp16 and
# int8) against ONNX Runtime fp32, time 1 and 64 streams, train one synthetic epoch on the GPU
# with AMP. Exit 0: every gate passed; 1: a gate failed; 2: it cannot run here (one line why).
#
#   scripts/gpu_check.sh                      # the shipped bundle, a challenge2015 record
#   scripts/gpu_check.sh --bundle runs/b --record ../shared/data/challenge2015/a123l --report gpu.json
#
# The same checks run under pytest with the gpu marker: pytest -m gpu tests/test_gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" -m edgebp.bench.gpu_check "$@"
