"""Recovery and retention cases: opening one for a qualifying moment (or adding the moment to the
customer's open case for the same reason), priority and due time from value at risk and the SLA,
owner from the assignment rules, the status lifecycle with its append-only history, escalation
of overdue cases, and the queries the API and `retain cases` answer.

Lifecycle: open -> in_progress -> resolved | unreachable | declined (closing needs a resolution
code from `loop.resolution_codes`), and open / in_progress -> expired. Every change bumps the
case's `version`; a caller that read version v may pass it, and a stale one is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from configs import LoopSettings
from features.contract import to_utc
from store import Store, as_utc, naive_utc

RECOVERY, RETENTION = "recovery", "retention"
OPEN, IN_PROGRESS = "open", "in_progress"
RESOLVED, UNREACHABLE, DECLINED, EXPIRED = "resolved", "unreachable", "declined", "expired"
STATUSES = (OPEN, IN_PROGRESS, RESOLVED, UNREACHABLE, DECLINED, EXPIRED)
ACTIVE = (OPEN, IN_PROGRESS)
NEEDS_RESOLUTION = (RESOLVED, UNREACHABLE, DECLINED)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    OPEN: (IN_PROGRESS, RESOLVED, UNREACHABLE, DECLINED, EXPIRED),
    IN_PROGRESS: (RESOLVED, UNREACHABLE, DECLINED, EXPIRED),
    RESOLVED: (),
    UNREACHABLE: (),
    DECLINED: (),
    EXPIRED: (),
}
PRIORITIES = ("p1", "p2", "p3")
SYSTEM = "retain"
# The scores a case (and a moment) records from the rescoring that decided it.
CASE_SCORES = (
    "churn_probability",
    "clv",
    "value_at_risk",
    "tier",
    "churn_model_version",
    "clv_model_version",
)


class CaseError(ValueError):
    """A request about a case that cannot be carried out; `status` is the HTTP status to answer."""

    status = 422


class NoSuchCase(CaseError):
    status = 404


class CaseConflict(CaseError):
    """An invalid transition or a stale version (HTTP 409)."""

    status = 409


def record_change(
    conn: Connection,
    store: Store,
    case_id: int,
    at: datetime,
    actor: str,
    from_status: str | None,
    to_status: str,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One append-only `case_history` row."""
    conn.execute(
        insert(store.t.case_history).values(
            case_id=case_id,
            at=at,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            note=note,
            detail=json.dumps(detail, default=str) if detail else None,
        )
    )


def priority_for(value_at_risk: float, loop: LoopSettings) -> str:
    if value_at_risk >= loop.p1_value_at_risk:
        return "p1"
    if value_at_risk >= loop.p2_value_at_risk:
        return "p2"
    return "p3"


def due_at(opened: datetime, priority: str, loop: LoopSettings) -> datetime:
    return opened + timedelta(hours=loop.sla_hours[priority])


def open_key(customer_id: str, kind: str, reason: str) -> str:
    return f"{kind}\x1f{customer_id}\x1f{reason}"


def team_for(attributes: dict[str, str | None], loop: LoopSettings) -> tuple[str, ...]:
    """The team of the first assignment rule whose given attributes all match, else the default."""
    for rule in loop.assignment:
        wanted = {k: v for k, v in (("segment", rule.segment), ("region", rule.region)) if v}
        if all(attributes.get(k) == v for k, v in wanted.items()):
            return rule.team
    return loop.default_team


def next_owner(conn: Connection, cases, team: Sequence[str]) -> str:
    """Round robin over `team`: the member after the one given the team's latest case."""
    if len(team) == 1:
        return team[0]
    last = conn.execute(
        select(cases.c.owner)
        .where(cases.c.owner.in_(list(team)))
        .order_by(cases.c.id.desc())
        .limit(1)
    ).scalar()
    return team[(list(team).index(last) + 1) % len(team)] if last in team else team[0]


@dataclass(frozen=True)
class Opening:
    """What a qualifying moment brings to a case."""

    kind: str
    customer_id: str
    segment: str | None
    attributes: dict[str, str | None]
    reason: str
    reason_text: str
    trigger: dict[str, Any]
    scores: dict[str, Any]  # churn_probability, clv, value_at_risk, tier, model versions


