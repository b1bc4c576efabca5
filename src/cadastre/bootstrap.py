"""The composition root: Settings -> adapters -> Hub. The only module that picks a concrete adapter.

The embedded default (SQLite under ``./var/``) and the distributed mode (PostgreSQL by URL) differ
only in ``Settings``; nothing below this module knows which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadastre.clock import SystemClock
from cadastre.config import Settings
from cadastre.connectors import ClientCredentialsAuth, available, connector_spec
from cadastre.directory import ConnectionService, KeyService, TenantService
from cadastre.errors import ConfigurationError
from cadastre.gateway import Gateway
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.observe import Metrics, configure_logging
from cadastre.ownership import OwnershipRegistry, load_registry
from cadastre.ports import Clock, CredentialProvider, SourceConnector, Store
from cadastre.store import open_store
from cadastre.sync import SyncEngine, SyncReport, SyncRunner, SyncTally
from cadastre.vault import CredentialResolver, EnvCredentialProvider, FileCredentialProvider

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


@dataclass(frozen=True)
class OpenSource:
    connector: SourceConnector
    mappers: dict[str, RecordMapper]  # stream -> mapper


@dataclass
class Hub:
    settings: Settings
    clock: Clock
    store: Store
    registry: OwnershipRegistry
    engine: SyncEngine
    tenants: TenantService
    keys: KeyService
    connections: ConnectionService
    credentials: CredentialProvider
    metrics: Metrics
    mappings: MappingRegistry
    runner: SyncRunner
    # Open connectors by (tenant, connection, its version, its mapping): their gateways keep
    # pooled connections and cached tokens across syncs; an edited connection or mapping file
    # gets a new one.
    _sources: dict[tuple[str, str, int, str], OpenSource] = field(default_factory=dict)

    async def close(self) -> None:
        for source in self._sources.values():
            await source.connector.aclose()
        self._sources.clear()
        await self.store.close()

    async def open_source(
        self, tenant: str, name: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> OpenSource:
        """The connection's connector, behind its own gateway, and its mapper. ``transport``
        replaces the innermost HTTP transport (tests reach a simulator in-process)."""
        connection = await self.connections.get(tenant, name)
        spec = connector_spec(connection.connector)
        settings = spec.settings(name, connection.config)
        # Read on every sync, so a fixed mapping file takes effect on the next run.
        mapper = self.mappings.load(spec.mapping_name(settings))
        key = (tenant, name, connection.version, mapper.spec.model_dump_json())
        if transport is None and key in self._sources:
            return self._sources[key]
        policy = spec.policy(settings)
        auth = spec.auth(settings)
        if isinstance(auth, ClientCredentialsAuth):
            if connection.credential is None:
                raise ConfigurationError(
                    f"connection {name!r} authenticates with OAuth2 but names no credential"
                )
            gateway = Gateway.for_oauth2(
                spec.base_url(settings), policy, clock=self.clock, token_url=auth.token_url,
                credential=connection.credential, provider=self.credentials, scope=auth.scope,
                metrics=self.metrics, connection=name, transport=transport,
            )  # fmt: skip
        else:
            gateway = Gateway(
                spec.base_url(settings), policy, clock=self.clock, metrics=self.metrics,
                connection=name, transport=transport,
            )  # fmt: skip
        connector = spec.create(settings, gateway=gateway, mapper=mapper, clock=self.clock)
        opened = OpenSource(connector, {mapper.stream: mapper})
        if transport is None:
            for stale in [k for k in self._sources if k[:2] == (tenant, name)]:
                await self._sources.pop(stale).connector.aclose()
            self._sources[key] = opened
        return opened

    async def sync(
        self,
        tenant: str,
        name: str,
        *,
        full: bool = False,
        progress: Callable[[SyncTally], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> SyncReport:
        """Pull one connection into the store (``cadastre sync``)."""
        source = await self.open_source(tenant, name, transport=transport)
        try:
            return await self.runner.run(
                tenant=tenant, connection=name, connector=source.connector,
                mappers=source.mappers, full=full, progress=progress,
            )  # fmt: skip
        finally:
            if transport is not None:  # a one-off transport (a test's) is not kept
                await source.connector.aclose()


async def bootstrap(
    settings: Settings | None = None, *, clock: Clock | None = None, migrate: bool = True,
    configure_logs: bool = True,
) -> Hub:  # fmt: skip
    settings = settings or Settings()
    clock = clock or SystemClock()
    if configure_logs:
        try:
            configure_logging(settings.log_level, json=settings.log_json)
        except ValueError:  # logging's "Unknown level"; Settings may not have caught it
            raise ConfigurationError(
                f"CADASTRE_LOG_LEVEL {settings.log_level!r} is not one of "
                "DEBUG, INFO, WARNING, ERROR, CRITICAL"
            ) from None
    try:
        registry = load_registry(settings.ownership_file)
    except FileNotFoundError:
        raise ConfigurationError(
            f"CADASTRE_OWNERSHIP_FILE points at {settings.ownership_file}, which does not exist"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"CADASTRE_OWNERSHIP_FILE points at {settings.ownership_file}, which is not UTF-8 text"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"CADASTRE_OWNERSHIP_FILE points at {settings.ownership_file}, which cannot be read: "
            f"{exc.strerror or exc.__class__.__name__}"
        ) from None
    store = await open_store(settings.resolved_database_url(), clock=clock, migrate=migrate)
    providers: dict[str, CredentialProvider] = {"env": EnvCredentialProvider()}
    if settings.credentials_file is not None:
        providers["file"] = FileCredentialProvider(settings.credentials_file)
    metrics = Metrics()
    engine = SyncEngine(store, registry, clock, metrics=metrics)
    families = {name: spec.family_mapping for name, spec in available().items()}
    return Hub(
        settings=settings,
        clock=clock,
        store=store,
        registry=registry,
        engine=engine,
        tenants=TenantService(store),
        keys=KeyService(store, clock),
        connections=ConnectionService(store, clock),
        credentials=CredentialResolver(providers),
        metrics=metrics,
        mappings=MappingRegistry(settings.mappings_dir, families),
        runner=SyncRunner(engine, store, clock, metrics=metrics),
    )
