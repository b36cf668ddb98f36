"""Feedback family on hand-computed frames: last/mean/count, NPS classes, trends, negatives."""

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from features.families.feedback import feedback_features

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
SETTINGS = settings_from_dict({"features": {"windows_days": [7, 30]}})
CLASSES = ["detractor", "passive", "promoter"]
COLUMNS = [
    "nps_last",
    "nps_mean",
    "nps_count",
    "nps_class_last",
    "csat_last",
    "csat_mean",
    "csat_count",
    "csat_trend",
    "ces_last",
    "ces_mean",
    "ces_count",
    "ces_trend",
    "negative_responses_total",
    "negative_responses_30d",
    "days_since_last_detractor",
    "days_since_last_response",
]


def ago(days: float, seconds: float = 0) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days, seconds=seconds)


def customers(ids=("a", "b", "c", "d")) -> pd.DataFrame:
    signup = ["2024-06-02" if i == "d" else "2023-01-01" for i in ids]  # d: after as_of
    return pd.DataFrame({"customer_id": list(ids), "signup_date": signup})


def no_events() -> pd.DataFrame:
    return pd.DataFrame(columns=["customer_id", "ts", "channel", "event_type"])


def responses() -> pd.DataFrame:
    rows = [
        ("a", ago(100), "nps", 4),
        ("a", ago(10), "nps", 3),
        ("a", ago(10), "nps", 5),  # same ts as the row before: the later row is "last"
        ("a", AS_OF, "nps", 10),  # at as_of: excluded
        ("a", ago(120), "csat", 4),
        ("a", ago(95), "csat", 3),
        ("a", ago(20), "csat", 2),
        ("a", ago(5), "ces", 6),
        ("b", ago(90), "csat", 5),  # exactly 90 days: recent side of the trend
        ("b", ago(90, 1), "csat", 1),  # 90 days + 1 s: earlier side
        ("d", ago(1), "nps", 0),  # d is not in the population
    ]
    return pd.DataFrame(rows, columns=["customer_id", "ts", "survey", "score"])


def test_hand_computed_values(make_snapshot):
    snap = make_snapshot(
        customers(), no_events(), AS_OF, feedback=responses(), settings=SETTINGS, everyone=True
    )
    out = feedback_features(snap)
    nan = np.nan
    expected = pd.DataFrame(
        {
            "nps_last": [5.0, nan, nan],
            "nps_mean": [4.0, nan, nan],
            "nps_count": [3.0, 0.0, 0.0],
            "nps_class_last": pd.Categorical(["detractor", None, None], categories=CLASSES),
            "csat_last": [2.0, 5.0, nan],
            "csat_mean": [3.0, 3.0, nan],
            "csat_count": [3.0, 2.0, 0.0],
            # a: last 90 days [2] minus before [4, 3]; b: [5] minus [1]
            "csat_trend": [-1.5, 4.0, nan],
            "ces_last": [6.0, nan, nan],
            "ces_mean": [6.0, nan, nan],
            "ces_count": [1.0, 0.0, 0.0],
            "ces_trend": [nan, nan, nan],  # a has no CES response before the last 90 days
            # a: nps 4, 3, 5 and csat 2; b: csat 1 (90 days + 1 s ago)
            "negative_responses_total": [4.0, 1.0, 0.0],
            "negative_responses_30d": [3.0, 0.0, 0.0],
            "days_since_last_detractor": [10.0, nan, nan],
            "days_since_last_response": [5.0, 90.0, nan],
        },
        index=pd.Index(["a", "b", "c"], name="customer_id", dtype=object),
    )
    pd.testing.assert_frame_equal(out, expected)


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_class_boundaries(make_snapshot, score, label):
    feedback = pd.DataFrame(
        {"customer_id": ["a"], "ts": [ago(1)], "survey": ["nps"], "score": [score]}
    )
    snap = make_snapshot(
        customers(["a"]), no_events(), AS_OF, feedback=feedback, settings=SETTINGS, everyone=True
    )
    out = feedback_features(snap)
    assert out["nps_class_last"].dtype == pd.CategoricalDtype(CLASSES)
    assert out.loc["a", "nps_class_last"] == label
    detractor = score <= 6
    assert out.loc["a", "negative_responses_total"] == float(detractor)
    assert np.isnan(out.loc["a", "days_since_last_detractor"]) != detractor


def test_absent_feedback_table_gives_the_same_columns_all_missing(make_snapshot):
    present = feedback_features(
        make_snapshot(
            customers(), no_events(), AS_OF, feedback=responses(), settings=SETTINGS, everyone=True
        )
    )
    absent = feedback_features(
        make_snapshot(customers(), no_events(), AS_OF, settings=SETTINGS, everyone=True)
    )
    assert list(absent.columns) == COLUMNS == list(present.columns)
    pd.testing.assert_series_equal(absent.dtypes, present.dtypes)
    assert absent.isna().all().all()
    assert absent["nps_class_last"].dtype == pd.CategoricalDtype(CLASSES)
    assert list(absent.index) == ["a", "b", "c"]
