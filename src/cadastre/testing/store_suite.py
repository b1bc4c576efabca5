"""``StoreSuite``: the conformance suite every ``Store`` adapter passes (FakeStore, SQLite,
PostgreSQL, and yours).

Subclass it and provide a ``store`` fixture built on the suite's ``clock`` fixture, empty at the
start of each test::

    class TestMyStore(StoreSuite):
        @pytest.fixture
        async def store(self, clock):
            store = MyStore(..., clock=clock)
            yield store
            await store.close()

Importing this module needs pytest; ``cadastre.testing`` itself does not import it. It is long
(~480 lines): one test per rule of the port, kept together so an adapter gets all of them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope
from cadastre.errors import AlreadyExists, ConcurrentUpdate, ContractError, NotFound
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    AuditReport,
    Connection,
    ConnectionStatus,
    ExternalRef,
    FieldProvenance,
)
from cadastre.store.audit import GENESIS_HASH, audit_entry_hash
from cadastre.store.canonical import content_hash
from cadastre.testing.clock import EPOCH, FakeClock
from cadastre.testing.store_bulk_suite import BulkStoreSuite

if TYPE_CHECKING:
    from cadastre.ports import Store

A, B = "acme", "globex"


def event(tenant: str = A, subject: str = "L1") -> EventEnvelope:
    return EventEnvelope(
        source="/mls/austin", type="cadastre.listing.updated.v1", subject=subject, time=EPOCH,
        tenant=tenant, data={"ListPrice": 100},
    )  # fmt: skip


def connection(tenant: str = A, version: int = 1, **changes: Any) -> Connection:
    fields: dict[str, Any] = {
        "tenant": tenant, "name": "austin-mls", "system": "mls", "connector": "mls/reso",
        "config": {"base_url": "https://mls.example", "page_size": 200}, "credential": "env:MLS",
        "status": ConnectionStatus.ACTIVE, "version": version, "updated_at": EPOCH,
    }  # fmt: skip
    return Connection(**{**fields, **changes})


def api_key(tenant: str = A, key_id: str = "k000000000001") -> ApiKey:
    return ApiKey(key_id, tenant, ApiKeyScope.WRITE, "ab" * 32, EPOCH, label="ci")


def result(tenant: str = A, key: str = "idem-1") -> ApplyResult:
    return ApplyResult(
        tenant=tenant, entity="Listing", canonical_id="L1", idempotency_key=key,
        applied=["ListPrice"], version=1, created=True, event_id="e1",
    )  # fmt: skip


class StoreSuite(BulkStoreSuite):
    """The rules of every port method; the bulk methods' tests come from ``BulkStoreSuite``."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    # ------------------------------------------------------------------ tenants and keys

    async def test_tenants(self, store: Store, clock: FakeClock) -> None:
        created = await store.create_tenant(A, "Acme Realty")
        assert created.id == A
        assert created.name == "Acme Realty"
        assert created.created_at == EPOCH
        with pytest.raises(AlreadyExists):
            await store.create_tenant(A, "again")
        await store.create_tenant(B, "Globex")
        assert await store.get_tenant(A) == created
        assert await store.get_tenant("nobody") is None
        assert [t.id for t in await store.list_tenants()] == [A, B]

    async def test_api_keys(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.keys.add(api_key())
            await uow.commit()
        assert await store.find_api_key("k000000000001") == api_key()
        assert await store.find_api_key("k999") is None
        clock.advance(60)
        async with store.unit_of_work(A) as uow:
            with pytest.raises(AlreadyExists):
                await uow.keys.add(api_key())
        async with store.unit_of_work(A) as uow:
            revoked = await uow.keys.revoke("k000000000001")
            with pytest.raises(NotFound):
                await uow.keys.revoke("k999")
            await uow.commit()
        assert revoked.revoked_at == EPOCH + timedelta(seconds=60)
        assert await store.find_api_key("k000000000001") == revoked
        async with store.unit_of_work(A) as uow:
            assert await uow.keys.all() == [revoked]

    # ------------------------------------------------------------------ records

    async def test_record_versions(self, store: Store, clock: FakeClock) -> None:
        data = {"ListPrice": 350000, "City": "Austin", "Features": ["Pool", "Garage"]}
        async with store.unit_of_work(A) as uow:
            first = await uow.records.put("Listing", "L1", data, expected_version=0)
            assert (first.version, first.deleted) == (1, False)
            assert first.content_hash == content_hash(data)
            assert first.updated_at == EPOCH
            assert first.updated_at.tzinfo is not None
            with pytest.raises(ConcurrentUpdate):
                await uow.records.put("Listing", "L1", data, expected_version=0)
            with pytest.raises(ConcurrentUpdate):
                await uow.records.put("Listing", "L2", data, expected_version=1)
            await uow.commit()
        clock.advance(1)
        async with store.unit_of_work(A) as uow:
            second = await uow.records.put(
                "Listing", "L1", {**data, "ListPrice": 1}, expected_version=1
            )
            with pytest.raises(ConcurrentUpdate):
                await uow.records.put("Listing", "L1", data, expected_version=1)
            tomb = await uow.records.put("Listing", "L1", {}, expected_version=2, deleted=True)
            await uow.commit()
        assert (second.version, tomb.version, tomb.deleted) == (2, 3, True)
        async with store.unit_of_work(A) as uow:
            got = await uow.records.get("Listing", "L1")
            assert got == tomb
            assert got is not None
            assert got.updated_at == EPOCH + timedelta(seconds=1)
            assert await uow.records.get("Listing", "nope") is None
            assert await uow.records.get("Property", "L1") is None

    async def test_record_data_round_trips_exactly(self, store: Store) -> None:
        data = {
            "s": "Ünïcødé 🏠", "i": 2**62, "neg": -7, "f": 0.1, "big": 1.5e300, "t": True,
            "n": None, "nested": {"z": [1, {"a": []}], "a": {}}, "empty": "",
        }  # fmt: skip
        async with store.unit_of_work(A) as uow:
            put = await uow.records.put("Listing", "L1", data, expected_version=0)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.records.get("Listing", "L1")
        assert got is not None
        assert dict(got.data) == data
        assert got.content_hash == put.content_hash

    async def test_non_json_values_are_rejected(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            for bad in (Decimal("1.10"), EPOCH, float("nan"), {1, 2}, b"x"):
                with pytest.raises(ContractError):
                    await uow.records.put("Listing", "L1", {"v": bad}, expected_version=0)
            with pytest.raises(ContractError):
                await uow.audit.append(actor="t", action="x", detail={"v": Decimal(1)})

    async def test_scan_pages_by_id_and_count(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            for i in (3, 1, 5, 2, 4):
                await uow.records.put("Listing", f"L{i}", {"n": i}, expected_version=0)
            await uow.records.put("Listing", "L6", {}, expected_version=0, deleted=True)
            await uow.records.put("Property", "P1", {"n": 1}, expected_version=0)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            page = [r.id async for r in uow.records.scan("Listing", limit=2)]
            rest = [r.id async for r in uow.records.scan("Listing", after_id=page[-1])]
            everything = [r.id async for r in uow.records.scan("Listing", include_deleted=True)]
            assert page == ["L1", "L2"]
            assert rest == ["L3", "L4", "L5"]
            assert everything == ["L1", "L2", "L3", "L4", "L5", "L6"]
            assert await uow.records.count("Listing") == 5
            assert await uow.records.count() == 6

    # ------------------------------------------------------------------ provenance, xref, cursors

    async def test_provenance_upserts_by_field(self, store: Store, clock: FakeClock) -> None:
        def prov(field: str, system: str, confidence: float) -> FieldProvenance:
            return FieldProvenance(
                "Listing", "L1", field, system, "austin-mls", EPOCH - timedelta(hours=1), "v7",
                confidence, clock.now(),
            )  # fmt: skip

        async with store.unit_of_work(A) as uow:
            await uow.provenance.record([prov("ListPrice", "mls", 1.0), prov("City", "mls", 0.9)])
            await uow.provenance.record([prov("ListPrice", "core", 0.5)])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.provenance.for_record("Listing", "L1")
            assert got == {
                "ListPrice": prov("ListPrice", "core", 0.5),
                "City": prov("City", "mls", 0.9),
            }
            assert await uow.provenance.for_record("Listing", "L2") == {}

    async def test_xref(self, store: Store) -> None:
        ref = ExternalRef("mls", "austin-mls", "Listing", "MLS-1", "L1")
        async with store.unit_of_work(A) as uow:
            await uow.xref.link(ref)
            await uow.xref.link(ref)  # idempotent
            await uow.xref.link(ExternalRef("crm", "", "Listing", "C-9", "L1"))
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.xref.resolve("mls", "austin-mls", "Listing", "MLS-1") == "L1"
            assert await uow.xref.resolve("mls", "other", "Listing", "MLS-1") is None
            assert [r.system for r in await uow.xref.for_record("Listing", "L1")] == ["crm", "mls"]
            with pytest.raises(AlreadyExists):
                await uow.xref.link(ExternalRef("mls", "austin-mls", "Listing", "MLS-1", "L2"))

    async def test_cursors(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.cursors.get("austin-mls", "Property") is None
            await uow.cursors.put("austin-mls", "Property", {"since": "2026-01-01T00:00:00Z"})
            clock.advance(5)
            put = await uow.cursors.put("austin-mls", "Property", {"since": "later", "page": 2})
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.cursors.get("austin-mls", "Property") == put
        assert put.updated_at == EPOCH + timedelta(seconds=5)

    # ------------------------------------------------------------------ quarantine, outbox, ledger

    async def test_quarantine(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            first = await uow.quarantine.add(
                connection="austin-mls", entity="Listing", external_id="X1", reason="bad price",
                payload={"ListPrice": "n/a"},
            )  # fmt: skip
            second = await uow.quarantine.add(
                connection="crm", entity="Contact", external_id=None, reason="no id", payload={}
            )
            await uow.commit()
        assert first.created_at == EPOCH
        assert first.resolved_at is None
        assert first.id != second.id
        async with store.unit_of_work(A) as uow:
            assert await uow.quarantine.open_items() == [first, second]
            assert await uow.quarantine.open_items("crm") == [second]
            await uow.quarantine.resolve(first.id)
            with pytest.raises(NotFound):
                await uow.quarantine.resolve("missing")
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.quarantine.open_items() == [second]

    async def test_outbox(self, store: Store, clock: FakeClock) -> None:
        events = [event(subject=f"L{i}") for i in range(3)]
        async with store.unit_of_work(A) as uow:
            messages = [await uow.outbox.add(e) for e in events]
            await uow.commit()
        positions = [m.position for m in messages]
        assert positions == sorted(positions)
        assert len(set(positions)) == 3
        async with store.unit_of_work(A) as uow:
            pending = await uow.outbox.pending()
            assert [m.event for m in pending] == events
            assert [m.position for m in pending] == positions
            assert [m.event.id for m in await uow.outbox.pending(limit=1)] == [events[0].id]
            await uow.outbox.mark_published([events[0].id, events[2].id])
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert [m.event for m in await uow.outbox.pending()] == [events[1]]
            later = await uow.outbox.add(event(subject="L9"))
            assert later.position > positions[-1]

    async def test_applied_changes_ledger(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.applied.get("idem-1") is None
            await uow.applied.put(result())
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.applied.get("idem-1") == result()
            with pytest.raises(ConcurrentUpdate):
                await uow.applied.put(result())

    # ------------------------------------------------------------------ connections

    async def test_connections_are_versioned(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            with pytest.raises(ConcurrentUpdate):
                await uow.connections.save(connection(version=2), changed_by="cli", change="added")
            v1 = await uow.connections.save(connection(), changed_by="cli", change="added")
            with pytest.raises(ConcurrentUpdate):
                await uow.connections.save(connection(), changed_by="cli", change="added")
            await uow.commit()
        paused = connection(
            version=2, status=ConnectionStatus.PAUSED, updated_at=EPOCH + timedelta(1)
        )
        async with store.unit_of_work(A) as uow:
            assert await uow.connections.save(paused, changed_by="ops", change="paused") == paused
            with pytest.raises(ConcurrentUpdate):
                await uow.connections.save(connection(version=2), changed_by="x", change="edited")
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.connections.get("austin-mls") == paused
            assert await uow.connections.get("other") is None
            assert await uow.connections.all() == [paused]
            history = await uow.connections.history("austin-mls")
        assert [(h.connection, h.changed_by, h.change) for h in history] == [
            (v1, "cli", "added"), (paused, "ops", "paused"),
        ]  # fmt: skip

    # ------------------------------------------------------------------ audit chain

    async def test_audit_chain(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            assert await uow.audit.verify() == uow_report(A, 0)
            one = await uow.audit.append(actor="cli", action="tenant.created", detail={"n": 1})
            clock.advance(1.5)
            two = await uow.audit.append(
                actor="mls", action="change.applied", entity="Listing", entity_id="L1"
            )
            await uow.commit()
        assert (one.seq, one.prev_hash, two.seq, two.prev_hash) == (1, GENESIS_HASH, 2, one.hash)
        assert two.at == EPOCH + timedelta(seconds=1.5)
        assert two.detail == {}
        assert one.hash == audit_entry_hash(
            prev_hash=GENESIS_HASH, tenant=A, seq=1, at=EPOCH, actor="cli",
            action="tenant.created", entity=None, entity_id=None, detail={"n": 1},
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            assert [e async for e in uow.audit.entries()] == [one, two]
            assert [e async for e in uow.audit.entries(after_seq=1)] == [two]
            assert await uow.audit.verify() == uow_report(A, 2)
        async with store.unit_of_work(B) as uow:
            other = await uow.audit.append(actor="cli", action="tenant.created")
        assert (other.seq, other.prev_hash) == (1, GENESIS_HASH)

    async def test_concurrent_audit_appends_make_one_chain(self, store: Store) -> None:
        async def append(i: int) -> None:
            async with store.unit_of_work(A) as uow:
                await uow.audit.append(actor="worker", action="test.appended", detail={"i": i})
                await uow.commit()

        await asyncio.gather(*(append(i) for i in range(20)))
        async with store.unit_of_work(A) as uow:
            seqs = [e.seq async for e in uow.audit.entries()]
            report = await uow.audit.verify()
        assert seqs == list(range(1, 21))
        assert report == uow_report(A, 20)

    async def test_concurrent_creates_have_one_winner(self, store: Store) -> None:
        async def create(i: int) -> str:
            try:
                async with store.unit_of_work(A) as uow:
                    await uow.records.put("Listing", "L1", {"i": i}, expected_version=0)
                    await uow.commit()
            except ConcurrentUpdate:
                return "lost"
            return "won"

        outcomes = await asyncio.gather(*(create(i) for i in range(8)))
        assert sorted(outcomes) == ["lost"] * 7 + ["won"]

    # ------------------------------------------------------------------ transactions

    async def test_rollback_discards_record_and_outbox_together(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:  # left without commit
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.outbox.add(event())
        with pytest.raises(RuntimeError):  # noqa: PT012 - the crash is inside the unit of work
            async with store.unit_of_work(A) as uow:
                await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
                await uow.outbox.add(event())
                await uow.audit.append(actor="t", action="x")
                raise RuntimeError("crash before commit")
        async with store.unit_of_work(A) as uow:
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.rollback()
            assert await uow.records.get("Listing", "L1") is None
            assert await uow.outbox.pending() == []
            assert [e async for e in uow.audit.entries()] == []

    async def test_commit_makes_record_and_outbox_visible_together(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            message = await uow.outbox.add(event())
            await uow.commit()
            await uow.records.put("Listing", "L2", {"n": 2}, expected_version=0)  # not committed
        async with store.unit_of_work(A) as uow:
            assert await uow.records.get("Listing", "L1") is not None
            assert await uow.records.get("Listing", "L2") is None
            assert await uow.outbox.pending() == [message]

    # ------------------------------------------------------------------ tenant isolation

    async def test_tenants_never_see_each_other(self, store: Store, clock: FakeClock) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.records.put("Listing", "L1", {"n": 1}, expected_version=0)
            await uow.provenance.record(
                [FieldProvenance("Listing", "L1", "n", "mls", None, None, None, 1.0, EPOCH)]
            )
            await uow.xref.link(ExternalRef("mls", "c", "Listing", "X1", "L1"))
            await uow.cursors.put("c", "Listing", {"p": 1})
            item = await uow.quarantine.add(
                connection="c", entity="Listing", external_id="X", reason="r", payload={}
            )
            sent = event()
            await uow.outbox.add(sent)
            await uow.audit.append(actor="a", action="x")
            await uow.applied.put(result())
            await uow.keys.add(api_key())
            await uow.connections.save(connection(), changed_by="cli", change="added")
            await uow.commit()
        async with store.unit_of_work(B) as uow:
            assert await uow.records.get("Listing", "L1") is None
            assert [r async for r in uow.records.scan("Listing", include_deleted=True)] == []
            assert await uow.records.count() == 0
            assert await uow.provenance.for_record("Listing", "L1") == {}
            assert await uow.xref.resolve("mls", "c", "Listing", "X1") is None
            assert await uow.xref.for_record("Listing", "L1") == []
            assert await uow.cursors.get("c", "Listing") is None
            assert await uow.quarantine.open_items() == []
            with pytest.raises(NotFound):
                await uow.quarantine.resolve(item.id)
            assert await uow.outbox.pending() == []
            await uow.outbox.mark_published([sent.id])
            assert [e async for e in uow.audit.entries()] == []
            assert (await uow.audit.verify()).entries == 0
            assert await uow.applied.get("idem-1") is None
            assert await uow.keys.all() == []
            with pytest.raises(NotFound):
                await uow.keys.revoke(api_key().key_id)
            assert await uow.connections.get("austin-mls") is None
            assert await uow.connections.all() == []
            assert await uow.connections.history("austin-mls") == []
            # the same names are free in B
            await uow.records.put("Listing", "L1", {"n": 2}, expected_version=0)
            await uow.xref.link(ExternalRef("mls", "c", "Listing", "X1", "OTHER"))
            await uow.applied.put(result(B))
            await uow.connections.save(connection(B), changed_by="cli", change="added")
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert [m.event for m in await uow.outbox.pending()] == [sent]
            assert await uow.xref.resolve("mls", "c", "Listing", "X1") == "L1"
            got = await uow.records.get("Listing", "L1")
            assert got is not None
            assert dict(got.data) == {"n": 1}

    async def test_writes_for_another_tenant_are_refused(self, store: Store) -> None:
        async with store.unit_of_work(B) as uow:
            for write in (
                uow.keys.add(api_key(A)),
                uow.applied.put(result(A)),
                uow.connections.save(connection(A), changed_by="x", change="added"),
                uow.outbox.add(event(A)),
            ):
                with pytest.raises(ValueError, match="tenant"):
                    await write

    async def test_timestamps_are_utc(self, store: Store, clock: FakeClock) -> None:
        clock.set(EPOCH + timedelta(days=3, microseconds=123456))
        async with store.unit_of_work(A) as uow:
            await uow.records.put("Listing", "L1", {}, expected_version=0)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.records.get("Listing", "L1")
        assert got is not None
        assert got.updated_at == clock.now()
        assert got.updated_at.utcoffset() == timedelta(0)
        assert got.updated_at.tzinfo == UTC


def uow_report(tenant: str, entries: int) -> AuditReport:
    return AuditReport(tenant, entries, ok=True)
