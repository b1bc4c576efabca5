"""Configuration versions (issue 9): config_versions.

Every version of a mapping registry file and of the ownership registry, by (kind, name,
version), with the file's text exactly, its sha256, who changed it, when and why. Global, like
``tenants``: no tenant column. The primary key is what lets two workers that notice one hand
edit at once make one version between them (the second insert conflicts and finds the first).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "config_versions",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_at", TIME, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "version", name="pk_config_versions"),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
