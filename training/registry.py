"""The MLflow edge: tracking URI, experiments, and the model registry with its promotion gate.

The registry is the only link between training and everything after it: serving, batch scoring
and monitoring load `models:/churn@champion` and `models:/clv@champion`. Each new version gets
alias `challenger`; `champion` moves only through `gate_decision` (or a recorded manual
promotion), and every decision is written on the version as tags so `retain models` can show
why a version is or is not serving.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from configs import GateSettings

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
MODEL_NAMES = ("churn", "clv")
CHALLENGER, CHAMPION = "challenger", "champion"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else the embedded SQLite store under ./mlruns."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def connect(uri: str | None = None):
    """Point MLflow at the store (creating the SQLite folder if needed); returns a client."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network here, and no need
    # Progress bars and INFO lines for every artifact would bury Retain's own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = uri or tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client, name: str, uri: str | None = None) -> str:
    """The experiment's id, creating it with artifacts next to a SQLite store (so a store is one
    self-contained folder) or at the server's default location otherwise."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    db = _sqlite_path(uri or tracking_uri())
    location = (db.parent.resolve() / "artifacts").as_uri() if db is not None else None
    return client.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate_decision(
    model_name: str,
    gate: GateSettings,
    challenger: float,
    baselines: dict[str, float],
    champion: float | None,
) -> GateDecision:
    """Promote only if the challenger beats every baseline and the current champion (measured on
    the same evaluation snapshot) by at least `gate.min_improvement` of `gate.metric`."""
    metric, margin = gate.metric, gate.min_improvement
    if challenger is None or math.isnan(challenger):
        return GateDecision(
            False, f"{model_name}: {metric} could not be computed on the evaluation snapshot"
        )
    valid = {n: v for n, v in sorted(baselines.items()) if v is not None and not math.isnan(v)}
    lost_to = [f"baseline {n} ({v:.4f})" for n, v in valid.items() if not challenger > v]
    beaten = ", ".join(f"{n} {v:.4f}" for n, v in valid.items())
    if champion is not None and not (challenger > champion and challenger >= champion + margin):
        lost_to.append(f"champion {champion:.4f} by {margin} or more")
    # Every failed comparison is named, so `retain models` shows all that a version lacks.
    if lost_to:
        return GateDecision(
            False, f"{model_name}: {metric} {challenger:.4f} does not beat " + "; ".join(lost_to)
        )
    if champion is None:
        return GateDecision(
            True, f"{model_name}: first model; {metric} {challenger:.4f} beats baselines ({beaten})"
        )
    return GateDecision(
        True,
        f"{model_name}: {metric} {challenger:.4f} beats champion {champion:.4f} by at least {margin} "
        f"and baselines ({beaten})",
    )


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def record_promotion(client, name: str, version: str, *, kind: str, reason: str) -> None:
    """Move `champion` to `version` and write who/why on it and on the version it replaced."""
    previous = alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), "promotion", kind)
    client.set_model_version_tag(name, str(version), "promotion_reason", reason)
    if previous is not None and previous != str(version):
        client.set_model_version_tag(name, str(version), "replaced_version", previous)
        client.set_model_version_tag(name, previous, "replaced_by", str(version))


def list_versions(client, name: str) -> list[dict[str, object]]:
    """Every version of a registered model, newest first, with aliases and the tags we record."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "name": name,
                "version": int(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "tags": dict(mv.tags or {}),
            }
        )
    return sorted(rows, key=lambda r: -int(r["version"]))
