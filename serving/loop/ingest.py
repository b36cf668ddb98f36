"""Ingestion that loses nothing: a batch of rows for `events` or `feedback` is checked row by
row by the contract's own code (`features.validate.check_rows`); accepted rows are committed to
the store's inbox and rejected ones to its quarantine, in one transaction, before anyone is told.
A row id (the client's `event_id`, or a hash of the row's content) makes a retried batch land
once: a row already in the inbox is counted as a duplicate, not stored again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from features.inbox import inbox_records, row_ids
from features.validate import INGESTED_TABLES, check_rows
from store import Store, StoreError, naive_utc, plain, redact


@dataclass
class IngestResult:
    """One batch: rows received, newly stored, already stored (retries), and the rejected ones
    with their position, field and reason. `accepted_ids` are the row ids of the kept rows, by
    position; `new_ids` the ones this batch stored."""

    table: str
    received: int
    stored: int
    duplicates: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    accepted_ids: dict[int, str] = field(default_factory=dict)
    new_ids: list[str] = field(default_factory=list)
    kept: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # checked rows, `item`

    def reconciles(self) -> bool:
        return self.received == self.stored + self.duplicates + len(self.rejected)


def _json_row(values: dict[str, Any]) -> str:
    return json.dumps({k: plain(v) for k, v in values.items()}, default=str, sort_keys=True)


def ingest_rows(
    store: Store,
    name: str,
    raw: pd.DataFrame,
    known: pd.Index,
    *,
    received_at: datetime | pd.Timestamp,
    source: str,
    groups: np.ndarray | None = None,
) -> IngestResult:
    """Check `raw` (one row per item, the contract's columns) against the known customer ids and
    commit the result; see the module docstring. `groups` (the request of each row, in order)
    stores several requests together: rows repeat only rows of their own request, and a
    quarantined row records its position in its request."""
    if name not in INGESTED_TABLES:
        raise ValueError(f"rows cannot be ingested into '{name}'; only {list(INGESTED_TABLES)}")
    raw = raw.reset_index(drop=True)
    checked = check_rows(name, raw, known, groups)
    positions = None
    if groups is not None:  # each row's position within its request
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        positions = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    kept = checked.kept
    ids = row_ids(kept, name) if len(kept) else np.array([], dtype=object)
    # The same id twice in one batch is one row: the first is kept, the rest are duplicates.
    first = ~pd.Index(ids).duplicated(keep="first")
    received = naive_utc(received_at)
    records = inbox_records(
        kept.loc[first].reset_index(drop=True),
        name,
        ids[first],
        received_at=received,
        source=source,
    )
    items = raw.to_dict(orient="records") if len(checked.rejected) else []
    rejected = [
        {"item": int(r.item), "field": r.field, "reason": r.reason}
        for r in checked.rejected.itertuples(index=False)
    ]
    quarantine = []
    for r in rejected:
        row = _json_row(items[r["item"]])
        quarantine.append(
            {
                "row_key": hashlib.sha256(f"{name}\x00{row}".encode()).hexdigest(),
                "table_name": name,
                "received_at": received,
                "source": source,
                "item": int(positions[r["item"]]) if positions is not None else r["item"],
                "row": row,
                "field": r["field"],
                "reason": r["reason"],
            }
        )
    t, q = store.t.inbox(name), store.t.inbox_rejected
    try:
        with store.engine.begin() as conn:
            stored_ids = _insert_new(conn, t, records, "row_id")
            _insert_new(conn, q, quarantine, "row_key")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot write to the inbox in {redact(store.url)}: {exc}") from None
    result = IngestResult(
        table=name,
        received=len(raw),
        stored=len(stored_ids),
        duplicates=len(kept) - len(stored_ids),
        rejected=rejected,
        accepted_ids={int(i): str(r) for i, r in zip(kept["item"], ids, strict=True)},
        new_ids=stored_ids,
        kept=kept,
    )
    assert result.reconciles(), "ingestion lost count of a row"
    return result


def _insert_new(conn, table, records: list[dict[str, Any]], key: str) -> list[str]:
    """Insert the records whose `key` is not in the table yet; returns the keys inserted. The
    existing keys are read inside the same transaction; a concurrent writer that wins the race
    makes the insert fail on the unique key, and the caller's transaction is rolled back whole
    (nothing half-stored), so a retry finds the rows and counts them as duplicates."""
    if not records:
        return []
    wanted = [r[key] for r in records]
    existing: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        existing |= set(conn.scalars(select(table.c[key]).where(table.c[key].in_(chunk))))
    fresh = [r for r in records if r[key] not in existing]
    if fresh:
        conn.execute(insert(table), fresh)
    return [r[key] for r in fresh]
