"""The outreach outbox moves into the store: every run and each customer it selected, with the
contact's delivery state and a claim, so several processes on one store deliver each contact once.
(An outbox of an earlier release, its own SQLite file, is copied in by `serving.outreach.outbox`,
which knows where it lived.)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outreach_runs",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("window", sa.String(length=40), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("churn_model_version", sa.String(length=100), nullable=True),
        sa.Column("clv_model_version", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "outreach_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("window", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("segment", sa.String(length=200), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=10), nullable=False),
        sa.Column("control_draw", sa.Float(), nullable=False),
        sa.Column("churn_probability", sa.Float(), nullable=True),
        sa.Column("clv", sa.Float(), nullable=True),
        sa.Column("clv_low", sa.Float(), nullable=True),
        sa.Column("clv_high", sa.Float(), nullable=True),
        sa.Column("value_at_risk", sa.Float(), nullable=True),
        sa.Column("tier", sa.String(length=20), nullable=True),
        sa.Column("reason_1", sa.Text(), nullable=True),
        sa.Column("reason_2", sa.Text(), nullable=True),
        sa.Column("reason_3", sa.Text(), nullable=True),
        sa.Column("churn_model_version", sa.String(length=100), nullable=True),
        sa.Column("clv_model_version", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["outreach_runs.run_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    for name, columns in (
        ("ix_outreach_outbox_customer_as_of", ["customer_id", "as_of"]),
        ("ix_outreach_outbox_status", ["status"]),
        ("ix_outreach_outbox_run", ["run_id"]),
        ("ix_outreach_outbox_as_of", ["as_of"]),
    ):
        op.create_index(name, "outreach_outbox", columns, unique=False)


def downgrade() -> None:
    op.drop_table("outreach_outbox")
    op.drop_table("outreach_runs")
