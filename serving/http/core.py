"""Everything `/score` and `/at_risk` do, given loaded champions and settings (`ServiceCore`):
plain Python over the scoring core, testable without a server; `serving.http.service` is the
thin BentoML class over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs import Settings
from serving.core.champions import Champions
from serving.core.columns import REASON_COLUMNS
from serving.core.explain import reasons_matrix
from serving.core.scoring import score_matrices
from serving.http.loaded import LatestList, Rows
from serving.http.payloads import (
    AtRiskResponse,
    RankedScore,
    Refused,
    Score,
    ScoreResponse,
    ScoreResult,
    invalid_field,
    score_models,
)
from serving.http.records import RecordReader


def score_rows(
    rows: Rows, champions: Champions, settings: Settings, *, reasons: bool
) -> dict[str, np.ndarray]:
    """`serving.core.scoring.score_frame`'s columns (but `customer_id`) for prepared rows, as
    arrays: the scoring core's own functions on the rows' matrices."""
    n = len(rows.churn)
    out = {"segment": rows.segments, **score_matrices(rows.churn, rows.clv, champions, settings)}
    if reasons and n:
        text = reasons_matrix(rows.churn, rows.values(), champions)
    else:
        text = np.full((n, len(REASON_COLUMNS)), "", dtype=object)
    for k, col in enumerate(REASON_COLUMNS):
        out[col] = text[:, k]
    return out


def _reader_for(champions: Champions) -> RecordReader:
    schemas = [champions.churn.schema]
    if champions.clv.schema != champions.churn.schema:
        schemas.append(champions.clv.schema)
    return RecordReader(schemas)


def _versions(champions: Champions) -> tuple[str, str]:
    return champions.churn_version, champions.clv_version


@dataclass
class ServiceCore:
    """Everything `/score` and `/at_risk` do, given loaded champions and settings. `use` swaps
    in new champions (a promotion) at once: each request reads them once, so it is answered
    wholly by the old models or wholly by the new; scores by customer id come from the models
    the loaded list was built for."""

    champions: Champions
    settings: Settings
    scored: LatestList
    # A customer's real-time score newer than the given snapshot cutoff, if any (the loop's).
    realtime: Callable[[str, pd.Timestamp | None], Score | None] | None = None
    _records: tuple[Champions, RecordReader] = field(init=False)

    def __post_init__(self) -> None:
        self._records = (self.champions, _reader_for(self.champions))

    def use(self, champions: Champions) -> None:
        self._records = (champions, _reader_for(champions))
        self.champions = champions

    def _check_items(self, n: int, what: str) -> None:
        limit = self.settings.service.max_request_items
        if n > limit:
            raise Refused(
                413,
                f"{n:,} {what} in one request; the limit is {limit:,} "
                "(service.max_request_items): split the request",
            )

    def score(
        self,
        customer_ids: list[str] | None = None,
        records: list[dict[str, Any]] | None = None,
        reasons: bool = True,
    ) -> ScoreResponse:
        if records is not None:
            self._check_items(len(records), "records")
            return self._score_records(records, reasons)
        assert customer_ids is not None
        self._check_items(len(customer_ids), "customer ids")
        return self._score_ids(customer_ids, reasons)

    def _score_records(self, records: list[dict[str, Any]], reasons: bool) -> ScoreResponse:
        ch, reader = self._records
        batch = reader.read(records)
        churn = reader.matrix(batch.values, ch.churn.schema)
        clv = (
            churn
            if ch.clv.schema == ch.churn.schema
            else reader.matrix(batch.values, ch.clv.schema)
        )
        columns = list(ch.churn.schema.columns)
        take = [reader.position[c] for c in columns]

        def values() -> pd.DataFrame:
            return pd.DataFrame(batch.values[:, take], columns=columns, dtype=object)

        scores = score_models(
            score_rows(
                Rows(churn, clv, values, batch.segments), ch, self.settings, reasons=reasons
            ),
            _versions(ch),
        )
        results = [
            ScoreResult(customer_id=cid, score=s) for cid, s in zip(batch.ids, scores, strict=True)
        ]
        return ScoreResponse(
            results=results, scored=len(results), failed=0, fallback_models=sorted(ch.fallback)
        )

    def _score_ids(self, customer_ids: list[str], reasons: bool) -> ScoreResponse:
        snap = self.scored.get()
        found = (
            snap.ids.get_indexer(pd.Index(customer_ids, dtype=object))
            if customer_ids
            else np.empty(0, dtype=np.intp)
        )
        known = np.flatnonzero(found >= 0)
        ch = snap.champions
        scores = score_models(
            score_rows(snap.rows(found[known]), ch, self.settings, reasons=reasons),
            _versions(ch),
        )
        results: list[ScoreResult] = []
        it = iter(scores)
        fresh = 0
        for cid, pos in zip(customer_ids, found, strict=True):
            newer = self.realtime(cid, snap.as_of) if self.realtime is not None else None
            if pos >= 0:
                listed = next(it)
                results.append(ScoreResult(customer_id=cid, score=newer or listed))
            elif newer is not None:
                results.append(ScoreResult(customer_id=cid, score=newer))
                fresh += 1
            else:
                results.append(
                    ScoreResult(
                        customer_id=cid,
                        error=f"unknown customer id: not in the scored list of "
                        f"{snap.as_of.date()} (customers who signed up or left since are not "
                        "in it; send their feature record instead)",
                    )
                )
        return ScoreResponse(
            results=results,
            scored=len(known) + fresh,
            failed=len(customer_ids) - len(known) - fresh,
            snapshot_as_of=snap.as_of.isoformat(),
            fallback_models=sorted(ch.fallback),
        )

    def at_risk(
        self,
        n: int | None = None,
        segment: Sequence[str] | None = None,
        tier: Sequence[str] | None = None,
    ) -> AtRiskResponse:
        n = self.settings.service.at_risk_default_n if n is None else n
        limit = self.settings.service.max_request_items
        if n > limit:
            message = f"at most {limit:,} customers per request (service.max_request_items)"
            raise invalid_field("AtRiskRequest", ("n",), message, n)
        snap = self.scored.get()
        for name in segment or ():
            if name not in snap.known_segments:
                message = (
                    f"unknown segment {name!r}; the latest ranked list has "
                    f"{list(snap.known_segments)}"
                )
                raise invalid_field("AtRiskRequest", ("segment",), message, name)
        ranked = snap.ranked
        mask = np.ones(len(ranked), dtype=bool)
        if segment:
            mask &= ranked["segment"].astype(str).isin(segment).to_numpy()
        if tier:
            mask &= ranked["tier"].isin(tier).to_numpy()
        picked = np.flatnonzero(mask)
        top = picked[:n]
        rows = ranked.iloc[top]
        text = rows[list(REASON_COLUMNS)].to_numpy(dtype=object)
        # The ranked list has reasons for its top scoring.reasons_top_n only; write them for the
        # others shown here when the serving churn model is the one that ranked them.
        ch = snap.champions
        blank = np.flatnonzero(
            (text == "").all(axis=1)
            & (rows["churn_model_version"].astype(str) == ch.churn_version).to_numpy()
        )
        if len(blank):
            unexplained = snap.rows(snap.ranked_row[top[blank]])
            text[blank] = reasons_matrix(unexplained.churn, unexplained.values(), ch)
        customers = [
            RankedScore(
                rank=int(r) + 1,
                customer_id=str(row.customer_id),
                segment=str(row.segment),
                churn_probability=float(row.churn_probability),
                clv=float(row.clv),
                clv_low=float(row.clv_low),
                clv_high=float(row.clv_high),
                value_at_risk=float(row.value_at_risk),
                tier=row.tier,
                reasons=[t for t in reasons if t],
                churn_model_version=str(row.churn_model_version),
                clv_model_version=str(row.clv_model_version),
            )
            for r, row, reasons in zip(top, rows.itertuples(index=False), text, strict=True)
        ]
        return AtRiskResponse(
            as_of=snap.as_of.isoformat(),
            matching=len(picked),
            customers=customers,
            fallback_models=sorted(ch.fallback),
        )
