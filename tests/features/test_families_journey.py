"""Journey family on hand-computed frames: channels, types, recency, resolution, active days."""

import math

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from features.contract import CHANNELS
from features.families.journey import journey_features

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
SETTINGS = settings_from_dict({"features": {"windows_days": [7, 30]}})
INDEX = pd.Index(["a", "b"], name="customer_id", dtype=object)


def ago(days: float, seconds: float = 0) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days, seconds=seconds)


def world(make_snapshot):
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "signup_date": ["2024-01-01", "2024-01-01", "2024-01-01"],
        }
    )
    rows = [
        ("a", AS_OF, "web", "visit", None),  # at as_of: excluded
        ("a", ago(7), "web", "visit", None),  # exactly 7 d: inside 7d
        ("a", ago(7, 1), "app", "visit", None),  # 7 d + 1 s: 30d only
        ("a", ago(3), "phone", "support_contact", True),
        ("a", ago(10), "phone", "complaint", False),
        ("a", ago(40), "chat", "complaint", False),  # outside 30d
        ("a", ago(20), "chat", "support_contact", None),  # outcome unknown
        ("a", ago(2), "email", "newsletter_open", None),  # unknown type -> other_events
        ("a", ago(1.5), "store", "purchase", None),  # value family's type
        ("a", ago(5), "web", "delivery_issue", None),
        ("b", ago(30), "web", "visit", None),  # exactly 30 d: inside 30d
        ("b", ago(30, 1), "web", "visit", None),  # 30 d + 1 s: outside
        ("b", ago(45), "app", "purchase", None),
        ("c", ago(1), "web", "visit", None),  # no purchase: not in the population
    ]
    events = pd.DataFrame(rows, columns=["customer_id", "ts", "channel", "event_type", "resolved"])
    events["resolved"] = events["resolved"].astype("boolean")
    return journey_features(make_snapshot(customers, events, AS_OF, settings=SETTINGS))


def test_columns(make_snapshot):
    out = world(make_snapshot)
    types = ["visit", "support_contact", "complaint", "delivery_issue", "payment_failed"]
    expected = (
        ["events_7d", "events_30d"]
        + [f"events_{c}_{w}d" for c in CHANNELS for w in (7, 30)]
        + [f"{t}_{w}d" for t in [*types, "other_events"] for w in (7, 30)]
        + [f"days_since_last_{t}" for t in types]
        + ["days_since_last_event", "channels_used_30d", "channel_entropy_30d"]
        + ["unresolved_complaints_7d", "unresolved_complaints_30d"]
        + ["unresolved_share_7d", "unresolved_share_30d"]
        + ["active_days_7d", "active_days_30d", "engagement_trend_30d"]
    )
    assert list(out.columns) == expected
    assert (out.dtypes == np.float64).all()
    pd.testing.assert_index_equal(out.index, INDEX)  # c is outside the population


def test_channel_counts(make_snapshot):
    out = world(make_snapshot)
    expected = {c: [[0.0, 0.0], [0.0, 0.0]] for c in CHANNELS}
    expected.update(
        web=[[2.0, 2.0], [0.0, 1.0]],
        app=[[0.0, 1.0], [0.0, 0.0]],
        store=[[1.0, 1.0], [0.0, 0.0]],
        phone=[[1.0, 2.0], [0.0, 0.0]],
        chat=[[0.0, 1.0], [0.0, 0.0]],
        email=[[1.0, 1.0], [0.0, 0.0]],
    )
    frame = {"events_7d": [5.0, 0.0], "events_30d": [8.0, 1.0]}
    for c, per_customer in expected.items():
        for j, w in enumerate((7, 30)):
            frame[f"events_{c}_{w}d"] = [per_customer[0][j], per_customer[1][j]]
    expected_frame = pd.DataFrame(frame, index=INDEX)
    pd.testing.assert_frame_equal(out[expected_frame.columns], expected_frame)


def test_type_counts_and_recency(make_snapshot):
    out = world(make_snapshot)
    expected = pd.DataFrame(
        {
            "visit_7d": [1.0, 0.0],
            "visit_30d": [2.0, 1.0],
            "support_contact_7d": [1.0, 0.0],
            "support_contact_30d": [2.0, 0.0],
            "complaint_7d": [0.0, 0.0],
            "complaint_30d": [1.0, 0.0],
            "delivery_issue_7d": [1.0, 0.0],
            "delivery_issue_30d": [1.0, 0.0],
            "payment_failed_7d": [0.0, 0.0],
            "payment_failed_30d": [0.0, 0.0],
            "other_events_7d": [1.0, 0.0],
            "other_events_30d": [1.0, 0.0],
            "days_since_last_visit": [7.0, 30.0],
            "days_since_last_support_contact": [3.0, np.nan],
            "days_since_last_complaint": [10.0, np.nan],
            "days_since_last_delivery_issue": [5.0, np.nan],
            "days_since_last_payment_failed": [np.nan, np.nan],
            "days_since_last_event": [1.5, 30.0],
        },
        index=INDEX,
    )
    pd.testing.assert_frame_equal(out[expected.columns], expected)


def test_diversity_resolution_activity_and_trend(make_snapshot):
    out = world(make_snapshot)
    expected = pd.DataFrame(
        {
            # a's 30-day mix: web 2, phone 2, app, store, chat, email 1 each (8 events)
            "channels_used_30d": [6.0, 1.0],
            "channel_entropy_30d": [-(2 * 0.25 * math.log(0.25) + 4 / 8 * math.log(1 / 8)), 0.0],
            "unresolved_complaints_7d": [0.0, 0.0],
            "unresolved_complaints_30d": [1.0, 0.0],
            # 7d: one resolved contact; 30d: + one unresolved complaint (unknown one ignored)
            "unresolved_share_7d": [0.0, np.nan],
            "unresolved_share_30d": [0.5, np.nan],
            # a, 7d: ages 7, 5, 3, 2 and 1.5 -> periods 6, 4, 2, 1, 1 -> 4 distinct days;
            # 30d adds ages 7 d + 1 s, 10 and 20 -> periods 7, 9, 19. b: age 30 -> period 29.
            "active_days_7d": [4.0, 0.0],
            "active_days_30d": [7.0, 1.0],
            # a: 8 events in the last 30 days, 1 in the 30 before; b: 1 against 2.
            "engagement_trend_30d": [7 / 9, -1 / 3],
        },
        index=INDEX,
    )
    pd.testing.assert_frame_equal(out[expected.columns], expected)
    assert out.loc["a", "channel_entropy_30d"] == pytest.approx(2.5 * math.log(2))


def test_no_events_in_window_gives_zero_counts_and_nan_ratios(make_snapshot):
    customers = pd.DataFrame({"customer_id": ["a"], "signup_date": ["2023-01-01"]})
    events = pd.DataFrame(
        {"customer_id": ["a"], "ts": [ago(100)], "channel": ["web"], "event_type": ["purchase"]}
    )
    out = journey_features(make_snapshot(customers, events, AS_OF, settings=SETTINGS)).loc["a"]
    assert out["events_30d"] == 0.0 and out["channels_used_30d"] == 0.0
    assert out["active_days_30d"] == 0.0 and out["days_since_last_event"] == 100.0
    for col in ("channel_entropy_30d", "unresolved_share_30d", "engagement_trend_30d"):
        assert np.isnan(out[col]), col
