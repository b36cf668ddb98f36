"""What the HTTP service adds to the scoring core: payloads, validation, lookup, auth and limits.

`serving.service.RetainService` is a thin BentoML class over `ServiceCore`; everything here is
plain Python (pydantic, NumPy, pandas, an ASGI callable) and can be tested without a server.

- `ScoreRequest` / `AtRiskRequest`: the request bodies (pydantic; BentoML answers 400 with the
  field path and what was expected when one does not validate).
- `RecordReader`: feature records (JSON objects, one per customer) checked against the champion
  models' feature schemas, every error naming `records.<i>.<feature>` and the type expected, and
  turned into the float64 matrix the boosters predict on without building a DataFrame.
- `score_matrix`: the scoring core's own functions (`churn_probability`, `clv_values`,
  `value_columns`, `explain`) on those matrices: the same numbers and reasons as
  `serving.scoring.score_frame` on the same customers, at a fraction of the cost for one row.
- `SnapshotStore`: the latest scored snapshot (`serving.batch`), reloaded when `scores/LATEST`
  changes; customer ids are looked up in it, with an error per unknown id, and `/at_risk` reads
  its ranked list.
- `Guard`: ASGI middleware. Every path except the health and readiness probes needs
  `Authorization: Bearer <key>` (constant-time comparison against every accepted key); bodies
  over `service.max_request_bytes` get 413, bodies that are not JSON 415.
"""

from __future__ import annotations

import difflib
import hmac
import json
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from configs import Settings
from serving.columns import REASON_COLUMNS
from serving.scoring import (
    Champions,
    churn_probability,
    clv_values,
    explain,
    feature_matrix,
    value_columns,
)
from training.models import FeatureSchema

# How `retain serve` tells the service process where things are (read only by serving.service).
ENV_TRACKING = "MLFLOW_TRACKING_URI"
ENV_DATA = "RETAIN_DATA_DIR"
ENV_CONFIG = "RETAIN_CONFIG"
ENV_KEYS = "RETAIN_API_KEYS"
# Probes a load balancer or orchestrator calls without a key (BentoML serves all three).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
# Keys a feature record may carry besides the models' features.
RECORD_ID = "customer_id"
RECORD_EXTRAS = frozenset({RECORD_ID, "segment"})
Tier = Literal["high", "medium", "low"]
# The types json.loads gives for scalars (exact types: an isinstance check on ABCs costs more
# than the rest of reading a record).
_NUMBERS = frozenset({float, int, bool})
_SCALARS = frozenset({str, float, int, bool})


class Refused(Exception):
    """A request the service answers with `status` and `{"error": message}` (not a crash)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- payloads


class ScoreRequest(BaseModel):
    """Customers to score: either their ids, looked up in the latest scored snapshot, or their
    feature records (one JSON object per customer, the features `retain features` writes)."""

    model_config = ConfigDict(extra="forbid", title="ScoreRequest")

    customer_ids: list[StrictStr] | None = Field(
        default=None,
        description="Customer ids to look up in the latest scored snapshot (`retain score`); "
        "an unknown id gets an error in its own result, the others are scored.",
        examples=[["C0000042", "C0000043"]],
    )
    records: list[dict[str, Any]] | None = Field(
        default=None,
        description="Feature records: every feature of the champion models (null for a missing "
        "value), optionally `customer_id` to label the result.",
    )
    reasons: StrictBool = Field(
        default=True, description="Also write up to three reasons for each customer's risk."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ScoreRequest:
        if self.customer_ids is not None and self.records is not None:
            raise ValueError(
                "give either 'customer_ids' or 'records', not both (send two requests)"
            )
        if self.customer_ids is None and self.records is None:
            raise ValueError(
                "give the customers to score: 'customer_ids' (a list of ids in the latest "
                "scored snapshot) or 'records' (a list of feature records)"
            )
        return self


class AtRiskRequest(BaseModel):
    """The top of the latest ranked list, optionally only some segments and tiers."""

    model_config = ConfigDict(extra="forbid", title="AtRiskRequest")

    n: StrictInt | None = Field(
        default=None, ge=1, description="How many customers (default service.at_risk_default_n)."
    )
    segment: list[StrictStr] | None = Field(
        default=None,
        description="Only these segments (one name or a list).",
        examples=[["enterprise"]],
    )
    tier: list[Tier] | None = Field(
        default=None,
        description="Only these tiers (one or a list of high, medium, low).",
        examples=[["high", "medium"]],
    )

    @field_validator("segment", "tier", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Score(BaseModel):
    segment: str
    churn_probability: float
    clv: float
    clv_low: float
    clv_high: float
    value_at_risk: float
    tier: Tier
    reasons: list[str]
    churn_model_version: str
    clv_model_version: str


class ScoreResult(BaseModel):
    """One requested customer, in request order: a score, or the error that kept it out."""

    customer_id: str | None
    score: Score | None = None
    error: str | None = None


class ScoreResponse(BaseModel):
    results: list[ScoreResult]
    scored: int
    failed: int
    snapshot_as_of: str | None = Field(
        default=None, description="The cutoff of the snapshot the ids were looked up in."
    )


class RankedScore(Score):
    rank: int = Field(description="Position in the whole ranked list (1 = call first).")
    customer_id: str


class AtRiskResponse(BaseModel):
    as_of: str
    matching: int = Field(description="Customers in the ranked list that pass the filters.")
    customers: list[RankedScore]


def invalid(
    title: str, errors: Iterable[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
    """A pydantic ValidationError from (location, message, input) triples, so a check made
    after parsing answers exactly like pydantic's own (400 with `detail[].loc` and `msg`)."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("invalid_value", "{message}", {"message": message}),
            loc=loc,
            input=value,
        )
        for loc, message, value in errors
    ]
    return ValidationError.from_exception_data(title, details)


