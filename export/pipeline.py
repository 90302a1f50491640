"""``edgebp export``: run directory -> verified bundle (fp32, pruned, int8 ORT, TensorRT forms),
validated against full precision on the run's held-out records."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

import edgebp
from edgebp.jsonsafe import json_default
from edgebp.evaluation import ModelGeometry, records_score, score_report
from edgebp.export import onnx_export, quantize
from edgebp.runtime.backends import OrtBackend, tensorrt_available
from edgebp.runtime.bundle import SCHEMA, bundle_load, bundle_write_manifest
from edgebp.train.data import data_source_path, dataset_prepare, windows_index
from edgebp.train.predict import RunDir
from edgebp.train.zoo import model_spec

log = logging.getLogger(__name__)

TARGETS = ("ort", "tensorrt")


class ExportError(RuntimeError):
    """The export ran but its result must not be used (e.g. int8 too far from fp32)."""


def _windows(prepared, window: int, n: int, seed: int) -> np.ndarray:
    idx = windows_index(prepared, window, max(1, window // 2), max(1, n), seed)
    if len(idx) == 0:
        return np.zeros((0, prepared[0].X.shape[0] if prepared else 1, window), np.float32)
    rng = np.random.default_rng(seed)
    if len(idx) > n:
        idx = idx[np.sort(rng.choice(len(idx), n, replace=False))]
    return np.stack([np.nan_to_num(prepared[r].X[:, s : s + window]) for r, s in idx]).astype(np.float32)


def _ort_runner(path: Path):
    be = OrtBackend(path, threads=1)
    name = be.input_names[0]
    return lambda x: be.run({name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _finetune(model, run: RunDir, prepared_train, prepared_val, epochs: int) -> list[dict]:
    """A short fine-tune of the pruned model on the run's own training split."""
    from torch.utils.data import DataLoader

    from edgebp.train.loop import WindowDataset, evaluate_loss, loss_compute, model_geometry

    cfg = run.config
    window, warmup, delay = model_geometry(model, cfg.model, cfg)
    spec = model_spec(cfg.model)
    stride = max(1, int(round(cfg.stride_s * cfg.fs))) if spec.causal else max(1, window // 2)
    tr = windows_index(prepared_train, window + delay, stride, cfg.max_windows_per_record, cfg.seed)
    va = windows_index(prepared_val, window + delay, stride, max(50, cfg.max_windows_per_record // 4), cfg.seed + 1)
    tr[:, 1] += delay
    va[:, 1] += delay
    dl = DataLoader(WindowDataset(prepared_train, tr, window, spec.output, run.norm, delay, warmup), batch_size=cfg.batch_size, shuffle=True,
                    generator=torch.Generator().manual_seed(cfg.seed))
    vl = DataLoader(WindowDataset(prepared_val, va, window, spec.output, run.norm, delay, warmup), batch_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr * 0.3, weight_decay=cfg.weight_decay)
    hist = []
    for ep in range(epochs):
        model.train()
        for x, y, m in dl:
            loss = loss_compute(model, x, y, m, cfg.model)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
        hist.append({"epoch": ep + 1, "val_loss": evaluate_loss(model, vl, "cpu", cfg.model)})
        log.info("pruned fine-tune epoch %d/%d: validation loss %.4f", ep + 1, epochs, hist[-1]["val_loss"])
    model.eval()
    return hist


def _wave_diffs(scored_a, scored_b) -> dict:
    """Per-sample |difference| (mmHg) between two variants' point-wise outputs."""
    d = []
    for a, b in zip(scored_a, scored_b):
        if a.pred_wave is None or b.pred_wave is None:
            continue
        ok = np.isfinite(a.pred_wave) & np.isfinite(b.pred_wave)
        d.append(np.abs(a.pred_wave[ok] - b.pred_wave[ok]))
    if not d:
        pa = np.concatenate([np.r_[s.pairs.pred_sbp, s.pairs.pred_dbp] for s in scored_a]) if scored_a else np.zeros(0)
        pb = np.concatenate([np.r_[s.pairs.pred_sbp, s.pairs.pred_dbp] for s in scored_b]) if scored_b else np.zeros(0)
        d = [np.abs(pa - pb)]
    d = np.concatenate(d)
    return {"max_abs_mmHg": float(d.max()) if len(d) else float("nan"), "mean_abs_mmHg": float(d.mean()) if len(d) else float("nan"), "n": int(len(d))}


def export_run(run_dir: str | Path, out_dir: str | Path, int8: bool = True, prune: float = 0.0, targets: tuple[str, ...] = TARGETS,
               calib_windows: int = 128, max_delta_mae: float = 1.0, force: bool = False, finetune_epochs: int = 2,
               command: str = "", max_records: int = 0) -> dict:
    """Export a training run into a bundle; returns the validation report (also written)."""
    run = RunDir(run_dir)
    cfg = run.config
    spec = model_spec(cfg.model)
    geo = run.geometry()
    out = Path(out_dir)
    if out.exists():
        if not force and any(out.iterdir()):
            raise ExportError(f"{out}: exists and is not empty (use --force to overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"--targets: {t!r} is not valid; choose from: {', '.join(TARGETS)}")

    src = data_source_path(cfg.data, cfg.synth_subjects, cfg.synth_minutes, seed=cfg.seed)
    prepared, _ = dataset_prepare(src, run.inputs, geo.fs, cfg.max_minutes)
    by_id = {p.record_id: p for p in prepared}
    train_p = [by_id[i] for i in run.split["train"] if i in by_id]
    val_p = [by_id[i] for i in run.split["val"] if i in by_id]
    test_p = [by_id[i] for i in run.split["test"] if i in by_id]
    if max_records:
        test_p = test_p[:max_records]
    C = len(run.inputs)
    model = run.model.eval()
    dynamic = not spec.export_fixed_length
    W = geo.window if not geo.causal else max(geo.window, 4 * max(geo.receptive_field, 1))
    calib = _windows(train_p, W, calib_windows, cfg.seed)
    check = _windows(test_p or val_p, W, 8, cfg.seed + 7)
    if len(calib) == 0:
        raise ExportError("no usable training windows for calibration")
    report: dict = {"run_dir": str(run_dir), "model": cfg.model, "preset": cfg.preset, "steps": []}
    files: dict[str, str] = {}
    scale = run.norm["abp_std"] if spec.output == "waveform" else max(run.norm["sbp_std"], run.norm["dbp_std"])

    # 1. fp32 ONNX, checked against torch on real windows (two lengths when dynamic)
    info = onnx_export.onnx_export_model(model, out / "model_fp32.onnx", C, W, dynamic_length=dynamic)
    lengths = [W, W // 2 if not spec.window_multiple else max(spec.window_multiple, (W // 2) // spec.window_multiple * spec.window_multiple)] if dynamic else [W]
    info["check"] = onnx_export.onnx_check_against_torch(model, out / "model_fp32.onnx", check if len(check) else calib[:4], scale, lengths)
    files["fp32"] = "model_fp32.onnx"
    report["fp32"] = info
    log.info("fp32 ONNX written (%s exporter); max |ORT - torch| %.2e mmHg at lengths %s", info["exporter"], info["check"]["max_abs_diff_mmHg"], info["check"]["lengths_checked"])

    # 2. structured pruning + fine-tune
    pruned_model = None
    if prune > 0:
        pruned_model = copy.deepcopy(model)
        preport = __import__("edgebp.export.prune", fromlist=["model_prune"]).model_prune(pruned_model, torch.from_numpy(calib[:2]), prune)
        preport["finetune"] = _finetune(pruned_model, run, train_p, val_p, finetune_epochs)
        onnx_export.onnx_export_model(pruned_model, out / "model_pruned.onnx", C, W, dynamic_length=dynamic)
        files["pruned"] = "model_pruned.onnx"
        report["pruning"] = preport

    # 3. int8 for ONNX Runtime (CPU)
    if int8:
        q = quantize.quantize_int8_cpu(out / "model_fp32.onnx", out / "model_int8.onnx", calib)
        q["kernels"] = quantize.int8_kernels_check(out / "model_int8.onnx", out / "_opt.onnx")
        try:
            q["sqnr_worst"] = quantize.sqnr_worst_layers(out / "model_fp32.onnx", out / "model_int8.onnx", calib)
        except Exception as exc:  # noqa: BLE001 - a debugging aid, not a gate
            q["sqnr_worst"] = f"not computed: {type(exc).__name__}: {exc}"
        files["int8"] = "model_int8.onnx"
        report["int8"] = q
        log.info("int8 ONNX: %s; integer ops %s", q["mode"], q["kernels"]["integer_ops"])
        if pruned_model is not None:
            quantize.quantize_int8_cpu(out / "model_pruned.onnx", out / "model_pruned_int8.onnx", calib)
            files["pruned_int8"] = "model_pruned_int8.onnx"

    # 4. the external-state streaming form (edge-tcn)
    streaming = None
    if spec.streamable and hasattr(model, "stream_init"):
        from edgebp.train.models_tcn import EdgeTCNStreaming

        chunk = int(getattr(cfg, "stream_chunk", 0) or 25)
        states = model.stream_init(1)
        sinfo = onnx_export.onnx_export_streaming(EdgeTCNStreaming(model), out / "model_stream_fp32.onnx", C, chunk, states)
        files["stream_fp32"] = "model_stream_fp32.onnx"
        file_keys = {"fp32": "stream_fp32"}
        if int8:
            sq = _quantize_streaming(model, out / "model_stream_fp32.onnx", out / "model_stream_int8.onnx", train_p, chunk)
            files["stream_int8"] = "model_stream_int8.onnx"
            file_keys["int8"] = "stream_int8"
            sinfo["int8"] = sq
        streaming = {"chunk": chunk, "states": sinfo["states"], "file_keys": file_keys}
        report["streaming"] = sinfo

    # 5. TensorRT artefacts (engines only where tensorrt and a GPU exist)
    trt_info = None
    if "tensorrt" in targets:
        trt_info = _tensorrt_artefacts(out, calib, files, int8)
        report["tensorrt"] = trt_info

    # 6. validation against fp32 on the held-out records
    variants = {"fp32": _ort_runner(out / "model_fp32.onnx")}
    if "pruned" in files:
        variants["pruned"] = _ort_runner(out / "model_pruned.onnx")
    if "int8" in files:
        variants["int8"] = _ort_runner(out / "model_int8.onnx")
    vgeo = ModelGeometry(output=geo.output, window=W if geo.causal else geo.window, fs=geo.fs, delay=geo.delay, causal=geo.causal, receptive_field=geo.receptive_field, norm=run.norm)
    scored = {}
    table = {}
    for name, fn in variants.items():
        scored[name] = records_score(fn, test_p, vgeo, keep_waves=len(test_p))
        rep = score_report(scored[name], run.norm)
        table[name] = {k: rep[k] for k in ("sbp", "dbp", "n_pairs")} | {"baselines": rep.get("baselines")}
        if name != "fp32":
            table[name]["vs_fp32"] = _wave_diffs(scored["fp32"], scored[name])
        log.info("%s on %d held-out records: SBP MAE %.2f, DBP MAE %.2f mmHg", name, len(test_p), rep["sbp"]["mae"], rep["dbp"]["mae"])
    report["validation"] = table
    report["validation_records"] = [p.record_id for p in test_p]
    sizes = {k: (out / v).stat().st_size for k, v in files.items() if (out / v).exists()}
    report["file_sizes"] = sizes

    delta = None
    if "int8" in table:
        delta = {k: table["int8"][k]["mae"] - table["fp32"][k]["mae"] for k in ("sbp", "dbp")}
        report["int8_delta_mae"] = delta

    # 7. report and manifest
    (out / "report.json").write_text(json.dumps(report, indent=2, default=json_default))
    (out / "report.md").write_text(export_report_markdown(report))
    files["report_json"] = "report.json"
    files["report_md"] = "report.md"
    from edgebp.processing.chain import chain_config

    manifest = {
        "schema": SCHEMA,
        "model": {"name": cfg.model, "preset": cfg.preset, "params": int(sum(p.numel() for p in model.parameters())),
                  "run_config": cfg.to_dict()},
        "inputs": list(run.inputs),
        "fs": float(geo.fs),
        "window": int(W if geo.causal else geo.window),
        "hop": int(streaming["chunk"] if streaming else max(1, geo.window // 2) if spec.output == "waveform" else geo.window),
        "delay": int(geo.delay),
        "receptive_field": int(geo.receptive_field),
        "causal": bool(geo.causal),
        "output": spec.output,
        "output_units": "mmHg",
        "preprocessing": {k: chain_config(k, geo.fs).to_dict() for k in run.inputs},
        "normalisation": {k: float(v) if k != "n_train_beats" else int(v) for k, v in run.norm.items()},
        "reference": {"sbp_mean": float(run.norm["sbp_mean"]), "sbp_sd": float(run.norm["sbp_std"]),
                      "dbp_mean": float(run.norm["dbp_mean"]), "dbp_sd": float(run.norm["dbp_std"]), "n_beats": int(run.norm.get("n_train_beats", 0))},
        "streaming": streaming,
        "files": files,
        "calibration": {"windows": int(len(calib)), "window": int(W), "description": f"{len(calib)} windows drawn from the training split ({len(train_p)} records), MinMax", "sha256": quantize.calibration_hash(calib)},
        "opset": onnx_export.OPSET,
        "edgebp_version": edgebp.__version__,
        "commands": [c for c in (_train_command(cfg), command) if c],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "validation": {"int8_delta_mae": delta, "records": len(test_p)},
        "tensorrt": trt_info,
        "pruning": report.get("pruning"),
        "split": {k: list(v) for k, v in run.split.items()},
    }
    manifest = json.loads(json.dumps(manifest, default=json_default))
    bundle_write_manifest(out, manifest)
    bundle_load(out)  # prove it verifies
    if delta is not None and max(delta.values()) > max_delta_mae:
        msg = f"int8 MAE is worse than fp32 by SBP {delta['sbp']:+.2f} / DBP {delta['dbp']:+.2f} mmHg (limit {max_delta_mae}); see {out / 'report.md'}"
        if not force:
            raise ExportError(msg + " (use --force to keep it)")
        log.warning("%s; kept because of --force", msg)
    return report


def _quantize_streaming(model, fp32_stream: Path, out_path: Path, train_p, chunk: int) -> dict:
    """Static int8 for the external-state graph, calibrated on states met while streaming."""
    import onnx as _onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    names = [i.name for i in _onnx.load(str(fp32_stream)).graph.input]
    be = OrtBackend(fp32_stream)
    feeds = []
    for p in train_p[:4]:
        x = np.nan_to_num(p.X).astype(np.float32)
        states = [s.numpy() for s in model.stream_init(1)]
        n = min(x.shape[1] // chunk, 200)
        for k in range(n):
            f = {names[0]: x[None, :, k * chunk : (k + 1) * chunk]} | {nm: st for nm, st in zip(names[1:], states)}
            if k % 4 == 0:
                feeds.append(f)
            res = be.run(f)
            states = res[1:]

    class _R(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(feeds)

    quantize_static(str(fp32_stream), str(out_path), _R(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    return {"calibration_steps": len(feeds), "mode": "static QDQ on streamed states"}


def _tensorrt_artefacts(out: Path, calib: np.ndarray, files: dict, int8: bool) -> dict:
    info: dict = {}
    if int8:
        quantize.quantize_int8_tensorrt(out / "model_fp32.onnx", out / "model_trt_int8.onnx", calib)
        files["trt_int8"] = "model_trt_int8.onnx"
        info["rule_check"] = quantize.tensorrt_rule_check(out / "model_trt_int8.onnx")
        info["polygraphy_lint"] = quantize.polygraphy_lint(out / "model_trt_int8.onnx")
    info["fp16_source"] = "model_fp32.onnx"
    info["build_commands"] = [
        "trtexec --onnx=model_trt_int8.onnx --int8 --saveEngine=model_int8.plan",
        "trtexec --onnx=model_fp32.onnx --fp16 --saveEngine=model_fp16.plan",
    ]
    ok, why = tensorrt_available()
    info["engines_built"] = False
    if not ok:
        info["engine_note"] = f"TensorRT engines not built here: {why}; the ONNX files and the build commands above are in the bundle"
        log.warning(info["engine_note"])
        return info
    from edgebp.runtime.backends import TensorRTBackend

    ref = _ort_runner(out / "model_fp32.onnx")(calib[:8])
    for prec, f in (("int8", "model_trt_int8.onnx"), ("fp16", "model_fp32.onnx")):
        if not (out / f).exists():
            continue
        be = TensorRTBackend(out / f, precision=prec)
        got = be.run({be.input_names[0]: calib[:8]})[0]
        info[f"{prec}_vs_ort_fp32_max_abs"] = float(np.max(np.abs(got - ref)))
    info["engines_built"] = True
    return info


def _train_command(cfg) -> str:
    """The ``edgebp train`` command that reproduces ``cfg``, every non-default key as ``--set``."""
    from edgebp.train.config import TrainConfig

    inputs = f" --inputs {','.join(cfg.inputs)}" if cfg.inputs else ""
    given = {"model", "preset", "inputs", "data", "epochs", "seed"}
    default = TrainConfig().to_dict()
    sets = "".join(f" --set {k}={json.dumps(v)}" for k, v in cfg.to_dict().items() if k not in given and v != default.get(k))
    return f"edgebp train --model {cfg.model} --preset {cfg.preset}{inputs} --data {cfg.data} --epochs {cfg.epochs} --seed {cfg.seed}{sets}"


def export_report_markdown(report: dict) -> str:
    """The fp32 / pruned / int8 table, side by side."""
    v = report["validation"]
    names = list(v)
    lines = [f"# Export report: {report['model']} ({report['preset']})", "",
             f"Validation on {len(report['validation_records'])} held-out records of the run's split (per beat; records treated as subjects; calibration-free).", ""]
    hdr = "| metric | " + " | ".join(names) + " |"
    lines += [hdr, "|" + "---|" * (len(names) + 1)]

    def row(label, f):
        lines.append(f"| {label} | " + " | ".join(f(v[n]) for n in names) + " |")

    for k in ("sbp", "dbp"):
        row(f"{k.upper()} ME / SD", lambda t, k=k: f"{t[k]['me']:.2f} / {t[k]['sd']:.2f}")
        row(f"{k.upper()} MAE", lambda t, k=k: f"{t[k]['mae']:.2f}")
        row(f"{k.upper()} BHS grade", lambda t, k=k: f"{t[k]['bhs']['grade']} ({t[k]['bhs']['within5']:.0f}/{t[k]['bhs']['within10']:.0f}/{t[k]['bhs']['within15']:.0f} %)")
        row(f"{k.upper()} AAMI criterion 1", lambda t, k=k: "pass" if t[k]["aami"]["criterion1"] else "fail")
        row(f"{k.upper()} IEEE 1708", lambda t, k=k: str(t[k]["ieee1708"]))
    row("max / mean abs diff vs fp32 (mmHg)", lambda t: "-" if "vs_fp32" not in t else f"{t['vs_fp32']['max_abs_mmHg']:.3f} / {t['vs_fp32']['mean_abs_mmHg']:.3f}")
    lines.append("")
    lines.append("| file | bytes |")
    lines.append("|---|---|")
    for k, b in report.get("file_sizes", {}).items():
        lines.append(f"| {k} | {b} |")
    if "int8" in report:
        lines += ["", f"int8: {report['int8']['mode']}", f"integer kernels in the ORT-optimised graph: {', '.join(report['int8']['kernels']['integer_ops']) or 'none'}"]
        if isinstance(report["int8"].get("sqnr_worst"), list):
            lines += ["", "Worst tensors by SQNR (dB): " + ", ".join(f"{r['tensor']} {r['sqnr_db']:.1f}" for r in report["int8"]["sqnr_worst"])]
    if "pruning" in report:
        p = report["pruning"]
        lines += ["", f"Pruning: ratio {p['ratio']}, parameters {p['params_before']} -> {p['params_after']}, MACs/window {p['macs_before']} -> {p['macs_after']}",
                  "Left alone: " + ("; ".join(p["left_alone"]) or "none")]
    if "tensorrt" in report:
        t = report["tensorrt"]
        lines += ["", "TensorRT: " + (t.get("engine_note") or "engines built and compared with ORT fp32"), "Build commands:"] + [f"    {c}" for c in t["build_commands"]]
        if "rule_check" in t:
            lines.append(f"TensorRT rule check: {'ok' if t['rule_check']['ok'] else 'problems: ' + '; '.join(t['rule_check']['problems'])}")
    return "\n".join(lines) + "\n"
