"""Reads cut mid-line through the one-pass text decoder, against the former rule (whole-line
reads only, restored here by a wrapper), alternating in one process: CPU per device sample and
the outputs' hash for reads of 81, 87 and 200 bytes.

    python scripts/cut_reads_ab.py serial.log
"""
import sys

import statistics as S, os
from edgebp.runtime.bundle import bundle_load
from edgebp.bench.live import live_once
import edgebp.runtime.protocol_text as pt
b = bundle_load("default")
data = open(sys.argv[1], "rb").read()
new = pt.TextParser.packet
def old(self, data):
    if self.buf or data[-1:] != b"\n":
        return None
    return new(self, data)
res = {}; dig = set()
for size in (81, 87, 200):
    ch = [data[i:i + size] for i in range(0, len(data), size)]
    live_once(b, ch[:2000])
    for r in range(5):
        for lab, f in (("before", old), ("after", new)):
            pt.TextParser.packet = f
            o = live_once(b, ch); dig.add(o["digest"])
            res.setdefault((size, lab), []).append(1e6 * o["cpu_seconds"] / o["device_samples"])
    pt.TextParser.packet = new
    rr = [a / c for a, c in zip(res[(size, "after")], res[(size, "before")])]
    print(f"{size}-byte reads: before {S.median(res[(size,'before')]):.1f}, after {S.median(res[(size,'after')]):.1f} us/sample; after/before {S.median(rr):.2f} [{min(rr):.2f}-{max(rr):.2f}]")
print("digests", dig, "load", os.getloadavg())
