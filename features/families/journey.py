"""Journey: how, where and how much a customer interacts, and what went wrong along the way.

Owns every event type except `purchase` and `refund` (the value family's), plus activity across
all types (channel mix, last event, active days, engagement trend).

Columns (`w` in `settings.features.windows_days`, `W` the largest window):

- `events_{w}d`: events of any type; `events_{channel}_{w}d` for every channel in
  `contract.CHANNELS`.
- `{type}_{w}d` for visit, support_contact, complaint, delivery_issue, payment_failed (the
  moments of truth are among them); `other_events_{w}d` for types outside
  `contract.KNOWN_EVENT_TYPES`.
- `days_since_last_{type}` for the same five types, `days_since_last_event` (any type); NaN when
  there was none.
- `channels_used_{W}d` (distinct channels) and `channel_entropy_{W}d` (Shannon entropy of the
  channel mix, natural log: 0 for a single channel, ln 9 for all nine evenly; NaN without events).
- `unresolved_complaints_{w}d` (complaints with `resolved` false) and `unresolved_share_{w}d`
  (unresolved over support contacts and complaints whose `resolved` is known; NaN without any).
- `active_days_{w}d`: distinct 24-hour periods counted back from `as_of` with any event.
- `engagement_trend_30d`: events in the last 30 days (a) against the 30 before them (b) as
  `(a - b) / (a + b)` in [-1, 1]; NaN when both are zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import CHANNELS, KNOWN_EVENT_TYPES
from features.snapshot import Snapshot

OWNED_TYPES: tuple[str, ...] = tuple(
    t for t in KNOWN_EVENT_TYPES if t not in ("purchase", "refund")
)
TREND_DAYS = 30


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / whole, np.nan)


def _min_by_key(snap: Snapshot, pos: np.ndarray, key: np.ndarray, n_keys: int, values):
    """Per-key, per-customer minimum, shape (n_keys, n), NaN where there is none."""
    out = np.full(n_keys * snap.n, np.inf)
    np.minimum.at(out, key * snap.n + pos, values)
    out[np.isinf(out)] = np.nan
    return out.reshape(n_keys, snap.n)


def journey_features(snap: Snapshot) -> pd.DataFrame:
    ev = snap.events
    windows = snap.settings.features.windows_days
    widest = windows[-1]

    # Each event type maps to a bucket: one per owned type, then "other"; -1 for the value
    # family's types, which are left out of the per-type counts.
    other = len(OWNED_TYPES)
    bucket_of = np.array(
        [
            OWNED_TYPES.index(t) if t in OWNED_TYPES else (-1 if t in KNOWN_EVENT_TYPES else other)
            for t in ev.event_types
        ],
        dtype=np.int64,
    )
    bucket = bucket_of[ev.event_type]
    typed = bucket >= 0

    # The engagement trend's two periods ride along with the feature windows in the same pass.
    edges = sorted({*windows, TREND_DAYS, 2 * TREND_DAYS})
    at = {w: edges.index(w) for w in edges}
    channel = ev.channel.astype(np.int64)
    by_channel = snap.count_by_window(ev.pos, ev.age_days, channel, len(CHANNELS), windows=edges)
    by_type = snap.count_by_window(ev.pos[typed], ev.age_days[typed], bucket[typed], other + 1)
    last_of_type = _min_by_key(snap, ev.pos[typed], bucket[typed], other + 1, ev.age_days[typed])

    cols: dict[str, np.ndarray] = {}
    all_events = by_channel.sum(axis=0)
    for w in windows:
        cols[f"events_{w}d"] = all_events[at[w]]
    for c, name in enumerate(CHANNELS):
        for w in windows:
            cols[f"events_{name}_{w}d"] = by_channel[c, at[w]]
    for b, name in enumerate((*OWNED_TYPES, "other_events")):
        for j, w in enumerate(windows):
            cols[f"{name}_{w}d"] = by_type[b, j]
    for b, name in enumerate(OWNED_TYPES):
        cols[f"days_since_last_{name}"] = last_of_type[b]
    cols["days_since_last_event"] = snap.min_per_customer(ev.pos, ev.age_days)

    mix = by_channel[:, at[widest]]
    total = all_events[at[widest]]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = mix / total
        entropy = -np.where(mix > 0, p * np.log(p), 0.0).sum(axis=0)
    cols[f"channels_used_{widest}d"] = (mix > 0).sum(axis=0).astype(np.float64)
    cols[f"channel_entropy_{widest}d"] = np.where(total > 0, entropy + 0.0, np.nan)

    # Resolution: key = 2 * is_complaint + is_unresolved over contacts whose outcome is known.
    contact, complaint = ev.type_code("support_contact"), ev.type_code("complaint")
    is_complaint = ev.event_type == complaint
    known = ((ev.event_type == contact) | is_complaint) & ~np.isnan(ev.resolved)
    outcome = 2 * is_complaint[known] + (ev.resolved[known] == 0.0)
    resolution = snap.count_by_window(ev.pos[known], ev.age_days[known], outcome, 4)
    for j, w in enumerate(windows):
        cols[f"unresolved_complaints_{w}d"] = resolution[3, j]
    for j, w in enumerate(windows):
        unresolved = resolution[1, j] + resolution[3, j]
        cols[f"unresolved_share_{w}d"] = _share(unresolved, resolution[:, j].sum(axis=0))

    # Period p holds ages in (p, p + 1], so a w-day window is exactly periods 0..w-1. Each
    # (customer, period) pair is kept once (sort + neighbour compare: much faster than
    # np.unique's hashing here), then binned by window like any other row.
    recent = ev.age_days <= widest
    period = np.ceil(ev.age_days[recent]).astype(np.int64) - 1
    pairs = np.sort(ev.pos[recent] * widest + period)
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
    active = snap.count_by_window(pairs // widest, (pairs % widest + 1).astype(np.float64))
    for j, w in enumerate(windows):
        cols[f"active_days_{w}d"] = active[0, j]

    recent_events = all_events[at[TREND_DAYS]]
    earlier_events = all_events[at[2 * TREND_DAYS]] - recent_events
    cols["engagement_trend_30d"] = _share(
        recent_events - earlier_events, recent_events + earlier_events
    )
    return snap.frame(cols)
