"""``WriteBack``: what the hub holds of write-back (``Hub.writeback``): the planner the API
submits to, the worker and the propagation consumer ``Hub.running`` holds, and the switches the
CLI turns (modes, kill switch), each change audited."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cadastre.errors import NotFound
from cadastre.ports import (
    WritebackMode,
    WriteState,
)
from cadastre.sync.writeback import WriteBackPlanner, WriteBackPropagator
from cadastre.sync.writeback_worker import WriteBackWorker

if TYPE_CHECKING:
    from cadastre.observe import Metrics
    from cadastre.ownership import OwnershipRegistry
    from cadastre.ports import (
        Clock,
        EventBus,
        Store,
        StoredWrite,
        WritebackSwitch,
        WriteOperation,
        WriteTarget,
    )
    from cadastre.sync.engine import SyncEngine
    from cadastre.sync.writeback import PlannedWrite, TargetDirectory


@dataclass(frozen=True)
class ConnectionStatus:
    connection: str
    system: str
    mode: WritebackMode
    mode_set: bool  # False: the connector's default
    stopped: bool
    reason: str
    states: Mapping[str, int]  # target state -> count


@dataclass(frozen=True)
class WriteBackStatus:
    stopped: bool  # the tenant-wide kill switch
    reason: str
    stopped_by: str
    connections: list[ConnectionStatus]


class WriteBack:
    def __init__(
        self,
        store: Store,
        registry: OwnershipRegistry,
        clock: Clock,
        engine: SyncEngine,
        targets: TargetDirectory,
        *,
        lease: float = 300.0,
        poll: float = 1.0,
        max_attempts: int = 8,
        echo_keep: timedelta = timedelta(days=7),
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._engine = engine
        self.targets = targets
        self._options: dict[str, Any] = {
            "lease": lease, "poll": poll, "max_attempts": max_attempts, "echo_keep": echo_keep,
            "metrics": metrics,
        }  # fmt: skip
        self._workers: set[WriteBackWorker] = set()
        self.planner = WriteBackPlanner(store, registry, clock, targets, planned=self.nudge)

    def nudge(self, tenant: str) -> None:
        for worker in list(self._workers):
            worker.nudge(tenant)

    def worker(self, **options: Any) -> WriteBackWorker:
        """A worker on the settings (``options`` override, for tests)."""
        return WriteBackWorker(
            self._store, self._clock, self._engine, self.targets, workers=self._workers,
            **(self._options | options),
        )  # fmt: skip

    def propagator(self, bus: EventBus) -> WriteBackPropagator:
        return WriteBackPropagator(bus, self._store, self.planner)

    async def submit(
        self, tenant: str, entity: str, canonical_id: str | None, patch: Mapping[str, Any], *,
        operation: WriteOperation, actor: str,
    ) -> PlannedWrite:  # fmt: skip
        return await self.planner.submit(
            tenant, entity, canonical_id, patch, operation=operation, actor=actor
        )

    async def get(self, tenant: str, write_id: str) -> tuple[StoredWrite, list[WriteTarget]]:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            write = await uow.writes.get(write_id)
            if write is None:
                raise NotFound(f"write {write_id} not found")
            return write, await uow.writes.targets(write_id)

    async def targets_of(
        self, tenant: str, *, state: WriteState | None = None, connection: str | None = None,
        after: tuple[str, str] | None = None, limit: int = 100,
    ) -> list[WriteTarget]:  # fmt: skip
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            return await uow.writes.find_targets(
                state=state, connection=connection, after=after, limit=limit
            )

    async def _known(self, tenant: str, connection: str | None) -> None:
        if connection is None:
            return
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            if await uow.connections.get(connection) is None:
                raise NotFound(f"connection {connection!r} not found in tenant {tenant!r}")

    async def set_mode(
        self, tenant: str, connection: str, mode: WritebackMode, *, by: str
    ) -> WritebackSwitch:
        await self._known(tenant, connection)
        async with self._store.unit_of_work(tenant) as uow:
            switch = await uow.writes.set_mode(connection, mode, by=by)
            await uow.audit.append(actor=by, action="writeback.mode", entity="Connection",
                                   entity_id=connection, detail={"mode": mode.value})  # fmt: skip
            await uow.commit()
        return switch

    async def stop(
        self, tenant: str, connection: str | None, *, by: str, reason: str
    ) -> WritebackSwitch:
        """Turn a kill switch on: targets not yet sent are held (never dropped)."""
        if not reason.strip():
            raise ValueError("stopping write-back needs a reason")
        await self._known(tenant, connection)
        async with self._store.unit_of_work(tenant) as uow:
            switch = await uow.writes.set_stopped(connection or "", True, by=by, reason=reason)
            await uow.audit.append(
                actor=by, action="writeback.stopped", entity="Connection",
                entity_id=connection or "*", detail={"reason": reason},
            )  # fmt: skip
            await uow.commit()
        return switch

    async def resume(self, tenant: str, connection: str | None, *, by: str) -> int:
        """Turn a kill switch off and make its held targets due again (those still under
        another switch that is on stay held); how many were released."""
        await self._known(tenant, connection)
        async with self._store.unit_of_work(tenant) as uow:
            await uow.writes.set_stopped(connection or "", False, by=by)
            switches = await uow.writes.switches()
            released = 0
            if not (switches.get("") and switches[""].stopped):
                if connection is not None:
                    released = await uow.writes.release_held(connection)
                else:
                    held = {t.connection for t in await uow.writes.find_targets(
                        state=WriteState.HELD, limit=100_000)}  # fmt: skip
                    for name in sorted(held):
                        own = switches.get(name)
                        if own is None or not own.stopped:
                            released += await uow.writes.release_held(name)
            await uow.audit.append(
                actor=by, action="writeback.resumed", entity="Connection",
                entity_id=connection or "*", detail={"released": released},
            )  # fmt: skip
            await uow.commit()
        self.nudge(tenant)
        return released

    async def status(self, tenant: str) -> WriteBackStatus:
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            switches = await uow.writes.switches()
            connections = await uow.connections.all()
            counts: Counter[tuple[str, str]] = Counter()
            after: tuple[str, str] | None = None
            while True:
                page = await uow.writes.find_targets(after=after, limit=1000)
                counts.update((t.connection, t.state.value) for t in page)
                if len(page) < 1000:
                    break
                after = (page[-1].write_id, page[-1].connection)
        tenant_wide = switches.get("")
        rows = []
        for connection in connections:
            switch = switches.get(connection.name)
            mode = switch.mode if switch is not None else None
            rows.append(ConnectionStatus(
                connection=connection.name, system=connection.system,
                mode=mode or self.targets.default_mode(connection), mode_set=mode is not None,
                stopped=bool(switch and switch.stopped), reason=switch.reason if switch else "",
                states={s: n for (c, s), n in counts.items() if c == connection.name},
            ))  # fmt: skip
        return WriteBackStatus(
            stopped=bool(tenant_wide and tenant_wide.stopped),
            reason=tenant_wide.reason if tenant_wide else "",
            stopped_by=tenant_wide.stopped_by if tenant_wide else "",
            connections=rows,
        )
