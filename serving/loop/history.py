"""One customer's history, fast: the validated tables (the data folder plus the inbox, as every
batch command reads them) held in memory with each table's rows grouped by customer, and the
rows ingested since appended as they are accepted. `tables_of` gives a few customers' rows as
contract `Tables`, which `build_features` turns into exactly the features it gives those
customers on the whole history (the property test in tests/serving/test_loop.py).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pandas as pd

from features.contract import CHANNELS, SURVEYS, Tables


class _Grouped:
    """A table's row positions grouped by customer code, without copying the table."""

    def __init__(self, frame: pd.DataFrame | None) -> None:
        self.frame = frame
        if frame is None:
            self.order = self.starts = np.array([], dtype=np.int64)
            return
        codes = frame["customer_id"].cat.codes.to_numpy()
        self.order = np.argsort(codes, kind="stable")
        n_customers = len(frame["customer_id"].cat.categories)
        self.starts = np.searchsorted(codes[self.order], np.arange(n_customers + 1))

    def rows(self, codes: np.ndarray) -> np.ndarray:
        if self.frame is None or not len(codes):
            return np.array([], dtype=np.int64)
        parts = [self.order[self.starts[c] : self.starts[c + 1]] for c in codes]
        return np.sort(np.concatenate(parts))


class History:
    """The tables and the rows ingested after them; thread-safe for one writer and readers."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._ids = pd.Index(tables.customers["customer_id"].astype(str))
        # Segment and region of every customer as plain text (None when missing): a case reads
        # them per moment, and a row of the customers frame cost a millisecond each.
        self._attributes = {
            c: _Attribute(tables.customers.get(c), len(self._ids)) for c in ("segment", "region")
        }
        self._events = _Grouped(tables.events)
        self._feedback = _Grouped(tables.feedback)
        self._churn = _Grouped(tables.churn)
        self._added: dict[str, dict[str, list[dict]]] = {
            "events": defaultdict(list),
            "feedback": defaultdict(list),
        }
        # Rows already in the tables (the inbox as read at start, or compacted rows) by id.
        self._seen: dict[str, set[str]] = {
            name: set(frame["event_id"].dropna().astype(str))
            if frame is not None and "event_id" in frame.columns
            else set()
            for name, frame in (("events", tables.events), ("feedback", tables.feedback))
        }
        self._lock = threading.Lock()
        # The newest inbox row (by `seq`, per table) this history holds: `catch_up` reads on.
        self.seen_seq: dict[str, int] = {"events": 0, "feedback": 0}

    @property
    def known(self) -> pd.Index:
        """The customer ids rows may be ingested for."""
        return self._ids

    def segment_and_region(self, customer_id: str) -> dict[str, str | None]:
        pos = self._ids.get_loc(customer_id)
        return {c: values[pos] for c, values in self._attributes.items()}

    def add(self, name: str, rows: pd.DataFrame, ids: list[str]) -> None:
        """Append checked rows (as `check_rows` keeps them) with their row ids; a row id seen
        before (a retry, or a row already in the tables) is not added twice. Rows are kept per
        customer with plain (not categorical) text columns, so a few customers' rows are put
        together later without touching categories the size of the whole book."""
        with self._lock:
            seen = self._seen[name]
            fresh = [i for i, r in enumerate(ids) if r not in seen]
            if not fresh:
                return
            part = rows.iloc[fresh].drop(columns=["item"], errors="ignore").copy()
            for col in part.columns:
                s = part[col]
                if isinstance(s.dtype, pd.CategoricalDtype):
                    # Through the categories by code: never all the categories as text.
                    codes = s.cat.codes.to_numpy()
                    values = np.asarray(s.cat.categories.take(np.maximum(codes, 0)), dtype=object)
                    values[codes < 0] = None
                    part[col] = values
            part["event_id"] = [ids[i] for i in fresh]
            seen.update(ids[i] for i in fresh)
            # Plain records: a few rows per customer, put together per request in one go.
            for record in part.to_dict(orient="records"):
                self._added[name][str(record["customer_id"])].append(record)

    def catch_up(self, store) -> int:
        """Add the inbox rows that arrived after the newest this history holds, whoever wrote
        them (this process, `retain ingest`, another replica), so every rescoring sees the whole
        history; returns how many rows were new here."""
        from features.inbox import read_inbox

        return self.add_inbox(read_inbox(store, after=self.seen_seq))

    def add_inbox(self, inbox: dict[str, pd.DataFrame]) -> int:
        """`catch_up` on inbox rows already read (`read_inbox`, with `seq`): the rows above the
        newest this history holds are added; returns how many were new here."""
        added = 0
        for name, rows in inbox.items():
            rows = rows[rows["seq"] > self.seen_seq[name]] if len(rows) else rows
            if not len(rows):
                continue
            before = len(self._seen[name])
            content = rows.drop(
                columns=["seq", "row_id", "pending", "received_at"], errors="ignore"
            )
            self.add(name, content, rows["event_id"].tolist())
            added += len(self._seen[name]) - before
            self.seen_seq[name] = max(self.seen_seq[name], int(rows["seq"].max()))
        return added

    def tables_of(self, customer_ids: list[str]) -> Tables:
        """The given customers' rows (tables and rows added since) as contract `Tables`."""
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        codes = self._ids.get_indexer(pd.Index(ids, dtype=object))
        if (codes < 0).any():
            unknown = [c for c, k in zip(ids, codes, strict=True) if k < 0][:5]
            raise KeyError(f"unknown customer ids {unknown}")
        cats = pd.Index(ids, dtype=object)
        customers = self.tables.customers.iloc[codes].reset_index(drop=True)
        customers["customer_id"] = np.asarray(ids, dtype=object)
        with self._lock:
            added = {
                name: [row for cid in ids for row in self._added[name].get(cid, ())]
                for name in self._added
            }
        events = _subset(self._events, codes, cats, added["events"], "events")
        feedback = _subset(self._feedback, codes, cats, added["feedback"], "feedback")
        churn = _subset(self._churn, codes, cats, [], "churn")
        return replace(
            self.tables, customers=customers, events=events, feedback=feedback, churn=churn
        )


