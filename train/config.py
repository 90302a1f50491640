"""The training configuration: one typed object, unknown keys rejected, saved with every run."""

from __future__ import annotations

from dataclasses import dataclass

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
