"""The low-latency path (docs/latency.md): the low-delay resampler kinds and the shipped
low-latency bundle.

* the default resampler ("kaiser") is the one edgebp always had: its outputs equal, bit for
  bit, those of the resampler module as it was before the option existed (loaded from git);
* "short" and "decimate" have the delays docs/latency.md states (measured on a pulse), the
  stop-band attenuation it states (measured on sinusoids), and streaming equals one call;
* the bundle under edgebp/assets/lowlatency_bundle loads, runs through `edgebp run` on a
  simulated log with no torch and no scipy imported, and its manifest says what the doc says.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebp.processing.chain import ChainConfig, Preprocessor, chain_config, preprocess
from edgebp.processing.stream_resample import RESAMPLER_KINDS, StreamResampler

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "latency.md"
LOWLAT = ROOT / "edgebp" / "assets" / "lowlatency_bundle"
DEFAULT = ROOT / "edgebp" / "assets" / "default_bundle"
# the last commit before the resampler had a `kind`: its module is the reference for "kaiser"
BEFORE = "c9e4804"


def _old_resampler_module(tmp_path):
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:edgebp/processing/stream_resample.py"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:  # pragma: no cover - no git history here
        pytest.skip(f"git history with {BEFORE} not available: {exc}")
    assert "kind" not in src.split("class StreamResampler")[1].split("def __init__")[1].split(")")[0]
    path = tmp_path / "old_stream_resample.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_stream_resample", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _signal(n, fs, seed=0, gaps=True):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = np.sin(2 * np.pi * 1.3 * t) + 0.3 * np.sin(2 * np.pi * 17.0 * t) + 0.05 * rng.normal(size=n)
    if gaps:
        x[n // 3 : n // 3 + 37] = np.nan
        x[n // 2] = np.inf
    return x


# ------------------------------------------------------------------------------------------
# the default is unchanged
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fs_in", [250.0, 100.0, 256.0, 500.0])
def test_default_resampler_is_bit_identical_to_the_one_before_the_option(tmp_path, fs_in):
    old = _old_resampler_module(tmp_path)
    x = _signal(5000, fs_in)
    a = old.StreamResampler(fs_in, 125.0)
    b = StreamResampler(fs_in, 125.0)
    c = StreamResampler(fs_in, 125.0, kind="kaiser")
    assert np.array_equal(a.taps, b.taps) and np.array_equal(a.taps, c.taps)
    assert a.delay_out == b.delay_out == c.delay_out
    ya, _ = a.process(x, a.init_state())
    yb, _ = b.process(x, b.init_state())
    assert np.array_equal(ya, yb, equal_nan=True)


def test_default_bundle_chain_is_unchanged():
    """Every input chain of the shipped default bundle reads back as the kaiser resampler and
    writes back the manifest's dict exactly (no new key), so its outputs are unchanged."""
    m = json.loads((DEFAULT / "manifest.json").read_text())
    for name, d in m["preprocessing"].items():
        cfg = ChainConfig.from_dict({**d, "fs_in": 250.0})
        assert cfg.resampler == "kaiser"
        assert ChainConfig.from_dict(d).to_dict() == d
        assert chain_config(name, 125.0).to_dict() == d
        pre = Preprocessor(cfg)
        assert pre.resampler.delay_out == 19 and pre.resampler.taps.shape == (1, 77)


def test_resampler_option_is_checked():
    with pytest.raises(ValueError, match="resampler"):
        ChainConfig(250.0, resampler="fast")
    with pytest.raises(ValueError, match="kind 'fast'"):
        StreamResampler(250.0, 125.0, kind="fast")
    with pytest.raises(ValueError, match="integer multiple"):
        StreamResampler(100.0, 125.0, kind="decimate")
    with pytest.raises(ValueError, match="integer multiple"):
        StreamResampler(256.0, 125.0, kind="decimate")
    assert ChainConfig.from_dict({"fs_in": 250.0, "resampler": "short"}).to_dict()["resampler"] == "short"


# ------------------------------------------------------------------------------------------
# delay and attenuation (the figures docs/latency.md quotes)
# ------------------------------------------------------------------------------------------

def _doc_figures():
    text = DOC.read_text()
    m = re.search(r"<!-- figures: (\{.*?\}) -->", text)
    assert m, f"{DOC}: no '<!-- figures: {{...}} -->' line"
    return json.loads(m.group(1))


