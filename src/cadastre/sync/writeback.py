"""Write-back planning: a platform write (``PATCH/POST/DELETE /v1/...``) or a vendor change to
propagate becomes one ``writes`` row and one ``write_targets`` row per connection it goes to, in
one transaction. The ``WriteBackWorker`` (``writeback_worker.py``) sends them.

A platform write is checked whole before anything is stored: every field must be in the contract,
its value valid, its ``platform`` rule ``route`` (any ``refuse`` -> ``OwnershipViolation`` naming
every refused field), and the connection chosen for its owner must be able to write it. Fields
are grouped by owning system; each system's target is the tenant's connection of that system
that holds a cross-reference of the record (for a create: the tenant's connection of the record
owner's system, the one marked ``writeback_default`` in its config when there are several).

Propagation (``WriteBackPropagator``, the bus consumer ``writeback``) follows vendor changes: an
entity event from connection A plans writes of its changed fields to every other connection
holding a cross-reference of the record whose system owns the field or may write it, and whose
connector can. A change caused by our own write-back comes from its target connection, so it is
never sent back there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

from pydantic_core import to_jsonable_python

from cadastre.errors import ContractError, NotFound, OwnershipViolation
from cadastre.ownership import PlatformAccess
from cadastre.ports import (
    StoredWrite,
    TargetConnector,
    WriteOperation,
    WriteState,
    WriteTarget,
)
from cadastre.sync.idempotency import target_key
from cadastre.sync.origin import new_record_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from cadastre.ownership import OwnershipRegistry
    from cadastre.ports import (
        BusMessage,
        BusSubscription,
        Clock,
        Connection,
        EventBus,
        ExternalRef,
        Store,
        UnitOfWork,
        WritebackMode,
    )
    from cadastre.sync.plan import Validator

log = logging.getLogger(__name__)

CONSUMER = "writeback"
PROPAGATION_ACTOR = "writeback"
DEFAULT_FLAG = "writeback_default"  # a connection's config key: the target of creates


class TargetDirectory(Protocol):
    """How write-back reaches connectors; ``bootstrap`` implements it over ``Hub.open_source``."""

    async def target(self, tenant: str, connection: Connection) -> TargetConnector | None:
        """The connection's connector when it takes writes (None when it does not)."""
        ...

    def default_mode(self, connection: Connection) -> WritebackMode:
        """The mode of a connection no one has set one for (accounting: shadow)."""
        ...


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str  # unknown_field, invalid_value, refused, not_writable, no_target, ambiguous
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "detail": self.detail}


class WriteRejected(ContractError):
    """A platform write that cannot be accepted as asked (an API 422): every problem listed."""

    def __init__(self, message: str, problems: Sequence[FieldProblem]) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class PlannedWrite:
    write: StoredWrite
    targets: list[WriteTarget] = field(default_factory=list)


