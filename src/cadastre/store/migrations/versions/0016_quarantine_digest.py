"""One open quarantine entry per version of a record: ``quarantine.digest``, ``sightings`` and
``last_seen_at``.

An incremental sync reads again from its cursor, so an unchanged bad record at the cursor was set
aside again by every run: four syncs, four open entries of one record. ``digest`` (sha256 of the
payload's canonical JSON: keys sorted, compact UTF-8, as ``cadastre.store.canonical`` writes it)
lets ``QuarantineRepository.add`` find an open entry holding the same version and count a
sighting on it instead (``sightings``, ``last_seen_at``); ``ix_quarantine_digest`` finds it.

Existing rows get their digest. Open entries that are copies of each other (same tenant,
connection, stream, entity, external id and digest) - what the bug left behind - are folded
into the oldest, which takes their number as its sightings and the newest one's time as
``last_seen_at``; the copies are deleted (their payload is the kept one's, so no vendor data is
lost; the kept entry keeps its own reason, code and replay attempts). A downgrade drops the
columns; folded copies do not come back.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Spelled out, not imported from cadastre.store.tables (see 0001).
TIME = sa.DateTime(timezone=True)
CHUNK = 1000  # rows read and updated at a time: a mass update can set aside a whole feed


def _digest(payload: Any) -> str:
    if isinstance(payload, str | bytes):  # SQLite hands JSON columns back as text in raw selects
        payload = json.loads(payload)
    try:
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer past 64 bits, which JSONB can hold
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


def _fill_digests(bind: sa.Connection) -> None:
    after = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT position, payload FROM quarantine WHERE position > :after"
                " ORDER BY position LIMIT :n"
            ),
            {"after": after, "n": CHUNK},
        ).all()
        if not rows:
            return
        bind.execute(
            sa.text("UPDATE quarantine SET digest = :digest WHERE position = :position"),
            [{"digest": _digest(r.payload), "position": r.position} for r in rows],
        )
        after = rows[-1].position


def _fold_copies(bind: sa.Connection) -> None:
    rows = bind.execute(
        sa.text(
            "SELECT position, tenant, connection, stream, entity, external_id, digest, created_at"
            " FROM quarantine WHERE resolved_at IS NULL ORDER BY position"
        )
    )
    groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for r in rows:
        groups[(r.tenant, r.connection, r.stream, r.entity, r.external_id, r.digest)].append(r)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        kept, rest = copies[0], copies[1:]
        bind.execute(
            sa.text(
                "UPDATE quarantine SET sightings = :n, last_seen_at = :seen"
                " WHERE position = :position"
            ),
            {"n": len(copies), "seen": rest[-1].created_at, "position": kept.position},
        )
        for start in range(0, len(rest), CHUNK):
            bind.execute(
                sa.text("DELETE FROM quarantine WHERE position = :position"),
                [{"position": r.position} for r in rest[start : start + CHUNK]],
            )


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("sightings", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_seen_at", TIME, nullable=True))
    bind = op.get_bind()
    _fill_digests(bind)
    _fold_copies(bind)
    op.create_index("ix_quarantine_digest", "quarantine", ["tenant", "digest"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_digest", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("sightings")
        batch.drop_column("digest")
