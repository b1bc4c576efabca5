"""Initial schema: directory, canonical records, cross reference, provenance, cursors,
quarantine, outbox, idempotency ledger, connections with versions, and the append-only,
hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Types are spelled out here, not imported from cadastre.store.tables, so this revision keeps
# meaning the same DDL when the tables module moves on.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def tenant() -> sa.Column[str]:
    return sa.Column("tenant", sa.String(64), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        tenant(),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    op.create_table(
        "records",
        tenant(),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "id", name="pk_records"),
    )
    op.create_table(
        "external_refs",
        tenant(),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("canonical_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "system", "connection", "entity", "external_id", name="pk_external_refs"
        ),
    )
    op.create_index(
        "ix_external_refs_canonical", "external_refs", ["tenant", "entity", "canonical_id"]
    )
    op.create_table(
        "field_provenance",
        tenant(),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("connection", sa.String(64), nullable=True),
        sa.Column("source_time", TIME, nullable=True),
        sa.Column("source_version", sa.String(200), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "entity", "id", "field", name="pk_field_provenance"),
    )
    op.create_table(
        "sync_cursors",
        tenant(),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "connection", "stream", name="pk_sync_cursors"),
    )
    op.create_table(
        "quarantine",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        tenant(),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("position", name="pk_quarantine"),
        sa.UniqueConstraint("id", name="uq_quarantine_id"),
    )
    op.create_index("ix_quarantine_open", "quarantine", ["tenant", "resolved_at", "connection"])
    op.create_table(
        "outbox",
        sa.Column("position", POSITION, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        tenant(),
        sa.Column("event", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("published_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("position", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["tenant", "published_at", "position"])
    op.create_table(
        "audit_log",
        tenant(),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("entity", sa.String(64), nullable=True),
        sa.Column("entity_id", sa.String(200), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "seq", name="pk_audit_log"),
    )
    op.create_table(
        "applied_changes",
        tenant(),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "idempotency_key", name="pk_applied_changes"),
    )
    op.create_table(
        "connections",
        tenant(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("credential", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", name="pk_connections"),
    )
    op.create_table(
        "connection_versions",
        tenant(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("credential", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", "version", name="pk_connection_versions"),
    )
    _append_only_audit_log()


def _append_only_audit_log() -> None:
    """Refuse UPDATE and DELETE on audit_log in the database itself, not only in code."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION cadastre_audit_log_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION cadastre_audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS cadastre_audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for table in (
        "connection_versions", "connections", "applied_changes", "audit_log", "outbox",
        "quarantine", "sync_cursors", "field_provenance", "external_refs", "records",
        "api_keys", "tenants",
    ):
        op.drop_table(table)
