"""Static: the customers table's own attributes (`segment`, `plan`, `region` and any further
columns), one column each under its name in the table; `customer_id` and `signup_date` are left
out (the value family turns `signup_date` into `tenure_days`).

- numbers and booleans -> float64;
- datetimes -> days before `as_of` (float64; naive ones taken as UTC), so they mean the same
  at every cutoff;
- anything else -> pandas Categorical over the sorted distinct non-null values (as strings) of the
  population's rows, so the categories depend only on customers seen before `as_of`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from features.snapshot import Snapshot, days_before

EXCLUDED: tuple[str, ...] = ("customer_id", "signup_date")


def _categorical(values: pd.Series) -> pd.Categorical:
    present = values.notna().to_numpy()
    text = np.full(len(values), None, dtype=object)
    text[present] = values[present].astype(str).to_numpy(dtype=object)
    categories = sorted(set(text[present]))
    return pd.Categorical(text, categories=pd.Index(categories, dtype=object))


def static_features(snap: Snapshot) -> pd.DataFrame:
    customers = snap.tables.customers
    rows = customers.iloc[snap.rows]
    cols: dict[str, np.ndarray | pd.Categorical] = {}
    for name in customers.columns:
        if name in EXCLUDED:
            continue
        values = rows[name]
        if ptypes.is_bool_dtype(values) or (
            ptypes.is_numeric_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype)
        ):
            # Via the nullable Float64 so pandas' NA (Int64, boolean columns) becomes NaN.
            cols[name] = values.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        elif ptypes.is_datetime64_any_dtype(values):
            stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
            days = days_before(snap.as_of, stamps.dt.tz_convert("UTC"))
            cols[name] = np.where(values.isna().to_numpy(), np.nan, days)
        else:
            cols[name] = _categorical(values)
    return snap.frame(cols)
