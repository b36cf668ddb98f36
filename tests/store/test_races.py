"""`store.lost_race` tells a transaction that lost to a concurrent one (whose work is then simply
still to do) from a real failure: a unique key taken, and a deadlock PostgreSQL broke by rolling
one of two transactions back, provoked here on a real server."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from store import lost_race

pytestmark = pytest.mark.integration


def test_a_taken_unique_key_is_a_lost_race_and_other_errors_are_not(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k TEXT UNIQUE)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('a')"))
    with pytest.raises(DBAPIError) as taken, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES ('a')"))
    assert lost_race(taken.value)
    with pytest.raises(DBAPIError) as missing, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO nowhere VALUES ('a')"))
    assert not lost_race(missing.value)
    assert not lost_race(ValueError("not from the database"))


def test_a_deadlock_on_postgresql_is_a_lost_race(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k TEXT PRIMARY KEY, n INT)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('a', 0), ('b', 0)"))
    # Each transaction locks one row, waits until the other has locked its own, then asks for
    # the other's: PostgreSQL detects the cycle and rolls one of them back.
    both_locked = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def cross(first: str, second: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE t SET n = n + 1 WHERE k = :k"), {"k": first})
                both_locked.wait()
                conn.execute(sa.text("UPDATE t SET n = n + 1 WHERE k = :k"), {"k": second})
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cross, args=p) for p in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 1, errors
    assert lost_race(errors[0])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(n) FROM t")).scalar() == 2  # the winner's two
    engine.dispose()
