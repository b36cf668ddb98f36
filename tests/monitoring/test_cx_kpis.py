"""CX KPIs against numbers worked out by hand on a six-customer book."""

import math
from dataclasses import replace

import pandas as pd
import pytest

from features.validate import validate
from monitoring.kpis import HIGH_IMPACT, REST, cx_kpis, high_impact, kpi_table
from monitoring.settings import MonitoringSettings

AS_OF = pd.Timestamp("2024-07-01", tz="UTC")
SETTINGS = MonitoringSettings(kpi_windows_days=(30, 90), high_impact_share=0.1)


def day(offset: int) -> pd.Timestamp:
    return AS_OF + pd.Timedelta(days=offset)


def _tables():
    ids = [f"c{i}" for i in range(1, 7)]
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": pd.Timestamp("2024-01-01", tz="UTC"),
            "segment": ["consumer"] * 3 + ["business"] * 3,
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": pd.Timestamp("2024-02-01", tz="UTC"),
            "channel": "web",
            "event_type": "purchase",
            "amount": 10.0,
        }
    )
    # c6 churned 2024-04-15 (inside the 90-day window only), c5 on 2024-06-15 (inside both).
    churn = pd.DataFrame(
        {
            "customer_id": ["c5", "c6"],
            "churn_date": [day(-16), pd.Timestamp("2024-04-15", tz="UTC")],
        }
    )
    fb = [
        # NPS in the last 30 days; c1's 0 falls exactly on the window's start (included).
        ("c1", day(-30), "nps", 0),
        ("c1", day(-5), "nps", 6),  # detractor
        ("c2", day(-5), "nps", 7),  # passive
        ("c3", day(-5), "nps", 8),  # passive
        ("c4", day(-5), "nps", 9),  # promoter
        ("c4", day(-4), "nps", 10),  # promoter
        ("c5", day(-20), "nps", 9),  # promoter, no longer a customer
        ("c2", day(0), "nps", 10),  # at as_of: excluded
        # Only in the 90-day window.
        ("c3", day(-60), "nps", 3),
        ("c6", day(-60), "nps", 10),
        ("c6", day(-95), "nps", 0),  # before both windows
        ("c1", day(-3), "csat", 5),
        ("c4", day(-3), "csat", 3),
        ("c5", day(-25), "csat", 4),
        ("c2", day(-2), "ces", 7),
        ("c3", day(-2), "ces", 5),
        ("c1", day(-70), "ces", 1),  # 90 days only
    ]
    feedback = pd.DataFrame(fb, columns=["customer_id", "ts", "survey", "score"])
    result = validate(
        {"customers": customers, "events": events, "feedback": feedback, "churn": churn}
    )
    for name, rows in result.quarantine.items():
        assert rows.empty, f"{name}: {rows}"
    return result.tables


SCORES = pd.DataFrame(
    {
        "customer_id": ["c1", "c2", "c3", "c4"],
        "churn_probability": [0.1, 0.2, 0.5, 0.4],
        "clv": [100.0, 50.0, 10.0, 500.0],
    }
)


@pytest.fixture(scope="module")
def kpis():
    return cx_kpis(_tables(), SCORES, AS_OF, SETTINGS)


def get(kpis, window, group_by, group, kpi):
    if window is None:
        mask = kpis["window_days"].isna()
    else:
        mask = kpis["window_days"] == window
    rows = kpis[mask & (kpis["group_by"] == group_by) & (kpis["group"] == group)]
    rows = rows[rows["kpi"] == kpi]
    assert len(rows) == 1, f"{window} {group_by} {group} {kpi}: {len(rows)} rows"
    return rows["value"].iloc[0], rows["n"].iloc[0]


def test_nps_counts_6_as_detractor_7_8_passive_9_promoter(kpis):
    # 30 days: 0, 6, 7, 8, 9, 10, 9 -> promoters 3/7, detractors 2/7.
    assert get(kpis, 30, "all", "all", "nps") == (pytest.approx(100 * (3 - 2) / 7), 7)
    assert get(kpis, 30, "all", "all", "nps_promoters_pct")[0] == pytest.approx(100 * 3 / 7)
    assert get(kpis, 30, "all", "all", "nps_detractors_pct")[0] == pytest.approx(100 * 2 / 7)
    # 90 days adds 3 (detractor) and 10 (promoter): 4 promoters, 3 detractors of 9.
    assert get(kpis, 90, "all", "all", "nps") == (pytest.approx(100 * (4 - 3) / 9), 9)
    # Consumers (c1-c3) in 30 days: 0, 6, 7, 8 -> no promoter, two detractors.
    assert get(kpis, 30, "segment", "consumer", "nps") == (pytest.approx(-50.0), 4)
    # Business (c4, c5) in 30 days: 9, 10, 9.
    assert get(kpis, 30, "segment", "business", "nps") == (pytest.approx(100.0), 3)


