"""Webhook delivery against a real local HTTP receiver that fails, drops connections and is slow:
every contact delivered exactly once by idempotency key, no control ever posted, failures left
pending for the next run, and a dispatcher killed mid-flight finishing on the next run."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from serving.outreach.outbox import read_outbox
from serving.outreach.policy import CONTACT, CONTROL
from serving.outreach.run import run_outreach

ROOT = Path(__file__).resolve().parents[2]
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
FAST_RETRIES = {"backoff_base_s": 0.002, "backoff_max_s": 0.02, "max_attempts_per_run": 6}


def settings(**outreach):
    return settings_from_dict({"outreach": {**FAST_RETRIES, **outreach}})


def scored(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "segment": rng.choice(["consumer", "business"], n),
            "churn_probability": rng.random(n),
            "clv": rng.gamma(2.0, 150.0, n),
            "tier": "high",
            "reason_1": "no purchase in 60 days",
            "churn_model_version": "3",
            "clv_model_version": "2",
        }
    )
    return frame.assign(value_at_risk=frame["churn_probability"] * frame["clv"])


def flaky(n: int, key: str) -> str:
    """Fails the first attempts, then now and then: 5xx, dropped and lost responses."""
    if n < 4:
        return ["500", "503", "drop", "503"][n]
    if n % 7 == 0:
        return "503"
    if n % 11 == 0:
        return "drop"
    if n % 13 == 0:
        return "lost"
    return "ok"


def groups(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return history[history["group"] == CONTACT], history[history["group"] == CONTROL]


def test_flaky_receiver_gets_every_contact_exactly_once_and_no_control(tmp_path, Receiver):
    delays: list[float] = []
    cfg = settings(capacity_per_run=60, control_share=0.2)
    with Receiver(flaky) as receiver:
        report = run_outreach(
            scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url, sleep=delays.append
        )
        history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
        contacts, controls = groups(history)
        assert len(contacts) == 60 and len(controls) > 0
        assert report.channel == "webhook" and report.delivered == 60 and report.pending == 0
        # Every contact accepted, by its key, and nothing else.
        assert set(receiver.accepted) == set(contacts["idempotency_key"])
        assert not set(receiver.posts) & set(controls["idempotency_key"])
        posted_ids = {body["customer_id"] for body in receiver.accepted.values()}
        assert posted_ids == set(contacts["customer_id"])
        assert not receiver.mismatched
        # Retries happened, with jittered backoff under the cap; only "lost" responses re-post a
        # key the receiver had already processed.
        assert len(receiver.posts) > 60 and delays
        assert all(0 <= d <= FAST_RETRIES["backoff_max_s"] for d in delays)
        assert contacts["attempts"].max() > 1 and (contacts["attempts"] >= 1).all()
        assert (contacts["status"] == "sent").all() and contacts["delivered_at"].notna().all()
        assert (controls["status"] == CONTROL).all() and (controls["attempts"] == 0).all()
        # The body carries what the CX tool needs.
        body = receiver.accepted[contacts["idempotency_key"].iloc[0]]
        first = contacts.iloc[0]
        assert body["customer_id"] == first["customer_id"] and body["campaign"] == "retention"
        assert body["as_of"] == "2026-01-01T00:00:00Z" and body["rank"] == first["rank"]
        assert body["value_at_risk"] == pytest.approx(first["value_at_risk"])
        assert body["reasons"] == ["no purchase in 60 days"] and body["churn_model_version"] == "3"

        # Running the same as_of again posts nothing.
        posts_before = len(receiver.posts)
        again = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url)
        assert not again.new_run and len(receiver.posts) == posts_before


def test_failed_deliveries_stay_pending_and_go_out_on_the_next_run(tmp_path, Receiver):
    cfg = settings(capacity_per_run=20, control_share=0.1, max_attempts_per_run=3)
    outbox = f"sqlite:///{tmp_path / 'store' / 'retain.db'}"
    with Receiver(lambda n, key: "503") as down:
        first = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=down.url)
        # One contact tried max_attempts times, then the pass stopped instead of hammering.
        assert len(down.posts) == 3 and len(set(down.posts)) == 1
        assert first.delivered == 0 and first.pending == 20 and "HTTP 503" in first.stopped
        history = read_outbox(outbox)
        contacts, _ = groups(history)
        assert (contacts["status"] == "pending").all()
        assert contacts["last_error"].dropna().str.startswith("HTTP 503").all()

    later = AS_OF + pd.Timedelta(days=7)
    with Receiver() as up:
        second = run_outreach(scored(), later, cfg, data_dir=tmp_path, webhook_url=up.url)
        history = read_outbox(outbox)
        contacts, controls = groups(history)
        # The pending contacts of the first run went out, plus the second run's; cooldown held.
        assert second.delivered == 40 and second.pending == 0
        assert set(up.accepted) == set(contacts["idempotency_key"])
        assert len(up.posts) == 40 and not up.reposted()
        assert not set(up.posts) & set(controls["idempotency_key"])
        by_run = history.groupby("as_of")["customer_id"].apply(set)
        assert not by_run.iloc[0] & by_run.iloc[1]
        assert (contacts["status"] == "sent").all()


def test_rejected_contacts_fail_with_the_reason_and_are_requeued_on_request(tmp_path, Receiver):
    cfg = settings(capacity_per_run=10, control_share=0.0)
    outbox = f"sqlite:///{tmp_path / 'store' / 'retain.db'}"
    with Receiver(lambda n, key: "404") as wrong:
        report = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=wrong.url)
        assert report.failed == 10 and report.pending == 0
        assert len(wrong.posts) == 10  # not retried: resending would be rejected again
        history = read_outbox(outbox)
        assert (history["status"] == "failed").all()
        assert history["last_error"].str.startswith("HTTP 404").all()
    with Receiver() as fixed:
        run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=fixed.url)
        assert fixed.posts == []  # failed contacts are not retried by a plain run
        report = run_outreach(
            scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=fixed.url, retry_failed=True
        )
        assert report.requeued == 10 and report.delivered == 10
        assert (read_outbox(outbox)["status"] == "sent").all()


KILLABLE = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from configs import settings_from_dict
    from serving.outreach.run import run_outreach

    scored_path, config, as_of, data_dir, url = sys.argv[1:]
    run_outreach(pd.read_parquet(scored_path), as_of, settings_from_dict(json.loads(config)),
                 data_dir=data_dir, webhook_url=url)
    """
)


