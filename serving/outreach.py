"""Outreach: the policy that picks high-impact at-risk customers, a recorded control group, and the
durable outbox every contact passes through on its way to a dispatcher.

The flow of one run at an explicit `as_of` (nothing here reads the clock):

1. `select_contacts` walks the scored list by value at risk (highest first) and keeps customers
   with churn probability >= `min_churn_probability` and CLV >= `min_clv`, not excluded by segment
   or id, and not in cooldown. Each is assigned to `control` when a hash of (campaign, window,
   customer) falls below `control_share`, else to `contact`; the walk stops once
   `capacity_per_run` contacts are taken (capacity counts the customers the CX team will reach;
   the controls drawn among them come along and are recorded, never contacted).
2. `Outbox.record_run` writes the run and all its rows in one transaction: a crash leaves either
   the whole selection or nothing. A run is identified by (campaign, as_of): running the same
   as_of again selects nothing new, it only dispatches what is still pending.
3. A dispatcher (`serving.outreach_dispatch`: a webhook when a URL is configured, otherwise a CSV
   file drop) delivers pending contacts; a row becomes `sent` only after the receiver accepted it.

Definitions:
- campaign window: the as_of date bucketed into periods of `cooldown_days` days counted from
  1970-01-01 (1 day when cooldown is 0), labelled `<start date>/<days>d`. Two selections of one
  customer are always at least `cooldown_days` apart, so they always fall in different windows.
- idempotency key: the first 32 hex digits of sha256("campaign|window|customer_id"); the same
  customer in the same campaign window always gets the same key (unique in the outbox), a new
  window gives a new key.
- cooldown: a customer is not selected when any outbox row (any campaign, contact or control)
  has an as_of less than `cooldown_days` before or after this as_of. Controls enter cooldown too,
  so they are not picked up and contacted by the next run while their outcome is being measured.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from configs import OutreachSettings, Settings
from serving.columns import REASON_COLUMNS, SCORE_COLUMNS

WEBHOOK_URL_ENV = "RETAIN_OUTREACH_WEBHOOK_URL"

CONTACT, CONTROL = "contact", "control"
PENDING, SENT, FAILED = "pending", "sent", "failed"  # contacts; control rows have status `control`
STATUSES = (PENDING, SENT, FAILED, CONTROL)

REQUIRED_COLUMNS = ("customer_id", "churn_probability", "clv", "value_at_risk")
OPTIONAL_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in REQUIRED_COLUMNS)
# Policy keys worth keeping with each run; URLs are left out (they may carry credentials).
_POLICY_KEYS = (
    "campaign",
    "min_churn_probability",
    "min_clv",
    "capacity_per_run",
    "cooldown_days",
    "control_share",
    "exclude_segments",
    "exclude_customers",
)
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")

Progress = Callable[[str], None]


class OutreachError(ValueError):
    """Outreach input or outbox state that cannot be used; the message says what and where."""


class NoOutboxError(OutreachError):
    """Reading an outbox that was never created."""


# ---------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class CampaignWindow:
    start: pd.Timestamp
    days: int

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d}/{self.days}d"


def campaign_window(as_of: pd.Timestamp, cooldown_days: int) -> CampaignWindow:
    """The cooldown-long period (counted from 1970-01-01, UTC) that contains `as_of`."""
    days = max(int(cooldown_days), 1)
    day = (_utc(as_of).normalize() - _EPOCH).days
    return CampaignWindow(_EPOCH + pd.Timedelta(days=(day // days) * days), days)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


def idempotency_key(campaign: str, window: str, customer_id: str) -> str:
    """Stable per customer and campaign window; what the receiver deduplicates on."""
    return _digest(campaign, window, str(customer_id))[:32]


def control_draw(campaign: str, window: str, customer_id: str) -> float:
    """A uniform draw in [0, 1) from a hash, so a rerun assigns every customer the same group."""
    return int(_digest("control", campaign, window, str(customer_id))[:16], 16) / 2.0**64


def run_id_for(campaign: str, as_of: pd.Timestamp) -> str:
    return f"{campaign}@{_utc(as_of):%Y-%m-%dT%H:%M:%SZ}"


@dataclass
class Selection:
    """The outcome of the policy on one scored list: who is selected and why the others are not."""

    run_id: str
    campaign: str
    as_of: pd.Timestamp
    window: CampaignWindow
    rows: pd.DataFrame  # one row per selected customer, ranked; `group` is contact or control
    counts: dict[str, int] = field(default_factory=dict)


def _utc(ts: pd.Timestamp | str | datetime) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_scored(scored: pd.DataFrame, policy: OutreachSettings) -> pd.DataFrame:
    if not isinstance(scored, pd.DataFrame):
        raise OutreachError(f"scored list: expected a DataFrame, got {type(scored).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in scored.columns]
    if missing:
        raise OutreachError(
            f"scored list: missing column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)}"
        )
    if policy.exclude_segments and "segment" not in scored.columns:
        raise OutreachError(
            "scored list: outreach.exclude_segments is set but the list has no `segment` column"
        )
    frame = scored.loc[:, [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in scored]]
    frame = frame.assign(customer_id=frame["customer_id"].astype(str))
    duplicated = frame["customer_id"].duplicated()
    if duplicated.any():
        dupes = frame.loc[duplicated, "customer_id"].head(5).tolist()
        raise OutreachError(f"scored list: customer_id must be unique, repeated: {dupes}")
    for col in ("churn_probability", "clv", "value_at_risk"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in OPTIONAL_COLUMNS:
        if col not in frame:
            frame[col] = np.nan if col in ("clv_low", "clv_high") else None
    return frame


def select_contacts(
    scored: pd.DataFrame,
    as_of: pd.Timestamp | str,
    policy: OutreachSettings,
    *,
    in_cooldown: Iterable[str] = (),
    keys_taken: Iterable[str] = (),
) -> Selection:
    """Apply the policy to a scored list. `in_cooldown`: customers selected too recently (from the
    outbox); `keys_taken`: idempotency keys already in the outbox for this campaign window."""
    as_of = _utc(as_of)
    window = campaign_window(as_of, policy.cooldown_days)
    frame = _check_scored(scored, policy)
    frame = frame.sort_values(
        ["value_at_risk", "customer_id"], ascending=[False, True], kind="mergesort"
    )
    frame = frame.reset_index(drop=True)

    rules = {
        "below_min_churn_probability": frame["churn_probability"].ge(policy.min_churn_probability),
        "below_min_clv": frame["clv"].ge(policy.min_clv),
        "excluded_segment": ~frame["segment"].isin(policy.exclude_segments),
        "excluded_customer": ~frame["customer_id"].isin(policy.exclude_customers),
        "in_cooldown": ~frame["customer_id"].isin(set(in_cooldown)),
    }
    counts = {"candidates": len(frame)}
    keep = pd.Series(True, index=frame.index)
    for reason, passes in rules.items():
        counts[reason] = int((keep & ~passes).sum())
        keep &= passes
    eligible = frame[keep]

    taken = set(keys_taken)
    chunk = max(1024, 2 * policy.capacity_per_run)
    parts, contacts, start, already = [], 0, 0, 0
    while contacts < policy.capacity_per_run and start < len(eligible):
        part = eligible.iloc[start : start + chunk]
        start += chunk
        ids = part["customer_id"].tolist()
        keys = np.array([idempotency_key(policy.campaign, window.label, c) for c in ids])
        fresh = ~np.isin(keys, list(taken)) if taken else np.ones(len(ids), dtype=bool)
        already += int((~fresh).sum())
        draws = np.array([control_draw(policy.campaign, window.label, c) for c in ids])
        part = part.assign(idempotency_key=keys, control_draw=draws)[fresh]
        is_contact = part["control_draw"].to_numpy() >= policy.control_share
        reached = np.flatnonzero(contacts + np.cumsum(is_contact) >= policy.capacity_per_run)
        if len(reached):
            part, is_contact = part.iloc[: reached[0] + 1], is_contact[: reached[0] + 1]
        contacts += int(is_contact.sum())
        parts.append(part.assign(group=np.where(is_contact, CONTACT, CONTROL)))

    rows = pd.concat(parts, ignore_index=True) if parts else _empty_selection(eligible)
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    counts["already_in_window"] = already
    counts["eligible"] = len(eligible) - already
    counts["selected"] = len(rows)
    counts["contact"] = int((rows["group"] == CONTACT).sum())
    counts["control"] = int((rows["group"] == CONTROL).sum())
    counts["beyond_capacity"] = counts["eligible"] - counts["selected"]
    return Selection(
        run_id_for(policy.campaign, as_of), policy.campaign, as_of, window, rows, counts
    )


def fill_reasons(rows: pd.DataFrame, explain: Callable[[list[str]], pd.DataFrame]) -> pd.DataFrame:
    """Reasons from `explain` for the selected customers that have none."""
    reason_1 = rows["reason_1"]
    missing = reason_1.isna() | reason_1.astype(str).str.strip().eq("")
    if not missing.any():
        return rows
    ids = rows.loc[missing, "customer_id"].tolist()
    found = explain(ids)
    columns = [c for c in REASON_COLUMNS if c in found.columns]
    found = found.set_axis(found.index.astype(str)).reindex(ids)[columns]
    out = rows.copy()
    out.loc[missing, columns] = found.to_numpy()
    return out


def _empty_selection(like: pd.DataFrame) -> pd.DataFrame:
    return like.iloc[:0].assign(
        idempotency_key=pd.Series([], dtype=object),
        control_draw=pd.Series([], dtype=float),
        group=pd.Series([], dtype=object),
    )


# ---------------------------------------------------------------------------------------------
# Outbox store


def _tables(metadata: MetaData) -> tuple[Table, Table]:
    runs = Table(
        "outreach_runs",
        metadata,
        Column("run_id", String(255), primary_key=True),
        Column("campaign", String(200), nullable=False),
        Column("as_of", DateTime, nullable=False),  # naive UTC, like every timestamp here
        Column("window", String(40), nullable=False),
        Column("policy", Text, nullable=False),  # JSON
        Column("counts", Text, nullable=False),  # JSON: candidates, exclusions, selected...
        Column("churn_model_version", String(100)),
        Column("clv_model_version", String(100)),
    )
    outbox = Table(
        "outreach_outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("idempotency_key", String(64), nullable=False, unique=True),
        Column("run_id", String(255), ForeignKey("outreach_runs.run_id"), nullable=False),
        Column("as_of", DateTime, nullable=False),
        Column("campaign", String(200), nullable=False),
        Column("window", String(40), nullable=False),
        Column("customer_id", String(255), nullable=False),
        Column("segment", String(200)),
        Column("rank", Integer, nullable=False),
        Column("group", String(10), nullable=False),
        Column("control_draw", Float, nullable=False),
        Column("churn_probability", Float),
        Column("clv", Float),
        Column("clv_low", Float),
        Column("clv_high", Float),
        Column("value_at_risk", Float),
        Column("tier", String(20)),
        Column("reason_1", Text),
        Column("reason_2", Text),
        Column("reason_3", Text),
        Column("churn_model_version", String(100)),
        Column("clv_model_version", String(100)),
        Column("status", String(10), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text),
        Column("channel", String(20)),
        Column("delivered_at", DateTime),  # naive UTC wall-clock time the receiver accepted it
        Index("ix_outreach_outbox_customer_as_of", "customer_id", "as_of"),
        Index("ix_outreach_outbox_status", "status"),
        Index("ix_outreach_outbox_run", "run_id"),
        Index("ix_outreach_outbox_as_of", "as_of"),
    )
    return runs, outbox


def _naive_utc(ts: pd.Timestamp | datetime) -> datetime:
    return _utc(ts).tz_localize(None).to_pydatetime()


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all; the caller reports it
        return url


def _value(v: Any) -> Any:
    """A cell as a plain Python value for the database (NaN and NA -> None)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


