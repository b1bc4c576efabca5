"""Conflict resolution (issue 8): field version vectors and the review queue.

``field_versions`` holds one JSON row per record with the version vector of each shared field
(``{"Email": {"v": 3, "seen": {"crm-main": 3}}}``); ``conflicts`` is the review queue of
concurrent edits that source time could not order.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "field_versions",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "id", name="pk_field_versions"),
    )
    op.create_table(
        "conflicts",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("current", JSON, nullable=False),
        sa.Column("incoming", JSON, nullable=False),
        sa.Column("vector", JSON, nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("resolved_value", JSON, nullable=True),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("position", name="pk_conflicts"),
        sa.UniqueConstraint("id", name="uq_conflicts_id"),
    )
    op.create_index("ix_conflicts_state", "conflicts", ["tenant", "state", "entity", "position"])
    op.create_index("ix_conflicts_record", "conflicts", ["tenant", "entity", "record_id"])
    # one record's audit trail (`cadastre audit show`, GET /v1/audit) without walking the chain
    op.create_index("ix_audit_log_entity", "audit_log", ["tenant", "entity", "entity_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_entity", table_name="audit_log")
    op.drop_table("conflicts")
    op.drop_table("field_versions")
