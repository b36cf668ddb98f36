"""Unit tests of the models (`model.*` and their trainers `training.churn` / `training.clv`) on
small hand-made frames: the feature schema and `feature_matrix`, the calibrators, and both models on planted signals (fit, predictions, contributions, errors,
determinism)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model.schema import FeatureSchema, align_categories, feature_matrix
from training.churn import ChurnTrainer, fit_isotonic, fit_platt
from training.clv import TWEEDIE_POWERS, ClvTrainer

FAST = {"num_threads": 1}
CLV_CANDIDATES = {f"tweedie_{p}" for p in TWEEDIE_POWERS} | {"two_part"}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- planted data


def planted_churn(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Features, churn labels and the true churn log-odds: driven by `risk` and the `plan`
    level, with `noise` irrelevant and some values missing."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    plan = rng.choice(["basic", "premium", "standard"], n)
    logit = -1.2 + 1.8 * risk + np.select([plan == "basic", plan == "premium"], [0.8, -0.8], 0.0)
    y = rng.random(n) < _sigmoid(logit)
    X = pd.DataFrame(
        {
            "risk": np.where(rng.random(n) < 0.05, np.nan, risk),
            "noise": rng.normal(size=n),
            "plan": pd.Categorical(plan),
            "visits": rng.poisson(3, n).astype(np.int64),
        },
        index=pd.Index([f"c{seed}-{i:05d}" for i in range(n)], name="customer_id"),
    )
    return X, pd.Series(y, index=X.index, name="churned"), logit


def planted_value(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Zero-inflated, heavy-tailed future value: P(buy) rises with `engagement`, the amount
    with `basket`."""
    rng = np.random.default_rng(seed)
    engagement = rng.normal(size=n)
    basket = rng.normal(size=n)
    segment = rng.choice(["a", "b"], n)
    buys = rng.random(n) < _sigmoid(-0.3 + 1.5 * engagement)
    amount = rng.gamma(2.0, np.exp(3.0 + 0.6 * basket + 0.3 * (segment == "b")) / 2.0)
    X = pd.DataFrame(
        {
            "engagement": engagement,
            "basket": basket,
            "segment": pd.Categorical(segment),
            "noise": rng.normal(size=n),
        },
        index=pd.Index([f"v{seed}-{i:05d}" for i in range(n)], name="customer_id"),
    )
    return X, pd.Series(np.where(buys, amount, 0.0), index=X.index, name="future_value")


def fit_churn(seed: int = 0, n: int = 3000) -> tuple:
    X, y, _ = planted_churn(n, seed=10 + seed)
    Xv, yv, _ = planted_churn(n // 2, seed=20 + seed)
    model = ChurnTrainer(FAST, num_boost_round=150, early_stopping_rounds=20, seed=seed)
    return model.fit(X, y, Xv, yv), Xv, yv


@pytest.fixture(scope="module")
def planted_churn_model():
    model, _, _ = fit_churn()
    return model


@pytest.fixture(scope="module")
def planted_clv_model():
    X, y = planted_value(3000, seed=1)
    Xv, yv = planted_value(1500, seed=2)
    return ClvTrainer(FAST, num_boost_round=150, early_stopping_rounds=20).fit(X, y, Xv, yv)


# --------------------------------------------------------------------------- schema


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "spend": [1.0, 2.5, np.nan],
            "plan": pd.Categorical(["basic", "premium", None], categories=["basic", "premium"]),
            "visits": np.array([3, 0, 1], dtype=np.int64),
            "vip": [True, False, True],
        },
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )


def test_schema_from_frame_and_dict_round_trip():
    schema = FeatureSchema.from_frame(_mixed_frame())
    assert schema.columns == ("spend", "plan", "visits", "vip")
    assert schema.categories == {"plan": ("basic", "premium")}
    as_dict = schema.to_dict()
    assert as_dict == {
        "columns": ["spend", "plan", "visits", "vip"],
        "categories": {"plan": ["basic", "premium"]},
    }
    # It survives JSON (how `model.artifact` stores it) unchanged.
    assert FeatureSchema.from_dict(json.loads(json.dumps(as_dict))) == schema


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"columns": ["a"]}, "needs 'columns'"),
        ({"categories": {}}, "needs 'columns'"),
        ({"columns": ["a"], "categories": ["a"]}, "needs 'columns'"),
        (None, "needs 'columns'"),
        ({"columns": ["a"], "categories": {"b": ["x"]}}, r"does not list: \['b'\]"),
    ],
)
def test_schema_from_a_bad_dict_is_a_clear_error(bad, words):
    with pytest.raises(ValueError, match=words):
        FeatureSchema.from_dict(bad)


