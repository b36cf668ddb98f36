"""The at-risk list as the workspace pages it: built once per scored list (each filterable column
as integer codes, each sort order computed once when first asked for), so a page of a million
customers is a few vectorised comparisons and a slice, never a DataFrame filtered per request.
Also the score trend of every customer over the past scored lists, aligned to the current list
and read in the background once per list.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.core.columns import REASON_COLUMNS
from serving.core.reasons import FAMILIES, family
from serving.score_store import ScoreStore

logger = logging.getLogger("retain.workspace")

SORTS = ("value_at_risk", "churn_probability", "clv", "clv_high")
FILTERS = ("segment", "tier", "region", "family")


@dataclass(frozen=True)
class ListQuery:
    """One view of the at-risk list: filters, search, order and page (all optional)."""

    segment: tuple[str, ...] = ()
    tier: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    family: tuple[str, ...] = ()
    min_value: float | None = None
    search: str = ""
    sort: str = "value_at_risk"
    ascending: bool = False
    page: int = 1


@dataclass(frozen=True)
class Page:
    total: int  # customers matching the view
    positions: np.ndarray  # their rows of the ranked list, this page only
    first: int  # 1-based rank in the view of the first row shown


class _Codes:
    """A text column as codes into its sorted distinct values ("" for missing)."""

    def __init__(self, values: pd.Series) -> None:
        cat = pd.Categorical(values.fillna("").astype(str))
        self.values: tuple[str, ...] = tuple(str(v) for v in cat.categories)
        self.codes = np.asarray(cat.codes, dtype=np.int32)

    def mask(self, chosen: tuple[str, ...]) -> np.ndarray | None:
        if not chosen:
            return None
        wanted = [self.values.index(v) for v in chosen if v in self.values]
        return np.isin(self.codes, np.asarray(wanted, dtype=np.int32))


class AtRiskIndex:
    """A scored list (`ranked`, row 0 the most value at risk) ready to filter, sort and page."""

    def __init__(self, as_of: pd.Timestamp, ranked: pd.DataFrame, regions: pd.Series) -> None:
        self.as_of = as_of
        self.ranked = ranked.reset_index(drop=True)
        self.ids = self.ranked["customer_id"].astype(str).to_numpy(dtype=object)
        self.position = pd.Index(self.ids)
        families = self.ranked[REASON_COLUMNS[0]].map(
            {t: family(t) for t in self.ranked[REASON_COLUMNS[0]].dropna().unique()}
        )
        self.columns = {
            "segment": _Codes(self.ranked["segment"]),
            "tier": _Codes(self.ranked["tier"]),
            "region": _Codes(regions.reindex(self.ids).reset_index(drop=True)),
            "family": _Codes(families),
        }
        self.numbers = {
            c: self.ranked[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in SORTS
        }
        # Ids in sorted order, for prefix search (`searchsorted` over sorted text).
        self._by_id = np.argsort(self.ids.astype(str), kind="stable")
        self._sorted_ids = self.ids[self._by_id].astype(str)
        self._orders: dict[tuple[str, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    def choices(self, name: str) -> tuple[str, ...]:
        """The values a filter offers (families in their fixed order)."""
        values = tuple(v for v in self.columns[name].values if v)
        if name == "family":
            return tuple(f for f in FAMILIES if f in values)
        return values

    def _order(self, sort: str, ascending: bool) -> np.ndarray:
        if sort == "value_at_risk" and not ascending:
            return np.arange(len(self.ids))  # the ranked order itself
        key = (sort, ascending)
        with self._lock:
            if key not in self._orders:
                v = self.numbers[sort]
                v = np.where(np.isnan(v), -np.inf if not ascending else np.inf, v)
                self._orders[key] = np.argsort(v if ascending else -v, kind="stable")
            return self._orders[key]

    def matching(self, q: ListQuery) -> np.ndarray | None:
        """A boolean mask of the rows the view keeps (None: every row)."""
        mask: np.ndarray | None = None
        for name in FILTERS:
            m = self.columns[name].mask(getattr(q, name))
            if m is not None:
                mask = m if mask is None else mask & m
        if q.min_value is not None:
            m = self.numbers["value_at_risk"] >= q.min_value
            mask = m if mask is None else mask & m
        if q.search:
            lo = np.searchsorted(self._sorted_ids, q.search, side="left")
            hi = np.searchsorted(self._sorted_ids, q.search + "\U0010ffff", side="left")
            m = np.zeros(len(self.ids), dtype=bool)
            m[self._by_id[lo:hi]] = True
            mask = m if mask is None else mask & m
        return mask

    def view(self, q: ListQuery, *, size: int, limit: int | None = None) -> Page:
        """One page of the view (`limit`: every matching row up to that many, for an export)."""
        if q.sort not in SORTS:
            raise ValueError(f"unknown sort {q.sort!r}; expected one of {list(SORTS)}")
        order = self._order(q.sort, q.ascending)
        mask = self.matching(q)
        kept = order if mask is None else order[mask[order]]
        if limit is not None:
            return Page(len(kept), kept[:limit], 1)
        pages = max(1, -(-len(kept) // size))
        page = min(max(q.page, 1), pages)
        start = (page - 1) * size
        return Page(len(kept), kept[start : start + size], start + 1)

    def rows(self, positions: np.ndarray) -> list[dict[str, Any]]:
        part = self.ranked.iloc[positions]
        out = part.to_dict(orient="records")
        for record, region in zip(out, self.columns["region"].codes[positions], strict=True):
            record["region"] = self.columns["region"].values[region] or None
        return out

    def row(self, customer_id: str) -> dict[str, Any] | None:
        pos = self.position.get_indexer([customer_id])[0]
        return None if pos < 0 else self.rows(np.array([pos]))[0]


@dataclass
class Trend:
    """Churn probability and value at risk of every customer of the current list in each of the
    newest past scored lists (NaN where a list did not hold the customer), read in a thread."""

    as_of: list[pd.Timestamp] = field(default_factory=list)
    churn: list[np.ndarray] = field(default_factory=list)
    value_at_risk: list[np.ndarray] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, store: ScoreStore, index: AtRiskIndex, lists: int) -> Trend:
        trend = cls()

        def read() -> None:
            try:
                for stored in store.before(index.as_of)[-lists:]:
                    part = store.read_scores(
                        stored, ["customer_id", "churn_probability", "value_at_risk"]
                    )
                    if part is None:
                        continue
                    part = part.set_index(part["customer_id"].astype(str))
                    part = part[~part.index.duplicated()].reindex(index.ids)
                    trend.as_of.append(stored.as_of)
                    trend.churn.append(part["churn_probability"].to_numpy(np.float32))
                    trend.value_at_risk.append(part["value_at_risk"].to_numpy(np.float32))
            except Exception:  # the page shows no trend rather than failing
                logger.exception("the score trend could not be read")
            finally:
                trend.ready.set()

        threading.Thread(target=read, name="retain-trend", daemon=True).start()
        return trend

    def points(self, position: int) -> list[tuple[pd.Timestamp, float, float]]:
        if not self.ready.is_set():
            return []
        return [
            (t, float(c[position]), float(v[position]))
            for t, c, v in zip(self.as_of, self.churn, self.value_at_risk, strict=True)
            if not np.isnan(c[position])
        ]
