"""Write-back (issue 8): platform writes, their targets per connection, the write-back switches
(modes, kill switches) and the echo records of acknowledged vendor writes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "writes",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("canonical_id", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(8), nullable=False),
        sa.Column("patch", JSON, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("causation_id", sa.String(64), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_writes"),
    )
    op.create_index("ix_writes_record", "writes", ["tenant", "entity", "canonical_id"])
    op.create_table(
        "write_targets",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("write_id", sa.String(40), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("canonical_id", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(8), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("base_version", sa.String(200), nullable=True),
        sa.Column("receipt", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("claimed_until", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "write_id", "connection", name="pk_write_targets"),
    )
    op.create_index("ix_write_targets_due", "write_targets", ["tenant", "state", "next_attempt_at"])
    op.create_index(
        "ix_write_targets_connection", "write_targets", ["tenant", "connection", "state"]
    )
    op.create_table(
        "writeback_switches",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=True),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        sa.Column("stopped_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("stopped_at", TIME, nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "connection", name="pk_writeback_switches"),
    )
    op.create_table(
        "writeback_echoes",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("source_version", sa.String(200), nullable=True),
        sa.Column("values_hash", sa.String(64), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_writeback_echoes"),
    )
    op.create_index(
        "ix_writeback_echoes_record",
        "writeback_echoes",
        ["tenant", "connection", "entity", "external_id"],
    )
    op.create_index("ix_writeback_echoes_recorded", "writeback_echoes", ["tenant", "recorded_at"])


def downgrade() -> None:
    op.drop_table("writeback_echoes")
    op.drop_table("writeback_switches")
    op.drop_table("write_targets")
    op.drop_table("writes")
