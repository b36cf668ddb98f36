"""The feature schema of a trained model and the one conversion of a features frame into the
matrix its boosters use.

- `FeatureSchema`: the feature columns, in order, and the levels of each categorical column.
- `feature_matrix`: a features frame as the (n, features) float64 matrix, the schema's columns in
  order (a missing column is all NaN, an extra one ignored), categoricals as their code among the
  training levels (NaN when missing or unseen). Training fits on it, batch scoring and the
  service predict on it: preprocessing is written once.
- `align_categories`: snapshots from several cutoffs on common categorical levels, so they stack.
- `check_training_frame`: the clear error for a frame LightGBM cannot learn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype, is_object_dtype, is_string_dtype


@dataclass(frozen=True)
class FeatureSchema:
    """The feature columns, in order, and the levels of each categorical column."""

    columns: tuple[str, ...]
    categories: dict[str, tuple[Any, ...]]

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> FeatureSchema:
        check_training_frame(X, "X")
        return cls(
            columns=tuple(X.columns),
            categories={
                col: tuple(X[col].cat.categories.tolist())
                for col in X.columns
                if isinstance(X[col].dtype, pd.CategoricalDtype)
            },
        )

    @property
    def categorical(self) -> list[str]:
        """The categorical columns, in column order."""
        return [c for c in self.columns if c in self.categories]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "categories": {col: list(levels) for col, levels in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        try:
            columns = tuple(data["columns"])
            categories = {col: tuple(levels) for col, levels in data["categories"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                "a feature schema needs 'columns' (a list of names) and 'categories' "
                f"(a mapping of column -> list of levels); got {data!r}"
            ) from exc
        unknown = sorted(set(categories) - set(columns))
        if unknown:
            raise ValueError(
                f"feature schema has categories for columns it does not list: {unknown}"
            )
        return cls(columns=columns, categories=categories)


def align_categories(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """The frames with the first frame's column order and, for every column that is categorical
    in any frame, the sorted union of its levels across all frames, so snapshots from different
    cutoffs stack with consistent category codes. Returns new frames; the inputs are untouched."""
    frames = list(frames)
    if not frames:
        return []
    columns = list(frames[0].columns)
    for i, frame in enumerate(frames[1:], start=1):
        if set(frame.columns) != set(columns):
            missing = sorted(set(columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(columns))
            raise ValueError(
                f"frame {i} does not have the columns of frame 0: missing {missing}, extra {extra}"
            )
    categorical = [
        col for col in columns if any(isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames)
    ]
    levels: dict[str, list[Any]] = {}
    for col in categorical:
        seen: set[Any] = set()
        for f in frames:
            s = f[col]
            seen.update(
                s.cat.categories
                if isinstance(s.dtype, pd.CategoricalDtype)
                else s.dropna().unique()
            )
        levels[col] = _sorted(seen)
    out = []
    for f in frames:
        g = f.loc[:, columns].copy()
        for col in categorical:
            g[col] = pd.Categorical(g[col], categories=levels[col])
        out.append(g)
    return out


def check_frame(X: pd.DataFrame, schema: FeatureSchema) -> None:
    """A clear error unless `X` is a DataFrame with at least one of the schema's columns."""
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of features, got {type(X).__name__}")
    present = [col for col in schema.columns if col in X.columns]
    if schema.columns and not present:
        raise ValueError(
            f"the frame has none of the model's {len(schema.columns)} feature columns "
            f"(e.g. {list(schema.columns[:5])}); it has {list(X.columns[:5])}"
        )


def feature_matrix(X: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """`X` as the (n, features) float64 matrix of `schema`: its columns in order (missing ones
    NaN, extra ones ignored), numbers as float64, categoricals as their code among the training
    levels (NaN when missing or unseen, which LightGBM treats as missing)."""
    check_frame(X, schema)
    out = np.full((len(X), len(schema.columns)), np.nan, dtype=np.float64)
    position = {col: j for j, col in enumerate(schema.columns)}
    dtypes = X.dtypes
    numeric = []
    for col in schema.columns:
        if col not in dtypes.index:
            continue
        if col in schema.categories:
            out[:, position[col]] = _category_codes(X[col], schema.categories[col])
        elif isinstance(dtypes[col], np.dtype) and dtypes[col].kind in "fiub":
            numeric.append(col)
        else:
            out[:, position[col]] = _as_float(X[col], col)
    if numeric:
        # One copy of all the plain numeric columns: column by column cost ~0.1 ms each, which
        # dominated scoring one customer (the real-time loop).
        out[:, [position[c] for c in numeric]] = X[numeric].to_numpy(dtype=np.float64)
    return out


def _category_codes(s: pd.Series, levels: tuple) -> np.ndarray:
    """Codes of `s` among `levels` as float64, NaN for missing or unseen values. Categoricals
    are mapped through their (few) categories, not value by value."""
    index = pd.Index(list(levels), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        lookup = index.get_indexer(pd.Index(s.cat.categories, dtype=object))
        codes = s.cat.codes.to_numpy()
        mapped = np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1)
    else:
        mapped = index.get_indexer(s.astype(object).to_numpy())
    return np.where(mapped >= 0, mapped, np.nan)


def _as_float(s: pd.Series, col: str) -> np.ndarray:
    if isinstance(s.dtype, pd.CategoricalDtype) or not (
        is_numeric_dtype(s.dtype) or is_bool_dtype(s.dtype)
    ):
        raise ValueError(
            f"feature '{col}' should be numeric (it was numeric in training) but has dtype "
            f"{s.dtype}"
        )
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # mixed types (e.g. str and int levels): still deterministic
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def check_training_frame(X: Any, name: str) -> None:
    """A clear error unless `X` is a non-empty DataFrame of unique, LightGBM-usable columns."""
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame of features, got {type(X).__name__}")
    if X.empty or X.shape[1] == 0:
        raise ValueError(f"{name} is empty ({X.shape[0]} rows, {X.shape[1]} columns)")
    if not X.columns.is_unique:
        raise ValueError(
            f"{name} has repeated column names: {sorted(X.columns[X.columns.duplicated()])}"
        )
    bad = [
        f"{col} ({X[col].dtype})"
        for col in X.columns
        if not isinstance(X[col].dtype, pd.CategoricalDtype)
        and (is_object_dtype(X[col].dtype) or is_string_dtype(X[col].dtype))
    ]
    if bad:
        raise ValueError(
            f"{name} has text columns LightGBM cannot use: {bad}; make them pandas categoricals "
            "(build_features does) or drop them"
        )