def invalid_field(
    title: str, loc: tuple[str | int, ...], message: str, value: Any
) -> ValidationError:
    return invalid(title, [(loc, message, value)])


# --------------------------------------------------------------------------- feature records


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class RecordReader:
    """Feature records checked against the models' schemas and turned into their matrices.

    A record must hold every feature of the models (null for a missing value, as NaN in a
    features frame), numbers for numeric features and strings for categorical ones; a value
    outside a categorical feature's training levels is missing to the model, as in batch
    scoring. `customer_id` and `segment` may come along; any other key is refused, so a typo
    cannot quietly turn a feature into a missing value."""

    def __init__(self, schemas: Sequence[FeatureSchema]) -> None:
        columns: list[str] = []
        categorical: set[str] = set()
        for schema in schemas:
            columns += [c for c in schema.columns if c not in columns]
            categorical |= set(schema.categories)
        for schema in schemas:
            clash = [c for c in schema.columns if c in categorical and c not in schema.categories]
            if clash:
                raise ValueError(f"features {clash} are categorical in one model, not the other")
        self.columns: tuple[str, ...] = tuple(columns)
        self.position = {c: j for j, c in enumerate(columns)}
        self.categorical = frozenset(categorical)
        self._plans: dict[int, tuple[np.ndarray, np.ndarray, list[tuple[int, int, dict]]]] = {}
        for schema in schemas:
            numeric = [j for j, c in enumerate(schema.columns) if c not in schema.categories]
            cats = [
                (j, self.position[c], {level: k for k, level in enumerate(schema.categories[c])})
                for j, c in enumerate(schema.columns)
                if c in schema.categories
            ]
            self._plans[id(schema)] = (
                np.asarray(numeric, dtype=np.intp),
                np.asarray([self.position[schema.columns[j]] for j in numeric], dtype=np.intp),
                cats,
            )

    def read(self, records: Sequence[dict[str, Any]], title: str = "ScoreRequest") -> RecordBatch:
        """The records as values in `self.columns` order, or a ValidationError listing every
        problem as `records.<i>.<feature>`."""
        n, width = len(records), len(self.columns)
        values = np.empty((n, width), dtype=object)
        ids: list[str | None] = [None] * n
        segments = np.full(n, "", dtype=object)
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        position, categorical = self.position, self.categorical
        for i, record in enumerate(records):
            row = values[i]
            seen = 0
            for key, value in record.items():
                j = position.get(key)
                if j is None:
                    if key == RECORD_ID:
                        if isinstance(value, str):
                            ids[i] = value
                        elif value is not None:
                            errors.append(
                                (("records", i, key), "expected the customer id as a string", value)
                            )
                    elif key not in RECORD_EXTRAS:
                        errors.append((("records", i, key), self._unknown(key), value))
                    continue
                seen += 1
                if key in categorical:
                    if value is None:
                        row[j] = np.nan
                    elif type(value) in _SCALARS or isinstance(value, str | Real):
                        row[j] = value
                    else:
                        errors.append(
                            (
                                ("records", i, key),
                                "expected a string (a categorical feature) or null",
                                value,
                            )
                        )
                elif value is None:
                    row[j] = np.nan
                elif type(value) in _NUMBERS or isinstance(value, Real):  # true/false count as 1/0
                    try:
                        row[j] = float(value)
                    except OverflowError:
                        errors.append(
                            (("records", i, key), "expected a number within float range", value)
                        )
                else:
                    errors.append(
                        (
                            ("records", i, key),
                            "expected a number (a numeric feature) or null",
                            value,
                        )
                    )
            segment = record.get("segment")
            if not _is_missing(segment):
                segments[i] = str(segment)
            if seen < width:
                missing = [c for c in self.columns if c not in record]
                shown = ", ".join(missing[:10]) + (
                    f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                )
                errors.append(
                    (
                        ("records", i),
                        f"missing {len(missing)} of the models' {width} features: {shown} "
                        "(send null for a value that is not known)",
                        None,
                    )
                )
        if errors:
            raise invalid(title, errors)
        return RecordBatch(values, ids, segments)

    def _unknown(self, key: str) -> str:
        close = difflib.get_close_matches(key, self.columns, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"not a feature of the champion models{hint}"

    def matrix(self, values: np.ndarray, schema: FeatureSchema) -> np.ndarray:
        """Values in `self.columns` order as `schema`'s float64 matrix: the same numbers as
        `serving.scoring.feature_matrix` on a features frame holding them."""
        numeric, source, cats = self._plans[id(schema)]
        M = np.empty((len(values), len(schema.columns)), dtype=np.float64)
        if len(values):
            M[:, numeric] = values[:, source].astype(np.float64)
            for j, p, levels in cats:
                M[:, j] = [
                    levels.get(v, np.nan) if isinstance(v, str) else _code(levels, v)
                    for v in values[:, p]
                ]
        return M


def _code(levels: dict, value: Any) -> float:
    if _is_missing(value):
        return np.nan
    try:
        return levels.get(value, np.nan)
    except TypeError:
        return np.nan


@dataclass(frozen=True)
class RecordBatch:
    values: np.ndarray  # (n, len(RecordReader.columns)) objects: floats, NaN, category values
    ids: list[str | None]
    segments: np.ndarray


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Rows:
    """Customers ready to score: the matrices of both models and the values reasons quote."""

    churn: np.ndarray  # feature matrix of the churn schema
    clv: np.ndarray  # feature matrix of the CLV schema (the same array when the schemas agree)
    values: Callable[[], pd.DataFrame]  # churn-schema features as a frame, built only for reasons
    segments: np.ndarray


def contributions(champions: Champions, M: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions of the churn booster on a feature matrix (bias column dropped), as
    `ChurnModel.contributions` computes them from a frame."""
    booster = champions.churn.booster
    c = booster.predict(M, pred_contrib=True, num_iteration=booster.best_iteration)
    return np.asarray(c, dtype=np.float64)[:, :-1]


def score_matrix(
    rows: Rows, champions: Champions, settings: Settings, *, reasons: bool
) -> dict[str, np.ndarray]:
    """`serving.scoring.score_frame`'s columns (but `customer_id`) for prepared rows, as arrays."""
    n = len(rows.churn)
    p = churn_probability(champions.churn, rows.churn)
    clv, low, high = clv_values(champions.clv, rows.clv)
    out = {"segment": rows.segments, **value_columns(p, clv, low, high, settings)}
    if reasons and n:
        text = reasons_text(rows, champions)
    else:
        text = np.full((n, len(REASON_COLUMNS)), "", dtype=object)
    for k, col in enumerate(REASON_COLUMNS):
        out[col] = text[:, k]
    return out


def reasons_text(rows: Rows, champions: Champions) -> np.ndarray:
    """`serving.scoring.reasons_for` on prepared rows: (n, 3) reasons, "" where fewer."""
    X = rows.values()
    C = pd.DataFrame(
        contributions(champions, rows.churn),
        index=X.index,
        columns=list(champions.churn.schema.columns),
    )
    return explain(C, X).to_numpy()


def _scores(arrays: dict[str, np.ndarray], versions: tuple[str, str]) -> list[Score]:
    n = len(arrays["churn_probability"])
    reasons = zip(*(arrays[c] for c in REASON_COLUMNS), strict=True)
    churn_v, clv_v = versions
    return [
        Score(
            segment=str(arrays["segment"][i]),
            churn_probability=float(arrays["churn_probability"][i]),
            clv=float(arrays["clv"][i]),
            clv_low=float(arrays["clv_low"][i]),
            clv_high=float(arrays["clv_high"][i]),
            value_at_risk=float(arrays["value_at_risk"][i]),
            tier=arrays["tier"][i],
            reasons=[r for r in text if r],
            churn_model_version=churn_v,
            clv_model_version=clv_v,
        )
        for i, text in zip(range(n), reasons, strict=True)
    ]


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class Snapshot:
    """The latest scored population, held as matrices (no per-request DataFrame slicing)."""

    as_of: pd.Timestamp
    ranked: pd.DataFrame  # serving.batch's ranked list (SCORE_COLUMNS), row 0 first
    ids: pd.Index  # customer id of each feature row
    churn: np.ndarray  # feature matrix (churn schema), one row per customer
    clv: np.ndarray
    categorical: dict[str, np.ndarray]  # raw values of the categorical features, by feature row
    segments: np.ndarray  # by feature row
    ranked_row: np.ndarray  # feature row of each ranked row
    known_segments: tuple[str, ...]

    @classmethod
    def build(
        cls, as_of, ranked: pd.DataFrame, features: pd.DataFrame, champions: Champions
    ) -> Snapshot:
        features = features.copy(deep=False)
        features.index = features.index.astype(str)
        if not features.index.is_unique:
            raise ValueError("its features repeat customer ids")
        for schema in (champions.churn.schema, champions.clv.schema):
            lacking = [c for c in schema.columns if c not in features.columns]
            if lacking:
                raise ValueError(
                    f"its features lack {len(lacking)} of the serving models' features "
                    f"(e.g. {lacking[:3]}): it was scored for other models"
                )
        churn = feature_matrix(features, champions.churn.schema)
        same = champions.clv.schema == champions.churn.schema
        clv = churn if same else feature_matrix(features, champions.clv.schema)
        categorical = {
            c: features[c].astype(object).to_numpy()
            for c in champions.churn.schema.categories
            if c in features.columns
        }
        ranked = ranked.reset_index(drop=True)
        ranked_row = features.index.get_indexer(ranked["customer_id"].astype(str))
        if (ranked_row < 0).any():
            raise ValueError("its ranked list has customers its features lack")
        segments = np.full(len(features), "", dtype=object)
        segments[ranked_row] = ranked["segment"].astype(str).to_numpy()
        return cls(
            as_of=as_of,
            ranked=ranked,
            ids=features.index,
            churn=churn,
            clv=clv,
            categorical=categorical,
            segments=segments,
            ranked_row=ranked_row,
            known_segments=tuple(sorted(set(ranked["segment"].astype(str)))),
        )

    def rows(self, positions: np.ndarray, champions: Champions) -> Rows:
        churn = self.churn[positions]
        clv = churn if self.clv is self.churn else self.clv[positions]
        columns = list(champions.churn.schema.columns)

        def values() -> pd.DataFrame:
            data = churn.astype(object)
            for c, raw in self.categorical.items():
                data[:, columns.index(c)] = raw[positions]
            return pd.DataFrame(data, index=self.ids[positions], columns=columns, dtype=object)

        return Rows(churn, clv, values, self.segments[positions])


class SnapshotStore:
    """The newest snapshot under `<data_dir>/scores/`, loaded once and again whenever
    `scores/LATEST` is replaced (checked with one `stat` per request that needs it)."""

    def __init__(self, data_dir: Path | None, champions: Champions, load: Callable) -> None:
        self.data_dir = data_dir
        self._champions = champions
        self._load = load  # serving.batch.load_latest_snapshot
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._snapshot: Snapshot | None = None

    def _pointer_stamp(self) -> tuple | None:
        if self.data_dir is None:
            return None
        try:
            st = os.stat(Path(self.data_dir) / "scores" / "LATEST")
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def fresh(self) -> bool:
        """Whether `get` would answer from memory (no loading, no waiting on a load)."""
        stamp = self._pointer_stamp()
        return stamp is not None and stamp == self._stamp and self._snapshot is not None

    def get(self) -> Snapshot:
        stamp = self._pointer_stamp()
        if stamp is not None and stamp == self._stamp and self._snapshot is not None:
            return self._snapshot
        if self.data_dir is None:
            raise Refused(
                404,
                "no scored snapshot: the service was started without a data folder; start it "
                "with `retain serve --data DIR` after `retain score --data DIR --as-of DATE "
                "--out FILE`, or send feature records instead of customer ids",
            )
        with self._lock:
            if stamp is not None and stamp == self._stamp and self._snapshot is not None:
                return self._snapshot
            try:
                as_of, ranked, features = self._load(self.data_dir)
            except FileNotFoundError as exc:
                raise Refused(404, f"{exc} (feature records can be scored without one)") from None
            try:
                self._snapshot = Snapshot.build(as_of, ranked, features, self._champions)
            except ValueError as exc:
                raise Refused(
                    503,
                    f"the scored snapshot of {as_of.date()} under {self.data_dir} cannot be "
                    f"used: {exc}; run `retain score` again",
                ) from None
            self._stamp = stamp
            return self._snapshot


# --------------------------------------------------------------------------- the service core


@dataclass
class ServiceCore:
    """Everything `/score` and `/at_risk` do, given loaded champions and settings."""

    champions: Champions
    settings: Settings
    snapshots: SnapshotStore
    reader: RecordReader = field(init=False)

    def __post_init__(self) -> None:
        schemas = [self.champions.churn.schema]
        if self.champions.clv.schema != self.champions.churn.schema:
            schemas.append(self.champions.clv.schema)
        self.reader = RecordReader(schemas)

    @property
    def versions(self) -> tuple[str, str]:
        return self.champions.churn_version, self.champions.clv_version

    def _check_items(self, n: int, what: str) -> None:
        limit = self.settings.service.max_request_items
        if n > limit:
            raise Refused(
                413,
                f"{n:,} {what} in one request; the limit is {limit:,} "
                "(service.max_request_items): split the request",
            )

    def score(
        self,
        customer_ids: list[str] | None = None,
        records: list[dict[str, Any]] | None = None,
        reasons: bool = True,
    ) -> ScoreResponse:
        if records is not None:
            self._check_items(len(records), "records")
            return self._score_records(records, reasons)
        assert customer_ids is not None
        self._check_items(len(customer_ids), "customer ids")
        return self._score_ids(customer_ids, reasons)

    def _score_records(self, records: list[dict[str, Any]], reasons: bool) -> ScoreResponse:
        batch = self.reader.read(records)
        ch = self.champions
        churn = self.reader.matrix(batch.values, ch.churn.schema)
        clv = (
            churn
            if ch.clv.schema == ch.churn.schema
            else self.reader.matrix(batch.values, ch.clv.schema)
        )
        columns = list(ch.churn.schema.columns)
        take = [self.reader.position[c] for c in columns]

        def values() -> pd.DataFrame:
            return pd.DataFrame(batch.values[:, take], columns=columns, dtype=object)

        scores = _scores(
            score_matrix(
                Rows(churn, clv, values, batch.segments), ch, self.settings, reasons=reasons
            ),
            self.versions,
        )
        results = [
            ScoreResult(customer_id=cid, score=s) for cid, s in zip(batch.ids, scores, strict=True)
        ]
        return ScoreResponse(results=results, scored=len(results), failed=0)

    def _score_ids(self, customer_ids: list[str], reasons: bool) -> ScoreResponse:
        snap = self.snapshots.get()
        found = (
            snap.ids.get_indexer(pd.Index(customer_ids, dtype=object))
            if customer_ids
            else np.empty(0, dtype=np.intp)
        )
        known = np.flatnonzero(found >= 0)
        scores = _scores(
            score_matrix(
                snap.rows(found[known], self.champions),
                self.champions,
                self.settings,
                reasons=reasons,
            ),
            self.versions,
        )
        results: list[ScoreResult] = []
        it = iter(scores)
        for cid, pos in zip(customer_ids, found, strict=True):
            if pos >= 0:
                results.append(ScoreResult(customer_id=cid, score=next(it)))
            else:
                results.append(
                    ScoreResult(
                        customer_id=cid,
                        error=f"unknown customer id: not in the scored snapshot of "
                        f"{snap.as_of.date()} (customers who signed up or left since are not "
                        "in it; send their feature record instead)",
                    )
                )
        return ScoreResponse(
            results=results,
            scored=len(known),
            failed=len(customer_ids) - len(known),
            snapshot_as_of=snap.as_of.isoformat(),
        )

    def at_risk(
        self,
        n: int | None = None,
        segment: Sequence[str] | None = None,
        tier: Sequence[str] | None = None,
    ) -> AtRiskResponse:
        n = self.settings.service.at_risk_default_n if n is None else n
        limit = self.settings.service.max_request_items
        if n > limit:
            message = f"at most {limit:,} customers per request (service.max_request_items)"
            raise invalid_field("AtRiskRequest", ("n",), message, n)
        snap = self.snapshots.get()
        for name in segment or ():
            if name not in snap.known_segments:
                message = (
                    f"unknown segment {name!r}; the latest ranked list has "
                    f"{list(snap.known_segments)}"
                )
                raise invalid_field("AtRiskRequest", ("segment",), message, name)
        ranked = snap.ranked
        mask = np.ones(len(ranked), dtype=bool)
        if segment:
            mask &= ranked["segment"].astype(str).isin(segment).to_numpy()
        if tier:
            mask &= ranked["tier"].isin(tier).to_numpy()
        picked = np.flatnonzero(mask)
        top = picked[:n]
        rows = ranked.iloc[top]
        text = rows[list(REASON_COLUMNS)].to_numpy(dtype=object)
        # The ranked list has reasons for its top scoring.reasons_top_n only; write them for the
        # others shown here when the serving churn model is the one that ranked them.
        blank = np.flatnonzero(
            (text == "").all(axis=1)
            & (rows["churn_model_version"].astype(str) == self.champions.churn_version).to_numpy()
        )
        if len(blank):
            text[blank] = reasons_text(
                snap.rows(snap.ranked_row[top[blank]], self.champions), self.champions
            )
        customers = [
            RankedScore(
                rank=int(r) + 1,
                customer_id=str(row.customer_id),
                segment=str(row.segment),
                churn_probability=float(row.churn_probability),
                clv=float(row.clv),
                clv_low=float(row.clv_low),
                clv_high=float(row.clv_high),
                value_at_risk=float(row.value_at_risk),
                tier=row.tier,
                reasons=[t for t in reasons if t],
                churn_model_version=str(row.churn_model_version),
                clv_model_version=str(row.clv_model_version),
            )
            for r, row, reasons in zip(top, rows.itertuples(index=False), text, strict=True)
        ]
        return AtRiskResponse(
            as_of=snap.as_of.isoformat(), matching=len(picked), customers=customers
        )


# --------------------------------------------------------------------------- transport guard

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def parse_api_keys(value: str | None) -> tuple[str, ...]:
    """Accepted keys from a comma-separated list (blanks ignored)."""
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


class Guard:
    """ASGI middleware in front of every route: API key, body size, JSON content type."""

    def __init__(
        self,
        app: Callable,
        *,
        keys: Sequence[str],
        max_bytes: int,
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.max_bytes = max_bytes
        self.open_paths = open_paths

    def authorised(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None or not self.keys:
            return False
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        ok = False
        for key in self.keys:  # no early exit: the time taken does not tell which key matched
            ok |= hmac.compare_digest(token, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if not self.authorised(headers):
            await _reply(
                send,
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' with a "
                "key listed in RETAIN_API_KEYS (`retain serve` says where it stored its key)",
                extra=[(b"www-authenticate", b'Bearer realm="retain"')],
            )
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in headers if k == b"content-type"), b"application/json")
        if content_type.split(b";")[0].strip().lower() != b"application/json":
            await _reply(
                send,
                415,
                f"send the body as JSON with 'Content-Type: application/json', not {content_type.decode(errors='replace')!r}",
            )
            return
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, self._too_large(int(declared)))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _reply(send, 413, self._too_large(None))
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else "more"
        return f"request body of {got} is over the limit of {self.max_bytes:,} bytes (service.max_request_bytes): split the request"


async def _reply(
    send: Send, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
