"""What fitting the churn and CLV boosters shares: the LightGBM defaults, training one booster
with early stopping on a feature matrix, checking label columns, and the customer hash that
splits validation customers in halves.

Boosters are fitted on `model.schema.feature_matrix` (categoricals as codes on the schema's
levels, declared categorical to LightGBM), the same matrix every prediction uses.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from model.schema import FeatureSchema

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


def lgb_params(base: dict[str, Any], user: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """The defaults, then the objective's `base`, then the user's parameters."""
    return {**DEFAULT_PARAMS, "seed": seed, **base, **(user or {})}


def train_booster(
    params: dict[str, Any],
    schema: FeatureSchema,
    M: np.ndarray,
    y: np.ndarray,
    M_es: np.ndarray,
    y_es: np.ndarray,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """One booster on feature matrix `M`, early-stopped on `M_es`."""
    train = lgb.Dataset(
        M,
        label=y,
        feature_name=list(schema.columns),
        categorical_feature=schema.categorical,
        params={"max_bin": params.get("max_bin", 255)},
        free_raw_data=True,
    )
    valid = lgb.Dataset(M_es, label=y_es, reference=train)
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


def labels(y: Any, X: pd.DataFrame, name: str) -> pd.Series:
    """`y` as a Series aligned with `X`, or a ValueError saying what was expected."""
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


def binary_labels(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = labels(y, X, name)
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


def nonnegative_labels(y: Any, X: pd.DataFrame, name: str) -> np.ndarray:
    y = labels(y, X, name)
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


def customer_hash(index: pd.Index) -> np.ndarray:
    """A fixed-key hash of the customer id: the same customer always lands in the same half, in
    every run and on every machine, and a customer's rows are never split across halves."""
    return pd.util.hash_array(index.astype(str).to_numpy(dtype=object))