class _Attribute:
    """One text attribute of every customer as codes into its few distinct values (a segment, a
    region): a lookup by position gives the text, or None when missing."""

    def __init__(self, s: pd.Series | None, n: int) -> None:
        if s is None:
            self.codes, self.values = np.full(n, -1, dtype=np.int8), []
            return
        values = s if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category")
        self.codes = values.cat.codes.to_numpy()
        self.values = [str(v) for v in values.cat.categories]

    def __getitem__(self, pos: int) -> str | None:
        code = int(self.codes[pos])
        return None if code < 0 else self.values[code]


def _new_codes(old: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Codes into the few customers `codes` (positions in the book) of rows coded by the book."""
    order = np.argsort(codes)
    return order[np.searchsorted(codes[order], old)]


def _subset(
    grouped: _Grouped, codes: np.ndarray, cats: pd.Index, added: list[dict], name: str
) -> pd.DataFrame | None:
    if grouped.frame is None and not added:
        return None
    parts, new = [], []
    if grouped.frame is not None:
        part = grouped.frame.iloc[grouped.rows(codes)]
        new.append(_new_codes(part["customer_id"].cat.codes.to_numpy(), codes))
        part = part.drop(columns="customer_id")
        for col in ("channel", "event_type", "survey"):
            if col in part.columns:  # a handful of categories: cheap as text
                part[col] = part[col].astype(object)
        parts.append(part)
    if added:
        rows = pd.DataFrame.from_records(added)
        new.append(cats.get_indexer(rows["customer_id"]))
        parts.append(rows.drop(columns="customer_id"))
    if len(parts) > 1:
        parts = [p.dropna(axis=1, how="all") for p in parts]
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = parts[0].reset_index(drop=True)
    frame.insert(0, "customer_id", pd.Categorical.from_codes(np.concatenate(new), categories=cats))
    n = len(frame)
    if name == "events":
        frame["channel"] = pd.Categorical(frame["channel"], categories=CHANNELS)
        types = frame["event_type"]
        frame["event_type"] = pd.Categorical(types, categories=sorted(types.dropna().unique()))
        resolved = frame["resolved"] if "resolved" in frame else pd.Series([pd.NA] * n)
        frame["resolved"] = resolved.astype("boolean").to_numpy()
        frame["amount"] = frame["amount"].astype("float64") if "amount" in frame else np.nan
    elif name == "feedback":
        frame["survey"] = pd.Categorical(frame["survey"], categories=tuple(SURVEYS))
        frame["score"] = frame["score"].astype("float64")
        if "comment" not in frame:
            frame["comment"] = None
    return frame


def read_history(source, store) -> History:
    """The history as a starting service holds it: the source's tables plus the store's inbox
    (rows a crash left unhandled included), validated as every batch command validates them."""
    from features.inbox import read_inbox, with_inbox
    from features.sources import read_source
    from features.validate import validate

    inbox = read_inbox(store)
    raw, _ = with_inbox(read_source(source), inbox)
    history = History(validate(raw).tables)
    for name, rows in inbox.items():
        history.seen_seq[name] = int(rows["seq"].max()) if len(rows) else 0
    return history