def test_high_impact_against_the_rest(kpis):
    # c4 has the top CLV; c5's response counts in no impact group (not scored any more).
    assert get(kpis, 30, "impact", HIGH_IMPACT, "nps") == (pytest.approx(100.0), 2)
    assert get(kpis, 30, "impact", REST, "nps") == (pytest.approx(-50.0), 4)
    assert get(kpis, None, "impact", HIGH_IMPACT, "mean_clv") == (500.0, 1)
    assert get(kpis, None, "impact", REST, "value_at_risk") == (pytest.approx(10 + 10 + 5), 3)
    # No past scores: no churn rate for impact groups.
    assert not ((kpis["group_by"] == "impact") & (kpis["kpi"] == "churn_rate")).any()


def test_csat_ces_and_value(kpis):
    assert get(kpis, 30, "all", "all", "csat_mean") == (pytest.approx(4.0), 3)
    assert get(kpis, 30, "all", "all", "ces_mean") == (pytest.approx(6.0), 2)
    assert get(kpis, 90, "all", "all", "ces_mean") == (pytest.approx(13 / 3), 3)
    assert get(kpis, 30, "segment", "business", "csat_mean") == (pytest.approx(3.5), 2)
    # No CES from business customers: a missing value over zero responses, not an error.
    value, n = get(kpis, 30, "segment", "business", "ces_mean")
    assert math.isnan(value) and n == 0
    assert get(kpis, None, "all", "all", "customers") == (4.0, 4)
    assert get(kpis, None, "all", "all", "mean_clv")[0] == pytest.approx(165.0)
    assert get(kpis, None, "all", "all", "mean_churn_probability")[0] == pytest.approx(0.3)
    assert get(kpis, None, "all", "all", "value_at_risk")[0] == pytest.approx(225.0)
    assert get(kpis, None, "segment", "consumer", "value_at_risk")[0] == pytest.approx(25.0)


def test_churn_rate_per_window(kpis):
    # On 2024-06-01 c1-c5 are customers and c5 churns; on 2024-04-02 all six and two churn.
    assert get(kpis, 30, "all", "all", "churn_rate") == (pytest.approx(1 / 5), 5)
    assert get(kpis, 90, "all", "all", "churn_rate") == (pytest.approx(2 / 6), 6)
    assert get(kpis, 90, "segment", "business", "churn_rate") == (pytest.approx(2 / 3), 3)


def test_impact_churn_rate_uses_the_scores_made_before_the_window():
    past = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2024-05-01", tz="UTC"),
            "customer_id": ["c1", "c2", "c3", "c4", "c5"],
            "clv": [100.0, 50.0, 10.0, 500.0, 1000.0],
        }
    )
    kpis = cx_kpis(_tables(), SCORES, AS_OF, SETTINGS, past_scores=past)
    assert get(kpis, 30, "impact", HIGH_IMPACT, "churn_rate") == (1.0, 1)
    assert get(kpis, 30, "impact", REST, "churn_rate") == (0.0, 4)
    # No scoring before 2024-04-02, the 90-day window's start.
    late = (kpis["window_days"] == 90) & (kpis["group_by"] == "impact")
    assert not (late & (kpis["kpi"] == "churn_rate")).any()


def test_tidy_shape_and_wide_table(kpis):
    assert list(kpis.columns) == ["window_days", "group_by", "group", "kpi", "value", "n"]
    assert str(kpis["window_days"].dtype) == "Int64"
    assert not kpis.duplicated(["window_days", "group_by", "group", "kpi"]).any()
    wide = kpi_table(kpis)
    assert list(wide.columns[:3]) == ["window", "group_by", "group"]
    assert wide.iloc[0]["window"] == "30d" and wide.iloc[-1]["window"] == "current"
    row = wide[(wide["window"] == "30d") & (wide["group"] == "all")].iloc[0]
    assert row["nps"] == pytest.approx(100 / 7)


def test_high_impact_share_and_ties():
    scores = pd.DataFrame({"customer_id": ["b", "a", "c", "d"], "clv": [5.0, 5.0, 1.0, 0.0]})
    groups = high_impact(scores, 0.25)
    assert groups.to_dict() == {"b": REST, "a": HIGH_IMPACT, "c": REST, "d": REST}
    assert (high_impact(scores, 0.5) == HIGH_IMPACT).sum() == 2


def test_without_feedback_or_scores():
    tables = _tables()
    kpis = cx_kpis(replace(tables, feedback=None), None, AS_OF, SETTINGS)
    assert set(kpis["kpi"]) == {"churn_rate"}
