"""Which saved snapshots `retain monitor` reads: only those it needs, however long the history."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from monitoring.monitor import MATURED_DATES, for_performance, past_scores
from serving.score_store import ScoreStore

CUTOFF = pd.Timestamp("2026-01-01", tz="UTC")
HORIZON = 90  # matured: made on or before 2025-10-03


def _write(root, as_of: pd.Timestamp, rows: int, *, with_count: bool = True) -> None:
    folder = root / "scores" / f"{as_of:%Y-%m-%d}"
    folder.mkdir(parents=True)
    ids = [f"c{i}" for i in range(rows)]
    pd.DataFrame(
        {"customer_id": ids, "churn_probability": 0.1, "clv": 10.0, "value_at_risk": 1.0}
    ).to_parquet(folder / "scores.parquet", index=False)
    meta = {"as_of": as_of.isoformat()}
    if with_count:
        meta["customers"] = rows
    (folder / "snapshot.json").write_text(json.dumps(meta))


@pytest.fixture
def history(tmp_path):
    """A snapshot every 10 days through 2025, one at the cutoff, one broken folder."""
    dates = list(pd.date_range("2025-01-01", "2025-12-31", freq="10D", tz="UTC"))
    for i, day in enumerate(dates):
        _write(tmp_path, day, rows=5 + i % 3, with_count=i % 2 == 0)
    _write(tmp_path, CUTOFF, rows=50)  # the current one: never a past score
    broken = tmp_path / "scores" / "2025-12-30"
    broken.mkdir()
    (broken / "snapshot.json").write_text("{not json")
    return tmp_path, dates


def test_reads_only_the_matured_dates_and_kpi_window_starts(history):
    root, dates = history
    past, pending = past_scores(ScoreStore(root), CUTOFF, HORIZON, kpi_windows_days=(30, 90))
    matured = [d for d in dates if d + pd.Timedelta(days=HORIZON) <= CUTOFF]
    window_30 = max(d for d in dates if d <= CUTOFF - pd.Timedelta(days=30))
    window_90 = max(d for d in dates if d <= CUTOFF - pd.Timedelta(days=90))
    assert window_90 == matured[-1]
    expected = sorted({*matured[-MATURED_DATES:], window_30})
    assert sorted(past["as_of"].unique()) == expected
    assert list(past.columns) == ["as_of", "customer_id", "churn_probability", "clv"]
    # Pending scores are counted from metadata (or the Parquet footer), never read.
    assert pending == sum(
        5 + i % 3 for i, d in enumerate(dates) if d + pd.Timedelta(days=HORIZON) > CUTOFF
    )

    perf = for_performance(past, CUTOFF, HORIZON)
    assert sorted(perf["as_of"].unique()) == matured[-MATURED_DATES:]


def test_no_snapshots_gives_none_and_nothing_pending(tmp_path):
    past, pending = past_scores(ScoreStore(tmp_path), CUTOFF, HORIZON, kpi_windows_days=(30,))
    assert past is None and pending == 0
    assert len(for_performance(past, CUTOFF, HORIZON)) == 0