def test_schema_refuses_text_columns_and_empty_frames():
    X = _mixed_frame().assign(city=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"text columns.*city"):
        FeatureSchema.from_frame(X)
    with pytest.raises(ValueError, match="empty"):
        FeatureSchema.from_frame(pd.DataFrame(index=pd.Index(["a"])))


# --------------------------------------------------------------------------- align_categories


def test_align_categories_unions_levels_and_keeps_the_first_column_order():
    first = pd.DataFrame(
        {
            "x": [1.0, 2.0],
            "plan": pd.Categorical(["premium", "basic"], categories=["premium", "basic"]),
            "region": pd.Categorical(["north", "north"]),
        }
    )
    second = pd.DataFrame(  # other column order, a new plan, region as plain strings
        {
            "region": ["south", None],
            "plan": pd.Categorical(["enterprise", "basic"]),
            "x": [3.0, 4.0],
        }
    )
    before = (first.copy(), second.copy())
    a, b = align_categories([first, second])
    for frame in (a, b):
        assert list(frame.columns) == ["x", "plan", "region"]
        assert list(frame["plan"].cat.categories) == ["basic", "enterprise", "premium"]
        assert list(frame["region"].cat.categories) == ["north", "south"]
    # Values are kept (codes re-mapped), missing stays missing.
    assert a["plan"].tolist() == ["premium", "basic"]
    assert b["plan"].tolist() == ["enterprise", "basic"]
    assert b["region"].iloc[0] == "south" and pd.isna(b["region"].iloc[1])
    assert b["x"].tolist() == [3.0, 4.0]
    # The same level has the same code in every frame, so the frames stack consistently.
    assert a["plan"].cat.codes[1] == b["plan"].cat.codes[1]
    assert isinstance(pd.concat([a, b])["plan"].dtype, pd.CategoricalDtype)
    # The inputs are untouched.
    pd.testing.assert_frame_equal(first, before[0])
    pd.testing.assert_frame_equal(second, before[1])


def test_align_categories_column_mismatch_is_a_clear_error():
    first = pd.DataFrame({"x": [1.0], "plan": pd.Categorical(["basic"])})
    second = pd.DataFrame({"x": [1.0], "segment": pd.Categorical(["a"])})
    with pytest.raises(ValueError, match=r"frame 1.*missing \['plan'\], extra \['segment'\]"):
        align_categories([first, second])
    assert align_categories([]) == []


# --------------------------------------------------------------------------- feature matrix


def test_feature_matrix_matches_a_frame_to_the_training_schema():
    schema = FeatureSchema.from_frame(_mixed_frame())
    scoring = pd.DataFrame(
        {
            "plan": ["premium", "gold", None],  # plain strings; "gold" was never seen
            "unexpected": [9, 9, 9],
            "spend": np.array([5, 6, 7], dtype=np.int32),
            "vip": [False, True, False],
        },
        index=pd.Index(["p", "q", "r"], name="customer_id"),
    )
    before = scoring.copy()
    M = feature_matrix(scoring, schema)
    assert schema.columns == ("spend", "plan", "visits", "vip")  # order; extra dropped
    assert M.dtype == np.float64 and M.shape == (3, 4)
    assert M[:, 0].tolist() == [5.0, 6.0, 7.0]
    assert np.isnan(M[:, 2]).all()  # missing column -> NaN
    assert M[:, 3].tolist() == [0.0, 1.0, 0.0]
    assert schema.categories["plan"] == ("basic", "premium")
    assert M[0, 1] == 1.0  # premium's training code
    assert np.isnan(M[1:, 1]).all()  # unseen level and missing -> NaN
    pd.testing.assert_frame_equal(scoring, before)


def test_feature_matrix_reads_nullable_numbers_and_booleans_with_missing_values_as_nan():
    schema = FeatureSchema(columns=("n", "flag", "x"), categories={})
    frame = pd.DataFrame(
        {
            "x": [0.5, 1.5],
            "n": pd.array([3, None], dtype="Int64"),
            "flag": pd.array([None, True], dtype="boolean"),
        }
    )
    M = feature_matrix(frame, schema)
    assert M[0, 0] == 3.0 and np.isnan(M[1, 0])
    assert np.isnan(M[0, 1]) and M[1, 1] == 1.0
    assert M[:, 2].tolist() == [0.5, 1.5]


