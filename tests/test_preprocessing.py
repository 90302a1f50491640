"""Tests of the streaming preprocessing kernels and the chain (edgebp.processing).

The central property: every stage is a state-in/state-out kernel, so feeding a signal in any
chunking gives exactly the output of one call on the whole signal.
"""

from __future__ import annotations

import copy
import doctest
import json
import math
import pickle

import numpy as np
import pytest
import scipy.signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebp.processing import chain as chain_mod
from edgebp.processing import filters as filters_mod
from edgebp.processing import gradient as gradient_mod
from edgebp.processing import normalize as normalize_mod
from edgebp.processing import stream_resample as resample_mod
from edgebp.processing.chain import (
    CHAIN_PRESETS,
    ChainConfig,
    Preprocessor,
    chain_config,
    chain_throughput,
    preprocess,
    preprocess_record,
)
from edgebp.processing.filters import StreamFilter, filter_design, sosfilt_block
from edgebp.processing.gradient import StreamGradient
from edgebp.processing.normalize import RunningNorm
from edgebp.processing.stream_resample import StreamResampler
from edgebp.record import Channel, Record

CHUNK_SIZES = [1, 7, 125, None]  # None = the whole signal in one call
RATIOS = [(250.0, 125.0), (125.0, 125.0), (100.0, 125.0), (250.0, 100.0), (256.0, 125.0), (360.0, 125.0)]
HYPO = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    """Compile (or load from the numba cache) every kernel once for the module."""
    x = np.r_[np.linspace(0, 1, 64), np.nan, np.ones(64)]
    sos = filter_design(125.0, "bandpass", low=0.5, high=40.0)
    sosfilt_block(sos, x, np.zeros((2, 2)))
    for kind in CHAIN_PRESETS:
        preprocess(x, chain_config(kind, 250.0, **({} if kind == "abp" else {"gradient": True})))


def feed(proc, x, sizes):
    """Run ``proc`` over ``x`` in chunks of the given sizes (cycled); returns (y, state)."""
    state = proc.init_state()
    outs = []
    i = k = 0
    if sizes is None:
        sizes = [len(x)]
    while i < len(x):
        s = sizes[k % len(sizes)]
        y, state = proc.process(x[i : i + s], state)
        outs.append(y)
        i += s
        k += 1
    return np.concatenate(outs, axis=-1), state


def test_signal(n, fs, seed=0, gaps=()):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = 50.0 + 3.0 * np.sin(2 * np.pi * 1.3 * t) + np.sin(2 * np.pi * 7.0 * t) + 0.3 * rng.normal(size=n)
    for a, b in gaps:
        x[a:b] = np.nan
    return x


test_signal.__test__ = False  # a helper, not a test


# ----------------------------------------------------------------------------- filters


def test_filter_design_kinds_and_errors():
    assert filter_design(125.0, "bandpass", low=0.5, high=40.0).shape == (2, 6)
    assert filter_design(125.0, "highpass", low=0.5, order=3).shape == (2, 6)
    assert filter_design(125.0, "lowpass", high=8.0, order=4).shape == (2, 6)
    sos = filter_design(250.0, "lowpass", high=30.0, order=4)
    ref = scipy.signal.butter(4, 30.0, btype="lowpass", fs=250.0, output="sos")
    assert np.array_equal(sos, ref)
    with pytest.raises(ValueError, match="choose one of: bandpass, highpass, lowpass"):
        filter_design(125.0, "bandstop", low=1.0, high=2.0)
    with pytest.raises(ValueError, match="needs high="):
        filter_design(125.0, "bandpass", low=0.5)
    with pytest.raises(ValueError, match=r"fs/2"):
        filter_design(125.0, "lowpass", high=70.0)
    with pytest.raises(ValueError, match="below high"):
        filter_design(125.0, "bandpass", low=10.0, high=5.0)
    with pytest.raises(ValueError, match="low=, not high="):
        filter_design(125.0, "highpass", high=5.0)


