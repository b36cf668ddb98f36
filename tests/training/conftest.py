"""Shared fixtures for the training tests: one small synthetic world, its training data split the
way `training.pipeline` splits it, and a churn and a CLV model fitted on it.

Everything here is session scoped and shared, so tests must treat the frames and models as
read-only (copy a frame before changing it). The whole chain costs a few seconds:

- the world: 4,000 customers over two years (`features.synthetic.generate_world`), validated;
- 8 cutoffs 30 days apart (the default 4 leave about 2.7k rows to fit on, too few for the trees
  to pick up the weaker CX signals such as NPS class reliably; 8 give about 9k rows for the
  price of one more second);
- the models with few trees (at most 200 rounds, early stopping after 20) and one LightGBM
  thread: OpenMP threads spin while they wait, so on a busy 2-core machine the default
  (all cores) is about ten times slower for frames this small, with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from configs import Settings, settings_from_dict
from features.contract import Tables
from features.synthetic import generate_world
from features.validate import validate
from model.churn import ChurnModel
from model.clv import ClvModel
from training.churn import ChurnTrainer
from training.clv import ClvTrainer
from training.frames import TrainingData, build_training_data
from training.pipeline import _split_fit_valid

SYNTHETIC_CUSTOMERS = 4000
SYNTHETIC_SEED = 3
SYNTHETIC_CUTOFFS = 8
# LightGBM parameters and boosting budget for every model fitted in these tests.
FAST_LGB_PARAMS = {"num_threads": 1}
FAST_BOOSTING = {"num_boost_round": 200, "early_stopping_rounds": 20}


@dataclass(frozen=True)
class SplitFrames:
    """The frames `training.pipeline._split_fit_valid` gives, plus the evaluation labels."""

    X_fit: pd.DataFrame
    y_fit: pd.DataFrame  # churned, future_value
    X_valid: pd.DataFrame
    y_valid: pd.DataFrame
    X_eval: pd.DataFrame  # categories aligned with the training frames
    y_eval: pd.DataFrame


@pytest.fixture(scope="session")
def synthetic_tables() -> Tables:
    """The validated tables of a small synthetic world (nothing quarantined)."""
    result = validate(generate_world(SYNTHETIC_CUSTOMERS, seed=SYNTHETIC_SEED))
    for name, rows in result.quarantine.items():
        assert rows.empty, f"the synthetic world broke the contract in {name}:\n{rows.head()}"
    return result.tables


@pytest.fixture(scope="session")
def synthetic_settings() -> Settings:
    return settings_from_dict(
        {
            "training": {
                "cutoffs": SYNTHETIC_CUTOFFS,
                "churn_params": FAST_LGB_PARAMS,
                "clv_params": FAST_LGB_PARAMS,
                **FAST_BOOSTING,
            }
        }
    )


@pytest.fixture(scope="session")
def synthetic_training_data(synthetic_tables, synthetic_settings) -> TrainingData:
    return build_training_data(synthetic_tables, synthetic_settings)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_training_data) -> SplitFrames:
    X_fit, y_fit, X_valid, y_valid, X_eval = _split_fit_valid(synthetic_training_data)
    y_eval = synthetic_training_data.evaluation.y
    assert y_eval.index.equals(X_eval.index)
    return SplitFrames(X_fit, y_fit, X_valid, y_valid, X_eval, y_eval)


@pytest.fixture(scope="session")
def fitted_churn_model(synthetic_split) -> ChurnModel:
    s = synthetic_split
    return ChurnTrainer(FAST_LGB_PARAMS, seed=0, **FAST_BOOSTING).fit(
        s.X_fit, s.y_fit["churned"], s.X_valid, s.y_valid["churned"]
    )


@pytest.fixture(scope="session")
def fitted_clv_model(synthetic_split) -> ClvModel:
    s = synthetic_split
    return ClvTrainer(FAST_LGB_PARAMS, seed=0, **FAST_BOOSTING).fit(
        s.X_fit, s.y_fit["future_value"], s.X_valid, s.y_valid["future_value"]
    )
