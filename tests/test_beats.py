"""Beat labels: the ABP tracker (offline == streaming), R peaks, PPG pulses."""

from __future__ import annotations

import numpy as np
import pytest

from edgebp.processing.beats import (
    BEAT_DBP,
    BEAT_INTERVAL,
    BEAT_PP_LOW,
    BEAT_SBP,
    BeatDetector,
    Beats,
    abp_beats,
    beats_check,
    beats_to_samples,
    ecg_findpeaks,
    ppg_findpeaks,
)


def synth_abp(fs: float, n_beats: int, seed: int = 0, notch: float = 0.3):
    """ABP with known beats: each beat starts exactly at its DBP (the foot), rises to its SBP
    and decays with a dicrotic notch to the next beat's DBP.

    Returns (abp, feet (sample index of each beat start), peaks, sbp, dbp); beat k runs from
    feet[k] to feet[k + 1], so there are n_beats complete beats and one more foot.
    """
    rng = np.random.default_rng(seed)
    rr = rng.uniform(0.6, 1.1, n_beats)                     # 55-100 bpm, irregular
    sbp = rng.uniform(100, 160, n_beats)
    dbp = rng.uniform(55, 90, n_beats + 1)                   # dbp[k] = the foot of beat k
    lead = int(0.5 * fs)                                     # diastolic run-off before the first foot
    feet = lead + np.r_[0, np.cumsum(np.round(rr * fs).astype(int))]
    n = feet[-1] + int(fs)
    x = np.empty(n)
    x[:lead] = dbp[0] + 20 * (1 - np.arange(lead) / lead) ** 2
    peaks = np.empty(n_beats, dtype=int)
    for k in range(n_beats):
        a, b = feet[k], feet[k + 1]
        tau = np.arange(b - a) / fs
        t_up = 0.13
        up = tau <= t_up
        pp = sbp[k] - dbp[k]
        x[a:b][up] = dbp[k] + pp * np.sin(0.5 * np.pi * tau[up] / t_up) ** 2
        u = (tau[~up] - t_up) / (tau[-1] + 1.0 / fs - t_up)
        # monotone run-off plus a dicrotic wave that makes a real notch (a local minimum)
        g = (1 - u) * np.exp(-2.5 * u) + notch * np.exp(-0.5 * ((u - 0.3) / 0.05) ** 2) * (1 - u)
        x[a:b][~up] = dbp[k + 1] + (sbp[k] - dbp[k + 1]) * g / g[0]
        peaks[k] = a + int(np.argmax(x[a:b]))
    # after the last foot: one more upstroke so that the last beat's end trough is confirmed
    tau = np.arange(n - feet[-1]) / fs
    x[feet[-1]:] = dbp[-1] + 40 * np.sin(0.5 * np.pi * np.minimum(tau / 0.13, 1.0)) ** 2
    return x, feet, peaks, sbp, dbp


@pytest.mark.parametrize("fs,notch", [(125.0, 0.3), (250.0, 0.3), (125.0, 0.5)])
def test_synthetic_abp_exact_beats(fs, notch):
    x, feet, peaks, sbp, dbp = synth_abp(fs, 40, seed=1, notch=notch)
    # the test signal really has a dicrotic notch: a local minimum and a rebound in each beat
    for k in range(40):
        seg = x[feet[k]:feet[k + 1]]
        d = np.diff(seg)
        notch = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0))
        assert len(notch) == 1
        rebound = seg[notch[0]:].max() - seg[notch[0] + 1]
        assert 0.02 < rebound / (sbp[k] - dbp[k]) < 0.25
    b = abp_beats(x, fs)
    assert len(b) == 40
    assert np.array_equal(b.i_dia, feet[:-1])
    assert np.array_equal(b.i_end, feet[1:])
    assert np.all(np.abs(b.i_sys - peaks) <= 1)
    assert np.max(np.abs(b.sbp - sbp)) < 0.5
    assert np.max(np.abs(b.dbp - dbp[:-1])) < 0.5
    assert b.valid.all()
    for k in (0, 17, 39):
        assert b.map[k] == pytest.approx(x[feet[k]:feet[k + 1]].mean(), rel=1e-9)
    assert np.allclose(b.t_sys, b.i_sys / fs)


def _stream(det: BeatDetector, x: np.ndarray, chunk: int) -> Beats:
    st = det.init_state()
    parts = []
    for a in range(0, len(x), chunk):
        out, st = det.process(x[a:a + chunk], st)
        parts.append(out)
    out, _ = det.flush(st)
    parts.append(out)
    return Beats.concat(parts)


