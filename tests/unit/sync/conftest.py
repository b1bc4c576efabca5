"""Shared set-up for the sync engine tests: a small ownership file over the real contract, a
FakeStore on a FakeClock, and helpers to build changes and read back what was stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cadastre.contract import Change, Operation, Origin
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.observe import Metrics
from cadastre.ownership import OwnershipRegistry, load_registry, parse_registry
from cadastre.ports import Store
from cadastre.sync import SyncEngine
from cadastre.testing import EPOCH, FakeClock, FakeStore, FakeUnitOfWork

TENANT = "acme"

REGISTRY = """
version: 1
systems: {mls: {}, core: {}, crm: {}, pms: {}}
rules:
  - {match: Listing.*, owner: mls}
  - {match: Listing.PropertyId, owner: core}
  # Resident: only some fields have rules, so HomePhone, LeaseId ... have no owner
  - {match: Resident.ResidentId, owner: pms}
  - {match: Resident.FirstName, owner: pms}
  - {match: Resident.LastName, owner: pms}
  - {match: Resident.Email, owner: pms, writers: [crm], conflict: owner_wins}
  - {match: Resident.MobilePhone, owner: pms, writers: [crm], conflict: newest_wins}
"""


def at(minutes: float) -> datetime:
    return EPOCH + timedelta(minutes=minutes)


def make_change(
    system: str,
    fields: dict[str, Any] | None = None,
    *,
    entity: str = "Listing",
    ext: str | None = "L1",
    t: float | None = None,
    version: str | None = None,
    op: Operation = Operation.UPSERT,
    canonical_id: str | None = None,
    key: str = "",
    causation: str | None = None,
) -> Change:
    return Change(
        tenant=TENANT,
        entity=entity,
        canonical_id=canonical_id,
        operation=op,
        fields=fields or {},
        origin=Origin(
            system=system,
            connection=f"{system}-1",
            external_id=ext,
            source_time=None if t is None else at(t),
            source_version=version,
            causation_id=causation,
        ),
        idempotency_key=key,
    )


@pytest.fixture
def registry() -> OwnershipRegistry:
    return parse_registry(REGISTRY, source="test-registry")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> Store:
    return FakeStore(clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def engine(
    store: Store, registry: OwnershipRegistry, clock: FakeClock, metrics: Metrics
) -> SyncEngine:
    return SyncEngine(store, registry, clock, metrics=metrics)


@pytest.fixture(name="change")
def change_fixture() -> Callable[..., Change]:
    return make_change


class Reader:
    """Reads back what the engine committed, each call in its own unit of work."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, entity: str, id: str) -> Any:
        async with self.store.unit_of_work(TENANT) as uow:
            return await uow.records.get(entity, id)

    async def provenance(self, entity: str, id: str) -> Any:
        async with self.store.unit_of_work(TENANT) as uow:
            return await uow.provenance.for_record(entity, id)

    async def events(self) -> list[Any]:
        async with self.store.unit_of_work(TENANT) as uow:
            return [m.event for m in await uow.outbox.pending(limit=10_000)]

    async def audit(self) -> list[Any]:
        async with self.store.unit_of_work(TENANT) as uow:
            return [e async for e in uow.audit.entries()]

    async def resolve(self, system: str, external_id: str, entity: str = "Listing") -> Any:
        async with self.store.unit_of_work(TENANT) as uow:
            return await uow.xref.resolve(system, f"{system}-1", entity, external_id)

    async def applied(self, key: str) -> Any:
        async with self.store.unit_of_work(TENANT) as uow:
            return await uow.applied.get(key)


@pytest.fixture
def read(store: Store) -> Reader:
    return Reader(store)


FAMILY = Path(__file__).resolve().parents[3] / "src/cadastre/connectors/mls/reso/mapping.yaml"


@pytest.fixture
def parts() -> tuple[FakeStore, FakeClock, SyncEngine]:
    """A store, an autojumping clock and an engine under the packaged ownership file, for the
    runner and replay tests."""
    clock = FakeClock(autojump=True)
    store = FakeStore(clock)
    return store, clock, SyncEngine(store, load_registry(None), clock)


@pytest.fixture
def mappings(tmp_path: Path) -> MappingRegistry:
    """A mapping registry folder of the test's own over the RESO family's defaults."""
    return MappingRegistry(tmp_path, {"mls/reso": FAMILY})


@pytest.fixture
def mapper(mappings: MappingRegistry) -> RecordMapper:
    return mappings.load("mls/reso")


@pytest.fixture(name="at")
def at_fixture() -> Callable[[float], datetime]:
    return at


class CountingStore(FakeStore):
    """A FakeStore that records every ``open_items`` call's limit and how many entries it gave."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.calls: list[tuple[int | None, int]] = []  # (limit, entries returned)
        self.gets = 0

    def unit_of_work(self, tenant: str, *, read_only: bool = False) -> FakeUnitOfWork:
        uow = super().unit_of_work(tenant, read_only=read_only)
        uow.quarantine = _Counted(uow.quarantine, self)
        return uow


class _Counted:
    def __init__(self, inner: Any, store: CountingStore) -> None:
        self._inner = inner
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_items(self, *args: Any, **kw: Any) -> list[Any]:
        found: list[Any] = await self._inner.open_items(*args, **kw)
        self._store.calls.append((kw.get("limit"), len(found)))
        return found

    async def get(self, id: str) -> Any:
        self._store.gets += 1
        return await self._inner.get(id)
