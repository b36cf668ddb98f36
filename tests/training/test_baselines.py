"""Baselines: RFM summary on hand-made tables, BG/NBD and Gamma-Gamma against published values
and simulated data, and the churn/CLV baselines on a small synthetic world."""

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from features.build import build_features
from features.labels import build_labels
from features.rfm import rfm_summary
from features.synthetic import generate_world
from features.validate import validate
from model.btyd import BgNbdParams, GammaGammaParams
from training.baselines import (
    BgNbdGammaGammaBaseline,
    LastSpendClvBaseline,
    LogisticChurnBaseline,
    RecencyChurnBaseline,
    bgnbd_log_likelihood,
    gamma_gamma_log_likelihood,
)
from training.metrics import churn_metrics, clv_metrics

# --- rfm_summary ------------------------------------------------------------------------------


def _tables(with_churn_table: bool = True):
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "signup_date": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-01-15", "2024-05-01"],
        }
    )
    rows = [
        ("A", "2024-01-10 10:00", "purchase", 10.0),
        ("A", "2024-01-10 15:00", "purchase", 5.0),  # same day: one purchase day worth 15
        ("A", "2024-02-05 09:00", "purchase", 20.0),
        ("A", "2024-03-20 18:30", "purchase", 40.0),
        ("A", "2024-03-25 12:00", "visit", np.nan),  # not a purchase
        ("A", "2024-03-26 12:00", "refund", -40.0),  # not a purchase either
        ("A", "2024-04-01 00:00", "purchase", 99.0),  # at as_of: excluded
        ("B", "2024-03-31 00:00", "purchase", 8.0),  # midnight and 23:00 are the same day
        ("B", "2024-03-31 23:00", "purchase", 12.0),
        ("C", "2024-03-05 08:00", "visit", np.nan),  # never bought
        ("D", "2024-03-30 00:00", "purchase", 7.0),
        ("D", "2024-03-31 00:00", "purchase", 9.0),
        ("E", "2024-05-02 00:00", "purchase", 1.0),  # signed up after as_of
    ]
    events = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "amount"])
    events["channel"] = "web"
    churn = (
        pd.DataFrame({"customer_id": pd.Series([], dtype=object), "churn_date": []})
        if with_churn_table
        else None
    )
    result = validate({"customers": customers, "events": events, "feedback": None, "churn": churn})
    assert all(q.empty for q in result.quarantine.values())
    return result.tables


def test_rfm_summary_exact():
    got = rfm_summary(_tables(), "2024-04-01", load_settings())
    expected = pd.DataFrame(
        {
            # A: purchase days Jan 10, Feb 5, Mar 20 (2024 is a leap year).
            "frequency": [2.0, 0.0, 0.0, 1.0],
            "recency": [70.0, 0.0, 0.0, 1.0],
            "T": [82.0, 1.0, 31.0, 2.0],  # C never bought: T = tenure
            "monetary_value": [30.0, 0.0, 0.0, 9.0],
        },
        index=pd.Index(["A", "B", "C", "D"], name="customer_id", dtype=object),
    )
    pd.testing.assert_frame_equal(got, expected)


def test_rfm_summary_mid_day_cutoff_and_population_without_churn_table():
    got = rfm_summary(_tables(with_churn_table=False), "2024-04-01 12:00", load_settings())
    # Without a churn table the population is customers with a purchase: C drops out, and A's
    # purchase at midnight on April 1 is now before the cutoff.
    assert list(got.index) == ["A", "B", "D"]
    assert got.loc["A"].tolist() == [3.0, 82.0, 82.5, (20 + 40 + 99) / 3]
    assert got.loc["B", "T"] == 1.5


# --- BG/NBD and Gamma-Gamma formulas -----------------------------------------------------------

# Fader, Hardie & Lee (2005) CDNOW estimates (weeks as the time unit), to 4 decimals.
CDNOW = BgNbdParams(r=0.2426, alpha=4.4136, a=0.7931, b=2.4259)


def _with_params(params: BgNbdParams) -> BgNbdGammaGammaBaseline:
    model = BgNbdGammaGammaBaseline()
    model.bgnbd_ = params
    return model


def _summary(frequency, recency, T, monetary=0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"frequency": frequency, "recency": recency, "T": T, "monetary_value": monetary},
        dtype=float,
    )


