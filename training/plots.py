"""Evaluation figures for a training run: ROC, calibration, cumulative gains, importance, SHAP.

Each function returns a matplotlib `Figure` and closes nothing: the caller saves or logs it (e.g.
`mlflow.log_figure`) and then closes it. Figures are built on an Agg canvas created inside the
function, never through pyplot's global state, so importing this module selects no backend,
plotting works headless, and figures are not kept alive by pyplot's figure manager.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.metrics import calibration_table, gains_curve

GREY = "#9e9e9e"


def _figure(width: float = 6.4, height: float = 4.8) -> Any:
    # Imported here so importing this module never touches matplotlib's backend machinery.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_lengths(y: np.ndarray, series: dict[str, np.ndarray], what: str) -> None:
    for name, values in series.items():
        if len(values) != len(y):
            raise ValueError(f"{what} '{name}' has {len(values)} rows but y_true has {len(y)}")


def roc_figure(y_true: Any, scores: dict[str, np.ndarray]) -> Any:
    """ROC curves of several churn scores (model and baselines) on one axes, AUC in the legend.
    Lines: one per score, plus the chance diagonal."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true, dtype=np.float64)
    _check_lengths(y, scores, "score")
    fig = _figure()
    ax = fig.add_subplot()
    two_classes = 0 < y.sum() < len(y)
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        if two_classes:
            fpr, tpr, _ = roc_curve(y, s)
            label = f"{name} (AUC {roc_auc_score(y, s):.3f})"
        else:  # no ROC without both classes: an empty line keeps the legend and line count
            fpr, tpr, label = np.array([]), np.array([]), f"{name} (AUC n/a)"
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color=GREY, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return fig


