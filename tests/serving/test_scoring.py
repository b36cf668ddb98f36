"""The scoring core and batch scoring: tiers, reasons written for a CX agent, scores from the
champion models (fixture in conftest.py), ranking with reasons for the top N, the snapshot store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import TierSettings, settings_from_dict
from features.build import build_features
from features.contract import to_utc
from features.synthetic import generate_world
from features.validate import validate
from model.registry import Registry
from model.schema import feature_matrix
from serving.core import reasons
from serving.core.champions import Champions, NoChampionError, load_champions
from serving.core.columns import SCORE_COLUMNS
from serving.core.explain import explain
from serving.core.ranking import (
    ScoredList,
    _ranking,
    rank_features,
    score_population,
    write_scores,
)
from serving.core.reasons import describe
from serving.core.scoring import (
    assign_tier,
    score_frame,
)
from serving.score_store import ScoreStore


def save_snapshot(root, as_of, scores, features):
    """A ranked list and its features stored as the latest scored list under `root`."""
    return ScoreStore(root).save(ScoredList(to_utc(as_of), scores, features))


def load_latest_snapshot(root):
    latest = ScoreStore(root).latest()
    return latest.as_of, latest.ranked, latest.features


# --------------------------------------------------------------------------- tiers

TIERS = TierSettings(risk_high=0.4, value_high=200.0, risk_medium=0.2, value_at_risk_medium=30.0)


def test_tier_boundaries_are_inclusive_and_follow_the_rule():
    cases = [
        # p, clv, expected: high needs both risk and value; medium either risk or value at risk
        (0.40, 200.0, "high"),  # both exactly at the thresholds
        (0.90, 199.99, "medium"),  # risky but not valuable enough: medium through risk
        (0.3999, 1000.0, "medium"),  # valuable, just below high risk, above medium risk
        (0.20, 0.0, "medium"),  # exactly medium risk
        (0.1999, 0.0, "low"),
        (0.15, 200.0, "medium"),  # value at risk exactly 30
        (0.15, 199.9, "low"),  # value at risk just below 30, risk below medium
        (0.0, 1e6, "low"),
    ]
    p = np.array([c[0] for c in cases])
    clv = np.array([c[1] for c in cases])
    got = assign_tier(p, clv, p * clv, TIERS)
    assert list(got) == [c[2] for c in cases]


def test_tiers_come_from_settings():
    s = settings_from_dict({"scoring": {"tiers": {"risk_high": 0.9, "risk_medium": 0.5}}})
    got = assign_tier(np.array([0.6]), np.array([500.0]), np.array([0.0]), s.scoring.tiers)
    assert list(got) == ["medium"]


# --------------------------------------------------------------------------- reason text


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        # journey
        ("unresolved_complaints_30d", 2.0, "2 unresolved complaints in the last 30 days"),
        ("unresolved_complaints_30d", 1.0, "1 unresolved complaint in the last 30 days"),
        ("unresolved_complaints_7d", 0.0, "no unresolved complaints in the last 7 days"),
        ("support_contact_90d", 5.0, "5 support contacts in the last 90 days"),
        ("payment_failed_30d", 1.0, "1 failed payment in the last 30 days"),
        ("delivery_issue_365d", 3.0, "3 delivery issues in the last 365 days"),
        ("visit_30d", 0.0, "no visits in the last 30 days"),
        ("events_sms_30d", 0.0, "no SMS interactions in the last 30 days"),
        ("events_store_90d", 1.0, "1 in-store interaction in the last 90 days"),
        ("events_30d", 12.0, "12 interactions in the last 30 days"),
        ("days_since_last_complaint", 3.7, "last complaint 3 days ago"),
        ("days_since_last_visit", np.nan, "no visits on record"),
        ("days_since_last_event", 1.2, "no activity for 1 day"),
        ("active_days_30d", 2.0, "active on 2 of the last 30 days"),
        ("active_days_30d", 0.0, "not active in the last 30 days"),
        ("channels_used_365d", 1.0, "used 1 channel in the last 365 days"),
        (
            "unresolved_share_90d",
            0.5,
            "50% of support contacts and complaints unresolved in the last 90 days",
        ),
        (
            "engagement_trend_30d",
            -1.0,
            "no activity in the last 30 days, after some in the 30 before",
        ),
        # value
        ("days_since_last_purchase", 94.4, "no purchase for 94 days"),
        ("days_since_last_purchase", np.nan, "has never purchased"),
        ("tenure_days", 45.0, "customer for 45 days"),
        ("purchases_90d", 1.0, "1 purchase in the last 90 days"),
        ("purchases_total", 0.0, "no purchases yet"),
        ("spend_30d", 0.0, "no spend in the last 30 days"),
        ("spend_30d", 120.5, "spent 120.50 in the last 30 days"),
        ("spend_total", 1234.0, "spent 1,234 in total"),
        ("refunds_30d", 2.0, "2 refunds in the last 30 days"),
        ("refund_share", 0.35, "refunds are 35% of spend"),
        (
            "purchase_trend_90d",
            -0.5,
            "purchases down 67% in the last 90 days vs the 90 before",
        ),
        ("spend_trend_90d", np.nan, "no spend in the last 180 days"),
        # feedback
        ("nps_last", 3.0, "last NPS 3 (detractor)"),
        ("nps_last", 7.0, "last NPS 7 (passive)"),
        ("nps_last", 10.0, "last NPS 10 (promoter)"),
        ("nps_class_last", "detractor", "last NPS: detractor"),
        ("nps_mean", 4.5, "average NPS 4.5"),
        ("nps_count", 0.0, "never answered an NPS survey"),
        ("csat_last", 2.0, "last CSAT 2 of 5 (negative)"),
        ("csat_last", 4.0, "last CSAT 4 of 5"),
        ("ces_trend", -1.5, "CES down 1.5 points in the last 90 days"),
        ("negative_responses_365d", 1.0, "1 negative survey response in the last 365 days"),
        ("days_since_last_detractor", 12.0, "detractor NPS response 12 days ago"),
        ("days_since_last_response", np.nan, "never answered a survey"),
        # sentiment
        ("negative_comments_total", 2.0, "2 negative comments in total"),
        ("sentiment_last", -0.6, "last comment negative (sentiment -0.60)"),
        (
            "sentiment_mean_90d",
            -0.3,
            "comments in the last 90 days negative on average (sentiment -0.30)",
        ),
        ("comments_total", 0.0, "no survey comments"),
        # static attributes and anything unknown: readable, never a raw column name
        ("segment", "smb", "segment: smb"),
        ("acquisition_channel", "social", "acquisition channel: social"),
        ("age", 38.0, "age: 38"),
        ("region", None, "region: not recorded"),
        ("support_tickets_90d", 5.0, "support tickets in the last 90 days: 5"),
    ],
)
def test_reason_text(feature, value, text):
    assert describe(feature, value) == text


@pytest.fixture(scope="module")
def small_features():
    tables = validate(generate_world(300, 5)).tables
    settings = settings_from_dict({"features": {"windows_days": [14, 60, 365]}})
    return build_features(tables, "2025-06-01", settings)


def test_every_family_column_has_its_own_wording(small_features):
    static = {"segment", "plan", "region", "acquisition_channel", "age"}
    generic = [
        c
        for c in small_features.columns
        if c not in static and not any(pattern.fullmatch(c) for pattern, _ in reasons.RULES)
    ]
    assert generic == []
    # Any customer's values read as words: no column name leaks into the text.
    for col in small_features.columns:
        if col in static:
            continue
        for value in small_features[col].iloc[:25]:
            text = describe(col, value)
            assert "_" not in text and text, (col, value, text)


def _contributions(rows: list[list[float]], columns: list[str]) -> pd.DataFrame:
    index = pd.Index([f"C{i}" for i in range(len(rows))], name="customer_id")
    return pd.DataFrame(rows, index=index, columns=columns)


def test_explain_takes_only_positive_contributions_largest_first():
    cols = ["unresolved_complaints_30d", "nps_last", "days_since_last_purchase", "spend_30d"]
    C = _contributions(
        [
            [0.5, 0.9, 0.1, 0.3],  # four positive: the three largest, in order
            [0.4, -0.2, 0.0, 0.2],  # two positive: third reason empty (zero is not a push)
            [-0.1, -0.2, -0.3, 0.0],  # none
        ],
        cols,
    )
    X = pd.DataFrame(
        {
            "unresolved_complaints_30d": [2.0, 1.0, 0.0],
            "nps_last": [3.0, 9.0, 10.0],
            "days_since_last_purchase": [94.0, 3.0, 1.0],
            "spend_30d": [0.0, 0.0, 50.0],
        },
        index=C.index,
    )
    got = explain(C, X)
    assert list(got.columns) == ["reason_1", "reason_2", "reason_3"]
    assert got.iloc[0].tolist() == [
        "last NPS 3 (detractor)",
        "2 unresolved complaints in the last 30 days",
        "no spend in the last 30 days",
    ]
    assert got.iloc[1].tolist() == [
        "1 unresolved complaint in the last 30 days",
        "no spend in the last 30 days",
        "",
    ]
    assert got.iloc[2].tolist() == ["", "", ""]


def test_explain_gives_one_reason_for_the_nps_score_and_its_class():
    cols = ["nps_class_last", "nps_last", "complaint_30d", "visit_30d"]
    C = _contributions([[0.8, 0.7, 0.2, 0.1]], cols)
    X = pd.DataFrame(
        {
            "nps_class_last": pd.Categorical(["detractor"]),
            "nps_last": [2.0],
            "complaint_30d": [1.0],
            "visit_30d": [0.0],
        },
        index=C.index,
    )
    assert explain(C, X).iloc[0].tolist() == [
        "last NPS 2 (detractor)",
        "1 complaint in the last 30 days",
        "no visits in the last 30 days",
    ]


def test_explain_refuses_misaligned_rows():
    C = _contributions([[1.0]], ["visit_30d"])
    with pytest.raises(ValueError, match="same rows"):
        explain(C, pd.DataFrame({"visit_30d": [1.0]}, index=["other"]))


# --------------------------------------------------------------------------- with champions


def test_feature_matrix_holds_the_values_and_training_codes(champions, world_features):
    X = world_features.head(50).copy()
    X["segment"] = X["segment"].astype(object)  # plain strings work like categoricals
    X.iloc[0, X.columns.get_loc("segment")] = "a segment never seen in training"
    X = X.drop(columns=["nps_mean"])
    schema = champions.churn.schema
    M = feature_matrix(X, schema)
    j = list(schema.columns).index("segment")
    assert np.isnan(M[0, j])
    assert np.isnan(M[:, list(schema.columns).index("nps_mean")]).all()

    def column(c):
        if c not in X.columns:
            return np.full(len(X), np.nan)
        if c not in schema.categories:
            return X[c].to_numpy(dtype=float, na_value=np.nan)
        levels = list(schema.categories[c])
        codes = pd.Categorical(X[c].astype(object), categories=levels).codes.astype(float)
        return np.where(codes < 0, np.nan, codes)  # -1: missing or a level training never saw

    expected = np.column_stack([column(c) for c in schema.columns])
    np.testing.assert_array_equal(np.isnan(M), np.isnan(expected))
    np.testing.assert_array_equal(np.nan_to_num(M), np.nan_to_num(expected))

    bad = world_features.head(3).assign(tenure_days="long")
    with pytest.raises(ValueError, match="tenure_days"):
        feature_matrix(bad, schema)


def test_score_frame_matches_the_models_and_carries_versions(champions, world_features):
    settings = settings_from_dict({})
    X = world_features
    out = score_frame(X, champions, settings, reasons=False)
    assert list(out.columns) == list(SCORE_COLUMNS[1:])
    assert out.index.equals(X.index)
    np.testing.assert_allclose(out["churn_probability"], champions.churn.predict_proba(X))
    clv = champions.clv.predict(X)
    for col in ("clv", "clv_low", "clv_high"):
        np.testing.assert_allclose(out[col], clv[col])
    np.testing.assert_allclose(out["value_at_risk"], out["churn_probability"] * out["clv"])
    assert (out["clv_low"] <= out["clv"]).all() and (out["clv"] <= out["clv_high"]).all()
    assert set(out["tier"]) <= {"high", "medium", "low"}
    assert (out["churn_model_version"] == champions.churn_version).all()
    assert (out["clv_model_version"] == champions.clv_version).all()
    assert (out["segment"] == X["segment"].astype(str)).all()
    assert (out[["reason_1", "reason_2", "reason_3"]] == "").all().all()


def test_scores_do_not_depend_on_row_order_or_neighbours(champions, world_features):
    settings = settings_from_dict({})
    X = world_features.head(300)
    whole = score_frame(X, champions, settings)
    shuffled = score_frame(X.sample(frac=1.0, random_state=7), champions, settings)
    pd.testing.assert_frame_equal(shuffled.loc[whole.index], whole)
    alone = score_frame(X.iloc[[5]], champions, settings)
    pd.testing.assert_frame_equal(alone, whole.iloc[[5]])


def test_reasons_are_the_largest_positive_contributions(champions, world_features):
    X = world_features.head(40)
    out = score_frame(X, champions, settings_from_dict({}))
    contributions = champions.churn.contributions(X)
    for customer in X.index:
        c = contributions.loc[customer]
        top = c[c > 0].sort_values(ascending=False, kind="stable")
        row = out.loc[customer]
        if top.empty:
            assert row["reason_1"] == ""
            continue
        feature = "nps_last" if top.index[0] == "nps_class_last" else top.index[0]
        assert row["reason_1"] == describe(feature, X.loc[customer, feature])
        assert (row[["reason_1", "reason_2", "reason_3"]] != "").sum() == min(3, len(top)) or (
            "nps_class_last" in top.index[:4] and "nps_last" in top.index[:4]
        )
    assert (out["reason_1"] != "").mean() > 0.9


def test_score_population_ranks_everyone_with_reasons_for_the_top_n_only(
    champions, world_tables, world_features, score_as_of, trained_world
):
    settings = settings_from_dict({"scoring": {"reasons_top_n": 7, "batch_size": 1000}})
    messages: list[str] = []
    ranked = score_population(
        world_tables, score_as_of, champions, settings, progress=messages.append
    ).ranked
    assert len(world_features) > 1000  # more than one batch
    assert list(ranked.columns) == list(SCORE_COLUMNS)
    assert isinstance(ranked.index, pd.RangeIndex) and ranked.index.start == 0
    assert len(ranked) == len(world_features) and ranked["customer_id"].is_unique
    var = ranked["value_at_risk"].to_numpy()
    assert (np.diff(var) <= 0).all()
    assert ranked.loc[:6, "reason_1"].ne("").all()
    assert ranked.loc[7:, ["reason_1", "reason_2", "reason_3"]].eq("").all().all()
    assert any("batch 2/2" in m for m in messages)

    # Batching changes nothing: the same scores as one frame scored at once.
    whole = score_frame(world_features, champions, settings, reasons=False)
    again = ranked.set_index("customer_id").loc[whole.index]
    for col in ("churn_probability", "clv", "clv_low", "clv_high", "value_at_risk", "tier"):
        assert (again[col] == whole[col]).all(), col
    top = score_frame(world_features.loc[ranked["customer_id"][:7]], champions, settings)
    assert ranked.loc[:6, "reason_1"].tolist() == top["reason_1"].tolist()


def test_ranking_breaks_ties_by_customer_id():
    ids = pd.Index(["C3", "C1", "C2", "C0"])
    var = np.array([5.0, 5.0, 9.0, np.nan])
    assert ids[_ranking(ids, var)].tolist() == ["C2", "C1", "C3", "C0"]
    ordered = pd.Index(["A", "B", "C"])
    assert ordered[_ranking(ordered, np.array([1.0, 2.0, 2.0]))].tolist() == ["B", "C", "A"]


def test_rank_features_of_nobody_is_an_empty_list(champions, world_features):
    out = rank_features(world_features.head(0), champions, settings_from_dict({}))
    assert list(out.columns) == list(SCORE_COLUMNS) and out.empty


# --------------------------------------------------------------------------- files and registry


def _tiny_scores(n: int = 3) -> pd.DataFrame:
    frame = pd.DataFrame({c: [""] * n for c in SCORE_COLUMNS})
    frame["customer_id"] = [f"C{i}" for i in range(n)]
    for col in ("churn_probability", "clv", "clv_low", "clv_high", "value_at_risk"):
        frame[col] = np.linspace(1.0, 0.1, n)
    frame["churn_model_version"], frame["clv_model_version"] = "3", "4"
    return frame


def test_write_scores_by_extension(tmp_path):
    frame = _tiny_scores()
    csv = write_scores(frame, tmp_path / "out" / "ranked.csv")
    parquet = write_scores(frame, tmp_path / "ranked.parquet")
    assert pd.read_csv(csv, keep_default_na=False, dtype=str).columns.tolist() == list(
        SCORE_COLUMNS
    )
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)
    with pytest.raises(ValueError, match=r"ranked\.xlsx.*\.csv or \.parquet"):
        write_scores(frame, tmp_path / "ranked.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ranked.parquet"]


def test_snapshot_store_round_trip_and_latest(tmp_path):
    with pytest.raises(FileNotFoundError, match="retain score"):
        load_latest_snapshot(tmp_path)
    features = pd.DataFrame(
        {"tenure_days": [1.0, 2.0, 3.0], "segment": pd.Categorical(["a", "b", None])},
        index=pd.Index(["C0", "C1", "C2"], name="customer_id"),
    )
    old = save_snapshot(tmp_path, "2025-05-01", _tiny_scores(), features)
    new = save_snapshot(tmp_path, pd.Timestamp("2025-06-01", tz="UTC"), _tiny_scores(2), features)
    assert old.name == "2025-05-01" and new.name == "2025-06-01"
    assert (tmp_path / "scores" / "LATEST").read_text().strip() == "2025-06-01"
    assert not list((tmp_path / "scores").rglob(".*.tmp"))
    as_of, scores, feats = load_latest_snapshot(tmp_path)
    assert as_of == pd.Timestamp("2025-06-01", tz="UTC")
    pd.testing.assert_frame_equal(scores, _tiny_scores(2))
    pd.testing.assert_frame_equal(feats, features)
    with pytest.raises(ValueError, match="lack the columns"):
        save_snapshot(tmp_path, "2025-07-01", _tiny_scores().drop(columns="tier"), features)


def test_no_champion_says_how_to_train_one(trained_world, monkeypatch):
    registry = Registry(trained_world.tracking_uri)
    real = registry.alias_version
    monkeypatch.setattr(
        registry,
        "alias_version",
        lambda name, alias: None if name == "clv" else real(name, alias),
    )
    with pytest.raises(NoChampionError, match=r"model 'clv' .*retain train --data DIR"):
        load_champions(registry)


def test_champions_refuse_models_of_the_wrong_kind(champions):
    with pytest.raises(TypeError, match="ClvModel"):
        Champions(champions.churn, champions.churn, "1", "1")
