"""Matured outcomes: which past scores or contacts have a known result by the monitoring `as_of`.

A score (or an outreach selection) made at `t` with horizon `H` has matured at `as_of` when
`t + H <= as_of`: the whole label window `[t, t + H)` lies before `as_of`, so its label uses
only data the monitoring run can see. Labels are `features.labels.build_labels` at `t`, exactly
the labels training used, so matured performance measures the model on the task it was trained
for.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.contract import Tables, to_utc
from features.labels import build_labels


def utc_column(values: pd.Series, name: str) -> pd.Series:
    """A column of dates or timestamps as UTC timestamps (naive values are taken as UTC)."""
    try:
        out = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column '{name}' must hold dates or timestamps: {exc}") from exc
    if out.isna().any():
        raise ValueError(f"column '{name}' has {int(out.isna().sum())} missing dates")
    return out


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; it has {list(frame.columns)[:12]}"
        )


def matured_mask(made_at: pd.Series, as_of: str | pd.Timestamp, horizon_days: int) -> pd.Series:
    """True where `made_at + horizon_days <= as_of`."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    return made_at + pd.Timedelta(days=horizon_days) <= to_utc(as_of)


def matured_labels(
    rows: pd.DataFrame,
    tables: Tables,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    *,
    activity_event_types: Iterable[str] = ("purchase",),
    last: int | None = None,
) -> pd.DataFrame:
    """Labels for the matured `as_of` dates of `rows` (scores or outreach history, with columns
    `as_of` and `customer_id`): one row per (as_of, customer) in each date's population, with
    columns `as_of`, `customer_id`, `churned`, `future_value`. Dates that have not matured get no
    labels; the rows' customers are not filtered here (callers join on both keys).

    Each date costs one pass of `build_labels` over the events of the rows' customers: with daily
    scoring, `last=N` labels only the N most recent matured dates (matured performance reports
    the latest)."""
    require_columns(rows, ("as_of", "customer_id"), "the scores or outreach history")
    if last is not None and last < 1:
        raise ValueError(f"last must be at least 1 or None, got {last}")
    made_at = utc_column(rows["as_of"], "as_of")
    dates = sorted(made_at[matured_mask(made_at, as_of, horizon_days)].unique())
    if last is not None:
        dates = dates[-last:]
    customers = rows["customer_id"].astype(str).unique()
    if dates and len(customers) < len(tables.customers) // 2:
        # An outreach history names a few thousand customers per date, and a daily one has
        # hundreds of matured dates: each pass then runs over their rows only.
        tables = tables.only(customers)
    parts = []
    for date in dates:
        labels = build_labels(
            tables, date, horizon_days, activity_event_types=tuple(activity_event_types)
        )
        parts.append(
            labels.reset_index().assign(as_of=pd.Timestamp(date))[
                ["as_of", "customer_id", "churned", "future_value"]
            ]
        )
    if not parts:
        return pd.DataFrame(
            {
                "as_of": pd.Series([], dtype="datetime64[ns, UTC]"),
                "customer_id": pd.Series([], dtype=object),
                "churned": pd.Series([], dtype=bool),
                "future_value": pd.Series([], dtype=float),
            }
        )
    return pd.concat(parts, ignore_index=True)


def attach_outcomes(
    rows: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    name: str,
) -> tuple[pd.DataFrame, int, int]:
    """The matured rows of `rows` with their labels (`churned`, `future_value`) joined on
    (as_of, customer_id), plus how many rows had not matured and how many matured rows found no
    label (the customer was not in that date's population). The inputs are not changed."""
    require_columns(rows, ("as_of", "customer_id"), name)
    require_columns(labels, ("as_of", "customer_id", "churned"), "the labels")
    rows = rows.assign(as_of=utc_column(rows["as_of"], "as_of"))
    rows = rows.drop(columns=[c for c in ("churned", "future_value") if c in rows.columns])
    mature = matured_mask(rows["as_of"], as_of, horizon_days).to_numpy()
    pending = int((~mature).sum())
    values = [c for c in ("churned", "future_value") if c in labels.columns]
    lab_as_of = utc_column(labels["as_of"], "labels as_of")
    left = rows[mature].assign(customer_id=rows.loc[mature, "customer_id"].astype(str))
    left = left.reset_index(drop=True)
    # One id lookup per scoring date rather than a merge on (as_of, customer_id): a merge
    # factorises both keys over millions of rows, a date at a time only the ids.
    found = np.full(len(left), -1, dtype=np.int64)
    for date in left["as_of"].unique():
        on_date = np.flatnonzero((left["as_of"] == date).to_numpy())
        candidates = np.flatnonzero((lab_as_of == date).to_numpy())
        ids = pd.Index(labels["customer_id"].to_numpy()[candidates]).astype(str)
        if not ids.is_unique:
            raise ValueError(
                "the labels have repeated (as_of, customer_id) rows; expected one each"
            )
        at = ids.get_indexer(left["customer_id"].to_numpy()[on_date])
        found[on_date] = np.where(at >= 0, candidates[np.maximum(at, 0)], -1)
    labelled = found >= 0
    unlabelled = int((~labelled).sum())
    joined = left[labelled].reset_index(drop=True)
    for col in values:
        joined[col] = labels[col].to_numpy()[found[labelled]]
    joined["churned"] = joined["churned"].astype(bool)
    return joined, pending, unlabelled