@pytest.mark.parametrize("kind, delay", [("kaiser", 19), ("short", 2), ("decimate", 0)])
def test_delay_measured_on_a_pulse(kind, delay):
    fs_in, fs_out = 250.0, 125.0
    rs = StreamResampler(fs_in, fs_out, kind=kind)
    assert rs.delay_out == delay
    n = np.arange(2000)
    centre = 1000  # input sample = output sample 500 at the input time
    x = np.exp(-0.5 * ((n - centre) / 6.0) ** 2)  # smooth, band-limited well below 40 Hz
    y, _ = rs.process(x, rs.init_state())
    # the output peak (parabolic interpolation) sits `delay` output samples after the input time
    k = int(np.argmax(y))
    frac = 0.5 * (y[k - 1] - y[k + 1]) / (y[k - 1] - 2 * y[k] + y[k + 1])
    assert abs(k + frac - (centre / 2 + delay)) < 0.05, (k + frac, delay)


def _gain_db(kind, f_hz, fs_in=250.0, fs_out=125.0):
    rs = StreamResampler(fs_in, fs_out, kind=kind)
    n = 20000
    x = np.cos(2 * np.pi * f_hz * np.arange(n) / fs_in)
    y, _ = rs.process(x, rs.init_state())
    y = y[200:-200]
    return 20 * np.log10(np.sqrt(2 * np.mean(y ** 2)))


def test_short_resampler_pass_band_and_aliasing_are_what_the_doc_says():
    fig = _doc_figures()["short_250_125"]
    assert fig["delay_samples"] == StreamResampler(250.0, 125.0, kind="short").delay_out
    assert fig["taps"] == StreamResampler(250.0, 125.0, kind="short").taps.shape[1]
    assert abs(_gain_db("short", 20.0) - fig["gain_db_20hz"]) < 0.05
    assert abs(_gain_db("short", 40.0) - fig["gain_db_40hz"]) < 0.05
    # what folds into 0..40 Hz: inputs 85..125 Hz
    worst = max(_gain_db("short", f) for f in np.arange(85.0, 124.6, 0.5))
    assert worst <= fig["alias_0_40hz_db"] + 0.05
    assert worst > fig["alias_0_40hz_db"] - 1.0  # the figure is the worst case, not a loose bound
    # the default keeps its >= 60 dB stop band
    assert max(_gain_db("kaiser", f) for f in np.arange(63.0, 124.6, 1.0)) < -59.0


def test_decimate_keeps_every_second_sample_and_aliases_fully():
    x = _signal(3000, 250.0, gaps=False)
    rs = StreamResampler(250.0, 125.0, kind="decimate")
    y, _ = rs.process(x, rs.init_state())
    assert np.array_equal(y, x[::2])
    assert abs(_gain_db("decimate", 100.0)) < 0.01  # 100 Hz folds to 25 Hz at full amplitude


# ------------------------------------------------------------------------------------------
# streaming equals offline
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["short", "decimate"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 10, 64, 1001])
def test_chunked_equals_one_call(kind, chunk):
    x = _signal(4000, 250.0)
    for fs_in in (250.0, 500.0) + ((100.0,) if kind == "short" else ()):
        rs = StreamResampler(fs_in, 125.0, kind=kind)
        whole, _ = rs.process(x, rs.init_state())
        st = rs.init_state()
        parts = []
        for i in range(0, len(x), chunk):
            y, st = rs.process(x[i : i + chunk], st)
            parts.append(y)
        got = np.concatenate(parts)
        assert len(got) == rs.n_out(len(x)) == len(whole)
        assert np.array_equal(got, whole, equal_nan=True)
        assert np.isnan(whole).any()  # the gap is carried


@pytest.mark.parametrize("kind", RESAMPLER_KINDS)
def test_whole_chain_chunked_equals_one_call(kind):
    cfg = chain_config("ecg", 250.0, resampler=kind)
    x = _signal(5000, 250.0)
    pre = Preprocessor(cfg)
    st = pre.init_state()
    parts = []
    for i in range(0, len(x), 10):  # 40 ms packets
        y, st = pre.process(x[i : i + 10], st)
        parts.append(y)
    assert np.array_equal(np.concatenate(parts), preprocess(x, cfg), equal_nan=True)


# ------------------------------------------------------------------------------------------
# the shipped low-latency bundle
# ------------------------------------------------------------------------------------------

needs_bundle = pytest.mark.skipif(not (LOWLAT / "manifest.json").exists(), reason="no low-latency bundle shipped")


