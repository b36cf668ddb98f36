"""The trigger that weighs what the model uses, on hand-built tables: importance shares, the
ageing rule (tested and shown, never counted), the weighted drift as the importance held by
drifted features, and the reasons said in words."""

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftResult, feature_importance, is_ageing, weigh
from monitoring.report import build_summary
from monitoring.settings import MonitoringSettings

AGEING = MonitoringSettings().ageing_features


def _table(drifted: dict[str, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kind": "numerical",
            "method": "wasserstein",
            "threshold": 0.1,
            "score": [0.3 if d else 0.01 for d in drifted.values()],
            "drifted": list(drifted.values()),
            "n_reference": 500,
            "n_current": 500,
        },
        index=pd.Index(list(drifted), name="column"),
    )


def test_ageing_features_are_matched_by_pattern():
    assert is_ageing("tenure_days", AGEING) and is_ageing("spend_total", AGEING)
    assert is_ageing("nps_count", AGEING) and is_ageing("days_since_first_purchase", AGEING)
    assert not is_ageing("spend_90d", AGEING) and not is_ageing("days_since_last_event", AGEING)
    assert not is_ageing("total_spend_90d", AGEING)  # a pattern, not a substring


def test_importance_is_each_models_share_of_mean_absolute_contribution_averaged():
    churn = pd.DataFrame({"a": [1.0, -3.0], "b": [1.0, 1.0], "c": [0.0, 0.0]})  # means 2, 1, 0
    clv = pd.DataFrame({"a": [0.0, 0.0], "b": [0.5, -0.5], "c": [0.5, 0.5]})  # means 0, .5, .5
    imp = feature_importance([churn, clv])
    # churn: a 2/3, b 1/3, c 0; clv: a 0, b 1/2, c 1/2; averaged
    assert imp["a"] == pytest.approx(1 / 3)
    assert imp["b"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert imp["c"] == pytest.approx(1 / 4)
    assert imp.sum() == pytest.approx(1.0) and imp.index[0] == "b"
    assert feature_importance([pd.DataFrame({"a": [0.0]})]).empty  # a model that uses nothing


def test_weighted_drift_is_the_importance_held_by_drifted_features_ageing_left_out():
    table = _table({"spend_90d": True, "visits_30d": False, "tenure_days": True, "nps_last": False})
    imp = pd.Series({"spend_90d": 0.2, "visits_30d": 0.1, "tenure_days": 0.5, "nps_last": 0.2})
    out = weigh(table, imp, AGEING)
    assert out["ageing"].tolist() == [False, False, True, False]
    # tenure's importance is taken out and the rest scaled to 1: 0.2 / 0.5, 0.1 / 0.5, 0.2 / 0.5
    assert out["importance"].tolist() == pytest.approx([0.4, 0.2, 0.0, 0.4])
    assert float((out["importance"] * out["drifted"]).sum()) == pytest.approx(0.4)
    # a feature the champions do not use weighs nothing; no importance at all: equal weights
    assert weigh(table, pd.Series({"other": 1.0}), AGEING)["importance"].tolist() == pytest.approx(
        [1 / 3, 1 / 3, 0.0, 1 / 3]
    )
    assert weigh(table, None, AGEING)["importance"].tolist() == pytest.approx(
        [1 / 3, 1 / 3, 0.0, 1 / 3]
    )


def _result(table: pd.DataFrame, weighted: float, settings: MonitoringSettings, preds=None):
    counted = table[~table["ageing"]]
    empty = pd.DataFrame(columns=["churn_probability"])
    return DriftResult(
        drift_share=float(counted["drifted"].mean()),
        drift_share_threshold=settings.drift_share_threshold,
        drifted_columns=counted.index[counted["drifted"]].tolist(),
        columns=table,
        predictions=preds if preds is not None else pd.DataFrame(columns=table.columns),
        skipped={},
        n_reference=500,
        n_current=500,
        n_reference_rows=500,
        n_current_rows=500,
        sample_size=settings.sample_size,
        seed=0,
        reference_sample=empty,
        current_sample=empty,
        weighted_drift=weighted,
        weighted_drift_threshold=settings.weighted_drift_threshold,
        drift_share_all=float(table["drifted"].mean()),
        ageing_drifted=table.index[table["drifted"] & table["ageing"]].tolist(),
    )


def test_few_drifted_features_that_matter_make_a_retrain_due_with_the_reason_in_words():
    settings = MonitoringSettings()
    names = {f"f{i}_90d": i == 0 for i in range(20)} | {"tenure_days": True, "spend_total": True}
    table = _table(names)
    imp = pd.Series({"f0_90d": 0.6, **{f"f{i}_90d": 0.4 / 19 for i in range(1, 20)}})
    table = weigh(table, imp, AGEING)
    weighted = float((table["importance"] * table["drifted"]).sum())
    r = _result(table, weighted, settings)
    assert r.drift_share == pytest.approx(0.05)  # the plain share is low
    assert r.drift_share < settings.drift_share_threshold
    assert r.weighted_drift == pytest.approx(0.6) and r.dataset_drift
    s = build_summary("2026-01-01", drift=r, settings=settings)
    assert s["retrain_due"] is True and s["weighted_drift"] == pytest.approx(0.6)
    assert any("60% of the champions' importance" in x and "f0_90d" in x for x in s["reasons"])
    assert s["ageing_drifted"] == ["tenure_days", "spend_total"]
    assert any("grow with the book's age" in n and "tenure_days" in n for n in s["notes"])
    assert s["weighted_drift_top"][0]["column"] == "f0_90d"


def test_a_book_that_only_got_older_is_not_flagged():
    settings = MonitoringSettings()
    table = weigh(
        _table({"tenure_days": True, "spend_total": True, "nps_count": True, "spend_90d": False}),
        pd.Series({"tenure_days": 0.7, "spend_total": 0.2, "spend_90d": 0.1}),
        AGEING,
    )
    r = _result(table, float((table["importance"] * table["drifted"]).sum()), settings)
    assert r.weighted_drift == 0 and r.drift_share == 0 and r.drift_share_all == 0.75
    s = build_summary("2026-01-01", drift=r, settings=settings)
    assert s["retrain_due"] is False and s["reasons"] == []


def test_prediction_drift_alone_is_a_reason():
    settings = MonitoringSettings()
    table = weigh(_table({"spend_90d": False}), None, AGEING)
    preds = _table({"churn_probability": True}).assign(
        threshold=settings.prediction_drift_threshold
    )
    s = build_summary("2026-01-01", drift=_result(table, 0.0, settings, preds), settings=settings)
    assert s["retrain_due"] is True
    assert s["reasons"] == [
        f"prediction drift in churn_probability: wasserstein 0.300 "
        f"(threshold {settings.prediction_drift_threshold:.3f})"
    ]
    assert np.isfinite(s["weighted_drift"])


def _aged(n: int, low: float, high: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(low, high, n)
    return pd.DataFrame(
        {"tenure_days": tenure, "orders_so_far": 0.02 * tenure + rng.normal(0, 0.5, n)},
        index=pd.Index([f"c{seed}-{i}" for i in range(n)], name="customer_id"),
    )


def test_age_matching_compares_the_same_ages_on_both_sides():
    from monitoring.drift import match_age

    ref, cur = _aged(4000, 0, 300, 1), _aged(4000, 60, 360, 2)  # the book got 60 days older
    ref_m, cur_m = match_age(ref, cur, "tenure_days", 10, seed=0)
    assert len(ref_m) == len(ref)  # redrawn to the reference's own size
    assert cur_m["tenure_days"].max() <= ref["tenure_days"].max()  # ages the reference has
    assert ref_m["tenure_days"].min() >= cur["tenure_days"].min()  # ages the current has
    # the same age mix: each decile of the current holds ~10% of the redrawn reference
    edges = np.quantile(cur_m["tenure_days"], np.linspace(0, 1, 11))
    shares = np.histogram(ref_m["tenure_days"], bins=edges)[0] / len(ref_m)
    assert np.allclose(shares, 0.1, atol=0.01)
    # the draw does not depend on the rows' order
    again, _ = match_age(ref.sample(frac=1.0, random_state=5), cur, "tenure_days", 10, seed=0)
    assert again.index.tolist() == ref_m.index.tolist()


def test_a_feature_that_grows_with_age_drifts_unmatched_and_not_matched():
    from monitoring.drift import detect_drift

    ref, cur = _aged(4000, 0, 300, 1), _aged(4000, 60, 360, 2)
    base = MonitoringSettings(ageing_features=())  # nothing excluded by name: only the matching
    plain = detect_drift(ref, cur, settings=base.model_copy(update={"age_feature": ""}))
    matched = detect_drift(ref, cur, settings=base)
    assert plain.columns.loc["orders_so_far", "drifted"]
    assert not matched.columns.loc["orders_so_far", "drifted"]
    assert matched.age_matched_on == "tenure_days" and plain.age_matched_on is None


def test_age_matching_steps_aside_when_no_ages_are_shared():
    from monitoring.drift import match_age

    ref, cur = _aged(500, 0, 100, 1), _aged(500, 200, 300, 2)
    ref_m, cur_m = match_age(ref, cur, "tenure_days", 10, seed=0)
    assert len(cur_m) == len(cur) and sorted(ref_m.index) == sorted(ref.index)


def test_leading_reasons_of_the_head_of_the_list_and_their_drift():
    from monitoring.drift import leading_reasons, reason_mix_drift

    contributions = pd.DataFrame(
        {
            "complaints": [2.0, 0.1, 1.5, -1.0, 0.0],
            "nps": [0.5, 0.9, 0.2, -0.5, 0.0],
            "spend": [0.0, 0.3, 0.1, -0.2, 0.0],
        }
    )
    risk = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    top = leading_reasons(contributions, risk, top_share=0.6)  # the 3 riskiest
    assert top.to_dict() == pytest.approx({"complaints": 2 / 3, "nps": 1 / 3})
    everyone = leading_reasons(contributions, risk, top_share=1.0)
    assert everyone["(no positive reason)"] == pytest.approx(0.4)  # rows 4 and 5
    assert reason_mix_drift(top, top) == pytest.approx(0.0)
    apart = reason_mix_drift(pd.Series({"complaints": 1.0}), pd.Series({"nps": 1.0}))
    assert apart == pytest.approx(1.0)
