"""Structured pruning with torch-pruning: channels are physically removed (not masked), then a
short fine-tune on the run's own training split recovers accuracy."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def prune_ignored_layers(model: torch.nn.Module) -> tuple[list[torch.nn.Module], list[str]]:
    """Layers that cannot be pruned safely, and their names (reported to the user).

    The output layer keeps its single ABP channel (or two SBP/DBP values); attention layers
    reshape channels into heads; invertible couplings must keep their channel split; LSTMs
    carry gate-coupled weights that the dependency graph does not handle reliably.
    """
    ignored, names = [], []
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.Linear)):
            last = (name, mod)
        kind = type(mod).__name__.lower()
        if isinstance(mod, (torch.nn.MultiheadAttention, torch.nn.LSTM, torch.nn.GRU)) or any(k in kind for k in ("attention", "coupling", "invertible", "invconv", "head")):
            ignored.append(mod)
            names.append(f"{name} ({type(mod).__name__})")
    extra = getattr(model, "prune_ignore", None)
    if callable(extra):
        for name, mod in extra():
            if mod not in ignored:
                ignored.append(mod)
                names.append(f"{name} ({type(mod).__name__})")
    if last is not None and last[1] not in ignored:
        ignored.append(last[1])
        names.append(f"{last[0]} ({type(last[1]).__name__}, output layer)")
    return ignored, names


def model_prune(model: torch.nn.Module, example: torch.Tensor, ratio: float) -> dict:
    """Remove ``ratio`` of the prunable channels by L2 magnitude, in place. Returns a report."""
    import torch_pruning as tp

    if not 0.0 < ratio < 1.0:
        raise ValueError(f"--prune ratio must be within (0, 1), got {ratio}")
    model.eval()
    ignored, names = prune_ignored_layers(model)
    from edgebp.train.zoo import model_cost

    def cost():
        c = model_cost(model, window=example.shape[-1], in_channels=example.shape[1])
        return c["macs_per_window"], c["params"]

    macs0, params0 = cost()
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=ignored, round_to=4)
    pruner.step()
    macs1, params1 = cost()
    log.info("pruned %.0f %% of channels: %d -> %d parameters, %d -> %d MACs per window", ratio * 100, params0, params1, macs0, macs1)
    return {"ratio": ratio, "params_before": int(params0), "params_after": int(params1),
            "macs_before": int(macs0), "macs_after": int(macs1), "left_alone": names}
