"""`retain generate -> train -> score` end to end through the Typer app (in process, so the
libraries load once), in a temporary folder with a temporary MLflow store: the ranked list in
CSV and Parquet with exactly the promised columns, highest value at risk first, the scored
snapshot for the HTTP service, and a clear refusal when there is no champion to score with."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from retain_cli import app
from serving.core.columns import SCORE_COLUMNS
from serving.score_store import ScoreStore

AS_OF = "2026-01-01"
# Few trees and one LightGBM thread (see tests/serving/conftest.py): a quick but real training run.
SMALL = """\
training:
  num_boost_round: 30
  early_stopping_rounds: 5
  churn_params: {num_threads: 1}
  clv_params: {num_threads: 1}
scoring:
  reasons_top_n: 50
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A world and a store. The store is first used while empty, so the refusal to score without
    a champion is recorded before `retain train` fills it."""
    tmp = tmp_path_factory.mktemp("score")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlruns/mlflow.db"}
    (tmp / "small.yaml").write_text(SMALL)
    runner = CliRunner()
    previous = mlflow.get_tracking_uri()

    def retain(*args):
        return runner.invoke(app, [str(a) for a in args], env=env)

    try:
        generated = retain("generate", "--out", tmp / "data", "--customers", 2000, "--seed", 1)
        assert generated.exit_code == 0, generated.output
        untrained = retain(
            "score", "--data", tmp / "data", "--as-of", AS_OF, "--out", tmp / "never.csv"
        )
        trained = retain("train", "--data", tmp / "data", "--config", tmp / "small.yaml")
        assert trained.exit_code == 0, trained.output
        if "churn v1: champion" not in trained.output or "clv v1: champion" not in trained.output:
            for model in ("churn", "clv"):  # the gate's call, not this test's subject
                promoted = retain(
                    "promote", "--model", model, "--version", 1, "--reason", "integration test"
                )
                assert promoted.exit_code == 0, promoted.output
        yield tmp, retain, untrained
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_the_ranked_list_and_the_snapshot(world, suffix):
    tmp, retain, _ = world
    out = tmp / f"ranked{suffix}"
    result = retain(
        "score",
        "--data",
        tmp / "data",
        "--as-of",
        AS_OF,
        "--out",
        out,
        "--config",
        tmp / "small.yaml",
    )
    assert result.exit_code == 0, result.output

    if suffix == ".csv":
        ranked = pd.read_csv(out, keep_default_na=False, dtype={"customer_id": str})
    else:
        ranked = pd.read_parquet(out)
    assert list(ranked.columns) == list(SCORE_COLUMNS)
    assert len(ranked) > 500 and ranked["customer_id"].is_unique
    var = ranked["value_at_risk"].astype(float)
    assert var.is_monotonic_decreasing
    assert ((var - ranked["churn_probability"] * ranked["clv"]).abs() < 1e-9).all()
    assert set(ranked["tier"]) <= {"high", "medium", "low"}
    assert ranked.loc[:49, "reason_1"].ne("").all()  # reasons_top_n: 50 in small.yaml
    assert ranked.loc[50:, ["reason_1", "reason_2", "reason_3"]].eq("").all().all()
    assert ranked["churn_model_version"].astype(str).unique().tolist() == ["1"]
    assert ranked["clv_model_version"].astype(str).unique().tolist() == ["1"]

    # What the console shows: where things went, and the top five with their reasons.
    assert f"ranked list: {out}" in result.output
    assert "top 5:" in result.output
    first = ranked.iloc[0]
    assert f"1. {first['customer_id']}" in result.output
    assert first["reason_1"] in result.output
    assert "scored 1" in result.output  # progress lines (stderr)

    latest = ScoreStore(tmp / "data").latest()
    as_of, scores, features = latest.as_of, latest.ranked, latest.features
    assert as_of == pd.Timestamp(AS_OF, tz="UTC")
    assert (tmp / "data" / "scores" / "LATEST").read_text().strip() == "2026-01-01"
    assert scores["customer_id"].tolist() == ranked["customer_id"].astype(str).tolist()
    assert set(features.index) == set(scores["customer_id"])
    assert features.index.name == "customer_id" and features.shape[1] > 100


def test_no_champion_is_refused_with_how_to_train_one(world):
    tmp, _, untrained = world
    assert untrained.exit_code == 2, untrained.output
    assert "error: no 'champion' version" in untrained.output
    assert "retain train --data DIR" in untrained.output
    assert not (tmp / "never.csv").exists()


def test_bad_output_name_and_sql_source_without_snapshot_dir_are_refused(world):
    tmp, retain, _ = world
    bad = retain("score", "--data", tmp / "data", "--as-of", AS_OF, "--out", tmp / "ranked.xlsx")
    assert bad.exit_code == 2 and ".csv or .parquet" in bad.output
    sql = retain("score", "--data", "sqlite:///cx.db", "--as-of", AS_OF, "--out", tmp / "r.csv")
    assert sql.exit_code == 2 and "--snapshot-dir" in sql.output
    when = retain("score", "--data", tmp / "data", "--as-of", "someday", "--out", tmp / "r.csv")
    assert when.exit_code == 2


def test_score_on_a_local_cluster_equals_one_process(world):
    """`retain partition` then `retain score --cluster local:2` (and `retain monitor --cluster`)
    on the partitioned folder gives the same ranked list and the same scored features as one
    process reading that folder."""
    tmp, retain, _ = world
    parted = tmp / "parted"
    done = retain("partition", "--data", tmp / "data", "--out", parted, "--partitions", 3)
    assert done.exit_code == 0, done.output
    assert "3 partitions of customers, events, feedback, churn" in done.output
    got = {}
    for name, extra in (("single", []), ("cluster", ["--cluster", "local:2"])):
        result = retain(
            "score",
            "--data",
            parted,
            "--as-of",
            AS_OF,
            "--out",
            tmp / f"{name}.parquet",
            "--snapshot-dir",
            tmp / name,
            "--config",
            tmp / "small.yaml",
            *extra,
        )
        assert result.exit_code == 0, result.output
        got[name] = (pd.read_parquet(tmp / f"{name}.parquet"), ScoreStore(tmp / name).latest())
    assert "scoring: 3/3 partitions" in result.output
    pd.testing.assert_frame_equal(got["cluster"][0], got["single"][0])
    pd.testing.assert_frame_equal(got["cluster"][1].features, got["single"][1].features)
    assert len(got["cluster"][0]) > 500

    # `retain monitor --cluster` with no list stored for the date scores it on the cluster: the
    # same list and features as one process, stored in the folder; the reports follow.
    monitored = retain(
        "monitor", "--data", parted, "--as-of", AS_OF, "--out", tmp / "monitoring",
        "--config", tmp / "small.yaml", "--cluster", "local:2",
    )  # fmt: skip
    assert monitored.exit_code in (0, 3), monitored.output
    assert "scoring: 3/3 partitions" in monitored.output
    stored = ScoreStore(parted).latest()
    pd.testing.assert_frame_equal(stored.ranked, got["single"][1].ranked)
    pd.testing.assert_frame_equal(stored.features, got["single"][1].features)
    assert (tmp / "monitoring" / "summary.json").is_file()

    refused = retain(
        "score",
        "--data",
        tmp / "data",
        "--as-of",
        AS_OF,
        "--out",
        tmp / "x.csv",
        "--cluster",
        "local:2",
    )
    assert refused.exit_code == 2 and "retain partition" in refused.output
    bad = retain(
        "score", "--data", parted, "--as-of", AS_OF, "--out", tmp / "x.csv", "--cluster", "local:0"
    )
    assert bad.exit_code == 2 and "local:N" in bad.output
