"""Leakage guard: before training, stop on features that give the outcome away.

Two kinds of evidence: a single feature that separates the label almost perfectly on its own
(single-feature ROC AUC above a threshold), and a static attribute dated after the cutoff (a
cancellation date in the customers table, say), which cannot have been known at prediction time.
Columns the config explicitly allows are reported but do not stop training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.metrics import roc_auc_score

from features.contract import Tables


class LeakageError(ValueError):
    """Training refused: the message names each leaking column and the evidence."""


@dataclass(frozen=True)
class Finding:
    column: str
    evidence: str


def _single_feature_auc(x: pd.Series, y: np.ndarray) -> float:
    if isinstance(x.dtype, pd.CategoricalDtype) or not ptypes.is_numeric_dtype(x):
        # A category's churn rate is its score: in-sample, which is exactly the point here.
        score = (
            pd.Series(y, index=x.index).groupby(x.astype(object).fillna("<NA>")).transform("mean")
        )
        values = score.to_numpy(dtype=float)
    else:
        values = x.to_numpy(dtype=float)
        if np.isnan(values).all():
            return 0.5
        # Missingness can itself leak: put it below everything else rather than dropping it.
        values = np.where(np.isnan(values), np.nanmin(values) - 1.0, values)
    if np.unique(values).size < 2:
        return 0.5
    auc = roc_auc_score(y, values)
    return max(auc, 1.0 - auc)


def separating_features(
    X: pd.DataFrame, churned: pd.Series | np.ndarray, threshold: float
) -> list[Finding]:
    y = np.asarray(churned, dtype=int)
    if np.unique(y).size < 2:
        return []
    findings = []
    for col in X.columns:
        auc = _single_feature_auc(X[col], y)
        if auc > threshold:
            findings.append(
                Finding(
                    col, f"alone separates churn with ROC AUC {auc:.3f} (threshold {threshold})"
                )
            )
    return findings


def late_attribute_counts(tables: Tables, cutoff: pd.Timestamp) -> dict[str, int]:
    """Per datetime attribute of the customers table (signup aside), how many customers signed
    up before `cutoff` have a value on or after it (attributes with any). Counts add up over
    partitions of the customers (`training.history.ClusterHistory`)."""
    customers = tables.customers.loc[tables.customers["signup_date"] < cutoff]
    counts = {}
    for col in customers.columns:
        if col in ("customer_id", "signup_date") or not ptypes.is_datetime64_any_dtype(
            customers[col]
        ):
            continue
        values = customers[col]
        if values.dt.tz is None:
            values = values.dt.tz_localize("UTC")
        late = int((values >= cutoff).sum())
        if late:
            counts[col] = late
    return counts


def late_attribute_findings(counts: dict[str, int], cutoff: pd.Timestamp) -> list[Finding]:
    return [
        Finding(
            col,
            f"{late:,} customers have a value on or after the cutoff {cutoff:%Y-%m-%d}: known only after the outcome",
        )
        for col, late in counts.items()
    ]


def future_dated_attributes(tables: Tables, cutoff: pd.Timestamp) -> list[Finding]:
    """Datetime attributes of the customers table with values on or after the cutoff."""
    return late_attribute_findings(late_attribute_counts(tables, cutoff), cutoff)


def check_leakage(findings: list[Finding], allowed: tuple[str, ...] = ()) -> list[Finding]:
    """Raise `LeakageError` for findings not in `allowed`; return the allowed ones for the record."""
    blocking = [f for f in findings if f.column not in allowed]
    if blocking:
        lines = "\n".join(f"  {f.column}: {f.evidence}" for f in blocking)
        raise LeakageError(
            "training stopped: these features look like label leakage\n"
            f"{lines}\n"
            "Remove them from the data, or if they are legitimate list them under "
            "training.allow_leaky_features in your config."
        )
    return [f for f in findings if f.column in allowed]
