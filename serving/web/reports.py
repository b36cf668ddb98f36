"""What `retain monitor` last said, for the workspace's KPI page: the newest monitoring runs in
the MLflow experiment `monitoring.experiment` (MLflow is where monitoring records them), their
`summary.json` and `kpis.csv` artifacts, and their HTML reports served as they were written.

Runs are listed at most once a minute and each artifact is downloaded once per run, into a
temporary folder of this process.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger("retain.workspace")

REPORTS = ("drift.html", "report.html", "performance.html")
# The headline training metrics of each champion, as `training` logs them on its run.
HEADLINES = {
    "churn": ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"),
    "clv": ("gini_normalized", "spearman", "decile_mape", "interval.coverage"),
}
REFRESH_S = 60.0


@dataclass(frozen=True)
class MonitorRun:
    run_id: str
    as_of: pd.Timestamp
    summary: dict[str, Any]
    kpis: pd.DataFrame  # window_days, group_by, group, kpi, value, n
    reports: tuple[str, ...]  # the HTML reports the run logged


class Reports:
    """The newest monitoring runs of an MLflow tracking server."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        seconds: Callable[[], float],
        runs: int = 12,
    ) -> None:
        # `seconds`: a monotonic clock, read only to list the runs again after REFRESH_S.
        self.seconds = seconds
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.runs = runs
        self._folder = Path(tempfile.mkdtemp(prefix="retain-reports-"))
        self._lock = threading.Lock()
        self._listed_at = -REFRESH_S
        self._ids: list[str] = []
        self._cache: dict[str, MonitorRun | None] = {}
        self._metrics: dict[str, dict[str, float]] = {}

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _run_ids(self) -> list[str]:
        if self.seconds() - self._listed_at < REFRESH_S:
            return self._ids
        client = self._client()
        found = client.get_experiment_by_name(self.experiment)
        ids: list[str] = []
        if found is not None:
            runs = client.search_runs(
                [found.experiment_id],
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=self.runs,
            )
            ids = [r.info.run_id for r in runs]
        self._ids, self._listed_at = ids, self.seconds()
        return ids

    def _download(self, run_id: str, name: str) -> Path | None:
        import mlflow

        target = self._folder / run_id
        path = target / name
        if path.exists():
            return path
        try:
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=name,
                dst_path=str(target),
                tracking_uri=self.tracking_uri,
            )
        except Exception:  # not logged by this run, or the store cannot be read now
            return None
        return Path(got)

    def _run(self, run_id: str) -> MonitorRun | None:
        if run_id in self._cache:
            return self._cache[run_id]
        summary_path = self._download(run_id, "summary.json")
        run = None
        if summary_path is not None:
            summary = json.loads(summary_path.read_text())
            kpis_path = self._download(run_id, "kpis.csv")
            kpis = pd.read_csv(kpis_path) if kpis_path is not None else pd.DataFrame()
            names = {a.path for a in self._client().list_artifacts(run_id)}
            run = MonitorRun(
                run_id,
                pd.Timestamp(summary["as_of"]),
                summary,
                kpis,
                tuple(r for r in REPORTS if r in names),
            )
        self._cache[run_id] = run
        return run

    def latest(self) -> list[MonitorRun]:
        """The newest monitoring runs, newest first (empty when monitoring never ran)."""
        with self._lock:
            try:
                runs = [self._run(i) for i in self._run_ids()]
            except Exception:
                logger.exception("workspace: the monitoring runs could not be read")
                return []
        return sorted((r for r in runs if r is not None), key=lambda r: r.as_of, reverse=True)

    def training_metrics(self, kind: str, version: str) -> dict[str, float]:
        """The headline metrics the training run of model `kind` version `version` logged on
        its evaluation snapshot (empty when they cannot be read)."""
        key = f"{kind}:{version}"
        with self._lock:
            if key not in self._metrics:
                try:
                    client = self._client()
                    run_id = client.get_model_version(kind, version).run_id
                    logged = client.get_run(run_id).data.metrics if run_id else {}
                    self._metrics[key] = {
                        m: logged[f"{kind}.{m}"]
                        for m in HEADLINES.get(kind, ())
                        if f"{kind}.{m}" in logged
                    }
                except Exception:
                    logger.exception("workspace: the training metrics could not be read")
                    return {}
            return self._metrics[key]

    def report(self, run_id: str, name: str) -> Path | None:
        """A report file of one of the newest runs (None for anything else)."""
        if name not in REPORTS:
            return None
        with self._lock:
            if run_id not in self._run_ids():
                return None
            return self._download(run_id, name)