def test_dispatcher_killed_mid_flight_delivers_the_rest_next_run_without_duplicates(
    tmp_path, Receiver
):
    lease = 3.0  # the dead dispatcher's claims hold this long after its last attempt
    outreach = {**FAST_RETRIES, "capacity_per_run": 40, "control_share": 0.15}
    outreach["claim_lease_s"] = lease
    cfg = settings_from_dict({"outreach": outreach})
    scored().to_parquet(tmp_path / "scored.parquet")
    script = tmp_path / "dispatch.py"
    script.write_text(KILLABLE)
    outbox = f"sqlite:///{tmp_path / 'store' / 'retain.db'}"

    with Receiver(delay=0.15) as receiver:
        args = [str(tmp_path / "scored.parquet"), json.dumps({"outreach": outreach})]
        args += [str(AS_OF.date()), str(tmp_path), receiver.url]
        proc = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            # Kill as soon as the 9th request has arrived, while the receiver is still handling it.
            while len(receiver.posts) < 9 and proc.poll() is None:
                assert time.monotonic() < deadline, "the dispatcher never got going"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "dispatch finished before it was killed"
        receiver.delay = 0.0
        time.sleep(0.3)  # let the receiver finish the request in flight (it answers nobody)

        interrupted = read_outbox(outbox)
        contacts, _ = groups(interrupted)
        assert len(contacts) == 40
        # A contact is marked sent only after the receiver answered: the one it accepted while
        # the sender died is still pending.
        sent_keys = set(contacts.loc[contacts["status"] == "sent", "idempotency_key"])
        in_flight = set(receiver.accepted) - sent_keys
        assert 8 <= len(sent_keys) < 40 and sent_keys <= set(receiver.accepted)
        assert len(in_flight) <= 1

        # Within its lease the dead process still holds what it claimed: nobody posts those.
        posted = len(receiver.posts)
        early = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url)
        assert early.delivered == 0 and early.pending == 40 - len(sent_keys)
        assert len(receiver.posts) == posted
        time.sleep(lease + 0.2)

        report = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url)
        assert not report.new_run and report.pending == 0

        history = read_outbox(outbox)
        contacts, controls = groups(history)
        assert len(history) == len(interrupted)  # no row added or lost
        assert history["idempotency_key"].is_unique and history["customer_id"].is_unique
        assert set(receiver.accepted) == set(contacts["idempotency_key"])
        assert (contacts["status"] == "sent").all()
        assert not set(receiver.posts) & set(controls["idempotency_key"])
        # Only the delivery in flight at the kill was posted twice (and deduplicated by key).
        assert set(receiver.reposted()) == in_flight
        assert len(receiver.posts) == len(contacts) + len(in_flight)