@pytest.mark.parametrize("kind,edges,order", [("bandpass", (0.5, 40.0), 2), ("lowpass", (None, 8.0), 6), ("highpass", (0.5, None), 1)])
def test_sosfilt_block_bit_identical_to_scipy(kind, edges, order):
    sos = filter_design(125.0, kind, low=edges[0], high=edges[1], order=order)
    rng = np.random.default_rng(3)
    x = rng.normal(size=3000) * 10 + 4
    zi = rng.normal(size=(sos.shape[0], 2))
    zi_before = zi.copy()
    y, zf = sosfilt_block(sos, x, zi)
    y_ref, zf_ref = scipy.signal.sosfilt(sos, x, zi=zi)
    assert np.array_equal(y, y_ref)
    assert np.array_equal(zf, zf_ref)
    assert np.array_equal(zi, zi_before), "the input state must not be modified"


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_sosfilt_block_chunked(size):
    sos = filter_design(250.0, "bandpass", low=0.5, high=40.0, order=3)
    x = test_signal(2000, 250.0)
    zi0 = scipy.signal.sosfilt_zi(sos) * x[0]
    y_ref, zf_ref = scipy.signal.sosfilt(sos, x, zi=zi0)
    outs, zi = [], zi0
    for i in range(0, len(x), size or len(x)):
        y, zi = sosfilt_block(sos, x[i : i + (size or len(x))], zi)
        outs.append(y)
    assert np.array_equal(np.concatenate(outs), y_ref)
    assert np.array_equal(zi, zf_ref)


@HYPO
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=30).filter(lambda s: sum(s) > 0))
def test_sosfilt_block_random_chunks(sizes):
    sos = filter_design(125.0, "bandpass", low=0.5, high=8.0)
    x = test_signal(1500, 125.0, seed=1)
    y_ref, _ = scipy.signal.sosfilt(sos, x, zi=np.zeros((2, 2)))
    outs, zi, i, k = [], np.zeros((2, 2)), 0, 0
    while i < len(x):
        y, zi = sosfilt_block(sos, x[i : i + sizes[k % len(sizes)]], zi)
        outs.append(y)
        i += sizes[k % len(sizes)]
        k += 1
    assert np.array_equal(np.concatenate(outs), y_ref)


def test_stream_filter_gap_hold_and_warm_start():
    sos = filter_design(125.0, "bandpass", low=0.5, high=40.0)
    f = StreamFilter(sos)
    x = test_signal(3000, 125.0, seed=2) + 1.0e4  # large DC offset: a PPG in ADC counts
    xg = x.copy()
    xg[1000:1100] = np.nan
    y, _ = f.process(xg, f.init_state())
    # NaN exactly at the gap, finite everywhere else (never poisoned, recovers at once)
    assert np.array_equal(np.isnan(y), np.isnan(xg))
    # The same as scipy on the signal with the gap filled by the held value, warm-started
    held = x.copy()
    held[1000:1100] = x[999]
    y_ref, _ = scipy.signal.sosfilt(sos, held, zi=scipy.signal.sosfilt_zi(sos) * x[0])
    ok = ~np.isnan(xg)
    assert np.array_equal(y[ok], y_ref[ok])
    # warm start: the 1e4 offset does not ring through the high-pass
    assert np.max(np.abs(y[:50])) < 10.0


def test_stream_filter_leading_nan_and_chunking():
    f = StreamFilter(filter_design(125.0, "highpass", low=0.5))
    x = test_signal(1000, 125.0)
    x[:10] = np.nan
    x[500:503] = np.inf
    y, state = f.process(x, f.init_state())
    assert np.all(np.isnan(y[:10])) and np.all(np.isnan(y[500:503]))
    assert np.all(np.isfinite(y[10:500])) and np.all(np.isfinite(y[503:]))
    for size in CHUNK_SIZES:
        y2, state2 = feed(f, x, None if size is None else [size])
        assert np.array_equal(y2, y, equal_nan=True)
        assert np.array_equal(state2.zi, state.zi) and np.array_equal(state2.hold, state.hold)


# ----------------------------------------------------------------------------- resampler


@pytest.mark.parametrize("fs_in,fs_out", RATIOS)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_resampler_chunking_bit_identical_and_counts(fs_in, fs_out, size):
    rs = StreamResampler(fs_in, fs_out)
    x = test_signal(1200, fs_in, gaps=[(300, 340)])
    y_ref, st_ref = rs.process(x, rs.init_state())
    assert len(y_ref) == rs.n_out(len(x)) == math.ceil(len(x) * rs.up / rs.down)
    state, outs, n_in = rs.init_state(), [], 0
    step = size or len(x)
    for i in range(0, len(x), step):
        y, state = rs.process(x[i : i + step], state)
        n_in += len(x[i : i + step])
        outs.append(y)
        assert sum(map(len, outs)) == rs.n_out(n_in) == state.n_out  # deterministic counts
    assert np.array_equal(np.concatenate(outs), y_ref, equal_nan=True)
    assert np.array_equal(state.hist, st_ref.hist) and np.array_equal(state.counters, st_ref.counters)


