"""`monitor`: one monitoring run as `retain monitor` makes it. The current scored list (scored
now when the store has none for the cutoff) against the champion's reference (logged with its
training run), matured performance on past scored lists, CX KPIs and the outreach effect; the
reports written into a folder and logged to the MLflow experiment `monitoring.experiment`.
Returns a `MonitoringResult`; the CLI prints it and turns `retrain_due` into the exit status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from configs import Settings
from features.contract import Tables
from model.reference import champion_reference
from model.registry import Registry
from monitoring.drift import (
    by_customer,
    detect_drift,
    feature_importance,
    leading_reasons,
    reason_mix_drift,
    sample_rows,
    write_html,
)
from monitoring.effect import outreach_effect
from monitoring.estimate import estimate_roc_auc
from monitoring.kpis import cx_kpis
from monitoring.outcomes import matured_labels
from monitoring.performance import OK, PerformanceResult, matured_performance
from monitoring.report import build_summary, finite_or_none, render_report, save_report
from serving.core.champions import Champions
from serving.core.ranking import ScoredList, score_population
from serving.outreach.outbox import read_outbox
from serving.outreach.policy import NoOutboxError
from serving.score_store import ScoreStore

# Matured scoring dates labelled for performance (one pass of build_labels each).
MATURED_DATES = 6
# The head of the ranked list whose leading reasons are compared (share by churn risk).
REASON_TOP_SHARE = 0.2


@dataclass(frozen=True)
class MonitoringResult:
    summary: dict[str, Any]  # the verdict as written to summary.json (see monitoring.report)
    performance: PerformanceResult
    written: list[Path]
    run_id: str

    @property
    def retrain_due(self) -> bool:
        return bool(self.summary["retrain_due"])


def closed_loop(
    store_url: str | None,
    tables: Tables,
    cutoff: pd.Timestamp,
    settings: Settings,
    progress: Callable[[str], None],
) -> dict[str, Any] | None:
    """Case KPIs and the recovery effect from the loop's store, or None without a store."""
    from monitoring.loop import case_kpis, read_moments, recovery_effect
    from serving.loop.cases import CaseBook
    from store import NoStoreError, Store

    if store_url is None:
        return None
    try:
        db = Store(store_url, create=False)
    except NoStoreError:
        progress("no loop store yet: no case KPIs or recovery effect")
        return None
    with db:
        cases = CaseBook(db, settings.loop).frame()
        moments = read_moments(db)
    progress(f"the loop: {len(cases):,} cases, {len(moments):,} negative moments")
    effect, nps = recovery_effect(
        moments,
        tables,
        cutoff,
        settings.horizon_days,
        settings.monitoring,
        activity_event_types=tuple(settings.activity_event_types),
    )
    recovery = effect.to_dict()
    recovery["next_nps"] = nps.__dict__
    return {
        "cases": case_kpis(cases, cutoff),
        "moments": int(len(moments)),
        "recovery": recovery,
    }


def current_scores(
    store: ScoreStore, cutoff, read_tables, settings, champions, progress, score_now=None
):
    """(scores, features, tables) of the scored list for `cutoff`: the latest stored one when it
    is for `cutoff` (tables None: not read yet), else the population scored now and stored as
    the new latest list: by `score_now()` when given (on a cluster; tables None), else from
    `read_tables()` in this process."""
    try:
        latest = store.latest()
    except FileNotFoundError:
        latest = None
    if latest is not None and latest.as_of == cutoff:
        progress(f"current scores: the stored list of {latest.as_of:%Y-%m-%d}")
        return latest.ranked, latest.features, None
    progress(f"no stored scores for {cutoff:%Y-%m-%d}: scoring the population now")
    if score_now is not None:
        tables, scored = None, score_now()
    else:
        tables = read_tables()
        scored = score_population(tables, cutoff, champions, settings, progress=progress)
    progress(f"scored list -> {store.save(scored)}")
    return scored.ranked, scored.features, tables


def past_scores(
    store: ScoreStore, cutoff, horizon_days: int, kpi_windows_days: Iterable[int] = ()
) -> tuple[pd.DataFrame | None, int]:
    """The past scores monitoring needs, stacked with an `as_of` column (only the columns it
    uses), or None when there are none; and how many scores made before `cutoff` have not
    matured yet (counted from the snapshots' metadata, not read).

    Only some snapshots are read, so a daily scoring history of a million customers per day
    costs the same as a short one: the latest `MATURED_DATES` whose horizon has matured (matured
    performance), and the latest at or before each KPI window's start (its impact groups)."""
    stored = store.before(cutoff)
    horizon = pd.Timedelta(days=horizon_days)
    matured = [s for s in stored if s.as_of + horizon <= cutoff]
    wanted = {s.as_of for s in matured[-MATURED_DATES:]}
    for days in kpi_windows_days:
        start = cutoff - pd.Timedelta(days=days)
        before = [s.as_of for s in stored if s.as_of <= start]
        if before:
            wanted.add(before[-1])
    pending = sum(s.rows for s in stored if s.as_of + horizon > cutoff)
    parts = []
    for s in stored:
        if s.as_of not in wanted:
            continue
        scores = store.read_scores(s, ["customer_id", "churn_probability", "clv"])
        if scores is not None:
            parts.append(scores.assign(as_of=s.as_of))
    if not parts:
        return None, pending
    stacked = pd.concat(parts, ignore_index=True)
    return stacked[["as_of", "customer_id", "churn_probability", "clv"]], pending


