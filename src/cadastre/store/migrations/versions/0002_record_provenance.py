"""Provenance as one row per record: ``record_provenance.fields`` holds every field's stamp.

One row per field (0001's ``field_provenance``) cost a database row per field written: 78 rows
for a RESO listing of 78 fields, which made provenance most of the cost of a sync. The stamps of
the fields one change wrote are identical, so the row stores the distinct stamps once and maps
each field to its stamp: ``{"stamps": [[system, connection, source_time, source_version,
confidence, recorded_at], ...], "fields": {"ListPrice": 0, ...}}`` (times as ISO 8601 UTC).

Existing provenance is carried over.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands DateTime columns back as text in raw selects
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def upgrade() -> None:
    op.create_table(
        "record_provenance",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "id", name="pk_record_provenance"),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT tenant, entity, id, field, system, connection, source_time, source_version,"
            " confidence, recorded_at FROM field_provenance"
        )
    )
    grouped: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"stamps": [], "fields": {}}
    )
    for r in rows:
        blob = grouped[(r.tenant, r.entity, r.id)]
        stamp = [r.system, r.connection, _iso(r.source_time), r.source_version,
                 float(r.confidence), _iso(r.recorded_at)]  # fmt: skip
        if stamp not in blob["stamps"]:
            blob["stamps"].append(stamp)
        blob["fields"][r.field] = blob["stamps"].index(stamp)
    table = sa.table(
        "record_provenance", sa.column("tenant"), sa.column("entity"), sa.column("id"),
        sa.column("fields", JSON),
    )  # fmt: skip
    if grouped:
        op.bulk_insert(
            table,
            [{"tenant": k[0], "entity": k[1], "id": k[2], "fields": v} for k, v in grouped.items()],
        )
    op.drop_table("field_provenance")


def downgrade() -> None:
    op.create_table(
        "field_provenance",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=True),
        sa.Column("source_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_version", sa.String(200), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "id", "field", name="pk_field_provenance"),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT tenant, entity, id, fields FROM record_provenance"))
    out = []
    for r in rows:
        blob = r.fields if isinstance(r.fields, dict) else json.loads(r.fields)
        for field, index in blob["fields"].items():
            system, connection, source_time, version, confidence, recorded = blob["stamps"][index]
            out.append({
                "tenant": r.tenant, "entity": r.entity, "id": r.id, "field": field,
                "system": system, "connection": connection,
                "source_time": datetime.fromisoformat(source_time) if source_time else None,
                "source_version": version, "confidence": confidence,
                "recorded_at": datetime.fromisoformat(recorded),
            })  # fmt: skip
    if out:
        table = sa.table(
            "field_provenance", *(sa.column(n) for n in (
                "tenant", "entity", "id", "field", "system", "connection", "source_time",
                "source_version", "confidence", "recorded_at")),
        )  # fmt: skip
        op.bulk_insert(table, out)
    op.drop_table("record_provenance")
