"""Value family on hand-computed frames: windows, totals, trends, refunds, recency."""

import numpy as np
import pandas as pd

from configs import settings_from_dict
from features.families.value import value_features

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
SETTINGS = settings_from_dict({"features": {"windows_days": [7, 30]}})


def ago(days: float, seconds: float = 0) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days, seconds=seconds)


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "signup_date": ["2024-01-01", "2024-05-01", "2024-05-31", "2024-06-01", "2023-01-01"],
        }
    )


def events() -> pd.DataFrame:
    rows = [
        ("a", AS_OF, "purchase", 1000.0),  # exactly at as_of: excluded everywhere
        ("a", ago(7), "purchase", 10.0),  # exactly 7 days before: inside 7d
        ("a", ago(7, 1), "purchase", 20.0),  # 7 days + 1 s: 30d only
        ("a", ago(30), "purchase", 30.0),  # exactly 30 days: inside 30d
        ("a", ago(30, 1), "purchase", 40.0),  # 30 days + 1 s: outside every window
        ("a", ago(121), "purchase", np.nan),  # a purchase without amount: counted, no spend
        ("a", ago(1.5), "refund", -5.0),
        ("b", ago(0.25), "purchase", 50.0),
        ("b", ago(22), "refund", 8.0),  # refund recorded with a positive amount
        ("c", ago(3), "visit", np.nan),  # no purchase: not in the population
        ("d", ago(-1), "purchase", 5.0),  # signed up at as_of: not in the population
        ("e", ago(90), "purchase", 1.0),  # exactly 90 days: recent side of the trend
        ("e", ago(120), "purchase", 2.0),
        ("e", ago(180), "purchase", 3.0),  # exactly 180 days: earlier side
        ("e", ago(180, 1), "purchase", 4.0),  # beyond both trend periods
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "amount"])
    frame["channel"] = "web"
    return frame


def test_columns_in_order(make_snapshot):
    out = value_features(make_snapshot(customers(), events(), AS_OF, settings=SETTINGS))
    assert list(out.columns) == [
        "tenure_days",
        "days_since_last_purchase",
        "days_since_last_refund",
        "purchases_total",
        "spend_total",
        "avg_purchase_value",
        "purchases_7d",
        "spend_7d",
        "purchases_30d",
        "spend_30d",
        "purchase_trend_90d",
        "spend_trend_90d",
        "refunds_total",
        "refund_amount_total",
        "refunds_7d",
        "refund_amount_7d",
        "refunds_30d",
        "refund_amount_30d",
        "refund_share",
    ]
    assert (out.dtypes == np.float64).all()


def test_hand_computed_values(make_snapshot):
    out = value_features(make_snapshot(customers(), events(), AS_OF, settings=SETTINGS))
    expected = pd.DataFrame(
        {
            # 2024-01-01 -> 2024-06-01 is 152 days; 2023-01-01 adds 365.
            "tenure_days": [152.0, 31.0, 517.0],
            "days_since_last_purchase": [7.0, 0.25, 90.0],
            "days_since_last_refund": [1.5, 22.0, np.nan],
            "purchases_total": [5.0, 1.0, 4.0],
            "spend_total": [100.0, 50.0, 10.0],
            # a: 100 over the 4 purchases with an amount
            "avg_purchase_value": [25.0, 50.0, 2.5],
            "purchases_7d": [1.0, 1.0, 0.0],
            "spend_7d": [10.0, 50.0, 0.0],
            "purchases_30d": [3.0, 1.0, 0.0],
            "spend_30d": [60.0, 50.0, 0.0],
            # a: 4 purchases in the last 90 days, 1 in the 90 before -> (4 - 1) / 5;
            # e: 1 recent (exactly 90 d), 2 earlier (120 d and exactly 180 d) -> -1/3.
            "purchase_trend_90d": [0.6, 1.0, -1 / 3],
            # a's earlier purchase has no amount -> all spend is recent; e: (1 - 5) / 6.
            "spend_trend_90d": [1.0, 1.0, -4 / 6],
            "refunds_total": [1.0, 1.0, 0.0],
            "refund_amount_total": [5.0, 8.0, 0.0],
            "refunds_7d": [1.0, 0.0, 0.0],
            "refund_amount_7d": [5.0, 0.0, 0.0],
            "refunds_30d": [1.0, 1.0, 0.0],
            "refund_amount_30d": [5.0, 8.0, 0.0],
            "refund_share": [0.05, 0.16, 0.0],
        },
        index=pd.Index(["a", "b", "e"], name="customer_id", dtype=object),
    )
    pd.testing.assert_frame_equal(out, expected)


def test_customer_without_purchases_gets_zero_counts_and_nan_ratios(make_snapshot):
    snap = make_snapshot(customers(), events(), AS_OF, settings=SETTINGS, everyone=True)
    out = value_features(snap)
    assert list(out.index) == ["a", "b", "c", "e"]  # d signed up at as_of: never in
    c = out.loc["c"]
    assert c["purchases_total"] == 0.0 and c["spend_30d"] == 0.0 and c["refunds_total"] == 0.0
    for col in (
        "days_since_last_purchase",
        "days_since_last_refund",
        "avg_purchase_value",
        "purchase_trend_90d",
        "spend_trend_90d",
        "refund_share",
    ):
        assert np.isnan(c[col]), col
    assert c["tenure_days"] == 1.0


def test_empty_population(make_snapshot):
    snap = make_snapshot(customers(), events(), "2023-06-01", settings=SETTINGS)
    out = value_features(snap)
    assert out.empty and out.index.name == "customer_id"
    assert len(out.columns) == 19


def test_does_not_mutate_inputs(make_snapshot):
    raw = events()
    before = raw.copy()
    snap = make_snapshot(customers(), raw, AS_OF, settings=SETTINGS)
    frames = {name: getattr(snap.tables, name).copy() for name in ("customers", "events")}
    value_features(snap)
    pd.testing.assert_frame_equal(raw, before)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(getattr(snap.tables, name), frame)
