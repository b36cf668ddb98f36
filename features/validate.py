"""Validation at the edge: raw tables in, contract `Tables` plus quarantined rows out.

Every row read is either kept (with normalised dtypes, see `features.contract`) or quarantined
with a `reason`; nothing is dropped silently, and `ValidationResult.report` reconciles
read = kept + quarantined per table. Problems that make a table unusable as a whole (missing
required table or column) raise `ContractError` naming the table and column.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format

from features.contract import (
    CHANNELS,
    FALSE_WORDS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    REQUIRED_TABLES,
    SURVEYS,
    TABLE_NAMES,
    TRUE_WORDS,
    ContractError,
    Tables,
)


@dataclass
class TableReport:
    read: int
    kept: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A broken reconciliation would mean rows were lost: fail loudly rather than report it.
        if self.read != self.kept + self.quarantined:
            raise AssertionError(
                f"rows read {self.read} != kept {self.kept} + quarantined {self.quarantined}"
            )


@dataclass
class ValidationResult:
    tables: Tables
    quarantine: dict[str, pd.DataFrame]
    report: dict[str, TableReport]

    def summary(self) -> str:
        return summarise(self.report)


def summarise(report: dict[str, TableReport]) -> str:
    """The printed reconciliation: rows read, kept and quarantined per table, and why."""
    lines = [f"{'table':<10}{'read':>12}{'kept':>12}{'quarantined':>13}"]
    for name, r in report.items():
        lines.append(f"{name:<10}{r.read:>12,}{r.kept:>12,}{r.quarantined:>13,}")
        for reason, count in sorted(r.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{'':<12}{count:>10,}  {reason}")
    return "\n".join(lines)


_FORMAT_SAMPLE = 20  # values looked at to guess a timestamp column's format


# Parsing helpers: each returns the parsed column and a mask of values present but unparseable.


def _distinct(s: pd.Series, normalise) -> pd.Series:
    """Apply `normalise` (a function of a Series of distinct values returning strings with NA)
    to each distinct value once and return a Categorical: exports repeat the same few strings
    (ids, channels, event types) millions of times, and per-row string work dominated the run."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes, uniques = s.cat.codes.to_numpy(), pd.Series(s.cat.categories)
    else:
        codes, found = pd.factorize(s, use_na_sentinel=True)
        uniques = pd.Series(found)
    cleaned = normalise(uniques).astype("string")
    cleaned = cleaned.mask(cleaned == "")
    if isinstance(s.dtype, pd.CategoricalDtype) and not cleaned.isna().any():
        if (cleaned.to_numpy(dtype=object) == uniques.to_numpy(dtype=object)).all():
            # Already clean (the usual case for a Parquet export): building a new Categorical
            # over a million ids would only check again that they are distinct.
            return s
    # Distinct raw values can meet after normalising ("web" and "WEB "): factorise again.
    recode, categories = pd.factorize(cleaned, use_na_sentinel=True)
    new = np.where(codes >= 0, recode[np.maximum(codes, 0)], -1) if len(recode) else codes
    cats = pd.Index(np.asarray(categories, dtype=object))
    return pd.Series(pd.Categorical.from_codes(new, categories=cats), index=s.index)


def _as_id(values: pd.Series) -> pd.Series:
    # Ids read from CSV or Excel with gaps arrive as floats: 12346.0 means "12346".
    if ptypes.is_float_dtype(values):
        whole = values.notna() & (values == np.floor(values))
        out = values.astype(object).where(values.notna(), None)
        out[whole] = values[whole].astype("int64").astype(str)
        out[~whole & values.notna()] = values[~whole & values.notna()].astype(str)
        return out.astype("string")
    return values.astype("string").str.strip()


def normal_ids(s: pd.Series) -> pd.Series:
    """Customer ids as a Categorical of strings, NA for missing or blank: the ids validation
    keeps (and partitions are hashed on)."""
    return _distinct(s, _as_id)


def _labels(s: pd.Series) -> pd.Series:
    """Channel, event type and survey names: stripped, lower case, as a Categorical."""
    return _distinct(s, lambda u: u.astype("string").str.strip().str.lower())


def _text(s: pd.Series) -> pd.Series:
    """Free text (comments, static attributes) stripped, as object with None for missing."""
    out = _distinct(s, lambda u: u.astype("string").str.strip())
    return out.astype(object).where(out.notna(), None)