class Outbox:
    """The durable outbox: SQLAlchemy Core tables on any database (SQLite by default).

    Every state change is its own committed transaction, so a process killed at any point leaves
    rows that are either pending (retried on the next run) or final. `create=False` opens an
    existing outbox only, and fails with a clear message when there is none."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise OutreachError(f"outbox URL {url!r} is not a SQLAlchemy URL: {exc}") from None
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            connect_args["timeout"] = 30  # wait for another writer instead of failing at once
            database = parsed.database
            if database and database != ":memory:":
                path = Path(database)
                if create:
                    path.parent.mkdir(parents=True, exist_ok=True)
                elif not path.exists():
                    raise NoOutboxError(
                        f"no outbox at {path}; run `retain outreach run` first or give --outbox-url"
                    )
        try:
            self.engine: Engine = create_engine(url, connect_args=connect_args)
        except (SQLAlchemyError, ImportError) as exc:
            raise OutreachError(f"cannot open outbox {_redact(url)}: {exc}") from None
        self.metadata = MetaData()
        self.runs, self.outbox = _tables(self.metadata)
        try:
            if create:
                self.metadata.create_all(self.engine)
            elif not inspect(self.engine).has_table(self.outbox.name):
                raise NoOutboxError(f"{_redact(url)} holds no outreach outbox yet")
        except SQLAlchemyError as exc:
            raise OutreachError(f"cannot open outbox {_redact(url)}: {exc}") from None

    def __repr__(self) -> str:
        return f"Outbox({_redact(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads used by the policy --------------------------------------------------------------

    def customers_in_cooldown(self, as_of: pd.Timestamp, cooldown_days: int) -> set[str]:
        if cooldown_days <= 0:
            return set()
        centre = _naive_utc(as_of)
        gap = timedelta(days=cooldown_days)
        o = self.outbox
        query = select(o.c.customer_id).where(o.c.as_of > centre - gap, o.c.as_of < centre + gap)
        with self.engine.connect() as conn:
            return set(conn.scalars(query.distinct()))

    def keys_in_window(self, campaign: str, window: str) -> set[str]:
        o = self.outbox
        query = select(o.c.idempotency_key).where(o.c.campaign == campaign, o.c.window == window)
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self.runs).where(self.runs.c.run_id == run_id)).first()
        return dict(row._mapping) if row is not None else None

    # -- writes ----------------------------------------------------------------------------------

    def record_run(self, selection: Selection, policy: OutreachSettings) -> bool:
        """Write the run and its rows in one transaction. False when the run was already recorded
        (by an earlier or a concurrent process): nothing is written then."""
        rows = selection.rows
        as_of = _naive_utc(selection.as_of)
        versions = {
            col: _first(rows[col]) if len(rows) else None
            for col in ("churn_model_version", "clv_model_version")
        }
        run_row = {
            "run_id": selection.run_id,
            "campaign": selection.campaign,
            "as_of": as_of,
            "window": selection.window.label,
            "policy": json.dumps({k: _jsonable(getattr(policy, k)) for k in _POLICY_KEYS}),
            "counts": json.dumps(selection.counts),
            **versions,
        }
        columns = [c.name for c in self.outbox.columns if c.name in rows.columns]
        records = [
            {
                **{c: _value(v) for c, v in zip(columns, values, strict=True)},
                "run_id": selection.run_id,
                "as_of": as_of,
                "campaign": selection.campaign,
                "window": selection.window.label,
                "status": PENDING if group == CONTACT else CONTROL,
                "attempts": 0,
            }
            for values, group in zip(
                rows[columns].itertuples(index=False, name=None), rows["group"], strict=True
            )
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(self.runs.insert(), [run_row])
                if records:
                    conn.execute(self.outbox.insert(), records)
        except IntegrityError as exc:
            if self.run_record(selection.run_id) is not None:
                return False
            raise OutreachError(
                f"outbox {_redact(self.url)}: a selected idempotency key is already recorded "
                f"(another run in the same campaign window?): {exc.orig}"
            ) from None
        return True

    def pending_contacts(self) -> list[dict[str, Any]]:
        """Contacts still to deliver: fewest attempts first (so one contact the receiver keeps
        failing on cannot hold up the rest run after run), then oldest run, then rank."""
        o = self.outbox
        query = (
            select(o)
            .where(o.c.status == PENDING, o.c.group == CONTACT)
            .order_by(o.c.attempts, o.c.as_of, o.c.run_id, o.c.rank)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def contacts_for_file(self, run_id: str) -> list[dict[str, Any]]:
        """A run's contacts that a file drop carries: pending ones and those it delivered before
        (so rewriting the file after a crash gives the same content)."""
        o = self.outbox
        query = (
            select(o)
            .where(
                o.c.run_id == run_id,
                o.c.group == CONTACT,
                (o.c.status == PENDING) | (o.c.channel == "file"),
            )
            .order_by(o.c.rank)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_attempt(self, row_id: int) -> None:
        """Count an attempt before it is made, so one interrupted mid-flight is counted too."""
        o = self.outbox
        with self.engine.begin() as conn:
            conn.execute(update(o).where(o.c.id == row_id).values(attempts=o.c.attempts + 1))

    def mark_sent(self, row_ids: list[int], channel: str, delivered_at: datetime) -> None:
        o = self.outbox
        with self.engine.begin() as conn:
            conn.execute(
                update(o)
                .where(o.c.id.in_(row_ids), o.c.status == PENDING)
                .values(
                    status=SENT,
                    channel=channel,
                    delivered_at=_naive_utc(delivered_at),
                    last_error=None,
                )
            )

    def mark_error(self, row_id: int, error: str, *, final: bool) -> None:
        """Record a failed attempt; `final` marks the contact failed, otherwise it stays pending."""
        o = self.outbox
        values: dict[str, Any] = {"last_error": error[:2000]}
        if final:
            values["status"] = FAILED
        with self.engine.begin() as conn:
            conn.execute(update(o).where(o.c.id == row_id, o.c.status == PENDING).values(values))

    def requeue_failed(self) -> int:
        """Put failed contacts back to pending (after the receiver was fixed); returns how many."""
        o = self.outbox
        with self.engine.begin() as conn:
            return conn.execute(
                update(o).where(o.c.status == FAILED).values(status=PENDING)
            ).rowcount

    # -- reports -----------------------------------------------------------------------------

    def history(self, run_id: str | None = None) -> pd.DataFrame:
        """Every outbox row (or one run's), timestamps as UTC; what monitoring reads."""
        o = self.outbox
        query = select(o).order_by(o.c.as_of, o.c.run_id, o.c.rank)
        if run_id is not None:
            query = query.where(o.c.run_id == run_id)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=o.columns.keys())
        for col in ("as_of", "delivered_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        for col in ("churn_probability", "clv", "clv_low", "clv_high", "value_at_risk"):
            frame[col] = frame[col].astype(float)
        return frame

    def run_summary(self) -> pd.DataFrame:
        """Per run: selected, contact, control, pending, sent, failed."""
        r, o = self.runs, self.outbox

        def count(condition) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        query = (
            select(
                r.c.run_id,
                r.c.campaign,
                r.c.as_of,
                func.count(o.c.id).label("selected"),
                count(o.c.group == CONTACT).label(CONTACT),
                count(o.c.group == CONTROL).label(CONTROL),
                count(o.c.status == PENDING).label(PENDING),
                count(o.c.status == SENT).label(SENT),
                count(o.c.status == FAILED).label(FAILED),
            )
            .select_from(r.outerjoin(o, o.c.run_id == r.c.run_id))
            .group_by(r.c.run_id, r.c.campaign, r.c.as_of)
            .order_by(r.c.as_of, r.c.run_id)
        )
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all())
        columns = ["run_id", "campaign", "as_of", "selected", CONTACT, CONTROL, *STATUSES[:3]]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
        return frame[columns].astype({c: int for c in columns[3:]})