def test_log_likelihood_by_hand_and_finite():
    # r = alpha = a = b = 1, x = 1, t_x = 2, T = 5:
    # B(1,2)/B(1,1) * 1/6^2 + B(2,1)/B(1,1) * 1/3^2 = 1/72 + 1/18.
    ll = bgnbd_log_likelihood((1.0, 1.0, 1.0, 1.0), np.array([1.0]), np.array([2.0]), [5.0])
    assert ll[0] == pytest.approx(np.log(1 / 72 + 1 / 18))
    tiny = _summary([0, 1, 3, 40, 0], [0, 2, 10, 300, 0], [5, 6, 30, 310, 0.5])
    for params in [(1, 1, 1, 1), (0.24, 4.4, 0.79, 2.4), (50.0, 0.01, 1e-4, 1e4)]:
        ll = bgnbd_log_likelihood(params, tiny["frequency"], tiny["recency"], tiny["T"])
        assert np.isfinite(ll).all() and (ll <= 0).all()
    gg = gamma_gamma_log_likelihood((6.25, 3.74, 15.44), np.array([1.0, 5.0]), [10.0, 35.0])
    assert np.isfinite(gg).all()


def test_expected_purchases_match_published_values():
    model = _with_params(CDNOW)
    # Hardie's spreadsheet: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226.
    one = _summary([2.0], [30.43], [38.86])
    assert model.expected_purchases(one, 39)[0] == pytest.approx(1.226, abs=1e-3)
    # A customer just acquired (x = t_x = T = 0) expects the unconditional E[X(t)] of FHL 2005.
    fresh = _summary([0.0], [0.0], [0.0])
    published = {0.1429: 0.0078, 1.0: 0.0532, 3.0: 0.1506, 31.8571: 1.0405, 78.0: 1.8576}
    for t, value in published.items():
        assert model.expected_purchases(fresh, t)[0] == pytest.approx(value, abs=5e-4)
    # P(alive) by the closed form, and 1 for anyone without a repeat purchase.
    p = model.p_alive(_summary([6.0, 0.0], [30.43, 0.0], [38.86, 10.0]))
    odds = (
        CDNOW.a / (CDNOW.b + 5) * ((CDNOW.alpha + 38.86) / (CDNOW.alpha + 30.43)) ** (CDNOW.r + 6)
    )
    assert p == pytest.approx([1 / (1 + odds), 1.0])


def test_expected_purchases_directions():
    model = _with_params(CDNOW)
    # More repeat purchases by a customer who just bought: more to come. (Not at any recency:
    # a long silence after many purchases means dropout, so BG/NBD is not monotone there.)
    more = model.expected_purchases(_summary([1, 3, 6, 12], [30] * 4, [30] * 4), 26)
    assert np.all(np.diff(more) > 0)
    silent = model.expected_purchases(_summary([1, 12], [20, 20], [30, 30]), 26)
    assert silent[1] < more[3]
    older = model.expected_purchases(_summary([3] * 4, [20] * 4, [21, 30, 45, 80]), 26)
    assert np.all(np.diff(older) < 0)  # the longer the silence since t_x, the less
    longer = model.expected_purchases(_summary([3] * 3, [20] * 3, [30] * 3), 10)
    assert 0 < longer[0] < model.expected_purchases(_summary([3], [20], [30]), 40)[0]
    heavy = model.expected_purchases(_summary([200.0], [300.0], [301.0]), 52)
    assert np.isfinite(heavy).all() and heavy[0] > 10


def _simulate_bgnbd(n, r, alpha, a, b, seed):
    """Customers from the BG/NBD story: lambda ~ Gamma(r, alpha), p ~ Beta(a, b); repeat
    purchases arrive at rate lambda and after each one the customer drops out with prob. p.
    Vectorised over customers, one pass per purchase."""
    g = np.random.default_rng(seed)
    lam = g.gamma(r, 1.0 / alpha, n)
    p = g.beta(a, b, n)
    T = g.uniform(30.0, 365.0, n)
    t, x, t_x = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        i = np.flatnonzero(active)
        t[i] += g.exponential(1.0 / lam[i])
        bought = t[i] <= T[i]
        x[i[bought]] += 1
        t_x[i[bought]] = t[i[bought]]
        active[i[~bought | (g.random(len(i)) < p[i])]] = False
    return x, t_x, T


def _simulate_gamma_gamma(x, p, q, gamma, seed):
    """Mean spend over x transactions: nu ~ Gamma(q, gamma), each spend ~ Gamma(p, nu); the
    mean of x such spends is Gamma(p x, nu x)."""
    g = np.random.default_rng(seed)
    nu = g.gamma(q, 1.0 / gamma, len(x))
    return g.gamma(p * x, 1.0 / (nu * x))


