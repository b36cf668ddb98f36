"""The data contract: table names, columns, allowed values, and the validated `Tables` bundle.

Validated tables have fixed, normalised dtypes so every stage downstream can rely on them:

- `customers`: one row per customer, `customer_id` str (unique), `signup_date` datetime64[ns, UTC],
  optional `segment`, `plan`, `region` (str) and any further static attribute columns.
- `events`: `customer_id` Categorical whose categories are exactly `customers.customer_id`
  (so `.cat.codes` are row positions in `customers`), `ts` datetime64[ns, UTC], `channel`
  Categorical over `CHANNELS`, `event_type` Categorical (observed types), `amount` float64
  (NaN when absent), `resolved` pandas nullable boolean (NA when absent), `event_id` object
  (str or None; only when the source has it: the row's id, which makes ingestion idempotent).
- `feedback`: `customer_id` Categorical as above, `ts`, `survey` Categorical over `SURVEYS`,
  `score` float64 holding integers in the survey's range, `comment` object (str or None),
  `event_id` as for events.
- `churn`: `customer_id` Categorical as above (unique), `churn_date` datetime64[ns, UTC].

All timestamps are UTC. A cutoff `as_of` is exclusive: features may only use rows with
`ts < as_of`; labels use `as_of <= ts < as_of + horizon`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

CHANNELS: tuple[str, ...] = (
    "web",
    "app",
    "store",
    "phone",
    "chat",
    "email",
    "sms",
    "social",
    "other",
)
KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "visit",
    "purchase",
    "refund",
    "support_contact",
    "complaint",
    "delivery_issue",
    "payment_failed",
)
# Inclusive score range per survey. CES follows CES 2.0: 1-7 agreement that the company made it
# easy, so higher is better for all three surveys.
SURVEYS: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
# A response at or below this score counts as negative (NPS detractor, CSAT 1-2, CES 1-3).
# How exports spell booleans (compared lower-case, stripped); anything else is not a boolean.
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
NS_PER_DAY = 86_400 * 10**9

NEGATIVE_AT_OR_BELOW: dict[str, int] = {"nps": 6, "csat": 2, "ces": 3}

TABLE_NAMES: tuple[str, ...] = ("customers", "events", "feedback", "churn")
REQUIRED_TABLES: tuple[str, ...] = ("customers", "events")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_date"),
    "events": ("customer_id", "ts", "channel", "event_type"),
    "feedback": ("customer_id", "ts", "survey", "score"),
    "churn": ("customer_id", "churn_date"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("segment", "plan", "region"),
    "events": ("amount", "resolved", "event_id"),
    "feedback": ("comment", "event_id"),
    "churn": (),
}
TIME_COLUMN: dict[str, str] = {
    "customers": "signup_date",
    "events": "ts",
    "feedback": "ts",
    "churn": "churn_date",
}


class ContractError(ValueError):
    """Input that cannot be used at all (unreadable source, missing table or column).

    Row-level problems never raise: those rows go to quarantine with a reason.
    """


def to_utc(value: str | pd.Timestamp) -> pd.Timestamp:
    """A cutoff or date as a UTC timestamp; naive input is taken to be UTC already."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a date or timestamp: {value!r} (expected e.g. 2024-06-30)") from exc
    if ts is pd.NaT:
        raise ValueError(f"not a date or timestamp: {value!r} (expected e.g. 2024-06-30)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class Tables:
    """Validated contract tables. Build one with `features.validate.validate`, never by hand
    unless the frames already have the normalised dtypes described in the module docstring."""

    customers: pd.DataFrame
    events: pd.DataFrame
    feedback: pd.DataFrame | None = None
    churn: pd.DataFrame | None = None

    def data_end(self) -> pd.Timestamp | None:
        """The latest timestamp anywhere in the data (events, feedback, churn), or None."""
        stamps = [
            frame[col].max()
            for frame, col in (
                (self.events, "ts"),
                (self.feedback, "ts"),
                (self.churn, "churn_date"),
            )
            if frame is not None and len(frame)
        ]
        return max(stamps) if stamps else None

    def cut(self, as_of: str | pd.Timestamp) -> Tables:
        """What a system running at `as_of` would have seen: customers signed up before it and
        every row strictly before it. Customer categories are re-aligned to the kept customers."""
        as_of = to_utc(as_of)
        customers = self.customers.loc[self.customers["signup_date"] < as_of].reset_index(drop=True)
        ids = pd.Index(customers["customer_id"])

        def _cut(frame: pd.DataFrame | None, col: str) -> pd.DataFrame | None:
            if frame is None:
                return None
            kept = frame.loc[frame[col] < as_of].copy()
            kept["customer_id"] = kept["customer_id"].cat.set_categories(ids)
            kept = kept.loc[kept["customer_id"].notna()]
            return kept.reset_index(drop=True)

        return replace(
            self,
            customers=customers,
            events=_cut(self.events, "ts"),
            feedback=_cut(self.feedback, "ts"),
            churn=_cut(self.churn, "churn_date"),
        )

    def only(self, customer_ids: Iterable[object]) -> Tables:
        """The rows of the given customers only (unknown ids are ignored), with customer
        categories re-aligned to them. Everything per customer (population, features, labels)
        is unchanged for those customers, so labelling a few thousand customers does not pay
        for passes over every event."""
        wanted = pd.Series(list(customer_ids), dtype=object).astype(str).unique()
        keep = self.customers["customer_id"].isin(wanted).to_numpy()
        customers = self.customers.loc[keep].reset_index(drop=True)
        ids = pd.Index(customers["customer_id"])

        def _only(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            if frame is None:
                return None
            codes = frame["customer_id"].cat.codes.to_numpy()
            rows = np.zeros(len(frame), dtype=bool)
            rows[codes >= 0] = keep[codes[codes >= 0]]
            kept = frame.loc[rows].copy()
            kept["customer_id"] = kept["customer_id"].cat.set_categories(ids)
            return kept.reset_index(drop=True)

        return replace(
            self,
            customers=customers,
            events=_only(self.events),
            feedback=_only(self.feedback),
            churn=_only(self.churn),
        )