def _first(values: pd.Series) -> Any:
    present = values.dropna()
    return str(present.iloc[0]) if len(present) else None


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def outbox_url_for(settings: Settings, data: str | Path | None) -> str:
    """`outreach.outbox_url`, or SQLite at <data folder>/outreach/outbox.db (./outreach/ when the
    data is a SQL source or not given)."""
    if settings.outreach.outbox_url:
        return settings.outreach.outbox_url
    return f"sqlite:///{(_outreach_home(data) / 'outbox.db').resolve()}"


def file_drop_dir_for(settings: Settings, data: str | Path | None) -> Path:
    if settings.outreach.file_drop_dir:
        return Path(settings.outreach.file_drop_dir)
    return _outreach_home(data) / "drop"


def _outreach_home(data: str | Path | None) -> Path:
    if data is None or "://" in str(data):
        return Path("outreach")
    return Path(data) / "outreach"


def read_outbox(outbox: str | Outbox) -> pd.DataFrame:
    """The outbox history as a DataFrame, one row per selected customer and run: run_id, as_of,
    campaign, window, customer_id, segment, rank, group (contact/control), control_draw,
    churn_probability, clv, clv_low, clv_high, value_at_risk, tier, reason_1..3, model versions,
    status, attempts, last_error, channel, delivered_at. For measuring the effect of outreach."""
    if isinstance(outbox, Outbox):
        return outbox.history()
    with Outbox(outbox, create=False) as box:
        return box.history()


