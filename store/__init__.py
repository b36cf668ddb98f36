"""The store: one SQLAlchemy database by URL (SQLite under the data folder by default) for what
the closed loop must never lose: the inbox of ingested rows and their quarantine, negative
moments, recovery cases with their append-only history, case hand-offs, the per-customer
score history of real-time rescoring, the outreach outbox, and the workspace's users and
sessions. This package owns the tables (`store.tables`), opening the database and where it
lives by default, its schema by migrations (`store.migrate`), and claims on its delivery queues
(`store.claims`); what the rows mean belongs to the packages above it.

Timestamps are stored as naive UTC (`naive_utc`) so SQLite and PostgreSQL compare them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import MetaData, create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from store.tables import define

STORE_FILE = "retain.db"
URL_ENV = "RETAIN_STORE_URL"


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message names it (password hidden)."""


class NoStoreError(StoreError):
    """There is no store yet where one was only to be read."""


# SQLSTATEs of a transaction the server rolled back because a concurrent one got in its way:
# deadlock detected, serialization failure.
_RACE_STATES = frozenset({"40P01", "40001"})


def lost_race(exc: BaseException) -> bool:
    """Whether `exc` says a concurrent transaction won: a unique key already taken, or PostgreSQL
    rolling this transaction back for a deadlock or a serialization failure with another. The
    transaction left nothing behind, so the work it held is simply still to do."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        return getattr(orig, "sqlstate", None) in _RACE_STATES
    return False


def redact(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all; the caller reports it
        return url


def naive_utc(ts: pd.Timestamp | datetime | str) -> datetime:
    """A timestamp as naive UTC, how every timestamp is stored (naive input is UTC already)."""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.tz_localize(None).to_pydatetime()


def as_utc(value: Any) -> pd.Timestamp | None:
    """A stored timestamp back as a UTC pandas Timestamp (None stays None)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def plain(v: Any) -> Any:
    """A cell as a plain Python value for the database (NaN and NA -> None, NumPy -> Python)."""
    if v is None or (not isinstance(v, str | bytes | list | dict) and pd.isna(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return naive_utc(v)
    return v


def home_for(data: str | Path | None) -> Path:
    """The store's folder for a data folder: <data>/store (./store for a SQL source or none)."""
    if data is None or "://" in str(data):
        return Path("store")
    return Path(data) / "store"


def url_for(configured: str, data: str | Path | None, env: Mapping[str, str]) -> str:
    """`RETAIN_STORE_URL`, else `store.url`, else SQLite at <data>/store/retain.db."""
    if env.get(URL_ENV):
        return env[URL_ENV]
    if configured:
        return configured
    return f"sqlite:///{(home_for(data) / STORE_FILE).resolve()}"


def open_engine(
    url: str,
    *,
    create: bool,
    on_missing: Callable[[Path], Exception],
    on_error: Callable[[str], Exception],
) -> Engine:
    """An engine for `url`: for SQLite, its folder made when `create`, else `on_missing(path)`
    raised when the file is not there, and a 30 s wait for another writer instead of failing at
    once; `on_error(message)` raised for a URL SQLAlchemy cannot open. The store and the outreach
    outbox both open their databases so."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise on_error(f"{url!r} is not a SQLAlchemy URL: {exc}") from None
    connect_args: dict[str, Any] = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        connect_args["timeout"] = 30
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise on_missing(path)
    try:
        engine = create_engine(url, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as exc:
        raise on_error(f"cannot open {redact(url)}: {exc}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Store:
    """The store's engine and tables. `create=False` opens an existing store only and raises
    `NoStoreError` when there is none (readers never create one as a side effect)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine: Engine = open_engine(
            url,
            create=create,
            on_missing=lambda path: NoStoreError(f"no store at {path}"),
            on_error=lambda message: StoreError(f"store: {message}"),
        )
        self.metadata = MetaData()
        self.t = define(self.metadata)
        try:
            if create:
                # The schema comes from the migrations, so a store of an older release is
                # upgraded in place, never recreated.
                from store.migrate import upgrade

                upgrade(self.engine)
            elif not inspect(self.engine).has_table(self.t.inbox_events.name):
                raise NoStoreError(f"{redact(url)} holds no Retain store yet")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {redact(url)}: {exc}") from None

    def __repr__(self) -> str:
        return f"Store({redact(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_pragmas(conn, _record) -> None:
    # WAL: readers (the batch commands) never block the service's writes, and a commit is
    # durable once it returns; foreign keys are off by default in SQLite.
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
