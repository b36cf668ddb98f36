"""Per-partition execution on Dask: the same validation and feature families a single process
runs, one task per partition of a partitioned folder (`features.partitioned`), gathered in
partition order so the result equals the single-process result on the whole folder.

A task reads its own partition from the folder (workers share its file system), adds that
partition's share of the inbox, validates and computes; only the per-customer result travels
back. Nothing here opens a cluster: the edge passes a `distributed.Client` in.

What the gathering has to restore:
- rows: partitions in order, each in its own order, as the whole folder reads;
- categorical columns (static attributes): each partition's categories are the sorted distinct
  values it saw, so the union is sorted again, which is what the whole population gives;
- the reconciliation: rows read, kept and quarantined summed per table and reason, and the
  quarantined rows themselves with the partition they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from configs import Settings
from features.contract import ContractError
from features.partitioned import Manifest, load_manifest, partition_of, read_partition
from features.validate import TableReport, ValidationResult, summarise, validate


@dataclass(frozen=True)
class Partition:
    """What one task needs to read its partition: the folder, the manifest, its number and its
    share of the inbox rows (None without a store or rows)."""

    manifest: Manifest
    number: int
    inbox: dict[str, pd.DataFrame] | None = None

    def validated(self) -> ValidationResult:
        from features.inbox import with_inbox

        raw = read_partition(self.manifest.folder, self.number, self.manifest)
        if self.inbox:
            raw, _ = with_inbox(raw, self.inbox)
        return validate(raw)


@dataclass(frozen=True)
class Checked:
    """The reconciliation of a partitioned run: counts summed over the partitions, quarantined
    rows with a `partition` column (their `row_number` counts within the partition)."""

    report: dict[str, TableReport]
    quarantine: dict[str, pd.DataFrame]

    def summary(self) -> str:
        return summarise(self.report)


def partitions_of(folder: str, inbox: dict[str, pd.DataFrame] | None = None) -> list[Partition]:
    """The folder's partitions, each with its share of the inbox rows; a `ContractError` when the
    folder is not partitioned."""
    from features.partitioned import is_partitioned

    if not is_partitioned(folder):
        raise ContractError(
            f"{folder} is not a partitioned folder (no manifest.json); a cluster run reads one: "
            "write it with `retain partition --data SRC --out DIR --partitions N`"
        )
    manifest = load_manifest(folder)
    shares: list[dict[str, pd.DataFrame] | None] = [None] * manifest.partitions
    for name, rows in (inbox or {}).items():
        if not len(rows):
            continue
        part = partition_of(rows["customer_id"], manifest.partitions)
        for i in set(part.tolist()):
            share = shares[i] if shares[i] is not None else {}
            share[name] = rows.loc[part == i].reset_index(drop=True)
            shares[i] = share
    return [Partition(manifest, i, shares[i]) for i in range(manifest.partitions)]


def run_partitions(
    client: Any,
    parts: Sequence[Any],
    task: Callable[..., Any],
    *args: Any,
    what: str,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Any]:
    """`task(part, *args)` on the cluster for every partition (a `Partition`, or a future of
    what a task made of one); results in partition order. A failing partition stops the run
    with its number in the message."""
    from uuid import uuid4

    from distributed import as_completed

    run = uuid4().hex[:8]  # a fresh key per run: a held key would hand back an older result
    futures = [
        client.submit(task, p, *args, pure=False, key=f"{what}-{i}-{run}")
        for i, p in enumerate(parts)
    ]
    number = {f.key: i for i, f in enumerate(futures)}
    done = 0
    try:
        for future in as_completed(futures):
            if future.status == "error":
                exc = future.exception()
                message = f"partition {number[future.key]}: {exc}"
                try:
                    again = type(exc)(message)
                except Exception:  # an exception type that takes other arguments
                    again = RuntimeError(message)
                raise again from exc
            done += 1
            if done == len(parts) or done % max(1, len(parts) // 10) == 0:
                progress(f"{what}: {done}/{len(parts)} partitions")
        return client.gather(futures)
    finally:
        for f in futures:
            f.release()


def checked(results: Sequence[tuple[dict[str, TableReport], dict[str, pd.DataFrame]]]) -> Checked:
    """Per-partition (report, quarantine) pairs merged into one reconciliation."""
    report: dict[str, TableReport] = {}
    quarantine: dict[str, list[pd.DataFrame]] = {}
    for i, (part_report, part_quarantine) in enumerate(results):
        for name, r in part_report.items():
            if name not in report:
                report[name] = TableReport(0, 0, 0, {})
            total = report[name]
            reasons = dict(total.reasons)
            for reason, count in r.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
            report[name] = TableReport(
                total.read + r.read, total.kept + r.kept, total.quarantined + r.quarantined, reasons
            )
        for name, rows in part_quarantine.items():
            quarantine.setdefault(name, []).append(rows.assign(partition=i))
    return Checked(
        report, {name: pd.concat(q, ignore_index=True) for name, q in quarantine.items()}
    )


def concat_rows(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-partition frames of per-customer rows as one, partitions in order. A categorical
    column whose categories differ between partitions gets the sorted union (the categories the
    whole population has: see `features.families.static`)."""
    parts = list(parts)
    first = parts[0]
    fixed = {}
    for name in first.columns:
        if not isinstance(first[name].dtype, pd.CategoricalDtype):
            continue
        categories = [tuple(p[name].cat.categories) for p in parts]
        if len(set(categories)) > 1:
            union = sorted({c for cats in categories for c in cats})
            fixed[name] = pd.CategoricalDtype(pd.Index(union, dtype=object))
    if fixed:
        parts = [p.astype(fixed) for p in parts]
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def _features_task(part: Partition, as_of: pd.Timestamp, settings: Settings):
    from features.build import build_features

    result = part.validated()
    return build_features(result.tables, as_of, settings), result.report, result.quarantine


def build_features_on(
    client: Any,
    parts: Sequence[Partition],
    as_of: pd.Timestamp,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, Checked]:
    """`build_features` on every partition: the features of the whole folder's population and
    the run's reconciliation."""
    results = run_partitions(
        client, parts, _features_task, as_of, settings, what="features", progress=progress
    )
    return concat_rows([r[0] for r in results]), checked([(r[1], r[2]) for r in results])


def _labels_task(part: Partition, as_of: pd.Timestamp, settings: Settings):
    from features.labels import build_labels

    tables = part.validated().tables
    return build_labels(
        tables, as_of, settings.horizon_days, activity_event_types=settings.activity_event_types
    )


def build_labels_on(
    client: Any,
    parts: Sequence[Partition],
    as_of: pd.Timestamp,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """`build_labels` (horizon `settings.horizon_days`) on every partition, in partition order."""
    results = run_partitions(
        client, parts, _labels_task, as_of, settings, what="labels", progress=progress
    )
    return concat_rows(results)
