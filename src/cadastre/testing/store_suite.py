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
(~950 lines): one test per rule of the port, kept together so an adapter gets all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from cadastre.contract.changes import ApplyResult
from cadastre.contract.events import EventEnvelope
from cadastre.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    ContractError,
    NotFound,
    StoreError,
)
from cadastre.ports import (
    ApiKey,
    ApiKeyScope,
    AuditReport,
    Connection,
    ConnectionStatus,
    CredentialRead,
    CredentialStatus,
    ExternalRef,
    FieldFilter,
    FieldProvenance,
    SealedSecret,
    StoredCredential,
)
from cadastre.store.audit import GENESIS_HASH, audit_entry_hash
from cadastre.store.canonical import content_hash
from cadastre.testing.clock import EPOCH, FakeClock
from cadastre.testing.store_bulk_suite import BulkStoreSuite
from cadastre.testing.store_conflicts_suite import ConflictsStoreSuite
from cadastre.testing.store_events_suite import EventStoreSuite
from cadastre.testing.store_identity_suite import IdentityStoreSuite
from cadastre.testing.store_mls_suite import MlsStoreSuite
from cadastre.testing.store_observations_suite import ObservationsStoreSuite
from cadastre.testing.store_webhooks_in_suite import WebhooksInStoreSuite
from cadastre.testing.store_webhooks_suite import WebhooksStoreSuite

if TYPE_CHECKING:
    from cadastre.ports import QuarantinedRecord, Store, UnitOfWork

A, B = "acme", "globex"


def event(tenant: str = A, subject: str = "L1") -> EventEnvelope:
    return EventEnvelope(
        source="/mls/austin", type="cadastre.listing.updated.v1", subject=subject, time=EPOCH,
        tenant=tenant, data={"ListPrice": 100},
    )  # fmt: skip


def connection(tenant: str = A, version: int = 1, **changes: Any) -> Connection:
    fields: dict[str, Any] = {
        "tenant": tenant, "name": "austin-mls", "system": "mls", "connector": "mls/reso",
        "config": {"base_url": "https://mls.example", "page_size": 200}, "credential": "mls-client",
        "status": ConnectionStatus.ACTIVE, "version": version, "updated_at": EPOCH,
    }  # fmt: skip
    return Connection(**{**fields, **changes})


def api_key(tenant: str = A, key_id: str = "k000000000001") -> ApiKey:
    return ApiKey(key_id, tenant, ApiKeyScope.WRITE, "ab" * 32, EPOCH, label="ci")


def sealed(field: str, key_id: str = "mk-1", n: int = 0) -> SealedSecret:
    """Opaque bytes as the vault writes them; NUL and high bytes must come back unchanged."""
    return SealedSecret(
        field, key_id, bytes([n, 0, 255]) + key_id.encode() + b"\x00wrap",
        bytes([255 - n, 0, 128]) + field.encode() + b"\x00seal",
    )  # fmt: skip


def credential(
    tenant: str = A, name: str = "mls-oauth", version: int = 1, **changes: Any
) -> StoredCredential:
    fields: dict[str, Any] = {
        "tenant": tenant, "name": name, "scheme": "oauth2_client_credentials",
        "status": CredentialStatus.ACTIVE, "version": version, "updated_at": EPOCH,
        "meta": {"token_url": "https://mls.example/token", "scopes": ["read", "write"],
                 "egress": {"hosts": ["mls.example"], "port": 443}},
        "expires_at": datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5))),
        "refresh_started_at": None, "status_reason": "",
        "secrets": {"client_id": sealed("client_id"), "client_secret": sealed("client_secret")},
    }  # fmt: skip
    return StoredCredential(**{**fields, **changes})


def read(name: str = "mls-oauth", purpose: str = "call", tenant: str = A) -> CredentialRead:
    return CredentialRead(tenant, name, ("client_id", "client_secret"), "connection:x", purpose,
                          EPOCH)  # fmt: skip


def result(tenant: str = A, key: str = "idem-1") -> ApplyResult:
    return ApplyResult(
        tenant=tenant, entity="Listing", canonical_id="L1", idempotency_key=key,
        applied=["ListPrice"], version=1, created=True, event_id="e1",
    )  # fmt: skip


