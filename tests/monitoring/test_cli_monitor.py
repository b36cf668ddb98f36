"""`retain monitor` and `retain retrain` through the Typer app, on the serving tests' trained
world (champions in a temporary MLflow store; see tests/serving/conftest.py) with the monitoring
reference logged on the champion's run as `retain train` logs it, and one past snapshot old
enough to have matured."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from configs import settings_from_dict
from retain_cli import app
from training.lock import LOCK_NAME

AS_OF = "2026-01-01"
PAST_AS_OF = pd.Timestamp("2025-09-01", tz="UTC")  # matured by AS_OF with the 90-day horizon
REFERENCE_AS_OF = pd.Timestamp("2025-07-01", tz="UTC")
PROMISED = {"churn.roc_auc": 0.8, "churn.brier": 0.1, "clv.gini_normalized": 0.6}


def _serving_conftest():
    path = Path(__file__).parents[1] / "serving" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_serving_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(data_dir, uri, fast config file): a trained world whose champion run carries the
    monitoring reference and promised metrics, and a saved snapshot of PAST_AS_OF."""
    from features.build import build_features
    from model.registry import Registry
    from serving.core.champions import load_champions
    from serving.core.ranking import ScoredList, rank_features
    from serving.score_store import ScoreStore

    conftest = _serving_conftest()
    root = tmp_path_factory.mktemp("monitor_world")
    data_dir, uri, settings = conftest.train_world(root)
    tables = conftest.validate_tables(data_dir)
    registry = Registry(uri)
    champions = load_champions(registry)
    client = registry.client
    run_id = registry.run_id("churn", champions.churn_version)
    ref = root / "reference"
    ref.mkdir()
    X_ref = build_features(tables, REFERENCE_AS_OF, settings)
    scored = rank_features(X_ref, champions, settings).set_index("customer_id")
    X_ref.to_parquet(ref / "features.parquet")
    scored[["churn_probability", "clv"]].to_parquet(ref / "predictions.parquet")
    client.log_artifacts(run_id, str(ref), "reference")
    for key, value in PROMISED.items():
        client.log_metric(run_id, key, value)
    X_past = build_features(tables, PAST_AS_OF, settings)
    past = ScoredList(PAST_AS_OF, rank_features(X_past, champions, settings), X_past)
    ScoreStore(data_dir).save(past)
    config = root / "fast.yaml"
    config.write_text(yaml.safe_dump({"training": conftest.FAST_TRAINING}))
    return data_dir, uri, config


@pytest.fixture
def env(world, tmp_path, monkeypatch):
    """A copy of the world's data folder, with MLFLOW_TRACKING_URI pointing at its store."""
    data_dir, uri, config = world
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield data, uri, config


def _champion_versions(uri: str) -> dict[str, str]:
    from model.registry import Registry

    return Registry(uri).champions()


def test_monitor_writes_reports_logs_run_and_exits_by_verdict(env, tmp_path):
    data, uri, _ = env
    runner = CliRunner()
    out = tmp_path / "reports"
    result = runner.invoke(
        app, ["monitor", "--data", str(data), "--as-of", AS_OF, "--out", str(out)]
    )
    assert result.exit_code in (0, 3), result.output
    for name in ("drift.html", "report.html", "kpis.csv", "summary.json", "performance.html"):
        assert (out / name).is_file(), (name, result.output)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("drift_share", "drifted_columns", "retrain_due", "reasons", "matured_metrics"):
        assert key in summary
    assert result.exit_code == (3 if summary["retrain_due"] else 0)
    assert summary["performance_status"] == "ok"
    assert summary["promised_metrics"]["churn.roc_auc"] == pytest.approx(0.8)
    assert str(out.resolve()) in result.output
    # The current snapshot was scored and saved, next to the past one.
    assert (data / "scores" / "LATEST").read_text().strip() == AS_OF
    assert not pd.read_csv(out / "kpis.csv").empty

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("retain-monitoring")
    runs = client.search_runs([exp.experiment_id], max_results=1, order_by=["start_time DESC"])
    assert runs[0].data.tags["retrain_due"] == str(summary["retrain_due"]).lower()
    assert "drift_share" in runs[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"drift.html", "report.html", "summary.json", "kpis.csv"} <= artifacts

    # A tiny drift threshold makes drift alone a reason; the saved snapshot is reused.
    strict = tmp_path / "strict.yaml"
    strict.write_text("monitoring:\n  drift_share_threshold: 0.0001\n")
    out2 = tmp_path / "reports2"
    again = runner.invoke(
        app,
        [
            "monitor",
            "--data",
            str(data),
            "--as-of",
            AS_OF,
            "--out",
            str(out2),
            "--config",
            str(strict),
        ],
    )
    assert again.exit_code == 3, again.output
    summary2 = json.loads((out2 / "summary.json").read_text())
    assert summary2["retrain_due"] is True
    assert any(r.startswith("feature drift") for r in summary2["reasons"]), summary2["reasons"]
    assert "RETRAIN DUE" in again.output


