"""Signal quality masks and the streaming flat/clipped gate."""

from __future__ import annotations

import numpy as np
import pytest

from edgebp.processing.quality import (
    CLIPPED,
    FLAT,
    MOTION,
    RANGE,
    REACQUIRED,
    FlatClipDetector,
    InputGuard,
    QualityMask,
    abp_quality,
    ecg_quality,
    flatclip_masks,
    ppg_quality,
)
from edgebp.processing.quality import _G_PL  # the reference power slot of the guard state

FS = 125.0


def phase(seconds: float, hr_bpm: float = 72.0, fs: float = FS, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """Beat phase in [0, 1) per sample, optionally with beat-to-beat RR jitter."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    rr = 60.0 / hr_bpm * (1 + jitter * rng.uniform(-1, 1, int(seconds * hr_bpm / 30) + 4))
    edges = np.cumsum(np.r_[0.0, rr])
    t = np.arange(n) / fs
    k = np.searchsorted(edges, t, side="right") - 1
    return (t - edges[k]) / rr[k]


def abp_wave(ph: np.ndarray, sbp: float = 125.0, dbp: float = 75.0, seed: int = 0) -> np.ndarray:
    """Arterial pulse with notch and run-off, plus a little line noise."""
    g = np.exp(-((ph - 0.15) / 0.07) ** 2) + 0.15 * np.exp(-((ph - 0.42) / 0.05) ** 2) + 0.25 * (1 - ph)
    g = (g - g.min()) / (g.max() - g.min())
    return dbp + (sbp - dbp) * g + np.random.default_rng(seed).normal(0, 0.2, len(ph))


def ppg_wave(ph: np.ndarray, seed: int = 0) -> np.ndarray:
    g = np.exp(-((ph - 0.25) / 0.1) ** 2) + 0.3 * np.exp(-((ph - 0.55) / 0.08) ** 2) + 0.1 * (1 - ph)
    return g + np.random.default_rng(seed).normal(0, 0.005, len(ph))


def ecg_wave(ph: np.ndarray, seed: int = 0) -> np.ndarray:
    g = np.exp(-0.5 * ((ph - 0.3) / 0.012) ** 2) + 0.3 * np.exp(-0.5 * ((ph - 0.6) / 0.06) ** 2)
    return g + np.random.default_rng(seed).normal(0, 0.01, len(ph))


# --------------------------------------------------------------------------------------------
# FlatClipDetector
# --------------------------------------------------------------------------------------------


def _gate_signal() -> np.ndarray:
    ph = phase(60, jitter=0.1)
    x = ppg_wave(ph)
    x[1000:1500] = x[1000]                      # 4 s flat (sensor off)
    top = x.max()
    x[3000:3040] = top                          # 0.32 s pinned at the top: clipped
    x[4000:4010] = np.nan
    x[5000:5400] = -0.5                         # pinned at a new bottom for 3.2 s
    return x


@pytest.mark.parametrize("chunk", [1, 7, 125, None])
def test_flatclip_streaming_equals_offline(chunk):
    x = _gate_signal()
    det = FlatClipDetector(FS, flat_s=2.0, flat_sd=0.01)
    offline, st_off = det.process(x, det.init_state())
    st = det.init_state()
    parts = []
    step = len(x) if chunk is None else chunk
    for a in range(0, len(x), step):
        f, st = det.process(x[a:a + step], st)
        parts.append(f)
    assert np.array_equal(np.concatenate(parts), offline)
    assert np.array_equal(st, st_off)
    assert offline.dtype == np.uint8


def test_flatclip_masks_find_the_segments():
    x = _gate_signal()
    flat, clipped = flatclip_masks(x, FS, flat_s=2.0, flat_sd=0.01)
    assert flat[1000:1500].all() and not flat[:990].any() and not flat[1510:2900].any()
    assert clipped[3000:3040].all() and not clipped[2000:2990].any()
    assert clipped[5000:5400].all() and flat[5000:5400].all()
    assert not flat[4000:4010].any()            # NaN is not flat (it has its own reason)
    # a live signal never trips the gate
    live = ppg_wave(phase(30, jitter=0.1))
    f, c = flatclip_masks(live, FS, flat_s=2.0, flat_sd=0.01)
    assert not f.any() and not c.any()


def test_flatclip_known_rails_and_bits():
    x = np.sin(np.arange(1000) / 10.0) * 2.0
    x[200:260] = 1.5                            # pinned at the known rail 1.5
    det = FlatClipDetector(100.0, flat_s=1.0, flat_sd=0.01, clip_s=0.1, clip_hi=1.5)
    flags, _ = det.process(x, det.init_state())
    assert (flags[210:260] & CLIPPED).all()
    assert not (flags[:200] & CLIPPED).any()
    assert not (flags & FLAT).any()             # 0.6 s is shorter than the 1 s window
    with pytest.raises(ValueError, match="state"):
        det.process(x, np.zeros(3))
    with pytest.raises(ValueError, match="fs"):
        FlatClipDetector(-1.0)


# --------------------------------------------------------------------------------------------
# ABP
# --------------------------------------------------------------------------------------------


def _reasons_explain(q: QualityMask) -> None:
    assert sum(q.reasons.values()) >= int((~q.mask).sum())
    assert set(q.reasons) >= {"nan", "flat", "no_beat"}


def test_abp_clean_is_usable():
    x = abp_wave(phase(60, jitter=0.1))
    q = abp_quality(x, FS)
    assert q.usable_fraction > 0.95
    assert q.fs == FS and len(q.mask) == len(x)
    _reasons_explain(q)


def test_abp_flat_disconnected_range_jump():
    x = abp_wave(phase(80, jitter=0.1))
    x[int(10 * FS):int(20 * FS)] = 85.0                    # flat line (stopcock closed)
    x[int(30 * FS):int(40 * FS)] = 0.3                     # disconnected
    x[int(50 * FS):int(54 * FS)] = 320.0                   # flush / out of range
    x[int(65 * FS)] += 60.0                                 # a spike
    q = abp_quality(x, FS)
    r = q.reasons
    assert r["flat"] >= int(9 * FS)
    assert r["disconnected"] >= int(10 * FS)
    assert r["out_of_range"] >= int(4 * FS)
    assert r["jump"] > 0
    for a, b in ((10, 20), (30, 40), (50, 54)):
        assert not q.mask[int(a * FS):int(b * FS)].any()
    assert q.mask[int(70 * FS):int(78 * FS)].mean() > 0.8
    _reasons_explain(q)


def test_abp_25_13_and_damped_unusable():
    ph = phase(30, jitter=0.1)
    q = abp_quality(abp_wave(ph, sbp=25.0, dbp=13.0), FS)   # seen in some challenge records
    assert q.usable_fraction == 0.0
    assert q.reasons["implausible_beat"] > 0.8 * len(ph)
    q = abp_quality(abp_wave(ph, sbp=96.0, dbp=88.0), FS)   # damped: pulse pressure 8 mmHg
    assert q.usable_fraction == 0.0
    assert q.reasons["damped"] > 0.8 * len(ph)


def test_abp_ecg_disagreement_is_one_sided():
    ph = phase(60, hr_bpm=70)
    ecg = ecg_wave(ph)
    # balloon-pump-like pressure: a second, augmented peak in every cardiac cycle
    ph2 = (2 * ph) % 1.0
    iabp = abp_wave(ph2, sbp=115.0, dbp=60.0)
    assert abp_quality(iabp, FS).usable_fraction > 0.9           # plausible beats on its own
    q = abp_quality(iabp, FS, ecg=ecg, ecg_fs=FS)
    assert q.reasons["ecg_disagree"] > 0.8 * len(ph) and q.usable_fraction < 0.2
    # fewer pressure beats than R peaks (non-perfused beats) is not held against the line
    slow = abp_wave(phase(60, hr_bpm=45))
    q = abp_quality(slow, FS, ecg=ecg, ecg_fs=FS)
    assert q.reasons["ecg_disagree"] == 0 and q.usable_fraction > 0.9
    with pytest.raises(ValueError, match="ecg_fs"):
        abp_quality(slow, FS, ecg=ecg)


# --------------------------------------------------------------------------------------------
# PPG and ECG
# --------------------------------------------------------------------------------------------


def test_ppg_flat_clipped_template():
    ph = phase(90, jitter=0.1)
    x = ppg_wave(ph)
    assert ppg_quality(x, FS).usable_fraction > 0.95
    y = x.copy()
    y[int(10 * FS):int(25 * FS)] = y[int(10 * FS)]                    # sensor off
    rng = np.random.default_rng(1)
    y[int(40 * FS):int(55 * FS)] = rng.normal(0.5, 0.3, int(15 * FS))  # motion artefact
    q = ppg_quality(y, FS)
    assert q.reasons["flat"] >= int(13 * FS)
    assert not q.mask[int(11 * FS):int(24 * FS)].any()
    assert q.mask[int(42 * FS):int(53 * FS)].mean() < 0.3             # noise is not usable
    assert q.mask[int(65 * FS):int(85 * FS)].mean() > 0.9
    z = x.copy()
    z[z > 0.8] = 0.8                                                  # saturated amplifier
    q = ppg_quality(z, FS)
    assert q.reasons["clipped"] > 0


def test_ppg_ecg_beat_count_agreement():
    ph = phase(60, hr_bpm=70, jitter=0.05)
    ecg = ecg_wave(ph)
    ppg_ok = ppg_wave(ph)
    q = ppg_quality(ppg_ok, FS, ecg=ecg, ecg_fs=FS)
    assert q.reasons["ecg_disagree"] == 0 and q.usable_fraction > 0.9
    ppg_double = ppg_wave((2 * ph) % 1.0)                             # twice the pulses of the ECG
    q = ppg_quality(ppg_double, FS, ecg=ecg, ecg_fs=FS)
    assert q.reasons["ecg_disagree"] > 0.8 * len(ph)
    # an unusable ECG is no reference: nothing is held against the PPG
    q = ppg_quality(ppg_double, FS, ecg=np.zeros_like(ecg), ecg_fs=FS)
    assert q.reasons["ecg_disagree"] == 0


def test_ecg_quality_lead_off_and_ppg_agreement():
    fs = 250.0
    ph = phase(60, hr_bpm=90, fs=fs, jitter=0.05)
    ecg = ecg_wave(ph)
    assert ecg_quality(ecg, fs).usable_fraction > 0.95
    off = ecg.copy()
    off[int(20 * fs):int(40 * fs)] = 0.0
    q = ecg_quality(off, fs)
    assert q.reasons["flat"] >= int(18 * fs)
    assert not q.mask[int(21 * fs):int(39 * fs)].any()
    ppg_half = ppg_wave(phase(60, hr_bpm=45, fs=fs))                  # half the beats of the ECG
    q = ecg_quality(ecg, fs, ppg=ppg_half, ppg_fs=fs)
    assert q.reasons["ppg_disagree"] >= 0.5 * len(ph)   # windows where the PPG is usable on its own
    with pytest.raises(ValueError, match="too low"):
        ecg_quality(ecg, 20.0)


def test_quality_mask_helpers():
    m = np.zeros(1000, dtype=bool)
    m[100:400] = True
    m[600:620] = True
    q = QualityMask(m, {"flat": 500, "nan": 180, "jump": 0}, fs=100.0)
    assert q.usable_fraction == pytest.approx(0.32)
    assert q.segments() == [(100, 400), (600, 620)]
    assert q.segments(min_s=1.0) == [(100, 400)]
    assert q.top_reasons(2) == ["flat", "nan"]
    assert QualityMask(np.zeros(0, dtype=bool)).usable_fraction == 0.0


# --------------------------------------------------------------------------------------------
# Real records (how they were found: see tests/test_inspect.py)
# --------------------------------------------------------------------------------------------


def test_real_flat_abp_and_flat_ppg(shared_data):
    from edgebp.io import read_record

    rec = read_record(shared_data / "challenge2015" / "a345l")       # ABP flat at ~0 mmHg
    abp = rec.get("abp")
    q = abp_quality(abp.signal, abp.fs)
    assert q.usable_fraction == 0.0
    assert q.reasons["flat"] > 0.9 * len(q.mask) and q.reasons["disconnected"] > 0.9 * len(q.mask)
    rec = read_record(shared_data / "challenge2015" / "v759l")       # PPG flat at 0 most of the time
    ppg, ecg = rec.get("ppg"), rec.get("ecg")
    q = ppg_quality(ppg.signal, ppg.fs)
    assert q.usable_fraction < 0.2 and q.reasons["flat"] > 0.7 * len(q.mask)
    assert ecg_quality(ecg.signal, ecg.fs).usable_fraction > 0.9


# --------------------------------------------------------------------------------------------
# InputGuard: absurd values and PPG motion
# --------------------------------------------------------------------------------------------


def _motion_ppg(seed: int = 0):
    """60 s of PPG in ADC-like counts (DC 130,000, pulse ~2,600) with a 4 s burst at 30 s of
    band-limited swings (SD 3x the pulse amplitude, as edgebp.firmware_sim models motion)."""
    fs = 250.0
    ph = phase(60, jitter=0.1, fs=fs, seed=seed)
    x = 130_000.0 + 2_600.0 * ppg_wave(ph, seed=seed)
    rng = np.random.default_rng(seed + 1)
    sw = np.convolve(rng.normal(size=len(x)), np.hanning(int(0.15 * fs)), "same")  # up to ~4 Hz
    sw *= 3 * 2_600.0 / sw.std()
    burst = slice(int(30 * fs), int(34 * fs))
    x[burst] += sw[burst]
    return fs, x, burst


@pytest.mark.parametrize("chunk", [1, 97, None])
def test_guard_streaming_equals_one_call(chunk):
    fs, x, _ = _motion_ppg()
    x[int(12 * fs)] = 1e308
    g = InputGuard(fs, motion=True)
    whole, _ = g.process(x, g.init_state())
    if chunk is None:
        return
    st, parts = g.init_state(), []
    for i in range(0, len(x), chunk):
        f, st = g.process(x[i:i + chunk], st)
        parts.append(f)
    assert np.array_equal(np.concatenate(parts), whole)


def test_guard_catches_a_motion_burst_and_not_the_clean_pulse():
    for seed in range(3):
        fs, x, burst = _motion_ppg(seed)
        g = InputGuard(fs, motion=True)
        f, _ = g.process(x, g.init_state())
        m = (f & MOTION) > 0
        assert not m[: burst.start].any() and not m[burst.stop + int(1.0 * fs):].any()
        # the fast release (release_s) lets lulls mid-swing through: measured 0.46-0.74 of the
        # burst's samples flagged (seeds 0-2); the outputs stay refused while any flagged
        # sample is in their receptive field (>= 90 % of them: tests/test_fault_matrix.py)
        assert m[burst].mean() > 0.4
        # without the motion rule (an ECG channel) nothing is flagged
        g2 = InputGuard(fs, motion=False)
        assert not (g2.process(x, g2.init_state())[0] & MOTION).any()


def test_guard_releases_soon_after_a_burst():
    """The short-term power falls with ``release_s`` (0.05 s), not ``short_s`` (0.3 s): the
    flags end 0.30-0.46 s earlier after the same burst (seeds 0-4: last flag -0.00..+0.55 s
    after the burst against +0.32..+1.01 s with a symmetric 0.3 s power), which is what the
    output's recovery after motion waits for."""
    for seed in range(5):
        fs, x, burst = _motion_ppg(seed)
        last = []
        for kw in ({}, {"release_s": 0.3}):
            g = InputGuard(fs, motion=True, **kw)
            f, _ = g.process(x, g.init_state())
            last.append(np.flatnonzero(f & MOTION).max())
        assert last[0] <= last[1] - int(0.25 * fs), (seed, last)
        assert last[0] <= burst.stop + int(0.6 * fs)


def test_guard_holds_its_reference_through_a_lull():
    """A clean second inside a burst releases the flags, but the reference power is not learned
    from for ``quiet_s`` (2 s) after a flag: the burst's second half is caught again (measured
    51 % of its samples), where a reference that learned in the lull catches none of it."""
    fs, x, burst = _motion_ppg(0)
    y = x.copy()
    l0, l1 = int(31.5 * fs), int(32.5 * fs)
    y[l0:l1] = x[l0 - int(20 * fs):l1 - int(20 * fs)]  # the same subject's clean pulse
    caught = []
    for kw in ({}, {"quiet_s": 0.0}):
        g = InputGuard(fs, motion=True, **kw)
        _, st = g.process(y[:l0], g.init_state())
        ref = st[_G_PL]
        _, st = g.process(y[l0:l1], st)
        if not kw:
            assert st[_G_PL] == ref
        f, _ = g.process(y[l1:], st)
        caught.append(((f[:burst.stop - l1] & MOTION) > 0).mean())
    assert caught[0] > 0.3 and caught[1] < 0.1, caught


def test_guard_absurd_values_and_a_new_level():
    fs = 250.0
    ph = phase(40, fs=fs)
    x = 0.1 * ecg_wave(ph)                        # a millivolt ECG
    x[2500] = 1e308                               # beyond any converter
    x[3000] = 1e6                                 # 1e6 mV: 10^7 pulsatile RMS from the level
    x[3500] = -x[3500]                            # an inverted sample is signal, not absurd
    x[6000:] += 500.0                             # a new electrode offset, for good
    g = InputGuard(fs)
    f, _ = g.process(x, g.init_state())
    r = (f & RANGE) > 0
    assert r[2500] and r[3000] and not r[:2500].any() and not r[2501:3000].any() and not r[3001:6000].any()
    # the offset is absurd at first, then taken as the new level after reacquire_s (1 s)
    assert r[6000:6000 + int(fs)].all() and not r[6000 + int(fs) + 1:].any()
    assert np.flatnonzero(f & REACQUIRED).tolist() == [6000 + int(fs)]
    # a gap holds the state: NaN is never flagged
    y = x.copy()
    y[1000:1100] = np.nan
    fy, _ = g.process(y, g.init_state())
    assert not fy[1000:1100].any()