class StoreSuite(
    BulkStoreSuite,
    MlsStoreSuite,
    WebhooksStoreSuite,
    EventStoreSuite,
    WebhooksInStoreSuite,
    IdentityStoreSuite,
    ConflictsStoreSuite,
    ObservationsStoreSuite,
):
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

    # ------------------------------------------------------------------ query

    async def _query_ids(
        self, store: Store, *filters: FieldFilter, tenant: str = A, **options: Any
    ) -> list[str]:
        async with store.unit_of_work(tenant) as uow:
            return [r.id for r in await uow.records.query("Listing", filters, **options)]

    async def _put_values(self, store: Store, field: str, values: dict[str, Any]) -> None:
        async with store.unit_of_work(A) as uow:
            for id, value in values.items():
                await uow.records.put("Listing", id, {field: value, "n": id}, expected_version=0)
            await uow.commit()

    async def test_query_text_matches_strings_exactly_or_ascii_casefolded(
        self, store: Store
    ) -> None:
        await self._put_values(store, "City", {
            "T1": "Austin", "T2": "AUSTIN", "T3": "austin ", "T4": "Round Rock", "T5": "École",
            "T6": "école", "T7": 5, "T8": ["Austin"], "T9": None, "T10": "Austin\n",
        })  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.records.put("Listing", "T0", {"n": 0}, expected_version=0)  # no City
            await uow.commit()

        def city(value: str, *, casefold: bool = False) -> FieldFilter:
            return FieldFilter("City", "eq", value, casefold=casefold)

        assert await self._query_ids(store, city("Austin")) == ["T1"]
        assert await self._query_ids(store, city("austin", casefold=True)) == ["T1", "T2"]
        assert await self._query_ids(store, city("aUsTiN", casefold=True)) == ["T1", "T2"]
        assert await self._query_ids(store, city("École", casefold=True)) == ["T5"]
        assert await self._query_ids(store, city("5")) == []
        assert await self._query_ids(store, city("Austin' OR '1'='1")) == []

    async def test_query_number_compares_numbers_and_numeric_strings(self, store: Store) -> None:
        await self._put_values(store, "ListPrice", {
            "N01": 350000, "N02": "350000", "N03": "350000.5", "N04": "12.5", "N05": -3,
            "N06": "-3.25", "N07": 1.5, "N08": "1E-7", "N09": 2**62, "N10": "0",
        })  # fmt: skip
        await self._put_values(store, "ListPrice", {  # none of these is a number
            "X01": "n/a", "X02": "", "X03": "12abc", "X04": " 12", "X05": "1-2", "X06": "NaN",
            "X07": "Infinity", "X08": True, "X09": None, "X10": [1], "X11": {"v": 1},
            "X12": "12\n", "X13": "--1", "X14": "1.", "X15": ".5", "X16": "0x10", "X17": "1e9999",
        })  # fmt: skip

        def price(op: Any, value: Any) -> FieldFilter:
            return FieldFilter("ListPrice", op, value, kind="number")

        assert await self._query_ids(store, price("eq", 350000)) == ["N01", "N02"]
        assert await self._query_ids(store, price("eq", Decimal("350000.50"))) == ["N03"]
        assert await self._query_ids(store, price("gt", 350000)) == ["N03", "N09"]
        assert await self._query_ids(store, price("ge", Decimal(350000))) == [
            "N01", "N02", "N03", "N09",
        ]  # fmt: skip
        assert await self._query_ids(store, price("lt", 0)) == ["N05", "N06"]
        assert await self._query_ids(store, price("le", 1.5)) == [
            "N05", "N06", "N07", "N08", "N10",
        ]  # fmt: skip
        assert await self._query_ids(store, price("gt", 0), price("lt", Decimal("0.001"))) == [
            "N08"
        ]
        assert await self._query_ids(store, price("ge", -1), price("le", 20)) == [
            "N04", "N07", "N08", "N10",
        ]  # fmt: skip

    async def test_query_time_compares_instants_across_offsets(self, store: Store) -> None:
        await self._put_values(store, "ModificationTimestamp", {
            "M1": "2026-11-01T09:00:00Z",
            "M2": "2026-11-01T10:00:00+01:00",  # the same instant as M1
            "M3": "2026-11-01T08:59:59.999000Z",
            "M4": "2026-11-01T05:30:00.5-03:30",  # 09:00:00.5Z
            "M5": "2026-11-02T00:00:00+14:00",  # 2026-11-01T10:00Z
            "M6": "2024-02-29T12:00:00Z",  # a leap day
        })  # fmt: skip
        await self._put_values(store, "ModificationTimestamp", {  # none of these is an instant
            "X1": "2026-02-29T12:00:00Z", "X2": "2026-04-31T00:00:00Z", "X3": "2026-11-01",
            "X4": "2026-11-01T09:00:00", "X5": "now", "X6": 2461000.5, "X7": "2026-13-01T00:00:00Z",
            "X8": "2026-11-01T09:00:00Z\n", "X9": "2026-11-01T24:00:00Z", "XA": None,
            "XB": "1900-02-29T00:00:00Z", "XC": "2026-11-01 09:00:00Z",
        })  # fmt: skip
        nine = datetime(2026, 11, 1, 9, tzinfo=UTC)

        def since(op: Any, value: datetime) -> FieldFilter:
            return FieldFilter("ModificationTimestamp", op, value, kind="time")

        assert await self._query_ids(store, since("eq", nine)) == ["M1", "M2"]
        east = nine.astimezone(timezone(timedelta(hours=5, minutes=45)))
        assert await self._query_ids(store, since("eq", east)) == ["M1", "M2"]
        assert await self._query_ids(store, since("ge", nine)) == ["M1", "M2", "M4", "M5"]
        assert await self._query_ids(store, since("gt", nine)) == ["M4", "M5"]
        assert await self._query_ids(store, since("lt", nine)) == ["M3", "M6"]
        assert await self._query_ids(store, since("le", nine - timedelta(milliseconds=1))) == [
            "M3", "M6",
        ]  # fmt: skip
        feb = datetime(2024, 2, 29, 12, tzinfo=UTC)
        assert await self._query_ids(store, since("eq", feb)) == ["M6"]

    async def test_query_pages_by_id_with_deleted_and_other_entities(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            for i in (3, 1, 5, 2, 4, 6):
                status = "Active" if i % 2 else "Pending"
                await uow.records.put(
                    "Listing", f"L{i}", {"StandardStatus": status}, expected_version=0
                )
            await uow.records.put("Listing", "L7", {}, expected_version=0, deleted=True)
            await uow.records.put("Listing", "L8", {"StandardStatus": "Active"}, expected_version=0)
            await uow.records.put(
                "Listing", "L8", {"StandardStatus": "Active"}, expected_version=1, deleted=True
            )
            await uow.records.put(
                "Property", "P1", {"StandardStatus": "Active"}, expected_version=0
            )
            await uow.commit()
        active = FieldFilter("StandardStatus", "eq", "Active")
        assert await self._query_ids(store) == ["L1", "L2", "L3", "L4", "L5", "L6"]
        assert await self._query_ids(store, active) == ["L1", "L3", "L5"]
        assert await self._query_ids(store, active, include_deleted=True) == [
            "L1", "L3", "L5", "L8",
        ]  # fmt: skip
        pages: list[list[str]] = []
        after: str | None = None
        while page := await self._query_ids(store, limit=4, after_id=after, include_deleted=True):
            pages.append(page)
            after = page[-1]
        assert pages == [["L1", "L2", "L3", "L4"], ["L5", "L6", "L7", "L8"]]
        assert await self._query_ids(store, active, after_id="L1", limit=1) == ["L3"]
        assert await self._query_ids(store, active, after_id="L5") == []
        assert await self._query_ids(store, limit=0) == []
        async with store.unit_of_work(A) as uow:
            [record] = await uow.records.query("Listing", [active], limit=1)
            assert record == await uow.records.get("Listing", "L1")
            with pytest.raises(ValueError, match="limit"):
                await uow.records.query("Listing", limit=-1)

    async def test_query_sees_only_its_tenant(self, store: Store) -> None:
        for tenant, price in ((A, 100), (B, 200)):
            async with store.unit_of_work(tenant) as uow:
                await uow.records.put("Listing", "L1", {"ListPrice": price}, expected_version=0)
                await uow.records.put("Listing", f"{tenant}-only", {"ListPrice": price},
                                      expected_version=0)  # fmt: skip
                await uow.commit()
        cheap = FieldFilter("ListPrice", "lt", 150, kind="number")
        assert await self._query_ids(store, cheap, tenant=A) == ["L1", "acme-only"]
        assert await self._query_ids(store, cheap, tenant=B) == []
        assert await self._query_ids(store, tenant=B) == ["L1", "globex-only"]
        assert await self._query_ids(store, tenant="nobody") == []

    def test_query_filters_refuse_what_they_cannot_compare(self) -> None:
        moment = datetime(2026, 11, 1, tzinfo=UTC)
        number: dict[str, Any] = {"field": "ListPrice", "op": "eq", "kind": "number"}
        bad: list[dict[str, Any]] = [
            {"field": "List-Price", "op": "eq", "value": "x"},
            {"field": "$.x", "op": "eq", "value": "x"},
            {"field": "", "op": "eq", "value": "x"},
            {"field": "City", "op": "like", "value": "x"},
            {"field": "City", "op": "gt", "value": "x"},  # text has no order common to all
            {"field": "City", "op": "eq", "value": 5},
            {"field": "City", "op": "eq", "value": "x", "kind": "json"},
            {**number, "value": "5"},
            {**number, "value": True},
            {**number, "value": float("nan")},
            {**number, "value": Decimal("Infinity")},
            {**number, "value": Decimal("1E+5000")},
            {**number, "value": 5, "casefold": True},
            {"field": "T", "op": "ge", "value": moment.replace(tzinfo=None), "kind": "time"},
            {"field": "T", "op": "ge", "value": "2026-11-01T00:00:00Z", "kind": "time"},
        ]
        for arguments in bad:
            with pytest.raises(ValueError, match=r"filter|casefold"):
                FieldFilter(**arguments)

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

    async def test_quarantine_holds_one_open_entry_per_version_of_a_record(
        self, store: Store, clock: FakeClock
    ) -> None:
        """An unchanged bad record read again (an incremental sync's cursor stops on it) is a
        sighting of its open entry, not a second entry; another payload of it is an entry."""

        async def add(
            uow: UnitOfWork, payload: dict[str, Any], external_id: str | None = "X1", **kw: Any
        ) -> QuarantinedRecord:
            fields = {"connection": "mls", "entity": "Listing", "stream": "Property",
                      "code": "unknown_enum_value", "reason": "unknown status", **kw}  # fmt: skip
            return await uow.quarantine.add(external_id=external_id, payload=payload, **fields)

        bad = {"ListingKey": "X1", "StandardStatus": "Sold-ish", "Rooms": [1, {"a": None}]}
        async with store.unit_of_work(A) as uow:
            first = await add(uow, bad)
            await uow.commit()
        assert (first.sightings, first.last_seen_at) == (1, None)
        for n in (2, 3):
            clock.advance(60)
            async with store.unit_of_work(A) as uow:
                # the same JSON with its keys in another order, and another reason: the same one
                again = await add(uow, dict(reversed(bad.items())), reason=f"read {n}")
                await uow.commit()
            assert again.id == first.id
            assert (again.sightings, again.last_seen_at) == (n, clock.now())
            assert (again.reason, again.payload, again.created_at) == (
                first.reason, first.payload, first.created_at
            )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            (held,) = await uow.quarantine.open_items()
            assert held == again
            assert await uow.quarantine.open_counts() == {"mls": 1}
            # the vendor changed the record, still bad: a version of its own
            changed = await add(uow, {**bad, "ListPrice": 1})
            # not the same record: another key, stream, entity or connection
            others = [
                await add(uow, bad, external_id="X2"),
                await add(uow, bad, external_id=None),
                await add(uow, bad, stream="Member"),
                await add(uow, bad, entity="Member"),
                await add(uow, bad, connection="mls-2"),
            ]
            # no external id: only an identical payload is the same entry
            assert (await add(uow, bad, external_id=None)).id == others[1].id
            assert (await add(uow, {"n": 2}, external_id=None)).id != others[1].id
            await uow.commit()
        ids = {first.id, changed.id, *(o.id for o in others)}
        assert len(ids) == 7
        async with store.unit_of_work(B) as uow:  # another tenant's same record: its own entry
            assert (await add(uow, bad)).id not in ids
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.quarantine.open_counts() == {"mls": 7, "mls-2": 1}
            await uow.quarantine.resolve(first.id)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            # resolved (replayed, then broken again upstream): a new entry, counted from one
            fresh = await add(uow, bad)
            await uow.commit()
        assert fresh.id not in ids
        assert fresh.sightings == 1
        async with store.unit_of_work(A) as uow:
            assert await uow.quarantine.get(fresh.id) == fresh
            resolved = await uow.quarantine.get(first.id)
            assert resolved is not None
            assert resolved.sightings == 3

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

    # ------------------------------------------------------------------ credentials

    async def test_credentials_round_trip(self, store: Store, clock: FakeClock) -> None:
        first = credential(
            refresh_started_at=EPOCH + timedelta(microseconds=7), status_reason="rotated by cli"
        )
        bare = credential(
            name="crm-key", scheme="api_key", status=CredentialStatus.PENDING, meta={},
            expires_at=None, secrets={},
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(first)
            await uow.credentials.add(bare)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.credentials.get("mls-oauth")
            assert got == first
            assert await uow.credentials.get("crm-key") == bare
            assert await uow.credentials.get("missing") is None
            assert await uow.credentials.all() == [bare, first]  # by name
        assert got is not None
        assert got.expires_at == first.expires_at
        assert got.expires_at is not None
        assert got.expires_at.tzinfo is not None
        assert got.updated_at.tzinfo is not None
        for field, secret in got.secrets.items():
            assert secret == sealed(field)
            assert type(secret.wrapped_key) is bytes
            assert type(secret.ciphertext) is bytes
        assert "seal" not in repr(got.secrets)  # a sealed secret's repr shows no bytes

    async def test_credential_names_are_unique(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            with pytest.raises(AlreadyExists):
                await uow.credentials.add(credential(scheme="api_key", secrets={}))
            # the refusal left the transaction usable
            await uow.credentials.add(credential(name="other"))
            with pytest.raises(ValueError, match="sealed for field"):
                await uow.credentials.add(
                    credential(name="bad", secrets={"client_id": sealed("client_secret")})
                )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert [c.name for c in await uow.credentials.all()] == ["mls-oauth", "other"]
            assert await uow.credentials.get("mls-oauth") == credential()

    async def test_a_replace_writes_only_the_fields_it_names(self, store: Store) -> None:
        """A writer that read the row before a master-key rotation re-wrapped it keeps the
        rotation's work for every field it did not change."""
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            await uow.commit()
        moved = sealed("client_secret", key_id="mk-2", n=7)
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.rewrap("mls-oauth", moved, was=sealed("client_secret"))
            await uow.commit()
        token = sealed("access_token", key_id="mk-2", n=3)
        stale = credential(version=2, secrets={**credential().secrets, "access_token": token})
        async with store.unit_of_work(A) as uow:
            await uow.credentials.replace(stale, expected_version=1, written={"access_token"})
            await uow.commit()
        async with store.unit_of_work(A, read_only=True) as uow:
            found = await uow.credentials.get("mls-oauth")
        assert found is not None
        assert found.secrets == {"client_id": sealed("client_id"), "client_secret": moved,
                                 "access_token": token}  # fmt: skip

    async def test_credentials_refuse_naive_datetimes(self, store: Store) -> None:
        naive = datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
        async with store.unit_of_work(A) as uow:
            for bad in (replace(credential(), updated_at=naive),
                        replace(credential(), expires_at=naive),
                        replace(credential(), refresh_started_at=naive)):  # fmt: skip
                with pytest.raises(StoreError, match="timezone-aware"):
                    await uow.credentials.add(bad)
            with pytest.raises(StoreError, match="timezone-aware"):
                await uow.credentials.record_read(replace(read(), at=naive))
            await uow.credentials.add(credential())  # the refusals left the transaction usable
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.all() == [credential()]
            assert await uow.credentials.reads("mls-oauth") == []

    async def test_credential_replace_is_compare_and_set(
        self, store: Store, clock: FakeClock
    ) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential(refresh_started_at=EPOCH))
            await uow.commit()
        # a refresh: the client secret is resealed, the client id left out, a token added
        second = credential(
            version=2, updated_at=EPOCH + timedelta(hours=1), expires_at=EPOCH + timedelta(hours=2),
            status=CredentialStatus.NEEDS_REAUTH, status_reason="invalid_grant",
            meta={"token_url": "https://mls.example/token/v2"},
            secrets={"client_secret": sealed("client_secret", n=9),
                     "access_token": sealed("access_token", "mk-2")},
        )  # fmt: skip
        async with store.unit_of_work(A) as uow:
            await uow.credentials.replace(second, expected_version=1)
            with pytest.raises(ConcurrentUpdate):  # the stale writer loses
                await uow.credentials.replace(credential(version=2), expected_version=1)
            with pytest.raises(NotFound):
                await uow.credentials.replace(credential(name="missing", version=2),
                                              expected_version=1)  # fmt: skip
            with pytest.raises(ValueError, match="version"):
                await uow.credentials.replace(credential(version=5), expected_version=2)
            # the refusals left the transaction usable
            assert await uow.credentials.get("mls-oauth") == second
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.credentials.get("mls-oauth")
            assert got == second
            assert got is not None
            assert sorted(got.secrets) == ["access_token", "client_secret"]  # client_id is gone
            assert got.refresh_started_at is None
            third = credential(version=3, secrets={})
            await uow.credentials.replace(third, expected_version=2)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.get("mls-oauth") == third

    async def test_concurrent_replaces_have_one_winner(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            await uow.commit()

        async def refresh(i: int) -> str:
            secrets = {"access_token": sealed("access_token", n=i)}
            try:
                async with store.unit_of_work(A) as uow:
                    await uow.credentials.replace(
                        credential(version=2, secrets=secrets), expected_version=1
                    )
                    await uow.commit()
            except ConcurrentUpdate:
                return "lost"
            return f"won {i}"

        outcomes = sorted(await asyncio.gather(*(refresh(i) for i in range(8))))
        assert outcomes[:7] == ["lost"] * 7
        winner = int(outcomes[7].removeprefix("won "))
        async with store.unit_of_work(A) as uow:
            got = await uow.credentials.get("mls-oauth")
        assert got is not None
        assert got.version == 2
        assert got.secrets == {"access_token": sealed("access_token", n=winner)}

    async def test_credential_rewrap_is_compare_and_set(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            await uow.commit()
        old, new = sealed("client_secret"), sealed("client_secret", "mk-2", n=3)
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.rewrap("mls-oauth", new, was=old) is True
            assert await uow.credentials.rewrap("mls-oauth", new, was=old) is False  # changed
            assert await uow.credentials.rewrap("mls-oauth", sealed("nope", "mk-2"),
                                                was=sealed("nope")) is False  # fmt: skip
            assert await uow.credentials.rewrap("missing", new, was=old) is False
            with pytest.raises(ValueError, match="rewrap"):
                await uow.credentials.rewrap("mls-oauth", sealed("client_id", "mk-2"), was=old)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            got = await uow.credentials.get("mls-oauth")
        assert got == credential(secrets={"client_id": sealed("client_id"), "client_secret": new})
        assert got is not None
        assert got.version == 1  # the secret did not change, so the version did not move

    async def test_sealed_not_under_lists_what_a_rotation_has_left(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            for name in ("c", "a", "b"):
                secrets = {f: sealed(f, "mk-2" if f == "y" else "mk-1") for f in ("z", "x", "y")}
                await uow.credentials.add(credential(name=name, secrets=secrets))
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            left = await uow.credentials.sealed_not_under("mk-2", limit=100)
            assert [(n, s.field) for n, s in left] == [
                ("a", "x"), ("a", "z"), ("b", "x"), ("b", "z"), ("c", "x"), ("c", "z"),
            ]  # fmt: skip
            assert left[0][1] == sealed("x")
            page = await uow.credentials.sealed_not_under("mk-2", limit=3)
            assert page == left[:3]
            assert await uow.credentials.sealed_not_under("mk-2", limit=0) == []
            under_one = await uow.credentials.sealed_not_under("mk-1", limit=100)
            assert [(n, s.field) for n, s in under_one] == [("a", "y"), ("b", "y"), ("c", "y")]
            for name, secret in left:
                rewrapped = sealed(secret.field, "mk-2")
                assert await uow.credentials.rewrap(name, rewrapped, was=secret)
            assert await uow.credentials.sealed_not_under("mk-2", limit=100) == []
            with pytest.raises(ValueError, match="limit"):
                await uow.credentials.sealed_not_under("mk-2", limit=-1)

    async def test_credential_delete(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            await uow.credentials.record_read(read())
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.delete("mls-oauth") is True
            assert await uow.credentials.delete("mls-oauth") is False
            assert await uow.credentials.get("mls-oauth") is None
            assert await uow.credentials.sealed_not_under("other", limit=10) == []
            # the name is free again, and nothing of the old secrets comes back with it
            again = credential(secrets={"api_key": sealed("api_key")})
            await uow.credentials.add(again)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.get("mls-oauth") == again
            assert await uow.credentials.reads("mls-oauth") == [read()]  # the log outlives it

    async def test_credential_reads_newest_first(self, store: Store, clock: FakeClock) -> None:
        purposes = ["refresh", "call", "test", "rotate"]
        async with store.unit_of_work(A) as uow:
            for i, purpose in enumerate(purposes):
                at = EPOCH + timedelta(seconds=i)
                await uow.credentials.record_read(replace(read(purpose=purpose), at=at))
            await uow.credentials.record_read(read("other", "cli"))
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            reads = await uow.credentials.reads("mls-oauth")
            assert [r.purpose for r in reads] == purposes[::-1]
            assert reads[0] == replace(read(purpose="rotate"), at=EPOCH + timedelta(seconds=3))
            assert reads[0].fields == ("client_id", "client_secret")
            assert [r.purpose for r in await uow.credentials.reads("mls-oauth", limit=2)] == [
                "rotate", "test",
            ]  # fmt: skip
            assert await uow.credentials.reads("other") == [read("other", "cli")]
            assert await uow.credentials.reads("nobody") == []
            with pytest.raises(ValueError, match="limit"):
                await uow.credentials.reads("other", limit=-1)

    async def test_credentials_never_cross_tenants(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:
            await uow.credentials.add(credential())
            await uow.credentials.record_read(read())
            await uow.commit()
        mine = sealed("client_secret")
        async with store.unit_of_work(B) as uow:
            assert await uow.credentials.get("mls-oauth") is None
            assert await uow.credentials.all() == []
            assert await uow.credentials.sealed_not_under("mk-2", limit=10) == []
            assert await uow.credentials.reads("mls-oauth") == []
            with pytest.raises(NotFound):
                await uow.credentials.replace(credential(B, version=2), expected_version=1)
            assert (
                await uow.credentials.rewrap("mls-oauth", sealed("client_secret", "mk-2"), was=mine)
                is False
            )
            assert await uow.credentials.delete("mls-oauth") is False
            for write in (
                uow.credentials.add(credential(A, name="x")),
                uow.credentials.replace(credential(A, version=2), expected_version=1),
                uow.credentials.record_read(read(tenant=A)),
            ):
                with pytest.raises(ValueError, match="tenant"):
                    await write
            # the same name is free in B
            theirs = credential(B, secrets={"api_key": sealed("api_key", "mk-9")})
            await uow.credentials.add(theirs)
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.get("mls-oauth") == credential()
            assert await uow.credentials.reads("mls-oauth") == [read()]
            left = await uow.credentials.sealed_not_under("mk-1", limit=10)
            assert left == []
        async with store.unit_of_work(B) as uow:
            assert await uow.credentials.all() == [theirs]

    async def test_rollback_discards_credential_changes(self, store: Store) -> None:
        async with store.unit_of_work(A) as uow:  # left without commit
            await uow.credentials.add(credential(name="gone"))
            await uow.credentials.record_read(read("gone"))
        async with store.unit_of_work(A) as uow:
            assert await uow.credentials.get("gone") is None
            assert await uow.credentials.reads("gone") == []
            await uow.credentials.add(credential())
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            await uow.credentials.replace(credential(version=2, secrets={}), expected_version=1)
            await uow.credentials.rewrap(
                "mls-oauth", sealed("client_id", "mk-2"), was=sealed("client_id")
            )
            await uow.credentials.delete("mls-oauth")
            await uow.credentials.record_read(read())
            await uow.rollback()
            assert await uow.credentials.get("mls-oauth") == credential()
            assert await uow.credentials.reads("mls-oauth") == []

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
            # the same record in another tenant: not part of A's trail
            await uow.audit.append(actor="mls", action="x", entity="Listing", entity_id="L1")
            await uow.commit()
        assert (other.seq, other.prev_hash) == (1, GENESIS_HASH)
        async with store.unit_of_work(A) as uow:
            three = await uow.audit.append(
                actor="mls", action="change.applied", entity="Listing", entity_id="L2"
            )
            four = await uow.audit.append(
                actor="mls", action="change.applied", entity="Listing", entity_id="L1"
            )
            await uow.commit()
        async with store.unit_of_work(A) as uow:
            assert [e async for e in uow.audit.entries_for("Listing", "L1")] == [two, four]
            assert [e async for e in uow.audit.entries_for("Listing", "L1", 2)] == [four]
            assert [e async for e in uow.audit.entries_for("Listing", "L2")] == [three]
            assert [e async for e in uow.audit.entries_for("Unit", "L1")] == []

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
