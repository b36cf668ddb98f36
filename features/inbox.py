"""The inbox as a source: rows ingested one by one (over HTTP or `retain ingest`) live in the
store until `retain compact` folds them into the data folder's tables, and every batch command
reads the tables plus the inbox as one history (`with_inbox`).

This module owns the row id that makes ingestion idempotent (`row_ids`: the client's `event_id`,
else a hash of the row's normalised content), turning checked rows into inbox records and back
into raw contract rows, and the rule that keeps the two halves of the history from doubling: an
inbox row whose id is already a table row's `event_id` (it was compacted) is not read again.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals
from sqlalchemy import select

from features.contract import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from store import Store, naive_utc, plain

# The inbox's own columns for each table; anything else an event row carries goes to `extra`.
INBOX_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("customer_id", "ts", "channel", "event_type", "amount", "resolved"),
    "feedback": ("customer_id", "ts", "survey", "score", "comment"),
}
_HASH_KEYS = ("retain-row-id-01", "retain-row-id-02")  # 16 characters each, as pandas wants


def row_ids(kept: pd.DataFrame, name: str) -> np.ndarray:
    """Each checked row's id: its `event_id` when given, else `h:` and 32 hex digits of two
    64-bit hashes of its normalised values (so the same row sent twice, in any time zone or
    letter case the contract normalises, gets the same id)."""
    if "event_id" in kept.columns:
        given = kept["event_id"].astype(object).to_numpy()
        present = np.array([v is not None and not pd.isna(v) for v in given], dtype=bool)
        if present.all():  # nothing to hash (the usual case for a client that sends ids)
            return given.astype(object)
    contract = (*REQUIRED_COLUMNS[name], *OPTIONAL_COLUMNS[name])
    content = [c for c in kept.columns if c not in ("event_id", "item")]
    content = [c for c in contract if c in content] + sorted(
        c for c in content if c not in contract
    )
    frame = pd.DataFrame(index=kept.index)
    for col in content:
        s = kept[col]
        if col == "ts":
            frame[col] = s.dt.tz_convert("UTC").astype("int64")
        elif col in ("amount", "score"):
            frame[col] = s.astype("float64")
        elif col == "resolved":
            frame[col] = s.astype("Float64").fillna(-1.0).astype("float64")
        else:
            frame[col] = (
                s.astype(object)
                .where(s.notna(), None)
                .map(lambda v: "\x00" if v is None else str(v))
            )
    a, b = (
        pd.util.hash_pandas_object(frame, index=False, hash_key=k).to_numpy() for k in _HASH_KEYS
    )
    hashed = np.array([f"h:{x:016x}{y:016x}" for x, y in zip(a, b, strict=True)], dtype=object)
    if "event_id" not in kept.columns:
        return hashed
    return np.where(present, given, hashed).astype(object)


def inbox_records(
    kept: pd.DataFrame, name: str, ids: np.ndarray, *, received_at: datetime, source: str
) -> list[dict[str, Any]]:
    """Checked rows as inbox table records (naive UTC timestamps, plain Python values)."""
    own = INBOX_COLUMNS[name]
    extras = [c for c in kept.columns if c not in own and c not in ("event_id", "item")]
    records = []
    columns = [kept[c].astype(object).to_numpy() for c in own]
    extra_columns = [kept[c].astype(object).to_numpy() for c in extras]
    for i, row_id in enumerate(ids):
        record = {c: plain(col[i]) for c, col in zip(own, columns, strict=True)}
        record["customer_id"] = str(record["customer_id"])
        record["ts"] = naive_utc(record["ts"])
        if name == "events":
            extra = {c: plain(col[i]) for c, col in zip(extras, extra_columns, strict=True)}
            extra = {k: v for k, v in extra.items() if v is not None}
            record["extra"] = json.dumps(extra, default=str) if extra else None
        record.update(row_id=str(row_id), received_at=received_at, source=source)
        records.append(record)
    return records


def read_inbox(
    store: Store,
    *,
    processed: bool | None = None,
    limit: int | None = None,
    after: dict[str, int] | None = None,
    or_pending: bool = False,
) -> dict[str, pd.DataFrame]:
    """The inbox as raw contract rows per table (`event_id` = the row id, extras expanded,
    `ts` UTC), in arrival order, with `seq`. `processed` True (False) keeps only the rows the
    loop has (has not yet) handled; `limit` caps the rows per table; `after` keeps the rows
    whose `seq` is above the given one per table. With `or_pending`, `after` keeps those and
    every row not handled yet, and `pending` and `received_at` (naive UTC) columns tell which
    are which and how long they have waited: the loop's step reads what is new to its history
    and what it has to handle in one read."""
    out: dict[str, pd.DataFrame] = {}
    for name in INBOX_COLUMNS:
        t = store.t.inbox(name)
        query = select(t).order_by(t.c.seq)
        if processed is True:
            query = query.where(t.c.processed_at.is_not(None))
        elif processed is False:
            query = query.where(t.c.processed_at.is_(None))
        queries = [query]
        if after is not None:
            newer = query.where(t.c.seq > after.get(name, 0))
            # Two queries, each on its index, rather than one OR that scans the whole inbox.
            queries = [newer, query.where(t.c.processed_at.is_(None))] if or_pending else [newer]
        if limit is not None:
            queries = [q.limit(limit) for q in queries]
        with store.engine.connect() as conn:
            found = {r["seq"]: r for q in queries for r in conn.execute(q).mappings()}
        rows = [found[k] for k in sorted(found)][:limit]
        out[name] = _raw_rows(name, rows)
        if or_pending:
            out[name]["pending"] = np.array([r["processed_at"] is None for r in rows], dtype=bool)
            out[name]["received_at"] = pd.to_datetime([r["received_at"] for r in rows])
    return out


def _raw_rows(name: str, rows: list) -> pd.DataFrame:
    if not rows:  # the usual case for one of the tables at each step of the loop
        return _empty_rows(name).copy()
    return _rows_frame(name, rows)


@functools.cache
def _empty_rows(name: str) -> pd.DataFrame:
    return _rows_frame(name, [])


def _rows_frame(name: str, rows: list) -> pd.DataFrame:
    own = INBOX_COLUMNS[name]
    frame = pd.DataFrame(
        {
            "seq": [r["seq"] for r in rows],
            "row_id": [r["row_id"] for r in rows],
            **{c: [r[c] for r in rows] for c in own},
            "event_id": [r["row_id"] for r in rows],
        }
    )
    frame["seq"] = frame["seq"].astype("int64")
    frame["customer_id"] = frame["customer_id"].astype(object)
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC")
    if name == "events":
        frame["amount"] = frame["amount"].astype("float64")
        frame["resolved"] = frame["resolved"].astype("boolean")
        extras = [json.loads(r["extra"]) if r["extra"] else {} for r in rows]
        keys = sorted({k for e in extras for k in e})
        for k in keys:
            frame[k] = [e.get(k) for e in extras]
    else:
        frame["score"] = frame["score"].astype("float64")
    return frame


@dataclass(frozen=True)
class InboxRead:
    """What the inbox added to a read: rows per table, and rows skipped as already compacted."""

    added: dict[str, int]
    compacted: dict[str, int]

    def summary(self) -> str:
        parts = [f"{n:,} {name}" for name, n in self.added.items()]
        done = sum(self.compacted.values())
        tail = f" ({done:,} already folded into the tables, not read twice)" if done else ""
        return f"inbox: {', '.join(parts)}{tail}"


def with_inbox(
    raw: dict[str, pd.DataFrame | None], inbox: dict[str, pd.DataFrame]
) -> tuple[dict[str, pd.DataFrame | None], InboxRead]:
    """Raw tables plus the inbox's rows, one history for validation. Never mutates `raw`."""
    out = dict(raw)
    added, compacted = {}, {}
    for name, rows in inbox.items():
        rows = rows.drop(columns=["seq", "row_id"])
        table = raw.get(name)
        fresh = new_rows(table, rows)
        compacted[name] = len(rows) - len(fresh)
        added[name] = len(fresh)
        out[name] = append_rows(table, fresh)
    return out, InboxRead(added, compacted)