def test_fit_recovers_simulated_parameters():
    true = (0.8, 20.0, 1.5, 4.0)
    x, t_x, T = _simulate_bgnbd(4000, *true, seed=1)
    spend = np.zeros_like(x)
    repeat = x > 0
    true_gg = (6.0, 4.0, 15.0)
    spend[repeat] = _simulate_gamma_gamma(x[repeat], *true_gg, seed=2)
    summary = _summary(x, t_x, T, spend)

    model = BgNbdGammaGammaBaseline().fit(summary)
    got = model.bgnbd_
    np.testing.assert_allclose([got.r, got.alpha, got.a, got.b], true, rtol=0.35)
    # The maximum likelihood is at least as likely as the truth.
    ll = bgnbd_log_likelihood((got.r, got.alpha, got.a, got.b), x, t_x, T).sum()
    assert ll >= bgnbd_log_likelihood(true, x, t_x, T).sum()
    gg = model.gamma_gamma_
    assert isinstance(gg, GammaGammaParams)
    # p and q trade off against gamma; the population mean spend p*gamma/(q-1) is what matters.
    assert model.mean_spend_ == pytest.approx(6.0 * 15.0 / 3.0, rel=0.15)

    pred = model.predict(summary, 90)
    assert pred.shape == (len(x),) and np.isfinite(pred).all() and (pred >= 0).all()
    # Customers without a repeat purchase get the population mean spend.
    assert np.allclose(model.expected_spend(summary)[~repeat], model.mean_spend_)
    # Deterministic: the same data gives the same fit.
    again = BgNbdGammaGammaBaseline().fit(summary)
    assert again.bgnbd_ == model.bgnbd_ and again.gamma_gamma_ == model.gamma_gamma_


def test_summary_is_checked():
    model = BgNbdGammaGammaBaseline()
    with pytest.raises(ValueError, match="missing columns"):
        model.fit(pd.DataFrame({"frequency": [1.0], "recency": [1.0]}))
    with pytest.raises(ValueError, match="recency greater than T"):
        model.fit(_summary([1.0], [5.0], [3.0]))
    with pytest.raises(RuntimeError, match="fit"):
        model.predict(_summary([1.0], [1.0], [3.0]), 30)


# --- churn and CLV baselines on a synthetic world ----------------------------------------------

TRAIN_CUTOFFS = ("2024-11-01", "2024-12-01", "2025-01-01")
TEST_CUTOFF = "2025-05-01"


@pytest.fixture(scope="module")
def world():
    tables = validate(generate_world(5000, seed=7)).tables
    settings = load_settings()
    X_train = pd.concat([build_features(tables, c, settings) for c in TRAIN_CUTOFFS])
    y_train = pd.concat([build_labels(tables, c, 90) for c in TRAIN_CUTOFFS])
    X_test = build_features(tables, TEST_CUTOFF, settings)
    y_test = build_labels(tables, TEST_CUTOFF, 90)
    return tables, settings, X_train, y_train, X_test, y_test


def test_churn_baselines_on_a_later_cutoff(world):
    _, _, X_train, y_train, X_test, y_test = world
    recency = RecencyChurnBaseline().fit(X_train, y_train["churned"])
    logistic = LogisticChurnBaseline().fit(X_train, y_train["churned"])
    p_recency = recency.predict_proba(X_test)
    p_logistic = logistic.predict_proba(X_test)
    m_recency = churn_metrics(y_test["churned"], p_recency)
    m_logistic = churn_metrics(y_test["churned"], p_logistic)
    assert m_logistic["roc_auc"] > m_recency["roc_auc"] > 0.5
    # Calibrated on the training rows: the mean probability is near the later base rate.
    assert abs(p_recency.mean() - m_recency["base_rate"]) < 0.03
    assert m_recency["ece"] < 0.05
    # Platt scaling keeps the ranking of the raw recency score.
    raw_auc = churn_metrics(y_test["churned"], recency.score(X_test) / 1e4)["roc_auc"]
    assert m_recency["roc_auc"] == pytest.approx(raw_auc)
    # Deterministic and does not modify its input.
    before = X_test.copy()
    np.testing.assert_array_equal(logistic.predict_proba(X_test), p_logistic)
    pd.testing.assert_frame_equal(X_test, before)


def test_isotonic_recency_and_fallbacks():
    X = pd.DataFrame(
        {
            "days_since_last_purchase": [1.0, 5.0, np.nan, np.nan, 40.0, 80.0],
            "days_since_last_event": [1.0, 2.0, 3.0, np.nan, 10.0, 20.0],
        }
    )
    y = np.array([0, 0, 0, 1, 1, 1])
    model = RecencyChurnBaseline(method="isotonic").fit(X, y)
    # Purchase recency, else event recency, else the largest training score.
    np.testing.assert_array_equal(model.score(X), [1, 5, 3, 80, 40, 80])
    p = model.predict_proba(X)
    assert ((p >= 0) & (p <= 1)).all()
    assert np.all(np.diff(p[np.argsort(model.score(X), kind="stable")]) >= 0)
    with pytest.raises(ValueError, match="days_since_last_purchase"):
        model.score(pd.DataFrame({"x": [1.0]}))


