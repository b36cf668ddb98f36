"""Value and recency (RFM): what a customer has bought, how recently, and what came back.

Owns the `purchase` and `refund` event types (journey counts every other type). Spend is the sum
of purchase `amount`s as given (a purchase without an amount counts as a purchase but adds no
spend); refund amounts are taken as positive numbers whatever their sign in the data.

Columns (`w` in `settings.features.windows_days`):

- `tenure_days`: days from `signup_date` to `as_of`.
- `days_since_last_purchase`, `days_since_last_refund`: NaN when there was none.
- `purchases_total`, `spend_total`, `avg_purchase_value` (spend per purchase with a known amount;
  NaN without one), `purchases_{w}d`, `spend_{w}d`.
- `purchase_trend_90d`, `spend_trend_90d`: the last 90 days (a) against the 90 days before them
  (b) as `(a - b) / (a + b)`, bounded in [-1, 1] (1: everything recent, -1: nothing recent, 0:
  flat); NaN when both are zero. Fixed at 90 days whatever the windows, so the feature means the
  same in every configuration.
- `refunds_total`, `refund_amount_total`, `refunds_{w}d`, `refund_amount_{w}d`.
- `refund_share`: refunded over purchased value, all history; NaN without spend. It can exceed 1
  when refunds relate to purchases from before the data starts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshot import Snapshot, days_before

TREND_DAYS = 90


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / whole, np.nan)


def _balance(recent: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    return _share(recent - earlier, recent + earlier)


def value_features(snap: Snapshot) -> pd.DataFrame:
    ev = snap.events
    windows = snap.settings.features.windows_days
    signup = snap.tables.customers["signup_date"].iloc[snap.rows]

    # Subset once: both types together are a fraction of all events, and every pass below
    # then runs on the subset only.
    purchase, refund = ev.type_code("purchase"), ev.type_code("refund")
    is_purchase = ev.event_type == purchase
    mine = is_purchase | (ev.event_type == refund)
    pos, age = ev.pos[mine], ev.age_days[mine]
    is_refund = ~is_purchase[mine]
    raw = np.nan_to_num(ev.amount[mine], nan=0.0)
    amount = np.where(is_refund, np.abs(raw), raw)
    has_amount = ~np.isnan(ev.amount[mine])

    # One pass for counts and one for amounts over every horizon needed: the feature windows,
    # the two trend periods and all history (an infinite window). Key 0: purchases, 1: refunds.
    edges = sorted({*windows, TREND_DAYS, 2 * TREND_DAYS, np.inf})
    at = {w: edges.index(w) for w in edges}
    key = is_refund.astype(np.int64)
    counts = snap.count_by_window(pos, age, key, 2, windows=edges)
    sums = snap.count_by_window(pos, age, key, 2, weights=amount, windows=edges)
    priced = snap.count(pos[has_amount & ~is_refund])

    def trend(by_window: np.ndarray) -> np.ndarray:
        # Clipped so a stray negative purchase amount cannot push the ratio out of [-1, 1].
        recent = by_window[0, at[TREND_DAYS]]
        earlier = by_window[0, at[2 * TREND_DAYS]] - recent
        return _balance(np.maximum(recent, 0.0), np.maximum(earlier, 0.0))

    spend_total = sums[0, at[np.inf]]
    cols: dict[str, np.ndarray] = {
        "tenure_days": days_before(snap.as_of, signup),
        "days_since_last_purchase": snap.min_per_customer(pos[~is_refund], age[~is_refund]),
        "days_since_last_refund": snap.min_per_customer(pos[is_refund], age[is_refund]),
        "purchases_total": counts[0, at[np.inf]],
        "spend_total": spend_total,
        "avg_purchase_value": _share(spend_total, priced),
    }
    for w in windows:
        cols[f"purchases_{w}d"] = counts[0, at[w]]
        cols[f"spend_{w}d"] = sums[0, at[w]]
    cols["purchase_trend_90d"] = trend(counts)
    cols["spend_trend_90d"] = trend(sums)
    cols["refunds_total"] = counts[1, at[np.inf]]
    cols["refund_amount_total"] = sums[1, at[np.inf]]
    for w in windows:
        cols[f"refunds_{w}d"] = counts[1, at[w]]
        cols[f"refund_amount_{w}d"] = sums[1, at[w]]
    cols["refund_share"] = _share(sums[1, at[np.inf]], spend_total)
    return snap.frame(cols)