def _assert_same(a: Beats, b: Beats) -> None:
    for name in ("i_dia", "i_sys", "i_end", "t_sys", "sbp", "dbp", "map", "valid"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("chunk", [1, 7, 125, None])
def test_streaming_equals_offline_synthetic_with_gap(chunk):
    fs = 125.0
    x, *_ = synth_abp(fs, 30, seed=2)
    x[1000:1100] = np.nan                      # a gap mid-record
    offline = abp_beats(x, fs)
    det = BeatDetector(fs)
    streamed = _stream(det, x, len(x) if chunk is None else chunk)
    _assert_same(streamed, offline)
    # no beat spans the gap
    assert not np.any((offline.i_dia < 1100) & (offline.i_end > 1000))


def test_streaming_equals_offline_real(shared_data):
    from edgebp.io import read_record

    abp = read_record(shared_data / "challenge2015" / "a555l").get("abp")
    x = abp.signal[: int(40 * abp.fs)].copy()
    x[3000:3010] = np.nan
    offline = abp_beats(x, abp.fs)
    assert len(offline) > 30
    det = BeatDetector(abp.fs)
    for chunk in (1, 7, 125):
        _assert_same(_stream(det, x, chunk), offline)


def test_flat_and_noise_give_no_beats():
    fs = 125.0
    rng = np.random.default_rng(0)
    assert len(abp_beats(np.full(2000, 90.0), fs)) == 0
    assert len(abp_beats(90 + rng.normal(0, 0.5, 2000), fs)) == 0     # below the 4 mmHg floor
    assert len(abp_beats(np.full(500, np.nan), fs)) == 0
    assert len(abp_beats(np.zeros(0), fs)) == 0


def test_refractory_merges_peaks_closer_than_max_hr():
    # two sharp peaks 0.15 s apart with a deep trough between them, repeated each second:
    # at most one beat per second survives (220 bpm limit)
    fs = 250.0
    t = np.arange(int(12 * fs)) / fs
    ph = t % 1.0
    x = 70 + 50 * np.exp(-((ph - 0.2) / 0.02) ** 2) + 45 * np.exp(-((ph - 0.35) / 0.02) ** 2)
    b = abp_beats(x, fs)
    assert 9 <= len(b) <= 11
    assert np.all(np.diff(b.i_sys) >= int(60 / 220 * fs))
    assert np.allclose(b.sbp, 120.0, atol=0.5)          # the higher of the two peaks is kept


def test_beats_check_flags():
    fs = 100.0
    b = Beats(
        i_dia=[0, 100, 200, 300, 400, 500], i_sys=[10, 110, 210, 310, 410, 510],
        i_end=[100, 200, 300, 400, 500, 520], t_sys=[0.1, 1.1, 2.1, 3.1, 4.1, 5.1],
        sbp=[120, 25, 95, 300, 120, 120], dbp=[80, 13, 90, 80, 10, 80], map=[95, 18, 92, 150, 50, 95], fs=fs,
    )
    f = beats_check(b)
    assert f[0] == 0
    assert f[1] & BEAT_SBP and f[1] & BEAT_DBP                 # a line reading 25/13
    assert f[2] == BEAT_PP_LOW                                 # 95/90: damped
    assert f[3] & BEAT_SBP
    assert f[4] & BEAT_DBP
    assert f[5] == BEAT_INTERVAL                               # 0.2 s beat
    assert b.valid.tolist() == [True, False, False, False, False, False]
    assert len(b[b.valid]) == 1
    with pytest.raises(ValueError, match="sbp"):
        Beats([0], [1], [2], [0.01], [1, 2], [0], [0], fs=fs)


def test_beats_to_samples():
    fs = 125.0
    x, feet, _, sbp, dbp = synth_abp(fs, 10, seed=3)
    b = abp_beats(x, fs)
    s, d = beats_to_samples(b, len(x), fs)
    assert s.shape == d.shape == x.shape
    assert np.isnan(s[: feet[0]]).all() and np.isnan(s[feet[-1]:]).all()
    for k in range(10):
        seg = slice(feet[k], feet[k + 1])
        assert np.all(s[seg] == b.sbp[k]) and np.all(d[seg] == b.dbp[k])
    b.valid[4] = False
    s2, _ = beats_to_samples(b, len(x), fs)
    assert np.isnan(s2[feet[4]:feet[5]]).all()
    with pytest.raises(ValueError, match="fs"):
        beats_to_samples(b, len(x), 250.0)


def test_detector_rejects_bad_parameters():
    with pytest.raises(ValueError, match="fs"):
        BeatDetector(0)
    with pytest.raises(ValueError, match="frac"):
        BeatDetector(125.0, frac=1.5)
    det = BeatDetector(125.0)
    with pytest.raises(ValueError, match="state"):
        det.process(np.zeros(10), np.zeros(3))


def test_abp_real_records_plausible(shared_data):
    """Clean records (found with `edgebp data inspect`): beat rate agrees with the ECG."""
    from edgebp.io import read_record

    for name in ("a555l", "v292s"):
        rec = read_record(shared_data / "challenge2015" / name)
        abp, ecg = rec.get("abp"), rec.get("ecg")
        b = abp_beats(abp.signal, abp.fs)
        assert b.valid.mean() > 0.95
        hr = 60.0 / np.median(b.interval[b.valid])
        assert 40 < hr < 150
        assert 80 < np.median(b.sbp[b.valid]) < 200
        assert 35 < np.median(b.dbp[b.valid]) < 110
        r = ecg_findpeaks(ecg.signal, ecg.fs)
        assert abs(len(r) - len(b)) <= 0.03 * len(r)


def synth_ecg(fs: float, r_times: np.ndarray, duration: float, seed: int = 0) -> np.ndarray:
    """P-QRS-T complexes (QRS narrow and tall, T broad and high) plus noise and wander."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * fs)) / fs
    x = 0.05 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, 0.01, len(t))
    for r in r_times:
        x += 0.1 * np.exp(-0.5 * ((t - r + 0.16) / 0.02) ** 2)          # P
        x -= 0.1 * np.exp(-0.5 * ((t - r + 0.025) / 0.008) ** 2)        # Q
        x += 1.0 * np.exp(-0.5 * ((t - r) / 0.01) ** 2)                 # R
        x -= 0.2 * np.exp(-0.5 * ((t - r - 0.03) / 0.01) ** 2)          # S
        x += 0.35 * np.exp(-0.5 * ((t - r - 0.28) / 0.05) ** 2)         # T
    return x


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("fs", [125.0, 250.0])
def test_ecg_findpeaks_both_polarities(sign, fs):
    rng = np.random.default_rng(4)
    r_true = np.cumsum(rng.uniform(0.45, 1.2, 50)) + 0.5
    ecg = sign * synth_ecg(fs, r_true, r_true[-1] + 1.0)
    r = ecg_findpeaks(ecg, fs)
    assert len(r) == len(r_true)
    assert np.max(np.abs(r / fs - r_true)) <= 0.012
    assert r.dtype == np.int64


def test_ecg_findpeaks_gap_and_flat():
    fs = 250.0
    r_true = np.arange(0.5, 30, 0.75)
    ecg = synth_ecg(fs, r_true, 30.0)
    ecg[int(10 * fs):int(12 * fs)] = np.nan
    r = ecg_findpeaks(ecg, fs)
    outside = r_true[(r_true < 9.9) | (r_true > 12.1)]
    assert len(r) == len(outside)
    assert np.all(np.isfinite(ecg[r]))
    assert len(ecg_findpeaks(np.zeros(5000), fs)) == 0
    with pytest.raises(ValueError, match="too low"):
        ecg_findpeaks(ecg, 20.0)


def synth_ppg(fs: float, feet_t: np.ndarray, duration: float) -> np.ndarray:
    """Pulses that start at known feet: a steep upstroke, a dicrotic wave, a slow run-off."""
    t = np.arange(int(duration * fs)) / fs
    x = np.zeros_like(t)
    for f in feet_t:
        u = t - f
        on = u >= 0
        x[on] += np.exp(-0.5 * ((u[on] - 0.18) / 0.07) ** 2) * (u[on] < 0.18) + \
            (np.exp(-((u[on] - 0.18) / 0.3)) * (u[on] >= 0.18)) + \
            0.15 * np.exp(-0.5 * ((u[on] - 0.45) / 0.05) ** 2)
    return x


def test_ppg_findpeaks_feet_and_peaks():
    fs = 125.0
    rng = np.random.default_rng(5)
    feet_t = np.cumsum(rng.uniform(0.6, 1.0, 40)) + 0.5
    x = synth_ppg(fs, feet_t, feet_t[-1] + 1.5)
    feet, peaks = ppg_findpeaks(x, fs)
    assert len(peaks) >= 38 and len(feet) == len(peaks)
    assert np.all(feet < peaks)
    # every detected pulse belongs to a true one: foot within 60 ms, peak 0.18 s after it
    k = np.searchsorted(feet_t, feet / fs + 0.1) - 1
    assert np.all(np.abs(feet / fs - feet_t[k]) < 0.06)
    assert np.all(np.abs(peaks / fs - (feet_t[k] + 0.18)) < 0.05)
    z0, z1 = ppg_findpeaks(np.zeros(1000), fs)
    assert len(z0) == len(z1) == 0


def test_ppg_real_record_rate(shared_data):
    from edgebp.io import read_record

    rec = read_record(shared_data / "challenge2015" / "a555l")
    ppg, ecg = rec.get("ppg"), rec.get("ecg")
    _, peaks = ppg_findpeaks(ppg.signal, ppg.fs)
    r = ecg_findpeaks(ecg.signal, ecg.fs)
    assert abs(len(peaks) - len(r)) <= 0.03 * len(r)


def test_any_chunking_equals_offline_property():
    """Random chunk boundaries (hypothesis) give exactly the offline beats."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    fs = 125.0
    x, *_ = synth_abp(fs, 20, seed=6, notch=0.5)
    x[700:720] = np.nan
    offline = abp_beats(x, fs)
    det = BeatDetector(fs)

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=len(x)), max_size=12))
    def check(cuts):
        edges = [0, *sorted(cuts), len(x)]
        state = det.init_state()
        parts = []
        for a, b in zip(edges[:-1], edges[1:]):
            out, state = det.process(x[a:b], state)
            parts.append(out)
        parts.append(det.flush(state)[0])
        _assert_same(Beats.concat(parts), offline)

    check()
