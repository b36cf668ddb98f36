"""Import mappings: a YAML file that turns a foreign export into raw contract tables.

This module owns the mapping schema (pydantic models, `load_mapping`), reading the export itself
(`read_export`: CSV/TSV/TXT, Parquet or Excel, or a folder holding exactly one such file) and
applying a mapping (`apply_mapping`). Per contract table a mapping gives an optional row filter,
then each output column from a source column, a constant, an expression, conditional constants
or the row number, with an optional cast, and optionally one row per key (`group_by`).

The tables it returns are raw: `features.validate.validate` still decides which rows are kept and
which are quarantined. A mapping never drops a row for being bad; only a `filter` drops rows, by
an explicit rule. A cast never loses a value either: when some present values cannot be
converted the column stays text, so validation quarantines exactly those rows as unparseable.

Shape of a mapping file (see `configs/mappings/online_retail.yaml`):

    source:                       # optional read options
      csv: {encoding: latin-1, delimiter: ",", decimal: ".", dtype: {CustomerID: str}}
      excel: {sheet: 0, dtype: {CustomerID: str}}
    tables:
      events:
        filter: "Quantity != 0"   # optional, over source columns
        columns:
          customer_id: {from: CustomerID, cast: id}   # or the shorthand `customer_id: CustomerID`
          ts: {from: InvoiceDate, cast: datetime, format: "%m/%d/%Y %H:%M", dayfirst: false}
          channel: {value: web}
          amount: {expr: "Quantity * UnitPrice"}
          event_type: {cases: [{when: "InvoiceNo.str.startswith('C')", value: refund}], default: purchase}
          source_row: {row_number: true}
      customers:
        columns: {customer_id: {from: CustomerID, cast: id}, signup_date: {from: InvoiceDate, cast: datetime}}
        group_by: customer_id
        aggregate: {signup_date: min}
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pandas.api import types as ptypes
from pandas.errors import UndefinedVariableError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.contract import FALSE_WORDS, TABLE_NAMES, TRUE_WORDS, ContractError

Cast = Literal["str", "id", "int", "float", "datetime", "bool"]
Aggregate = Literal["min", "max", "first", "last", "sum", "mean", "count"]
ReadDtype = Literal["str", "int", "float", "bool"]
Scalar = str | bool | int | float | None

_READ_DTYPES: dict[str, Any] = {"str": str, "int": "Int64", "float": "float64", "bool": "boolean"}
# A digits-then-".0" string is an integral float written out as text (CSV or Excel ids with gaps).
_FLOAT_WRITTEN_ID = r"^([+-]?\d+)\.0*$"

_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_ALL_SUFFIXES = _CSV_SUFFIXES + _PARQUET_SUFFIXES + _EXCEL_SUFFIXES
# Which of several copies of one export to read: Parquet, then CSV, then Excel (the slowest).
_READ_COST = {"parquet": 0, "csv": 1, "excel": 2}
# Downloads often come with these next to the data; they are never the export.
_DOC_STEMS = {"readme", "license", "licence", "notice", "changelog", "citation"}


class MappingError(ValueError):
    """A mapping that cannot be used: the message names the key path or column and what was
    expected. Row-level problems in the export never raise; validation quarantines them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Strict):
    encoding: str = "utf-8"
    delimiter: str | None = Field(default=None, description="default: tab for .tsv, else comma")
    decimal: str = "."
    dtype: dict[str, ReadDtype] = {}


class ExcelOptions(_Strict):
    sheet: str | int = 0
    dtype: dict[str, ReadDtype] = {}


class SourceOptions(_Strict):
    csv: CsvOptions = CsvOptions()
    excel: ExcelOptions = ExcelOptions()


class Case(_Strict):
    when: str = Field(min_length=1)
    value: Scalar


_COLUMN_SOURCES = ("from_", "value", "expr", "cases", "row_number")


class ColumnSpec(_Strict):
    """One output column: exactly one of `from`, `value`, `expr`, `cases`, `row_number`."""

    from_: str | None = Field(default=None, alias="from")
    value: Scalar = None
    expr: str | None = Field(default=None, min_length=1)
    cases: list[Case] | None = Field(default=None, min_length=1)
    default: Scalar = None
    row_number: bool | None = None
    cast: Cast | None = None
    format: str | None = None
    dayfirst: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSpec:
        given = [k for k in _COLUMN_SOURCES if k in self.model_fields_set]
        names = ", ".join("from" if k == "from_" else k for k in _COLUMN_SOURCES)
        if len(given) != 1:
            shown = [("from" if k == "from_" else k) for k in given]
            raise ValueError(f"give exactly one of {names}; got {shown or 'none'}")
        if "default" in self.model_fields_set and self.cases is None:
            raise ValueError("'default' only goes with 'cases'")
        if self.row_number is False:
            raise ValueError("row_number: true is the only meaningful value")
        if (self.format is not None or self.dayfirst is not None) and self.cast != "datetime":
            raise ValueError("'format' and 'dayfirst' only go with cast: datetime")
        return self