def for_performance(past: pd.DataFrame | None, cutoff, horizon_days: int) -> pd.DataFrame:
    """The past scores of the latest `MATURED_DATES` matured dates."""
    if past is None:
        return pd.DataFrame(
            {
                "as_of": pd.Series([], dtype="datetime64[ns, UTC]"),
                "customer_id": pd.Series([], dtype=object),
                "churn_probability": pd.Series([], dtype=float),
                "clv": pd.Series([], dtype=float),
            }
        )
    matured = past["as_of"] + pd.Timedelta(days=horizon_days) <= cutoff
    keep = sorted(past.loc[matured, "as_of"].unique())[-MATURED_DATES:]
    return past[past["as_of"].isin(keep)].reset_index(drop=True)


@dataclass(frozen=True)
class Explained:
    """The champions' TreeSHAP contributions and churn risk on up to `importance_sample` rows of
    one side (the same seeded sample rule as the drift tests), computed once per monitor run."""

    churn: pd.DataFrame
    clv: pd.DataFrame | None
    risk: pd.Series

    @classmethod
    def of(cls, champions: Champions, frame: pd.DataFrame, name: str, m, *, clv: bool):
        rows = sample_rows(by_customer(frame, name), m.importance_sample, m.seed)
        return cls(
            churn=champions.churn.contributions(rows),
            clv=champions.clv.contributions(rows) if clv else None,
            risk=pd.Series(champions.churn.predict_proba(rows), index=rows.index),
        )


def reason_mix(reference: Explained, current: Explained) -> dict[str, Any]:
    """Which reasons lead the ranked list (the top `REASON_TOP_SHARE` by churn risk), on the
    reference and now, and the distance between the two mixes. Reported, not a trigger: over
    seeds 0-9 of benchmarks/trigger.py its healthy and drifted ranges overlap."""
    mixes = {
        name: leading_reasons(side.churn, side.risk.to_numpy(), REASON_TOP_SHARE)
        for name, side in (("reference", reference), ("current", current))
    }
    return {
        "top_share": REASON_TOP_SHARE,
        "distance": reason_mix_drift(mixes["reference"], mixes["current"]),
        **{k: {str(f): float(v) for f, v in mix.head(5).items()} for k, mix in mixes.items()},
    }