def test_feature_matrix_maps_categoricals_by_value_not_by_code():
    schema = FeatureSchema.from_frame(_mixed_frame())
    # The same levels in another order: codes differ, values must not.
    plan = pd.Categorical(["premium", "basic"], categories=["premium", "basic"])
    M = feature_matrix(pd.DataFrame({"spend": [1.0, 2.0], "plan": plan}), schema)
    assert M[:, 1].tolist() == [1.0, 0.0]  # the training codes: basic 0, premium 1


def test_feature_matrix_all_missing_categorical_column_is_missing():
    schema = FeatureSchema.from_frame(_mixed_frame())
    M = feature_matrix(pd.DataFrame({"spend": [1.0, 2.0]}), schema)
    assert np.isnan(M[:, 1]).all()


@pytest.mark.parametrize(
    "spend",
    [
        pd.Series(["1.5", "2"], dtype=object),
        pd.Series(["1.5", "2"], dtype="string"),
        pd.Series(pd.Categorical(["1.5", "2"])),
    ],
    ids=["object", "string", "categorical"],
)
def test_feature_matrix_numeric_feature_given_as_text_is_a_clear_error(spend):
    schema = FeatureSchema.from_frame(_mixed_frame())
    with pytest.raises(ValueError, match="feature 'spend' should be numeric"):
        feature_matrix(pd.DataFrame({"spend": spend, "visits": [1, 2]}), schema)


def test_feature_matrix_refuses_frames_it_cannot_match():
    schema = FeatureSchema.from_frame(_mixed_frame())
    with pytest.raises(ValueError, match="none of the model's 4 feature columns"):
        feature_matrix(pd.DataFrame({"other": [1.0]}), schema)
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        feature_matrix(np.zeros((2, 4)), schema)


# --------------------------------------------------------------------------- calibrators


def _calibration_sample(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < _sigmoid(0.5 * raw - 1.0)).astype(np.float64)
    return raw, y


def test_platt_recovers_the_slope_and_is_monotone():
    raw, y = _calibration_sample()
    cal = fit_platt(raw, y)
    assert cal.kind == "platt"
    assert cal.slope == pytest.approx(0.5, abs=0.1)
    assert cal.intercept == pytest.approx(-1.0, abs=0.15)
    grid = np.linspace(-30, 30, 601)
    p = cal.predict(grid)
    assert np.all(np.diff(p) >= 0) and p[-1] > p[0]
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(cal.predict(np.array([0.0])), _sigmoid(cal.intercept))


def test_isotonic_is_non_decreasing_and_clipped_beyond_the_data():
    raw, y = _calibration_sample(seed=1)
    cal = fit_isotonic(raw, y)
    assert cal.kind == "isotonic"
    grid = np.linspace(raw.min() - 5, raw.max() + 5, 2001)
    p = cal.predict(grid)
    assert np.all(np.diff(p) >= 0)
    assert np.all((p >= 0) & (p <= 1))
    # Flat beyond the fitted range: the end values, not an extrapolation.
    assert cal.predict(np.array([-1e6]))[0] == cal.values[0]
    assert cal.predict(np.array([1e6]))[0] == cal.values[-1]
    assert p[0] == cal.values[0] and p[-1] == cal.values[-1]
    # And it calibrates: the mean prediction on the fitted data is the base rate.
    assert cal.predict(raw).mean() == pytest.approx(y.mean(), abs=1e-9)


# --------------------------------------------------------------------------- churn model


