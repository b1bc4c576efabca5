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
    # sha256 of the payload's canonical JSON: an open entry holding the same version of a record
    # is found by it, and counted again rather than added twice (migration 0016)
    Column("digest", String(64), nullable=False),
    Column("sightings", Integer, nullable=False, default=1),
    Column("last_seen_at", UtcDateTime(), nullable=True),
    Index("ix_quarantine_open", "tenant", "resolved_at", "connection"),
    Index("ix_quarantine_digest", "tenant", "digest"),
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
    # one record's trail (`cadastre audit show`, GET /v1/audit): migration 0010
    Index("ix_audit_log_entity", "tenant", "entity", "entity_id", "seq"),
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

# The change feed's order: the relay numbers each tenant's events as it publishes them
# (``OutboxRepository.mark_published``). Declared here, not in ``outbox`` above, to keep issue 7's
# additions in one place; the column lands last, as migration 0005 adds it.
outbox.append_column(Column("feed_seq", BigInteger, nullable=True))
Index("ix_outbox_feed", outbox.c.tenant, outbox.c.feed_seq, unique=True)
# The relay's round asks which tenants have unpublished events; a partial index holds only those,
# so the question stays cheap however long the published history grows.
Index(
    "ix_outbox_unpublished", outbox.c.tenant, outbox.c.position,
    sqlite_where=outbox.c.published_at.is_(None),
    postgresql_where=outbox.c.published_at.is_(None),
)  # fmt: skip

# A bus consumer's de-duplication marks: (consumer, event id) it has acted on, committed with its
# effect; pruned after CADASTRE_CONSUMED_KEEP_DAYS.
consumed_events = Table(
    "consumed_events", metadata,
    _tenant(),
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("seen_at", UtcDateTime(), nullable=False),
    Index("ix_consumed_events_seen", "tenant", "seen_at"),
)  # fmt: skip

# ---------------------------------------------------------------- events: webhooks in (0006)