# ---------------------------------------------------------------------------------------------
# One run


@dataclass
class OutreachReport:
    run_id: str
    campaign: str
    as_of: pd.Timestamp
    window: str
    outbox: str  # URL with any password hidden
    new_run: bool  # False: this as_of was already recorded; only pending contacts were dispatched
    dry_run: bool
    counts: dict[str, int]
    selection: pd.DataFrame
    channel: str | None = None  # webhook or file; None when nothing was dispatched
    delivered: int = 0
    failed: int = 0
    pending: int = 0  # contacts still pending in the whole outbox after this run
    requeued: int = 0
    stopped: str | None = None  # why dispatch stopped early (receiver unavailable)
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        verb = "would select" if self.dry_run else ("selected" if self.new_run else "already had")
        lines = [
            f"outreach run {self.run_id} (window {self.window}, outbox {self.outbox})",
            f"  candidates {c.get('candidates', 0):,}: below min churn probability "
            f"{c.get('below_min_churn_probability', 0):,}, below min CLV {c.get('below_min_clv', 0):,}, "
            f"excluded segment {c.get('excluded_segment', 0):,}, excluded customer "
            f"{c.get('excluded_customer', 0):,}, in cooldown {c.get('in_cooldown', 0):,}, "
            f"already in window {c.get('already_in_window', 0):,}, beyond capacity "
            f"{c.get('beyond_capacity', 0):,}",
            f"  {verb} {c.get('selected', 0):,}: {c.get('contact', 0):,} contact, "
            f"{c.get('control', 0):,} control (held out, never contacted)",
        ]
        if self.dry_run:
            return "\n".join(lines)
        if self.requeued:
            lines.append(f"  requeued {self.requeued:,} failed contacts")
        if self.channel:
            lines.append(
                f"  dispatch via {self.channel}: {self.delivered:,} delivered, "
                f"{self.failed:,} failed, {self.pending:,} still pending"
            )
        for path in self.files:
            lines.append(f"  file drop: {path}")
        if self.stopped:
            lines.append(f"  dispatch stopped early: {self.stopped}")
        return "\n".join(lines)


