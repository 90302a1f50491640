"""The anchors: the seed systems' own paradigms, exported once to ONNX and timed beside edgebp.

* MSCA-CSSC-UNet at its published size (55.4 M parameters), single-lead ECG, 88-sample
  window run at a one-sample stride ("point-wise"): every output sample costs one window.
* INN-PAR at its published size (0.37 M parameters), PPG, 5 s windows back to back.

Only speed and size are compared (the weights are the initial ones: the cost of a network does
not depend on its weights). The ONNX file is written once per (model, preset, window,
channels, edgebp version, torch version) into the bench cache, by a subprocess, so that the
benchmark process itself never imports torch.

Run as a module to export one anchor::

    python -m edgebp.bench.anchor --model msca-cssc-unet --model inn-par --preset paper
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import edgebp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorSpec:
    """One anchor: the model, its input channels, window and the stride it is used at."""

    model: str
    inputs: tuple[str, ...]
    window: int
    hop: int
    fs: float
    paradigm: str


#: The seeds' paradigms. ``hop`` = output samples produced per inference.
ANCHORS: dict[str, AnchorSpec] = {
    "msca-cssc-unet": AnchorSpec("msca-cssc-unet", ("ecg",), 88, 1, 125.0,
                                 "point-wise: one 88-sample window (0.704 s) per output sample, stride 1"),
    "inn-par": AnchorSpec("inn-par", ("ppg",), 625, 625, 125.0, "5 s windows back to back, 625 output samples each"),
}


def bench_cache_dir() -> Path:
    """``$EDGEBP_CACHE/bench`` (default ``~/.cache/edgebp/bench``)."""
    from edgebp.paths import cache_root

    return cache_root() / "bench"


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def anchor_key(name: str, preset: str) -> str:
    spec = ANCHORS[name]
    raw = f"{name}|{preset}|{spec.window}|{len(spec.inputs)}|{edgebp.__version__}|{_torch_version()}"
    return f"{name}-{preset}-w{spec.window}-{hashlib.sha1(raw.encode()).hexdigest()[:10]}"


def anchor_paths(name: str, preset: str, cache: Path) -> tuple[Path, Path]:
    key = anchor_key(name, preset)
    return cache / f"{key}.onnx", cache / f"{key}.json"


def anchors_onnx(names: list[str], preset: str = "paper", cache_dir: str | Path | None = None,
                 timeout_s: float = 1800.0) -> dict[str, tuple[Path, dict]]:
    """Each anchor's ONNX file and its facts (parameters, MACs per window, export time), built
    once into the cache by one subprocess (torch is imported there, never here).

    Parameters
    ----------
    names : list of str
        Keys of :data:`ANCHORS`.
    preset : {"paper", "edge"}
        ``paper`` = the published sizes (what the report compares against); ``edge`` exists so
        that tests can run the same path quickly.

    Raises
    ------
    ValueError
        Unknown anchor or preset.
    RuntimeError
        The export subprocess failed (its last stderr line is in the message).
    """
    for name in names:
        if name not in ANCHORS:
            raise ValueError(f"unknown anchor {name!r}; valid anchors: {', '.join(ANCHORS)}")
    if preset not in ("paper", "edge"):
        raise ValueError(f"unknown anchor preset {preset!r}; valid presets: paper, edge")
    cache = Path(cache_dir) if cache_dir else bench_cache_dir() / "anchors"
    cache.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if not all(p.exists() for p in anchor_paths(n, preset, cache))]
    if missing:
        cmd = [sys.executable, "-m", "edgebp.bench.anchor", "--preset", preset, "--cache", str(cache)]
        for n in missing:
            cmd += ["--model", n]
        log.info("exporting anchor(s) %s (%s) once into %s", ", ".join(missing), preset, cache)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            if "No module named 'torch'" in last or "No module named 'onnxscript'" in last:
                # the seeds' models exist only as torch code: exported once, then cached
                raise RuntimeError(f"anchor export ({', '.join(missing)}, {preset}) needs torch once (not installed): "
                                   "pip install 'edgebp[train]', or bench without the anchors (--anchors none)")
            raise RuntimeError(f"anchor export ({', '.join(missing)}, {preset}) failed: {last}")
    out = {}
    for n in names:
        onnx_path, info = anchor_paths(n, preset, cache)
        if not onnx_path.exists():
            raise RuntimeError(f"anchor {n} ({preset}): {onnx_path} was not written")
        out[n] = (onnx_path, json.loads(info.read_text()))
    return out


def _export(name: str, preset: str, out: Path, info_path: Path) -> dict:
    import torch

    from edgebp.export.onnx_export import onnx_export_model
    from edgebp.train.zoo import model_build, model_cost

    spec = ANCHORS[name]
    torch.manual_seed(0)
    model = model_build(name, preset, in_channels=len(spec.inputs), window=spec.window).eval()
    cost = model_cost(model, window=spec.window, in_channels=len(spec.inputs), hop=spec.hop, fs=spec.fs)
    t0 = time.perf_counter()
    tmp = out.with_suffix(".tmp.onnx")
    exp = onnx_export_model(model, tmp, len(spec.inputs), spec.window, dynamic_length=False)
    tmp.replace(out)
    info = {"model": name, "preset": preset, "inputs": list(spec.inputs), "window": spec.window, "hop": spec.hop,
            "fs": spec.fs, "paradigm": spec.paradigm, "params": cost["params"], "macs_per_window": cost["macs_per_window"],
            "macs_per_second": cost["macs_per_second"], "onnx_bytes": out.stat().st_size, "exporter": exp["exporter"],
            "export_seconds": time.perf_counter() - t0, "edgebp_version": edgebp.__version__, "torch_version": torch.__version__,
            "weights": "initial (seed 0): speed and size only, never accuracy"}
    info_path.write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebp.bench.anchor", description="Export bench anchors to ONNX (needs torch).")
    ap.add_argument("--model", action="append", required=True, choices=sorted(ANCHORS), help="Repeatable.")
    ap.add_argument("--preset", default="paper", choices=["paper", "edge"])
    ap.add_argument("--cache", type=Path, default=None, help="Output directory (default: the bench cache).")
    a = ap.parse_args(argv)
    cache = a.cache or bench_cache_dir() / "anchors"
    cache.mkdir(parents=True, exist_ok=True)
    for name in a.model:
        onnx_path, info_path = anchor_paths(name, a.preset, cache)
        info = _export(name, a.preset, onnx_path, info_path)
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
