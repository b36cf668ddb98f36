"""Metrics against hand-computed values on small arrays, degenerate inputs and segments."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from training.metrics import (
    by_segment,
    calibration_table,
    churn_metrics,
    clv_metrics,
    gains_curve,
)

# Ten customers, three churners, probabilities falling by row so every bin holds one row.
Y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])

# Ten customers' actual future value and a prediction that swaps the two best customers.
VALUE = np.array([4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
PRED = np.array([3.5, 4.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])


def test_churn_metrics_by_hand():
    m = churn_metrics(Y, P)
    # AUC: positives at 0.9, 0.7, 0.4 beat 7, 6 and 4 of the 7 negatives: 17 / 21.
    assert m["roc_auc"] == pytest.approx(17 / 21)
    # Average precision: hits at ranks 1, 3, 6 -> (1/1 + 2/3 + 3/6) / 3.
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # Top 10% = the first row, a churner: rate 1 against a base rate of 0.3.
    assert m["lift_top_decile"] == pytest.approx(1 / 0.3)
    # One row per bin, so ECE is the mean |p - y|; Brier the mean (p - y)^2.
    assert m["ece"] == pytest.approx(3.55 / 10)
    assert m["brier"] == pytest.approx(1.8525 / 10)
    assert m["base_rate"] == pytest.approx(0.3)
    assert m["n"] == 10


def test_ece_weights_bins_by_their_share():
    # Bin [0.1, 0.2): p 0.12, 0.18 (mean 0.15), rate 0.5 -> gap 0.35, weight 2/4.
    # Bin [0.8, 0.9): p 0.8, 0.85 (mean 0.825), rate 1 -> gap 0.175, weight 2/4.
    m = churn_metrics([0, 1, 1, 1], [0.12, 0.18, 0.8, 0.85])
    assert m["ece"] == pytest.approx(0.5 * 0.35 + 0.5 * 0.175)


def test_calibration_table():
    table = calibration_table([0, 1, 1, 1, 0], [0.12, 0.18, 0.8, 1.0, 0.95], bins=5)
    assert list(table.columns) == [
        "bin_lower",
        "bin_upper",
        "n",
        "mean_predicted",
        "observed_rate",
        "gap",
    ]
    assert table["n"].tolist() == [2, 0, 0, 0, 3]  # p = 1 falls in the last bin
    assert table["mean_predicted"].iloc[0] == pytest.approx(0.15)
    assert table["observed_rate"].iloc[4] == pytest.approx(2 / 3)
    assert table["gap"].iloc[4] == pytest.approx(2 / 3 - 0.9166666666)
    assert table[["mean_predicted", "observed_rate"]].iloc[1:4].isna().all().all()


def test_lift_averages_tied_scores():
    # All scores tied: the top 10% is a random 10%, so lift is exactly 1.
    assert churn_metrics(Y, np.full(10, 0.3))["lift_top_decile"] == pytest.approx(1.0)
    # The two top rows tie (one churner, one not): the top row is half a churner on average.
    p = np.array([0.9, 0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert churn_metrics(Y, p)["lift_top_decile"] == pytest.approx(0.5 / 0.3)


def test_clv_metrics_by_hand():
    m = clv_metrics(VALUE, PRED)
    # Gains by prediction: cumulative 3, 7, 9, 10, 10... of 10; perfect: 4, 7, 9, 10, ...
    # Gini = mean cumulative share - (n + 1) / (2n): 0.89 - 0.55 and 0.90 - 0.55.
    assert m["gini_normalized"] == pytest.approx(0.34 / 0.35)
    # The top 10% by prediction is one customer worth 3 of 10.
    assert m["top_decile_revenue_share"] == pytest.approx(0.3)
    # One customer per decile; deciles with zero actual value are left out:
    # |3.5 - 4| / 4, |4 - 3| / 3, 0, 0.
    assert m["decile_mape"] == pytest.approx((0.125 + 1 / 3) / 4)
    assert m["mae"] == pytest.approx(3.0 / 10)
    assert m["spearman"] == pytest.approx(spearmanr(VALUE, PRED).statistic)
    assert m["n"] == 10


def test_perfect_and_random_rankings():
    y = np.arange(100, dtype=float)
    assert clv_metrics(y, y * 2)["gini_normalized"] == pytest.approx(1.0)
    assert clv_metrics(y, -y)["gini_normalized"] == pytest.approx(-1.0)
    # A constant prediction ranks no one above anyone: Gini 0, top decile = 10% of value.
    flat = clv_metrics(y, np.full(100, 5.0))
    assert flat["gini_normalized"] == pytest.approx(0.0)
    assert flat["top_decile_revenue_share"] == pytest.approx(0.1)


def test_gains_curve_merges_ties():
    x, g = gains_curve([1.0, 0.0, 3.0], [2.0, 2.0, 1.0])
    np.testing.assert_allclose(x, [0, 2 / 3, 1])
    np.testing.assert_allclose(g, [0, 0.25, 1])


def test_degenerate_inputs_give_nan_not_errors():
    empty = churn_metrics([], [])
    assert empty["n"] == 0
    assert all(math.isnan(v) for k, v in empty.items() if k != "n")
    assert all(math.isnan(v) for k, v in clv_metrics([], []).items() if k != "n")

    one_class = churn_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(one_class["roc_auc"])
    assert math.isnan(one_class["pr_auc"])
    assert math.isnan(one_class["lift_top_decile"])
    assert one_class["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)

    constant = clv_metrics([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert math.isnan(constant["spearman"])
    no_value = clv_metrics([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    for key in ("spearman", "gini_normalized", "decile_mape", "top_decile_revenue_share"):
        assert math.isnan(no_value[key]), key
    assert no_value["mae"] == pytest.approx(2.0)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="must match"):
        churn_metrics([0, 1, 1], [0.2, 0.4])
    with pytest.raises(ValueError, match="must match"):
        clv_metrics([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        by_segment(churn_metrics, [0, 1], [0.1, 0.2], ["a"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        churn_metrics([0, 1], [0.5, 3.0])
    with pytest.raises(ValueError, match="finite"):
        clv_metrics([1.0, 2.0], [np.nan, 1.0])
    with pytest.raises(ValueError, match="binary"):
        churn_metrics([0, 2], [0.5, 0.5])


def test_by_segment():
    rng = np.random.default_rng(0)
    n = 60
    y = rng.random(n) < 0.3
    p = np.clip(y * 0.4 + rng.random(n) * 0.5, 0, 1)
    seg = pd.Series(["big"] * 40 + ["one_class"] * 15 + [None] * 5)
    y[40:55] = False
    out = by_segment(churn_metrics, y, p, seg, min_rows=10)
    assert list(out) == ["big", "one_class", "(missing)"]
    assert out["big"] == pytest.approx(churn_metrics(y[:40], p[:40]))
    # One class: what can be computed is there, the rest is NaN.
    assert math.isnan(out["one_class"]["roc_auc"])
    assert out["one_class"]["brier"] == pytest.approx(np.mean(p[40:55] ** 2))
    # Below min_rows: only the descriptive entries survive.
    small = out["(missing)"]
    assert small["n"] == 5
    assert small["base_rate"] == pytest.approx(y[55:].mean())
    assert math.isnan(small["brier"])


def test_by_segment_categorical_order_and_clv():
    seg = pd.Categorical(["b", "a", "b", "a"] * 10, categories=["b", "a", "unused"])
    y = np.arange(40, dtype=float)
    out = by_segment(clv_metrics, y, y, seg)
    assert list(out) == ["b", "a"]
    assert out["a"]["gini_normalized"] == pytest.approx(1.0)


def test_by_segment_never_raises_for_a_segment():
    def fragile(y, p):
        if len(y) == 3:
            raise ZeroDivisionError("boom")
        return {"n": float(len(y)), "score": 1.0}

    out = by_segment(fragile, np.zeros(23), np.zeros(23), ["a"] * 20 + ["b"] * 3)
    assert out["a"] == {"n": 20.0, "score": 1.0}
    assert out["b"]["n"] == 3
    assert math.isnan(out["b"]["score"])
