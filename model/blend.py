"""The fitted blends that let a model contain the classic models it must beat, as plain numbers.

- `LinearScore`: a logistic regression's log-odds on the feature matrix (numeric columns
  median-imputed with missing indicators and standardised, categorical codes one-hot), the
  linear component of a churn stack.
- `ChurnStack`: P(churn) = sigmoid(intercept + sum of coef x component log-odds) over the
  components it was chosen with: `model` (the booster's raw score), `bgnbd` (logit of the
  `btyd_p_no_purchase` feature) and `logistic` (a `LinearScore`).
- `ClvBlend`: level x (weight x model + (1 - weight) x the `btyd_clv` feature).

Fitted and chosen on validation by `training.blend`; `model.churn` and `model.clv` predict
through them; `model.artifact` saves them as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.calibration import sigmoid

_EPS = 1e-6
COMPONENTS = ("model", "bgnbd", "logistic")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class LinearScore:
    """Log-odds of a logistic regression on a feature matrix; see the module docstring."""

    numeric: tuple[int, ...]  # matrix columns used as numbers
    medians: tuple[float, ...]
    means: tuple[float, ...]  # of every design column, for standardisation
    scales: tuple[float, ...]
    indicators: tuple[int, ...]  # positions in `numeric` that had missing values at fit
    categorical: tuple[tuple[int, int], ...]  # (matrix column, number of levels)
    coef: tuple[float, ...]
    intercept: float

    @staticmethod
    def raw_design(
        M: np.ndarray,
        numeric: tuple[int, ...],
        medians: np.ndarray,
        indicators: tuple[int, ...],
        categorical: tuple[tuple[int, int], ...],
    ) -> np.ndarray:
        """The unscaled design: imputed numbers, missing indicators, one-hot levels."""
        num = M[:, list(numeric)] if numeric else np.empty((len(M), 0))
        missing = np.isnan(num)
        parts = [np.where(missing, medians, num), missing[:, list(indicators)].astype(np.float64)]
        for j, levels in categorical:
            codes = M[:, j]
            onehot = np.zeros((len(M), levels))
            ok = np.isfinite(codes) & (codes >= 0) & (codes < levels)
            onehot[np.flatnonzero(ok), codes[ok].astype(np.int64)] = 1.0
            parts.append(onehot)
        return np.hstack(parts)

    def design(self, M: np.ndarray) -> np.ndarray:
        raw = self.raw_design(
            M, self.numeric, np.asarray(self.medians), self.indicators, self.categorical
        )
        return (raw - np.asarray(self.means)) / np.asarray(self.scales)

    def log_odds(self, M: np.ndarray) -> np.ndarray:
        return self.design(M) @ np.asarray(self.coef) + self.intercept

    def to_dict(self) -> dict:
        return {
            "numeric": list(self.numeric),
            "medians": list(self.medians),
            "means": list(self.means),
            "scales": list(self.scales),
            "indicators": list(self.indicators),
            "categorical": [list(c) for c in self.categorical],
            "coef": list(self.coef),
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LinearScore:
        return cls(
            numeric=tuple(int(j) for j in d["numeric"]),
            medians=tuple(map(float, d["medians"])),
            means=tuple(map(float, d["means"])),
            scales=tuple(map(float, d["scales"])),
            indicators=tuple(int(j) for j in d["indicators"]),
            categorical=tuple((int(j), int(n)) for j, n in d["categorical"]),
            coef=tuple(map(float, d["coef"])),
            intercept=float(d["intercept"]),
        )


@dataclass(frozen=True)
class ChurnStack:
    """A logistic stack of component log-odds; see the module docstring."""

    components: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    bgnbd_column: int | None = None  # matrix column of `btyd_p_no_purchase`
    logistic: LinearScore | None = None

    def __post_init__(self) -> None:
        unknown = set(self.components) - set(COMPONENTS)
        if unknown or len(self.coef) != len(self.components):
            raise ValueError(f"invalid churn stack: components {self.components}, coef {self.coef}")
        if "bgnbd" in self.components and self.bgnbd_column is None:
            raise ValueError("a churn stack with the bgnbd component needs its matrix column")
        if "logistic" in self.components and self.logistic is None:
            raise ValueError("a churn stack with the logistic component needs its LinearScore")

    def component_matrix(self, M: np.ndarray, raw_score: np.ndarray) -> np.ndarray:
        columns = []
        for name in self.components:
            if name == "model":
                columns.append(raw_score)
            elif name == "bgnbd":
                columns.append(logit(M[:, self.bgnbd_column]))
            else:
                columns.append(self.logistic.log_odds(M))  # type: ignore[union-attr]
        return np.column_stack(columns) if columns else np.empty((len(M), 0))

    def probability(self, M: np.ndarray, raw_score: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """The stacked P(churn); `fallback` (the calibrated booster) where a component is
        missing, e.g. a customer whose BTYD features could not be computed."""
        Z = self.component_matrix(M, raw_score)
        z = Z @ np.asarray(self.coef) + self.intercept
        return np.where(np.isfinite(z), sigmoid(np.nan_to_num(z)), fallback)

    def to_dict(self) -> dict:
        return {
            "components": list(self.components),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "bgnbd_column": self.bgnbd_column,
            "logistic": None if self.logistic is None else self.logistic.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ChurnStack:
        return cls(
            components=tuple(d["components"]),
            coef=tuple(map(float, d["coef"])),
            intercept=float(d["intercept"]),
            bgnbd_column=None if d.get("bgnbd_column") is None else int(d["bgnbd_column"]),
            logistic=None if d.get("logistic") is None else LinearScore.from_dict(d["logistic"]),
        )


@dataclass(frozen=True)
class ClvBlend:
    """`level * (weight * model + (1 - weight) * btyd_clv)`; see the module docstring."""

    weight: float = 1.0
    level: float = 1.0
    btyd_column: int | None = None  # matrix column of `btyd_clv`

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0 or not self.level > 0:
            raise ValueError(f"invalid CLV blend: weight {self.weight}, level {self.level}")
        if self.weight < 1.0 and self.btyd_column is None:
            raise ValueError("a CLV blend with weight < 1 needs the btyd_clv matrix column")

    def value(self, M: np.ndarray, model_value: np.ndarray) -> np.ndarray:
        if self.weight >= 1.0:
            return self.level * model_value
        bg = np.maximum(M[:, self.btyd_column], 0.0)
        blended = self.weight * model_value + (1.0 - self.weight) * bg
        # A customer without BTYD features keeps the model's own value.
        return self.level * np.where(np.isfinite(blended), blended, model_value)

    def to_dict(self) -> dict:
        return {"weight": self.weight, "level": self.level, "btyd_column": self.btyd_column}

    @classmethod
    def from_dict(cls, d: dict) -> ClvBlend:
        col = d.get("btyd_column")
        return cls(float(d["weight"]), float(d["level"]), None if col is None else int(col))
