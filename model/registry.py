"""The MLflow registry as an object: one `Registry(uri)` per process edge, passed down to what
needs it. It knows the model names and aliases, loads a registered version as a model of this
package, lists versions, moves aliases and fetches a run's artifacts.

The registry is the only link between training and everything after it: serving, batch scoring
and monitoring load `models:/churn@champion` and `models:/clv@champion`. Each new version gets
alias `challenger`; `champion` moves only through the promotion gate (`training.gate`) or a
recorded manual promotion, and every decision is written on the version as tags.

MLflow's fluent API (`mlflow.start_run`, `log_model`, `pyfunc.load_model`) reads process-global
URIs; `Registry.active()` sets them for the duration of a block and puts back what was there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MODEL_NAMES = ("churn", "clv")
CHALLENGER, CHAMPION = "challenger", "champion"
# Version tag of a champion promoted only because there was none (it lost to a baseline).
FALLBACK_TAG = "fallback"


def tracking_uri_from(environ: dict[str, str] | os._Environ) -> str:
    """`MLFLOW_TRACKING_URI` in `environ` when set, else the embedded SQLite store under ./mlruns
    (called by the edges, which own the environment)."""
    return environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def absolute_uri(uri: str) -> str:
    """A SQLite tracking URI with its path made absolute (a server may run elsewhere)."""
    path = sqlite_path(uri)
    return f"sqlite:///{path.resolve()}" if path is not None and not path.is_absolute() else uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def quiet_mlflow(environ: dict[str, str] | os._Environ) -> None:
    """What a Retain process sets once at its edge before talking to MLflow: no telemetry (there
    is no network, and no need), no progress bars or INFO lines per artifact (they would bury
    Retain's own progress)."""
    environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class NoChampionError(RuntimeError):
    """The registry has no `champion` version of a model Retain needs to score (defined here,
    with the registry, so the command line can name it without loading the models' code)."""


class Registry:
    """The tracking store and model registry at `uri` (creating a SQLite store's folder)."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        db = sqlite_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def __repr__(self) -> str:
        return f"Registry({self.uri!r})"

    @property
    def store(self) -> str:
        """The store as a person would open it: the SQLite file, or the URI."""
        db = sqlite_path(self.uri)
        return str(db) if db is not None else self.uri

    @contextmanager
    def active(self) -> Iterator[Registry]:
        """MLflow's fluent API pointed at this store for the duration of the block."""
        import mlflow
        from mlflow.tracking import _model_registry, _tracking_service

        # MLflow keeps the URIs in module globals and mirrors them into the environment; both
        # are put back exactly as they were, so a later `Registry` reads the same environment.
        names = (TRACKING_URI_ENV, "MLFLOW_REGISTRY_URI")
        env = {name: os.environ.get(name) for name in names}
        globals_before = (
            _tracking_service.utils._tracking_uri,
            _model_registry.utils._registry_uri,
        )
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield self
        finally:
            _tracking_service.utils._tracking_uri = globals_before[0]
            _model_registry.utils._registry_uri = globals_before[1]
            for name, value in env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def ensure_experiment(self, name: str) -> str:
        """The experiment's id, creating it with artifacts next to a SQLite store (so a store is
        one self-contained folder) or at the server's default location otherwise."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        db = sqlite_path(self.uri)
        location = (db.parent.resolve() / "artifacts").as_uri() if db is not None else None
        return self.client.create_experiment(name, artifact_location=location)

    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def champions(self) -> dict[str, str | None]:
        """The champion version of each model name (None where there is none)."""
        return {name: self.alias_version(name, CHAMPION) for name in MODEL_NAMES}

    def load_model(self, name: str, version: str):
        """A registered version as a `model.churn.ChurnModel` or `model.clv.ClvModel`."""
        import mlflow

        with self.active():
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return pyfunc.unwrap_python_model().model

    def is_fallback(self, name: str, version: str) -> bool:
        """Whether the version serves only as a fallback (it did not beat the baselines)."""
        tags = self.client.get_model_version(name, str(version)).tags or {}
        return tags.get(FALLBACK_TAG) == "true"

    def run_id(self, name: str, version: str) -> str:
        return self.client.get_model_version(name, str(version)).run_id

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def download(self, run_id: str, artifact_path: str, dst: str | Path) -> Path:
        import mlflow

        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=self.uri
            )
        )

    def record_promotion(self, name: str, version: str, *, kind: str, reason: str) -> None:
        """Move `champion` to `version` and write who/why on it and on the version it replaced."""
        client = self.client
        previous = self.alias_version(name, CHAMPION)
        client.set_registered_model_alias(name, CHAMPION, str(version))
        client.set_model_version_tag(name, str(version), "promotion", kind)
        client.set_model_version_tag(name, str(version), "promotion_reason", reason)
        if previous is not None and previous != str(version):
            client.set_model_version_tag(name, str(version), "replaced_version", previous)
            client.set_model_version_tag(name, previous, "replaced_by", str(version))

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a registered model, newest first, with aliases and the tags we record."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return []
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        rows = [
            {
                "name": name,
                "version": int(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "tags": dict(mv.tags or {}),
            }
            for mv in self.client.search_model_versions(f"name='{name}'")
        ]
        return sorted(rows, key=lambda r: -int(r["version"]))
