"""The latest scored list as the service holds it: feature matrices of every customer (no
per-request DataFrame slicing), reloaded when the score store's `LATEST` changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.schema import feature_matrix
from serving.core.champions import Champions
from serving.http.payloads import Refused
from serving.score_store import ScoreStore


@dataclass(frozen=True)
class Rows:
    """Customers ready to score: the matrices of both models and the values reasons quote."""

    churn: np.ndarray  # feature matrix of the churn schema
    clv: np.ndarray  # feature matrix of the CLV schema (the same array when the schemas agree)
    values: Callable[[], pd.DataFrame]  # churn-schema features as a frame, built only for reasons
    segments: np.ndarray


@dataclass(frozen=True)
class LoadedList:
    """A scored population, held as matrices (no per-request DataFrame slicing)."""

    as_of: pd.Timestamp
    ranked: pd.DataFrame  # the ranked list (SCORE_COLUMNS) (SCORE_COLUMNS), row 0 first
    ids: pd.Index  # customer id of each feature row
    churn: np.ndarray  # feature matrix (churn schema), one row per customer
    clv: np.ndarray
    categorical: dict[str, np.ndarray]  # raw values of the categorical features, by feature row
    segments: np.ndarray  # by feature row
    ranked_row: np.ndarray  # feature row of each ranked row
    known_segments: tuple[str, ...]
    champions: Champions  # the models the matrices are for (and scores by id come from)

    @classmethod
    def build(
        cls, as_of, ranked: pd.DataFrame, features: pd.DataFrame, champions: Champions
    ) -> LoadedList:
        features = features.copy(deep=False)
        features.index = features.index.astype(str)
        if not features.index.is_unique:
            raise ValueError("its features repeat customer ids")
        for schema in (champions.churn.schema, champions.clv.schema):
            lacking = [c for c in schema.columns if c not in features.columns]
            if lacking:
                raise ValueError(
                    f"its features lack {len(lacking)} of the serving models' features "
                    f"(e.g. {lacking[:3]}): it was scored for other models"
                )
        churn = feature_matrix(features, champions.churn.schema)
        same = champions.clv.schema == champions.churn.schema
        clv = churn if same else feature_matrix(features, champions.clv.schema)
        categorical = {
            c: features[c].astype(object).to_numpy()
            for c in champions.churn.schema.categories
            if c in features.columns
        }
        ranked = ranked.reset_index(drop=True)
        ranked_row = features.index.get_indexer(ranked["customer_id"].astype(str))
        if (ranked_row < 0).any():
            raise ValueError("its ranked list has customers its features lack")
        segments = np.full(len(features), "", dtype=object)
        segments[ranked_row] = ranked["segment"].astype(str).to_numpy()
        return cls(
            as_of=as_of,
            ranked=ranked,
            ids=features.index,
            churn=churn,
            clv=clv,
            categorical=categorical,
            segments=segments,
            ranked_row=ranked_row,
            known_segments=tuple(sorted(set(ranked["segment"].astype(str)))),
            champions=champions,
        )

    def rows(self, positions: np.ndarray) -> Rows:
        churn = self.churn[positions]
        clv = churn if self.clv is self.churn else self.clv[positions]
        columns = list(self.champions.churn.schema.columns)

        def values() -> pd.DataFrame:
            data = churn.astype(object)
            for c, raw in self.categorical.items():
                data[:, columns.index(c)] = raw[positions]
            return pd.DataFrame(data, index=self.ids[positions], columns=columns, dtype=object)

        return Rows(churn, clv, values, self.segments[positions])


class LatestList:
    """The newest scored list of a `ScoreStore` (None: the service has no data folder), loaded
    once and again whenever its `LATEST` is replaced (one `stat` per request that needs it)."""

    def __init__(self, store: ScoreStore | None, champions: Champions) -> None:
        self.store = store
        self._champions = champions
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._loaded: LoadedList | None = None

    def _pointer_stamp(self) -> tuple | None:
        return None if self.store is None else self.store.pointer_stamp()

    def fresh(self) -> bool:
        """Whether `get` would answer from memory (no loading, no waiting on a load)."""
        stamp = self._pointer_stamp()
        return stamp is not None and stamp == self._stamp and self._loaded is not None

    def use(self, champions: Champions) -> None:
        """Serve the list with new champions: rebuilt for them here, in the caller's thread,
        then swapped in whole (requests meanwhile get the old list with its old models). A list
        the new models cannot read (scored for other features) is refused until the next
        `retain score`, with the reason."""
        with self._lock:
            self._champions = champions
            if self._loaded is None or self.store is None:
                return
            stamp = self._pointer_stamp()
            try:
                scored = self.store.latest()
                loaded = LoadedList.build(scored.as_of, scored.ranked, scored.features, champions)
            except (FileNotFoundError, ValueError):
                self._loaded, self._stamp = None, None  # `get` says why
                return
            self._loaded, self._stamp = loaded, stamp

    def get(self) -> LoadedList:
        stamp = self._pointer_stamp()
        if stamp is not None and stamp == self._stamp and self._loaded is not None:
            return self._loaded
        if self.store is None:
            raise Refused(
                404,
                "no scored list: the service was started without a data folder; start it "
                "with `retain serve --data DIR` after `retain score --data DIR --as-of DATE "
                "--out FILE`, or send feature records instead of customer ids",
            )
        with self._lock:
            if stamp is not None and stamp == self._stamp and self._loaded is not None:
                return self._loaded
            try:
                scored = self.store.latest()
            except FileNotFoundError as exc:
                raise Refused(404, f"{exc} (feature records can be scored without one)") from None
            try:
                self._loaded = LoadedList.build(
                    scored.as_of, scored.ranked, scored.features, self._champions
                )
            except ValueError as exc:
                raise Refused(
                    503,
                    f"the scored list of {scored.as_of.date()} under {self.store.root} cannot be "
                    f"used: {exc}; run `retain score` again",
                ) from None
            self._stamp = stamp
            return self._loaded
