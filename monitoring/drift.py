"""Drift of features and predictions between the champion's reference and the latest scoring.

- reference: the evaluation snapshot the champion was judged on (`reference/features.parquet`
  and `reference/predictions.parquet` of its training run), indexed by customer_id;
- current: the latest scoring snapshot's features and scores (`customer_id` as index or column).

`detect_drift` samples both sides to at most `sample_size` rows (the customers with the smallest
seeded hash of their id, so the draw does not depend on row order and a daily run keeps most of
yesterday's sample), tests every feature column with an Evidently stattest and returns a plain
`DriftResult`: the share of drifted columns, the drifted ones by score, one row per column, the
prediction drift of `churn_probability` and `clv`, and the sample sizes. `DriftResult.save_html`
runs Evidently's `DataDriftPreset` on the same samples with the same tests and thresholds and
writes Evidently's own HTML.

Why the numbers are computed here and not read back from the Evidently report: the preset draws
two Plotly figures per column while it computes. With 1,000,000 customers on each side and 140
features, `detect_drift` takes about 15 s on two shared cores (5 of them importing Evidently,
1.5 hashing ids to sample 50,000 rows each), and the HTML report on those samples about 40 s
more (`retain monitor` writes it in a second process with `write_html` while it goes on). The numbers use the very functions the report calls
(`evidently.legacy.calculations.stattests`), with the method and threshold fixed per column and
passed to the report, so the two agree (checked in `tests/monitoring/test_drift.py`); the report
is only built when its HTML is wanted.

Ageing is not drift: before anything is compared, the reference sample is redrawn to the current
sample's mix of `age_feature` (tenure), over the ages both hold (`match_age`), and the features
that grow with age by construction (`ageing_features`) are tested and shown but not counted. The
retrain trigger weighs what the models use: `weighted_drift` is the share of the champions'
importance (`feature_importance`, mean absolute TreeSHAP contributions on reference rows, given
by the caller) held by drifted features (`weigh`), next to the plain share of drifted columns.

Tests per column (see `MonitoringSettings` for the evidence behind the defaults): numerical
columns use `numerical_stattest` (Wasserstein distance over the reference's standard deviation),
however few distinct values they have; categorical and boolean columns, and numerical columns
constant in the reference (no spread to scale by), use `categorical_stattest` (Jensen-Shannon
distance). Missing and infinite values are left out of a test, as Evidently does; a column with
fewer than `min_column_values` non-missing values on either side is skipped with a reason
instead of tested. Prediction drift is never skipped and does not count in the drift share.

Evidently is imported inside the functions that need it: importing it takes several seconds, and
importing `monitoring` must stay cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from monitoring.settings import MonitoringSettings

PREDICTION_COLUMNS: tuple[str, ...] = ("churn_probability", "clv")
NUMERICAL, CATEGORICAL = "numerical", "categorical"
DRIFT_COLUMNS = (
    "kind",
    "method",
    "threshold",
    "score",
    "drifted",
    "n_reference",
    "n_current",
)


@dataclass(frozen=True)
class DriftResult:
    """What `detect_drift` found. `columns` and `predictions` are indexed by column name and have
    the `DRIFT_COLUMNS`; `columns` is sorted by score over threshold, highest first."""

    drift_share: float  # drifted / tested feature columns, ageing ones left out; NaN when none
    drift_share_threshold: float
    drifted_columns: list[str]  # not ageing, highest score (relative to its threshold) first
    columns: pd.DataFrame
    predictions: pd.DataFrame  # churn_probability and clv, where both sides have them
    skipped: dict[str, str]  # column -> why it was not tested
    n_reference: int  # rows used after sampling
    n_current: int
    n_reference_rows: int  # rows given
    n_current_rows: int
    sample_size: int
    seed: int
    # The sampled rows (customer_id index) of the tested columns, for the Evidently report.
    reference_sample: pd.DataFrame = field(repr=False)
    current_sample: pd.DataFrame = field(repr=False)
    # The champions' importance held by drifted features (not ageing ones), in [0, 1]; NaN when
    # no feature could be tested. Each tested column's `importance` and `ageing` are in `columns`.
    weighted_drift: float = float("nan")
    weighted_drift_threshold: float = 1.0
    drift_share_all: float = float("nan")  # the plain share with the ageing columns counted
    ageing_drifted: list[str] = field(default_factory=list)  # drifted, but ageing by construction
    age_matched_on: str | None = None  # the reference was redrawn to the current's age mix

    @property
    def dataset_drift(self) -> bool:
        """Drift in what the model uses (the weighted drift), or in many features (the share)."""
        return bool(
            self.weighted_drift >= self.weighted_drift_threshold
            or self.drift_share > self.drift_share_threshold
        )

    def weighted_reasons(self, n: int = 5) -> list[tuple[str, float, float]]:
        """The drifted features that carry the most importance: (column, weight, distance)."""
        c = self.columns
        if not len(c):
            return []
        hit = c[c["drifted"] & ~c["ageing"]].sort_values("importance", ascending=False)
        return [
            (str(k), float(r["importance"]), float(r["score"])) for k, r in hit.head(n).iterrows()
        ]

    @property
    def prediction_drift(self) -> dict[str, dict[str, Any]]:
        return {name: _row_dict(row) for name, row in self.predictions.iterrows()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary: every number, no frames."""
        return {
            "drift_share": _num(self.drift_share),
            "drift_share_threshold": self.drift_share_threshold,
            "drift_share_all": _num(self.drift_share_all),
            "weighted_drift": _num(self.weighted_drift),
            "weighted_drift_threshold": self.weighted_drift_threshold,
            "dataset_drift": self.dataset_drift,
            "drifted_columns": list(self.drifted_columns),
            "ageing_drifted": list(self.ageing_drifted),
            "age_matched_on": self.age_matched_on,
            "columns": {name: _row_dict(row) for name, row in self.columns.iterrows()},
            "prediction_drift": self.prediction_drift,
            "skipped": dict(self.skipped),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_reference_rows": self.n_reference_rows,
            "n_current_rows": self.n_current_rows,
            "sample_size": self.sample_size,
            "seed": self.seed,
        }

    def evidently_snapshot(self):
        """Evidently's `DataDriftPreset` (features) and `ValueDrift` (predictions) on the sampled
        frames, with this result's per-column tests and threshold; the `Snapshot` it returns has
        `save_html`, `dict` and `json`."""
        return _evidently_snapshot(self)

    def save_html(self, path: str | Path) -> Path:
        """Write Evidently's drift report for this result to `path` and return the path."""
        path = Path(path)
        self.evidently_snapshot().save_html(str(path))
        return path


