"""The closed loop's store: the inbox and its quarantine, negative moments, cases with their
history, hand-offs and links, and the real-time score history (the schema before the workspace).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("segment", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("reason_text", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(length=4), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("first_response_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("resolution", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("moments", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("churn_probability", sa.Float(), nullable=True),
        sa.Column("clv", sa.Float(), nullable=True),
        sa.Column("value_at_risk", sa.Float(), nullable=True),
        sa.Column("tier", sa.String(length=20), nullable=True),
        sa.Column("churn_model_version", sa.String(length=100), nullable=True),
        sa.Column("clv_model_version", sa.String(length=100), nullable=True),
        sa.Column("open_key", sa.String(length=400), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index("ix_cases_customer", "cases", ["customer_id"], unique=False)
    op.create_index("ix_cases_owner", "cases", ["owner"], unique=False)
    op.create_index("ix_cases_status_due", "cases", ["status", "due_at"], unique=False)
    op.create_table(
        "inbox_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("row_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("row_id"),
    )
    op.create_index(
        "ix_inbox_events_customer_ts", "inbox_events", ["customer_id", "ts"], unique=False
    )
    op.create_index("ix_inbox_events_processed", "inbox_events", ["processed_at"], unique=False)
    op.create_table(
        "inbox_feedback",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("row_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.Column("survey", sa.String(length=10), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("row_id"),
    )
    op.create_index(
        "ix_inbox_feedback_customer_ts", "inbox_feedback", ["customer_id", "ts"], unique=False
    )
    op.create_index("ix_inbox_feedback_processed", "inbox_feedback", ["processed_at"], unique=False)
    op.create_table(
        "inbox_rejected",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("row_key", sa.String(length=64), nullable=False),
        sa.Column("table_name", sa.String(length=20), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("row", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("row_key"),
    )
    op.create_table(
        "score_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.Column("row_id", sa.String(length=64), nullable=True),
        sa.Column("churn_probability", sa.Float(), nullable=False),
        sa.Column("clv", sa.Float(), nullable=False),
        sa.Column("clv_low", sa.Float(), nullable=True),
        sa.Column("clv_high", sa.Float(), nullable=True),
        sa.Column("value_at_risk", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("reason_1", sa.Text(), nullable=True),
        sa.Column("reason_2", sa.Text(), nullable=True),
        sa.Column("reason_3", sa.Text(), nullable=True),
        sa.Column("churn_model_version", sa.String(length=100), nullable=True),
        sa.Column("clv_model_version", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_score_history_customer", "score_history", ["customer_id", "as_of"], unique=False
    )
    op.create_table(
        "case_handoffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("filed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_case_handoffs_status", "case_handoffs", ["status"], unique=False)
    op.create_table(
        "case_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_history_case", "case_history", ["case_id"], unique=False)
    op.create_table(
        "case_links",
        sa.Column("source_key", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("source_key"),
    )
    op.create_table(
        "moments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("row_id", sa.String(length=64), nullable=False),
        sa.Column("table_name", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("draw", sa.Float(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("churn_probability", sa.Float(), nullable=True),
        sa.Column("clv", sa.Float(), nullable=True),
        sa.Column("value_at_risk", sa.Float(), nullable=True),
        sa.Column("tier", sa.String(length=20), nullable=True),
        sa.Column("churn_model_version", sa.String(length=100), nullable=True),
        sa.Column("clv_model_version", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("row_id"),
    )
    op.create_index("ix_moments_customer_ts", "moments", ["customer_id", "ts"], unique=False)


def downgrade() -> None:
    op.drop_table("moments")
    op.drop_table("case_links")
    op.drop_table("case_history")
    op.drop_table("case_handoffs")
    op.drop_table("score_history")
    op.drop_table("inbox_rejected")
    op.drop_table("inbox_feedback")
    op.drop_table("inbox_events")
    op.drop_table("cases")
