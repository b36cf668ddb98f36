"""The durable outbox: every selected customer of every run, one transaction per run, and the
state of each contact on its way to a dispatcher (pending, sent, failed; controls stay
`control`). Its tables (`outreach_runs`, `outreach_outbox`) live in the store (`store.url`:
SQLite under the data folder by default, any SQLAlchemy URL), beside the cases its contacts
open; a webhook delivery claims the contacts it posts (`store.claims`), so several processes
on one store deliver each contact once.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    case,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from configs import OutreachSettings, Settings
from serving.outreach.policy import (
    CONTACT,
    CONTROL,
    FAILED,
    PENDING,
    POLICY_KEYS,
    SENT,
    STATUSES,
    NoOutboxError,
    OutreachError,
    Selection,
)
from store import NoStoreError, Store, StoreError, as_utc, claims, naive_utc, plain, redact


class Outbox:
    """The durable outbox: SQLAlchemy Core tables on any database (SQLite by default).

    Every state change is its own committed transaction, so a process killed at any point leaves
    rows that are either pending (retried on the next run) or final. `create=False` opens an
    existing outbox only, and fails with a clear message when there is none."""

    def __init__(self, store: Store | str, *, create: bool = True) -> None:
        if isinstance(store, str):
            try:
                store = Store(store, create=create)
            except NoStoreError as exc:
                raise NoOutboxError(
                    f"no outbox yet ({exc}); run `retain outreach run` first or give --store-url"
                ) from None
            except StoreError as exc:
                raise OutreachError(f"outbox: {exc}") from None
            self._owned = True
        else:
            self._owned = False
        self.store = store
        self.url = store.url
        self.engine: Engine = store.engine
        self.runs, self.outbox = store.t.outreach_runs, store.t.outreach_outbox
        self.token = uuid.uuid4().hex  # this process's claims on contacts it delivers
        try:
            if not create and not inspect(self.engine).has_table(self.outbox.name):
                raise NoOutboxError(f"{redact(self.url)} holds no outreach outbox yet")
        except SQLAlchemyError as exc:
            raise OutreachError(f"cannot open outbox {redact(self.url)}: {exc}") from None

    def __repr__(self) -> str:
        return f"Outbox({redact(self.url)!r})"

    def close(self) -> None:
        if self._owned:
            self.store.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads used by the policy --------------------------------------------------------------

    def customers_in_cooldown(self, as_of: pd.Timestamp, cooldown_days: int) -> set[str]:
        if cooldown_days <= 0:
            return set()
        centre = naive_utc(as_of)
        gap = timedelta(days=cooldown_days)
        o = self.outbox
        query = select(o.c.customer_id).where(o.c.as_of > centre - gap, o.c.as_of < centre + gap)
        with self.engine.connect() as conn:
            return set(conn.scalars(query.distinct()))

    def keys_in_window(self, campaign: str, window: str) -> set[str]:
        o = self.outbox
        query = select(o.c.idempotency_key).where(o.c.campaign == campaign, o.c.window == window)
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self.runs).where(self.runs.c.run_id == run_id)).first()
        return dict(row._mapping) if row is not None else None

    # -- writes ----------------------------------------------------------------------------------

    def record_run(self, selection: Selection, policy: OutreachSettings) -> bool:
        """Write the run and its rows in one transaction. False when the run was already recorded
        (by an earlier or a concurrent process): nothing is written then."""
        rows = selection.rows
        as_of = naive_utc(selection.as_of)
        versions = {
            col: _first(rows[col]) if len(rows) else None
            for col in ("churn_model_version", "clv_model_version")
        }
        run_row = {
            "run_id": selection.run_id,
            "campaign": selection.campaign,
            "as_of": as_of,
            "window": selection.window.label,
            "policy": json.dumps({k: _jsonable(getattr(policy, k)) for k in POLICY_KEYS}),
            "counts": json.dumps(selection.counts),
            **versions,
        }
        columns = [c.name for c in self.outbox.columns if c.name in rows.columns]
        records = [
            {
                **{c: plain(v) for c, v in zip(columns, values, strict=True)},
                "run_id": selection.run_id,
                "as_of": as_of,
                "campaign": selection.campaign,
                "window": selection.window.label,
                "status": PENDING if group == CONTACT else CONTROL,
                "attempts": 0,
            }
            for values, group in zip(
                rows[columns].itertuples(index=False, name=None), rows["group"], strict=True
            )
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(self.runs.insert(), [run_row])
                if records:
                    conn.execute(self.outbox.insert(), records)
        except IntegrityError as exc:
            if self.run_record(selection.run_id) is not None:
                return False
            raise OutreachError(
                f"outbox {redact(self.url)}: a selected idempotency key is already recorded "
                f"(another run in the same campaign window?): {exc.orig}"
            ) from None
        return True

    def pending_contacts(self, now: datetime, lease: timedelta) -> list[dict[str, Any]]:
        """Claims for this outbox's delivery, for `lease` from `now`, a batch of contacts still to deliver that no other
        delivery holds, and returns them: fewest attempts first (so one contact the receiver
        keeps failing on cannot hold up the rest run after run), then oldest run, then rank."""
        o = self.outbox
        return claims.claim(
            self.engine,
            o,
            self.token,
            naive_utc(now),
            lease=lease,
            where=o.c.group == CONTACT,
            order_by=(o.c.attempts, o.c.as_of, o.c.run_id, o.c.rank),
        )

    def release(self) -> None:
        """Give back this delivery's claims on contacts still pending."""
        claims.release(self.engine, self.outbox, self.token)

    def pending_runs(self) -> list[str]:
        """Runs with contacts still to deliver, oldest first."""
        o = self.outbox
        query = (
            select(o.c.run_id, func.min(o.c.as_of).label("as_of"))
            .where(o.c.status == PENDING, o.c.group == CONTACT)
            .group_by(o.c.run_id)
            .order_by("as_of", o.c.run_id)
        )
        with self.engine.connect() as conn:
            return [row.run_id for row in conn.execute(query)]

    def count_pending(self) -> int:
        o = self.outbox
        query = select(func.count()).where(o.c.status == PENDING, o.c.group == CONTACT)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def contacts_for_file(self, run_id: str) -> list[dict[str, Any]]:
        """A run's contacts that a file drop carries: pending ones and those it delivered before
        (so rewriting the file after a crash gives the same content)."""
        o = self.outbox
        query = (
            select(o)
            .where(
                o.c.run_id == run_id,
                o.c.group == CONTACT,
                (o.c.status == PENDING) | (o.c.channel == "file"),
            )
            .order_by(o.c.rank)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_attempt(self, row_id: int, now: datetime, lease: timedelta) -> None:
        """Count an attempt before it is made, so one interrupted mid-flight is counted too, and
        renew this delivery's claims for `lease`."""
        o = self.outbox
        with self.engine.begin() as conn:
            conn.execute(update(o).where(o.c.id == row_id).values(attempts=o.c.attempts + 1))
            claims.renew(conn, o, self.token, naive_utc(now), lease)

    def mark_sent(self, row_ids: list[int], channel: str, delivered_at: datetime) -> None:
        o = self.outbox
        with self.engine.begin() as conn:
            conn.execute(
                update(o)
                .where(o.c.id.in_(row_ids), o.c.status == PENDING)
                .values(
                    status=SENT,
                    channel=channel,
                    delivered_at=naive_utc(delivered_at),
                    last_error=None,
                )
            )

    def mark_error(self, row_id: int, error: str, *, final: bool) -> None:
        """Record a failed attempt; `final` marks the contact failed, otherwise it stays pending."""
        o = self.outbox
        values: dict[str, Any] = {"last_error": error[:2000]}
        if final:
            values |= {"status": FAILED, "claimed_by": None, "claimed_until": None}
        with self.engine.begin() as conn:
            conn.execute(update(o).where(o.c.id == row_id, o.c.status == PENDING).values(values))

    def requeue_failed(self) -> int:
        """Put failed contacts back to pending (after the receiver was fixed); returns how many."""
        o = self.outbox
        with self.engine.begin() as conn:
            return conn.execute(
                update(o)
                .where(o.c.status == FAILED)
                .values(status=PENDING, claimed_by=None, claimed_until=None)
            ).rowcount

    def adopt(self, legacy: Path) -> int:
        """Copy the runs and contacts of an earlier release's outbox file into this outbox in one
        transaction (runs already here are skipped), then rename the file; returns the contacts
        copied."""
        from sqlalchemy import MetaData, create_engine

        source = create_engine(f"sqlite:///{legacy.resolve()}")
        try:
            old = MetaData()
            old.reflect(source, only=[self.runs.name, self.outbox.name])
            with source.connect() as conn:
                runs = [dict(r._mapping) for r in conn.execute(select(old.tables[self.runs.name]))]
                rows = [
                    dict(r._mapping) for r in conn.execute(select(old.tables[self.outbox.name]))
                ]
        except SQLAlchemyError as exc:
            raise OutreachError(f"cannot read the earlier outbox {legacy}: {exc}") from None
        finally:
            source.dispose()
        with self.engine.begin() as conn:
            have = set(conn.scalars(select(self.runs.c.run_id)))
            runs = [r for r in runs if r["run_id"] not in have]
            moved = {r["run_id"] for r in runs}
            rows = [{k: v for k, v in r.items() if k != "id"} for r in rows if r["run_id"] in moved]
            if runs:
                conn.execute(self.runs.insert(), runs)
            if rows:
                conn.execute(self.outbox.insert(), rows)
        legacy.rename(legacy.with_name(legacy.name + ".moved"))
        return len(rows)

    # -- reports -----------------------------------------------------------------------------

    def for_customer(self, customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """One customer's outreach selections, newest first (contacted or held as control)."""
        o = self.outbox
        query = (
            select(
                o.c.as_of,
                o.c.campaign,
                o.c.group,
                o.c.status,
                o.c.channel,
                o.c.delivered_at,
                o.c.rank,
                o.c.value_at_risk,
            )
            .where(o.c.customer_id == customer_id)
            .order_by(o.c.as_of.desc(), o.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            r["as_of"], r["delivered_at"] = as_utc(r["as_of"]), as_utc(r["delivered_at"])
        return rows

    def history(self, run_id: str | None = None) -> pd.DataFrame:
        """Every outbox row (or one run's), timestamps as UTC; what monitoring reads."""
        o = self.outbox
        query = select(o).order_by(o.c.as_of, o.c.run_id, o.c.rank)
        if run_id is not None:
            query = query.where(o.c.run_id == run_id)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=o.columns.keys())
        for col in ("as_of", "delivered_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        for col in ("churn_probability", "clv", "clv_low", "clv_high", "value_at_risk"):
            frame[col] = frame[col].astype(float)
        return frame

    def run_summary(self) -> pd.DataFrame:
        """Per run: selected, contact, control, pending, sent, failed."""
        r, o = self.runs, self.outbox

        def count(condition) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        query = (
            select(
                r.c.run_id,
                r.c.campaign,
                r.c.as_of,
                func.count(o.c.id).label("selected"),
                count(o.c.group == CONTACT).label(CONTACT),
                count(o.c.group == CONTROL).label(CONTROL),
                count(o.c.status == PENDING).label(PENDING),
                count(o.c.status == SENT).label(SENT),
                count(o.c.status == FAILED).label(FAILED),
            )
            .select_from(r.outerjoin(o, o.c.run_id == r.c.run_id))
            .group_by(r.c.run_id, r.c.campaign, r.c.as_of)
            .order_by(r.c.as_of, r.c.run_id)
        )
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all())
        columns = ["run_id", "campaign", "as_of", "selected", CONTACT, CONTROL, *STATUSES[:3]]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
        return frame[columns].astype({c: int for c in columns[3:]})


def _first(values: pd.Series) -> Any:
    present = values.dropna()
    return str(present.iloc[0]) if len(present) else None


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def open_outbox(
    store: Store | str, data: str | Path | None = None, *, create: bool = True
) -> Outbox:
    """The outbox in `store` (a Store, or its URL). An earlier release kept it in its own SQLite file,
    <data folder>/outreach/outbox.db: when that file is there, its runs and contacts are moved
    into the store first (once; the file is renamed `outbox.db.moved`), so no cooldown, key or
    pending contact is lost on the upgrade."""
    legacy = _outreach_home(data) / LEGACY_FILE if data is not None else None
    if legacy is None or not legacy.exists():
        return Outbox(store, create=create)
    box = Outbox(store)  # the move writes, whether the caller reads or writes
    try:
        box.adopt(legacy)
    except BaseException:
        box.close()
        raise
    return box


LEGACY_FILE = "outbox.db"


def file_drop_dir_for(settings: Settings, data: str | Path | None) -> Path:
    if settings.outreach.file_drop_dir:
        return Path(settings.outreach.file_drop_dir)
    return _outreach_home(data) / "drop"


def _outreach_home(data: str | Path | None) -> Path:
    if data is None or "://" in str(data):
        return Path("outreach")
    return Path(data) / "outreach"


def read_outbox(outbox: str | Outbox, data: str | Path | None = None) -> pd.DataFrame:
    """The outbox history as a DataFrame, one row per selected customer and run: run_id, as_of,
    campaign, window, customer_id, segment, rank, group (contact/control), control_draw,
    churn_probability, clv, clv_low, clv_high, value_at_risk, tier, reason_1..3, model versions,
    status, attempts, last_error, channel, delivered_at. For measuring the effect of outreach."""
    if isinstance(outbox, Outbox):
        return outbox.history()
    with open_outbox(outbox, data, create=False) as box:
        return box.history()