def open_or_add(
    conn: Connection,
    store: Store,
    opening: Opening,
    now: datetime,
    loop: LoopSettings,
    *,
    actor: str = SYSTEM,
    owner: str | None = None,
):
    """Open a case for `opening`, or add it to the customer's open case for the same kind and
    reason. Returns (case id, "opened" | "added"). Runs in the caller's transaction, with the
    hand-off of a new case, so the case, its history and its hand-off commit together. `actor`
    is who opens it (the loop itself, or a person in the workspace); `owner`, when given,
    replaces the assignment rules."""
    cases = store.t.cases
    key = open_key(opening.customer_id, opening.kind, opening.reason)
    found = conn.execute(select(cases).where(cases.c.open_key == key)).mappings().first()
    if found is not None:
        triggers = json.loads(found["trigger"])
        triggers.append(opening.trigger)
        conn.execute(
            update(cases)
            .where(cases.c.id == found["id"])
            .values(
                trigger=json.dumps(triggers, default=str),
                moments=found["moments"] + 1,
                updated_at=now,
                version=found["version"] + 1,
            )
        )
        record_change(
            conn,
            store,
            found["id"],
            now,
            actor,
            found["status"],
            found["status"],
            "another moment for the same reason",
            {"moment": opening.trigger},
        )
        return found["id"], "added"
    priority = priority_for(float(opening.scores.get("value_at_risk") or 0.0), loop)
    owner = owner or next_owner(conn, cases, team_for(opening.attributes, loop))
    values = {
        "kind": opening.kind,
        "customer_id": opening.customer_id,
        "segment": opening.segment,
        "reason": opening.reason,
        "reason_text": opening.reason_text,
        "trigger": json.dumps([opening.trigger], default=str),
        "priority": priority,
        "owner": owner,
        "status": OPEN,
        "opened_at": now,
        "due_at": due_at(now, priority, loop),
        "updated_at": now,
        "version": 1,
        "moments": 1,
        "escalations": 0,
        "open_key": key,
        **{k: opening.scores.get(k) for k in CASE_SCORES},
    }
    case_id = conn.execute(insert(cases).values(values)).inserted_primary_key[0]
    record_change(
        conn,
        store,
        case_id,
        now,
        actor,
        None,
        OPEN,
        opening.reason_text[:2000],
        {"owner": owner, "priority": priority},
    )
    enqueue_handoff(conn, store, case_id, "opened", now, case={"id": case_id, **values})
    return case_id, "opened"


def enqueue_handoff(
    conn: Connection,
    store: Store,
    case_id: int,
    event: str,
    now: datetime,
    *,
    case: dict[str, Any] | None = None,
) -> None:
    """A pending hand-off of the case as it now stands (idempotency key per case and event).
    `case` is the case's row when the caller has just written it (a new case: no hand-off yet)."""
    n = 0
    if case is None:
        t = store.t
        case = dict(conn.execute(select(t.cases).where(t.cases.c.id == case_id)).mappings().one())
        n = conn.execute(
            select(func.count()).where(
                t.case_handoffs.c.case_id == case_id, t.case_handoffs.c.event == event
            )
        ).scalar_one()
    key = f"case-{case_id}-{event}" + (f"-{n + 1}" if n else "")
    conn.execute(
        insert(store.t.case_handoffs).values(
            idempotency_key=key,
            case_id=case_id,
            event=event,
            payload=json.dumps({"event": event, "idempotency_key": key, **case_json(dict(case))}),
            created_at=now,
            status="pending",
            attempts=0,
        )
    )


def case_json(row: dict[str, Any]) -> dict[str, Any]:
    """A case row as JSON-ready values (ISO timestamps, the trigger list decoded)."""
    out = {k: v for k, v in row.items() if k != "open_key"}
    out["trigger"] = json.loads(row["trigger"]) if row.get("trigger") else []
    for k in ("opened_at", "due_at", "updated_at", "first_response_at", "closed_at"):
        t = as_utc(row.get(k))
        out[k] = None if t is None else t.isoformat()
    return out


