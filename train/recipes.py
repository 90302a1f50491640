"""Training recipes: how a model is trained, as named, typed presets (``edgebp train --recipe``).

A recipe is a set of :class:`~edgebp.train.config.TrainConfig` keys with the values one way of
training gives them. Two recipes:

* ``edge`` (the default, every model): edgebp's one global recipe, i.e. the ``TrainConfig``
  defaults (AdamW 3e-3, one-cycle, batch 32, 12 epochs, masked L1 over the window, the edge
  input chain with its band-pass and running z-score, a 150 s time budget);
* ``paper`` (the four seed systems, not edge-tcn): the recipe each seed's public code trains
  with, as far as it can be carried over to a subject-wise split (``docs/models.md`` lists,
  per seed, the public files it was compared with and every remaining difference).

Resolution order, last wins: the ``TrainConfig`` defaults, the recipe's values for the model,
a ``--config`` file, the command-line options, ``--set KEY=VALUE``. So ``--recipe paper --set
epochs=1`` is the paper recipe cut to one epoch. The split stays subject-wise in every recipe.

No torch here: the config module imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

RECIPE_CHOICES = ("edge", "paper")


@dataclass(frozen=True)
class Recipe:
    """One named recipe for one model.

    Attributes
    ----------
    name : str
        ``"edge"`` or ``"paper"``.
    model : str
        The zoo model it trains.
    values : mapping
        ``TrainConfig`` keys and values (every key is a ``TrainConfig`` field: checked by
        :func:`recipe_values` through ``TrainConfig.from_dict``, which rejects unknown keys).
    inputs : tuple of str or None
        The input channels the recipe is defined for (None: any the model takes); a run with
        other inputs is refused.
    source : str
        Where the values come from (the public files), one line.
    """

    name: str
    model: str
    values: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] | None = None
    source: str = ""


# The UNets' public train_and_test.py: torch.optim.AdamW(lr=0.1) with torch's default weight
# decay (0.01), no schedule, no clipping, batch 300, accumulation 10, 10 epochs, MSE on the
# window's last sample, deep-supervision weights 0.7/0.8/0.9/1.0 summed, best epoch on validation.
_UNET_PAPER = {
    "preset": "paper",
    "input_chain": "raw",
    "stride": 1,
    "max_windows_per_record": 0,
    "loss": "mse-last",
    "optimizer": "adamw",
    "lr": 0.1,
    "weight_decay": 0.01,
    "schedule": "none",
    "batch_size": 300,
    "grad_accum": 10,
    "epochs": 10,
    "patience": 0,
    "clip_norm": 0.0,
    "pool": "floor",
    "time_budget_s": 0.0,
}

_RECIPES: dict[tuple[str, str], Recipe] = {
    ("msca-cssc-unet", "paper"): Recipe(
        "paper", "msca-cssc-unet",
        MappingProxyType({**_UNET_PAPER, "inputs": ("ecg",), "input_scale": "minmax"}),
        inputs=("ecg",),
        source="abin7777/MSCA-CSSC-UNet train_and_test.py, models.py",
    ),
    ("cbpe-net", "paper"): Recipe(
        "paper", "cbpe-net",
        MappingProxyType({**_UNET_PAPER, "inputs": ("ecg", "ppg"), "input_scale": "window-zscore"}),
        inputs=("ecg", "ppg"),
        source="abin7777/CBPE-Net train_and_test.py, models.py",
    ),
    # notebooks/Pluse2Pressure1.ipynb: MinMaxScaler, Adam(3e-4, weight_decay=1e-4),
    # StepLR(step_size=40, gamma=0.7) stepped per epoch, clip_grad_norm_(1.0), MSE, batch 32,
    # 200 epochs, early stopping with patience 20 on the validation loss, 10 s PulseDB segments
    ("pulse2pressure", "paper"): Recipe(
        "paper", "pulse2pressure",
        MappingProxyType({
            "preset": "paper", "inputs": ("ppg",), "input_chain": "raw", "input_scale": "minmax",
            "stride": 1250, "max_windows_per_record": 0, "loss": "mse", "optimizer": "adam", "lr": 3e-4,
            "weight_decay": 1e-4, "schedule": "step", "step_size": 40, "gamma": 0.7, "batch_size": 32, "grad_accum": 1,
            "epochs": 200, "patience": 20, "clip_norm": 1.0, "time_budget_s": 0.0,
        }),
        inputs=("ppg",),
        source="kaleem126/pulse2pressure notebooks/Pluse2Pressure1.ipynb",
    ),
    # train.py / losses.py: Adam(lr=1e-4), batch 128, L1 on [ABP, dABP], max_step=500 epochs,
    # no schedule, no clipping, no validation; 5 s segments (data.py pads 625 to 628)
    ("inn-par", "paper"): Recipe(
        "paper", "inn-par",
        MappingProxyType({
            "preset": "paper", "inputs": ("ppg",), "stride": 625, "max_windows_per_record": 0, "loss": "l1",
            "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "none", "batch_size": 128, "grad_accum": 1,
            "epochs": 500, "patience": 0, "clip_norm": 0.0, "time_budget_s": 0.0,
        }),
        inputs=("ppg",),
        source="soumitra1992/INNPAR-PPG2ABP train.py, losses.py, data.py, network.py",
    ),
}


def recipes_for(model: str) -> tuple[str, ...]:
    """The recipes defined for ``model`` (``edge`` for every model).

    Examples
    --------
    >>> recipes_for("cbpe-net"), recipes_for("edge-tcn")
    (('edge', 'paper'), ('edge',))
    """
    return ("edge",) + tuple(r for (m, r) in _RECIPES if m == model)


def recipe_get(model: str, recipe: str) -> Recipe:
    """The :class:`Recipe` named ``recipe`` for ``model``; a one-line ValueError listing the
    valid choices for an unknown recipe or one the model has not.

    Examples
    --------
    >>> recipe_get("edge-tcn", "paper")
    Traceback (most recent call last):
    ...
    ValueError: recipe: 'paper' is not defined for edge-tcn (it has no publication); choose one of: edge
    """
    if recipe not in RECIPE_CHOICES:
        raise ValueError(f"recipe: {recipe!r} is not valid; choose one of: {', '.join(RECIPE_CHOICES)}")
    if recipe == "edge":
        return Recipe("edge", model, MappingProxyType({}), None, "edgebp's global recipe (the TrainConfig defaults)")
    key = (model, recipe)
    if key not in _RECIPES:
        why = " (it has no publication)" if model == "edge-tcn" else ""
        raise ValueError(f"recipe: {recipe!r} is not defined for {model}{why}; choose one of: {', '.join(recipes_for(model))}")
    return _RECIPES[key]


def recipe_values(model: str, recipe: str) -> dict[str, Any]:
    """The ``TrainConfig`` keys the recipe sets for ``model`` (a plain dict, tuples as lists).

    Examples
    --------
    >>> v = recipe_values("msca-cssc-unet", "paper")
    >>> v["lr"], v["batch_size"], v["grad_accum"], v["epochs"], v["loss"], v["pool"]
    (0.1, 300, 10, 10, 'mse-last', 'floor')
    >>> recipe_values("edge-tcn", "edge")
    {}
    """
    r = recipe_get(model, recipe)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in r.values.items()}


def recipe_check_inputs(model: str, recipe: str, inputs: tuple[str, ...]) -> None:
    """Refuse inputs the recipe is not defined for, naming the ones it takes."""
    r = recipe_get(model, recipe)
    if r.inputs is not None and tuple(inputs) and tuple(inputs) != r.inputs:
        raise ValueError(f"recipe: {recipe} for {model} takes inputs {','.join(r.inputs)} (as published), got {','.join(inputs)}; "
                         f"choose --inputs {','.join(r.inputs)} or --recipe edge")


def recipes_table() -> list[dict[str, Any]]:
    """Every (model, recipe) with its values, for docs and ``--help``."""
    return [{"model": m, "recipe": r, "values": dict(rec.values), "source": rec.source} for (m, r), rec in _RECIPES.items()]


def run_model_kwargs(cfg) -> dict[str, Any]:
    """The ``model_build`` overrides a run's config asks for (none for the edge recipe's
    defaults, so edge checkpoints keep their state-dict keys); used by training and by
    :class:`edgebp.train.predict.RunDir`, so a run is rebuilt exactly as it was trained."""
    out: dict[str, Any] = {}
    if getattr(cfg, "pool", "ceil") != "ceil":
        out["pool"] = cfg.pool
    if getattr(cfg, "input_scale", "none") != "none":
        out["input_scale"] = cfg.input_scale
    return out
