"""Drift acceptance: a synthetic world with drift is flagged with the drifted features named; the
same world without drift is not, at default thresholds. Plus sampling, skipping and agreement
with Evidently's own report."""

import json

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from monitoring.drift import detect_drift, evidently_values, sample_rows
from monitoring.report import build_summary
from monitoring.settings import MonitoringSettings

# What `generate_world(drift=True)` changes in its last four months: more app and less web,
# three times the delivery issues, lower satisfaction.
DRIFTED_FEATURES = {"events_app_90d", "events_web_90d", "delivery_issue_90d"}
MONITORING = load_settings().monitoring


@pytest.fixture(scope="module")
def drifted(drifted_world):
    w = drifted_world
    return detect_drift(
        w.reference, w.current, w.reference_predictions, w.current_predictions, settings=MONITORING
    )


@pytest.fixture(scope="module")
def stable(stable_world):
    w = stable_world
    return detect_drift(
        w.reference, w.current, w.reference_predictions, w.current_predictions, settings=MONITORING
    )


def test_world_with_drift_is_flagged_and_the_drifted_features_named(drifted, drifted_world, stable):
    settings = MonitoringSettings()
    assert drifted.drift_share > settings.drift_share_threshold
    assert drifted.dataset_drift
    # The features the simulation changed are drifted, and among the most drifted columns.
    assert set(drifted.drifted_columns[:10]) >= DRIFTED_FEATURES
    summary = build_summary("2025-12-31", drift=drifted, settings=settings)
    assert summary["retrain_due"] is True
    assert summary["drift_share"] == pytest.approx(drifted.drift_share)
    assert summary["drifted_columns"] == drifted.drifted_columns
    assert any("feature drift" in r and "events_app_90d" in r for r in summary["reasons"])
    # Predictions built on drifted features (delivery issues, NPS, basket size) drift too.
    # (at matched ages CLV moves less than churn risk, but far more than without drift)
    for name in ("churn_probability", "clv"):
        assert drifted.predictions.loc[name, "score"] > 2 * stable.predictions.loc[name, "score"]
    # Nothing was sampled away: both snapshots are below the default sample size; the current
    # keeps the customers of ages the reference holds (age matching), the rest of it all.
    assert drifted.n_reference == len(drifted_world.reference)
    cur, ref = drifted_world.current["tenure_days"], drifted_world.reference["tenure_days"]
    assert drifted.n_current == int((cur.isna() | (cur <= ref.max())).sum())


def test_same_world_without_drift_is_not_flagged(stable):
    settings = MonitoringSettings()
    assert stable.drift_share <= settings.drift_share_threshold
    assert not stable.dataset_drift
    assert not DRIFTED_FEATURES & set(stable.drifted_columns)
    assert not any(d["drifted"] for d in stable.prediction_drift.values())
    summary = build_summary("2025-12-31", drift=stable, settings=settings)
    assert summary["retrain_due"] is False
    assert summary["reasons"] == []


def test_result_lists_every_column_sorted_by_score_with_its_test(drifted, drifted_world):
    cols = drifted.columns
    assert set(cols.index) | set(drifted.skipped) == set(drifted_world.reference.columns)
    ratio = (cols["score"] / cols["threshold"]).to_numpy()
    assert (np.diff(ratio) <= 0).all()
    # Features that grow with the book's age are tested and shown, but counted apart.
    assert cols.loc["tenure_days", "ageing"] and cols.loc["spend_total", "ageing"]
    assert not cols.loc["events_app_90d", "ageing"]
    counted = cols[~cols["ageing"]]
    assert drifted.drifted_columns == list(counted.index[counted["drifted"]])
    assert drifted.ageing_drifted == list(cols.index[cols["drifted"] & cols["ageing"]])
    assert drifted.drift_share == pytest.approx(counted["drifted"].mean())
    assert drifted.drift_share_all == pytest.approx(cols["drifted"].mean())
    # Without the champions' importance every counted feature weighs the same in the table, and
    # there is no weighted drift (only the share triggers).
    assert counted["importance"].sum() == pytest.approx(1.0)
    assert (cols.loc[cols["ageing"], "importance"] == 0).all()
    assert np.isnan(drifted.weighted_drift)
    # Categorical features are declared and tested as categories.
    assert cols.loc["segment", "kind"] == "categorical"
    assert cols.loc["segment", "method"] == "jensenshannon"
    assert cols.loc["tenure_days", "method"] == "wasserstein"
    assert set(drifted.predictions.index) == {"churn_probability", "clv"}
    # Columns with too few values are skipped with a reason, not tested.
    assert "ces_trend" in drifted.skipped
    assert "too few values" in drifted.skipped["ces_trend"]
    json.dumps(drifted.to_dict())  # plain numbers and strings only