def new_rows(table: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """The inbox rows whose id is not already a row of `table` (by its `event_id`)."""
    if table is None or "event_id" not in table.columns or not len(rows):
        return rows
    known = pd.Index(table["event_id"].dropna().astype(str).unique())
    return rows.loc[~rows["event_id"].isin(known).to_numpy()].reset_index(drop=True)


def append_rows(table: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    """`table` with `rows` appended, keeping the table's dtypes: categorical columns stay
    categorical (their categories extended, not the rows converted to text), and `ts` keeps the
    table's form (text, naive or zoned datetimes)."""
    if table is None:
        return rows if len(rows) else None
    if not len(rows):
        return table
    rows = rows.copy()
    table = table.copy(deep=False)
    for col in rows.columns:
        if col not in table.columns:
            continue
        t = table[col]
        if isinstance(t.dtype, pd.CategoricalDtype):
            values = rows[col].astype(object).where(rows[col].notna(), None)
            grown = union_categoricals(
                [t.array, pd.Categorical(values.astype(str).where(values.notna(), None))],
                sort_categories=False,
            )
            table[col] = t.cat.set_categories(grown.categories)
            rows[col] = pd.Categorical(values, categories=grown.categories)
        elif col == "ts" or pd.api.types.is_datetime64_any_dtype(t):
            rows[col] = _like_time(rows[col], t)
    return pd.concat([table, rows], ignore_index=True)


def _like_time(values: pd.Series, like: pd.Series) -> pd.Series:
    values = pd.to_datetime(values, utc=True)
    if pd.api.types.is_datetime64_any_dtype(like):
        tz = like.dt.tz
        return values.dt.tz_convert(tz) if tz is not None else values.dt.tz_localize(None)
    return values.map(lambda t: t.isoformat())
