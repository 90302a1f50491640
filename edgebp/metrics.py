"""Clinical accuracy of blood-pressure estimates: BHS, AAMI/ISO 81060-2, IEEE 1708, baselines.

Every error is ``estimate - reference`` in mmHg. Standard deviations are sample standard
deviations (``ddof=1``), as in ISO 81060-2. Shares are percentages (0-100). "Within t mmHg"
means ``|error| <= t``. Pairs with a NaN (or infinite) estimate or reference are excluded and
counted, never dropped silently: :func:`bp_metrics` logs the count, :func:`bp_report` returns it.

Comparisons against the standards' limits allow :data:`TOLERANCE_MMHG` (1e-9) so that the
binary rounding of decimal inputs (``120.1 - 115.1 == 5.000000000000014``) cannot flip a
verdict; shares are compared exactly (integer counts).

Examples
--------
>>> import numpy as np
>>> from edgebp.metrics import bp_metrics
>>> ref = np.array([120.0, 130.0, 140.0, 150.0])
>>> m = bp_metrics(ref + np.array([2.0, -3.0, 4.0, -1.0]), ref)
>>> m["n"], m["me"], m["mae"], m["bhs"]["grade"], m["ieee1708"]
(4, 0.5, 2.5, 'A', 'A')
>>> m["aami"]["criterion1"], m["aami"]["criterion2"]
(True, None)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Slack on mmHg comparisons, for binary rounding of decimal inputs only.
TOLERANCE_MMHG = 1e-9

#: BHS thresholds (mmHg) and the cumulative shares (%) each grade needs at 5 / 10 / 15 mmHg.
BHS_THRESHOLDS_MMHG = (5.0, 10.0, 15.0)
BHS_REQUIREMENTS_PCT = {
    "A": (60, 85, 95),
    "B": (50, 75, 90),
    "C": (40, 65, 85),
}

#: ISO 81060-2 criterion 1 limits (mmHg).
AAMI_ME_LIMIT_MMHG = 5.0
AAMI_SD_LIMIT_MMHG = 8.0
#: The 2018 AAMI/ESH/ISO protocol: P(|error| <= 10 mmHg) >= 85 %.
AAMI_P10_THRESHOLD_MMHG = 10.0
AAMI_P10_REQUIRED_PCT = 85
#: ISO 81060-2 asks for at least 85 subjects.
AAMI_MIN_SUBJECTS = 85

#: ISO 81060-2 criterion 2, Table 1: |mean error| (mmHg) -> largest allowed SD of the
#: per-subject mean errors (mmHg). The standard tabulates in 0.1 mmHg steps; we keep the
#: 0.5 mmHg entries and interpolate linearly. The limit is a concave function of |ME| (it is
#: the SD at which a normal error with that mean has P(|e| <= 10) = 85 %, which reproduces
#: these entries to within 0.016); chords between 0.5 mmHg knots of that curve lie at most
#: 0.0072 mmHg below it, i.e. the interpolation differs from the 0.1-step table by < 0.01
#: (after the table's own rounding to 0.01) and errs on the strict side.
AAMI_CRITERION2_TABLE = (
    (0.0, 6.95),
    (0.5, 6.93),
    (1.0, 6.87),
    (1.5, 6.78),
    (2.0, 6.65),
    (2.5, 6.47),
    (3.0, 6.24),
    (3.5, 5.97),
    (4.0, 5.64),
    (4.5, 5.24),
    (5.0, 4.79),
)

#: IEEE 1708-2014 grade by mean absolute difference (mmHg): upper bound (inclusive) per grade.
IEEE1708_LIMITS_MMHG = (("A", 5.0), ("B", 6.0), ("C", 7.0))

#: 2018 AAMI/ESH/ISO protocol: spread of the reference readings. (channel, op, mmHg, min share %)
REFERENCE_DISTRIBUTION_RULES = (
    ("sbp", ">=", 160.0, 5),
    ("sbp", "<=", 100.0, 5),
    ("sbp", ">=", 140.0, 20),
    ("dbp", "<=", 60.0, 5),
    ("dbp", ">=", 100.0, 5),
    ("dbp", ">=", 85.0, 20),
)

_COMPONENTS = ("sbp", "dbp", "map")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of readings, got shape {arr.shape}")
    return arr


def bp_pairs_finite(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the (estimate, reference) pairs where both are finite.

    Parameters
    ----------
    pred, ref : array-like
        Estimates and references (mmHg), same length.

    Returns
    -------
    tuple
        ``(pred_kept, ref_kept, n_excluded)``.

    Examples
    --------
    >>> p, r, n_bad = bp_pairs_finite([120.0, float("nan"), 130.0], [118.0, 119.0, 131.0])
    >>> p.tolist(), r.tolist(), n_bad
    ([120.0, 130.0], [118.0, 131.0], 1)
    """
    p = _as_1d(pred, "pred")
    r = _as_1d(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref differ in length: {p.size} vs {r.size}")
    keep = np.isfinite(p) & np.isfinite(r)
    return p[keep], r[keep], int(keep.size - keep.sum())


def _share_pct(count: int, n: int) -> float | None:
    # 100*k/n is one correctly rounded division, so an exact 60 % comes out as 60.0.
    return None if n == 0 else 100.0 * count / n


def _share_ok(count: int, n: int, required_pct: float) -> bool:
    # Integer arithmetic: 59.99... % never rounds up to 60 %.
    return n > 0 and count * 100 >= required_pct * n


def _within_count(abs_err: np.ndarray, threshold: float) -> int:
    return int(np.count_nonzero(abs_err <= threshold + TOLERANCE_MMHG))


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def error_stats(errors: Any) -> dict:
    """Summary of errors (mmHg): n, ME, SD (sample, ddof=1), MAE, RMSE.

    Non-finite errors are excluded. Undefined values (SD of one error, anything of none) are
    ``None``.

    Examples
    --------
    >>> s = error_stats([-3.0, 5.0, 13.0])
    >>> s["me"], s["sd"], s["mae"]
    (5.0, 8.0, 7.0)
    """
    e = _as_1d(errors, "errors")
    e = e[np.isfinite(e)]
    n = int(e.size)
    if n == 0:
        return {"n": 0, "me": None, "sd": None, "mae": None, "rmse": None}
    return {
        "n": n,
        "me": float(np.mean(e)),
        "sd": float(np.std(e, ddof=1)) if n >= 2 else None,
        "mae": float(np.mean(np.abs(e))),
        "rmse": float(np.sqrt(np.mean(e * e))),
    }


def _pearson_r(p: np.ndarray, r: np.ndarray) -> float | None:
    if p.size < 2:
        return None
    dp = p - p.mean()
    dr = r - r.mean()
    denom = math.sqrt(float(np.dot(dp, dp)) * float(np.dot(dr, dr)))
    if denom == 0.0:
        return None  # a constant estimate (e.g. a naive baseline) has no correlation
    return float(np.clip(np.dot(dp, dr) / denom, -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# one function per standard
# --------------------------------------------------------------------------------------------
def bhs_shares(errors: Any) -> dict:
    """Cumulative shares (%) of ``|error| <= 5, 10, 15`` mmHg (BHS).

    Examples
    --------
    >>> bhs_shares([0.0, 5.0, 7.0, 12.0, 20.0])
    {'within5': 40.0, 'within10': 60.0, 'within15': 80.0}
    """
    e = _as_1d(errors, "errors")
    a = np.abs(e[np.isfinite(e)])
    n = int(a.size)
    keys = ("within5", "within10", "within15")
    return {k: _share_pct(_within_count(a, t), n) for k, t in zip(keys, BHS_THRESHOLDS_MMHG)}


def bhs_grade(errors: Any) -> str:
    """British Hypertension Society grade (A, B, C or D) of a set of errors.

    A grade needs all three cumulative shares: A >= 60/85/95 %, B >= 50/75/90 %,
    C >= 40/65/85 % within 5/10/15 mmHg; anything else is D.

    Parameters
    ----------
    errors : array-like
        ``estimate - reference`` (mmHg). Non-finite values are ignored.

    Examples
    --------
    >>> bhs_grade([1.0, 2.0, 3.0, 4.0, 5.0])
    'A'
    >>> bhs_grade([1.0, 20.0])
    'D'
    """
    e = _as_1d(errors, "errors")
    a = np.abs(e[np.isfinite(e)])
    n = int(a.size)
    if n == 0:
        raise ValueError("bhs_grade: no finite errors to grade")
    counts = [_within_count(a, t) for t in BHS_THRESHOLDS_MMHG]
    for grade, required in BHS_REQUIREMENTS_PCT.items():
        if all(_share_ok(c, n, q) for c, q in zip(counts, required)):
            return grade
    return "D"


def aami_criterion1(me: float | None, sd: float | None) -> bool | None:
    """ISO 81060-2 criterion 1: ``|ME| <= 5`` and ``SD <= 8`` mmHg (None if undefined).

    Examples
    --------
    >>> aami_criterion1(5.0, 8.0), aami_criterion1(-5.1, 3.0)
    (True, False)
    """
    if me is None or sd is None:
        return None
    return bool(
        abs(me) <= AAMI_ME_LIMIT_MMHG + TOLERANCE_MMHG and sd <= AAMI_SD_LIMIT_MMHG + TOLERANCE_MMHG
    )


def aami_criterion2_limit(me: float) -> float | None:
    """Largest SD (mmHg) of per-subject mean errors that ISO 81060-2 criterion 2 allows.

    Linear interpolation in :data:`AAMI_CRITERION2_TABLE` at ``|me|``; ``None`` when
    ``|me| > 5`` mmHg (beyond the table: criterion 1 fails there anyway).

    Examples
    --------
    >>> aami_criterion2_limit(0.0), aami_criterion2_limit(-2.5), aami_criterion2_limit(5.0)
    (6.95, 6.47, 4.79)
    >>> round(aami_criterion2_limit(2.75), 3)
    6.355
    >>> aami_criterion2_limit(5.2) is None
    True
    """
    if me is None or not math.isfinite(me):
        raise ValueError(f"aami_criterion2_limit: mean error must be a finite number, got {me!r}")
    x = abs(float(me))
    top = AAMI_CRITERION2_TABLE[-1][0]
    if x > top + TOLERANCE_MMHG:
        return None
    xs = [row[0] for row in AAMI_CRITERION2_TABLE]
    ys = [row[1] for row in AAMI_CRITERION2_TABLE]
    return float(np.interp(min(x, top), xs, ys))


def aami_criterion2(me: float | None, subject_mean_errors: Any) -> dict:
    """ISO 81060-2 criterion 2 from the per-subject mean errors.

    Passes when the sample SD (ddof=1) of the per-subject mean errors is ``<=`` the limit from
    :func:`aami_criterion2_limit` at the overall mean error ``me`` (criterion 1's ME; with equal
    readings per subject it equals the mean of the per-subject means).

    Returns
    -------
    dict
        ``{"pass": bool | None, "sd_subject_means", "limit", "me", "n_subjects", "reason"}``;
        ``pass`` is None (with the reason) when it cannot be evaluated.

    Examples
    --------
    >>> aami_criterion2(1.0, [-4.0, 1.0, 6.0])["pass"]
    True
    """
    s = _as_1d(subject_mean_errors, "subject_mean_errors")
    s = s[np.isfinite(s)]
    out = {"pass": None, "sd_subject_means": None, "limit": None, "me": _finite_or_none(me),
           "n_subjects": int(s.size), "reason": ""}
    if me is None or not math.isfinite(me):
        out["reason"] = "no mean error (no valid readings)"
        return out
    if s.size < 2:
        out["reason"] = f"needs at least 2 subjects with readings, got {s.size}"
        return out
    sd = float(np.std(s, ddof=1))
    limit = aami_criterion2_limit(me)
    out["sd_subject_means"] = sd
    out["limit"] = limit
    if limit is None:
        out["pass"] = False
        out["reason"] = f"|ME| = {abs(me):.2f} > 5 mmHg, beyond the standard's table"
        return out
    out["pass"] = bool(sd <= limit + TOLERANCE_MMHG)
    out["reason"] = f"SD of per-subject mean errors {sd:.2f} vs limit {limit:.2f} at |ME| {abs(me):.2f}"
    return out


def aami_p10(errors: Any) -> tuple[float | None, bool | None]:
    """Share (%) of ``|error| <= 10`` mmHg and whether it reaches 85 % (2018 protocol).

    Examples
    --------
    >>> aami_p10([0.0, 10.0, 10.5, 3.0])
    (75.0, False)
    """
    e = _as_1d(errors, "errors")
    a = np.abs(e[np.isfinite(e)])
    n = int(a.size)
    if n == 0:
        return None, None
    k = _within_count(a, AAMI_P10_THRESHOLD_MMHG)
    return _share_pct(k, n), _share_ok(k, n, AAMI_P10_REQUIRED_PCT)


def ieee1708_grade(mae: float) -> str:
    """IEEE 1708-2014 grade from the mean absolute difference (mmHg).

    A: MAE <= 5; B: 5 < MAE <= 6; C: 6 < MAE <= 7; D: MAE > 7.

    Examples
    --------
    >>> [ieee1708_grade(x) for x in (5.0, 5.01, 6.0, 7.0, 7.01)]
    ['A', 'B', 'B', 'C', 'D']
    """
    if mae is None or not math.isfinite(mae) or mae < 0:
        raise ValueError(f"ieee1708_grade: MAE must be a finite non-negative number, got {mae!r}")
    for grade, upper in IEEE1708_LIMITS_MMHG:
        if mae <= upper + TOLERANCE_MMHG:
            return grade
    return "D"


def reference_distribution_check(sbp: Any, dbp: Any) -> dict:
    """Check the spread of reference readings that the 2018 AAMI/ESH/ISO protocol asks for.

    Rules (shares of readings, boundaries inclusive): SBP >= 160 at least 5 %, SBP <= 100 at
    least 5 %, SBP >= 140 at least 20 %, DBP <= 60 at least 5 %, DBP >= 100 at least 5 %,
    DBP >= 85 at least 20 %. Non-finite readings are excluded and counted.

    Returns
    -------
    dict
        ``{"rules": [{"rule", "channel", "op", "threshold", "required_pct", "count", "n",
        "share", "pass"}, ...], "pass": bool, "n_sbp", "n_dbp", "n_excluded": {...}}``.

    Examples
    --------
    >>> chk = reference_distribution_check([100, 140, 160, 120, 150], [60, 85, 100, 70, 80])
    >>> chk["pass"], chk["rules"][0]["share"]
    (True, 20.0)
    """
    values = {"sbp": _as_1d(sbp, "sbp"), "dbp": _as_1d(dbp, "dbp")}
    finite = {k: v[np.isfinite(v)] for k, v in values.items()}
    rules = []
    for channel, op, threshold, required in REFERENCE_DISTRIBUTION_RULES:
        v = finite[channel]
        if op == ">=":
            count = int(np.count_nonzero(v >= threshold - TOLERANCE_MMHG))
        else:
            count = int(np.count_nonzero(v <= threshold + TOLERANCE_MMHG))
        n = int(v.size)
        rules.append({
            "rule": f"{channel.upper()} {op} {threshold:g} mmHg in >= {required} % of readings",
            "channel": channel, "op": op, "threshold": threshold, "required_pct": required,
            "count": count, "n": n, "share": _share_pct(count, n),
            "pass": _share_ok(count, n, required),
        })
    return {
        "rules": rules,
        "pass": all(r["pass"] for r in rules),
        "n_sbp": int(finite["sbp"].size),
        "n_dbp": int(finite["dbp"].size),
        "n_excluded": {k: int(values[k].size - finite[k].size) for k in values},
    }


# --------------------------------------------------------------------------------------------
# metrics of one component, baselines
# --------------------------------------------------------------------------------------------
def bp_metrics(pred: Any, ref: Any) -> dict:
    """Per-reading accuracy of one BP component (SBP, DBP or MAP) against the reference.

    Parameters
    ----------
    pred, ref : array-like
        Estimates and reference readings (mmHg), paired by position. Pairs with a non-finite
        value are excluded (and the count logged as a warning).

    Returns
    -------
    dict
        ``{"n", "me", "sd" (ddof=1), "mae", "rmse", "r",
        "bhs": {"within5", "within10", "within15", "grade"},
        "aami": {"criterion1", "criterion2", "p10", "p10_pass"}, "ieee1708"}``.
        ``criterion2`` is always None here (it needs subject ids: see :func:`bp_report`);
        undefined values are None.

    Examples
    --------
    >>> m = bp_metrics([125.0, 118.0, 131.0], [120.0, 120.0, 130.0])
    >>> m["me"], m["bhs"]["within5"], m["aami"]["p10"], m["ieee1708"]
    (1.3333333333333333, 100.0, 100.0, 'A')
    """
    p, r, n_bad = bp_pairs_finite(pred, ref)
    if n_bad:
        logger.warning("bp_metrics: %d of %d pairs excluded (NaN or infinite)", n_bad, n_bad + p.size)
    e = p - r
    stats = error_stats(e)
    n = stats["n"]
    shares = bhs_shares(e)
    p10, p10_pass = aami_p10(e)
    return {
        "n": n,
        "me": stats["me"],
        "sd": stats["sd"],
        "mae": stats["mae"],
        "rmse": stats["rmse"],
        "r": _pearson_r(p, r),
        "bhs": {**shares, "grade": bhs_grade(e) if n else None},
        "aami": {
            "criterion1": aami_criterion1(stats["me"], stats["sd"]),
            "criterion2": None,
            "p10": p10,
            "p10_pass": p10_pass,
        },
        "ieee1708": ieee1708_grade(stats["mae"]) if n else None,
    }


def mase(pred: Any, ref: Any, naive: Any) -> float | None:
    """Mean absolute scaled error: model MAE / naive predictor's MAE on the same readings.

    Parameters
    ----------
    pred, ref : array-like
        Model estimates and references (mmHg).
    naive : float or array-like
        The naive predictor's estimates (a scalar such as the training mean, or one per reading).

    Returns
    -------
    float or None
        A ratio (0.8 = the model's MAE is 80 % of the naive one); None if the naive MAE is 0
        or no reading has all three values finite.

    Examples
    --------
    >>> mase([121.0, 119.0], [120.0, 122.0], 125.0)
    0.5
    """
    p = _as_1d(pred, "pred")
    r = _as_1d(ref, "ref")
    q = np.broadcast_to(_as_1d(naive, "naive"), r.shape) if np.ndim(naive) == 0 else _as_1d(naive, "naive")
    if not (p.shape == r.shape == q.shape):
        raise ValueError(f"mase: pred, ref and naive differ in length: {p.size}, {r.size}, {q.size}")
    keep = np.isfinite(p) & np.isfinite(r) & np.isfinite(q)
    if not keep.any():
        return None
    naive_mae = float(np.mean(np.abs(q[keep] - r[keep])))
    if naive_mae == 0.0:
        return None
    return float(np.mean(np.abs(p[keep] - r[keep]))) / naive_mae


def baseline_mean(ref: Any, train_mean: float, pred: Any = None) -> dict:
    """The naive "training-set mean" predictor: always say ``train_mean``.

    Parameters
    ----------
    ref : array-like
        Reference readings (mmHg).
    train_mean : float
        Mean reference value of the training set (never of the test set).
    pred : array-like, optional
        The model's estimates: adds ``model_mae`` and ``model_mase`` (model MAE / naive MAE)
        on the same readings.

    Returns
    -------
    dict
        :func:`bp_metrics` of the constant predictor plus ``"value"`` (and the MASE keys).

    Examples
    --------
    >>> b = baseline_mean([110.0, 130.0], 125.0, pred=[112.0, 128.0])
    >>> b["mae"], b["me"], b["model_mase"]
    (10.0, 5.0, 0.2)
    """
    if train_mean is None or not math.isfinite(float(train_mean)):
        raise ValueError(f"baseline_mean: train_mean must be a finite number, got {train_mean!r}")
    r = _as_1d(ref, "ref")
    naive = np.full_like(r, float(train_mean))
    out = {"value": float(train_mean), **bp_metrics(naive, r)}
    if pred is not None:
        _add_model_comparison(out, pred, r, naive)
    return out


def baseline_hold(ref: Any, calib_values: Any, pred: Any = None) -> dict:
    """The naive "hold the calibration value" predictor: each reading = its subject's cuff value.

    With calibration, a 5-minute ICU record barely moves, so a calibrated model has to be
    compared with this baseline, not with zero.

    Parameters
    ----------
    ref : array-like
        Reference readings (mmHg).
    calib_values : array-like
        Per reading, the calibration value that reading's subject was calibrated with.
    pred : array-like, optional
        The model's estimates: adds ``model_mae`` and ``model_mase``.

    Examples
    --------
    >>> b = baseline_hold([120.0, 124.0], [121.0, 121.0], pred=[120.5, 123.0])
    >>> b["mae"], b["model_mase"]
    (2.0, 0.375)
    """
    r = _as_1d(ref, "ref")
    c = _as_1d(calib_values, "calib_values")
    if c.shape != r.shape:
        raise ValueError(f"baseline_hold: calib_values and ref differ in length: {c.size} vs {r.size}")
    out = bp_metrics(c, r)
    if pred is not None:
        _add_model_comparison(out, pred, r, c)
    return out


def _add_model_comparison(out: dict, pred: Any, ref: np.ndarray, naive: np.ndarray) -> None:
    p = _as_1d(pred, "pred")
    if p.shape != ref.shape:
        raise ValueError(f"pred and ref differ in length: {p.size} vs {ref.size}")
    keep = np.isfinite(p) & np.isfinite(ref) & np.isfinite(naive)
    out["model_mae"] = float(np.mean(np.abs(p[keep] - ref[keep]))) if keep.any() else None
    out["model_mase"] = mase(p, ref, naive)


# --------------------------------------------------------------------------------------------
# the full report
# --------------------------------------------------------------------------------------------
def _subject_mean_errors(e: np.ndarray, subj: np.ndarray, ids: list[str]) -> tuple[list, list, list]:
    """Per subject (in ``ids`` order): mean error, MAE, number of finite readings."""
    means, maes, counts = [], [], []
    for sid in ids:
        es = e[(subj == sid) & np.isfinite(e)]
        counts.append(int(es.size))
        means.append(float(es.mean()) if es.size else None)
        maes.append(float(np.abs(es).mean()) if es.size else None)
    return means, maes, counts


def bp_report(
    pred_sbp: Any,
    ref_sbp: Any,
    pred_dbp: Any,
    ref_dbp: Any,
    subjects: Sequence | None = None,
    train_ref: Mapping[str, float] | None = None,
    calib_values: Mapping[str, Any] | None = None,
    pred_map: Any = None,
    ref_map: Any = None,
    *,
    unit: str = "reading",
    calibrated: bool | None = None,
) -> dict:
    """Everything a BP result must be shown with: per reading, per subject, baselines, spread.

    Parameters
    ----------
    pred_sbp, ref_sbp, pred_dbp, ref_dbp : array-like
        One value per reading (mmHg), all the same length. NaN pairs are excluded per
        component and counted (``n_excluded``).
    subjects : sequence, optional
        Subject id of each reading. Enables AAMI criterion 2, the per-subject analysis and
        the 85-subject check; without it those are None with the reason.
    train_ref : mapping, optional
        Training-set mean reference per component, ``{"sbp": .., "dbp": .., ["map": ..]}``:
        adds the training-mean baseline and the model's MASE.
    calib_values : mapping, optional
        Per-reading calibration values ``{"sbp": array, "dbp": array, ["map": array]}``:
        adds the hold-the-calibration-value baseline.
    pred_map, ref_map : array-like, optional
        Mean arterial pressure; both or neither.
    unit : str
        What one reading is ("reading", "beat", "window", ...), for ``analysis_unit``.
    calibrated : bool, optional
        Whether the model used per-subject calibration; default: ``calib_values is not None``.

    Returns
    -------
    dict
        ``{"n_pairs", "sbp", "dbp", ["map"], "per_subject", "baselines",
        "reference_distribution", "aami_sample_size", "calibration", "analysis_unit"}``.
        Each component holds :func:`bp_metrics` plus ``n_excluded`` and, in ``aami``,
        ``criterion2`` (bool or None) and ``criterion2_detail``. Plain Python types only
        (JSON-ready); undefined numbers are None.

    Examples
    --------
    >>> import numpy as np
    >>> ref_s = np.array([120.0, 124.0, 150.0, 148.0]); ref_d = np.array([70.0, 72.0, 90.0, 88.0])
    >>> rep = bp_report(ref_s + [2, -2, 3, -1], ref_s, ref_d + [1, 0, -1, 2], ref_d,
    ...                 subjects=["a", "a", "b", "b"], train_ref={"sbp": 130.0, "dbp": 78.0})
    >>> rep["n_pairs"], rep["sbp"]["bhs"]["grade"], rep["per_subject"]["n_subjects"]
    (4, 'A', 2)
    >>> rep["sbp"]["aami"]["criterion2"], round(rep["baselines"]["training_mean"]["sbp"]["model_mase"], 3)
    (True, 0.148)
    """
    arrays = {"sbp": (pred_sbp, ref_sbp), "dbp": (pred_dbp, ref_dbp)}
    if (pred_map is None) != (ref_map is None):
        raise ValueError("bp_report: give both pred_map and ref_map, or neither")
    if pred_map is not None:
        arrays["map"] = (pred_map, ref_map)
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n_pairs = None
    for comp, (p, r) in arrays.items():
        p = _as_1d(p, f"pred_{comp}")
        r = _as_1d(r, f"ref_{comp}")
        for name, arr in ((f"pred_{comp}", p), (f"ref_{comp}", r)):
            if n_pairs is None:
                n_pairs = arr.size
            elif arr.size != n_pairs:
                raise ValueError(f"bp_report: {name} has {arr.size} readings, expected {n_pairs}")
        data[comp] = (p, r)
    assert n_pairs is not None

    subj = None
    if subjects is not None:
        subj = np.asarray([str(s) for s in subjects], dtype=object)
        if subj.size != n_pairs:
            raise ValueError(f"bp_report: subjects has {subj.size} entries, expected {n_pairs}")
    ids = sorted(set(subj.tolist())) if subj is not None else []

    report: dict[str, Any] = {"n_pairs": int(n_pairs)}
    per_subject: dict[str, Any] | None = (
        {"n_subjects": len(ids), "subjects": ids} if subj is not None else None
    )
    for comp, (p, r) in data.items():
        m = bp_metrics(p, r)
        valid = np.isfinite(p) & np.isfinite(r)
        m["n_excluded"] = int(n_pairs - valid.sum())
        if subj is None:
            detail = {"pass": None, "reason": "no subject ids: criterion 2 needs per-subject errors"}
        else:
            e = np.where(valid, p - r, np.nan)
            means, maes, counts = _subject_mean_errors(e, subj, ids)
            detail = aami_criterion2(m["me"], [x for x in means if x is not None])
            sub_stats = error_stats([x for x in means if x is not None])
            per_subject[comp] = {
                "n_subjects": sub_stats["n"],
                "me": sub_stats["me"],
                "sd": sub_stats["sd"],
                "mae": sub_stats["mae"],
                "rmse": sub_stats["rmse"],
                "mean_error_per_subject": means,
                "mae_per_subject": maes,
                "n_per_subject": counts,
            }
        m["aami"]["criterion2"] = detail["pass"]
        m["aami"]["criterion2_detail"] = detail
        report[comp] = m
    report["per_subject"] = per_subject

    report["baselines"] = _baselines(data, train_ref, calib_values, n_pairs)

    # The spread is judged on the reference readings that were actually graded.
    ref_s = np.where(np.isfinite(data["sbp"][0]), data["sbp"][1], np.nan)
    ref_d = np.where(np.isfinite(data["dbp"][0]), data["dbp"][1], np.nan)
    report["reference_distribution"] = reference_distribution_check(ref_s, ref_d)

    n_subj = len(ids) if subj is not None else None
    report["aami_sample_size"] = {
        "n_subjects": n_subj,
        "required": AAMI_MIN_SUBJECTS,
        "pass": None if n_subj is None else n_subj >= AAMI_MIN_SUBJECTS,
    }
    used = (calib_values is not None) if calibrated is None else bool(calibrated)
    report["calibration"] = {
        "used": used,
        "hold_baseline": calib_values is not None,
        "note": (
            "per-subject calibration used: compare with the hold-the-calibration-value baseline"
            if used else "calibration-free"
        ),
    }
    if subj is not None:
        unit_text = (f"per {unit} ({n_pairs} paired readings); per subject ({len(ids)} subjects) "
                     "for AAMI criterion 2 and per_subject")
    else:
        unit_text = (f"per {unit} ({n_pairs} paired readings); no subject ids, so no per-subject "
                     "analysis and no AAMI criterion 2")
    report["analysis_unit"] = unit_text
    return _json_ready(report)


def _baselines(data: dict, train_ref: Mapping | None, calib_values: Mapping | None, n_pairs: int) -> dict:
    out: dict[str, Any] = {"training_mean": None, "hold_calibration": None, "notes": []}
    if train_ref is not None:
        tm = {}
        for comp, (p, r) in data.items():
            if comp not in train_ref or train_ref[comp] is None:
                out["notes"].append(f"training_mean: no training mean for {comp}")
                continue
            # Judged on the readings the model was judged on, so MASE compares like with like.
            keep = np.isfinite(p) & np.isfinite(r)
            tm[comp] = baseline_mean(r[keep], float(train_ref[comp]), pred=p[keep])
        out["training_mean"] = tm
    if calib_values is not None:
        hold = {}
        for comp, (p, r) in data.items():
            if comp not in calib_values or calib_values[comp] is None:
                out["notes"].append(f"hold_calibration: no calibration values for {comp}")
                continue
            c = _as_1d(calib_values[comp], f"calib_values[{comp!r}]")
            if c.size != n_pairs:
                raise ValueError(
                    f"bp_report: calib_values[{comp!r}] has {c.size} readings, expected {n_pairs}"
                )
            keep = np.isfinite(p) & np.isfinite(r)
            hold[comp] = baseline_hold(r[keep], c[keep], pred=p[keep])
            n_missing = int(np.count_nonzero(~np.isfinite(c[keep])))
            hold[comp]["n_missing_calibration"] = n_missing
            if n_missing:
                logger.warning("hold baseline %s: %d graded readings have no calibration value",
                               comp, n_missing)
        out["hold_calibration"] = hold
    return out


def _json_ready(x: Any) -> Any:
    """Plain Python types; non-finite floats become None."""
    if isinstance(x, Mapping):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _finite_or_none(float(x))
    if isinstance(x, np.ndarray):
        return _json_ready(x.tolist())
    return x


# --------------------------------------------------------------------------------------------
# text rendering
# --------------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "pass" if x else "FAIL"
    if isinstance(x, (int, np.integer)) and spec == ".2f":
        return str(int(x))
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _table(header: list[str], rows: list[list[str]], first_width: int = 34, width: int = 14, markdown: bool = False) -> list[str]:
    if markdown:  # a real table for report.md/html; "\x00" marks its lines for the caller
        def md(cells: list[str]) -> str:
            return "\x00| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        return [md(header), "\x00|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"] + [md(r) for r in rows]

    def line(cells: list[str]) -> str:
        head, rest = cells[0], cells[1:]
        return (head.ljust(first_width) + "".join(c.rjust(width) for c in rest)).rstrip()

    lines = [line(header), "-" * (first_width + width * (len(header) - 1))]
    lines += [line(r) for r in rows]
    return lines


def _component_rows(name: str, m: dict, tm: dict | None, hold: dict | None) -> tuple[list[str], list[list[str]]]:
    cols = [m] + [b for b in (tm, hold) if b is not None]
    header = [f"{name.upper()} (mmHg, err = est - ref)", "model"]
    if tm is not None:
        header.append("train-mean")
    if hold is not None:
        header.append("hold-calib")

    def row(label: str, get) -> list[str]:
        return [label] + [get(c) for c in cols]

    def shares(c: dict) -> str:
        b = c["bhs"]
        if b["within5"] is None:
            return "-"
        return f"{b['within5']:.0f}/{b['within10']:.0f}/{b['within15']:.0f}"

    c2 = m["aami"].get("criterion2_detail") or {}
    c2_label = "AAMI crit. 2 (subject SD <= lim)"
    if c2.get("limit") is not None:
        c2_label = f"AAMI crit. 2 (subj SD <= {c2['limit']:.2f})"
    rows = [
        row("n", lambda c: _fmt(c["n"])),
        row("ME", lambda c: _fmt(c["me"])),
        row("SD (sample, ddof=1)", lambda c: _fmt(c["sd"])),
        row("MAE", lambda c: _fmt(c["mae"])),
        row("RMSE", lambda c: _fmt(c["rmse"])),
        row("Pearson r", lambda c: _fmt(c["r"], ".3f")),
        row("MASE (model MAE / this MAE)", lambda c: _fmt(c.get("model_mase"), ".3f") if c is not m else ""),
        row("BHS within 5/10/15 mmHg (%)", shares),
        row("BHS grade", lambda c: _fmt(c["bhs"]["grade"])),
        row("AAMI crit. 1 (|ME|<=5, SD<=8)", lambda c: _fmt(c["aami"]["criterion1"])),
        [c2_label, _fmt(m["aami"]["criterion2"])] + ["" for _ in cols[1:]],
        row("AAMI P(|e|<=10) (%)", lambda c: _fmt(c["aami"]["p10"], ".1f")),
        row("AAMI P(|e|<=10) >= 85 %", lambda c: _fmt(c["aami"]["p10_pass"])),
        row("IEEE 1708 grade (by MAE)", lambda c: _fmt(c["ieee1708"])),
    ]
    return header, rows


def format_report_table(report: Mapping, style: str = "text") -> str:
    """Render a :func:`bp_report` dict as a fixed-width text table (``style="text"``, for a
    terminal) or as Markdown with real tables (``style="markdown"``, for report.md/html).

    Model and naive baselines side by side per component, the BHS / AAMI / IEEE 1708 verdicts,
    the per-subject analysis, the reference-distribution check, the analysis unit and whether
    calibration was used.

    Examples
    --------
    >>> rep = bp_report([121.0, 119.0, 140.0], [120.0, 120.0, 141.0], [80.0, 79.0, 90.0], [80.0, 80.0, 91.0])
    >>> text = format_report_table(rep)
    >>> "BHS grade" in text and "Analysis unit" in text
    True
    >>> "| BHS grade |" in format_report_table(rep, style="markdown")
    True
    """
    styles = ("text", "markdown")
    if style not in styles:
        raise ValueError(f"style={style!r}: choose one of {', '.join(styles)}")
    md = style == "markdown"
    lines = ["Blood-pressure accuracy (errors = estimate - reference, mmHg)"]
    lines.append(f"Analysis unit: {report.get('analysis_unit', '-')}")
    cal = report.get("calibration") or {}
    lines.append(f"Calibration: {'used' if cal.get('used') else 'not used'}"
                 + (f" ({cal['note']})" if cal.get("note") else ""))
    lines.append(f"Paired readings: {report.get('n_pairs')}")
    if "unpaired" in report:
        up = report["unpaired"]
        lines.append(f"Unpaired rows (not graded): {up.get('pred_only', 0)} only in estimates, "
                     f"{up.get('ref_only', 0)} only in reference")
    m = report.get("match")
    if m:
        lines.append("Pairing: " + ("equal subject and time (1 ms)" if m.get("mode") == "exact" else
                                    f"nearest time per subject within {m.get('tolerance_s'):g} s, one to one"))
    ng = report.get("not_graded")
    if ng:
        inv, oth = ng.get("invalid", {}), ng.get("other_subjects", {})
        lines.append(f"Rows with valid=0 (not graded): {inv.get('pred', 0)} in estimates, {inv.get('ref', 0)} in reference")
        if oth.get("pred") or oth.get("ref"):
            lines.append(f"Rows of other subjects (not graded): {oth.get('pred', 0)} in estimates, "
                         f"{oth.get('ref', 0)} in reference")
    comps = [c for c in _COMPONENTS if c in report]
    excl = ", ".join(f"{c.upper()} {report[c].get('n_excluded', 0)}" for c in comps)
    lines.append(f"Excluded pairs (NaN/inf): {excl}")
    base = report.get("baselines") or {}
    for comp in comps:
        tm = (base.get("training_mean") or {}).get(comp)
        hold = (base.get("hold_calibration") or {}).get(comp)
        header, rows = _component_rows(comp, report[comp], tm, hold)
        lines.append("")
        lines += _table(header, rows, markdown=md)
        if tm is not None:
            lines.append(f"  train-mean predictor value: {tm['value']:.1f} mmHg")
        reason = (report[comp]["aami"].get("criterion2_detail") or {}).get("reason")
        if reason:
            lines.append(f"  AAMI criterion 2: {reason}")
    for note in base.get("notes") or []:
        lines.append(f"Note: {note}")

    ps = report.get("per_subject")
    lines.append("")
    if ps:
        header = ["Per subject (subject mean errors)"] + [c.upper() for c in comps if c in ps]
        rows = [
            ["subjects with readings"] + [_fmt(ps[c]["n_subjects"]) for c in comps if c in ps],
            ["ME of subject means"] + [_fmt(ps[c]["me"]) for c in comps if c in ps],
            ["SD of subject means (ddof=1)"] + [_fmt(ps[c]["sd"]) for c in comps if c in ps],
            ["MAE of subject means"] + [_fmt(ps[c]["mae"]) for c in comps if c in ps],
        ]
        lines += _table(header, rows, markdown=md)
        lines.append("  per-subject MAE:")
        for i, sid in enumerate(ps["subjects"]):
            vals = "  ".join(
                f"{c.upper()} {_fmt(ps[c]['mae_per_subject'][i])} (n={ps[c]['n_per_subject'][i]})"
                for c in comps if c in ps
            )
            lines.append(f"    {sid}: {vals}")
    else:
        lines.append("Per subject: not available (no subject ids)")
    ss = report.get("aami_sample_size")
    if ss and ss.get("n_subjects") is not None:
        lines.append(f"AAMI sample size: {ss['n_subjects']} subjects (>= {ss['required']} required): "
                     f"{_fmt(ss['pass'])}")

    rd = report.get("reference_distribution")
    if rd:
        lines.append("")
        rows = [[r["rule"], _fmt(r["share"], ".1f"), f"{r['count']}/{r['n']}", _fmt(r["pass"])]
                for r in rd["rules"]]
        lines += _table(["Reference BP spread (2018 protocol)", "share %", "count", "verdict"], rows,
                        first_width=46, width=10, markdown=md)
        lines.append(f"  overall: {_fmt(rd['pass'])}")
    return _as_markdown(lines) if md else "\n".join(lines)


def _as_markdown(lines: list[str]) -> str:
    """Text lines to Markdown: table lines (marked) kept together, indented notes as list items,
    every other line its own paragraph (a 4-space indent would otherwise be a code block)."""
    out: list[str] = []
    prev = ""
    for raw in lines:
        kind = "table" if raw.startswith("\x00") else "item" if raw.startswith("  ") and raw.strip() else "blank" if not raw.strip() else "para"
        if kind != prev and out and out[-1] != "":
            out.append("")
        if kind == "table":
            out.append(raw[1:])
        elif kind == "item":
            depth = "  " if raw.startswith("    ") else ""
            out.append(f"{depth}- {raw.strip()}")
        elif kind == "para":
            if prev == "para":
                out.append("")
            out.append(raw.strip())
        prev = kind
    return "\n".join(out).strip() + "\n"
