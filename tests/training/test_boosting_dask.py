"""The early-stopping replay `lightgbm.dask` fitting relies on (training.boosting): the stopping
rule on hand-written losses, and each objective's loss against LightGBM's own metric."""

import lightgbm as lgb
import numpy as np
import pytest

from training.boosting import best_iteration, validation_loss

pytestmark = pytest.mark.unit


def test_best_iteration_replays_early_stopping():
    # Best at iteration 3 (1-based); three rounds later without a strictly better loss: stop.
    assert best_iteration([5.0, 4.0, 3.0, 3.0, 3.5, 3.2], 3) == 3
    # Not yet three rounds without improvement: boosting would go on.
    assert best_iteration([5.0, 4.0, 3.0, 3.1, 3.2], 3) is None
    # A tie is not an improvement (lightgbm compares strictly).
    assert best_iteration([2.0, 2.0, 2.0], 2) == 1
    assert best_iteration([], 5) is None


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary", "metric": "binary_logloss"},
        {"objective": "tweedie", "tweedie_variance_power": 1.3, "metric": "tweedie"},
        {"objective": "gamma", "metric": "gamma_deviance"},
        {"objective": "quantile", "alpha": 0.9, "metric": "quantile"},
        {"objective": "regression", "metric": "l2"},
    ],
    ids=lambda p: p["objective"],
)
def test_validation_loss_is_lightgbms_own_metric(params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    signal = X[:, 0] - 0.5 * X[:, 1]
    if params["objective"] == "binary":
        y = (rng.random(2000) < 1 / (1 + np.exp(-signal))).astype(float)
    elif params["objective"] == "gamma":
        y = rng.gamma(2.0, np.exp(signal) / 2.0)
    else:
        y = np.exp(signal) * (rng.random(2000) < 0.6)
    train, valid = lgb.Dataset(X[:1500], y[:1500]), None
    valid = lgb.Dataset(X[1500:], y[1500:], reference=train)
    recorded: dict = {}
    booster = lgb.train(
        {**params, "verbosity": -1, "num_leaves": 7},
        train,
        num_boost_round=20,
        valid_sets=[valid],
        valid_names=["v"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    expected = recorded["v"][params["metric"]]
    raw = np.zeros(500)
    for it in range(20):
        raw += booster.predict(X[1500:], start_iteration=it, num_iteration=1, raw_score=True)
        assert validation_loss(params, y[1500:], raw) == pytest.approx(expected[it], rel=1e-6)


def test_an_objective_without_a_loss_is_refused():
    with pytest.raises(ValueError, match="no early-stopping loss"):
        validation_loss({"objective": "lambdarank"}, np.zeros(2), np.zeros(2))
