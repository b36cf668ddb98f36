"""The loop measured: how fast recovery cases are answered and closed, whether the SLA is kept,
the queue per owner, and the recovery effect - churn within the horizon (and the next NPS answer,
where there is one) of customers whose negative moment opened a case against the held-out ones.

Recovery effect: a moment at time t is labelled like an outreach selection made at the start of
the next UTC day (`features.labels.build_labels` at that day: did the customer leave within the
horizon after it), so only moments whose horizon has matured count, and each label window starts
after the moment. Moments that opened a case or joined one are the treated group; held-out
moments the control. The estimate, its Newcombe interval and the "not enough data yet" rule are
`monitoring.effect.outreach_effect`'s, so both effects read alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from features.contract import Tables, to_utc
from monitoring.effect import CONTACT, CONTROL, EffectResult, outreach_effect
from monitoring.outcomes import matured_labels
from monitoring.settings import MonitoringSettings
from serving.loop.cases import case_kpis

__all__ = ["case_kpis", "first_in_window", "read_moments", "recovery_effect"]

TREATED = ("opened", "added")
HELD_OUT = "held_out"


def first_in_window(customer_ids: pd.Series, ts: pd.Series, horizon_days: int) -> np.ndarray:
    """Mask of the moments that start a window: no earlier counted moment of the same customer
    within the horizon before it. Later moments in a window share its outcome (they joined the
    open case, or the customer stayed held out), so counting them would count one customer's
    outcome several times and label windows that the first moment's treatment overlaps."""
    order = np.lexsort((ts.to_numpy(), customer_ids.to_numpy()))
    ids = customer_ids.to_numpy()[order]
    stamps = ts.to_numpy(dtype="datetime64[ns]").view("int64")[order]
    span = horizon_days * 86_400 * 10**9
    keep = np.zeros(len(order), dtype=bool)
    last_id, last_start = None, 0
    for k, (cid, t) in enumerate(zip(ids, stamps, strict=True)):
        if cid != last_id or t >= last_start + span:
            keep[k] = True
            last_id, last_start = cid, t
    out = np.zeros(len(order), dtype=bool)
    out[order] = keep
    return out


def moment_groups(moments: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """The moments that count for the recovery effect as an outreach-like history: `as_of` (the
    start of the day after the moment), `customer_id`, `group` (contact = a case was opened or
    joined; control = held out) and `campaign` (the moment's reason); only the first moment of
    each customer's window (`first_in_window`)."""
    treated = moments["outcome"].isin(TREATED)
    control = moments["outcome"] == HELD_OUT
    rows = moments[treated | control]
    rows = rows[first_in_window(rows["customer_id"].astype(str), rows["ts"], horizon_days)]
    return pd.DataFrame(
        {
            "as_of": rows["ts"].dt.floor("D") + pd.Timedelta(days=1),
            "customer_id": rows["customer_id"].astype(str),
            "group": np.where(rows["outcome"] == HELD_OUT, CONTROL, CONTACT),
            "campaign": rows["reason"].astype(str),
            "ts": rows["ts"],
        }
    ).reset_index(drop=True)


@dataclass(frozen=True)
class NextNps:
    """Mean of each group's next NPS answer within the horizon after its moment."""

    n_contact: int
    n_control: int
    mean_contact: float | None
    mean_control: float | None
    difference: float | None  # contacted minus control (positive when recovery helps)
    low: float | None
    high: float | None


def next_nps(
    groups: pd.DataFrame, tables: Tables, as_of: pd.Timestamp, horizon_days: int, confidence: float
) -> NextNps:
    """Each moment's first NPS answer after it and within the horizon (and before `as_of`);
    the difference of the group means with a Welch normal interval."""
    fb = tables.feedback
    values = {CONTACT: [], CONTROL: []}
    if fb is not None and len(groups):
        nps = fb[(fb["survey"] == "nps") & (fb["ts"] < as_of)]
        nps = nps.assign(customer_id=nps["customer_id"].astype(str)).sort_values("ts")
        by_customer = {cid: part for cid, part in nps.groupby("customer_id", sort=False)}
        window = pd.Timedelta(days=horizon_days)
        for row in groups.itertuples(index=False):
            part = by_customer.get(row.customer_id)
            if part is None:
                continue
            after = part[(part["ts"] > row.ts) & (part["ts"] < row.ts + window)]
            if len(after):
                values[row.group].append(float(after["score"].iloc[0]))
    a, b = np.array(values[CONTACT]), np.array(values[CONTROL])
    if len(a) < 2 or len(b) < 2:
        return NextNps(len(a), len(b), _mean(a), _mean(b), None, None, None)
    d = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return NextNps(len(a), len(b), float(a.mean()), float(b.mean()), d, d - z * se, d + z * se)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def recovery_effect(
    moments: pd.DataFrame,
    tables: Tables,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    settings: MonitoringSettings,
    *,
    activity_event_types: tuple[str, ...] = ("purchase",),
) -> tuple[EffectResult, NextNps]:
    """The recovery effect (see the module docstring) of the moments recorded before `as_of`."""
    as_of = to_utc(as_of)
    groups = moment_groups(moments[moments["ts"] < as_of], horizon_days)
    labels = matured_labels(
        groups, tables, as_of, horizon_days, activity_event_types=activity_event_types
    )
    effect = outreach_effect(groups.drop(columns="ts"), labels, as_of, horizon_days, settings)
    return effect, next_nps(groups, tables, as_of, horizon_days, settings.confidence)


def read_moments(store) -> pd.DataFrame:
    """Every recorded moment (timestamps UTC): what the recovery effect reads."""
    from sqlalchemy import select

    m = store.t.moments
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(select(m)).mappings().all(), columns=m.columns.keys())
    for col in ("ts", "recorded_at"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
    return frame
