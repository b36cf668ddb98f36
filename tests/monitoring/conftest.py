"""Shared fixtures for the monitoring tests: one synthetic world with drift and the same world
without, each as features at a reference cutoff (the day drift starts) and at the end of the
world, with simple predictions computed from a fixed formula (no training needed).

Session scoped: tests must treat the frames as read-only. The worlds cost about a second each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from features.contract import Tables
from features.synthetic import drift_start_day, generate_world
from features.validate import validate

WORLD_CUSTOMERS = 5000
WORLD_SEED = 1
WORLD_START = pd.Timestamp("2024-01-01", tz="UTC")
WORLD_DAYS = 730
REFERENCE_AS_OF = WORLD_START + pd.Timedelta(days=drift_start_day(WORLD_DAYS))  # 2025-08-23
CURRENT_AS_OF = pd.Timestamp("2025-12-31", tz="UTC")


@dataclass(frozen=True)
class Snapshots:
    tables: Tables
    reference: pd.DataFrame  # features at REFERENCE_AS_OF
    current: pd.DataFrame  # features at CURRENT_AS_OF
    reference_predictions: pd.DataFrame  # churn_probability, clv by customer_id
    current_predictions: pd.DataFrame


def simple_predictions(features: pd.DataFrame) -> pd.DataFrame:
    """A fixed logistic formula of a few CX features and a CLV from recent spend and basket."""
    nps = features["nps_mean"].fillna(7.0)
    complaints = features["complaint_90d"].fillna(0.0)
    delivery = features["delivery_issue_90d"].fillna(0.0)
    z = -2.0 - 0.3 * (nps - 7.0) + 0.6 * complaints + 0.6 * delivery
    p = 1.0 / (1.0 + np.exp(-z))
    spend = features["spend_90d"].fillna(0.0).clip(lower=0.0)
    clv = 2.0 * spend + 4.0 * features["avg_purchase_value"].fillna(0.0).clip(lower=0.0)
    return pd.DataFrame({"churn_probability": p, "clv": clv}, index=features.index)


def _snapshots(drift: bool) -> Snapshots:
    from features.build import build_features

    settings = load_settings()
    raw = generate_world(WORLD_CUSTOMERS, WORLD_SEED, drift=drift)
    tables = validate(raw).tables
    reference = build_features(tables, REFERENCE_AS_OF, settings)
    current = build_features(tables, CURRENT_AS_OF, settings)
    return Snapshots(
        tables,
        reference,
        current,
        simple_predictions(reference),
        simple_predictions(current),
    )


@pytest.fixture(scope="session")
def drifted_world() -> Snapshots:
    return _snapshots(drift=True)


@pytest.fixture(scope="session")
def stable_world() -> Snapshots:
    return _snapshots(drift=False)
