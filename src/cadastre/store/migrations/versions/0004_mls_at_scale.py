"""MLS at scale (issue 6): a record's data confidence (``records.confidence``), an API key's
payload class (``api_keys.payload_class``: full, vow or idx), what a quarantine entry needs for a
replay (``stream``, ``code``, ``attempts``), an index for key reconciliation over one connection's
refs, and ``schema_snapshots`` (a connection stream's schema as last seen, for schema drift).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch_alter_table: SQLite adds columns in place; the server defaults fill existing rows.
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("payload_class", sa.String(8), nullable=False, server_default="full")
        )
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("stream", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("code", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_external_refs_connection",
        "external_refs",
        ["tenant", "connection", "entity", "external_id"],
    )
    op.create_table(
        "schema_snapshots",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("declared", JSON, nullable=False),
        sa.Column("seen_fields", JSON, nullable=False),
        sa.Column("seen_values", JSON, nullable=False),
        sa.Column("taken_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "connection", "stream", name="pk_schema_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("schema_snapshots")
    op.drop_index("ix_external_refs_connection", table_name="external_refs")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("attempts")
        batch.drop_column("code")
        batch.drop_column("stream")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("payload_class")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("confidence")