class TableSpec(_Strict):
    filter: str | None = Field(default=None, min_length=1)
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    group_by: list[str] | None = Field(default=None, min_length=1)
    aggregate: dict[str, Aggregate] = {}

    @field_validator("group_by", mode="before")
    @classmethod
    def _one_key_as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _grouping(self) -> TableSpec:
        columns = list(self.columns)
        if self.group_by is None:
            if self.aggregate:
                raise ValueError("'aggregate' needs 'group_by' (the key columns)")
            return self
        stray = [k for k in self.group_by if k not in self.columns]
        if stray:
            raise ValueError(f"group_by {stray} not among the table's columns {columns}")
        stray = [c for c in self.aggregate if c not in self.columns or c in self.group_by]
        if stray:
            raise ValueError(
                f"aggregate {stray} must name non-key columns of the table; columns are {columns}"
            )
        bare = [c for c in columns if c not in self.group_by and c not in self.aggregate]
        if bare:
            raise ValueError(
                f"columns {bare} need an aggregate (min, max, first, last, sum, mean, count) "
                f"because group_by is set"
            )
        return self


class Mapping(_Strict):
    source: SourceOptions = SourceOptions()
    tables: dict[str, TableSpec] = Field(min_length=1)

    @field_validator("tables", mode="before")
    @classmethod
    def _known_tables(cls, v: Any) -> Any:
        if isinstance(v, dict):
            unknown = [k for k in v if k not in TABLE_NAMES]
            if unknown:
                raise ValueError(f"unknown table(s) {unknown}; expected any of {list(TABLE_NAMES)}")
        return v


# Loading


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the model at `loc` accepts, to say what would be right after an unknown key."""
    node: Any = Mapping
    for part in loc:
        node = _unwrap_optional(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = next(
                (f for n, f in node.model_fields.items() if (f.alias or n) == part),
                None,
            )
            if field is None:
                return None
            node = field.annotation
        elif typing.get_origin(node) in (dict, list):
            node = typing.get_args(node)[-1]
        else:
            return None
    node = _unwrap_optional(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return None


def _unwrap_optional(node: Any) -> Any:
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return node


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid mapping in {origin}:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        got_text = (
            "" if err["type"] == "missing" or isinstance(got, dict | list) else f" (got {got!r})"
        )
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            msg = "unknown key" + (f"; expected one of {allowed}" if allowed else "")
            got_text = ""
        lines.append(f"  {path}: {msg}{got_text}")
    return "\n".join(lines)


def mapping_from_dict(data: Any, origin: str = "<mapping>") -> Mapping:
    """Validate an already-parsed mapping; errors name the key path."""
    if not isinstance(data, dict):
        raise MappingError(
            f"{origin}: expected a mapping with a 'tables' key at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(_format_errors(exc, origin)) from None


def load_mapping(path: Path) -> Mapping:
    """Parse and validate a mapping YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    return mapping_from_dict(data, str(path))


# Reading the export


def _kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if not suffixes:
        return None
    last = suffixes[-1]
    if last in _COMPRESSION_SUFFIXES and len(suffixes) > 1 and suffixes[-2] in _CSV_SUFFIXES:
        return "csv"
    if last in _CSV_SUFFIXES:
        return "csv"
    if last in _PARQUET_SUFFIXES:
        return "parquet"
    if last in _EXCEL_SUFFIXES:
        return "excel"
    return None


def _is_aside(path: Path) -> bool:
    """Hidden files, Excel lock files and documentation next to the export."""
    name = path.name
    return name.startswith((".", "~$")) or name.split(".", 1)[0].lower() in _DOC_STEMS


def _single_file(folder: Path) -> Path:
    entries = sorted(folder.iterdir())
    found = [p for p in entries if p.is_file() and _kind(p) and not _is_aside(p)]
    if len(found) == 1:
        return found[0]
    stems = {re.sub(r"[^0-9a-z]", "", p.name.split(".", 1)[0].lower()) for p in found}
    if len(stems) == 1:
        # One export saved in several formats ("Online Retail.xlsx" next to
        # "online_retail.csv"): the same rows, so the quickest to read is taken.
        return min(found, key=lambda p: (_READ_COST[_kind(p)], p.name))
    if not found:
        raise ContractError(
            f"export folder {folder} holds no data file; expected exactly one "
            f"{'/'.join(_ALL_SUFFIXES)} file, found {[p.name for p in entries] or 'nothing'}"
        )
    raise ContractError(
        f"export folder {folder} holds {len(found)} data files {[p.name for p in found]}; "
        f"expected exactly one: keep one there or pass the file's path"
    )


