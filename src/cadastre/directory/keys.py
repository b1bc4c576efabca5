"""Tenant API keys: shown once, stored only as a hash, revocable and rotatable.

A key reads ``cad_<key id>_<secret>``. The key id is public (it appears in lists and logs); the
secret is 256 random bits, so a plain SHA-256 is enough to store it: a slow password hash buys
nothing against a value that cannot be guessed, and costs every API request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadastre.errors import AuthenticationError, NotFound
from cadastre.ports import ApiKey, ApiKeyScope, Clock, PayloadClass, Store

if TYPE_CHECKING:
    from cadastre.ports import Secret

_KEY = re.compile(r"^cad_(k[0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    # shown once to the person who asked for it; never stored, logged or printed by repr()
    plaintext: str = field(repr=False)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self,
        tenant: str,
        scope: ApiKeyScope,
        *,
        label: str = "",
        actor: str = "cli",
        payload_class: PayloadClass = PayloadClass.FULL,
    ) -> IssuedKey:
        """``payload_class`` is the RESO payload the key may read (IDX, VOW or the full record):
        the fields an MLS's mapping withholds from that class are never served to it."""
        if await self._store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")
        key_id = "k" + secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            key_id=key_id,
            tenant=tenant,
            scope=scope,
            secret_hash=_hash(secret),
            created_at=self._clock.now(),
            label=label,
            payload_class=PayloadClass(payload_class),
        )
        async with self._store.unit_of_work(tenant) as uow:
            await uow.keys.add(record)
            await uow.audit.append(
                actor=actor, action="key.created", entity="ApiKey", entity_id=key_id,
                detail={"scope": scope.value, "label": label,
                        "payload_class": record.payload_class.value},
            )  # fmt: skip
            await uow.commit()
        return IssuedKey(record=record, plaintext=f"cad_{key_id}_{secret}")

    async def revoke(self, tenant: str, key_id: str, *, actor: str = "cli") -> ApiKey:
        async with self._store.unit_of_work(tenant) as uow:
            revoked = await uow.keys.revoke(key_id)
            await uow.audit.append(
                actor=actor, action="key.revoked", entity="ApiKey", entity_id=key_id
            )
            await uow.commit()
        return revoked

    async def rotate(self, tenant: str, key_id: str, *, actor: str = "cli") -> IssuedKey:
        """Issue a key with the same scope, label and payload class, then revoke the old one (one
        step each, so a failure in between leaves two valid keys rather than none)."""
        async with self._store.unit_of_work(tenant) as uow:
            current = next((k for k in await uow.keys.all() if k.key_id == key_id), None)
        if current is None:
            raise NotFound(f"key {key_id!r} does not exist in tenant {tenant!r}")
        if current.revoked_at is not None:
            raise AuthenticationError(f"key {key_id!r} is revoked; create a new one instead")
        issued = await self.create(
            tenant, current.scope, label=current.label, actor=actor,
            payload_class=current.payload_class,
        )  # fmt: skip
        await self.revoke(tenant, key_id, actor=actor)
        return issued

    async def all(self, tenant: str) -> list[ApiKey]:
        async with self._store.unit_of_work(tenant) as uow:
            return await uow.keys.all()

    async def authenticate(self, presented: str | Secret, *, need: ApiKeyScope) -> ApiKey:
        """Return the key record for a presented key with at least the needed scope.

        Every failure says the same thing, so a caller cannot probe which key ids exist."""
        text = presented if isinstance(presented, str) else presented.reveal()
        match = _KEY.match(text)
        record = await self._store.find_api_key(match.group(1)) if match else None
        expected = record.secret_hash if record else _hash("")
        given = _hash(match.group(2)) if match else _hash("x")
        if not (record and match and hmac.compare_digest(expected, given)):
            raise AuthenticationError("invalid or revoked API key")
        if record.revoked_at is not None:
            raise AuthenticationError("invalid or revoked API key")
        if need is ApiKeyScope.WRITE and record.scope is not ApiKeyScope.WRITE:
            raise AuthenticationError(f"key {record.key_id} has scope read; write is required")
        return record