def write_html(result: DriftResult, path: str | Path) -> Path:
    """`result.save_html(path)` as a plain function, to run in a worker process."""
    return result.save_html(path)


def _num(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _row_dict(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, np.bool_ | bool):
            out[str(k)] = bool(v)
        elif isinstance(v, np.integer):
            out[str(k)] = int(v)
        elif isinstance(v, np.floating | float):
            out[str(k)] = _num(v)
        else:
            out[str(k)] = v
    return out


def by_customer(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` indexed by customer_id (a customer_id column becomes the index)."""
    if "customer_id" in frame.columns:
        frame = frame.set_index("customer_id")
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][:3].tolist()
        raise ValueError(f"{name} has repeated customer ids (e.g. {dup}); expected one row each")
    return frame


def combine(features: pd.DataFrame, predictions: pd.DataFrame | None, name: str) -> pd.DataFrame:
    """Features joined with the prediction columns (`PREDICTION_COLUMNS`) of `predictions` by
    customer_id; a customer without predictions gets missing values. The inputs are not changed."""
    features = by_customer(features, f"{name} features")
    clash = [c for c in PREDICTION_COLUMNS if c in features.columns]
    if clash:
        raise ValueError(f"{name} features already have prediction columns {clash}")
    if predictions is None:
        return features
    predictions = by_customer(predictions, f"{name} predictions")
    present = [c for c in PREDICTION_COLUMNS if c in predictions.columns]
    return features.join(predictions[present], how="left")


def sample_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most `n` rows of `frame`: those whose index value has the smallest seeded hash, in their
    original order. Deterministic, independent of row order; all rows when there are at most n."""
    if n < 1:
        raise ValueError(f"sample size must be at least 1, got {n}")
    if len(frame) <= n:
        return frame
    key = format(seed % 10**16, "016d")
    h = pd.util.hash_array(frame.index.astype(str).to_numpy(dtype=object), hash_key=key)
    take = np.sort(np.argpartition(h, n - 1)[:n])
    return frame.iloc[take]


def _kind(series: pd.Series) -> str | None:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or is_bool_dtype(dtype):
        return CATEGORICAL
    if is_numeric_dtype(dtype):
        return NUMERICAL
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return CATEGORICAL
    return None


def _as_text(series: pd.Series) -> pd.Series:
    """A categorical column as object strings with missing values kept missing."""
    present = series.notna().to_numpy()
    values = series.astype(object).to_numpy().copy()
    values[present] = [str(v) for v in values[present]]
    values[~present] = np.nan
    return pd.Series(values, index=series.index, name=series.name, dtype=object)


def _evidently_frame(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Only the tested columns, categorical ones as strings and numerical ones as float, still
    indexed by customer_id."""
    cols = {}
    for col, kind in kinds.items():
        s = frame[col]
        cols[col] = _as_text(s) if kind == CATEGORICAL else s.astype(np.float64)
    return pd.DataFrame(cols, index=frame.index)


def _clean(series: pd.Series) -> pd.Series:
    if is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype):
        series = series.replace([np.inf, -np.inf], np.nan)
    return series.dropna()


def _column_test(
    ref: pd.Series, cur: pd.Series, kind: str, method: str, threshold: float
) -> tuple[float, bool]:
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Categorical if kind == CATEGORICAL else ColumnType.Numerical
    test = get_stattest(ref, cur, column_type, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = test(ref, cur, column_type, threshold)
    return float(result.drift_score), bool(result.drifted)


def _method(kind: str, ref: pd.Series, settings: MonitoringSettings) -> str:
    # A numerical column constant in the reference has no spread to scale a distance by (the
    # normalised Wasserstein distance would divide by 0.001): it is tested as categories.
    if kind == NUMERICAL and ref.nunique() > 1:
        return settings.numerical_stattest
    return settings.categorical_stattest


def _test_columns(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    columns: list[str],
    settings: MonitoringSettings,
    *,
    min_values: int,
    numerical_only: bool = False,
    threshold: float | None = None,
) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """One row of `DRIFT_COLUMNS` per tested column, the skipped ones with reasons, and the kind
    of each tested column (flagged at `threshold`, by default `settings.stattest_threshold`)."""
    threshold = settings.stattest_threshold if threshold is None else threshold
    rows, skipped, kinds = {}, {}, {}
    for col in columns:
        if col not in cur.columns:
            skipped[col] = "missing from the current data"
            continue
        kind = _kind(ref[col])
        if kind is None or (numerical_only and kind != NUMERICAL):
            skipped[col] = f"unsupported type {ref[col].dtype}"
            continue
        if _kind(cur[col]) != kind:
            skipped[col] = f"type changed from {ref[col].dtype} to {cur[col].dtype}"
            continue
        r, c = _clean(ref[col]), _clean(cur[col])
        if kind == CATEGORICAL:
            r, c = _as_text(r), _as_text(c)
        if min(len(r), len(c)) < min_values:
            skipped[col] = (
                f"too few values to test ({len(r)} reference, {len(c)} current; "
                f"at least {min_values} needed)"
            )
            continue
        method = _method(kind, r, settings)
        score, drifted = _column_test(r, c, kind, method, threshold)
        rows[col] = (kind, method, threshold, score, drifted, len(r), len(c))
        kinds[col] = kind
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(DRIFT_COLUMNS))
    table = table.astype(
        {"threshold": float, "score": float, "drifted": bool, "n_reference": int, "n_current": int}
    )
    table.index.name = "column"
    if len(table):
        ratio = table["score"] / table["threshold"]
        table = table.iloc[np.lexsort((table.index.to_numpy(), -ratio.to_numpy()))]
    return table, skipped, kinds


def match_age(
    ref: pd.DataFrame, cur: pd.DataFrame, column: str, bins: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like with like: the current rows whose `column` (the customer's age in the book) lies
    within the reference's range (or is missing), and the reference redrawn (seeded, with
    replacement, as many rows as it has, from its rows within the current's range) so that
    `column` is distributed as in those current rows: each of `bins` quantile bins of the
    current, and the missing values, get the current's share. A book that only got older then
    compares the same ages on both sides."""
    ref = ref.sort_index()  # the draw must not depend on the rows' order
    r, c = ref[column].astype(float), cur[column].astype(float)
    if not r.notna().any():
        return ref, cur
    within = cur[c.isna().to_numpy() | (c <= r.max()).to_numpy()]
    if within.empty:  # no current customer is as young as the reference's: nothing to match
        return ref, cur
    cur, c = within, within[column].astype(float)
    if c.notna().any():
        edges = np.unique(np.nanquantile(c, np.linspace(0, 1, bins + 1)))
    else:
        edges = np.array([0.0])
    inner = edges[1:-1]

    def codes(s: pd.Series) -> np.ndarray:
        k = np.searchsorted(inner, s.to_numpy(), side="right")
        return np.where(s.isna().to_numpy(), -1, k)

    # reference ages outside the current's range are not drawn (-2): the same ages both sides
    rc = np.where((r < edges[0]).to_numpy() | (r > edges[-1]).to_numpy(), -2, codes(r))
    cc = codes(c)
    labels, counts = np.unique(cc, return_counts=True)
    present = [(k, n) for k, n in zip(labels, counts, strict=True) if (rc == k).any()]
    if not present:
        return ref, cur
    counts = np.array([n for _, n in present], dtype=float)
    quota = len(ref) * counts / counts.sum()
    sizes = np.floor(quota).astype(int)
    # largest remainders: the sizes add up to the reference's own size exactly
    sizes[np.argsort(-(quota - sizes), kind="stable")[: len(ref) - sizes.sum()]] += 1
    rng = np.random.default_rng(seed)
    take = [
        rng.choice(np.flatnonzero(rc == k), size=size, replace=True)
        for (k, _), size in zip(present, sizes, strict=True)
    ]
    return ref.iloc[np.sort(np.concatenate(take))], cur


def is_ageing(column: str, patterns: Sequence[str]) -> bool:
    """Whether a feature grows with the book's age by construction (tenure, lifetime totals)."""
    return any(fnmatchcase(column, p) for p in patterns)


def weigh(table: pd.DataFrame, importance: pd.Series | None, ageing: Sequence[str]) -> pd.DataFrame:
    """`table` (one row per tested column) with `ageing` (bool) and `importance`: the column's
    share of the importance of the tested columns that are not ageing (0 for ageing ones), so the
    importance of the drifted rows sums to the weighted drift. Without importance, or when the
    tested columns have none, every column that is not ageing weighs the same."""
    out = table.copy()
    out["ageing"] = np.array([is_ageing(str(c), ageing) for c in out.index], dtype=bool)
    if importance is None:
        raw = pd.Series(1.0, index=out.index)
    else:
        raw = importance.reindex(out.index).fillna(0.0).clip(lower=0.0).astype(float)
    raw[out["ageing"].to_numpy()] = 0.0
    if raw.sum() <= 0:
        raw = pd.Series((~out["ageing"]).astype(float).to_numpy(), index=out.index)
    total = raw.sum()
    out["importance"] = raw / total if total > 0 else 0.0
    return out


def feature_importance(contributions: Sequence[pd.DataFrame]) -> pd.Series:
    """Feature -> importance: each model's mean absolute contribution per feature, scaled to sum
    to 1, then averaged over the models (churn and CLV count alike)."""
    parts = []
    for c in contributions:
        mean = c.abs().mean(axis=0)
        if mean.sum() > 0:
            parts.append(mean / mean.sum())
    if not parts:
        return pd.Series(dtype=float)
    return pd.concat(parts, axis=1).fillna(0.0).mean(axis=1).sort_values(ascending=False)


def leading_reasons(contributions: pd.DataFrame, risk: np.ndarray, top_share: float) -> pd.Series:
    """Share of each leading reason (the feature with the largest positive churn contribution)
    among the `top_share` of customers with the highest risk: what heads the ranked list."""
    n = max(1, int(round(len(contributions) * top_share)))
    top = contributions.iloc[np.argsort(-np.asarray(risk), kind="stable")[:n]]
    values = top.to_numpy(dtype=np.float64)
    lead = np.where(values.max(axis=1) > 0, np.argmax(values, axis=1), -1)
    names = np.array([*map(str, top.columns), "(no positive reason)"], dtype=object)
    return pd.Series(names[lead]).value_counts(normalize=True).sort_values(ascending=False)


def reason_mix_drift(reference: pd.Series, current: pd.Series) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two mixes of leading reasons."""
    from scipy.spatial.distance import jensenshannon

    both = reference.index.union(current.index)
    return float(
        jensenshannon(reference.reindex(both, fill_value=0), current.reindex(both, fill_value=0), 2)
    )


def detect_drift(
    reference_features: pd.DataFrame,
    current_features: pd.DataFrame,
    reference_predictions: pd.DataFrame | None = None,
    current_predictions: pd.DataFrame | None = None,
    *,
    settings: MonitoringSettings,
    importance: pd.Series | None = None,
) -> DriftResult:
    """Feature and prediction drift from the reference to the current snapshot.

    Every column of `reference_features` is a feature to test (a feature the current snapshot
    lacks is reported as skipped); prediction frames contribute `churn_probability` and `clv`.
    Frames are keyed by customer_id (index or column). `importance` (feature -> weight, e.g.
    `feature_importance`) weighs the drifted features; without it the `importance` column weighs
    every feature the same and `weighted_drift` is NaN (only the share triggers).
    Nothing is modified in place.
    """
    ref_all = combine(reference_features, reference_predictions, "reference")
    cur_all = combine(current_features, current_predictions, "current")
    features = [c for c in by_customer(reference_features, "reference").columns]
    if not any(c in cur_all.columns for c in features):
        raise ValueError(
            "the reference and current features share no column; expected the current "
            f"snapshot to have the reference's features (e.g. {features[:5]})"
        )
    if ref_all.empty or cur_all.empty:
        raise ValueError(
            f"cannot measure drift with {len(ref_all)} reference and {len(cur_all)} current rows"
        )
    ref = sample_rows(ref_all, settings.sample_size, settings.seed)
    cur = sample_rows(cur_all, settings.sample_size, settings.seed)
    age = settings.age_feature
    age_matched = bool(age) and age in ref.columns and age in cur.columns
    if age_matched:
        ref, cur = match_age(ref, cur, age, settings.age_bins, settings.seed)

    # Tested on a plain RangeIndex: SciPy's checks on a Series look names up in its index,
    # which costs seconds per column on 50,000 string ids.
    ref_t, cur_t = ref.reset_index(drop=True), cur.reset_index(drop=True)
    table, skipped, kinds = _test_columns(
        ref_t, cur_t, features, settings, min_values=settings.min_column_values
    )
    pred_cols = [c for c in PREDICTION_COLUMNS if c in ref.columns and c in cur.columns]
    preds, pred_skipped, pred_kinds = _test_columns(
        ref_t,
        cur_t,
        pred_cols,
        settings,
        min_values=1,
        numerical_only=True,
        threshold=settings.prediction_drift_threshold,
    )
    skipped.update({f"prediction {k}": v for k, v in pred_skipped.items()})
    table = weigh(table, importance, settings.ageing_features)
    weighted = float((table["importance"] * table["drifted"]).sum()) if len(table) else np.nan
    counted = table[~table["ageing"]]
    drifted = counted.index[counted["drifted"]].tolist()
    share = len(drifted) / len(counted) if len(counted) else float("nan")
    all_kinds = {**kinds, **pred_kinds}
    return DriftResult(
        drift_share=share,
        drift_share_threshold=settings.drift_share_threshold,
        drifted_columns=drifted,
        # Without the champions' importance there is no weighing: the share says it all.
        weighted_drift=weighted if len(counted) and importance is not None else float("nan"),
        weighted_drift_threshold=settings.weighted_drift_threshold,
        drift_share_all=float(table["drifted"].mean()) if len(table) else float("nan"),
        ageing_drifted=table.index[table["drifted"] & table["ageing"]].tolist(),
        age_matched_on=age if age_matched else None,
        columns=table,
        predictions=preds,
        skipped=skipped,
        n_reference=len(ref),
        n_current=len(cur),
        n_reference_rows=len(ref_all),
        n_current_rows=len(cur_all),
        sample_size=settings.sample_size,
        seed=settings.seed,
        reference_sample=_evidently_frame(ref, all_kinds),
        current_sample=_evidently_frame(cur, all_kinds),
    )


def _evidently_snapshot(result: DriftResult):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = result.columns
    numerical = [*features.index[features["kind"] == NUMERICAL], *result.predictions.index]
    categorical = list(features.index[features["kind"] == CATEGORICAL])
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    metrics: list[Any] = []
    if len(features):
        metrics.append(
            DataDriftPreset(
                columns=list(features.index),
                per_column_method=features["method"].to_dict(),
                per_column_threshold=features["threshold"].to_dict(),
                drift_share=result.drift_share_threshold,
            )
        )
    for name, row in result.predictions.iterrows():
        metrics.append(ValueDrift(column=name, method=row["method"], threshold=row["threshold"]))
    if not metrics:
        raise ValueError("no column could be tested, so there is no drift report to write")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Report(metrics).run(
            current_data=Dataset.from_pandas(
                result.current_sample.reset_index(drop=True), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                result.reference_sample.reset_index(drop=True), data_definition=definition
            ),
        )


def evidently_values(snapshot) -> dict[str, float]:
    """Column -> drift score from the `ValueDrift` metrics of an Evidently snapshot."""
    out = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift"):
            out[config["column"]] = float(metric["value"])
    return out
