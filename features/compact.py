"""`retain compact`: fold the inbox's handled rows into the data folder's tables, atomically.

Each table file is rewritten whole to a temporary file beside it, flushed to disk and renamed
over the old one (one atomic rename per table); only then are the folded rows deleted from the
inbox, in one transaction. Readers never count a row twice in between, because the rewritten
tables carry each folded row's id in `event_id` and `features.inbox.with_inbox` skips inbox rows
whose id a table already holds. So a crash at any step leaves the old state, the new state, or a
state that reads exactly like one of them; the next run finishes the work.

Only rows the loop has handled are folded: an unhandled row stays in the inbox until the service
(or `retain ingest`) has rescored it and decided on its moment.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import delete

from features.contract import ContractError
from features.inbox import append_rows, new_rows, read_inbox
from features.sources import is_sql_url, read_file
from store import Store

# Named steps a test may stop the process at (SIGKILL), to prove the crash safety above.
STEPS = ("read", "written", "replaced_one", "replaced", "deleted")


@dataclass
class Compacted:
    folded: dict[str, int] = field(default_factory=dict)  # rows written into each table
    already: dict[str, int] = field(default_factory=dict)  # rows a table held already
    removed: int = 0  # rows deleted from the inbox
    waiting: int = 0  # rows left in the inbox, not handled by the loop yet
    files: list[Path] = field(default_factory=list)


def _table_file(folder: Path, name: str) -> Path:
    for suffix in (".parquet", ".csv"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return folder / f"{name}.parquet"


def _write_tmp(frame: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.compact")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    return tmp


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def compact(
    data: str | Path,
    store: Store,
    *,
    progress: Callable[[str], None] = lambda _: None,
    crash_at: str | None = None,
) -> Compacted:
    """Fold the inbox's handled rows into the tables of the data folder `data`."""
    if is_sql_url(str(data)):
        raise ContractError(
            "retain compact folds the inbox into a data folder's files; for a SQL source, load "
            "the inbox tables (inbox_events, inbox_feedback) into it with your own ETL"
        )
    folder = Path(data)
    if not folder.is_dir():
        raise ContractError(f"data folder {folder} does not exist or is not a folder")
    if crash_at is not None and crash_at not in STEPS:
        raise ValueError(f"unknown step {crash_at!r}; expected one of {list(STEPS)}")

    def step(name: str) -> None:
        if crash_at == name:
            os.kill(os.getpid(), signal.SIGKILL)

    result = Compacted()
    inbox = read_inbox(store, processed=True)
    waiting = read_inbox(store, processed=False)
    result.waiting = sum(len(f) for f in waiting.values())
    step("read")
    done: dict[str, list[int]] = {}
    written: list[tuple[Path, Path]] = []
    for name, rows in inbox.items():
        if not len(rows):
            continue
        path = _table_file(folder, name)
        table = read_file(path, name) if path.exists() else None
        fresh = new_rows(table, rows.drop(columns=["seq", "row_id"]))
        result.already[name] = len(rows) - len(fresh)
        result.folded[name] = len(fresh)
        if len(fresh):
            progress(f"writing {len(fresh):,} inbox rows into {path}")
            merged = append_rows(table, fresh)
            merged["event_id"] = merged["event_id"].astype(object)
            written.append((_write_tmp(merged, path), path))
        done[name] = rows["seq"].astype(int).tolist()
    step("written")
    for k, (tmp, path) in enumerate(written):
        _replace(tmp, path)
        result.files.append(path)
        if k == 0:
            step("replaced_one")
    step("replaced")
    if done:
        with store.engine.begin() as conn:
            for name, seqs in done.items():
                t = store.t.inbox(name)
                for start in range(0, len(seqs), 500):
                    chunk = seqs[start : start + 500]
                    result.removed += conn.execute(delete(t).where(t.c.seq.in_(chunk))).rowcount
    step("deleted")
    return result
