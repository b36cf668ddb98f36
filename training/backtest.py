"""Backtesting: training and scoring replayed at several cutoffs, the models compared with every
baseline on the same customers, and the margin over the best baseline given a paired bootstrap
interval.

    run = backtest(tables, settings, cutoffs)    -> Backtest (pure: no files, no MLflow)
    write_report(run, folder)                    -> backtest.md, backtest.csv, intervals.csv and
                                                    plots (intervals by cutoff, pooled churn
                                                    calibration, CLV decile calibration)
    log_backtest(run, registry, ...)             -> one MLflow parent run, a child per cutoff

At a cutoff `c` the training pipeline runs on the data known at `c + horizon`, with `c` as its
evaluation snapshot: every training snapshot's labels have matured by `c`, the features at `c`
read only the history before `c`, and the labels of the customers scored at `c` come from the
horizon after it. Nothing at or after `c` is fitted on (`tests/training/test_backtest.py`
changes everything after `c` and checks the models do not move).

Intervals: customers are resampled with replacement within each cutoff, the same resample for
the model and the baseline, and the difference averaged over the cutoffs; the 2.5% and 97.5%
points of that distribution are the 95% interval of the mean difference. The best baseline of a
metric is the one with the best mean over the cutoffs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import Tables, to_utc
from model.registry import Registry
from training.frames import build_training_data
from training.history import History, as_history
from training.metrics import churn_metrics, clv_metrics
from training.pipeline import Trained, fit_and_evaluate
from training.tracking import log_batch

MODEL = "retain"
CHURN_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile")
CLV_METRICS = ("gini_normalized", "spearman", "decile_mape", "top_decile_revenue_share")
# The classic model each task's baselines include, always reported beside the best baseline.
CLASSIC = {"churn": "bgnbd", "clv": "bgnbd_gg"}
LOWER_IS_BETTER = frozenset({"brier", "ece", "decile_mape"})
# (task, label column, prediction prefix, metric function, metrics reported)
TASKS = {
    "churn": ("churned", "churn_", churn_metrics, CHURN_METRICS),
    "clv": ("future_value", "clv_", clv_metrics, CLV_METRICS),
}


def scorers(predictions: pd.DataFrame, task: str) -> dict[str, str]:
    """Scorer name -> prediction column of a task: the model and every baseline."""
    _, prefix, _, _ = TASKS[task]
    model_column = "churn_probability" if task == "churn" else "clv"
    skip = {"clv_low", "clv_high"}
    out = {MODEL: model_column}
    for c in predictions.columns:
        if c.startswith(prefix) and c != model_column and c not in skip:
            out[c[len(prefix) :]] = c
    return out


def task_metrics(predictions: pd.DataFrame, task: str) -> dict[str, dict[str, float]]:
    """Every scorer's metrics of a task on one prediction frame."""
    label, _, fn, names = TASKS[task]
    y = predictions[label].to_numpy(np.float64)
    out = {}
    for scorer, column in scorers(predictions, task).items():
        m = fn(y, predictions[column].to_numpy(np.float64))
        out[scorer] = {k: m[k] for k in names}
    return out


def coverage(predictions: pd.DataFrame) -> float:
    """Share of customers whose future value lies in [clv_low, clv_high]."""
    y = predictions["future_value"].to_numpy(np.float64)
    return float(np.mean((y >= predictions["clv_low"]) & (y <= predictions["clv_high"])))


@dataclass(frozen=True)
class Interval:
    metric: str
    baseline: str
    mean: float  # mean over cutoffs of metric(model) - metric(baseline)
    low: float
    high: float
    per_cutoff: tuple[tuple[float, float, float], ...]  # (difference, low, high) per cutoff