def test_one_contact_the_receiver_keeps_failing_does_not_hold_up_the_rest(tmp_path, Receiver):
    cfg = settings(capacity_per_run=15, control_share=0.0, max_attempts_per_run=2)
    poison: list[str] = []

    def plan(n, key):
        poison[:] = poison or [key]  # the first contact ever posted always gets a 500
        return "500" if key == poison[0] else "ok"

    with Receiver(plan) as receiver:
        first = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url)
        assert first.delivered == 0 and first.pending == 15 and first.stopped
        second = run_outreach(scored(), AS_OF, cfg, data_dir=tmp_path, webhook_url=receiver.url)
        assert second.delivered == 14 and second.pending == 1
        assert set(receiver.accepted) | set(poison) == set(first.selection["idempotency_key"])
        history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
        stuck = history[history["status"] == "pending"]
        assert stuck["idempotency_key"].tolist() == poison and stuck["attempts"].item() == 4
        assert stuck["last_error"].item().startswith("HTTP 500")


def test_dispatchers_sharing_one_store_post_every_contact_once(store_url, Receiver, tmp_path):
    """Several `retain outreach run` processes (or replicas) deliver from one store at once: each
    contact is claimed by one of them and posted once (SQLite and a real PostgreSQL)."""
    import threading

    from serving.outreach.dispatch import WebhookDispatcher
    from serving.outreach.outbox import Outbox

    cfg = settings(capacity_per_run=450, control_share=0.1)
    first = run_outreach(
        scored(1000), AS_OF, cfg, store=store_url, webhook_url="", file_drop_dir=tmp_path / "drop"
    )
    assert first.channel == "file" and first.delivered > 400  # recorded and filed; now the hook
    with Outbox(store_url) as box, box.engine.begin() as conn:
        o = box.outbox
        conn.execute(o.update().where(o.c.group == CONTACT).values(status="pending"))
    contacts = set(first.selection.loc[first.selection["group"] == CONTACT, "idempotency_key"])
    results, errors = [], []
    with Receiver(delay=0.002) as receiver:

        def deliver() -> None:
            try:
                with Outbox(store_url) as box:
                    hook = WebhookDispatcher.from_settings(receiver.url, cfg.outreach)
                    results.append(hook.dispatch(box))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=deliver) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert sorted(receiver.posts) == sorted(contacts)  # every contact, none twice
    assert sum(r.delivered for r in results) == len(contacts)
    assert sum(1 for r in results if r.delivered) >= 2  # the work was shared, not serialised
    history = read_outbox(store_url)
    assert (history.loc[history["group"] == CONTACT, "status"] == "sent").all()


def test_an_outbox_of_an_earlier_release_moves_into_the_store(tmp_path, Receiver):
    """Before the outbox lived in the store it was <data>/outreach/outbox.db: its runs, keys and
    pending contacts move into the store at the first command, so cooldown and delivery go on."""
    legacy = tmp_path / "outreach" / "outbox.db"
    legacy.parent.mkdir(parents=True)
    cfg = settings(capacity_per_run=30, control_share=0.1, cooldown_days=30)
    with Receiver(lambda n, key: "503") as down:  # the old outbox kept its contacts pending
        old = run_outreach(scored(), AS_OF, cfg, store=f"sqlite:///{legacy}", webhook_url=down.url)
    assert old.pending == 30
    with Receiver() as receiver:
        later = AS_OF + pd.Timedelta(days=10)
        report = run_outreach(scored(), later, cfg, data_dir=tmp_path, webhook_url=receiver.url)
    assert not legacy.exists() and legacy.with_name("outbox.db.moved").exists()
    history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
    assert set(history["run_id"]) == {old.run_id, report.run_id}
    before = set(old.selection["customer_id"])
    assert not before & set(report.selection["customer_id"])  # the cooldown held
    old_contacts = old.selection.loc[old.selection["group"] == CONTACT, "idempotency_key"]
    assert set(old_contacts) <= set(receiver.accepted)  # the old pending contacts went out too
    assert report.delivered == 30 + report.counts["contact"]