# Verified vendor webhooks, stored (and committed) before the vendor gets its 2xx; the normaliser
# reads them in ``position`` order per connection. A message id is stored once per connection:
# a replay finds it held (``ON CONFLICT DO NOTHING`` on the unique index).
webhooks_in = Table(
    "webhooks_in", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("connection", String(64), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("headers", Json, nullable=False),  # lower-case name -> value, signatures left out
    Column("body", LargeBinary, nullable=False),  # the bytes the signature covered
    Column("status", String(16), nullable=False),  # pending, processed, quarantined, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("processed_at", UtcDateTime(), nullable=True),
    Column("error", Text, nullable=False, default=""),
    Index("ix_webhooks_in_message", "tenant", "connection", "message_id", unique=True),
    Index("ix_webhooks_in_received", "tenant", "received_at"),  # pruning
)  # fmt: skip
# Pending rows only: what the normaliser looks for stays cheap however long the history grows.
Index(
    "ix_webhooks_in_due", webhooks_in.c.tenant, webhooks_in.c.connection, webhooks_in.c.position,
    sqlite_where=webhooks_in.c.status == "pending",
    postgresql_where=webhooks_in.c.status == "pending",
)  # fmt: skip

# Refused webhook requests, counted per (connection, reason, minute); ``example`` holds the last
# one's headers (no signature, no body). Bounded by time: pruned with the inbox.
webhook_refusals = Table(
    "webhook_refusals", metadata,
    _tenant(),
    Column("connection", String(64), primary_key=True),
    Column("reason", String(32), primary_key=True),
    Column("minute", UtcDateTime(), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", UtcDateTime(), nullable=False),
    Column("example", Json, nullable=False),
)  # fmt: skip

# ---------------------------------------------------------------- events: webhooks out (0007)

# A platform service's endpoint; its signing secret is the vault credential ``credential``.
webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    _tenant(),
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", Json, nullable=False),  # a list of types and families
    Column("description", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=False, default=""),
    Column("failing_since", UtcDateTime(), nullable=True),
    Column("credential", String(64), nullable=False),  # a reference, never a secret
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

# One event for one subscription; one row per (subscription, event id), which is what makes an
# event the bus delivers twice a single delivery. ``claim``/``claimed_until``: the sender that
# holds it (so two senders never send one attempt); ``body`` is the exact JSON text signed.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("subscription", String(32), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("redeliveries", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("claim", String(32), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Index("uq_webhook_deliveries_event", "tenant", "subscription", "event_id", unique=True),
    Index("ix_webhook_deliveries_due", "tenant", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_subscription", "tenant", "subscription", "position"),
)  # fmt: skip

# Every attempt at a delivery: what the endpoint answered, or why nothing was answered.
webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("delivery", String(32), nullable=False),
    Column("redelivery", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("seconds", Float, nullable=False),
    Index("ix_webhook_attempts_delivery", "tenant", "delivery", "position"),
)  # fmt: skip

# ---------------------------------------------------------------- identity resolution (0011)

# Two canonical records of one person (left: Contact, right: Resident). A pair has one live row
# (broken_at NULL); breaking a link keeps its row as history. A right record has at most one live
# ``linked`` row (Resident.ContactKey holds one contact).
identity_links = Table(
    "identity_links", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("left_entity", String(64), nullable=False),
    Column("left_id", String(255), nullable=False),
    Column("right_entity", String(64), nullable=False),
    Column("right_id", String(255), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("evidence", Json, nullable=False),
    Column("state", String(16), nullable=False),  # suggested, linked, rejected
    Column("how", String(8), nullable=False),  # auto, manual
    Column("made_by", String(200), nullable=False),
    Column("made_at", UtcDateTime(), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("broken_by", String(200), nullable=True),
    Column("broken_at", UtcDateTime(), nullable=True),
    Column("broken_reason", Text, nullable=False, default=""),
    Index("ix_identity_links_left", "tenant", "left_entity", "left_id"),
    Index("ix_identity_links_right", "tenant", "right_entity", "right_id"),
)  # fmt: skip
_live_link = identity_links.c.broken_at.is_(None)
Index(
    "uq_identity_links_pair", identity_links.c.tenant, identity_links.c.left_entity,
    identity_links.c.left_id, identity_links.c.right_entity, identity_links.c.right_id,
    unique=True, sqlite_where=_live_link, postgresql_where=_live_link,
)  # fmt: skip
_live_linked = _live_link & (identity_links.c.state == "linked")
Index(
    "uq_identity_links_linked", identity_links.c.tenant, identity_links.c.right_entity,
    identity_links.c.right_id, unique=True, sqlite_where=_live_linked,
    postgresql_where=_live_linked,
)  # fmt: skip

# The matcher's keys: normalised e-mail addresses and phone numbers of each person record, so
# candidates are found by an index rather than a scan of every record's JSON.
identity_keys = Table(
    "identity_keys", metadata,
    _tenant(),
    Column("entity", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("kind", String(16), primary_key=True),  # email, phone
    Column("value", String(255), primary_key=True),
    Index("ix_identity_keys_value", "tenant", "kind", "value", "entity"),
)  # fmt: skip

# ---------------------------------------------------------------- API idempotency keys (0009)

# A tenant's Idempotency-Key and what the write it first came with answered. ``holder`` is the
# request holding it in flight until ``locked_until`` (then another may take it over); once
# ``done``, status + replayed headers + body are returned to every repeat. A body with
# ``body_key_id`` set is sealed (the response carried a secret). Reaped by ``created_at``.
api_idempotency = Table(
    "api_idempotency", metadata,
    _tenant(),
    Column("key", String(255), primary_key=True),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight, done
    Column("holder", String(64), nullable=False),
    Column("locked_until", UtcDateTime(), nullable=False),
    Column("status", Integer, nullable=True),
    Column("headers", Json, nullable=True),  # replayed ones only: content-type, location
    Column("body", LargeBinary, nullable=True),
    Column("body_key_id", String(64), nullable=True),
    Column("body_wrapped_key", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_api_idempotency_created", "tenant", "created_at"),
)  # fmt: skip

# ---------------------------------------------------------------- conflicts (0010)

# Version vectors of a record's shared fields (rules with writers), one JSON row per record like
# ``record_provenance``: ``{"Email": {"v": 3, "seen": {"crm-main": 3, "pms-main": 2}}}``.
field_versions = Table(
    "field_versions", metadata,
    _tenant(),
    Column("entity", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("fields", Json, nullable=False),
)  # fmt: skip

# The review queue: concurrent edits of a shared field that source time could not order.
conflicts = Table(
    "conflicts", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("field", String(200), nullable=False),
    Column("current", Json, nullable=False),  # {"value", "stamp": {system, connection, ...}}
    Column("incoming", Json, nullable=False),  # the same for the change that was held back
    Column("vector", Json, nullable=False),  # {"v": n, "seen": {connection: n}} when queued
    Column("rule", Text, nullable=False),
    Column("state", String(16), nullable=False),  # open, resolved
    Column("created_at", UtcDateTime(), nullable=False),
    Column("resolution", String(16), nullable=True),  # keep_current, take_incoming, value
    Column("resolved_value", Json, nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Index("ix_conflicts_state", "tenant", "state", "entity", "position"),
    Index("ix_conflicts_record", "tenant", "entity", "record_id"),
)  # fmt: skip

# ---------------------------------------------------------------- write-back (0008)

# A platform write (or a propagation of a vendor change): what was asked, by whom, caused by what.
writes = Table(
    "writes", metadata,
    _tenant(),
    Column("id", String(40), primary_key=True),
    Column("entity", String(64), nullable=False),
    Column("canonical_id", String(200), nullable=False),
    Column("operation", String(8), nullable=False),
    Column("patch", Json, nullable=False),
    Column("actor", String(64), nullable=False),  # the API key id, or "writeback"
    Column("causation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_writes_record", "tenant", "entity", "canonical_id"),
)  # fmt: skip

# One write to one connection. ``claim``/``claimed_until``: the worker that holds it; a target
# found ``sending`` with its claim run out lost its worker between commit and answer (recovery).
write_targets = Table(
    "write_targets", metadata,
    _tenant(),
    Column("write_id", String(40), primary_key=True),
    Column("connection", String(64), primary_key=True),
    Column("system", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("canonical_id", String(200), nullable=False),
    Column("operation", String(8), nullable=False),
    Column("fields", Json, nullable=False),
    Column("key", String(40), nullable=False),  # the deterministic idempotency key
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("external_id", String(200), nullable=True),
    Column("base_version", String(200), nullable=True),
    Column("receipt", Json, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("claim", String(32), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_write_targets_due", "tenant", "state", "next_attempt_at"),
    Index("ix_write_targets_connection", "tenant", "connection", "state"),
)  # fmt: skip

# Per connection: the write-back mode and kill switch ("" is the tenant-wide kill switch).
writeback_switches = Table(
    "writeback_switches", metadata,
    _tenant(),
    Column("connection", String(64), primary_key=True),
    Column("mode", String(8), nullable=True),  # None: the connector's default
    Column("stopped", Boolean, nullable=False, default=False),
    Column("stopped_by", String(64), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("stopped_at", UtcDateTime(), nullable=True),
    Column("updated_by", String(64), nullable=False, default=""),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

# Acknowledged vendor writes, so the vendor's own report of them (webhook, poll) is dropped.
writeback_echoes = Table(
    "writeback_echoes", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("connection", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("source_version", String(200), nullable=True),
    Column("values_hash", String(64), nullable=False),
    Column("fields", Json, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_writeback_echoes_record", "tenant", "connection", "entity", "external_id"),
    Index("ix_writeback_echoes_recorded", "tenant", "recorded_at"),
)  # fmt: skip

# ---------------------------------------------------------------- observations (0012)

# One row per connection and minute ("" for tenant-wide gauges): a ``MinuteRollup`` as JSON.
# ``sync_ok`` repeats ``counts["sync_ok"]`` as a column so ``last_seen`` is an indexed MAX, not a
# JSON scan.
vendor_minutes = Table(
    "vendor_minutes", metadata,
    _tenant(),
    Column("connection", String(64), primary_key=True),
    Column("minute", UtcDateTime(), primary_key=True),
    Column("vendor", String(200), nullable=False),
    Column("calls", Json, nullable=False),
    Column("statuses", Json, nullable=False),
    Column("latency", Json, nullable=False),
    Column("latency_sum", Float, nullable=False),
    Column("errors", Json, nullable=False),
    Column("shapes", Json, nullable=False),
    Column("counts", Json, nullable=False),
    Column("gauges", Json, nullable=False),
    Column("sync_ok", Integer, nullable=False),
    Index("ix_vendor_minutes_minute", "tenant", "minute"),
)  # fmt: skip

# ---------------------------------------------------------------- console operators (0015)

# Cross-tenant, like ``tenants``: a null tenant is an operator of every tenant.
operators = Table(
    "operators", metadata,
    Column("username", String(64), primary_key=True),
    Column("tenant", String(64), nullable=True),
    Column("password_hash", String(255), nullable=False),  # scrypt$n$r$p$salt$hash
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

# A signed-in browser, by the sha256 of its cookie's token (the token is never stored).
operator_sessions = Table(
    "operator_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_operator_sessions_operator", "operator"),
    Index("ix_operator_sessions_expires", "expires_at"),
)  # fmt: skip

# ---------------------------------------------------------------- alerts (0013)

# One row per alert episode; a tenant has at most one that is not resolved per (rule, key) - the
# partial unique index, which is what makes two evaluators racing make one alert.
alerts = Table(
    "alerts", metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # pending, firing, resolved
    Column("severity", String(16), nullable=False),
    Column("owner", String(100), nullable=False),
    Column("vendor", String(200), nullable=True),
    Column("connection", String(64), nullable=True),
    Column("summary", Text, nullable=False),
    Column("changed", Text, nullable=False),
    Column("since", UtcDateTime(), nullable=False),
    Column("action", Text, nullable=False),
    Column("rollback", Text, nullable=True),
    Column("facts", Json, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("raised_at", UtcDateTime(), nullable=True),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("source", String(200), nullable=False),
    Index("ix_alerts_state", "tenant", "state", "position"),
    Index("ix_alerts_connection", "tenant", "connection", "position"),
    Index("ix_alerts_rule", "tenant", "rule", "position"),
)  # fmt: skip
_unresolved = alerts.c.state != "resolved"
Index(
    "uq_alerts_current", alerts.c.tenant, alerts.c.rule, alerts.c.key, unique=True,
    sqlite_where=_unresolved, postgresql_where=_unresolved,
)  # fmt: skip

# A subscription's body format (standard | slack), and each outbox row's event type, so the
# evaluator's and the console's ``outbox.recent(types, since=...)`` reads an index, not the
# tenant's whole event history. Appended here, as migration 0013 adds them.
webhook_subscriptions.append_column(
    Column("format", String(16), nullable=False, default="standard", server_default="standard")
)
outbox.append_column(Column("event_type", String(200), nullable=True))
Index("ix_outbox_type", outbox.c.tenant, outbox.c.event_type, outbox.c.created_at)

# ---------------------------------------------------------------- configuration versions (0014)

# Cross-tenant, like ``tenants``: mapping registry files and the ownership registry are global.
# The key is what makes two workers recording one change at once make one version.
config_versions = Table(
    "config_versions", metadata,
    Column("kind", String(16), primary_key=True),  # mapping | ownership
    Column("name", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("content", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
    Column("note", Text, nullable=False, default=""),
)  # fmt: skip

TABLE_NAMES = tuple(sorted(metadata.tables))
