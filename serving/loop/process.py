"""The loop's one step: take the inbox rows the loop has not handled yet, rescore each of their
customers at once with the champion models (from the whole history as of just after the
customer's newest row; `rescore_times` puts customers whose rows arrived within
`loop.rescore_window_s` together), find the negative moments among the rows, decide for each whether it
opens a case, joins an open one, is held out or does not qualify, and commit all of it - score
history, moments, cases, their history and hand-offs, and the rows marked handled - in one
transaction. A process killed at any point therefore leaves the rows unhandled (done again, with
the same decisions, since the holdout draw is a hash) or handled once.

Several processes (service replicas, workers) may share one store: each step handles the rows
it is given (`only`: the rows its own process ingested) and the rows left pending longer than
`loop.stale_after_s` (a crashed process's, or `retain ingest`'s), and its transaction marks
them handled only if no other step did first; otherwise it is rolled back whole (`Handled.taken`)
and the rows count once, as the other step decided them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from configs import Settings
from features.inbox import read_inbox
from serving.core.champions import Champions
from serving.core.columns import SCORE_COLUMNS
from serving.core.ranking import population_features
from serving.core.scoring import score_frame
from serving.loop.cases import CASE_SCORES, RECOVERY, Opening, open_or_add
from serving.loop.history import History
from serving.loop.moments import negative_moments
from store import Store, lost_race, naive_utc, plain

# Just after the row: `as_of` is exclusive, and the row that triggered the rescoring must count.
AFTER_ROW = pd.Timedelta(1, "us")
# What a rescoring stores in the score history: the ranked list's columns after the segment.
SCORE_KEYS = SCORE_COLUMNS[2:]
# What a moment's decision can be.
OPENED, ADDED, HELD_OUT = "opened", "added", "held_out"
NOT_SCORED, EXCLUDED, NOT_QUALIFIED = "not_scored", "excluded", "not_qualified"
COOLDOWN, OVER_CAPACITY = "cooldown", "over_capacity"


def holdout_draw(salt: str, row_id: str) -> float:
    """The moment's reproducible uniform draw in [0, 1) (the first 60 bits of a SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x1f{row_id}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


@dataclass
class Handled:
    """What one step did: rows handled (their row ids), customers rescored (their new scores, by
    customer id) and each moment's decision. `taken`: another process handled some of the rows
    first, so this step committed nothing."""

    rows: int = 0
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    moments: list[dict[str, Any]] = field(default_factory=list)
    row_ids: set[str] = field(default_factory=set)
    taken: bool = False
    # Every row id pending when the step read the inbox (None when the read was cut at its
    # limit): a row a process stored and that is not among them was handled by someone.
    pending_ids: set[str] | None = None

    def opened(self) -> list[int]:
        return [m["case_id"] for m in self.moments if m["outcome"] == OPENED]


def rescore_times(
    newest: dict[str, pd.Timestamp], window_s: float
) -> dict[pd.Timestamp, list[str]]:
    """Customers grouped by the instant they are rescored at: sorted by their newest row, a group
    runs while rows lie within `window_s` seconds of its first, and is rescored just after its
    newest row (one `build_features` call per group instead of per customer). With 0 every
    customer is rescored just after their own newest row."""
    order = sorted(newest.items(), key=lambda kv: kv[1])
    groups: list[list[tuple[str, pd.Timestamp]]] = []
    span = pd.Timedelta(seconds=window_s)
    for cid, ts in order:
        if groups and ts - groups[-1][0][1] <= span:
            groups[-1].append((cid, ts))
        else:
            groups.append([(cid, ts)])
    return {group[-1][1] + AFTER_ROW: [cid for cid, _ in group] for group in groups}


def rescore(
    history: History, champions: Champions, settings: Settings, newest: dict[str, pd.Timestamp]
) -> pd.DataFrame:
    """Scores with reasons of each customer, as of just after their newest row or, for customers
    whose newest rows lie within `loop.rescore_window_s` of each other, just after the newest of
    those (`as_of` column); indexed by customer id. Customers outside the population at that
    instant are left out."""
    parts = []
    by_time = rescore_times(newest, settings.loop.rescore_window_s)
    for as_of, ids in by_time.items():
        X = population_features(history.tables_of(ids), as_of, champions, settings)
        if not len(X):
            continue
        scores = score_frame(X, champions, settings, reasons=True)
        scores["as_of"] = as_of
        parts.append(scores)
    if not parts:
        return pd.DataFrame(columns=[*SCORE_KEYS, "as_of"])
    out = pd.concat(parts) if len(parts) > 1 else parts[0]
    out.index = out.index.astype(str)
    return out


