"""A plain reference for the live path's cost: what the shortest honest script would do.

numpy decodes the text log in one call, scipy resamples (``resample_poly``) and band-passes
(``sosfilt``) each channel, a running z-score is two ``lfilter`` passes, and ONNX Runtime runs
the bundle's external-state streaming model in blocks of ``step`` samples, carrying its
state. No gap, reset, duplicate, flat, clipped or artefact handling, no accounting, no beats:
it only shows what the numerics cost, so that ``edgebp run`` can be measured against it
(``edgebp bench --parts live``). The outputs are not comparable to edgebp's (no warm start,
no gates); only the CPU time is.

Run by hand::

    python -m edgebp.bench.plain_reference serial.log --bundle default --variant int8
    python scripts/plain_reference.py serial.log          # the same
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def plain_decode(data: bytes) -> tuple[float, np.ndarray, np.ndarray]:
    """(fs, gain per channel, values (n, n_ch) in physical units) of a clean edgebp text log."""
    head, _, body = data.partition(b"\n")
    fields = dict(f.split("=", 1) for f in head.decode().split()[1:] if "=" in f)
    fs = float(fields["fs"])
    gain = np.array([float(g) for g in fields["gain"].split(",")])
    offset = np.array([float(o) for o in fields["offset"].split(",")])
    n_ch = len(gain)
    raw = np.fromstring(body.replace(b"\n", b","), dtype=np.int64, sep=",")  # noqa: NPY201 - the fastest text path numpy has
    raw = raw[: raw.size // (n_ch + 1) * (n_ch + 1)].reshape(-1, n_ch + 1)
    return fs, gain, (raw[:, 1:] - offset) * gain


def plain_run(data: bytes, model_path: str, chains: list[dict], states: list[dict], fs_model: float, step: int,
              threads: int = 1) -> np.ndarray:
    """The numerics of the live path with nothing else: returns the model's (normalised) output."""
    import onnxruntime as ort
    from scipy.signal import butter, lfilter, resample_poly, sosfilt

    fs, _, values = plain_decode(data)
    up, down = int(fs_model), int(fs)
    g = np.gcd(up, down)
    rows = []
    for j, c in enumerate(chains):
        x = resample_poly(values[:, j], up // g, down // g)
        lo, hi = c.get("highpass_hz"), c.get("lowpass_hz")
        if lo and hi:
            x = sosfilt(butter(c.get("filter_order", 2), [lo, hi], btype="bandpass", fs=fs_model, output="sos"), x)
        a = 1.0 / (float(c.get("norm_tau_s", 4.0)) * fs_model)
        mean = lfilter([a], [1, a - 1], x)
        var = lfilter([a], [1, a - 1], (x - mean) ** 2)
        rows.append((x - mean) / np.sqrt(var + 1e-12))
    X = np.asarray(rows, np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    names = [s["name"] for s in states]
    st = [np.zeros(s["shape"], np.float32) for s in states]
    inp = sess.get_inputs()[0].name
    out = []
    n = X.shape[1] // step * step
    for i in range(0, n, step):
        res = sess.run(None, {inp: X[None, :, i:i + step]} | dict(zip(names, st)))
        out.append(res[0].reshape(-1))
        st = res[1:]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def plain_measure(log_path: str, bundle: str = "default", variant: str = "int8", threads: int = 1, step: int | None = None) -> dict:
    """CPU seconds (``time.process_time``) of :func:`plain_run` on a log, and per device sample
    (reading the file and the imports not counted; the session's creation counted, as in
    ``edgebp run``)."""
    from edgebp.runtime.bundle import bundle_load

    b = bundle_load(bundle)
    m = b.manifest
    st = m["streaming"]
    data = open(log_path, "rb").read()
    chains = [m["preprocessing"][c] for c in m["inputs"]]
    step = int(step or st["chunk"])
    path = str(b.file(st["file_keys"][variant]))
    import onnxruntime  # noqa: F401 - imports are not part of the cost (edgebp's are not timed either)
    import scipy.signal  # noqa: F401

    t0 = time.process_time()
    y = plain_run(data, path, chains, st["states"], float(m["fs"]), step, threads)
    cpu = time.process_time() - t0
    n = data.count(b"\n") - data[: data.find(b"\n") + 1].count(b"\n")
    return {"variant": variant, "step": step, "cpu_seconds": cpu, "device_samples": n, "per_sample_us": cpu / n * 1e6 if n else None,
            "outputs": int(y.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.plain_reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="An edgebp text log (edgebp sim --format text).")
    ap.add_argument("--bundle", default="default")
    ap.add_argument("--variant", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--step", type=int, default=None, help="Model samples per ONNX Runtime call [default: the runtime's step].")
    a = ap.parse_args(argv)
    print(json.dumps(plain_measure(a.log, a.bundle, a.variant, a.threads, a.step), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
