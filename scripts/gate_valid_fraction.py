"""Share of outputs the gates call valid on clean real records (default bundle, int8 streaming).

docs/reliability.md quotes this before and after a gate change: a new gate that catches a
simulated fault must not gate clean ICU recordings much more than before. Run from the repo root:

    .venv/bin/python scripts/gate_valid_fraction.py --seconds 120

Prints per record the valid fraction, the longest run of identical samples per input channel
(what the stuck rule reacts to) and the reasons counted by the runtime.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from edgebp.io import read_record
from edgebp.paths import shared_data_dir
from edgebp.runtime.bundle import bundle_load
from edgebp.runtime.stream_score import record_device_samples, stream_record
from edgebp.train.data import _record_crop

# the default bundle's test split minus a382s (its ABP is unusable from the start)
TEST_RECORDS = "a527l,a555l,a556s,a651l,b455l,b456s,b485l,v140s,v255l,v292s,v293l,v437l,v466s"


def _longest_repeat(x: np.ndarray) -> int:
    change = np.flatnonzero(np.r_[True, x[1:] != x[:-1], True])
    return int(np.diff(change).max()) if len(x) else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default=TEST_RECORDS, help="comma-separated challenge2015 record names")
    ap.add_argument("--seconds", type=float, default=120.0, help="first seconds of each record")
    ap.add_argument("--bundle", default="default")
    a = ap.parse_args()
    logging.disable(logging.WARNING)
    bundle = bundle_load(a.bundle)
    tot_v = tot_n = 0
    for name in a.records.split(","):
        rec = _record_crop(read_record(shared_data_dir() / "challenge2015" / name), a.seconds)
        vals, _ = record_device_samples(rec, bundle.inputs)
        runs = [_longest_repeat(vals[:, j]) for j in range(vals.shape[1])]
        s = stream_record(bundle, rec)
        v = s["valid"]
        tot_v += int(v.sum())
        tot_n += len(v)
        reasons = " ".join(f"{k}={n}" for k, n in s["stats"]["reasons"].items() if n)
        print(f"{name}: valid {v.mean():.4f} of {len(v)}; longest repeat per input {runs}; {reasons}", flush=True)
    print(f"all: valid {tot_v / max(tot_n, 1):.4f} of {tot_n}")


if __name__ == "__main__":
    main()
