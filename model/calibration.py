"""Churn calibrators: the monotone map from the churn booster's log-odds to a probability, as
fitted by training (`training.churn`) and applied wherever the model predicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True, eq=False)
class PlattCalibrator:
    """p = sigmoid(slope * log_odds + intercept)."""

    slope: float
    intercept: float
    kind: ClassVar[str] = "platt"

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(raw, dtype=np.float64) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True, eq=False)
class IsotonicCalibrator:
    """A non-decreasing step map from log-odds to probability, linear between thresholds and
    flat beyond them (as scikit-learn's `IsotonicRegression(out_of_bounds="clip")`)."""

    thresholds: np.ndarray
    values: np.ndarray
    kind: ClassVar[str] = "isotonic"

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.thresholds, self.values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "thresholds": np.asarray(self.thresholds).tolist(),
            "values": np.asarray(self.values).tolist(),
        }


Calibrator = PlattCalibrator | IsotonicCalibrator
CALIBRATORS: dict[str, type[PlattCalibrator] | type[IsotonicCalibrator]] = {
    "platt": PlattCalibrator,
    "isotonic": IsotonicCalibrator,
}


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """The calibrator `to_dict` described; a ValueError naming the kind when it is unknown."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in CALIBRATORS:
        raise ValueError(f"unknown calibrator kind {kind!r}; expected one of {sorted(CALIBRATORS)}")
    if kind == "platt":
        return PlattCalibrator(slope=float(data["slope"]), intercept=float(data["intercept"]))
    return IsotonicCalibrator(
        thresholds=np.asarray(data["thresholds"], dtype=float),
        values=np.asarray(data["values"], dtype=float),
    )
