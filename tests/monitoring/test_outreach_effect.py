"""Outreach effect: a history where contacted customers churn at half the control's rate gives
that effect back inside its interval; too few matured outcomes say so instead of a number."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from monitoring.effect import (
    NOT_ENOUGH,
    OK,
    difference_interval,
    outreach_effect,
    wilson_interval,
)
from monitoring.report import build_summary, render_report
from monitoring.settings import MonitoringSettings

HORIZON = 90
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
SETTINGS = MonitoringSettings()


def _history(runs: list[tuple[str, int, int, float, float]], seed: int | None = None):
    """History and labels: per run (as_of, contacts, controls, churn rate contacted, control).
    With a seed, churn is drawn at those rates; without, exactly that share churns."""
    rng = np.random.default_rng(seed)
    hist, labels = [], []
    for k, (as_of, n_contact, n_control, p_contact, p_control) in enumerate(runs):
        ts = pd.Timestamp(as_of, tz="UTC")
        for group, n, p in (("contact", n_contact, p_contact), ("control", n_control, p_control)):
            ids = [f"r{k}-{group}-{i}" for i in range(n)]
            if seed is None:
                churned = np.arange(n) < round(p * n)
            else:
                churned = rng.random(n) < p
            hist.append(
                pd.DataFrame(
                    {
                        "run_id": f"run-{k}",
                        "as_of": ts,
                        "campaign": "retention",
                        "customer_id": ids,
                        "group": group,
                    }
                )
            )
            labels.append(pd.DataFrame({"as_of": ts, "customer_id": ids, "churned": churned}))
    return pd.concat(hist, ignore_index=True), pd.concat(labels, ignore_index=True)


def test_recovers_half_the_churn_within_its_interval():
    # Two matured runs (1,500 contacted at 10%, 1,500 control at 20% each) and one that has not
    # matured (its outcomes, here all churned, must not count).
    history, labels = _history(
        [
            ("2025-01-01", 1500, 1500, 0.10, 0.20),
            ("2025-02-01", 1500, 1500, 0.10, 0.20),
            ("2025-04-01", 500, 500, 1.0, 1.0),
        ]
    )
    effect = outreach_effect(history, labels, AS_OF, HORIZON, SETTINGS)
    o = effect.overall
    assert o["status"] == OK
    assert (o["n_contact"], o["n_control"]) == (3000, 3000)
    assert effect.n_pending == 1000
    assert o["churn_rate_contact"] == pytest.approx(0.10)
    assert o["churn_rate_control"] == pytest.approx(0.20)
    assert o["difference"] == pytest.approx(0.10)
    assert o["difference_low"] < 0.10 < o["difference_high"]
    assert o["difference_low"] > 0.0  # thousands of customers: clearly better than nothing
    assert o["difference_high"] - o["difference_low"] < 0.05
    assert o["relative_effect"] == pytest.approx(0.5)
    assert o["relative_effect_low"] < 0.5 < o["relative_effect_high"]
    assert list(effect.by_campaign["campaign"]) == ["retention"]
    json.dumps(effect.to_dict())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drawn_outcomes_cover_the_true_effect(seed):
    history, labels = _history([("2025-01-15", 2500, 2500, 0.10, 0.20)], seed=seed)
    o = outreach_effect(history, labels, AS_OF, HORIZON, SETTINGS).overall
    assert o["status"] == OK
    assert o["difference_low"] < 0.10 < o["difference_high"]
    assert o["relative_effect_low"] < 0.5 < o["relative_effect_high"]


def test_too_few_matured_outcomes_say_not_enough_data():
    # Plenty of selections, but only 150 control outcomes have matured.
    history, labels = _history(
        [("2025-01-01", 2000, 150, 0.10, 0.20), ("2025-05-01", 2000, 500, 0.10, 0.20)]
    )
    effect = outreach_effect(history, labels, AS_OF, HORIZON, SETTINGS)
    o = effect.overall
    assert o["status"] == NOT_ENOUGH
    assert o["message"].startswith("not enough data yet")
    assert "150 control" in o["message"]
    for key in ("churn_rate_contact", "churn_rate_control", "difference", "relative_effect"):
        assert o[key] is None
    assert o["churned_contact"] is None and o["churned_control"] is None
    summary = build_summary(AS_OF, effect=effect, settings=SETTINGS)
    assert summary["outreach_status"] == NOT_ENOUGH
    page = render_report(summary, effect=effect)
    assert "not enough data yet" in page
    assert "points prevented" not in page and "data:image/png" not in page


def test_nothing_matured_and_unlabelled_rows():
    history, labels = _history([("2025-05-01", 300, 300, 0.1, 0.2)])
    effect = outreach_effect(history, labels, AS_OF, HORIZON, SETTINGS)
    assert effect.status == NOT_ENOUGH and effect.n_pending == 600
    assert effect.by_campaign.empty
    history, labels = _history([("2025-01-01", 300, 300, 0.1, 0.2)])
    effect = outreach_effect(history, labels.iloc[10:], AS_OF, HORIZON, SETTINGS)
    assert effect.n_unlabelled == 10 and effect.overall["n_contact"] == 290


def test_bad_group_is_refused():
    history, labels = _history([("2025-01-01", 10, 10, 0.1, 0.2)])
    history.loc[0, "group"] = "treated"
    with pytest.raises(ValueError, match="'contact' or 'control'.*treated"):
        outreach_effect(history, labels, AS_OF, HORIZON, SETTINGS)


def test_interval_formulas_against_published_values():
    # Wilson against SciPy; Newcombe (1998), method 10, examples (a) and (c) of his Table II.
    lo, hi = wilson_interval(81, 263)
    ci = binomtest(81, 263).proportion_ci(method="wilson")
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    d, lo, hi = difference_interval(56, 70, 48, 80)
    assert (d, lo, hi) == (
        pytest.approx(0.2),
        pytest.approx(0.0524, abs=1e-4),
        pytest.approx(0.3339, abs=1e-4),
    )
    d, lo, hi = difference_interval(9, 10, 3, 10)
    assert (lo, hi) == (pytest.approx(0.1705, abs=1e-4), pytest.approx(0.8090, abs=1e-4))
