"""The closed loop against a real `retain serve` (the issue's acceptance): a detractor answer
with a bitter comment for a high-value customer becomes, within a second, a case naming that
answer, handed to the webhook exactly once with its idempotency key, and `/score` shows the
customer's new score; the same POST again changes nothing; a held-out customer's moment is
recorded with no case and nothing sent; and a worker killed (SIGKILL) between committing a
batch and opening its cases leaves each row in the inbox once and each case opened once."""

from __future__ import annotations

import shutil
import sqlite3
import time
from contextlib import closing

import httpx
import pytest
from sqlalchemy import func, select

from serving.core.ranking import rank_features
from serving.loop.process import holdout_draw
from store import Store

pytestmark = pytest.mark.service

KEYS = ("loop-key",)
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
BITTER = "Third late delivery in a row and nobody even answers the phone. I am done with you."


def _event_id(salt: str, held_out: bool, prefix: str) -> str:
    for i in range(10_000):
        eid = f"{prefix}-{i}"
        if (holdout_draw(salt, eid) < 0.1) == held_out:
            return eid
    raise AssertionError("no id")


def _nps(cid: str, eid: str, comment: str = BITTER) -> dict:
    return {
        "rows": [
            {
                "customer_id": cid,
                "ts": "2026-01-01T15:00:00Z",
                "survey": "nps",
                "score": 1,
                "comment": comment,
                "event_id": eid,
            }
        ]
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_world, champions, world_features, score_as_of, save_snapshot):
    tmp = tmp_path_factory.mktemp("loop_service")
    data = tmp / "data"
    shutil.copytree(trained_world.data_dir, data)
    ranked = rank_features(world_features, champions, trained_world.settings)
    save_snapshot(data, score_as_of, ranked, world_features)
    config = tmp / "service.yaml"
    config.write_text("service: {max_request_items: 100}\n")
    return tmp, data, config, ranked


def test_a_detractor_becomes_a_case_at_once_handed_off_once(
    world, trained_world, running_service, Receiver
):
    tmp, data, config, ranked = world
    salt = trained_world.settings.loop.holdout_salt
    valuable = ranked.loc[ranked["tier"] == "high", "customer_id"].tolist()
    cid, held = valuable[0], valuable[1]
    eid = _event_id(salt, False, "nps")
    with (
        Receiver() as receiver,
        running_service(
            tmp,
            data,
            config,
            trained_world.tracking_uri,
            KEYS,
            {"RETAIN_CASES_WEBHOOK_URL": receiver.url},
        ) as srv,
        httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client,
    ):
        before = client.post("/score", json={"customer_ids": [cid]}).json()["results"][0]["score"]
        assert before["scored_as_of"] is None
        start = time.monotonic()
        posted = client.post("/feedback", json=_nps(cid, eid))
        assert posted.status_code == 200, f"{posted.text}\n{srv.tail()}"
        cases = client.get("/cases/", params={"customer_id": cid}).json()
        took = time.monotonic() - start
        assert took < 1.0, f"the case took {took:.2f} s"
        assert cases["matching"] == 1
        case = cases["cases"][0]
        assert (
            "NPS 1 on 2026-01-01 15:00 UTC" in case["reason_text"]
            and BITTER[:40] in case["reason_text"]
        )
        assert case["trigger"][0]["row_id"] == eid and case["status"] == "open"
        after = client.post("/score", json={"customer_ids": [cid]}).json()["results"][0]["score"]
        assert after["scored_as_of"] == "2026-01-01T15:00:00.000001+00:00"
        assert after == posted.json()["rescored"][0]["score"]

        again = client.post("/feedback", json=_nps(cid, eid)).json()
        assert (again["stored"], again["duplicates"], again["moments"]) == (0, 1, [])

        held_id = _event_id(salt, True, "nps-held")
        out = client.post("/feedback", json=_nps(held, held_id)).json()
        assert [(m["outcome"], m["case_id"]) for m in out["moments"]] == [("held_out", None)]
        assert client.get("/cases/", params={"customer_id": held}).json()["matching"] == 0

        key = f"case-{case['id']}-opened"
        deadline = time.monotonic() + 10
        while key not in receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing else may arrive
        assert receiver.posts == [key], srv.tail()
        assert receiver.accepted[key]["customer_id"] == cid and not receiver.mismatched

        moved = client.post(
            f"/cases/{case['id']}/transition",
            json={"to": "in_progress", "actor": "ana", "version": case["version"]},
        )
        assert moved.status_code == 200 and moved.json()["version"] == case["version"] + 1
        stale = client.post(
            f"/cases/{case['id']}/transition",
            json={
                "to": "resolved",
                "actor": "ana",
                "version": case["version"],
                "resolution": "refunded",
            },
        )
        assert stale.status_code == 409 and "changed since version" in stale.json()["error"]
        wrong = client.post(f"/cases/{case['id']}/transition", json={"to": "open", "actor": "ana"})
        assert wrong.status_code == 409 and "allowed: ['resolved'" in wrong.json()["error"]
        shown = client.get(f"/cases/{case['id']}").json()
        assert [h["to_status"] for h in shown["history"]] == ["open", "in_progress"]
        bad = client.post(
            "/events",
            json={
                "rows": [
                    {"customer_id": cid, "ts": "soon", "channel": "web", "event_type": "visit"},
                    {
                        "customer_id": cid,
                        "ts": "2026-01-01T16:00:00Z",
                        "channel": "web",
                        "event_type": "visit",
                    },
                ]
            },
        ).json()
        assert bad["rejected"] == [{"item": 0, "field": "ts", "reason": "unparseable ts"}]
        assert bad["stored"] == 1 and bad["row_ids"][0] is None
        assert httpx.get(f"{srv.url}/cases/").status_code == 401


