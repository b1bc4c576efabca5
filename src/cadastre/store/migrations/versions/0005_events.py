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
    pass  # filled in by the part of issue 7 that owns these tables


def downgrade() -> None:
    pass
