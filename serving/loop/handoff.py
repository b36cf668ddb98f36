"""Hand-off of new and escalated cases, like outreach contacts: each `case_handoffs` row is
posted to the cases webhook with its `Idempotency-Key` (retried with backoff by the outreach
`WebhookDispatcher`, pending until a 2xx) and written to a CSV file drop: each delivery writes
the hand-offs no file has yet into new files, one per UTC day of creation
(`cases-YYYY-MM-DD-NNNNNNNN.csv`, NNNNNNNN the first hand-off's id, so the names sort in
order), written whole and renamed into place, never changed after: a reader never sees half a
file, and a delivery costs what it delivers, not what the day holds. With a webhook the row is
`sent` on its 2xx; without one, when a file has it.

Several processes may deliver from one store (service workers, replicas, `retain cases
escalate`): a webhook delivery first claims the pending rows for a lease (`store.claims`) and
posts only those, so each hand-off is posted by one of them; the file drop is written under a
lock file in its folder.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from configs import Settings
from serving.outreach.dispatch import WebhookDispatcher, folder_lock, utc_now
from serving.outreach.policy import OutreachError
from store import Store, claims, home_for, naive_utc
from store.claims import PENDING

SENT, FAILED = "sent", "failed"
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
    """The `case_handoffs` table with the delivery methods the webhook dispatcher calls; one
    instance is one delivery, with its own claim token."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.t.case_handoffs
        self.token = uuid.uuid4().hex

    def pending_contacts(self, now: datetime, lease: timedelta) -> list[dict[str, Any]]:
        """Claims for `lease` from `now` up to `store.claims.BATCH` pending rows no live claim holds, and
        returns them."""
        return claims.claim(
            self.store.engine,
            self.t,
            self.token,
            naive_utc(now),
            lease=lease,
            order_by=(self.t.c.attempts, self.t.c.id),
        )

    def release(self) -> None:
        """Give back this delivery's claims on rows still pending (the next one retries them)."""
        claims.release(self.store.engine, self.t, self.token)

    def mark_attempt(self, row_id: int, now: datetime, lease: timedelta) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(self.t).where(self.t.c.id == row_id).values(attempts=self.t.c.attempts + 1)
            )
            claims.renew(conn, self.t, self.token, naive_utc(now), lease)

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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with folder_lock(folder / ".cases-drop.lock"):
            return _file_drop(queue, folder, mark_sent=mark_sent)
    except OSError as exc:
        raise OutreachError(
            f"cannot write the cases file drop in {folder}: {exc.strerror or exc}"
        ) from None


def _file_drop(queue: CaseHandoffs, folder: Path, *, mark_sent: bool) -> list[Path]:
    fresh = queue.unfiled()
    if not fresh:
        return []
    paths = []
    for day in sorted({f"{r['created_at']:%Y-%m-%d}" for r in fresh}):
        rows = [r for r in fresh if f"{r['created_at']:%Y-%m-%d}" == day]
        path = folder / f"cases-{day}-{rows[0]['id']:08d}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            _file_rows(rows).to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        paths.append(path)
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
        out["delivered"], out["failed"] = result.delivered, result.failed
        out["stopped"] = result.stopped
    return out
