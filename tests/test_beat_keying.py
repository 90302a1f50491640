"""Beats keyed to the input's own pulses (runtime/beat_keying.py) and the causal R-peak
detector under them (edgebp/processing/qrs_stream.py), from the kernels up to `edgebp run`.

- ``QrsDetector``: chunking never changes its peaks; it finds the R peaks of synthetic ECGs
  (clean, and with T waves and noise); it restarts after NaN; on real ICU ECG leads it agrees
  with the offline detector ``edgebp.processing.beats.ecg_findpeaks``.
- ``BeatKeyer``: fed a synthetic PPG pulse train and a *known* predicted ABP it reports each
  beat's SBP/DBP/MAP as the max/min/mean of that ABP over the beat's interval, hr = 60 /
  peak-to-peak interval, merges a dicrotic pulse into its beat, marks beats with invalid
  predictions (or implausible intervals, or cut by the stream's start/end) invalid with the
  right reason, empties its queue on ``pop(final=True)`` and does not depend on chunking.
- End to end: ``edgebp sim`` -> ``edgebp run default`` -> ``edgebp score`` on a synthetic
  subject, and the default bundle on real validation records (never its test records:
  tolerances are not tuned on test records): beat counts and mean heart rate against the
  simulator's truth; beat rows under injected faults.

No mocks: the real numba kernels, ONNX Runtime, ``bundle_load("default")``, the simulator
and WFDB records from ../shared/data (skipped with a reason when absent).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from edgebp.processing.beats import BeatDetector, ecg_findpeaks
from edgebp.processing.qrs_stream import QrsDetector
from edgebp.runtime.beat_keying import ECG_LAG_S, PPG_LEAD_S, BeatKeyer
from edgebp.runtime.engine import REASONS

FS = 125.0  # the default bundle's model rate: the keyer and the detector run at it
R_GAP, R_CLIP = REASONS.index("gap"), REASONS.index("clipped")
BEAT_KEYS = ("t", "sbp", "dbp", "map", "hr", "valid", "reason")


# ============================================================================ QrsDetector
def _ecg(dur_s: float, rr_fun, t_amp: float = 0.0, noise: float = 0.0, amp_fun=lambda t: 1.0, seed: int = 4):
    """A gaussian QRS train (R sigma 12 ms, a small S wave 30 ms after it), optional T waves
    (sigma 50 ms, 280 ms after R) and white noise, at FS. Returns (ecg, R times in s)."""
    r = [0.4]
    while r[-1] < dur_s - 1.0:
        r.append(r[-1] + rr_fun(r[-1]))
    r = np.asarray(r)
    t = np.arange(int(dur_s * FS)) / FS
    x = np.zeros_like(t)
    for c in r:
        a = amp_fun(c)
        x += a * (np.exp(-0.5 * ((t - c) / 0.012) ** 2) - 0.15 * np.exp(-0.5 * ((t - c - 0.03) / 0.01) ** 2)
                  + t_amp * np.exp(-0.5 * ((t - c - 0.28) / 0.05) ** 2))
    return x + noise * np.random.default_rng(seed).standard_normal(len(t)), r


def _rr_sinus(t: float) -> float:
    return 0.8 + 0.08 * np.sin(2 * np.pi * t / 5.0)  # 69-82 bpm, a respiratory-like swing


def _qrs_chunked(det: QrsDetector, x: np.ndarray, chunk: int):
    st, parts = det.init_state(), []
    for i in range(0, len(x), chunk):
        r, st = det.process(x[i:i + chunk], st)
        parts.append(r)
    return np.concatenate(parts), st


@pytest.mark.parametrize("chunk", [1, 7, 125, 4096])
def test_qrs_chunking_equals_one_call(chunk):
    """Peaks and final state of any chunking equal one call on the whole array, across a NaN
    stretch (restart) and with T waves and noise (threshold adaptation)."""
    x, _ = _ecg(40.0, _rr_sinus, t_amp=0.3, noise=0.02)
    x[int(18 * FS):int(18.6 * FS)] = np.nan
    det = QrsDetector(FS)
    r1, st1 = det.process(x, det.init_state())
    assert len(r1) > 38  # measured 44 of 50 R peaks: none in the learning stretches after the start and the gap
    rc, stc = _qrs_chunked(det, x, chunk)
    assert np.array_equal(rc, r1)
    assert np.array_equal(stc, st1)


# Position tolerances, measured on 60 s of _rr_sinus beats (seed 4): the detector puts the R
# peak half the integration window before the peak of the causal integrated energy, i.e. at
# the centre of the QRS's derivative energy. Clean (R + S wave): max |error| 12 ms, mean
# +8 ms (the S wave pulls the centre late). With T waves (0.3 and 0.5 x the R amplitude,
# sigma 50 ms) and noise: max 44-46 ms, as the T wave's upslope enters the 150 ms window.
# Bounds: 20 ms clean, 60 ms with T waves.
@pytest.mark.parametrize("case, kw, tol_s", [
    ("clean", {}, 0.020),
    ("t-waves", {"t_amp": 0.3, "noise": 0.02}, 0.060),
    ("strong t-waves", {"t_amp": 0.5, "noise": 0.03}, 0.060),
])
def test_qrs_finds_the_r_peaks(case, kw, tol_s):
    x, r_true = _ecg(60.0, _rr_sinus, **kw)
    det = QrsDetector(FS)
    r, _ = det.process(x, det.init_state())
    t = r / FS
    learn_end = (det.n_learn + det.w + 2) / FS  # no peak can be reported before this
    assert t.min() >= learn_end - 0.5 * det.w / FS
    nearest = np.abs(t[:, None] - r_true[None, :]).argmin(axis=1)
    err = t - r_true[nearest]
    assert np.abs(err).max() <= tol_s, (case, np.abs(err).max())
    # one detection per QRS (none on a T wave), and every QRS after the learning stretch found
    assert len(np.unique(nearest)) == len(t)
    expected = r_true[r_true > learn_end + 0.1]
    assert np.isin(np.flatnonzero(r_true > learn_end + 0.1), nearest).all(), (len(t), len(expected))


def test_qrs_restarts_after_nan():
    """NaN restarts the detector: nothing is reported in the gap or in the 2 s learning
    stretch after it, and from there on the peaks are exactly those of a fresh detector on
    the samples after the gap (indices keep counting through the gap)."""
    x, _ = _ecg(40.0, _rr_sinus, t_amp=0.3, noise=0.02)
    g0, g1 = int(15 * FS), int(16 * FS)
    x[g0:g1] = np.nan
    det = QrsDetector(FS)
    r, _ = det.process(x, det.init_state())
    before, after = r[r < g0], r[r >= g0]
    assert len(before) > 13 and len(after) > 24  # measured 17 and 28
    assert after.min() >= g1 + det.n_learn  # nothing during the gap nor while relearning
    fresh, _ = det.process(x[g1:], det.init_state())
    assert np.array_equal(after, fresh + g1)
    # the gap also ends a pending QRS: no peak lands inside it
    assert not ((r >= g0) & (r < g1)).any()


def test_qrs_missed_beats_do_not_inflate_the_rr_mean():
    """A learning stretch with QRS 2.5 x larger than what follows sets the threshold above
    the later beats; only the halved (search-back) threshold catches them. An interval that
    spans a missed beat must not be averaged into the mean R-R (Pan-Tompkins' RR-limit rule),
    else the search-back limit moves out and still more beats are missed.
    Measured: 28 of the 38 beats of the last 30 s found (before the fix in this commit: 9)."""
    x, r_true = _ecg(60.0, lambda t: 0.8, t_amp=0.3, noise=0.02, amp_fun=lambda t: 2.5 if t < 2.1 else 1.0)
    det = QrsDetector(FS)
    r, _ = det.process(x, det.init_state())
    late = r[r > 30 * FS] / FS
    n_true = int((r_true > 30).sum())
    assert len(late) >= 0.6 * n_true, (len(late), n_true)
    assert (np.abs(late[:, None] - r_true[None, :]).min(axis=1) < 0.06).all()  # and they are R peaks


def _real_ecg(shared_data, name: str):
    from edgebp.io import read_record
    from edgebp.processing.chain import ChainConfig, Preprocessor
    from edgebp.runtime.bundle import bundle_load

    path = shared_data / "challenge2015" / name
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"record {path} not found")
    rec = read_record(str(path))
    ecg = rec.get("ecg")
    x = np.asarray(ecg.signal, float)
    cfg = bundle_load("default").manifest["preprocessing"]["ecg"]
    pre = Preprocessor(ChainConfig.from_dict({**cfg, "fs_in": ecg.fs, "fs_out": FS}))
    y, _ = pre.process(x, pre.init_state())
    return x, float(ecg.fs), np.atleast_2d(y)[0], pre.resampler.delay_out


# Measured on the default bundle's validation records (ECG II through the bundle's own ECG
# chain: 0.5-40 Hz, running z-score, 250 -> 125 Hz), peaks within 3..295 s (after the
# learning stretch, before the alarm at 300 s), paired to the offline peaks within 0.1 s:
#   f362s: 347 of 354 offline peaks found (98.0 %), 0 unpaired stream peaks,
#          dt median +0.024 s (p5..p95 -0.020..+0.044 s)
#   v648s: 335 of 347 (96.5 %), 1 unpaired (99.7 %), dt median -0.028 s (-0.032..-0.024 s)
# (the offline detector refines each peak onto the band-passed lead's extreme; the causal one
# sits at the centre of the QRS energy). Bounds: sensitivity >= 94 %, positive predictive
# value >= 98 %, |median dt| <= 0.04 s.
# On other validation records the causal detector still finds far fewer peaks than the
# offline one (e.g. v221l 236 of 409, b331l 305 of 407): it is only the beat source of
# ECG-only models; the default bundle keys its beats to the PPG.
@pytest.mark.parametrize("name", ["f362s", "v648s"])
def test_qrs_agrees_with_offline_on_real_ecg(shared_data, name):
    x, fs, y, res_delay = _real_ecg(shared_data, name)
    det = QrsDetector(FS)
    r, _ = det.process(y, det.init_state())
    t_s = (r - res_delay) / FS  # model index -> source time
    t_o = ecg_findpeaks(x, fs) / fs
    t_s, t_o = t_s[(t_s > 3) & (t_s < 295)], t_o[(t_o > 3) & (t_o < 295)]
    j = np.clip(np.searchsorted(t_o, t_s), 1, len(t_o) - 1)
    near = np.where(np.abs(t_o[j] - t_s) < np.abs(t_o[j - 1] - t_s), j, j - 1)
    dt = t_s - t_o[near]
    ok = np.abs(dt) < 0.1
    sens = len(np.unique(near[ok])) / len(t_o)
    ppv = ok.mean()
    assert sens >= 0.94 and ppv >= 0.98, (name, sens, ppv)
    assert abs(np.median(dt[ok])) <= 0.04, (name, np.median(dt[ok]))


# ============================================================================ BeatKeyer
def _ppg_abp(n: int = 40, dicrotic_from: int | None = None, long_beat: int | None = None):
    """A z-scored-like PPG pulse train at FS and a known 'predicted ABP' on the keyer's
    aligned index.

    PPG beat k: foot (minimum) at F[k], peak (value 2) at S[k] = F[k] + 0.25 period, cosine
    rise and fall; periods 0.68-0.92 s (65-88 bpm). From ``dicrotic_from`` on, the fall ends
    at 0.45 period and a small pulse (a third of the main one) follows: a deep dicrotic wave
    the pulse tracker reports as a pulse of its own. ``long_beat``: that period is 3 s.

    ABP: 90 mmHg at the beat boundaries; over the keyer's interval of beat k, [F[k] - lead,
    F[k+1] - lead), one systolic bump (peak exactly SBP[k], a fixed 10 samples after the
    shifted PPG peak, so the keyer's running-median beat time lands on it) and one diastolic
    dip (exactly DBP[k] at 0.75 of the interval): max and min of each interval are SBP[k] and
    DBP[k] even when the tracker places a boundary a few samples off.
    """
    per = 0.8 + 0.12 * np.sin(2 * np.pi * np.arange(n) / 9.0)
    if long_beat is not None:
        per[long_beat] = 3.0
    F = np.r_[0, np.cumsum(np.round(per * FS).astype(int))] + 50
    x = np.full(F[-1] + 100, -1.0)
    S = []
    for k in range(n):
        f, g = F[k], F[k + 1]
        s = f + int(round(0.25 * (g - f)))
        S.append(s)
        i = np.arange(f, s + 1)
        x[i] = -1 + 3 * (0.5 - 0.5 * np.cos(np.pi * (i - f) / (s - f)))
        if dicrotic_from is not None and k >= dicrotic_from:
            d = f + int(round(0.45 * (g - f)))
            q = d + int(round(0.12 * (g - f)))
            i = np.arange(s, d + 1)
            x[i] = -1 + 3 * (0.5 + 0.5 * np.cos(np.pi * (i - s) / (d - s)))
            i = np.arange(d, q + 1)
            x[i] = -1 + 1.0 * (0.5 - 0.5 * np.cos(np.pi * (i - d) / (q - d)))
            i = np.arange(q, g + 1)
            x[i] = -1 + 1.0 * (0.5 + 0.5 * np.cos(np.pi * (i - q) / (g - q)))
        else:
            i = np.arange(s, g + 1)
            x[i] = -1 + 3 * (0.5 + 0.5 * np.cos(np.pi * (i - s) / (g - s)))
    lead = int(round(PPG_LEAD_S * FS))
    # the arterial peak 10 samples after the (lead-shifted) PPG peak: a fixed transit time
    abp, ts = _abp_bumps(len(x), F - lead, np.asarray(S) - lead + 10, n)
    return x, abp, F, np.asarray(S), ts, lead


def _abp_bumps(n_samples: int, starts: np.ndarray, peaks: np.ndarray, n: int):
    """ABP 90 mmHg with, per beat k, a systolic bump of peak SBP(k) at ``peaks[k]`` and a
    diastolic dip of DBP(k) at 0.75 of the interval [starts[k], starts[k+1]) (sigma 5
    samples each). Returns (abp, bump indices)."""
    m = np.arange(n_samples)
    abp = np.full(n_samples, 90.0)
    for k in range(n):
        a, ln = starts[k], starts[k + 1] - starts[k]
        cd = a + int(round(0.75 * ln))
        abp += (SBP(k) - 90) * np.exp(-0.5 * ((m - peaks[k]) / 5.0) ** 2) - (90 - DBP(k)) * np.exp(-0.5 * ((m - cd) / 5.0) ** 2)
    return abp, np.asarray(peaks[:n])


def SBP(k):
    return 110 + 15 * np.sin(k)


def DBP(k):
    return 60 + 8 * np.cos(k)


def _key(source: str, x: np.ndarray, abp: np.ndarray, code: np.ndarray | None = None, chunk: int | None = None,
         delay: int = 25, out_from: int = 0, out_to: int | None = None, finish: bool = True):
    """Drive a keyer as the engine does: per chunk the key channel first, then the
    predictions, which lag it by the model's look-ahead (``delay`` samples), then ``pop``;
    at the end the engine's flush sequence. Predictions exist for ``out_from..out_to``."""
    k = BeatKeyer(FS, source, REASONS)
    code = np.zeros(len(x), np.int8) if code is None else code
    out_to = len(x) if out_to is None else out_to
    chunk = chunk or len(x)
    rows, done = [], out_from

    def outputs(upto):
        nonlocal done
        upto = min(upto, out_to)
        if upto > done:
            k.push_outputs(np.arange(done, upto), abp[done:upto], code[done:upto])
            done = upto

    for i in range(0, len(x), chunk):
        k.push_input(x[i:i + chunk])
        outputs(min(len(x), i + chunk) - delay)
        rows += k.pop()
    outputs(len(x))
    if finish:
        if source == "ppg":
            b, k.state = k.det.flush(k.state)
            k._intervals(zip(b.i_dia.tolist(), b.i_end.tolist(), b.i_sys.tolist(), (b.sbp - b.dbp).tolist()))
            k.release_held()
        rows += k.pop(final=True)
    return rows, k


def _match(rows, ts, tol=3):
    """Row index -> true beat index, by the row's index m (the systolic maximum) vs the
    bump centres ``ts``; -1 when further than ``tol`` samples from any."""
    m = np.array([r["m"] for r in rows])
    j = np.abs(m[:, None] - ts[None, :]).argmin(axis=1)
    return np.where(np.abs(m - ts[j]) <= tol, j, -1)


def test_ppg_keyer_values_and_heart_rate():
    x, abp, F, S, ts, lead = _ppg_abp()
    rows, k = _key("ppg", x, abp)
    j = _match(rows, ts)
    # every beat but the first (the tracker needs one pulse to lock on) and the last (no
    # pulse after it) comes out once, valid, at its systolic maximum (within 3 samples)
    assert (j >= 0).all() and len(np.unique(j)) == len(j)
    assert set(range(1, len(F) - 2)) <= set(j.tolist()), sorted(j.tolist())
    for r, b in zip(rows, j):
        assert r["valid"] and r["reason"] == "ok", r
        # the interval the keyer should read: PPG feet moved back by the PPG lead
        a_, b_ = F[b] - lead, F[b + 1] - lead
        # SBP/DBP are the bumps' peaks (the other bumps' tails move them by ~1e-8 mmHg,
        # measured) as long as the boundaries are within ~0.2 period of the true ones; MAP is the mean
        # over the interval: a boundary off by one sample moves it by ~1/100 of (90 - DBP)
        assert r["sbp"] == pytest.approx(SBP(b), abs=1e-3)
        assert r["dbp"] == pytest.approx(DBP(b), abs=1e-3)
        assert r["map"] == pytest.approx(abp[a_:b_].mean(), abs=0.3)
    # hr: 60 / (this pulse's peak - the previous one's), within 1 bpm (measured: exact,
    # the tracker finds these noise-free peaks on their sample); the first row has
    # no previous peak and uses its own interval
    for r, b in zip(rows[1:], j[1:]):
        assert abs(r["hr"] - 60 * FS / (S[b] - S[b - 1])) < 1.0, (b, r["hr"])
    assert abs(rows[0]["hr"] - 60 * FS / (F[j[0] + 1] - F[j[0]])) < 1.0
    assert k.queue == [] and k.held is None


def test_ppg_keyer_merges_the_dicrotic_pulse():
    x, abp, F, S, ts, lead = _ppg_abp(dicrotic_from=12)
    det = BeatDetector(FS, frac=0.2, floor=0.15, init_pp=3.0)  # the keyer's own tracker
    b, st = det.process(x, det.init_state())
    b2, _ = det.flush(st)
    n_pulses = len(b) + len(b2)
    # the dicrotic waves are there: measured 51 tracker pulses for 40 beats
    assert n_pulses >= len(F) - 1 + 8, n_pulses
    rows, _ = _key("ppg", x, abp)
    j = _match(rows, ts)
    assert (j >= 0).all() and len(np.unique(j)) == len(rows)  # one row per beat, no extra
    assert set(range(1, len(F) - 2)) <= set(j.tolist())
    for r, bb in zip(rows, j):
        assert r["valid"]
        if bb < len(F) - 2:  # the last pulse ends where the stream does: its end is a guess
            assert r["sbp"] == pytest.approx(SBP(bb), abs=1e-3) and r["dbp"] == pytest.approx(DBP(bb), abs=1e-3)
    # the heart rate stays the beat's, not the dicrotic wave's (measured: exact)
    hr_true = 60 * FS / np.diff(S)
    for r, bb in zip(rows[1:], j[1:]):
        assert abs(r["hr"] - hr_true[bb - 1]) < 1.0


def test_keyer_invalid_predictions_give_the_reason():
    x, abp, F, S, ts, lead = _ppg_abp()
    code = np.zeros(len(x), np.int8)
    abp = abp.copy()
    mid = lambda b: (F[b] + F[b + 1]) // 2 - lead  # noqa: E731
    code[mid(10):mid(10) + 3] = R_GAP           # a gap inside beat 10
    code[mid(20):mid(20) + 1] = R_CLIP          # one clipped output inside beat 20
    abp[mid(30)] = np.nan                       # a NaN prediction without a code: a gap
    rows, _ = _key("ppg", x, abp, code=code)
    starts = np.array([r["m"] for r in rows])  # invalid rows sit at their interval's start
    for b, reason in ((10, "gap"), (20, "clipped"), (30, "gap")):
        r = rows[int(np.argmin(np.abs(starts - (F[b] - lead))))]
        assert not r["valid"] and r["reason"] == reason, (b, r)
        assert np.isnan(r["sbp"]) and np.isnan(r["dbp"]) and np.isnan(r["map"])
        assert np.isfinite(r["hr"])  # the pulse was there: its rate is still known
    # and only those three: every other beat stays valid
    n_invalid = sum(not r["valid"] for r in rows)
    assert n_invalid == 3, [(r["m"], r["reason"]) for r in rows if not r["valid"]]


def test_keyer_rr_warmup_and_end_reasons():
    # a 3 s pause (longer than the 2.5 s plausible heart period): reason "rr"
    x, abp, F, S, ts, lead = _ppg_abp(long_beat=15)
    rows, _ = _key("ppg", x, abp)
    rr = [r for r in rows if r["reason"] == "rr"]
    assert len(rr) == 1 and not rr[0]["valid"] and abs(rr[0]["m"] - (F[15] - lead)) <= 3, rr
    assert sum(not r["valid"] for r in rows) == 1
    # predictions start only at index 600: beats starting before are "warmup"; predictions
    # end at the foot of beat 30: the beat that runs past them is "end" at the final pop
    x, abp, F, S, ts, lead = _ppg_abp()
    rows, k = _key("ppg", x, abp, out_from=600, out_to=F[30] - lead + 5)
    reasons = [(r["m"], r["reason"]) for r in rows]
    assert all(r["reason"] == "warmup" for r in rows if r["m"] < 600), reasons
    assert any(r["reason"] == "warmup" for r in rows)
    end = [r for r in rows if r["reason"] == "end"]
    assert len(end) >= 1 and all(r["m"] >= F[29] - lead - 3 for r in end), reasons
    assert all(r["valid"] for r in rows if 600 <= r["m"] and r["m"] + 0.7 * FS * 1.3 < F[30] - lead)
    assert k.queue == []


def test_pop_waits_for_predictions_and_final_empties_the_queue():
    x, abp, F, S, ts, lead = _ppg_abp()
    half = F[20] - lead
    rows, k = _key("ppg", x, abp, out_to=half, finish=False)
    # without final, only beats whose whole interval has predictions come out
    assert rows and all(r["m"] < half for r in rows)
    waiting = len(k.queue)
    assert waiting >= 15, waiting  # the beats after `half` (measured 18 queued)
    assert k.pop() == []  # nothing new is known
    b, k.state = k.det.flush(k.state)
    k._intervals(zip(b.i_dia.tolist(), b.i_end.tolist(), b.i_sys.tolist(), (b.sbp - b.dbp).tolist()))
    k.release_held()
    assert k.held is None
    last = k.pop(final=True)
    assert len(last) >= waiting and k.queue == []
    assert all(not r["valid"] and r["reason"] in ("end", "gap") for r in last)
    assert k.pop(final=True) == []


def _rows_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if ra.keys() != rb.keys():
            return False
        for f in ra:
            x, y = ra[f], rb[f]
            if not (x == y or (isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y))):
                return False
    return True


