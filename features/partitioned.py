"""Partitioned data folders: the contract tables split by a hash of `customer_id`, every table
co-partitioned, so that each partition holds all the rows of its customers and the feature
families can run on one partition at a time (`features.distributed`).

Layout (`retain partition --data SRC --out DIR --partitions N`):

    DIR/manifest.json                  what follows, written last (no manifest: not a folder)
    DIR/<table>/part-00000.parquet     one file per partition and table, all N always present

A row goes to partition `hash(id) mod N` of its customer id as validation normalises it
(`validate.normal_ids`: " C1" and "C1" are one customer and land together); the hash is pandas'
`hash_array` with its fixed key, so every process and machine computes the same one. Rows
without an id go to partition 0, where validation quarantines them as it would anywhere.

Reading the whole folder (`read_partitioned`) gives the partitions' rows in partition order,
which is what a single process scores; one partition (`read_partition`) is what a Dask task
reads. The one check that spans partitions in a single process and not in a partition is
`duplicate event_id` between rows of different customers: `retain partition` warns of such ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import TABLE_NAMES, ContractError

MANIFEST = "manifest.json"
FORMAT = "retain-partitioned/1"
HASH = "pandas.util.hash_array(customer_id as validated, categorize=True) mod partitions"


@dataclass(frozen=True)
class Manifest:
    """What a partitioned folder holds: its partition count and the rows of each table part."""

    folder: Path
    partitions: int
    rows: dict[str, list[int]]  # table -> rows per partition

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(name for name in TABLE_NAMES if name in self.rows)

    def path(self, table: str, partition: int) -> Path:
        return self.folder / table / f"part-{partition:05d}.parquet"

    def as_json(self) -> dict[str, object]:
        return {"format": FORMAT, "hash": HASH, "partitions": self.partitions, "rows": self.rows}


def is_partitioned(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def load_manifest(folder: str | Path) -> Manifest:
    """The folder's manifest, checked against its files; a `ContractError` naming what is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"cannot read the partition manifest {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else doc
        raise ContractError(
            f"{path} is not a Retain partition manifest: format {found!r}, expected {FORMAT!r}"
        )
    n = doc.get("partitions")
    rows = doc.get("rows")
    if not isinstance(n, int) or n < 1 or not isinstance(rows, dict):
        raise ContractError(f"{path}: expected 'partitions' >= 1 and 'rows' per table")
    unknown = sorted(set(rows) - set(TABLE_NAMES))
    if unknown:
        raise ContractError(
            f"{path} names unknown table(s) {unknown}; expected {list(TABLE_NAMES)}"
        )
    for name in ("customers", "events"):
        if name not in rows:
            raise ContractError(f"{path}: required table '{name}' is not in the manifest")
    manifest = Manifest(folder, n, {k: [int(r) for r in v] for k, v in rows.items()})
    for name in manifest.tables:
        if len(manifest.rows[name]) != n:
            raise ContractError(
                f"{path}: table '{name}' lists {len(manifest.rows[name])} parts, expected {n}"
            )
        missing = [
            str(manifest.path(name, i)) for i in range(n) if not manifest.path(name, i).is_file()
        ]
        if missing:
            raise ContractError(
                f"partitioned folder {folder} lacks {len(missing)} part file(s), e.g. {missing[0]}"
            )
    return manifest


def partition_of(ids: pd.Series, partitions: int) -> np.ndarray:
    """The partition of each row's customer id (int64, 0 for a missing id)."""
    from features.validate import normal_ids

    clean = normal_ids(ids)
    codes = clean.cat.codes.to_numpy()
    names = clean.cat.categories.to_numpy(dtype=object)
    hashed = pd.util.hash_array(names) % np.uint64(partitions) if len(names) else np.zeros(0)
    out = np.zeros(len(ids), dtype=np.int64)
    present = codes >= 0
    out[present] = hashed.astype(np.int64)[codes[present]]
    return out


def write_partitioned(
    raw: dict[str, pd.DataFrame | None],
    out: str | Path,
    partitions: int,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> Manifest:
    """Write raw contract tables as a partitioned folder. Each table goes through one Arrow
    schema, so every part has the same column types (an all-empty slice is not typed anew)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new or empty folder for the partitions")
    manifest = Manifest(out, partitions, {})
    for name in TABLE_NAMES:
        frame = raw.get(name)
        if frame is None:
            continue
        table = pa.Table.from_pandas(frame, preserve_index=False)
        part = partition_of(frame["customer_id"], partitions) if len(frame) else np.zeros(0, int)
        (out / name).mkdir(parents=True, exist_ok=True)
        counts = []
        for i in range(partitions):
            rows = np.flatnonzero(part == i)
            pq.write_table(table.take(rows), manifest.path(name, i), compression="zstd")
            counts.append(len(rows))
        manifest.rows[name] = counts
        progress(f"{name:<10} {len(frame):>12,} rows -> {partitions} parts in {out / name}")
        spanning = _spanning_ids(frame, part)
        if spanning:
            progress(
                f"WARNING: {spanning:,} {name} event_id(s) are used by customers in different "
                "partitions; a partition cannot see those repeats (fix the source's ids)"
            )
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.as_json(), indent=2))
    os.replace(tmp, out / MANIFEST)  # the manifest last: a folder without it is incomplete
    return manifest


def _spanning_ids(frame: pd.DataFrame, part: np.ndarray) -> int:
    """Event ids whose rows fall in more than one partition: the one check a partition cannot
    make (a single process quarantines all rows after the first as `duplicate event_id`)."""
    if "event_id" not in frame.columns or not len(frame):
        return 0
    ids = frame["event_id"].astype("string").str.strip()
    pairs = pd.DataFrame({"id": ids.to_numpy(), "part": part}).dropna().drop_duplicates()
    return int((pairs.groupby("id").size() > 1).sum())


def read_partition(folder: str | Path, partition: int, manifest: Manifest | None = None):
    """The raw tables of one partition (optional tables absent from the folder are None)."""
    from features.sources import read_file

    manifest = manifest or load_manifest(folder)
    if not 0 <= partition < manifest.partitions:
        raise ValueError(f"partition {partition} out of range 0..{manifest.partitions - 1}")
    return {
        name: read_file(manifest.path(name, partition), name) if name in manifest.rows else None
        for name in TABLE_NAMES
    }


def read_partitioned(folder: str | Path) -> dict[str, pd.DataFrame | None]:
    """The raw tables of the whole folder, partitions in order."""
    from features.sources import read_files

    manifest = load_manifest(folder)
    return {
        name: read_files([manifest.path(name, i) for i in range(manifest.partitions)], name)
        if name in manifest.rows
        else None
        for name in TABLE_NAMES
    }
