"""Sentiment family: per-customer aggregates of comment scores, each distinct text scored once.

Most tests swap in a stub analyzer with known scores, so the expected values are exact; one test
runs the real VADER analyzer."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from features.families import sentiment
from features.families.sentiment import sentiment_features

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
SETTINGS = settings_from_dict(
    {"features": {"windows_days": [7, 30], "negative_sentiment_threshold": -0.05}}
)
SCORES = {"great": 0.8, "bad": -0.6, "meh": -0.05, "fine": 0.0}
INDEX = pd.Index(["a", "b", "c"], name="customer_id", dtype=object)


class StubAnalyzer:
    def __init__(self):
        self.calls: list[str] = []

    def polarity_scores(self, text: str) -> dict[str, float]:
        self.calls.append(text)
        return {"compound": SCORES[text]}


@pytest.fixture
def stub(monkeypatch):
    analyzer = StubAnalyzer()
    monkeypatch.setattr(sentiment, "_analyzer", analyzer)
    return analyzer


def ago(days: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days)


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2023-01-01", "2023-01-01", "2023-01-01", "2024-07-01"],
        }
    )


def no_events() -> pd.DataFrame:
    return pd.DataFrame(columns=["customer_id", "ts", "channel", "event_type"])


def responses() -> pd.DataFrame:
    rows = [
        ("a", ago(40), "nps", 9, "great"),
        ("a", ago(10), "csat", 2, "bad"),
        ("a", ago(10), "nps", 5, "meh"),  # same ts: the later row is the last comment
        ("a", ago(1), "ces", 4, None),  # no comment: ignored
        ("a", AS_OF, "nps", 10, "great"),  # at as_of: excluded
        ("b", ago(3), "nps", 7, None),  # responses, but no comments
        ("c", ago(50), "csat", 3, "fine"),
        ("c", ago(60), "csat", 1, "bad"),  # repeated text: scored once
        ("d", ago(1), "nps", 0, "bad"),  # not in the population
    ]
    return pd.DataFrame(rows, columns=["customer_id", "ts", "survey", "score", "comment"])


def snapshot(make_snapshot, feedback, settings=SETTINGS):
    return make_snapshot(
        customers(), no_events(), AS_OF, feedback=feedback, settings=settings, everyone=True
    )


def test_hand_computed_values(make_snapshot, stub):
    out = sentiment_features(snapshot(make_snapshot, responses()))
    nan = np.nan
    expected = pd.DataFrame(
        {
            "comments_total": [3.0, 0.0, 2.0],
            # -0.05 is exactly the threshold: negative
            "negative_comments_total": [2.0, 0.0, 1.0],
            "negative_comments_30d": [2.0, 0.0, 0.0],
            "sentiment_mean": [(0.8 - 0.6 - 0.05) / 3, nan, -0.3],
            "sentiment_min": [-0.6, nan, -0.6],
            "sentiment_last": [-0.05, nan, 0.0],
            # 30 is the window closest to 90 among [7, 30]
            "sentiment_mean_30d": [-0.325, nan, nan],
        },
        index=INDEX,
    )
    pd.testing.assert_frame_equal(out, expected)
    assert sorted(stub.calls) == sorted(SCORES)  # each distinct text once


def test_absent_feedback_table_gives_nan_columns(make_snapshot, stub):
    out = sentiment_features(snapshot(make_snapshot, None))
    assert list(out.columns) == [
        "comments_total",
        "negative_comments_total",
        "negative_comments_30d",
        "sentiment_mean",
        "sentiment_min",
        "sentiment_last",
        "sentiment_mean_30d",
    ]
    assert out.isna().all().all() and (out.dtypes == np.float64).all()
    pd.testing.assert_index_equal(out.index, INDEX)
    assert stub.calls == []


@pytest.mark.parametrize(
    ("windows", "mean_col", "negative_col"),
    [
        ([7, 30, 90, 365], "sentiment_mean_90d", "negative_comments_365d"),
        ([60, 120], "sentiment_mean_60d", "negative_comments_120d"),  # tie: the smaller
        ([100], "sentiment_mean_100d", "negative_comments_100d"),
    ],
)
def test_window_choice(make_snapshot, stub, windows, mean_col, negative_col):
    settings = settings_from_dict({"features": {"windows_days": windows}})
    out = sentiment_features(snapshot(make_snapshot, responses(), settings))
    assert mean_col in out.columns and negative_col in out.columns


def test_real_vader_scores_tone(make_snapshot):
    feedback = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "ts": [ago(1), ago(1)],
            "survey": ["nps", "nps"],
            "score": [10, 0],
            "comment": ["Great service, thank you!", "Terrible. I am angry and disappointed."],
        }
    )
    out = sentiment_features(snapshot(make_snapshot, feedback))
    assert out.loc["a", "sentiment_last"] > 0.5
    assert out.loc["b", "sentiment_last"] < -0.5
    assert out.loc["b", "negative_comments_total"] == 1.0


def test_analyzer_is_not_created_at_import():
    code = (
        "import sys, features.families as f; "
        "assert f.sentiment._analyzer is None; "
        "assert 'vaderSentiment.vaderSentiment' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
