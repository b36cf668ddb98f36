"""The scoring core: one set of functions used by batch scoring and by the HTTP service.

- `load_champions` loads the `champion` versions of `churn` and `clv` from the MLflow registry
  (by version number, so the versions recorded on every score are the ones that produced it).
- `score_frame` turns customers' features into `churn_probability`, `clv` with `clv_low` /
  `clv_high`, `value_at_risk` (= churn probability x CLV), a `tier` and up to three reasons.
- `reasons_for` / `explain`: the features pushing churn risk up most for each customer (TreeSHAP
  contributions of the churn booster, in log-odds), written for a CX agent by `serving.reasons`.

Speed: a features frame is turned into one float64 matrix (`feature_matrix`: the schema's columns
in order, categoricals as codes on the training levels, exactly the matrix LightGBM builds from a
conformed DataFrame) and every booster (churn, the CLV point model(s), the two CLV quantile
models) predicts on that same matrix. Going through `ChurnModel.predict_proba` and
`ClvModel.predict` instead would conform the frame twice and let LightGBM convert the pandas
frame to a matrix once per booster (five times); at 1M customers that is most of the time.
`tests/serving/test_scoring.py` checks that both routes give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from configs import Settings, TierSettings
from serving.columns import REASON_COLUMNS
from serving.reasons import describe
from training.models import ChurnModel, ClvModel, FeatureSchema, check_frame

TIERS: tuple[str, ...] = ("high", "medium", "low")
# A feature whose reason is better told by a sibling column (the class alone says less than the
# score with its class: "last NPS 3 (detractor)").
REASON_ALIASES: dict[str, str] = {"nps_class_last": "nps_last"}


class NoChampionError(RuntimeError):
    """The registry has no `champion` version of a model Retain needs to score."""


@dataclass(frozen=True)
class Champions:
    """The serving models and the registry versions they came from."""

    churn: ChurnModel
    clv: ClvModel
    churn_version: str
    clv_version: str

    def __post_init__(self) -> None:
        if not isinstance(self.churn, ChurnModel):
            raise TypeError(f"churn must be a ChurnModel, got {type(self.churn).__name__}")
        if not isinstance(self.clv, ClvModel):
            raise TypeError(f"clv must be a ClvModel, got {type(self.clv).__name__}")
        # The scoring matrix carries categorical codes on the schema's levels; LightGBM would
        # remap a DataFrame onto the levels it was trained on, so the two must be the same.
        for name, booster, schema in self._boosters():
            _check_levels(name, booster, schema)

    def _boosters(self) -> list[tuple[str, lgb.Booster, FeatureSchema]]:
        return [("churn", self.churn.booster, self.churn.schema)] + [
            (f"clv.{part}", b, self.clv.schema) for part, b in sorted(self.clv.boosters.items())
        ]


def _check_levels(name: str, booster: lgb.Booster, schema: FeatureSchema) -> None:
    trained = booster.pandas_categorical
    expected = [list(schema.categories[c]) for c in schema.columns if c in schema.categories]
    if (trained or []) != expected:
        raise ValueError(
            f"model {name}: the booster's categorical levels do not match its feature schema "
            "(was the model saved by training.persist?); retrain it"
        )


def load_champions(tracking_uri: str | None = None) -> Champions:
    """The `champion` versions of `churn` and `clv` from the MLflow registry at `tracking_uri`
    (default: `MLFLOW_TRACKING_URI`, else the embedded store under ./mlruns)."""
    import mlflow

    from training.registry import CHAMPION, MODEL_NAMES, alias_version, connect
    from training.registry import tracking_uri as default_uri

    uri = tracking_uri or default_uri()
    client = connect(uri)
    versions = {name: alias_version(client, name, CHAMPION) for name in MODEL_NAMES}
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        raise NoChampionError(
            f"no '{CHAMPION}' version of {'models' if len(missing) > 1 else 'model'} "
            f"{' and '.join(repr(m) for m in missing)} in the "
            f"MLflow registry at {uri}. Train one with `retain train --data DIR` (the first "
            "model that beats the baselines becomes champion), or promote a registered version "
            "with `retain promote`; set MLFLOW_TRACKING_URI if the models live in another store."
        )
    models = {
        name: mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model
        for name, version in versions.items()
    }
    return Champions(
        churn=models["churn"],
        clv=models["clv"],
        churn_version=str(versions["churn"]),
        clv_version=str(versions["clv"]),
    )


# --------------------------------------------------------------------------- predictions


def feature_matrix(X: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """`X` as the (n, features) float64 matrix the model was trained on: the schema's columns in
    order (missing ones NaN, extra ones ignored), numbers as float64, categoricals as their code
    among the training levels (NaN when missing or unseen). The same values as
    `training.models.conform` followed by LightGBM's own DataFrame conversion, built once."""
    check_frame(X, schema)
    out = np.empty((len(X), len(schema.columns)), dtype=np.float64)
    for j, col in enumerate(schema.columns):
        if col not in X.columns:
            out[:, j] = np.nan
        elif col in schema.categories:
            out[:, j] = _category_codes(X[col], schema.categories[col])
        else:
            s = X[col]
            if isinstance(s.dtype, pd.CategoricalDtype) or not (
                is_numeric_dtype(s.dtype) or is_bool_dtype(s.dtype)
            ):
                raise ValueError(
                    f"feature '{col}' should be numeric (it was numeric in training) but has "
                    f"dtype {s.dtype}"
                )
            out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _category_codes(s: pd.Series, levels: tuple) -> np.ndarray:
    """Codes of `s` among `levels` as float64, NaN for missing or unseen values. Categoricals
    are mapped through their (few) categories, not value by value."""
    index = pd.Index(list(levels), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        lookup = index.get_indexer(pd.Index(s.cat.categories, dtype=object))
        codes = s.cat.codes.to_numpy()
        mapped = np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1)
    else:
        mapped = index.get_indexer(s.astype(object).to_numpy())
    return np.where(mapped >= 0, mapped, np.nan)