def test_sampling_is_seeded_deterministic_and_reported(drifted_world):
    w = drifted_world
    settings = MonitoringSettings(sample_size=1000, seed=7)
    a = detect_drift(w.reference, w.current, settings=settings)
    shuffled = w.reference.sample(frac=1.0, random_state=3)
    b = detect_drift(shuffled, w.current, settings=settings)
    # The current keeps the customers of ages the reference has (age matching); without it, all.
    assert a.n_reference == 1000 and 800 < a.n_current <= 1000
    unmatched = settings.model_copy(update={"age_feature": ""})
    plain = detect_drift(w.reference, w.current, settings=unmatched)
    assert (plain.n_reference, plain.n_current) == (1000, 1000)
    assert (a.n_reference_rows, a.n_current_rows) == (len(w.reference), len(w.current))
    # Same customers whatever the row order, so the same scores.
    assert a.reference_sample.index.isin(w.reference.index).all()
    assert sorted(a.reference_sample.index) == sorted(b.reference_sample.index)
    pd.testing.assert_series_equal(a.columns["score"], b.columns["score"].loc[a.columns.index])
    other = detect_drift(w.reference, w.current, settings=MonitoringSettings(sample_size=1000))
    both = a.columns.index.intersection(other.columns.index)
    assert not np.allclose(a.columns.loc[both, "score"], other.columns.loc[both, "score"])


def test_sample_rows_keeps_order_and_size():
    frame = pd.DataFrame({"x": range(100)}, index=[f"c{i}" for i in range(100)])
    s = sample_rows(frame, 10, seed=1)
    assert len(s) == 10 and s["x"].is_monotonic_increasing
    assert sample_rows(frame, 10, seed=1).index.equals(s.index)
    assert sample_rows(frame, 500, seed=1) is frame


def test_customer_id_column_and_missing_columns_are_handled():
    rng = np.random.default_rng(0)
    n = 400
    ref = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "a": rng.normal(size=n)})
    ref["only_ref"] = 1.0
    ref["when"] = pd.Timestamp("2025-01-01")
    cur = pd.DataFrame({"customer_id": [f"d{i}" for i in range(n)], "a": rng.normal(2, 1, n)})
    cur["when"] = pd.Timestamp("2025-01-01")
    r = detect_drift(ref, cur, settings=MONITORING)
    assert r.drifted_columns == ["a"]
    assert r.skipped["only_ref"] == "missing from the current data"
    assert r.skipped["when"].startswith("unsupported type")
    assert r.predictions.empty and r.prediction_drift == {}
    with pytest.raises(ValueError, match="share no column"):
        detect_drift(
            ref[["customer_id", "a"]],
            cur.rename(columns={"a": "b"})[["customer_id", "b"]],
            settings=MONITORING,
        )


def test_evidently_report_agrees_and_writes_html(drifted_world, tmp_path):
    """Evidently's own report on the same samples gives the same scores (a few columns only:
    the report draws two figures per column)."""
    w = drifted_world
    columns = ["events_app_90d", "tenure_days", "purchases_7d", "segment", "nps_class_last"]
    r = detect_drift(
        w.reference[columns],
        w.current[columns],
        w.reference_predictions,
        w.current_predictions,
        settings=MONITORING,
    )
    snapshot = r.evidently_snapshot()
    values = evidently_values(snapshot)
    ours = {**r.columns["score"].to_dict(), **r.predictions["score"].to_dict()}
    assert set(values) == set(ours)
    for col, score in ours.items():
        assert values[col] == pytest.approx(score, rel=1e-9), col
    snapshot.save_html(str(tmp_path / "drift.html"))
    text = (tmp_path / "drift.html").read_text(encoding="utf-8")
    assert "events_app_90d" in text and len(text) > 10_000
