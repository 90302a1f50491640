"""``edgebp train``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgebp.cli import CliError


@click.command(name="train")
@click.option("--model", default=None, help="Model name: edge-tcn (default), msca-cssc-unet, cbpe-net, pulse2pressure, inn-par.")
@click.option("--preset", type=click.Choice(["edge", "paper"]), default=None, help="Model size preset (default edge).")
@click.option("--inputs", default=None, help="Input channels, comma-separated: ppg,ecg (default: the model's own).")
@click.option("--data", default=None, help="'synth' (built-in cohort, default), a directory of WFDB records, or UCI part_N.mat files.")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping may end sooner).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train (auto: CUDA when present).")
@click.option("--seed", type=int, default=None, help="Seed for the split, the windows and the weights.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="JSON or TOML file of training keys; options given here override it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable), e.g. --set batch_size=64.")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/last.pt.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/default", show_default=True, help="Run directory to write.")
def train_command(model, preset, inputs, data, epochs, device, seed, config_file, overrides, resume, out_dir):
    """Train a blood-pressure model with a subject-wise split, and write a run directory.

    The run directory holds config.json, split.json (records per split, by subject),
    norm.json (statistics fit on the training split only), metrics.jsonl (per epoch),
    best.pt and last.pt (state dict, config, normalisation, split; torch.load with
    weights_only=True). Several GPUs: torchrun --nproc_per_node K -m edgebp train ...

    \b
    Example:
        edgebp train --out runs/default
        edgebp train --model cbpe-net --inputs ppg,ecg --data ../shared/data/challenge2015 --epochs 20 --out runs/cbpe
    """
    from edgebp.train.config import TrainConfig
    from edgebp.train.loop import train_run

    base = TrainConfig.from_file(config_file).to_dict() if config_file else TrainConfig().to_dict()
    given = {"model": model, "preset": preset, "data": data, "epochs": epochs, "device": device, "seed": seed}
    base.update({k: v for k, v in given.items() if v is not None})
    if inputs:
        base["inputs"] = [s.strip() for s in inputs.split(",") if s.strip()]
    for item in overrides:
        if "=" not in item:
            raise CliError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            base[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            base[k.strip()] = v
    cfg = TrainConfig.from_dict(base, where="training config")
    logging.getLogger("edgebp").setLevel(min(logging.getLogger("edgebp").getEffectiveLevel(), logging.INFO))
    summary = train_run(cfg, Path(out_dir), resume=resume)
    click.echo(f"trained {summary['model']}/{summary['preset']} ({summary['params']} parameters) in {summary['seconds']} s; "
               f"best validation loss {summary['best_val_loss']:.4f}; run directory {out_dir}")
