"""`retain ingest`, `retain compact` and `retain cases` through the real console script: rows
ingested from a file count in every batch command; a compaction killed (SIGKILL) at each of its
steps leaves a history that reads exactly as before, and the next run finishes it with no row
lost or doubled; without champions the rows wait in the inbox and the command says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, update

from features.compact import STEPS
from features.sources import read_folder
from store import Store

RETAIN = shutil.which("retain") or str(Path(sys.executable).parent / "retain")


def retain(*args, cwd, env=None):
    return subprocess.run(
        [RETAIN, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | (env or {}),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop_world")
    run = retain("generate", "--out", tmp / "data", "--customers", 300, "--seed", 5, cwd=tmp)
    assert run.returncode == 0, run.stderr
    return tmp / "data"


def new_rows(data: Path, tmp: Path) -> tuple[Path, Path]:
    ids = pd.read_parquet(data / "customers.parquet")["customer_id"].head(4).tolist()
    events = pd.DataFrame(
        {
            "customer_id": ids + ["NOBODY"],
            "ts": ["2026-01-01T10:00:00Z"] * 5,
            "channel": ["phone", "web", "app", "chat", "web"],
            "event_type": ["complaint", "purchase", "visit", "delivery_issue", "visit"],
            "amount": [None, 42.0, None, None, None],
        }
    )
    feedback = pd.DataFrame(
        {
            "customer_id": ids[:2],
            "ts": ["2026-01-01T11:00:00Z"] * 2,
            "survey": ["nps", "csat"],
            "score": [2, 9],  # csat 9 is out of range: rejected
            "comment": ["Nobody ever answers the phone", None],
        }
    )
    paths = tmp / "events_new.csv", tmp / "feedback_new.jsonl"
    events.to_csv(paths[0], index=False)
    feedback.to_json(paths[1], orient="records", lines=True)
    return paths


def test_ingested_rows_count_everywhere_and_wait_for_champions(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world, data)
    before = history_counts(data)
    events, feedback = new_rows(data, tmp_path)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    run = retain("ingest", events, feedback, "--data", data, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert (
        "events_new.csv -> events: 5 rows, 4 stored, 0 already in the inbox, 1 rejected"
        in run.stdout
    )
    assert "feedback_new.jsonl -> feedback: 2 rows, 1 stored" in run.stdout
    assert "rejected events_new.csv row 5: unknown customer_id" in run.stderr
    assert "The rows wait in the inbox" in run.stderr
    assert history_counts(data) == {
        "events": before["events"] + 4,
        "feedback": before["feedback"] + 1,
    }
    again = retain("ingest", events, "--data", data, cwd=tmp_path, env=env)
    assert "0 stored, 4 already in the inbox, 1 rejected" in again.stdout
    out = tmp_path / "features.parquet"
    run = retain("features", "--data", data, "--as-of", "2026-01-02", "--out", out, cwd=tmp_path)
    assert run.returncode == 0 and "inbox: 4 events, 1 feedback" in run.stderr


def history_counts(data: Path) -> dict[str, int]:
    """Rows per table of the history every batch command reads (tables + inbox), in-process."""
    from configs import settings_from_dict
    from edge import read_tables

    tables = read_tables(str(data), lambda _message: None, settings_from_dict({})).tables
    return {"events": len(tables.events), "feedback": len(tables.feedback)}


@pytest.mark.parametrize("step", STEPS)
def test_a_compaction_killed_at_any_step_loses_and_doubles_nothing(world, tmp_path, step):
    from features.compact import compact
    from serving.loop.ingest import ingest_rows

    data = tmp_path / "data"
    shutil.copytree(world, data)
    # One table as CSV: both file forms are rewritten in place.
    fb = read_folder(data)["feedback"]
    (data / "feedback.parquet").unlink()
    fb.to_csv(data / "feedback.csv", index=False)
    before = history_counts(data)
    events, feedback = new_rows(data, tmp_path)
    url = f"sqlite:///{data / 'store' / 'retain.db'}"
    known = pd.Index(pd.read_parquet(data / "customers.parquet")["customer_id"].astype(str))
    with Store(url) as db:
        now = pd.Timestamp("2026-01-02", tz="UTC")
        ingest_rows(db, "events", pd.read_csv(events), known, received_at=now, source="test")
        ingest_rows(
            db,
            "feedback",
            pd.read_json(feedback, lines=True),
            known,
            received_at=now,
            source="test",
        )
        with db.engine.begin() as conn:
            for name in ("events", "feedback"):  # as if the loop had handled them
                conn.execute(update(db.t.inbox(name)).values(processed_at=now.tz_localize(None)))
    expected = {"events": before["events"] + 4, "feedback": before["feedback"] + 1}
    assert history_counts(data) == expected

    killed = retain("compact", "--data", data, cwd=tmp_path, env={"RETAIN_TEST_CRASH_AT": step})
    assert killed.returncode == -9, killed.stderr
    assert history_counts(data) == expected, f"killed at {step}"

    with Store(url) as db:
        compact(data, db)
        assert history_counts(data) == expected
        with db.engine.connect() as conn:
            left = sum(
                conn.execute(select(func.count()).select_from(db.t.inbox(n))).scalar()
                for n in ("events", "feedback")
            )
    assert left == 0
    tables = read_folder(data)
    assert tables["events"]["event_id"].notna().sum() == 4
    assert tables["feedback"]["event_id"].notna().sum() == 1
    assert not list(data.glob(".*.compact"))