def run_outreach(
    scored: pd.DataFrame,
    as_of: pd.Timestamp | str,
    settings: Settings,
    *,
    data_dir: str | Path | None = None,
    outbox_url: str | None = None,
    webhook_url: str | None = None,
    file_drop_dir: str | Path | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    explain: Callable[[list[str]], pd.DataFrame] | None = None,
    progress: Progress | None = None,
    **dispatch_options: Any,
) -> OutreachReport:
    """Select, record and dispatch one outreach run at `as_of`, then deliver whatever is still
    pending from earlier runs. The same `as_of` again records nothing new and only dispatches.

    `webhook_url` None means `settings.outreach.webhook_url` (the CLI resolves the environment
    variable); an empty URL means the CSV file drop. `explain(customer_ids)` returns reason_1..3
    indexed by customer_id, for selected customers whose reasons are empty (batch scoring writes
    reasons for the top of the whole list only). `dispatch_options` go to the dispatcher (tests
    inject `client`, `sleep`, `rng`)."""
    say = progress or (lambda _message: None)
    policy = settings.outreach
    as_of = _utc(as_of)
    url = outbox_url or outbox_url_for(settings, data_dir)
    if dry_run:
        return _dry_run(scored, as_of, policy, url)
    # Built first, so a bad webhook URL stops the run before anything is recorded.
    hook = policy.webhook_url if webhook_url is None else webhook_url
    drop = Path(file_drop_dir) if file_drop_dir else file_drop_dir_for(settings, data_dir)
    dispatcher = make_dispatcher(policy, hook, drop, **dispatch_options)

    with Outbox(url) as box:
        report = _record(box, scored, as_of, policy, explain, say)
        if retry_failed:
            report.requeued = box.requeue_failed()
        result = dispatcher.dispatch(box, progress=say)
        report.channel = result.channel
        report.delivered, report.failed = result.delivered, result.failed
        report.stopped, report.files = result.stopped, result.files
        report.pending = len(box.pending_contacts())
        report.selection = box.history(report.run_id)
    return report


