"""What training reads from the data, and where it is computed: `History` over validated tables
in this process, `ClusterHistory` over a partitioned folder on a Dask cluster.

Training asks the data only per-customer questions at a cutoff: the labelled feature snapshot,
the RFM summary BG/NBD is fitted on, which datetime attributes lie after the cutoff, and a
digest for lineage. Every answer is a per-customer frame or a sum, so a cluster computes it per
partition with the same functions one process uses and gathers the pieces in partition order
(`features.distributed`); the gathered frames equal the single-process ones on the same folder.

On a cluster the validated partitions stay in the workers' memory for the history's lifetime
(one read and validation per run, however many cutoffs a training or a backtest asks about),
and so does a history cut at a date (`cut`) while it is in use; only the per-customer answers
travel to the client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from configs import Settings
from features.contract import Tables, to_utc
from training.leakage import late_attribute_counts


def content_digest(tables: Tables) -> str:
    """A digest of the table contents (not their files), so lineage survives format changes."""
    h = hashlib.sha256()
    for name in ("customers", "events", "feedback", "churn"):
        frame = getattr(tables, name)
        h.update(name.encode())
        if frame is not None:
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _labelled(tables: Tables, cutoff: pd.Timestamp, settings: Settings):
    from features.build import build_features
    from features.labels import build_labels

    X = build_features(tables, cutoff, settings)
    y = build_labels(
        tables, cutoff, settings.horizon_days, activity_event_types=settings.activity_event_types
    )
    return X, y


def _rfm(tables: Tables, cutoff: pd.Timestamp, settings: Settings) -> pd.DataFrame:
    from features.rfm import rfm_summary

    return rfm_summary(tables, cutoff, settings)


def _first_signup(tables: Tables) -> pd.Timestamp:
    return tables.customers["signup_date"].min()


class History:
    """Validated contract tables in this process."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def data_end(self) -> pd.Timestamp | None:
        return self.tables.data_end()

    def cut(self, known_until: str | pd.Timestamp) -> History:
        return History(self.tables.cut(known_until))

    def first_signup(self) -> pd.Timestamp:
        return _first_signup(self.tables)

    def labelled(
        self, cutoff: pd.Timestamp, settings: Settings
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Features of the population at `cutoff` and their labels from the horizon after it."""
        return _labelled(self.tables, cutoff, settings)

    def rfm_summary(self, cutoff: pd.Timestamp, settings: Settings) -> pd.DataFrame:
        return _rfm(self.tables, cutoff, settings)

    def late_attributes(self, cutoff: pd.Timestamp) -> dict[str, int]:
        return late_attribute_counts(self.tables, to_utc(cutoff))

    def digest(self) -> str:
        return content_digest(self.tables)


def as_history(source: Tables | History) -> History:
    """`source` as a `History` (validated `Tables` are wrapped)."""
    return source if isinstance(source, History) else History(source)


def _validated(part: Any) -> tuple[Tables, Any, Any]:
    result = part.validated()
    return result.tables, result.report, result.quarantine


def _tables_of(loaded: tuple[Tables, Any, Any]) -> Tables:
    return loaded[0]


def _checks_of(loaded: tuple[Tables, Any, Any]) -> tuple[Any, Any]:
    return loaded[1], loaded[2]


def _cut(tables: Tables, known_until: pd.Timestamp) -> Tables:
    return tables.cut(known_until)


class ClusterHistory(History):
    """The partitions of a partitioned folder, validated once on a Dask cluster and kept in the
    workers' memory; every question runs per partition there and is gathered in order.

    `checked` is the reconciliation of the validation (counts summed over the partitions)."""

    def __init__(
        self,
        client: Any,
        tables: Sequence[Any],
        *,
        checked: Any = None,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.client = client
        self.parts = list(tables)  # futures of validated `Tables`, one per partition
        self.checked = checked
        self._progress = progress

    @classmethod
    def load(
        cls, client: Any, partitions: Sequence[Any], *, progress: Callable[[str], None]
    ) -> ClusterHistory:
        """Read and validate every partition on the cluster (`features.distributed.Partition`)."""
        from features.distributed import checked, run_partitions

        loaded = [client.submit(_validated, p, pure=False) for p in partitions]
        checks = run_partitions(client, loaded, _checks_of, what="validation", progress=progress)
        tables = [client.submit(_tables_of, f, pure=False) for f in loaded]
        history = cls(client, tables, checked=checked(checks), progress=progress)
        del loaded  # the tables futures keep what they need
        return history

    def _map(
        self, task: Callable[..., Any], *args: Any, what: str, shown: bool = False
    ) -> list[Any]:
        """`task` on every partition; `shown`: report partitions done (for the long ones)."""
        from features.distributed import run_partitions

        progress = self._progress if shown else (lambda _: None)
        return run_partitions(self.client, self.parts, task, *args, what=what, progress=progress)

    def data_end(self) -> pd.Timestamp | None:
        ends = [e for e in self._map(Tables.data_end, what="data end") if e is not None]
        return max(ends) if ends else None

    def cut(self, known_until: str | pd.Timestamp) -> ClusterHistory:
        known_until = to_utc(known_until)
        cut = [self.client.submit(_cut, t, known_until, pure=False) for t in self.parts]
        return ClusterHistory(self.client, cut, checked=self.checked, progress=self._progress)

    def first_signup(self) -> pd.Timestamp:
        firsts = [s for s in self._map(_first_signup, what="first signup") if pd.notna(s)]
        return min(firsts) if firsts else pd.NaT

    def labelled(
        self, cutoff: pd.Timestamp, settings: Settings
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        from features.distributed import concat_rows

        pieces = self._map(
            _labelled, cutoff, settings, what=f"snapshot {cutoff:%Y-%m-%d}", shown=True
        )
        return concat_rows([p[0] for p in pieces]), concat_rows([p[1] for p in pieces])

    def rfm_summary(self, cutoff: pd.Timestamp, settings: Settings) -> pd.DataFrame:
        from features.distributed import concat_rows

        return concat_rows(self._map(_rfm, cutoff, settings, what=f"rfm {cutoff:%Y-%m-%d}"))

    def late_attributes(self, cutoff: pd.Timestamp) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in self._map(late_attribute_counts, to_utc(cutoff), what="attributes"):
            for col, n in counts.items():
                total[col] = total.get(col, 0) + n
        return total

    def digest(self) -> str:
        """A digest of the partitions' digests in order: the folder's content, partitioned (the
        same rows partitioned otherwise, or not at all, give another digest)."""
        h = hashlib.sha256(b"partitioned")
        for d in self._map(content_digest, what="digest"):
            h.update(d.encode())
        return h.hexdigest()
