"""Fitting the churn model: a LightGBM binary classifier, early-stopped and calibrated on a
later, time-ordered validation frame of other customers (see `training.pipeline`). No tree is
grown on the validation frame. Returns a `model.churn.ChurnModel`.

Splitting validation further into an early-stopping half and a calibration half was tried: with
20k customers the halves are so small that early stopping turns noisy and stops at a few dozen
trees, costing 0.006 ROC AUC on the evaluation snapshot for no gain in calibration.

Choices, and the validation numbers behind them (synthetic world, 20k customers, trained on
2024-11..2025-01 cutoffs, validated on 2025-02, scored on 2025-03 and 2025-04; see the README):

- Class imbalance: no reweighting. `scale_pos_weight = neg/pos` and `is_unbalance` gave the same
  AUC (0.003 lower) but probabilities that calibration then had to pull back down, and a worse
  calibrated log-loss and Brier score; re-weighting helps thresholded accuracy, not probabilities.
- Calibration: Platt or isotonic on the booster's log-odds, whichever has the lower log-loss
  under 2-fold cross-fitting (by customer) within the validation frame; the winner is refitted
  on the whole frame. Both candidates' numbers are kept in `ChurnModel.calibration`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from model.calibration import Calibrator, IsotonicCalibrator, PlattCalibrator, sigmoid
from model.churn import ChurnModel
from model.schema import FeatureSchema, check_training_frame, feature_matrix
from training.boosting import binary_labels, customer_hash, lgb_params, train_booster
from training.metrics import churn_metrics


def fit_platt(raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
    # A huge C is an unpenalised fit without the `penalty` argument, whose spelling differs
    # between scikit-learn versions.
    lr = LogisticRegression(C=1e10, solver="lbfgs", max_iter=1000)
    lr.fit(raw.reshape(-1, 1), y.astype(np.int64))
    return PlattCalibrator(slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return IsotonicCalibrator(thresholds=iso.X_thresholds_.copy(), values=iso.y_thresholds_.copy())


CALIBRATOR_FITS = {"platt": fit_platt, "isotonic": fit_isotonic}


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    m = churn_metrics(y, p)
    return {"log_loss": log_loss(y, p), "brier": m["brier"], "ece": m["ece"]}


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, fold: np.ndarray
) -> tuple[Calibrator, dict[str, dict[str, float]]]:
    """The calibrator with the lowest out-of-fold log-loss, refitted on all rows, and every
    candidate's out-of-fold scores. Judging each calibrator on the rows it was fitted to would
    always favour isotonic (it can memorise); 2-fold cross-fitting by customer is honest."""
    scores: dict[str, dict[str, float]] = {"uncalibrated": _scores(y, sigmoid(raw))}
    usable = all(len(np.unique(y[fold == k])) == 2 for k in (0, 1))
    for name, fit in CALIBRATOR_FITS.items():
        if not usable:
            break
        oof = np.empty_like(raw)
        for k in (0, 1):
            oof[fold == k] = fit(raw[fold != k], y[fold != k]).predict(raw[fold == k])
        scores[name] = _scores(y, oof)
    if usable:
        best = min(CALIBRATOR_FITS, key=lambda n: (scores[n]["log_loss"], scores[n]["brier"]))
    else:  # too few churners to cross-fit: Platt's two parameters are the safer bet
        best = "platt"
    return CALIBRATOR_FITS[best](raw, y), scores


class ChurnTrainer:
    """Fits a `ChurnModel` with the given LightGBM parameters and boosting budget."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        num_boost_round: int = 2000,
        early_stopping_rounds: int = 100,
        seed: int = 0,
    ) -> None:
        self.params = lgb_params({"objective": "binary", "metric": "binary_logloss"}, params, seed)
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def fit(
        self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any
    ) -> ChurnModel:
        """Boost on `X_train`, early-stop on `X_valid` and calibrate on it. `y_*` are the churn
        labels (bool or 0/1)."""
        check_training_frame(X_train, "X_train")
        check_training_frame(X_valid, "X_valid")
        schema = FeatureSchema.from_frame(X_train)
        M, Mv = feature_matrix(X_train, schema), feature_matrix(X_valid, schema)
        y, yv = (
            binary_labels(y_train, X_train, "y_train"),
            binary_labels(y_valid, X_valid, "y_valid"),
        )
        if y.min() == y.max():
            raise ValueError("y_train has only one class; churn needs churners and non-churners")
        if len(np.unique(yv)) < 2:
            raise ValueError(
                f"y_valid ({len(yv)} customers) has only one class; use a larger validation snapshot"
            )
        booster = train_booster(
            self.params, schema, M, y, Mv, yv, self.num_boost_round, self.early_stopping_rounds
        )
        best = int(booster.best_iteration)
        raw = np.asarray(booster.predict(Mv, raw_score=True, num_iteration=best))
        calibrator, scores = choose_calibrator(raw, yv, customer_hash(X_valid.index) & 1)
        return ChurnModel(
            schema=schema,
            booster=booster,
            best_iteration=best,
            calibrator=calibrator,
            calibration=scores,
            params=dict(self.params),
        )
