"""Batch scoring: the whole population at a cutoff, ranked by value at risk, with reasons for the
customers a CX team will look at (`score_population` -> `ScoredList`, or `score_partitions` on
Dask); writing the ranked list as a CSV or Parquet file. Where scored lists are kept is `serving.score_store`'s business.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import Tables, to_utc
from model.btyd import with_btyd
from serving.core.champions import Champions
from serving.core.columns import REASON_COLUMNS, SCORE_COLUMNS
from serving.core.explain import reasons_for
from serving.core.scoring import score_frame

_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class ScoredList:
    """A population scored at a cutoff: the ranked list (`SCORE_COLUMNS`, row 0 first) and the
    features it was scored from (customer_id index)."""

    as_of: pd.Timestamp
    ranked: pd.DataFrame
    features: pd.DataFrame

    def reasons(self, customer_ids: list[str], champions: Champions) -> pd.DataFrame:
        """Reasons for customers of this list (those below the top get none when ranked)."""
        ids = self.features.index.astype(str)
        found = ids.get_indexer(pd.Index(customer_ids, dtype=object))
        if (found < 0).any():
            unknown = [c for c, f in zip(customer_ids, found, strict=True) if f < 0][:5]
            raise KeyError(f"customers not in the scored list of {self.as_of:%Y-%m-%d}: {unknown}")
        X = self.features.iloc[found]
        return reasons_for(X.set_axis(ids[found]), champions)


def population_features(
    tables: Tables,
    as_of: str | pd.Timestamp,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """The features the champions score at `as_of`: the feature families, plus the BTYD
    features computed with the champion's fitted parameters when its schema has them."""
    from features.build import build_features

    cutoff = to_utc(as_of)
    progress(f"building features as of {cutoff:%Y-%m-%d %H:%M} UTC")
    X = build_features(tables, cutoff, settings)
    if champions.btyd is not None:
        progress("BG/NBD + Gamma-Gamma features with the champion's fitted parameters")
        X = with_btyd(X, tables, cutoff, settings, champions.btyd)
    return X


def score_partitions(
    client,
    parts,
    as_of: str | pd.Timestamp,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
):
    """`score_population` per partition on Dask (`features.distributed`): each task validates its
    partition, builds the champions' features and scores them; the list is ranked, and the top
    given reasons, over the gathered scores. Returns the ScoredList and the reconciliation."""
    from features.distributed import checked, concat_rows, run_partitions

    cutoff = to_utc(as_of)
    shared = client.scatter(champions, broadcast=True)
    results = run_partitions(
        client, parts, _score_task, cutoff, shared, settings, what="scoring", progress=progress
    )
    X = concat_rows([r[0] for r in results])
    scores = concat_rows([r[1] for r in results])
    ranked = rank_scores(X, scores, champions, settings, progress=progress)
    return ScoredList(cutoff, ranked, X), checked([(r[2], r[3]) for r in results])


def _score_task(part, cutoff: pd.Timestamp, champions: Champions, settings: Settings):
    result = part.validated()
    X = population_features(result.tables, cutoff, champions, settings)
    return X, score_batches(X, champions, settings), result.report, result.quarantine


def score_population(
    tables: Tables,
    as_of: str | pd.Timestamp,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> ScoredList:
    """The population at `as_of`: features built, scored and ranked (see `rank_features`)."""
    cutoff = to_utc(as_of)
    X = population_features(tables, cutoff, champions, settings, progress=progress)
    return ScoredList(cutoff, rank_features(X, champions, settings, progress=progress), X)


def rank_features(
    X: pd.DataFrame,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """Every customer in `X` scored in batches of `settings.scoring.batch_size`, ranked by value at
    risk (highest first; ties by customer id, ascending), with reasons for the top
    `settings.scoring.reasons_top_n` only (empty strings below). Columns are exactly
    `SCORE_COLUMNS`; the index is a RangeIndex (row 0 is the customer to call first)."""
    return rank_scores(
        X,
        score_batches(X, champions, settings, progress=progress),
        champions,
        settings,
        progress=progress,
    )


def score_batches(
    X: pd.DataFrame,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """`score_frame` without reasons over `X` in batches of `settings.scoring.batch_size`."""
    n = len(X)
    size = settings.scoring.batch_size
    batches = max(1, -(-n // size))
    parts = []
    for b, start in enumerate(range(0, max(n, 1), size), start=1):
        parts.append(score_frame(X.iloc[start : start + size], champions, settings, reasons=False))
        progress(f"scored {min(start + size, n):,} of {n:,} customers (batch {b}/{batches})")
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def rank_scores(
    X: pd.DataFrame,
    scores: pd.DataFrame,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """The ranked list of `rank_features` from scores already computed (rows as in `X`)."""
    n = len(X)
    progress("ranking by value at risk")
    order = _ranking(scores.index, scores["value_at_risk"].to_numpy())
    ranked = scores.iloc[order]
    top = min(settings.scoring.reasons_top_n, n)
    if top:
        progress(f"writing reasons for the top {top:,}")
        # Positions in X of the top customers: X and scores share row order before ranking.
        reasons = reasons_for(X.iloc[order[:top]], champions)
        ranked = ranked.copy()
        ranked.iloc[:top, [ranked.columns.get_loc(c) for c in REASON_COLUMNS]] = reasons.to_numpy()
    out = ranked.rename_axis("customer_id").reset_index()
    out["customer_id"] = out["customer_id"].astype(str).astype(object)
    return out.loc[:, list(SCORE_COLUMNS)]


def _ranking(ids: pd.Index, value_at_risk: np.ndarray) -> np.ndarray:
    """Positions in ranked order: value at risk descending, customer id ascending on ties. A
    stable sort on value at risk alone does it when the ids are already in order (as
    build_features returns them), which skips sorting a million strings."""
    key = -np.nan_to_num(value_at_risk, nan=-np.inf)
    if ids.is_monotonic_increasing:
        return np.argsort(key, kind="stable")
    by_id = np.argsort(ids.astype(str).to_numpy(), kind="stable")
    return by_id[np.argsort(key[by_id], kind="stable")]


def write_scores(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the ranked list as CSV or Parquet, chosen by the file extension."""
    path = Path(path)
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def check_output_path(path: str | Path) -> None:
    """Raise a ValueError naming the path unless it ends in .csv or .parquet."""
    path = Path(path)
    if path.suffix not in _SUFFIXES:
        raise ValueError(
            f"cannot write scores to {path}: the file name must end in .csv or .parquet"
        )
