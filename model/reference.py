"""The champion's monitoring reference: the features and predictions of its evaluation snapshot,
logged with its training run under `reference/` and read back by monitoring. The one owner of
that layout.

    reference/features.parquet      features of the evaluation customers (customer_id index)
    reference/predictions.parquet   labels, model and baseline predictions of the same customers
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REFERENCE = "reference"
FEATURES, PREDICTIONS = "features.parquet", "predictions.parquet"


@dataclass(frozen=True)
class Reference:
    features: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict[str, float]  # the training run's metrics: what the champion promised
    run_id: str


def write_reference(folder: Path, features: pd.DataFrame, predictions: pd.DataFrame) -> Path:
    """Write the reference files into `<folder>/reference/`; returns that folder (to log)."""
    ref = Path(folder) / REFERENCE
    ref.mkdir(parents=True, exist_ok=True)
    features.to_parquet(ref / FEATURES)
    predictions.to_parquet(ref / PREDICTIONS)
    return ref


def champion_reference(registry, version: str) -> Reference:
    """The reference of the training run of churn `version`, read from `registry`."""
    run_id = registry.run_id("churn", version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = registry.download(run_id, REFERENCE, tmp)
            features = pd.read_parquet(folder / FEATURES)
            predictions = pd.read_parquet(folder / PREDICTIONS)
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise ValueError(
                f"the champion churn v{version} (run {run_id}) has no readable monitoring "
                f"reference ({REFERENCE}/{FEATURES} and {REFERENCE}/{PREDICTIONS}): "
                f"{exc}. Train it with `retain train` (which logs the reference), or promote "
                "a version trained that way."
            ) from None
    return Reference(features, predictions, registry.run_metrics(run_id), run_id)
