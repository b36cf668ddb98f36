"""Claims on queued rows, for the store's delivery queues (`outreach_outbox`, `case_handoffs`):
several processes sharing a store (service workers, replicas, `retain outreach run`, `retain
cases escalate`) each post a row only after claiming it for a lease, so every row is posted by
one of them. The claim takes `FOR UPDATE SKIP LOCKED` on PostgreSQL (a concurrent claimer skips
the rows another is taking instead of waiting for it) and relies on SQLite's single writer
there. A lease is short and renewed at every attempt the holder makes (`renew`), so a holder
that dies (kill -9, a lost machine) leaves its rows to the next delivery a lease later, while
one working through a slow receiver keeps them.

A queue table has `status` ("pending" while it waits), `claimed_by` and `claimed_until`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.engine import Connection, Engine

PENDING = "pending"
BATCH = 200  # rows claimed at a time


def claim(
    engine: Engine,
    table: Table,
    token: str,
    now: datetime,
    *,
    lease: timedelta,
    where: ColumnElement[bool] | None = None,
    order_by: tuple[Any, ...],
    limit: int = BATCH,
) -> list[dict[str, Any]]:
    """Claims for `token` up to `limit` pending rows (matching `where`) that no live claim holds,
    in `order_by` order for `lease` from `now` (wall-clock, naive UTC: the caller reads the
    clock), and returns every pending row `token` holds."""
    t = table
    free = and_(t.c.status == PENDING, or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
    if where is not None:
        free = and_(free, where)
    with engine.begin() as conn:
        ids = list(
            conn.scalars(
                select(t.c.id)
                .where(free)
                .order_by(*order_by)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            # The condition again: on SQLite the read above took no lock.
            conn.execute(
                update(t)
                .where(t.c.id.in_(ids), free)
                .values(claimed_by=token, claimed_until=now + lease)
            )
    if not ids:
        return []
    query = select(t).where(t.c.claimed_by == token, t.c.status == PENDING).order_by(*order_by)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def renew(conn: Connection, table: Table, token: str, now: datetime, lease: timedelta) -> None:
    """Extends `token`'s claims to `now` + `lease`, inside the caller's transaction."""
    t = table
    conn.execute(
        update(t)
        .where(t.c.claimed_by == token, t.c.status == PENDING)
        .values(claimed_until=now + lease)
    )


def release(engine: Engine, table: Table, token: str) -> None:
    """Gives back `token`'s claims on rows still pending (the next delivery retries them)."""
    t = table
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.claimed_by == token, t.c.status == PENDING)
            .values(claimed_by=None, claimed_until=None)
        )
