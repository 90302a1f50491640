"""``edgebp train``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgebp.cli import CliError


@click.command(name="train")
@click.option("--model", default=None, help="Model name: edge-tcn (default), msca-cssc-unet, cbpe-net, pulse2pressure, inn-par; "
              "or beat-delta (the calibrated per-beat estimator, fitted for --bundle).")
@click.option("--bundle", default=None, help="With --model beat-delta: the bundle whose deployed model feeds the estimator (default: the shipped one).")
@click.option("--force", is_flag=True, help="With --model beat-delta: overwrite a non-empty --out.")
@click.option("--preset", type=click.Choice(["edge", "paper", "lowlatency"]), default=None,
              help="Model size preset (default edge; lowlatency: edge-tcn with 56 ms look-ahead, docs/latency.md).")
@click.option("--inputs", default=None, help="Input channels, comma-separated: ppg,ecg (default: the model's own).")
@click.option("--data", default=None, help="'synth' (built-in cohort, default), a directory of WFDB records, or UCI part_N.mat files.")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping may end sooner).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train (auto: CUDA when present).")
@click.option("--seed", type=int, default=None, help="Seed for the split, the windows and the weights.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="JSON or TOML file of training keys; options given here override it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable), e.g. --set batch_size=64.")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/last.pt.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/default", show_default=True, help="Run directory to write.")
def train_command(model, bundle, force, preset, inputs, data, epochs, device, seed, config_file, overrides, resume, out_dir):
    """Train a blood-pressure model with a subject-wise split, and write a run directory.

    The run directory holds config.json, split.json (records per split, by subject),
    norm.json (statistics fit on the training split only), metrics.jsonl (per epoch),
    best.pt and last.pt (state dict, config, normalisation, split; torch.load with
    weights_only=True). Several GPUs: torchrun --nproc_per_node K -m edgebp train ...

    \b
    Example:
        edgebp train --out runs/default
        edgebp train --model cbpe-net --inputs ppg,ecg --data ../shared/data/challenge2015 --epochs 20 --out runs/cbpe
        edgebp train --model beat-delta --bundle default --out bundles/default-cal

    beat-delta writes a copy of the bundle carrying the calibrated estimator (estimator.json):
    streamed through the deployed model on the bundle's training records, chosen on its
    validation records (edgebp.train.beat_delta).
    """
    if model == "beat-delta":
        from edgebp.train.beat_delta_cli import beat_delta_train

        bad = [n for n, v in (("--preset", preset), ("--inputs", inputs), ("--epochs", epochs), ("--device", device), ("--config", config_file),
                               ("--resume", resume or None)) if v is not None]
        if bad:
            raise CliError(f"--model beat-delta does not take {', '.join(bad)} (it is fitted in closed form for --bundle; "
                           "--set takes its grid keys, e.g. --set starts=[30,60])")
        fit_over = _set_items(overrides, strict=True)
        logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
        beat_delta_train(bundle or "default", data, Path(out_dir), force=force, overrides=fit_over)
        return
    if bundle is not None or force:
        raise CliError("--bundle and --force belong to --model beat-delta")
    from edgebp.train.config import TrainConfig
    from edgebp.train.loop import train_run

    base = TrainConfig.from_file(config_file).to_dict() if config_file else TrainConfig().to_dict()
    given = {"model": model, "preset": preset, "data": data, "epochs": epochs, "device": device, "seed": seed}
    base.update({k: v for k, v in given.items() if v is not None})
    if inputs:
        base["inputs"] = [s.strip() for s in inputs.split(",") if s.strip()]
    base.update(_set_items(overrides))
    cfg = TrainConfig.from_dict(base, where="training config")
    logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
    summary = train_run(cfg, Path(out_dir), resume=resume)
    click.echo(f"trained {summary['model']}/{summary['preset']} ({summary['params']} parameters) in {summary['seconds']} s; "
               f"best validation loss {summary['best_val_loss']:.4f}; run directory {out_dir}")


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