def paired_bootstrap(
    predictions: Sequence[pd.DataFrame],
    task: str,
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, Interval]]:
    """Per baseline and metric of `task`, the interval of model - baseline (see the module
    docstring); every baseline is judged on the same resamples."""
    label, _, fn, names = TASKS[task]
    rng = np.random.default_rng(seed)
    cols = [scorers(p, task) for p in predictions]
    baselines = [s for s in cols[0] if s != MODEL]
    arrays = [
        (p[label].to_numpy(np.float64), {s: p[c[s]].to_numpy(np.float64) for s in c})
        for p, c in zip(predictions, cols, strict=True)
    ]

    def diffs(y: np.ndarray, s: dict[str, np.ndarray], idx: np.ndarray | None) -> np.ndarray:
        pick = (lambda a: a) if idx is None else (lambda a: a[idx])
        metrics = {k: fn(pick(y), pick(v)) for k, v in s.items()}
        return np.array([[metrics[MODEL][m] - metrics[b][m] for m in names] for b in baselines])

    point = np.array([diffs(y, s, None) for y, s in arrays])  # (cutoffs, baselines, metrics)
    draws = np.empty((n_boot, *point.shape))
    for r in range(n_boot):
        for k, (y, s) in enumerate(arrays):
            draws[r, k] = diffs(y, s, rng.integers(0, len(y), len(y)))
    out: dict[str, dict[str, Interval]] = {}
    for i, b in enumerate(baselines):
        out[b] = {}
        for j, m in enumerate(names):
            lo, hi = np.nanpercentile(np.nanmean(draws[:, :, i, j], axis=1), [2.5, 97.5])
            per = tuple(
                (
                    float(point[k, i, j]),
                    *map(float, np.nanpercentile(draws[:, k, i, j], [2.5, 97.5])),
                )
                for k in range(len(arrays))
            )
            out[b][m] = Interval(m, b, float(np.nanmean(point[:, i, j])), float(lo), float(hi), per)
    return out


@dataclass
class Backtest:
    cutoffs: tuple[str, ...]
    horizon_days: int
    # One row per (cutoff or "pooled", task, scorer), a column per metric.
    table: pd.DataFrame
    # task -> baseline -> metric -> interval of model - baseline
    intervals: dict[str, dict[str, dict[str, Interval]]]
    best: dict[str, dict[str, str]]  # task -> metric -> the best baseline (mean over cutoffs)
    predictions: list[pd.DataFrame]  # per cutoff, as `Trained.predictions`
    details: list[dict[str, object]]  # per cutoff: training rows, coverage, blends, objective


def best_baselines(table: pd.DataFrame, task: str) -> dict[str, str]:
    """Per metric, the baseline with the best mean over the cutoffs (pooled rows left out)."""
    _, _, _, names = TASKS[task]
    rows = table[(table["task"] == task) & (table["cutoff"] != "pooled")]
    means = rows[rows["scorer"] != MODEL].groupby("scorer")[list(names)].mean()
    return {m: str(means[m].idxmin() if m in LOWER_IS_BETTER else means[m].idxmax()) for m in names}


def backtest(
    history: Tables | History,
    settings: Settings,
    cutoffs: Sequence[str | pd.Timestamp],
    *,
    fit: Callable[..., Trained] = fit_and_evaluate,
    n_boot: int = 200,
    progress: Callable[[str], None] = lambda _: None,
) -> Backtest:
    if not cutoffs:
        raise ValueError("give at least one backtest cutoff")
    stamps = sorted(to_utc(c).normalize() for c in cutoffs)
    history = as_history(history)
    end = history.data_end()
    h = pd.Timedelta(days=settings.horizon_days)
    late = [f"{c:%Y-%m-%d}" for c in stamps if end is None or c + h > end + pd.Timedelta(days=1)]
    if late:
        raise ValueError(
            f"cutoffs {late}: their {settings.horizon_days}-day horizon ends after the data "
            f"(last record {end}); outcomes are not known there. Choose earlier cutoffs."
        )
    rows, preds, details = [], [], []
    for i, c in enumerate(stamps, 1):
        name = f"{c:%Y-%m-%d}"
        progress(f"cutoff {name} ({i}/{len(stamps)}): training on what was known before it")
        data = build_training_data(history, settings, c + h)
        trained = fit(data, history, settings, progress=lambda m: progress(f"  {m}"))
        p = trained.predictions
        preds.append(p)
        for task in TASKS:
            for scorer, m in task_metrics(p, task).items():
                rows.append({"cutoff": name, "task": task, "scorer": scorer, **m})
        details.append(
            {
                "cutoff": name,
                "training_cutoffs": [f"{s.cutoff:%Y-%m-%d}" for s in data.train],
                "training_rows": int(sum(len(s.X) for s in data.train)),
                "customers_scored": len(p),
                "clv_interval_coverage": coverage(p),
                "clv_interval_nominal": float(trained.clv.interval[1] - trained.clv.interval[0]),
                "churn_stack": "+".join(trained.churn.stack.components)
                if trained.churn.stack
                else "booster",
                "clv_blend_weight": trained.clv.blend.weight,
                "clv_objective": trained.clv.objective,
            }
        )
        progress(f"cutoff {name}: churn ROC AUC {_auc(p):.4f} on {len(p):,} customers")
    pooled = pd.concat(preds)
    for task in TASKS:
        for scorer, m in task_metrics(pooled, task).items():
            rows.append({"cutoff": "pooled", "task": task, "scorer": scorer, **m})
    table = pd.DataFrame(rows)
    progress(f"paired bootstrap ({n_boot} resamples of the customers at each cutoff)")
    intervals = {task: paired_bootstrap(preds, task, n_boot=n_boot) for task in TASKS}
    return Backtest(
        tuple(f"{c:%Y-%m-%d}" for c in stamps),
        settings.horizon_days,
        table,
        intervals,
        {task: best_baselines(table, task) for task in TASKS},
        preds,
        details,
    )