def test_logistic_handles_categoricals_nans_and_unseen_levels():
    X = pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 4.0, np.nan, 6.0, 7.0, 8.0],
            "empty": np.nan,
            "flag": pd.array([True, False, None, True, False, True, None, False], dtype="boolean"),
            "plan": pd.Categorical(["x", "y", None, "x", "y", "x", "y", None]),
            "region": ["n", "s", "n", None, "s", "n", "s", "n"],
        }
    )
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    model = LogisticChurnBaseline().fit(X, y)
    new = X.iloc[:2].copy()
    new["plan"] = pd.Categorical(["never_seen", None])
    p = model.predict_proba(new)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    with pytest.raises(ValueError, match="missing"):
        model.predict_proba(X.drop(columns=["region"]))


def test_last_spend_clv_baseline(world):
    X = pd.DataFrame({"spend_30d": [30.0, np.nan], "spend_365d": [365.0, -5.0]})
    assert LastSpendClvBaseline(90).source(X) == ("spend_30d", 3.0)
    np.testing.assert_allclose(LastSpendClvBaseline(90).predict(X), [90.0, 0.0])
    # Ties between windows go to the longer one; an exact match is used as is.
    X2 = pd.DataFrame({"spend_60d": [1.0], "spend_120d": [1.0], "spend_90d": [7.0]})
    assert LastSpendClvBaseline(90).fit(X2).predict(X2)[0] == 7.0
    assert LastSpendClvBaseline(90).source(X2.drop(columns="spend_90d")) == ("spend_120d", 0.75)
    with pytest.raises(ValueError, match="spend_<days>d"):
        LastSpendClvBaseline(90).predict(pd.DataFrame({"x": [1.0]}))

    _, _, _, _, X_test, y_test = world
    pred = LastSpendClvBaseline(90).predict(X_test)
    np.testing.assert_array_equal(pred, X_test["spend_90d"].to_numpy())
    assert clv_metrics(y_test["future_value"], pred)["gini_normalized"] > 0.2


def test_bgnbd_on_the_synthetic_world(world):
    tables, settings, _, _, X_test, y_test = world
    summary = rfm_summary(tables, TEST_CUTOFF, settings)
    assert summary.index.equals(X_test.index)
    # The summary agrees with the value features built from the same snapshot.
    bought = X_test["purchases_total"] > 0
    assert (summary.loc[~bought, "frequency"] == 0).all()
    assert (summary["frequency"] <= X_test["purchases_total"]).all()
    np.testing.assert_allclose(summary.loc[~bought, "T"], X_test.loc[~bought, "tenure_days"])

    model = BgNbdGammaGammaBaseline().fit(summary)
    pred = model.predict(summary, 90)
    m = clv_metrics(y_test["future_value"], pred)
    assert m["gini_normalized"] > 0.3 and m["spearman"] > 0.1
    # Total predicted value within a factor of two of the actual total.
    assert 0.5 < pred.sum() / y_test["future_value"].sum() < 2.0
    churn = 1.0 - model.p_alive(summary)
    assert ((churn >= 0) & (churn <= 1)).all()


def test_p_no_purchase_is_a_probability_between_dead_and_certain():
    rng = np.random.default_rng(5)
    n = 400
    T = rng.uniform(60, 400, n)
    recency = T * rng.uniform(0, 1, n)
    frequency = np.where(recency > 0, rng.poisson(3, n), 0).astype(float)
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": np.where(frequency > 0, recency, 0.0),
            "T": T,
            "monetary_value": np.where(frequency > 0, rng.gamma(2, 20, n), 0.0),
        }
    )
    model = BgNbdGammaGammaBaseline().fit(summary)
    dead = 1.0 - model.p_alive(summary)
    p30, p90 = model.p_no_purchase(summary, 30), model.p_no_purchase(summary, 90)
    assert ((p90 >= 0) & (p90 <= 1)).all()
    # Never below the chance of having left already, never above certainty; a longer window
    # leaves less room for no purchase at all; an empty window is certain.
    assert (p90 >= dead - 1e-12).all() and (p30 >= p90 - 1e-12).all()
    np.testing.assert_allclose(model.p_no_purchase(summary, 0), 1.0)
    with pytest.raises(ValueError, match="horizon_days"):
        model.p_no_purchase(summary, -1)
