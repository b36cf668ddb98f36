"""What every training run shares at the MLflow edge: the report a run returns, batched
metric and parameter logging, logging a model (plain files behind the pyfunc face) with its
registered version, and re-scoring the current champion so the gate compares like with like.
Used by `training.run` (contract tables) and `training.tabular_run` (one-row-per-customer tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.registry import CHAMPION, Registry
from training.gate import gate_metric

_BATCH = 900  # MLflow accepts at most 1000 metrics and 100 params per log_batch call


@dataclass
class RunReport:
    run_id: str
    experiment_id: str
    versions: dict[str, str]
    decisions: dict[str, str]
    promoted: dict[str, bool]
    headline: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


def log_batch(client, run_id: str, metrics: dict[str, float], params: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    ts = 0  # metrics of a training run are not a time series; a fixed stamp keeps runs comparable
    m = [Metric(k, v, ts, 0) for k, v in metrics.items()]
    p = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(m), _BATCH):
        client.log_batch(run_id, metrics=m[i : i + _BATCH])
    for i in range(0, len(p), 100):
        client.log_batch(run_id, params=p[i : i + 100])


def log_model(kind: str, model, X_eval: pd.DataFrame, folder: Path):
    import lightgbm
    import mlflow
    import sklearn

    from model.artifact import save_model
    from model.pyfunc import ENTRY_FILE, input_example, signature_for

    save_model(model, folder / kind)
    return mlflow.pyfunc.log_model(
        name=kind,
        python_model=str(ENTRY_FILE),
        artifacts={"model": str(folder / kind)},
        signature=signature_for(kind, X_eval),
        input_example=input_example(X_eval),
        registered_model_name=kind,
        pip_requirements=[
            f"lightgbm=={lightgbm.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )


def champion_metric(
    registry: Registry, kind: str, X_eval: pd.DataFrame, y_eval: pd.Series, metric: str
) -> tuple[str | None, float | None, str | None]:
    """The current champion re-scored on this run's evaluation snapshot, so the gate compares
    like with like: (version, metric value, why it cannot be compared or None)."""
    from training.metrics import churn_metrics, clv_metrics

    version = registry.alias_version(kind, CHAMPION)
    if version is None:
        return None, None, None
    model = registry.load_model(kind, version)
    if set(model.schema.columns) != set(X_eval.columns):
        # A champion from another kind of data (a static table, an older feature set) cannot be
        # scored on this snapshot; a human decides which one serves.
        return version, None, "it was trained on different feature columns"
    if kind == "churn":
        metrics = churn_metrics(y_eval.to_numpy(), model.predict_proba(X_eval))
    else:
        metrics = clv_metrics(y_eval.to_numpy(), model.predict(X_eval)["clv"].to_numpy())
    return version, gate_metric(metrics, metric), None
