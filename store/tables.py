"""The store's tables, defined once (SQLAlchemy Core). One namespace `Tables` holds them all so
every reader and writer names the same columns.

- `inbox_events`, `inbox_feedback`: ingested rows in the contract's shape, keyed by `row_id`
  (the client's `event_id`, or a hash of the row's normalised content) so a retried batch lands
  once; `seq` orders them; `processed_at` is set when the loop has handled the row.
- `inbox_rejected`: rows that failed the contract, with the field and the reason.
- `moments`: one row per negative moment (a row of the inbox), what the loop decided for it
  (`outcome`), the holdout draw and the scores it was decided on.
- `cases`: recovery and retention cases; `open_key` (customer and reason) is set while the case
  is open and unique, so there is never a second open case for the same customer and reason;
  `version` counts changes, for optimistic updates.
- `case_history`: append-only, one row per transition (who, when, from, to, note).
- `case_handoffs`: the cases' outbox for webhook and file drop (idempotency key per hand-off).
- `outreach_runs`, `outreach_outbox`: every batch outreach run and each customer it selected
  (contact or control), with the contact's delivery state (pending, sent, failed), its
  idempotency key and, while a dispatcher holds it, its claim.
- `case_links`: each outreach contact (by its outbox idempotency key) and the retention case it
  opened or joined, so a run recorded again opens nothing twice.
- `score_history`: every real-time rescoring (scores, reasons, model versions).
- `contacts`: contact outcomes a CX agent logged for a customer (who, when, channel, outcome).
- `users`: people of the CX workspace, their role and the hash of their one-time sign-in token
  (the token itself is never stored); `web_sessions`: signed-in sessions by the hash of their
  cookie, with the session's CSRF token; `saved_views`: a user's named filters of the at-risk list.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
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
    UniqueConstraint,
)

ID = String(255)


@dataclass(frozen=True)
class Tables:
    inbox_events: Table
    inbox_feedback: Table
    inbox_rejected: Table
    moments: Table
    cases: Table
    case_history: Table
    case_handoffs: Table
    case_links: Table
    score_history: Table
    contacts: Table
    users: Table
    web_sessions: Table
    saved_views: Table
    outreach_runs: Table
    outreach_outbox: Table

    def inbox(self, name: str) -> Table:
        return {"events": self.inbox_events, "feedback": self.inbox_feedback}[name]


def _inbox_common(name: str) -> list:
    return [
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("row_id", String(64), nullable=False, unique=True),
        Column("customer_id", ID, nullable=False),
        Column("ts", DateTime, nullable=False),
        Column("received_at", DateTime, nullable=False),
        Column("source", String(200), nullable=False),
        Column("processed_at", DateTime),
        Index(f"ix_{name}_customer_ts", "customer_id", "ts"),
        Index(f"ix_{name}_processed", "processed_at"),
    ]


def define(metadata: MetaData) -> Tables:
    inbox_events = Table(
        "inbox_events",
        metadata,
        *_inbox_common("inbox_events"),
        Column("channel", String(20), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("amount", Float),
        Column("resolved", Boolean),
        Column("extra", Text),  # JSON: further columns of the row (invoice_no, quantity...)
    )
    inbox_feedback = Table(
        "inbox_feedback",
        metadata,
        *_inbox_common("inbox_feedback"),
        Column("survey", String(10), nullable=False),
        Column("score", Float, nullable=False),
        Column("comment", Text),
    )
    inbox_rejected = Table(
        "inbox_rejected",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("row_key", String(64), nullable=False, unique=True),  # hash of table and row
        Column("table_name", String(20), nullable=False),
        Column("received_at", DateTime, nullable=False),
        Column("source", String(200), nullable=False),
        Column("item", Integer, nullable=False),  # position in its batch or file
        Column("row", Text, nullable=False),  # JSON of the row as received
        Column("field", String(100)),
        Column("reason", Text, nullable=False),
    )
    moments = Table(
        "moments",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("row_id", String(64), nullable=False, unique=True),
        Column("table_name", String(20), nullable=False),
        Column("customer_id", ID, nullable=False),
        Column("ts", DateTime, nullable=False),
        Column("reason", String(40), nullable=False),
        Column("detail", Text, nullable=False),
        Column("comment", Text),
        Column("recorded_at", DateTime, nullable=False),
        Column("outcome", String(20), nullable=False),
        Column("held_out", Boolean, nullable=False),
        Column("draw", Float, nullable=False),
        Column("case_id", Integer, ForeignKey("cases.id")),
        Column("churn_probability", Float),
        Column("clv", Float),
        Column("value_at_risk", Float),
        Column("tier", String(20)),
        Column("churn_model_version", String(100)),
        Column("clv_model_version", String(100)),
        Index("ix_moments_customer_ts", "customer_id", "ts"),
    )
    cases = Table(
        "cases",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(20), nullable=False),  # recovery | retention
        Column("customer_id", ID, nullable=False),
        Column("segment", String(200)),
        Column("reason", String(40), nullable=False),
        Column("reason_text", Text, nullable=False),
        Column("trigger", Text, nullable=False),  # JSON: the triggering row(s)
        Column("priority", String(4), nullable=False),
        Column("owner", String(200), nullable=False),
        Column("status", String(20), nullable=False),
        Column("opened_at", DateTime, nullable=False),
        Column("due_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
        Column("first_response_at", DateTime),
        Column("closed_at", DateTime),
        Column("resolution", String(100)),
        Column("note", Text),
        Column("version", Integer, nullable=False),
        Column("moments", Integer, nullable=False),
        Column("escalations", Integer, nullable=False),
        Column("churn_probability", Float),
        Column("clv", Float),
        Column("value_at_risk", Float),
        Column("tier", String(20)),
        Column("churn_model_version", String(100)),
        Column("clv_model_version", String(100)),
        Column("open_key", String(400), unique=True),
        Index("ix_cases_status_due", "status", "due_at"),
        Index("ix_cases_owner", "owner"),
        Index("ix_cases_customer", "customer_id"),
    )
    case_history = Table(
        "case_history",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
        Column("at", DateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("from_status", String(20)),
        Column("to_status", String(20), nullable=False),
        Column("note", Text),
        Column("detail", Text),  # JSON: what else changed (owner, priority, resolution, row)
        Index("ix_case_history_case", "case_id"),
    )
    case_handoffs = Table(
        "case_handoffs",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("idempotency_key", String(64), nullable=False, unique=True),
        Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
        Column("event", String(20), nullable=False),  # opened | escalated
        Column("payload", Text, nullable=False),  # JSON sent as is
        Column("created_at", DateTime, nullable=False),
        Column("status", String(10), nullable=False),  # pending | sent | failed
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text),
        Column("delivered_at", DateTime),
        Column("filed_at", DateTime),  # when the file drop wrote it
        # Which delivery holds the row, and until when (another may take it after): several
        # processes on one store post each hand-off once.
        Column("claimed_by", String(64)),
        Column("claimed_until", DateTime),
        Index("ix_case_handoffs_status", "status"),
    )
    case_links = Table(
        "case_links",
        metadata,
        Column("source_key", String(64), primary_key=True),
        Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    )
    score_history = Table(
        "score_history",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("customer_id", ID, nullable=False),
        Column("as_of", DateTime, nullable=False),
        Column("scored_at", DateTime, nullable=False),
        Column("row_id", String(64)),  # the ingested row that triggered the rescoring
        Column("churn_probability", Float, nullable=False),
        Column("clv", Float, nullable=False),
        Column("clv_low", Float),
        Column("clv_high", Float),
        Column("value_at_risk", Float, nullable=False),
        Column("tier", String(20), nullable=False),
        Column("reason_1", Text),
        Column("reason_2", Text),
        Column("reason_3", Text),
        Column("churn_model_version", String(100)),
        Column("clv_model_version", String(100)),
        Index("ix_score_history_customer", "customer_id", "as_of"),
    )
    contacts = Table(
        "contacts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("customer_id", ID, nullable=False),
        Column("at", DateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("outcome", String(40), nullable=False),
        Column("note", Text),
        Column("case_id", Integer, ForeignKey("cases.id")),
        Index("ix_contacts_customer", "customer_id", "at"),
    )
    users = Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("role", String(10), nullable=False),  # agent | lead | admin
        Column("token_hash", String(64), unique=True),  # None once exchanged for a session
        Column("token_expires_at", DateTime),
        Column("created_at", DateTime, nullable=False),
        Column("disabled", Boolean, nullable=False),
    )
    web_sessions = Table(
        "web_sessions",
        metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("csrf", String(64), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("expires_at", DateTime, nullable=False),
    )
    saved_views = Table(
        "saved_views",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("name", String(100), nullable=False),
        Column("query", Text, nullable=False),  # the at-risk list's query string
        Column("created_at", DateTime, nullable=False),
        UniqueConstraint("user_id", "name", name="uq_saved_views_user_name"),
    )
    outreach_runs, outreach_outbox = _outreach(metadata)
    return Tables(
        inbox_events,
        inbox_feedback,
        inbox_rejected,
        moments,
        cases,
        case_history,
        case_handoffs,
        case_links,
        score_history,
        contacts,
        users,
        web_sessions,
        saved_views,
        outreach_runs,
        outreach_outbox,
    )


def _outreach(metadata: MetaData) -> tuple[Table, Table]:
    runs = Table(
        "outreach_runs",
        metadata,
        Column("run_id", String(255), primary_key=True),
        Column("campaign", String(200), nullable=False),
        Column("as_of", DateTime, nullable=False),
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
        Column("customer_id", ID, nullable=False),
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
        Column("delivered_at", DateTime),  # wall-clock time the receiver accepted it
        # As on case_handoffs: the webhook delivery holding the row, and until when.
        Column("claimed_by", String(64)),
        Column("claimed_until", DateTime),
        Index("ix_outreach_outbox_customer_as_of", "customer_id", "as_of"),
        Index("ix_outreach_outbox_status", "status"),
        Index("ix_outreach_outbox_run", "run_id"),
        Index("ix_outreach_outbox_as_of", "as_of"),
    )
    return runs, outbox