def open_retention_cases(
    store: Store, contacts: pd.DataFrame, loop: LoopSettings, now: datetime
) -> dict[str, int]:
    """Each contact of an outreach run (outbox rows of group `contact`) as a `retention` case in
    the same queue, with the same lifecycle, owner, SLA and hand-off: one per contact, ever (a
    run recorded again opens nothing twice), joined to the customer's open retention case of
    the same campaign when there is one."""
    counts = {"opened": 0, "added": 0, "already": 0}
    links = store.t.case_links
    now = naive_utc(now)
    with store.engine.begin() as conn:
        for row in contacts.itertuples(index=False):
            key = str(row.idempotency_key)
            if conn.execute(select(links.c.case_id).where(links.c.source_key == key)).first():
                counts["already"] += 1
                continue
            scores = {
                k: None if pd.isna(getattr(row, k, None)) else getattr(row, k) for k in CASE_SCORES
            }
            reasons = [
                r
                for r in (getattr(row, f"reason_{i}", None) for i in (1, 2, 3))
                if isinstance(r, str) and r
            ]
            text = (
                f"Selected by outreach run {row.run_id} (rank {int(row.rank)}): churn risk "
                f"{float(row.churn_probability):.0%}, CLV {float(row.clv):,.0f}, value at risk "
                f"{float(row.value_at_risk):,.2f}."
                + (" Drivers: " + "; ".join(reasons) + "." if reasons else "")
            )
            segment = None if pd.isna(row.segment) else str(row.segment)
            opening = Opening(
                kind=RETENTION,
                customer_id=str(row.customer_id),
                segment=segment,
                attributes={"segment": segment, "region": None},
                reason=str(row.campaign),
                reason_text=text,
                trigger={"outreach_run": row.run_id, "idempotency_key": key, "rank": int(row.rank)},
                scores=scores,
            )
            case_id, how = open_or_add(conn, store, opening, now, loop)
            conn.execute(insert(links).values(source_key=key, case_id=case_id))
            counts[how] += 1
    return counts


def _hours(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier).dt.total_seconds() / 3600.0


def case_kpis(cases: pd.DataFrame, as_of: str | pd.Timestamp) -> dict[str, Any]:
    """Per priority: cases, median hours to first response and to resolution, SLA compliance
    (closed by their due time, among closed ones), open and overdue now; per owner: open and
    overdue. `cases` as `serving.loop.cases.CaseBook.frame` gives them."""
    as_of = to_utc(as_of)
    seen = cases[cases["opened_at"] < as_of]
    active = seen["status"].isin(list(ACTIVE))
    overdue = active & (seen["due_at"] < as_of)
    closed = seen["closed_at"].notna() & (seen["closed_at"] < as_of)
    by_priority = []
    for p in PRIORITIES:
        part = seen["priority"] == p
        c = seen[part & closed]
        responded = seen[part & seen["first_response_at"].notna()]
        by_priority.append(
            {
                "priority": p,
                "cases": int(part.sum()),
                "open": int((part & active).sum()),
                "overdue": int((part & overdue).sum()),
                "median_hours_to_first_response": _median(
                    _hours(responded["first_response_at"], responded["opened_at"])
                ),
                "median_hours_to_close": _median(_hours(c["closed_at"], c["opened_at"])),
                "sla_compliance": (
                    float((c["closed_at"] <= c["due_at"]).mean()) if len(c) else None
                ),
            }
        )
    owners = (
        pd.DataFrame({"owner": seen["owner"], "open": active, "overdue": overdue})
        .groupby("owner", sort=True)[["open", "overdue"]]
        .sum()
        .astype(int)
        .reset_index()
    )
    return {
        "as_of": as_of.isoformat(),
        "cases": int(len(seen)),
        "open": int(active.sum()),
        "overdue": int(overdue.sum()),
        "by_priority": by_priority,
        "by_owner": owners.to_dict(orient="records"),
    }


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


