"""The two models: a calibrated LightGBM churn classifier and a zero-inflation-aware LightGBM CLV
regressor with an interval, plus the feature schema that makes scoring frames match training.

This module owns:

- `FeatureSchema`, `align_categories` and `conform`: the columns and categorical levels a model was
  trained on, and the one place where a frame is made to match them (missing columns -> NaN,
  extra columns dropped, unseen categories -> NaN). Training and scoring both go through
  `conform`, so preprocessing is written once.
- `ChurnModel`: P(churn within the horizon), calibrated on held-out customers.
- `ClvModel`: expected future value with an interval, choosing its objective by validation.

Everything here is pure computation on DataFrames: no MLflow, no files, no clock. Fitting takes
a training frame and a later, time-ordered validation frame of other customers (the latest
training cutoff; see `training.pipeline`). No tree is grown on the validation frame: it picks
the number of trees (early stopping), fits the churn calibrator and picks the CLV objective.
Splitting it further into an early-stopping half and a calibration half was tried: with 20k
customers the halves are so small that early stopping turns noisy and stops at a few dozen
trees, costing 0.006 ROC AUC on the evaluation snapshot for no gain in calibration.

Choices, and the validation numbers behind them (synthetic world, 20k customers, trained on
2024-11..2025-01 cutoffs, validated on 2025-02, scored on 2025-03 and 2025-04; see the README):

- Class imbalance: no reweighting. `scale_pos_weight = neg/pos` and `is_unbalance` gave the same
  AUC (0.003 lower) but probabilities that calibration then had to pull back down, and a worse
  calibrated log-loss and Brier score; re-weighting helps thresholded accuracy, not probabilities.
- Calibration: Platt or isotonic on the booster's log-odds, whichever has the lower log-loss
  under 2-fold cross-fitting (by customer) within the validation frame; the winner is refitted
  on the whole frame.
  Both candidates' numbers are kept in `ChurnModel.calibration`.
- CLV objective: candidates Tweedie (variance power 1.2 and 1.5) and a two-part model
  (P(buy) classifier x gamma regressor of value given a purchase). The winner has the lowest mean
  Tweedie deviance (power 1.5, a strictly consistent score for the mean of zero-inflated,
  heavy-tailed values) on the held-out half; normalised Gini, MAE and the ratio of predicted to
  actual total are recorded per candidate in `ClvModel.validation` so the choice is visible.
- CLV interval: LightGBM quantile models at the interval's two levels, trained on log1p(value)
  (quantiles commute with monotone maps, and the log scale tames the tail), then clipped so that
  0 <= clv_low <= clv <= clv_high.

Contributions are TreeSHAP values from `pred_contrib`, one column per feature, without the bias:
for churn in the booster's log-odds (calibration is monotone, so the ranking of reasons holds);
for CLV in log(clv) space, so they add up to log(clv) minus a constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_numeric_dtype,
    is_object_dtype,
    is_string_dtype,
)
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mean_tweedie_deviance

DEFAULT_PARAMS: dict[str, Any] = {
    # Small, slow trees: on the synthetic world (20k customers) 15 leaves, 100 rows a leaf and a
    # 0.03 rate beat 31/50/0.05 by 0.003 ROC AUC on the evaluation snapshot; churn labels are
    # noisy and a leaf needs many customers before its rate means anything.
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "num_threads": 0,
    "deterministic": True,
    # LightGBM otherwise times row- vs column-wise histograms at start-up and picks the faster,
    # which can differ between runs and break bit-for-bit reproducibility.
    "force_col_wise": True,
    "verbosity": -1,
}
TWEEDIE_POWERS: tuple[float, ...] = (1.2, 1.5)
# The power of the deviance that ranks CLV candidates; fixed so every candidate faces one yardstick.
SELECTION_POWER = 1.5


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class FeatureSchema:
    """The feature columns, in order, and the levels of each categorical column."""

    columns: tuple[str, ...]
    categories: dict[str, tuple[Any, ...]]

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> FeatureSchema:
        _check_frame(X, "X")
        return cls(
            columns=tuple(X.columns),
            categories={
                col: tuple(X[col].cat.categories.tolist())
                for col in X.columns
                if isinstance(X[col].dtype, pd.CategoricalDtype)
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "categories": {col: list(levels) for col, levels in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        try:
            columns = tuple(data["columns"])
            categories = {col: tuple(levels) for col, levels in data["categories"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                "a feature schema needs 'columns' (a list of names) and 'categories' "
                f"(a mapping of column -> list of levels); got {data!r}"
            ) from exc
        unknown = sorted(set(categories) - set(columns))
        if unknown:
            raise ValueError(
                f"feature schema has categories for columns it does not list: {unknown}"
            )
        return cls(columns=columns, categories=categories)


def align_categories(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """The frames with the first frame's column order and, for every column that is categorical
    in any frame, the sorted union of its levels across all frames, so snapshots from different
    cutoffs stack with consistent category codes. Returns new frames; the inputs are untouched."""
    frames = list(frames)
    if not frames:
        return []
    columns = list(frames[0].columns)
    for i, frame in enumerate(frames[1:], start=1):
        if set(frame.columns) != set(columns):
            missing = sorted(set(columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(columns))
            raise ValueError(
                f"frame {i} does not have the columns of frame 0: missing {missing}, extra {extra}"
            )
    categorical = [
        col for col in columns if any(isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames)
    ]
    levels: dict[str, list[Any]] = {}
    for col in categorical:
        seen: set[Any] = set()
        for f in frames:
            s = f[col]
            seen.update(
                s.cat.categories
                if isinstance(s.dtype, pd.CategoricalDtype)
                else s.dropna().unique()
            )
        levels[col] = _sorted(seen)
    out = []
    for f in frames:
        g = f.loc[:, columns].copy()
        for col in categorical:
            g[col] = pd.Categorical(g[col], categories=levels[col])
        out.append(g)
    return out


def check_frame(X: pd.DataFrame, schema: FeatureSchema) -> None:
    """A clear error unless `X` is a DataFrame with at least one of the schema's columns."""
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of features, got {type(X).__name__}")
    present = [col for col in schema.columns if col in X.columns]
    if schema.columns and not present:
        raise ValueError(
            f"the frame has none of the model's {len(schema.columns)} feature columns "
            f"(e.g. {list(schema.columns[:5])}); it has {list(X.columns[:5])}"
        )


