"""The fault matrix: every fault the simulator supports x both wire formats, through the real
decoder, runtime and ONNX Runtime session, scored against the simulator's truth.

Per run (a 24 s simulated stream, one fault at 10 s), three properties:

- accounting: every sample in is accounted for (parsed + rejected + missing = what reached
  the wire + the unsent frames a gap reveals; one output row per two device samples on the
  axis; every output is valid or carries exactly one reason);
- no valid claims during a signal fault (saturation, rail or flat lead-off, flat) or a lost
  stretch, and >= 90 % of a motion burst's outputs refused;
- recovery: valid output resumes at most 2 s after the fault ends (the floor is the model's
  receptive field minus its look-ahead, 2.02 - 0.20 = 1.82 s), motion included here (see the
  constant below for the runs where it is not).

Absurd input (a CSV cell of 1e308, a 1e6 in a millivolt column) is a run of its own: it is
gated as ``range``, and the outputs are the same bits as with that sample missing (the
normaliser and filter never learn from it), so later outputs recover exactly.

The bundle is the shipped default (edge-tcn, ECG + PPG, int8 streaming model): one load for
the module. Source: subject 5 of the synthetic cohort (seed 0).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgebp.firmware_sim.truth import truth_frames_invisible
from edgebp.firmware_sim.compare import RuntimeOutput, runtime_truth_compare
from edgebp.firmware_sim.device import DeviceConfig
from edgebp.firmware_sim.faults import FAULT_NAMES
from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
from edgebp.runtime import protocol
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.engine import REASONS
from edgebp.runtime.run import stream_process

FS = 250.0
MINUTES = 0.4  # 24 s: 2 s of warm-up, the fault at 10 s, more than 3 s of clean signal after it
RESUME_S = 2.0
# Motion: the gate's short-term power falls with release_s (0.05 s) after the burst's 0.1 s
# fade-out; this run (synth:5, seed 1, a 4 s burst) resumes after 1.82 s, the floor, in both
# formats (2.37 s with the symmetric 0.3 s power before). Over 96 other runs (subjects 1-8 x
# seeds 1-3 x bursts of 1-5 s, scripts/motion_gate.py) the resume is at most 2.29 s: the
# 2 s goal holds here, not for every burst (docs/reliability.md 2).
RESUME_MOTION_S = RESUME_S
MOTION_CATCH = 0.90

# every fault of edgebp.firmware_sim.faults, one scheduled event each (per-frame faults also
# at a low random rate, bridged by the runtime's interpolation)
SPECS = {
    "drop": ("drop=0.002,drop@10s+2s", {}),
    "corrupt": ("corrupt=0.002,corrupt@10s+1s", {}),
    "truncate": ("truncate=0.002,truncate@10s+1s", {}),
    "dup": ("dup=0.02", {}),
    "reset": ("reset@10s", {}),
    "saturate": ("saturate@10s+2s", {}),
    "leadoff": ("leadoff@10s+3s", {}),
    "leadoff_flat": ("leadoff@10s+3s", {"leadoff_mode": "flat"}),
    "motion": ("motion@10s+4s", {}),
    "flat": ("flat@10s+3s", {}),
}
KIND = {"drop": ("lost", "dropped"), "corrupt": ("lost", "corrupted"), "truncate": ("lost", "truncated"),
        "reset": ("reset", "reset"), "saturate": ("signal", "saturate"), "leadoff": ("signal", "leadoff"),
        "leadoff_flat": ("signal", "leadoff"), "motion": ("motion", "motion"), "flat": ("signal", "flat")}


def test_matrix_covers_every_simulated_fault():
    assert {s.split("_")[0] for s in SPECS} == set(FAULT_NAMES)


@pytest.fixture(scope="module")
def bundle():
    return bundle_load("default")


@pytest.fixture(scope="module")
def source():
    return sim_source_load("synth:5", minutes=MINUTES)


def _run(bundle, data: bytes, decoder, block: int = 4096):
    s = stream_process((data[i:i + block] for i in range(0, len(data), block)), bundle, decoder, collect=True)
    outs = s.pop("_outputs")
    cat = lambda k: np.concatenate([getattr(o, k) for o in outs])  # noqa: E731
    return s, cat("t"), cat("abp"), cat("valid"), cat("reason")




@pytest.mark.parametrize("fmt", ["binary", "text"])
@pytest.mark.parametrize("fault", list(SPECS))
def test_fault_matrix(bundle, source, fault, fmt, caplog):
    caplog.set_level(logging.ERROR)  # the decoder warns about every rejected record
    spec, dev = SPECS[fault]
    sim = device_simulate(source, cfg=DeviceConfig(**dev), fmt=fmt, seed=1, minutes=MINUTES, faults=spec)
    S, T = sim.summary, sim.truth
    s, t, abp, valid, reason = _run(bundle, sim.stream, protocol.StreamDecoder())
    d = s["decoder"]
    res = runtime_truth_compare(RuntimeOutput(t, abp, valid), T, FS, recover_window_s=RESUME_S)

    # --- accounting (as tests/test_roundtrip.py: exact for binary frames; a text line whose
    # corruption or truncation changed its line structure shifts the sum by one each way)
    frames_on_wire = int(np.sum(np.isin(T["status"], ["emitted", "corrupted", "truncated"])))
    unsent_seen = S["frames_generated"] - frames_on_wire - truth_frames_invisible(T)
    reframed = sum(c.count(b"\n") != 1 for c in sim.chunks) if fmt == "text" else 0
    counted = d["samples_parsed"] + d["samples_rejected"] + d["samples_missing"]
    assert abs(counted - (S["copies_on_wire"] + unsent_seen)) <= reframed
    assert d["duplicates_dropped"] == S["duplicates_intact"] and d["resets"] == S["resets"]
    on_axis = counted - d["duplicates_dropped"]
    assert abs(on_axis - res["axis"]["ticks"]) <= reframed
    assert abs(s["outputs"] - res["axis"]["ticks"] / 2) <= 0.5 * (S["resets"] + 1) and s["outputs"] == len(t)
    # every output is either valid or carries exactly one reason, and the counts add up
    assert np.all(valid == (reason == 0)) and np.all(np.isfinite(abp) == valid)
    assert s["valid"] + sum(s["invalid_reasons"].values()) == s["outputs"]
    assert {REASONS[r]: int((reason == r).sum()) for r in range(1, len(REASONS))} == s["invalid_reasons"]

    # --- behaviour during and after the fault, on the output's time axis
    faults = res["faults"]
    cls, kind = KIND.get(fault, (None, None))
    if fault == "dup":
        assert faults == [] and d["duplicates_dropped"] > 0
        return
    hits = [f for f in faults if f["class"] == cls and kind in f["kinds"] and f["judged"]]
    assert len(hits) == 1, faults
    for f in faults:
        if f["class"] in ("signal", "lost"):
            assert f["claimed_valid_during"] == 0, f  # refused, not invented
        if f["judged"] and f["class"] != "motion":
            assert f["resume_s"] is not None and f["resume_s"] <= RESUME_S, f
    f = hits[0]
    if fault == "motion":
        assert f["outputs_during"] > 400  # a 4 s burst: 500 outputs at 125 Hz
        assert 1.0 - f["claimed_valid_during"] / f["outputs_during"] >= MOTION_CATCH, f
        assert f["resume_s"] is not None and f["resume_s"] <= RESUME_MOTION_S, f
        assert s["invalid_reasons"]["artefact"] > 0
    if fault in ("saturate", "leadoff"):
        assert s["invalid_reasons"]["clipped"] > 0
    if fault in ("flat", "leadoff_flat"):
        # a frozen channel (all of them, or the ECG alone at mid-scale) is "flat" within stuck_s
        assert s["invalid_reasons"]["flat"] > 0


# ----------------------------------------------------------------------------- absurd values
def _csv(vals: np.ndarray, cells: dict[tuple[int, int], str] | None = None) -> bytes:
    """The decoded physical values (mV, NU) as a CSV log with a header row: no ADC known."""
    rows = [["%.9g" % v for v in r] for r in vals]
    for (i, j), text in (cells or {}).items():
        rows[i][j] = text
    return ("ecg,ppg\n" + "\n".join(",".join(r) for r in rows) + "\n").encode()


@pytest.fixture(scope="module")
def physical():
    # 40 s: the absurd value at 10 s, and the outputs 15-30 s after it compared to a clean run
    sim = device_simulate(sim_source_load("synth:5", minutes=40 / 60), fmt="binary", seed=1, minutes=40 / 60)
    blocks = list(protocol.decode_stream([sim.stream]))
    return np.concatenate([b.values for b in blocks])


@pytest.mark.parametrize("cell,col", [("1e308", 1), ("1e6", 0), ("-1e12", 1)], ids=["1e308-ppg", "1e6-mV-ecg", "-1e12-ppg"])
def test_absurd_csv_value_is_a_gated_gap_and_the_chain_recovers(bundle, physical, cell, col, caplog):
    caplog.set_level(logging.ERROR)
    at = int(10 * FS)
    dec = lambda: protocol.StreamDecoder("csv", fs=FS)  # noqa: E731
    s0, t0, a0, v0, r0 = _run(bundle, _csv(physical), dec())
    s1, t1, a1, v1, r1 = _run(bundle, _csv(physical, {(at, col): cell}), dec())
    s2, t2, a2, v2, r2 = _run(bundle, _csv(physical, {(at, col): "nan"}), dec())
    # a CSV log in physical units has no known ADC step: only an exactly constant input is
    # flat (with gain 1 taken as the step, 99.8 % of such a log was "flat")
    assert s0["invalid_reasons"]["flat"] == 0 and s0["valid_share"] > 0.85
    assert s1["invalid_reasons"]["range"] > 0 and s1["decoder"]["samples_parsed"] == len(physical)
    # the absurd sample is exactly a missing one: the same outputs, bit for bit
    assert np.array_equal(v1, v2) and np.array_equal(np.nan_to_num(a1), np.nan_to_num(a2))
    # no claim over it; valid again within the receptive field after it; and later outputs
    # match the clean run (before the fix: variance inf for ever, outputs off by up to 65 mmHg)
    k = np.searchsorted(t1, at / FS)
    # outputs whose receptive field holds it: from the model's look-ahead (0.2 s) before it
    hit = (t1 >= at / FS - 0.19) & (t1 <= at / FS + 1.5)
    assert not v1[hit].any()
    resume = t1[np.flatnonzero(v1[k:])[0] + k] - at / FS
    assert resume <= RESUME_S
    # a one-sample gap's transient decays with the normaliser (tau 4 s): measured max
    # |difference| 10-20 s after it 2.7 mmHg, 20-30 s after it 0.000 mmHg (before the fix
    # the variance stayed inf: outputs "valid" and off by up to 65 mmHg for ever)
    diff = np.abs(a1 - a0)
    w1 = v0 & v1 & (t1 > at / FS + 10.0) & (t1 <= at / FS + 20.0)
    w2 = v0 & v1 & (t1 > at / FS + 20.0)
    assert w1.sum() > 500 and w2.sum() > 500
    assert diff[w1].max() < 6.0 and diff[w2].max() < 0.5


def test_text_stream_value_outside_the_adc_range_is_rejected(bundle, source, caplog):
    """An edgebp text stream names its converters: a code outside ``bits`` is rejected by the
    decoder (counted, on the time axis as missing), never passed on as a signal."""
    caplog.set_level(logging.ERROR)
    sim = device_simulate(source, fmt="text", seed=1, minutes=MINUTES)
    lines = sim.stream.split(b"\n")
    i = next(q for q, ln in enumerate(lines) if ln and not ln.startswith(b"#") and q > 2500)
    parts = lines[i].split(b",")
    parts[-1] = b"99999999999"  # far outside an 18-bit PPG code
    lines[i] = b",".join(parts)
    s, t, abp, valid, reason = _run(bundle, b"\n".join(lines), protocol.StreamDecoder())
    d = s["decoder"]
    assert d["samples_rejected"] == 1 and d["rejected_reasons"].get("range") == 1
    assert d["samples_parsed"] + d["samples_rejected"] == sim.summary["frames_intact"]
    assert abs(s["outputs"] - sim.summary["ticks"] / 2) <= 0.5
