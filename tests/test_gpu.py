"""The GPU check's tests: the `gpu`-marked ones need a CUDA device with the tensorrt extra and
skip on CPU machines saying why; the comparison/gate logic and argument handling of
edgebp.bench.gpu_check run everywhere, on ONNX Runtime outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgebp.bench import gpu_check
from edgebp.runtime.tensorrt_backend import tensorrt_available

_OK, _WHY = tensorrt_available()
needs_gpu = pytest.mark.skipif(not _OK, reason=f"needs an NVIDIA GPU with edgebp[tensorrt]: {_WHY}")


def test_gates_equal_the_exports():
    from edgebp.export import pipeline

    assert (gpu_check.MAX_DELTA_MAE_MMHG, gpu_check.MAX_P99_DIFF_MMHG) == (pipeline.MAX_DELTA_MAE_MMHG, pipeline.MAX_P99_DIFF_MMHG)


def test_arguments():
    a = gpu_check.parse_args([])
    assert a.bundle == "default" and a.streams == [1, 64] and not a.skip_train
    for bad in (["--streams", "0"], ["--streams", "a"], ["--minutes", "-1"], ["--steps", "3"]):
        with pytest.raises(SystemExit) as e:
            gpu_check.parse_args(bad)
        assert e.value.code == 2


def test_compare_and_gates_on_ort_outputs():
    """ORT fp32 against itself passes with zero difference; against the ORT int8 form of the
    same bundle the figures are measured and judged; a shifted copy fails the MAE gate."""
    from edgebp.evaluation import ScoredRecord
    from edgebp.runtime.bundle import bundle_load
    from edgebp.scoring import BeatPairs
    from edgebp.synth import synth_cohort_cached
    from edgebp.io import read_records
    from edgebp.train.data import record_prepare
    from edgebp.runtime.stream_score import stream_score_records

    from edgebp.paths import ASSETS

    b = bundle_load(ASSETS / "lowlatency_bundle")
    d = synth_cohort_cached(2, 0.5)
    rec = next(iter(read_records(d)))
    p, _ = record_prepare(rec, tuple(b.inputs), float(b.manifest["fs"]))
    ref, _ = stream_score_records(b, [(rec, p)], variant="fp32")
    same = gpu_check.compare_runs(ref, ref, b.manifest["normalisation"])
    assert same["pointwise"]["max_abs_mmHg"] == 0.0 and all(g["passed"] for g in gpu_check.gates_judge("x", same))
    q, _ = stream_score_records(b, [(rec, p)], variant="int8")
    c = gpu_check.compare_runs(ref, q, b.manifest["normalisation"])
    assert c["pointwise"]["n"] > 1000 and c["pointwise"]["p99_abs_mmHg"] > 0
    shifted = [ScoredRecord(s.record_id, s.subject_id, BeatPairs(**{**s.pairs.__dict__, "pred_sbp": s.pairs.pred_sbp + 5.0}), s.pred_wave) for s in ref]
    g = gpu_check.gates_judge("shift", gpu_check.compare_runs(ref, shifted, b.manifest["normalisation"]))
    assert not g[0]["passed"] and g[0]["name"] == "shift_delta_mae"


@pytest.mark.gpu
@needs_gpu
def test_gpu_check_passes(tmp_path):
    """scripts/gpu_check.sh's checks (engines, a real record at fp16 and int8 vs ORT fp32, 1 and
    64 streams, one GPU epoch with AMP): every gate passes."""
    a = gpu_check.parse_args(["--minutes", "2", "--steps", "100", "--report", str(tmp_path / "gpu.json")])
    res, gates = gpu_check.run_check(a, echo=lambda *_: None)
    failed = [g for g in gates if not g["passed"]]
    assert not failed, failed
    assert {"trt_int8", "trt_fp16", "stream_trt_int8", "stream_trt_fp16"} <= set(res["engines"])


@pytest.mark.gpu
@needs_gpu
def test_engine_cache_reused_and_split_beyond_profile():
    from edgebp.runtime.backends import OrtBackend
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.tensorrt_backend import bundle_backend

    b = bundle_load("default")
    be = bundle_backend(b, "stream_trt_fp16")
    be2 = bundle_backend(b, "stream_trt_fp16")
    assert be.engine is be2.engine  # one engine per model in a process; the file cache on disk
    st = b.manifest["streaming"]
    rng = np.random.default_rng(0)
    T = be.plan.max_time + 37
    feeds = {be.input_names[0]: rng.standard_normal((1, len(b.inputs), T)).astype(np.float32)}
    feeds |= {s["name"]: np.zeros(s["shape"], np.float32) for s in st["states"]}
    got = be.run(feeds)
    ref = OrtBackend(b.file("stream_fp32")).run(feeds)
    assert got[0].shape == ref[0].shape and np.max(np.abs(got[0] - ref[0])) < 0.05
