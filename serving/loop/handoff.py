"""Hand-off of new and escalated cases, like outreach contacts: each `case_handoffs` row is
posted to the cases webhook with its `Idempotency-Key` (retried with backoff by the outreach
`WebhookDispatcher`, pending until a 2xx) and written to a CSV file drop, one file per UTC day
(`cases-YYYY-MM-DD.csv`, rewritten whole and renamed into place, so a reader never sees half a
file). With a webhook the row is `sent` on its 2xx; without one, when the file has it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from configs import Settings
from serving.outreach.dispatch import WebhookDispatcher, utc_now
from serving.outreach.policy import OutreachError
from store import Store, home_for, naive_utc

PENDING, SENT, FAILED = "pending", "sent", "failed"
WEBHOOK_ENV = "RETAIN_CASES_WEBHOOK_URL"
FILE_COLUMNS = (
    "idempotency_key",
    "event",
    "id",
    "kind",
    "customer_id",
    "segment",
    "reason",
    "priority",
    "owner",
    "status",
    "opened_at",
    "due_at",
    "value_at_risk",
    "churn_probability",
    "clv",
    "reason_text",
)


class CaseHandoffs:
    """The `case_handoffs` table with the delivery methods the webhook dispatcher calls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.t.case_handoffs

    def pending_contacts(self) -> list[dict[str, Any]]:
        t = self.t
        query = select(t).where(t.c.status == PENDING).order_by(t.c.attempts, t.c.id)
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_attempt(self, row_id: int) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(self.t).where(self.t.c.id == row_id).values(attempts=self.t.c.attempts + 1)
            )

    def mark_sent(self, row_ids: list[int], channel: str, delivered_at: datetime) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(self.t)
                .where(self.t.c.id.in_(row_ids), self.t.c.status == PENDING)
                .values(status=SENT, delivered_at=naive_utc(delivered_at), last_error=None)
            )

    def mark_error(self, row_id: int, error: str, *, final: bool) -> None:
        values: dict[str, Any] = {"last_error": error[:2000]}
        if final:
            values["status"] = FAILED
        with self.store.engine.begin() as conn:
            conn.execute(
                update(self.t)
                .where(self.t.c.id == row_id, self.t.c.status == PENDING)
                .values(values)
            )

    def unfiled(self) -> list[dict[str, Any]]:
        t = self.t
        with self.store.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(t).where(t.c.filed_at.is_(None)).order_by(t.c.id))
            ]

    def filed_on(self, day: str) -> list[dict[str, Any]]:
        """Hand-offs created on the UTC day `day` (YYYY-MM-DD) that a file already carries."""
        t = self.t
        start = naive_utc(day)
        query = (
            select(t)
            .where(
                t.c.filed_at.is_not(None),
                t.c.created_at >= start,
                t.c.created_at < start + timedelta(days=1),
            )
            .order_by(t.c.id)
        )
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_filed(self, row_ids: list[int], at: datetime) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(self.t).where(self.t.c.id.in_(row_ids)).values(filed_at=naive_utc(at))
            )


def webhook_url(settings: Settings, env: dict[str, str]) -> str:
    return env.get(WEBHOOK_ENV) or settings.loop.webhook_url


def drop_dir(settings: Settings, data: str | Path | None) -> Path:
    return (
        Path(settings.loop.file_drop_dir)
        if settings.loop.file_drop_dir
        else home_for(data) / "cases-drop"
    )


def _file_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    records = []
    for row in rows:
        case = json.loads(row["payload"])
        records.append(
            {c: case.get(c) for c in FILE_COLUMNS}
            | {"event": row["event"], "idempotency_key": row["idempotency_key"]}
        )
    return pd.DataFrame(records, columns=list(FILE_COLUMNS))


def file_drop(queue: CaseHandoffs, folder: Path, *, mark_sent: bool) -> list[Path]:
    """Write every hand-off not yet filed into its day's file (with the day's earlier ones)."""
    fresh = queue.unfiled()
    if not fresh:
        return []
    paths = []
    days = sorted({f"{r['created_at']:%Y-%m-%d}" for r in fresh})
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for day in days:
            rows = queue.filed_on(day) + [r for r in fresh if f"{r['created_at']:%Y-%m-%d}" == day]
            path = folder / f"cases-{day}.csv"
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                _file_rows(rows).to_csv(handle, index=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            paths.append(path)
    except OSError as exc:
        raise OutreachError(
            f"cannot write the cases file drop in {folder}: {exc.strerror or exc}"
        ) from None
    now = utc_now()
    ids = [r["id"] for r in fresh]
    queue.mark_filed(ids, now)
    if mark_sent:
        queue.mark_sent(ids, "file", now)
    return paths


def hand_off(
    store: Store, settings: Settings, *, url: str, folder: Path, **webhook: Any
) -> dict[str, Any]:
    """Deliver every pending hand-off: the file drop, then the webhook when one is configured."""
    queue = CaseHandoffs(store)
    files = file_drop(queue, folder, mark_sent=not url)
    out: dict[str, Any] = {"files": files, "delivered": 0, "failed": 0, "stopped": None}
    if url:
        dispatcher = WebhookDispatcher.from_settings(
            url,
            settings.outreach,
            payload_of=lambda row: json.loads(row["payload"]),
            setting=f"loop.webhook_url or {WEBHOOK_ENV}",
            **webhook,
        )
        result = dispatcher.dispatch(queue)
        out.update(delivered=result.delivered, failed=result.failed, stopped=result.stopped)
    return out
