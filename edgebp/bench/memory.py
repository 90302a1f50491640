"""Model sizes and the microcontroller budget (``edgebp budget``) of every model file in a bundle.

Examples
--------
>>> describe_bytes(1536)
'1.5 KiB'
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgebp.runtime.bundle import Bundle

log = logging.getLogger(__name__)

#: The device class the bench checks against (``edgebp budget --mcu``): a Cortex-M4F.
DEFAULT_MCU = "nrf52832"


def describe_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    # binary units, as everywhere in edgebp (the values were always divided by 1024)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def onnx_params(path: str | Path) -> int:
    """Number of weight elements in an ONNX file (initialisers, float and integer alike, minus
    scalar quantisation parameters)."""
    import numpy as np
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in m.graph.initializer if len(t.dims) > 0 and int(np.prod(t.dims)) > 1))


def bundle_files(bundle: Bundle) -> dict:
    """Every model file of a bundle: path, bytes, parameters.

    ``params`` is the model's parameter count from the manifest; for the pruned models, which
    have fewer, it is counted in the fp32 pruned graph. ``onnx_elements`` counts every weight
    tensor in the file as stored (an int8 file adds per-channel scales and zero points)."""
    m = bundle.manifest
    out = {}
    pruned_params = None
    if bundle.has("pruned"):
        pruned_params = onnx_params(bundle.file("pruned"))
    for key, rel in m["files"].items():
        p = bundle.path / rel
        if p.suffix != ".onnx" or not p.exists():
            continue
        params = pruned_params if key.startswith("pruned") else m["model"].get("params")
        out[key] = {"file": rel, "bytes": p.stat().st_size, "params": params, "onnx_elements": onnx_params(p)}
    return out


def budget_measure(bundle: Bundle, mcu: str = DEFAULT_MCU, bundle_shown: str | None = None) -> dict:
    """``edgebp budget`` figures for the bundle's deployable models on one MCU.

    The window models run at the manifest's window and hop; the streaming model (when there
    is one) at its chunk with its state inputs. Each entry carries the ``edgebp budget``
    command that reproduces it.

    Returns
    -------
    dict
        ``mcu`` (the profile), ``models``: key -> budget (weights, RAM, MACs/s, duty cycle,
        pass/fail per resource, command), or ``{"skipped": reason}``.
    """
    from edgebp.firmware_sim.budget import mcu_check, onnx_budget
    from edgebp.firmware_sim.mcu_profiles import mcu_profile

    m = bundle.manifest
    prof = mcu_profile(mcu)
    shown = bundle_shown or str(bundle.path)
    out: dict = {"mcu": prof.to_dict(), "models": {}}
    jobs = []
    for key in ("int8", "fp32", "pruned", "pruned_int8"):
        if bundle.has(key):
            jobs.append((key, bundle.file(key), float(m["fs"]), int(m["hop"]), int(m["window"]), None))
    st = m.get("streaming") or {}
    for v, key in (st.get("file_keys") or {}).items():
        jobs.append((key, bundle.file(key), float(m["fs"]), int(st["chunk"]), int(st["chunk"]), [s["name"] for s in st.get("states", [])]))
    for key, path, fs, hop, window, states in jobs:
        cmd = f"edgebp budget {shown}/{path.name} --fs {fs:g} --hop {hop} --window {window} --mcu {prof.name} --json"
        if states and not all(s.startswith("state") for s in states):  # edgebp budget finds state* inputs itself
            cmd += "".join(f" --state-input {s}" for s in states)
        try:
            b = onnx_budget(path, fs=fs, hop=hop, window=window, state_inputs=states)
            c = mcu_check(b, prof)
        except Exception as exc:  # noqa: BLE001 - one unreadable graph must not sink the bench
            log.warning("budget of %s failed: %s", path, exc)
            out["models"][key] = {"skipped": f"{type(exc).__name__}: {exc}", "command": cmd}
            continue
        out["models"][key] = {
            "file": path.name, "precision": b.precision, "weight_bytes": b.weight_bytes, "ram_bytes": b.ram_bytes,
            "activation_peak_bytes": b.activation_peak_bytes, "state_bytes": b.state_bytes,
            "macs_per_inference": b.macs_per_inference, "macs_per_s": b.macs_per_s, "inferences_per_s": b.inferences_per_s,
            "duty_cycle": c.duty_cycle, "flash_ok": c.flash_ok, "ram_ok": c.ram_ok, "compute_ok": c.compute_ok, "ok": c.ok,
            "command": cmd,
        }
    return out
