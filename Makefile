# Two commands for a new user: `make demo` and `make test`. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgebp-setup-stamp

.PHONY: setup demo test fuzz clean

setup: $(STAMP)

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
	$(BIN)/python -m pytest -q tests

# Coverage-guided fuzzing of the stream decoder (atheris) for FUZZ_SECONDS; inputs that crash
# or hang are written to tests/fuzz_corpus/, which tests/test_fuzz_corpus.py replays.
FUZZ_SECONDS ?= 60
fuzz: setup
	$(BIN)/python scripts/fuzz_decoder.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) build *.egg-info demo-out
