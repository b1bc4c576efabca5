"""A tenant's credentials: the clear facts in ``credentials``, one sealed secret field per row of
``credential_secrets``, and the log of their decryptions in ``credential_reads``. The store never
sees a secret in the clear: ``cadastre.vault`` seals and opens them."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from cadastre.errors import AlreadyExists, ConcurrentUpdate, NotFound
from cadastre.ports import CredentialRead, CredentialStatus, SealedSecret, StoredCredential
from cadastre.store import tables as t
from cadastre.store.canonical import json_copy
from cadastre.store.repositories.base import SqlRepository

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from sqlalchemy import Row


def check_secrets(credential: StoredCredential) -> None:
    """Each secret is filed under its own field name."""
    for name, sealed in credential.secrets.items():
        if name != sealed.field:
            raise ValueError(
                f"credential {credential.name!r}: the secret filed as {name!r} "
                f"is sealed for field {sealed.field!r}"
            )


def _sealed(row: Row[Any]) -> SealedSecret:
    return SealedSecret(row.field, row.key_id, bytes(row.wrapped_key), bytes(row.ciphertext))


def _credential(row: Row[Any], secrets: Mapping[str, SealedSecret]) -> StoredCredential:
    return StoredCredential(
        tenant=row.tenant, name=row.name, scheme=row.scheme,
        status=CredentialStatus(row.status), meta=row.meta, version=row.version,
        updated_at=row.updated_at, expires_at=row.expires_at,
        refresh_started_at=row.refresh_started_at, status_reason=row.status_reason,
        secrets=dict(secrets),
    )  # fmt: skip


def _values(credential: StoredCredential, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "scheme": credential.scheme, "status": credential.status.value, "meta": meta,
        "version": credential.version, "expires_at": credential.expires_at,
        "refresh_started_at": credential.refresh_started_at,
        "status_reason": credential.status_reason, "updated_at": credential.updated_at,
    }  # fmt: skip


class SqlCredentials(SqlRepository):
    async def get(self, name: str) -> StoredCredential | None:
        c = t.credentials.c
        query = select(t.credentials).where(c.tenant == self.tenant, c.name == name)
        row = (await self.execute(query)).first()
        if row is None:
            return None
        s = t.credential_secrets.c
        rows = await self.execute(
            select(t.credential_secrets)
            .where(s.tenant == self.tenant, s.credential == name)
            .order_by(s.field)
        )
        return _credential(row, {r.field: _sealed(r) for r in rows})

    async def all(self) -> list[StoredCredential]:
        s = t.credential_secrets.c
        secrets: dict[str, dict[str, SealedSecret]] = defaultdict(dict)
        for r in await self.execute(
            select(t.credential_secrets)
            .where(s.tenant == self.tenant)
            .order_by(s.credential, s.field)
        ):
            secrets[r.credential][r.field] = _sealed(r)
        c = t.credentials.c
        rows = await self.execute(
            select(t.credentials).where(c.tenant == self.tenant).order_by(c.name)
        )
        return [_credential(r, secrets.get(r.name, {})) for r in rows]

    async def add(self, credential: StoredCredential) -> None:
        self.own(credential.tenant, "the credential")
        check_secrets(credential)
        values = _values(credential, json_copy(credential.meta))
        inserted = await self.wrote(
            self.insert(t.credentials)
            .values(tenant=self.tenant, name=credential.name, **values)
            .on_conflict_do_nothing()
            .returning(t.credentials.c.name)
        )
        if not inserted:
            raise AlreadyExists(f"credential {credential.name!r} already exists")
        await self._put_secrets(credential)

    async def replace(
        self,
        credential: StoredCredential,
        *,
        expected_version: int,
        written: Collection[str] | None = None,
    ) -> None:
        self.own(credential.tenant, "the credential")
        check_secrets(credential)
        if credential.version != expected_version + 1:
            raise ValueError(
                f"credential {credential.name!r} at version {credential.version} cannot replace "
                f"version {expected_version}: a replacement is the next version"
            )
        c = t.credentials.c
        mine = (c.tenant == self.tenant) & (c.name == credential.name)
        values = _values(credential, json_copy(credential.meta))
        statement = (
            update(t.credentials)
            .where(mine, c.version == expected_version)
            .values(**values)
            .returning(c.version)
        )
        if not await self.wrote(statement):
            current = (await self.execute(select(c.version).where(mine))).first()
            if current is None:
                raise NotFound(
                    f"credential {credential.name!r} does not exist in tenant {self.tenant!r}"
                )
            raise ConcurrentUpdate(
                f"credential {credential.name!r} is at version {current.version}, "
                f"expected {expected_version}"
            )
        await self._put_secrets(credential, written)

    async def delete(self, name: str) -> bool:
        s = t.credential_secrets.c
        await self.execute(
            delete(t.credential_secrets).where(s.tenant == self.tenant, s.credential == name)
        )
        c = t.credentials.c
        return await self.wrote(
            delete(t.credentials).where(c.tenant == self.tenant, c.name == name).returning(c.name)
        )

    async def rewrap(self, name: str, sealed: SealedSecret, *, was: SealedSecret) -> bool:
        if sealed.field != was.field:
            raise ValueError(
                f"credential {name!r}: cannot rewrap field {was.field!r} as {sealed.field!r}"
            )
        s = t.credential_secrets.c
        return await self.wrote(
            update(t.credential_secrets)
            .where(s.tenant == self.tenant, s.credential == name, s.field == was.field)
            .where(
                s.key_id == was.key_id,
                s.wrapped_key == was.wrapped_key,
                s.ciphertext == was.ciphertext,
            )
            .values(
                key_id=sealed.key_id, wrapped_key=sealed.wrapped_key, ciphertext=sealed.ciphertext
            )
            .returning(s.field)
        )

    async def sealed_not_under(self, key_id: str, *, limit: int) -> list[tuple[str, SealedSecret]]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        s = t.credential_secrets.c
        rows = await self.execute(
            select(t.credential_secrets)
            # two ranges rather than "<>", so the (tenant, key_id) index serves the search
            .where(s.tenant == self.tenant, (s.key_id < key_id) | (s.key_id > key_id))
            .order_by(s.credential, s.field)
            .limit(limit)
        )
        return [(r.credential, _sealed(r)) for r in rows]

    async def record_read(self, read: CredentialRead) -> None:
        self.own(read.tenant, "the credential read")
        await self.execute(
            t.credential_reads.insert().values(
                tenant=self.tenant,
                credential=read.credential,
                fields=list(read.fields),
                actor=read.actor,
                purpose=read.purpose,
                at=read.at,
            )
        )

    async def reads(self, name: str, *, limit: int = 100) -> list[CredentialRead]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        c = t.credential_reads.c
        rows = await self.execute(
            select(t.credential_reads)
            .where(c.tenant == self.tenant, c.credential == name)
            .order_by(c.position.desc())
            .limit(limit)
        )
        return [
            CredentialRead(r.tenant, r.credential, tuple(r.fields), r.actor, r.purpose, r.at)
            for r in rows
        ]

    async def _put_secrets(
        self, credential: StoredCredential, written: Collection[str] | None = None
    ) -> None:
        """Delete the stored fields ``credential`` no longer has, and write those in ``written``
        (None: all of them)."""
        s = t.credential_secrets.c
        fields = list(credential.secrets)
        await self.execute(
            delete(t.credential_secrets).where(
                s.tenant == self.tenant, s.credential == credential.name, s.field.not_in(fields)
            )
        )
        if written is not None:
            fields = [f for f in fields if f in written]
        if not fields:
            return
        upsert = self.insert(t.credential_secrets)
        upsert = upsert.on_conflict_do_update(
            index_elements=[s.tenant, s.credential, s.field],
            set_={
                "key_id": upsert.excluded.key_id,
                "wrapped_key": upsert.excluded.wrapped_key,
                "ciphertext": upsert.excluded.ciphertext,
            },
        )
        rows = [
            {"tenant": self.tenant, "credential": credential.name, "field": f,
             "key_id": v.key_id, "wrapped_key": v.wrapped_key, "ciphertext": v.ciphertext}
            for f, v in credential.secrets.items() if f in fields
        ]  # fmt: skip
        await self.execute(upsert, rows)