@HYPO
@given(
    sizes=st.lists(st.integers(0, 200), min_size=1, max_size=30).filter(lambda s: sum(s) > 0),
    ratio=st.sampled_from(RATIOS),
)
def test_resampler_random_chunks(sizes, ratio):
    rs = StreamResampler(*ratio)
    x = test_signal(900, ratio[0], seed=5, gaps=[(100, 103), (400, 460)])
    y_ref, _ = rs.process(x, rs.init_state())
    y, state = feed(rs, x, sizes)
    assert np.array_equal(y, y_ref, equal_nan=True)
    assert state.n_out == len(y_ref)


def test_resampler_counts_formula():
    rs = StreamResampler(250.0, 125.0)
    assert [rs.n_out(n) for n in range(6)] == [0, 1, 1, 2, 2, 3]
    rs = StreamResampler(100.0, 125.0)
    assert [rs.n_out(n) for n in range(6)] == [0, 2, 3, 4, 5, 7]
    for n in range(0, 3000, 37):
        assert rs.n_out(n) == math.ceil(n * 5 / 4) == (0 if n == 0 else (n * 5 - 1) // 4 + 1)


@pytest.mark.parametrize("fs_in,fs_out", [(250.0, 125.0), (100.0, 125.0), (250.0, 100.0), (256.0, 125.0)])
def test_resampler_sine_matches_ideal_after_delay(fs_in, fs_out):
    rs = StreamResampler(fs_in, fs_out)
    assert float(rs.delay_out).is_integer() and rs.delay_out > 0
    n = int(10 * fs_in)
    x = np.sin(2 * np.pi * 2.0 * np.arange(n) / fs_in)
    y, _ = rs.process(x, rs.init_state())
    t = (np.arange(len(y)) - rs.delay_out) / fs_out
    ideal = np.sin(2 * np.pi * 2.0 * t)
    warm = 2 * rs.delay_out + 5
    assert np.max(np.abs(y[warm:] - ideal[warm:])) < 1e-3


@pytest.mark.parametrize("fs_in,fs_out,tone", [(250.0, 125.0, 80.0), (250.0, 100.0, 70.0), (256.0, 125.0, 100.0)])
def test_resampler_attenuates_above_new_nyquist(fs_in, fs_out, tone):
    rs = StreamResampler(fs_in, fs_out)
    n = int(20 * fs_in)
    x = np.sin(2 * np.pi * tone * np.arange(n) / fs_in)
    y, _ = rs.process(x, rs.init_state())
    warm = 4 * rs.delay_out
    gain_db = 20 * np.log10(np.sqrt(np.mean(y[warm:] ** 2)) / np.sqrt(np.mean(x**2)))
    assert gain_db < -40.0


def test_resampler_constant_has_no_startup_ramp():
    for fs_in, fs_out in RATIOS:
        rs = StreamResampler(fs_in, fs_out)
        y, _ = rs.process(np.full(600, 123.5), rs.init_state())
        assert np.allclose(y, 123.5, rtol=0, atol=1e-9), (fs_in, fs_out)


@pytest.mark.parametrize("fs_in,fs_out", [(250.0, 125.0), (100.0, 125.0), (250.0, 100.0), (256.0, 125.0)])
def test_resampler_gap_is_nan_at_its_delay_compensated_place(fs_in, fs_out):
    rs = StreamResampler(fs_in, fs_out)
    n = int(20 * fs_in)
    x = test_signal(n, fs_in)
    a, b = int(5 * fs_in), int(7 * fs_in)  # gap from 5 s to 7 s
    x[a:b] = np.nan
    y, _ = rs.process(x, rs.init_state())
    t = (np.arange(len(y)) - rs.delay_out) / fs_out  # input time of each output
    nan = np.isnan(y)
    in_gap = (t >= a / fs_in) & (t <= (b - 1) / fs_in)
    assert np.all(nan[in_gap]), "every output inside the gap is NaN"
    # no more than one extra output sample at each edge
    assert nan.sum() <= in_gap.sum() + 2
    assert np.all(np.isfinite(y[~nan]))
    assert np.isfinite(y[-1])


def test_resampler_leading_gap_then_edge_hold():
    rs = StreamResampler(250.0, 125.0)
    x = np.r_[np.full(100, np.nan), np.full(400, 80.0)]
    y, _ = rs.process(x, rs.init_state())
    d = rs.delay_out
    assert np.all(np.isnan(y[: d + 50])) and not np.isnan(y[d + 51 :]).any()
    assert np.allclose(y[d + 51 :], 80.0, rtol=0, atol=1e-9)  # no ramp up from zero


def test_resampler_identity_passes_through():
    rs = StreamResampler(125.0, 125.0)
    x = test_signal(500, 125.0, gaps=[(10, 20)])
    y, state = rs.process(x, rs.init_state())
    assert rs.delay_out == 0 and np.array_equal(y, x, equal_nan=True) and state.n_out == 500


def test_resampler_rejects_bad_rate():
    with pytest.raises(ValueError, match="fs_in=-1"):
        StreamResampler(-1.0, 125.0)
    with pytest.raises(ValueError, match="fs_out=nan"):
        StreamResampler(250.0, float("nan"))


# ----------------------------------------------------------------------------- normalisation


def test_running_norm_warm_start_is_exact_running_stats():
    norm = RunningNorm(fs=125.0, tau_s=4.0)
    x = 7.0 + 3.0 * np.random.default_rng(4).normal(size=3000)
    z, _ = norm.process(x, norm.init_state())
    assert z[0] == 0.0
    k = np.arange(1, len(x) + 1)
    assert np.all(np.abs(z) <= np.sqrt(k - 1) + 1e-9)
    # before 1/alpha samples: exactly the running mean and population std of all samples so far
    n_exact = int(1 / norm.alpha)
    for i in (1, 2, 10, 100, n_exact - 1):
        seg = x[: i + 1]
        assert abs(z[i] - (x[i] - seg.mean()) / seg.std()) < 1e-9
    # then a z-score: mean ~0, std ~1 (white noise, so tau of 4 s averages plenty)
    assert abs(np.mean(z[1000:])) < 0.1 and abs(np.std(z[1000:]) - 1.0) < 0.1


def test_running_norm_scale_invariant_and_tracks_level_changes():
    norm = RunningNorm(fs=125.0, tau_s=2.0)
    x = np.random.default_rng(6).normal(size=4000)
    z1, _ = norm.process(x, norm.init_state())
    z2, _ = norm.process(1e4 * x + 5e4, norm.init_state())
    assert np.allclose(z1, z2, atol=1e-6)
    step = np.r_[x[:2000], x[2000:] + 100.0]
    z3, _ = norm.process(step, norm.init_state())
    assert np.max(np.abs(z3[3500:])) < 6.0  # recovered within a few tau after a level jump


def test_running_norm_nan_leaves_state_unchanged():
    norm = RunningNorm(fs=125.0, tau_s=4.0)
    x = np.random.default_rng(7).normal(size=500)
    _, state = norm.process(x, norm.init_state())
    z, state2 = norm.process(np.full(50, np.nan), state)
    assert np.all(np.isnan(z)) and np.array_equal(state2, state)
    z_after, _ = norm.process(np.r_[np.nan, 0.5, np.inf, 0.7], state)
    z_direct, _ = norm.process(np.array([0.5, 0.7]), state)
    assert np.isnan(z_after[0]) and np.isnan(z_after[2])
    assert np.array_equal(z_after[[1, 3]], z_direct)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_running_norm_chunking(size):
    norm = RunningNorm(fs=125.0, tau_s=1.0)
    x = test_signal(2000, 125.0, gaps=[(500, 520)])
    z_ref, s_ref = norm.process(x, norm.init_state())
    z, s = feed(norm, x, None if size is None else [size])
    assert np.allclose(z, z_ref, rtol=0, atol=1e-9, equal_nan=True)
    assert np.array_equal(z, z_ref, equal_nan=True) and np.array_equal(s, s_ref)


# ----------------------------------------------------------------------------- gradient


def test_gradient_values_delay_and_gaps():
    g = StreamGradient()
    x = np.sin(np.arange(300) / 7.0)
    x[100:105] = np.nan
    y, _ = g.process(x, g.init_state())
    assert y.shape == (2, 300)
    assert np.array_equal(y[0, 1:], x[:-1], equal_nan=True) and y[0, 0] == x[0]
    assert np.array_equal(y[1, 2:], (x[2:] - x[:-2]) / 2, equal_nan=True) and y[1, 0] == 0.0
    assert np.array_equal(np.flatnonzero(np.isnan(y[1])), np.arange(100, 107))
    for size in CHUNK_SIZES:
        y2, _ = feed(g, x, None if size is None else [size])
        assert np.array_equal(y2, y, equal_nan=True)


# ----------------------------------------------------------------------------- config


def test_chain_config_from_dict_to_dict_roundtrip():
    cfg = chain_config("ecg", 250, gradient=True)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert ChainConfig.from_dict(data) == cfg
    assert data["fs_in"] == 250.0 and isinstance(data["fs_in"], float)
    with pytest.raises(ValueError, match="missing key.*fs_in"):
        ChainConfig.from_dict({"fs_out": 125.0})
    with pytest.raises(ValueError) as err:
        ChainConfig.from_dict({"fs_in": 250.0, "lowpass": 40.0, "tau": 2})
    msg = str(err.value)
    assert "lowpass" in msg and "tau" in msg and "lowpass_hz" in msg and "norm_tau_s" in msg


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"fs_in": -250.0}, "fs_in"),
        ({"fs_in": 1e7}, "fs_in"),
        ({"fs_out": 0.0}, "fs_out"),
        ({"highpass_hz": 50.0, "lowpass_hz": 40.0}, "below lowpass_hz"),
        ({"lowpass_hz": 62.5}, "lowpass_hz"),
        ({"highpass_hz": 0.0}, "highpass_hz"),
        ({"norm": "zscore"}, "running, none"),
        ({"norm_tau_s": 0.0}, "norm_tau_s"),
        ({"gradient": "yes"}, "gradient"),
        ({"filter_order": 2.5}, "filter_order"),
    ],
)
def test_chain_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        ChainConfig.from_dict({"fs_in": 250.0, **changes})


