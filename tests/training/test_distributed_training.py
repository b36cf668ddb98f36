"""Training on a real local Dask cluster of 2 worker processes: the cluster's history answers
every question of training exactly as one process does on the same partitioned folder, a
backtest over it equals the single-process backtest, and boosters fitted with `lightgbm.dask`
score within 0.005 of single-process training on the same data."""

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from features.distributed import partitions_of
from features.partitioned import write_partitioned
from features.sources import read_source
from features.synthetic import generate_world
from features.validate import validate
from training.backtest import backtest
from training.boosting import on_dask
from training.frames import build_training_data
from training.history import ClusterHistory, History
from training.pipeline import fit_and_evaluate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def histories(client, world, folder, partitions):
    write_partitioned(world, folder, partitions)
    single = History(validate(read_source(folder)).tables)
    spread = ClusterHistory.load(client, partitions_of(str(folder)), progress=lambda _: None)
    return single, spread


def fast_settings():
    settings = load_settings()
    training = settings.training.model_copy(
        update={"search": settings.training.search.model_copy(update={"trials": 0})}
    )
    return settings.model_copy(update={"training": training})


@pytest.mark.parametrize("seed", [3, 4])
def test_the_cluster_history_answers_as_one_process(client, tmp_path, seed):
    rng = np.random.default_rng(seed)
    world = generate_world(int(rng.integers(400, 900)), seed, start="2024-01-01", days=540)
    customers = world["customers"].copy()
    # A datetime attribute some customers only got after a training cutoff (a leak to report).
    late = rng.random(len(customers)) < 0.2
    customers["upgraded_at"] = customers["signup_date"] + pd.to_timedelta(
        np.where(late, 500, 5), unit="D"
    )
    world = {**world, "customers": customers}
    single, spread = histories(client, world, tmp_path / "p", int(rng.integers(2, 6)))
    settings = load_settings()

    assert spread.data_end() == single.data_end()
    assert spread.first_signup() == single.first_signup()
    assert spread.checked.report == validate(read_source(tmp_path / "p")).report
    a, b = build_training_data(single, settings), build_training_data(spread, settings)
    assert a.cutoffs == b.cutoffs
    for x, y in zip((*a.train, a.evaluation), (*b.train, b.evaluation), strict=True):
        pd.testing.assert_frame_equal(y.X, x.X)
        pd.testing.assert_frame_equal(y.y, x.y)
    cutoff = a.cutoffs.training[0]
    pd.testing.assert_frame_equal(
        spread.rfm_summary(cutoff, settings), single.rfm_summary(cutoff, settings)
    )
    assert spread.late_attributes(cutoff) == single.late_attributes(cutoff)
    assert spread.late_attributes(cutoff)["upgraded_at"] > 0
    cut = spread.cut(cutoff)
    assert cut.data_end() < cutoff and cut.digest() == spread.cut(cutoff).digest()
    assert cut.digest() != spread.digest()


def test_training_and_backtest_on_the_cluster(client, tmp_path):
    # Large enough that where early stopping lands moves the metrics by less than the bound
    # (at 4,000 customers a few trees more or less move ROC AUC by 0.007 either way).
    world = generate_world(8000, 8)
    single, spread = histories(client, world, tmp_path / "p", 4)
    settings = fast_settings()

    # The backtest reads the cluster's history and equals the single-process one exactly
    # (the boosters are fitted here, so only the history differs; short boosters will do).
    cutoff = ["2025-07-01"]
    short = settings.model_copy(
        update={"training": settings.training.model_copy(update={"num_boost_round": 40})}
    )
    here, there = (
        backtest(single, short, cutoff, n_boot=20),
        backtest(spread, short, cutoff, n_boot=20),
    )
    pd.testing.assert_frame_equal(there.table, here.table)

    # Boosters fitted data-parallel on the workers: within 0.005 of one process.
    data = build_training_data(single, settings)
    local = fit_and_evaluate(data, single, settings)
    with on_dask(client):
        distributed = fit_and_evaluate(build_training_data(spread, settings), spread, settings)
    assert distributed.churn_eval.baselines == local.churn_eval.baselines  # the same data
    assert distributed.churn.booster.num_trees() > 0
    for kind, metric in (("churn_eval", "roc_auc"), ("clv_eval", "gini_normalized")):
        got = getattr(distributed, kind).model[metric]
        want = getattr(local, kind).model[metric]
        assert abs(got - want) <= 0.005, (kind, metric, got, want)
