"""The composition root: Settings -> adapters -> Hub. The only module that picks a concrete adapter.

The embedded default (SQLite under ``./var/``) and the distributed mode (PostgreSQL by URL) differ
only in ``Settings``; nothing below this module knows which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadastre.clock import SystemClock
from cadastre.config import Settings
from cadastre.directory import ConnectionService, KeyService, TenantService
from cadastre.errors import ConfigurationError
from cadastre.observe import Metrics, configure_logging
from cadastre.ownership import OwnershipRegistry, load_registry
from cadastre.ports import Clock, CredentialProvider, Store
from cadastre.store import open_store
from cadastre.sync import SyncEngine
from cadastre.vault import CredentialResolver, EnvCredentialProvider, FileCredentialProvider


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

    async def close(self) -> None:
        await self.store.close()


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
    return Hub(
        settings=settings,
        clock=clock,
        store=store,
        registry=registry,
        engine=SyncEngine(store, registry, clock, metrics=metrics),
        tenants=TenantService(store),
        keys=KeyService(store, clock),
        connections=ConnectionService(store, clock),
        credentials=CredentialResolver(providers),
        metrics=metrics,
    )