def _ecg_abp(n: int = 40):
    """Synthetic ECG at FS with R peaks on integer samples and a known ABP whose bumps sit
    in the ECG keyer's intervals [R_k + lag, R_k+1 + lag)."""
    per = np.round((0.8 + 0.12 * np.sin(2 * np.pi * np.arange(n) / 9.0)) * FS).astype(int)
    R = np.r_[0, np.cumsum(per)] + 60
    m = np.arange(R[-1] + 100)
    x = np.zeros(len(m))
    for c in R:
        x += np.exp(-0.5 * ((m - c) / (0.012 * FS)) ** 2) + 0.3 * np.exp(-0.5 * ((m - c - 0.28 * FS) / (0.05 * FS)) ** 2)
    lag = int(round(ECG_LAG_S * FS))
    abp, ts = _abp_bumps(len(m), R + lag, R + lag + 30, n)  # arterial peak 0.33 s after R
    return x, abp, R, ts, lag


def test_ecg_keyer_values_and_heart_rate():
    x, abp, R, ts, lag = _ecg_abp()
    rows, _ = _key("ecg", x, abp)
    j = _match(rows, ts)
    assert (j >= 0).all() and len(np.unique(j)) == len(j)
    # beats from the first R after the 2 s learning stretch on (measured 38 of 40)
    assert len(rows) >= 36 and set(range(j.min(), len(R) - 2)) <= set(j.tolist())
    for r, b in zip(rows, j):
        assert r["valid"] and r["sbp"] == pytest.approx(SBP(b), abs=1e-3) and r["dbp"] == pytest.approx(DBP(b), abs=1e-3)
    # hr = 60 / R-R, within 1 bpm (measured: exact; the R estimates sit at a constant offset
    # from the true peaks on this clean T-wave train)
    for r, b in zip(rows[1:], j[1:]):
        assert abs(r["hr"] - 60 * FS / (R[b] - R[b - 1])) < 1.0, (b, r["hr"], 60 * FS / (R[b] - R[b - 1]))


