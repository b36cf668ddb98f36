"""The HTTP service end to end: `retain serve` (which runs `bentoml serve`) in its own process on
a free local port, over a copy of the trained world with a scored snapshot, called over HTTP.

Checked: scores by feature records and by customer ids equal `score_frame` and batch scoring for
the same customers; 401 without or with a wrong key while the probes need none; 400 naming the
field and what was expected for malformed bodies; an error per unknown id while the known ones
are scored; 413 over the configured item and byte limits; `/at_risk` as the head of the ranked
list, filtered by segment and tier. And `retain serve` refusing to start without a champion.

The server is started once for the module (about 20 s on two busy cores: `retain serve` loads
the champions to fail fast, then BentoML's worker loads them again). Its log is shown when it
does not come up and in the message of any 5xx.
"""

from __future__ import annotations

import math
import shutil
import stat

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.core.columns import REASON_COLUMNS
from serving.core.ranking import rank_features
from serving.core.scoring import score_frame
from serving.http.keys import resolve_api_key
from serving.score_store import ScoreStore

KEYS = ("test-key-one", "test-key-two")
MAX_ITEMS = 60
# Sized so the 40 feature records of the scoring tests fit (about 3.9 kB each) and the
# padded requests of the 413 tests do not.
MAX_BYTES = 200_000
SERVICE_CONFIG = f"""\
service:
  max_request_items: {MAX_ITEMS}
  max_request_bytes: {MAX_BYTES}
  at_risk_default_n: 25
"""
NUMBERS = ("churn_probability", "clv", "clv_low", "clv_high", "value_at_risk")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory,
    trained_world,
    champions,
    world_features,
    score_as_of,
    running_service,
    save_snapshot,
):
    tmp = tmp_path_factory.mktemp("service")
    data = tmp / "data"
    shutil.copytree(trained_world.data_dir, data)
    ranked = rank_features(world_features, champions, trained_world.settings)
    save_snapshot(data, score_as_of, ranked, world_features)
    config = tmp / "service.yaml"
    config.write_text(SERVICE_CONFIG)
    with running_service(tmp, data, config, trained_world.tracking_uri, KEYS) as srv:
        yield srv._replace(ranked=ranked, features=world_features)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=60
    ) as c:
        yield c


def _post(client: httpx.Client, server, path: str, **kwargs) -> httpx.Response:
    response = client.post(path, **kwargs)
    assert response.status_code < 500, f"{response.status_code} {response.text}\n{server.tail()}"
    return response


def _records(X: pd.DataFrame) -> list[dict]:
    """Feature rows as JSON objects: numbers exact (json writes repr), NaN as null, categories
    as their value."""
    out = []
    for cid, row in zip(X.index, X.itertuples(index=False), strict=True):
        record = {"customer_id": str(cid)}
        for col, value in zip(X.columns, row, strict=True):
            if isinstance(X[col].dtype, pd.CategoricalDtype):
                record[col] = None if pd.isna(value) else str(value)
            else:
                record[col] = None if pd.isna(value) else float(value)
        out.append(record)
    return out


def _sample(features: pd.DataFrame, n: int) -> pd.DataFrame:
    """Customers spread over the population, with some missing values among them."""
    rng = np.random.default_rng(7)
    return features.iloc[np.sort(rng.choice(len(features), size=n, replace=False))]


def _assert_scores_equal(results: list[dict], expected: pd.DataFrame, *, reasons: bool = True):
    assert len(results) == len(expected)
    for result, (cid, row) in zip(results, expected.iterrows(), strict=True):
        assert result["customer_id"] == str(cid)
        assert result["error"] is None
        score = result["score"]
        for col in NUMBERS:
            assert math.isclose(score[col], row[col], rel_tol=0, abs_tol=1e-9), (cid, col)
        assert score["tier"] == row["tier"]
        assert score["segment"] == row["segment"]
        assert score["churn_model_version"] == row["churn_model_version"]
        assert score["clv_model_version"] == row["clv_model_version"]
        if reasons:
            assert score["reasons"] == [row[c] for c in REASON_COLUMNS if row[c]], cid


# --------------------------------------------------------------------------- scores


