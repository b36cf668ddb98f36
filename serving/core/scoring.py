"""Scores from feature matrices: `churn_probability`, `clv` with `clv_low` / `clv_high`,
`value_at_risk` (= churn probability x CLV) and a `tier`; and `score_frame`, the same for a
features frame with reasons and model versions.

Speed: a features frame is turned into one float64 matrix (`model.schema.feature_matrix`) and
every booster (churn, the CLV point model(s), the two CLV quantile models) predicts on that same
matrix; the HTTP service builds the matrix from JSON records instead and calls `score_matrices`
and `explain.reasons_matrix` as batch scoring does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs import Settings, TierSettings
from serving.core.champions import Champions
from serving.core.columns import REASON_COLUMNS
from serving.core.explain import reasons_matrix

TIERS: tuple[str, ...] = ("high", "medium", "low")


def assign_tier(
    p: np.ndarray, clv: np.ndarray, value_at_risk: np.ndarray, tiers: TierSettings
) -> np.ndarray:
    """`high`: probability >= risk_high and CLV >= value_high; `medium`: probability >=
    risk_medium or value at risk >= value_at_risk_medium; `low`: the rest (see TierSettings)."""
    p, clv, var = (np.asarray(a, dtype=np.float64) for a in (p, clv, value_at_risk))
    high = (p >= tiers.risk_high) & (clv >= tiers.value_high)
    medium = (p >= tiers.risk_medium) | (var >= tiers.value_at_risk_medium)
    return np.select([high, medium], ["high", "medium"], default="low").astype(object)


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


def score_matrices(
    M_churn: np.ndarray, M_clv: np.ndarray, champions: Champions, settings: Settings
) -> dict[str, np.ndarray]:
    """`value_columns` of the customers whose feature matrices (churn and CLV schema; the same
    array when the schemas agree) are given."""
    p = champions.churn.probability(M_churn)
    clv, low, high = champions.clv.values(M_clv)
    return value_columns(p, clv, low, high, settings)


def score_frame(
    X: pd.DataFrame, champions: Champions, settings: Settings, *, reasons: bool = True
) -> pd.DataFrame:
    """Scores for each row of `X` (features as `features.build.build_features` makes them),
    indexed like `X`, with the columns of `SCORE_COLUMNS` after `customer_id`. `segment` comes
    from `X["segment"]` ("" without one). With `reasons=False` the reasons are empty strings."""
    M = champions.churn.matrix(X)
    M_clv = M if champions.shared_schema else champions.clv.matrix(X)
    values = score_matrices(M, M_clv, champions, settings)
    del M_clv
    n = len(X)
    out = pd.DataFrame(
        {
            "segment": segments_of(X),
            **values,
            **{c: blank(n) for c in REASON_COLUMNS},
            "churn_model_version": np.full(n, champions.churn_version, dtype=object),
            "clv_model_version": np.full(n, champions.clv_version, dtype=object),
        },
        index=X.index,
    )
    if reasons and n:
        out[list(REASON_COLUMNS)] = reasons_matrix(M, X, champions)
    return out


def segments_of(X: pd.DataFrame) -> np.ndarray:
    """Each row's segment as text ("" where there is none)."""
    if "segment" not in X.columns:
        return blank(len(X))
    s = X["segment"]
    if isinstance(s.dtype, pd.CategoricalDtype):
        # Through the (few) categories; code -1 (missing) picks the trailing "".
        names = np.array([str(c) for c in s.cat.categories] + [""], dtype=object)
        return names[s.cat.codes.to_numpy()]
    return np.array(["" if pd.isna(v) else str(v) for v in s.to_numpy()], dtype=object)


def blank(n: int) -> np.ndarray:
    return np.full(n, "", dtype=object)
