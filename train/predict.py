"""Load a trained run directory as a numpy-in/numpy-out runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgebp.evaluation import ModelGeometry
from edgebp.train.config import TrainConfig
from edgebp.train.zoo import model_build, model_spec


class RunDir:
    """A training run: config, split, normalisation and the best checkpoint."""

    def __init__(self, path: str | Path, checkpoint: str = "best.pt"):
        self.path = Path(path)
        ck_path = self.path / checkpoint
        if not ck_path.exists():
            raise FileNotFoundError(2, "not a run directory (no checkpoint; train one with `edgebp train`)", str(ck_path))
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        self.checkpoint = ck
        self.config = TrainConfig.from_dict(ck["config"], where=str(ck_path))
        self.meta = ck["meta"]
        self.norm = ck["norm"]
        self.split = ck["split"]
        self.inputs = tuple(self.meta["inputs"])
        from edgebp.train.recipes import run_model_kwargs

        # pooling and input scaling as trained (the min-max statistics come with the state dict)
        self.model = model_build(self.config.model, self.config.preset, in_channels=len(self.inputs), **run_model_kwargs(self.config))
        self.model.load_state_dict(ck["state_dict"])
        self.model.eval()
        self.spec = model_spec(self.config.model)

    def geometry(self) -> ModelGeometry:
        return ModelGeometry(
            output=self.meta["output"],
            window=int(self.meta["window"]),
            fs=float(self.meta["fs"]),
            delay=int(self.meta["delay"]),
            causal=bool(self.spec.causal and self.meta["output"] == "waveform"),
            receptive_field=int(self.meta.get("warmup", 0)),
            norm=self.norm,
        )

    def default_hop(self) -> int | None:
        """1 for a run trained on the window's last sample (``loss=mse-last``: only that output
        is trained, so it is scored point-wise as the seeds do), else None (the scorer's default)."""
        return 1 if self.meta.get("target_index") == -1 else None

    @torch.no_grad()
    def runner(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def describe(self) -> dict:
        return {"kind": "run", "path": str(self.path), "model": self.config.model, "preset": self.config.preset, "recipe": self.config.recipe,
                "inputs": list(self.inputs), "params": int(sum(p.numel() for p in self.model.parameters()))}


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "best.pt").exists() or (Path(path) / "last.pt").exists()


def split_json(path: Path) -> dict:
    return json.loads((Path(path) / "split.json").read_text())