def test_chain_presets_and_chain_config():
    assert chain_config("ecg", 250.0).highpass_hz == 0.5 and chain_config("ecg", 250.0).lowpass_hz == 40.0
    assert chain_config("ppg", 250.0).lowpass_hz == 8.0
    abp = chain_config("abp", 250.0)
    assert abp.highpass_hz is None and abp.lowpass_hz is None and abp.norm == "none" and not abp.gradient
    assert chain_config("ppg", 100.0, fs_out=64.0, norm_tau_s=2.0).fs_out == 64.0
    with pytest.raises(ValueError, match="choose one of: ecg, ppg, abp"):
        chain_config("eeg", 250.0)
    with pytest.raises(ValueError, match="lowpass_hz"):
        chain_config("ecg", 250.0, fs_out=50.0)  # 40 Hz is above the 25 Hz Nyquist
    with pytest.raises(ValueError, match="unknown key"):
        chain_config("ecg", 250.0, low=1.0)
    with pytest.raises(TypeError):
        CHAIN_PRESETS["ecg"]["lowpass_hz"] = 10.0  # read-only


# ----------------------------------------------------------------------------- chain


CHAIN_CASES = [
    ("ecg", 250.0, {}),
    ("ppg", 100.0, {"gradient": True}),
    ("ppg", 125.0, {"gradient": True}),
    ("abp", 256.0, {}),
    ("ecg", 360.0, {"highpass_hz": None}),
]


