"""The store's tables (SQLAlchemy Core). Alembic migrations create them; this module is what the
repositories query and what the migration test compares against.

Every tenant-scoped table has a ``tenant`` column at the front of its key, and every repository
query filters on the unit of work's tenant. There is no foreign key to ``tenants``: the directory
creates tenants, but the sync engine and its tests may write for a tenant id they were handed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out. SQLite keeps no offset, so values are stored
    as UTC and the offset is put back on the way out; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store keeps timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
Position = BigInteger().with_variant(Integer(), "sqlite")


def _tenant() -> Column[str]:
    return Column("tenant", String(64), primary_key=True)


tenants = Table(
    "tenants", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)  # fmt: skip

api_keys = Table(
    "api_keys", metadata,
    Column("key_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("scope", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex; the secret is never stored
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("payload_class", String(8), nullable=False, default="full"),
)  # fmt: skip

records = Table(
    "records", metadata,
    _tenant(),
    Column("entity", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("data", Json, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("confidence", Float, nullable=True),  # data confidence of the last scored write
)  # fmt: skip

external_refs = Table(
    "external_refs", metadata,
    _tenant(),
    Column("system", String(64), primary_key=True),
    Column("connection", String(64), primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("external_id", String(200), primary_key=True),
    Column("canonical_id", String(200), nullable=False),
    Index("ix_external_refs_canonical", "tenant", "entity", "canonical_id"),
    # key reconciliation pages one connection's refs by external id
    Index("ix_external_refs_connection", "tenant", "connection", "entity", "external_id"),
)  # fmt: skip

# One row per record; ``fields`` maps each field to one of the record's distinct stamps
# (migration 0002 says why and gives the layout).
record_provenance = Table(
    "record_provenance", metadata,
    _tenant(),
    Column("entity", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("fields", Json, nullable=False),
)  # fmt: skip

sync_cursors = Table(
    "sync_cursors", metadata,
    _tenant(),
    Column("connection", String(64), primary_key=True),
    Column("stream", String(200), primary_key=True),
    Column("value", Json, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

quarantine = Table(
    "quarantine", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("connection", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("reason", Text, nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("stream", String(200), nullable=False, default=""),
    Column("code", String(64), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Index("ix_quarantine_open", "tenant", "resolved_at", "connection"),
)  # fmt: skip

# One row per (connection, stream): its schema as last seen (migration 0004).
schema_snapshots = Table(
    "schema_snapshots", metadata,
    _tenant(),
    Column("connection", String(64), primary_key=True),
    Column("stream", String(200), primary_key=True),
    Column("declared", Json, nullable=False),
    Column("seen_fields", Json, nullable=False),
    Column("seen_values", Json, nullable=False),
    Column("taken_at", UtcDateTime(), nullable=False),
)  # fmt: skip

outbox = Table(
    "outbox", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("event", Json, nullable=False),  # the CloudEvents envelope, JSON mode
    Column("created_at", UtcDateTime(), nullable=False),
    Column("published_at", UtcDateTime(), nullable=True),
    Index("ix_outbox_pending", "tenant", "published_at", "position"),
)  # fmt: skip

audit_log = Table(
    "audit_log", metadata,
    _tenant(),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(200), nullable=False),
    Column("entity", String(64), nullable=True),
    Column("entity_id", String(200), nullable=True),
    Column("detail", Json, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)  # fmt: skip

applied_changes = Table(
    "applied_changes", metadata,
    _tenant(),
    Column("idempotency_key", String(200), primary_key=True),
    Column("result", Json, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)  # fmt: skip

connections = Table(
    "connections", metadata,
    _tenant(),
    Column("name", String(64), primary_key=True),
    Column("system", String(64), nullable=False),
    Column("connector", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Column("credential", String(200), nullable=True),  # a reference, never a secret
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

connection_versions = Table(
    "connection_versions", metadata,
    _tenant(),
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("system", String(64), nullable=False),
    Column("connector", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Column("credential", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("change", String(32), nullable=False),
)  # fmt: skip

# A credential's clear facts; its secret fields, each sealed on its own (``SealedSecret``), live in
# ``credential_secrets``. ``version`` is the compare-and-set token of a refresh.
credentials = Table(
    "credentials", metadata,
    _tenant(),
    Column("name", String(64), primary_key=True),
    Column("scheme", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("meta", Json, nullable=False),  # non-secret facts only
    Column("version", Integer, nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("refresh_started_at", UtcDateTime(), nullable=True),
    Column("status_reason", Text, nullable=False, default=""),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

# One row per secret field: a data key wrapped under master key ``key_id`` and the value sealed
# under the data key. The index finds what a master-key rotation has not re-wrapped yet.
credential_secrets = Table(
    "credential_secrets", metadata,
    _tenant(),
    Column("credential", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Index("ix_credential_secrets_key_id", "tenant", "key_id"),
)  # fmt: skip

# Every decryption of a credential: who, what for, which fields (never the values).
credential_reads = Table(
    "credential_reads", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("credential", String(64), nullable=False),
    Column("fields", Json, nullable=False),  # a list of field names
    Column("actor", String(200), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_credential_reads_credential", "tenant", "credential", "position"),
)  # fmt: skip

# ---------------------------------------------------------------- events: bus (migration 0005)

# ---------------------------------------------------------------- events: webhooks in (0006)

# ---------------------------------------------------------------- events: webhooks out (0007)

TABLE_NAMES = tuple(sorted(metadata.tables))
