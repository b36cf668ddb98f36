import numpy as np
import pandas as pd
import pytest

from configs import GateSettings, settings_from_dict
from features.validate import validate
from training.frames import build_training_data, default_known_until, plan_cutoffs
from training.gate import gate_decision
from training.leakage import (
    LeakageError,
    check_leakage,
    future_dated_attributes,
    separating_features,
)

UTC = "UTC"


def test_cutoffs_leave_a_full_horizon_between_training_labels_and_evaluation():
    c = plan_cutoffs(
        pd.Timestamp("2026-01-01", tz=UTC), horizon_days=90, n_cutoffs=4, spacing_days=30
    )
    assert c.evaluation == pd.Timestamp("2025-10-03", tz=UTC)
    assert c.training == (
        pd.Timestamp("2025-05-06", tz=UTC),
        pd.Timestamp("2025-06-05", tz=UTC),
        pd.Timestamp("2025-07-05", tz=UTC),
    )
    # the newest training labels end exactly where the evaluation snapshot starts
    assert c.training[-1] + pd.Timedelta(days=90) == c.evaluation
    assert c.evaluation + pd.Timedelta(days=90) <= c.known_until
    with pytest.raises(ValueError, match="at least 2"):
        plan_cutoffs(pd.Timestamp("2026-01-01", tz=UTC), 90, 1, 30)


def tiny_tables():
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2024-01-01"] * 4,
            "closed_at": pd.to_datetime(["2024-05-01", None, "2024-02-01", None]),
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "b"],
            "ts": ["2024-01-10", "2024-01-11", "2024-01-12", "2024-01-13", "2024-06-30 10:00"],
            "channel": ["web"] * 5,
            "event_type": ["purchase"] * 5,
            "amount": [1.0] * 5,
        }
    )
    return validate({"customers": customers, "events": events}).tables


def test_known_until_is_the_day_after_the_last_timestamp():
    assert default_known_until(tiny_tables()) == pd.Timestamp("2024-07-01", tz=UTC)


def test_not_enough_history_is_a_clear_error():
    settings = settings_from_dict({"horizon_days": 90})
    with pytest.raises(ValueError, match="not enough history"):
        build_training_data(tiny_tables(), settings)


def test_separating_feature_is_found_and_named():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    X = pd.DataFrame(
        {
            "honest": rng.normal(size=400) + 0.5 * y,
            "cancel_reason_code": np.where(
                y, rng.integers(1, 5, 400), np.nan
            ),  # only set for churners
            "segment": pd.Categorical(rng.choice(["x", "y"], 400)),
        }
    )
    found = separating_features(X, y, threshold=0.95)
    assert [f.column for f in found] == ["cancel_reason_code"]
    assert "ROC AUC 1.000" in found[0].evidence
    with pytest.raises(LeakageError) as info:
        check_leakage(found)
    assert "cancel_reason_code" in str(info.value)
    assert "allow_leaky_features" in str(info.value)
    assert check_leakage(found, allowed=("cancel_reason_code",)) == found


def test_attribute_dated_after_the_cutoff_is_leakage():
    found = future_dated_attributes(tiny_tables(), pd.Timestamp("2024-03-01", tz=UTC))
    assert [f.column for f in found] == ["closed_at"]
    assert "1 customers" in found[0].evidence


GATE = GateSettings(metric="roc_auc", min_improvement=0.01)


@pytest.mark.parametrize(
    ("challenger", "baselines", "champion", "promote", "words"),
    [
        (0.80, {"recency": 0.70, "logistic": 0.75}, None, True, "first model"),
        (0.74, {"recency": 0.70, "logistic": 0.75}, None, False, "baseline logistic"),
        (0.80, {"recency": 0.70}, 0.795, False, "does not beat champion"),
        (0.81, {"recency": 0.70}, 0.80, True, "beats champion"),
        (float("nan"), {"recency": 0.70}, None, False, "could not be computed"),
    ],
)
def test_gate_decision(challenger, baselines, champion, promote, words):
    d = gate_decision("churn", GATE, challenger, baselines, champion)
    assert d.promote is promote
    assert words in d.reason


def test_cutoffs_shrink_to_fit_a_short_history():
    from training.frames import fit_to_history

    settings = settings_from_dict({"horizon_days": 90})
    planned = plan_cutoffs(pd.Timestamp("2026-01-01", tz=UTC), 90, 4, 30)
    # Training cutoffs 2025-05-06, 06-05, 07-05: they fit a history from 2025-01-01 as planned.
    assert fit_to_history(planned, settings, pd.Timestamp("2025-01-01", tz=UTC)) == planned
    # From 2025-05-20 the oldest needs 7 days of history: room 2025-05-27..07-05 = 39 days, so
    # three cutoffs 19 days apart, the newest and the evaluation unchanged.
    short = fit_to_history(planned, settings, pd.Timestamp("2025-05-20", tz=UTC))
    assert short.training == (
        pd.Timestamp("2025-05-28", tz=UTC),
        pd.Timestamp("2025-06-16", tz=UTC),
        pd.Timestamp("2025-07-05", tz=UTC),
    )
    assert short.evaluation == planned.evaluation
    # 10 days of room: three cutoffs would be 5 days apart (< 7), two fit 10 days apart.
    two = fit_to_history(planned, settings, pd.Timestamp("2025-06-18", tz=UTC))
    assert two.training == (pd.Timestamp("2025-06-25", tz=UTC), planned.training[-1])
    # 3 days of room: the newest cutoff alone.
    one = fit_to_history(planned, settings, pd.Timestamp("2025-06-25", tz=UTC))
    assert one.training == (planned.training[-1],)
    assert fit_to_history(planned, settings, pd.Timestamp("2025-07-01", tz=UTC)) is None
