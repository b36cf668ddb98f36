"""Matured performance: how the scores made one horizon or more ago did, next to what the model
promised at training time.

`matured_performance(scores, labels, as_of, horizon_days, promised)` keeps the scores whose
horizon has matured by `as_of` (`monitoring.outcomes`), joins their labels and computes the
training metrics on them (`training.metrics.churn_metrics`, `clv_metrics`, `calibration_table`).
The headline is the latest matured scoring date (the freshest evidence on the model in use; dates
are never pooled, since one customer is scored on every date); every matured date gets a row in
`by_score_date`. Below `min_matured_rows` labelled scores the result says "not enough data yet"
instead of giving numbers.

`PerformanceResult.save_html` writes Evidently's `ClassificationPreset` and `RegressionPreset`
on the headline date's rows (sampled to `sample_size`), against the champion's reference
predictions when given.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import to_utc
from monitoring.drift import sample_rows
from monitoring.outcomes import attach_outcomes, require_columns
from monitoring.settings import MonitoringSettings
from training.metrics import calibration_table, churn_metrics, clv_metrics

OK, NOT_ENOUGH = "ok", "not enough data yet"
# Training metrics shown next to their matured values, and whether higher is better.
COMPARED: dict[str, bool] = {
    "churn.roc_auc": True,
    "churn.pr_auc": True,
    "churn.brier": False,
    "churn.ece": False,
    "churn.lift_top_decile": True,
    "clv.gini_normalized": True,
    "clv.spearman": True,
    "clv.top_decile_revenue_share": True,
}
SCORE_COLUMNS = ("as_of", "customer_id", "churn_probability", "clv")


@dataclass(frozen=True)
class PerformanceResult:
    status: str  # OK or NOT_ENOUGH
    message: str
    as_of: pd.Timestamp  # the monitoring date
    horizon_days: int
    score_as_of: pd.Timestamp | None  # the scoring date the headline metrics describe
    n: int  # labelled matured scores on that date
    n_matured: int  # labelled matured scores on every date
    n_pending: int  # scores whose horizon has not matured (left out)
    n_unlabelled: int  # matured scores whose customer has no label on that date (left out)
    metrics: dict[str, float]  # "churn.roc_auc", "clv.gini_normalized", ... (empty unless OK)
    promised: dict[str, float]
    comparison: pd.DataFrame  # metric, matured, promised, difference, higher_is_better
    calibration: pd.DataFrame  # training.metrics.calibration_table of the headline date
    by_score_date: pd.DataFrame  # one row per matured scoring date
    rows: pd.DataFrame = field(repr=False)  # the headline date's scores with their labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "score_as_of": None if self.score_as_of is None else self.score_as_of.isoformat(),
            "n": self.n,
            "n_matured": self.n_matured,
            "n_pending": self.n_pending,
            "n_unlabelled": self.n_unlabelled,
            "metrics": {k: _num(v) for k, v in self.metrics.items()},
            "promised": {k: _num(v) for k, v in self.promised.items()},
        }

    def evidently_snapshot(
        self,
        reference: pd.DataFrame | None = None,
        *,
        settings: MonitoringSettings,
    ):
        """Evidently's classification and regression presets on the headline date's rows
        (`churned` / `churn_probability`, `future_value` / `clv`), against `reference` (the
        champion's reference predictions, same columns) when given."""
        if self.status != OK:
            raise ValueError(f"no matured performance to report: {self.message}")
        return _evidently_snapshot(self.rows, reference, settings)

    def save_html(
        self,
        path: str | Path,
        reference: pd.DataFrame | None = None,
        *,
        settings: MonitoringSettings,
    ) -> Path:
        path = Path(path)
        self.evidently_snapshot(reference, settings=settings).save_html(str(path))
        return path


def _num(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _metrics(rows: pd.DataFrame) -> dict[str, float]:
    y = rows["churned"].to_numpy(dtype=float)
    out = {f"churn.{k}": v for k, v in churn_metrics(y, rows["churn_probability"]).items()}
    if "future_value" in rows.columns:
        value = rows["future_value"].to_numpy(dtype=float)
        out.update({f"clv.{k}": v for k, v in clv_metrics(value, rows["clv"]).items()})
    return out


def _comparison(metrics: dict[str, float], promised: dict[str, float]) -> pd.DataFrame:
    rows = []
    for name, higher in COMPARED.items():
        if name not in metrics and name not in promised:
            continue
        got = float(metrics.get(name, np.nan))
        want = float(promised.get(name, np.nan))
        rows.append((name, got, want, got - want, higher))
    return pd.DataFrame(
        rows, columns=["metric", "matured", "promised", "difference", "higher_is_better"]
    )


def matured_performance(
    scores: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: str | pd.Timestamp,
    horizon_days: int,
    promised: dict[str, float] | None = None,
    *,
    settings: MonitoringSettings,
    pending_elsewhere: int = 0,
) -> PerformanceResult:
    """Metrics of the matured scores against their labels.

    `scores`: past scores with `as_of`, `customer_id`, `churn_probability`, `clv` (any further
    columns are kept on `rows`). `labels`: `as_of`, `customer_id`, `churned`, `future_value`, as
    `monitoring.outcomes.matured_labels` builds them. `promised`: the champion's training metrics
    keyed like `churn.roc_auc`, `clv.gini_normalized` (extra keys are ignored).
    `pending_elsewhere`: scores not passed because their horizon has not matured (a caller that
    counts them without reading them), added to `n_pending`.
    """
    as_of = to_utc(as_of)
    promised = {k: float(v) for k, v in (promised or {}).items() if k in COMPARED}
    require_columns(scores, SCORE_COLUMNS, "the scores")
    joined, pending, unlabelled = attach_outcomes(scores, labels, as_of, horizon_days, "the scores")
    if pending_elsewhere < 0:
        raise ValueError(f"pending_elsewhere must not be negative, got {pending_elsewhere}")
    pending += pending_elsewhere
    dates = sorted(joined["as_of"].unique())
    per_date = []
    m: dict[str, float] = {}
    for date in dates:
        part = joined[joined["as_of"] == date]
        m = _metrics(part)
        per_date.append({"score_as_of": pd.Timestamp(date), **{k: m.get(k) for k in COMPARED}})
        per_date[-1]["n"] = len(part)
    by_date = pd.DataFrame(per_date, columns=["score_as_of", "n", *COMPARED])

    latest = pd.Timestamp(dates[-1]) if dates else None
    rows = joined[joined["as_of"] == latest].reset_index(drop=True) if dates else joined
    n = len(rows)
    if n < settings.min_matured_rows:
        where = f"on {latest:%Y-%m-%d}" if latest is not None else "on any scoring date"
        status, metrics, calibration = NOT_ENOUGH, {}, calibration_table([], [])
        message = (
            f"{NOT_ENOUGH}: {n} matured, labelled scores {where} ({pending} still inside their "
            f"{horizon_days}-day horizon); at least {settings.min_matured_rows} are needed"
        )
    else:
        status, metrics = OK, m  # the latest date's, computed last in the loop above
        calibration = calibration_table(rows["churned"].to_numpy(float), rows["churn_probability"])
        message = f"{n:,} scores made on {latest:%Y-%m-%d} have matured"
    return PerformanceResult(
        status=status,
        message=message,
        as_of=as_of,
        horizon_days=horizon_days,
        score_as_of=latest,
        n=n,
        n_matured=len(joined),
        n_pending=pending,
        n_unlabelled=unlabelled,
        metrics=metrics,
        promised=promised,
        comparison=_comparison(metrics, promised),
        calibration=calibration,
        by_score_date=by_date,
        rows=rows,
    )


def _performance_frame(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["churned", "churn_probability", "future_value", "clv"]
    require_columns(frame, cols, "the performance frame")
    out = frame[cols].reset_index(drop=True)
    return out.assign(
        churned=out["churned"].astype(int),
        churn_probability=out["churn_probability"].astype(float),
        future_value=out["future_value"].astype(float),
        clv=out["clv"].astype(float),
    )


def _evidently_snapshot(
    rows: pd.DataFrame, reference: pd.DataFrame | None, settings: MonitoringSettings
):
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    definition = DataDefinition(
        numerical_columns=["churn_probability", "future_value", "clv"],
        categorical_columns=["churned"],
        classification=[
            BinaryClassification(
                target="churned", prediction_probas="churn_probability", pos_label=1
            )
        ],
        regression=[Regression(target="future_value", prediction="clv")],
    )

    def dataset(frame: pd.DataFrame):
        frame = frame.set_index("customer_id") if "customer_id" in frame.columns else frame
        if not frame.index.is_unique:
            frame = frame.reset_index(drop=True)
        sampled = sample_rows(frame, settings.sample_size, settings.seed)
        return Dataset.from_pandas(_performance_frame(sampled), data_definition=definition)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Report([ClassificationPreset(), RegressionPreset()]).run(
            current_data=dataset(rows),
            reference_data=None if reference is None else dataset(reference),
        )
