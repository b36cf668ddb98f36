"""Fit the churn and CLV models on a `TrainingData`, and evaluate them and their baselines on the
evaluation snapshot. Pure computation: no MLflow and no files (see `training.run` for those).

The newest training snapshot is the time-ordered validation set (early stopping, calibration,
the CLV objective choice); older ones are fitted on; validation customers are never fitted on
(see `_split_fit_valid`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import Tables
from model.btyd import BtydParams, with_btyd
from model.churn import ChurnModel
from model.clv import ClvModel
from model.schema import align_categories, feature_matrix
from training import baselines as bl
from training.blend import choose_churn_stack, choose_clv_blend
from training.boosting import customer_hash
from training.churn import ChurnTrainer
from training.clv import ClvTrainer
from training.frames import LabelledFrame, TrainingData
from training.history import History, as_history
from training.leakage import (
    Finding,
    check_leakage,
    late_attribute_findings,
    separating_features,
)
from training.metrics import by_segment, churn_metrics, clv_metrics
from training.search import SearchResult, search_churn_params


@dataclass
class Evaluation:
    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    segments: dict[str, dict[str, float]]


@dataclass
class Trained:
    churn: ChurnModel
    clv: ClvModel
    churn_eval: Evaluation
    clv_eval: Evaluation
    # Per evaluation customer: labels, model and baseline predictions (plots, monitoring reference).
    predictions: pd.DataFrame
    X_eval: pd.DataFrame
    data: TrainingData  # the snapshots it was fitted and evaluated on (with BTYD features)
    allowed_leaks: list[Finding] = field(default_factory=list)
    search: SearchResult | None = None  # the churn parameter search, when it ran


# One customer in this many validates (early stopping, calibration, the CLV objective).
VALIDATION_SHARE = 3


def _validation_customers(index: pd.Index) -> np.ndarray:
    # A fixed hash of the id: the same customers validate in every run and on every machine.
    return np.fromiter(
        (zlib.crc32(str(i).encode()) % VALIDATION_SHARE == 0 for i in index), bool, len(index)
    )


def _split_fit_valid(data: TrainingData):
    """Fit rows, validation rows and the evaluation frame.

    Validation is time-ordered (the newest training snapshot; older ones are fitted on) and
    customer-disjoint: a third of the customers, chosen by a hash of their id, only ever
    validate. Snapshots 30 days apart share most customers and overlapping label windows, so a
    customer fitted at one cutoff and validated at the next would let early stopping reward
    memorising who churns (by tenure, age, spend) rather than why.
    """
    frames = align_categories([s.X for s in data.train] + [data.evaluation.X])
    train_X, eval_X = frames[:-1], frames[-1]
    train_y = [s.y for s in data.train]
    if len(train_X) >= 2:
        X_fit, y_fit = pd.concat(train_X[:-1]), pd.concat(train_y[:-1])
        X_valid, y_valid = train_X[-1], train_y[-1]
    else:  # one training snapshot: the validation customers' rows of it
        X_fit = X_valid = train_X[0]
        y_fit = y_valid = train_y[0]
    fit_rows = ~_validation_customers(X_fit.index)
    valid_rows = _validation_customers(X_valid.index)
    return X_fit[fit_rows], y_fit[fit_rows], X_valid[valid_rows], y_valid[valid_rows], eval_X


def guard_leakage(
    data: TrainingData, history: Tables | History, settings: Settings
) -> list[Finding]:
    """Stop (LeakageError) on leaking features unless allowed; return the allowed findings."""
    history = as_history(history)
    X = pd.concat(align_categories([s.X for s in data.train]))
    y = pd.concat([s.y for s in data.train])["churned"].to_numpy()
    findings = separating_features(X, y, settings.training.leakage_auc_threshold)
    for cutoff in data.cutoffs.training:
        for f in late_attribute_findings(history.late_attributes(cutoff), cutoff):
            if f.column not in {g.column for g in findings}:
                findings.append(f)
    return check_leakage(findings, settings.training.allow_leaky_features)


def _segments(X: pd.DataFrame) -> pd.Series | None:
    return X["segment"] if "segment" in X.columns else None


def add_btyd(data: TrainingData, history: Tables | History, settings: Settings) -> TrainingData:
    """Every snapshot with the BTYD features, BG/NBD + Gamma-Gamma fitted at its own cutoff on
    the history before it (no labels), as scoring will at its cutoff."""
    history = as_history(history)

    def add(s: LabelledFrame) -> LabelledFrame:
        summary = history.rfm_summary(s.cutoff, settings)
        params = bl.fit_btyd(summary)
        X = with_btyd(s.X, None, s.cutoff, settings, params, summary=summary)
        return LabelledFrame(cutoff=s.cutoff, X=X, y=s.y)

    return TrainingData(
        cutoffs=data.cutoffs,
        train=tuple(add(s) for s in data.train),
        evaluation=add(data.evaluation),
    )


def _blend(
    churn: ChurnModel,
    clv: ClvModel,
    X_fit: pd.DataFrame,
    y_fit: pd.DataFrame,
    X_valid: pd.DataFrame,
    y_valid: pd.DataFrame,
) -> tuple[ChurnModel, ClvModel]:
    M_fit, M_valid = feature_matrix(X_fit, churn.schema), feature_matrix(X_valid, churn.schema)
    churn, _ = choose_churn_stack(
        churn,
        M_fit,
        y_fit["churned"].to_numpy(),
        M_valid,
        y_valid["churned"].to_numpy(),
        customer_hash(X_valid.index) & 1,
    )
    clv, _ = choose_clv_blend(
        clv, feature_matrix(X_valid, clv.schema), y_valid["future_value"].to_numpy()
    )
    return churn, clv


@dataclass
class Models:
    churn: ChurnModel
    clv: ClvModel
    search: SearchResult | None
    # The split they were fitted on (the baselines are fitted on the same rows).
    X_fit: pd.DataFrame
    y_fit: pd.DataFrame
    X_valid: pd.DataFrame
    y_valid: pd.DataFrame
    X_eval: pd.DataFrame


def fit_models(
    data: TrainingData,
    history: Tables | History,
    settings: Settings,
    *,
    search: bool = True,
    churn_params: dict | None = None,
    btyd: BtydParams | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Models:
    """The churn and CLV models (search, boosters, blends, BTYD parameters) on the training
    snapshots of `data` (BTYD features already added when `classic_models` is on). `btyd`: the
    parameters to save with them when already fitted on the known history."""
    t = settings.training
    X_fit, y_fit, X_valid, y_valid, X_eval = _split_fit_valid(data)
    common = {
        "num_boost_round": t.num_boost_round,
        "early_stopping_rounds": t.early_stopping_rounds,
        "seed": t.seed,
    }
    params = dict(t.churn_params) if churn_params is None else dict(churn_params)
    result = None
    if search and t.search.trials > 0:
        progress(
            f"churn parameter search: up to {t.search.trials} trials or {t.search.timeout_s:g} s"
        )
        result = search_churn_params(
            X_fit,
            y_fit["churned"],
            X_valid,
            y_valid["churned"],
            t.search,
            configured=params,
            progress=progress,
            **common,
        )
        params.update(result.params)
        progress(
            f"churn parameter search: validation log-loss {result.configured_log_loss:.5f} as "
            f"configured, {result.best_log_loss:.5f} with {result.params}"
        )
    progress(f"churn model: {len(X_fit):,} rows to fit, {len(X_valid):,} to validate")
    churn = ChurnTrainer(params, **common).fit(X_fit, y_fit["churned"], X_valid, y_valid["churned"])
    progress(f"churn model: {churn.best_iteration} trees, calibration {churn.calibrator.kind}")
    progress("clv model: choosing the objective on the validation snapshot")
    clv = ClvTrainer(dict(t.clv_params), **common).fit(
        X_fit, y_fit["future_value"], X_valid, y_valid["future_value"]
    )
    progress(f"clv model: objective {clv.objective}")
    if t.classic_models:
        churn, clv = _blend(churn, clv, X_fit, y_fit, X_valid, y_valid)
        if btyd is None:
            summary = as_history(history).rfm_summary(data.cutoffs.known_until, settings)
            btyd = bl.fit_btyd(summary)
        churn, clv = replace(churn, btyd=btyd), replace(clv, btyd=btyd)
        stack = "+".join(churn.stack.components) if churn.stack else "none (the booster alone)"
        progress(f"blends: churn stack {stack}; clv weight on the model {clv.blend.weight:.2f}")
    return Models(churn, clv, result, X_fit, y_fit, X_valid, y_valid, X_eval)


def refit_latest(
    trained: Trained,
    history: Tables | History,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[ChurnModel, ClvModel]:
    """The models fitted again with the evaluation snapshot as the newest training snapshot
    (it validates: early stopping, calibration, blends), so what serves learnt from the latest
    matured horizon; the parameters the search chose are kept. `trained` is what was evaluated
    and gated: the same procedure, one horizon earlier."""
    data = trained.data
    latest = TrainingData(
        cutoffs=data.cutoffs, train=(*data.train, data.evaluation), evaluation=data.evaluation
    )
    models = fit_models(
        latest,
        history,
        settings,
        search=False,
        btyd=trained.churn.btyd,
        churn_params={
            **settings.training.churn_params,
            **(trained.search.params if trained.search else {}),
        },
        progress=progress,
    )
    return models.churn, models.clv


def fit_and_evaluate(
    data: TrainingData,
    history: Tables | History,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> Trained:
    t = settings.training
    history = as_history(history)
    if t.classic_models:
        progress("BG/NBD + Gamma-Gamma features at every cutoff")
        data = add_btyd(data, history, settings)
    allowed = guard_leakage(data, history, settings)
    models = fit_models(data, history, settings, progress=progress)
    churn, clv, search = models.churn, models.clv, models.search
    X_fit, y_fit, X_valid, y_valid, X_eval = (
        models.X_fit,
        models.y_fit,
        models.X_valid,
        models.y_valid,
        models.X_eval,
    )
    y_eval = data.evaluation.y

    progress("baselines")
    X_base = pd.concat([X_fit, X_valid])
    y_base = pd.concat([y_fit, y_valid])
    recency = bl.RecencyChurnBaseline().fit(X_base, y_base["churned"])
    logistic = bl.LogisticChurnBaseline().fit(X_base, y_base["churned"])
    last_spend = bl.LastSpendClvBaseline(settings.horizon_days).fit(X_base, y_base["future_value"])
    summary = history.rfm_summary(data.evaluation.cutoff, settings)
    summary = summary.reindex(X_eval.index)
    bgnbd = bl.BgNbdGammaGammaBaseline().fit(summary)

    churned = y_eval["churned"].to_numpy()
    value = y_eval["future_value"].to_numpy()
    p = churn.predict_proba(X_eval)
    clv_pred = clv.predict(X_eval)
    churn_base = {
        "recency": recency.predict_proba(X_eval),
        "logistic": logistic.predict_proba(X_eval),
        "bgnbd": bgnbd.p_no_purchase(summary, settings.horizon_days),
    }
    clv_base = {
        "last_spend": last_spend.predict(X_eval),
        "bgnbd_gg": bgnbd.predict(summary, settings.horizon_days),
    }
    segments = _segments(X_eval)
    churn_eval = Evaluation(
        model=churn_metrics(churned, p),
        baselines={k: churn_metrics(churned, v) for k, v in churn_base.items()},
        segments=by_segment(churn_metrics, churned, p, segments) if segments is not None else {},
    )
    clv_eval = Evaluation(
        model=clv_metrics(value, clv_pred["clv"].to_numpy()),
        baselines={k: clv_metrics(value, v) for k, v in clv_base.items()},
        segments=by_segment(clv_metrics, value, clv_pred["clv"].to_numpy(), segments)
        if segments is not None
        else {},
    )
    predictions = pd.DataFrame(
        {
            "churned": churned,
            "future_value": value,
            "churn_probability": p,
            **{f"churn_{k}": v for k, v in churn_base.items()},
            **clv_pred.to_dict("series"),
            **{f"clv_{k}": v for k, v in clv_base.items()},
        },
        index=X_eval.index,
    )
    return Trained(churn, clv, churn_eval, clv_eval, predictions, X_eval, data, allowed, search)