@pytest.mark.parametrize("source", ["ppg", "ecg"])
@pytest.mark.parametrize("chunk", [1, 7, 125, 4096])
def test_keyer_chunk_independent(source, chunk):
    if source == "ppg":
        x, abp, F, S, ts, lead = _ppg_abp(dicrotic_from=20)
        starts = F - lead
    else:
        x, abp, R, ts, lag = _ecg_abp()
        starts = R + lag
    code = np.zeros(len(x), np.int8)
    code[(starts[12] + starts[13]) // 2] = R_GAP  # one invalid beat in the comparison too
    x = x.copy()
    x[int(starts[25]) + 30:int(starts[25]) + 40] = np.nan  # and a gap in the key channel
    ref, _ = _key(source, x, abp, code=code)
    got, _ = _key(source, x, abp, code=code, chunk=chunk)
    assert sum(r["valid"] for r in ref) > 20 and any(not r["valid"] for r in ref)
    assert _rows_equal(got, ref), (len(got), len(ref))


# ============================================================================ end to end
def _edgebp(*args, cwd):
    p = subprocess.run([sys.executable, "-m", "edgebp", *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert p.returncode == 0, (args, p.stderr[-3000:])
    return p


def _beat_rows_check(beats: dict):
    """The beats file's rows: every field present; invalid rows without values and with a
    reason; valid rows with values."""
    for k in ("t", "sbp", "dbp", "map", "hr", "valid", "reason"):
        assert k in beats and len(beats[k]) == len(beats["t"]), k
    v = beats["valid"]
    assert np.isnan(beats["sbp"][~v]).all() and np.isnan(beats["dbp"][~v]).all() and np.isnan(beats["map"][~v]).all()
    assert all(r not in ("ok", "") for r in beats["reason"][~v])
    assert all(r == "ok" for r in beats["reason"][v])
    assert np.isfinite(beats["sbp"][v]).all() and (beats["sbp"][v] >= beats["dbp"][v]).all()


def test_cli_sim_run_score_synthetic(tmp_path):
    """`edgebp sim --source synth:3` (3 min) -> `edgebp run default` -> `edgebp score`.

    Measured (seed 1; same command, subjects 1, 2, 3, 5): valid beats vs the truth's valid
    beats -0.5 %, -0.9 %, -0.9 %, +0.6 % (the two beats of the 2 s warm-up are the invalid
    ones), mean heart rate runtime vs truth 64.7 vs 63.4, 73.3 vs 73.3, 74.2 vs 74.3, 62.2 vs
    60.4 bpm; paired 185/186, 216/216, 219/219, 177/180 valid beats. (Subject 5's PPG has
    artefacts that the |z| > 5 gate lets through: they key extra beats and lift its mean
    rate; subject 1's mean rate is 1.3 bpm high the same way.)
    Bounds (the issue's): count within 3 %, heart rate within 2 bpm; paired >= 90 %.
    """
    _edgebp("sim", "--source", "synth:3", "--minutes", "3", "--seed", "1", "--out", "serial.log", "--truth", "truth.csv",
            "--quiet", cwd=tmp_path)
    _edgebp("run", "default", "--stream", "serial.log", "--out", "bp.csv", cwd=tmp_path)
    _edgebp("score", "bp.csv", "truth.csv", "--summary", "score.json", cwd=tmp_path)
    s = json.loads((tmp_path / "score.json").read_text())["beats"]
    assert s["n_truth"] > 150
    pct = 100.0 * (s["n_runtime_valid"] - s["n_truth"]) / s["n_truth"]
    assert abs(pct) <= 3.0, s
    assert abs(s["hr"]["diff_bpm"]) <= 2.0, s["hr"]
    assert s["n_paired"] >= 0.9 * s["n_runtime_valid"], s
    from edgebp.firmware_sim.compare import runtime_beats_read

    _beat_rows_check(runtime_beats_read(tmp_path / "bp.csv"))


# Measured with this path (text protocol, seed 1, whole record, the default int8 bundle):
#   f362s: 358 valid beats (2 invalid: warm-up) vs 361 truth beats = -0.8 %; HR 72.46 vs 72.54
#   v648s: 352 vs 355 = -0.8 %; HR 71.65 vs 71.82 bpm; 352 / 352 paired
# Bounds: count within 2 % (2.5 x the measured), heart rate within 1 bpm (6 x), paired >= 95 %.
@pytest.mark.parametrize("name", ["f362s", "v648s"])
def test_real_validation_record_counts_and_heart_rate(shared_data, tmp_path, name, caplog):
    from edgebp.firmware_sim.score_cli import score_files
    from edgebp.firmware_sim.simulate import device_simulate, sim_source_load, sim_truth_write
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.runtime.run import OutputWriter, stream_process

    caplog.set_level(logging.ERROR)
    b = bundle_load("default")
    assert name in b.manifest["split"]["val"] and name not in b.manifest["split"]["test"]
    path = shared_data / "challenge2015" / name
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"record {path} not found")
    sim = device_simulate(sim_source_load(f"record:{path}"), fmt="text", seed=1)
    truth = tmp_path / "truth.csv"
    sim_truth_write(sim, truth)
    bp = tmp_path / "bp.csv"
    writer = OutputWriter(str(bp), ["test"])
    try:
        stream_process([sim.stream], b, StreamDecoder(), writer=writer)
    finally:
        writer.close()
    s = score_files(str(bp), str(truth))["beats"]
    pct = 100.0 * (s["n_runtime_valid"] - s["n_truth"]) / s["n_truth"]
    assert s["n_truth"] > 300 and abs(pct) <= 2.0, (name, pct, s["n_runtime_valid"], s["n_truth"])
    assert abs(s["hr"]["diff_bpm"]) <= 1.0, (name, s["hr"])
    assert s["n_paired"] >= 0.95 * s["n_runtime_valid"], s
    from edgebp.firmware_sim.compare import runtime_beats_read

    _beat_rows_check(runtime_beats_read(bp))


def test_beats_under_faults_are_invalid_or_absent(caplog):
    """Synthetic subject 3, 2 min, with a frozen front-end (flat), an ECG lead-off, a
    saturation of every channel and a 1.5 s dropped stretch. No valid beat may lie where an
    output's receptive field touches a fault: outputs at t see input up to t + 0.2 s (the
    model's look-ahead, delay 25 / 125 Hz) and back to t + 0.2 - 2.02 s (receptive field
    253 samples), so valid output is impossible in [start - 0.2 s, end + 1.8 s].
    Measured (seed 2): nearest valid beats 0.3-1.5 s before and 2.2-2.6 s after each fault;
    2-3 invalid rows (reasons gap, artefact) around each."""
    from edgebp.firmware_sim.compare import truth_axis
    from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
    from edgebp.runtime.bundle import bundle_load
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.runtime.run import stream_process

    caplog.set_level(logging.ERROR)
    faults = "flat@20s+3s,leadoff@45s+4s,saturate@70s+2s,drop@90s+1.5s"
    sim = device_simulate(sim_source_load("synth:3", minutes=2.1), fmt="binary", seed=2, minutes=2, faults=faults)
    s = stream_process([sim.stream], bundle_load("default"), StreamDecoder(), collect=True)
    rows = [r for o in s.pop("_outputs") for r in o.beats]
    for r in rows:
        assert set(BEAT_KEYS) <= set(r), r
        assert isinstance(r["valid"], bool) and r["reason"] in (("ok",) if r["valid"] else (*REASONS[1:], "rr", "end"))
        if not r["valid"]:
            assert np.isnan(r["sbp"]) and np.isnan(r["dbp"]) and np.isnan(r["map"])
    t = np.array([r["t"] for r in rows])
    valid = np.array([r["valid"] for r in rows])
    assert valid.sum() >= 100  # measured 120 of 131 rows: the rest of the stream is keyed normally
    axis_t, ticks = truth_axis(sim.truth, 250.0)
    bad = (sim.truth["fault_bits"][ticks] > 0).astype(int)
    edges = np.flatnonzero(np.diff(np.r_[0, bad, 0]))
    spans = [(axis_t[a], axis_t[b - 1]) for a, b in zip(edges[::2], edges[1::2])]
    assert len(spans) == 4, spans
    for a, b in spans:
        inside = (t >= a - 0.2) & (t <= b + 1.8)
        assert not valid[inside].any(), (a, b, t[inside & valid])
        assert (~valid & (t >= a - 1.0) & (t <= b + 3.0)).any(), (a, b)  # written as invalid, not only dropped
