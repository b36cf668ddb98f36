"""Feature records (JSON objects, one per customer) checked against the champion models' feature
schemas, every error naming `records.<i>.<feature>` and the type expected, and turned into the
float64 matrices the models predict on without building a DataFrame per request.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from model.schema import FeatureSchema
from serving.http.payloads import invalid

# Keys a feature record may carry besides the models' features.
RECORD_ID = "customer_id"
RECORD_EXTRAS = frozenset({RECORD_ID, "segment"})
# The types json.loads gives for scalars (exact types: an isinstance check on ABCs costs more
# than the rest of reading a record).
_NUMBERS = frozenset({float, int, bool})
_SCALARS = frozenset({str, float, int, bool})


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
        `model.schema.feature_matrix` on a features frame holding them."""
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