class CaseBook:
    """Reads and changes cases in a store (the API's and `retain cases`' use cases)."""

    def __init__(self, store: Store, loop: LoopSettings) -> None:
        self.store = store
        self.loop = loop

    def list(
        self,
        *,
        status: Sequence[str] = (),
        owner: str | None = None,
        priority: Sequence[str] = (),
        customer_id: str | None = None,
        kind: str | None = None,
        overdue: bool = False,
        now: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Cases matching the filters, as a work queue: overdue first (active and due before
        `now`), then priority, then due time: (matching count, one page). `overdue` keeps only
        the overdue ones."""
        c = self.store.t.cases
        if overdue and now is None:
            raise ValueError("overdue needs now")
        for s in status:
            if s not in STATUSES:
                raise CaseError(f"unknown status {s!r}; expected one of {list(STATUSES)}")
        for p in priority:
            if p not in PRIORITIES:
                raise CaseError(f"unknown priority {p!r}; expected one of {list(PRIORITIES)}")
        where = []
        if status:
            where.append(c.c.status.in_(list(status)))
        if owner:
            where.append(c.c.owner == owner)
        if priority:
            where.append(c.c.priority.in_(list(priority)))
        if customer_id:
            where.append(c.c.customer_id == customer_id)
        if kind:
            if kind not in (RECOVERY, RETENTION):
                raise CaseError(f"unknown kind {kind!r}; expected {RECOVERY} or {RETENTION}")
            where.append(c.c.kind == kind)
        late = None
        if now is not None:
            late = and_(c.c.status.in_(list(ACTIVE)), c.c.due_at < naive_utc(now))
        if overdue:
            where.append(late)
        condition = and_(*where) if where else None
        count = select(func.count()).select_from(c)
        order = [c.c.priority, c.c.due_at, c.c.id]
        if late is not None:
            order.insert(0, case((late, 0), else_=1))
        page = select(c).order_by(*order).limit(limit).offset(offset)
        if condition is not None:
            count, page = count.where(condition), page.where(condition)
        with self.store.engine.connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = [case_json(dict(r)) for r in conn.execute(page).mappings()]
        return total, rows

    def open(
        self, opening: Opening, *, actor: str, now: datetime, owner: str | None = None
    ) -> tuple[int, str]:
        """Open a case by hand (a person in the workspace), or add to the customer's open case
        for the same kind and reason: (case id, "opened" | "added")."""
        if not actor or not actor.strip():
            raise CaseError("opening a case needs the name of who opens it (actor)")
        if opening.kind not in (RECOVERY, RETENTION):
            raise CaseError(f"unknown kind {opening.kind!r}; expected {RECOVERY} or {RETENTION}")
        with self.store.engine.begin() as conn:
            return open_or_add(
                conn, self.store, opening, naive_utc(now), self.loop, actor=actor, owner=owner
            )

    def log_contact(
        self,
        customer_id: str,
        *,
        actor: str,
        channel: str,
        outcome: str,
        now: datetime,
        note: str | None = None,
        case_id: int | None = None,
    ) -> int:
        """Record a contact with a customer and its outcome; with a case, it also goes into the
        case's history and counts as its first response when it is the first."""
        from features.contract import CHANNELS

        if not actor or not actor.strip():
            raise CaseError("a contact needs the name of who made it (actor)")
        if channel not in CHANNELS:
            raise CaseError(f"unknown channel {channel!r}; expected one of {list(CHANNELS)}")
        if not outcome or len(outcome) > 40:
            raise CaseError("a contact needs an outcome of 1 to 40 characters")
        t = self.store.t
        now = naive_utc(now)
        with self.store.engine.begin() as conn:
            if case_id is not None:
                row = (
                    conn.execute(select(t.cases).where(t.cases.c.id == case_id)).mappings().first()
                )
                if row is None or row["customer_id"] != customer_id:
                    raise NoSuchCase(f"no case {case_id} for customer {customer_id}")
                values: dict[str, Any] = {"updated_at": now, "version": row["version"] + 1}
                if row["first_response_at"] is None:
                    values["first_response_at"] = now
                conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(values))
                record_change(
                    conn,
                    self.store,
                    case_id,
                    now,
                    actor.strip(),
                    row["status"],
                    row["status"],
                    note,
                    {"contact": {"channel": channel, "outcome": outcome}},
                )
            return conn.execute(
                insert(t.contacts).values(
                    customer_id=customer_id,
                    at=now,
                    actor=actor.strip(),
                    channel=channel,
                    outcome=outcome,
                    note=note,
                    case_id=case_id,
                )
            ).inserted_primary_key[0]

    def contacts(self, customer_ids: Sequence[str], *, latest_only: bool = False) -> list[dict]:
        """Contacts logged for these customers, newest first (`latest_only`: one each)."""
        c = self.store.t.contacts
        query = select(c).where(c.c.customer_id.in_(list(customer_ids)))
        with self.store.engine.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(query.order_by(c.c.at.desc(), c.c.id.desc())).mappings()
            ]
        for r in rows:
            r["at"] = as_utc(r["at"])
        if latest_only:
            seen: dict[str, dict] = {}
            for r in rows:
                seen.setdefault(r["customer_id"], r)
            return list(seen.values())
        return rows

    def active_for(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The most urgent active case of each of these customers (by priority, then due)."""
        c = self.store.t.cases
        query = (
            select(c.c.id, c.c.customer_id, c.c.priority, c.c.status, c.c.owner, c.c.due_at)
            .where(c.c.customer_id.in_(list(customer_ids)), c.c.status.in_(list(ACTIVE)))
            .order_by(c.c.priority, c.c.due_at)
        )
        out: dict[str, dict[str, Any]] = {}
        with self.store.engine.connect() as conn:
            for r in conn.execute(query).mappings():
                out.setdefault(r["customer_id"], {**dict(r), "due_at": as_utc(r["due_at"])})
        return out

    def open_by_owner(self, *, now: datetime) -> list[dict[str, Any]]:
        """Active cases per owner, and how many of them are past due (the lead's queue)."""
        c = self.store.t.cases
        late = func.sum(case((c.c.due_at < naive_utc(now), 1), else_=0))
        query = (
            select(c.c.owner, func.count().label("open"), late.label("overdue"))
            .where(c.c.status.in_(list(ACTIVE)))
            .group_by(c.c.owner)
            .order_by(c.c.owner)
        )
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def moments_of(self, row_ids: set[str]) -> list[dict[str, Any]]:
        """The recorded decisions on the given rows (those that were negative moments), in the
        order they were recorded."""
        if not row_ids:
            return []
        m = self.store.t.moments
        columns = (m.c.row_id, m.c.customer_id, m.c.reason, m.c.outcome, m.c.case_id)
        ids = sorted(row_ids)
        out: list[dict[str, Any]] = []
        with self.store.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(m.c.id, *columns).where(m.c.row_id.in_(ids[start : start + 500]))
                out += [dict(r) for r in conn.execute(query).mappings()]
        return [{k: r[k] for k in r if k != "id"} for r in sorted(out, key=lambda r: r["id"])]

    def get(self, case_id: int) -> dict[str, Any]:
        """A case with its history, oldest change first."""
        c, h = self.store.t.cases, self.store.t.case_history
        with self.store.engine.connect() as conn:
            row = conn.execute(select(c).where(c.c.id == case_id)).mappings().first()
            if row is None:
                raise NoSuchCase(f"no case {case_id}")
            changes = conn.execute(select(h).where(h.c.case_id == case_id).order_by(h.c.id))
            out = case_json(dict(row))
            out["history"] = [
                {
                    **{k: v for k, v in dict(r).items() if k not in ("detail", "at")},
                    "at": as_utc(r["at"]).isoformat(),
                    "detail": json.loads(r["detail"]) if r["detail"] else None,
                }
                for r in changes.mappings()
            ]
        return out

    def transition(
        self,
        case_id: int,
        to: str,
        *,
        actor: str,
        now: datetime,
        version: int | None = None,
        resolution: str | None = None,
        note: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Move a case to `to` (or, with `to` equal to its status, only reassign or add a note)."""
        if to not in STATUSES:
            raise CaseError(f"unknown status {to!r}; expected one of {list(STATUSES)}")
        if not actor or not actor.strip():
            raise CaseError("a transition needs the name of who makes it (actor)")
        c = self.store.t.cases
        now = naive_utc(now)
        with self.store.engine.begin() as conn:
            row = conn.execute(select(c).where(c.c.id == case_id)).mappings().first()
            if row is None:
                raise NoSuchCase(f"no case {case_id}")
            if version is not None and version != row["version"]:
                raise CaseConflict(
                    f"case {case_id} changed since version {version} (it is at version "
                    f"{row['version']}): read it again and retry"
                )
            current = row["status"]
            same = to == current
            if not same and to not in TRANSITIONS[current]:
                allowed = list(TRANSITIONS[current])
                raise CaseConflict(
                    f"case {case_id} is {current}: it cannot become {to}; "
                    + (f"allowed: {allowed}" if allowed else "it is closed")
                )
            if same and current not in ACTIVE:
                raise CaseConflict(f"case {case_id} is {current}: it is closed")
            values: dict[str, Any] = {"updated_at": now, "version": row["version"] + 1}
            detail: dict[str, Any] = {}
            if to in NEEDS_RESOLUTION:
                if resolution not in self.loop.resolution_codes:
                    raise CaseError(
                        f"closing a case as {to} needs a resolution code, one of "
                        f"{list(self.loop.resolution_codes)} (loop.resolution_codes); got {resolution!r}"
                    )
                values["resolution"] = resolution
                detail["resolution"] = resolution
            if to not in ACTIVE:
                values["closed_at"] = now
                values["open_key"] = None
            if not same:
                values["status"] = to
                if row["first_response_at"] is None:
                    values["first_response_at"] = now
            if note:
                values["note"] = note
            if owner and owner != row["owner"]:
                values["owner"] = owner
                detail["owner"] = {"from": row["owner"], "to": owner}
            changed = conn.execute(
                update(c).where(c.c.id == case_id, c.c.version == row["version"]).values(values)
            ).rowcount
            if changed != 1:
                raise CaseConflict(f"case {case_id} changed meanwhile: read it again and retry")
            record_change(conn, self.store, case_id, now, actor.strip(), current, to, note, detail)
        return self.get(case_id)

    def escalate(self, *, now: datetime) -> dict[str, int]:
        """Escalate every active case past its due time (see `EscalationSettings`); expire those
        older than `expire_after_days`. Safe to run from cron: a case escalated once gets a new
        due time, so a second run at once finds nothing more to do."""
        c = self.store.t.cases
        now = naive_utc(now)
        rules = self.loop.escalation
        limit = now - timedelta(days=rules.expire_after_days)
        counts = {"escalated": 0, "expired": 0}
        with self.store.engine.begin() as conn:
            overdue = (
                conn.execute(
                    select(c)
                    .where(
                        c.c.status.in_(list(ACTIVE)), or_(c.c.due_at < now, c.c.opened_at < limit)
                    )
                    .order_by(c.c.id)
                )
                .mappings()
                .all()
            )
            for row in overdue:
                base = {"updated_at": now, "version": row["version"] + 1}
                if row["opened_at"] < limit:
                    conn.execute(
                        update(c)
                        .where(c.c.id == row["id"])
                        .values(**base, status=EXPIRED, closed_at=now, open_key=None)
                    )
                    record_change(
                        conn,
                        self.store,
                        row["id"],
                        now,
                        SYSTEM,
                        row["status"],
                        EXPIRED,
                        f"open longer than {rules.expire_after_days} days",
                    )
                    counts["expired"] += 1
                    continue
                level = PRIORITIES.index(row["priority"])
                priority = PRIORITIES[max(0, level - 1)]
                owner = row["owner"]
                if rules.escalation_team:
                    owner = next_owner(conn, c, rules.escalation_team)
                conn.execute(
                    update(c)
                    .where(c.c.id == row["id"])
                    .values(
                        **base,
                        priority=priority,
                        owner=owner,
                        due_at=due_at(now, priority, self.loop),
                        escalations=row["escalations"] + 1,
                    )
                )
                record_change(
                    conn,
                    self.store,
                    row["id"],
                    now,
                    SYSTEM,
                    row["status"],
                    row["status"],
                    f"escalated: overdue since {as_utc(row['due_at']):%Y-%m-%d %H:%M} UTC",
                    {
                        "priority": {"from": row["priority"], "to": priority},
                        "owner": {"from": row["owner"], "to": owner},
                    },
                )
                enqueue_handoff(conn, self.store, row["id"], "escalated", now)
                counts["escalated"] += 1
        return counts

    def frame(self) -> pd.DataFrame:
        """Every case as a DataFrame (timestamps UTC): what monitoring reads."""
        c = self.store.t.cases
        with self.store.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(select(c)).mappings().all(), columns=c.columns.keys())
        for col in ("opened_at", "due_at", "updated_at", "first_response_at", "closed_at"):
            frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("UTC")
        return frame