def test_a_worker_killed_after_committing_a_batch_opens_each_case_once(
    world, trained_world, running_service, tmp_path
):
    tmp, data, config, ranked = world
    data2 = tmp_path / "data"
    shutil.copytree(data, data2, ignore=shutil.ignore_patterns("store"))
    salt = trained_world.settings.loop.holdout_salt
    ids = ranked.loc[ranked["tier"] == "high", "customer_id"].tolist()[2:5]
    rows = [_nps(c, _event_id(salt, False, f"kill-{c}"))["rows"][0] for c in ids]
    env = {"RETAIN_TEST_CRASH_AT": "after_commit"}
    with running_service(tmp_path, data2, config, trained_world.tracking_uri, KEYS, env) as srv:
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
            with pytest.raises(httpx.TransportError):
                client.post("/feedback", json={"rows": rows})
    # Restarted without the hook: the rows a crash left are the new worker's first step.
    with running_service(tmp_path, data2, config, trained_world.tracking_uri, KEYS) as srv:
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
            cases = client.get("/cases/").json()
            retried = client.post("/feedback", json={"rows": rows}).json()
            after = client.get("/cases/").json()
    assert sorted(c["customer_id"] for c in cases["cases"]) == sorted(ids), srv.tail()
    assert retried["stored"] == 0 and retried["duplicates"] == 3 and after["matching"] == 3
    with Store(f"sqlite:///{data2 / 'store' / 'retain.db'}") as db, db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.t.inbox_feedback)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(db.t.moments)).scalar() == 3


