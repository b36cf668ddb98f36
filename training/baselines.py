"""Baselines trained and evaluated in the same run as the models, which must beat them.

Churn (probability of churning in the horizon):

- `RecencyChurnBaseline`: days since last activity, calibrated to a probability.
- `LogisticChurnBaseline`: a plain scikit-learn logistic regression on the full feature frame.
- `BgNbdGammaGammaBaseline.p_alive`: 1 - P(alive) from the BG/NBD model below.

CLV (value in the horizon):

- `LastSpendClvBaseline`: "next horizon looks like the last one".
- `BgNbdGammaGammaBaseline`: the classic buy-till-you-die model: BG/NBD (Fader, Hardie & Lee
  2005, "Counting your customers the easy way") for the number of repeat purchases, times
  Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value") for the spend
  per purchase, fitted by maximum likelihood on `rfm_summary` of the history before a cutoff.

No maintained package for these installs cleanly with our pins (lifetimes is unmaintained,
pymc-marketing is far too heavy), so the two likelihoods are implemented here in log space with
`scipy.special` and maximised with L-BFGS-B over log-parameters (so they stay positive).

Every baseline is vectorised and deterministic, and none reads the clock: the cutoff is always
an argument.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from configs import Settings
from features.contract import Tables
from features.rfm import check_summary, rfm_summary
from model.btyd import BgNbdParams, BtydParams, BtydPredictor, GammaGammaParams

RECENCY_COLUMNS = ("days_since_last_purchase", "days_since_last_event")


def _labels(y: Any) -> np.ndarray:
    """Binary churn labels as a 0/1 int array (accepts bool, 0/1, a Series or a frame's
    `churned` column)."""
    if isinstance(y, pd.DataFrame):
        y = y["churned"]
    arr = np.asarray(y)
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError("churn labels must be bool or 0/1")
    return arr.astype(np.int64)


def _check_fitted(obj: object, attr: str) -> None:
    if not hasattr(obj, attr):
        raise RuntimeError(f"{type(obj).__name__} is not fitted yet; call fit() first")


# --- churn: recency -------------------------------------------------------------------------


class RecencyChurnBaseline:
    """Churn score = days since the customer's last activity; probability by calibration.

    The score is `days_since_last_purchase`, falling back row by row to `days_since_last_event`
    (a customer who never bought but did something else), and for customers with neither to the
    largest score seen in training: never active is treated as "as inactive as anyone". The
    probability maps the score through a calibrator fitted on the training rows, so Brier score
    and ECE compare with the models': `method="platt"` (default; logistic on log1p(score), which
    keeps the ranking and so the AUC of the raw score) or `"isotonic"` (monotone steps).
    """

    def __init__(self, method: str = "platt") -> None:
        if method not in ("platt", "isotonic"):
            raise ValueError(f"method must be 'platt' or 'isotonic', got {method!r}")
        self.method = method

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        present = [c for c in RECENCY_COLUMNS if c in X.columns]
        if not present:
            raise ValueError(
                f"RecencyChurnBaseline needs one of the feature columns {list(RECENCY_COLUMNS)}; "
                f"the frame has none of them"
            )
        score = np.full(len(X), np.nan)
        for col in present:
            values = X[col].to_numpy(dtype=np.float64, na_value=np.nan)
            score = np.where(np.isnan(score), values, score)
        return score

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Days since last activity, higher = more at risk. Before `fit`, customers with no
        activity get the largest score in `X` itself."""
        raw = self._raw(X)
        if hasattr(self, "fill_"):
            fill = self.fill_
        else:
            fill = float(np.nanmax(raw)) if np.isfinite(raw).any() else 0.0
        return np.where(np.isnan(raw), fill, raw)

    @staticmethod
    def _platt_input(score: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(score, 0.0)).reshape(-1, 1)

    def fit(self, X: pd.DataFrame, y: Any) -> RecencyChurnBaseline:
        labels = _labels(y)
        raw = self._raw(X)
        self.fill_ = float(np.nanmax(raw)) if np.isfinite(raw).any() else 0.0
        score = self.score(X)
        if self.method == "isotonic":
            self.calibrator_ = IsotonicRegression(
                y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip"
            ).fit(score, labels)
        else:
            # Large C: Platt scaling is a 2-parameter fit on plenty of rows; no shrinkage needed.
            self.calibrator_ = LogisticRegression(C=1e6, max_iter=1000).fit(
                self._platt_input(score), labels
            )
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row (1-D)."""
        _check_fitted(self, "calibrator_")
        score = self.score(X)
        if self.method == "isotonic":
            return np.asarray(self.calibrator_.predict(score), dtype=np.float64)
        return self.calibrator_.predict_proba(self._platt_input(score))[:, 1]


# --- churn: logistic regression ---------------------------------------------------------------


def _as_strings(frame: pd.DataFrame) -> np.ndarray:
    """Categorical-like columns as plain strings, missing as its own level, so one-hot encoding
    never sees a mix of str and NaN (or pandas' NA, which scikit-learn rejects)."""
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str).to_numpy()


