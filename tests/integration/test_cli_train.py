"""`retain train | models | promote` end to end through the console script, in a temporary folder
with a temporary MLflow store: the gate promotes a model that earns it and keeps a weak one as
challenger, a manual promotion is recorded, and the leakage guard stops a planted leak."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

RETAIN = shutil.which("retain") or str(Path(sys.executable).parent / "retain")


def retain(*args, cwd, store):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    return subprocess.run(
        [RETAIN, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    run = retain(
        "generate",
        "--out",
        tmp / "data",
        "--customers",
        3000,
        "--seed",
        11,
        cwd=tmp,
        store=tmp / "unused",
    )
    assert run.returncode == 0, run.stderr
    return tmp


def _client(store: Path) -> MlflowClient:
    uri = f"sqlite:///{store}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_gate_promotes_earned_model_keeps_weak_one_and_records_manual_promotion(world, tmp_path):
    store = tmp_path / "mlruns"
    first = retain("train", "--data", world / "data", cwd=tmp_path, store=store)
    assert first.returncode == 0, first.stderr
    assert "churn v1: champion" in first.stdout and "clv v1: champion" in first.stdout
    assert "mlflow ui --backend-store-uri" in first.stdout

    weak = tmp_path / "weak.yaml"
    weak.write_text(
        "training:\n  num_boost_round: 1\n  churn_params: {num_leaves: 2}\n  clv_params: {num_leaves: 2}\n"
    )
    second = retain("train", "--data", world / "data", "--config", weak, cwd=tmp_path, store=store)
    assert second.returncode == 0, second.stderr
    assert "churn v2: challenger" in second.stdout, second.stdout
    assert "clv v2: challenger" in second.stdout, second.stdout

    client = _client(store)
    for name in ("churn", "clv"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
        v2 = client.get_model_version(name, "2")
        assert v2.tags["gate_decision"] == "kept as challenger"
        assert "champion" in v2.tags["gate_reason"]

    # The run is complete: metrics for models and baselines, config, lineage, plots, reference.
    run = client.get_run(client.get_model_version("churn", "1").run_id)
    for key in (
        "churn.roc_auc",
        "churn.ece",
        "churn.baseline.logistic.roc_auc",
        "clv.gini_normalized",
        "clv.baseline.bgnbd_gg.spearman",
    ):
        assert key in run.data.metrics, key
    assert run.data.metrics["churn.roc_auc"] > run.data.metrics["churn.baseline.logistic.roc_auc"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "lineage.json", "plots", "reference"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/churn_roc.png",
        "plots/churn_calibration.png",
        "plots/clv_gains.png",
        "plots/churn_shap_summary.png",
    } <= plots

    promoted = retain(
        "promote",
        "--model",
        "churn",
        "--version",
        "2",
        "--reason",
        "smaller model for the pilot",
        cwd=tmp_path,
        store=store,
    )
    assert promoted.returncode == 0, promoted.stderr
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "2"
    tags = client.get_model_version("churn", "2").tags
    assert (
        tags["promotion"] == "manual" and tags["promotion_reason"] == "smaller model for the pilot"
    )

    listing = retain("models", cwd=tmp_path, store=store)
    assert listing.returncode == 0, listing.stderr
    assert "manual promotion: smaller model for the pilot" in listing.stdout

    missing = retain(
        "promote", "--model", "churn", "--version", "9", "--reason", "x", cwd=tmp_path, store=store
    )
    assert missing.returncode == 2 and "no version 9" in missing.stderr

    # The champion loads by alias and gives probabilities for a features frame.
    features = tmp_path / "features.parquet"
    run_f = retain(
        "features",
        "--data",
        world / "data",
        "--as-of",
        "2025-11-01",
        "--out",
        features,
        cwd=tmp_path,
        store=store,
    )
    assert run_f.returncode == 0, run_f.stderr
    X = pd.read_parquet(features)
    p = mlflow.pyfunc.load_model("models:/churn@champion").predict(X)
    assert len(p) == len(X) and ((p >= 0) & (p <= 1)).all()


def test_leakage_guard_stops_on_a_planted_post_outcome_column(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    customers = pd.read_parquet(data / "customers.parquet")
    churn = pd.read_parquet(data / "churn.parquet").set_index("customer_id")["churn_date"]
    # A cancellation date copied from the outcome: known only after the churn it describes.
    customers["cancelled_at"] = customers["customer_id"].map(churn)
    customers.to_parquet(data / "customers.parquet", index=False)

    run = retain("train", "--data", data, cwd=tmp_path, store=tmp_path / "mlruns")
    assert run.returncode != 0
    assert "label leakage" in run.stderr and "cancelled_at:" in run.stderr, run.stderr

    allow = tmp_path / "allow.yaml"
    allow.write_text(
        "training:\n  allow_leaky_features: [cancelled_at]\n  num_boost_round: 30\n"
        "  search: {trials: 0}\n"
    )
    run = retain(
        "train", "--data", data, "--config", allow, cwd=tmp_path, store=tmp_path / "mlruns"
    )
    assert run.returncode == 0, run.stderr


def test_backtest_writes_the_report_and_one_parent_run_with_a_child_per_cutoff(world, tmp_path):
    store = tmp_path / "mlruns"
    # The report and the runs are under test, not the search (the gate test runs the defaults).
    unsearched = tmp_path / "unsearched.yaml"
    unsearched.write_text("training:\n  search: {trials: 0}\n")
    run = retain(
        "backtest",
        "--data",
        world / "data",
        "--config",
        unsearched,
        "--cutoffs",
        "2025-06-01, 2025-07-01",
        "--horizon",
        60,
        "--bootstrap",
        20,
        "--out",
        tmp_path / "report",
        cwd=tmp_path,
        store=store,
    )
    assert run.returncode == 0, run.stderr
    assert "| churn | roc_auc | bgnbd" in run.stdout
    names = {p.name for p in (tmp_path / "report").iterdir()}
    assert {
        "backtest.md",
        "backtest.csv",
        "intervals.csv",
        "churn_intervals.png",
        "clv_intervals.png",
        "churn_calibration.png",
        "clv_decile_calibration.png",
    } <= names
    table = pd.read_csv(tmp_path / "report" / "backtest.csv")
    assert set(table["cutoff"]) == {"2025-06-01", "2025-07-01", "pooled"}
    client = _client(store)
    runs = client.search_runs([client.get_experiment_by_name("retain-training").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert "churn.roc_auc.vs.bgnbd.low" in parents[0].data.metrics
    assert "churn.retain.roc_auc" in children[0].data.metrics
    bad = retain(
        "backtest", "--data", world / "data", "--cutoffs", "2031-01-01", cwd=tmp_path, store=store
    )
    assert bad.returncode == 2 and "horizon ends after the data" in bad.stderr


def test_a_first_model_that_loses_to_a_baseline_serves_as_a_labelled_fallback(world, tmp_path):
    store = tmp_path / "mlruns"
    weak = tmp_path / "weak.yaml"
    weak.write_text(
        "training:\n  num_boost_round: 1\n  classic_models: false\n"
        "  churn_params: {num_leaves: 2}\n  clv_params: {num_leaves: 2}\n"
    )
    first = retain("train", "--data", world / "data", "--config", weak, cwd=tmp_path, store=store)
    assert first.returncode == 0, first.stderr
    assert "FALLBACK churn: roc_auc" in first.stderr and "does not beat baseline" in first.stderr
    assert "To earn one" in first.stderr and "retain backtest" in first.stderr
    client = _client(store)
    v1 = client.get_model_version_by_alias("churn", "champion")
    assert str(v1.version) == "1" and v1.tags["fallback"] == "true"
    assert v1.tags["gate_decision"] == "promoted as fallback"

    scored = retain(
        "score",
        "--data",
        world / "data",
        "--as-of",
        "2025-11-01",
        "--out",
        tmp_path / "at_risk.csv",
        cwd=tmp_path,
        store=store,
    )
    assert scored.returncode == 0, scored.stderr
    assert "the churn champion is a FALLBACK" in scored.stderr
    assert len(pd.read_csv(tmp_path / "at_risk.csv")) > 0

    # The first model that beats the baselines replaces the fallback, whatever its own numbers.
    unsearched = tmp_path / "unsearched.yaml"
    unsearched.write_text("training:\n  search: {trials: 0}\n")
    second = retain(
        "train", "--data", world / "data", "--config", unsearched, cwd=tmp_path, store=store
    )
    assert second.returncode == 0, second.stderr
    v2 = client.get_model_version_by_alias("churn", "champion")
    assert str(v2.version) == "2" and v2.tags["fallback"] == "false", second.stderr


def test_mlflow_on_postgresql_tracks_registers_and_serves_the_champions(
    world, tmp_path, postgres_url
):
    """MLflow's backend store on the same PostgreSQL server as the Retain store (a database of
    its own): `retain train` logs and registers there, `retain models` reads the aliases back and
    `retain score` loads the champions from it; without a tracking server the artifacts go to
    MLflow's default, `mlruns/` in the working directory."""
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        "training:\n  num_boost_round: 40\n  classic_models: false\n  search: {trials: 0}\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": postgres_url}

    def run(*args):
        return subprocess.run(
            [RETAIN, *map(str, args)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    trained = run("train", "--data", world / "data", "--config", quick)
    assert trained.returncode == 0, trained.stderr
    models = run("models")
    assert models.returncode == 0 and "champion" in models.stdout, models.stdout + models.stderr
    scored = run(
        "score", "--data", world / "data", "--as-of", "2025-11-01", "--out", tmp_path / "r.csv"
    )
    assert scored.returncode == 0, scored.stderr
    assert len(pd.read_csv(tmp_path / "r.csv")) > 0
    client = MlflowClient(tracking_uri=postgres_url, registry_uri=postgres_url)
    assert {
        str(client.get_model_version_by_alias(n, "champion").version) for n in ("churn", "clv")
    } == {"1"}
    assert (tmp_path / "mlruns").is_dir()  # the artifacts, beside the working directory


def test_train_and_backtest_on_a_local_cluster(world, tmp_path):
    store = tmp_path / "mlruns"
    parts = tmp_path / "parts"
    done = retain(
        "partition", "--data", world / "data", "--out", parts, "--partitions", 3,
        cwd=tmp_path, store=store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The plumbing is under test here (the models' equality with one process is in
    # tests/training/test_distributed_training.py), so the training is kept short.
    fast = tmp_path / "fast.yaml"
    fast.write_text(
        "training:\n  search: {trials: 0}\n  cutoffs: 2\n  num_boost_round: 300\n"
        "  refit_latest: false\n"
    )

    refused = retain(
        "train", "--data", world / "data", "--cluster", "local:2", cwd=tmp_path, store=store
    )
    assert refused.returncode == 2 and "retain partition" in refused.stderr
    assert "starting a local Dask cluster" not in refused.stderr  # refused before starting one

    run = retain(
        "train", "--data", parts, "--cluster", "local:2", "--config", fast,
        cwd=tmp_path, store=store,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "starting a local Dask cluster of 2" in run.stderr
    assert "validation: 3/3 partitions" in run.stderr
    assert "churn v1: champion" in run.stdout and "clv v1: champion" in run.stdout
    assert "Listening" not in run.stdout + run.stderr  # LightGBM's socket chatter is dropped

    report = tmp_path / "report"
    run = retain(
        "backtest", "--data", parts, "--cluster", "local:2", "--config", fast,
        "--cutoffs", "2025-07-01", "--horizon", 60, "--bootstrap", 20, "--out", report,
        cwd=tmp_path, store=store,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert set(pd.read_csv(report / "backtest.csv")["cutoff"]) == {"2025-07-01", "pooled"}
