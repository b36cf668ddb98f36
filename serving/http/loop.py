"""Everything the loop's routes do (`LoopCore`): `POST /events` and `/feedback` (rows into the
inbox, then the loop's step at once: rescoring, moments, cases), the case routes, the real-time
scores `/score` answers with, and two background threads: the hand-off, and a step every
`loop.stale_after_s` so rows stored without a request (`retain ingest`) are handled too. Plain Python over `serving.loop`, testable
without a server; `serving.http.service` adds the routes.

The wall clock is injected (`clock`): the service passes the real one.

Several processes may serve one store (workers, replicas): each steps over the rows it ingested
itself (and stale ones, see `serving.loop.process`), answers a request's rows another step
handled from the store (their moments), and reads every process's rescorings from the score
history before it answers with a real-time score.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from configs import Settings
from features.contract import ContractError
from serving.core.champions import Champions
from serving.http.background import Background
from serving.http.payloads import (
    Case,
    CaseList,
    IngestResponse,
    MomentDecision,
    Refused,
    Rescored,
    RowError,
    Score,
)
from serving.loop.cases import CaseBook, CaseError
from serving.loop.handoff import hand_off
from serving.loop.history import History
from serving.loop.ingest import ingest_rows
from serving.loop.process import Handled, process_pending
from store import Store, StoreError

logger = logging.getLogger("retain.service")
RETRY_HANDOFF_S = 30.0
# After a wake-up the thread waits this long for more cases before it delivers: one delivery
# transaction per burst, not one per case competing with ingestion for the store's write lock.
GATHER_HANDOFF_S = 0.2


def score_of(record: dict[str, Any], segment: str) -> Score:
    return Score(
        segment=segment,
        churn_probability=float(record["churn_probability"]),
        clv=float(record["clv"]),
        clv_low=float(record["clv_low"]),
        clv_high=float(record["clv_high"]),
        value_at_risk=float(record["value_at_risk"]),
        tier=record["tier"],
        reasons=[r for r in (record.get(f"reason_{i}") for i in (1, 2, 3)) if r],
        churn_model_version=str(record["churn_model_version"]),
        clv_model_version=str(record["clv_model_version"]),
        scored_as_of=record["as_of"],
    )


@dataclass
class _Request:
    """One ingestion request waiting for its group commit, then its answer (or error)."""

    table: str
    rows: list[dict[str, Any]]
    answer: IngestResponse | None = None
    error: BaseException | None = None
    done: bool = False


class LoopCore:
    """Ingestion and cases for a service started on a data folder with contract tables."""

    def __init__(
        self,
        champions: Champions,
        settings: Settings,
        store: Store,
        history: History,
        *,
        clock: Callable[[], pd.Timestamp],
        webhook_url: str,
        drop_dir: Path,
        background: bool = True,
        crash_after_commit: bool = False,
    ) -> None:
        self.champions = champions
        self.settings = settings
        self.store = store
        self.history = history
        self.clock = clock
        self.book = CaseBook(store, settings.loop)
        # A test hook: die (SIGKILL) right after committing new rows, before the loop's step.
        self.crash_after_commit = crash_after_commit
        self._step = threading.Lock()
        self._scores = threading.Lock()
        self._score_id = 0  # the newest score history row `realtime` holds
        self.realtime: dict[str, dict[str, Any]] = {}
        self._catch_up_scores()
        # Row ids this process stored and no step has handled yet (its steps' share of the work).
        self._mine: set[str] = set()
        self._ingest_lock = threading.Lock()
        self._queued_lock = threading.Lock()
        self._queued: list[_Request] = []
        self._handoff = lambda: hand_off(store, settings, url=webhook_url, folder=drop_dir)
        # Hand-offs: woken after a step that opened or escalated a case (then gathering for
        # GATHER_HANDOFF_S), and every RETRY_HANDOFF_S for what a receiver refused before.
        self.sender = (
            Background(
                self._handoff,
                every_s=RETRY_HANDOFF_S,
                gather_s=GATHER_HANDOFF_S,
                name="retain-handoff",
            )
            if background
            else None
        )
        # A step without traffic too: rows `retain ingest` stored, or a dead process left, are
        # handled once stale even when no request comes.
        self.ticker = (
            Background(
                self.step, every_s=max(1.0, settings.loop.stale_after_s), name="retain-loop-step"
            )
            if background
            else None
        )

    def _catch_up_scores(self) -> None:
        """Add to `realtime` the score history rows written since the newest it holds, by any
        process: the newest real-time score of each customer."""
        h = self.store.t.score_history
        with self._scores, self.store.engine.connect() as conn:
            rows = conn.execute(
                select(h).where(h.c.id > self._score_id).order_by(h.c.as_of, h.c.id)
            ).mappings()
            for row in rows:
                record = dict(row)
                record["as_of"] = pd.Timestamp(row["as_of"]).tz_localize("UTC").isoformat()
                self._keep_newest(row["customer_id"], record)
                self._score_id = max(self._score_id, int(row["id"]))

    def _keep_newest(self, customer_id: str, record: dict[str, Any]) -> None:
        """`record` as the customer's real-time score unless one as of later is held (another
        process may have rescored them from a newer row); the caller holds `_scores`."""
        current = self.realtime.get(customer_id)
        if current is None or current["as_of"] <= record["as_of"]:
            self.realtime[customer_id] = record

    def step(self, *, everything: bool = False) -> Handled:
        """The loop's step over the rows this process stored and no step handled yet, and the
        stale ones; `everything`: over every row not handled yet (what a start runs first)."""
        with self._step:
            for _ in range(10):  # another process took some rows first: step over the rest
                mine = None if everything else set(self._mine)
                handled = process_pending(
                    self.store,
                    self.history,
                    self.champions,
                    self.settings,
                    now=self.clock(),
                    only=mine,
                )
                done = handled.row_ids | (
                    mine - handled.pending_ids
                    if mine is not None and handled.pending_ids is not None
                    else set()
                )
                self._mine -= done
                if not handled.taken:
                    break
        with self._scores:
            for cid, record in handled.scores.items():
                self._keep_newest(cid, record)
        if self.sender is not None and any(m["case_id"] is not None for m in handled.moments):
            self.sender.wake()
        return handled

    def deliver(self) -> None:
        """Hand off pending cases now, in the caller's thread (tests, shutdown)."""
        self._handoff()

    def ingest(self, table: str, rows: list[dict[str, Any]]) -> IngestResponse:
        limit = self.settings.service.max_request_items
        if len(rows) > limit:
            raise Refused(
                413,
                f"{len(rows):,} rows in one request; the limit is {limit:,} "
                "(service.max_request_items): split the batch",
            )
        request = _Request(table, rows)
        with self._queued_lock:
            self._queued.append(request)
        # Group commit: whichever request gets here first takes every request queued meanwhile
        # and checks, stores and steps over their rows together (a few ms per request of
        # fixed cost shared), then answers each with its own rows' part.
        with self._ingest_lock:
            if not request.done:
                with self._queued_lock:
                    batch, self._queued = self._queued, []
                self._ingest_together(batch)
        if request.error is not None:
            raise request.error
        assert request.answer is not None
        return request.answer

    def _ingest_together(self, batch: list[_Request]) -> None:
        for table in dict.fromkeys(r.table for r in batch):
            group = [r for r in batch if r.table == table]
            try:
                self._ingest_group(table, group)
            except Refused as exc:
                if len(group) == 1:
                    group[0].error, group[0].done = exc, True
                    continue
                # A contract error of the whole batch: each request on its own, so one
                # request's problem is not another's.
                for r in group:
                    try:
                        self._ingest_group(table, [r])
                    except Refused as own:
                        r.error, r.done = own, True
            except Exception as exc:  # each waiting request hears of it, the leader too
                for r in group:
                    r.error, r.done = exc, True

    def _ingest_group(self, table: str, group: list[_Request]) -> None:
        rows = [row for r in group for row in r.rows]
        offsets = np.cumsum([0] + [len(r.rows) for r in group])
        groups = np.repeat(np.arange(len(group)), [len(r.rows) for r in group])
        raw = pd.DataFrame.from_records(rows)
        try:
            result = ingest_rows(
                self.store,
                table,
                raw,
                self.history.known,
                received_at=self.clock(),
                source="http",
                groups=groups if len(group) > 1 else None,
            )
        except ContractError as exc:
            raise Refused(422, str(exc)) from None
        except StoreError as exc:
            raise Refused(503, f"the inbox cannot take rows now: {exc}") from None
        if result.new_ids and self.crash_after_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        self._mine.update(result.new_ids)
        handled = self.step()  # its first act: the history catches up with the inbox
        if set(result.new_ids) - handled.row_ids:  # another step handled some rows
            self._catch_up_scores()
        # The row stored under each new id: the first item carrying it in the whole batch.
        stored_at: dict[str, int] = {}
        new = set(result.new_ids)
        for item in sorted(result.accepted_ids):
            rid = result.accepted_ids[item]
            if rid in new and rid not in stored_at:
                stored_at[rid] = item
        customer_of = (
            dict(
                zip(
                    result.kept["item"].tolist(),
                    result.kept["customer_id"].astype(str),
                    strict=True,
                )
            )
            if len(result.kept)
            else {}
        )
        rejected = {r["item"]: r for r in result.rejected}
        decided = {m["row_id"]: m for m in handled.moments}
        for r, lo, hi in zip(group, offsets[:-1], offsets[1:], strict=True):
            r.answer = self._answer(
                table, r, int(lo), int(hi), result, stored_at, customer_of, rejected, decided
            )
            r.done = True

    def _answer(self, table, r, lo, hi, result, stored_at, customer_of, rejected, decided):
        """One request's part of a group's result (its items are lo..hi-1 of the batch)."""
        ids = [result.accepted_ids.get(i) for i in range(lo, hi)]
        accepted = [i for i in range(lo, hi) if i in result.accepted_ids]
        stored = [i for i in accepted if stored_at.get(result.accepted_ids[i]) == i]
        new = [result.accepted_ids[i] for i in stored]
        customers = {customer_of[i] for i in stored}
        moments = [decided[rid] for rid in new if rid in decided]
        # Rows another step handled (a concurrent request's, another process's): their
        # decisions are in the store.
        moments += self.book.moments_of(set(new) - {m["row_id"] for m in moments})
        return IngestResponse(
            table=table,
            received=hi - lo,
            stored=len(stored),
            duplicates=len(accepted) - len(stored),
            rejected=[
                RowError(item=i - lo, field=rejected[i]["field"], reason=rejected[i]["reason"])
                for i in range(lo, hi)
                if i in rejected
            ],
            row_ids=ids,
            rescored=[
                Rescored(customer_id=cid, score=score_of(self.realtime[cid], self._segment(cid)))
                for cid in sorted(customers)
                if cid in self.realtime
            ],
            moments=[
                MomentDecision(
                    **{k: m[k] for k in ("row_id", "customer_id", "reason", "outcome", "case_id")}
                )
                for m in moments
            ],
        )

    def _segment(self, customer_id: str) -> str:
        return self.history.segment_and_region(customer_id)["segment"] or ""

    def realtime_score(self, customer_id: str, newer_than: pd.Timestamp | None) -> Score | None:
        self._catch_up_scores()
        record = self.realtime.get(customer_id)
        if record is None:
            return None
        if newer_than is not None and pd.Timestamp(record["as_of"]) <= newer_than:
            return None
        return score_of(record, self._segment(customer_id))

    # -- cases ---------------------------------------------------------------------------------

    def cases(
        self,
        *,
        status: list[str] | None,
        owner: str | None,
        priority: list[str] | None,
        customer_id: str | None,
        overdue: bool,
        kind: str | None = None,
        limit: int,
        offset: int,
    ) -> CaseList:
        try:
            total, rows = self.book.list(
                status=status or (),
                owner=owner,
                priority=priority or (),
                customer_id=customer_id,
                kind=kind,
                overdue=overdue,
                now=self.clock(),
                limit=limit,
                offset=offset,
            )
        except CaseError as exc:
            raise Refused(exc.status, str(exc)) from None
        return CaseList(matching=total, cases=[Case(**r) for r in rows])

    def case(self, case_id: int) -> Case:
        try:
            return Case(**self.book.get(case_id))
        except CaseError as exc:
            raise Refused(exc.status, str(exc)) from None

    def transition(self, case_id: int, **change: Any) -> Case:
        try:
            return Case(**self.book.transition(case_id, now=self.clock(), **change))
        except CaseError as exc:
            raise Refused(exc.status, str(exc)) from None