def _predict(booster: lgb.Booster, M: np.ndarray, num_iteration: int, **kw) -> np.ndarray:
    if len(M) == 0:  # LightGBM refuses an empty matrix
        return np.empty(0, dtype=np.float64)
    return np.asarray(booster.predict(M, num_iteration=num_iteration, **kw), dtype=np.float64)


def churn_probability(model: ChurnModel, M: np.ndarray) -> np.ndarray:
    """`ChurnModel.predict_proba` on a `feature_matrix`."""
    raw = _predict(model.booster, M, model.best_iteration, raw_score=True)
    return np.clip(model.calibrator.predict(raw), 0.0, 1.0)


def clv_values(model: ClvModel, M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`ClvModel.predict` (clv, clv_low, clv_high) on a `feature_matrix`."""
    b = model.boosters

    def pred(name: str) -> np.ndarray:
        return _predict(b[name], M, b[name].best_iteration)

    point = pred("tweedie") if "tweedie" in b else pred("buy") * pred("value")
    clv = np.maximum(point, 0.0)
    low = np.maximum(np.expm1(pred("low")), 0.0)
    high = np.maximum(np.expm1(pred("high")), 0.0)
    return clv, np.minimum(low, clv), np.maximum(high, clv)


def assign_tier(
    p: np.ndarray, clv: np.ndarray, value_at_risk: np.ndarray, tiers: TierSettings
) -> np.ndarray:
    """`high`: probability >= risk_high and CLV >= value_high; `medium`: probability >=
    risk_medium or value at risk >= value_at_risk_medium; `low`: the rest (see TierSettings)."""
    p, clv, var = (np.asarray(a, dtype=np.float64) for a in (p, clv, value_at_risk))
    high = (p >= tiers.risk_high) & (clv >= tiers.value_high)
    medium = (p >= tiers.risk_medium) | (var >= tiers.value_at_risk_medium)
    return np.select([high, medium], ["high", "medium"], default="low").astype(object)


def score_frame(
    X: pd.DataFrame, champions: Champions, settings: Settings, *, reasons: bool = True
) -> pd.DataFrame:
    """Scores for each row of `X` (features as `features.build.build_features` makes them),
    indexed like `X`, with the columns of `SCORE_COLUMNS` after `customer_id`. `segment` comes
    from `X["segment"]` ("" without one). With `reasons=False` the reasons are empty strings."""
    M = feature_matrix(X, champions.churn.schema)
    if champions.clv.schema == champions.churn.schema:
        M_clv = M
    else:
        M_clv = feature_matrix(X, champions.clv.schema)
    p = churn_probability(champions.churn, M)
    del M
    clv, low, high = clv_values(champions.clv, M_clv)
    del M_clv
    n = len(X)
    out = pd.DataFrame(
        {
            "segment": _segment(X),
            **value_columns(p, clv, low, high, settings),
            **{c: _blank(n) for c in REASON_COLUMNS},
            "churn_model_version": np.full(n, champions.churn_version, dtype=object),
            "clv_model_version": np.full(n, champions.clv_version, dtype=object),
        },
        index=X.index,
    )
    if reasons and n:
        out[list(REASON_COLUMNS)] = reasons_for(X, champions).to_numpy()
    return out


def value_columns(
    p: np.ndarray, clv: np.ndarray, low: np.ndarray, high: np.ndarray, settings: Settings
) -> dict[str, np.ndarray]:
    """The score columns from churn probability to tier, from the two models' outputs."""
    var = p * clv
    return {
        "churn_probability": p,
        "clv": clv,
        "clv_low": low,
        "clv_high": high,
        "value_at_risk": var,
        "tier": assign_tier(p, clv, var, settings.scoring.tiers),
    }


def _segment(X: pd.DataFrame) -> np.ndarray:
    if "segment" not in X.columns:
        return _blank(len(X))
    s = X["segment"]
    if isinstance(s.dtype, pd.CategoricalDtype):
        # Through the (few) categories; code -1 (missing) picks the trailing "".
        names = np.array([str(c) for c in s.cat.categories] + [""], dtype=object)
        return names[s.cat.codes.to_numpy()]
    return np.array(["" if pd.isna(v) else str(v) for v in s.to_numpy()], dtype=object)


def _blank(n: int) -> np.ndarray:
    return np.full(n, "", dtype=object)


# --------------------------------------------------------------------------- reasons


def reasons_for(X: pd.DataFrame, champions: Champions, n: int = 3) -> pd.DataFrame:
    """Columns `reason_1..n` for each row of `X`: the features pushing churn risk up most."""
    return explain(champions.churn.contributions(X), X, n)


def explain(contributions: pd.DataFrame, X: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The `n` features with the largest positive contributions to risk in each row, written by
    `serving.reasons.describe` from the row's value in `X`; `contributions` has one column per
    feature and the rows of `X` in the same order. Only positive contributions count: a customer
    with fewer than `n` gets empty strings in the remaining columns. Two features that read the
    same (the NPS score and its class) give one reason."""
    if len(contributions) != len(X) or not contributions.index.equals(X.index):
        raise ValueError("contributions and features must have the same rows in the same order")
    columns = [f"reason_{i + 1}" for i in range(n)]
    out = np.full((len(X), n), "", dtype=object)
    if len(X) == 0 or n == 0:
        return pd.DataFrame(out, index=X.index, columns=columns)
    C = contributions.to_numpy(dtype=np.float64)
    names = list(contributions.columns)
    # More candidates than slots, so a duplicate phrase can give way to the next feature;
    # a stable descending sort keeps ties in column order.
    k = min(C.shape[1], 2 * n)
    order = np.argsort(-C, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(C, order, axis=1)
    for i in range(len(X)):
        seen: list[str] = []
        for j, c in zip(order[i], top[i], strict=True):
            if not c > 0 or len(seen) == n:
                break
            feature = REASON_ALIASES.get(names[j], names[j])
            if feature not in X.columns:
                feature = names[j]
            # A feature the frame lacks was missing (NaN) to the model.
            value = X[feature].iat[i] if feature in X.columns else np.nan
            text = describe(feature, value)
            if text not in seen:
                seen.append(text)
        out[i, : len(seen)] = seen
    return pd.DataFrame(out, index=X.index, columns=columns)
