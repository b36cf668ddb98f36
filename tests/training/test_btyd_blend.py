"""BTYD features against the baseline's own numbers; blends choose what validation supports and
survive the artifact round trip; the pipeline's champion contains the classics."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configs import settings_from_dict
from features.build import build_features
from features.rfm import rfm_summary
from features.synthetic import generate_world
from features.validate import validate
from model.artifact import load_model, save_model
from model.blend import ChurnStack, ClvBlend, LinearScore
from model.btyd import BTYD_COLUMNS, BtydParams, btyd_columns, with_btyd
from model.schema import FeatureSchema
from training.baselines import BgNbdGammaGammaBaseline, fit_btyd_params
from training.blend import choose_churn_stack, choose_clv_blend, fit_linear
from training.churn import ChurnTrainer
from training.clv import ClvTrainer

SETTINGS = settings_from_dict({"horizon_days": 60})
AS_OF = pd.Timestamp("2025-03-01", tz="UTC")


@pytest.fixture(scope="module")
def tables():
    return validate(generate_world(600, 5, days=500)).tables


def test_btyd_features_are_the_baselines_numbers(tables):
    summary = rfm_summary(tables, AS_OF, SETTINGS)
    bg = BgNbdGammaGammaBaseline().fit(summary)
    params = fit_btyd_params(tables, AS_OF, SETTINGS)
    assert params == bg.params
    X = build_features(tables, AS_OF, SETTINGS)
    cols = with_btyd(X, tables, AS_OF, SETTINGS, params).loc[summary.index]
    np.testing.assert_allclose(cols["btyd_p_alive"], bg.p_alive(summary))
    np.testing.assert_allclose(cols["btyd_p_no_purchase"], bg.p_no_purchase(summary, 60))
    np.testing.assert_allclose(cols["btyd_expected_purchases"], bg.expected_purchases(summary, 60))
    np.testing.assert_allclose(cols["btyd_expected_spend"], bg.expected_spend(summary))
    np.testing.assert_allclose(cols["btyd_clv"], bg.predict(summary, 60))


def test_saved_params_reproduce_the_features_for_a_few_customers(tables):
    params = fit_btyd_params(tables, AS_OF, SETTINGS)
    again = BtydParams.from_dict(json.loads(json.dumps(params.to_dict())))
    X = build_features(tables, AS_OF, SETTINGS)
    full = with_btyd(X, tables, AS_OF, SETTINGS, params)
    few = X.index[:7]
    part = with_btyd(X.loc[few], tables.only(few), AS_OF, SETTINGS, again)
    pd.testing.assert_frame_equal(part[list(BTYD_COLUMNS)], full.loc[few, list(BTYD_COLUMNS)])


def test_with_btyd_keeps_the_frames_order_and_leaves_unknown_customers_missing(tables):
    params = fit_btyd_params(tables, AS_OF, SETTINGS)
    X = build_features(tables, AS_OF, SETTINGS).iloc[::-1].head(20)
    X = pd.concat([X, X.head(1).set_axis(pd.Index(["nobody"], name=X.index.name))])
    out = with_btyd(X, tables, AS_OF, SETTINGS, params)
    assert list(out.columns) == [*X.columns, *BTYD_COLUMNS] and out.index.equals(X.index)
    assert out.loc[X.index[:-1], list(BTYD_COLUMNS)].notna().all().all()
    assert out.loc["nobody", list(BTYD_COLUMNS)].isna().all()


def test_no_repeat_purchases_give_missing_features_not_errors(tables):
    no_buys = type(tables)(
        customers=tables.customers,
        events=tables.events.loc[tables.events["event_type"] != "purchase"].reset_index(drop=True),
        feedback=tables.feedback,
        churn=tables.churn,
    )
    assert fit_btyd_params(no_buys, AS_OF, SETTINGS) is None
    summary = rfm_summary(no_buys, AS_OF, SETTINGS)
    assert btyd_columns(summary, None, 60).isna().all().all()


def test_linear_score_by_hand():
    # One numeric column with a missing value and one categorical with 2 levels.
    schema = FeatureSchema(columns=("x", "c"), categories={"c": ("a", "b")})
    M = np.array([[1.0, 0.0], [np.nan, 1.0], [3.0, np.nan]])
    ls = LinearScore(
        numeric=(0,),
        medians=(2.0,),
        means=(0.0, 0.0, 0.0, 0.0),
        scales=(1.0, 1.0, 1.0, 1.0),
        indicators=(0,),
        categorical=((1, 2),),
        coef=(1.0, 10.0, 100.0, 1000.0),
        intercept=0.5,
    )
    # design rows: [x imputed, x missing, c==a, c==b]
    np.testing.assert_allclose(ls.design(M), [[1, 0, 1, 0], [2, 1, 0, 1], [3, 0, 0, 0]])
    np.testing.assert_allclose(ls.log_odds(M), [101.5, 1012.5, 3.5])
    fitted = fit_linear(np.vstack([M] * 20), np.tile([1, 0, 1], 20), schema)
    assert LinearScore.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted


def test_blends_refuse_inconsistent_numbers():
    with pytest.raises(ValueError, match="invalid churn stack"):
        ChurnStack(components=("model", "magic"), coef=(1.0, 1.0), intercept=0.0)
    with pytest.raises(ValueError, match="needs its matrix column"):
        ChurnStack(components=("bgnbd",), coef=(1.0,), intercept=0.0)
    with pytest.raises(ValueError, match="invalid CLV blend"):
        ClvBlend(weight=1.5)
    with pytest.raises(ValueError, match="btyd_clv matrix column"):
        ClvBlend(weight=0.5)


def test_clv_blend_by_hand():
    M = np.array([[0.0, 10.0], [0.0, np.nan], [0.0, -5.0]])
    blend = ClvBlend(weight=0.25, level=2.0, btyd_column=1)
    # 2 * (0.25 * model + 0.75 * max(btyd, 0)); a missing btyd keeps the model's value.
    np.testing.assert_allclose(blend.value(M, np.array([4.0, 4.0, 4.0])), [17.0, 8.0, 2.0])


def _frames(n=3000, seed=0):
    """Features where `signal` drives churn and `btyd_p_no_purchase` is a sharper copy of it."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    idx = pd.Index([f"c{i}" for i in range(n)], name="customer_id")
    X = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "btyd_p_no_purchase": 1 / (1 + np.exp(-2 * signal)),
            "btyd_clv": np.exp(-signal) * 10,
        },
        index=idx,
    )
    return X, y