def _contract_validator(entity: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    from cadastre.contract import validate_fields

    return validate_fields(entity, fields)


class WriteBackPlanner:
    def __init__(
        self,
        store: Store,
        registry: OwnershipRegistry,
        clock: Clock,
        targets: TargetDirectory,
        *,
        validate: Validator | None = None,
        new_id: Callable[[], str] | None = None,
        planned: Callable[[str], None] | None = None,
    ) -> None:
        """``planned(tenant)`` hears of every stored write (the worker's nudge)."""
        self._store = store
        self._registry = registry
        self._clock = clock
        self._targets = targets
        self._validate: Validator = validate or _contract_validator
        self._new_id = new_id or (lambda: "wr_" + new_record_id(clock))
        self._planned = planned

    # ------------------------------------------------------------------ platform writes

    async def submit(
        self,
        tenant: str,
        entity: str,
        canonical_id: str | None,
        patch: Mapping[str, Any],
        *,
        operation: WriteOperation,
        actor: str,
    ) -> PlannedWrite:
        """Check a platform write and store it with its targets. Raises ``NotFound`` (no such
        record), ``OwnershipViolation`` (fields the platform may not write, all named: its
        ``result`` is the list of ``FieldProblem``) and ``WriteRejected`` (unknown fields,
        invalid values, no connection able to take them)."""
        if entity not in self._registry.entities():
            raise NotFound(f"unknown entity {entity!r}")
        patch = dict(patch)
        if operation is not WriteOperation.DELETE:
            self._check_fields(entity, patch, creating=operation is WriteOperation.CREATE)
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            if operation is WriteOperation.CREATE:
                canonical_id = canonical_id or self._new_id()
                refs: list[ExternalRef] = []
            else:
                if canonical_id is None:
                    raise NotFound(f"{entity} needs an id")
                record = await uow.records.get(entity, canonical_id)
                if record is None or record.deleted:
                    raise NotFound(f"{entity} {canonical_id} not found")
                refs = await uow.xref.for_record(entity, canonical_id)
            connections = {c.name: c for c in await uow.connections.all()}
            versions = await _versions(uow, entity, canonical_id) if refs else {}
        write_id = self._new_id()
        write = StoredWrite(
            id=write_id, entity=entity, canonical_id=canonical_id, operation=operation,
            patch=patch, actor=actor, causation_id=None, created_at=self._clock.now(),
        )  # fmt: skip
        groups = self._groups(entity, patch, operation)
        planned = PlannedWrite(write)
        problems: list[FieldProblem] = []
        for system, fields in groups.items():
            found = await self._choose(tenant, entity, system, fields, operation, refs,
                                       connections, problems)  # fmt: skip
            if found is None:
                continue
            connection, external_id = found
            planned.targets.append(self._target(
                tenant, write, connection, fields, operation, external_id,
                versions.get(connection.name),
            ))  # fmt: skip
        if problems:
            raise WriteRejected(_listing("cannot write", problems), problems)
        await self._store_write(tenant, planned)
        return planned

    def _check_fields(self, entity: str, patch: Mapping[str, Any], *, creating: bool) -> None:
        """Every problem of the patch at once (unknown fields, fields the platform may not
        write, invalid values): ``OwnershipViolation`` when any field is refused, else
        ``WriteRejected``; both list them all."""
        registry = self._registry
        known = registry.fields(entity)
        problems: list[FieldProblem] = []
        refused = False
        for name, value in patch.items():
            if name not in known:
                problem = FieldProblem(name, "unknown_field", f"{entity} has no field {name}")
                problems.append(problem)
                continue
            decision = registry.decide(entity, name, "core")
            if not (decision.creatable if creating else decision.routed):  # create: POST only
                problems.append(FieldProblem(name, "refused", _refusal(registry, entity, name)))
                refused = True
                continue
            if value is None:
                continue  # JSON merge patch: null removes the field
            try:
                self._validate(entity, {name: value})
            except ContractError as exc:
                problems.append(FieldProblem(name, "invalid_value", str(exc)))
        if refused:
            raise OwnershipViolation(_listing("the platform may not write", problems), problems)
        if problems:
            raise WriteRejected(_listing(f"cannot write these {entity} fields", problems),
                                problems)  # fmt: skip
        if not patch:
            what = f"a new {entity} needs at least one field" if creating else "the patch is empty"
            raise WriteRejected(what, [])

    def _groups(
        self, entity: str, patch: Mapping[str, Any], operation: WriteOperation
    ) -> dict[str, dict[str, Any]]:
        owner = self._registry.record_owner(entity)
        if operation is WriteOperation.DELETE:
            if owner is None:
                raise WriteRejected(f"no system may delete {entity} records", [])
            if not self._registry.routed_fields(entity):
                why = f"the platform may not delete {entity} records (no field has platform: route)"
                refused = [FieldProblem("*", "refused", why)]
                raise OwnershipViolation(_listing("the platform may not write", refused), refused)
            return {owner: {}}
        groups: dict[str, dict[str, Any]] = defaultdict(dict)
        for name, value in patch.items():
            system = self._registry.owner_of(entity, name)
            assert system is not None  # noqa: S101 - a routed field has a rule
            groups[system][name] = value
        if operation is WriteOperation.CREATE and set(groups) - {owner}:
            problems = [
                FieldProblem(n, "not_record_owner",
                             f"{n} belongs to {s}; a new {entity} is created in {owner}")
                for s, fields in groups.items() if s != owner for n in fields
            ]  # fmt: skip
            raise WriteRejected(_listing(f"a new {entity} is created in {owner}", problems),
                                problems)  # fmt: skip
        return dict(groups)

    async def _choose(
        self, tenant: str, entity: str, system: str, fields: Mapping[str, Any],
        operation: WriteOperation, refs: Sequence[ExternalRef],
        connections: Mapping[str, Connection], problems: list[FieldProblem],
    ) -> tuple[Connection, str | None] | None:  # fmt: skip
        names = sorted(fields) or ["*"]
        holders: dict[str, str | None]
        if operation is WriteOperation.CREATE:
            holders = {c.name: None for c in connections.values() if c.system == system}
        else:
            holders = {
                r.connection: r.external_id for r in refs
                if r.system == system and r.connection in connections
            }  # fmt: skip
        if not holders:
            what = "no connection" if operation is WriteOperation.CREATE else "no connection holds"
            detail = (f"{what} of system {system} for this {entity}"
                      if operation is not WriteOperation.CREATE
                      else f"the tenant has no connection of system {system}")  # fmt: skip
            problems += [FieldProblem(n, "no_target", detail) for n in names]
            return None
        chosen = sorted(holders)
        if len(chosen) > 1:
            marked = [n for n in chosen if connections[n].config.get(DEFAULT_FLAG) is True]
            if len(marked) != 1:
                detail = (f"several connections of system {system} could take it "
                          f"({', '.join(chosen)}); mark one with `{DEFAULT_FLAG}: true` in its "
                          "config")  # fmt: skip
                problems += [FieldProblem(n, "ambiguous", detail) for n in names]
                return None
            chosen = marked
        connection = connections[chosen[0]]
        connector = await self._targets.target(tenant, connection)
        if connector is None:
            detail = f"connection {connection.name} ({connection.connector}) takes no writes"
            problems += [FieldProblem(n, "not_writable", detail) for n in names]
            return None
        writable = connector.writable().get(entity, frozenset())
        if operation is WriteOperation.DELETE:
            if not writable:
                detail = f"connection {connection.name} cannot delete {entity} records"
                problems.append(FieldProblem("*", "not_writable", detail))
                return None
        else:
            cannot = sorted(set(fields) - writable)
            if cannot:
                problems += [
                    FieldProblem(n, "not_writable",
                                 f"connection {connection.name} cannot write {entity}.{n}")
                    for n in cannot
                ]  # fmt: skip
                return None
        return connection, holders[connection.name]

    def _target(
        self, tenant: str, write: StoredWrite, connection: Connection, fields: Mapping[str, Any],
        operation: WriteOperation, external_id: str | None, base_version: str | None,
    ) -> WriteTarget:  # fmt: skip
        values = to_jsonable_python(dict(fields))
        key = target_key(
            tenant=tenant, write_id=write.id, connection=connection.name, entity=write.entity,
            canonical_id=write.canonical_id, operation=operation.value, fields=values,
        )  # fmt: skip
        return WriteTarget(
            write_id=write.id, connection=connection.name, system=connection.system,
            entity=write.entity, canonical_id=write.canonical_id, operation=operation,
            fields=values, key=key, state=WriteState.PENDING, external_id=external_id,
            base_version=base_version, updated_at=write.created_at,
        )  # fmt: skip

    async def _store_write(self, tenant: str, planned: PlannedWrite) -> None:
        async with self._store.unit_of_work(tenant) as uow:
            await uow.writes.add(planned.write, planned.targets)
            await uow.audit.append(
                actor=planned.write.actor, action="write.accepted", entity=planned.write.entity,
                entity_id=planned.write.canonical_id,
                detail={
                    "write_id": planned.write.id, "operation": planned.write.operation.value,
                    "fields": sorted(planned.write.patch),
                    "targets": [t.connection for t in planned.targets],
                    "causation_id": planned.write.causation_id,
                },
            )  # fmt: skip
            await uow.commit()
        if self._planned is not None and planned.targets:
            self._planned(tenant)

    # ------------------------------------------------------------------ propagation

    async def propagation(
        self, tenant: str, event_id: str, entity: str, canonical_id: str, origin: str,
        fields: Mapping[str, Any], *,
        connectors: dict[tuple[str, int], TargetConnector | None] | None = None,
    ) -> PlannedWrite | None:  # fmt: skip
        """The writes of a vendor change (from connection ``origin``) to the other connections
        that hold the record and may and can write its fields; None when there are none.
        Nothing is stored: ``WriteBackPropagator`` stores it with its consumer mark."""
        async with self._store.unit_of_work(tenant, read_only=True) as uow:
            refs = [r for r in await uow.xref.for_record(entity, canonical_id)
                    if r.connection and r.connection != origin]  # fmt: skip
            if not refs:
                return None
            connections = {c.name: c for c in await uow.connections.all()}
            versions = await _versions(uow, entity, canonical_id)
        write = StoredWrite(
            id=self._new_id(), entity=entity, canonical_id=canonical_id,
            operation=WriteOperation.UPDATE, patch=dict(fields), actor=PROPAGATION_ACTOR,
            causation_id=event_id, created_at=self._clock.now(),
        )  # fmt: skip
        planned = PlannedWrite(write)
        for ref in sorted(refs, key=lambda r: r.connection):
            connection = connections.get(ref.connection)
            if connection is None:
                continue
            allowed = {
                n: v for n, v in fields.items()
                if self._registry.decide(entity, n, connection.system).allowed
            }  # fmt: skip
            if not allowed:
                continue
            memo = (connection.name, connection.version)  # one look per connection per batch
            if connectors is not None and memo in connectors:
                connector = connectors[memo]
            else:
                connector = await self._targets.target(tenant, connection)
                if connectors is not None:
                    connectors[memo] = connector
            if connector is None:
                continue
            writable = connector.writable().get(entity, frozenset())
            sendable = {n: v for n, v in allowed.items() if n in writable}
            if sendable:
                planned.targets.append(self._target(
                    tenant, write, connection, sendable, WriteOperation.UPDATE, ref.external_id,
                    versions.get(connection.name),
                ))  # fmt: skip
        return planned if planned.targets else None

    def nudge(self, tenant: str) -> None:
        if self._planned is not None:
            self._planned(tenant)


class WriteBackPropagator:
    """The bus consumer ``writeback``: plans the propagation of each vendor entity event, storing
    it with the consumer's mark of the event in one transaction (a redelivered event adds
    nothing)."""

    def __init__(self, bus: EventBus, store: Store, planner: WriteBackPlanner) -> None:
        self._bus = bus
        self._store = store
        self._planner = planner
        self._subscription: BusSubscription | None = None

    async def __aenter__(self) -> Self:
        self._subscription = await self._bus.subscribe(CONSUMER, self.handle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None

    async def handle(self, messages: Sequence[BusMessage]) -> None:
        by_tenant: dict[str, list[BusMessage]] = defaultdict(list)
        for message in messages:
            by_tenant[message.event.tenant].append(message)
        for tenant, batch in by_tenant.items():
            plans: list[PlannedWrite] = []
            connectors: dict[tuple[str, int], TargetConnector | None] = {}
            for message in batch:
                plan = await self._plan(tenant, message, connectors)
                if plan is not None:
                    plans.append(plan)
            async with self._store.unit_of_work(tenant) as uow:
                fresh = set(await uow.consumed.first_seen(CONSUMER, [m.event.id for m in batch]))
                added = 0
                for plan in plans:
                    if plan.write.causation_id in fresh:
                        await uow.writes.add(plan.write, plan.targets)
                        added += 1
                await uow.commit()
            if added:
                self._planner.nudge(tenant)

    async def _plan(
        self, tenant: str, message: BusMessage,
        connectors: dict[tuple[str, int], TargetConnector | None] | None = None,
    ) -> PlannedWrite | None:  # fmt: skip
        event = message.event
        data = event.data
        parts = event.type.split(".")
        if len(parts) != 4 or parts[2] not in ("created", "updated") or not event.subject:
            return None
        origin = data.get("origin") or {}
        # A change that came through no connection (a person's conflict resolution, a value
        # the platform set) goes to every connection holding the record.
        connection = (origin.get("connection") if isinstance(origin, dict) else None) or ""
        fields = data.get("fields")
        entity = data.get("entity")
        if not isinstance(fields, dict) or not fields or not entity:
            return None
        try:
            return await self._planner.propagation(
                tenant, event.id, entity, event.subject, connection, fields,
                connectors=connectors,
            )  # fmt: skip
        except ContractError as exc:
            log.warning("event %s not propagated: %s", event.id, exc)
            return None


async def _versions(uow: UnitOfWork, entity: str, canonical_id: str) -> dict[str, str]:
    """Connection -> the newest vendor version its writes left on the record (SyncToken)."""
    newest: dict[str, tuple[Any, str]] = {}
    for p in (await uow.provenance.for_record(entity, canonical_id)).values():
        if p.connection and p.source_version is not None:
            at = p.source_time or p.recorded_at
            if p.connection not in newest or at > newest[p.connection][0]:
                newest[p.connection] = (at, p.source_version)
    return {c: v for c, (_, v) in newest.items()}


def _refusal(registry: OwnershipRegistry, entity: str, name: str) -> str:
    owner = registry.owner_of(entity, name)
    if name == registry.catalogue.key_fields.get(entity):
        return f"{entity}.{name} is the record's key; its owner ({owner}) gives it"
    if owner is None:
        return f"no rule covers {entity}.{name}"
    if registry.platform(entity, name) is PlatformAccess.CREATE:
        return (f"{entity}.{name} is {owner}'s; the platform may give it only when creating a "
                f"{entity} (platform: create)")  # fmt: skip
    return f"{entity}.{name} is {owner}'s and not open to platform writes (platform: refuse)"


def _listing(what: str, problems: Sequence[FieldProblem]) -> str:
    return f"{what}: " + "; ".join(f"{p.field} ({p.detail})" for p in problems)