def _timestamps(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if ptypes.is_datetime64_any_dtype(s):
        out = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return out.astype("datetime64[ns, UTC]", copy=False), np.zeros(len(s), dtype=bool)
    present = s.notna().to_numpy()
    text = s.astype("string")
    # Fast path: one format for the column, guessed from its first values that look like a time
    # (pandas guesses from the first value only, and a bad first value made it parse every value
    # on its own, slowly); values in another format get a second, per-value parse rather than
    # being quarantined.
    guesses = (guess_datetime_format(str(v)) for v in text[present][:_FORMAT_SAMPLE])
    fmt = next((f for f in guesses if f is not None), None)
    if fmt is None:
        out = pd.to_datetime(text, utc=True, errors="coerce")
    else:
        out = pd.to_datetime(text, utc=True, errors="coerce", format=fmt)
    retry = present & out.isna().to_numpy()
    if retry.any():
        out[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    out = out.astype("datetime64[ns, UTC]")
    return out, present & out.isna().to_numpy()


def _numbers(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if ptypes.is_bool_dtype(s):
        s = s.astype("float64")
    out = pd.to_numeric(s, errors="coerce").astype("float64", copy=False)
    return out, (s.notna() & out.isna()).to_numpy()


def _booleans(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if ptypes.is_bool_dtype(s):
        return s.astype("boolean"), np.zeros(len(s), dtype=bool)
    text = _labels(s)
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[text.isin(TRUE_WORDS).to_numpy()] = True
    out[text.isin(FALSE_WORDS).to_numpy()] = False
    return out, (s.notna() & out.isna()).to_numpy()


def _repeats(clean: pd.DataFrame, groups: np.ndarray | None = None) -> np.ndarray:
    """Rows that repeat an earlier row exactly, compared on normalised values (so "WEB" and
    "web", or the same instant in two time zones, are the same); categorical columns compare by
    code, which keeps this fast on large tables. With `groups`, only rows of the same group
    (the same ingestion request) can repeat each other."""
    if groups is not None:
        clean = clean.assign(_group=groups)
    # Hash every row, then compare exactly only the rows whose hash repeats: a full
    # `duplicated` factorises every column of every row and took seconds per million rows.
    hashed = pd.util.hash_pandas_object(clean, index=False)
    candidates = hashed.duplicated(keep=False).to_numpy()
    out = np.zeros(len(clean), dtype=bool)
    if candidates.any():
        out[candidates] = clean.loc[candidates].duplicated(keep="first").to_numpy()
    return out


def _repeated_ids(
    clean: pd.DataFrame, reason: np.ndarray, groups: np.ndarray | None = None
) -> None:
    """Among otherwise valid rows, a repeated `event_id` keeps its first occurrence: the id says
    they are one row, so a second, different row under it is an error, not a new fact. With
    `groups`, only within a group (a later request's row under an earlier id is a retry)."""
    if "event_id" not in clean.columns:
        return
    ids = clean["event_id"]
    valid = (reason == "") & ids.notna().to_numpy()
    again = np.zeros(len(clean), dtype=bool)
    key = ids[valid]
    if groups is not None:
        key = pd.DataFrame({"group": groups[valid], "id": key.to_numpy()})
    again[valid] = key.duplicated(keep="first").to_numpy()
    reason[again] = "duplicate event_id"


def _first_reason(n: int, checks: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """The first failing check per row ('' when all pass); checks are in priority order."""
    reason = np.full(n, "", dtype=object)
    pending = np.ones(n, dtype=bool)
    for failed, text in checks:
        hit = pending & failed
        reason[hit] = text
        pending &= ~hit
    return reason


def _require(name: str, frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise ContractError(
            f"table '{name}' is missing required column(s) {missing}; "
            f"expected {list(REQUIRED_COLUMNS[name])} (optional: {list(OPTIONAL_COLUMNS[name])}), "
            f"found {list(map(str, frame.columns))}"
        )


def _customer_categorical(ids: pd.Series, known: pd.Index) -> tuple[pd.Series, np.ndarray]:
    # Recoding works on the categories, not the rows: cheap even for tens of millions of events.
    cat = ids.cat.set_categories(known)
    return cat, (ids.notna() & cat.isna()).to_numpy()


def _split(
    name: str, raw: pd.DataFrame, clean: pd.DataFrame, reason: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    bad = reason != ""
    quarantined = raw.loc[bad].astype("string")
    quarantined.insert(0, "row_number", np.flatnonzero(bad))
    quarantined["reason"] = reason[bad].astype(str)
    # Without a bad row the clean frame is kept as it is: a copy of ten million events only to
    # drop nothing was the largest transient of validation.
    kept = clean.loc[~bad].reset_index(drop=True) if bad.any() else clean
    report = TableReport(
        read=len(raw),
        kept=len(kept),
        quarantined=int(bad.sum()),
        reasons=dict(Counter(reason[bad].tolist())),
    )
    return kept, quarantined.reset_index(drop=True), report


def _customers(raw: pd.DataFrame):
    n = len(raw)
    ids = normal_ids(raw["customer_id"])
    signup, bad_signup = _timestamps(raw["signup_date"])
    clean = raw.copy()
    clean["customer_id"] = ids
    clean["signup_date"] = signup
    for col in OPTIONAL_COLUMNS["customers"]:
        if col in clean.columns:
            clean[col] = _text(clean[col])
    missing_id = ids.isna().to_numpy()
    dup_row = _repeats(clean)
    reason = _first_reason(
        n,
        [
            (missing_id, "missing customer_id"),
            (raw["signup_date"].isna().to_numpy(), "missing signup_date"),
            (bad_signup, "unparseable signup_date"),
            (dup_row, "duplicate row"),
        ],
    )
    # Among otherwise valid rows, a repeated id keeps its first occurrence.
    dup_id = (reason == "") & ids.duplicated(keep="first").to_numpy() & ~missing_id
    ok_ids = ids[(reason == "") & ~dup_id]
    dup_id &= ids.isin(ok_ids).to_numpy()
    reason[dup_id] = "duplicate customer_id"
    kept, quarantined, report = _split("customers", raw, clean, reason)
    kept["customer_id"] = kept["customer_id"].astype(object)
    return kept, quarantined, report


def _events(
    raw: pd.DataFrame,
    known: pd.Index,
    ids: pd.Series | None = None,
    groups: np.ndarray | None = None,
):
    n = len(raw)
    ids = normal_ids(raw["customer_id"]) if ids is None else ids
    cust, unknown = _customer_categorical(ids, known)
    ts, bad_ts = _timestamps(raw["ts"])
    channel = _labels(raw["channel"])
    event_type = _labels(raw["event_type"])
    if "amount" in raw.columns:
        amount, bad_amount = _numbers(raw["amount"])
    else:
        amount, bad_amount = pd.Series(np.nan, index=raw.index), np.zeros(n, dtype=bool)
    if "resolved" in raw.columns:
        resolved, bad_resolved = _booleans(raw["resolved"])
    else:
        resolved = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        bad_resolved = np.zeros(n, dtype=bool)
    clean = pd.DataFrame(
        {
            "customer_id": cust,
            "ts": ts,
            "channel": channel.cat.set_categories(CHANNELS),
            "event_type": event_type,
            "amount": amount,
            "resolved": resolved,
        },
        index=raw.index,
    )
    for col in raw.columns:
        if col not in clean.columns:
            clean[col] = raw[col]
    if "event_id" in raw.columns:
        clean["event_id"] = _text(raw["event_id"])
    reason = _first_reason(
        n,
        [
            (ids.isna().to_numpy(), "missing customer_id"),
            (unknown, "unknown customer_id"),
            (raw["ts"].isna().to_numpy(), "missing ts"),
            (bad_ts, "unparseable ts"),
            (
                ~channel.isin(CHANNELS).fillna(False).to_numpy(),
                f"unknown channel (expected one of {', '.join(CHANNELS)})",
            ),
            (
                (event_type.isna() | (event_type == "")).fillna(True).to_numpy(),
                "missing event_type",
            ),
            (bad_amount, "unparseable amount"),
            (bad_resolved, "unparseable resolved (expected true/false)"),
            (_repeats(clean, groups), "duplicate row"),
        ],
    )
    _repeated_ids(clean, reason, groups)
    kept_types = event_type[reason == ""].cat.remove_unused_categories().cat.categories
    clean["event_type"] = event_type.cat.set_categories(sorted(kept_types))
    return _split("events", raw, clean, reason)


def _feedback(
    raw: pd.DataFrame,
    known: pd.Index,
    ids: pd.Series | None = None,
    groups: np.ndarray | None = None,
):
    n = len(raw)
    ids = normal_ids(raw["customer_id"]) if ids is None else ids
    cust, unknown = _customer_categorical(ids, known)
    ts, bad_ts = _timestamps(raw["ts"])
    survey = _labels(raw["survey"])
    score, bad_score = _numbers(raw["score"])
    checks: list[tuple[np.ndarray, str]] = [
        (ids.isna().to_numpy(), "missing customer_id"),
        (unknown, "unknown customer_id"),
        (raw["ts"].isna().to_numpy(), "missing ts"),
        (bad_ts, "unparseable ts"),
        (
            ~survey.isin(SURVEYS).fillna(False).to_numpy(),
            f"unknown survey type (expected one of {', '.join(SURVEYS)})",
        ),
        (raw["score"].isna().to_numpy(), "missing score"),
        (bad_score, "unparseable score"),
    ]
    values = score.to_numpy()
    for name, (lo, hi) in SURVEYS.items():
        is_survey = (survey == name).fillna(False).to_numpy()
        with np.errstate(invalid="ignore"):
            checks.append(
                (is_survey & (values != np.round(values)), f"{name} score not a whole number")
            )
            checks.append(
                (
                    is_survey & ((values < lo) | (values > hi)),
                    f"{name} score out of range {lo}-{hi}",
                )
            )
    if "comment" in raw.columns:
        comment = _text(raw["comment"])
    else:
        comment = pd.Series(None, index=raw.index, dtype=object)
    clean = pd.DataFrame(
        {
            "customer_id": cust,
            "ts": ts,
            "survey": survey.cat.set_categories(tuple(SURVEYS)),
            "score": score,
            "comment": comment,
        },
        index=raw.index,
    )
    if "event_id" in raw.columns:
        clean["event_id"] = _text(raw["event_id"])
    checks.append((_repeats(clean, groups), "duplicate row"))
    reason = _first_reason(n, checks)
    _repeated_ids(clean, reason, groups)
    return _split("feedback", raw, clean, reason)


def _churn(raw: pd.DataFrame, customers: pd.DataFrame):
    n = len(raw)
    known = pd.Index(customers["customer_id"])
    ids = normal_ids(raw["customer_id"])
    cust, unknown = _customer_categorical(ids, known)
    date, bad_date = _timestamps(raw["churn_date"])
    codes = cust.cat.codes.to_numpy()
    # datetime64 arrays, not object arrays of Timestamps (tz-aware to_numpy() gives objects).
    signup = customers["signup_date"].to_numpy("datetime64[ns]")[np.where(codes >= 0, codes, 0)]
    before_signup = (codes >= 0) & (date.to_numpy("datetime64[ns]") < signup)
    clean = pd.DataFrame({"customer_id": cust, "churn_date": date}, index=raw.index)
    reason = _first_reason(
        n,
        [
            (ids.isna().to_numpy(), "missing customer_id"),
            (unknown, "unknown customer_id"),
            (raw["churn_date"].isna().to_numpy(), "missing churn_date"),
            (bad_date, "unparseable churn_date"),
            (before_signup, "churn_date before signup_date"),
            (_repeats(clean), "duplicate row"),
        ],
    )
    dup_id = (reason == "") & ids.duplicated(keep="first").to_numpy()
    reason[dup_id] = "duplicate customer_id"
    return _split("churn", raw, clean, reason)


def validate(raw: dict[str, pd.DataFrame | None]) -> ValidationResult:
    """Check raw contract tables; return clean `Tables`, quarantined rows and the counts."""
    unknown_tables = set(raw) - set(TABLE_NAMES)
    if unknown_tables:
        raise ContractError(
            f"unknown table(s) {sorted(unknown_tables)}; expected {list(TABLE_NAMES)}"
        )
    for name in REQUIRED_TABLES:
        if raw.get(name) is None:
            raise ContractError(
                f"required table '{name}' is missing; expected tables {list(REQUIRED_TABLES)} (optional: feedback, churn)"
            )
    for name, frame in raw.items():
        if frame is not None:
            _require(name, frame)

    def _fresh(frame: pd.DataFrame) -> pd.DataFrame:
        # Positional bookkeeping (row_number, masks) needs a clean RangeIndex; never mutate input
        # (nothing below does, so a frame that has one already is used without a copy).
        if frame.index.equals(pd.RangeIndex(len(frame))):
            return frame
        return frame.reset_index(drop=True)

    customers, q, r = _customers(_fresh(raw["customers"]))
    quarantine, report = {"customers": q}, {"customers": r}
    known = pd.Index(customers["customer_id"])
    events, quarantine["events"], report["events"] = _events(_fresh(raw["events"]), known)
    feedback = churn = None
    if raw.get("feedback") is not None:
        feedback, quarantine["feedback"], report["feedback"] = _feedback(
            _fresh(raw["feedback"]), known
        )
    if raw.get("churn") is not None:
        churn, quarantine["churn"], report["churn"] = _churn(_fresh(raw["churn"]), customers)
    tables = Tables(customers=customers, events=events, feedback=feedback, churn=churn)
    return ValidationResult(tables=tables, quarantine=quarantine, report=report)


# The tables rows can be ingested into one by one (over HTTP or `retain ingest`).
INGESTED_TABLES: tuple[str, ...] = ("events", "feedback")
MAX_EVENT_ID = 64


def field_of(reason: str, name: str) -> str | None:
    """The column a quarantine reason is about ("unknown channel (...)" -> "channel"), or None
    for reasons about the whole row (a duplicate)."""
    words = reason.replace("(", " ").split()
    if words[:2] == ["unknown", "field"] and len(words) > 2:
        return words[2]
    columns = (*REQUIRED_COLUMNS[name], *OPTIONAL_COLUMNS[name])
    for word in words[:3]:
        if word in columns:
            return word
    if name == "feedback" and words and words[0] in SURVEYS:
        return "score"  # "nps score out of range 0-10"
    if "survey" in words:
        return "survey"
    return None


@dataclass
class CheckedRows:
    """Rows of one table checked one by one: the kept rows (normalised like `validate`'s
    tables) with `item`, their position in the input, and the rejected ones (`item`, `field`,
    `reason`). Every input row is in exactly one of them."""

    kept: pd.DataFrame
    rejected: pd.DataFrame


def check_rows(
    name: str, raw: pd.DataFrame, known: pd.Index, groups: np.ndarray | None = None
) -> CheckedRows:
    """Check rows of `events` or `feedback` with the same code `validate` checks whole tables
    with, against the `known` customer ids. A column missing from every row is a per-row error,
    not a failure of the batch; feedback rows with columns the contract does not have are
    rejected (events may carry further columns, as tables may). `groups` (one label per row)
    checks several requests at once: a row repeats only rows of its own request."""
    if name not in INGESTED_TABLES:
        raise ContractError(f"rows cannot be ingested into '{name}'; only {list(INGESTED_TABLES)}")
    raw = raw.reset_index(drop=True).copy()
    for col in REQUIRED_COLUMNS[name]:
        if col not in raw.columns:
            raw[col] = None
    n = len(raw)
    extra_reason = np.full(n, "", dtype=object)
    if name == "feedback":
        allowed = (*REQUIRED_COLUMNS[name], *OPTIONAL_COLUMNS[name])
        for col in raw.columns:
            if col not in allowed:
                present = raw[col].notna().to_numpy()
                extra_reason[present & (extra_reason == "")] = (
                    f"unknown field {col} (feedback rows have {', '.join(allowed)})"
                )
    if "event_id" in raw.columns:
        ids = raw["event_id"].astype("string").str.strip()
        too_long = (ids.str.len() > MAX_EVENT_ID).fillna(False).to_numpy()
        extra_reason[too_long & (extra_reason == "")] = (
            f"event_id longer than {MAX_EVENT_ID} characters"
        )
    # Only the batch's own known customers as categories: the same verdicts as against the
    # whole book, without categoricals (and hashes) the size of a million-customer book.
    ids = normal_ids(raw["customer_id"])
    present = pd.Index(ids.dropna().astype(str).unique(), dtype=object)
    if not isinstance(known, pd.Index):
        known = pd.Index(known)
    # (the same Index object each call keeps its hash table: a lookup, not a rebuild)
    known = present[known.get_indexer(present) >= 0]
    if name == "events":
        kept, quarantined, _ = _events(raw, known, ids, groups)
    else:
        columns = [c for c in raw.columns if c in allowed]
        kept, quarantined, _ = _feedback(raw[columns], known, ids, groups)
    bad = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    bad[quarantined["row_number"].to_numpy()] = True
    reason[quarantined["row_number"].to_numpy()] = quarantined["reason"].to_numpy()
    kept["item"] = np.flatnonzero(~bad)
    # A contract reason comes first; the ingestion-only checks reject kept rows too.
    late = extra_reason[kept["item"].to_numpy()] != ""
    reason[~bad] = np.where(late, extra_reason[~bad], "")
    kept = kept.loc[~late].reset_index(drop=True)
    rejected_items = np.flatnonzero(reason != "")
    rejected = pd.DataFrame(
        {
            "item": rejected_items,
            "field": [field_of(r, name) for r in reason[rejected_items]],
            "reason": reason[rejected_items].astype(str),
        }
    )
    return CheckedRows(kept=kept, rejected=rejected)
