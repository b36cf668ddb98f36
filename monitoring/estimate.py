"""An estimate of the churn model's current ROC AUC before the labels mature.

Today's scores get their labels a horizon from now. What can be known today is how well the
champion separates the customers it is scoring *if its probabilities are right*: a customer
scored p churns with probability p. Confidence-based performance estimation (CBPE, as NannyML
calls it) counts each current customer as a churner with weight p and as a stayer with weight
1 - p, and the ROC AUC of the scores against those soft labels is the expected ROC AUC. It reacts
to what drift does to the ranking (a book moving to customers the model cannot tell apart gets a
lower estimate) without needing labels, and it needs no model of the shift (a classifier telling
the reference from the current book separates them on artefacts such as the BTYD prior of
one-time buyers, refitted at every cutoff, and its weights then rest on a handful of rows).

It assumes calibration holds on the current book; the reference checks that assumption where
labels exist: the same estimate on the reference's own scores (`reference_estimate`) next to the
reference's measured ROC AUC (`reference_roc_auc`) shows how far the method is off there, and
that gap widens the predictive interval on both sides. The
matured performance (`monitoring.performance`) remains the measurement; this is the early
warning beside it, never a retrain trigger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from monitoring.drift import sample_rows

BOOTSTRAP = 200
METHOD = "confidence-based estimation (each customer a churner with weight p)"


@dataclass(frozen=True)
class RocEstimate:
    roc_auc: float  # expected ROC AUC of the current scores
    low: float  # predictive interval of the realised ROC AUC, widened by the reference's gap
    high: float
    reference_estimate: float  # the same estimate on the reference's scores
    reference_roc_auc: float  # the reference's measured ROC AUC (labels known)
    n_current: int
    n_reference: int
    confidence: float
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            k: float(v) if isinstance(v, float | np.floating) else v
            for k, v in asdict(self).items()
        }


def expected_roc_auc(p: np.ndarray) -> float:
    """ROC AUC of scores `p` against soft labels: each row a positive with weight p and a
    negative with weight 1 - p."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    labels = np.r_[np.ones(len(p)), np.zeros(len(p))]
    return float(roc_auc_score(labels, np.r_[p, p], sample_weight=np.r_[p, 1.0 - p]))


def estimate_roc_auc(
    current_predictions: pd.DataFrame,
    reference_predictions: pd.DataFrame | None,
    *,
    sample_size: int,
    seed: int,
    confidence: float = 0.95,
) -> RocEstimate | None:
    """The estimate (see the module docstring) from the current scores' `churn_probability`, or
    None without at least two distinct scores. The reference's figures are NaN when it lacks
    `churned` and `churn_probability` or holds one class. Frames are indexed by customer_id."""
    if "churn_probability" not in current_predictions.columns:
        return None
    cur = sample_rows(current_predictions[["churn_probability"]].dropna(), sample_size, seed)
    p = cur["churn_probability"].to_numpy(dtype=np.float64)
    if len(np.unique(p)) < 2:
        return None
    rng = np.random.default_rng(seed)
    # What the matured figure may show: customers resampled, and their outcomes drawn from
    # their scores (a predictive interval for the realised ROC AUC, not only for its mean).
    draws = []
    for _ in range(BOOTSTRAP):
        q = p[rng.integers(0, len(p), len(p))]
        outcome = rng.random(len(q)) < q
        if 0 < outcome.sum() < len(q):
            draws.append(roc_auc_score(outcome, q))
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail]) if draws else (np.nan, np.nan)
    ref_estimate = ref_measured = float("nan")
    n_ref = 0
    if reference_predictions is not None and {"churned", "churn_probability"} <= set(
        reference_predictions.columns
    ):
        ref = reference_predictions[["churned", "churn_probability"]].dropna()
        ref = sample_rows(ref, sample_size, seed)
        n_ref = len(ref)
        if ref["churned"].astype(bool).nunique() == 2:
            q = ref["churn_probability"].to_numpy(dtype=np.float64)
            ref_estimate = expected_roc_auc(q)
            ref_measured = float(roc_auc_score(ref["churned"].astype(bool), q))
    # The method's own error where it can be measured widens the interval on both sides.
    gap = abs(ref_estimate - ref_measured) if np.isfinite(ref_estimate + ref_measured) else 0.0
    return RocEstimate(
        roc_auc=expected_roc_auc(p),
        low=float(low) - gap,
        high=float(high) + gap,
        reference_estimate=ref_estimate,
        reference_roc_auc=ref_measured,
        n_current=len(cur),
        n_reference=n_ref,
        confidence=confidence,
    )
