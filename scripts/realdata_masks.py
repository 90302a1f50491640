"""Which quality mask makes a real record unusable: per record, the usable share of each
channel's own mask (ABP, ECG, PPG) on the model's time base, and, for the records the trainer
skipped with "less than 10 s usable", which of the three masks is the tightest.

Usage: .venv/bin/python scripts/realdata_masks.py DATA_DIR RUN_DIR [--out masks.json]
(RUN_DIR: a run trained on DATA_DIR with inputs ppg,ecg; its split.json names the skipped records)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from edgebp.io import read_records
from edgebp.processing.chain import preprocess_record
from edgebp.processing.quality import abp_quality, ecg_quality, ppg_quality
from edgebp.train.data import _mask_to_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("run")
    ap.add_argument("--fs", type=float, default=125.0)
    ap.add_argument("--out", default=None, help="write the per-record shares here (JSON)")
    args = ap.parse_args()
    fs = args.fs
    rows = {}
    for rec in read_records(Path(args.data)):
        r = {"ppg": rec.has("ppg"), "abp": rec.has("abp")}
        if rec.has("abp"):
            _, abp = preprocess_record(rec, inputs=("ecg",), fs_out=fs)
            n = len(abp)
            r["abp_q"] = float(abp_quality(abp, fs).mask[:n].mean())
            ecg = rec.get("ecg")
            r["ecg_q"] = float(_mask_to_rate(np.asarray(ecg_quality(ecg.signal, ecg.fs).mask, bool), ecg.fs, fs, n).mean())
            if rec.has("ppg"):
                ppg = rec.get("ppg")
                q = ppg_quality(ppg.signal, ppg.fs, ecg=ecg.signal, ecg_fs=ecg.fs)
                r["ppg_q"] = float(_mask_to_rate(np.asarray(q.mask, bool), ppg.fs, fs, n).mean())
                r["ppg_reasons_s"] = {k: round(int(v) / ppg.fs, 1) for k, v in q.reasons.items() if v}
        rows[rec.record_id] = r
    split = json.loads((Path(args.run) / "split.json").read_text())
    short = [rid for rid, why in split["skipped"] if why.startswith("less than 10 s")]
    tight = Counter(min(("abp", "ecg", "ppg"), key=lambda k: rows[rid].get(f"{k}_q", 1.0)) for rid in short)
    out = {
        "records": len(rows),
        "without_ppg": sum(not r["ppg"] for r in rows.values()),
        "without_abp": sum(not r["abp"] for r in rows.values()),
        "abp_usable_below_10pct": sum(r.get("abp_q", 0.0) < 0.1 for r in rows.values()),
        "skipped_less_than_10s": len(short),
        "skipped_less_than_10s_tightest_mask": dict(tight),
        "skipped_ppg_reasons_s_total": dict(sum((Counter(rows[rid].get("ppg_reasons_s", {})) for rid in short if tight and rows[rid].get("ppg_q", 1) < 0.1), Counter())),
    }
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
