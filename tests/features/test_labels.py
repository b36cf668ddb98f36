import pandas as pd
import pytest

from features.labels import build_labels
from features.validate import validate

AS_OF = "2024-04-01"


def world(with_churn: bool):
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "signup_date": ["2024-01-01", "2024-01-01", "2024-01-01", "2024-04-01", "2024-01-01"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c", "d", "e"],
            "ts": [
                "2024-03-01",  # a: before the cutoff (population without churn table)
                "2024-04-01",  # a: exactly at as_of -> inside the horizon
                "2024-04-15",
                "2024-02-01",
                "2024-06-30 00:00:00",  # b: exactly as_of + 90 days -> outside the horizon
                "2024-03-10",
                "2024-04-02",  # d signed up at as_of: not in the population
                "2024-02-01",
            ],
            "channel": ["web"] * 8,
            "event_type": [
                "purchase",
                "purchase",
                "refund",
                "purchase",
                "purchase",
                "visit",
                "purchase",
                "purchase",
            ],
            "amount": [10, 30, -50, 5, 7, None, 3, 1],
        }
    )
    raw = {"customers": customers, "events": events}
    if with_churn:
        raw["churn"] = pd.DataFrame(
            {
                "customer_id": ["b", "c", "e"],
                "churn_date": ["2024-05-01", "2024-06-30", "2024-03-31"],
            }
        )
    return validate(raw).tables


def test_labels_without_churn_table_use_activity():
    got = build_labels(world(False), AS_OF, 90)
    expected = pd.DataFrame(
        {"churned": [False, True, True], "future_value": [0.0, 0.0, 0.0]},
        index=pd.Index(["a", "b", "e"], name="customer_id", dtype=object),
    )
    # a: 30 - 50 = -20, floored at 0; c has only a visit before the cutoff, so it is not active.
    pd.testing.assert_frame_equal(got, expected)


def test_labels_with_churn_table_use_churn_dates():
    got = build_labels(world(True), AS_OF, 90)
    # e churned before the cutoff: out of the population. c churns exactly at as_of + 90: outside.
    assert list(got.index) == ["a", "b", "c"]
    assert got["churned"].tolist() == [False, True, False]


def test_activity_types_are_configurable():
    got = build_labels(world(False), AS_OF, 90, activity_event_types=("purchase", "refund"))
    assert got.loc["a", "churned"] == False  # noqa: E712


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        build_labels(world(False), AS_OF, 0)


@pytest.mark.parametrize("with_churn", [False, True])
def test_only_keeps_the_rows_and_labels_of_the_named_customers(with_churn):
    tables = world(with_churn)
    sub = tables.only(["b", "a", "unknown"])
    assert sub.customers["customer_id"].tolist() == ["a", "b"]
    for frame in (sub.events, sub.churn) if with_churn else (sub.events,):
        assert list(frame["customer_id"].cat.categories) == ["a", "b"]
        assert set(frame["customer_id"]) <= {"a", "b"}
    assert len(sub.events) == 5  # a: 3 events, b: 2
    full = build_labels(tables, AS_OF, 90)
    pd.testing.assert_frame_equal(build_labels(sub, AS_OF, 90), full[full.index.isin(["a", "b"])])
