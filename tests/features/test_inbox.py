"""The inbox as a source, on hand-made rows: per-row checks by the contract's own code, row ids
(the client's event_id, else a content hash blind to time zone and letter case), a retried
batch landing once, rejected rows quarantined with their reason, and the tables plus the inbox
read as one history without counting a compacted row twice."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from features.inbox import append_rows, read_inbox, row_ids, with_inbox
from features.validate import check_rows, validate
from serving.loop.ingest import ingest_rows
from store import NoStoreError, Store

KNOWN = pd.Index(["a", "b"])
NOW = pd.Timestamp("2026-01-02 08:00", tz="UTC")


@pytest.fixture
def db(store_url):
    with Store(store_url) as store:
        yield store


def events(*rows):
    return pd.DataFrame(list(rows))


def test_check_rows_rejects_each_bad_row_with_its_field_and_keeps_the_rest():
    raw = events(
        {
            "customer_id": "a",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "web",
            "event_type": "complaint",
        },
        {
            "customer_id": "zz",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "web",
            "event_type": "visit",
        },
        {"customer_id": "a", "ts": "yesterday-ish", "channel": "web", "event_type": "visit"},
        {"customer_id": "b", "ts": "2026-01-01T11:00:00Z", "channel": "fax", "event_type": "visit"},
        {
            "customer_id": "b",
            "ts": "2026-01-01T11:00:00Z",
            "channel": "app",
            "event_type": "purchase",
            "amount": "12,x",
        },
    )
    checked = check_rows("events", raw, KNOWN)
    assert checked.kept["item"].tolist() == [0]
    assert checked.kept["ts"].iloc[0] == pd.Timestamp("2026-01-01 10:00", tz="UTC")
    got = checked.rejected.set_index("item")
    assert got.loc[1, "field"] == "customer_id" and got.loc[1, "reason"] == "unknown customer_id"
    assert got.loc[2, "field"] == "ts" and got.loc[2, "reason"] == "unparseable ts"
    assert got.loc[3, "field"] == "channel" and "expected one of web" in got.loc[3, "reason"]
    assert got.loc[4, "field"] == "amount"


def test_feedback_rows_out_of_range_missing_or_with_unknown_fields_are_rejected():
    raw = pd.DataFrame(
        [
            {"customer_id": "a", "ts": "2026-01-01", "survey": "nps", "score": 11},
            {"customer_id": "a", "ts": "2026-01-01", "survey": "csat", "score": 2, "colour": "red"},
            {"customer_id": "a", "ts": "2026-01-01", "survey": "ces", "score": 3, "comment": "meh"},
            {"customer_id": "a", "ts": "2026-01-01", "survey": "nps"},
        ]
    )
    checked = check_rows("feedback", raw, KNOWN)
    assert checked.kept["item"].tolist() == [2]
    got = checked.rejected.set_index("item")
    assert got.loc[0, "reason"] == "nps score out of range 0-10" and got.loc[0, "field"] == "score"
    assert got.loc[1, "field"] == "colour" and "unknown field colour" in got.loc[1, "reason"]
    assert got.loc[3, "reason"] == "missing score"


def test_a_missing_column_is_an_error_of_each_row_not_of_the_batch():
    raw = pd.DataFrame([{"customer_id": "a", "ts": "2026-01-01", "channel": "web"}])
    checked = check_rows("events", raw, KNOWN)
    assert checked.kept.empty
    assert checked.rejected["reason"].tolist() == ["missing event_type"]


def test_row_ids_are_the_event_id_or_a_content_hash_blind_to_time_zone_and_case():
    raw = events(
        {
            "customer_id": "a",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "web",
            "event_type": "complaint",
        },
        {
            "customer_id": "a",
            "ts": "2026-01-01T11:00:00+01:00",
            "channel": "WEB ",
            "event_type": "Complaint",
        },
        {
            "customer_id": "a",
            "ts": "2026-01-01T10:00:01Z",
            "channel": "web",
            "event_type": "complaint",
        },
    )
    # One row at a time: in one batch the contract itself calls the second a duplicate row.
    ids = [row_ids(check_rows("events", raw.iloc[[i]], KNOWN).kept, "events")[0] for i in range(3)]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("h:") and len(ids[0]) == 34
    with_id = check_rows("events", raw.iloc[[0, 2]].assign(event_id=["e1", None]), KNOWN).kept
    assert list(row_ids(with_id, "events")) == ["e1", ids[2]]


def test_a_retried_batch_lands_once_and_rejected_rows_are_quarantined_once(db):
    raw = events(
        {
            "customer_id": "a",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "phone",
            "event_type": "complaint",
            "resolved": "no",
        },
        {
            "customer_id": "b",
            "ts": "2026-01-01T10:05:00Z",
            "channel": "web",
            "event_type": "purchase",
            "amount": 20,
            "event_id": "o-7",
        },
        {
            "customer_id": "nobody",
            "ts": "2026-01-01T10:06:00Z",
            "channel": "web",
            "event_type": "visit",
        },
    )
    first = ingest_rows(db, "events", raw, KNOWN, received_at=NOW, source="test")
    assert (first.received, first.stored, first.duplicates, len(first.rejected)) == (3, 2, 0, 1)
    assert first.accepted_ids[1] == "o-7" and first.rejected[0]["item"] == 2
    again = ingest_rows(db, "events", raw, KNOWN, received_at=NOW, source="test")
    assert (again.stored, again.duplicates, len(again.rejected)) == (0, 2, 1)
    assert again.accepted_ids == first.accepted_ids
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.t.inbox_events)).scalar() == 2
        quarantined = conn.execute(select(db.t.inbox_rejected)).mappings().all()
    assert len(quarantined) == 1
    assert quarantined[0]["reason"] == "unknown customer_id" and '"nobody"' in quarantined[0]["row"]
    inbox = read_inbox(db)["events"]
    assert inbox["event_id"].tolist() == [first.accepted_ids[0], "o-7"]
    assert inbox["resolved"].tolist()[0] is False
    assert pd.isna(inbox["resolved"].iloc[1]) and inbox["amount"].iloc[1] == 20.0


def test_the_same_row_twice_in_one_batch_is_stored_once(db):
    row = {
        "customer_id": "a",
        "ts": "2026-01-01T10:00:00Z",
        "channel": "web",
        "event_type": "visit",
    }
    raw = events(row, {**row, "ts": "2026-01-01T10:00:00+00:00"})
    got = ingest_rows(db, "events", raw, KNOWN, received_at=NOW, source="test")
    # The contract itself calls the second a duplicate row; nothing is stored twice either way.
    assert got.stored == 1 and got.received == got.stored + got.duplicates + len(got.rejected)


def small_raw():
    customers = pd.DataFrame(
        {"customer_id": ["a", "b"], "signup_date": ["2025-01-01", "2025-02-01"]}
    )
    ev = events(
        {
            "customer_id": "a",
            "ts": "2025-06-01",
            "channel": "web",
            "event_type": "purchase",
            "amount": 10.0,
        },
        {
            "customer_id": "b",
            "ts": "2025-07-01",
            "channel": "app",
            "event_type": "purchase",
            "amount": 5.0,
        },
    ).astype({"customer_id": "category", "channel": "category", "event_type": "category"})
    return {"customers": customers, "events": ev, "feedback": None, "churn": None}


def test_tables_plus_inbox_read_as_one_history_without_doubling_compacted_rows(db):
    raw = small_raw()
    new = events(
        {
            "customer_id": "a",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "chat",
            "event_type": "complaint",
            "event_id": "c-1",
        },
        {
            "customer_id": "b",
            "ts": "2026-01-01T10:00:00Z",
            "channel": "web",
            "event_type": "visit",
            "event_id": "v-1",
        },
    )
    ingest_rows(db, "events", new, KNOWN, received_at=NOW, source="test")
    merged, read = with_inbox(raw, read_inbox(db))
    assert read.added == {"events": 2, "feedback": 0}
    assert isinstance(merged["events"]["customer_id"].dtype, pd.CategoricalDtype)
    tables = validate(merged).tables
    assert len(tables.events) == 4
    assert set(tables.events["event_type"].astype(str)) == {"purchase", "complaint", "visit"}
    # As after a compaction that folded c-1 into the table but has not cleared the inbox yet.
    folded = append_rows(
        raw["events"], read_inbox(db)["events"].iloc[:1].drop(columns=["seq", "row_id"])
    )
    again, read = with_inbox({**raw, "events": folded}, read_inbox(db))
    assert read.added["events"] == 1 and read.compacted["events"] == 1
    assert len(validate(again).tables.events) == 4
    assert raw["events"].shape == (2, 5), "with_inbox changed its input"


def test_feedback_in_the_inbox_makes_a_feedback_table_where_there_was_none(db):
    fb = pd.DataFrame(
        [{"customer_id": "a", "ts": "2026-01-01", "survey": "nps", "score": 3, "comment": "slow"}]
    )
    ingest_rows(db, "feedback", fb, KNOWN, received_at=NOW, source="test")
    merged, _ = with_inbox(small_raw(), read_inbox(db))
    tables = validate(merged).tables
    assert tables.feedback["score"].tolist() == [3.0]
    assert tables.feedback["comment"].tolist() == ["slow"]


def test_readers_never_create_a_store(tmp_path):
    with pytest.raises(NoStoreError, match="no store at"):
        Store(f"sqlite:///{tmp_path / 'nothing' / 'retain.db'}", create=False)
    assert not (tmp_path / "nothing").exists()


def test_the_loops_read_gives_rows_above_a_seq_and_every_row_not_handled_yet(db):
    from sqlalchemy import update

    raw = events(
        *(
            {
                "customer_id": "a",
                "ts": f"2026-01-01T10:0{i}:00Z",
                "channel": "web",
                "event_type": "visit",
                "event_id": f"v{i}",
            }
            for i in range(4)
        )
    )
    ingest_rows(db, "events", raw, KNOWN, received_at=NOW, source="test")
    t = db.t.inbox_events
    with db.engine.begin() as conn:  # v0 and v2 handled; v1 not (a step that died)
        conn.execute(update(t).where(t.c.row_id.in_(["v0", "v2"])).values(processed_at=NOW))
    stored = read_inbox(db)["events"]
    seqs = dict(zip(stored["row_id"], stored["seq"], strict=True))
    read = read_inbox(db, after={"events": seqs["v2"]}, or_pending=True)["events"]
    assert read["row_id"].tolist() == ["v1", "v3"]
    assert read["pending"].tolist() == [True, True]
    read = read_inbox(db, after={"events": seqs["v0"]}, or_pending=True)["events"]
    assert read["row_id"].tolist() == ["v1", "v2", "v3"]
    assert read["pending"].tolist() == [True, False, True]
    assert "pending" not in read_inbox(db, after={"events": 0})["events"].columns