@pytest.mark.parametrize("kind,fs_in,over", CHAIN_CASES)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_chain_chunking_bit_identical(kind, fs_in, over, size):
    cfg = chain_config(kind, fs_in, **over)
    pre = Preprocessor(cfg)
    x = test_signal(int(12 * fs_in), fs_in, gaps=[(int(3 * fs_in), int(4 * fs_in))])
    y_ref = preprocess(x, cfg)
    assert y_ref.shape[-1] == pre.n_out(len(x))
    assert y_ref.ndim == (2 if cfg.gradient else 1)
    y, state = feed(pre, x, None if size is None else [size])
    assert np.allclose(y, y_ref, rtol=0, atol=1e-9, equal_nan=True)
    assert np.array_equal(y, y_ref, equal_nan=True)
    assert state.n_in == len(x) and state.n_out == y_ref.shape[-1]


@HYPO
@given(
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=25).filter(lambda s: sum(s) > 0),
    case=st.sampled_from(CHAIN_CASES),
)
def test_chain_random_chunks(sizes, case):
    kind, fs_in, over = case
    cfg = chain_config(kind, fs_in, **over)
    x = test_signal(int(8 * fs_in), fs_in, seed=9, gaps=[(50, 51), (int(2 * fs_in), int(2.5 * fs_in))])
    y, _ = feed(Preprocessor(cfg), x, sizes)
    assert np.array_equal(y, preprocess(x, cfg), equal_nan=True)


