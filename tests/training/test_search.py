"""The churn parameter search: trial 0 is the configured parameters, a gain must be clear of the
noise to be adopted, the budget and user-fixed parameters are respected."""

import numpy as np
import pandas as pd

from configs import SearchSettings
from training.search import SPACE, _clear_gain, search_churn_params


def test_clear_gain_by_hand():
    configured = np.array([1.0, 1.0, 1.0, 1.0])
    # A constant gain of 0.1 per customer has no noise: clearly better.
    assert _clear_gain(configured, configured - 0.1)
    # Gains of +0.5 and -0.4 alternating: mean 0.05, standard error 0.26: noise.
    assert not _clear_gain(configured, configured - np.array([0.5, -0.4, 0.5, -0.4]))
    assert not _clear_gain(configured, configured + 0.1)


def _frames(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n)},
        index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"),
    )
    y = pd.Series(rng.random(n) < 1 / (1 + np.exp(-(X["a"] + X["a"] * X["b"]))), index=X.index)
    return X.iloc[:800], y.iloc[:800], X.iloc[800:], y.iloc[800:]


def test_search_runs_within_its_budget_and_leaves_fixed_parameters_alone():
    X, y, Xv, yv = _frames()
    result = search_churn_params(
        X,
        y,
        Xv,
        yv,
        SearchSettings(trials=4, timeout_s=60, max_rows=1000),
        configured={"num_threads": 1, "num_leaves": 7},
        num_boost_round=100,
        early_stopping_rounds=10,
        seed=0,
    )
    assert len(result.trials) == 4 and result.trials["number"].tolist() == [0, 1, 2, 3]
    assert "num_leaves" not in result.trials.columns and "num_leaves" not in result.params
    assert set(result.params) <= set(SPACE)
    assert result.best_log_loss <= result.configured_log_loss
    # Trial 0 ran the configured (default) values of the searched parameters.
    assert result.trials.loc[0, "learning_rate"] == 0.03
    m = result.metrics("search.churn")
    assert m["search.churn.trials"] == 4 and m["search.churn.seconds"] > 0
