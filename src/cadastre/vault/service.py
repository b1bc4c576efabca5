"""``Vault``: credentials stored sealed (``crypto``), read only through ``open()``, which audits
every decryption (who, what for, which fields, when) in the same transaction as the read.

Everything else the hub needs - listing, status, expiry, the refresh marker - is in the clear on the
row and is read with ``stored()``, which decrypts nothing. Secret values leave this module as
``Secret`` objects, registered with the log redactor, and never appear in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cadastre.contract.events import EventEnvelope
from cadastre.errors import ConfigurationError, CredentialError, DecryptionFailed, NotFound
from cadastre.observe import SECRETS
from cadastre.ports import (
    CREDENTIAL_NAME,
    CredentialRead,
    CredentialStatus,
    Secret,
    StoredCredential,
)
from cadastre.vault.crypto import RowIdentity, rewrap, seal, unseal
from cadastre.vault.schemes import check

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

    from cadastre.ports import Clock, Store, UnitOfWork
    from cadastre.vault.crypto import MasterKeyProvider

_UNSET: Any = object()


@dataclass(frozen=True)
class OpenedCredential:
    stored: StoredCredential
    fields: dict[str, Secret]

    def field(self, name: str) -> Secret:
        value = self.fields.get(name)
        if value is None:
            raise CredentialError(f"credential {self.stored.name!r} has no field {name!r}")
        return value


@dataclass(frozen=True)
class RewrapReport:
    rewrapped: int
    key_id: str
    left: int  # rows still under another key (0 when the rotation is complete)
    failed: tuple[str, ...] = ()  # "tenant/credential/field" whose data key did not open


class Vault:
    def __init__(self, store: Store, keys: MasterKeyProvider, clock: Clock) -> None:
        self._store = store
        self.keys = keys
        self._clock = clock

    def __repr__(self) -> str:
        return f"Vault(keys={self.keys!r})"

    # ------------------------------------------------------------------ writing

    async def add(
        self,
        tenant: str,
        name: str,
        scheme: str,
        secrets: Mapping[str, str | Secret],
        meta: Mapping[str, Any] | None = None,
        *,
        status: CredentialStatus = CredentialStatus.ACTIVE,
        expires_at: datetime | None = None,
    ) -> StoredCredential:
        if await self._store.get_tenant(tenant) is None:
            # a credential outside every tenant would be outside every master-key rotation
            raise NotFound(f"tenant {tenant!r} does not exist")
        if not re.fullmatch(CREDENTIAL_NAME, name):
            raise ConfigurationError(f"credential name {name!r} must match {CREDENTIAL_NAME}")
        values = _plain(secrets)
        checked = check(name, scheme, set(values), dict(meta or {}))
        sealed = {f: seal(self.keys, RowIdentity(tenant, name, f), v) for f, v in values.items()}
        stored = StoredCredential(
            tenant, name, scheme, status, checked, 1, self._clock.now(), expires_at,
            secrets=sealed,
        )  # fmt: skip
        async with self._store.unit_of_work(tenant) as uow:
            await uow.credentials.add(stored)
            await uow.commit()
        return stored

    async def update(
        self,
        current: StoredCredential,
        *,
        secrets: Mapping[str, str | Secret] | None = None,
        drop: Iterable[str] = (),
        meta: Mapping[str, Any] | None = None,
        status: CredentialStatus | None = None,
        reason: str | None = None,
        expires_at: datetime | None = _UNSET,
        refresh_started_at: datetime | None = _UNSET,
        events: Iterable[EventEnvelope] = (),
    ) -> StoredCredential:
        """Write a new version of ``current`` if nobody changed it meanwhile (else
        ``ConcurrentUpdate``). ``secrets`` are sealed afresh; fields not named keep their sealed
        value; ``drop`` removes fields. ``events`` go to the outbox in the same transaction."""
        drop = set(drop)
        sealed = {k: v for k, v in current.secrets.items() if k not in drop}
        resealed = _plain(secrets or {})
        for f, v in resealed.items():
            sealed[f] = seal(self.keys, RowIdentity(current.tenant, current.name, f), v)
        merged = {**current.meta, **(meta or {})}
        if meta is not None or secrets or drop:
            merged = check(current.name, current.scheme, set(sealed), merged)
        new = replace(
            current, version=current.version + 1, updated_at=self._clock.now(), secrets=sealed,
            meta=merged, status=status or current.status,
            status_reason=current.status_reason if reason is None else reason,
            expires_at=current.expires_at if expires_at is _UNSET else expires_at,
            refresh_started_at=(
                current.refresh_started_at if refresh_started_at is _UNSET else refresh_started_at
            ),
        )  # fmt: skip
        async with self._store.unit_of_work(current.tenant) as uow:
            # Only the fields sealed here are written: the others keep the row's value, which a
            # master-key rotation may have re-wrapped since ``current`` was read.
            await uow.credentials.replace(
                new, expected_version=current.version, written=set(resealed)
            )
            await uow.outbox.add_many(list(events))
            await uow.commit()
        return new

    async def delete(self, tenant: str, name: str) -> None:
        async with self._store.unit_of_work(tenant) as uow:
            if not await uow.credentials.delete(name):
                raise NotFound(f"credential {name!r} does not exist")
            await uow.commit()

    # ------------------------------------------------------------------ reading

    async def stored(self, tenant: str, name: str) -> StoredCredential:
        """The row, secrets still sealed: status, expiry, version. Not a decryption."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            found = await uow.credentials.get(name)
        if found is None:
            raise CredentialError(f"credential {name!r} is not in the vault of tenant {tenant!r}")
        return found

    async def all(self, tenant: str) -> list[StoredCredential]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.credentials.all()

    async def open(
        self,
        tenant: str,
        name: str,
        *,
        actor: str,
        purpose: str,
        fields: Iterable[str] | None = None,
    ) -> OpenedCredential:
        """Decrypt ``fields`` (all when None) and record the read, in one transaction: a read
        that cannot be recorded does not happen."""
        async with self._store.unit_of_work(tenant) as uow:
            stored = await uow.credentials.get(name)
            if stored is None:
                raise CredentialError(
                    f"credential {name!r} is not in the vault of tenant {tenant!r}"
                )
            wanted = [f for f in (fields or stored.secrets) if f in stored.secrets]
            opened = {f: self._unseal(stored, f) for f in wanted}
            await self._audit(uow, stored, tuple(wanted), actor, purpose)
            await uow.commit()
        return OpenedCredential(stored, opened)

    async def reads(self, tenant: str, name: str, *, limit: int = 100) -> list[CredentialRead]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.credentials.reads(name, limit=limit)

    def _unseal(self, stored: StoredCredential, field: str) -> Secret:
        value = unseal(
            self.keys, RowIdentity(stored.tenant, stored.name, field), stored.secrets[field]
        )
        SECRETS.add(value)
        return Secret(value)

    async def _audit(
        self, uow: UnitOfWork, stored: StoredCredential, fields: tuple[str, ...], actor: str,
        purpose: str,
    ) -> None:  # fmt: skip
        read = CredentialRead(stored.tenant, stored.name, fields, actor, purpose, self._clock.now())
        await uow.credentials.record_read(read)

    # ------------------------------------------------------------------ master-key rotation

    async def rotate_master(
        self, tenants: Iterable[str], *, batch: int = 200, settle: float = 1.0,
        progress: Callable[[int], None] | None = None,
    ) -> RewrapReport:  # fmt: skip
        """Re-wrap every data key under the current master key, a batch per transaction. Online:
        each field is swapped by compare-and-set, so a credential written meanwhile (already
        under the new key) is left alone, and readers see the old wrapping or the new one, both of
        which open while the old key stays in the keyring.

        A writer that sealed under the old key just before the new one appeared may commit after
        a pass went by its row; so passes repeat, ``settle`` seconds apart, until one finds
        nothing left to do (at most five)."""
        key_id = self.keys.current_key_id()
        tenants = list(tenants)
        done, failed = 0, set[tuple[str, str, str]]()  # (tenant, credential, field)
        for _ in range(5):
            moved = await self._rewrap_pass(tenants, key_id, batch, failed, progress)
            done += moved
            if moved == 0:
                break
            await self._clock.sleep(settle)
        left = await self.left_under_old(tenants, key_id)
        return RewrapReport(done, key_id, left, tuple("/".join(f) for f in sorted(failed)))

    async def _rewrap_pass(
        self, tenants: list[str], key_id: str, batch: int, failed: set[tuple[str, str, str]],
        progress: Callable[[int], None] | None,
    ) -> int:  # fmt: skip
        done = 0
        for tenant in tenants:
            # rows that do not open are reported, not retried
            skip = {(name, field) for t, name, field in failed if t == tenant}
            while True:
                async with self._store.unit_of_work(tenant) as uow:
                    todo = await uow.credentials.sealed_not_under(key_id, limit=batch + len(skip))
                    todo = [(n, s) for n, s in todo if (n, s.field) not in skip][:batch]
                    for name, sealed in todo:
                        row = RowIdentity(tenant, name, sealed.field)
                        try:
                            moved = rewrap(self.keys, row, sealed)
                        except DecryptionFailed:
                            skip.add((name, sealed.field))
                            failed.add((tenant, name, sealed.field))
                            continue
                        done += await uow.credentials.rewrap(name, moved, was=sealed)
                    await uow.commit()
                if progress is not None and todo:
                    progress(len(todo))
                if len(todo) < batch:
                    break
        return done

    async def left_under_old(self, tenants: Iterable[str], key_id: str) -> int:
        left = 0
        for tenant in tenants:
            async with self._store.unit_of_work(tenant, read_only=True) as uow:
                left += len(await uow.credentials.sealed_not_under(key_id, limit=1_000_000))
        return left

    # ------------------------------------------------------------------ events

    def alert(
        self, stored: StoredCredential, alert: str, summary: str, action: str
    ) -> EventEnvelope:
        return EventEnvelope(
            source="/cadastre/vault", type="cadastre.alert.raised.v1", subject=stored.name,
            time=self._clock.now(), tenant=stored.tenant,
            data={"alert": alert, "severity": "critical", "credential": stored.name,
                  "summary": summary, "action": action},
        )  # fmt: skip


def _plain(values: Mapping[str, str | Secret]) -> dict[str, str]:
    plain = {k: v.reveal() if isinstance(v, Secret) else v for k, v in values.items()}
    empty = sorted(k for k, v in plain.items() if not isinstance(v, str) or not v)
    if empty:
        raise CredentialError(f"secret field(s) {', '.join(empty)} are empty")
    return plain
