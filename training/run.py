"""One training run end to end at the MLflow edge: build the training data, fit and evaluate,
log everything to one MLflow run, register both models and apply the promotion gate.

Everything the run computes comes from `training.frames` and `training.pipeline`; this module
only talks to MLflow (batched logging) and arranges artifacts.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import Tables
from model.reference import REFERENCE, write_reference
from model.registry import CHALLENGER, FALLBACK_TAG, Registry
from training.frames import TrainingData, build_training_data
from training.gate import GateDecision, gate_decision, gate_metric
from training.history import History, as_history
from training.pipeline import Trained, fit_and_evaluate, refit_latest
from training.tracking import RunReport, champion_metric, log_batch, log_model


def flat_metrics(trained: Trained) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, ev in (("churn", trained.churn_eval), ("clv", trained.clv_eval)):
        for k, v in ev.model.items():
            out[f"{kind}.{k}"] = v
        for base, metrics in ev.baselines.items():
            for k, v in metrics.items():
                out[f"{kind}.baseline.{base}.{k}"] = v
        for seg, metrics in ev.segments.items():
            for k, v in metrics.items():
                out[f"{kind}.segment.{seg}.{k}"] = v
    out["churn.best_iteration"] = trained.churn.best_iteration
    out["clv.best_iteration"] = trained.clv.best_iteration
    for cand, metrics in trained.clv.validation.items():
        for k, v in metrics.items():
            out[f"clv.validation.{cand}.{k}"] = v
    for k, v in trained.clv.interval_validation.items():
        out[f"clv.interval.{k}"] = v
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(float(v))}


def _params(settings: Settings, data: TrainingData, trained: Trained) -> dict[str, Any]:
    t = settings.training
    params: dict[str, Any] = {
        "horizon_days": settings.horizon_days,
        "activity_event_types": ",".join(settings.activity_event_types),
        "feature_windows_days": ",".join(map(str, settings.features.windows_days)),
        "cutoffs": t.cutoffs,
        "cutoff_spacing_days": t.cutoff_spacing_days,
        "known_until": str(data.cutoffs.known_until),
        "evaluation_cutoff": str(data.cutoffs.evaluation),
        "training_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in data.cutoffs.training),
        "seed": t.seed,
        "num_boost_round": t.num_boost_round,
        "early_stopping_rounds": t.early_stopping_rounds,
        "n_features": len(trained.churn.schema.columns),
        "churn_calibrator": trained.churn.calibrator.kind,
        "clv_objective": trained.clv.objective,
        "clv_interval": ",".join(map(str, trained.clv.interval)),
        "gate_churn": f"{t.gate_churn.metric}+{t.gate_churn.min_improvement}",
        "gate_clv": f"{t.gate_clv.metric}+{t.gate_clv.min_improvement}",
    }
    params.update({f"churn_lgb.{k}": v for k, v in trained.churn.params.items()})
    stack = trained.churn.stack
    params["churn_stack"] = "+".join(stack.components) if stack else "booster"
    params["clv_blend_weight"] = trained.clv.blend.weight
    params["refit_latest"] = t.refit_latest
    params["search_trials"] = t.search.trials
    params["search_timeout_s"] = t.search.timeout_s
    if trained.search is not None:
        params.update({f"search.churn.{k}": v for k, v in trained.search.params.items()})
    params.update({f"clv_lgb.{k}": v for k, v in t.clv_params.items()})
    return params


def _figures(trained: Trained) -> dict[str, Any]:
    from training import plots

    pr = trained.predictions
    churned, value = pr["churned"].to_numpy(), pr["future_value"].to_numpy()
    churn_scores = {"model": pr["churn_probability"].to_numpy()}
    churn_scores.update(
        {
            c[6:]: pr[c].to_numpy()
            for c in pr.columns
            if c.startswith("churn_") and c != "churn_probability"
        }
    )
    clv_scores = {"model": pr["clv"].to_numpy()}
    clv_scores.update(
        {
            c[4:]: pr[c].to_numpy()
            for c in pr.columns
            if c.startswith("clv_") and c not in ("clv_low", "clv_high")
        }
    )
    sample = trained.X_eval.sample(min(len(trained.X_eval), 5000), random_state=0)
    booster = trained.churn.booster
    importance = pd.Series(
        booster.feature_importance("gain"), index=booster.feature_name()
    ).sort_values(ascending=False)
    return {
        "plots/churn_roc.png": plots.roc_figure(churned, churn_scores),
        "plots/churn_calibration.png": plots.calibration_figure(churned, churn_scores),
        "plots/clv_gains.png": plots.gains_figure(value, clv_scores),
        "plots/clv_decile_calibration.png": plots.decile_calibration_figure(value, clv_scores),
        "plots/churn_importance.png": plots.importance_figure(importance),
        "plots/churn_shap_summary.png": plots.shap_summary_figure(
            trained.churn.contributions(sample), sample
        ),
    }


def train_and_register(
    history: Tables | History,
    settings: Settings,
    *,
    source: str,
    config_text: str,
    registry: Registry,
    known_until: str | pd.Timestamp | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RunReport:
    import mlflow

    timings: dict[str, float] = {}
    history = as_history(history)
    t0 = time.perf_counter()
    data = build_training_data(history, settings, known_until, progress=progress)
    timings["features_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    trained = fit_and_evaluate(data, history, settings, progress=progress)
    timings["fit_evaluate_s"] = time.perf_counter() - t1
    served = {"churn": trained.churn, "clv": trained.clv}
    if settings.training.refit_latest:
        t_refit = time.perf_counter()
        progress(
            "refit: the models again with the evaluation snapshot "
            f"{data.cutoffs.evaluation:%Y-%m-%d} as their newest training snapshot"
        )
        churn, clv = refit_latest(trained, history, settings, progress=progress)
        served = {"churn": churn, "clv": clv}
        timings["refit_s"] = time.perf_counter() - t_refit

    t2 = time.perf_counter()
    client = registry.client
    experiment_id = registry.ensure_experiment(settings.training.experiment)
    run_name = f"train-{data.cutoffs.known_until:%Y-%m-%d}"
    lineage = {
        "source": source,
        "content_digest": history.cut(data.cutoffs.known_until).digest(),
        "cutoffs": data.cutoffs.as_dict(),
        "rows": data.rows(),
        "allowed_leaky_features": [f"{f.column}: {f.evidence}" for f in trained.allowed_leaks],
    }
    versions: dict[str, str] = {}
    decisions: dict[str, str] = {}
    promoted: dict[str, bool] = {}
    with registry.active(), mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        run_id = run.info.run_id
        progress(f"logging run {run_id} to {mlflow.get_tracking_uri()}")
        log_batch(client, run_id, flat_metrics(trained), _params(settings, data, trained))
        mlflow.set_tags(
            {"retain.source": source, "retain.content_digest": lineage["content_digest"]}
        )
        mlflow.log_text(config_text, "config/settings.yaml")
        mlflow.log_dict(lineage, "lineage.json")
        if trained.search is not None:
            log_batch(client, run_id, trained.search.metrics("search.churn"), {})
            mlflow.log_text(trained.search.trials.to_csv(index=False), "search/churn_trials.csv")
        with warnings.catch_warnings():
            # MLflow cannot tell which of its two local sources a path is; either is right here.
            warnings.filterwarnings("ignore", message="The specified dataset source")
            eval_ds = mlflow.data.from_pandas(
                pd.concat([trained.X_eval.head(0), data.evaluation.y.head(0)], axis=1),
                source=source,
                name=f"evaluation-{data.cutoffs.evaluation:%Y-%m-%d}",
                digest=lineage["content_digest"][:16],
            )
            mlflow.log_input(eval_ds, context="evaluation")
        for path, fig in _figures(trained).items():
            mlflow.log_figure(fig, path)
            fig.clf()
        with tempfile.TemporaryDirectory() as tmp:
            ref = write_reference(Path(tmp), trained.X_eval, trained.predictions)
            mlflow.log_artifacts(str(ref), REFERENCE)
            infos = {
                kind: log_model(kind, model, trained.X_eval, Path(tmp))
                for kind, model in served.items()
            }
    timings["mlflow_log_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    y_eval = data.evaluation.y
    for kind, info in infos.items():
        version = str(info.registered_model_version)
        versions[kind] = version
        client.set_registered_model_alias(kind, CHALLENGER, version)
        gate = settings.training.gate_churn if kind == "churn" else settings.training.gate_clv
        ev = trained.churn_eval if kind == "churn" else trained.clv_eval
        label = y_eval["churned"] if kind == "churn" else y_eval["future_value"]
        champ_version, champ_value, incomparable = champion_metric(
            registry, kind, trained.X_eval, label, gate.metric
        )
        if champ_version is not None and registry.is_fallback(kind, champ_version):
            # A fallback champion never earned its place: beating the baselines is enough.
            champ_value, incomparable = None, None
        decision = gate_decision(
            kind,
            gate,
            gate_metric(ev.model, gate.metric),
            {b: gate_metric(m, gate.metric) for b, m in ev.baselines.items()},
            champ_value,
        )
        fallback = champ_version is None and not decision.promote
        if fallback:
            decision = GateDecision(
                True,
                f"{decision.reason}. There was no {kind} champion, so this version "
                "serves, labelled fallback, and score, serve and monitor keep working; it is "
                "replaced by the first model that beats the baselines. To earn one: give more "
                "history (training.cutoffs, cutoff_spacing_days), check the data with `retain "
                "validate`, or compare with `retain backtest`.",
            )
        if incomparable:
            decision = GateDecision(
                False,
                f"{kind}: not compared with champion v{champ_version} ({incomparable}); "
                f"promote by hand if this one should serve: retain promote --model {kind} "
                f"--version {version} --reason ...",
            )
        for key, value in {
            "evaluation_cutoff": f"{data.cutoffs.evaluation:%Y-%m-%d}",
            "gate_metric": gate.metric,
            "gate_value": f"{gate_metric(ev.model, gate.metric):.4f}",
            "gate_decision": "promoted as fallback"
            if fallback
            else "promoted"
            if decision.promote
            else "kept as challenger",
            FALLBACK_TAG: str(fallback).lower(),
            "gate_reason": decision.reason,
            "compared_with_champion": champ_version or "none",
        }.items():
            client.set_model_version_tag(kind, version, key, value)
        if decision.promote:
            registry.record_promotion(
                kind, version, kind="fallback" if fallback else "gate", reason=decision.reason
            )
        decisions[kind] = decision.reason
        promoted[kind] = decision.promote
        verdict = "FALLBACK " if fallback else "PROMOTED " if decision.promote else "not promoted: "
        progress(verdict + decision.reason)
    timings["registry_s"] = time.perf_counter() - t3
    log_batch(client, run_id, {f"time.{k}": v for k, v in timings.items()}, {})
    headline = {
        "churn.roc_auc": trained.churn_eval.model["roc_auc"],
        "churn.ece": trained.churn_eval.model["ece"],
        "clv.gini_normalized": trained.clv_eval.model["gini_normalized"],
        "clv.spearman": trained.clv_eval.model["spearman"],
    }
    return RunReport(run_id, experiment_id, versions, decisions, promoted, headline, timings)
