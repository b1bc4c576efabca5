"""The composition root: Settings -> adapters -> Hub. The only module that picks a concrete adapter.

The embedded default (SQLite under ``./var/``) and the distributed mode (PostgreSQL by URL) differ
only in ``Settings``; nothing below this module knows which one it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cadastre.bus import OutboxRelay, open_bus
from cadastre.clock import SystemClock
from cadastre.config import Settings
from cadastre.connectors import AuthSpec, available, connector_spec
from cadastre.directory import ConnectionService, KeyService, OperatorService, TenantService
from cadastre.directory.config_history import ConfigHistory
from cadastre.directory.idempotency import IdempotencyReaper
from cadastre.errors import (
    CadastreError,
    ConfigurationError,
    CredentialError,
    LockTimeout,
    SyncInProgress,
    SyncTimedOut,
)
from cadastre.gateway import (
    AddressAllowList,
    FailSafeRateLimitBackend,
    Gateway,
    GatewayControls,
    GatewaySettings,
    MemoryRateLimitBackend,
    RedisRateLimitBackend,
    VaultAuth,
    VendorPolicy,
    origin,
)
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.observe import (
    Metrics,
    Observations,
    ObservationSampler,
    configure_logging,
    configure_tracing,
    working_for,
)
from cadastre.observe.alert_service import AlertService
from cadastre.observe.alerts import AlertEvaluator
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import AlertRules, load_rules
from cadastre.ownership import OwnershipRegistry, load_registry
from cadastre.ports import (
    Clock,
    ConnectionStatus,
    EventBus,
    LockBackend,
    RateLimitBackend,
    SourceConnector,
    Store,
    TargetConnector,
    TokenEndpoint,
    WritebackMode,
)
from cadastre.store import PostgresLockBackend, PostgresStore, open_store
from cadastre.sync import (
    QuarantineReplay,
    ReplaySummary,
    SyncEngine,
    SyncReport,
    SyncRunner,
    SyncTally,
)
from cadastre.sync.drift import check_drift
from cadastre.sync.identity import Thresholds
from cadastre.sync.identity_consumer import IdentityConsumer
from cadastre.sync.identity_service import IdentityService
from cadastre.sync.pacing import report_mass_updates, report_unread_streams
from cadastre.sync.reconcile import KeyReconciler, ReconcileGuard, ReconcileReport
from cadastre.sync.scheduler import Job
from cadastre.sync.writeback_service import WriteBack
from cadastre.vault import (
    Defaults,
    EnvMasterKeys,
    FileLockBackend,
    FileMasterKeys,
    MasterKeyProvider,
    RedisLockBackend,
    TokenManager,
    Vault,
)
from cadastre.webhooks.inbox import WebhookReceiver
from cadastre.webhooks.outbound import WebhooksOut

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    import httpx
    from pydantic import BaseModel

    from cadastre.connectors.sdk import MassUpdate
    from cadastre.ports import Connection


_log = logging.getLogger("cadastre.hub")


@dataclass(frozen=True)
class OpenSource:
    connector: SourceConnector
    mappers: dict[str, RecordMapper]  # stream -> mapper
    gateway: Gateway


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
    vault: Vault
    tokens: TokenManager
    locks: LockBackend
    metrics: Metrics
    observations: Observations  # vendor calls, counts and gauges by minute (docs/operations.md)
    mappings: MappingRegistry
    runner: SyncRunner
    controls: GatewayControls
    bus: EventBus  # in-process or NATS JetStream (CADASTRE_BUS)
    relay: OutboxRelay  # outbox -> bus; a worker of running()
    webhooks: WebhooksOut  # subscriptions, deliveries; dispatcher and sender are workers
    webhooks_in: WebhookReceiver  # POST /webhooks/...: verified, stored; the normaliser a worker
    config_history: ConfigHistory  # versions of mapping and ownership files (docs/rollback.md)
    alert_rules: AlertRules | None = None  # checked by bootstrap(); None: loaded on first use
    # Open connectors by (tenant, connection, its version, its mapping, how its credential is
    # put on requests): their gateways keep pooled connections across syncs; an edited
    # connection, mapping file or credential (scheme, header, login URL...) gets a new one.
    _sources: dict[tuple[str, str, int, str, str], OpenSource] = field(default_factory=dict)
    # Gateways that reach a credential's token endpoint outside any sync (tests, rotation,
    # consent), by (tenant, credential, connection@version or "" for none).
    _endpoints: dict[tuple[str, str, str], Gateway] = field(default_factory=dict)
    # Sources a run is using, by id, and how many runs: an edited connection's old source is
    # retired, and closed only when the last run using it ends (closing it at once would pull
    # the gateway from under a sync or reconciliation in progress).
    _using: dict[int, int] = field(default_factory=dict)
    _retired: dict[int, OpenSource] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The hub's background work, for as long as the block runs: bus consumers (webhooks
        out), the outbox relay, the webhook normaliser, the delivery sender. ``cadastre serve``
        holds it open; so do tests that need events to flow."""
        async with contextlib.AsyncExitStack() as stack:
            # In order: consumers subscribe before the relay starts publishing.
            for worker in self._workers():
                await stack.enter_async_context(worker)
            yield

    def _workers(self) -> list[contextlib.AbstractAsyncContextManager[Any]]:
        workers: list[contextlib.AbstractAsyncContextManager[Any]] = []
        # issue 7 parts add theirs here, each one line: webhooks-out dispatcher (a bus
        # consumer), then the outbox relay, the webhook normaliser, the delivery sender.
        workers.append(self.webhooks.dispatcher(self.bus))
        workers.append(self.alerts.consumer(self.bus))  # subsystem alerts into the table
        workers.append(IdentityConsumer(self.bus, self.store, self.engine, self.identities,
                                        metrics=self.metrics))  # fmt: skip
        workers.append(self.relay)
        workers.append(self.webhooks_in.normaliser(self))
        workers.append(self.webhooks.sender())
        workers.append(self.writeback.propagator(self.bus))  # write-back: vendor -> vendor
        workers.append(self.writeback.worker())  # write-back: targets -> their vendors
        keep = timedelta(hours=self.settings.idempotency_keep_hours)  # API Idempotency-Key
        workers.append(IdempotencyReaper(self.store, self.clock, keep=keep))
        workers.append(self.sampler)  # observations stored, gauges sampled, old minutes pruned
        workers.append(self.alerts.worker(self.settings.alert_eval_seconds))  # alert rules
        return workers

    @functools.cached_property
    def alerts(self) -> AlertService:
        """Alerts (docs/alerts.md): the rules' evaluator, listing and resolving."""
        rules = self.alert_rules
        if rules is None:
            rules = load_rules(self.settings.alert_rules, detectors=DETECTORS)
        evaluator = AlertEvaluator(self.store, self.clock, rules, DETECTORS,
                                   mapping_of=_mapping_name)  # fmt: skip
        return AlertService(self.store, self.clock, evaluator, self.locks)

    @functools.cached_property
    def sampler(self) -> ObservationSampler:
        """Stores ``observations`` and samples the backlog gauges (docs/operations.md)."""
        return ObservationSampler(
            self.store, self.observations, self.clock, self.metrics,
            flush_seconds=self.settings.observe_flush_seconds,
            keep_days=self.settings.observe_keep_days, freshness=self.runner,
        )  # fmt: skip

    @functools.cached_property
    def writeback(self) -> WriteBack:
        """Write-back (docs/writeback.md): platform writes routed to each field's owner, the
        worker that sends them, modes and kill switches."""
        settings = self.settings
        return WriteBack(
            self.store, self.registry, self.clock, self.engine, _HubTargets(self),
            lease=settings.writeback_lease_seconds, poll=settings.writeback_poll_seconds,
            max_attempts=settings.writeback_max_attempts,
            echo_keep=timedelta(days=settings.writeback_echo_days), metrics=self.metrics,
        )  # fmt: skip

    @functools.cached_property
    def operators(self) -> OperatorService:
        """Console operators and their sessions (docs/console.md)."""
        hours = self.settings.console_session_hours
        return OperatorService(self.store, self.clock, session_hours=hours)

    @property
    def identities(self) -> IdentityService:
        """Identity links (docs/identity.md): the matcher, links by hand, the backlog scan."""
        try:
            thresholds = Thresholds(self.settings.identity_auto_link,
                                    self.settings.identity_suggest)  # fmt: skip
        except ValueError as exc:
            raise ConfigurationError(f"CADASTRE_IDENTITY_*: {exc}") from None
        return IdentityService(self.store, self.engine, self.clock, thresholds,
                               metrics=self.metrics)  # fmt: skip

    async def close(self) -> None:
        for source in [*self._sources.values(), *self._retired.values()]:
            await source.connector.aclose()
        self._sources.clear()
        self._retired.clear()
        for gateway in self._endpoints.values():
            await gateway.aclose()
        self._endpoints.clear()
        await self.webhooks_in.aclose()  # refusal counts not yet written
        await self.controls.aclose()
        await self.bus.close()
        await self.locks.aclose()
        try:  # what a command (a sync outside running()) observed is kept too
            await self.sampler.flush()
        except CadastreError as exc:
            _log.warning("observations not stored at close: %s", exc)
        await self.store.close()

    async def open_source(
        self, tenant: str, name: str, *, transport: httpx.AsyncBaseTransport | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> OpenSource:  # fmt: skip
        """The connection's connector, behind its own gateway, and its mapper. ``transport``
        replaces the innermost HTTP transport (tests reach a simulator in-process);
        ``overrides`` changes settings the connector has (``{"select": False}`` for a mapping
        check that must see every field). Either makes a one-off source the caller closes."""
        connection = await self.connections.get(tenant, name)
        spec = connector_spec(connection.connector)
        settings = spec.settings(name, connection.config)
        if overrides:
            known = {k: v for k, v in overrides.items() if k in type(settings).model_fields}
            settings = settings.model_copy(update=known)
        one_off = transport is not None or bool(overrides)
        # Read on every sync, so a fixed mapping file takes effect on the next run.
        mapper = self.mappings.load(spec.mapping_name(settings))
        # Streams whose records come inside the main stream's pages (Media with listings).
        mappers = {mapper.stream: mapper}
        for stream, entry in spec.stream_mappings(settings).items():
            mappers[stream] = self.mappings.load(entry)
        await self.config_history.flush()  # a file read for the first time, or edited by hand
        auth = await self._vault_auth(tenant, name, connection.credential, spec.auth(settings))
        mapping_key = "".join(m.spec.model_dump_json() for m in mappers.values())
        key = (tenant, name, connection.version, mapping_key, _shape(auth))
        if not one_off and key in self._sources:
            return self._sources[key]
        gateway = self._gateway(tenant, connection, settings, auth, transport)
        try:
            connector = spec.create(settings, gateway=gateway, mapper=mapper, clock=self.clock)
        except CadastreError:
            await gateway.aclose()
            raise
        opened = OpenSource(connector, mappers, gateway)
        if not one_off:
            stale = [self._sources.pop(k) for k in list(self._sources) if k[:2] == (tenant, name)]
            # Kept before closing the stale ones: a run asking meanwhile (while a close awaits)
            # finds this source rather than opening another that nothing would ever close.
            self._sources[key] = opened
            for old in stale:
                if id(old) in self._using:
                    self._retired[id(old)] = old
                else:
                    await old.connector.aclose()
        return opened

    @contextlib.asynccontextmanager
    async def _use(self, source: OpenSource) -> AsyncIterator[OpenSource]:
        """Hold ``source`` for one run (see ``_retired``)."""
        self._using[id(source)] = self._using.get(id(source), 0) + 1
        try:
            yield source
        finally:
            left = self._using.pop(id(source)) - 1
            if left:
                self._using[id(source)] = left
            elif (retired := self._retired.pop(id(source), None)) is not None:
                await retired.connector.aclose()

    def _gateway(
        self, tenant: str, connection: Connection, settings: BaseModel, auth: VaultAuth | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Gateway:  # fmt: skip
        """A gateway for ``connection``: its vendor's policy and guards, its credential."""
        spec = connector_spec(connection.connector)
        name = connection.name
        policy = spec.policy(settings)
        gateway_settings = spec.gateway_settings(settings)
        base_url = spec.base_url(settings)
        # The vendor is who serves the quota and the connections: by default the connector's
        # vendor at the host it calls, so two MLSs on one RESO connector are two vendors.
        vendor = gateway_settings.vendor or f"{policy.vendor}@{origin(base_url)}"
        policy = replace(policy, vendor=vendor)
        self._check_allow_hosts(name, gateway_settings.allow_hosts)
        guards = self.controls.guards(
            tenant=tenant, connection=name, vendor=vendor, settings=gateway_settings,
            credential=connection.credential, default_rate=spec.default_rate_limit(settings),
        )  # fmt: skip
        return Gateway(
            base_url, policy, clock=self.clock, metrics=self.metrics, connection=name,
            transport=transport, guards=guards, allow_hosts=gateway_settings.allow_hosts,
            auth=auth, observations=self.observations,
        )  # fmt: skip

    async def _vault_auth(
        self, tenant: str, connection: str, credential: str | None, wanted: AuthSpec
    ) -> VaultAuth | None:
        if credential is None:
            if wanted is not None:
                raise ConfigurationError(
                    f"connection {connection!r} authenticates with OAuth2 but names no credential"
                )
            return None
        if ":" in credential:  # part 1's env:/file: references
            raise CredentialError(
                f"connection {connection!r} names credential {credential!r}: credentials live in "
                "the vault now; `cadastre credentials add` it and name it without a prefix"
            )
        stored = await self.vault.stored(tenant, credential)
        defaults = Defaults(wanted.token_url, wanted.scope) if wanted is not None else Defaults()
        return VaultAuth(
            self.tokens, tenant, credential, stored.scheme, dict(stored.meta), defaults,
            actor=f"connection:{connection}",
        )  # fmt: skip

    async def token_endpoint(self, tenant: str, credential: str) -> tuple[TokenEndpoint, Defaults]:
        """Where the vault reaches ``credential``'s vendor (``credentials test``, ``rotate``, the
        consent callback): the gateway of a connection that uses it, or, when none does, a
        gateway of its own under the operator's address rules."""
        for connection in await self.connections.all(tenant):
            if connection.credential != credential:
                continue
            # The connection's gateway (its guards and address rules), without its connector:
            # a credential can be tested before its connection's mapping exists.
            spec = connector_spec(connection.connector)
            settings = spec.settings(connection.name, connection.config)
            wanted = spec.auth(settings)
            defaults = Defaults(wanted.token_url, wanted.scope) if wanted else Defaults()
            key = (tenant, credential, f"{connection.name}@{connection.version}")
            if key not in self._endpoints:
                auth = await self._vault_auth(tenant, connection.name, credential, wanted)
                self._endpoints[key] = self._gateway(tenant, connection, settings, auth)
            return self._endpoints[key].token_endpoint, defaults
        stored = await self.vault.stored(tenant, credential)
        url = next(
            (str(stored.meta[k]) for k in ("token_url", "rotate_url", "login_url")
             if stored.meta.get(k)),
            None,
        )  # fmt: skip
        if url is None:
            raise ConfigurationError(f"credential {credential!r} names no endpoint to reach")
        key = (tenant, credential, "")
        if key not in self._endpoints:
            label = f"credential:{credential}"
            policy = VendorPolicy(vendor=f"credential@{origin(url)}")
            guards = self.controls.guards(
                tenant=tenant, connection=label, vendor=policy.vendor,
                settings=GatewaySettings(), credential=credential, default_rate=None,
            )  # fmt: skip
            self._endpoints[key] = Gateway(
                url, policy, clock=self.clock, metrics=self.metrics, connection=label,
                guards=guards, allow_hosts=self.settings.gateway_allow_hosts,
                # Not in the per-connection observations: this endpoint belongs to no connection
                # (the label would read as one to the detectors and the console, and its
                # failures are the credential's: needs_reauth, the vault's alerts).
                observations=None,
            )  # fmt: skip
        return self._endpoints[key].token_endpoint, Defaults()

    async def rotate_due(
        self, tenant: str | None = None, *, actor: str = "scheduler",
        started: Callable[[str, str], None] | None = None,
    ) -> list[tuple[str, str, str | None]]:  # fmt: skip
        """Rotate every API key whose ``rotate_every_days`` has passed (one tenant, or all):
        ``(tenant, credential, error or None)`` for each. ``cadastre serve`` runs it every
        ``CADASTRE_VAULT_ROTATION_CHECK_SECONDS``; ``cadastre credentials rotate --due`` on
        demand. ``started`` hears of each rotation as it begins (a progress bar)."""
        tenants = [tenant] if tenant else [t.id for t in await self.tenants.all()]
        due = [(t, c) for t in tenants for c in await self.tokens.due_for_rotation(t)]
        results: list[tuple[str, str, str | None]] = []
        for each, credential in due:
            name = credential.name
            if started is not None:
                started(each, name)
            try:
                endpoint, _ = await self.token_endpoint(each, name)
                # if_version: another worker's scheduler may have rotated it since it was due
                await self.tokens.rotate_api_key(
                    each, name, endpoint, actor=actor, if_version=credential.version
                )
                results.append((each, name, None))
            except CadastreError as exc:
                results.append((each, name, str(exc)))
        return results

    async def scheduled_jobs(self) -> list[Job]:
        """Every active connection's scheduled jobs: its sync at its MLS's refresh cadence (the
        mapping file's ``refresh.every_minutes``, else ``CADASTRE_SYNC_EVERY_SECONDS``; for a
        webhook-driven connection ``CADASTRE_WEBHOOK_POLL_SECONDS``, the slow poll that catches
        missed webhooks) and, for connectors that can list their keys, its key reconciliation."""
        jobs: list[Job] = []
        reconcile_every = self.settings.reconcile_every_seconds
        for tenant in await self.tenants.all():
            for connection in await self.connections.all(tenant.id):
                if connection.status is not ConnectionStatus.ACTIVE:
                    continue
                every = self.settings.sync_every_seconds
                pushed = False
                try:
                    spec = connector_spec(connection.connector)
                    settings = spec.settings(connection.name, connection.config)
                    pushed = spec.ingestion(settings) == "webhook"
                    refresh = self.mappings.resolve(spec.mapping_name(settings)).refresh
                except CadastreError as exc:  # its sync will say so; schedule it anyway
                    _log.warning("connection %r (tenant %r): %s", connection.name, tenant.id, exc)
                    refresh = None
                if pushed:
                    every = self.settings.webhook_poll_seconds
                elif refresh is not None:
                    every = refresh.every_minutes * 60
                jobs.append(Job(tenant.id, connection.name, "sync", every))
                if reconcile_every:
                    jobs.append(Job(tenant.id, connection.name, "reconcile", reconcile_every))
        return jobs

    async def run_job(self, job: Job) -> None:
        """One scheduled job (``cadastre serve`` runs them through ``SyncScheduler``)."""
        if job.kind == "sync":
            report = await self.sync(job.tenant, job.connection)
            _log.info("scheduled sync of %r (tenant %r): %d fetched, %d quarantined",
                      job.connection, job.tenant, report.tally.fetched,
                      report.tally.quarantined)  # fmt: skip
        elif job.kind == "reconcile":
            try:
                await self.reconcile(job.tenant, job.connection)
            except ConfigurationError:
                return  # a connector that cannot list its keys has nothing to reconcile
        else:
            raise ValueError(f"unknown scheduled job kind {job.kind!r}")

    def _check_allow_hosts(self, name: str, asked: tuple[str, ...]) -> None:
        # A connection's config is a tenant's to write; reaching private networks is the
        # operator's call (RELIABILITY.md #16).
        # Read from the settings each time a gateway is built (not a hot path: open connectors
        # are kept), so the settings stay the one place this is said.
        operator = AddressAllowList.parse(self.settings.gateway_allow_hosts)
        outside = AddressAllowList.parse(asked).beyond(operator)
        if outside:
            raise ConfigurationError(
                f"connection {name!r} asks to reach {', '.join(outside)}, which the operator has "
                "not allowed (CADASTRE_GATEWAY_ALLOW_HOSTS)"
            )

    async def sync(
        self,
        tenant: str,
        name: str,
        *,
        full: bool = False,
        progress: Callable[[SyncTally], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> SyncReport:
        """Pull one connection into the store (``cadastre sync``). One run per connection at a
        time, across workers: a second one raises ``SyncInProgress`` at once."""
        async with contextlib.AsyncExitStack() as held:
            held.enter_context(working_for(tenant, name))  # every log line says which
            lease = self.settings.sync_max_seconds or 6 * 3600.0
            try:
                await held.enter_async_context(
                    self.locks.hold(f"sync:{tenant}:{name}", wait=0.0, lease=lease)
                )
            except LockTimeout:
                raise SyncInProgress(
                    f"connection {name!r} is syncing already (another worker, the schedule or "
                    "another command); run it again when that ends"
                ) from None
            source = await held.enter_async_context(
                self._use(await self.open_source(tenant, name, transport=transport))
            )
            try:
                report = await self.runner.run(
                    tenant=tenant, connection=name, connector=source.connector,
                    mappers=source.mappers, full=full, progress=progress,
                )  # fmt: skip
                await self._after_sync(tenant, name, source, report)
                return report
            finally:
                if transport is not None:  # a one-off transport (a test's) is not kept
                    await source.connector.aclose()
        raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises

    async def replay_quarantine(
        self,
        tenant: str,
        name: str,
        *,
        code: str | None = None,
        ids: tuple[str, ...] = (),
        progress: Callable[[ReplaySummary], None] | None = None,
    ) -> ReplaySummary:
        """Re-map the connection's quarantined records with its current mapping files and apply
        them (``cadastre quarantine replay``). No vendor call is made; a connector that can say
        how it reads an item (``raw_record(stream, item, mapper)``) is asked to."""
        with working_for(tenant, name):  # every log line says which
            async with self._use(await self.open_source(tenant, name)) as source:
                return await QuarantineReplay(self.engine, self.store).run(
                    tenant=tenant, connection=name, system=source.connector.system,
                    mappers=source.mappers, code=code, ids=ids, progress=progress,
                    rebuild=getattr(source.connector, "raw_record", None),
                )  # fmt: skip

    async def _after_sync(
        self, tenant: str, name: str, source: OpenSource, report: SyncReport
    ) -> None:
        """What a sync learnt besides records: a mass update it paced, schema drift."""
        connector, system = source.connector, source.connector.system
        updates: dict[str, MassUpdate] = getattr(connector, "mass_updates", {})
        await report_mass_updates(
            self.store, self.clock, tenant=tenant, connection=name, system=system,
            updates=updates, seconds=report.seconds,
        )  # fmt: skip
        await check_drift(
            self.store, self.clock, tenant=tenant, connection=name, system=system,
            source=connector, mappers=source.mappers,
        )  # fmt: skip
        await report_unread_streams(
            self.store, self.clock, tenant=tenant, connection=name, system=system,
            unread=report.unread,
        )  # fmt: skip

    async def reconcile(
        self, tenant: str, name: str, *, stream: str | None = None, force: bool = False,
        guard: ReconcileGuard | None = None, transport: httpx.AsyncBaseTransport | None = None,
    ) -> ReconcileReport:  # fmt: skip
        """Compare the vendor's keys with the records held for the connection and tombstone
        those gone upstream (``cadastre reconcile``); see ``sync.reconcile``. One run per
        connection at a time (``SyncInProgress`` otherwise), stopped past
        ``CADASTRE_SYNC_MAX_SECONDS`` of wall-clock time (``SyncTimedOut``)."""
        limit = self.settings.sync_max_seconds
        async with contextlib.AsyncExitStack() as held:
            held.enter_context(working_for(tenant, name))  # every log line says which
            try:
                await held.enter_async_context(
                    self.locks.hold(f"reconcile:{tenant}:{name}", wait=0.0,
                                    lease=limit or 6 * 3600.0)
                )  # fmt: skip
            except LockTimeout:
                raise SyncInProgress(
                    f"connection {name!r} is being reconciled already (another worker, the "
                    "schedule or another command); run it again when that ends"
                ) from None
            source = await self.open_source(tenant, name, transport=transport)
            try:
                async with self._use(source), asyncio.timeout(limit):
                    return await self._reconcile(tenant, name, source, stream, force, guard)
            except TimeoutError:
                raise SyncTimedOut(
                    f"reconciliation of connection {name!r} ran past {limit:g} s; stopped"
                ) from None
            finally:
                if transport is not None:
                    await source.connector.aclose()
        raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises

    async def _reconcile(
        self, tenant: str, name: str, source: OpenSource, stream: str | None, force: bool,
        guard: ReconcileGuard | None,
    ) -> ReconcileReport:  # fmt: skip
        connector = source.connector
        stream = stream or connector.streams()[0]
        mapper = source.mappers.get(stream)
        keys = getattr(connector, "keys", None)
        if mapper is None or not callable(keys):
            raise ConfigurationError(
                f"connection {name!r} cannot list the keys of {stream!r} for reconciliation"
            )
        reconciler = KeyReconciler(self.engine, self.store, self.clock, guard=guard)
        return await reconciler.run(
            tenant=tenant, connection=name, system=connector.system, stream=stream,
            entity=mapper.entity, keys=keys(stream), force=force,
        )  # fmt: skip


class _HubTargets:
    """Write-back's way to connectors (``sync.writeback.TargetDirectory``): the connection's
    connector as syncs open it (``Hub.open_source``), when it takes writes."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def target(self, tenant: str, connection: Connection) -> TargetConnector | None:
        connector = (await self._hub.open_source(tenant, connection.name)).connector
        return connector if isinstance(connector, TargetConnector) else None

    def default_mode(self, connection: Connection) -> WritebackMode:
        try:
            spec = connector_spec(connection.connector)
        except ConfigurationError:
            return WritebackMode.SHADOW  # unknown connector: send nothing
        return WritebackMode(getattr(spec, "default_writeback_mode", "live"))


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
    # Always, logs configured or not: the SDK's spans give every log line its trace id, and a
    # later hub's exporter setting replaces an earlier one's (observe.tracing).
    configure_tracing(settings)
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
    # Checked at start-up, so a bad entry stops the hub rather than its first sync.
    AddressAllowList.parse(settings.gateway_allow_hosts)
    alert_rules = load_rules(settings.alert_rules, detectors=DETECTORS)  # the same for the rules
    store = await open_store(settings.resolved_database_url(), clock=clock, migrate=migrate)
    history = ConfigHistory(store, clock)  # hand edits are versioned when first seen
    await history.observe_ownership(settings.ownership_file)
    vault = Vault(store, master_keys(settings), clock)
    locks = lock_backend(settings, store)
    metrics = Metrics()
    # Audit entries are appended all over (engine, vault, directory, webhooks...); the store's
    # commit hook sees every one of them, committed, without the store knowing of Prometheus.
    audited = metrics.counter("cadastre_audit_entries_total")
    store.watch_audit(lambda tenant, entries: audited.labels(tenant).inc(entries))
    engine = SyncEngine(
        store, registry, clock, metrics=metrics, conflict_skew=settings.conflict_skew_seconds
    )
    engine.echo_keep = timedelta(days=settings.writeback_echo_days)  # write-back echoes
    observations = Observations(clock)
    runner = SyncRunner(
        engine, store, clock, metrics=metrics, stall_seconds=settings.sync_stall_seconds,
        max_seconds=settings.sync_max_seconds, observations=observations,
    )  # fmt: skip
    controls = GatewayControls(clock, backend=rate_limit_backend(settings, clock, metrics),
                               metrics=metrics)  # fmt: skip
    bus = open_bus(settings, clock)
    relay = OutboxRelay(
        store, bus, locks, clock, batch=settings.relay_batch, poll=settings.relay_poll_seconds,
        keep=timedelta(days=settings.consumed_keep_days), metrics=metrics,
    )  # fmt: skip
    families = {name: spec.family_mapping for name, spec in available().items()}
    for spec in available().values():
        families.update(spec.family_mappings)
    return Hub(
        settings=settings,
        clock=clock,
        store=store,
        registry=registry,
        engine=engine,
        tenants=TenantService(store),
        keys=KeyService(store, clock),
        connections=ConnectionService(store, clock),
        vault=vault,
        tokens=TokenManager(vault, locks, clock),
        locks=locks,
        metrics=metrics,
        observations=observations,
        mappings=MappingRegistry(settings.mappings_dir, families, observer=history.seen_mapping),
        runner=runner,
        controls=controls,
        bus=bus,
        relay=relay,
        webhooks=WebhooksOut(store, vault, clock, settings, metrics=metrics),
        webhooks_in=WebhookReceiver(
            store, vault, clock, public_url=settings.public_url, metrics=metrics
        ),
        config_history=history,
        alert_rules=alert_rules,
    )


def rate_limit_backend(settings: Settings, clock: Clock, metrics: Metrics) -> RateLimitBackend:
    """In memory for the embedded default; in Redis, failing safe, when a URL is set."""
    if settings.redis_url is None:
        return MemoryRateLimitBackend(clock)
    shared = RedisRateLimitBackend(settings.redis_url.get_secret_value())
    return FailSafeRateLimitBackend(
        shared, clock, min_workers=settings.rate_limit_workers, metrics=metrics
    )


def _mapping_name(connection: Connection) -> str | None:
    """The mapping a connection's records go through (the ``{mapping}`` of alert runbooks)."""
    spec = connector_spec(connection.connector)
    name = spec.mapping_name(spec.settings(connection.name, connection.config))
    return name if isinstance(name, str) else None


def _shape(auth: VaultAuth | None) -> str:
    """What of a credential its gateway's authenticator was built from (not its tokens)."""
    if auth is None:
        return ""
    kept = ("header", "query", "login_url", "login_format", "cookie", "token_url", "scope")
    return repr((auth.scheme, sorted((k, str(auth.meta.get(k))) for k in kept)))


def master_keys(settings: Settings) -> MasterKeyProvider:
    """The environment's key when set; else the key file, created on first use only for the
    embedded default (a distributed deployment names its key: every worker must share it)."""
    if settings.vault_master_key is not None:
        previous = settings.vault_previous_keys
        return EnvMasterKeys.parse(
            settings.vault_master_key.get_secret_value(),
            previous.get_secret_value() if previous is not None else "",
        )
    path = settings.vault_key_file or settings.data_dir / "vault.keys"
    if not path.exists() and not settings.embedded():
        raise ConfigurationError(
            "the vault needs a master key shared by every worker: set CADASTRE_VAULT_MASTER_KEY "
            "or CADASTRE_VAULT_KEY_FILE (`cadastre vault new-key` prints one)"
        )
    return FileMasterKeys(path, create=settings.embedded())


def lock_backend(settings: Settings, store: Store) -> LockBackend:
    """Redis when a URL is set; else PostgreSQL advisory locks when the store is PostgreSQL
    (workers on many machines share it); else file locks, which every process on this machine
    shares (the embedded default)."""
    if settings.redis_url is not None:
        return RedisLockBackend(settings.redis_url.get_secret_value())
    if isinstance(store, PostgresStore):
        return PostgresLockBackend(store.engine)
    return FileLockBackend(settings.data_dir / "locks")
