"""Behaviour of the churn model trained on the synthetic world (conftest fixtures): the direction
of CX signals and invariance to the customer id.

The direction tests change real evaluation customers consistently (every feature the change would
move, not one column in isolation) and compare mean predicted risk. In the synthetic world
(`features.synthetic`) unresolved complaints and detractor NPS responses raise the churn hazard
directly and through lower satisfaction, so a model that learned the world must not lower risk on
average when they appear.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

WINDOWS = (7, 30, 90, 365)  # configs/default.yaml features.windows_days
RECENT_DAYS = 3.0


def _risk(model, X: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(X)


def _share_lower(after: np.ndarray, before: np.ndarray) -> float:
    return float(np.mean(after < before - 1e-12))


@pytest.fixture(scope="module")
def evaluation_customers(synthetic_split, fitted_churn_model):
    """Real evaluation customers (all of them) with the feature columns these tests edit."""
    X = synthetic_split.X_eval
    assert len(X) > 1000
    needed = [
        *(f"{k}_{w}d" for w in WINDOWS for k in ("unresolved_complaints", "complaint")),
        *(f"{k}_{w}d" for w in WINDOWS for k in ("unresolved_share", "support_contact")),
        "days_since_last_complaint",
        "nps_last",
        "nps_class_last",
        "nps_mean",
        "nps_count",
        "negative_responses_total",
        "negative_responses_365d",
        "days_since_last_detractor",
        "days_since_last_response",
    ]
    missing = sorted(set(needed) - set(fitted_churn_model.schema.columns))
    assert not missing, f"feature names changed; update this test: {missing}"
    return X


def with_unresolved_complaints(X: pd.DataFrame, extra: int = 2) -> pd.DataFrame:
    """The same customers had `extra` more complaints a few days ago, none resolved: every
    complaint and unresolved-complaint count goes up in every window, the unresolved share is
    recomputed (the synthetic world records an outcome for every contact and complaint), and the
    last complaint is recent."""
    X = X.copy()
    for w in WINDOWS:
        known = X[f"support_contact_{w}d"] + X[f"complaint_{w}d"]
        unresolved = (X[f"unresolved_share_{w}d"] * known).fillna(0.0)
        X[f"unresolved_complaints_{w}d"] += extra
        X[f"complaint_{w}d"] += extra
        X[f"unresolved_share_{w}d"] = (unresolved + extra) / (known + extra)
    X["days_since_last_complaint"] = np.fmin(X["days_since_last_complaint"], RECENT_DAYS)
    return X


def with_new_nps_response(X: pd.DataFrame, score: int) -> pd.DataFrame:
    """The same customers answered one more NPS survey a few days ago with `score`: the last
    score and its class, the mean and count, the last-response age and, for a detractor (0-6),
    the negative-response counts and the last-detractor age."""
    X = X.copy()
    count = X["nps_count"].fillna(0.0)
    X["nps_mean"] = (X["nps_mean"].fillna(0.0) * count + score) / (count + 1)
    X["nps_count"] = count + 1
    X["nps_last"] = float(score)
    label = "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"
    X["nps_class_last"] = pd.Categorical(
        [label] * len(X), categories=X["nps_class_last"].cat.categories
    )
    X["days_since_last_response"] = np.fmin(X["days_since_last_response"], RECENT_DAYS)
    if score <= 6:
        X["negative_responses_total"] += 1
        X["negative_responses_365d"] += 1
        X["days_since_last_detractor"] = np.fmin(X["days_since_last_detractor"], RECENT_DAYS)
    return X


def test_unresolved_complaints_do_not_lower_churn_risk(fitted_churn_model, evaluation_customers):
    X = evaluation_customers
    before = _risk(fitted_churn_model, X)
    after = _risk(fitted_churn_model, with_unresolved_complaints(X))
    lower = _share_lower(after, before)
    message = (
        f"2 more unresolved complaints moved mean churn risk {before.mean():.4f} -> "
        f"{after.mean():.4f}; risk dropped for {lower:.1%} of {len(X):,} customers"
    )
    assert after.mean() >= before.mean(), message
    # Not just on average: for nearly every customer.
    assert lower < 0.10, message


def test_a_detractor_score_does_not_lower_churn_risk_versus_a_promoter(
    fitted_churn_model, evaluation_customers
):
    X = evaluation_customers
    detractor = _risk(fitted_churn_model, with_new_nps_response(X, 3))
    promoter = _risk(fitted_churn_model, with_new_nps_response(X, 10))
    lower = _share_lower(detractor, promoter)
    message = (
        f"mean churn risk after an NPS of 3 is {detractor.mean():.4f}, after an NPS of 10 "
        f"{promoter.mean():.4f}; the detractor is lower for {lower:.1%} of {len(X):,} customers"
    )
    assert detractor.mean() >= promoter.mean(), message
    assert lower < 0.10, message


def test_the_nps_class_alone_does_not_lower_risk(fitted_churn_model, evaluation_customers):
    """The narrowest form of the NPS check: only the last score and its class differ."""
    X = evaluation_customers

    def last_score(score: int, label: str) -> pd.DataFrame:
        categories = X["nps_class_last"].cat.categories
        return X.assign(
            nps_last=float(score),
            nps_class_last=pd.Categorical([label] * len(X), categories=categories),
        )

    detractor = _risk(fitted_churn_model, last_score(3, "detractor"))
    promoter = _risk(fitted_churn_model, last_score(10, "promoter"))
    assert detractor.mean() >= promoter.mean(), (
        f"nps_last 3/detractor {detractor.mean():.4f} < 10/promoter {promoter.mean():.4f}; "
        f"lower for {_share_lower(detractor, promoter):.1%}"
    )


def test_scores_do_not_depend_on_the_customer_id(
    fitted_churn_model, fitted_clv_model, evaluation_customers
):
    X = evaluation_customers
    assert X.index.name == "customer_id"
    assert "customer_id" not in fitted_churn_model.schema.columns
    churn = _risk(fitted_churn_model, X)
    clv = fitted_clv_model.predict(X).to_numpy()
    some = X.index[:300]
    reasons = fitted_churn_model.contributions(X.loc[some]).to_numpy()

    # Shuffled rows: each customer keeps their score, in the new order.
    order = np.random.default_rng(0).permutation(len(X))
    shuffled = X.iloc[order]
    np.testing.assert_array_equal(_risk(fitted_churn_model, shuffled), churn[order])
    np.testing.assert_array_equal(fitted_clv_model.predict(shuffled).to_numpy(), clv[order])

    # The same rows under other ids (ids permuted among customers, and plain integers): the
    # same scores row for row, and the ids are carried through.
    permuted = X.set_axis(X.index[order], axis=0)
    renumbered = X.set_axis(pd.RangeIndex(len(X), name="customer_id"), axis=0)
    for relabelled in (permuted, renumbered):
        np.testing.assert_array_equal(_risk(fitted_churn_model, relabelled), churn)
        got = fitted_clv_model.predict(relabelled)
        assert got.index.equals(relabelled.index)
        np.testing.assert_array_equal(got.to_numpy(), clv)
    np.testing.assert_array_equal(
        fitted_churn_model.contributions(renumbered.iloc[:300]).to_numpy(), reasons
    )