def make_dispatcher(policy: OutreachSettings, webhook_url: str, drop_dir: Path, **options: Any):
    """The webhook when a URL is given, else the CSV file drop: one channel per dispatch pass."""
    from serving.outreach_dispatch import FileDropDispatcher, WebhookDispatcher

    if webhook_url:
        return WebhookDispatcher.from_settings(webhook_url, policy, **options)
    return FileDropDispatcher(drop_dir)


def _report(selection: Selection, url: str, *, new_run: bool, dry_run: bool) -> OutreachReport:
    return OutreachReport(
        run_id=selection.run_id,
        campaign=selection.campaign,
        as_of=selection.as_of,
        window=selection.window.label,
        outbox=_redact(url),
        new_run=new_run,
        dry_run=dry_run,
        counts=selection.counts,
        selection=selection.rows,
    )


def _dry_run(
    scored: pd.DataFrame, as_of: pd.Timestamp, policy: OutreachSettings, url: str
) -> OutreachReport:
    window = campaign_window(as_of, policy.cooldown_days)
    cooling: set[str] = set()
    taken: set[str] = set()
    try:
        with Outbox(url, create=False) as box:
            cooling = box.customers_in_cooldown(as_of, policy.cooldown_days)
            taken = box.keys_in_window(policy.campaign, window.label)
    except NoOutboxError:
        pass  # no outbox yet: nobody is in cooldown
    selection = select_contacts(scored, as_of, policy, in_cooldown=cooling, keys_taken=taken)
    return _report(selection, url, new_run=True, dry_run=True)