def test_chain_state_pickle_copy_and_purity():
    cfg = chain_config("ppg", 250.0, gradient=True)
    pre = Preprocessor(cfg)
    x = test_signal(5000, 250.0)
    _, state = pre.process(x[:2000], pre.init_state())
    y_a, _ = pre.process(x[2000:], state)
    y_b, _ = pre.process(x[2000:], state)  # same state again: process must not have mutated it
    y_c, _ = pre.process(x[2000:], pickle.loads(pickle.dumps(state)))
    y_d, _ = pre.process(x[2000:], copy.deepcopy(state))
    y_e, _ = pre.process(x[2000:], state.copy())
    for y in (y_b, y_c, y_d, y_e):
        assert np.array_equal(y, y_a)


def test_chain_gap_recovers_and_is_marked():
    cfg = chain_config("ecg", 250.0)
    pre = Preprocessor(cfg)
    x = test_signal(250 * 30, 250.0)
    x[250 * 10 : 250 * 12] = np.nan  # 2 s gap
    y = preprocess(x, cfg)
    nan = np.isnan(y)
    d = pre.resampler.delay_out
    gap_out = slice(125 * 10 + d + 2, 125 * 12 + d - 2)
    assert np.all(nan[gap_out])
    assert nan.sum() <= 2 * 125 + 4
    after = y[125 * 12 + d + 2 :]
    assert np.all(np.isfinite(after)), "the chain recovers right after the gap"
    # and the normalised scale right after the gap is that of before (state held, not reset)
    assert 0.5 < np.std(after[:500]) / np.std(y[125 * 5 : 125 * 9]) < 2.0


