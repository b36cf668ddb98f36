"""Evaluation figures: each returns a Figure with the expected axes and lines and saves to PNG."""

import sys

import numpy as np
import pandas as pd
import pytest

from training import plots

RNG = np.random.default_rng(3)
N = 300
Y = RNG.random(N) < 0.25
GOOD = np.clip(0.2 + 0.5 * Y + RNG.normal(0, 0.15, N), 0, 1)
WEAK = np.clip(0.25 + 0.1 * Y + RNG.normal(0, 0.2, N), 0, 1)
VALUE = np.where(RNG.random(N) < 0.4, 0.0, RNG.gamma(2.0, 50.0, N))


def _ticks(ax):
    """Tick label -> its y position."""
    return {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}


def _saves(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_roc_figure(tmp_path):
    fig = plots.roc_figure(Y, {"model": GOOD, "recency": WEAK})
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3  # two scores and the diagonal
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("model (AUC 0.") and labels[2] == "chance"
    _saves(fig, tmp_path, "roc")


def test_roc_figure_single_class_does_not_fail(tmp_path):
    fig = plots.roc_figure(np.zeros(10), {"model": np.linspace(0, 1, 10)})
    assert len(fig.axes[0].get_lines()) == 2
    _saves(fig, tmp_path, "roc_one_class")


def test_calibration_figure(tmp_path):
    fig = plots.calibration_figure(
        Y, {"model": GOOD, "logistic": WEAK, "constant": np.full(N, 0.25)}
    )
    top, bottom = fig.axes
    assert len(top.get_lines()) == 4  # three models and the diagonal
    assert len(bottom.patches) == 3  # one step histogram per model
    _saves(fig, tmp_path, "calibration")


def test_gains_figure(tmp_path):
    pred = VALUE * RNG.uniform(0.5, 1.5, N)
    fig = plots.gains_figure(VALUE, {"model": pred, "last spend": RNG.random(N)})
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 4  # two predictions, perfect, random
    x, g = lines[0].get_data()
    assert x[0] == 0 and g[0] == 0 and x[-1] == pytest.approx(1) and g[-1] == pytest.approx(1)
    _saves(fig, tmp_path, "gains")


def test_importance_figure(tmp_path):
    imp = pd.Series(np.arange(40, dtype=float) - 5, index=[f"f{i}" for i in range(40)])
    fig = plots.importance_figure(imp, top=10)
    (ax,) = fig.axes
    assert len(ax.patches) == 10
    ticks = _ticks(ax)
    assert max(ticks, key=ticks.get) == "f39"  # the largest at the top
    assert min(ticks, key=ticks.get) == "f30"
    _saves(fig, tmp_path, "importance")


def test_shap_summary_figure(tmp_path):
    X = pd.DataFrame(
        {
            "recency": RNG.exponential(30, N),
            "spend": np.where(RNG.random(N) < 0.1, np.nan, RNG.gamma(2, 40, N)),
            "plan": pd.Categorical(RNG.choice(["basic", "premium"], N)),
            "noise": RNG.normal(size=N),
        }
    )
    contrib = pd.DataFrame(
        {
            "recency": 0.02 * X["recency"],
            "spend": -0.01 * X["spend"].fillna(0),
            "plan": np.where(X["plan"] == "premium", -0.3, 0.1),
            "noise": 0.001 * X["noise"],
            "bias": -2.0,  # not a feature: left out
        }
    )
    fig = plots.shap_summary_figure(contrib, X, top=3)
    main, colour_bar = fig.axes
    assert len(main.collections) == 3  # one row of dots per feature shown
    ticks = _ticks(main)
    # By mean |contribution|: spend (~0.72), recency (~0.6), plan (~0.2); noise and bias out.
    assert sorted(ticks, key=ticks.get, reverse=True) == ["spend", "recency", "plan"]
    rows = {round(float(np.median(np.asarray(c.get_offsets())[:, 1]))): c for c in main.collections}
    # The categorical feature is all grey; numeric ones are coloured except missing values.
    assert np.allclose(rows[ticks["plan"]].get_facecolors()[:, :3], 0.62)
    spend = rows[ticks["spend"]].get_facecolors()[:, :3]
    grey = np.isclose(spend, 0.62).all(axis=1)
    np.testing.assert_array_equal(grey, X["spend"].isna().to_numpy())
    _saves(fig, tmp_path, "shap")


def test_lengths_are_checked():
    with pytest.raises(ValueError, match="rows"):
        plots.roc_figure(Y, {"model": GOOD[:10]})
    with pytest.raises(ValueError, match="rows"):
        plots.shap_summary_figure(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0, 2.0]}))


def test_importing_selects_no_pyplot():
    # The module builds figures on their own Agg canvas; pyplot (and its global backend choice)
    # stays out of the picture unless the caller brings it.
    figures_module_loaded = "matplotlib.pyplot" in sys.modules
    fig = plots.roc_figure(Y, {"model": GOOD})
    assert fig.canvas.get_renderer() is not None
    assert ("matplotlib.pyplot" in sys.modules) == figures_module_loaded
