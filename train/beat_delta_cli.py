"""``edgebp train --model beat-delta --bundle B --out DIR``: fit the calibrated per-beat
estimator on B's training records (chosen on its validation records) and write DIR, a copy
of B that carries it (``estimator.json``, hashed in the manifest), with ``beat_delta_fit.json``
(the grid and the validation figures). Test records are never read."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import click

from edgebp.cli import CliError

log = logging.getLogger(__name__)


def records_of_split(src, data: str | None, which: str) -> list:
    """The prepared records of ``src``'s ``which`` split (``train`` or ``val``), recognised by
    sample sha256 (by name when the split records no hashes)."""
    from edgebp.record_identity import identity_of, split_index
    from edgebp.train.data import data_source_path, dataset_prepare

    cfg = src.config
    path = data_source_path(data or cfg.data, cfg.synth_subjects, cfg.synth_minutes, seed=cfg.seed)
    prepared, _ = dataset_prepare(path, tuple(src.inputs), float(src.geometry().fs), cfg.max_minutes)
    idx = split_index(src.split)
    out = []
    for p in prepared:
        ident = identity_of(p)
        role = idx.by_hash.get(ident.sha256) if idx.has_hashes and ident.sha256 else idx.role_by_name(ident.record)
        if role == which:
            out.append(p)
    if not out:
        raise CliError(f"{path}: none of the bundle's {which} records is in this data (matched by sample sha256 or name)")
    return out


def beat_delta_train(bundle: str, data: str | None, out_dir: Path, force: bool = False, echo=click.echo,
                     overrides: dict | None = None) -> dict:
    """Fit and write the bundle copy; returns the fit summary. ``overrides``: keys of
    :class:`edgebp.train.beat_delta.FitConfig` (grids, episode starts and lengths)."""
    from edgebp.io import read_record
    from edgebp.runtime.bundle import bundle_load, bundle_write_manifest
    from edgebp.runtime.calibrated import TARGETS, estimator_save
    from edgebp.train.beat_delta import FitConfig, beat_delta_fit, scores_collect, val_report
    from edgebp.train.evaluate_cli import model_open

    try:
        cfg = FitConfig.from_dict(overrides or {})
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise CliError(f"{out_dir}: exists and is not empty; choose another --out or pass --force")
    src = model_open(bundle, "stream-int8")
    scores = {}
    t0 = time.perf_counter()
    for split in ("train", "val"):
        chosen = records_of_split(src, data, split)

        def prog(k, rid, split=split, n=len(chosen)):
            echo(f"\rstreaming {split} records {k}/{n} {rid} ({time.perf_counter() - t0:.0f} s)".ljust(70), nl=False, err=True)

        scores[split] = scores_collect(src.bundle, ((read_record(p.source), p) for p in chosen), progress=prog)
        echo("", err=True)

    def fprog(i, n, best):
        cells = "  ".join(f"{tg} {v[0]:.2f} (hold {v[1]:.2f})" for tg, v in best.items())
        echo(f"fit: smoothing {i}/{n}: best validation MAE {cells}", err=True)

    try:
        params, fit = beat_delta_fit(scores["train"], scores["val"], cfg, progress=fprog)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    rep = val_report(params, scores["val"], cfg.starts[0], window_s=cfg.window_s)
    fit[f"val_report_calibrate_{cfg.starts[0]:g}"] = rep
    out_dir.mkdir(parents=True, exist_ok=True)
    b = bundle_load(bundle)
    for f in b.path.iterdir():
        if f.is_file() and f.name not in ("manifest.json",):
            shutil.copy2(f, out_dir / f.name)
    estimator_save(params, out_dir / "estimator.json")
    (out_dir / "beat_delta_fit.json").write_text(json.dumps(fit, indent=1, default=float))
    m = dict(b.manifest)
    m["files"] = dict(m["files"], estimator="estimator.json")
    m["commands"] = list(m.get("commands", [])) + [f"edgebp train --model beat-delta --bundle {bundle} --out {out_dir}"]
    bundle_write_manifest(out_dir, m)
    chosen = {tg: fit["chosen"][tg] for tg in TARGETS}
    echo("chosen on validation: " + "; ".join(f"{tg}: tau {c['tau']:g} beats, lambda {c['lambda']:g}, alpha {c['alpha']:g} "
                                              f"(MAE {c['val_mae']:.2f} vs hold {c['val_hold_mae']:.2f})" for tg, c in chosen.items()))
    return {"out": str(out_dir), "chosen": chosen, "seconds": round(time.perf_counter() - t0, 1)}
