"""The closed loop without a server: one customer's features from the live history equal
`build_features` on the whole history (property test over random worlds); negative moments by
the configured rules; the case lifecycle (one open case per customer and reason, transitions,
stale versions, resolution codes, escalation); and, on the trained world, a detractor answer
rescored at once into a case handed off exactly once, a held-out moment left alone, a retried
batch changing nothing, and rows a crash left unhandled handled exactly once afterwards."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from configs import settings_from_dict
from features.build import build_features
from features.synthetic import generate_world
from features.validate import check_rows, validate
from serving.http.loop import LoopCore
from serving.loop.cases import (
    IN_PROGRESS,
    OPEN,
    RECOVERY,
    RESOLVED,
    CaseBook,
    CaseConflict,
    CaseError,
    Opening,
    open_or_add,
)
from serving.loop.history import History, read_history
from serving.loop.ingest import ingest_rows
from serving.loop.moments import negative_moments
from serving.loop.process import HELD_OUT, OPENED, holdout_draw
from store import Store, naive_utc

NOW = pd.Timestamp("2026-01-02 09:00", tz="UTC")


# -- one customer's history ---------------------------------------------------------------------


@given(seed=st.integers(0, 10_000), day=st.integers(30, 700), split=st.floats(0.5, 0.95))
@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_features_of_one_customer_from_the_live_history_equal_build_features(seed, day, split):
    settings = settings_from_dict({})
    raw = generate_world(150, seed, days=720)
    full = validate(raw).tables
    # The later rows arrive one by one (as if ingested); the rest are the tables read at start.
    cut = full.events["ts"].quantile(split)
    start = validate({**raw, "events": raw["events"][raw["events"]["ts"] < cut]}).tables
    history = History(start)
    late = raw["events"][raw["events"]["ts"] >= cut].reset_index(drop=True)
    checked = check_rows("events", late, history.known)
    history.add("events", checked.kept, [f"e{i}" for i in range(len(checked.kept))])
    as_of = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=day)
    expected = build_features(
        validate(
            {**raw, "events": pd.concat([raw["events"][raw["events"]["ts"] < cut], late])}
        ).tables,
        as_of,
        settings,
    )
    rng = np.random.default_rng(seed)
    ids = list(rng.choice(full.customers["customer_id"], size=5, replace=False))
    got = build_features(history.tables_of(ids), as_of, settings)
    wanted = expected.loc[expected.index.intersection(ids)]
    assert sorted(got.index) == sorted(wanted.index)
    pd.testing.assert_frame_equal(
        got.loc[sorted(got.index)],
        wanted.loc[sorted(wanted.index)],
        check_dtype=False,
        check_categorical=False,
    )


# -- negative moments ---------------------------------------------------------------------------


def test_negative_moments_follow_the_configured_rules():
    settings = settings_from_dict({"loop": {"negative": {"nps_at_or_below": 5}}})
    ts = pd.Timestamp("2026-01-01 10:00", tz="UTC")
    fb = pd.DataFrame(
        {
            "survey": ["nps", "nps", "csat", "ces", "nps", "csat"],
            "score": [5.0, 6.0, 2.0, 3.0, 9.0, 4.0],
            "comment": [None, None, None, None, "This is awful, I hate it", "fine"],
            "ts": [ts] * 6,
        }
    )
    got = negative_moments("feedback", fb, settings)
    assert got["reason"].tolist() == [
        "detractor",
        "",
        "low_csat",
        "high_effort",
        "negative_comment",
        "",
    ]
    assert got["detail"].iloc[4].startswith('NPS 9 on 2026-01-01 10:00 UTC: "This is awful')
    ev = pd.DataFrame(
        {
            "event_type": [
                "complaint",
                "complaint",
                "delivery_issue",
                "purchase",
                "payment_failed",
            ],
            "resolved": pd.array([False, True, pd.NA, pd.NA, pd.NA], dtype="boolean"),
            "channel": ["phone"] * 5,
            "amount": [np.nan, np.nan, np.nan, 20.0, 35.5],
            "ts": [ts] * 5,
        }
    )
    got = negative_moments("events", ev, settings)
    assert got["reason"].tolist() == ["complaint", "", "delivery_issue", "", "payment_failed"]
    assert (
        got["detail"].iloc[4] == "payment failed via phone on 2026-01-01 10:00 UTC (amount 35.50)"
    )


# -- cases --------------------------------------------------------------------------------------


@pytest.fixture
def db(store_url):
    with Store(store_url) as s:
        yield s


def opening(customer="c1", reason="detractor", var=30.0, region=None):
    return Opening(
        kind=RECOVERY,
        customer_id=customer,
        segment="enterprise",
        attributes={"segment": "enterprise", "region": region},
        reason=reason,
        reason_text=f"NPS 2 from {customer}",
        trigger={"row_id": f"{customer}-{reason}"},
        scores={"value_at_risk": var, "churn_probability": 0.3, "clv": var / 0.3, "tier": "high"},
    )


def test_one_open_case_per_customer_and_reason_and_moments_add_to_it(db):
    loop = settings_from_dict({}).loop
    with db.engine.begin() as conn:
        first, how = open_or_add(conn, db, opening(), naive_utc(NOW), loop)
        assert how == "opened"
        again, how = open_or_add(conn, db, opening(), naive_utc(NOW), loop)
        assert (again, how) == (first, "added")
        other, how = open_or_add(conn, db, opening(reason="complaint"), naive_utc(NOW), loop)
        assert how == "opened" and other != first
    case = CaseBook(db, loop).get(first)
    assert case["moments"] == 2 and len(case["trigger"]) == 2 and case["version"] == 2
    assert case["priority"] == "p1" and case["due_at"] == (NOW + pd.Timedelta(hours=4)).isoformat()
    assert [h["to_status"] for h in case["history"]] == [OPEN, OPEN]


def test_priority_sla_and_round_robin_owners_follow_the_rules(db):
    loop = settings_from_dict(
        {
            "loop": {
                "assignment": [{"region": "north", "team": ["ana", "ben"]}],
                "default_team": ["cy"],
            }
        }
    ).loop
    with db.engine.begin() as conn:
        ids = [
            open_or_add(conn, db, opening(f"n{i}", var=v, region="north"), naive_utc(NOW), loop)[0]
            for i, v in enumerate([30.0, 10.0, 1.0])
        ]
        south = open_or_add(conn, db, opening("s1", region="south"), naive_utc(NOW), loop)[0]
    book = CaseBook(db, loop)
    got = [book.get(i) for i in ids]
    assert [c["owner"] for c in got] == ["ana", "ben", "ana"]
    assert [c["priority"] for c in got] == ["p1", "p2", "p3"]
    assert got[2]["due_at"] == (NOW + pd.Timedelta(hours=72)).isoformat()
    assert book.get(south)["owner"] == "cy"


def test_the_lifecycle_refuses_invalid_and_stale_changes_and_needs_a_resolution(db):
    loop = settings_from_dict({}).loop
    with db.engine.begin() as conn:
        case_id, _ = open_or_add(conn, db, opening(), naive_utc(NOW), loop)
    book = CaseBook(db, loop)
    later = NOW + pd.Timedelta(minutes=30)
    moved = book.transition(case_id, IN_PROGRESS, actor="ana", now=later, version=1)
    assert moved["version"] == 2 and moved["first_response_at"] == later.isoformat()
    with pytest.raises(CaseConflict, match="changed since version 1"):
        book.transition(case_id, RESOLVED, actor="ana", now=later, version=1, resolution="refunded")
    with pytest.raises(CaseConflict, match=r"cannot become open; allowed: \['resolved'"):
        book.transition(case_id, OPEN, actor="ana", now=later)
    with pytest.raises(CaseError, match="needs a resolution code, one of"):
        book.transition(case_id, RESOLVED, actor="ana", now=later)
    done = book.transition(
        case_id, RESOLVED, actor="ana", now=later, resolution="refunded", note="called back"
    )
    assert done["status"] == RESOLVED and done["closed_at"] == later.isoformat()
    assert [(h["actor"], h["to_status"]) for h in done["history"]] == [
        ("retain", OPEN),
        ("ana", IN_PROGRESS),
        ("ana", RESOLVED),
    ]
    with pytest.raises(CaseConflict, match="it is closed"):
        book.transition(case_id, IN_PROGRESS, actor="ana", now=later)
    # Closed: the next moment for the same customer and reason opens a new case.
    with db.engine.begin() as conn:
        new, how = open_or_add(conn, db, opening(), naive_utc(later), loop)
    assert how == "opened" and new != case_id


def test_escalation_raises_priority_reassigns_hands_off_again_and_expires_old_cases(db):
    loop = settings_from_dict(
        {"loop": {"escalation": {"escalation_team": ["lead"], "expire_after_days": 10}}}
    ).loop
    with db.engine.begin() as conn:
        late, _ = open_or_add(conn, db, opening("c1", var=6.0), naive_utc(NOW), loop)  # p2, 24 h
        fresh, _ = open_or_add(conn, db, opening("c2", var=1.0), naive_utc(NOW), loop)  # p3, 72 h
        old, _ = open_or_add(conn, db, opening("c3"), naive_utc(NOW - pd.Timedelta(days=11)), loop)
    book = CaseBook(db, loop)
    counts = book.escalate(now=NOW + pd.Timedelta(hours=25))
    assert counts == {"escalated": 1, "expired": 1}
    up = book.get(late)
    assert (up["priority"], up["owner"], up["escalations"]) == ("p1", "lead", 1)
    assert up["due_at"] == (NOW + pd.Timedelta(hours=29)).isoformat()
    assert book.get(fresh)["escalations"] == 0 and book.get(old)["status"] == "expired"
    assert book.escalate(now=NOW + pd.Timedelta(hours=25)) == {"escalated": 0, "expired": 0}
    with db.engine.connect() as conn:
        events = (
            conn.execute(
                select(db.t.case_handoffs.c.idempotency_key).order_by(db.t.case_handoffs.c.id)
            )
            .scalars()
            .all()
        )
    assert f"case-{late}-escalated" in events
    total, queue = book.list(status=[OPEN, IN_PROGRESS], now=NOW + pd.Timedelta(hours=25))
    assert total == 2 and [c["id"] for c in queue] == [late, fresh]  # p1 before p3
    # Overdue first: at 80 h both are late, and the p3 one has been overdue longest.
    _, queue = book.list(status=[OPEN], now=NOW + pd.Timedelta(hours=80))
    assert [c["id"] for c in queue] == [late, fresh]
    total, overdue = book.list(overdue=True, now=NOW + pd.Timedelta(hours=30))
    assert total == 1 and overdue[0]["id"] == late


def test_the_holdout_draw_is_reproducible_and_uniform():
    draws = np.array([holdout_draw("salt", f"row-{i}") for i in range(20_000)])
    assert draws.min() >= 0 and draws.max() < 1
    assert abs((draws < 0.1).mean() - 0.1) < 0.01
    assert holdout_draw("salt", "row-1") == draws[1] != holdout_draw("pepper", "row-1")


# -- the loop on the trained world --------------------------------------------------------------


@pytest.fixture
def loop_world(tmp_path, trained_world, champions, world_tables, store_url):
    data = tmp_path / "data"
    shutil.copytree(trained_world.data_dir, data)
    settings = trained_world.settings
    store = Store(store_url)
    clock = {"now": NOW}

    def make(webhook_url=""):
        return LoopCore(
            champions,
            settings,
            store,
            read_history(data, store),  # as the service starts: tables plus the inbox
            clock=lambda: clock["now"],
            webhook_url=webhook_url,
            drop_dir=data / "drop",
            background=False,
        )

    yield make, store, clock, data
    store.close()


def _valuable(world_features, champions, settings) -> list[str]:
    from serving.core.scoring import score_frame

    s = score_frame(world_features, champions, settings, reasons=False)
    return list(s.sort_values("value_at_risk", ascending=False).index.astype(str)[:40])


def detractor(cid: str, event_id: str, comment: str = "Worst service ever, I am leaving") -> dict:
    return {
        "customer_id": cid,
        "ts": "2026-01-01T12:00:00Z",
        "survey": "nps",
        "score": 1,
        "comment": comment,
        "event_id": event_id,
    }


def _event_id_with(draw_below: bool, salt: str) -> str:
    for i in range(1000):
        eid = f"nps-{i}"
        if (holdout_draw(salt, eid) < 0.1) == draw_below:
            return eid
    raise AssertionError("no such id")


def test_a_detractor_becomes_one_case_rescored_at_once_and_a_retry_changes_nothing(
    loop_world, world_features, champions, Receiver
):
    make, store, clock, data = loop_world
    with Receiver() as receiver:
        core = make(webhook_url=receiver.url)
        cid = _valuable(world_features, champions, core.settings)[0]
        eid = _event_id_with(False, core.settings.loop.holdout_salt)
        got = core.ingest("feedback", [detractor(cid, eid)])
        core.deliver()
        again = core.ingest("feedback", [detractor(cid, eid)])
        core.deliver()
    assert (got.stored, got.duplicates, got.rejected) == (1, 0, [])
    assert [m.outcome for m in got.moments] == [OPENED]
    case = core.case(got.moments[0].case_id)
    assert 'NPS 1 on 2026-01-01 12:00 UTC: "Worst service ever' in case.reason_text
    assert "Rescored at once: churn risk" in case.reason_text
    assert case.owner == "cx-team" and case.status == OPEN and case.trigger[0]["row_id"] == eid
    # The new score is the one /score answers with, and the history has it.
    fresh = core.realtime_score(cid, pd.Timestamp("2026-01-01", tz="UTC"))
    assert fresh is not None and fresh.scored_as_of == "2026-01-01T12:00:00.000001+00:00"
    assert got.rescored[0].score == fresh
    assert (again.stored, again.duplicates, again.moments) == (0, 1, [])
    assert receiver.posts == [f"case-{case.id}-opened"]
    body = receiver.accepted[f"case-{case.id}-opened"]
    assert body["customer_id"] == cid and body["event"] == "opened"
    assert (
        core.cases(
            status=None,
            owner=None,
            priority=None,
            customer_id=cid,
            overdue=False,
            limit=10,
            offset=0,
        ).matching
        == 1
    )
    # A second, different detractor answer joins the open case.
    more = core.ingest("feedback", [detractor(cid, eid + "-b", "Still nothing fixed")])
    assert [m.outcome for m in more.moments] == ["added"]
    assert core.case(case.id).moments == 2


def test_each_delivery_drops_a_new_whole_file_of_the_cases_no_file_has(
    loop_world, world_features, champions
):
    make, store, clock, data = loop_world
    core = make()
    cids = _valuable(world_features, champions, core.settings)[:3]
    salt = core.settings.loop.holdout_salt
    ids = [f"drop-{i}" for i in range(200) if holdout_draw(salt, f"drop-{i}") >= 0.1][:3]
    first = core.ingest("feedback", [detractor(c, e) for c, e in zip(cids[:2], ids, strict=False)])
    core.deliver()
    core.deliver()  # nothing new: no new file
    second = core.ingest("feedback", [detractor(cids[2], ids[2])])
    core.deliver()
    files = sorted((data / "drop").glob("cases-*.csv"))
    opened = [m.case_id for m in first.moments + second.moments if m.outcome == OPENED]
    assert len(opened) == 3 and [f.name for f in files] == [
        f"cases-2026-01-02-{n:08d}.csv" for n in (1, 3)
    ]
    frames = [pd.read_csv(f) for f in files]
    assert [len(f) for f in frames] == [2, 1]
    assert sorted(pd.concat(frames)["id"]) == sorted(opened)
    assert set(frames[0]["event"]) == {"opened"} and not list((data / "drop").glob(".*.tmp"))
    with store.engine.connect() as conn:
        status = conn.execute(select(store.t.case_handoffs.c.status)).scalars().all()
    assert status == ["sent"] * 3  # no webhook: a file carrying it is the delivery


def test_a_held_out_moment_is_recorded_opens_no_case_and_sends_nothing(
    loop_world, world_features, champions
):
    make, store, clock, data = loop_world
    core = make()
    cid = _valuable(world_features, champions, core.settings)[1]
    eid = _event_id_with(True, core.settings.loop.holdout_salt)
    got = core.ingest("feedback", [detractor(cid, eid)])
    assert [m.outcome for m in got.moments] == [HELD_OUT] and got.moments[0].case_id is None
    with store.engine.connect() as conn:
        moment = conn.execute(select(store.t.moments)).mappings().one()
        assert conn.execute(select(func.count()).select_from(store.t.cases)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(store.t.case_handoffs)).scalar() == 0
    assert moment["held_out"] and moment["draw"] < 0.1 and moment["outcome"] == HELD_OUT
    # The customer stays in the control group for the horizon: a later moment is held out too.
    later = core.ingest(
        "feedback", [detractor(cid, _event_id_with(False, core.settings.loop.holdout_salt))]
    )
    assert [m.outcome for m in later.moments] == [HELD_OUT]


def test_rows_a_crash_left_unhandled_are_handled_once_after_a_restart(
    loop_world, world_features, champions
):
    make, store, clock, data = loop_world
    first = make()
    ids = _valuable(world_features, champions, first.settings)[:3]
    rows = pd.DataFrame([detractor(c, f"crash-{c}") for c in ids])
    # Accepted and committed, then the process died before the loop's step.
    ingest_rows(store, "feedback", rows, first.history.known, received_at=NOW, source="http")
    restarted = make()  # as the service starts: it reads the inbox as history, then steps

    handled = restarted.step(everything=True)  # what a starting service runs first
    assert handled.rows == 3
    assert restarted.step(everything=True).rows == 0
    with store.engine.connect() as conn:
        cases = conn.execute(select(store.t.cases.c.customer_id)).scalars().all()
        moments = conn.execute(select(func.count()).select_from(store.t.moments)).scalar()
    opened = [m for m in handled.moments if m["outcome"] == OPENED]
    assert sorted(cases) == sorted(m["customer_id"] for m in opened) and moments == 3


def test_two_processes_on_one_store_handle_each_row_once_and_post_each_case_once(
    loop_world, world_features, champions, Receiver
):
    """Two loops over one store (two service workers or replicas, each with its own history)
    ingest concurrently: every row is handled once, by the process that stored it, each answer
    names the decisions on its own rows, and each case is opened and posted once."""
    import threading

    make, store, clock, data = loop_world
    with Receiver(delay=0.01) as receiver:
        procs = [make(webhook_url=receiver.url), make(webhook_url=receiver.url)]
        valuable = _valuable(world_features, champions, procs[0].settings)[:12]
        answers: list[tuple[list[str], object]] = []
        errors: list[BaseException] = []

        def client(k: int) -> None:
            try:
                for b in range(4):
                    rows = [
                        detractor(valuable[(k * 5 + b * 3 + i) % 12], f"r-{k}-{b}-{i}")
                        for i in range(3)
                    ]
                    got = procs[k % 2].ingest("feedback", rows)
                    answers.append(([r["event_id"] for r in rows], got))
            except BaseException as exc:  # surfaced below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # A row whose process died before its step: the other takes it once it is stale.
        ingest_rows(
            store,
            "feedback",
            pd.DataFrame([detractor(valuable[0], "orphan")]),
            procs[0].history.known,
            received_at=NOW,
            source="http",
        )
        assert procs[1].step().rows == 0  # not stale yet: its process may still step
        clock["now"] = NOW + pd.Timedelta(seconds=procs[1].settings.loop.stale_after_s + 1)
        assert procs[1].step().row_ids == {"orphan"}
        delivering = [threading.Thread(target=p.deliver) for p in procs for _ in range(2)]
        for t in delivering:
            t.start()
        for t in delivering:
            t.join()

    for ids, got in answers:
        assert sorted(m.row_id for m in got.moments) == sorted(ids)
        assert {r.customer_id for r in got.rescored} == {
            m.customer_id for m in got.moments if m.outcome != "not_scored"
        }
    with store.engine.connect() as conn:
        t = store.t
        inbox = conn.execute(select(t.inbox_feedback.c.processed_at)).scalars().all()
        moments = conn.execute(select(t.moments.c.row_id)).scalars().all()
        scored = conn.execute(select(t.score_history.c.row_id)).scalars().all()
        cases = conn.execute(select(t.cases.c.id, t.cases.c.customer_id, t.cases.c.reason)).all()
    assert len(inbox) == 4 * 4 * 3 + 1 and all(at is not None for at in inbox)
    assert sorted(moments) == sorted([i for ids, _ in answers for i in ids] + ["orphan"])
    assert len(scored) == len(set(scored))  # no rescoring stored twice
    assert len({(c, r) for _, c, r in cases}) == len(cases) > 0  # one case per customer, reason
    assert receiver.reposted() == []
    assert set(receiver.accepted) == {f"case-{i}-opened" for i, _, _ in cases}


def test_requests_stored_together_are_each_answered_for_their_own_rows(
    loop_world, world_features, champions
):
    """Group commit: requests that arrive while one is being stored are checked, stored and
    rescored in one go, and each answer (and the quarantine) still speaks of its own rows."""
    import threading

    make, store, clock, data = loop_world
    core = make()
    a, b = _valuable(world_features, champions, core.settings)[:2]
    first = [detractor(a, "g-1"), {**detractor(b, "g-2"), "score": 42}]
    second = [{**detractor(b, "g-3"), "ts": "soon"}, detractor(a, "g-1"), detractor(b, "g-4")]
    answers = {}
    with core._ingest_lock:  # hold the door until both requests wait behind it
        threads = [
            threading.Thread(
                target=lambda k, r: answers.update({k: core.ingest("feedback", r)}), args=(k, r)
            )
            for k, r in (("first", first), ("second", second))
        ]
        for t in threads:
            t.start()
        while len(core._queued) < 2:
            pass
    for t in threads:
        t.join()
    one, two = answers["first"], answers["second"]
    assert (one.received, one.stored, one.duplicates) == (2, 1, 0)
    assert [(r.item, r.field) for r in one.rejected] == [(1, "score")]
    assert one.row_ids == ["g-1", None] and [m.row_id for m in one.moments] == ["g-1"]
    # g-1 again in the second request: stored once, by the first, a duplicate here.
    assert (two.received, two.stored, two.duplicates) == (3, 1, 1)
    assert [(r.item, r.field) for r in two.rejected] == [(0, "ts")]
    assert two.row_ids == [None, "g-1", "g-4"] and [m.row_id for m in two.moments] == ["g-4"]
    assert {r.customer_id for r in one.rescored} == {a} and {
        r.customer_id for r in two.rescored
    } == {b}
    with store.engine.connect() as conn:
        quarantined = conn.execute(select(store.t.inbox_rejected.c.item)).scalars().all()
        stored = conn.execute(select(store.t.inbox_feedback.c.row_id)).scalars().all()
    assert sorted(quarantined) == [0, 1] and sorted(stored) == ["g-1", "g-4"]


def test_rows_stored_without_a_request_are_handled_by_the_background_step(
    loop_world, world_features, champions
):
    """`retain ingest` stores rows in the inbox while a service runs: with no request to step
    over them, the service's background step handles them once they are stale."""
    import time

    make, store, clock, data = loop_world
    base = make()
    settings = base.settings.model_copy(
        update={"loop": base.settings.loop.model_copy(update={"stale_after_s": 1.0})}
    )
    core = LoopCore(
        champions,
        settings,
        store,
        read_history(data, store),
        clock=lambda: clock["now"],
        webhook_url="",
        drop_dir=data / "drop",
        background=True,
    )
    cid = _valuable(world_features, champions, settings)[0]
    ingest_rows(
        store,
        "feedback",
        pd.DataFrame([detractor(cid, "from-a-file")]),
        core.history.known,
        received_at=NOW,
        source="retain ingest",
    )
    clock["now"] = NOW + pd.Timedelta(seconds=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            moments = conn.execute(select(store.t.moments.c.row_id)).scalars().all()
        if moments:
            break
        time.sleep(0.1)
    core.ticker.stop()
    core.sender.stop()
    assert moments == ["from-a-file"]
    assert core.realtime_score(cid, None) is not None


def test_every_outreach_contact_becomes_one_retention_case_in_the_same_queue(tmp_path, db):
    from serving.outreach.run import run_outreach

    rng = np.random.default_rng(3)
    n = 60
    scored = pd.DataFrame(
        {
            "customer_id": [f"r{i:03d}" for i in range(n)],
            "segment": "consumer",
            "churn_probability": rng.uniform(0.2, 0.9, n),
            "clv": rng.uniform(60, 400, n),
            "tier": "high",
            "reason_1": "no purchase for 90 days",
            "churn_model_version": "1",
            "clv_model_version": "1",
        }
    )
    scored["value_at_risk"] = scored["churn_probability"] * scored["clv"]
    settings = settings_from_dict({"outreach": {"capacity_per_run": 20}})
    as_of = pd.Timestamp("2026-01-01", tz="UTC")
    kwargs = dict(data_dir=tmp_path, webhook_url="", store=db, open_cases=True, now=NOW)
    report = run_outreach(scored, as_of, settings, **kwargs)
    contacts = report.selection[report.selection["group"] == "contact"]
    assert report.cases == {"opened": len(contacts), "added": 0, "already": 0}
    book = CaseBook(db, settings.loop)
    total, cases = book.list(status=[OPEN], limit=100)
    assert total == len(contacts)
    assert {c["customer_id"] for c in cases} == set(contacts["customer_id"])
    assert all(c["kind"] == "retention" and c["reason"] == "retention" for c in cases)
    assert cases[0]["reason_text"].startswith("Selected by outreach run ")
    again = run_outreach(scored, as_of, settings, **kwargs)
    assert again.cases == {"opened": 0, "added": 0, "already": len(contacts)}
    assert book.list(limit=100)[0] == total


def test_customers_are_rescored_together_within_the_window_and_exactly_without_it():
    from serving.loop.process import AFTER_ROW, rescore_times

    t = pd.Timestamp("2026-01-01 10:00", tz="UTC")
    s = pd.Timedelta(seconds=1)
    newest = {"a": t, "b": t + 20 * s, "c": t + 59 * s, "d": t + 61 * s, "e": t - 3600 * s}
    got = rescore_times(newest, 60)
    assert got == {
        t - 3600 * s + AFTER_ROW: ["e"],
        t + 59 * s + AFTER_ROW: ["a", "b", "c"],
        t + 61 * s + AFTER_ROW: ["d"],
    }
    exact = rescore_times(newest, 0)
    assert all(len(ids) == 1 and newest[ids[0]] + AFTER_ROW == k for k, ids in exact.items())


def test_rows_another_writer_stored_reach_this_history_before_its_next_rescoring(
    loop_world, world_features, champions
):
    make, store, clock, data = loop_world
    service = make()
    other = make()  # as `retain ingest` or a second replica: its own history, the same store
    cid = _valuable(world_features, champions, service.settings)[5]
    row = {
        "customer_id": cid,
        "ts": "2026-01-01T13:00:00Z",
        "channel": "store",
        "event_type": "purchase",
        "amount": 321.0,
        "event_id": "elsewhere-1",
    }
    other.ingest("events", [row])
    before = service.history.tables_of([cid]).events
    assert "event_id" not in before or not (before["event_id"] == "elsewhere-1").any()
    service.ingest("feedback", [detractor(cid, "here-1")])  # its step catches up first
    events = service.history.tables_of([cid]).events
    assert (events["event_id"] == "elsewhere-1").sum() == 1
    assert service.history.catch_up(store) == 0  # nothing new, nothing added twice
