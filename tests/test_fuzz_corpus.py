"""Replays every input of tests/fuzz_corpus/ (seeds, and what `make fuzz` found crashing or
hanging) through the fuzzer's own check, without atheris: each one is a regression case."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
_spec = importlib.util.spec_from_file_location("fuzz_decoder", ROOT / "scripts" / "fuzz_decoder.py")
fuzz_decoder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_decoder)

FILES = sorted(p for p in CORPUS.iterdir() if p.is_file() and not p.name.startswith("."))


def test_corpus_has_seeds_and_every_kind_of_stream():
    names = [p.name for p in FILES]
    assert sum(n.startswith("seed-") for n in names) >= 8, names


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_input_passes_the_fuzz_check(path, caplog):
    caplog.set_level(logging.ERROR)  # the decoder warns about every rejected record
    t0 = time.perf_counter()
    fuzz_decoder.check_input(path.read_bytes())
    # The fuzzer's hang limit (libFuzzer -timeout); these inputs are at most a few kB.
    assert time.perf_counter() - t0 < fuzz_decoder.HANG_SECONDS


def test_seed_corpus_is_what_the_script_writes(tmp_path):
    for p in fuzz_decoder.write_seeds(tmp_path):
        assert (CORPUS / p.name).read_bytes() == p.read_bytes(), p.name
