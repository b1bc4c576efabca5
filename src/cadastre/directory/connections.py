"""The connection registry: which tenant reaches which vendor, how, and with which credential.

Connections are configuration as code: ``import_yaml`` / ``export_yaml`` round-trip them, and every
change is kept as a numbered version. A connection names a credential reference; a config that
looks like it carries a secret is refused, so secrets cannot slip into the database this way: a key
that names a secret (``password``, ``client_secret``, ``authorization`` ...), a URL with a password
in its userinfo, or a value shaped like an ``Authorization`` header (``Bearer ...``), at any depth
of dicts and lists. Keys that only *name* such things (``token_url``, ``api_key_header``,
``session_timeout_seconds``) are settings, not secrets, and are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cadastre.config import DuplicateKeyError, describe_validation_error, load_yaml
from cadastre.errors import AlreadyExists, ConfigurationError, NotFound
from cadastre.ports import (
    CREDENTIAL_NAME,
    Clock,
    Connection,
    ConnectionStatus,
    ConnectionVersion,
    Store,
    UnitOfWork,
)

_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_SECRET_KEY = re.compile(
    r"(secret|pass(word|wd|phrase)|pwd|token|api[-_]?key|private[-_]?key|access[-_]?key|"
    r"authorization|cookie|credential|session)",
    re.I,
)
# ...unless the name says the value is where/which/how long, not the secret itself
_SETTING_KEY = re.compile(r"[_-](url|uri|endpoint|header|name|seconds|ttl|path)$", re.I)
# scheme://user:password@host, scheme://:password@host (a password may itself hold '@')
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s?#]*@", re.I)
# the value of an Authorization header: "Bearer abc", "Basic dXNl...", "Token abc"
_AUTH_VALUE = re.compile(r"\s*(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]+\s*", re.I)


class ConnectionSpec(BaseModel):
    """One connection as written in YAML (and as ``connections add`` builds it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    system: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="owning-system name")
    connector: str = Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$", description="e.g. mls/reso")
    credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="the name of a vault credential"
    )
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    config: dict[str, Any] = Field(default_factory=dict)


class ConnectionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    connections: list[ConnectionSpec] = Field(default_factory=list)


def _refuse_secrets(config: Mapping[str, Any], path: str = "config") -> None:
    """Raise ``ConfigurationError`` naming where (never what) a secret seems to be."""
    _check(config, path)


def _check(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            inner = f"{where}.{key}"
            name = str(key)
            # "credential: NAME" names a vault credential, as a connection's own credential
            # does (webhook.credential): a reference, not a secret
            reference = name == "credential" and _is_reference(item)
            if _SECRET_KEY.search(name) and not _SETTING_KEY.search(name) and not reference:
                raise _refusal(inner, "names a secret")
            _check(item, inner)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
    elif isinstance(value, str):
        if _URL_PASSWORD.search(value):
            raise _refusal(where, "is a URL with a password in it")
        if _AUTH_VALUE.fullmatch(value):
            raise _refusal(where, "looks like an Authorization credential")


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(CREDENTIAL_NAME, value) is not None


def _refusal(where: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where} {why}; connections never store secrets: put it in the vault "
        "(`cadastre credentials add NAME`) and set 'credential: NAME' instead"
    )


class ConnectionService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def add(self, tenant: str, spec: ConnectionSpec, *, actor: str = "cli") -> Connection:
        _refuse_secrets(spec.config)
        await self._require_tenant(tenant)
        async with self._store.unit_of_work(tenant) as uow:
            if await uow.connections.get(spec.name) is not None:
                raise AlreadyExists(f"connection {spec.name!r} already exists in {tenant!r}")
            saved = await uow.connections.save(
                self._from_spec(tenant, spec, version=1), changed_by=actor, change="added"
            )
            await self._record(uow, saved, actor, "added")
            await uow.commit()
        return saved

    async def put(
        self, tenant: str, spec: ConnectionSpec, *, actor: str = "cli", change: str = "edited"
    ) -> Connection:
        """Add the connection, or save ``spec`` as its next version when it differs; ``change``
        says what the new version is ("edited", "rollback to v3")."""
        _refuse_secrets(spec.config)
        await self._require_tenant(tenant)
        async with self._store.unit_of_work(tenant) as uow:
            current = await uow.connections.get(spec.name)
            if current is not None and to_spec(current) == spec:
                return current
            version, change = (1, "added") if current is None else (current.version + 1, change)
            saved = await uow.connections.save(
                self._from_spec(tenant, spec, version), changed_by=actor, change=change
            )
            await self._record(uow, saved, actor, change)
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
        await self._require_tenant(tenant)
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

    async def _require_tenant(self, tenant: str) -> None:
        if await self._store.get_tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")

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
        # "rollback to v3": the action is its first word, the whole of it goes in the detail
        action, _, more = change.partition(" ")
        detail: dict[str, Any] = {"version": saved.version, "status": saved.status.value}
        if more:
            detail["change"] = change
        await uow.audit.append(
            actor=actor, action=f"connection.{action}", entity="Connection",
            entity_id=saved.name, detail=detail,
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
        raw = load_yaml(text, source="connections file")
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigurationError(f"connections file line {line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        # the parser's message quotes the offending line, which may hold a secret
        mark = getattr(exc, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"connections file is not valid YAML{where}") from None
    try:
        document = ConnectionsFile.model_validate(raw or {})
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigurationError(f"connections file is invalid: {problems}") from None
    names = [c.name for c in document.connections]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"connections file names {duplicates} more than once")
    return document
