"""``WebhookNormaliser`` over ``FakeStore`` with a stand-in connector: pages that never hold two
versions of one record, one worker per connection, a connector that cannot read webhooks, and
the connector opened again when its connection changes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cadastre.connectors.mls.reso import ResoConnectorSpec
from cadastre.contract.registry import LOCAL_FIELDS
from cadastre.directory import ConnectionService, ConnectionSpec
from cadastre.mapping import MappingRegistry, RecordMapper
from cadastre.mapping.records import raw_record
from cadastre.ownership import load_registry
from cadastre.ports import InboxStatus, RawRecord, ReceivedWebhook
from cadastre.sync import SyncEngine, SyncRunner
from cadastre.testing import FakeClock, FakeStore
from cadastre.testing.vault import VaultKit
from cadastre.vault import MemoryLockBackend
from cadastre.webhooks.normalise import WebhookNormaliser

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
_IDS = itertools.count()
PROJECT = Path(__file__).resolve().parents[3]


class Reader:
    system = "mls"

    def __init__(self, mapper: RecordMapper) -> None:
        self._mapper = mapper
        self.read: list[bytes] = []

    def streams(self) -> Sequence[str]:
        return ["Property"]

    async def webhook_records(self, body: bytes, headers: Mapping[str, str]) -> list[RawRecord]:
        self.read.append(body)
        items = orjson.loads(body)
        return [raw_record("Property", i, self._mapper.key, self._mapper.timestamp) for i in items]

    async def aclose(self) -> None:
        return None


@dataclass
class Opened:
    connector: Any
    mappers: dict[str, RecordMapper]


@dataclass
class Host:
    """What the hub gives the normaliser: its runner, its locks, a way to open a connection."""

    runner: SyncRunner
    locks: MemoryLockBackend
    mapper: RecordMapper
    readable: bool = True
    opened: list[str] = field(default_factory=list)

    async def open_source(self, tenant: str, name: str) -> Opened:
        self.opened.append(name)
        connector = Reader(self.mapper) if self.readable else object()
        return Opened(connector, {"Property": self.mapper})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def store(clock: FakeClock) -> FakeStore:
    kit = VaultKit(clock)
    await ConnectionService(kit.store, clock).put("acme", ConnectionSpec(
        name="crm", system="mls", connector="mls/reso", config={"base_url": "https://x.invalid"}
    ))  # fmt: skip
    assert isinstance(kit.store, FakeStore)
    return kit.store


@pytest.fixture
def host(store: FakeStore, clock: FakeClock) -> Host:
    engine = SyncEngine(store, load_registry(), clock)
    mappings = MappingRegistry(PROJECT / "mappings", {"mls/reso": ResoConnectorSpec.family_mapping})
    return Host(SyncRunner(engine, store, clock), MemoryLockBackend(), mappings.load("mls/reso"))


def normaliser(store: FakeStore, clock: FakeClock, host: Host) -> WebhookNormaliser:
    return WebhookNormaliser(store, clock, runner=host.runner, locks=host.locks,
                             open_source=host.open_source)  # fmt: skip


async def store_webhooks(store: FakeStore, *bodies: list[dict[str, Any]]) -> None:
    async with store.unit_of_work("acme") as uow:
        await uow.webhooks_in.add_many([
            ReceivedWebhook("crm", f"m{next(_IDS)}", NOW, {}, orjson.dumps(items))
            for items in bodies
        ])  # fmt: skip
        await uow.commit()


def item(key: str, minute: int, price: int) -> dict[str, Any]:
    when = f"2026-11-27T08:{minute:02d}:00Z"
    return {"ListingKey": key, "ModificationTimestamp": when, "ListPrice": price}


async def statuses(store: FakeStore) -> list[InboxStatus]:
    async with store.unit_of_work("acme") as uow:
        return [e.status for e in reversed(await uow.webhooks_in.entries())]


async def test_two_versions_of_a_record_go_in_two_pages_in_order(
    store: FakeStore, clock: FakeClock, host: Host
) -> None:
    await store_webhooks(store, [item("A", 1, 1), item("B", 1, 1)], [item("A", 2, 2)],
                         [item("C", 1, 1)], [item("A", 3, 3), item("C", 2, 2)])  # fmt: skip
    assert await normaliser(store, clock, host).run_once() == 4
    async with store.unit_of_work("acme") as uow:
        canonical = await uow.xref.resolve("mls", "crm", "Listing", "A")
        assert canonical is not None
        record = await uow.records.get("Listing", canonical)
        assert await uow.quarantine.open_items() == []  # no duplicate_in_page
        cursor = await uow.cursors.get("crm", "webhooks-in")
    assert record is not None
    assert (record.data["ListPrice"], record.version) == ("3", 3)
    assert cursor is not None
    assert await statuses(store) == [InboxStatus.PROCESSED] * 4


async def test_one_worker_drains_a_connection_at_a_time(
    store: FakeStore, clock: FakeClock, host: Host
) -> None:
    await store_webhooks(store, [item("A", 1, 1)])
    worker = normaliser(store, clock, host)
    async with host.locks.hold("webhooks-in:acme:crm", wait=0, lease=60):  # another worker's
        assert await worker.drain("acme", "crm") == 0
    assert await statuses(store) == [InboxStatus.PENDING]
    assert await worker.drain("acme", "crm") == 1


async def test_a_connector_that_cannot_read_webhooks_is_retried_with_the_reason(
    store: FakeStore, clock: FakeClock, host: Host
) -> None:
    host.readable = False
    await store_webhooks(store, [item("A", 1, 1)])
    await normaliser(store, clock, host).run_once()
    async with store.unit_of_work("acme") as uow:
        (entry,) = await uow.webhooks_in.entries()
    assert (entry.status, entry.attempts) == (InboxStatus.PENDING, 1)
    assert entry.error == "connector mls/reso cannot read webhooks"


async def test_the_connector_is_opened_again_when_its_connection_changes(
    store: FakeStore, clock: FakeClock, host: Host
) -> None:
    worker = normaliser(store, clock, host)
    for round_ in range(3):
        await store_webhooks(store, *[[item(f"K{round_}{i}", 1, 1)] for i in range(round_ + 1)])
        await worker.run_once()
    assert host.opened == ["crm"]  # held across batches
    await ConnectionService(store, clock).put("acme", ConnectionSpec(
        name="crm", system="mls", connector="mls/reso", config={"base_url": "https://y.invalid"}
    ))  # fmt: skip
    await store_webhooks(store, [item("Z", 1, 1)], [item("Y", 1, 1)], [item("X", 1, 1)],
                         [item("W", 1, 1)])  # fmt: skip
    await worker.run_once()
    clock.advance(31)  # and every 30 s, so an edited mapping file takes effect
    await store_webhooks(store, *[[item(f"V{i}", 1, 1)] for i in range(5)])
    await worker.run_once()
    assert host.opened == ["crm"] * 3


async def test_an_edited_mapping_is_used_though_a_new_source_gets_a_freed_ones_id(
    store: FakeStore, clock: FakeClock, host: Host, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import cadastre.webhooks.normalise as module

    # CPython hands a freed object's address (its id) to the next one made: say every source
    # the hub opens after an edit gets the id of one opened before it.
    monkeypatch.setattr(module, "id", lambda _: 1, raising=False)
    worker = normaliser(store, clock, host)
    await store_webhooks(store, [{**item("A", 1, 1), "X_Note": "first"}])
    await worker.run_once()
    (tmp_path / "keep.yaml").write_text(
        "mapping: keep\nversion: 1\nextends: mls/reso\nlocal_prefixes: [X_]\n"
    )
    families = {"mls/reso": ResoConnectorSpec.family_mapping}
    host.mapper = MappingRegistry(tmp_path, families).load("keep")  # X_ fields are kept now
    await ConnectionService(store, clock).put("acme", ConnectionSpec(
        name="crm", system="mls", connector="mls/reso", config={"base_url": "https://y.invalid"}
    ))  # fmt: skip
    await store_webhooks(store, [{**item("B", 1, 1), "X_Note": "second"}])
    await worker.run_once()
    assert host.opened == ["crm", "crm"]
    async with store.unit_of_work("acme") as uow:
        canonical = await uow.xref.resolve("mls", "crm", "Listing", "B")
        assert canonical is not None
        record = await uow.records.get("Listing", canonical)
    assert record is not None
    assert record.data[LOCAL_FIELDS] == {"X_Note": "second"}
