"""Feature families: one module, one function `xxx_features(snap) -> DataFrame` each.

Every family takes the cutoff's `features.snapshot.Snapshot` and returns one row per population
customer, indexed by `snap.index` (`customer_id`), using only rows before `as_of`. Families are
pure functions of one snapshot: no clock, no I/O, no state shared across customers, so each also
runs on one customer partition at a time.

- `value`: tenure, recency, purchases and spend, spend trend, refunds (owns purchase, refund).
- `journey`: activity per channel and per event type, days since each kind of event, channel
  diversity, unresolved contacts and complaints, active days, engagement trend.
- `feedback`: NPS, CSAT and CES last, mean, count, trend; NPS class; negative responses.
- `sentiment`: VADER compound score of survey comments, aggregated per customer.
- `static`: the customers table's attributes (strings as categoricals, numbers as float64).
- `timing`: gaps between purchase days, how overdue the next one is, the same window a year ago.
- `basket`: orders, items and products per order, repeat products, units, returns (from the
  optional events columns `invoice_no`, `stock_code`, `quantity`; NaN without them).

Naming: snake_case; a look-back window of `w` days is a `_{w}d` suffix and covers
`as_of - w days <= ts < as_of`; `days_since_*` are fractional days before `as_of`. Counts are
0.0 when nothing happened; anything undefined (a mean of nothing, days since an event that never
happened, every column of a family whose table is absent) is NaN. Numeric columns are float64.
Column names are unique across families; `build_features` checks it.
"""

from features.families.basket import basket_features
from features.families.feedback import feedback_features
from features.families.journey import journey_features
from features.families.sentiment import sentiment_features
from features.families.static import static_features
from features.families.timing import timing_features
from features.families.value import value_features

FAMILIES = (
    value_features,
    journey_features,
    feedback_features,
    sentiment_features,
    static_features,
    timing_features,
    basket_features,
)

__all__ = [
    "FAMILIES",
    "basket_features",
    "feedback_features",
    "journey_features",
    "sentiment_features",
    "static_features",
    "timing_features",
    "value_features",
]
