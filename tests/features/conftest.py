"""Shared fixtures for the feature tests: small raw frames -> validated tables -> a Snapshot."""

import pandas as pd
import pytest

from configs import Settings, load_settings
from features.snapshot import Snapshot
from features.validate import validate


def _snapshot(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    as_of: str | pd.Timestamp,
    feedback: pd.DataFrame | None = None,
    churn: pd.DataFrame | None = None,
    settings: Settings | None = None,
    everyone: bool = False,
) -> Snapshot:
    """A snapshot of raw frames run through validation. `everyone=True` adds an empty churn table,
    so the population is every customer signed up before `as_of`, with or without purchases."""
    if everyone and churn is None:
        churn = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "churn_date": []})
    raw = {"customers": customers, "events": events, "feedback": feedback, "churn": churn}
    result = validate(raw)
    for name, rows in result.quarantine.items():
        assert rows.empty, f"test data broke the contract in {name}:\n{rows}"
    return Snapshot(result.tables, as_of, settings or load_settings())


@pytest.fixture
def make_snapshot():
    return _snapshot
