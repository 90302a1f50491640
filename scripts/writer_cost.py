"""What writing the CSV outputs costs on the live path: edgebp run's writer against the former
np.char formatting (which also flushed after every packet), and against no writer at all.

The 2-minute log in 20 ms packets (5 samples) through ``stream_process`` with the writer a
live ``edgebp run --out bp.csv`` uses (flushed after every block with rows), 7 alternating
rounds, CPU per device sample; the two writers' files must be identical.

    python scripts/writer_cost.py serial.log
"""
import sys
import time, tempfile, statistics as S, numpy as np
from edgebp.runtime.bundle import bundle_load
from edgebp.bench.live import log_packets
from edgebp.runtime.protocol import StreamDecoder
from edgebp.runtime.run import stream_process, OutputWriter, _finite_valid, beat_csv_row
from edgebp.runtime.engine import REASONS
class OldWriter(OutputWriter):
    def _write(self, out):
        if len(out.t):
            valid, reason = _finite_valid(out)
            reasons = np.asarray(REASONS, dtype=object)[reason]
            abp_s = np.where(valid, np.char.mod("%.2f", np.nan_to_num(out.abp)), "")
            rows = np.char.add(np.char.add(np.char.add(np.char.mod("%.4f,", out.t), abp_s), np.where(valid, ",1,", ",0,")), reasons.astype(str))
            self.f.write("\n".join(rows.tolist()) + "\n")
        if out.beats:
            self.fb.write("".join(beat_csv_row(b) + "\n" for b in out.beats))
        if self.flush_s is not None and time.monotonic() - self._flushed_at >= self.flush_s:
            self.flush()
b = bundle_load("default")
data = open(sys.argv[1], "rb").read()
ch = log_packets(data, 5)
n = sum(1 for ln in data.splitlines() if ln and not ln.startswith(b"#"))
def once(cls):
    with tempfile.TemporaryDirectory() as tmp:
        wr = cls(f"{tmp}/o.csv", ["x"], flush_s=0.0) if cls else None
        t = time.process_time()
        stream_process(iter(ch), b, StreamDecoder(fmt="auto"), writer=wr, collect=cls is None)
        if wr: wr.close()
        c = time.process_time() - t
        txt = open(f"{tmp}/o.csv").read() if cls else None
        return c / n * 1e6, txt
once(None)
r = {"none": [], "old": [], "new": []}; texts = {}
for i in range(7):
    for k, cls in (("none", None), ("old", OldWriter), ("new", OutputWriter)):
        us, txt = once(cls); r[k].append(us); texts[k] = txt
for k, v in r.items(): print(k, f"median {S.median(v):.1f} [min {min(v):.1f}]")
print("new/old", round(S.median([a / c for a, c in zip(r["new"], r["old"])]), 3), "files identical", texts["old"] == texts["new"])
import os; print("load", os.getloadavg())