def test_chain_delay_matches_measured_group_delay():
    def phase(cfg, f):
        n = int(80 * cfg.fs_in)
        y = preprocess(np.sin(2 * np.pi * f * np.arange(n) / cfg.fs_in), cfg)
        t = np.arange(len(y))[len(y) // 2 :] / cfg.fs_out  # after the warm-up
        basis = np.c_[np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t), np.ones_like(t)]
        (c, s_, _), *_ = np.linalg.lstsq(basis, y[len(y) // 2 :], rcond=None)
        return np.arctan2(c, s_)  # y ~ sin(2 pi f t + phase)

    for kind, fs_in in (("ecg", 250.0), ("ppg", 250.0), ("abp", 100.0), ("ppg", 125.0)):
        cfg = chain_config(kind, fs_in)
        pre = Preprocessor(cfg)
        assert pre.delay >= pre.resampler.delay_out
        f1, f2 = 0.97, 1.03
        dphi = np.angle(np.exp(1j * (phase(cfg, f2) - phase(cfg, f1))))
        measured = -dphi / (2 * np.pi * (f2 - f1)) * cfg.fs_out  # group delay at 1 Hz, samples
        assert abs(measured - pre.delay) < 0.5, (kind, measured, pre.delay)
    g = Preprocessor(chain_config("ppg", 250.0, gradient=True))
    assert g.delay == Preprocessor(chain_config("ppg", 250.0)).delay + 1
    assert Preprocessor(chain_config("abp", 250.0)).delay == 19.0


# ----------------------------------------------------------------------------- records


def _s(t):
    return np.sin(2 * np.pi * 1.3 * t) + 0.5 * np.sin(2 * np.pi * 2.7 * t + 1.0)


def test_preprocess_record_multirate_alignment():
    dur = 20.0
    chans = []
    for label, fs in (("II", 250.0), ("PLETH", 100.0), ("ABP", 128.0)):
        t = np.arange(int(dur * fs)) / fs
        chans.append(Channel.from_label(label, 100.0 + 10.0 * _s(t), fs))
    rec = Record("mix", chans)
    raw = {"highpass_hz": None, "lowpass_hz": None, "norm": "none"}
    X, abp = preprocess_record(rec, configs={"ecg": raw, "ppg": raw}, dtype=np.float32)
    assert X.dtype == np.float32 and X.shape[0] == 2 and abp.dtype == np.float64
    assert X.shape[1] == abp.shape[0]
    delays = [StreamResampler(fs, 125.0).delay_out for fs in (250.0, 100.0, 128.0)]
    d_min = min(delays)
    t = (np.arange(len(abp)) - d_min) / 125.0
    ideal = 100.0 + 10.0 * _s(t)
    warm = 2 * max(delays) + 10
    for row in (X[0], X[1], abp):
        assert np.max(np.abs(row[warm:] - ideal[warm:])) < 0.02  # aligned to a few ms at 1-3 Hz
    # without the alignment the channels would be apart by the delay difference
    assert max(delays) - d_min >= 3


def test_preprocess_record_rows_missing_and_errors():
    t = np.arange(2500) / 250.0
    rec = Record("r", [Channel.from_label("II", _s(t), 250.0), Channel.from_label("PLETH", _s(t), 250.0)])
    X, abp = preprocess_record(rec, inputs=("ecg", "ppg"), configs={"ppg": {"gradient": True}})
    assert abp is None and X.shape == (3, 1250)
    pre = Preprocessor(chain_config("ppg", 250.0, gradient=True))
    y, _ = pre.process(_s(t), pre.init_state())
    assert np.array_equal(X[1:], y)  # same rate everywhere: rows equal the streaming output
    X1, _ = preprocess_record(rec, inputs=("ppg",))
    assert X1.shape == (1, 1250)
    with pytest.raises(KeyError, match="no 'abp'"):
        preprocess_record(rec, inputs=("abp",))
    with pytest.raises(ValueError, match="fs_in"):
        preprocess_record(rec, configs={"ecg": chain_config("ecg", 500.0)})
    with pytest.raises(ValueError, match="unknown key"):
        preprocess_record(rec, configs={"ecg": {"lowpass": 30.0}})


def test_preprocess_record_real_challenge_record(shared_data):
    wfdb = pytest.importorskip("wfdb")
    name = (shared_data / "challenge2015" / "RECORDS").read_text().split()[0]
    raw = wfdb.rdrecord(str(shared_data / "challenge2015" / name), sampto=250 * 60)
    chans = [Channel.from_label(lbl, raw.p_signal[:, i], raw.fs, u) for i, (lbl, u) in enumerate(zip(raw.sig_name, raw.units))]
    rec = Record(name, chans)
    inputs = tuple(k for k in ("ecg", "ppg") if rec.has(k))
    X, abp = preprocess_record(rec, inputs=inputs)
    assert X.shape == (len(inputs), 125 * 60)
    for row in X:
        finite = np.isfinite(row)
        assert finite.mean() > 0.5 and 0.2 < np.std(row[finite]) < 5.0
    if abp is not None:
        assert abp.shape == (125 * 60,)
        ok = np.isfinite(abp)
        if ok.any():
            assert 0.0 <= np.nanmedian(abp) < 300.0
    # streaming on the real ECG in random chunks equals the offline rows
    ecg = rec.get("ecg")
    pre = Preprocessor(chain_config("ecg", ecg.fs))
    sizes = list(np.random.default_rng(0).integers(1, 400, size=50))
    y, _ = feed(pre, ecg.signal, sizes)
    assert np.array_equal(y, X[0], equal_nan=True)


def test_preprocess_record_real_multirate_file(shared_data):
    wfdb = pytest.importorskip("wfdb")
    path = shared_data / "wfdb_samples" / "mixedsignals"
    if not path.with_suffix(".hea").exists():
        pytest.skip("mixedsignals sample not present")
    raw = wfdb.rdrecord(str(path), smooth_frames=False)
    chans = [
        Channel.from_label(lbl, sig, raw.fs * spf, u)
        for lbl, sig, spf, u in zip(raw.sig_name, raw.e_p_signal, raw.samps_per_frame, raw.units)
    ]
    rec = Record("mixedsignals", chans)
    X, abp = preprocess_record(rec)
    assert X.shape[0] == 2 and abp is not None and X.shape[1] == abp.shape[0]
    assert 0.9 * 28800 < abp.shape[0] <= 28800
    # the ECG starts with a 1024-sample (4.1 s) NaN run: it stays a gap of the same duration,
    # at the same place (the resampler delay is compensated), and the chain recovers after it
    ecg_nan = int(np.isnan(rec.get("ecg").signal).sum())
    assert np.all(np.isnan(X[0, : ecg_nan // 2])) and abs(int(np.isnan(X[0]).sum()) - ecg_nan // 2) <= 1
    assert np.all(np.isfinite(X[0, ecg_nan // 2 + 1 :])) and np.all(np.isfinite(X[1]))
    assert 20.0 < np.nanmedian(abp) < 200.0


# ----------------------------------------------------------------------------- misc


def test_chain_throughput_runs():
    rate = chain_throughput(n=50_000, repeats=1, block=10_000)
    assert np.isfinite(rate) and rate > 0


@pytest.mark.parametrize("module", [filters_mod, resample_mod, normalize_mod, gradient_mod, chain_mod])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def _scipy_designed(pre: Preprocessor) -> Preprocessor:
    """A copy of ``pre`` whose filter, warm start, resampler taps and delay come from scipy.signal
    (the designs the chain used before it went scipy-free)."""
    import math as _m

    ref = copy.deepcopy(pre)
    cfg = pre.config
    if pre.filter is not None:
        hp, lp, order = cfg.highpass_hz, cfg.lowpass_hz, cfg.filter_order
        if hp is not None and lp is not None:
            sos = scipy.signal.butter(order, [hp, lp], btype="bandpass", fs=cfg.fs_out, output="sos")
        elif hp is not None:
            sos = scipy.signal.butter(order, hp, btype="highpass", fs=cfg.fs_out, output="sos")
        else:
            sos = scipy.signal.butter(order, lp, btype="lowpass", fs=cfg.fs_out, output="sos")
        ref.filter = StreamFilter(np.ascontiguousarray(sos))
        ref.filter.zi_step = np.ascontiguousarray(scipy.signal.sosfilt_zi(sos))
    rs = ref.resampler
    if not rs.identity:
        up, down = rs.up, rs.down
        fs_up, f_low = up * float(down), min(float(down), float(up))
        n_min, beta = scipy.signal.kaiserord(resample_mod.STOPBAND_DB,
                                             (resample_mod.STOP_EDGE - resample_mod.PASS_EDGE) * f_low / (fs_up / 2.0))
        d = max(_m.ceil((n_min - 1) / (2 * down)), _m.ceil(max(up, down) / down), 1)
        numtaps = 2 * down * d + 1
        h = scipy.signal.firwin(numtaps, 0.45 * f_low, window=("kaiser", beta), fs=fs_up) * up
        k = -(-numtaps // up)
        padded = np.zeros(k * up)
        padded[:numtaps] = h
        table = np.ascontiguousarray(padded.reshape(k, up).T)
        table /= table.sum(axis=1, keepdims=True)
        rs.taps, rs.delay_out = table, d
    return ref


def test_chain_outputs_equal_the_scipy_designed_chain_on_a_real_record(shared_data):
    """The runtime's numpy designs (no scipy import) change no output: on a real record, with
    gaps and random chunking, every preset (and variants) gives bit-identical outputs and
    delays to the same chain built with scipy.signal's butter/sosfilt_zi/kaiserord/firwin."""
    wfdb = pytest.importorskip("wfdb")
    name = (shared_data / "challenge2015" / "RECORDS").read_text().split()[0]
    raw = wfdb.rdrecord(str(shared_data / "challenge2015" / name), sampto=250 * 30)
    rng = np.random.default_rng(7)
    checked = 0
    for i, label in enumerate(raw.sig_name):
        ch = Channel.from_label(label, raw.p_signal[:, i], raw.fs, raw.units[i])
        if ch.name not in ("ecg", "ppg", "abp"):
            continue
        x = ch.signal.copy()
        x[2000:2150] = np.nan
        for fs_in in (raw.fs, 360.0, 100.0, 256.0):
            for extra in ({}, {"filter_order": 3}, {"gradient": True}, {"highpass_hz": None, "lowpass_hz": 20.0}):
                if ch.name == "abp" and extra:
                    continue
                pre = Preprocessor(chain_config(ch.name, fs_in, **extra))
                ref = _scipy_designed(pre)
                if pre.filter is not None:
                    assert np.array_equal(pre.filter.sos, ref.filter.sos)
                assert np.array_equal(pre.resampler.taps, ref.resampler.taps)
                sizes = list(rng.integers(1, 500, size=40))
                y, _ = feed(pre, x, sizes)
                y_ref, _ = feed(ref, x, sizes)
                assert np.array_equal(y, y_ref, equal_nan=True), (ch.name, fs_in, extra)
                assert np.isfinite(y).mean() > 0.5
                # the stated delay: scipy.signal.group_delay of the same stages
                delay = ref.resampler.delay_out
                if ref.filter is not None:
                    delay += sum(float(scipy.signal.group_delay((s[:3], s[3:]), w=[1.0], fs=pre.config.fs_out)[1][0])
                                 for s in ref.filter.sos)
                if pre.norm is not None:
                    al = pre.norm.alpha
                    delay += float(scipy.signal.group_delay(((1 - al) * np.array([1.0, -1.0]), np.array([1.0, -(1 - al)])),
                                                            w=[1.0], fs=pre.config.fs_out)[1][0])
                if pre.gradient is not None:
                    delay += 1
                assert pre.delay == pytest.approx(delay, abs=1e-12) and pre.delay == delay
                checked += 1
    assert checked >= 20
