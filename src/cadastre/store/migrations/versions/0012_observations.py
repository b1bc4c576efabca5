"""Vendor observations by minute (issue 9): vendor_minutes.

One row per (tenant, connection, minute) - connection "" for tenant-wide gauges - holding a
``MinuteRollup`` as JSON: calls by outcome and status, the latency histogram, error fingerprints
and response shapes, additive counters and sampled gauges. ``sync_ok`` repeats the counter of
that name so "when did this connection last sync" is an indexed MAX.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vendor_minutes",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("minute", TIME, nullable=False),
        sa.Column("vendor", sa.String(200), nullable=False),
        sa.Column("calls", JSON, nullable=False),
        sa.Column("statuses", JSON, nullable=False),
        sa.Column("latency", JSON, nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("shapes", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("gauges", JSON, nullable=False),
        sa.Column("sync_ok", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "connection", "minute", name="pk_vendor_minutes"),
    )
    op.create_index("ix_vendor_minutes_minute", "vendor_minutes", ["tenant", "minute"])


def downgrade() -> None:
    op.drop_index("ix_vendor_minutes_minute", table_name="vendor_minutes")
    op.drop_table("vendor_minutes")
