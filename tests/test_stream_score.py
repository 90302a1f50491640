"""Scoring the deployed path: a bundle's streaming model through StreamRuntime in packets.

The real default bundle, real WFDB records from ../shared/data, real ONNX Runtime sessions.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgebp.cli import cli
from edgebp.runtime.bundle import bundle_load, bundle_write_manifest, file_sha256
from edgebp.runtime.stream_score import stream_score_record, stream_variant_key

# a validation record of the default bundle (never a test record: nothing here is tuned on them)
VAL_RECORD = "f362s"


@pytest.fixture(scope="module")
def val_record(shared_data):
    from edgebp.io import read_record
    from edgebp.train.data import _record_crop, record_prepare

    path = shared_data / "challenge2015" / VAL_RECORD
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"{path}.hea not found (real recordings absent)")
    rec = _record_crop(read_record(path), 60.0)
    p, why = record_prepare(rec, ("ppg", "ecg"), 125.0)
    assert p is not None, why
    return rec, p


def test_stream_fp32_equals_window_fp32_on_the_prepared_axis(val_record):
    """The runtime's fp32 stream, placed on the prepared axis, is the offline fp32 window
    prediction: same preprocessing, same model, same alignment. Measured on the whole of
    f362s: max |difference| 0.0 mmHg over 37,248 samples; 1e-3 mmHg leaves room for ORT's
    reduction order only, while one sample of misalignment gives tens of mmHg."""
    from edgebp.evaluation import waveform_predict_record
    from edgebp.runtime.bundle_model import BundleModel

    rec, p = val_record
    b = bundle_load("default")
    sc = stream_score_record(b, rec, p, variant="fp32")
    bm = BundleModel.open("default", variant="fp32")
    w = waveform_predict_record(bm.runner, p.X, bm.geometry())
    ok = np.isfinite(w) & np.isfinite(sc.pred_wave)
    assert ok.sum() > 0.8 * (60 - 3) * 125  # all but the warm-up and the model delay
    assert np.max(np.abs(w[ok] - sc.pred_wave[ok])) <= 1e-3
    # the runtime's own beats were paired with the reference, not read from the waveform
    c = sc.counts
    assert c["reference_beats"] > 40 and c["paired"] >= 0.9 * c["reference_beats"]
    assert c["outputs"] == len(p.abp)


def test_stream_variant_names():
    assert stream_variant_key("stream-int8") == "int8"
    with pytest.raises(ValueError, match="stream-int8, stream-fp32"):
        stream_variant_key("int8")


def test_evaluate_default_scores_the_deployed_file(val_record, tmp_path, shared_data):
    """`edgebp evaluate default` grades model_stream_int8.onnx through the runtime and says so,
    with the file's sha256; the figures come from the runtime's paired beats."""
    src = shared_data / "challenge2015"
    data = tmp_path / "data"
    data.mkdir()
    for f in src.glob(f"{VAL_RECORD}.*"):
        shutil.copy(f, data / f.name)
    res = CliRunner().invoke(cli, ["evaluate", "default", "--split", "val", "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output.strip().splitlines()[-1])
    b = bundle_load("default")
    assert rep["scored"]["file"] == "model_stream_int8.onnx"
    assert rep["scored"]["sha256"] == file_sha256(b.file("stream_int8"))
    assert rep["model"]["variant"] == "stream-int8"
    sb = rep["stream_beats"]
    assert sb["paired"] + sb["reference_read_from_interval"] == sb["reference_beats"] == rep["n_pairs"]


def test_evaluate_rejects_bad_packet_and_a_bundle_without_streaming(tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", "default", "--packet-ms", "0"])
    assert res.exit_code != 0 and "--packet-ms" in res.output
    b = bundle_load("default")
    d = tmp_path / "nostream"
    shutil.copytree(b.path, d)
    m = json.loads((d / "manifest.json").read_text())
    m["streaming"] = None
    for k in ("stream_fp32", "stream_int8"):
        (d / m["files"].pop(k)).unlink()
    bundle_write_manifest(d, m)
    res = CliRunner().invoke(cli, ["evaluate", str(d), "--variant", "stream-int8"])
    assert res.exit_code != 0
    assert "no streaming model" in res.output and "Traceback" not in res.output
