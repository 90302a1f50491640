# Two commands for a new user: `make demo` and `make test`. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgebp-setup-stamp

.PHONY: setup demo test fuzz clean firmware-tools kernels bytecode

setup: $(STAMP) kernels bytecode firmware-tools

# The package's bytecode, written once, as `pip install` does for an installed package: an
# editable checkout under PYTHONDONTWRITEBYTECODE=1 (set on these machines) would otherwise
# compile every edgebp module on every start, ~0.17 s of `edgebp run`'s start-up
# (docs/benchmarks.md). Incremental: only changed sources are recompiled; a stale .pyc is
# never used (Python checks each source's mtime).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 edgebp train export runtime firmware_sim >/dev/null \
	  || echo "bytecode: compileall failed; edgebp compiles its modules at each start"

# The streaming runtime's numba kernels compiled ahead of time (edgebp.processing.kernels):
# `edgebp run` then loads neither numba nor llvmlite. Rebuilt when a kernel's source changes
# (the runtime checks a digest too, and runs a stale or missing build under numba's JIT).
KERNEL_SRC := $(addprefix edgebp/processing/,beats.py filters.py gradient.py normalize.py qrs_stream.py quality.py stream_resample.py kernels.py kernels_build.py)
KERNELS := edgebp/processing/_kernels_aot.json
kernels: $(KERNELS)
$(KERNELS): $(STAMP) $(KERNEL_SRC)
	@$(BIN)/python -m edgebp.processing.kernels_build >$(VENV)/kernels-build.log 2>&1 \
	  || echo "kernels: the ahead-of-time build failed (see $(VENV)/kernels-build.log); numba's JIT runs the kernels"

# The firmware's Cortex-M4F build and its QEMU run (tests/test_firmware_c.py skips without
# them, saying so): installed with apt where this runs as root with apt-get; elsewhere one
# line of advice, never a failure.
firmware-tools:
	@if command -v arm-none-eabi-gcc >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm) >/dev/null \
	  || echo "firmware-tools: apt-get failed; the Cortex-M4F firmware tests will skip"; \
	else echo "firmware-tools: not root or no apt-get; for the Cortex-M4F firmware tests install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"; fi

# Idempotent: re-runs only when the packaging files change.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch, pinned so that nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[train,dev,lint,fuzz]"
	touch $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile tests

# Coverage-guided fuzzing of the stream decoder (atheris) for FUZZ_SECONDS; inputs that crash
# or hang are written to tests/fuzz_corpus/, which tests/test_fuzz_corpus.py replays.
FUZZ_SECONDS ?= 60
fuzz: setup
	$(BIN)/python scripts/fuzz_decoder.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) build *.egg-info demo-out edgebp/processing/_kernels_aot*
	find edgebp train export runtime firmware_sim -name __pycache__ -prune -exec rm -rf {} +
