"""The RFM calibration summary of a population at a cutoff: per customer, repeat purchase days,
recency, age and mean repeat spend, in the lifetimes convention. It is what the buy-till-you-die
models (`model.btyd`, fitted by `training.baselines`) read, at training and at scoring time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import NS_PER_DAY, Tables
from features.snapshot import Snapshot, days_before

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")


def rfm_summary(
    tables: Tables,
    as_of: str | pd.Timestamp,
    settings: Settings,
    *,
    event_type: str = "purchase",
) -> pd.DataFrame:
    """Per-customer calibration summary for BG/NBD and Gamma-Gamma, from events before `as_of`.

    One row per customer in the population at `as_of` (as `Snapshot` defines it; `settings`
    only matters there, for the activity types of a data set without a churn table), indexed by customer_id, in the lifetimes convention with days as
    the time unit and UTC calendar days as the purchase unit (several purchases on one day are
    one purchase of their summed amount):

    - `frequency`: distinct purchase days minus 1 (repeat purchase days).
    - `recency`: days from the first to the last purchase day.
    - `T`: days from the start of the first purchase day to `as_of` (fractional when `as_of`
      is not a midnight).
    - `monetary_value`: mean amount of the repeat purchase days (the first day excluded, as in
      lifetimes); 0 when frequency is 0. A purchase without an amount adds 0.

    Customers with no purchase yet get frequency 0, recency 0 and T = tenure (days since
    signup).
    """
    snap = Snapshot(tables, as_of, settings)
    ev = snap.events
    mine = ev.event_type == ev.type_code(event_type)
    pos = ev.pos[mine]
    amount = np.nan_to_num(ev.amount[mine], nan=0.0)
    # Calendar day of each purchase relative to as_of's day (0 = as_of's own day, -1 the day
    # before...). Built from the exact integer offset of as_of within its day, so purchases
    # at midnight land on the right day with a midnight cutoff.
    into_day = (snap.as_of.value % NS_PER_DAY) / NS_PER_DAY
    day = np.floor(into_day - ev.age_days[mine]).astype(np.int64)

    n = snap.n
    tenure = days_before(snap.as_of, tables.customers["signup_date"].iloc[snap.rows])
    frequency = np.zeros(n)
    recency = np.zeros(n)
    T = np.asarray(tenure, dtype=np.float64).copy()
    monetary = np.zeros(n)
    if len(pos):
        # One row per (customer, purchase day), with that day's summed amount.
        span = int(day.max() - day.min()) + 1
        key = pos * span + (day - day.min())
        keys, inverse = np.unique(key, return_inverse=True)
        day_amount = np.bincount(inverse, weights=amount, minlength=len(keys))
        day_pos = keys // span
        day_of = keys % span + day.min()

        n_days = np.bincount(day_pos, minlength=n)
        first = np.full(n, np.iinfo(np.int64).max)
        last = np.full(n, np.iinfo(np.int64).min)
        np.minimum.at(first, day_pos, day_of)
        np.maximum.at(last, day_pos, day_of)
        bought = n_days > 0
        first_amount = np.bincount(
            day_pos, weights=np.where(day_of == first[day_pos], day_amount, 0.0), minlength=n
        )
        repeat_amount = np.bincount(day_pos, weights=day_amount, minlength=n) - first_amount

        frequency[bought] = n_days[bought] - 1
        recency[bought] = last[bought] - first[bought]
        T[bought] = into_day - first[bought]
        repeat = frequency > 0
        monetary[repeat] = repeat_amount[repeat] / frequency[repeat]
    return pd.DataFrame(
        {"frequency": frequency, "recency": recency, "T": T, "monetary_value": monetary},
        index=snap.index,
    )


def check_summary(summary: pd.DataFrame, *, monetary: bool) -> None:
    """Plain, specific errors for a summary the models cannot use."""
    needed = RFM_COLUMNS if monetary else RFM_COLUMNS[:3]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"RFM summary is missing columns {missing}; expected {list(needed)}")
    values = summary[list(needed)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("RFM summary has NaN or infinite values")
    x, t_x, T = values[:, 0], values[:, 1], values[:, 2]
    if (x < 0).any() or (t_x < 0).any() or (T < 0).any():
        raise ValueError("RFM summary has negative frequency, recency or T")
    if (t_x > T).any():
        raise ValueError("RFM summary has recency greater than T for some customers")
    if ((x == 0) & (t_x != 0)).any():
        raise ValueError("RFM summary has recency > 0 for customers with frequency 0")
