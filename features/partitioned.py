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


class PartitionWriter:
    """Writes a partitioned folder from batches of raw contract tables, one batch at a time, so
    a folder larger than memory can be written (`features.synthetic.generate_partitioned`).

    Each `add` splits its tables by partition and appends them to the open part files. A table
    keeps the Arrow schema of its first batch (a column that batch left all-null and untyped is
    typed as text, the contract's only untyped-when-empty columns), so every part has the same
    column types. `close` writes typed empty parts for partitions no row reached, then the
    manifest, last: a folder without one is incomplete and no command reads it."""

    def __init__(self, out: str | Path, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"{out} is not empty: give a new or empty folder for the partitions")
        self.manifest = Manifest(out, partitions, {})
        self._schemas: dict[str, object] = {}
        self._writers: dict[tuple[str, int], object] = {}
        self._closed = False
        self._batches = 0

    def _schema(self, name: str, table):
        import pyarrow as pa

        if name not in self._schemas:
            fields = [
                f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
            ]
            self._schemas[name] = pa.schema(fields, metadata=table.schema.metadata)
        return self._schemas[name]

    def add(self, raw: dict[str, pd.DataFrame | None]) -> dict[str, np.ndarray]:
        """Append one batch; returns each table's partition per row (for callers' checks)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._closed:
            raise ValueError("the partition writer is closed")
        manifest = self.manifest
        parts: dict[str, np.ndarray] = {}
        for name in TABLE_NAMES:
            frame = raw.get(name)
            if frame is None:
                continue
            if self._batches and name not in self._schemas:
                raise ValueError(f"table '{name}' was absent from the first batch")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            schema = self._schema(name, table)
            table = table.cast(schema)
            part = partition_of(frame["customer_id"], manifest.partitions) if len(frame) else None
            counts = manifest.rows.setdefault(name, [0] * manifest.partitions)
            (manifest.folder / name).mkdir(parents=True, exist_ok=True)
            if part is None:
                parts[name] = np.zeros(0, dtype=np.int64)
                continue
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(manifest.partitions + 1))
            for i in range(manifest.partitions):
                rows = order[bounds[i] : bounds[i + 1]]
                if not len(rows):
                    continue
                key = (name, i)
                if key not in self._writers:
                    self._writers[key] = pq.ParquetWriter(
                        manifest.path(name, i), schema, compression="zstd"
                    )
                self._writers[key].write_table(table.take(rows))
                counts[i] += len(rows)
            parts[name] = part
        self._batches += 1
        return parts

    def close(self) -> Manifest:
        import pyarrow.parquet as pq

        manifest = self.manifest
        for writer in self._writers.values():
            writer.close()
        for name, schema in self._schemas.items():
            for i in range(manifest.partitions):
                if (name, i) not in self._writers:
                    pq.write_table(schema.empty_table(), manifest.path(name, i), compression="zstd")
        self._closed = True
        tmp = manifest.folder / f".{MANIFEST}.tmp"
        manifest.folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(manifest.as_json(), indent=2))
        os.replace(tmp, manifest.folder / MANIFEST)
        return manifest


def write_partitioned(
    raw: dict[str, pd.DataFrame | None],
    out: str | Path,
    partitions: int,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> Manifest:
    """Write raw contract tables as a partitioned folder (one `PartitionWriter` batch)."""
    writer = PartitionWriter(out, partitions)
    parts = writer.add(raw)
    for name, part in parts.items():
        progress(
            f"{name:<10} {len(raw[name]):>12,} rows -> {partitions} parts in {Path(out) / name}"
        )
        spanning = _spanning_ids(raw[name], part)
        if spanning:
            progress(
                f"WARNING: {spanning:,} {name} event_id(s) are used by customers in different "
                "partitions; a partition cannot see those repeats (fix the source's ids)"
            )
    return writer.close()


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
