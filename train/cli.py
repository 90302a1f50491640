"""``edgebp train``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from edgebp.cli import CliError
from edgebp.cli_types import int_range

# keys a resumed run may change: how long it goes on and where, not what it trains
RESUME_MAY_CHANGE = ("epochs", "time_budget_s", "patience", "device", "ddp_split")


@click.command(name="train")
@click.option("--model", default=None, help="Model name: edge-tcn (default), msca-cssc-unet, cbpe-net, pulse2pressure, inn-par; "
              "or beat-delta (the calibrated per-beat estimator, fitted for --bundle).")
@click.option("--bundle", default=None, help="With --model beat-delta: the bundle whose deployed model feeds the estimator (default: the shipped one).")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out (an earlier run there is replaced).")
@click.option("--preset", type=click.Choice(["edge", "paper", "lowlatency"]), default=None,
              help="Model size preset (default edge; lowlatency: edge-tcn with 56 ms look-ahead, docs/latency.md). "
                   "--recipe paper implies --preset paper unless given.")
@click.option("--recipe", type=click.Choice(["edge", "paper"]), default=None,
              help="How to train (default edge: edgebp's global recipe, AdamW 3e-3 one-cycle, batch 32, masked L1 over the window). "
                   "paper: the seed's published recipe (not for edge-tcn), e.g. msca-cssc-unet: raw ECG min-max scaled on the "
                   "training records, stride-1 windows, MSE on the last sample, AdamW 0.1, batch 300 x 10 accumulation, 10 epochs, "
                   "floor pooling; the split stays subject-wise. --set keys still override it. Per model: docs/models.md.")
@click.option("--inputs", default=None, help="Input channels, comma-separated: ppg,ecg (default: the model's own).")
@click.option("--data", default=None, help="'synth' (built-in cohort, default), a directory of WFDB records, or UCI part_N.mat files.")
@click.option("--epochs", type=int_range(1, 100_000), default=None,
              help="Maximum epochs [default 12]. Early stopping may end sooner, and so does the time budget: training stops after "
                   "the epoch that crosses time_budget_s (150 s by default, so a real-data run may do fewer epochs than asked; "
                   "--set time_budget_s=0 for no limit). The first log line states both.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train (auto: CUDA when present).")
@click.option("--seed", type=int_range(0, 2**32 - 1), default=None, help="Seed for the split, the windows and the weights.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="JSON or TOML file of training keys; options given here override it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable), e.g. --set batch_size=64.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt (same config; --epochs may be raised).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/default", show_default=True, help="Run directory to write.")
def train_command(model, bundle, force, preset, recipe, inputs, data, epochs, device, seed, config_file, overrides, resume, out_dir):
    """Train a blood-pressure model with a subject-wise split, and write a run directory.

    The run directory holds config.json, split.json (records per split, by subject),
    norm.json (statistics fit on the training split only), metrics.jsonl (per epoch),
    best.pt and last.pt (state dict, config, normalisation, split; torch.load with
    weights_only=True). Several processes or machines: torchrun --nproc_per_node K
    [--nnodes N ...] -m edgebp train ... (docs/training.md: DDP, --set ddp_split=records,
    and the data layout). Records are prepared once into memory-mapped shards in the cache
    and windows are read from them as training goes. Each training record gives at most
    max_windows_per_record windows (400; --set max_windows_per_record=0 for every window),
    each validation record at most max(50, that / 4), drawn with the seed.

    --recipe paper trains a seed as its public code does (docs/models.md lists the values per
    model and every remaining difference); the split stays subject-wise.

    \b
    Example:
        edgebp train --out runs/default
        edgebp train --model cbpe-net --inputs ppg,ecg --data ../shared/data/challenge2015 --epochs 20 --out runs/cbpe
        edgebp train --model msca-cssc-unet --recipe paper --data ../shared/data/challenge2015 --out runs/unet-paper
        edgebp train --model inn-par --recipe paper --preset edge --set epochs=20 --out runs/innpar-paper-edge
        edgebp train --model beat-delta --bundle default --out bundles/default-cal

    beat-delta writes a copy of the bundle carrying the calibrated estimator (estimator.json):
    streamed through the deployed model on the bundle's training records, chosen on its
    validation records (edgebp.train.beat_delta).
    """
    if model == "beat-delta":
        from edgebp.train.beat_delta_cli import beat_delta_train

        bad = [n for n, v in (("--preset", preset), ("--recipe", recipe), ("--inputs", inputs), ("--epochs", epochs), ("--device", device), ("--config", config_file),
                               ("--resume", resume or None)) if v is not None]
        if bad:
            raise CliError(f"--model beat-delta does not take {', '.join(bad)} (it is fitted in closed form for --bundle; "
                           "--set takes its grid keys, e.g. --set starts=[30,60])")
        fit_over = _set_items(overrides, strict=True)
        logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
        beat_delta_train(bundle or "default", data, Path(out_dir), force=force, overrides=fit_over)
        return
    if bundle is not None:
        raise CliError("--bundle belongs to --model beat-delta")
    if resume and force:
        raise CliError("--resume and --force exclude each other (continue the run, or replace it)")
    from edgebp.train.config import TrainConfig
    from edgebp.train.loop import train_run

    saved = Path(out_dir) / "config.json"
    # only the keys given (file, options, --set): the recipe fills the rest before the defaults do
    if config_file:
        TrainConfig.from_file(config_file)  # one-line errors for a bad file, as before
        base = _config_keys(Path(config_file))
    elif resume and saved.is_file():
        base = TrainConfig.from_file(saved).to_dict()  # resume what was trained there; options given still override
    else:
        base = {}
    given = {"model": model, "recipe": recipe, "preset": preset, "data": data, "epochs": epochs, "device": device, "seed": seed}
    base.update({k: v for k, v in given.items() if v is not None})
    if inputs:
        base["inputs"] = [s.strip() for s in inputs.split(",") if s.strip()]
    base.update(_set_items(overrides))
    cfg = TrainConfig.from_dict(base, where="training config")
    # under torchrun only rank 0 owns --out (the other ranks may not even see it: docs/training.md)
    if int(os.environ.get("RANK", "0")) == 0:
        _out_dir_check(Path(out_dir), cfg.to_dict(), resume=resume, force=force)
    logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
    summary = train_run(cfg, Path(out_dir), resume=resume)
    click.echo(f"trained {summary['model']}/{summary['preset']} ({summary['params']} parameters) in {summary['seconds']} s; "
               f"best validation loss {summary['best_val_loss']:.4f}; run directory {out_dir}")


def _config_keys(path: Path) -> dict:
    """The keys a JSON or TOML config file gives (already checked by ``TrainConfig.from_file``)."""
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        return dict(tomllib.loads(text))
    return dict(json.loads(text))


def _set_items(items, strict: bool = False) -> dict:
    """``--set KEY=VALUE`` items: values read as JSON; a value that is not JSON stays a
    string (the typed config then checks it), or with ``strict`` is an error."""
    out = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            if strict:
                raise CliError(f"--set {item!r}: the value must be a number or a JSON list of numbers") from None
            out[k.strip()] = v
    return out


def _out_dir_check(out: Path, cfg: dict, resume: bool, force: bool) -> None:
    """``--out`` must be new or empty, unless ``--resume`` (its last.pt, same config) or
    ``--force`` (replace the run there)."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    used = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / "last.pt").is_file():
            raise CliError(f"--resume: {out} has no last.pt to continue from")
        saved_path = out / "config.json"
        if saved_path.is_file():
            try:
                saved = json.loads(saved_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CliError(f"{saved_path}: unreadable ({exc})") from None
            try:  # a run saved before a key existed trained with that key's default
                from edgebp.train.config import TrainConfig

                saved = TrainConfig.from_dict(saved, where=str(saved_path)).to_dict()
            except ValueError:
                pass
            diff = sorted(k for k in set(saved) | set(cfg) if k not in RESUME_MAY_CHANGE and saved.get(k) != cfg.get(k))
            if diff:
                raise CliError(f"--resume: the options differ from the run in {out} in {', '.join(diff)} "
                               f"(a resumed run trains the same thing; only {', '.join(RESUME_MAY_CHANGE)} may change)")
        return
    if used and not force:
        raise CliError(f"--out {out}: not empty (an earlier run?); give --resume to continue it, --force to replace it, or another --out")
