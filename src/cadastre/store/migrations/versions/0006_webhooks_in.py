"""Webhooks in (issue 7): the durable inbox of verified vendor webhooks and the refusals recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhooks_in",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("processed_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_webhooks_in"),
    )
    op.create_index(
        "ix_webhooks_in_message", "webhooks_in", ["tenant", "connection", "message_id"],
        unique=True,
    )  # fmt: skip
    op.create_index("ix_webhooks_in_received", "webhooks_in", ["tenant", "received_at"])
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_webhooks_in_due", "webhooks_in", ["tenant", "connection", "position"],
        sqlite_where=pending, postgresql_where=pending,
    )  # fmt: skip
    op.create_table(
        "webhook_refusals",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("minute", TIME, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", TIME, nullable=False),
        sa.Column("example", JSON, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "connection", "reason", "minute", name="pk_webhook_refusals"
        ),
    )


def downgrade() -> None:
    op.drop_table("webhook_refusals")
    op.drop_index("ix_webhooks_in_due", table_name="webhooks_in")
    op.drop_index("ix_webhooks_in_received", table_name="webhooks_in")
    op.drop_index("ix_webhooks_in_message", table_name="webhooks_in")
    op.drop_table("webhooks_in")
