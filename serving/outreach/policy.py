"""The outreach policy: which customers of a scored list are selected at an explicit `as_of`,
who of them is held out as control, the campaign window, the idempotency key and the run id
(see the package docstring for the definitions).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from configs import OutreachSettings
from serving.core.columns import REASON_COLUMNS, SCORE_COLUMNS

WEBHOOK_URL_ENV = "RETAIN_OUTREACH_WEBHOOK_URL"

CONTACT, CONTROL = "contact", "control"
PENDING, SENT, FAILED = "pending", "sent", "failed"  # contacts; control rows have status `control`
STATUSES = (PENDING, SENT, FAILED, CONTROL)

REQUIRED_COLUMNS = ("customer_id", "churn_probability", "clv", "value_at_risk")
OPTIONAL_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in REQUIRED_COLUMNS)
# Policy keys worth keeping with each run; URLs are left out (they may carry credentials).
POLICY_KEYS = (
    "campaign",
    "min_churn_probability",
    "min_clv",
    "capacity_per_run",
    "cooldown_days",
    "control_share",
    "exclude_segments",
    "exclude_customers",
)
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")

Progress = Callable[[str], None]


class OutreachError(ValueError):
    """Outreach input or outbox state that cannot be used; the message says what and where."""


class NoOutboxError(OutreachError):
    """Reading an outbox that was never created."""


@dataclass(frozen=True)
class CampaignWindow:
    start: pd.Timestamp
    days: int

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d}/{self.days}d"


def campaign_window(as_of: pd.Timestamp, cooldown_days: int) -> CampaignWindow:
    """The cooldown-long period (counted from 1970-01-01, UTC) that contains `as_of`."""
    days = max(int(cooldown_days), 1)
    day = (utc(as_of).normalize() - _EPOCH).days
    return CampaignWindow(_EPOCH + pd.Timedelta(days=(day // days) * days), days)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


def idempotency_key(campaign: str, window: str, customer_id: str) -> str:
    """Stable per customer and campaign window; what the receiver deduplicates on."""
    return _digest(campaign, window, str(customer_id))[:32]


def control_draw(campaign: str, window: str, customer_id: str) -> float:
    """A uniform draw in [0, 1) from a hash, so a rerun assigns every customer the same group."""
    return int(_digest("control", campaign, window, str(customer_id))[:16], 16) / 2.0**64


def run_id_for(campaign: str, as_of: pd.Timestamp) -> str:
    return f"{campaign}@{utc(as_of):%Y-%m-%dT%H:%M:%SZ}"


@dataclass
class Selection:
    """The outcome of the policy on one scored list: who is selected and why the others are not."""

    run_id: str
    campaign: str
    as_of: pd.Timestamp
    window: CampaignWindow
    rows: pd.DataFrame  # one row per selected customer, ranked; `group` is contact or control
    counts: dict[str, int] = field(default_factory=dict)


def utc(ts: pd.Timestamp | str | datetime) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_scored(scored: pd.DataFrame, policy: OutreachSettings) -> pd.DataFrame:
    if not isinstance(scored, pd.DataFrame):
        raise OutreachError(f"scored list: expected a DataFrame, got {type(scored).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in scored.columns]
    if missing:
        raise OutreachError(
            f"scored list: missing column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)}"
        )
    if policy.exclude_segments and "segment" not in scored.columns:
        raise OutreachError(
            "scored list: outreach.exclude_segments is set but the list has no `segment` column"
        )
    frame = scored.loc[:, [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in scored]]
    frame = frame.assign(customer_id=frame["customer_id"].astype(str))
    duplicated = frame["customer_id"].duplicated()
    if duplicated.any():
        dupes = frame.loc[duplicated, "customer_id"].head(5).tolist()
        raise OutreachError(f"scored list: customer_id must be unique, repeated: {dupes}")
    for col in ("churn_probability", "clv", "value_at_risk"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in OPTIONAL_COLUMNS:
        if col not in frame:
            frame[col] = np.nan if col in ("clv_low", "clv_high") else None
    return frame


def select_contacts(
    scored: pd.DataFrame,
    as_of: pd.Timestamp | str,
    policy: OutreachSettings,
    *,
    in_cooldown: Iterable[str] = (),
    keys_taken: Iterable[str] = (),
) -> Selection:
    """Apply the policy to a scored list. `in_cooldown`: customers selected too recently (from the
    outbox); `keys_taken`: idempotency keys already in the outbox for this campaign window."""
    as_of = utc(as_of)
    window = campaign_window(as_of, policy.cooldown_days)
    frame = _check_scored(scored, policy)
    frame = frame.sort_values(
        ["value_at_risk", "customer_id"], ascending=[False, True], kind="mergesort"
    )
    frame = frame.reset_index(drop=True)

    rules = {
        "below_min_churn_probability": frame["churn_probability"].ge(policy.min_churn_probability),
        "below_min_clv": frame["clv"].ge(policy.min_clv),
        "excluded_segment": ~frame["segment"].isin(policy.exclude_segments),
        "excluded_customer": ~frame["customer_id"].isin(policy.exclude_customers),
        "in_cooldown": ~frame["customer_id"].isin(set(in_cooldown)),
    }
    counts = {"candidates": len(frame)}
    keep = pd.Series(True, index=frame.index)
    for reason, passes in rules.items():
        counts[reason] = int((keep & ~passes).sum())
        keep &= passes
    eligible = frame[keep]

    taken = set(keys_taken)
    chunk = max(1024, 2 * policy.capacity_per_run)
    parts, contacts, start, already = [], 0, 0, 0
    while contacts < policy.capacity_per_run and start < len(eligible):
        part = eligible.iloc[start : start + chunk]
        start += chunk
        ids = part["customer_id"].tolist()
        keys = np.array([idempotency_key(policy.campaign, window.label, c) for c in ids])
        fresh = ~np.isin(keys, list(taken)) if taken else np.ones(len(ids), dtype=bool)
        already += int((~fresh).sum())
        draws = np.array([control_draw(policy.campaign, window.label, c) for c in ids])
        part = part.assign(idempotency_key=keys, control_draw=draws)[fresh]
        is_contact = part["control_draw"].to_numpy() >= policy.control_share
        reached = np.flatnonzero(contacts + np.cumsum(is_contact) >= policy.capacity_per_run)
        if len(reached):
            part, is_contact = part.iloc[: reached[0] + 1], is_contact[: reached[0] + 1]
        contacts += int(is_contact.sum())
        parts.append(part.assign(group=np.where(is_contact, CONTACT, CONTROL)))

    rows = pd.concat(parts, ignore_index=True) if parts else _empty_selection(eligible)
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    counts["already_in_window"] = already
    counts["eligible"] = len(eligible) - already
    counts["selected"] = len(rows)
    counts["contact"] = int((rows["group"] == CONTACT).sum())
    counts["control"] = int((rows["group"] == CONTROL).sum())
    counts["beyond_capacity"] = counts["eligible"] - counts["selected"]
    return Selection(
        run_id_for(policy.campaign, as_of), policy.campaign, as_of, window, rows, counts
    )


def fill_reasons(rows: pd.DataFrame, explain: Callable[[list[str]], pd.DataFrame]) -> pd.DataFrame:
    """Reasons from `explain` for the selected customers that have none."""
    reason_1 = rows["reason_1"]
    missing = reason_1.isna() | reason_1.astype(str).str.strip().eq("")
    if not missing.any():
        return rows
    ids = rows.loc[missing, "customer_id"].tolist()
    found = explain(ids)
    columns = [c for c in REASON_COLUMNS if c in found.columns]
    found = found.set_axis(found.index.astype(str)).reindex(ids)[columns]
    out = rows.copy()
    out.loc[missing, columns] = found.to_numpy()
    return out


def _empty_selection(like: pd.DataFrame) -> pd.DataFrame:
    return like.iloc[:0].assign(
        idempotency_key=pd.Series([], dtype=object),
        control_draw=pd.Series([], dtype=float),
        group=pd.Series([], dtype=object),
    )


def slug(text: str) -> str:
    """A file-name-safe form of a campaign or run id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"
