"""Outreach effect: did contacting at-risk customers keep more of them than the held-out control?

The outreach policy records every selected customer in the outbox, `contact` (reached) or
`control` (selected the same way, held out at random by a hash, never contacted). Once a
selection's horizon has matured, its `churned` label (`features.labels.build_labels` at the
selection's `as_of`) says whether the customer left within the horizon. Then:

- churn rate of contacted and of control customers;
- `difference` = control rate minus contacted rate: churn prevented per contacted customer
  (positive when outreach helps), with a confidence interval by Newcombe's hybrid score method
  (method 10 of Newcombe 1998: each rate's Wilson score interval, combined). It keeps close to
  its nominal coverage for small groups and rates near 0 or 1, where the normal (Wald)
  approximation is too narrow and can leave [-1, 1]; for large groups the two agree;
- `relative_effect` = difference / control rate: the share of the control's churn that outreach
  prevented, with the interval from the log risk ratio (Katz), `1 - RR` at its bounds.

Every selection counts once: a customer selected in two runs (after the cooldown) adds a row to
each run. Below `min_matured_per_group` matured outcomes in either group the result has status
"not enough data yet" and no numbers, so nobody reads an effect into noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from features.contract import to_utc
from monitoring.outcomes import attach_outcomes, require_columns
from monitoring.settings import MonitoringSettings

OK, NOT_ENOUGH = "ok", "not enough data yet"
CONTACT, CONTROL = "contact", "control"
METHOD = "Newcombe hybrid score interval (Wilson) for the difference of two proportions"
EFFECT_FIELDS = (
    "status",
    "message",
    "n_contact",
    "n_control",
    "churned_contact",
    "churned_control",
    "churn_rate_contact",
    "churn_rate_control",
    "difference",
    "difference_low",
    "difference_high",
    "relative_effect",
    "relative_effect_low",
    "relative_effect_high",
)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """p1 - p2 and its Newcombe hybrid score interval (p1 = x1/n1, p2 = x2/n2)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def _relative_interval(
    x_contact: int, n_contact: int, x_control: int, n_control: int, confidence: float
) -> tuple[float, float, float]:
    """1 - RR (RR = contacted rate / control rate) with the Katz log interval; NaN where the
    ratio is undefined (no churn in control) or its log is (no churn among the contacted)."""
    if x_control == 0:
        return math.nan, math.nan, math.nan
    rr = (x_contact / n_contact) / (x_control / n_control)
    if x_contact == 0:
        return 1.0 - rr, math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    se = math.sqrt(1 / x_contact - 1 / n_contact + 1 / x_control - 1 / n_control)
    lo_rr, hi_rr = rr * math.exp(-z * se), rr * math.exp(z * se)
    return 1.0 - rr, 1.0 - hi_rr, 1.0 - lo_rr


def _estimate(outcomes: pd.DataFrame, settings: MonitoringSettings) -> dict[str, Any]:
    group = outcomes["group"].to_numpy()
    churned = outcomes["churned"].to_numpy(dtype=bool)
    n_contact = int((group == CONTACT).sum())
    n_control = int((group == CONTROL).sum())
    x_contact = int((churned & (group == CONTACT)).sum())
    x_control = int((churned & (group == CONTROL)).sum())
    out: dict[str, Any] = dict.fromkeys(EFFECT_FIELDS)
    out.update(
        n_contact=n_contact,
        n_control=n_control,
        churned_contact=x_contact,
        churned_control=x_control,
    )
    need = settings.min_matured_per_group
    if min(n_contact, n_control) < need:
        out["status"] = NOT_ENOUGH
        out["message"] = (
            f"{NOT_ENOUGH}: {n_contact:,} contacted and {n_control:,} control outcomes have "
            f"matured; at least {need:,} of each are needed"
        )
        # The churned counts would give the rates away: report only how many have matured.
        out["churned_contact"] = out["churned_control"] = None
        return out
    d, low, high = difference_interval(
        x_control, n_control, x_contact, n_contact, settings.confidence
    )
    rel, rel_low, rel_high = _relative_interval(
        x_contact, n_contact, x_control, n_control, settings.confidence
    )
    out.update(
        status=OK,
        churn_rate_contact=x_contact / n_contact,
        churn_rate_control=x_control / n_control,
        difference=d,
        difference_low=low,
        difference_high=high,
        relative_effect=rel,
        relative_effect_low=rel_low,
        relative_effect_high=rel_high,
    )
    pct = round(100 * settings.confidence)
    out["message"] = (
        f"churn {100 * out['churn_rate_contact']:.1f}% contacted vs "
        f"{100 * out['churn_rate_control']:.1f}% control: {100 * d:+.1f} points prevented "
        f"({pct}% CI {100 * low:+.1f} to {100 * high:+.1f})"
    )
    return out


@dataclass(frozen=True)
class EffectResult:
    as_of: pd.Timestamp
    horizon_days: int
    confidence: float
    method: str
    overall: dict[str, Any]  # EFFECT_FIELDS
    by_campaign: pd.DataFrame  # one row per campaign, EFFECT_FIELDS as columns
    n_pending: int  # selections whose horizon has not matured
    n_unlabelled: int  # matured selections without an outcome (not in the population then)
    outcomes: pd.DataFrame  # the matured selections with `churned`

    @property
    def status(self) -> str:
        return self.overall["status"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "confidence": self.confidence,
            "method": self.method,
            "n_pending": self.n_pending,
            "n_unlabelled": self.n_unlabelled,
            **{k: _plain(v) for k, v in self.overall.items()},
            "by_campaign": {
                str(row["campaign"]): {k: _plain(row[k]) for k in EFFECT_FIELDS}
                for _, row in self.by_campaign.iterrows()
            },
        }


def _plain(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if np.isfinite(v) else None
    return v


def outreach_effect(
    history: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    settings: MonitoringSettings,
) -> EffectResult:
    """The effect of outreach from the outbox `history` (one row per selected customer and run,
    with `as_of`, `customer_id`, `group` in {contact, control} and optionally `campaign`) and
    `labels` (`as_of`, `customer_id`, `churned`, as `monitoring.outcomes.matured_labels` builds
    them from the history). Only selections whose horizon has matured by `as_of` count."""
    as_of = to_utc(as_of)
    require_columns(history, ("as_of", "customer_id", "group"), "the outreach history")
    groups = set(history["group"].dropna().unique()) - {CONTACT, CONTROL}
    if groups or history["group"].isna().any():
        raise ValueError(
            f"the outreach history's group must be '{CONTACT}' or '{CONTROL}', got "
            f"{sorted(map(str, groups)) or ['missing values']}"
        )
    if "campaign" not in history.columns:
        history = history.assign(campaign="(all)")
    outcomes, pending, unlabelled = attach_outcomes(
        history, labels, as_of, horizon_days, "the outreach history"
    )
    campaigns = [
        {"campaign": str(name), **_estimate(part, settings)}
        for name, part in outcomes.groupby(outcomes["campaign"].astype(str), sort=True)
    ]
    return EffectResult(
        as_of=as_of,
        horizon_days=horizon_days,
        confidence=settings.confidence,
        method=METHOD,
        overall=_estimate(outcomes, settings),
        by_campaign=pd.DataFrame(campaigns, columns=["campaign", *EFFECT_FIELDS]),
        n_pending=pending,
        n_unlabelled=unlabelled,
        outcomes=outcomes,
    )
