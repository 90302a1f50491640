"""Does the streaming model give the same bits when stepped at a longer length than the runtime's?

The runtime steps the streaming ONNX at its chunk (25 model samples for the default bundle)
so that the outputs do not depend on how the stream was read. A longer step in bulk would
cost less per sample; this probe says what it would do to the outputs. For each bundle and
variant it runs random input (states carried, as the runtime does) at the chunk and at
multiples of it, with the input at unit scale (what the running normaliser aims at) and at
three times that (the R peaks and pulse upstrokes of real records reach it), and prints how
many outputs differ from the chunk-stepped run, by how much, and the CPU per device sample.

    python scripts/step_length_bits.py --multiples 2,10,50,400
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ("default_bundle", "lowlatency_bundle")


def stepped(session, x: np.ndarray, step: int) -> tuple[np.ndarray, float]:
    """Outputs over ``x`` (1, C, T) in calls of ``step`` samples, states carried; CPU seconds."""
    ins = session.get_inputs()
    states = [np.zeros(i.shape, np.float32) for i in ins[1:]]
    ys = []
    t0 = time.process_time()
    for a in range(0, x.shape[2], step):
        res = session.run(None, {ins[0].name: x[:, :, a:a + step], **{i.name: s for i, s in zip(ins[1:], states)}})
        ys.append(np.asarray(res[0]).reshape(-1))
        states = res[1:]
    return np.concatenate(ys), time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--multiples", default="2,10,50,400", help="step lengths as multiples of the chunk")
    ap.add_argument("--steps", type=int, default=400, help="chunks of input per run")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    multiples = [int(m) for m in a.multiples.split(",")]
    for bdir in BUNDLES:
        root = ROOT / "edgebp" / "assets" / bdir
        m = json.loads((root / "manifest.json").read_text())
        chunk = int(m["streaming"]["chunk"])
        fs_dev_per_model = 2.0  # device samples per model sample at the default 250 Hz device rate
        for variant, key in sorted(m["streaming"]["file_keys"].items()):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            s = ort.InferenceSession(str(root / f"model_{key}.onnx"), so, providers=["CPUExecutionProvider"])
            for scale in (1.0, 3.0):
                rng = np.random.default_rng(a.seed)
                x = (scale * rng.standard_normal((1, len(m["inputs"]), chunk * a.steps))).astype(np.float32)
                ref, t_ref = stepped(s, x, chunk)
                for k in multiples:
                    y, t = stepped(s, x, chunk * k)
                    d = np.abs(y - ref)
                    print(f"{bdir} {variant} scale {scale:g}: step {chunk * k} vs {chunk}: {int((d > 0).sum())} of {d.size} outputs differ "
                          f"(max {float(d.max()):.3g}); CPU {1e6 * t / (fs_dev_per_model * x.shape[2]):.2f} vs "
                          f"{1e6 * t_ref / (fs_dev_per_model * x.shape[2]):.2f} us per device sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