@needs_bundle
def test_lowlatency_bundle_loads_and_says_what_the_doc_says():
    from edgebp.runtime.bundle import bundle_load

    b = bundle_load(LOWLAT)
    m = b.manifest
    fig = _doc_figures()["lowlatency_bundle"]
    assert m["model"]["name"] == "edge-tcn" and m["model"]["preset"] == "lowlatency"
    assert m["delay"] == fig["delay_samples"] <= 7
    assert m["streaming"]["chunk"] == m["hop"] == fig["chunk_samples"]
    assert m["fs"] == 125.0
    for name in m["inputs"]:
        assert m["preprocessing"][name]["resampler"] == fig["resampler"]
    # the same split as the default bundle
    d = json.loads((DEFAULT / "manifest.json").read_text())
    for k in ("train", "val", "test"):
        assert sorted(m["split"][k]) == sorted(d["split"][k]), k
    size = sum(p.stat().st_size for p in LOWLAT.iterdir())
    assert size < 1_100_000, size
    # the latency arithmetic of the doc from the manifest: look-ahead + resampler + mean step wait
    res = StreamResampler(250.0, m["fs"], kind=fig["resampler"]).delay_out
    ms = 1e3 * (m["delay"] + res + (m["streaming"]["chunk"] - 1) / 2) / m["fs"]
    assert abs(ms - fig["computed_ms_250hz"]) < 0.5


@needs_bundle
def test_lowlatency_bundle_runs_through_edgebp_run_without_torch_or_scipy(tmp_path):
    from test_startup import _RUN_WRAPPER  # the same probe test_startup uses for the default

    log = tmp_path / "serial.log"
    p = subprocess.run([sys.executable, "-m", "edgebp", "sim", "--source", "synth:3", "--minutes", "0.2", "--out", str(log),
                        "--truth", str(tmp_path / "truth.csv"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    dump = tmp_path / "mods.json"
    out = tmp_path / "bp.csv"
    p = subprocess.run([sys.executable, "-c", _RUN_WRAPPER, str(dump), "run", str(LOWLAT), "--stream", str(log), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = json.loads(dump.read_text())
    assert got["scipy"] == [] and got["torch"] == []
    from edgebp.processing.kernels import aot_module

    if aot_module() is not None:  # the kernels compiled ahead of time cover this bundle's chain too
        assert not got["numba"]
    rows = [ln for ln in out.read_text().splitlines() if ln and not ln.startswith("#")]
    assert rows[0].startswith("time,abp,valid")
    vals = np.array([[float(c) if c not in ("", "nan") else np.nan for c in r.split(",")[:3]] for r in rows[1:]])
    assert len(vals) > 1000
    ok = vals[:, 2] == 1
    assert ok.mean() > 0.5
    assert 20.0 < np.nanmedian(vals[ok, 1]) < 250.0  # mmHg, not z-scores
    beats = [ln for ln in out.with_suffix(".beats.csv").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(beats) > 5


# ------------------------------------------------------------------------------------------
# edgebp evaluate prepares a bundle's data with the bundle's own chain (train/evaluate_cli.py)
# ------------------------------------------------------------------------------------------


class _Prepared(Exception):
    pass


def _records_choose_overrides(monkeypatch, src):
    """The chain_overrides records_choose hands dataset_prepare for ``src`` (stopped there)."""
    import edgebp.train.data as data
    from edgebp.train.evaluate_cli import records_choose

    seen = {}

    def fake(path, inputs, fs, max_minutes=0.0, use_cache=True, progress=None, chain_overrides=None):
        seen["overrides"] = chain_overrides
        seen["key"] = data._cache_key(Path(path), tuple(inputs), fs, max_minutes, chain_overrides)
        raise _Prepared

    monkeypatch.setattr(data, "dataset_prepare", fake)
    with pytest.raises(_Prepared):
        records_choose(src, str(ROOT), "test")
    return seen


def _bundle_with_resampler(kind):
    import copy

    from edgebp.runtime.bundle import Bundle, bundle_load
    from edgebp.runtime.bundle_model import BundleModel

    b = bundle_load("default")
    m = copy.deepcopy(b.manifest)
    for name in m["inputs"]:
        m["preprocessing"][name]["resampler"] = kind
    return BundleModel(Bundle(b.path, m), variant="fp32")


def test_evaluate_prepares_the_default_bundle_as_before(monkeypatch):
    from edgebp.runtime.bundle_model import BundleModel
    from edgebp.train.data import _cache_key
    from edgebp.train.evaluate_cli import chain_overrides_of

    src = BundleModel.open("default", variant="fp32")
    assert chain_overrides_of(src) is None
    seen = _records_choose_overrides(monkeypatch, src)
    assert seen["overrides"] is None
    # the cache key the default bundle always had (the call without the argument)
    assert seen["key"] == _cache_key(ROOT, tuple(src.inputs), 125.0, float(src.config.max_minutes))
    # an explicit "kaiser" in a manifest is the default too
    assert chain_overrides_of(_bundle_with_resampler("kaiser")) is None


@pytest.mark.parametrize("kind", ["short", "decimate"])
def test_evaluate_prepares_a_bundle_with_its_own_resampler(monkeypatch, kind):
    from edgebp.train.evaluate_cli import chain_overrides_of

    src = _bundle_with_resampler(kind)
    want = {name: {"resampler": kind} for name in src.inputs}
    assert chain_overrides_of(src) == want
    seen = _records_choose_overrides(monkeypatch, src)
    assert seen["overrides"] == want
    # and the prepared inputs are those of the bundle's runtime chain: resampler delay as the runtime's
    rec_fs, fs = 250.0, 125.0
    x = _signal(5000, rec_fs, gaps=False)
    got = preprocess(x, chain_config("ppg", rec_fs, **want["ppg"]))
    assert Preprocessor(chain_config("ppg", rec_fs, **want["ppg"])).resampler.delay_out == StreamResampler(rec_fs, fs, kind=kind).delay_out
    assert not np.allclose(got[100:2000], preprocess(x, chain_config("ppg", rec_fs))[100:2000], equal_nan=True)


def test_evaluate_run_dir_overrides_come_from_its_config():
    from types import SimpleNamespace

    from edgebp.train.config import TrainConfig
    from edgebp.train.evaluate_cli import chain_overrides_of

    assert chain_overrides_of(SimpleNamespace(config=TrainConfig(), inputs=("ppg", "ecg"))) is None
    assert chain_overrides_of(SimpleNamespace(config=TrainConfig(resampler="short"), inputs=("ppg",))) == {"ppg": {"resampler": "short"}}


# ------------------------------------------------------------------------------------------
# export: window int8 with chosen layers left in float (--int8-keep-float)
# ------------------------------------------------------------------------------------------


def _two_conv_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 2, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 4, 3)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.normal(size=(1, 4, 1)).astype(np.float32), "w3")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1]), helper.make_node("Relu", ["a"], ["r"], name="r1"),
             helper.make_node("Conv", ["r", "w2"], ["b"], name="c2", pads=[1, 1]), helper.make_node("Relu", ["b"], ["s"], name="r2"),
             helper.make_node("Conv", ["s", "w3"], ["y"], name="c3")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 64])], [w1, w2, w3])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _float_convs(path):
    """Conv nodes whose weight comes straight from a float initializer (not dequantized)."""
    import onnx

    g = onnx.load(str(path)).graph
    inits = {t.name for t in g.initializer}
    return sorted(n.name for n in g.node if n.op_type == "Conv" and n.input[1] in inits)