def _record(
    box: Outbox,
    scored: pd.DataFrame,
    as_of: pd.Timestamp,
    policy: OutreachSettings,
    explain: Callable[[list[str]], pd.DataFrame] | None,
    say: Progress,
) -> OutreachReport:
    """Select and record the run at `as_of`, unless it is recorded already."""
    run_id = run_id_for(policy.campaign, as_of)
    window = campaign_window(as_of, policy.cooldown_days)
    new_run = False
    if box.run_record(run_id) is None:
        cooling = box.customers_in_cooldown(as_of, policy.cooldown_days)
        taken = box.keys_in_window(policy.campaign, window.label)
        selection = select_contacts(scored, as_of, policy, in_cooldown=cooling, keys_taken=taken)
        if explain is not None:
            selection.rows = fill_reasons(selection.rows, explain)
        new_run = box.record_run(selection, policy)
    if new_run:
        c = selection.counts
        say(f"recorded run {run_id}: {c['contact']:,} contact, {c['control']:,} control")
    else:
        say(f"run {run_id} is already recorded; dispatching pending contacts only")
    record = box.run_record(run_id)
    assert record is not None  # recorded above, now or by an earlier run
    stored = Selection(
        run_id, policy.campaign, as_of, window, box.history(run_id), json.loads(record["counts"])
    )
    return _report(stored, box.url, new_run=new_run, dry_run=False)


def slug(text: str) -> str:
    """A file-name-safe form of a campaign or run id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"
