"""Credentials kept by the hub's vault: ``credentials`` (scheme, status and non-secret facts in the
clear, a version for compare-and-set), ``credential_secrets`` (one sealed secret field per row,
indexed by the master key that wraps it, for key rotation) and ``credential_reads`` (who decrypted
which fields of a credential, when and what for; never the values).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("refresh_started_at", TIME, nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", name="pk_credentials"),
    )
    op.create_table(
        "credential_secrets",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "credential", "field", name="pk_credential_secrets"),
    )
    op.create_index("ix_credential_secrets_key_id", "credential_secrets", ["tenant", "key_id"])
    op.create_table(
        "credential_reads",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_credential_reads"),
    )
    op.create_index(
        "ix_credential_reads_credential",
        "credential_reads",
        ["tenant", "credential", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_credential_reads_credential", table_name="credential_reads")
    op.drop_table("credential_reads")
    op.drop_index("ix_credential_secrets_key_id", table_name="credential_secrets")
    op.drop_table("credential_secrets")
    op.drop_table("credentials")
