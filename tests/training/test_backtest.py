"""The backtest trains on nothing at or after a cutoff, and its intervals behave on hand-made
predictions."""

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from features.synthetic import generate_world
from features.validate import validate
from training.backtest import backtest, paired_bootstrap, vs_best

SETTINGS = settings_from_dict(
    {
        "horizon_days": 60,
        "training": {
            "cutoffs": 3,
            "num_boost_round": 60,
            "churn_params": {"num_threads": 1},
            "clv_params": {"num_threads": 1},
        },
    }
)
CUTOFF = pd.Timestamp("2025-04-01", tz="UTC")


@pytest.fixture(scope="module")
def tables():
    return validate(generate_world(1500, 3, days=540)).tables


def _rewrite_after(tables, cutoff):
    """Everything at or after `cutoff` changed: half the events dropped, the rest 5x the amount,
    feedback scores flipped."""
    ev = tables.events
    late = ev["ts"] >= cutoff
    keep = ~late | (np.arange(len(ev)) % 2 == 0)
    events = ev[keep].copy()
    events.loc[events["ts"] >= cutoff, "amount"] *= 5
    fb = tables.feedback.copy()
    fb_late = fb["ts"] >= cutoff
    fb.loc[fb_late, "score"] = fb.loc[fb_late, "score"].max() - fb.loc[fb_late, "score"]
    return type(tables)(
        customers=tables.customers,
        events=events.reset_index(drop=True),
        feedback=fb,
        churn=tables.churn,
    )


def test_backtest_never_trains_on_a_row_at_or_after_its_cutoff(tables):
    run = backtest(tables, SETTINGS, [CUTOFF], n_boot=20)
    changed = backtest(_rewrite_after(tables, CUTOFF), SETTINGS, [CUTOFF], n_boot=20)
    a, b = run.predictions[0], changed.predictions[0]
    # The outcomes after the cutoff differ...
    assert not np.allclose(a["future_value"], b["future_value"])
    # ...but every model and baseline scored the same customers identically.
    scores = [c for c in a.columns if c not in ("churned", "future_value")]
    pd.testing.assert_frame_equal(a[scores], b[scores])
    detail = run.details[0]
    assert max(detail["training_cutoffs"]) <= f"{CUTOFF - pd.Timedelta(days=60):%Y-%m-%d}"


def test_backtest_reports_every_scorer_and_pooled_rows(tables):
    run = backtest(tables, SETTINGS, ["2025-03-01", CUTOFF], n_boot=20)
    assert run.cutoffs == ("2025-03-01", "2025-04-01")
    assert set(run.table["cutoff"]) == {"2025-03-01", "2025-04-01", "pooled"}
    churn = run.table[run.table["task"] == "churn"]
    assert set(churn["scorer"]) == {"retain", "recency", "logistic", "bgnbd"}
    assert set(run.intervals["clv"]) == {"last_spend", "bgnbd_gg"}
    for iv in vs_best(run, "churn").values():
        assert iv.low <= iv.mean <= iv.high and len(iv.per_cutoff) == 2


def test_backtest_refuses_a_cutoff_whose_outcomes_are_unknown(tables):
    with pytest.raises(ValueError, match="horizon ends after the data"):
        backtest(tables, SETTINGS, ["2030-01-01"])
    with pytest.raises(ValueError, match="at least one"):
        backtest(tables, SETTINGS, [])


def _predictions(n, seed, noise):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    value = np.where(y, 0.0, rng.gamma(1.0, 50.0, n))
    good = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    return pd.DataFrame(
        {
            "churned": y,
            "future_value": value,
            "churn_probability": good,
            "churn_same": good,
            "churn_noisy": np.clip(good + rng.normal(0, noise, n), 0, 1),
            "clv": value + 1.0,
            "clv_low": 0.0,
            "clv_high": value + 2.0,
            "clv_same": value + 1.0,
        }
    )


def test_paired_bootstrap_is_zero_against_itself_and_positive_against_noise():
    preds = [_predictions(800, s, 0.5) for s in (1, 2)]
    churn = paired_bootstrap(preds, "churn", n_boot=50)
    same = churn["same"]["roc_auc"]
    assert same.mean == same.low == same.high == 0.0
    noisy = churn["noisy"]["roc_auc"]
    assert noisy.low > 0 and noisy.low <= noisy.mean <= noisy.high
    clv = paired_bootstrap(preds, "clv", n_boot=20)
    assert clv["same"]["gini_normalized"].mean == 0.0
