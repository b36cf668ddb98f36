"""The fitted CLV model: expected value over the horizon with an interval, from the LightGBM
booster(s) of the objective training chose (a Tweedie model, or a two-part model: P(buy) x value
given a purchase) and two quantile boosters on log1p(value). Built by `training.clv`.

Contributions are in log(clv) space, so they add up to log(clv) minus a constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from model.blend import ClvBlend
from model.btyd import BtydParams
from model.calibration import sigmoid
from model.churn import contributions_matrix, predict
from model.schema import FeatureSchema, feature_matrix

INTERVAL_PARTS = ("low", "high")


def point_value(boosters: dict[str, lgb.Booster], M: np.ndarray) -> np.ndarray:
    """The point prediction of a Tweedie ("tweedie") or two-part ("buy" x "value") model."""

    def pred(b: lgb.Booster) -> np.ndarray:
        return predict(b, M, b.best_iteration)

    if "tweedie" in boosters:
        return pred(boosters["tweedie"])
    return pred(boosters["buy"]) * pred(boosters["value"])


@dataclass(eq=False)
class ClvModel:
    """Expected future value (zero for many customers, heavy-tailed for the rest) with an interval."""

    schema: FeatureSchema
    boosters: dict[str, lgb.Booster]  # the point model's part(s) plus "low" and "high"
    objective: str
    interval: tuple[float, float]
    best_iteration: int
    # Each objective candidate's validation numbers, and the interval's (coverage, width).
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    interval_validation: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # The blend with BG/NBD x Gamma-Gamma chosen on validation; the identity by default.
    blend: ClvBlend = field(default_factory=ClvBlend)
    # Conformal widening (or narrowing, when negative) of the quantile interval in log1p space,
    # so that it covers its nominal share of the validation customers (`training.clv`).
    interval_shift: float = 0.0
    btyd: BtydParams | None = None  # as `ChurnModel.btyd`

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        return feature_matrix(X, self.schema)

    def values(self, M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clv, clv_low, clv_high) on a feature matrix, with 0 <= low <= clv <= high."""
        point = point_value({k: b for k, b in self.boosters.items() if k not in INTERVAL_PARTS}, M)
        q_low, q_high = (
            predict(self.boosters[s], M, self.boosters[s].best_iteration) for s in INTERVAL_PARTS
        )
        low = np.maximum(np.expm1(q_low - self.interval_shift), 0.0)
        high = np.maximum(np.expm1(q_high + self.interval_shift), 0.0)
        clv = np.maximum(self.blend.value(M, point), 0.0)
        return clv, np.minimum(low, clv), np.maximum(high, clv)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """`clv` (expected value over the horizon) and `clv_low` <= clv <= `clv_high`, all >= 0."""
        clv, low, high = self.values(self.matrix(X))
        return pd.DataFrame({"clv": clv, "clv_low": low, "clv_high": high}, index=X.index)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to log(clv), bias left out: they sum to log(clv) minus a
        constant. For the two-part model the purchase classifier's log-odds contributions are
        rescaled row by row so they add up to log P(buy), then added to the value regressor's."""
        M = self.matrix(X)
        if "tweedie" in self.boosters:
            values, _ = contributions_matrix(self.boosters["tweedie"], M)
        else:
            cb, z0 = contributions_matrix(self.boosters["buy"], M)
            cv, _ = contributions_matrix(self.boosters["value"], M)
            z = cb.sum(axis=1) + z0
            values = cb * _log_sigmoid_slope(z, z0)[:, None] + cv
        return pd.DataFrame(values, index=X.index, columns=list(self.schema.columns))


def _log_sigmoid_slope(z: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """(log sigmoid(z) - log sigmoid(z0)) / (z - z0), the derivative where z == z0."""
    dz = z - z0
    near = np.abs(dz) < 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (np.logaddexp(0.0, -z0) - np.logaddexp(0.0, -z)) / np.where(near, 1.0, dz)
    return np.where(near, sigmoid(-z), slope)
