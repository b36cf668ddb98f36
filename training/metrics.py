"""Evaluation metrics for the churn classifier and the CLV regressor, and per-segment breakdowns.

Pure functions on arrays: no I/O, no models. Every function checks that its inputs have the same
length (a `ValueError` otherwise) and returns NaN, never raises, for a metric that is undefined on
its input: empty arrays, a single class (ROC AUC), constant values (Spearman), zero total value
(Gini, revenue share). Ties in the scores are handled as a random order of the tied rows would be
on average (ROC AUC counts a tie as half; the gains curve runs straight across a tied group), so
no metric depends on the row order of its input.

- `churn_metrics`: ranking (ROC AUC, PR AUC as average precision, lift in the top decile) and
  probability quality (Brier score, expected calibration error).
- `clv_metrics`: ranking (Spearman, normalised Gini, top-decile revenue share) and level
  (MAPE of summed value per prediction decile, MAE).
- `gains_curve`: the cumulative-gains (Lorenz) curve both sets of metrics and the plots share.
- `by_segment`: any of the two per segment value.
- `calibration_table`: predicted against observed churn per probability bin.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_SHARE = 0.1  # "top decile": the best-scored 10% of customers
SEGMENT_MIN_ROWS = 20
# Metrics that only describe a segment (not a model's quality) and stay meaningful however small
# the segment is; `by_segment` keeps them for segments below SEGMENT_MIN_ROWS.
DESCRIPTIVE_KEYS = ("n", "base_rate")

NAN = float("nan")


def _as_pair(y_true: Any, pred: Any, pred_name: str = "pred") -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float arrays of equal length with finite predictions, or a ValueError."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but {pred_name} has {len(p)}; they must match")
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).sum())
        raise ValueError(
            f"{pred_name} has {bad} NaN or infinite values; predictions must be finite"
        )
    if np.isnan(y).any():
        raise ValueError(f"y_true has {int(np.isnan(y).sum())} NaN values")
    return y, p


def _check_binary(y: np.ndarray) -> None:
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must be binary (0/1 or bool) for churn metrics")


def _check_probability(p: np.ndarray) -> None:
    if len(p) and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(
            f"p must be probabilities in [0, 1], got values in [{p.min():.4g}, {p.max():.4g}]; "
            "rank-only scores belong in roc_figure, not churn_metrics"
        )


def gains_curve(y_true: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative-gains (Lorenz) curve: customers sorted by `score`, highest first.

    Returns `(share_of_customers, share_of_total_y)`, both starting at 0 and ending at 1, with one
    point per distinct score; rows with tied scores form one straight segment (the average over
    orderings of the tie). The y shares are NaN when `y_true` sums to zero.
    """
    y, s = _as_pair(y_true, score, "score")
    n = len(y)
    if n == 0:
        return np.array([0.0]), np.array([NAN])
    order = np.argsort(-s, kind="stable")
    s_sorted, cum = s[order], np.cumsum(y[order])
    # Keep the last row of every tied group: the curve is only known at group boundaries.
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    x = np.concatenate(([0.0], (ends + 1) / n))
    total = cum[-1]
    g = np.concatenate(([0.0], cum[ends])) / total if total != 0 else np.full(len(x), NAN)
    return x, g


def _top_share(y: np.ndarray, s: np.ndarray, share: float = TOP_SHARE) -> float:
    """Share of total y captured by the top `share` of customers by score (interpolated, so a
    fraction of a customer counts when `share * n` is not whole, and ties are averaged)."""
    x, g = gains_curve(y, s)
    return float(np.interp(share, x, g)) if len(y) else NAN


def _gini(y: np.ndarray, s: np.ndarray) -> float:
    """Gini of the gains curve: twice the area between it and the diagonal (trapezoids)."""
    x, g = gains_curve(y, s)
    if len(y) == 0 or np.isnan(g).any():
        return NAN
    area = float(np.sum((x[1:] - x[:-1]) * (g[1:] + g[:-1]) / 2.0))
    return 2.0 * area - 1.0