def vs_best(run: Backtest, task: str) -> dict[str, Interval]:
    """Per metric, the interval of the model against that metric's best baseline."""
    return {m: run.intervals[task][b][m] for m, b in run.best[task].items()}


def _auc(p: pd.DataFrame) -> float:
    return churn_metrics(p["churned"].to_numpy(), p["churn_probability"].to_numpy())["roc_auc"]


def intervals_frame(run: Backtest) -> pd.DataFrame:
    rows = []
    for task, by_baseline in run.intervals.items():
        for iv in (iv for by_metric in by_baseline.values() for iv in by_metric.values()):
            m = iv.metric
            rows.append(
                {
                    "task": task,
                    "metric": m,
                    "baseline": iv.baseline,
                    "best": run.best[task][m] == iv.baseline,
                    "cutoff": "mean",
                    "difference": iv.mean,
                    "low": iv.low,
                    "high": iv.high,
                }
            )
            for c, (d, lo, hi) in zip(run.cutoffs, iv.per_cutoff, strict=True):
                rows.append(
                    {
                        "task": task,
                        "metric": m,
                        "baseline": iv.baseline,
                        "best": run.best[task][m] == iv.baseline,
                        "cutoff": c,
                        "difference": d,
                        "low": lo,
                        "high": hi,
                    }
                )
    return pd.DataFrame(rows)


