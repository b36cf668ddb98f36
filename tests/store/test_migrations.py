"""The store's schema comes from its migrations, on SQLite and a real PostgreSQL: a new store is
at the newest revision with exactly the tables `store.tables` defines; a store of the release
before the workspace (revision 0001, or made before migrations existed) is upgraded in place
with its rows kept; `retain db upgrade` and `retain db current` say what they did."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, func, insert, inspect, select
from typer.testing import CliRunner

from store import Store, naive_utc
from store.migrate import current, head, upgrade
from store.tables import define

BEFORE_WORKSPACE = {
    "inbox_events",
    "inbox_feedback",
    "inbox_rejected",
    "moments",
    "cases",
    "case_history",
    "case_handoffs",
    "case_links",
    "score_history",
}


def _row():
    return {
        "row_id": "r1",
        "customer_id": "C1",
        "ts": naive_utc("2026-01-01"),
        "received_at": naive_utc("2026-01-01"),
        "source": "test",
        "channel": "web",
        "event_type": "visit",
    }


def _engine(url: str):
    """An engine on `url` with no schema made (the SQLite file's folder made)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def test_a_new_store_is_at_head_with_exactly_the_defined_tables(store_url):
    with Store(store_url) as store, store.engine.connect() as conn:
        assert current(conn) == head() == "0004"
        diff = compare_metadata(MigrationContext.configure(conn), store.metadata)
        assert diff == [], diff


def test_processes_opening_a_new_store_at_once_upgrade_it_one_after_the_other(store_url):
    """Service workers start together on a store no one has made yet: each opens it (and so
    runs the migrations) without one failing on tables another just created."""
    import threading

    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(store_url).close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(store_url) as store, store.engine.connect() as conn:
        assert current(conn) == head()


def test_an_older_store_is_upgraded_in_place_keeping_its_rows(store_url):
    engine = _engine(store_url)
    try:
        assert upgrade(engine, "0001") == (None, "0001")
        t = define(MetaData())
        with engine.begin() as conn:
            conn.execute(insert(t.inbox_events).values(_row()))
        assert "users" not in inspect(engine).get_table_names()
        assert upgrade(engine) == ("0001", "0004")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.inbox_events)).scalar() == 1
        assert {"users", "web_sessions", "saved_views", "contacts", "outreach_outbox"} <= set(
            inspect(engine).get_table_names()
        )
        assert upgrade(engine) == ("0004", "0004")  # nothing to do
    finally:
        engine.dispose()


def test_a_store_made_before_migrations_is_recognised_and_upgraded(store_url):
    engine = _engine(store_url)
    try:
        metadata = MetaData()
        t = define(metadata)
        old = [metadata.tables[n] for n in BEFORE_WORKSPACE]
        metadata.create_all(engine, tables=old)
        with engine.begin() as conn:
            conn.execute(insert(t.inbox_events).values(_row()))
        assert upgrade(engine) == (None, "0004")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.inbox_events)).scalar() == 1
    finally:
        engine.dispose()


def test_retain_db_upgrade_and_current(tmp_path):
    from retain_cli import app

    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'store' / 'retain.db'}"
    engine = create_engine(url)
    (tmp_path / "store").mkdir()
    upgrade(engine, "0001")
    engine.dispose()
    before = runner.invoke(app, ["db", "current", "--data", str(tmp_path)])
    assert before.exit_code == 0 and "0001" in before.output and "behind" in before.output
    done = runner.invoke(app, ["db", "upgrade", "--data", str(tmp_path)])
    assert done.exit_code == 0 and "0001 -> 0004" in done.output, done.output
    again = runner.invoke(app, ["db", "upgrade", "--store-url", url])
    assert again.exit_code == 0 and "already at 0004" in again.output
    missing = runner.invoke(app, ["db", "current", "--data", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "no store" in missing.output