class LogisticChurnBaseline:
    """Logistic regression on the same feature frame the models get.

    Numeric and boolean columns: median imputation with missing indicators, then
    standardisation. Everything else (pandas Categorical, object, string): one-hot, missing as
    its own level, unseen levels ignored at prediction time. The column split is decided at
    `fit` from the dtypes and reused, so a scoring frame goes through exactly the same steps.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y: Any) -> LogisticChurnBaseline:
        labels = _labels(y)
        numeric = [
            c
            for c in X.columns
            if pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
        ]
        categorical = [c for c in X.columns if c not in set(numeric)]
        self.columns_ = list(X.columns)
        numeric_steps = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                ),
                ("scale", StandardScaler()),
            ]
        )
        categorical_steps = Pipeline(
            [
                ("strings", FunctionTransformer(_as_strings)),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        )
        self.pipeline_ = Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [("num", numeric_steps, numeric), ("cat", categorical_steps, categorical)]
                    ),
                ),
                ("model", LogisticRegression(C=self.C, max_iter=self.max_iter)),
            ]
        )
        self.pipeline_.fit(self._numeric_as_float(X, numeric), labels)
        self.numeric_ = numeric
        return self

    @staticmethod
    def _numeric_as_float(X: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
        # Nullable integer/boolean columns carry pd.NA, which the imputer cannot compare; as
        # float64 they carry NaN instead. A copy: the caller's frame is never modified.
        out = X.copy()
        for c in numeric:
            out[c] = X[c].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Churn probability per row (1-D)."""
        _check_fitted(self, "pipeline_")
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature columns seen in fit are missing: {missing[:10]}")
        frame = self._numeric_as_float(X[self.columns_], self.numeric_)
        return self.pipeline_.predict_proba(frame)[:, 1]


# --- CLV: last spend --------------------------------------------------------------------------

_SPEND_COLUMN = re.compile(r"^spend_(\d+)d$")


class LastSpendClvBaseline:
    """Predicted value in the next `horizon_days` = spend in the last `horizon_days`.

    Uses the feature `spend_{horizon_days}d` when the frame has it. Otherwise it takes the window
    nearest to the horizon (in days; the longer one on a tie, as it averages over more history)
    and scales it linearly: `spend_{w}d * horizon_days / w`. Negative spend (refund-heavy
    data) predicts 0, as the label `future_value` is floored at 0.
    """

    def __init__(self, horizon_days: int = 90) -> None:
        if horizon_days <= 0:
            raise ValueError(f"horizon_days must be positive, got {horizon_days}")
        self.horizon_days = horizon_days

    def source(self, X: pd.DataFrame) -> tuple[str, float]:
        """The spend column used and the factor it is scaled by."""
        windows = {int(m.group(1)): c for c in X.columns if (m := _SPEND_COLUMN.match(str(c)))}
        if not windows:
            raise ValueError(
                "LastSpendClvBaseline needs a spend_<days>d feature column; none found"
            )
        h = self.horizon_days
        w = min(windows, key=lambda w: (abs(w - h), -w))
        return windows[w], h / w

    def fit(self, X: pd.DataFrame | None = None, y: Any = None) -> LastSpendClvBaseline:
        """Nothing to learn; present so every baseline trains the same way."""
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        column, factor = self.source(X)
        spend = X[column].to_numpy(dtype=np.float64, na_value=np.nan)
        return np.maximum(np.nan_to_num(spend, nan=0.0) * factor, 0.0)