def markdown(run: Backtest) -> str:
    """The report: per-cutoff and pooled metrics of every scorer, and the intervals."""
    lines = [
        f"# Backtest: {len(run.cutoffs)} cutoffs, {run.horizon_days}-day horizon",
        "",
        "Difference model - baseline, against the best baseline of each metric and the classic "
        "BG/NBD (+ Gamma-Gamma): mean over cutoffs, paired bootstrap 95% interval, then each "
        "cutoff. Lower is better for brier, ece and decile_mape.",
        "",
        "| task | metric | best baseline | difference | 95% interval | "
        + " | ".join(run.cutoffs)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(run.cutoffs),
    ]
    for task, by_baseline in run.intervals.items():
        for iv in (iv for by_metric in by_baseline.values() for iv in by_metric.values()):
            if iv.baseline != run.best[task][iv.metric] and iv.baseline not in CLASSIC.values():
                continue
            per = " | ".join(f"{d:+.4f}" for d, _, _ in iv.per_cutoff)
            best = " (best)" if iv.baseline == run.best[task][iv.metric] else ""
            lines.append(
                f"| {task} | {iv.metric} | {iv.baseline}{best} | {iv.mean:+.4f} | "
                f"[{iv.low:+.4f}, {iv.high:+.4f}] | {per} |"
            )
    for task in TASKS:
        _, _, _, names = TASKS[task]
        lines += ["", f"## {task}", "", "| cutoff | scorer | " + " | ".join(names) + " |"]
        lines.append("|---|---|" + "---|" * len(names))
        for _, r in run.table[run.table["task"] == task].iterrows():
            values = " | ".join(f"{r[n]:.4f}" for n in names)
            lines.append(f"| {r['cutoff']} | {r['scorer']} | {values} |")
    lines += [
        "",
        "## per cutoff",
        "",
        "| cutoff | training rows | customers | churn stack | "
        "clv weight on model | clv objective | clv interval coverage (nominal) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in run.details:
        lines.append(
            f"| {d['cutoff']} | {d['training_rows']:,} | {d['customers_scored']:,} | "
            f"{d['churn_stack']} | {d['clv_blend_weight']:.2f} | {d['clv_objective']} | "
            f"{d['clv_interval_coverage']:.3f} ({d['clv_interval_nominal']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def interval_figure(run: Backtest, task: str) -> object:
    """One panel per metric: model - best baseline by cutoff, with 95% intervals."""
    from training.plots import _figure

    by_metric = vs_best(run, task)
    fig = _figure(3.2 * len(by_metric), 3.2)
    axes = fig.subplots(1, len(by_metric), squeeze=False)[0]
    x = np.arange(len(run.cutoffs))
    for ax, (m, iv) in zip(axes, by_metric.items(), strict=True):
        d = np.array(iv.per_cutoff)
        ax.errorbar(x, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], fmt="o", capsize=3)
        ax.axhline(0.0, color="#9e9e9e", lw=1)
        ax.axhline(iv.mean, color="#1f77b4", lw=1, ls="--")
        ax.set_xticks(x, run.cutoffs, rotation=45, fontsize=7)
        ax.set_title(f"{m} vs {iv.baseline}", fontsize=9)
    return fig


def write_report(run: Backtest, folder: str | Path) -> list[Path]:
    """backtest.md, backtest.csv (metrics), intervals.csv and one interval plot per task."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "backtest.md", folder / "backtest.csv", folder / "intervals.csv"]
    written[0].write_text(markdown(run))
    run.table.to_csv(written[1], index=False)
    intervals_frame(run).to_csv(written[2], index=False)
    from training.plots import calibration_figure, decile_calibration_figure

    pooled = pd.concat(run.predictions)
    figures = {f"{task}_intervals.png": interval_figure(run, task) for task in TASKS}
    churn, clv = (scorers(pooled, t) for t in ("churn", "clv"))
    figures["churn_calibration.png"] = calibration_figure(
        pooled["churned"].to_numpy(), {s: pooled[c].to_numpy() for s, c in churn.items()}
    )
    figures["clv_decile_calibration.png"] = decile_calibration_figure(
        pooled["future_value"].to_numpy(), {s: pooled[c].to_numpy() for s, c in clv.items()}
    )
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=110)
        written.append(folder / name)
    return written


def _metric_key(*parts: str) -> str:
    return ".".join(parts)


def log_backtest(
    run: Backtest,
    registry: Registry,
    experiment: str,
    *,
    source: str,
    config_text: str,
    report: Sequence[Path] = (),
) -> str:
    """One MLflow parent run (pooled metrics, intervals, the report files) with a child run per
    cutoff (that cutoff's metrics of every scorer); the parent's run id."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client = registry.client
    experiment_id = registry.ensure_experiment(experiment)
    parent = client.create_run(
        experiment_id,
        tags={
            MLFLOW_RUN_NAME: f"backtest-{run.cutoffs[0]}-{run.cutoffs[-1]}",
            "retain.source": source,
        },
    )
    pid = parent.info.run_id
    metrics: dict[str, float] = {}
    for task, by_baseline in run.intervals.items():
        for b, by_metric in by_baseline.items():
            for m, iv in by_metric.items():
                metrics[_metric_key(task, m, "vs", b)] = iv.mean
                metrics[_metric_key(task, m, "vs", b, "low")] = iv.low
                metrics[_metric_key(task, m, "vs", b, "high")] = iv.high
    for _, r in run.table[run.table["cutoff"] == "pooled"].iterrows():
        for m in TASKS[r["task"]][3]:
            metrics[_metric_key(r["task"], "pooled", r["scorer"], m)] = float(r[m])
    params = {"cutoffs": ",".join(run.cutoffs), "horizon_days": run.horizon_days}
    log_batch(client, pid, {k: v for k, v in metrics.items() if np.isfinite(v)}, params)
    client.log_text(pid, config_text, "config/settings.yaml")
    for path in report:
        client.log_artifact(pid, str(path), "report")
    for detail in run.details:
        c = str(detail["cutoff"])
        child = client.create_run(
            experiment_id,
            tags={MLFLOW_RUN_NAME: f"backtest-{c}", MLFLOW_PARENT_RUN_ID: pid},
        )
        rows = run.table[run.table["cutoff"] == c]
        cm = {
            _metric_key(r["task"], r["scorer"], m): float(r[m])
            for _, r in rows.iterrows()
            for m in TASKS[r["task"]][3]
            if np.isfinite(r[m])
        }
        cm["clv.interval_coverage"] = float(detail["clv_interval_coverage"])
        cm["training_rows"] = float(detail["training_rows"])
        log_batch(client, child.info.run_id, cm, {k: v for k, v in detail.items() if k != "cutoff"})
        client.set_terminated(child.info.run_id)
    client.set_terminated(pid)
    return pid
