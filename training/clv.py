"""Fitting the CLV model: expected future value with an interval, the objective chosen by
validation. Returns a `model.clv.ClvModel`.

- Objective: candidates Tweedie (variance power 1.2 and 1.5) and a two-part model (P(buy)
  classifier x gamma regressor of value given a purchase). The winner has the lowest mean
  Tweedie deviance (power 1.5, a strictly consistent score for the mean of zero-inflated,
  heavy-tailed values) on the validation frame; normalised Gini, MAE and the ratio of predicted
  to actual total are recorded per candidate in `ClvModel.validation` so the choice is visible.
- Interval: LightGBM quantile models at the interval's two levels, trained on log1p(value)
  (quantiles commute with monotone maps, and the log scale tames the tail), conformalised on the
  validation frame (`conformal_shift`) so it covers its nominal share there, then clipped so
  that 0 <= clv_low <= clv <= clv_high.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import mean_tweedie_deviance

from model.churn import predict
from model.clv import ClvModel, point_value
from model.schema import FeatureSchema, check_training_frame, feature_matrix
from training.boosting import lgb_params, nonnegative_labels, train_booster
from training.metrics import clv_metrics

TWEEDIE_POWERS: tuple[float, ...] = (1.2, 1.5)
# The power of the deviance that ranks CLV candidates; fixed so every candidate faces one yardstick.
SELECTION_POWER = 1.5


class ClvTrainer:
    """Fits a `ClvModel`: every objective candidate and the interval models."""

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
        return lgb_params(base, self.user_params, self.seed)

    def fit(
        self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any
    ) -> ClvModel:
        """Fit every candidate and the interval models on `X_train`, early-stop each on `X_valid`
        and choose the candidate there. `y_*` is future value >= 0."""
        check_training_frame(X_train, "X_train")
        check_training_frame(X_valid, "X_valid")
        schema = FeatureSchema.from_frame(X_train)
        M, Mv = feature_matrix(X_train, schema), feature_matrix(X_valid, schema)
        y = nonnegative_labels(y_train, X_train, "y_train")
        yv = nonnegative_labels(y_valid, X_valid, "y_valid")
        for part, yy in (("y_train", y), ("y_valid", yv)):
            if (yy > 0).sum() < 2:
                raise ValueError(f"{part} has fewer than 2 positive values; CLV needs some buyers")

        def train(base: dict[str, Any], target, target_v, rows=None, rows_v=None) -> lgb.Booster:
            # Whole matrices unless a subset is asked for: a boolean index would copy them.
            return train_booster(
                self._params(base),
                schema,
                M if rows is None else M[rows],
                target,
                Mv if rows_v is None else Mv[rows_v],
                target_v,
                self.num_boost_round,
                self.early_stopping_rounds,
            )

        candidates: dict[str, dict[str, lgb.Booster]] = {}
        for power in TWEEDIE_POWERS:
            base = {"objective": "tweedie", "tweedie_variance_power": power, "metric": "tweedie"}
            candidates[f"tweedie_{power}"] = {"tweedie": train(base, y, yv)}
        buy = train(
            {"objective": "binary", "metric": "binary_logloss"},
            (y > 0).astype(np.float64),
            (yv > 0).astype(np.float64),
        )
        value = train(
            {"objective": "gamma", "metric": "gamma_deviance"}, y[y > 0], yv[yv > 0], y > 0, yv > 0
        )
        candidates["two_part"] = {"buy": buy, "value": value}

        validation: dict[str, dict[str, float]] = {}
        for name, boosters in candidates.items():
            pred = point_value(boosters, Mv)
            validation[name] = {
                "tweedie_deviance": float(
                    mean_tweedie_deviance(yv, np.maximum(pred, 1e-9), power=SELECTION_POWER)
                ),
                "normalised_gini": clv_metrics(yv, pred)["gini_normalized"],
                "mae": float(np.mean(np.abs(yv - pred))),
                "total_ratio": float(pred.sum() / max(yv.sum(), 1e-12)),
                "best_iteration": float(sum(b.best_iteration for b in boosters.values())),
            }
        best = min(
            validation,
            key=lambda n: (validation[n]["tweedie_deviance"], -validation[n]["normalised_gini"]),
        )

        # Quantiles on log1p(value): q(log1p(Y)) = log1p(q(Y)), and the log scale keeps a few huge
        # values from dominating the fit.
        quantile = {
            side: train(
                {"objective": "quantile", "alpha": alpha, "metric": "quantile"},
                np.log1p(y),
                np.log1p(yv),
            )
            for side, alpha in zip(("low", "high"), self.interval, strict=True)
        }
        model = ClvModel(
            schema=schema,
            boosters={**candidates[best], **quantile},
            objective=best,
            interval=self.interval,
            best_iteration=int(sum(b.best_iteration for b in candidates[best].values())),
            validation=validation,
            params=dict(self.user_params),
        )
        model.interval_shift = conformal_shift(model, Mv, yv)
        model.interval_validation = interval_scores(model.values(Mv), yv)
        return model


def conformal_shift(model: ClvModel, M: np.ndarray, y: np.ndarray) -> float:
    """The conformalised quantile regression correction (Romano, Patterson & Candes 2019): the
    (nominal share)(1 + 1/n) quantile of max(q_low - log1p(y), log1p(y) - q_high) on the
    validation customers, so that [q_low - shift, q_high + shift] covers the nominal share of
    them (a negative shift narrows an interval that covered too many)."""
    if len(y) < 20:
        return 0.0
    q_low, q_high = (
        predict(model.boosters[s], M, model.boosters[s].best_iteration) for s in ("low", "high")
    )
    t = np.log1p(y)
    score = np.maximum(q_low - t, t - q_high)
    share = model.interval[1] - model.interval[0]
    level = min(1.0, share * (1 + 1 / len(y)))
    return float(np.quantile(score, level, method="higher"))


def interval_scores(values: tuple[np.ndarray, np.ndarray, np.ndarray], y: np.ndarray):
    """Coverage of [clv_low, clv_high] on actual values `y`, the shares below and above, and the
    median width."""
    _, low, high = values
    return {
        "coverage": float(np.mean((y >= low) & (y <= high))),
        "below_low": float(np.mean(y < low)),
        "above_high": float(np.mean(y > high)),
        "median_width": float(np.median(high - low)),
    }
