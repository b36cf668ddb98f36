"""The retrain summary's thresholds, the HTML report with every section, Evidently's performance
report, and the settings model."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from configs import load_settings
from monitoring.drift import detect_drift
from monitoring.effect import outreach_effect
from monitoring.kpis import cx_kpis
from monitoring.performance import matured_performance
from monitoring.report import build_summary, render_report, save_report
from monitoring.settings import MonitoringSettings

AS_OF = pd.Timestamp("2025-12-31", tz="UTC")
MONITORING = load_settings().monitoring


def _performance(auc_noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 1000
    churned = rng.random(n) < 0.3
    p = np.clip(0.5 * churned + 0.25 + rng.normal(0, auc_noise, n), 0, 1)
    value = np.where(churned, 0.0, rng.gamma(2.0, 50.0, n))
    made = pd.Timestamp("2025-08-01", tz="UTC")
    ids = [f"c{i}" for i in range(n)]
    clv = value * rng.lognormal(0.0, 0.5, n) + 20.0 * rng.random(n)
    scores = pd.DataFrame({"as_of": made, "customer_id": ids, "churn_probability": p, "clv": clv})
    labels = pd.DataFrame(
        {"as_of": made, "customer_id": ids, "churned": churned, "future_value": value}
    )
    promised = {"churn.roc_auc": 0.9, "churn.brier": 0.1, "clv.gini_normalized": 0.7}
    return matured_performance(scores, labels, AS_OF, 90, promised, settings=MONITORING), labels


def _effect():
    rows = []
    for group, n, rate in (("contact", 400, 0.1), ("control", 400, 0.2)):
        for i in range(n):
            rows.append((f"{group}{i}", group, i < rate * n))
    frame = pd.DataFrame(rows, columns=["customer_id", "group", "churned"])
    frame["as_of"] = pd.Timestamp("2025-06-01", tz="UTC")
    return outreach_effect(frame.drop(columns="churned"), frame, AS_OF, 90, settings=MONITORING)


def test_summary_thresholds(stable_world):
    w = stable_world
    drift = detect_drift(w.reference, w.current, settings=MONITORING)
    assert build_summary(AS_OF, drift=drift, settings=MONITORING)["retrain_due"] is False
    strict = MonitoringSettings(drift_share_threshold=0.03)
    drift_strict = detect_drift(w.reference, w.current, settings=strict)
    summary = build_summary(AS_OF, drift=drift_strict, settings=strict)
    assert summary["retrain_due"] is True
    assert summary["reasons"][0].startswith("feature drift:")
    assert summary["drift_share"] == pytest.approx(drift.drift_share)
    # Floors: a good model passes the default floors and fails impossible ones.
    perf, _ = _performance(auc_noise=0.2)
    assert build_summary(AS_OF, performance=perf, settings=MONITORING)["retrain_due"] is False
    high = MonitoringSettings(min_roc_auc=0.999, min_gini=0.99)
    summary = build_summary(AS_OF, performance=perf, settings=high)
    assert summary["retrain_due"] is True and len(summary["reasons"]) == 2
    assert "promised 0.900" in summary["reasons"][0]
    # Nothing run: nothing due.
    empty = build_summary("2025-12-31", settings=MONITORING)
    assert empty == {
        "as_of": "2025-12-31T00:00:00+00:00",
        "drift_share": None,
        "drift_share_threshold": 0.08,
        "drifted_columns": [],
        "prediction_drift": {},
        "performance_status": None,
        "matured_metrics": {},
        "promised_metrics": {},
        "outreach_status": None,
        "retrain_due": False,
        "reasons": [],
        "notes": [],
    }


def test_full_report_page(drifted_world, tmp_path):
    w = drifted_world
    drift = detect_drift(
        w.reference, w.current, w.reference_predictions, w.current_predictions, settings=MONITORING
    )
    perf, _ = _performance(auc_noise=0.2)
    effect = _effect()
    scores = w.current_predictions.reset_index()
    kpis = cx_kpis(w.tables, scores, AS_OF, settings=MONITORING)
    summary = build_summary(
        AS_OF, drift=drift, performance=perf, effect=effect, settings=MONITORING
    )
    json.dumps(summary)
    assert summary["retrain_due"] is True
    page = render_report(summary, kpis=kpis, effect=effect, performance=perf, drift=drift)
    for heading in ("CX KPIs", "Outreach effect", "Matured performance", "Drift", "Retrain due"):
        assert heading in page
    assert len(re.findall(r"data:image/png;base64,", page)) == 4  # KPIs, effect, calibration, drift
    assert "10.0 points prevented" in page or "+10.0 points prevented" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched
    path = save_report(tmp_path / "monitoring.html", page)
    assert path.read_text(encoding="utf-8") == page


def test_evidently_performance_report(tmp_path):
    perf, labels = _performance(auc_noise=0.2)
    reference = labels.assign(churn_probability=0.3, clv=50.0)
    path = perf.save_html(tmp_path / "performance.html", reference=reference, settings=MONITORING)
    text = path.read_text(encoding="utf-8")
    assert len(text) > 10_000


def test_settings_defaults_and_validation():
    s = MonitoringSettings()
    assert (s.sample_size, s.drift_share_threshold, s.min_matured_per_group) == (50_000, 0.08, 200)
    assert (s.weighted_drift_threshold, s.prediction_drift_threshold) == (0.06, 0.3)
    assert (s.age_feature, s.age_bins) == ("tenure_days", 10)
    assert s.kpi_windows_days == (30, 90)
    assert MonitoringSettings(kpi_windows_days=(90, 30)).kpi_windows_days == (30, 90)
    for bad in (
        {"kpi_windows_days": (0, 30)},
        {"kpi_windows_days": (30, 30)},
        {"numerical_stattest": "ks"},
        {"categorical_stattest": "TVD"},
        {"drift_share_threshold": 0},
        {"sampel_size": 10},
    ):
        with pytest.raises(ValidationError):
            MonitoringSettings(**bad)