def test_churn_stack_leans_on_bgnbd_when_the_booster_sees_only_noise():
    X, y = _frames()
    fit, valid = slice(0, 2000), slice(2000, None)
    # The booster is trained with the BTYD column blanked out: all it sees is noise.
    blank = X.assign(btyd_p_no_purchase=np.nan, btyd_clv=np.nan)
    model = ChurnTrainer({"num_threads": 1}, num_boost_round=50, early_stopping_rounds=10).fit(
        blank.iloc[fit], y[fit], blank.iloc[valid], y[valid]
    )
    M_fit, M_valid = model.matrix(X.iloc[fit]), model.matrix(X.iloc[valid])
    fold = np.arange(1000) % 2
    stacked, scores = choose_churn_stack(model, M_fit, y[fit], M_valid, y[valid], fold)
    assert stacked.stack is not None and "bgnbd" in stacked.stack.components
    assert scores["lightgbm"] > min(scores.values())
    p = stacked.probability(M_valid)
    assert ((p >= 0) & (p <= 1)).all()
    bg = X["btyd_p_no_purchase"].iloc[valid]
    assert roc_auc_score(y[valid], p) > roc_auc_score(y[valid], bg) - 0.01


def test_blended_models_survive_the_artifact_round_trip(tmp_path):
    X, y = _frames()
    value = np.where(y == 1, 0.0, X["btyd_clv"].to_numpy())
    fit, valid = slice(0, 2000), slice(2000, None)
    kw = {"num_boost_round": 40, "early_stopping_rounds": 10}
    churn = ChurnTrainer({"num_threads": 1}, **kw).fit(X.iloc[fit], y[fit], X.iloc[valid], y[valid])
    clv = ClvTrainer({"num_threads": 1}, **kw).fit(
        X.iloc[fit], value[fit], X.iloc[valid], value[valid]
    )
    M_fit, M_valid = churn.matrix(X.iloc[fit]), churn.matrix(X.iloc[valid])
    churn, _ = choose_churn_stack(churn, M_fit, y[fit], M_valid, y[valid], np.arange(1000) % 2)
    clv, weights = choose_clv_blend(clv, M_valid, value[valid])
    assert set(weights) == {f"{w:.2f}" for w in np.linspace(0, 1, 21)}
    params = BtydParams.from_dict(
        {
            "bgnbd": {"r": 1.0, "alpha": 2.0, "a": 0.5, "b": 3.0},
            "gamma_gamma": None,
            "mean_spend": 7.0,
        }
    )
    churn, clv = replace(churn, btyd=params), replace(clv, btyd=params)
    for model, pred in ((churn, churn.predict_proba), (clv, lambda X: clv.predict(X)["clv"])):
        again = load_model(save_model(model, tmp_path / type(model).__name__))
        assert again.btyd == params
        again_pred = again.predict_proba(X) if model is churn else again.predict(X)["clv"]
        np.testing.assert_allclose(pred(X), again_pred)
    assert load_model(tmp_path / "ChurnModel").stack == churn.stack
    assert load_model(tmp_path / "ClvModel").blend == clv.blend
