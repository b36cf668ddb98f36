"""Sources: the I/O edge that reads raw contract tables and writes tables and frames.

A source is either a data folder holding `<name>.parquet` or `<name>.csv` per contract table (or
the parts of a partitioned folder, `features.partitioned`), or
a SQLAlchemy URL (`sqlite:///path.db`, `postgresql://...`) whose database holds tables of those
names. Readers return raw frames for `features.validate.validate`; they never fix data.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.contract import REQUIRED_TABLES, TABLE_NAMES, ContractError

_SUFFIXES = (".parquet", ".csv")
# Ids must stay strings ("00042" is not 42); everything else is parsed by validation.
_CSV_DTYPES = {"customer_id": str}
# Low-cardinality text read as pandas Categoricals: millions of events hold a few distinct ids,
# channels and types, and one Python string per row cost seconds and gigabytes.
_DICTIONARY_COLUMNS = (
    "customer_id",
    "channel",
    "event_type",
    "survey",
    "segment",
    "plan",
    "region",
)
# Of those, the ones with about one value per customer rather than a handful.
_MANY_VALUES = ("customer_id",)


def _read_parquet(paths: list[Path]) -> pd.DataFrame:
    """One table from one or more Parquet files of the same schema (the parts of a partitioned
    folder, in order)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(paths[0])
    text = [
        f.name
        for f in schema
        if f.name in _DICTIONARY_COLUMNS
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    # Parquet's own dictionaries differ per row group; merging a million ids across them when
    # converting costs twice as much as reading the ids as text and encoding them once.
    few = [name for name in text if name not in _MANY_VALUES]
    parts = [pq.read_table(p, read_dictionary=few or None) for p in paths]
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    for name in text:
        if name in _MANY_VALUES:
            i = table.schema.get_field_index(name)
            column = table.column(name)
            if column.num_chunks > 1:
                column = pa.chunked_array([column.combine_chunks()])
            table = table.set_column(i, name, pc.dictionary_encode(column))
    return table.to_pandas()


def is_sql_url(source: str) -> bool:
    return "://" in str(source)


def read_file(path: Path, table: str) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return _read_parquet([path])
        return pd.read_csv(path, dtype=_CSV_DTYPES, low_memory=False)
    except Exception as exc:
        raise ContractError(f"cannot read table '{table}' from {path}: {exc}") from exc


def read_files(paths: list[Path], table: str) -> pd.DataFrame:
    """One table from the Parquet parts of a partitioned folder, in order."""
    try:
        return _read_parquet(paths)
    except Exception as exc:
        raise ContractError(f"cannot read table '{table}' from {paths[0].parent}: {exc}") from exc


def read_folder(folder: str | Path) -> dict[str, pd.DataFrame | None]:
    """Raw tables from a data folder; optional tables that are absent come back as None."""
    from features.partitioned import is_partitioned, read_partitioned

    folder = Path(folder)
    if not folder.is_dir():
        raise ContractError(f"data folder {folder} does not exist or is not a folder")
    if is_partitioned(folder):
        return read_partitioned(folder)
    tables: dict[str, pd.DataFrame | None] = {}
    for name in TABLE_NAMES:
        found = [folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").is_file()]
        if len(found) > 1:
            raise ContractError(
                f"table '{name}' is ambiguous in {folder}: both {found[0].name} and {found[1].name}; keep one"
            )
        if not found:
            if name in REQUIRED_TABLES:
                present = sorted(p.name for p in folder.iterdir())
                raise ContractError(
                    f"required table '{name}' not found in {folder}: expected {name}.parquet or {name}.csv; "
                    f"the folder holds {present or 'nothing'}"
                )
            tables[name] = None
            continue
        tables[name] = read_file(found[0], name)
    return tables


def read_sql(url: str) -> dict[str, pd.DataFrame | None]:
    """Raw tables from a database; optional tables that are absent come back as None."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
    except Exception as exc:
        raise ContractError(f"cannot open database URL {url!r}: {exc}") from exc
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            missing = [t for t in REQUIRED_TABLES if t not in present]
            if missing:
                raise ContractError(
                    f"required table(s) {missing} not found in database {shown}; it holds {sorted(present) or 'no tables'}"
                )
            return {
                name: pd.read_sql_table(name, conn) if name in present else None
                for name in TABLE_NAMES
            }
    except ContractError:
        raise
    except Exception as exc:
        raise ContractError(f"cannot read from database {shown}: {exc}") from exc
    finally:
        engine.dispose()


def read_source(source: str | Path) -> dict[str, pd.DataFrame | None]:
    """A data folder or a SQLAlchemy URL."""
    return read_sql(str(source)) if is_sql_url(str(source)) else read_folder(source)


def write_frame(frame: pd.DataFrame, path: str | Path, *, index: bool = False) -> Path:
    """Write a frame as Parquet or CSV, chosen by the file extension."""
    path = Path(path)
    if path.suffix not in _SUFFIXES:
        raise ValueError(f"cannot write {path}: expected a .parquet or .csv file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=index)
    else:
        frame.to_csv(path, index=index)
    return path


def write_tables(tables: dict[str, pd.DataFrame | None], folder: str | Path) -> dict[str, Path]:
    """Write each present table as `<folder>/<name>.parquet`."""
    folder = Path(folder)
    return {
        name: write_frame(frame, folder / f"{name}.parquet")
        for name, frame in tables.items()
        if frame is not None
    }
