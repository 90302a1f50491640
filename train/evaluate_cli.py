"""``edgebp evaluate``: score a run (or an exported bundle) on held-out records."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np

from edgebp.cli import CliError
from edgebp.cli_types import deprecated_alias, int_range, non_negative, positive
from edgebp.variants import EVALUATE_VARIANTS, VariantChoice
from edgebp.jsonsafe import json_default

log = logging.getLogger(__name__)


VARIANTS = EVALUATE_VARIANTS  # the subset of edgebp.variants that evaluate scores


def model_open(path: str, variant: str | None, backend: str = "ort"):
    """A run directory (torch) or an exported bundle (ONNX Runtime): both give the same
    ``runner``, ``geometry()``, ``inputs``, ``norm``, ``split``, ``config`` and ``describe()``.

    ``variant`` ``None`` picks what is deployed: ``stream-int8`` for a bundle (the model
    ``edgebp run`` runs), ``fp32`` for a run directory. For a stream variant the window fp32
    model is opened for its metadata; scoring goes through the runtime
    (:mod:`edgebp.runtime.stream_score`)."""
    p = Path(path)
    # a checkpoint beside it makes a run directory (edgebp.train.predict.is_run_dir); that
    # module imports torch, so it is imported only for a run directory and a bundle is
    # evaluated without torch installed
    if path != "default" and ((p / "best.pt").exists() or (p / "last.pt").exists()):
        from edgebp.train.predict import RunDir

        variant = variant or "fp32"
        if backend != "ort":
            raise CliError(f"--backend {backend}: a run directory holds the torch model; export a bundle to score its {backend} form")
        if variant != "fp32":
            raise CliError(f"--variant {variant}: a run directory holds the fp32 torch model only; export a bundle for {variant}")
        from edgebp.train.loop import checkpoint_load

        try:  # a junk checkpoint: one line naming it, not torch's unpickling message
            checkpoint_load(p / "best.pt" if (p / "best.pt").exists() else p / "last.pt")
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return RunDir(p)
    if path == "default" or (p / "manifest.json").exists():
        from edgebp.runtime.bundle import BundleError
        from edgebp.runtime.bundle_model import BundleModel

        variant = variant or "stream-int8"
        try:
            if variant.startswith("stream-"):
                src = BundleModel.open(path, variant="fp32")
                if not src.bundle.manifest.get("streaming"):
                    raise CliError(f"{path}: this bundle has no streaming model, so --variant {variant} cannot be scored; use --variant int8 or fp32")
                src.stream_variant = variant
                src.stream_backend = backend
                return src
            return BundleModel.open(path, variant=variant, backend=backend)
        except BundleError as exc:
            raise CliError(str(exc)) from exc
        except ValueError as exc:  # a variant without a TensorRT form: one line naming the valid ones
            if backend == "ort":
                raise
            raise CliError(f"--backend {backend} --variant {variant}: {exc}") from None
    raise CliError(f"{path}: neither a run directory (best.pt) nor a bundle (manifest.json)")


def chain_overrides_of(src) -> dict | None:
    """The input-chain overrides ``src`` was prepared with, for :func:`dataset_prepare`:
    a bundle's from its manifest's ``preprocessing`` (each input's keys that differ from the
    preset, ``fs_in``/``fs_out`` aside: those are set by the record and the model rate), a
    run directory's from its config (``TrainConfig.chain_overrides``). ``None`` for the default
    chain, so the default bundle is prepared, and cached, exactly as before.

    Without it a bundle whose inputs use the ``short`` resampler (2 samples of delay) was
    prepared with ``kaiser`` (19 samples): the reference sat 17 samples (136 ms) off the
    streamed estimate (docs/latency.md)."""
    from edgebp.processing.chain import CHAIN_PRESETS, chain_config

    bundle = getattr(src, "bundle", None)
    if bundle is not None:
        out = {}
        for ch, given in (bundle.manifest.get("preprocessing") or {}).items():
            if ch not in tuple(src.inputs) or ch not in CHAIN_PRESETS:
                continue
            preset = {"resampler": "kaiser", **chain_config(ch, float(given.get("fs_in", 125.0))).to_dict()}
            diff = {k: v for k, v in given.items() if k not in ("fs_in", "fs_out") and preset.get(k) != v}
            if diff:
                out[ch] = diff
        return out or None
    cfg = getattr(src, "config", None)
    fn = getattr(cfg, "chain_overrides", None)
    return fn(tuple(src.inputs)) if callable(fn) else None


def records_choose(src, data: str | None, split: str, include_training: bool = False) -> tuple[list, dict]:
    """Prepare ``data`` (default: what ``src`` was trained on) for ``src`` and choose the
    ``split`` records with :func:`edgebp.record_identity.split_select`: training and
    validation records are recognised by sample hash and name whatever path or reader the data
    come through. The data are prepared with ``src``'s own input chain
    (:func:`chain_overrides_of`). Returns (chosen prepared records, ``report["data"]``)."""
    from edgebp.record_identity import split_select
    from edgebp.train.data import data_source_path, dataset_prepare

    cfg = src.config
    data = data or cfg.data
    path = data_source_path(data, cfg.synth_subjects, cfg.synth_minutes, seed=cfg.seed)
    overrides = chain_overrides_of(src)
    prepared, skipped = dataset_prepare(path, tuple(src.inputs), float(src.geometry().fs), cfg.max_minutes, chain_overrides=overrides)
    try:
        chosen, sel = split_select(prepared, src.split, split, include_training)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if not chosen:
        if split in ("test", "val"):
            n = len(src.split.get(split) or [])
            raise CliError(f"{data}: none of the model's {n} {split} records is in this data (matched by sample sha256 and name); "
                           "use --split all for other data")
        raise CliError(f"{data}: all {len(prepared)} usable records were used for training or validation "
                       f"({sel['excluded']['train']} train, {sel['excluded']['val']} val); nothing held out to score "
                       "(--include-training scores them anyway, not as a held-out result)")
    info = {"source": data, "path": str(path), "split": split, "records": [p.record_id for p in chosen], "skipped": len(skipped),
            "excluded": dict(sel["excluded"]), "include_training": sel["include_training"], "selection": sel}
    if overrides:
        info["chain_overrides"] = overrides
    return chosen, info


def selection_text(report: dict) -> str:
    """The records line an accuracy table carries (with ``--include-training``: the warning)."""
    from edgebp.record_identity import selection_line

    sel = (report.get("data") or {}).get("selection")
    return selection_line(sel) if sel else ""


def report_table(report: dict, style: str = "text") -> str:
    """:func:`edgebp.metrics.format_report_table` with the records line above it and, when
    training records are included, the warning below it too (``style``: text or markdown)."""
    from edgebp.metrics import format_report_table

    line = selection_text(report)
    sep = "\n\n" if style == "markdown" else "\n"
    text = (line + sep if line else "") + format_report_table(report, style=style)
    if (report.get("data") or {}).get("include_training"):
        text += sep + line
    return text


def scored_file(src, stream_variant: str | None, packet_ms: float) -> dict:
    """Which file was scored (path and sha256) and how: the report says exactly what it graded."""
    from edgebp.runtime.bundle import file_sha256

    bundle = getattr(src, "bundle", None)
    if bundle is None:
        return {"kind": "run directory (torch fp32, window model)", "path": str(getattr(src, "path", ""))}
    backend = getattr(src, "stream_backend", None) or getattr(src, "backend_kind", "ort")
    if stream_variant:
        precision = stream_variant.split("-", 1)[1]
        if backend == "tensorrt":
            from edgebp.variants import tensorrt_file_key

            key = tensorrt_file_key(precision, streaming=True)
        else:
            key = bundle.manifest["streaming"]["file_keys"][precision]
        how = f"streaming runtime (StreamRuntime, as edgebp run), {packet_ms:g} ms packets"
    else:
        key, how = src.file_key, "window model, whole-record offline"
    if backend != "ort":
        how += f", backend {backend}"
    f = bundle.file(key)
    return {"kind": how, "file": f.name, "path": str(f), "sha256": file_sha256(f), "variant": stream_variant or src.variant}


def _stream_score(src, chosen: list, variant: str, packet_ms: float, progress, streamed: list | None = None) -> tuple[list, dict]:
    """Each chosen record through the runtime in device-sized packets (``streamed``: a list
    that receives the runtime's beats with their features, for the calibrated estimator)."""
    from edgebp.io import read_record
    from edgebp.runtime.stream_score import stream_score_records, stream_variant_key

    missing = [p.record_id for p in chosen if not p.source]
    if missing:
        raise CliError(f"{missing[0]}: the prepared record does not say where its samples came from; cannot stream it")
    items = ((read_record(p.source), p) for p in chosen)
    scored, counts = stream_score_records(src.bundle, items, stream_variant_key(variant), packet_ms / 1000.0, keep_waves=3, progress=progress,
                                          features=streamed is not None, streamed=streamed, backend=getattr(src, "stream_backend", "ort"))
    totals = {key: sum(int(c[key]) for c in counts) for key in counts[0] if key not in ("record", "packet_samples", "device_fs")} if counts else {}
    totals["packet_samples"] = counts[-1]["packet_samples"] if counts else None
    return scored, totals


def evaluation_run(src, data: str | None, split: str, calibrate: float, hop: int | None = None, progress: bool = True,
                   include_training: bool = False, packet_ms: float = 20.0, recalibrate_min: float | None = None,
                   calibrated_only_s: float | None = None) -> tuple[dict, list, dict]:
    """Score ``src`` on ``data``'s ``split`` records; returns (report, scored records, data info).

    ``report["data"]`` says which records were scored and how many training (``excluded.train``)
    and validation (``excluded.val``) records were left out; ``include_training`` (``--split
    all`` only) scores them too and the report says so (``include_training``, ``selection``).
    """
    from edgebp.evaluation import calibrate_offsets, records_score, score_report

    chosen, data_info = records_choose(src, data, split, include_training)
    geo = src.geometry()
    if hop is None and hasattr(src, "default_hop"):
        hop = src.default_hop()  # a run trained on the window's last sample is scored point-wise (hop 1)

    def _prog(k, rid):
        if progress:
            click.echo(f"\rscoring {k}/{len(chosen)} {rid}".ljust(60), nl=False, err=True)

    stream_variant = getattr(src, "stream_variant", None)
    streamed = [] if (stream_variant and (calibrate > 0 or calibrated_only_s)) else None
    if stream_variant:
        scored, stream_counts = _stream_score(src, chosen, stream_variant, packet_ms, _prog, streamed)
    else:
        scored = records_score(src.runner, chosen, geo, hop=hop, progress=_prog)
    if progress:
        click.echo("", err=True)
    calib = None
    if calibrate > 0:
        scored, calib = calibrate_offsets(scored, calibrate)
    unit = "window" if geo.output == "values" else "beat"
    report = score_report(scored, src.norm, calib, unit=unit)
    report["model"] = src.describe()
    report["scored"] = scored_file(src, stream_variant, packet_ms)
    if stream_variant:
        report["model"]["variant"] = stream_variant
        report["stream_beats"] = stream_counts
    report["data"] = data_info
    report["calibration_s"] = calibrate
    if streamed is not None:
        report["calibrated"] = calibrated_section(src.bundle, streamed, calibrate if calibrate > 0 else calibrated_only_s, recalibrate_min)
    return report, scored, {"prepared": {p.record_id: p for p in chosen}}


def calibrated_section(bundle, streamed: list, calibrate: float, recalibrate_min: float | None) -> dict:
    """The deployed calibrated path against hold on the same beats: the bundle's estimator (or
    the offset method when it carries none), one reading at ``calibrate`` s (and with
    ``recalibrate_min``, a new reading every that many minutes)."""
    from edgebp.runtime.calibrated import estimator_params_offset
    from edgebp.runtime.calibrated_score import calibrated_apply, calibrated_report, readings_from_reference

    params = bundle.estimator() or estimator_params_offset()
    out = {"method": params.method, "schemes": {}}
    schemes = [("once", None)] + ([(f"every_{recalibrate_min:g}_min", recalibrate_min * 60.0)] if recalibrate_min else [])
    for name, every in schemes:
        res = [calibrated_apply(s, params, readings_from_reference(s, calibrate, every)) for s in streamed]
        out["schemes"][name] = calibrated_report(res) | {"calibrate_s": calibrate, "every_s": every}
        if params.method == "estimator":
            off = [calibrated_apply(s, estimator_params_offset(), readings_from_reference(s, calibrate, every)) for s in streamed]
            out["schemes"][name]["offset_method"] = calibrated_report(off)
    return out


def report_plots_write(report: dict, scored: list, info: dict, out_dir: Path, title: str) -> list[Path]:
    """report.md, report.html, metrics.json and the plots."""
    from edgebp.plot.clinical import plot_bland_altman, plot_error_cdf, plot_scatter, plot_waveforms
    from edgebp.plot.report import mapping_table, report_write
    from edgebp.scoring import BeatPairs

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2, default=json_default))
    allp = BeatPairs.concat([s.pairs for s in scored])
    records = selection_text(report)
    # the model's description as a table (item / value), not a JSON dump
    sections = [{"heading": "Summary", "text": f"Analysis unit: {report['analysis_unit']}"
                 + (f"\n\n{records}" if records else ""), "table": mapping_table(report["model"], ("model", "value")),
                 "figure": None, "figure_name": ""},
                {"heading": "Clinical table", "text": report_table(report, style="markdown"), "table": None, "figure": None, "figure_name": ""}]
    if len(allp):
        for key in ("sbp", "dbp"):
            sections.append({"heading": f"Bland-Altman {key.upper()}", "text": "", "table": None,
                             "figure": plot_bland_altman(getattr(allp, f"pred_{key}"), getattr(allp, f"ref_{key}"), label=key.upper()), "figure_name": f"bland_altman_{key}.png"})
            sections.append({"heading": f"Predicted vs reference {key.upper()}", "text": "", "table": None,
                             "figure": plot_scatter(getattr(allp, f"pred_{key}"), getattr(allp, f"ref_{key}"), label=key.upper()), "figure_name": f"scatter_{key}.png"})
        err = np.concatenate([allp.pred_sbp - allp.ref_sbp])
        sections.append({"heading": "Cumulative |error| (SBP) with the BHS thresholds", "text": "", "table": None,
                         "figure": plot_error_cdf(err, label="SBP"), "figure_name": "error_cdf_sbp.png"})
        errd = allp.pred_dbp - allp.ref_dbp
        sections.append({"heading": "Cumulative |error| (DBP) with the BHS thresholds", "text": "", "table": None,
                         "figure": plot_error_cdf(errd, label="DBP"), "figure_name": "error_cdf_dbp.png"})
    cal = report.get("calibrated")
    if cal:
        from edgebp.plot.clinical import plot_calibrated_vs_hold
        from edgebp.runtime.calibrated_score import calibrated_table

        for name, rep in cal["schemes"].items():
            if not rep["targets"]:
                continue
            every = f", then every {rep['every_s'] / 60:g} min" if rep.get("every_s") else ""
            head = f"Calibrated ({cal['method']}) vs hold: cuff reading at {rep['calibrate_s']:g} s{every}"
            sections.append({"heading": head, "text": "```\n" + calibrated_table(rep) + "\n```", "table": None,
                             "figure": plot_calibrated_vs_hold({k: v["by_change"] for k, v in rep["targets"].items() if k != "map"}, head),
                             "figure_name": f"calibrated_vs_hold_{name}.png"})
    for s in scored:
        if s.pred_wave is None:
            continue
        p = info["prepared"][s.record_id]
        good = np.flatnonzero(np.isfinite(s.pred_wave) & p.usable)
        if len(good) < int(10 * p.fs):
            continue
        a = good[len(good) // 2]
        sl = slice(a, a + int(8 * p.fs))
        t = np.arange(sl.start, min(sl.stop, len(p.abp))) / p.fs
        ppg = p.X[list(report["model"]["inputs"]).index("ppg"), sl] if "ppg" in report["model"]["inputs"] else None
        ecg = p.X[list(report["model"]["inputs"]).index("ecg"), sl] if "ecg" in report["model"]["inputs"] else None
        sections.append({"heading": f"Example waveform: {s.record_id}", "text": "", "table": None,
                         "figure": plot_waveforms(t, p.abp[sl], s.pred_wave[sl], ppg=ppg, ecg=ecg), "figure_name": f"waveform_{s.record_id}.png"})
    return report_write(out_dir, title, sections)


@click.command(name="evaluate")
@click.argument("model_path", metavar="RUN_DIR|BUNDLE")
@click.option("--data", default=None, help="'synth' or a path; default: the data the model was trained on (found from any directory, or under $EDGEBP_DATA).")
@click.option("--split", type=click.Choice(["test", "val", "all"]), default="test", show_default=True,
              help="test: the model's held-out records; val: its validation records (for tuning); all: every record not used for "
                   "training or validation. Records are recognised by sample sha256 and name, whatever path the data come through.")
@click.option("--include-training", is_flag=True, help="With --split all: score the training and validation records too (not a held-out result; every table says so).")
@click.option("--variant", type=VariantChoice(VARIANTS), default=None,
              help="What to score. Default: for a bundle stream-int8, exactly what `edgebp run` deploys (the streaming int8 model "
                   "through the streaming runtime, in device-sized packets); stream-fp32 the same in fp32; int8/fp32/pruned the "
                   "window models offline. A run directory has fp32 (torch) only.")
@click.option("--packet-ms", type=positive(max=60_000), default=20.0, show_default=True, help="Stream variants: packet length in ms (20 ms = 5 samples at 250 Hz).")
@click.option("--backend", type=click.Choice(["ort", "tensorrt"]), default="ort", show_default=True,
              help="Bundles: ONNX Runtime, or TensorRT with each variant's TensorRT form (as edgebp run --backend tensorrt; needs an NVIDIA GPU and edgebp[tensorrt]).")
@click.option("--cuff-from-reference", "calibrate", type=non_negative(max=86_400), default=0.0, metavar="SECONDS",
              help="Calibrate each record with a cuff reading taken from its reference: the reference mean over its first SECONDS "
                   "(0: calibration-free). Stream variants: that reading "
                   "(the reference mean over those seconds) at that time, through the bundle's calibrated estimator, scored against "
                   "holding the cuff value on the same beats.")
@click.option("--recalibrate-every", "recalibrate_min", type=positive(), default=None,
              help="Stream variants with --cuff-from-reference: also score a new cuff reading every this many minutes.")
@click.option("--hop", type=int_range(1, None), default=None, help="Window models: samples between windows (1 = the seeds' point-wise paradigm).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None, help="Write report.md, report.html, metrics.json and plots here.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@deprecated_alias("--calibrate", "--cuff-from-reference", "calibrate", type=non_negative(max=86_400))
def evaluate_command(model_path, data, split, include_training, variant, packet_ms, backend, calibrate, recalibrate_min, hop, report_dir, as_json):
    """Score a trained run or an exported bundle on held-out records, beside the naive baselines.

    By default a bundle is scored as deployed: its streaming int8 model through the streaming
    runtime (`edgebp run`'s engine) fed in 20 ms packets, with the runtime's own beats (keyed
    to the input's pulses) paired to the reference beats. Window variants read per-beat
    SBP/DBP from the predicted waveform with the reference labels' beat detector. Reports ME, SD, MAE, BHS, AAMI, IEEE 1708, per reading and per subject,
    the reference-BP distribution check, and MASE with a record-bootstrap 95 % interval.

    \b
    Example:
        edgebp evaluate runs/default --report runs/default/report
        edgebp evaluate runs/cbpe --cuff-from-reference 60 --json
        edgebp evaluate default --split all --data /elsewhere/challenge2015
        edgebp evaluate default --cuff-from-reference 60 --recalibrate-every 2
    """
    if include_training and split != "all":
        raise CliError(f"--include-training goes with --split all (--split {split} scores only the {split} records)")
    if not packet_ms > 0:
        raise CliError(f"--packet-ms {packet_ms:g}: the packet length must be positive")
    if recalibrate_min is not None and not (recalibrate_min > 0 and calibrate > 0):
        raise CliError("--recalibrate-every needs --cuff-from-reference SECONDS and a positive number of minutes")
    if backend == "tensorrt":
        from edgebp.runtime.backends import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            raise CliError(f"--backend tensorrt: TensorRT is not usable here: {why}; use --backend ort")
    src = model_open(model_path, variant, backend)
    if hop is not None and hop > 1 and getattr(src, "default_hop", lambda: None)() == 1:
        # only the window's last output was trained: every other output of a window is noise
        # (a DBP MAE in the thousands was seen at --hop 44)
        click.echo(f"warning: --hop {hop}: this model was trained on the window's last sample only (loss mse-last); "
                   "outputs other than the last are untrained; score it at --hop 1 (the default for it)", err=True)
    if recalibrate_min is not None and not getattr(src, "stream_variant", None):
        raise CliError("--recalibrate-every scores the deployed calibrated path: use a stream variant (stream-int8, stream-fp32)")
    report, scored, info = evaluation_run(src, data, split, calibrate, hop, progress=not as_json, include_training=include_training,
                                          packet_ms=packet_ms, recalibrate_min=recalibrate_min)
    if report_dir:
        report_plots_write(report, scored, info, Path(report_dir), f"edgebp evaluate: {src.describe().get('model')}")
    if as_json:
        click.echo(json.dumps(report, default=json_default))
    else:
        sf = report["scored"]
        click.echo(f"Scored: {sf.get('file', sf.get('path'))} ({sf['kind']})" + (f", sha256 {sf['sha256'][:16]}" if sf.get("sha256") else ""))
        sb = report.get("stream_beats")
        if sb:
            click.echo(f"Runtime beats: {sb['runtime_valid_beats']} valid of {sb['runtime_beats']}; {sb['paired']} of {sb['reference_beats']} "
                       f"usable reference beats paired within 0.3 s, {sb['reference_read_from_interval']} read from the prediction over the "
                       f"reference beat, {sb['runtime_unpaired']} runtime beats unpaired")
        click.echo(report_table(report))
        mb = report["mase_bootstrap"]
        click.echo(f"MASE vs naive mean: SBP {mb['sbp']['mase']:.3f} [{mb['sbp']['ci95'][0]:.3f}, {mb['sbp']['ci95'][1]:.3f}], "
                   f"DBP {mb['dbp']['mase']:.3f} [{mb['dbp']['ci95'][0]:.3f}, {mb['dbp']['ci95'][1]:.3f}] (95 % record bootstrap, {mb['sbp']['n_records']} records)")
        sp = report.get("spread", {})
        if sp:
            click.echo("SD of predictions vs reference (all readings; between records): " + ", ".join(
                f"{k.upper()} {sp[k]['pred_sd']:.1f} vs {sp[k]['ref_sd']:.1f}; {sp[k]['pred_sd_between_records']:.1f} vs {sp[k]['ref_sd_between_records']:.1f}"
                for k in ("sbp", "dbp")))
        cal = report.get("calibrated")
        if cal:
            from edgebp.runtime.calibrated_score import calibrated_table

            for name, rep in cal["schemes"].items():
                every = f", then every {rep['every_s'] / 60:g} min" if rep.get("every_s") else ""
                click.echo("")
                click.echo(calibrated_table(rep, f"Calibrated ({cal['method']}) vs hold, cuff reading at {rep['calibrate_s']:g} s{every} "
                                                 f"(diff = model - hold MAE, record-bootstrap 95 % CI; goals: CI upper <= +0.3, ratio on > 10 mmHg moves <= 0.85):"))
                if "offset_method" in rep:
                    click.echo(calibrated_table(rep["offset_method"], "For comparison, the offset method (model shifted by the cuff):"))
        if report_dir:
            click.echo(f"report written to {report_dir}")