def process_pending(
    store: Store,
    history: History,
    champions: Champions,
    settings: Settings,
    *,
    now: datetime,
    limit: int = 10_000,
    only: set[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Handled:
    """One step of the loop over the inbox rows not yet handled (at most `limit` per table):
    all of them, or with `only` those row ids and the rows pending for longer than
    `loop.stale_after_s`."""
    now = naive_utc(now)
    # One read: the rows new to the history (whoever stored them: this process, retain ingest,
    # another replica) and the rows not handled yet (mostly the same ones).
    read = read_inbox(store, after=history.seen_seq, or_pending=True, limit=limit)
    history.add_inbox(read)
    stale = now - timedelta(seconds=settings.loop.stale_after_s)
    handled = Handled()
    if all(len(frame) < limit for frame in read.values()):
        handled.pending_ids = {
            str(r) for frame in read.values() for r in frame.loc[frame["pending"], "row_id"]
        }
    rows = {}
    for name, frame in read.items():
        take = frame["pending"].to_numpy()
        if only is not None and take.any():
            take &= frame["row_id"].isin(only).to_numpy() | (frame["received_at"] <= stale)
        if take.any():
            rows[name] = (
                frame.loc[take].drop(columns=["pending", "received_at"]).reset_index(drop=True)
            )
    if not rows:
        return handled
    newest: dict[str, pd.Timestamp] = {}
    latest_row: dict[str, str] = {}
    for frame in rows.values():
        for cid, ts, rid in zip(frame["customer_id"], frame["ts"], frame["row_id"], strict=True):
            if cid not in newest or ts >= newest[cid]:
                newest[cid], latest_row[cid] = ts, rid
    progress(f"rescoring {len(newest):,} customers")
    scores = rescore(history, champions, settings, newest)
    moments = []
    for name, frame in rows.items():
        found = negative_moments(name, frame, settings)
        hit = (found["reason"] != "").to_numpy()
        if not hit.any():
            continue
        # Plain dicts: a pandas row per moment cost more than the moment's decision.
        hits = frame.loc[hit].astype(object).where(frame.loc[hit].notna(), None)
        for row, m in zip(
            hits.to_dict(orient="records"),
            found.loc[hit].to_dict(orient="records"),
            strict=True,
        ):
            moments.append((int(row["seq"]), name, row, m))
    moments.sort(key=lambda x: (x[0], x[1]))
    by_customer = scores.to_dict(orient="index")
    t = store.t
    score_rows = []
    for cid, s in zip(scores.index, scores.to_dict(orient="records"), strict=True):
        record = {k: plain(s[k]) for k in SCORE_KEYS}
        score_rows.append(
            {
                "customer_id": cid,
                "as_of": naive_utc(s["as_of"]),
                "scored_at": now,
                "row_id": latest_row[cid],
                **record,
            }
        )
        handled.scores[cid] = {**record, "as_of": pd.Timestamp(s["as_of"]).isoformat()}
    try:
        with store.engine.begin() as conn:
            if score_rows:
                conn.execute(insert(t.score_history), score_rows)
            state = _State.read(
                conn, t, {str(r["customer_id"]) for _, _, r, _ in moments}, now, settings
            )
            records = []
            for _, name, row, m in moments:
                decided, record = _decide(
                    conn, store, history, settings, name, row, m, by_customer, now, state
                )
                handled.moments.append(decided)
                records.append(record)
            if records:
                conn.execute(insert(t.moments), records)
            for name, frame in rows.items():
                inbox = t.inbox(name)
                marked = conn.execute(
                    update(inbox)
                    .where(inbox.c.seq.in_(frame["seq"].tolist()), inbox.c.processed_at.is_(None))
                    .values(processed_at=now)
                ).rowcount
                if marked != len(frame):
                    raise _Taken
    except (DBAPIError, _Taken) as exc:
        # Another process handled some of these rows first (the moments' row ids and the open
        # cases' keys are unique, and the rows it marked are no longer pending), or PostgreSQL
        # broke a deadlock between the two by rolling this one back: nothing of this attempt was
        # committed; the rows are handled once, as that process decided or by the next step.
        if isinstance(exc, DBAPIError) and not lost_race(exc):
            raise
        return Handled(taken=True, pending_ids=handled.pending_ids)
    handled.rows = sum(len(f) for f in rows.values())
    handled.row_ids = {str(r) for f in rows.values() for r in f["row_id"]}
    return handled


class _Taken(Exception):
    """A row of the step was marked handled by another process meanwhile."""


@dataclass
class _State:
    """What the decisions of one step read, in a few queries inside its transaction, then kept
    up to date as the step opens cases and holds moments out."""

    open_cases: dict[tuple[str, str], int]  # (customer, reason) -> open recovery case
    cooling: set[tuple[str, str]]  # closed a case for this reason within the cooldown
    held: set[tuple[str, str]]  # held out for this reason within the horizon
    opened_today: int

    @classmethod
    def read(cls, conn, t, customers: set[str], now: datetime, settings: Settings) -> _State:
        loop = settings.loop
        c, m = t.cases.c, t.moments.c
        open_cases: dict[tuple[str, str], int] = {}
        cooling: set[tuple[str, str]] = set()
        held: set[tuple[str, str]] = set()
        ids = sorted(customers)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for cid, reason, case_id in conn.execute(
                select(c.customer_id, c.reason, c.id).where(
                    c.customer_id.in_(chunk), c.kind == RECOVERY, c.open_key.is_not(None)
                )
            ):
                open_cases[(cid, reason)] = case_id
            if loop.cooldown_days > 0:
                cooling |= set(
                    conn.execute(
                        select(c.customer_id, c.reason).where(
                            c.customer_id.in_(chunk),
                            c.kind == RECOVERY,
                            c.closed_at.is_not(None),
                            c.closed_at >= now - timedelta(days=loop.cooldown_days),
                        )
                    ).tuples()
                )
            held |= set(
                conn.execute(
                    select(m.customer_id, m.reason).where(
                        m.customer_id.in_(chunk),
                        m.held_out.is_(True),
                        m.recorded_at >= now - timedelta(days=settings.horizon_days),
                    )
                ).tuples()
            )
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)  # naive UTC, like `now`
        opened = conn.execute(
            select(func.count()).where(and_(c.kind == RECOVERY, c.opened_at >= day))
        ).scalar_one()
        return cls(open_cases, cooling, held, opened)


def _decide(conn, store, history, settings, name, row, m, scores, now, state: _State):
    """One moment's decision (and its case, when it opens or joins one), and its `moments`
    record for the step's one insert. `row` and `m` are the row and its moment as dicts (None
    for missing values), `scores` the rescored customers' scores by customer id."""
    loop = settings.loop
    cid = str(row["customer_id"])
    reason = m["reason"]
    row_id = str(row["row_id"])
    draw = holdout_draw(loop.holdout_salt, row_id)
    s = scores.get(cid)
    scored = s is not None
    attrs = history.segment_and_region(cid)
    trigger = {
        "row_id": row_id,
        "table": name,
        "reason": reason,
        "detail": m["detail"],
        "ts": pd.Timestamp(row["ts"]).isoformat(),
        **{
            k: plain(row[k])
            for k in ("survey", "score", "comment", "event_type", "channel", "amount")
            if plain(row.get(k)) is not None
        },
    }
    key = (cid, reason)
    case_id = None
    if not scored:
        outcome = NOT_SCORED
    elif cid in loop.exclude_customers or (attrs["segment"] or "") in loop.exclude_segments:
        outcome = EXCLUDED
    else:
        if key in state.open_cases:
            outcome = ADDED
        elif float(s["value_at_risk"]) < loop.min_value_at_risk or s["tier"] not in loop.tiers:
            outcome = NOT_QUALIFIED
        elif key in state.cooling:
            outcome = COOLDOWN
        elif draw < loop.holdout_share or key in state.held:
            # A customer held out for a reason stays out for the horizon: a later moment for
            # the same reason must not treat a member of the control group.
            outcome = HELD_OUT
            state.held.add(key)
        elif state.opened_today >= loop.capacity_per_day:
            outcome = OVER_CAPACITY
        else:
            outcome = OPENED
        if outcome in (OPENED, ADDED):
            opening = Opening(
                kind=RECOVERY,
                customer_id=cid,
                segment=attrs["segment"],
                attributes=attrs,
                reason=reason,
                reason_text=reason_text(m["detail"], s),
                trigger=trigger,
                scores={k: plain(s[k]) for k in SCORE_KEYS},
            )
            case_id, outcome = open_or_add(conn, store, opening, now, loop)
            if outcome == OPENED:
                state.open_cases[key] = case_id
                state.opened_today += 1
    record = {
        "row_id": row_id,
        "table_name": name,
        "customer_id": cid,
        "ts": naive_utc(row["ts"]),
        "reason": reason,
        "detail": m["detail"],
        "comment": plain(row.get("comment")),
        "recorded_at": now,
        "outcome": outcome,
        "held_out": outcome == HELD_OUT,
        "draw": draw,
        "case_id": case_id,
        **{k: plain(s[k]) if scored else None for k in CASE_SCORES},
    }
    decided = {
        "row_id": row_id,
        "customer_id": cid,
        "reason": reason,
        "outcome": outcome,
        "case_id": case_id,
        "draw": draw,
    }
    return decided, record


def reason_text(detail: str, s: dict[str, Any]) -> str:
    """The case's reason in words: the moment, then what the rescoring says."""
    drivers = [str(s[k]) for k in ("reason_1", "reason_2", "reason_3") if s.get(k)]
    text = (
        f"{detail}. Rescored at once: churn risk {float(s['churn_probability']):.0%}, "
        f"CLV {float(s['clv']):,.0f}, value at risk {float(s['value_at_risk']):,.2f} "
        f"({s['tier']} tier)."
    )
    if drivers:
        text += " Drivers: " + "; ".join(drivers) + "."
    return text
