"""Matured performance on hand-made frames: perfect and random predictions, scores whose horizon
has not matured left out, the comparison with the promised metrics; and labels built from a
synthetic world for the matured dates only."""

import json

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from features.labels import build_labels
from monitoring.outcomes import matured_labels
from monitoring.performance import NOT_ENOUGH, OK, matured_performance
from monitoring.report import build_summary, render_report
from monitoring.settings import MonitoringSettings

HORIZON = 90
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
MATURED = pd.Timestamp("2025-01-01", tz="UTC")  # + 90 days = 2025-04-01 <= AS_OF
PENDING = pd.Timestamp("2025-04-01", tz="UTC")  # + 90 days = 2025-06-30 > AS_OF
N = 2000
MONITORING = load_settings().monitoring


def _frames(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(N)]
    churned = rng.random(N) < 0.3
    value = np.where(churned, 0.0, rng.gamma(2.0, 50.0, N))
    if kind == "perfect":
        p, clv = churned.astype(float), value
    else:
        p, clv = rng.random(N), rng.gamma(2.0, 50.0, N)
    scores = pd.DataFrame(
        {"as_of": MATURED, "customer_id": ids, "churn_probability": p, "clv": clv}
    )
    labels = pd.DataFrame(
        {"as_of": MATURED, "customer_id": ids, "churned": churned, "future_value": value}
    )
    # Later scores that have not matured: exactly wrong, with (impossible) labels to tempt a join.
    late = scores.assign(as_of=PENDING, churn_probability=1.0 - churned, clv=-value + 1000)
    late_labels = labels.assign(as_of=PENDING)
    return pd.concat([scores, late]), pd.concat([labels, late_labels])


def test_perfect_predictions():
    scores, labels = _frames("perfect")
    promised = {"churn.roc_auc": 0.8, "clv.gini_normalized": 0.6, "other": 1.0}
    r = matured_performance(scores, labels, AS_OF, HORIZON, promised, settings=MONITORING)
    assert r.status == OK
    assert r.score_as_of == MATURED and r.n == N
    assert r.n_pending == N  # the later scores are left out
    assert r.metrics["churn.roc_auc"] == pytest.approx(1.0)
    assert r.metrics["churn.brier"] == pytest.approx(0.0)
    assert r.metrics["clv.gini_normalized"] == pytest.approx(1.0)
    assert r.metrics["clv.spearman"] == pytest.approx(1.0)
    cmp = r.comparison.set_index("metric")
    assert cmp.loc["churn.roc_auc", "promised"] == 0.8
    assert cmp.loc["churn.roc_auc", "difference"] == pytest.approx(0.2)
    assert "other" not in r.promised
    assert list(r.by_score_date["score_as_of"]) == [MATURED]
    assert r.calibration["n"].sum() == N
    json.dumps(r.to_dict())
    summary = build_summary(AS_OF, performance=r, settings=MONITORING)
    assert summary["retrain_due"] is False


def test_random_predictions_are_no_better_than_chance_and_trigger_a_retrain():
    scores, labels = _frames("random")
    r = matured_performance(
        scores, labels, AS_OF, HORIZON, {"churn.roc_auc": 0.8}, settings=MONITORING
    )
    assert r.metrics["churn.roc_auc"] == pytest.approx(0.5, abs=0.05)
    assert r.metrics["clv.gini_normalized"] == pytest.approx(0.0, abs=0.1)
    summary = build_summary(AS_OF, performance=r, settings=MonitoringSettings())
    assert summary["retrain_due"] is True
    assert any("churn ROC AUC" in x and "below the floor 0.650" in x for x in summary["reasons"])
    assert any("CLV normalised Gini" in x for x in summary["reasons"])
    page = render_report(summary, performance=r)
    assert "Retrain due" in page and "data:image/png;base64," in page


def test_only_unmatured_scores_say_not_enough_data():
    scores, labels = _frames("perfect")
    late = scores[scores["as_of"] == PENDING]
    r = matured_performance(late, labels, AS_OF, HORIZON, settings=MONITORING)
    assert r.status == NOT_ENOUGH and r.metrics == {} and r.n == 0
    assert r.n_pending == N
    assert "not enough data yet" in r.message
    # A few matured rows are not enough either.
    r = matured_performance(scores.iloc[:50], labels, AS_OF, HORIZON, settings=MONITORING)
    assert r.status == NOT_ENOUGH and r.n == 50
    summary = build_summary(AS_OF, performance=r, settings=MONITORING)
    assert summary["retrain_due"] is False
    assert any("not enough data yet" in n for n in summary["notes"])


def test_scores_without_a_label_are_counted_not_used():
    scores, labels = _frames("perfect")
    r = matured_performance(scores, labels.iloc[5:], AS_OF, HORIZON, settings=MONITORING)
    assert r.n == N - 5 and r.n_unlabelled == 5


def test_missing_columns_are_named():
    scores, labels = _frames("perfect")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['clv'\]"):
        matured_performance(scores.drop(columns="clv"), labels, AS_OF, HORIZON, settings=MONITORING)


def test_matured_labels_from_a_world(drifted_world):
    """Labels come from `build_labels` at each matured scoring date, and only those."""
    tables = drifted_world.tables
    as_of = pd.Timestamp("2025-12-31", tz="UTC")
    ref = drifted_world.reference_predictions.reset_index()
    matured_at = pd.Timestamp("2025-08-23", tz="UTC")
    scores = pd.concat(
        [ref.assign(as_of=matured_at), ref.assign(as_of=pd.Timestamp("2025-11-01", tz="UTC"))]
    )
    labels = matured_labels(scores, tables, as_of, HORIZON)
    assert set(labels["as_of"]) == {matured_at}
    expected = build_labels(tables, matured_at, HORIZON)
    got = labels.set_index("customer_id")[["churned", "future_value"]]
    pd.testing.assert_frame_equal(got, expected, check_names=False)
    r = matured_performance(scores, labels, as_of, HORIZON, settings=MONITORING)
    assert r.status == OK and r.n == len(ref) and r.n_pending == len(ref)
    # The formula knows something about churn.
    assert r.metrics["churn.roc_auc"] > 0.55
    # With daily scoring, only the latest matured dates need labels.
    later = pd.Timestamp("2025-09-01", tz="UTC")
    more = pd.concat([scores, ref.assign(as_of=later)])
    assert set(matured_labels(more, tables, as_of, HORIZON, last=1)["as_of"]) == {later}


def test_pending_counted_elsewhere_adds_to_the_pending_scores():
    scores, labels = _frames("perfect")
    r = matured_performance(
        scores, labels, AS_OF, HORIZON, pending_elsewhere=500, settings=MONITORING
    )
    assert r.n_pending == N + 500 and r.n == N
    with pytest.raises(ValueError, match="pending_elsewhere"):
        matured_performance(
            scores, labels, AS_OF, HORIZON, pending_elsewhere=-1, settings=MONITORING
        )
