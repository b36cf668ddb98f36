"""Inter-purchase timing: how regularly a customer buys, and whether the next purchase is overdue.

Works on purchase *days* (UTC calendar days with at least one `purchase` event; several purchases
on one day are one purchase day, as in `features.rfm.rfm_summary`), so a basket split over
several lines or invoices on one day does not look like a burst of short gaps.

Columns (NaN where undefined, e.g. a gap statistic of a customer with fewer than two purchase
days):

- `purchase_days_total`: distinct purchase days before `as_of`.
- `days_since_first_purchase`: days from the first purchase day's start to `as_of`.
- `gap_mean_days`, `gap_std_days` (population std, 0 with one gap), `gap_cv` (std / mean),
  `gap_last_days` (the most recent gap), `gap_max_days`: gaps in days between consecutive
  purchase days.
- `overdue_ratio`: days since the last purchase day over the customer's own mean gap (> 1: later
  than usual). `overdue_z`: the same lateness in units of the gap std (NaN when std is 0).
- `purchase_day_rate`: purchase days per 30 days since the first purchase day.
- `purchase_days_last_year_window`: purchase days in `[as_of - 365d, as_of - 365d + horizon)`,
  the label window one year earlier (seasonality); NaN when the customer signed up after its
  start (nothing could be known about that window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import NS_PER_DAY
from features.snapshot import Snapshot, days_before

YEAR_DAYS = 365


def purchase_days(snap: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (population position, day) pairs of purchase days; day is an integer
    relative to `as_of`'s own calendar day (0 = that day, -1 = the day before...)."""
    ev = snap.events
    mine = ev.event_type == ev.type_code("purchase")
    pos = ev.pos[mine]
    into_day = (snap.as_of.value % NS_PER_DAY) / NS_PER_DAY
    day = np.floor(into_day - ev.age_days[mine]).astype(np.int64)
    if len(pos) == 0:
        return pos.astype(np.int64), day
    lo = int(day.min())
    span = int(day.max()) - lo + 1
    keys = np.unique(pos.astype(np.int64) * span + (day - lo))
    return keys // span, keys % span + lo


def timing_features(snap: Snapshot) -> pd.DataFrame:
    n = snap.n
    pos, day = purchase_days(snap)
    into_day = (snap.as_of.value % NS_PER_DAY) / NS_PER_DAY
    n_days = np.bincount(pos, minlength=n).astype(np.float64)
    nan = np.full(n, np.nan)

    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, pos, day)
    np.maximum.at(last, pos, day)
    bought = n_days > 0
    since_first = np.where(bought, into_day - first, np.nan)
    since_last = np.where(bought, into_day - last, np.nan)

    # Gaps between consecutive purchase days of the same customer (pairs are sorted by (pos, day)).
    same = pos[1:] == pos[:-1]
    gap = (day[1:] - day[:-1])[same].astype(np.float64)
    gap_pos = pos[1:][same]
    n_gaps = np.bincount(gap_pos, minlength=n).astype(np.float64)
    has_gap = n_gaps > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(gap_pos, weights=gap, minlength=n) / n_gaps
        sq = np.bincount(gap_pos, weights=gap**2, minlength=n) / n_gaps
        std = np.sqrt(np.maximum(sq - mean**2, 0.0))
        mean = np.where(has_gap, mean, np.nan)
        std = np.where(has_gap, std, np.nan)
        cv = np.where(mean > 0, std / mean, np.nan)
        overdue = np.where(mean > 0, since_last / mean, np.nan)
        overdue_z = np.where(std > 0, (since_last - mean) / std, np.nan)
        rate = np.where(bought, n_days / np.maximum(since_first, 1.0) * 30.0, np.nan)
    gap_last = nan.copy()
    gap_max = nan.copy()
    if len(gap):
        gap_last[gap_pos] = gap  # gaps are in time order per customer: the last write wins
        np.fmax.at(gap_max, gap_pos, gap)

    # Seasonality: the label window one year earlier, [as_of - 365d, as_of - 365d + horizon).
    ev = snap.events
    mine = ev.event_type == ev.type_code("purchase")
    age = ev.age_days[mine]
    horizon = float(snap.settings.horizon_days)
    in_window = (age <= YEAR_DAYS) & (age > YEAR_DAYS - horizon)
    p_pos = ev.pos[mine][in_window]
    p_day = np.floor(into_day - age[in_window]).astype(np.int64)
    if len(p_pos):
        lo = int(p_day.min())
        keys = np.unique(p_pos.astype(np.int64) * (int(p_day.max()) - lo + 1) + (p_day - lo))
        last_year = np.bincount(keys // (int(p_day.max()) - lo + 1), minlength=n)
    else:
        last_year = np.zeros(n)
    tenure = days_before(snap.as_of, snap.tables.customers["signup_date"].iloc[snap.rows])
    last_year = np.where(tenure >= YEAR_DAYS, last_year.astype(np.float64), np.nan)

    return snap.frame(
        {
            "purchase_days_total": n_days,
            "days_since_first_purchase": since_first,
            "gap_mean_days": mean,
            "gap_std_days": std,
            "gap_cv": cv,
            "gap_last_days": gap_last,
            "gap_max_days": gap_max,
            "overdue_ratio": overdue,
            "overdue_z": overdue_z,
            "purchase_day_rate": rate,
            "purchase_days_last_year_window": last_year,
        }
    )