def read_export(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The export as one frame, read with the mapping's source options; never fixes data."""
    path = Path(path)
    if path.is_dir():
        path = _single_file(path)
    elif not path.is_file():
        raise ContractError(f"cannot read export {path}: no such file or folder")
    kind = _kind(path)
    if kind is None:
        raise ContractError(
            f"cannot read export {path}: unsupported file type; expected one of "
            f"{', '.join(_ALL_SUFFIXES)} (CSV may be compressed, e.g. .csv.gz)"
        )
    try:
        if kind == "csv":
            opts = mapping.source.csv
            tab = ".tsv" in [s.lower() for s in path.suffixes]
            return pd.read_csv(
                path,
                sep=opts.delimiter or ("\t" if tab else ","),
                encoding=opts.encoding,
                decimal=opts.decimal,
                dtype={c: _READ_DTYPES[t] for c, t in opts.dtype.items()} or None,
                low_memory=False,
            )
        if kind == "parquet":
            return pd.read_parquet(path)
        opts_x = mapping.source.excel
        return pd.read_excel(
            path,
            sheet_name=opts_x.sheet,
            dtype={c: _READ_DTYPES[t] for c, t in opts_x.dtype.items()} or None,
        )
    except Exception as exc:
        raise ContractError(f"cannot read export {path}: {exc}") from exc


# Applying the mapping


def _evaluate(rows: pd.DataFrame, expr: str, where: str) -> pd.Series:
    try:
        result = rows.eval(expr, engine="python")
    except Exception as exc:
        hint = (
            f"; the export has columns {list(map(str, rows.columns))}"
            if isinstance(exc, UndefinedVariableError)
            else ""
        )
        raise MappingError(
            f"{where}: expression {expr!r} failed: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    if isinstance(result, pd.DataFrame):
        raise MappingError(
            f"{where}: expression {expr!r} gave a table, expected one value per row "
            f"(assignments are not allowed)"
        )
    if isinstance(result, pd.Series | np.ndarray):
        if len(result) != len(rows):
            raise MappingError(
                f"{where}: expression {expr!r} gave {len(result)} values for {len(rows)} rows; "
                f"expected one value per row"
            )
        if isinstance(result, pd.Series):
            return result.set_axis(rows.index)
        return pd.Series(result, index=rows.index)
    return pd.Series([result] * len(rows), index=rows.index)


def _condition(rows: pd.DataFrame, expr: str, where: str) -> np.ndarray:
    """A row mask; a missing result (e.g. `.str` on a non-text value) counts as false."""
    result = _evaluate(rows, expr, where)
    kind = ptypes.infer_dtype(result, skipna=True)
    if kind not in ("boolean", "empty"):
        raise MappingError(
            f"{where}: condition {expr!r} must be true or false per row, got {kind} values"
        )
    return result.eq(True).fillna(False).to_numpy(dtype=bool)


def _converted_or_text(converted: pd.Series, original: pd.Series, failed: np.ndarray) -> pd.Series:
    # Keeping the unconvertible values verbatim lets validation quarantine those rows as
    # unparseable instead of seeing them as missing.
    if not failed.any():
        return converted
    return converted.astype("string").where(~failed, original.astype("string"))


def _per_distinct(values: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`convert` applied once per distinct value: exports repeat the same id or timestamp on
    many lines, and text parsing is the slow part."""
    codes, uniques = pd.factorize(values)
    converted = convert(pd.Series(uniques))
    if not len(converted):
        return pd.Series(index=values.index, dtype=converted.dtype)
    out = converted.take(np.maximum(codes, 0)).where(codes >= 0)
    return out.set_axis(values.index)


def _normalised_ids(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    text = text.str.replace(_FLOAT_WRITTEN_ID, r"\1", regex=True)
    return text.mask((text == "").fillna(False))


def _as_id(values: pd.Series) -> pd.Series:
    return _per_distinct(values, _normalised_ids)


def _as_bool(values: pd.Series) -> pd.Series:
    if ptypes.is_bool_dtype(values):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(TRUE_WORDS).fillna(False).to_numpy()] = True
    out[text.isin(FALSE_WORDS).fillna(False).to_numpy()] = False
    return _converted_or_text(out, values, (values.notna() & out.isna()).to_numpy())


def _as_datetime(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    options: dict[str, Any] = {}
    if spec.format is not None:
        options["format"] = spec.format
    if spec.dayfirst is not None:
        options["dayfirst"] = spec.dayfirst

    def parse(text: pd.Series) -> pd.Series:
        # Naive stamps are taken as UTC, as the contract does.
        out = pd.to_datetime(text, errors="coerce", utc=True, **options)
        return _converted_or_text(out, text, (text.notna() & out.isna()).to_numpy())

    return _per_distinct(values, parse)


def _cast(values: pd.Series, spec: ColumnSpec, where: str) -> pd.Series:
    try:
        match spec.cast:
            case "str":
                return values.astype("string")
            case "id":
                return _as_id(values)
            case "bool":
                return _as_bool(values)
            case "datetime":
                return _as_datetime(values, spec)
        number = pd.to_numeric(values, errors="coerce").astype("float64")
        failed = (values.notna() & number.isna()).to_numpy()
        if spec.cast == "float":
            return _converted_or_text(number, values, failed)
        with np.errstate(invalid="ignore"):
            failed |= (number.notna() & (number != np.round(number))).to_numpy()
        whole = number.where(~failed).astype("Int64")
        return _converted_or_text(whole, values, failed)
    except MappingError:
        raise
    except Exception as exc:
        raise MappingError(
            f"{where}: cast {spec.cast!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _column(rows: pd.DataFrame, spec: ColumnSpec, where: str) -> pd.Series:
    if spec.from_ is not None:
        if spec.from_ not in rows.columns:
            available = list(map(str, rows.columns))
            close = difflib.get_close_matches(spec.from_, available, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MappingError(
                f"{where}: source column {spec.from_!r} not found{hint}; "
                f"the export has columns {available}"
            )
        values = rows[spec.from_]
    elif spec.expr is not None:
        values = _evaluate(rows, spec.expr, f"{where}.expr")
    elif spec.cases is not None:
        hits = [
            _condition(rows, case.when, f"{where}.cases.{i}.when")
            for i, case in enumerate(spec.cases)
        ]
        values = pd.Series(spec.default, index=rows.index, dtype=object)
        # Applied last to first so that the first matching case wins.
        for case, hit in zip(reversed(spec.cases), reversed(hits), strict=True):
            values = values.mask(hit, case.value)
        values = values.infer_objects()
    elif spec.row_number:
        values = pd.Series(rows.index.to_numpy(dtype="int64"), index=rows.index)
    else:
        values = pd.Series(
            spec.value, index=rows.index, dtype=None if spec.value is not None else object
        )
    return _cast(values, spec, where) if spec.cast else values


def _group(frame: pd.DataFrame, spec: TableSpec, where: str) -> pd.DataFrame:
    keys = list(spec.group_by or [])
    # Rows with a missing key cannot be attributed to a group; they stay in the other tables.
    frame = frame.dropna(subset=keys)
    if not spec.aggregate:
        return frame.drop_duplicates(keys)
    measured = [c for c in spec.columns if c in spec.aggregate]
    try:
        out = frame.groupby(keys, sort=False)[measured].agg(
            {c: spec.aggregate[c] for c in measured}
        )
    except Exception as exc:
        raise MappingError(
            f"{where}.aggregate: {type(exc).__name__}: {exc} (aggregates {spec.aggregate})"
        ) from exc
    return out.reset_index()


def _table(name: str, spec: TableSpec, rows: pd.DataFrame) -> pd.DataFrame:
    where = f"tables.{name}"
    if spec.filter is not None:
        rows = rows.loc[_condition(rows, spec.filter, f"{where}.filter")]
    out = pd.DataFrame(
        {
            col: _column(rows, col_spec, f"{where}.columns.{col}")
            for col, col_spec in spec.columns.items()
        },
        index=rows.index,
    )
    if spec.group_by:
        out = _group(out, spec, where)
    return out.reset_index(drop=True)


def apply_mapping(source: pd.DataFrame, mapping: Mapping) -> dict[str, pd.DataFrame]:
    """Raw contract tables (not yet validated) built from the export's rows; `source` is not
    modified. Every table is built from the (filtered) source rows; `row_number` is the 0-based
    position of the row in `source`."""
    # Row positions become the index, so row_number survives filtering.
    rows = source.reset_index(drop=True)
    return {name: _table(name, spec, rows) for name, spec in mapping.tables.items()}