def test_churn_model_learns_a_planted_signal(planted_churn_model):
    model = planted_churn_model
    X, y, logit = planted_churn(4000, seed=99)
    p = model.predict_proba(X)
    assert p.shape == (len(X),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    auc, best = roc_auc_score(y, p), roc_auc_score(y, logit)
    assert auc > 0.8 and auc > best - 0.03, (auc, best)
    # Calibrated (on 1,500 validation customers, so only roughly): the mean probability is
    # near the true mean churn probability of new customers.
    assert p.mean() == pytest.approx(_sigmoid(logit).mean(), abs=0.04)
    assert model.calibrator.kind in ("platt", "isotonic")
    assert set(model.calibration) == {"uncalibrated", "platt", "isotonic"}
    assert 1 <= model.best_iteration <= 150
    assert model.schema.columns == ("risk", "noise", "plan", "visits")
    assert model.schema.categories == {"plan": ("basic", "premium", "standard")}


def test_churn_contributions_add_up_to_the_raw_score(planted_churn_model):
    model = planted_churn_model
    X, _, _ = planted_churn(500, seed=98)
    contrib = model.contributions(X)
    assert contrib.shape == (len(X), 4)
    assert list(contrib.columns) == list(model.schema.columns)
    assert contrib.index.equals(X.index)
    raw = model.raw_score(X)
    # TreeSHAP: contributions + the bias (the model's expected raw score, the same for every
    # customer) reproduce the raw score.
    bias = raw - contrib.sum(axis=1).to_numpy()
    np.testing.assert_allclose(bias, bias[0], atol=1e-9)
    booster_bias = model.booster.predict(
        feature_matrix(X, model.schema), pred_contrib=True, num_iteration=model.best_iteration
    )[:, -1]
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + booster_bias, raw, atol=1e-9)
    # The planted driver explains the most; the noise column little.
    strength = contrib.abs().mean()
    assert strength.idxmax() == "risk"
    assert strength["noise"] < strength["risk"] / 3
    # The calibrated probability is a monotone function of the raw score.
    order = np.argsort(raw)
    assert np.all(np.diff(model.predict_proba(X)[order]) >= -1e-12)


def test_churn_model_scores_unseen_levels_and_missing_columns(planted_churn_model):
    X, _, _ = planted_churn(50, seed=97)
    odd = X.drop(columns=["noise"]).assign(plan=["gold"] * 50, extra=1.0)
    p = planted_churn_model.predict_proba(odd)
    assert p.shape == (50,) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_churn_fit_does_not_change_its_inputs():
    X, y, _ = planted_churn(600, seed=3)
    Xv, yv, _ = planted_churn(400, seed=4)
    copies = [X.copy(), y.copy(), Xv.copy(), yv.copy()]
    ChurnTrainer(FAST, num_boost_round=10, early_stopping_rounds=5).fit(X, y, Xv, yv)
    pd.testing.assert_frame_equal(X, copies[0])
    pd.testing.assert_series_equal(y, copies[1])
    pd.testing.assert_frame_equal(Xv, copies[2])
    pd.testing.assert_series_equal(yv, copies[3])


def _churn_error(X, y, Xv, yv, words):
    with pytest.raises(ValueError, match=words):
        ChurnTrainer(FAST, num_boost_round=5, early_stopping_rounds=2).fit(X, y, Xv, yv)


def test_churn_fit_errors():
    X, y, _ = planted_churn(300, seed=5)
    Xv, yv, _ = planted_churn(200, seed=6)
    _churn_error(X, y & False, Xv, yv, "y_train has only one class")
    _churn_error(X, y, Xv, yv | True, "y_valid .* has only one class")
    _churn_error(X, y.to_frame(), Xv, yv, "one label column.*got a DataFrame")
    _churn_error(X, y, Xv, yv.to_frame(), "y_valid must be one label column")
    shuffled = y.sample(frac=1.0, random_state=0)
    _churn_error(X, shuffled, Xv, yv, "y_train has a different index")
    _churn_error(X, y.iloc[:-1], Xv, yv, "y_train has 299 labels but its features have 300")
    _churn_error(X, y.astype(int) * 2, Xv, yv, "churn label: boolean")
    _churn_error(X, y.astype(float).where(y.index != y.index[0]), Xv, yv, "no missing values")
    _churn_error(X.assign(city="x"), y, Xv, yv, r"X_train has text columns.*city")
    _churn_error(X, y, Xv.assign(plan=Xv["plan"].astype(str)), yv, r"X_valid has text columns")
    _churn_error(X.to_numpy(), y, Xv, yv, "X_train must be a pandas DataFrame")
    _churn_error(X.iloc[:0], y.iloc[:0], Xv, yv, "X_train is empty")
    # Arrays in the same row order are fine, as are 0/1 labels.
    ChurnTrainer(FAST, num_boost_round=5, early_stopping_rounds=2).fit(
        X, shuffled.to_numpy(), Xv, yv.astype(int)
    )


def test_churn_model_is_deterministic():
    first, X, _ = fit_churn(seed=0, n=1500)
    second, _, _ = fit_churn(seed=0, n=1500)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    pd.testing.assert_frame_equal(first.contributions(X), second.contributions(X))
    assert first.best_iteration == second.best_iteration


