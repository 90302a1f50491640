"""The live soak, short: 20 simulated minutes of a device stream (faults, a cuff reading every
3 s) through the real runtime (``edgebp.bench.soak``); every container reachable from the
stream's runtime and decoder must stop growing after the 10-minute mark. Sizes, not timing."""

from __future__ import annotations

import numpy as np
import pytest

from edgebp.bench.soak import container_sizes, growing, soak_run
from edgebp.runtime.calibrated import HISTORY_KEEP


@pytest.fixture(scope="module")
def soak():
    seen = {}

    def on_sample(t_s, rt, dec):
        if rt is not None:
            # an unbounded list planted on the real runtime: the audit must name it
            rt._planted = list(range(int(t_s)))
            seen["rt"] = rt

    import sys

    torch_before = "torch" in sys.modules  # other tests in this pytest process may have loaded it
    res = soak_run(20 / 60, packet=250, cuff_every_s=3.0, sample_every_s=60.0, on_sample=on_sample)
    res["torch_loaded_by_soak"] = res["torch_loaded"] and not torch_before
    return res, seen["rt"]


def test_every_per_stream_container_stays_bounded(soak):
    res, rt = soak
    grew = res["growing_containers"]
    # the planted list is found (the audit can fail), and it is the only grower
    assert "rt._planted" in grew, grew
    assert set(grew) == {"rt._planted"}, grew
    # what is walked covers the runtime's state: model states, the keyer, the estimator, the decoder
    sizes = container_sizes(rt, "rt")
    assert any(k.startswith("rt.states") for k in sizes) and any(k.startswith("rt.keyer") for k in sizes)
    assert any(k.startswith("rt.estimator") for k in sizes)
    # the calibration history is a ring: 400 readings offered, the latest HISTORY_KEEP kept
    acc = res["accounting"]
    assert acc["cuff_readings"] > HISTORY_KEEP * 2
    assert acc["calibration_history_kept"] == HISTORY_KEEP
    assert len(rt.estimator.history) == HISTORY_KEEP and rt.estimator.readings_applied >= acc["cuff_readings"] - 1
    # the step latencies kept for the summary are a bounded ring too
    assert rt.stats["step_latency_s"].maxlen is not None


def test_soak_accounts_for_every_sample(soak):
    res, _ = soak
    acc = res["accounting"]
    n = acc["samples_parsed"] + acc["samples_missing"]
    assert abs(n / 250.0 - 20 * 60) < 2.0, n  # 20 minutes of the device's 250 Hz, every sample placed
    assert acc["outputs"] == res["outputs"]["rows"] and res["outputs"]["beats"] > 0
    assert acc["samples_rejected"] > 0  # the faults reached the decoder and were counted, the stream went on
    assert len(res["rss_series"]) >= 20 and not res["torch_loaded_by_soak"]


def test_growth_rule_separates_a_ring_from_a_list():
    ts = np.arange(0, 1300, 60.0)
    ring = [{"t_s": t, "sizes": {"ring": int(min(t, 300)), "list": int(t / 2)}} for t in ts]
    assert set(growing(ring)) == {"list"}