def test_two_workers_open_each_case_once_post_it_once_and_both_know_the_new_scores(
    world, trained_world, running_service, Receiver, tmp_path
):
    """`retain serve --workers 2` (service.workers): detractor answers sent at once over
    separate connections, so both workers ingest, open each case once, hand each off once, and
    either worker answers /score with the rescoring the other one made. Then a new champion is
    promoted in the registry: both workers serve it within seconds, without a restart."""
    import threading

    from mlflow import MlflowClient

    tmp, data, config, ranked = world
    data2 = tmp_path / "data"
    shutil.copytree(data, data2, ignore=shutil.ignore_patterns("store"))
    two = tmp_path / "two.yaml"
    two.write_text("service: {max_request_items: 100, workers: 2, champion_check_s: 1}\n")
    # A registry of its own (the models' files stay where they are): this test promotes.
    registry_db = tmp_path / "mlflow.db"
    source = sqlite3.connect(trained_world.tracking_uri.removeprefix("sqlite:///"))
    with closing(source), closing(sqlite3.connect(registry_db)) as copy:
        source.backup(copy)  # whole, whatever its journal still holds
    tracking_uri = f"sqlite:///{registry_db}"
    salt = trained_world.settings.loop.holdout_salt
    ids = ranked.loc[ranked["tier"] == "high", "customer_id"].tolist()[5:11]
    # The first customer answers twice, from two connections: one case, the second joins it.
    sends = [(c, _event_id(salt, False, f"two-{c}")) for c in ids]
    sends.append((ids[0], _event_id(salt, False, f"two-again-{ids[0]}")))
    answers, errors = {}, []
    with (
        Receiver() as receiver,
        running_service(
            tmp_path,
            data2,
            two,
            tracking_uri,
            KEYS,
            {"RETAIN_CASES_WEBHOOK_URL": receiver.url},
        ) as srv,
    ):
        deadline = time.monotonic() + 60
        while srv.log.read_text().count("Service retain initialized") < 2:  # both workers
            assert time.monotonic() < deadline, srv.tail()
            time.sleep(0.2)

        def send(cid: str, eid: str) -> None:
            try:
                with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
                    answers[eid] = client.post("/feedback", json=_nps(cid, eid))
            except httpx.HTTPError as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=s) for s in sends]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and all(a.status_code == 200 for a in answers.values()), srv.tail()
        outcomes = sorted(a.json()["moments"][0]["outcome"] for a in answers.values())
        assert outcomes == ["added"] + ["opened"] * len(ids), srv.tail()
        scores = {}
        for cid in ids:
            for _ in range(4):  # new connections: both workers answer some
                with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
                    got = client.post("/score", json={"customer_ids": [cid]}).json()
                scores.setdefault(cid, set()).add(got["results"][0]["score"]["scored_as_of"])
            cases = httpx.get(f"{srv.url}/cases/", params={"customer_id": cid}, headers=AUTH)
            assert cases.json()["matching"] == 1
        keys = {f"case-{a.json()['moments'][0]['case_id']}-opened" for a in answers.values()}
        deadline = time.monotonic() + 10
        while set(receiver.accepted) != keys and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing else may arrive

        # A promotion: a new version of churn becomes champion (the same model files, so the
        # scores stay comparable), and both workers follow it.
        mlflow = MlflowClient(tracking_uri=tracking_uri)
        old = mlflow.get_model_version_by_alias("churn", "champion")
        files = mlflow.get_model_version_download_uri("churn", old.version)
        new = mlflow.create_model_version("churn", source=files, run_id=old.run_id)
        mlflow.set_registered_model_alias("churn", "champion", new.version)
        others = ranked["customer_id"].tolist()[20:24]  # no real-time scores of their own
        before = {}
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
            for r in client.post("/score", json={"customer_ids": others}).json()["results"]:
                before[r["customer_id"]] = r["score"]
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while seen[-8:] != [str(new.version)] * 8:  # 8 answers in a row, over new connections
            assert time.monotonic() < deadline, (seen, srv.tail())
            with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
                got = client.post("/score", json={"customer_ids": others}).json()["results"]
            versions = {r["score"]["churn_model_version"] for r in got}
            assert len(versions) == 1, got  # one request, one set of models
            seen.append(versions.pop())
            for r in got:
                assert (
                    r["score"]["churn_probability"] == before[r["customer_id"]]["churn_probability"]
                )
            time.sleep(0.1)
        assert srv.log.read_text().count(f"new champions: churn v{old.version} -> v") == 2
    assert scores == {c: {"2026-01-01T15:00:00.000001+00:00"} for c in ids}, srv.tail()
    assert sorted(receiver.posts) == sorted(keys) and len(keys) == len(ids)
