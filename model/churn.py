"""The fitted churn model: calibrated P(churn within the horizon) from a LightGBM booster, and
the per-feature contributions behind it (the booster's: a stack with the classic models
moves the probability, the reasons stay the booster's). Built by `training.churn`, saved by `model.artifact`.

Every prediction goes through `model.schema.feature_matrix`; the `*_matrix` methods take that
matrix directly, so a caller that scores several models on the same customers (the scoring core)
builds it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from model.blend import ChurnStack
from model.btyd import BtydParams
from model.calibration import Calibrator
from model.schema import FeatureSchema, feature_matrix


def predict(booster: lgb.Booster, M: np.ndarray, num_iteration: int, **kw: Any) -> np.ndarray:
    """`booster.predict` on a feature matrix (LightGBM refuses an empty one)."""
    if len(M) == 0:
        width = M.shape[1] + 1 if kw.get("pred_contrib") else None
        return np.empty((0, width) if width else 0, dtype=np.float64)
    return np.asarray(booster.predict(M, num_iteration=num_iteration, **kw), dtype=np.float64)


def contributions_matrix(booster: lgb.Booster, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TreeSHAP contributions (n, features) and the bias column (n,) in raw-score space."""
    c = predict(booster, M, booster.best_iteration, pred_contrib=True)
    return c[:, :-1], c[:, -1]


@dataclass(eq=False)
class ChurnModel:
    """Calibrated P(churn within the horizon) from a LightGBM binary classifier."""

    schema: FeatureSchema
    booster: lgb.Booster
    best_iteration: int
    calibrator: Calibrator
    # How each calibration candidate (and the raw booster) scored out of fold on the validation
    # frame; the chosen one is `calibrator.kind`.
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    # The LightGBM parameters it was trained with (for the record; not needed to predict).
    params: dict[str, Any] = field(default_factory=dict)
    # The blend with the classic models chosen on validation (None: the calibrated booster).
    stack: ChurnStack | None = None
    # BG/NBD + Gamma-Gamma parameters for the `model.btyd.BTYD_COLUMNS` features, when the
    # schema has them (fitted on the whole known history at training time).
    btyd: BtydParams | None = None

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        return feature_matrix(X, self.schema)

    def raw_score_matrix(self, M: np.ndarray) -> np.ndarray:
        return predict(self.booster, M, self.best_iteration, raw_score=True)

    def probability(self, M: np.ndarray) -> np.ndarray:
        """Calibrated P(churn) on a feature matrix of this model's schema, shape (n,)."""
        raw = self.raw_score_matrix(M)
        calibrated = np.clip(self.calibrator.predict(raw), 0.0, 1.0)
        if self.stack is None:
            return calibrated
        return np.clip(self.stack.probability(M, raw, calibrated), 0.0, 1.0)

    def contributions_matrix(self, M: np.ndarray) -> np.ndarray:
        """Per-feature TreeSHAP contributions to the log-odds on a feature matrix (no bias)."""
        values, _ = contributions_matrix(self.booster, M)
        return values

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's log-odds before calibration."""
        return self.raw_score_matrix(self.matrix(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn within the horizon), shape (n,)."""
        return self.probability(self.matrix(X))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature TreeSHAP contributions to the booster's log-odds (bias left out)."""
        values = self.contributions_matrix(self.matrix(X))
        return pd.DataFrame(values, index=X.index, columns=list(self.schema.columns))