# --- CLV: BG/NBD x Gamma-Gamma ----------------------------------------------------------------


def bgnbd_log_likelihood(
    params: tuple[float, float, float, float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6) at (r, alpha, a, b).

    L = B(a, b+x)/B(a, b) * G(r+x) a^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x)),
    summed in log space (logaddexp) so neither term under- or overflows.
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    alive = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    # Evaluated with x >= 1 everywhere (b + x - 1 > 0) and masked, so no invalid values arise.
    x1 = np.where(repeat, x, 1.0)
    dropped = betaln(a + 1.0, b + x1 - 1.0) - (r + x) * np.log(alpha + t_x)
    return common + np.where(repeat, np.logaddexp(alive, dropped), alive)


def gamma_gamma_log_likelihood(
    params: tuple[float, float, float], frequency: np.ndarray, monetary_value: np.ndarray
) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood (Fader & Hardie 2013) of the mean spend m over x
    repeat purchases at (p, q, gamma); needs x > 0 and m > 0."""
    p, q, g = params
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + m * x)
    )


def _fit_log_params(
    neg_ll: Any, start: np.ndarray, bounds: tuple[float, float] = (-12.0, 12.0)
) -> tuple[np.ndarray, Any]:
    """Minimise `neg_ll(exp(theta))` over theta = log(params) with L-BFGS-B.

    Bounding the log-parameters (exp(+-12) spans 6e-6..1.6e5) keeps every evaluation finite
    even when the optimiser probes far away; a non-finite value is reported as a large loss so
    the line search backs off instead of failing.
    """

    def objective(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            value = float(neg_ll(np.exp(theta)))
        return value if math.isfinite(value) else 1e300

    result = minimize(
        objective,
        start,
        method="L-BFGS-B",
        bounds=[bounds] * len(start),
        options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8},
    )
    return np.exp(result.x), result


class BgNbdGammaGammaBaseline(BtydPredictor):
    """Expected value in a horizon = E[repeat purchase days] (BG/NBD) x E[spend per day]
    (Gamma-Gamma), both fitted by maximum likelihood on an `rfm_summary`.

    BG/NBD is fitted on every customer of the summary (those with one purchase day, or none yet,
    as frequency 0). Gamma-Gamma is fitted on customers with frequency > 0 and a positive
    monetary value; everyone else is predicted the population mean spend per purchase (the
    model's p*gamma/(q-1) when q > 1, else the observed mean of the fitted customers).
    Customers with identical (frequency, recency, T) are collapsed into one weighted row, which
    makes the fit fast on large populations. `penalizer` adds an L2 penalty on the parameters
    (as lifetimes' `penalizer_coef`), 0 by default.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        if penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {penalizer}")
        self.penalizer = penalizer

    # fitting -----------------------------------------------------------------------------

    def fit(self, summary: pd.DataFrame) -> BgNbdGammaGammaBaseline:
        check_summary(summary, monetary=True)
        if len(summary) == 0:
            raise ValueError("cannot fit BG/NBD on an empty RFM summary")
        self.bgnbd_ = self._fit_bgnbd(summary)
        self.gamma_gamma_, self.mean_spend_ = self._fit_gamma_gamma(summary)
        return self

    def _fit_bgnbd(self, summary: pd.DataFrame) -> BgNbdParams:
        rows = summary[["frequency", "recency", "T"]].to_numpy(dtype=np.float64)
        unique, counts = np.unique(rows, axis=0, return_counts=True)
        x, t_x, T = unique.T
        weights = counts.astype(np.float64)
        total = weights.sum()
        pen = self.penalizer

        def neg_ll(params: np.ndarray) -> float:
            ll = bgnbd_log_likelihood(tuple(params), x, t_x, T)
            # Mean, not sum: the scale of the loss (and of L-BFGS-B's tolerances) then does not
            # depend on the number of customers.
            return -float(np.dot(weights, ll)) / total + pen * float(np.sum(params**2))

        # Start where the data points: r/alpha (the mean purchase rate) equal to the observed
        # repeat purchases per day, r = a = b = 1.
        rate = max(float(np.dot(weights, x) / max(np.dot(weights, T), 1e-9)), 1e-6)
        start = np.log([1.0, 1.0 / rate, 1.0, 1.0])
        params, self.bgnbd_result_ = _fit_log_params(neg_ll, start)
        return BgNbdParams(*map(float, params))

    def _fit_gamma_gamma(self, summary: pd.DataFrame) -> tuple[GammaGammaParams | None, float]:
        usable = (summary["frequency"] > 0) & (summary["monetary_value"] > 0)
        x = summary.loc[usable, "frequency"].to_numpy(dtype=np.float64)
        m = summary.loc[usable, "monetary_value"].to_numpy(dtype=np.float64)
        if len(x) < 2:
            # Too little to fit anything: the mean observed spend (or 0) is all we know.
            return None, float(m.mean()) if len(m) else 0.0
        pen = self.penalizer

        def neg_ll(params: np.ndarray) -> float:
            ll = gamma_gamma_log_likelihood(tuple(params), x, m)
            return -float(ll.mean()) + pen * float(np.sum(params**2))

        # Method-of-moments-like start: p = q = 2 puts the mean spend at p*gamma/(q-1) =
        # 2*gamma, so gamma = mean/2 matches the observed mean spend.
        start = np.log([2.0, 2.0, max(float(m.mean()) / 2.0, 1e-6)])
        params, self.gamma_gamma_result_ = _fit_log_params(neg_ll, start)
        fitted = GammaGammaParams(*map(float, params))
        if fitted.q > 1.0:
            mean_spend = fitted.p * fitted.gamma / (fitted.q - 1.0)
        else:
            mean_spend = float(m.mean())  # the model's population mean is infinite for q <= 1
        return fitted, mean_spend

    def predict(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """Expected value over the next `horizon_days`: purchases times spend per purchase."""
        return self.expected_purchases(summary, horizon_days) * self.expected_spend(summary)


def fit_btyd_params(
    tables: Tables, as_of: str | pd.Timestamp, settings: Settings
) -> BtydParams | None:
    """BG/NBD + Gamma-Gamma fitted on the population's history before `as_of` (see `fit_btyd`)."""
    return fit_btyd(rfm_summary(tables, as_of, settings))


def fit_btyd(summary: pd.DataFrame) -> BtydParams | None:
    """BG/NBD + Gamma-Gamma fitted on an `rfm_summary`; None when there is nothing to fit (nobody
    has a repeat purchase day) or the likelihood cannot be maximised."""
    if len(summary) == 0 or not (summary["frequency"] > 0).any():
        return None
    try:
        return BgNbdGammaGammaBaseline().fit(summary).params
    except (ValueError, FloatingPointError):
        return None


class PlainLightgbmBaseline:
    """LightGBM as a data scientist would first run it on a one-row-per-customer table: 300
    trees at learning rate 0.05, LightGBM's other defaults, categoricals one-hot encoded, no
    early stopping or calibration. `retain train --table` must do at least as well."""

    def __init__(self, num_boost_round: int = 300, learning_rate: float = 0.05, seed: int = 0):
        self.num_boost_round, self.learning_rate, self.seed = num_boost_round, learning_rate, seed

    @staticmethod
    def _design(X: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
        out = pd.get_dummies(X, dummy_na=True, dtype=np.float64)
        out = out.astype({c: np.float64 for c in out.columns if out[c].dtype == bool})
        return out if columns is None else out.reindex(columns=columns, fill_value=0.0)

    def fit(self, X: pd.DataFrame, y: Any, num_threads: int = 0) -> PlainLightgbmBaseline:
        import lightgbm as lgb

        design = self._design(X)
        self.columns_ = list(design.columns)
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "num_threads": num_threads,
            "verbose": -1,
        }
        data = lgb.Dataset(design.to_numpy(np.float64, na_value=np.nan), _labels(y))
        self.booster_ = lgb.train(params, data, num_boost_round=self.num_boost_round)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        _check_fitted(self, "booster_")
        design = self._design(X, self.columns_).to_numpy(np.float64, na_value=np.nan)
        return np.asarray(self.booster_.predict(design), dtype=np.float64)