def monitor(
    store: ScoreStore,
    read_tables: Callable[[], Tables],
    cutoff: pd.Timestamp,
    out: Path,
    settings: Settings,
    *,
    registry: Registry,
    champions: Champions,
    source: str,
    store_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
    score_now: Callable[[], ScoredList] | None = None,
) -> MonitoringResult:
    """One monitoring run (see the module docstring); `read_tables` is called at most once, and
    only when the tables are needed; `score_now`, when given, scores the population at `cutoff`
    if no list is stored for it (`retain monitor --cluster` scores per partition on Dask)."""
    import mlflow

    m = settings.monitoring
    horizon = settings.horizon_days
    events = tuple(settings.activity_event_types)
    ref = champion_reference(registry, champions.churn_version)
    ref_features, ref_predictions, promised, ref_run = (
        ref.features,
        ref.predictions,
        ref.metrics,
        ref.run_id,
    )
    progress(f"reference: {len(ref_features):,} rows from run {ref_run}")
    scores, features, tables = current_scores(
        store, cutoff, read_tables, settings, champions, progress, score_now
    )

    progress(f"drift of {len(features):,} current rows against the reference")
    current_predictions = scores.set_index("customer_id")[["churn_probability", "clv"]]
    ref_explained = Explained.of(champions, ref_features, "reference features", m, clv=True)
    importance = feature_importance([ref_explained.churn, ref_explained.clv])
    drift = detect_drift(
        ref_features,
        features,
        ref_predictions,
        current_predictions,
        settings=m,
        importance=importance,
    )
    out.mkdir(parents=True, exist_ok=True)
    # Evidently's drift report is the slowest step (about 40 s for 50,000 rows a side on two
    # cores) and needs only the samples: a second process writes it while this one reads the
    # tables (when the snapshot was saved) and measures the rest.
    # (A Pool, not an executor: leaving the block on an error terminates the worker at once.)
    with get_context("spawn").Pool(1) as pool:
        drift_html = pool.apply_async(write_html, (drift, out / "drift.html"))
        progress("Evidently drift report: being written by a second process")
        if tables is None:
            tables = read_tables()

        progress("estimating the churn ROC AUC before the labels mature")
        estimate = estimate_roc_auc(
            current_predictions,
            by_customer(ref_predictions, "reference predictions"),
            sample_size=m.estimate_sample,
            seed=m.seed,
            confidence=m.confidence,
        )

        past, pending = past_scores(store, cutoff, horizon, m.kpi_windows_days)
        perf_scores = for_performance(past, cutoff, horizon)
        progress(
            f"matured performance on {perf_scores['as_of'].nunique()} matured past snapshots "
            f"({pending:,} later scores not matured yet)"
        )
        labels = matured_labels(
            perf_scores, tables, cutoff, horizon, activity_event_types=events, last=MATURED_DATES
        )
        performance = matured_performance(
            perf_scores, labels, cutoff, horizon, promised, settings=m, pending_elsewhere=pending
        )

        progress("CX KPIs")
        kpis = cx_kpis(tables, scores, cutoff, m, activity_event_types=events, past_scores=past)

        effect = None
        try:
            if store_url is None:
                raise NoOutboxError("no store")
            history = read_outbox(store_url, source)
        except NoOutboxError:
            progress("no outreach outbox yet: no outreach effect")
        else:
            progress(f"outreach effect from {len(history):,} outbox rows")
            history = history[history["as_of"] < cutoff] if len(history) else history
            out_labels = matured_labels(
                history, tables, cutoff, horizon, activity_event_types=events
            )
            effect = outreach_effect(history, out_labels, cutoff, horizon, m)

        loop = closed_loop(store_url, tables, cutoff, settings, progress)

        summary = build_summary(
            cutoff, drift=drift, performance=performance, effect=effect, settings=m
        )
        if loop is not None:
            o = loop["recovery"]
            summary.update(
                recovery_status=o["status"],
                recovery_message=o["message"],
                recovery_difference=finite_or_none(o["difference"]),
                recovery_difference_low=finite_or_none(o["difference_low"]),
                recovery_difference_high=finite_or_none(o["difference_high"]),
            )
        mix = reason_mix(
            ref_explained, Explained.of(champions, features, "current features", m, clv=False)
        )
        summary["reason_mix"] = mix
        lead = ", ".join(f"{f} {v:.0%}" for f, v in list(mix["current"].items())[:3])
        was = ", ".join(f"{f} {v:.0%}" for f, v in list(mix["reference"].items())[:3])
        summary["notes"].append(
            f"leading reasons among the top {mix['top_share']:.0%} at risk: now {lead} "
            f"(reference: {was}); Jensen-Shannon distance {mix['distance']:.3f} (reported only)"
        )
        summary["estimated_performance"] = None if estimate is None else estimate.to_dict()
        if estimate is not None:
            summary["notes"].append(
                f"estimated churn ROC AUC before the labels mature: {estimate.roc_auc:.3f} "
                f"[{estimate.low:.3f}, {estimate.high:.3f}] (the same estimate on the reference "
                f"{estimate.reference_estimate:.3f}, measured there {estimate.reference_roc_auc:.3f})"
            )
        summary["champion_versions"] = {
            "churn": champions.churn_version,
            "clv": champions.clv_version,
        }
        summary["reference_run_id"] = ref_run

        progress(f"writing reports to {out}: performance (Evidently), KPIs and outreach effect")
        written = []
        if performance.status == OK:
            perf_ref = ref_predictions
            needed = {"churned", "churn_probability", "future_value", "clv"}
            written.append(
                performance.save_html(
                    out / "performance.html",
                    reference=perf_ref if needed <= set(perf_ref.columns) else None,
                    settings=m,
                )
            )
        page = render_report(
            summary, kpis=kpis, effect=effect, performance=performance, drift=drift, loop=loop
        )
        if loop is not None:
            (out / "loop.json").write_text(json.dumps(loop, indent=2, default=str))
            written.append(out / "loop.json")
        written.append(save_report(out / "report.html", page))
        kpis.to_csv(out / "kpis.csv", index=False)
        written.append(out / "kpis.csv")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        written.append(out / "summary.json")
        progress("waiting for the Evidently drift report")
        written.insert(0, drift_html.get())

    progress(f"logging the run to the MLflow experiment {m.experiment}")
    experiment_id = registry.ensure_experiment(m.experiment)
    with (
        registry.active(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{cutoff:%Y-%m-%d}") as run,
    ):
        metrics = {"drift_share": finite_or_none(summary["drift_share"])}
        metrics.update(
            {f"matured.{k}": finite_or_none(v) for k, v in summary["matured_metrics"].items()}
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        mlflow.set_tags(
            {
                "retrain_due": str(summary["retrain_due"]).lower(),
                "as_of": summary["as_of"],
                "champion.churn": champions.churn_version,
                "champion.clv": champions.clv_version,
                "retain.source": source,
            }
        )
        for path in written:
            mlflow.log_artifact(str(path))
        monitor_run = run.info.run_id

    return MonitoringResult(summary, performance, written, monitor_run)
