"""The score store: scored lists by date under a root folder (the `--data` folder, or
`--snapshot-dir` for a SQL source), the `LATEST` pointer and their metadata. The one owner of
this layout; batch scoring writes it, the HTTP service and monitoring read it.

    <root>/scores/<YYYY-MM-DD>/scores.parquet     the ranked list (SCORE_COLUMNS)
    <root>/scores/<YYYY-MM-DD>/features.parquet   the features it was scored from (customer_id index)
    <root>/scores/<YYYY-MM-DD>/snapshot.json      the exact cutoff, model versions and row count
    <root>/scores/LATEST                          the name of the newest complete folder

Each file is written under a temporary name and renamed into place, and `LATEST` is replaced
only after the folder is complete, so a reader following `LATEST` never sees half a new scored
list. (Scoring the same date again replaces that folder's files one by one.) A cutoff that is
not midnight UTC gets a folder named `<YYYY-MM-DD>T<HHMMSS>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.contract import to_utc
from serving.core.columns import SCORE_COLUMNS
from serving.core.ranking import ScoredList

FOLDER = "scores"
LATEST = "LATEST"
SCORES, FEATURES, META = "scores.parquet", "features.parquet", "snapshot.json"


@dataclass(frozen=True)
class StoredList:
    """One scored list in the store, known from its metadata only."""

    as_of: pd.Timestamp
    folder: Path
    rows: int


def list_name(as_of: str | pd.Timestamp) -> str:
    cutoff = to_utc(as_of)
    if cutoff == cutoff.normalize():
        return f"{cutoff:%Y-%m-%d}"
    return f"{cutoff:%Y-%m-%dT%H%M%S}"


class ScoreStore:
    """The scored lists under `<root>/scores/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folder = self.root / FOLDER
        self.pointer = self.folder / LATEST

    def __repr__(self) -> str:
        return f"ScoreStore({str(self.root)!r})"

    def save(self, scored: ScoredList) -> Path:
        """Store a scored population under `scores/<date>/` and point `LATEST` at it; returns
        the folder."""
        scores = scored.ranked
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"scores lack the columns {missing}; pass the output of rank_features")
        cutoff = to_utc(scored.as_of)
        name = list_name(cutoff)
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        _atomic(folder / SCORES, lambda p: scores.to_parquet(p, index=False))
        _atomic(folder / FEATURES, lambda p: scored.features.to_parquet(p, index=True))
        versions = {
            kind: sorted(map(str, scores[f"{kind}_model_version"].unique()))
            for kind in ("churn", "clv")
        }
        meta = {"as_of": cutoff.isoformat(), "customers": len(scores), "model_versions": versions}
        _atomic(folder / META, lambda p: p.write_text(json.dumps(meta, indent=2)))
        _atomic(self.pointer, lambda p: p.write_text(name + "\n"))
        return folder

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """(inode, mtime, size) of `LATEST`, None without one: changes whenever it is replaced."""
        try:
            st = os.stat(self.pointer)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def latest(self) -> ScoredList:
        """The newest scored list, or a FileNotFoundError saying how to make one."""
        if not self.pointer.is_file():
            raise FileNotFoundError(
                f"no scored list under {self.folder} ({self.pointer} does not exist); run "
                f"`retain score --data DIR --as-of DATE --out FILE` first"
            )
        name = self.pointer.read_text().strip()
        folder = self.folder / name
        try:
            meta = json.loads((folder / META).read_text())
            scores = pd.read_parquet(folder / SCORES)
            features = pd.read_parquet(folder / FEATURES)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                f"{self.pointer} names scored list '{name}', but {folder} cannot be read ({exc}); "
                "run `retain score` again"
            ) from exc
        return ScoredList(to_utc(meta["as_of"]), scores, features)

    def before(self, cutoff: pd.Timestamp) -> list[StoredList]:
        """Every stored list made before `cutoff`, oldest first, from their metadata only (a
        half-written or foreign folder is not a scored list and is left out)."""
        import pyarrow.parquet as pq

        found = []
        for meta_path in sorted(self.folder.glob(f"*/{META}")):
            try:
                meta = json.loads(meta_path.read_text())
                as_of = to_utc(meta["as_of"])
                if as_of >= cutoff:
                    continue
                rows = meta.get("customers")
                if not isinstance(rows, int):
                    rows = pq.read_metadata(meta_path.parent / SCORES).num_rows
            except (OSError, ValueError, KeyError):
                continue
            found.append(StoredList(as_of, meta_path.parent, rows))
        return sorted(found, key=lambda s: s.as_of)

    @staticmethod
    def read_scores(stored: StoredList, columns: Sequence[str]) -> pd.DataFrame | None:
        """Some columns of a stored ranked list; None when it cannot be read."""
        try:
            return pd.read_parquet(stored.folder / SCORES, columns=list(columns))
        except (OSError, ValueError, KeyError):
            return None


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
