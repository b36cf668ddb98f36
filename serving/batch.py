"""Batch scoring: the whole population at a cutoff, ranked by value at risk, with reasons for the
customers a CX team will look at; and the scored-snapshot store the HTTP service reads.

Snapshot layout (under a root folder: the `--data` folder, or `--snapshot-dir` for a SQL source):

    <root>/scores/<YYYY-MM-DD>/scores.parquet     the ranked list (SCORE_COLUMNS)
    <root>/scores/<YYYY-MM-DD>/features.parquet   the features it was scored from (customer_id index)
    <root>/scores/<YYYY-MM-DD>/snapshot.json      the exact cutoff, model versions and row count
    <root>/scores/LATEST                          the name of the newest complete folder

Each file is written under a temporary name and renamed into place, and `LATEST` is replaced
only after the folder is complete, so a reader following `LATEST` never sees half a new
snapshot. (Scoring the same date again replaces that folder's files one by one.) A cutoff that is not
midnight UTC gets a folder named `<YYYY-MM-DD>T<HHMMSS>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from configs import Settings
from features.contract import Tables, to_utc
from serving.columns import REASON_COLUMNS, SCORE_COLUMNS
from serving.scoring import Champions, reasons_for, score_frame

SNAPSHOT_FOLDER = "scores"
LATEST = "LATEST"
_SUFFIXES = (".csv", ".parquet")


def score_population(
    tables: Tables,
    as_of: str | pd.Timestamp,
    settings: Settings,
    champions: Champions,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """Features of the population at `as_of`, scored and ranked (see `rank_features`)."""
    from features.build import build_features

    cutoff = to_utc(as_of)
    progress(f"building features as of {cutoff:%Y-%m-%d %H:%M} UTC")
    X = build_features(tables, cutoff, settings)
    return rank_features(X, champions, settings, progress=progress)


def rank_features(
    X: pd.DataFrame,
    champions: Champions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """Every customer in `X` scored in batches of `settings.scoring.batch_size`, ranked by value at
    risk (highest first; ties by customer id, ascending), with reasons for the top
    `settings.scoring.reasons_top_n` only (empty strings below). Columns are exactly
    `SCORE_COLUMNS`; the index is a RangeIndex (row 0 is the customer to call first)."""
    n = len(X)
    size = settings.scoring.batch_size
    batches = max(1, -(-n // size))
    parts = []
    for b, start in enumerate(range(0, max(n, 1), size), start=1):
        parts.append(score_frame(X.iloc[start : start + size], champions, settings, reasons=False))
        progress(f"scored {min(start + size, n):,} of {n:,} customers (batch {b}/{batches})")
    scores = pd.concat(parts) if len(parts) > 1 else parts[0]

    progress("ranking by value at risk")
    order = _ranking(scores.index, scores["value_at_risk"].to_numpy())
    ranked = scores.iloc[order]
    top = min(settings.scoring.reasons_top_n, n)
    if top:
        progress(f"writing reasons for the top {top:,}")
        # Positions in X of the top customers: X and scores share row order before ranking.
        reasons = reasons_for(X.iloc[order[:top]], champions)
        ranked = ranked.copy()
        ranked.iloc[:top, [ranked.columns.get_loc(c) for c in REASON_COLUMNS]] = reasons.to_numpy()
    out = ranked.rename_axis("customer_id").reset_index()
    out["customer_id"] = out["customer_id"].astype(str).astype(object)
    return out.loc[:, list(SCORE_COLUMNS)]


def _ranking(ids: pd.Index, value_at_risk: np.ndarray) -> np.ndarray:
    """Positions in ranked order: value at risk descending, customer id ascending on ties. A
    stable sort on value at risk alone does it when the ids are already in order (as
    build_features returns them), which skips sorting a million strings."""
    key = -np.nan_to_num(value_at_risk, nan=-np.inf)
    if ids.is_monotonic_increasing:
        return np.argsort(key, kind="stable")
    by_id = np.argsort(ids.astype(str).to_numpy(), kind="stable")
    return by_id[np.argsort(key[by_id], kind="stable")]


def write_scores(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the ranked list as CSV or Parquet, chosen by the file extension."""
    path = Path(path)
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def check_output_path(path: str | Path) -> None:
    """Raise a ValueError naming the path unless it ends in .csv or .parquet."""
    path = Path(path)
    if path.suffix not in _SUFFIXES:
        raise ValueError(
            f"cannot write scores to {path}: the file name must end in .csv or .parquet"
        )


# --------------------------------------------------------------------------- snapshots


def snapshot_name(as_of: str | pd.Timestamp) -> str:
    cutoff = to_utc(as_of)
    if cutoff == cutoff.normalize():
        return f"{cutoff:%Y-%m-%d}"
    return f"{cutoff:%Y-%m-%dT%H%M%S}"


def save_snapshot(
    data_dir: str | Path, as_of: str | pd.Timestamp, scores: pd.DataFrame, features: pd.DataFrame
) -> Path:
    """Store a scored population under `<data_dir>/scores/<date>/` and point `LATEST` at it;
    returns the snapshot folder."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack the columns {missing}; pass the output of rank_features")
    cutoff = to_utc(as_of)
    root = Path(data_dir) / SNAPSHOT_FOLDER
    name = snapshot_name(cutoff)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "scores.parquet", lambda p: scores.to_parquet(p, index=False))
    _atomic(folder / "features.parquet", lambda p: features.to_parquet(p, index=True))
    versions = {
        kind: sorted(map(str, scores[f"{kind}_model_version"].unique()))
        for kind in ("churn", "clv")
    }
    meta = {"as_of": cutoff.isoformat(), "customers": len(scores), "model_versions": versions}
    _atomic(folder / "snapshot.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    _atomic(root / LATEST, lambda p: p.write_text(name + "\n"))
    return folder


def load_latest_snapshot(data_dir: str | Path) -> tuple[pd.Timestamp, pd.DataFrame, pd.DataFrame]:
    """The newest snapshot under `<data_dir>/scores/`: (as_of, ranked scores, features)."""
    root = Path(data_dir) / SNAPSHOT_FOLDER
    pointer = root / LATEST
    if not pointer.is_file():
        raise FileNotFoundError(
            f"no scored snapshot under {root} ({pointer} does not exist); run "
            f"`retain score --data DIR --as-of DATE --out FILE` first"
        )
    name = pointer.read_text().strip()
    folder = root / name
    try:
        meta = json.loads((folder / "snapshot.json").read_text())
        scores = pd.read_parquet(folder / "scores.parquet")
        features = pd.read_parquet(folder / "features.parquet")
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"{pointer} names snapshot '{name}', but {folder} cannot be read ({exc}); "
            "run `retain score` again"
        ) from exc
    return to_utc(meta["as_of"]), scores, features


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
