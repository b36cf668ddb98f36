"""The buy-till-you-die model's predictions: BG/NBD (Fader, Hardie & Lee 2005) for repeat
purchase days and Gamma-Gamma (Fader & Hardie 2013) for the spend per purchase day, from fitted
parameters (`BtydParams`, fitted by `training.baselines.BgNbdGammaGammaBaseline`) and an
`features.rfm.rfm_summary`.

They are a baseline the models must beat and, as `BTYD_COLUMNS`, features of the models and
components of their blends: `btyd_columns` computes them for a feature frame, at training for
every snapshot (parameters fitted at that snapshot's cutoff on the history before it) and at
scoring the same way (`model.churn.ChurnModel.btyd` says whether a model needs them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, hyp2f1

from configs import Settings
from features.contract import Tables
from features.rfm import check_summary, rfm_summary

BTYD_COLUMNS: tuple[str, ...] = (
    "btyd_p_alive",
    "btyd_p_no_purchase",
    "btyd_expected_purchases",
    "btyd_expected_spend",
    "btyd_clv",
)


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


class BtydPredictor:
    """Predictions of a fitted BG/NBD + Gamma-Gamma model (`bgnbd_`, `gamma_gamma_`,
    `mean_spend_` set by a fit or by `BtydParams.predictor`)."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "bgnbd_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")

    @property
    def params(self) -> BtydParams:
        self._check_fitted()
        return BtydParams(self.bgnbd_, self.gamma_gamma_, float(self.mean_spend_))

    @staticmethod
    def _rfm(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        check_summary(summary, monetary=False)
        return tuple(summary[c].to_numpy(dtype=np.float64) for c in ("frequency", "recency", "T"))

    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """log of a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, -inf for x = 0 (a
        customer with no repeat purchase cannot have dropped out in BG/NBD)."""
        p = self.bgnbd_
        x1 = np.where(x > 0, x, 1.0)
        term = (
            np.log(p.a)
            - np.log(p.b + x1 - 1.0)
            + (p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + t_x))
        )
        return np.where(x > 0, term, -np.inf)

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(still alive at the end of the calibration period | history) (FHL 2005, eq. 11).
        `1 - p_alive` is a churn score."""
        self._check_fitted()
        x, t_x, T = self._rfm(summary)
        return expit(-self._log_odds_dead(x, t_x, T))

    def p_no_purchase(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """P(no repeat purchase day in (T, T + horizon] | history): the BG/NBD churn score for a
        "no purchase in the horizon" label, sharper than `1 - p_alive`.

        1 - P(alive) * (1 - ((alpha+T)/(alpha+T+t))^(r+x)): a customer who is alive buys next at
        rate lambda, whose posterior given alive is Gamma(r+x, alpha+T); dropout happens only
        right after a purchase, so it cannot prevent the first purchase in the window.
        """
        self._check_fitted()
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be >= 0, got {horizon_days}")
        x, t_x, T = self._rfm(summary)
        p = self.bgnbd_
        t = float(horizon_days)
        none_if_alive = np.exp((p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + T + t)))
        return 1.0 - self.p_alive(summary) * (1.0 - none_if_alive)

    def expected_purchases(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """E[repeat purchase days in (T, T + horizon] | history] (FHL 2005, eq. 10):

        P(alive) * (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x)
                                          * 2F1(r+x, b+x; a+b+x-1; z)],  z = t/(alpha+T+t).

        Evaluated through Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B)
        2F1(C-A, C-B; C; z), which turns the bracket into
        1 - (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z): the first two parameters no longer grow
        with x, so the series stays well-behaved for heavy buyers. The formula is analytic in
        `a` (the pole at a = 1 cancels), so `a` within 1e-6 of 1 is nudged off it.
        """
        self._check_fitted()
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be >= 0, got {horizon_days}")
        x, t_x, T = self._rfm(summary)
        p = self.bgnbd_
        a = p.a if abs(p.a - 1.0) > 1e-6 else 1.0 + math.copysign(1e-6, p.a - 1.0)
        t = float(horizon_days)
        z = t / (p.alpha + T + t)
        c = a + p.b + x - 1.0
        with np.errstate(all="ignore"):
            bracket = 1.0 - np.exp((a - 1.0) * np.log1p(-z)) * hyp2f1(
                a + p.b - 1.0 - p.r, a - 1.0, c, z
            )
            expected = c / (a - 1.0) * bracket
        alive = expit(-self._log_odds_dead(x, t_x, T))
        return np.maximum(np.nan_to_num(alive * expected, nan=0.0, posinf=0.0), 0.0)

    def expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """E[spend per purchase day | history] (Fader & Hardie 2013): a weighted average of the
        population mean and the customer's own mean, weighted by the number of repeat days."""
        self._check_fitted()
        check_summary(summary, monetary=True)
        x = summary["frequency"].to_numpy(dtype=np.float64)
        m = summary["monetary_value"].to_numpy(dtype=np.float64)
        out = np.full(len(summary), self.mean_spend_)
        gg = self.gamma_gamma_
        if gg is not None:
            # The posterior mean needs p*x + q - 1 > 0; true for any repeat buyer once q > 1.
            own = (x > 0) & (m > 0) & (gg.p * x + gg.q - 1.0 > 0)
            px = gg.p * x[own]
            out[own] = (gg.gamma + m[own] * x[own]) * gg.p / (px + gg.q - 1.0)
        return out

    def predict(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        """Expected value over the next `horizon_days`: purchases times spend per purchase."""
        return self.expected_purchases(summary, horizon_days) * self.expected_spend(summary)


@dataclass(frozen=True)
class BtydParams:
    """Fitted BG/NBD and Gamma-Gamma parameters; plain floats, so they serialise as JSON."""

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams | None
    mean_spend: float

    def to_dict(self) -> dict[str, object]:
        return {
            "bgnbd": asdict(self.bgnbd),
            "gamma_gamma": None if self.gamma_gamma is None else asdict(self.gamma_gamma),
            "mean_spend": self.mean_spend,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BtydParams:
        gg = data.get("gamma_gamma")
        return cls(
            bgnbd=BgNbdParams(**data["bgnbd"]),
            gamma_gamma=None if gg is None else GammaGammaParams(**gg),
            mean_spend=float(data["mean_spend"]),
        )

    def predictor(self) -> BtydPredictor:
        m = BtydPredictor()
        m.bgnbd_, m.gamma_gamma_, m.mean_spend_ = self.bgnbd, self.gamma_gamma, self.mean_spend
        return m


def btyd_columns(
    summary: pd.DataFrame, params: BtydParams | None, horizon_days: int
) -> pd.DataFrame:
    """The `BTYD_COLUMNS` of the customers of `summary` under `params` (all NaN without: a
    population with nothing to fit gives missing features, not an error)."""
    if params is None:
        nan = np.full(len(summary), np.nan)
        return pd.DataFrame({c: nan for c in BTYD_COLUMNS}, index=summary.index)
    m = params.predictor()
    purchases = m.expected_purchases(summary, horizon_days)
    spend = m.expected_spend(summary)
    return pd.DataFrame(
        {
            "btyd_p_alive": m.p_alive(summary),
            "btyd_p_no_purchase": m.p_no_purchase(summary, horizon_days),
            "btyd_expected_purchases": purchases,
            "btyd_expected_spend": spend,
            "btyd_clv": purchases * spend,
        },
        index=summary.index,
    )


def with_btyd(
    X: pd.DataFrame,
    tables: Tables | None,
    as_of: str | pd.Timestamp,
    settings: Settings,
    params: BtydParams | None,
    *,
    summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`X` (a feature frame at `as_of`) with the `BTYD_COLUMNS` of its customers under `params`,
    from the history before `as_of` (`summary`: its `rfm_summary`, when the caller has it; then
    `tables` is not read and may be None). A
    customer the RFM summary does not know (not in the population there) gets missing values."""
    if summary is None:
        summary = rfm_summary(tables, as_of, settings)
    summary = summary.reindex(X.index)
    known = summary.notna().all(axis=1).to_numpy()
    columns = btyd_columns(summary[known], params, settings.horizon_days).reindex(X.index)
    return pd.concat([X.drop(columns=[c for c in BTYD_COLUMNS if c in X.columns]), columns], axis=1)
