"""Labels at a cutoff, per the contract: `churned` and `future_value` over `[as_of, as_of + H)`.

The population is the same one the features use (`features.snapshot.population_rows`), so a
feature row and its label row always describe the same customers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.contract import Tables, to_utc
from features.snapshot import population_rows


def build_labels(
    tables: Tables,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    *,
    activity_event_types: Iterable[str] = ("purchase",),
) -> pd.DataFrame:
    """`churned` (bool) and `future_value` (float, floored at 0) per population customer.

    With a churn table a customer churned when its `churn_date` falls in the horizon; without
    one, when no activity event does. Labels are only meaningful once the data covers the
    whole horizon; callers (training) choose cutoffs whose horizon has matured.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    as_of = to_utc(as_of)
    end = as_of + pd.Timedelta(days=horizon_days)
    activity_event_types = tuple(activity_event_types)
    rows = population_rows(tables, as_of, activity_event_types)
    n_customers = len(tables.customers)
    pos = np.full(n_customers, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))

    ev = tables.events
    in_horizon = ((ev["ts"] >= as_of) & (ev["ts"] < end)).to_numpy()
    codes = ev["customer_id"].cat.codes.to_numpy()
    p = np.where(codes >= 0, pos[codes], -1)
    hit = in_horizon & (p >= 0)
    amount = ev["amount"].to_numpy(dtype=np.float64)
    has_amount = hit & ~np.isnan(amount)
    value = np.bincount(p[has_amount], weights=amount[has_amount], minlength=len(rows))

    if tables.churn is not None:
        ch = tables.churn
        in_h = ((ch["churn_date"] >= as_of) & (ch["churn_date"] < end)).to_numpy()
        c = ch["customer_id"].cat.codes.to_numpy()
        c = np.where(c >= 0, pos[c], -1)
        churned = np.zeros(len(rows), dtype=bool)
        churned[c[in_h & (c >= 0)]] = True
    else:
        active = hit & ev["event_type"].isin(list(activity_event_types)).to_numpy()
        churned = np.bincount(p[active], minlength=len(rows)) == 0

    ids = tables.customers["customer_id"].to_numpy()[rows]
    return pd.DataFrame(
        {"churned": churned, "future_value": np.maximum(value, 0.0)},
        index=pd.Index(ids, name="customer_id", dtype=object),
    )
