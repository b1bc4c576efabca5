"""Console operators (issue 9): operators and operator_sessions.

``operators``: the people who sign in to the operations console, across tenants (a null tenant
sees every tenant); the password is kept as an scrypt hash with its own salt and parameters.
``operator_sessions``: a signed-in browser, by the sha256 of its cookie's token (the token itself
is never stored), with the CSRF token its forms carry and when it expires.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_operators"),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_operator_sessions"),
    )
    op.create_index("ix_operator_sessions_operator", "operator_sessions", ["operator"])
    op.create_index("ix_operator_sessions_expires", "operator_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("operator_sessions")
    op.drop_table("operators")
