"""The firmware's preprocessing on the simulated device's own samples, against the runtime's
(the figure of docs/firmware.md, "The preprocessor")::

    python -m edgebp.firmware_sim.device_bp_check --source synth:3 --seconds 30

Simulates the device (no faults), turns its codes into physical units as the gateway's
decoder does, generates the firmware for the default bundle into a temporary directory,
builds it with gcc, and compares the C preprocessor (harness mode ``pre``) with the
runtime's float64 chain (the model inputs of ``StreamRuntime``) past the first
``--skip`` model samples; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def measure(source: str = "synth:3", seconds: float = 30.0, skip: int = 500) -> dict[str, Any]:
    from edgebp.firmware_sim.cgen import firmware_generate
    from edgebp.firmware_sim.cgen_check import CFLAGS, harness, runtime_stream
    from edgebp.firmware_sim.simulate import device_simulate, sim_source_load
    from edgebp.runtime.bundle import bundle_load

    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found on PATH")
    bundle = bundle_load("default")
    rec = sim_source_load(source, minutes=seconds / 60.0)
    res = device_simulate(rec, fmt="binary", minutes=seconds / 60.0)
    names = [c.name for c in res.channels]
    cols = []
    for name in bundle.inputs:
        ch = res.channels[names.index(name)]
        cols.append((res.truth[f"{name}_code"].astype(np.float64) - ch.offset) * ch.gain)
    vals = np.stack(cols, axis=1)
    fs = float(res.summary["fs"])
    r = runtime_stream(bundle, vals, fs, "ORT_ENABLE_ALL")
    x_rt = np.concatenate([x.T for x in r["x"]])  # (model samples, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        firmware_generate("default", work, device_fs=fs)
        subprocess.run([gcc, *CFLAGS, "-o", "edgebp_harness", "edgebp_harness.c", "edgebp.c", "edgebp_model.c", "-lm"],
                       cwd=work, check=True, capture_output=True)
        x_c = harness(work / "edgebp_harness", "pre", vals, work, np.float32).reshape(-1, len(bundle.inputs))
    n = min(len(x_rt), len(x_c))
    d = np.abs(x_rt[skip:n].astype(np.float64) - x_c[skip:n])
    return {"source": source, "seconds": seconds, "device_fs": fs, "model_samples_compared": int(n - skip),
            "inputs": list(bundle.inputs),
            "pre_delta_max": {c: float(d[:, j].max()) for j, c in enumerate(bundle.inputs)},
            "pre_delta_median": {c: float(np.median(d[:, j])) for j, c in enumerate(bundle.inputs)}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="synth:3")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--skip", type=int, default=500, help="model samples of warm-up left out")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(measure(a.source, a.seconds, a.skip), indent=2))


if __name__ == "__main__":
    main()
