"""Claims on case hand-offs: several processes sharing a store deliver each hand-off once (a
process claims pending rows for a lease before it posts them).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made before migrations by this release's table definitions already has them.
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("case_handoffs")}
    if "claimed_by" not in have:
        op.add_column("case_handoffs", sa.Column("claimed_by", sa.String(length=64)))
    if "claimed_until" not in have:
        op.add_column("case_handoffs", sa.Column("claimed_until", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("case_handoffs") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