def test_int8_keep_float_leaves_the_chosen_convs_in_float(tmp_path):
    import onnx

    from edgebp.export import quantize as Q

    src = tmp_path / "m.onnx"
    _two_conv_onnx(src)
    win = np.random.default_rng(1).normal(size=(16, 2, 64)).astype(np.float32)
    every = Q.quantize_int8_cpu(src, tmp_path / "all.onnx", win)
    assert _float_convs(tmp_path / "all.onnx") == [] and every["kept_float_nodes"] == []
    first = Q.quantize_int8_cpu(src, tmp_path / "first.onnx", win, keep_float=("first-conv",))
    assert first["kept_float_nodes"] == ["c1"] and _float_convs(tmp_path / "first.onnx") == ["c1"]
    assert "kept in float: first-conv (c1)" in first["mode"]
    # the model input is no longer quantized: x feeds the float conv directly
    g = onnx.load(str(tmp_path / "first.onnx")).graph
    assert not [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    both = Q.quantize_int8_cpu(src, tmp_path / "both.onnx", win, keep_float=("first-conv", "last-conv"))
    assert _float_convs(tmp_path / "both.onnx") == ["c1", "c3"] and both["keep_float"] == ["first-conv", "last-conv"]
    assert Q.int8_kernels_check(tmp_path / "both.onnx", tmp_path / "opt.onnx")["runs_int8"]
    with pytest.raises(ValueError, match="not valid"):
        Q.quantize_int8_cpu(src, tmp_path / "bad.onnx", win, keep_float=("middle",))


def test_export_cli_checks_int8_keep_float(tmp_path):
    from click.testing import CliRunner

    from edgebp.export.cli import export_command

    run = tmp_path / "run"
    run.mkdir()
    r = CliRunner().invoke(export_command, [str(run), "--int8-keep-float", "middle", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "first-conv, last-conv" in r.output
    r = CliRunner().invoke(export_command, [str(run), "--no-int8", "--int8-keep-float", "first-conv", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "needs --int8" in r.output
