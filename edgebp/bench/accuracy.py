"""Accuracy per variant on the held-out records, beside the naive baselines.

The same scoring as ``edgebp evaluate`` (:func:`edgebp.train.evaluate_cli.evaluation_run`):
per-beat SBP/DBP read from the predicted waveform by the reference beat detector, records
split by subject, calibration-free. The ONNX variants run through ONNX Runtime
(:class:`edgebp.runtime.bundle_model.BundleModel`); ``torch-fp32`` loads the run directory
(torch is imported only then).

Examples
--------
>>> variant_source_key("ort-int8")
'int8'
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: bench variant -> bundle model key (``None``: not a bundle file)
VARIANT_KEYS = {"stream-int8": "stream_int8", "stream-fp32": "stream_fp32", "torch-fp32": None, "ort-fp32": "fp32", "ort-int8": "int8",
                "pruned": "pruned", "pruned-int8": "pruned_int8", "tensorrt": "trt_int8"}
VARIANTS = tuple(VARIANT_KEYS)


CALIBRATE_S = 60.0  # the cuff reading of the calibrated row (as docs/results.md 4a)


def variant_source_key(variant: str) -> str | None:
    """The bundle file key a bench variant runs (``None`` for torch-fp32).

    Raises
    ------
    ValueError
        Unknown variant, naming the valid ones.
    """
    if variant not in VARIANT_KEYS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANT_KEYS[variant]


def _component(m: dict) -> dict:
    return {"n": m.get("n"), "me": m.get("me"), "sd": m.get("sd"), "mae": m.get("mae"), "rmse": m.get("rmse"), "r": m.get("r"),
            "bhs_grade": (m.get("bhs") or {}).get("grade"),
            "bhs_within": [(m.get("bhs") or {}).get(k) for k in ("within5", "within10", "within15")],
            "aami_criterion1": (m.get("aami") or {}).get("criterion1"),
            "aami_criterion2": (m.get("aami") or {}).get("criterion2"),
            "ieee1708": m.get("ieee1708")}


def accuracy_summary(report: dict) -> dict:
    """The bench's view of an ``edgebp evaluate`` report: ME, SD, MAE, BHS grade, AAMI
    criterion 1, IEEE 1708 for SBP and DBP, and the training-mean baseline (with the model's
    MASE against it)."""
    out = {"n_pairs": report.get("n_pairs"), "n_records": report.get("n_records"), "analysis_unit": report.get("analysis_unit"),
           "data": report.get("data"), "sbp": _component(report["sbp"]), "dbp": _component(report["dbp"])}
    base = (report.get("baselines") or {}).get("training_mean") or {}
    out["baselines"] = {"training_mean": {k: {**_component(v), "value": v.get("value"), "model_mase": v.get("model_mase")}
                                          for k, v in base.items()}}
    mb = report.get("mase_bootstrap") or {}
    out["mase"] = {k: {"mase": (mb.get(k) or {}).get("mase"), "ci95": (mb.get(k) or {}).get("ci95")} for k in ("sbp", "dbp")}
    return out


def accuracy_measure(bundle_path: str | Path, variant: str, data: str | None = None, split: str = "test",
                     run_dir: str | Path | None = None, include_training: bool = False) -> tuple[dict, dict]:
    """Score one variant of a bundle on held-out records.

    Parameters
    ----------
    bundle_path : str or Path
        Bundle directory or ``"default"``.
    variant : str
        ``stream-int8`` (what ``edgebp run`` deploys: the streaming int8 model through the
        streaming runtime in 20 ms packets), ``stream-fp32``, ``ort-fp32``, ``ort-int8``
        (window models offline), ``pruned`` or ``torch-fp32`` (needs ``run_dir``).
    data : str, optional
        ``synth`` or a path; default: the data the bundle was trained on.
    split : {"test", "all"}
        ``test``: the bundle's held-out records; ``all``: every record of ``data`` not used
        for training or validation, recognised by sample sha256 and name whatever path the
        data come through (:func:`edgebp.record_identity.split_select`).
    include_training : bool
        With ``all``: score the training and validation records too; the summary's ``data``
        says so (``include_training``, ``selection``).

    Returns
    -------
    (dict, dict)
        :func:`accuracy_summary` of the report, and the paired beats
        ``{pred_sbp, ref_sbp, pred_dbp, ref_dbp}`` (arrays) for Bland-Altman plots.
    """
    from edgebp.scoring import BeatPairs
    from edgebp.train.evaluate_cli import evaluation_run

    key = variant_source_key(variant)
    if variant == "torch-fp32":
        if run_dir is None:
            raise ValueError("torch-fp32 needs the run directory (--run RUN_DIR)")
        from edgebp.train.predict import RunDir  # imports torch: the torch-fp32 path only

        src = RunDir(run_dir)
    elif variant == "tensorrt":
        raise ValueError("tensorrt: accuracy through TensorRT needs a TensorRT engine (not on a CPU machine)")
    elif variant.startswith("stream-"):
        from edgebp.train.evaluate_cli import model_open

        src = model_open(str(bundle_path), variant)
    else:
        from edgebp.runtime.bundle_model import BundleModel

        src = BundleModel.open(bundle_path, variant=key)
    # stream variants: also the calibrated path (the bundle's estimator after a 60 s cuff
    # reading) against holding the cuff value on the same beats; the main figures stay calibration-free
    report, scored, _info = evaluation_run(src, data, split, 0.0, None, progress=False, include_training=include_training,
                                           calibrated_only_s=CALIBRATE_S if variant.startswith("stream-") else None)
    allp = BeatPairs.concat([s.pairs for s in scored])
    pairs = {k: np.asarray(getattr(allp, k), dtype=np.float64) for k in ("pred_sbp", "ref_sbp", "pred_dbp", "ref_dbp")}
    summary = accuracy_summary(report)
    summary["source"] = src.describe()
    cal = report.get("calibrated")
    if cal:
        once = cal["schemes"]["once"]
        summary["calibrated"] = {"method": cal["method"], "calibrate_s": CALIBRATE_S, "records": once["records"], "beats": once["beats"],
                                 **{k: {"model_mae": v["model"]["mae"], "hold_mae": v["hold"]["mae"], "diff": v["mae_diff"],
                                        "diff_ci95": v["mae_diff_ci95"], "moved_ratio": v["moved_over_10"]["ratio"]}
                                    for k, v in once["targets"].items()}}
    return summary, pairs
