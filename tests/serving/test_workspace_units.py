"""The workspace's parts on hand-built inputs: accounts (tokens spent once and kept only as
hashes, sessions, expiry, roles, saved views), the at-risk index (filters, prefix search, sort,
paging against pandas on the same frame), reason families and the server-drawn charts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from serving.core.reasons import PROFILE, family
from serving.web.accounts import AccountError, Accounts, digest
from serving.web.charts import bars, sparkline
from serving.web.index import AtRiskIndex, ListQuery
from store import Store

NOW = pd.Timestamp("2026-01-01 09:00", tz="UTC")


@pytest.fixture
def accounts(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'retain.db'}") as store:
        yield Accounts(store, session_hours=2, token_days=1)


def test_a_token_signs_in_once_and_only_its_hash_is_kept(accounts):
    token = accounts.add("ana", "agent", now=NOW)
    u = accounts.store.t.users
    with accounts.store.engine.connect() as conn:
        stored = conn.execute(select(u.c.token_hash)).scalar_one()
    assert stored == digest(token) and token not in stored
    cookie, session = accounts.sign_in(token, now=NOW)
    assert session.user.name == "ana" and not session.user.is_lead
    assert accounts.session(cookie, now=NOW).csrf == session.csrf
    with pytest.raises(AccountError, match="not valid"):
        accounts.sign_in(token, now=NOW)
    # Sessions end when they expire and when the user signs out.
    assert accounts.session(cookie, now=NOW + pd.Timedelta(hours=3)) is None
    accounts.sign_out(cookie)
    assert accounts.session(cookie, now=NOW) is None
    assert accounts.session("made-up", now=NOW) is None


def test_tokens_expire_users_are_unique_roles_checked_disable_ends_sessions(accounts):
    late = accounts.add("bo", "lead", now=NOW)
    with pytest.raises(AccountError, match="not valid"):
        accounts.sign_in(late, now=NOW + pd.Timedelta(days=2))
    with pytest.raises(AccountError, match="already"):
        accounts.add("bo", "agent", now=NOW)
    with pytest.raises(AccountError, match="unknown role"):
        accounts.add("cy", "boss", now=NOW)
    with pytest.raises(AccountError, match="1 to 200"):
        accounts.add("  ", "agent", now=NOW)
    cookie, session = accounts.sign_in(accounts.new_token("bo", now=NOW), now=NOW)
    assert session.user.is_lead
    accounts.disable("bo")
    assert accounts.session(cookie, now=NOW) is None
    assert accounts.names() == []
    with pytest.raises(AccountError, match="no user"):
        accounts.new_token("nobody", now=NOW)


def test_saved_views_are_per_user_and_replaced_by_name(accounts):
    _, ana = accounts.sign_in(accounts.add("ana", "agent", now=NOW), now=NOW)
    _, bo = accounts.sign_in(accounts.add("bo", "agent", now=NOW), now=NOW)
    accounts.save_view(ana.user, "high", "tier=high", now=NOW)
    accounts.save_view(ana.user, "high", "tier=high&segment=enterprise", now=NOW)
    accounts.save_view(bo.user, "mine", "q=C1", now=NOW)
    assert [(v["name"], v["query"]) for v in accounts.views(ana.user)] == [
        ("high", "tier=high&segment=enterprise")
    ]
    accounts.delete_view(ana.user, accounts.views(bo.user)[0]["id"])  # not hers: nothing
    assert len(accounts.views(bo.user)) == 1
    with pytest.raises(AccountError, match="name"):
        accounts.save_view(ana.user, "", "", now=NOW)


def _ranked() -> tuple[pd.DataFrame, pd.Series]:
    ranked = pd.DataFrame(
        {
            "customer_id": ["C10", "C2", "C11", "D1", "C3"],
            "segment": ["smb", "enterprise", "smb", "consumer", None],
            "churn_probability": [0.5, 0.2, 0.9, 0.1, 0.3],
            "clv": [200.0, 300.0, 50.0, 100.0, 20.0],
            "clv_low": [100.0, 200.0, 10.0, 50.0, 0.0],
            "clv_high": [300.0, 400.0, 90.0, 150.0, 40.0],
            "value_at_risk": [100.0, 60.0, 45.0, 10.0, 6.0],
            "tier": ["high", "high", "medium", "low", "low"],
            "reason_1": [
                "last NPS 3 (detractor)",
                "no visits in the last 90 days",
                "",
                "age: 40",
                None,
            ],
            "reason_2": [""] * 5,
            "reason_3": [""] * 5,
        }
    )
    regions = pd.Series({"C10": "north", "C2": "south", "C11": "north", "D1": None, "C3": "east"})
    return ranked, regions


def _ids(index: AtRiskIndex, q: ListQuery, size: int = 10) -> list[str]:
    return [index.ids[p] for p in index.view(q, size=size).positions]


def test_the_index_filters_searches_sorts_and_pages_like_pandas():
    ranked, regions = _ranked()
    index = AtRiskIndex(NOW, ranked, regions)
    assert _ids(index, ListQuery()) == ranked["customer_id"].tolist()
    assert _ids(index, ListQuery(tier=("high",), region=("north",))) == ["C10"]
    assert _ids(index, ListQuery(segment=("smb", "consumer"))) == ["C10", "C11", "D1"]
    assert _ids(index, ListQuery(family=("surveys",))) == ["C10"]
    assert _ids(index, ListQuery(family=("profile",))) == ["D1"]
    assert _ids(index, ListQuery(min_value=45.0)) == ["C10", "C2", "C11"]
    assert _ids(index, ListQuery(search="C1")) == ["C10", "C11"]
    assert _ids(index, ListQuery(search="Z")) == []
    assert _ids(index, ListQuery(tier=("none-such",))) == []
    by_churn = ranked.sort_values("churn_probability", ascending=False)["customer_id"].tolist()
    assert _ids(index, ListQuery(sort="churn_probability")) == by_churn
    assert _ids(index, ListQuery(sort="clv", ascending=True)) == ["C3", "C11", "D1", "C10", "C2"]
    page = index.view(ListQuery(page=2), size=2)
    assert (
        page.total == 5
        and page.first == 3
        and [index.ids[p] for p in page.positions] == ["C11", "D1"]
    )
    last = index.view(ListQuery(page=99), size=2)  # past the end: the last page
    assert last.first == 5 and len(last.positions) == 1
    assert len(index.view(ListQuery(), size=2, limit=4).positions) == 4
    assert index.choices("region") == ("east", "north", "south")
    assert index.row("C2")["region"] == "south" and index.row("nobody") is None
    with pytest.raises(ValueError, match="unknown sort"):
        index.view(ListQuery(sort="customer_id"), size=2)


def test_reason_families_follow_the_phrases_reasons_writes():
    assert family("detractor NPS response 12 days ago") == "surveys"
    assert family("most negative comment (sentiment -0.66)") == "comments"
    assert family("2 unresolved complaints in the last 30 days") == "complaints and support"
    assert family("last delivery issue 3 days ago") == "delivery"
    assert family("next purchase overdue (3.3x the usual gap)") == "purchase rhythm"
    assert family("no visits in the last 90 days") == "activity"
    assert family("spent 5,232 in total") == "spend and value"
    assert family("plan: basic") == PROFILE
    assert family("") == "" and family(None) == ""


def test_charts_scale_into_their_box():
    line = sparkline([0.0, 0.5, 1.0], width=106, height=26)
    assert line.points == "3.0,23.0 53.0,13.0 103.0,3.0"
    assert sparkline([0.4]) is None
    b = bars([("up", 2.0), ("down", -1.0)])
    assert (b[0].x, b[0].width, b[0].positive) == (50.0, 50.0, True)
    assert (b[1].x, b[1].width, b[1].positive) == (25.0, 25.0, False)
    assert np.isclose(sum(x.width for x in bars([("a", 0.0)])), 0.0)


def test_retain_users_prints_a_token_once_and_says_what_went_wrong(tmp_path):
    from typer.testing import CliRunner

    from retain_cli import app

    runner = CliRunner()
    data = str(tmp_path)
    added = runner.invoke(app, ["users", "add", "ana", "--role", "lead", "--data", data])
    assert added.exit_code == 0, added.output
    assert "shown only this once" in added.output and "/ui/signin" in added.output
    listed = runner.invoke(app, ["users", "list", "--data", data])
    assert "ana" in listed.output and "token not used yet" in listed.output
    token = added.output.split("\n")[2].strip()
    assert token not in listed.output
    twice = runner.invoke(app, ["users", "add", "ana", "--data", data])
    assert twice.exit_code != 0 and "retain users token ana" in twice.output
    role = runner.invoke(app, ["users", "add", "cy", "--role", "boss", "--data", data])
    assert role.exit_code != 0 and "unknown role" in role.output
    nowhere = runner.invoke(app, ["users", "list"], env={"RETAIN_STORE_URL": ""})
    assert nowhere.exit_code != 0 and "--data" in nowhere.output


def test_reports_read_the_newest_monitoring_runs_from_mlflow(tmp_path):
    import json

    import mlflow

    from serving.web.reports import Reports

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("mon", artifact_location=str(tmp_path / "art"))
        ids = []
        for day, nps in (("2025-12-01", 10.0), ("2026-01-01", -5.0)):
            folder = tmp_path / day
            folder.mkdir()
            (folder / "summary.json").write_text(json.dumps({"as_of": day, "retrain_due": False}))
            pd.DataFrame(
                {
                    "window_days": [30],
                    "group_by": ["all"],
                    "group": ["all"],
                    "kpi": ["nps"],
                    "value": [nps],
                    "n": [40],
                }
            ).to_csv(folder / "kpis.csv", index=False)
            (folder / "drift.html").write_text("<html>drift</html>")
            with mlflow.start_run(experiment_id=experiment) as run:
                for f in folder.iterdir():
                    mlflow.log_artifact(str(f))
            ids.append(run.info.run_id)
        with mlflow.start_run(experiment_id=experiment) as trained:
            mlflow.log_metrics({"churn.roc_auc": 0.74, "churn.baseline.bgnbd.roc_auc": 0.7})
        client = mlflow.tracking.MlflowClient(uri)
        client.create_registered_model("churn")
        client.create_model_version("churn", source=str(tmp_path), run_id=trained.info.run_id)
    finally:
        mlflow.set_tracking_uri(None)
    reports = Reports(uri, "mon", seconds=lambda: 0.0)
    runs = reports.latest()
    assert [str(r.as_of.date()) for r in runs] == ["2026-01-01", "2025-12-01"]
    assert runs[0].kpis["value"].tolist() == [-5.0] and runs[0].reports == ("drift.html",)
    assert reports.report(ids[1], "drift.html").read_text() == "<html>drift</html>"
    assert reports.report(ids[1], "../summary.json") is None
    assert reports.report("not-a-run", "drift.html") is None
    assert Reports(uri, "no-such-experiment", seconds=lambda: 0.0).latest() == []
    assert reports.training_metrics("churn", "1") == {"roc_auc": 0.74}
    assert reports.training_metrics("clv", "1") == {}  # no such model: nothing, no error