def test_scores_of_feature_records_equal_score_frame(server, client, champions, trained_world):
    X = _sample(server.features, 40)
    assert X.isna().any().any(), "the sample should include missing values"
    response = _post(client, server, "/score", json={"records": _records(X)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scored"] == len(X) and body["failed"] == 0
    assert body["snapshot_as_of"] is None
    expected = score_frame(X, champions, trained_world.settings)
    _assert_scores_equal(body["results"], expected)
    assert any(r["score"]["reasons"] for r in body["results"])


def test_scores_by_id_equal_batch_scoring_and_unknown_ids_fail_alone(
    server, client, champions, trained_world
):
    X = _sample(server.features, 30)
    ids = [str(c) for c in X.index]
    asked = ["nobody-1", *ids[:15], "nobody-2", *ids[15:]]
    response = _post(client, server, "/score", json={"customer_ids": asked})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scored"] == len(ids) and body["failed"] == 2
    assert body["snapshot_as_of"].startswith("2026-01-01")
    results = body["results"]
    assert [r["customer_id"] for r in results] == asked
    for bad in (results[0], results[16]):
        assert bad["score"] is None
        assert "unknown customer id" in bad["error"]
    scored = [r for r in results if r["error"] is None]
    # The same numbers as the batch's ranked list, and the reasons score_frame writes.
    batch = server.ranked.set_index("customer_id").loc[ids]
    _assert_scores_equal(scored, batch, reasons=False)
    _assert_scores_equal(scored, score_frame(X, champions, trained_world.settings))


def test_the_service_core_scores_records_like_score_frame(server, champions, trained_world):
    """Without HTTP, on more customers: the record path (no DataFrame per request) gives
    score_frame's numbers and reasons, whatever values are missing."""
    from serving.http.core import ServiceCore
    from serving.http.loaded import LatestList

    X = _sample(server.features, 300)
    core = ServiceCore(champions, trained_world.settings, LatestList(None, champions))
    results = core.score(records=_records(X)).model_dump()["results"]
    _assert_scores_equal(results, score_frame(X, champions, trained_world.settings))


def test_without_a_snapshot_ids_and_at_risk_say_to_run_retain_score(champions, trained_world):
    from serving.http.core import ServiceCore
    from serving.http.loaded import LatestList
    from serving.http.payloads import Refused

    core = ServiceCore(champions, trained_world.settings, LatestList(None, champions))
    for call in (lambda: core.score(customer_ids=["C1"]), lambda: core.at_risk(n=3)):
        with pytest.raises(Refused, match="retain score") as refused:
            call()
        assert refused.value.status == 404
    assert core.score(records=[]).results == []


def test_a_new_snapshot_is_picked_up_when_latest_moves(
    tmp_path, server, champions, trained_world, save_snapshot
):
    from serving.http.core import ServiceCore
    from serving.http.loaded import LatestList

    settings = trained_world.settings
    store = LatestList(ScoreStore(tmp_path), champions)
    core = ServiceCore(champions, settings, store)
    with pytest.raises(Exception, match="retain score"):
        core.at_risk(n=1)
    first = server.features.iloc[:50]
    save_snapshot(tmp_path, "2025-12-01", rank_features(first, champions, settings), first)
    assert core.at_risk(n=1).as_of.startswith("2025-12-01")
    assert store.fresh()
    second = server.features.iloc[50:80]
    save_snapshot(tmp_path, "2026-01-01", rank_features(second, champions, settings), second)
    assert not store.fresh()
    assert core.at_risk(n=1).matching == 30
    known = core.score(customer_ids=[str(first.index[0]), str(second.index[0])])
    assert [r.error is None for r in known.results] == [False, True]


def test_reasons_can_be_left_out(server, client):
    X = _sample(server.features, 3)
    response = _post(client, server, "/score", json={"records": _records(X), "reasons": False})
    assert response.status_code == 200, response.text
    assert all(r["score"]["reasons"] == [] for r in response.json()["results"])


def test_bentoml_client_calls_the_service(server):
    import bentoml

    X = _sample(server.features, 2)
    with bentoml.SyncHTTPClient(server.url, token=KEYS[1]) as bento:
        result = bento.score(customer_ids=[str(c) for c in X.index])
    assert [r["customer_id"] for r in result["results"]] == [str(c) for c in X.index]
    assert all(r["score"]["churn_model_version"] for r in result["results"])


# --------------------------------------------------------------------------- at risk


def test_at_risk_is_the_head_of_the_ranked_list(server, client):
    response = _post(client, server, "/at_risk", json={})
    assert response.status_code == 200, response.text
    body = response.json()
    top = server.ranked.head(25)  # service.at_risk_default_n in SERVICE_CONFIG
    assert [c["customer_id"] for c in body["customers"]] == top["customer_id"].tolist()
    assert [c["rank"] for c in body["customers"]] == list(range(1, 26))
    assert body["matching"] == len(server.ranked)
    first = body["customers"][0]
    assert math.isclose(first["value_at_risk"], top["value_at_risk"].iloc[0], abs_tol=1e-9)
    assert first["reasons"] == [top[c].iloc[0] for c in REASON_COLUMNS if top[c].iloc[0]]


def test_at_risk_filters_by_segment_and_tier(server, client):
    ranked = server.ranked
    segment = ranked["segment"].value_counts().index[-1]  # the smallest segment
    wanted = ranked[(ranked["segment"] == segment) & ranked["tier"].isin(["high", "medium"])]
    assert len(wanted) > 3
    response = _post(
        client, server, "/at_risk", json={"n": 3, "segment": segment, "tier": ["high", "medium"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matching"] == len(wanted)
    assert [c["customer_id"] for c in body["customers"]] == wanted["customer_id"].head(3).tolist()
    assert [c["rank"] for c in body["customers"]] == [i + 1 for i in wanted.index[:3]]
    assert all(
        c["segment"] == segment and c["tier"] in ("high", "medium") for c in body["customers"]
    )

    only_low = _post(client, server, "/at_risk", json={"n": 2, "tier": "low"}).json()
    assert [c["tier"] for c in only_low["customers"]] == ["low", "low"]
    # Customers below the batch's reasons_top_n get their reasons written when shown.
    assert all(c["reasons"] for c in only_low["customers"])


# --------------------------------------------------------------------------- auth


def test_probes_need_no_key_everything_else_does(server):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for probe in ("/healthz", "/livez", "/readyz"):
            assert anonymous.get(probe).status_code == 200, probe
        body = {"customer_ids": ["C0000001"]}
        cases = {
            "none": {},
            "wrong": {"Authorization": "Bearer not-a-key"},
            "prefix": {"Authorization": f"Bearer {KEYS[0][:-1]}"},
            "scheme": {"Authorization": f"Basic {KEYS[0]}"},
        }
        for name, headers in cases.items():
            for path in ("/score", "/at_risk"):
                response = anonymous.post(path, json=body, headers=headers)
                assert response.status_code == 401, (name, path, response.text)
                assert "Authorization: Bearer" in response.json()["error"]
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/schema.json").status_code == 401
        second = anonymous.post("/score", json=body, headers={"Authorization": f"Bearer {KEYS[1]}"})
        assert second.status_code == 200, second.text


# --------------------------------------------------------------------------- bad input


def _errors(response: httpx.Response) -> list[dict]:
    assert response.status_code == 400, response.text
    return response.json()["detail"]


def test_malformed_bodies_name_the_field_and_what_was_expected(server, client):
    post = lambda body: _post(client, server, "/score", json=body)  # noqa: E731

    (err,) = _errors(post({"customer_ids": ["C1", 7]}))
    assert err["loc"] == ["customer_ids", 1] and "string" in err["msg"]

    (err,) = _errors(post({"customer_ids": "C1"}))
    assert err["loc"] == ["customer_ids"] and "array" in err["msg"]

    (err,) = _errors(post({}))
    assert "customer_ids" in err["msg"] and "records" in err["msg"]

    (err,) = _errors(post({"customer_ids": ["C1"], "records": []}))
    assert "not both" in err["msg"]

    (err,) = _errors(post({"customers": ["C1"]}))
    assert err["loc"] == ["customers"] and "not permitted" in err["msg"]

    (err,) = _errors(post({"customer_ids": ["C1"], "reasons": "yes"}))
    assert err["loc"] == ["reasons"] and "boolean" in err["msg"]

    (err,) = _errors(post({"records": ["tenure_days"]}))
    assert err["loc"] == ["records", 0]

    record = _records(_sample(server.features, 1))[0]
    numeric, categorical = "tenure_days", "plan"
    bad = record | {numeric: "long", categorical: 3.5, "tenure_dayz": 1.0}
    errors = _errors(post({"records": [record, bad]}))
    by_loc = {tuple(e["loc"]): e["msg"] for e in errors}
    assert "number" in by_loc[("records", 1, numeric)]
    assert "did you mean 'tenure_days'" in by_loc[("records", 1, "tenure_dayz")]
    assert len(errors) == 2, errors  # a float for a categorical is a value it never saw: missing

    incomplete = {k: v for k, v in record.items() if k != "spend_total"}
    (err,) = _errors(post({"records": [incomplete]}))
    assert err["loc"] == ["records", 0] and "spend_total" in err["msg"] and "null" in err["msg"]

    nested = record | {numeric: [1, 2]}
    (err,) = _errors(post({"records": [nested]}))
    assert err["loc"] == ["records", 0, numeric]

    huge = record | {numeric: 10**400}
    (err,) = _errors(post({"records": [huge]}))
    assert err["loc"] == ["records", 0, numeric] and "range" in err["msg"]

    response = client.post(
        "/score", content=b'{"customer_ids": [', headers={"Content-Type": "application/json"}
    )
    (err,) = _errors(response)
    assert "JSON" in err["msg"]

    text = client.post("/score", content=b"customer_ids=C1", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and "application/json" in text.json()["error"]


def test_bad_at_risk_requests_are_400(server, client):
    post = lambda body: _post(client, server, "/at_risk", json=body)  # noqa: E731
    (err,) = _errors(post({"n": 0}))
    assert err["loc"] == ["n"]
    (err,) = _errors(post({"n": "ten"}))
    assert err["loc"] == ["n"] and "integer" in err["msg"]
    (err,) = _errors(post({"tier": "hot"}))
    assert err["loc"] == ["tier", 0] and "'high', 'medium' or 'low'" in err["msg"]
    (err,) = _errors(post({"segment": "no-such-segment"}))
    assert err["loc"] == ["segment"] and "unknown segment" in err["msg"]
    (err,) = _errors(post({"n": MAX_ITEMS + 1}))
    assert err["loc"] == ["n"] and "max_request_items" in err["msg"]


def test_requests_over_the_limits_are_refused_with_413(server, client):
    too_many = _post(
        client, server, "/score", json={"customer_ids": [f"C{i}" for i in range(MAX_ITEMS + 1)]}
    )
    assert too_many.status_code == 413 and "max_request_items" in too_many.json()["error"]

    padding = "x" * MAX_BYTES
    too_big = _post(client, server, "/score", json={"customer_ids": [padding]})
    assert too_big.status_code == 413 and "max_request_bytes" in too_big.json()["error"]

    def chunks():  # no Content-Length: the limit still holds while the body streams in
        yield b'{"customer_ids": ["'
        for _ in range(20):
            yield b"x" * (MAX_BYTES // 10)
        yield b'"]}'

    streamed = client.post("/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text

    fine = _post(client, server, "/score", json={"customer_ids": ["C1"] * MAX_ITEMS})
    assert fine.status_code == 200 and fine.json()["failed"] == MAX_ITEMS


# --------------------------------------------------------------------------- start-up


def test_serve_refuses_to_start_without_a_champion(tmp_path):
    import mlflow

    from retain_cli import app

    env = {
        # An empty file store: no SQLite schema to create, so the refusal is quick.
        "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "RETAIN_API_KEYS": "",
    }
    previous = mlflow.get_tracking_uri()
    try:
        result = CliRunner().invoke(app, ["serve", "--key-file", str(tmp_path / "key")], env=env)
    finally:
        mlflow.set_tracking_uri(previous)
    assert result.exit_code == 2, result.output
    assert "retain train" in result.output
    assert not (tmp_path / "key").exists()  # no key is made for a service that cannot start


def test_api_key_file_is_private_created_once_and_reused(tmp_path):
    path = tmp_path / "conf" / "retain" / "api_key"
    key, created = resolve_api_key(path)
    assert created and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_api_key(path) == (key, False)
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        resolve_api_key(path)
