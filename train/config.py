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


@dataclass
class TrainConfig(StrictConfig):
    """Everything that decides a training run. ``edgebp train --config FILE`` reads a JSON/TOML
    file of these keys; command-line options override it."""

    model: str = "edge-tcn"
    preset: str = "edge"
    inputs: tuple[str, ...] = ()  # empty: the model's default inputs
    data: str = "synth"  # "synth", a directory of WFDB records, or UCI part_N.mat files
    fs: float = 125.0
    epochs: int = 12
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    patience: int = 4  # early stopping on the validation loss
    seed: int = 0
    device: str = "auto"
    window_s: float = 8.0  # training window for causal models; window models use their own
    stride_s: float = 2.0
    max_windows_per_record: int = 400
    val_frac: float = 0.15
    test_frac: float = 0.15
    synth_subjects: int = DEFAULT_SUBJECTS
    synth_minutes: float = DEFAULT_MINUTES
    max_minutes: float = 0.0  # 0: whole records; otherwise cap each record (quick runs)
    amp: bool = True  # mixed precision, used on CUDA only
    time_budget_s: float = 150.0  # stop after the epoch that crosses it (0: no limit); keeps the default run within 3 min
    resampler: str = "kaiser"  # the inputs' resampler FIR (ChainConfig.resampler; "short": low delay, docs/latency.md)
    stream_chunk: int = 0  # model samples per step of the exported streaming model (0: 25)

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
        """
        if self.resampler == "kaiser":
            return None
        return {c: {"resampler": self.resampler} for c in inputs}

    def validate(self) -> None:
        from edgebp.train.zoo import MODEL_NAMES

        check_choice(self.model, MODEL_NAMES, "model")
        check_choice(self.preset, PRESET_CHOICES, "preset")
        check_choice(self.resampler, RESAMPLER_CHOICES, "resampler")
        if not 0 <= self.stream_chunk <= 10_000:
            raise ValueError(f"stream_chunk: must be within 0..10000 model samples (0: 25), got {self.stream_chunk}")
        check_choice(self.device, DEVICE_CHOICES, "device")
        for name in self.inputs:
            check_choice(name, INPUT_CHOICES, "inputs")
        if not 10.0 <= self.fs <= 1000.0:
            raise ValueError(f"fs: {self.fs} Hz is not a plausible model rate (10..1000)")
        for key in ("epochs", "batch_size", "grad_accum", "max_windows_per_record", "synth_subjects"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if not (0 < self.val_frac < 0.5 and 0 < self.test_frac < 0.5):
            raise ValueError("val_frac and test_frac must each be within (0, 0.5)")
        for key in ("lr", "clip_norm", "window_s", "stride_s", "synth_minutes"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)}")
        for key in ("weight_decay", "max_minutes", "time_budget_s"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.patience < 1:
            raise ValueError(f"patience: must be >= 1, got {self.patience}")
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
