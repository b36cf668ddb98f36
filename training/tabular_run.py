"""The MLflow edge of training on a one-row-per-customer table (`retain train --table`): cross-
validate (`training.tabular`), fit the final churn model on every row, log one MLflow run,
register the model as `churn` (alias challenger) and apply the gate.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from configs import Settings
from model.reference import REFERENCE, write_reference
from model.registry import CHALLENGER, CHAMPION, Registry
from training.gate import GateDecision, gate_decision, gate_metric
from training.tabular import FOLDS, INNER_VALIDATION, cross_validate, fit_model, load_table
from training.tracking import RunReport, champion_metric, log_batch, log_model


def _champion(
    registry: Registry, X: pd.DataFrame, y: pd.Series, metric: str, evaluation: str, ours: str
):
    """(version, value, note) of the current champion's gate metric comparable with this run's;
    value None with a note when there is no champion or it cannot be compared automatically."""
    import mlflow

    version = registry.alias_version("churn", CHAMPION)
    if version is None:
        return None, None, ""
    with registry.active():
        signature = mlflow.models.get_model_info(f"models:/churn@{CHAMPION}").signature
    theirs = signature.inputs.input_names() if signature is not None else []
    if set(theirs) != set(X.columns):
        gone, new = sorted(set(theirs) - set(X.columns)), sorted(set(X.columns) - set(theirs))
        return (
            version,
            None,
            f"champion v{version} was trained on different feature columns (only it has "
            f"{gone[:8]}, only this table has {new[:8]}): not compared automatically; promote by "
            f"hand with `retain promote --model churn --version {ours} --reason ...` if intended",
        )
    run = registry.client.get_run(registry.run_id("churn", version))
    if run.data.tags.get("retain.evaluation") == evaluation:
        cv = {
            k[len("churn.cv.") :]: v
            for k, v in run.data.metrics.items()
            if k.startswith("churn.cv.")
        }
        return version, gate_metric(cv, metric), "same cross-validation"
    _, value, _ = champion_metric(registry, "churn", X, y, metric)
    return version, value, "champion re-scored on this table, which may include its training rows"


def train_labelled_table(
    table: Path,
    id_column: str,
    label: str,
    settings: Settings,
    *,
    registry: Registry,
    progress: Callable[[str], None] = lambda _: None,
) -> RunReport:
    """Cross-validate, fit the final churn model on every row, log one MLflow run, register the
    model as `churn` (alias challenger) and apply the gate. Returns a `training.run.RunReport`."""
    import mlflow
    import yaml

    from training import plots

    t = settings.training
    progress(f"reading {table}")
    data = load_table(table, id_column, label)
    X, y = data.X, data.y
    progress(
        f"{len(X):,} customers, {X.shape[1]} features, churn share {y.mean():.3f}"
        + "".join(f"; dropped {c}: {why}" for c, why in data.dropped.items())
        + "".join(
            f"; {c}: text as numbers ({n} blanks -> NaN)" for c, n in data.numeric_from_text.items()
        )
    )
    cv = cross_validate(X, y, settings, progress=progress)
    progress(
        f"cross-validated ROC AUC {cv.model['roc_auc']:.4f}, ECE {cv.model['ece']:.4f} "
        f"(logistic {cv.baselines['logistic']['roc_auc']:.4f}); fitting the final model"
    )
    final = fit_model(X, y, settings)
    evaluation = f"{FOLDS}-fold stratified CV, seed {t.seed}, data {data.digest[:16]}"
    lineage = {
        "source": data.source,
        "content_digest": data.digest,
        "rows": len(X),
        "id_column": id_column,
        "label": label,
        "label_values": data.label_values,
        "label_share": float(y.mean()),
        "numeric_from_text": data.numeric_from_text,
        "dropped_columns": data.dropped,
        "evaluation": evaluation,
        "allowed_leaky_features": [f"{f.column}: {f.evidence}" for f in cv.allowed_leaks],
    }
    params: dict[str, Any] = {
        "training_data": "static table",
        "source": data.source,
        "id_column": id_column,
        "label": label,
        "rows": len(X),
        "n_features": X.shape[1],
        "folds": FOLDS,
        "inner_validation_share": INNER_VALIDATION,
        "seed": t.seed,
        "num_boost_round": t.num_boost_round,
        "early_stopping_rounds": t.early_stopping_rounds,
        "churn_calibrator": final.calibrator.kind,
        "gate_churn": f"{t.gate_churn.metric}+{t.gate_churn.min_improvement}",
        **{f"churn_lgb.{k}": v for k, v in final.params.items()},
    }
    metrics = {**cv.metrics(), "churn.best_iteration": float(final.best_iteration)}

    progress(
        f"final model: {final.best_iteration} trees, calibration {final.calibrator.kind}; "
        "opening the MLflow store"
    )
    client = registry.client
    experiment_id = registry.ensure_experiment(f"{t.experiment}-static")
    with (
        registry.active(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"static-{Path(table).stem}") as run,
    ):
        run_id = run.info.run_id
        progress(f"logging run {run_id} to {mlflow.get_tracking_uri()}")
        log_batch(client, run_id, metrics, params)
        mlflow.set_tags(
            {
                "retain.source": data.source,
                "retain.content_digest": data.digest,
                "retain.evaluation": evaluation,
            }
        )
        config = yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
        mlflow.log_text(config, "config/settings.yaml")
        mlflow.log_dict(lineage, "lineage.json")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The specified dataset source")
            mlflow.log_input(
                mlflow.data.from_pandas(
                    pd.concat([X.head(0), y.head(0)], axis=1),
                    source=data.source,
                    name=Path(table).name,
                    digest=data.digest[:16],
                ),
                context="cross-validation",
            )
        pr = cv.predictions
        scores = {
            "model": pr["churn_probability"].to_numpy(),
            "logistic": pr["churn_logistic"].to_numpy(),
            "lightgbm_plain": pr["churn_lightgbm_plain"].to_numpy(),
        }
        importance = pd.Series(
            final.booster.feature_importance("gain"), index=final.booster.feature_name()
        ).sort_values(ascending=False)
        for path, fig in {
            "plots/churn_roc.png": plots.roc_figure(pr["churned"], scores),
            "plots/churn_calibration.png": plots.calibration_figure(pr["churned"], scores),
            "plots/churn_importance.png": plots.importance_figure(importance),
        }.items():
            mlflow.log_figure(fig, path)
            fig.clf()
        with tempfile.TemporaryDirectory() as tmp:
            # The monitoring reference: the features and their out-of-fold predictions.
            ref = write_reference(Path(tmp), X, pr)
            mlflow.log_artifacts(str(ref), REFERENCE)
            info = log_model("churn", final, X, Path(tmp))

    version = str(info.registered_model_version)
    client.set_registered_model_alias("churn", CHALLENGER, version)
    gate = t.gate_churn
    value = gate_metric(cv.model, gate.metric)
    champ_version, champ_value, note = _champion(registry, X, y, gate.metric, evaluation, version)
    if champ_version is not None and champ_value is None:
        decision = GateDecision(False, f"churn: {note}")
    else:
        baseline = {k: gate_metric(m, gate.metric) for k, m in cv.baselines.items()}
        decision = gate_decision("churn", gate, value, baseline, champ_value)
        if champ_version is not None:
            decision = GateDecision(decision.promote, f"{decision.reason} ({note})")
    for key, tag in {
        "evaluation_cutoff": f"{FOLDS}-fold CV",
        "gate_metric": gate.metric,
        "gate_value": f"{value:.4f}",
        "gate_decision": "promoted" if decision.promote else "kept as challenger",
        "gate_reason": decision.reason,
        "compared_with_champion": str(champ_version or "none"),
    }.items():
        client.set_model_version_tag("churn", version, key, tag)
    if decision.promote:
        registry.record_promotion("churn", version, kind="gate", reason=decision.reason)
    progress(("PROMOTED " if decision.promote else "not promoted: ") + decision.reason)
    headline = {
        "churn.cv.roc_auc": cv.model["roc_auc"],
        "churn.cv.auc_fold_mean": float(cv.per_fold["roc_auc"].mean()),
        "churn.cv.auc_fold_std": float(cv.per_fold["roc_auc"].std(ddof=1)),
        "churn.cv.ece": cv.model["ece"],
        "churn.cv.logistic_auc": cv.baselines["logistic"]["roc_auc"],
    }
    return RunReport(
        run_id,
        experiment_id,
        {"churn": version},
        {"churn": decision.reason},
        {"churn": decision.promote},
        headline,
    )
