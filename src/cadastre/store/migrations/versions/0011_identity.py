"""Identity resolution (issue 8): links between records of the same person.

``identity_links`` (a CRM Contact and a PMS Resident of one person: confidence, evidence, state
``suggested|linked|rejected``, auto or manual; one live row per pair, broken rows kept as
history; at most one live ``linked`` row per resident) and ``identity_keys`` (the normalised
e-mail addresses and phone numbers the matcher finds candidates by).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "identity_links",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("left_entity", sa.String(64), nullable=False),
        sa.Column("left_id", sa.String(255), nullable=False),
        sa.Column("right_entity", sa.String(64), nullable=False),
        sa.Column("right_id", sa.String(255), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("how", sa.String(8), nullable=False),
        sa.Column("made_by", sa.String(200), nullable=False),
        sa.Column("made_at", TIME, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("broken_by", sa.String(200), nullable=True),
        sa.Column("broken_at", TIME, nullable=True),
        sa.Column("broken_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_identity_links"),
        sa.UniqueConstraint("id", name="uq_identity_links_id"),
    )
    op.create_index(
        "ix_identity_links_left", "identity_links", ["tenant", "left_entity", "left_id"]
    )
    op.create_index(
        "ix_identity_links_right", "identity_links", ["tenant", "right_entity", "right_id"]
    )
    live = sa.text("broken_at IS NULL")
    op.create_index(
        "uq_identity_links_pair", "identity_links",
        ["tenant", "left_entity", "left_id", "right_entity", "right_id"], unique=True,
        sqlite_where=live, postgresql_where=live,
    )  # fmt: skip
    live_linked = sa.text("broken_at IS NULL AND state = 'linked'")
    op.create_index(
        "uq_identity_links_linked", "identity_links", ["tenant", "right_entity", "right_id"],
        unique=True, sqlite_where=live_linked, postgresql_where=live_linked,
    )  # fmt: skip
    op.create_table(
        "identity_keys",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "record_id", "kind", "value",
                                name="pk_identity_keys"),
    )  # fmt: skip
    op.create_index(
        "ix_identity_keys_value", "identity_keys", ["tenant", "kind", "value", "entity"]
    )


def downgrade() -> None:
    op.drop_table("identity_keys")
    op.drop_index("uq_identity_links_linked", table_name="identity_links")
    op.drop_index("uq_identity_links_pair", table_name="identity_links")
    op.drop_index("ix_identity_links_right", table_name="identity_links")
    op.drop_index("ix_identity_links_left", table_name="identity_links")
    op.drop_table("identity_links")
