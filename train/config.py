"""The training configuration: one typed object, unknown keys rejected, saved with every run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edgebp.config_base import StrictConfig, check_choice
from edgebp.synth.cohort import DEFAULT_MINUTES, DEFAULT_SUBJECTS

INPUT_CHOICES = ("ecg", "ppg")
PRESET_CHOICES = ("edge", "paper", "lowlatency")  # edgebp.train.zoo.PRESETS (not imported: no torch here)
RESAMPLER_CHOICES = ("kaiser", "short", "decimate")  # edgebp.processing.stream_resample.RESAMPLER_KINDS
DEVICE_CHOICES = ("auto", "cpu", "cuda")
OPTIMIZER_CHOICES = ("adamw", "adam")
SCHEDULE_CHOICES = ("onecycle", "step", "none")
# l1: masked L1 over the window (waveform) or the (SBP, DBP) pair (values); mse: the same with
# squared errors; mse-last: MSE on the window's last sample only (the UNets' point-wise paradigm)
LOSS_CHOICES = ("l1", "mse", "mse-last")
INPUT_CHAIN_CHOICES = ("edge", "raw")  # raw: no band-pass and no running z-score (the seeds' loaders)
INPUT_SCALE_CHOICES = ("none", "minmax", "window-zscore")  # edgebp.train.input_scale (not imported: no torch here)
POOL_CHOICES = ("ceil", "floor")
DDP_SPLIT_CHOICES = ("windows", "records")
UNET_MODELS = ("msca-cssc-unet", "cbpe-net")


@dataclass
class TrainConfig(StrictConfig):
    """Everything that decides a training run. ``edgebp train --config FILE`` reads a JSON/TOML
    file of these keys; command-line options override it."""

    model: str = "edge-tcn"
    recipe: str = "edge"  # edgebp.train.recipes: fills the keys below that a config does not give
    preset: str = "edge"
    inputs: tuple[str, ...] = ()  # empty: the model's default inputs
    data: str = "synth"  # "synth", a directory of WFDB records, or UCI part_N.mat files
    fs: float = 125.0
    epochs: int = 12
    batch_size: int = 32
    grad_accum: int = 1
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # onecycle (per step), step (StepLR per epoch), none
    step_size: int = 40  # schedule=step: epochs between decays
    gamma: float = 0.7  # schedule=step: decay factor
    clip_norm: float = 1.0  # 0: no gradient clipping
    patience: int = 4  # early stopping on the validation loss (0: none; best.pt is still the best epoch)
    loss: str = "l1"
    input_chain: str = "edge"  # the inputs' preprocessing chain (raw: resampled only)
    input_scale: str = "none"  # input scaling inside the network (minmax: fitted on the training records)
    pool: str = "ceil"  # the UNets' pooling (floor: the public network's geometry at 88 samples)
    seed: int = 0
    device: str = "auto"
    window_s: float = 8.0  # training window for causal models; window models use their own
    stride_s: float = 2.0
    stride: int = 0  # samples between training windows (0: stride_s for causal models, half a window for window models)
    max_windows_per_record: int = 400  # 0: every window; validation records: at most max(50, this / 4)
    val_frac: float = 0.15
    test_frac: float = 0.15
    synth_subjects: int = DEFAULT_SUBJECTS
    synth_minutes: float = DEFAULT_MINUTES
    max_minutes: float = 0.0  # 0: whole records; otherwise cap each record (quick runs)
    amp: bool = True  # mixed precision, used on CUDA only
    time_budget_s: float = 150.0  # stop after the epoch that crosses it (0: no limit); keeps the default run within 3 min
    resampler: str = "kaiser"  # the inputs' resampler FIR (ChainConfig.resampler; "short": low delay, docs/latency.md)
    stream_chunk: int = 0  # model samples per step of the exported streaming model (0: 25)
    ddp_split: str = "windows"  # under torchrun: windows (every rank samples all records) or records (each rank its own)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "TrainConfig":
        """As :meth:`StrictConfig.from_dict`, with every value type-checked against its field
        first (``--set lr=abc`` is one line naming the key and the type, not a torch traceback).

        Examples
        --------
        >>> TrainConfig.from_dict({"lr": "abc"}, where="--set")
        Traceback (most recent call last):
        ...
        ValueError: --set: lr: expected a number (float), got 'abc'
        >>> TrainConfig.from_dict({"epochs": 2.5}, where="--set")
        Traceback (most recent call last):
        ...
        ValueError: --set: epochs: expected a whole number (int), got 2.5
        """
        if isinstance(data, dict):
            types = {f.name: f.type for f in dataclasses.fields(cls)}
            data = {k: (_typed(k, v, types[k], where) if k in types else v) for k, v in data.items()}
            recipe = data.get("recipe", "edge")
            if recipe != "edge" and isinstance(recipe, str):
                from edgebp.train.recipes import recipe_values

                model = data.get("model", cls.model)
                try:
                    filled = recipe_values(model if isinstance(model, str) else cls.model, recipe)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                # the recipe fills only what the config does not give: explicit keys win
                data = {**{k: _typed(k, v, types[k], where) for k, v in filled.items()}, **data}
        return super().from_dict(data, where=where)

    def chain_overrides(self, inputs) -> dict | None:
        """Per-input :class:`~edgebp.processing.chain.ChainConfig` overrides this run's chain
        differs from the presets by (``None`` for the default chain; ABP, the label, always
        keeps the default resampler).

        Examples
        --------
        >>> TrainConfig().chain_overrides(("ppg",)) is None
        True
        >>> TrainConfig(resampler="short").chain_overrides(("ppg", "ecg"))
        {'ppg': {'resampler': 'short'}, 'ecg': {'resampler': 'short'}}
        >>> TrainConfig(input_chain="raw").chain_overrides(("ecg",))
        {'ecg': {'highpass_hz': None, 'lowpass_hz': None, 'norm': 'none'}}
        """
        if self.resampler == "kaiser" and self.input_chain == "edge":
            return None
        out: dict = {c: {} for c in inputs}
        for c in inputs:
            if self.input_chain == "raw":
                # the seeds' loaders feed the signal as recorded: no band-pass, no running z-score
                out[c].update({"highpass_hz": None, "lowpass_hz": None, "norm": "none"})
            if self.resampler != "kaiser":
                out[c]["resampler"] = self.resampler
        return out

    def validate(self) -> None:
        from edgebp.train.zoo import MODEL_NAMES

        from edgebp.train.recipes import recipe_check_inputs, recipe_get

        check_choice(self.model, MODEL_NAMES, "model")
        recipe_get(self.model, self.recipe)  # unknown, or not defined for this model: lists the choices
        recipe_check_inputs(self.model, self.recipe, tuple(self.inputs))
        check_choice(self.preset, PRESET_CHOICES, "preset")
        check_choice(self.optimizer, OPTIMIZER_CHOICES, "optimizer")
        check_choice(self.schedule, SCHEDULE_CHOICES, "schedule")
        check_choice(self.loss, LOSS_CHOICES, "loss")
        check_choice(self.input_chain, INPUT_CHAIN_CHOICES, "input_chain")
        check_choice(self.input_scale, INPUT_SCALE_CHOICES, "input_scale")
        check_choice(self.pool, POOL_CHOICES, "pool")
        check_choice(self.ddp_split, DDP_SPLIT_CHOICES, "ddp_split")
        if self.pool != "ceil" and self.model not in UNET_MODELS:
            raise ValueError(f"pool: {self.pool} applies to the UNets ({', '.join(UNET_MODELS)}) only, not {self.model}")
        if self.loss == "mse-last" and self.model not in UNET_MODELS:
            raise ValueError(f"loss: mse-last (the window's last sample) applies to the UNets ({', '.join(UNET_MODELS)}) only; "
                             f"for {self.model} choose one of: l1, mse")
        if self.input_scale != "none" and self.model == "edge-tcn":
            raise ValueError("input_scale: edge-tcn streams sample by sample and takes the chain's output as is; choose: none")
        check_choice(self.resampler, RESAMPLER_CHOICES, "resampler")
        if not 0 <= self.stream_chunk <= 10_000:
            raise ValueError(f"stream_chunk: must be within 0..10000 model samples (0: 25), got {self.stream_chunk}")
        check_choice(self.device, DEVICE_CHOICES, "device")
        for name in self.inputs:
            check_choice(name, INPUT_CHOICES, "inputs")
        if not 10.0 <= self.fs <= 1000.0:
            raise ValueError(f"fs: {self.fs} Hz is not a plausible model rate (10..1000)")
        for key in ("epochs", "batch_size", "grad_accum", "synth_subjects", "step_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("max_windows_per_record", "stride"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0 (0: {'every window' if key == 'max_windows_per_record' else 'the model default'}), got {getattr(self, key)}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: must be within (0, 1], got {self.gamma}")
        if not (0 < self.val_frac < 0.5 and 0 < self.test_frac < 0.5):
            raise ValueError("val_frac and test_frac must each be within (0, 0.5)")
        for key in ("lr", "window_s", "stride_s", "synth_minutes"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)}")
        for key in ("weight_decay", "max_minutes", "time_budget_s", "clip_norm"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.patience < 0:
            raise ValueError(f"patience: must be >= 0 (0: no early stopping), got {self.patience}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")


_TYPE_WORDS = {"int": "a whole number (int)", "float": "a number (float)", "bool": "true or false (bool)", "str": "a string (str)"}


def _typed(key: str, value: Any, type_text: Any, where: str) -> Any:
    """``value`` checked against the field's annotation (a string under postponed
    annotations: ``int``, ``float``, ``bool``, ``str``, ``tuple[str, ...]``); ints widen to
    float; a float must be finite."""
    t = type_text if isinstance(type_text, str) else getattr(type_text, "__name__", str(type_text))

    def bad(expected: str):
        return ValueError(f"{where}: {key}: expected {expected}, got {value!r}")

    if t == "bool":
        if not isinstance(value, bool):
            raise bad(_TYPE_WORDS["bool"])
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad(_TYPE_WORDS["int"])
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(_TYPE_WORDS["float"])
        if not math.isfinite(value):
            raise bad("a finite number (float)")
        return float(value)
    if t == "str":
        if not isinstance(value, str):
            raise bad(_TYPE_WORDS["str"])
        return value
    if t.startswith("tuple[str"):
        if isinstance(value, str):  # --set inputs=ppg,ecg: not JSON, read as a list
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings, e.g. [\"ppg\", \"ecg\"]")
        return tuple(value)
    return value