def calibration_figure(y_true: Any, probs: dict[str, np.ndarray], bins: int = 10) -> Any:
    """Reliability diagram (top: observed churn rate against mean predicted probability per bin,
    one line per model plus the diagonal) over histograms of the predicted probabilities
    (bottom: one step line per model). Two axes."""
    y = np.asarray(y_true, dtype=np.float64)
    _check_lengths(y, probs, "probabilities")
    fig = _figure(6.4, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, p in probs.items():
        table = calibration_table(y, p, bins=bins)
        filled = table["n"] > 0
        (line,) = top.plot(
            table.loc[filled, "mean_predicted"],
            table.loc[filled, "observed_rate"],
            marker="o",
            label=name,
        )
        counts, _ = np.histogram(np.asarray(p, dtype=np.float64), bins=edges)
        bottom.stairs(counts, edges, color=line.get_color(), label=name)
    top.plot([0, 1], [0, 1], linestyle="--", color=GREY, label="perfectly calibrated")
    top.set(ylabel="observed churn rate", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.set(xlabel="predicted churn probability", ylabel="customers")
    return fig


def decile_calibration_figure(y_true_value: Any, preds: dict[str, np.ndarray]) -> Any:
    """CLV in level: mean predicted against mean actual value per decile of each prediction
    (equal-count groups, lowest first), log-log, with the diagonal. One line per prediction."""
    y = np.asarray(y_true_value, dtype=np.float64)
    _check_lengths(y, preds, "prediction")
    fig = _figure()
    ax = fig.add_subplot()
    top = 1.0
    for name, pred in preds.items():
        p = np.asarray(pred, dtype=np.float64)
        order = np.argsort(p, kind="stable")
        decile = np.empty(len(p), dtype=np.int64)
        decile[order] = (np.arange(len(p)) * 10) // max(len(p), 1)
        n = np.maximum(np.bincount(decile, minlength=10), 1)
        mean_pred = np.bincount(decile, weights=p, minlength=10) / n
        mean_true = np.bincount(decile, weights=y, minlength=10) / n
        ax.plot(mean_pred, mean_true, marker="o", label=name)
        top = max(top, float(np.nanmax(mean_pred)), float(np.nanmax(mean_true)))
    ax.plot([0.01, top], [0.01, top], linestyle="--", color=GREY, label="right in level")
    ax.set(
        xscale="symlog",
        yscale="symlog",
        xlabel="mean predicted value (per decile of the prediction)",
        ylabel="mean actual value",
        title="CLV decile calibration",
    )
    ax.legend(loc="upper left")
    return fig


def gains_figure(y_true_value: Any, preds: dict[str, np.ndarray]) -> Any:
    """Cumulative gains for CLV: share of total actual value against share of customers, ranked
    by each prediction. Lines: one per prediction, plus the perfect ranking (by actual value)
    and the random one (the diagonal)."""
    y = np.asarray(y_true_value, dtype=np.float64)
    _check_lengths(y, preds, "prediction")
    fig = _figure()
    ax = fig.add_subplot()
    for name, pred in preds.items():
        x, g = gains_curve(y, pred)
        ax.plot(x, g, label=name)
    x, g = gains_curve(y, y)
    ax.plot(x, g, color="black", linewidth=1, label="perfect")
    ax.plot([0, 1], [0, 1], linestyle="--", color=GREY, label="random")
    ax.set(
        xlabel="share of customers (highest predicted value first)",
        ylabel="share of actual value",
        title="Cumulative gains",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    return fig


def importance_figure(importance: pd.Series, top: int = 25) -> Any:
    """Horizontal bars of the `top` features by absolute importance, largest at the top."""
    imp = pd.Series(importance, dtype=np.float64).dropna()
    imp = imp.reindex(imp.abs().sort_values(ascending=False, kind="stable").index)[:top]
    fig = _figure(6.4, max(2.5, 0.28 * len(imp) + 1.0))
    ax = fig.add_subplot()
    ax.barh(np.arange(len(imp))[::-1], imp.to_numpy(), color="#4c72b0")
    ax.set_yticks(np.arange(len(imp))[::-1], [str(i) for i in imp.index])
    ax.set(xlabel=imp.name or "importance", title=f"Feature importance (top {len(imp)})")
    return fig


def _value_colours(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: colour position in [0, 1] (the value's rank within the feature) and whether it
    is coloured at all (numeric and present; categoricals and missing values are grey)."""
    numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    if not numeric:
        return np.zeros(len(values)), np.zeros(len(values), dtype=bool)
    v = values.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(v)
    rank = pd.Series(v).rank(pct=True).to_numpy()
    return np.nan_to_num(rank, nan=0.0), ok


def shap_summary_figure(
    contributions: pd.DataFrame, X: pd.DataFrame, top: int = 20, max_points: int = 2000
) -> Any:
    """Beeswarm-like summary of per-row feature contributions (SHAP values, e.g. LightGBM's
    `pred_contrib`): one row of dots per feature, the `top` features by mean |contribution|,
    contribution on x, colour by the feature value's rank within the feature (blue low, red
    high); categorical and missing values grey. Columns of `contributions` not in `X` (such as
    a bias term) are left out. At most `max_points` rows are drawn, picked evenly, so the figure
    stays light; the dots are spread vertically by a fixed-seed jitter, so it is deterministic.
    Two axes: the plot and its colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if len(contributions) != len(X):
        raise ValueError(f"contributions has {len(contributions)} rows but X has {len(X)}")
    features = [c for c in contributions.columns if c in X.columns]
    if not features:
        raise ValueError("contributions share no columns with X")
    strength = contributions[features].abs().mean().sort_values(ascending=False, kind="stable")
    chosen = list(strength.index[:top])
    rows = np.unique(np.linspace(0, len(X) - 1, min(len(X), max_points)).round().astype(int))

    cmap = colormaps["coolwarm"]
    fig = _figure(7.0, max(3.0, 0.35 * len(chosen) + 1.2))
    ax = fig.add_subplot()
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(rows))
    for level, name in enumerate(chosen):
        y_pos = len(chosen) - 1 - level
        contrib = contributions[name].to_numpy(dtype=np.float64)[rows]
        position, coloured = _value_colours(X[name].iloc[rows])
        colours = np.where(coloured[:, None], cmap(position), np.array([0.62, 0.62, 0.62, 1.0]))
        ax.scatter(contrib, y_pos + jitter, c=colours, s=6, linewidths=0, rasterized=True)
    ax.axvline(0.0, color=GREY, linewidth=0.8)
    ax.set_yticks(np.arange(len(chosen))[::-1], [str(c) for c in chosen])
    ax.set(xlabel="contribution to the prediction", title="Feature contributions")
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=cmap), ax=ax, pad=0.01)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.set_label("feature value (rank)")
    return fig
