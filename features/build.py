"""`build_features`: every feature family at one cutoff, joined into one row per customer.

The same function builds training snapshots and scoring snapshots, so training and serving
cannot drift apart.
"""

from __future__ import annotations

import pandas as pd

from configs import Settings
from features.contract import Tables
from features.families import FAMILIES
from features.snapshot import Snapshot


def build_features(tables: Tables, as_of: str | pd.Timestamp, settings: Settings) -> pd.DataFrame:
    """Features of the population at `as_of` from rows strictly before it, indexed by customer_id."""
    snap = Snapshot(tables, as_of, settings)
    parts = [family(snap) for family in FAMILIES]
    seen: dict[str, str] = {}
    for family, part in zip(FAMILIES, parts, strict=True):
        if not part.index.equals(snap.index):
            raise AssertionError(f"{family.__name__} returned rows that are not the population")
        for col in part.columns:
            if col in seen:
                raise ValueError(
                    f"feature '{col}' is produced by both {seen[col]} and {family.__name__}; "
                    "rename a static attribute column that collides with a feature name"
                )
            seen[col] = family.__name__
    return pd.concat(parts, axis=1)
