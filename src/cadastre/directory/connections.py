"""The connection registry: which tenant reaches which vendor, how, and with which credential.

Connections are configuration as code: ``import_yaml`` / ``export_yaml`` round-trip them, and every
change is kept as a numbered version. A connection names a credential reference; a config that
looks like it carries a secret is refused, so secrets cannot slip into the database this way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cadastre.errors import AlreadyExists, ConfigurationError, NotFound
from cadastre.ports import (
    Clock,
    Connection,
    ConnectionStatus,
    ConnectionVersion,
    Store,
    UnitOfWork,
)

_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api[-_]?key|private[-_]?key)", re.I)


class ConnectionSpec(BaseModel):
    """One connection as written in YAML (and as ``connections add`` builds it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    system: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="owning-system name")
    connector: str = Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$", description="e.g. mls/reso")
    credential: str | None = Field(default=None, pattern=r"^[a-z]+:[A-Za-z0-9_.-]+$")
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    config: dict[str, Any] = Field(default_factory=dict)


class ConnectionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    connections: list[ConnectionSpec] = Field(default_factory=list)


def _refuse_secrets(config: Mapping[str, Any], path: str = "config") -> None:
    for key, value in config.items():
        where = f"{path}.{key}"
        if _SECRET_KEY.search(str(key)):
            raise ConfigurationError(
                f"{where} looks like a secret; connections never store secrets: put it in a "
                "credential and set 'credential: env:NAME' or 'file:NAME' instead"
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, where)


class ConnectionService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def add(self, tenant: str, spec: ConnectionSpec, *, actor: str = "cli") -> Connection:
        _refuse_secrets(spec.config)
        async with self._store.unit_of_work(tenant) as uow:
            if await uow.connections.get(spec.name) is not None:
                raise AlreadyExists(f"connection {spec.name!r} already exists in {tenant!r}")
            saved = await uow.connections.save(
                self._from_spec(tenant, spec, version=1), changed_by=actor, change="added"
            )
            await self._record(uow, saved, actor, "added")
            await uow.commit()
        return saved

    async def get(self, tenant: str, name: str) -> Connection:
        async with self._store.unit_of_work(tenant) as uow:
            found = await uow.connections.get(name)
        if found is None:
            raise NotFound(f"connection {name!r} does not exist in tenant {tenant!r}")
        return found

    async def all(self, tenant: str) -> list[Connection]:
        async with self._store.unit_of_work(tenant) as uow:
            return await uow.connections.all()

    async def history(self, tenant: str, name: str) -> list[ConnectionVersion]:
        await self.get(tenant, name)
        async with self._store.unit_of_work(tenant) as uow:
            return await uow.connections.history(name)

    async def pause(self, tenant: str, name: str, *, actor: str = "cli") -> Connection:
        return await self._set_status(tenant, name, ConnectionStatus.PAUSED, actor, "paused")

    async def resume(self, tenant: str, name: str, *, actor: str = "cli") -> Connection:
        return await self._set_status(tenant, name, ConnectionStatus.ACTIVE, actor, "resumed")

    async def import_yaml(self, tenant: str, text: str, *, actor: str = "cli") -> dict[str, str]:
        """Create or update every connection in the document; report name -> what happened.

        The whole file is validated before anything is written, and written in one transaction."""
        document = parse_connections_yaml(text)
        for spec in document.connections:
            _refuse_secrets(spec.config, f"{spec.name}.config")
        outcome: dict[str, str] = {}
        async with self._store.unit_of_work(tenant) as uow:
            for spec in document.connections:
                current = await uow.connections.get(spec.name)
                if current is None:
                    saved = await uow.connections.save(
                        self._from_spec(tenant, spec, 1), changed_by=actor, change="imported"
                    )
                    outcome[spec.name] = "added"
                elif to_spec(current) == spec:
                    outcome[spec.name] = "unchanged"
                    continue
                else:
                    saved = await uow.connections.save(
                        self._from_spec(tenant, spec, current.version + 1),
                        changed_by=actor,
                        change="imported",
                    )
                    outcome[spec.name] = f"updated to v{saved.version}"
                await self._record(uow, saved, actor, "imported")
            await uow.commit()
        return outcome

    async def export_yaml(self, tenant: str) -> str:
        document = ConnectionsFile(connections=[to_spec(c) for c in await self.all(tenant)])
        return yaml.safe_dump(document.model_dump(mode="json"), sort_keys=False)

    async def _set_status(
        self, tenant: str, name: str, status: ConnectionStatus, actor: str, change: str
    ) -> Connection:
        async with self._store.unit_of_work(tenant) as uow:
            current = await uow.connections.get(name)
            if current is None:
                raise NotFound(f"connection {name!r} does not exist in tenant {tenant!r}")
            if current.status is status:
                return current
            saved = await uow.connections.save(
                replace(current, status=status, version=current.version + 1,
                        updated_at=self._clock.now()),
                changed_by=actor, change=change,
            )  # fmt: skip
            await self._record(uow, saved, actor, change)
            await uow.commit()
        return saved

    def _from_spec(self, tenant: str, spec: ConnectionSpec, version: int) -> Connection:
        return Connection(
            tenant=tenant,
            name=spec.name,
            system=spec.system,
            connector=spec.connector,
            config=spec.config,
            credential=spec.credential,
            status=spec.status,
            version=version,
            updated_at=self._clock.now(),
        )

    async def _record(self, uow: UnitOfWork, saved: Connection, actor: str, change: str) -> None:
        await uow.audit.append(
            actor=actor, action=f"connection.{change}", entity="Connection",
            entity_id=saved.name, detail={"version": saved.version, "status": saved.status.value},
        )  # fmt: skip


def to_spec(connection: Connection) -> ConnectionSpec:
    return ConnectionSpec(
        name=connection.name,
        system=connection.system,
        connector=connection.connector,
        credential=connection.credential,
        status=connection.status,
        config=dict(connection.config),
    )


def parse_connections_yaml(text: str) -> ConnectionsFile:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"connections file is not valid YAML: {exc}") from None
    try:
        document = ConnectionsFile.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"connections file is invalid: {problems}") from None
    names = [c.name for c in document.connections]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"connections file names {duplicates} more than once")
    return document