# --------------------------------------------------------------------------- CLV model


def test_clv_model_predicts_an_ordered_nonnegative_interval(planted_clv_model):
    model = planted_clv_model
    X, y = planted_value(2000, seed=3)
    pred = model.predict(X)
    assert list(pred.columns) == ["clv", "clv_low", "clv_high"]
    assert pred.index.equals(X.index)
    low, clv, high = (pred[c].to_numpy() for c in ("clv_low", "clv", "clv_high"))
    assert np.all(np.isfinite(pred.to_numpy()))
    assert np.all((0 <= low) & (low <= clv) & (clv <= high))
    assert np.any(high > clv)  # a real interval, not a point
    # It ranks: customers predicted in the top fifth hold far more of the value.
    top = clv >= np.quantile(clv, 0.8)
    assert y[top].sum() > 0.4 * y.sum()
    assert model.objective in CLV_CANDIDATES
    assert set(model.validation) == CLV_CANDIDATES
    for scores in model.validation.values():
        assert {"tweedie_deviance", "normalised_gini", "mae", "total_ratio"} <= set(scores)
    chosen = model.validation[model.objective]["tweedie_deviance"]
    assert chosen == min(v["tweedie_deviance"] for v in model.validation.values())
    assert set(model.interval_validation) == {"coverage", "below_low", "above_high", "median_width"}
    assert model.interval == (0.1, 0.9)


def test_clv_contributions_add_up_to_log_clv(planted_clv_model):
    model = planted_clv_model
    X, _ = planted_value(300, seed=4)
    contrib = model.contributions(X)
    assert contrib.shape == (len(X), 4) and list(contrib.columns) == list(model.schema.columns)
    offset = np.log(model.predict(X)["clv"].to_numpy()) - contrib.sum(axis=1).to_numpy()
    np.testing.assert_allclose(offset, offset[0], atol=1e-6)


def test_clv_contributions_of_the_two_part_model_add_up(monkeypatch):
    # Only the two-part candidate, so its contribution path is exercised whatever wins above.
    monkeypatch.setattr("training.clv.TWEEDIE_POWERS", ())
    X, y = planted_value(1500, seed=5)
    Xv, yv = planted_value(800, seed=6)
    model = ClvTrainer(FAST, num_boost_round=60, early_stopping_rounds=10).fit(X, y, Xv, yv)
    assert model.objective == "two_part" and {"buy", "value"} <= set(model.boosters)
    contrib = model.contributions(Xv)
    offset = np.log(model.predict(Xv)["clv"].to_numpy()) - contrib.sum(axis=1).to_numpy()
    np.testing.assert_allclose(offset, offset[0], atol=1e-6)


def _clv_error(X, y, Xv, yv, words, **kwargs):
    with pytest.raises(ValueError, match=words):
        ClvTrainer(FAST, num_boost_round=5, early_stopping_rounds=2, **kwargs).fit(X, y, Xv, yv)


def test_clv_fit_errors():
    X, y = planted_value(300, seed=7)
    Xv, yv = planted_value(200, seed=8)
    negative = y.copy()
    negative.iloc[:3] = -5.0
    _clv_error(X, negative, Xv, yv, "y_train must be finite and >= 0.*3 negative")
    _clv_error(X, y, Xv, yv.where(yv.index != yv.index[0]), "y_valid .* 1 missing/infinite")
    _clv_error(X, y > 0, Xv, yv, "is it the churn label")
    _clv_error(X, y * 0, Xv, yv, "y_train has fewer than 2 positive values")
    _clv_error(X, y, Xv, yv.to_frame(), "y_valid must be one label column")
    _clv_error(X.assign(city="x"), y, Xv, yv, "text columns")
    with pytest.raises(ValueError, match="0 < low < high < 1"):
        ClvTrainer(interval=(0.9, 0.1))


def test_clv_model_is_deterministic():
    X, y = planted_value(1200, seed=9)
    Xv, yv = planted_value(600, seed=10)

    def fit():
        return ClvTrainer(FAST, num_boost_round=60, early_stopping_rounds=10, seed=4).fit(
            X, y, Xv, yv
        )

    first, second = fit(), fit()
    assert first.objective == second.objective
    pd.testing.assert_frame_equal(first.predict(Xv), second.predict(Xv), check_exact=True)
    pd.testing.assert_frame_equal(first.contributions(Xv), second.contributions(Xv))
