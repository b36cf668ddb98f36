"""The population at a cutoff and the NumPy views of its history that feature families share.

A `Snapshot` is built once per cutoff. It fixes the population (which customers get a row) and
exposes the events and feedback strictly before `as_of`, already mapped to population positions
0..n-1, so each feature family is a handful of vectorised `bincount`/`minimum.at` calls and no
family re-filters or re-joins the raw tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import CHANNELS, NS_PER_DAY, SURVEYS, Tables, to_utc


def days_before(as_of: pd.Timestamp, ts: pd.Series) -> np.ndarray:
    """Age of each timestamp at `as_of`, in (fractional) days; positive for the past."""
    return (as_of.value - ts.to_numpy(dtype="datetime64[ns]").view("int64")) / NS_PER_DAY


def population_rows(
    tables: Tables, as_of: pd.Timestamp, activity_event_types: Iterable[str]
) -> np.ndarray:
    """Row positions in `tables.customers` of the population at `as_of`, per the contract:
    signed up before `as_of` and, with a churn table, not churned before it; without one,
    with at least one activity event before it."""
    customers = tables.customers
    eligible = (customers["signup_date"] < as_of).to_numpy()
    if tables.churn is not None:
        churn = tables.churn
        gone = churn.loc[churn["churn_date"] < as_of, "customer_id"].cat.codes.to_numpy()
        eligible[gone[gone >= 0]] = False
    else:
        ev = tables.events
        is_activity = ev["event_type"].isin(list(activity_event_types)).to_numpy()
        before = (ev["ts"] < as_of).to_numpy()
        codes = ev["customer_id"].cat.codes.to_numpy()[is_activity & before]
        active = np.zeros(len(customers), dtype=bool)
        active[codes[codes >= 0]] = True
        eligible &= active
    return np.flatnonzero(eligible)


@dataclass(frozen=True)
class EventView:
    """Events before the cutoff, of population customers only, as aligned NumPy arrays."""

    pos: np.ndarray  # int64 population position of each event
    age_days: np.ndarray  # float64 days before as_of, > 0
    event_type: np.ndarray  # int codes into `event_types`
    event_types: tuple[str, ...]
    channel: np.ndarray  # int codes into contract.CHANNELS
    amount: np.ndarray  # float64, NaN when absent
    resolved: np.ndarray  # float64: 1.0 resolved, 0.0 unresolved, NaN unknown

    def type_code(self, name: str) -> int:
        """Code of an event type, or -1 when it never occurs (so masks come out empty)."""
        return self.event_types.index(name) if name in self.event_types else -1


@dataclass(frozen=True)
class FeedbackView:
    """Survey responses before the cutoff, of population customers only."""

    pos: np.ndarray
    age_days: np.ndarray
    survey: np.ndarray  # int codes into tuple(contract.SURVEYS)
    score: np.ndarray  # float64
    comment: np.ndarray  # object: str or None

    @staticmethod
    def survey_code(name: str) -> int:
        return tuple(SURVEYS).index(name)


class Snapshot:
    """Everything the feature families need about one cutoff."""

    def __init__(self, tables: Tables, as_of: str | pd.Timestamp, settings: Settings):
        self.tables = tables
        self.as_of = to_utc(as_of)
        self.settings = settings
        self.rows = population_rows(tables, self.as_of, settings.activity_event_types)
        ids = tables.customers["customer_id"].to_numpy()[self.rows]
        self.index = pd.Index(ids, name="customer_id", dtype=object)
        self.n = len(self.rows)
        self._pos = np.full(len(tables.customers), -1, dtype=np.int64)
        self._pos[self.rows] = np.arange(self.n, dtype=np.int64)

    def _keep(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Mask of rows before as_of that belong to the population, and their positions."""
        codes = frame["customer_id"].cat.codes.to_numpy()
        pos = np.where(codes >= 0, self._pos[codes], -1)
        keep = (pos >= 0) & (frame["ts"] < self.as_of).to_numpy()
        return keep, pos[keep]

    @cached_property
    def _event_rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self._keep(self.tables.events)

    def event_values(self, column: str) -> np.ndarray | None:
        """An optional (contract-extra) events column, e.g. `invoice_no`, aligned with `events`;
        None when the events table does not have it."""
        if column not in self.tables.events.columns:
            return None
        return self.tables.events[column].to_numpy()[self._event_rows[0]]

    @cached_property
    def events(self) -> EventView:
        ev = self.tables.events
        keep, pos = self._event_rows
        resolved = ev["resolved"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return EventView(
            pos=pos,
            age_days=days_before(self.as_of, ev["ts"])[keep],
            event_type=ev["event_type"].cat.codes.to_numpy()[keep],
            event_types=tuple(ev["event_type"].cat.categories),
            channel=ev["channel"].cat.codes.to_numpy()[keep],
            amount=ev["amount"].to_numpy(dtype=np.float64)[keep],
            resolved=resolved[keep],
        )

    @cached_property
    def feedback(self) -> FeedbackView | None:
        fb = self.tables.feedback
        if fb is None:
            return None
        keep, pos = self._keep(fb)
        return FeedbackView(
            pos=pos,
            age_days=days_before(self.as_of, fb["ts"])[keep],
            survey=fb["survey"].cat.codes.to_numpy()[keep],
            score=fb["score"].to_numpy(dtype=np.float64)[keep],
            comment=fb["comment"].to_numpy(dtype=object)[keep],
        )

    # Small vectorised helpers shared by the families -------------------------------------

    def count(self, pos: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-customer count (or weighted sum) of the given population positions."""
        return np.bincount(pos, weights=weights, minlength=self.n).astype(np.float64)

    def min_per_customer(self, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-customer minimum of `values`, NaN for customers with none."""
        out = np.full(self.n, np.inf)
        np.minimum.at(out, pos, values)
        out[np.isinf(out)] = np.nan
        return out

    def count_by_window(
        self,
        pos: np.ndarray,
        age_days: np.ndarray,
        key: np.ndarray | None = None,
        n_keys: int = 1,
        weights: np.ndarray | None = None,
        windows: Iterable[float] | None = None,
    ) -> np.ndarray:
        """Per-customer counts (or weighted sums) per key and window, shape
        (n_keys, n_windows, n): `[k, j]` covers rows with `key == k` and
        `age_days <= windows[j]` (default: the feature windows). One bincount over (key,
        narrowest window containing the row, customer), cumulated over windows, instead of one
        masked pass per window; customers last so each `[k, j]` is a contiguous column."""
        edges = np.asarray(
            self.settings.features.windows_days if windows is None else tuple(windows),
            dtype=np.float64,
        )
        n_windows = len(edges)
        narrowest = np.searchsorted(edges, age_days, side="left")
        inside = narrowest < n_windows
        flat = narrowest[inside]
        if key is not None:
            flat = flat + key[inside].astype(np.int64, copy=False) * n_windows
        flat = flat * self.n + pos[inside]
        sums = np.bincount(
            flat,
            weights=None if weights is None else weights[inside],
            minlength=n_keys * n_windows * self.n,
        )
        sums = sums.astype(np.float64, copy=False).reshape(n_keys, n_windows, self.n)
        return np.cumsum(sums, axis=1)

    def latest_per_customer(self, pos: np.ndarray, age_days: np.ndarray) -> np.ndarray:
        """Index (into `pos`) of each customer's latest row, -1 for customers with none. Ties
        on time go to the later row, so the choice is deterministic and survives a cut."""
        order = np.lexsort((np.arange(len(pos)), -age_days, pos))
        grouped = pos[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = grouped[1:] != grouped[:-1]
        out = np.full(self.n, -1, dtype=np.int64)
        out[grouped[last]] = order[last]
        return out

    def frame(self, columns: dict[str, np.ndarray]) -> pd.DataFrame:
        """A family's output: one row per population customer, indexed by customer_id."""
        return pd.DataFrame(columns, index=self.index)


CHANNEL_CODES = {name: i for i, name in enumerate(CHANNELS)}