def calibration_table(y_true: Any, p: Any, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed churn per equal-width probability bin on [0, 1].

    One row per bin (empty bins included, with NaN means): `bin_lower`, `bin_upper`, `n`,
    `mean_predicted`, `observed_rate`, `gap` (observed minus predicted). A probability of exactly
    1 falls in the last bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y, prob = _as_pair(y_true, p, "p")
    _check_binary(y)
    _check_probability(prob)
    idx = np.minimum((prob * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=prob, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_p = np.where(n > 0, sum_p / n, NAN)
        rate = np.where(n > 0, sum_y / n, NAN)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "n": n.astype(np.int64),
            "mean_predicted": mean_p,
            "observed_rate": rate,
            "gap": rate - mean_p,
        }
    )


def normalised_gini(y: np.ndarray, s: np.ndarray) -> float:
    """Gini of the gains curve ordered by `s` over the one ordered by `y` (1 perfect, 0 random)."""
    perfect = _gini(y, y)
    return _gini(y, s) / perfect if perfect > 0 else NAN


def churn_metrics(y_true: Any, p: Any) -> dict[str, float]:
    """Churn classifier quality from labels (bool or 0/1) and probabilities in [0, 1].

    `roc_auc`; `pr_auc` (average precision); `brier`; `ece` (expected calibration error over 10
    equal-width bins: sum over bins of bin share * |mean p - churn rate|); `lift_top_decile`
    (churn rate in the top 10% by p over the overall rate); `base_rate`; `n`.
    """
    y, prob = _as_pair(y_true, p, "p")
    _check_binary(y)
    _check_probability(prob)
    n = len(y)
    out = dict.fromkeys(("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "base_rate"), NAN)
    out["n"] = float(n)
    if n == 0:
        return out
    positives = float(y.sum())
    out["base_rate"] = positives / n
    out["brier"] = float(np.mean((prob - y) ** 2))
    table = calibration_table(y, prob)
    filled = table["n"] > 0
    out["ece"] = float(
        (table.loc[filled, "n"] * table.loc[filled, "gap"].abs()).sum() / table["n"].sum()
    )
    if 0 < positives < n:
        out["roc_auc"] = float(roc_auc_score(y, prob))
    if positives > 0:
        # Defined with no negatives too (precision is 1 everywhere); undefined without positives.
        out["pr_auc"] = float(average_precision_score(y, prob))
        out["lift_top_decile"] = _top_share(y, prob) / TOP_SHARE
    return out


def _spearman(y: np.ndarray, s: np.ndarray) -> float:
    if len(y) < 2:
        return NAN
    ry, rs = rankdata(y), rankdata(s)
    ry, rs = ry - ry.mean(), rs - rs.mean()
    denom = math.sqrt(float(np.dot(ry, ry)) * float(np.dot(rs, rs)))
    return float(np.dot(ry, rs) / denom) if denom > 0 else NAN


def _decile_mape(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over prediction deciles of |sum pred - sum actual| / sum actual.

    Deciles are equal-count groups of the rows sorted by prediction (ties broken by row order,
    which leaves each decile's predicted sum unchanged). Deciles whose actual sum is zero have no
    defined percentage error and are left out; NaN when every decile is.
    """
    n = len(y)
    if n == 0:
        return NAN
    order = np.argsort(pred, kind="stable")
    decile = np.empty(n, dtype=np.int64)
    decile[order] = (np.arange(n) * 10) // n
    pred_sum = np.bincount(decile, weights=pred, minlength=10)
    true_sum = np.bincount(decile, weights=y, minlength=10)
    ok = true_sum != 0
    if not ok.any():
        return NAN
    return float(np.mean(np.abs(pred_sum[ok] - true_sum[ok]) / np.abs(true_sum[ok])))


def clv_metrics(y_true: Any, pred: Any) -> dict[str, float]:
    """CLV regressor quality from actual future values (>= 0) and predictions.

    `spearman`; `gini_normalized` (Gini of the gains curve ordered by `pred` over the Gini of the
    curve ordered by the actual values, so 1 is a perfect ranking and 0 a random one);
    `decile_mape` (see `_decile_mape`); `top_decile_revenue_share` (share of total actual value
    held by the top 10% by `pred`); `mae`; `n`.
    """
    y, s = _as_pair(y_true, pred)
    n = len(y)
    out = dict.fromkeys(
        ("spearman", "gini_normalized", "decile_mape", "top_decile_revenue_share", "mae"), NAN
    )
    out["n"] = float(n)
    if n == 0:
        return out
    out["spearman"] = _spearman(y, s)
    out["gini_normalized"] = normalised_gini(y, s)
    out["decile_mape"] = _decile_mape(y, s)
    if y.sum() != 0:
        out["top_decile_revenue_share"] = _top_share(y, s)
    out["mae"] = float(np.mean(np.abs(y - s)))
    return out


def _segment_key(value: Any) -> str:
    return "(missing)" if pd.isna(value) else str(value)


def by_segment(
    fn: Callable[[Any, Any], dict[str, float]],
    y_true: Any,
    pred: Any,
    segments: Any,
    *,
    min_rows: int = SEGMENT_MIN_ROWS,
) -> dict[str, dict[str, float]]:
    """`fn(y_true, pred)` (e.g. `churn_metrics`, `clv_metrics`) per segment value.

    Rows are matched by position (a Series' index is ignored). Keys are the segment values as
    strings (missing values as "(missing)"), in the categories' order for a Categorical and
    sorted otherwise. A segment with fewer than `min_rows` rows keeps
    only the descriptive entries (`n`, `base_rate`) and gets NaN for the rest: metrics on a
    handful of rows are noise. A segment with one class gets what `fn` can compute and NaN for
    the rest. Never raises for a segment; mismatched lengths raise ValueError.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(pred).ravel()
    seg = pd.Series(segments).reset_index(drop=True)
    if not (len(y) == len(p) == len(seg)):
        raise ValueError(
            f"y_true, pred and segments must have the same length, got {len(y)}, {len(p)} "
            f"and {len(seg)}"
        )
    # The keys fn returns, from an empty call, so a failing or tiny segment still gets them all.
    try:
        template = {k: NAN for k in fn(y[:0], p[:0])}
    except Exception:  # fn is the caller's: never let one segment break a report
        template = {}

    if isinstance(seg.dtype, pd.CategoricalDtype):
        values: list[Any] = list(seg.cat.categories)
        if seg.isna().any():
            values.append(None)
    else:
        present = seg.dropna().unique().tolist()
        values = sorted(present, key=str) + ([None] if seg.isna().any() else [])

    out: dict[str, dict[str, float]] = {}
    for value in values:
        mask = seg.isna().to_numpy() if value is None else (seg == value).to_numpy()
        n = int(mask.sum())
        if n == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = dict(fn(y[mask], p[mask]))
            except Exception:  # see above
                result = {**template, "n": float(n)}
        if n < min_rows:
            result = {k: (v if k in DESCRIPTIVE_KEYS else NAN) for k, v in result.items()}
        out[_segment_key(value)] = result
    return out
