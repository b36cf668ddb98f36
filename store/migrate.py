"""The store's schema by migrations (Alembic, `store/migrations/versions/`): bringing a database to
the newest revision, on SQLite and PostgreSQL alike, and saying which revision it is at.

`upgrade` is what `retain db upgrade` runs, and what opening a store for writing runs first, so
every command that needs the store brings it up to date itself. A store made before migrations
existed (its tables created directly) is recognised by its tables and stamped with the revision
it matches before upgrading. On PostgreSQL a transaction-scoped advisory lock makes replicas
starting together upgrade one after the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any 64-bit constant shared by every Retain process: the key of the advisory lock.
LOCK_KEY = 0x52455441494E  # "RETAIN"
# Tables that tell which revision a store made before migrations matches, newest first.
FINGERPRINTS = (("0002", "users"), ("0001", "inbox_events"))


def _config(connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current(conn: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine):
    """For a SQLite file, an exclusive lock on a file beside it while one process upgrades
    (several workers starting at once on a new store): PostgreSQL has its advisory lock."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str | None]:
    """Bring the store to `target` (default the newest revision); returns (before, after)."""
    with _sqlite_file_lock(engine):
        return _upgrade(engine, target)


def _upgrade(engine: Engine, target: str) -> tuple[str | None, str | None]:
    from alembic import command

    with engine.connect() as conn:
        before = current(conn)
    if before == head() and target == "head":
        return before, before
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        before = current(conn)
        config = _config(conn)
        if before is None:
            tables = set(inspect(conn).get_table_names())
            stamp = next((rev for rev, table in FINGERPRINTS if table in tables), None)
            if stamp is not None:
                command.stamp(config, stamp)
        command.upgrade(config, target)
        after = current(conn)
    return before, after
