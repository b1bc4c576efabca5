"""Alerts (issue 9): the alerts table; webhook_subscriptions.format; outbox.event_type.

``alerts`` holds every episode of every alert (pending, firing, resolved), with a partial unique
index that allows one alert not resolved per (tenant, rule, key): two evaluators racing make one
alert. ``webhook_subscriptions.format`` (``standard`` | ``slack``) says what a subscription's
bodies are; existing subscriptions are ``standard``. ``outbox.event_type`` (filled in for the
rows already there) and its index let ``outbox.recent(types, since=...)`` find the schema drift
events of a tenant without reading its whole event history.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("vendor", sa.String(200), nullable=True),
        sa.Column("connection", sa.String(64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("changed", sa.Text(), nullable=False),
        sa.Column("since", TIME, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("rollback", sa.Text(), nullable=True),
        sa.Column("facts", JSON, nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("raised_at", TIME, nullable=True),
        sa.Column("last_seen_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_alerts"),
        sa.UniqueConstraint("id", name="uq_alerts_id"),
    )
    op.create_index("ix_alerts_state", "alerts", ["tenant", "state", "position"])
    op.create_index("ix_alerts_connection", "alerts", ["tenant", "connection", "position"])
    op.create_index("ix_alerts_rule", "alerts", ["tenant", "rule", "position"])
    unresolved = sa.text("state != 'resolved'")
    op.create_index(
        "uq_alerts_current", "alerts", ["tenant", "rule", "key"], unique=True,
        sqlite_where=unresolved, postgresql_where=unresolved,
    )  # fmt: skip
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(
            sa.Column("format", sa.String(16), nullable=False, server_default="standard")
        )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("event_type", sa.String(200), nullable=True))
    # The events already written get their type from their JSON.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE outbox SET event_type = event->>'type'")
    else:
        op.execute("UPDATE outbox SET event_type = json_extract(event, '$.type')")
    op.create_index("ix_outbox_type", "outbox", ["tenant", "event_type", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_type", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("event_type")
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("format")
    op.drop_index("uq_alerts_current", table_name="alerts")
    op.drop_index("ix_alerts_rule", table_name="alerts")
    op.drop_index("ix_alerts_connection", table_name="alerts")
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_table("alerts")
