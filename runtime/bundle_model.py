"""A bundle as a scorable model: the ONNX Runtime counterpart of a training run directory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgebp.evaluation import ModelGeometry
from edgebp.runtime.backends import OrtBackend
from edgebp.runtime.bundle import Bundle, BundleError, bundle_load
from edgebp.synth.cohort import DEFAULT_MINUTES, DEFAULT_SUBJECTS

# the pruned int8 model under its variant name and its file key (bench passes the key)
VARIANT_FILES = {"fp32": "fp32", "int8": "int8", "pruned": "pruned", "pruned-int8": "pruned_int8", "pruned_int8": "pruned_int8"}


class BundleModel:
    """Run a bundle's fp32, int8 or pruned model through ONNX Runtime on whole windows.

    It offers what ``edgebp evaluate`` needs from a run directory: ``runner``,
    ``geometry()``, ``inputs``, ``norm``, ``split``, ``config`` and ``describe()``.
    """

    def __init__(self, bundle: Bundle, variant: str = "int8", threads: int = 1, backend: str = "ort"):
        if variant not in VARIANT_FILES:
            raise ValueError(f"variant {variant!r} is not valid; choose one of: {', '.join(VARIANT_FILES)}")
        self.bundle = bundle
        self.variant = variant
        self.backend_kind = backend
        m = bundle.manifest
        if backend == "tensorrt":  # the variant's TensorRT form, as edgebp run --backend tensorrt picks it
            from edgebp.runtime.tensorrt_backend import bundle_backend
            from edgebp.variants import tensorrt_file_key

            self.file_key = tensorrt_file_key(variant, streaming=False)
            self.backend = bundle_backend(bundle, self.file_key)
        else:
            self.file_key = VARIANT_FILES[variant]
            self.backend = OrtBackend(bundle.file(self.file_key), threads=threads)
        self.inputs = tuple(m["inputs"])
        self.norm = m["normalisation"]
        self.split = m.get("split") or {"train": [], "val": [], "test": []}
        rc = dict(m["model"].get("run_config") or {})
        rc.setdefault("data", "synth")
        rc.setdefault("synth_subjects", DEFAULT_SUBJECTS)
        rc.setdefault("synth_minutes", DEFAULT_MINUTES)
        rc.setdefault("seed", 0)
        rc.setdefault("max_minutes", 0.0)
        self.config = SimpleNamespace(**rc)

    @classmethod
    def open(cls, path: str | Path, variant: str = "int8", threads: int = 1, backend: str = "ort") -> "BundleModel":
        return cls(bundle_load(path), variant=variant, threads=threads, backend=backend)

    def geometry(self) -> ModelGeometry:
        m = self.bundle.manifest
        return ModelGeometry(output=m["output"], window=m["window"], fs=float(m["fs"]), delay=m["delay"],
                             causal=bool(m["causal"]), receptive_field=m["receptive_field"], norm=self.norm)

    def default_hop(self) -> int | None:
        """1 for a model trained on the window's last sample (its run's ``loss`` is
        ``mse-last``: only that output is trained), scored point-wise as its run directory is;
        else None (the scorer's default)."""
        return 1 if getattr(self.config, "loss", None) == "mse-last" else None

    def runner(self, x: np.ndarray) -> np.ndarray:
        name = self.backend.input_names[0]
        return self.backend.run({name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def describe(self) -> dict:
        m = self.bundle.manifest
        return {"kind": "bundle", "path": str(self.bundle.path), "variant": self.variant, "model": m["model"]["name"],
                "preset": m["model"]["preset"], "inputs": list(m["inputs"]), "params": m["model"].get("params")}


__all__ = ["BundleModel", "BundleError"]