def test_monitor_measures_the_effect_of_a_past_outreach_run(env, tmp_path):
    """An outreach run at PAST_AS_OF (matured by AS_OF) is read back from the outbox: contacted
    against control churn, with an interval, in summary.json and the report."""
    data, _, _ = env
    config = tmp_path / "outreach.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "outreach": {
                    "min_churn_probability": 0.0,
                    "min_clv": 0.0,
                    "capacity_per_run": 100000,
                    "control_share": 0.5,
                },
                "monitoring": {"min_matured_per_group": 20},
            }
        )
    )
    runner = CliRunner()
    sent = runner.invoke(
        app,
        [
            "outreach",
            "run",
            "--data",
            str(data),
            "--as-of",
            f"{PAST_AS_OF:%Y-%m-%d}",
            "--config",
            str(config),
        ],
    )
    assert sent.exit_code == 0, sent.output
    out = tmp_path / "reports"
    result = runner.invoke(
        app,
        [
            "monitor",
            "--data",
            str(data),
            "--as-of",
            AS_OF,
            "--out",
            str(out),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code in (0, 3), result.output
    assert re.search(r"outreach effect from [\d,]+ outbox rows", result.output)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outreach_status"] == "ok", summary.get("outreach_message")
    low, high = summary["outreach_difference_low"], summary["outreach_difference_high"]
    assert low <= summary["outreach_difference"] <= high
    assert "Outreach effect" in (out / "report.html").read_text()
    # Every contact became a retention case in the loop's queue, which the report measures.
    assert "retention cases opened" in sent.output
    from serving.loop.cases import CaseBook
    from store import Store

    with Store(f"sqlite:///{data / 'store' / 'retain.db'}", create=False) as db:
        cases = CaseBook(db, settings_from_dict({}).loop).frame()
    assert len(cases) > 0 and set(cases["kind"]) == {"retention"}
    loop = json.loads((out / "loop.json").read_text())
    # Opened now (wall clock), after the replayed monitoring date: not counted as of then.
    assert loop["moments"] == 0 and loop["cases"]["cases"] == 0
    assert summary["recovery_status"] == "not enough data yet"  # no negative moments yet
    assert "Closed loop: recovery cases" in (out / "report.html").read_text()


def test_monitor_on_a_broken_table_names_it_and_exits_2(env, tmp_path):
    """With a saved snapshot the drift report starts before the tables are read; a table that
    breaks the contract still ends the run with the usual error, not a traceback or a hang."""
    data, _, _ = env
    events = pd.read_parquet(data / "events.parquet").drop(columns=["ts"])
    events.to_parquet(data / "events.parquet", index=False)
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--data",
            str(data),
            "--as-of",
            f"{PAST_AS_OF:%Y-%m-%d}",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "Evidently drift report: being written" in result.output  # the worker had started
    assert re.search(
        r"error: table 'events' is missing required column\(s\) \['ts'\]", result.output
    )


def test_retrain_refuses_while_a_live_lock_is_held(env):
    data, uri, config = env
    lock = data / LOCK_NAME
    lock.write_text(f"{os.getpid()}\n")
    result = CliRunner().invoke(app, ["retrain", "--data", str(data), "--config", str(config)])
    assert result.exit_code == 4, result.output
    assert "lock" in result.output
    assert lock.read_text().strip() == str(os.getpid())  # not taken from its live owner


def test_failed_retrain_keeps_the_champion_then_a_retrain_applies_the_gate(env):
    data, uri, config = env
    before = _champion_versions(uri)
    (data / LOCK_NAME).write_text("999999999\n")  # a stale lock: no such process
    result = CliRunner().invoke(
        app, ["retrain", "--data", str(data), "--as-of", "2024-01-05", "--config", str(config)]
    )
    assert result.exit_code not in (0, 4), result.output
    assert "retrain failed" in result.output
    assert "keep serving" in result.output
    assert "stale lock" in result.output
    assert _champion_versions(uri) == before
    assert not (data / LOCK_NAME).exists()

    # On the whole history the retrain registers new versions and prints the gate's decision
    # (runs last in this module: it adds versions to the module's store).
    ok = CliRunner().invoke(app, ["retrain", "--data", str(data), "--config", str(config)])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"churn v\d+: (champion|challenger) - churn: roc_auc", ok.output), ok.output
    assert re.search(r"clv v\d+: (champion|challenger) - clv: gini_normalized", ok.output)
    assert not (data / LOCK_NAME).exists()
