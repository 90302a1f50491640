"""The torch backend of the runtime's backend interface (development only: a gateway has no torch).

It runs the original model of a training run directory: whole windows for window models, and
for the streamable edge-tcn the same external-state step the ONNX streaming graph performs
(``stream_step`` with the states passed in and out), so ``edgebp run --backend torch`` checks
the exported graphs against their source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgebp.train.predict import RunDir


class TorchBackend:
    """The torch model of ``run_dir`` behind the runtime's ``run(feeds) -> outputs`` interface."""

    name = "torch"

    def __init__(self, run_dir: str | Path):
        self.rundir = RunDir(run_dir)
        self.input_names = ["x"]
        self.output_names = ["y"]

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(feeds["x"], dtype=np.float32))
        states = [feeds[k] for k in sorted((k for k in feeds if k.startswith("state_")), key=lambda k: int(k.split("_")[1]))]
        if states:
            y, new = self.rundir.model.stream_step(x, [torch.from_numpy(np.asarray(s, dtype=np.float32)) for s in states])
            return [y.numpy()] + [s.numpy() for s in new]
        return [self.rundir.model(x).numpy()]
