"""Canonical events (issue 7): the relay's publish order for the change feed (outbox.feed_seq) and bus consumers' de-duplication (consumed_events).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch_alter_table: SQLite adds the column in place; existing rows (published or not) have
    # no feed_seq, so the change feed starts with what the relay publishes from now on.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("feed_seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_outbox_feed", "outbox", ["tenant", "feed_seq"], unique=True)
    unpublished = sa.text("published_at IS NULL")
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["tenant", "position"],
        sqlite_where=unpublished, postgresql_where=unpublished,
    )  # fmt: skip
    op.create_table(
        "consumed_events",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seen_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "consumer", "event_id", name="pk_consumed_events"),
    )
    op.create_index("ix_consumed_events_seen", "consumed_events", ["tenant", "seen_at"])


def downgrade() -> None:
    op.drop_index("ix_consumed_events_seen", table_name="consumed_events")
    op.drop_table("consumed_events")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_index("ix_outbox_feed", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("feed_seq")