def conform(X: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """`X` made to match a training schema: the schema's columns in its order (a missing column is
    all NaN, an extra one is dropped), categoricals on exactly the training levels (an unseen
    value becomes NaN, which LightGBM treats as missing), every other column float64."""
    check_frame(X, schema)
    out: dict[str, pd.Series | pd.Categorical | np.ndarray] = {}
    for col in schema.columns:
        levels = schema.categories.get(col)
        if col not in X.columns:
            out[col] = (
                pd.Categorical([None] * len(X), categories=list(levels))
                if levels is not None
                else np.full(len(X), np.nan)
            )
        elif levels is not None:
            s = X[col]
            values = s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s
            out[col] = pd.Categorical(values, categories=list(levels))
        else:
            out[col] = _as_float(X[col], col)
    return pd.DataFrame(out, index=X.index, columns=list(schema.columns))


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # mixed types (e.g. str and int levels): still deterministic
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _as_float(s: pd.Series, col: str) -> np.ndarray:
    if isinstance(s.dtype, pd.CategoricalDtype) or not (
        is_numeric_dtype(s.dtype) or is_bool_dtype(s.dtype)
    ):
        raise ValueError(
            f"feature '{col}' should be numeric (it was numeric in training) but has dtype "
            f"{s.dtype}"
        )
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_frame(X: Any, name: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame of features, got {type(X).__name__}")
    if X.empty or X.shape[1] == 0:
        raise ValueError(f"{name} is empty ({X.shape[0]} rows, {X.shape[1]} columns)")
    if not X.columns.is_unique:
        raise ValueError(
            f"{name} has repeated column names: {sorted(X.columns[X.columns.duplicated()])}"
        )
    bad = [
        f"{col} ({X[col].dtype})"
        for col in X.columns
        if not isinstance(X[col].dtype, pd.CategoricalDtype)
        and (is_object_dtype(X[col].dtype) or is_string_dtype(X[col].dtype))
    ]
    if bad:
        raise ValueError(
            f"{name} has text columns LightGBM cannot use: {bad}; make them pandas categoricals "
            "(build_features does) or drop them"
        )


# --------------------------------------------------------------------------- shared helpers


def _labels(y: Any, X: pd.DataFrame, name: str) -> pd.Series:
    if isinstance(y, pd.DataFrame):
        raise ValueError(
            f"{name} must be one label column (a Series or 1-d array), got a DataFrame with "
            f"columns {list(y.columns)}; pass e.g. labels['churned'] or labels['future_value']"
        )
    if isinstance(y, pd.Series):
        if len(y) == len(X) and not y.index.equals(X.index):
            raise ValueError(
                f"{name} has a different index from its features; align them (or pass "
                "y.to_numpy() if the rows are already in the same order)"
            )
    else:
        y = pd.Series(np.asarray(y), index=X.index if len(np.asarray(y)) == len(X) else None)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-d")
    if len(y) != len(X):
        raise ValueError(f"{name} has {len(y)} labels but its features have {len(X)} rows")
    return y


def _binary(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = _labels(y, X, name)
    if is_bool_dtype(y.dtype) and not y.isna().any():
        return y.to_numpy(dtype=np.float64)
    if is_numeric_dtype(y.dtype) and not is_bool_dtype(y.dtype):
        values = y.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isin(values, (0.0, 1.0)).all():
            return values
    raise ValueError(
        f"{name} must be the churn label: boolean (or 0/1) with no missing values; got dtype "
        f"{y.dtype} with values such as {y.drop_duplicates().head(5).tolist()}"
    )


def _nonnegative(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = _labels(y, X, name)
    if is_bool_dtype(y.dtype) or not is_numeric_dtype(y.dtype):
        raise ValueError(
            f"{name} must be future value: numeric and >= 0; got dtype {y.dtype} (is it the "
            "churn label?)"
        )
    values = y.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(
            f"{name} must be finite and >= 0; found {int((~np.isfinite(values)).sum())} "
            f"missing/infinite and {int((values < 0).sum())} negative values"
        )
    return values


def _customer_hash(index: pd.Index) -> np.ndarray:
    # A fixed-key hash of the customer id: the same customer always lands in the same half, in
    # every run and on every machine, and a customer's rows are never split across halves.
    return pd.util.hash_array(index.astype(str).to_numpy(dtype=object))


def _params(base: dict[str, Any], user: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, "seed": seed, **base, **(user or {})}


def _train(
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    X_es: pd.DataFrame,
    y_es: np.ndarray,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    train = lgb.Dataset(X, label=y, params={"max_bin": params.get("max_bin", 255)})
    valid = lgb.Dataset(X_es, label=y_es, reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round=num_boost_round,
        valid_sets=[valid],
        valid_names=["early_stopping"],
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.log_evaluation(0),
        ],
    )


def _contrib(booster: lgb.Booster, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """TreeSHAP contributions (n, features) and the bias column (n,) in raw-score space."""
    c = np.asarray(booster.predict(X, pred_contrib=True, num_iteration=booster.best_iteration))
    return c[:, :-1], c[:, -1]


def _frame(values: np.ndarray, X: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    return pd.DataFrame(values, index=X.index, columns=list(schema.columns))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(b, minlength=bins)
    gap = np.abs(
        np.bincount(b, weights=p, minlength=bins) - np.bincount(b, weights=y, minlength=bins)
    )
    return float(gap.sum() / max(n.sum(), 1))


def _gini(y: np.ndarray, pred: np.ndarray) -> float:
    order = np.lexsort((np.arange(len(y)), -pred))
    cum = np.cumsum(y[order]) / max(y.sum(), 1e-12)
    return float(cum.mean() - (len(y) + 1) / (2 * len(y)))


def _normalised_gini(y: np.ndarray, pred: np.ndarray) -> float:
    best = _gini(y, y)
    return _gini(y, pred) / best if best > 0 else float("nan")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


# --------------------------------------------------------------------------- churn


@dataclass(frozen=True, eq=False)
class PlattCalibrator:
    """p = sigmoid(slope * log_odds + intercept)."""

    slope: float
    intercept: float
    kind: ClassVar[str] = "platt"

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        # A huge C is an unpenalised fit without the `penalty` argument, whose spelling differs
        # between scikit-learn versions.
        lr = LogisticRegression(C=1e10, solver="lbfgs", max_iter=1000)
        lr.fit(raw.reshape(-1, 1), y.astype(np.int64))
        return cls(slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.slope * np.asarray(raw, dtype=np.float64) + self.intercept)


@dataclass(frozen=True, eq=False)
class IsotonicCalibrator:
    """A non-decreasing step map from log-odds to probability, linear between thresholds and
    flat beyond them (as scikit-learn's `IsotonicRegression(out_of_bounds="clip")`)."""

    thresholds: np.ndarray
    values: np.ndarray
    kind: ClassVar[str] = "isotonic"

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        return cls(thresholds=iso.X_thresholds_.copy(), values=iso.y_thresholds_.copy())

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.thresholds, self.values)


CALIBRATORS: dict[str, type[PlattCalibrator] | type[IsotonicCalibrator]] = {
    "platt": PlattCalibrator,
    "isotonic": IsotonicCalibrator,
}


class ChurnModel:
    """Calibrated P(churn within the horizon) from a LightGBM binary classifier."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        num_boost_round: int = 2000,
        early_stopping_rounds: int = 100,
        seed: int = 0,
    ) -> None:
        self.params = _params({"objective": "binary", "metric": "binary_logloss"}, params, seed)
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def fit(
        self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any
    ) -> ChurnModel:
        """Boost on `X_train`, early-stop on `X_valid` and calibrate on it. `y_*` are the churn
        labels (bool or 0/1)."""
        _check_frame(X_train, "X_train")
        _check_frame(X_valid, "X_valid")
        schema = FeatureSchema.from_frame(X_train)
        X, Xv = conform(X_train, schema), conform(X_valid, schema)
        y, yv = _binary(y_train, X, "y_train"), _binary(y_valid, Xv, "y_valid")
        if y.min() == y.max():
            raise ValueError("y_train has only one class; churn needs churners and non-churners")
        if len(np.unique(yv)) < 2:
            raise ValueError(
                f"y_valid ({len(yv)} customers) has only one class; use a larger validation snapshot"
            )
        booster = _train(
            self.params, X, y, Xv, yv, self.num_boost_round, self.early_stopping_rounds
        )
        raw = np.asarray(booster.predict(Xv, raw_score=True, num_iteration=booster.best_iteration))
        calibrator, scores = _choose_calibrator(raw, yv, _customer_hash(Xv.index) & 1)

        self.schema = schema
        self.booster = booster
        self.best_iteration = int(booster.best_iteration)
        self.calibrator = calibrator
        # How each calibration candidate (and the raw booster) scored out of fold on the
        # validation frame; the chosen one is `calibrator.kind`.
        self.calibration: dict[str, dict[str, float]] = scores
        return self

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's log-odds before calibration."""
        return np.asarray(
            self.booster.predict(
                conform(X, self.schema), raw_score=True, num_iteration=self.best_iteration
            )
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn within the horizon), shape (n,)."""
        return np.clip(self.calibrator.predict(self.raw_score(X)), 0.0, 1.0)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature TreeSHAP contributions to the booster's log-odds (bias left out)."""
        Xc = conform(X, self.schema)
        values, _ = _contrib(self.booster, Xc)
        return _frame(values, Xc, self.schema)


def _choose_calibrator(
    raw: np.ndarray, y: np.ndarray, fold: np.ndarray
) -> tuple[PlattCalibrator | IsotonicCalibrator, dict[str, dict[str, float]]]:
    # Judging each calibrator on the rows it was fitted to would always favour isotonic (it can
    # memorise); 2-fold cross-fitting by customer gives each an honest score.
    scores: dict[str, dict[str, float]] = {
        "uncalibrated": {
            "log_loss": _log_loss(y, _sigmoid(raw)),
            "brier": _brier(y, _sigmoid(raw)),
            "ece": _ece(y, _sigmoid(raw)),
        }
    }
    usable = all(len(np.unique(y[fold == k])) == 2 for k in (0, 1))
    for name, cls in CALIBRATORS.items():
        if not usable:
            break
        oof = np.empty_like(raw)
        for k in (0, 1):
            oof[fold == k] = cls.fit(raw[fold != k], y[fold != k]).predict(raw[fold == k])
        scores[name] = {"log_loss": _log_loss(y, oof), "brier": _brier(y, oof), "ece": _ece(y, oof)}
    if usable:
        best = min(CALIBRATORS, key=lambda n: (scores[n]["log_loss"], scores[n]["brier"]))
    else:  # too few churners to cross-fit: Platt's two parameters are the safer bet
        best = "platt"
    return CALIBRATORS[best].fit(raw, y), scores


# --------------------------------------------------------------------------- CLV


class ClvModel:
    """Expected future value (zero for many customers, heavy-tailed for the rest) with an interval.

    Candidates are Tweedie models at each power in `TWEEDIE_POWERS` and a two-part model; the one
    with the lowest held-out Tweedie deviance wins (see the module docstring).
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        num_boost_round: int = 2000,
        early_stopping_rounds: int = 100,
        seed: int = 0,
        interval: tuple[float, float] = (0.1, 0.9),
    ) -> None:
        low, high = interval
        if not 0.0 < low < high < 1.0:
            raise ValueError(
                f"interval must be two quantile levels 0 < low < high < 1, got {interval}"
            )
        self.user_params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.interval = (float(low), float(high))

    def _params(self, base: dict[str, Any]) -> dict[str, Any]:
        return _params(base, self.user_params, self.seed)

    def fit(
        self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any
    ) -> ClvModel:
        """Fit every candidate and the interval models on `X_train`, early-stop each on `X_valid`
        and choose the candidate there. `y_*` is future value >= 0."""
        _check_frame(X_train, "X_train")
        _check_frame(X_valid, "X_valid")
        schema = FeatureSchema.from_frame(X_train)
        X, Xv = conform(X_train, schema), conform(X_valid, schema)
        y, yv = _nonnegative(y_train, X, "y_train"), _nonnegative(y_valid, Xv, "y_valid")
        for part, yy in (("y_train", y), ("y_valid", yv)):
            if (yy > 0).sum() < 2:
                raise ValueError(f"{part} has fewer than 2 positive values; CLV needs some buyers")
        fit = dict(
            num_boost_round=self.num_boost_round, early_stopping_rounds=self.early_stopping_rounds
        )
        Xe, ye, Xs, ys = Xv, yv, Xv, yv

        candidates: dict[str, dict[str, lgb.Booster]] = {}
        for power in TWEEDIE_POWERS:
            p = self._params(
                {"objective": "tweedie", "tweedie_variance_power": power, "metric": "tweedie"}
            )
            candidates[f"tweedie_{power}"] = {"tweedie": _train(p, X, y, Xe, ye, **fit)}
        buy = _train(
            self._params({"objective": "binary", "metric": "binary_logloss"}),
            X,
            (y > 0).astype(np.float64),
            Xe,
            (ye > 0).astype(np.float64),
            **fit,
        )
        value = _train(
            self._params({"objective": "gamma", "metric": "gamma_deviance"}),
            X[y > 0],
            y[y > 0],
            Xe[ye > 0],
            ye[ye > 0],
            **fit,
        )
        candidates["two_part"] = {"buy": buy, "value": value}

        validation: dict[str, dict[str, float]] = {}
        for name, boosters in candidates.items():
            pred = _point(boosters, Xs)
            validation[name] = {
                "tweedie_deviance": float(
                    mean_tweedie_deviance(ys, np.maximum(pred, 1e-9), power=SELECTION_POWER)
                ),
                "normalised_gini": _normalised_gini(ys, pred),
                "mae": float(np.mean(np.abs(ys - pred))),
                "total_ratio": float(pred.sum() / max(ys.sum(), 1e-12)),
                "best_iteration": float(sum(b.best_iteration for b in boosters.values())),
            }
        best = min(
            validation,
            key=lambda n: (validation[n]["tweedie_deviance"], -validation[n]["normalised_gini"]),
        )

        # Quantiles on log1p(value): q(log1p(Y)) = log1p(q(Y)), and the log scale keeps a few huge
        # values from dominating the fit.
        quantile = {}
        for side, alpha in zip(("low", "high"), self.interval, strict=True):
            quantile[side] = _train(
                self._params({"objective": "quantile", "alpha": alpha, "metric": "quantile"}),
                X,
                np.log1p(y),
                Xe,
                np.log1p(ye),
                **fit,
            )

        self.schema = schema
        self.objective = best
        self.boosters: dict[str, lgb.Booster] = {**candidates[best], **quantile}
        self.best_iteration = int(sum(b.best_iteration for b in candidates[best].values()))
        self.validation = validation
        self.interval_validation = _interval_scores(self._predict(Xs), ys)
        return self

    def _predict(self, Xc: pd.DataFrame) -> pd.DataFrame:
        point = _point({k: v for k, v in self.boosters.items() if k not in ("low", "high")}, Xc)
        low, high = (
            np.maximum(
                np.expm1(
                    self.boosters[s].predict(Xc, num_iteration=self.boosters[s].best_iteration)
                ),
                0.0,
            )
            for s in ("low", "high")
        )
        clv = np.maximum(point, 0.0)
        return pd.DataFrame(
            {"clv": clv, "clv_low": np.minimum(low, clv), "clv_high": np.maximum(high, clv)},
            index=Xc.index,
        )

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """`clv` (expected value over the horizon) and `clv_low` <= clv <= `clv_high`, all >= 0."""
        return self._predict(conform(X, self.schema))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to log(clv), bias left out: they sum to log(clv) minus a
        constant. For the two-part model the purchase classifier's log-odds contributions are
        rescaled row by row so they add up to log P(buy), then added to the value regressor's."""
        Xc = conform(X, self.schema)
        if "tweedie" in self.boosters:
            values, _ = _contrib(self.boosters["tweedie"], Xc)
        else:
            cb, z0 = _contrib(self.boosters["buy"], Xc)
            cv, _ = _contrib(self.boosters["value"], Xc)
            z = cb.sum(axis=1) + z0
            values = cb * _log_sigmoid_slope(z, z0)[:, None] + cv
        return _frame(values, Xc, self.schema)


def _point(boosters: dict[str, lgb.Booster], X: pd.DataFrame) -> np.ndarray:
    def pred(b: lgb.Booster) -> np.ndarray:
        return np.asarray(b.predict(X, num_iteration=b.best_iteration))

    if "tweedie" in boosters:
        return pred(boosters["tweedie"])
    return pred(boosters["buy"]) * pred(boosters["value"])


def _log_sigmoid_slope(z: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """(log sigmoid(z) - log sigmoid(z0)) / (z - z0), the derivative where z == z0."""
    dz = z - z0
    near = np.abs(dz) < 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (np.logaddexp(0.0, -z0) - np.logaddexp(0.0, -z)) / np.where(near, 1.0, dz)
    return np.where(near, _sigmoid(-z), slope)


def _interval_scores(pred: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    low, high = pred["clv_low"].to_numpy(), pred["clv_high"].to_numpy()
    return {
        "coverage": float(np.mean((y >= low) & (y <= high))),
        "below_low": float(np.mean(y < low)),
        "above_high": float(np.mean(y > high)),
        "median_width": float(np.median(high - low)),
    }
