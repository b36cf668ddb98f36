"""The estimate of the current ROC AUC before labels mature, on planted calibrated scores: where
the book moves to customers the model cannot tell apart, the estimate follows the ROC AUC the
labels later show; the reference check and the refusals."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from monitoring.estimate import estimate_roc_auc, expected_roc_auc


def _book(n: int, share_hard: float, seed: int) -> pd.DataFrame:
    """Calibrated scores: easy customers spread over 0.02-0.9, hard ones all near 0.3; each
    churns with exactly its score."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < share_hard
    p = np.where(hard, rng.uniform(0.25, 0.35, n), rng.uniform(0.02, 0.9, n))
    churned = rng.random(n) < p
    index = pd.Index([f"s{seed}-{i}" for i in range(n)], name="customer_id")
    return pd.DataFrame({"churned": churned, "churn_probability": p}, index=index)


def test_expected_roc_auc_by_hand():
    # scores 0.2 and 0.8: positives weigh 0.2 and 0.8, negatives 0.8 and 0.2; the pair
    # (positive 0.8, negative 0.2) is ranked right with weight 0.8 * 0.8, wrong 0.2 * 0.2
    assert expected_roc_auc(np.array([0.2, 0.8])) == pytest.approx(
        (0.8 * 0.8 + 0.5 * (0.2 * 0.8 + 0.8 * 0.2)) / (1.0 * 1.0)
    )


def test_the_estimate_follows_a_book_that_moved_to_customers_the_model_cannot_tell_apart():
    ref, cur = _book(20_000, 0.2, 1), _book(20_000, 0.8, 2)
    truth = roc_auc_score(cur["churned"], cur["churn_probability"])  # known only later
    e = estimate_roc_auc(cur.drop(columns="churned"), ref, sample_size=50_000, seed=0)
    assert e.reference_roc_auc - truth > 0.1  # the reference's figure is far too optimistic
    assert e.roc_auc == pytest.approx(truth, abs=0.015)
    assert e.low <= truth <= e.high and e.high - e.low < 0.06
    # calibrated on the reference, the method agrees with the measurement there
    assert e.reference_estimate == pytest.approx(e.reference_roc_auc, abs=0.015)
    assert (e.n_current, e.n_reference) == (20_000, 20_000)


def test_what_cannot_be_estimated_is_none_or_nan():
    cur = _book(500, 0.5, 3)
    assert estimate_roc_auc(cur[["churned"]], None, sample_size=1000, seed=0) is None
    flat = cur.assign(churn_probability=0.3)
    assert estimate_roc_auc(flat, None, sample_size=1000, seed=0) is None
    e = estimate_roc_auc(cur, cur.assign(churned=False), sample_size=1000, seed=0)
    assert np.isnan(e.reference_roc_auc) and np.isfinite(e.roc_auc)
