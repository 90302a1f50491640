"""edgebp.processing.resample: polyphase, anti-aliased, NaN-aware offline resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebp.processing.resample import record_resample, resample_ratio, signal_resample
from edgebp.record import Channel, Record

MIXED_FRAME = 62.4725  # wfdb_samples/mixedsignals frame rate: ECG 4x, ABP/PPG 2x, resp 1x
RATE_PAIRS = [(250, 125), (125, 250), (360, 125), (500, 125), (4 * MIXED_FRAME, 125), (MIXED_FRAME, 125), (125, 100)]


def _tone(f, fs, seconds, amp=1.0, offset=0.0, phase=0.3):
    t = np.arange(int(round(seconds * fs))) / fs
    return offset + amp * np.sin(2 * np.pi * f * t + phase)


def _rms_db(y, ref_amp=1.0):
    return 20 * np.log10(np.sqrt(np.mean(y**2)) / (ref_amp / np.sqrt(2)))


@pytest.mark.parametrize("fs_in,fs_out", RATE_PAIRS)
def test_sine_keeps_amplitude_frequency_and_phase(fs_in, fs_out):
    x = _tone(3.0, fs_in, 20.0, amp=2.0, offset=95.0)  # an ABP-like offset must not ripple or droop
    y = signal_resample(x, fs_in, fs_out)
    assert len(y) == round(len(x) * fs_out / fs_in)
    expected = _tone(3.0, fs_out, len(y) / fs_out, amp=2.0, offset=95.0)[: len(y)]
    inner = slice(int(fs_out), -int(fs_out))  # filter edge effects stay within the first/last second
    np.testing.assert_allclose(y[inner], expected[inner], atol=0.01)
    assert np.abs(y - expected).max() < 0.5
    spectrum = np.abs(np.fft.rfft(y - y.mean()))
    peak = np.fft.rfftfreq(len(y), 1 / fs_out)[np.argmax(spectrum)]
    assert peak == pytest.approx(3.0, abs=fs_out / len(y))


@pytest.mark.parametrize("fs_in,fs_out,tone", [(250, 125, 100.0), (250, 125, 75.0), (360, 125, 90.0),
                                               (500, 125, 200.0), (4 * MIXED_FRAME, 125, 90.0)])
def test_tone_above_new_nyquist_is_suppressed(fs_in, fs_out, tone):
    assert tone > fs_out / 2
    x = _tone(tone, fs_in, 20.0)
    y = signal_resample(x, fs_in, fs_out)
    inner = y[int(fs_out):-int(fs_out)]
    assert _rms_db(inner) < -40.0  # > 40 dB attenuation instead of an alias at |fs_out - tone|


def test_passband_tone_below_nyquist_passes():
    y = signal_resample(_tone(40.0, 250, 20.0), 250, 125)
    assert abs(_rms_db(y[125:-125])) < 0.5


def test_nan_gaps_map_to_their_time_spans():
    fs_in, fs_out = 250.0, 125.0
    x = _tone(2.0, fs_in, 10.0)
    x[500:750] = np.nan   # 2.0 .. 3.0 s
    x[1001] = np.nan      # a single sample at 4.004 s must survive the downsampling
    x[-50:] = np.nan      # trailing gap: 9.8 .. 10 s
    y = signal_resample(x, fs_in, fs_out)
    t = np.arange(len(y)) / fs_out
    gap = np.isnan(y)
    expected = ((t >= 2.0) & (t < 3.0)) | ((t >= 4.0) & (t < 4.008)) | (t >= 9.8)
    np.testing.assert_array_equal(gap, expected)
    assert np.isfinite(y[~gap]).all()
    # Away from the gap edges the values are the sine, not something dragged by the bridging.
    ok = (t > 0.5) & (t < 1.9) | (t > 3.1) & (t < 3.9)
    np.testing.assert_allclose(y[ok], np.sin(2 * np.pi * 2.0 * t[ok] + 0.3), atol=0.01)


def test_nan_gaps_upsampling_and_leading_gap():
    x = _tone(1.0, 125.0, 4.0)
    x[:25] = np.nan        # 0 .. 0.2 s
    x[250:260] = np.nan    # 2.0 .. 2.08 s
    y = signal_resample(x, 125.0, 250.0)
    t = np.arange(len(y)) / 250.0
    expected = (t < 0.2) | ((t >= 2.0) & (t < 2.08))
    np.testing.assert_array_equal(np.isnan(y), expected)


def test_non_integer_ratio_gap_span():
    x = np.ones(3600)
    x[720:1080] = np.nan   # 2.0 .. 3.0 s at 360 Hz
    y = signal_resample(x, 360.0, 125.0)
    t = np.arange(len(y)) / 125.0
    gap = np.isnan(y)
    assert gap[(t >= 2.0) & (t < 3.0)].all()
    # At most one output sample of padding on each side (an output interval overlapping the edge).
    assert gap.sum() <= 125 + 2
    np.testing.assert_allclose(y[~gap], 1.0, atol=1e-6)


def test_all_nan_empty_and_identity():
    assert np.isnan(signal_resample(np.full(100, np.nan), 250, 125)).all()
    assert len(signal_resample(np.full(100, np.nan), 250, 125)) == 50
    assert signal_resample(np.zeros(0), 250, 125).shape == (0,)
    x = np.random.default_rng(0).standard_normal(77)
    y = signal_resample(x, 125, 125)
    np.testing.assert_array_equal(y, x)
    assert y is not x


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=5000), pair=st.sampled_from(RATE_PAIRS + [(1000, 125), (30, 125)]))
def test_output_length_is_rounded_ratio(n, pair):
    fs_in, fs_out = pair
    x = np.cos(np.arange(n) * 0.01)
    y = signal_resample(x, fs_in, fs_out)
    assert len(y) == round(n * fs_out / fs_in)
    assert np.isfinite(y).all()


def test_ratio_is_exact_for_real_rates():
    assert resample_ratio(250, 125) == (1, 2)
    assert resample_ratio(125, 250) == (2, 1)
    assert resample_ratio(360, 125) == (25, 72)
    up, down = resample_ratio(4 * MIXED_FRAME, 125)
    assert abs(up / down / (125 / (4 * MIXED_FRAME)) - 1) < 1e-6


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_bad_rates_are_rejected(bad):
    with pytest.raises(ValueError, match="fs_in"):
        signal_resample(np.zeros(10), bad, 125)
    with pytest.raises(ValueError, match="fs_out"):
        signal_resample(np.zeros(10), 125, bad)


def test_two_d_input_rejected():
    with pytest.raises(ValueError, match="1-D"):
        signal_resample(np.zeros((10, 2)), 250, 125)


def test_record_resample_multi_rate_real_record(shared_data):
    from edgebp.io import read_record

    rec = read_record(shared_data / "wfdb_samples" / "mixedsignals")
    before = [c.signal.copy() for c in rec.channels]
    out = record_resample(rec, 125.0)
    assert out.record_id == rec.record_id and out.source == rec.source and out.subject_id == rec.subject_id
    assert [c.label for c in out.channels] == [c.label for c in rec.channels]
    assert [c.units for c in out.channels] == [c.units for c in rec.channels]
    assert out.get("ecg").lead == "II"
    lengths = {len(c.signal) for c in out.channels}
    assert all(c.fs == 125.0 for c in out.channels)
    # Every channel covers the same 230.5 s, whatever its original rate.
    assert max(lengths) - min(lengths) <= 1
    assert max(lengths) == round(14400 / MIXED_FRAME * 125)
    for c, b in zip(rec.channels, before):  # input untouched
        np.testing.assert_array_equal(c.signal, b)
    # ABP downsampled 124.94 -> 125 Hz keeps its pressure levels (systolic/diastolic envelope).
    abp_in, abp_out = rec.get("abp").signal, out.get("abp").signal
    assert np.nanpercentile(abp_out, 95) == pytest.approx(np.nanpercentile(abp_in, 95), abs=1.0)
    assert np.nanpercentile(abp_out, 5) == pytest.approx(np.nanpercentile(abp_in, 5), abs=1.0)


def test_record_resample_keeps_gaps_per_channel():
    ecg = _tone(1.0, 500.0, 4.0)
    ppg = _tone(1.0, 125.0, 4.0)
    ecg[1000:1500] = np.nan  # 2 .. 3 s
    rec = Record("r", [Channel.from_label("II", ecg, 500.0, "mV"), Channel.from_label("PLETH", ppg, 125.0)])
    out = record_resample(rec, 250.0)
    t = np.arange(1000) / 250.0
    np.testing.assert_array_equal(np.isnan(out.get("ecg").signal), (t >= 2.0) & (t < 3.0))
    assert not np.isnan(out.get("ppg").signal).any()
